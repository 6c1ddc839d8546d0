//! Random secrets and their digests. Every secret doorman hands out (session ids, codes,
//! tokens, flow ids) is 256 bits from the OS RNG, base64url without padding; only its SHA-256
//! digest is stored, and comparisons of presented secrets run in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::Hash;

/// A new random secret: 32 bytes from the OS RNG, base64url (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new opaque id of `bytes` random bytes, base64url.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a secret, as stored.
pub fn digest(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// SHA-256 of bytes (a WebAuthn challenge).
pub fn digest_bytes(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two digests.
pub fn digest_eq(a: &Hash, b: &Hash) -> bool {
    a.ct_eq(b).into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex characters into a digest.
pub fn from_hex(text: &str) -> Option<Hash> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let d = digest("s3cret");
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
        assert!(digest_eq(&d, &digest("s3cret")));
        assert!(!digest_eq(&d, &digest("s3cret!")));
    }
}

/// Encrypts small secrets at rest (Plex tokens) with AES-256-GCM under a key derived from the
/// server's `secret_key`. Sealed form: 12-byte random nonce || ciphertext || tag.
pub struct SecretBox {
    key: aws_lc_rs::aead::LessSafeKey,
    /// Keyed hashes of low-entropy secrets at rest (recovery codes), from the same
    /// `secret_key`: a copy of the database alone cannot test guesses against them.
    mac_key: aws_lc_rs::hmac::Key,
}

impl SecretBox {
    pub fn new(secret_key: &str) -> Option<SecretBox> {
        let mut h = Sha256::new();
        h.update(b"doorman secret box v1\0");
        h.update(secret_key.as_bytes());
        let key =
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &h.finalize()).ok()?;
        let mut m = Sha256::new();
        m.update(b"doorman mac v1\0");
        m.update(secret_key.as_bytes());
        Some(SecretBox {
            key: aws_lc_rs::aead::LessSafeKey::new(key),
            mac_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &m.finalize()),
        })
    }

    /// HMAC-SHA256 of `parts`, each followed by a NUL (so parts cannot run into each other).
    pub fn mac(&self, parts: &[&[u8]]) -> Hash {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.mac_key);
        for p in parts {
            ctx.update(p);
            ctx.update(b"\0");
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref().get(..32).unwrap_or(&[0u8; 32]));
        out
    }

    pub fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; aws_lc_rs::aead::NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                &mut buf,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(out)
    }

    /// None when the data was sealed under another key or tampered with.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(aws_lc_rs::aead::NONCE_LEN)?;
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aws_lc_rs::aead::Aad::empty(), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod box_tests {
    use super::SecretBox;

    #[test]
    fn macs_depend_on_the_key_and_each_part() {
        let a = SecretBox::new("0123456789abcdef0123456789abcdef").unwrap();
        let b = SecretBox::new("another key another key another key").unwrap();
        assert_eq!(a.mac(&[b"x", b"y"]), a.mac(&[b"x", b"y"]));
        assert_ne!(a.mac(&[b"x", b"y"]), b.mac(&[b"x", b"y"]));
        assert_ne!(a.mac(&[b"xy", b""]), a.mac(&[b"x", b"y"]));
    }

    #[test]
    fn seals_and_opens_only_with_the_same_key() {
        let b = SecretBox::new("0123456789abcdef0123456789abcdef").unwrap();
        let sealed = b.seal(b"plex-token").unwrap();
        assert_ne!(&sealed[12..], b"plex-token");
        assert_eq!(b.open(&sealed).unwrap(), b"plex-token");
        let other = SecretBox::new("another key another key another key").unwrap();
        assert!(other.open(&sealed).is_none());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(b.open(&tampered).is_none());
        assert!(b.open(b"short").is_none());
    }
}
