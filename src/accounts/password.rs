//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane). Each hash
//! costs ~19 MiB and tens of milliseconds of CPU, so it runs on the blocking pool behind a
//! semaphore: a login flood queues instead of exhausting a 256 MB VM or the async runtime.
//! The queue is bounded: when `queue` verifications already wait, the next one is refused at
//! once (`HasherBusy`, a 503 with Retry-After) rather than waiting behind them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The argon2 queue is full (the same bound as verifications): try again in a moment.
    #[error("too many passwords are being hashed right now")]
    Busy,
}

/// The argon2 queue is full: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many passwords are being checked right now")]
pub struct HasherBusy;

pub struct PasswordHasher {
    params: Params,
    /// Held by the blocking work itself, so a request that goes away cannot free its permit
    /// while its hash still runs.
    permits: Arc<tokio::sync::Semaphore>,
    /// Running plus waiting verifications: `concurrency + queue` at most.
    admitted: Arc<tokio::sync::Semaphore>,
    verifications: AtomicU64,
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
    /// `concurrency` argon2 computations at once (each ~19 MiB), and at most `queue` more
    /// verifications waiting for one.
    pub fn new(
        params: Params,
        concurrency: usize,
        queue: usize,
    ) -> Result<PasswordHasher, PasswordError> {
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
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            admitted: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1) + queue)),
            verifications: AtomicU64::new(0),
            dummy: dummy.into(),
        })
    }

    /// Hashes a new password. It takes a place in the same bounded queue as verifications,
    /// or answers `Busy` at once: a flood of sign-ups or password changes cannot queue argon2
    /// work without bound. Slot and permit are held by the blocking work itself.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let slot = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let _held = (slot, permit);
            hash_blocking(&params, &password)
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
    }

    /// How many verifications were admitted to the argon2 queue since start (each one runs).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// A place in the verification queue, or `HasherBusy` at once when it is full.
    pub fn admit(&self) -> Result<Admission<'_>, HasherBusy> {
        let slot = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HasherBusy)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(Admission { hasher: self, slot })
    }

    /// `admit`, then `Admission::verify`.
    pub async fn verify(&self, phc: Option<String>, password: String) -> Result<bool, HasherBusy> {
        Ok(self.admit()?.verify(phc, password).await)
    }
}

/// A verification admitted to the queue.
pub struct Admission<'a> {
    hasher: &'a PasswordHasher,
    slot: tokio::sync::OwnedSemaphorePermit,
}

impl Admission<'_> {
    /// Verifies `password` against `phc`, or against the dummy hash when there is no user or
    /// no password, so every failure costs the same. The queue slot and the argon2 permit move
    /// into the blocking work and are released when the hash is done, not when the request
    /// goes away: dropped requests cannot run more hashes at once than the bounds allow.
    pub async fn verify(self, phc: Option<String>, password: String) -> bool {
        let Admission { hasher, slot } = self;
        let Ok(permit) = hasher.permits.clone().acquire_owned().await else {
            return false;
        };
        let params = hasher.params.clone();
        let (target, real) = match phc {
            Some(p) => (p, true),
            None => (hasher.dummy.to_string(), false),
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _held = (slot, permit);
            verify_blocking(&params, &target, &password)
        })
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
        let hasher = PasswordHasher::new(fast(), 2, 4).unwrap();
        let dummy = hasher.dummy.to_string();
        assert_eq!(hasher.verify(None, "anything".into()).await, Ok(false));
        assert_eq!(
            hasher.verify(Some(dummy), "anything".into()).await,
            Ok(false)
        );
        assert_eq!(hasher.verifications(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Arc::new(PasswordHasher::new(fast(), 1, 1).unwrap());
        // Hold the only argon2 permit, so admitted verifications wait.
        let permit = hasher.permits.acquire().await.unwrap();
        let phc = hash_blocking(&fast(), "pw").unwrap();
        let waiting = {
            let (h, phc) = (hasher.clone(), phc.clone());
            tokio::spawn(async move { h.verify(Some(phc), "pw".into()).await })
        };
        let queued = {
            let (h, phc) = (hasher.clone(), phc.clone());
            tokio::spawn(async move { h.verify(Some(phc), "pw".into()).await })
        };
        while hasher.verifications() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            hasher.verify(Some(phc.clone()), "pw".into()).await,
            Err(HasherBusy)
        );
        drop(permit);
        assert_eq!(waiting.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(true));
        assert_eq!(hasher.verify(Some(phc), "pw".into()).await, Ok(true));
    }

    #[tokio::test]
    async fn new_passwords_wait_in_the_same_bounded_queue() {
        let hasher = Arc::new(PasswordHasher::new(fast(), 1, 1).unwrap());
        let permit = hasher.permits.acquire().await.unwrap();
        let phc = hash_blocking(&fast(), "pw").unwrap();
        // One verification waiting for the argon2 permit, one new password in the queue.
        let waiting = {
            let (h, phc) = (hasher.clone(), phc.clone());
            tokio::spawn(async move { h.verify(Some(phc), "pw".into()).await })
        };
        while hasher.verifications() < 1 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let h = hasher.clone();
            tokio::spawn(async move { h.hash("new password".into()).await })
        };
        while hasher.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // Full: a further hash and a further verification are refused at once.
        assert!(matches!(
            hasher.hash("another".into()).await,
            Err(PasswordError::Busy)
        ));
        assert_eq!(
            hasher.verify(Some(phc.clone()), "pw".into()).await,
            Err(HasherBusy)
        );
        drop(permit);
        assert_eq!(waiting.await.unwrap(), Ok(true));
        let new = queued.await.unwrap().unwrap();
        assert!(verify_blocking(&fast(), &new, "new password"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_keeps_its_permit_until_the_hash_is_done() {
        // Slow enough that the request is gone long before the hash finishes.
        let slow = Params::new(8 * 1024, 8, 1, None).unwrap();
        let hasher = Arc::new(PasswordHasher::new(slow.clone(), 1, 0).unwrap());
        let phc = hash_blocking(&slow, "pw").unwrap();
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            hasher.verify(Some(phc.clone()), "pw".into()),
        )
        .await;
        assert!(dropped.is_err(), "the request went away first");
        // The abandoned hash still runs: the one place is taken until it is done.
        assert_eq!(
            hasher.verify(Some(phc.clone()), "pw".into()).await,
            Err(HasherBusy)
        );
        loop {
            if let Ok(ok) = hasher.verify(Some(phc.clone()), "pw".into()).await {
                assert!(ok);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
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
