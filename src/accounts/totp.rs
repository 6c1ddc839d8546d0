//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30 s steps,
//! the parameters every authenticator app supports. Pure functions of the secret and `now`: no
//! storage (the caller remembers the last step used, to refuse replays) and no HTTP.
//!
//! HMAC-SHA1 comes from aws-lc-rs, the crate's one crypto provider, rather than a TOTP crate
//! that would bring a second SHA-1; RFC 4226 §5.3 truncation is a few lines.

use aws_lc_rs::hmac;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::store::Timestamp;

/// Seconds per step (RFC 6238 §4.1 `X`, the default every app assumes).
pub const PERIOD: i64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Bytes of a new secret: 160 bits, the HMAC-SHA1 output size (RFC 4226 §4 R6 recommends it).
const SECRET_BYTES: usize = 20;

/// A new random shared secret from the OS RNG.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// RFC 4648 §6 base32 (upper case, `A-Z2-7`) without `=` padding, as authenticator apps take it.
pub fn base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(secret.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    let mut emit = |index: u32| {
        if let Some(&c) = ALPHABET.get(index as usize & 31) {
            out.push(char::from(c));
        }
    };
    for &byte in secret {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            emit(buffer >> bits);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        emit(buffer << (5 - bits));
    }
    out
}

/// `b32` in groups of four characters separated by single spaces, for typing it by hand.
pub fn grouped(b32: &str) -> String {
    let chars: Vec<char> = b32.chars().collect();
    chars
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Percent-encodes everything but RFC 3986 §2.3 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI an authenticator app scans (Google Authenticator's Key-Uri-Format):
/// label `issuer:account`, and the issuer repeated as a parameter, which apps prefer.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        account = percent_encode(account),
        secret = base32(secret),
    )
}

/// HOTP (RFC 4226 §5.3) of `counter` with `digits` digits, zero-padded.
fn code_at_digits(secret: &[u8], step: i64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte picks four bytes, top bit cleared.
    let offset = mac.last().map_or(0, |b| usize::from(b & 0x0f));
    let mut word = [0u8; 4];
    if let Some(bytes) = mac.get(offset..offset + 4) {
        word.copy_from_slice(bytes);
    }
    let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", binary % modulus, width = digits as usize)
}

/// The code of time step `step`: six digits, zero-padded.
pub fn code_at(secret: &[u8], step: i64) -> String {
    code_at_digits(secret, step, DIGITS as u32)
}

/// The time step `now` falls in (RFC 6238 §4.2 `T`, with `T0` = 0).
pub fn step_at(now: Timestamp) -> i64 {
    now.div_euclid(PERIOD)
}

/// The step (now-1, now, now+1) whose code equals `typed`, or None. `typed` may hold spaces;
/// anything but exactly 6 ASCII digits after removing spaces is None. Compare in constant time.
///
/// One step either side absorbs clock drift and the time taken to type (RFC 6238 §5.2). When
/// two steps share the code, the current one wins, then the previous one. The caller refuses a
/// step at or before the last one it accepted, so a code works once.
pub fn matching_step(secret: &[u8], typed: &str, now: Timestamp) -> Option<i64> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != DIGITS || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut found = None;
    // Every candidate is computed and compared, so timing does not tell which one matched.
    for step in [current + 1, current - 1, current] {
        let expected = code_at(secret, step);
        if bool::from(expected.as_bytes().ct_eq(typed.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B and RFC 4226 appendix D use this ASCII secret for SHA-1.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (time, expected) in vectors {
            assert_eq!(
                code_at_digits(RFC_SECRET, step_at(time), 8),
                expected,
                "T = {time}"
            );
            // Six digits are the same number modulo 10^6.
            assert_eq!(
                code_at(RFC_SECRET, step_at(time)),
                expected[2..],
                "T = {time}"
            );
        }
    }

    #[test]
    fn rfc_4226_appendix_d_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                code_at(RFC_SECRET, counter as i64),
                *code,
                "count {counter}"
            );
        }
    }

    #[test]
    fn steps_are_thirty_seconds() {
        assert_eq!(step_at(0), 0);
        assert_eq!(step_at(29), 0);
        assert_eq!(step_at(30), 1);
        assert_eq!(step_at(59), 1);
        assert_eq!(step_at(1111111109), 37037036);
    }

    #[test]
    fn the_previous_and_next_step_are_accepted_two_away_refused() {
        let now = 1_700_000_015;
        let step = step_at(now);
        let code = |s| code_at(RFC_SECRET, s);
        assert_eq!(matching_step(RFC_SECRET, &code(step), now), Some(step));
        assert_eq!(
            matching_step(RFC_SECRET, &code(step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(step + 1), now),
            Some(step + 1)
        );
        for far in [step - 2, step + 2, step - 10] {
            let c = code(far);
            // Skip the one-in-a-million case where a far step shares a code with a near one.
            if (step - 1..=step + 1).any(|s| code(s) == c) {
                continue;
            }
            assert_eq!(matching_step(RFC_SECRET, &c, now), None, "step {far}");
        }
        // Another secret's code does not match.
        let other = b"another secret, twenty";
        assert_ne!(code_at(other, step), code(step));
        assert_eq!(matching_step(RFC_SECRET, &code_at(other, step), now), None);
    }

    #[test]
    fn spaces_are_ignored_and_anything_else_refused() {
        let now = 59;
        assert_eq!(matching_step(RFC_SECRET, "287082", now), Some(1));
        assert_eq!(matching_step(RFC_SECRET, "287 082", now), Some(1));
        assert_eq!(matching_step(RFC_SECRET, " 28 70 82 ", now), Some(1));
        for junk in [
            "",
            "      ",
            "28708",
            "2870820",
            "94287082",
            "287-082",
            "28708a",
            "２８７０８２",
            "+287082",
            "287082\u{0}",
        ] {
            assert_eq!(matching_step(RFC_SECRET, junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn base32_of_known_values() {
        // RFC 4648 §10 test vectors, without the padding.
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base32(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32(&[0xff; 5]), "77777777");
        assert_eq!(base32(&[0x00; 1]), "AA");
    }

    #[test]
    fn secrets_are_random_twenty_bytes_and_group_by_four() {
        let a = new_secret();
        assert_eq!(a.len(), 20);
        assert_ne!(a, new_secret());
        let b32 = base32(&a);
        assert_eq!(b32.len(), 32);
        let g = grouped(&b32);
        assert_eq!(g.len(), 32 + 7);
        assert_eq!(g.replace(' ', ""), b32);
        assert_eq!(grouped("GEZDGNBVGY"), "GEZD GNBV GY");
        assert_eq!(grouped("ABCD"), "ABCD");
        assert_eq!(grouped(""), "");
    }

    #[test]
    fn otpauth_uri_of_a_known_secret() {
        assert_eq!(
            otpauth_uri("doorman", "alice", RFC_SECRET),
            "otpauth://totp/doorman:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=doorman&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            otpauth_uri("My Home:Lab", "bob@example.com", b"f"),
            "otpauth://totp/My%20Home%3ALab:bob%40example.com?secret=MY\
             &issuer=My%20Home%3ALab&algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_uri("d", "é&=?", b"f").starts_with("otpauth://totp/d:%C3%A9%26%3D%3F?"));
    }
}
