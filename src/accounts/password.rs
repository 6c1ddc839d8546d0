//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane). Each hash
//! costs ~19 MiB and tens of milliseconds of CPU, so it runs on the blocking pool behind a
//! semaphore: a login flood queues instead of exhausting a 256 MB VM or the async runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub struct PasswordHasher {
    params: Params,
    permits: tokio::sync::Semaphore,
    /// A real hash with the same parameters: verified against when the user does not exist,
    /// so the answer takes the same time either way (no user enumeration by timing).
    dummy: Arc<str>,
}

/// An argon2id hash (OWASP parameters) of a password no one has: verifying against it costs
/// exactly what a real verification costs. A constant, so start-up computes nothing.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZG9vcm1hbi1kdW1teS1zYQ$Pdqawa5JpY+eV9G0S8JcoFTqaeYUymNs6bt+vgl/39Q";

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

pub fn owasp_params() -> Result<Params, PasswordError> {
    Params::new(19 * 1024, 2, 1, None).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Hashes synchronously (CLI and blocking contexts).
pub fn hash_blocking(params: &Params, password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies synchronously. A malformed stored hash verifies as false.
pub fn verify_blocking(params: &Params, phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        // The stored hash carries its own parameters; `params` only matters for new hashes.
        Ok(parsed) => argon(params)
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl PasswordHasher {
    /// `concurrency` argon2 computations at once (each ~19 MiB).
    pub fn new(params: Params, concurrency: usize) -> Result<PasswordHasher, PasswordError> {
        // With other parameters (tests), a dummy of those parameters keeps the timing equal.
        let owasp = owasp_params()?;
        let same = (params.m_cost(), params.t_cost(), params.p_cost())
            == (owasp.m_cost(), owasp.t_cost(), owasp.p_cost());
        let dummy = if same {
            DUMMY_HASH.to_string()
        } else {
            hash_blocking(&params, &crate::secrets::random_token())?
        };
        Ok(PasswordHasher {
            params,
            permits: tokio::sync::Semaphore::new(concurrency.max(1)),
            dummy: dummy.into(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no user or
    /// no password, so every failure costs the same.
    pub async fn verify(&self, phc: Option<String>, password: String) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let params = self.params.clone();
        let (target, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy.to_string(), false),
        };
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&params, &target, &password))
            .await
            .unwrap_or(false);
        ok && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Params {
        Params::new(256, 1, 1, None).unwrap()
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_blocking(&fast(), "correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_blocking(&fast(), &h, "correct horse"));
        assert!(!verify_blocking(&fast(), &h, "wrong"));
        assert!(!verify_blocking(&fast(), "not a hash", "x"));
    }

    #[tokio::test]
    async fn missing_user_never_verifies() {
        let hasher = PasswordHasher::new(fast(), 2).unwrap();
        let dummy = hasher.dummy.to_string();
        assert!(!hasher.verify(None, "anything".into()).await);
        assert!(!hasher.verify(Some(dummy), "anything".into()).await);
    }

    #[test]
    fn dummy_hash_has_the_owasp_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let (p, o) = (Params::try_from(&parsed).unwrap(), owasp_params().unwrap());
        assert_eq!(
            (p.m_cost(), p.t_cost(), p.p_cost()),
            (o.m_cost(), o.t_cost(), o.p_cost())
        );
        assert!(!verify_blocking(&owasp_params().unwrap(), DUMMY_HASH, ""));
    }

    #[test]
    fn owasp_parameters() {
        let p = owasp_params().unwrap();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19 * 1024, 2, 1));
    }
}
