//! Signing keys: generated on first start (RSA-2048), kept in the store, rotated on demand or by
//! age, published as JWKS. Signing and verifying go through jsonwebtoken on aws-lc-rs, off the
//! async runtime. The in-memory key set is swapped atomically when the store's keys change (a
//! `doorman keys rotate` from the CLI shows within one reload period).

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

/// One consistent view of the keys: the one that signs, and every one still published.
pub struct KeySet {
    active: Option<Arc<LoadedKey>>,
    by_kid: HashMap<String, Arc<LoadedKey>>,
    jwks_json: bytes_like::Bytes,
    /// (kid, retire_at) of the keys it was built from, to notice changes cheaply.
    fingerprint: Vec<(String, Option<Timestamp>)>,
}

mod bytes_like {
    /// Pre-serialized JWKS: cloned per request without re-encoding.
    pub type Bytes = std::sync::Arc<str>;
}

impl KeySet {
    fn build(keys: &[SigningKey], now: Timestamp) -> Result<KeySet, KeyError> {
        let mut by_kid = HashMap::new();
        let mut active: Option<(Timestamp, Arc<LoadedKey>)> = None;
        let mut fingerprint = Vec::new();
        for key in keys {
            if key.retire_at.is_some_and(|t| t <= now) {
                continue;
            }
            fingerprint.push((key.kid.clone(), key.retire_at));
            let loaded = Arc::new(load_key(key)?);
            // The newest key already in force signs; retiring keys only verify.
            if key.active_from <= now
                && key.retire_at.is_none()
                && active
                    .as_ref()
                    .is_none_or(|(from, _)| key.active_from >= *from)
            {
                active = Some((key.active_from, loaded.clone()));
            }
            by_kid.insert(key.kid.clone(), loaded);
        }
        let mut published: Vec<&Arc<LoadedKey>> = by_kid.values().collect();
        published.sort_by(|a, b| a.kid.cmp(&b.kid));
        let set = JwkSet {
            keys: published.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks_json = serde_json::to_string(&set).map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(KeySet {
            active: active.map(|(_, k)| k),
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
    /// Loads the keys from the store, creating the first one if there is none usable.
    pub async fn load(store: &dyn Store, now: Timestamp) -> Result<Keys, KeyError> {
        let mut stored = store.list_signing_keys().await?;
        let set = KeySet::build(&stored, now)?;
        let set = if set.active.is_none() {
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
        let active_kid = old.active.as_ref().map(|k| k.kid.clone());
        let set = if fingerprint == old.fingerprint {
            // Same keys; a scheduled key may have become active since.
            let rebuilt = KeySet::build(&stored, now)?;
            if rebuilt.active.as_ref().map(|k| k.kid.clone()) == active_kid {
                return Ok(false);
            }
            rebuilt
        } else {
            KeySet::build(&stored, now)?
        };
        if set.active.is_none() {
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

    pub fn active_kid(&self) -> Option<String> {
        self.snapshot().active.as_ref().map(|k| k.kid.clone())
    }

    /// Signs `claims` as an RS256 JWS with the active key's kid, off the async runtime.
    pub async fn sign<T: Serialize + Send + 'static>(
        &self,
        typ: Option<&'static str>,
        claims: T,
    ) -> Result<String, KeyError> {
        let key = self.snapshot().active.clone().ok_or(KeyError::NoKey)?;
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

/// `doorman keys rotate` and automatic rotation: a new key signs from now on; the previous ones
/// stay published for `keep_old_for` (the longest lifetime of a token they signed), then go.
pub async fn rotate(
    store: &dyn Store,
    now: Timestamp,
    keep_old_for: i64,
) -> Result<SigningKey, KeyError> {
    let key = tokio::task::spawn_blocking(move || generate(now))
        .await
        .map_err(|_| KeyError::Generate)??;
    store.add_signing_key(&key).await?;
    for old in store.list_signing_keys().await? {
        if old.kid != key.kid && old.retire_at.is_none() {
            store
                .set_key_retire_at(&old.kid, Some(now + keep_old_for))
                .await?;
        }
    }
    Ok(key)
}

/// Whether automatic rotation is due: the active key is older than `rotate_after`.
pub fn rotation_due(keys: &[SigningKey], now: Timestamp, rotate_after: i64) -> bool {
    let newest = keys
        .iter()
        .filter(|k| k.retire_at.is_none() && k.active_from <= now)
        .map(|k| k.active_from)
        .max();
    newest.is_none_or(|from| now - from >= rotate_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_publishes() {
        let key = generate(1000).unwrap();
        let set = KeySet::build(std::slice::from_ref(&key), 1000).unwrap();
        let loaded = set.active.clone().unwrap();
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
        let loaded = set.active.clone().unwrap();
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
        assert_eq!(set.active.as_ref().unwrap().kid, new.kid);
        assert_eq!(set.by_kid.len(), 2);
        let later = KeySet::build(&[old, new.clone()], 600).unwrap();
        assert_eq!(later.by_kid.len(), 1);
        assert!(rotation_due(std::slice::from_ref(&new), 100 + 3600, 3600));
        assert!(!rotation_due(&[new], 100 + 10, 3600));
    }
}
