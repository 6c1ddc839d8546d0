//! Signing keys: generated on first start (RSA-2048), kept in the store, rotated on demand or by
//! age, published as JWKS. Signing and verifying go through jsonwebtoken on aws-lc-rs, off the
//! async runtime. The in-memory key set is swapped atomically when the store's keys change (a
//! `doorman keys rotate` from the CLI shows within one reload period).
//!
//! Rotation publishes the next key first and lets it sign only later: relying parties cache the
//! JWKS for up to its max-age, and one that fetched it just before the new key appeared must
//! not meet a token it cannot verify. Which key signs is decided from the stored `active_from`
//! at the moment of signing, so every replica switches at the same instant.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{SigningKey, Store, StoreError, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no signing key is available")]
    NoKey,
    #[error("signing key {kid} is unusable: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("key generation failed")]
    Generate,
    #[error("signing failed: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct LoadedKey {
    kid: String,
    /// Parsed once: aws-lc validates the key and sets up RSA blinding when a key is parsed,
    /// which costs as much as the signature itself. Kept, every signature reuses it.
    pair: aws_lc_rs::rsa::KeyPair,
    decoding: DecodingKey,
    jwk: Jwk,
}

/// How long relying parties may cache the JWKS (its `Cache-Control` max-age), in seconds.
pub const JWKS_MAX_AGE: i64 = 300;
/// The JWKS response's `Cache-Control` (a test keeps it equal to `JWKS_MAX_AGE`).
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// One consistent view of the keys: every one still published, and when each may sign.
pub struct KeySet {
    /// (active_from, key) of every published key, oldest first: at a time `t` the last one
    /// with `active_from <= t` signs.
    signers: Vec<(Timestamp, Arc<LoadedKey>)>,
    by_kid: HashMap<String, Arc<LoadedKey>>,
    jwks_json: bytes_like::Bytes,
    /// (kid, retire_at) of the keys it was built from, to notice changes cheaply.
    fingerprint: Vec<(String, Option<Timestamp>)>,
}

impl KeySet {
    /// The key that signs at `now`: the newest published key already in force. Should every
    /// key be scheduled for later (a clock set back), the first of them, rather than none.
    fn signer_at(&self, now: Timestamp) -> Option<&Arc<LoadedKey>> {
        self.signers
            .iter()
            .rev()
            .find(|(from, _)| *from <= now)
            .or_else(|| self.signers.first())
            .map(|(_, k)| k)
    }
}

mod bytes_like {
    /// Pre-serialized JWKS: cloned per request without re-encoding.
    pub type Bytes = std::sync::Arc<str>;
}

impl KeySet {
    fn build(keys: &[SigningKey], now: Timestamp) -> Result<KeySet, KeyError> {
        let mut by_kid = HashMap::new();
        let mut signers = Vec::new();
        let mut fingerprint = Vec::new();
        for key in keys {
            if key.retire_at.is_some_and(|t| t <= now) {
                continue;
            }
            fingerprint.push((key.kid.clone(), key.retire_at));
            let loaded = Arc::new(load_key(key)?);
            // A retiring key signs until its successor's active_from, then only verifies.
            signers.push((key.active_from, loaded.clone()));
            by_kid.insert(key.kid.clone(), loaded);
        }
        signers.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.kid.cmp(&b.1.kid)));
        let mut published: Vec<&Arc<LoadedKey>> = by_kid.values().collect();
        published.sort_by(|a, b| a.kid.cmp(&b.kid));
        let set = JwkSet {
            keys: published.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks_json = serde_json::to_string(&set).map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(KeySet {
            signers,
            by_kid,
            jwks_json: jwks_json.into(),
            fingerprint,
        })
    }
}

fn load_key(key: &SigningKey) -> Result<LoadedKey, KeyError> {
    let bad = |reason: String| KeyError::BadKey {
        kid: key.kid.clone(),
        reason,
    };
    if key.alg != "RS256" {
        return Err(bad(format!("unsupported algorithm {}", key.alg)));
    }
    let encoding =
        EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let mut jwk =
        Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(|e| bad(e.to_string()))?;
    let der = pem_body(&key.private_pem).ok_or_else(|| bad("the PEM is malformed".into()))?;
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
    jwk.common.key_id = Some(key.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
    Ok(LoadedKey {
        kid: key.kid.clone(),
        pair,
        decoding,
        jwk,
    })
}

/// The DER inside a PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD.decode(b64).ok()
}

/// A new RSA-2048 key, active from `now`. The kid is derived from the public key (stable,
/// unguessable-free: it only needs to be unique).
pub fn generate(now: Timestamp) -> Result<SigningKey, KeyError> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::Generate)?;
    let der = pair.as_der().map_err(|_| KeyError::Generate)?;
    let der = der.as_ref();
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let b64 = STANDARD.encode(der);
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).map_err(|_| KeyError::Generate)?);
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let digest = Sha256::digest(der);
    let kid = URL_SAFE_NO_PAD.encode(digest.get(..12).unwrap_or_default());
    Ok(SigningKey {
        kid,
        alg: "RS256".into(),
        private_pem: pem,
        created_at: now,
        active_from: now,
        retire_at: None,
    })
}

/// The server's keys, swappable as a whole.
pub struct Keys {
    current: RwLock<Arc<KeySet>>,
    /// Bounds concurrent RSA work so a flood queues instead of starving the runtime's threads.
    permits: tokio::sync::Semaphore,
}

impl Keys {
    /// Loads the keys from the store, creating the first one only if none is published: a
    /// restart (even between a rotation and its switch) adds no key.
    pub async fn load(store: &dyn Store, now: Timestamp) -> Result<Keys, KeyError> {
        let mut stored = store.list_signing_keys().await?;
        let set = KeySet::build(&stored, now)?;
        let set = if set.signers.is_empty() {
            let key = tokio::task::spawn_blocking(move || generate(now))
                .await
                .map_err(|_| KeyError::Generate)??;
            store.add_signing_key(&key).await?;
            tracing::info!(kid = %key.kid, "generated the first signing key (RSA-2048)");
            stored.push(key);
            KeySet::build(&stored, now)?
        } else {
            set
        };
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(Keys {
            current: RwLock::new(Arc::new(set)),
            permits: tokio::sync::Semaphore::new(workers),
        })
    }

    fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the store; swaps the key set if anything changed. Returns whether it did.
    pub async fn reload(&self, store: &dyn Store, now: Timestamp) -> Result<bool, KeyError> {
        let stored = store.list_signing_keys().await?;
        let fingerprint: Vec<(String, Option<Timestamp>)> = stored
            .iter()
            .filter(|k| k.retire_at.is_none_or(|t| t > now))
            .map(|k| (k.kid.clone(), k.retire_at))
            .collect();
        let old = self.snapshot();
        // Same keys: nothing to do (a scheduled key starts signing by its timestamp, at
        // signing time, without a reload).
        if fingerprint == old.fingerprint {
            return Ok(false);
        }
        let set = KeySet::build(&stored, now)?;
        if set.signers.is_empty() {
            return Err(KeyError::NoKey);
        }
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(true)
    }

    pub fn jwks_json(&self) -> Arc<str> {
        self.snapshot().jwks_json.clone()
    }

    /// The kid of the key that signs at `now`.
    pub fn active_kid(&self, now: Timestamp) -> Option<String> {
        self.snapshot().signer_at(now).map(|k| k.kid.clone())
    }

    /// Signs `claims` as an RS256 JWS with the kid of the key in force at `now`, off the async
    /// runtime.
    pub async fn sign<T: Serialize + Send + 'static>(
        &self,
        now: Timestamp,
        typ: Option<&'static str>,
        claims: T,
    ) -> Result<String, KeyError> {
        let key = self
            .snapshot()
            .signer_at(now)
            .cloned()
            .ok_or(KeyError::NoKey)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        tokio::task::spawn_blocking(move || sign_with(&key, typ, &claims))
            .await
            .map_err(|e| KeyError::Sign(e.to_string()))?
    }

    /// Verifies a JWS made by one of our published keys. `validation` says what else to check.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, validation: &Validation) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 {
            return None;
        }
        let set = self.snapshot();
        let key = set.by_kid.get(header.kid.as_deref()?)?;
        jsonwebtoken::decode::<T>(token, &key.decoding, validation)
            .ok()
            .map(|d| d.claims)
    }
}

/// RS256 JWS compact serialization (RFC 7515 §7.1) signed with the parsed key pair. jsonwebtoken
/// re-parses the private key on every `encode`, which doubled the cost of a login.
fn sign_with<T: Serialize>(
    key: &LoadedKey,
    typ: Option<&str>,
    claims: &T,
) -> Result<String, KeyError> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    // id_tokens carry no `typ`: Prosody accepts only `typ: "JWT"`, so an id_token can never
    // pass for a Jitsi token, whatever audiences Prosody is told to accept.
    header.typ = typ.map(str::to_string);
    let mut jws = b64_json(&header)?;
    jws.push('.');
    jws.push_str(&b64_json(claims)?);
    let mut signature = vec![0u8; key.pair.public_modulus_len()];
    key.pair
        .sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            jws.as_bytes(),
            &mut signature,
        )
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    jws.push('.');
    jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jws)
}

fn b64_json<T: Serialize + ?Sized>(value: &T) -> Result<String, KeyError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KeyError::Sign(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `doorman keys rotate` and automatic rotation: a new key is published now and signs from
/// `now + publish_ahead` (at least one JWKS max-age later, so every cached JWKS has it by then);
/// the previous ones keep signing until that moment and stay published `keep_old_for` longer
/// (the longest lifetime of a token they signed), then go. Every replica reads the same
/// timestamps, so they all switch at once.
pub async fn rotate(
    store: &dyn Store,
    now: Timestamp,
    publish_ahead: i64,
    keep_old_for: i64,
) -> Result<SigningKey, KeyError> {
    let key = next_key(now, publish_ahead).await?;
    store.add_signing_key(&key).await?;
    retire_all_but(store, &key, keep_old_for).await?;
    Ok(key)
}

/// Automatic rotation, once for every replica: rotates as `rotate` does if the stored keys are
/// (still) due for it, and only if no other replica added a key meanwhile. None: not due, or
/// another replica rotated first.
pub async fn rotate_if_due(
    store: &dyn Store,
    now: Timestamp,
    rotate_after: i64,
    publish_ahead: i64,
    keep_old_for: i64,
) -> Result<Option<SigningKey>, KeyError> {
    let keys = store.list_signing_keys().await?;
    if !rotation_due(&keys, now, rotate_after) {
        return Ok(None);
    }
    let newest = keys
        .iter()
        .filter(|k| k.retire_at.is_none())
        .max_by(|a, b| {
            a.active_from
                .cmp(&b.active_from)
                .then_with(|| a.kid.cmp(&b.kid))
        })
        .map(|k| k.kid.clone());
    let key = next_key(now, publish_ahead).await?;
    if !store.add_signing_key_after(&key, newest.as_deref()).await? {
        return Ok(None);
    }
    retire_all_but(store, &key, keep_old_for).await?;
    Ok(Some(key))
}

/// A new key that signs from `now + publish_ahead` (at least one JWKS max-age).
async fn next_key(now: Timestamp, publish_ahead: i64) -> Result<SigningKey, KeyError> {
    let mut key = tokio::task::spawn_blocking(move || generate(now))
        .await
        .map_err(|_| KeyError::Generate)??;
    key.active_from = now + publish_ahead.max(JWKS_MAX_AGE);
    Ok(key)
}

/// Every other key not yet retiring stays published until `keep_old_for` after `key` signs.
async fn retire_all_but(
    store: &dyn Store,
    key: &SigningKey,
    keep_old_for: i64,
) -> Result<(), KeyError> {
    for old in store.list_signing_keys().await? {
        if old.kid != key.kid && old.retire_at.is_none() {
            store
                .set_key_retire_at(&old.kid, Some(key.active_from + keep_old_for))
                .await?;
        }
    }
    Ok(())
}

/// Whether automatic rotation is due: the newest key (even one still waiting to sign) is older
/// than `rotate_after`. A key published but not yet signing is not due again.
pub fn rotation_due(keys: &[SigningKey], now: Timestamp, rotate_after: i64) -> bool {
    let newest = keys
        .iter()
        .filter(|k| k.retire_at.is_none_or(|t| t > now))
        .map(|k| k.active_from)
        .max();
    newest.is_none_or(|from| now - from >= rotate_after)
}

/// `ts` as "YYYY-MM-DD HH:MM:SS UTC", for the CLI (civil-from-days, proleptic Gregorian).
pub fn utc(ts: Timestamp) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_publishes() {
        let key = generate(1000).unwrap();
        let set = KeySet::build(std::slice::from_ref(&key), 1000).unwrap();
        let loaded = set.signer_at(1000).cloned().unwrap();
        let token = sign_with(
            &loaded,
            None,
            &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
        )
        .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let jwks: serde_json::Value = serde_json::from_str(&set.jwks_json).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kty"], "RSA");
        assert!(
            jwk.get("d").is_none(),
            "private parts must never be published"
        );
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        let key = generate(1000).unwrap();
        let set = KeySet::build(std::slice::from_ref(&key), 1000).unwrap();
        let loaded = set.signer_at(1000).cloned().unwrap();
        let token = sign_with(
            &loaded,
            Some("JWT"),
            &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
        )
        .unwrap();
        let jwks: JwkSet = serde_json::from_str(&set.jwks_json).unwrap();
        let decoding = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v).unwrap();
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        let id_token = sign_with(&loaded, None, &serde_json::json!({"sub": "x"})).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&id_token).unwrap().typ, None);
        // Change one character in the middle of the signature.
        let at = token.rfind('.').unwrap() + 100;
        let mut forged = token.clone();
        let c = if &token[at..=at] == "A" { "B" } else { "A" };
        forged.replace_range(at..=at, c);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &decoding, &v).is_err());
    }

    #[test]
    fn retired_keys_are_dropped_and_newest_signs() {
        let mut old = generate(0).unwrap();
        let new = generate(100).unwrap();
        old.retire_at = Some(500);
        let set = KeySet::build(&[old.clone(), new.clone()], 200).unwrap();
        assert_eq!(set.signer_at(200).unwrap().kid, new.kid);
        assert_eq!(set.by_kid.len(), 2);
        let later = KeySet::build(&[old, new.clone()], 600).unwrap();
        assert_eq!(later.by_kid.len(), 1);
        assert!(rotation_due(std::slice::from_ref(&new), 100 + 3600, 3600));
        assert!(!rotation_due(&[new], 100 + 10, 3600));
    }

    #[test]
    fn a_rotated_key_is_published_before_it_signs_and_the_old_one_signs_until_then() {
        let mut old = generate(0).unwrap();
        let mut next = generate(1000).unwrap();
        // As `rotate` leaves them at 1000 with publish_ahead 305 and keep_old_for 900.
        next.active_from = 1305;
        old.retire_at = Some(1305 + 900);
        let keys = [old.clone(), next.clone()];
        let set = KeySet::build(&keys, 1000).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&set.jwks_json).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "both published");
        assert_eq!(set.signer_at(1000).unwrap().kid, old.kid);
        assert_eq!(set.signer_at(1304).unwrap().kid, old.kid);
        assert_eq!(set.signer_at(1305).unwrap().kid, next.kid);
        // Rotation is not due again while the next key waits, nor right after it signs.
        assert!(!rotation_due(&keys, 1001, 3600));
        assert!(!rotation_due(&keys, 1305 + 3599, 3600));
        assert!(rotation_due(&keys, 1305 + 3600, 3600));
        // After the overlap only the new key is left.
        let later = KeySet::build(&keys, 1305 + 900).unwrap();
        assert_eq!(later.by_kid.len(), 1);
        assert_eq!(later.signer_at(1305 + 900).unwrap().kid, next.kid);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn the_jwks_cache_header_says_the_max_age_rotation_waits_for() {
        assert_eq!(
            JWKS_CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE}").as_str()
        );
    }
}
