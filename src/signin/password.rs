//! The password step: look the account up, reserve the sign-in limits, run argon2 (off the
//! runtime, bounded), settle the limits. No HTTP: the handler renders what this returns.

use std::net::IpAddr;

use crate::accounts::lockout::{Lockout, Reservation};
use crate::accounts::PasswordHasher;
use crate::clock::Clock;
use crate::store::{Store, StoreResult, User};

use super::limits::{IpKey, LimitReason, Limited, SignInLimiter};

/// What the password step needs.
pub struct Deps<'a> {
    pub store: &'a dyn Store,
    pub hasher: &'a PasswordHasher,
    pub limiter: &'a SignInLimiter,
    pub lockout: &'a Lockout,
    pub clock: &'a dyn Clock,
}

/// The answer to one password attempt.
pub enum Checked {
    /// The password is right and the account (returned beside) may sign in. The lockout
    /// reservation is the caller's to settle: `succeeded` when the sign-in is complete (which
    /// resets the account's failures), or dropped (one failure) when a second factor is still
    /// due, so a stolen password cannot reset the count of wrong codes.
    Verified(Reservation),
    /// Wrong username or password (the two are never told apart), or a disabled account.
    Wrong,
    /// Refused before any hashing: wait `retry_after` seconds.
    Limited(Limited),
    /// The argon2 queue is full: try again in a moment.
    Busy,
}

/// The longest username or email and password doorman reads; longer is simply wrong.
const MAX_USERNAME: usize = 254;
const MAX_PASSWORD: usize = 1024;

/// A username (or email) and password doorman reads at all: anything else is simply wrong,
/// not counted and not logged.
pub fn well_formed(username: &str, password: &str) -> bool {
    let username = username.trim();
    !username.is_empty() && username.len() <= MAX_USERNAME && password.len() <= MAX_PASSWORD
}

/// What the log may say about who tried: a name typed into the username field may be a
/// password, so only an existing account is named.
pub fn who(user: Option<&User>) -> &str {
    user.map_or("unknown", |u| u.username.as_str())
}

/// Checks `password` for `username` (or email) from `ip`. The limits are reserved before any
/// argon2 work, so they hold however many requests arrive at once; argon2 runs even for
/// unknown users, so the answer takes the same time (no enumeration).
pub async fn check(
    deps: &Deps<'_>,
    ip: IpAddr,
    username: &str,
    password: String,
) -> StoreResult<(Checked, Option<User>)> {
    if !well_formed(username, &password) {
        return Ok((Checked::Wrong, None));
    }
    let username = username.trim();
    let user = if username.contains('@') {
        deps.store.find_user_by_email(username).await?
    } else {
        deps.store.find_user_by_username(username).await?
    };
    // The per-account budget is keyed on the account, so its username and its email share
    // one budget; unknown names are counted as typed.
    let account = user
        .as_ref()
        .map(|u| u.id.clone())
        .unwrap_or_else(|| username.to_lowercase());
    let mut attempt = match deps.limiter.attempt(ip, deps.clock).await {
        Ok(attempt) => attempt,
        Err(limited) => return Ok((Checked::Limited(limited), user)),
    };
    // The per-account lockout (per account and IP, then per account), in the store: counted
    // as a failure now, before any hashing, so parallel attempts cannot overrun it.
    let now = deps.clock.now();
    let reservation = match deps
        .lockout
        .reserve(&account, &IpKey::of(ip).to_string(), now)
        .await?
    {
        Ok(r) => r,
        Err(retry_after) => {
            let limited = Limited {
                retry_after,
                reason: LimitReason::Failures,
            };
            return Ok((Checked::Limited(limited), user));
        }
    };
    let hash = user
        .as_ref()
        .filter(|u| !u.disabled)
        .and_then(|u| u.password_hash.clone());
    let Ok(admission) = deps.hasher.admit() else {
        // Not checked: the attempt's slot goes back unused when `attempt` drops, and the
        // lockout's provisional failure is taken back.
        reservation.unused(now).await?;
        return Ok((Checked::Busy, user));
    };
    // From here a request that goes away counts as a failure: its hash runs to the end.
    attempt.checking();
    let ok = admission.verify(hash, password).await;
    match (ok, user) {
        (true, Some(u)) => {
            attempt.succeeded(deps.clock.now_ms());
            Ok((Checked::Verified(reservation), Some(u)))
        }
        (_, user) => {
            attempt.failed(deps.clock.now_ms());
            // The reservation stays counted: a failure.
            drop(reservation);
            Ok((Checked::Wrong, user))
        }
    }
}

/// The sentence a refused attempt shows.
pub fn limited_text(limited: &Limited) -> String {
    match limited.reason {
        LimitReason::Busy => format!(
            "Too many sign-in attempts are being checked right now. {}",
            wait_text(limited.retry_after)
        ),
        LimitReason::Failures | LimitReason::Rate => {
            format!(
                "Too many failed attempts. {}",
                wait_text(limited.retry_after)
            )
        }
    }
}

/// "Wait 1 second and try again." / "Wait 5 seconds and try again."
pub fn wait_text(seconds: i64) -> String {
    let unit = if seconds == 1 { "second" } else { "seconds" };
    format!("Wait {seconds} {unit} and try again.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::sqlite::SqliteStore;

    async fn setup() -> (
        tempfile::TempDir,
        std::sync::Arc<SqliteStore>,
        PasswordHasher,
        SignInLimiter,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let config = crate::config::defaults();
        let fast = argon2::Params::new(256, 1, 1, None).unwrap();
        let hasher = PasswordHasher::new(fast, 2, 4).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        let user = User {
            id: "u1".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec![],
            password_hash: Some(hash),
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        };
        store.create_user(&user).await.unwrap();
        let limiter = SignInLimiter::new(&config.login);
        (dir, store, hasher, limiter)
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_disabled() {
        let (_d, store, hasher, limiter) = setup().await;
        let clock = ManualClock::default();
        clock.freeze();
        let lockout = Lockout::new(store.clone(), policy());
        let deps = Deps {
            store: &*store,
            hasher: &hasher,
            limiter: &limiter,
            lockout: &lockout,
            clock: &clock,
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (c, u) = check(&deps, ip, "alice", "correct horse".into())
            .await
            .unwrap();
        let Checked::Verified(r) = c else {
            panic!("the right password")
        };
        assert_eq!(u.unwrap().id, "u1");
        r.succeeded(clock.now()).await.unwrap();
        let (c, _) = check(&deps, ip, " ALICE@example.com ", "correct horse".into())
            .await
            .unwrap();
        let Checked::Verified(r) = c else {
            panic!("email, any case, trimmed")
        };
        r.succeeded(clock.now()).await.unwrap();
        let (c, u) = check(&deps, ip, "alice", "wrong".into()).await.unwrap();
        assert!(matches!(c, Checked::Wrong) && u.is_some());
        let (c, u) = check(&deps, ip, "nobody", "correct horse".into())
            .await
            .unwrap();
        assert!(matches!(c, Checked::Wrong) && u.is_none());
        let (c, _) = check(&deps, ip, "", "x".into()).await.unwrap();
        assert!(matches!(c, Checked::Wrong));
        let mut u = store.find_user_by_username("alice").await.unwrap().unwrap();
        u.disabled = true;
        store.update_user(&u).await.unwrap();
        let (c, _) = check(&deps, ip, "alice", "correct horse".into())
            .await
            .unwrap();
        assert!(
            matches!(c, Checked::Wrong),
            "a disabled account never signs in"
        );
    }

    fn policy() -> crate::accounts::lockout::LockoutPolicy {
        crate::accounts::lockout::LockoutPolicy {
            per_pair: 3,
            per_account: 5,
            window: 300,
            base: 30,
            max: 120,
        }
    }

    #[tokio::test]
    async fn a_locked_account_refuses_even_the_right_password_until_the_delay_passes() {
        let (_d, store, hasher, limiter) = setup().await;
        let clock = ManualClock::default();
        clock.freeze();
        let lockout = Lockout::new(store.clone(), policy());
        let deps = Deps {
            store: &*store,
            hasher: &hasher,
            limiter: &limiter,
            lockout: &lockout,
            clock: &clock,
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            let (c, _) = check(&deps, ip, "alice", "wrong".into()).await.unwrap();
            assert!(matches!(c, Checked::Wrong));
        }
        let before = hasher.verifications();
        let (c, _) = check(&deps, ip, "alice", "correct horse".into())
            .await
            .unwrap();
        match c {
            Checked::Limited(l) => assert_eq!(l.retry_after, 30),
            _ => panic!("the right password is not checked while locked"),
        }
        assert_eq!(hasher.verifications(), before, "refused before argon2");
        // Another IP is not locked below the per-account limit.
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let (c, _) = check(&deps, other, "alice", "correct horse".into())
            .await
            .unwrap();
        let Checked::Verified(r) = c else {
            panic!("another IP signs in")
        };
        r.succeeded(clock.now()).await.unwrap();
        clock.advance(30);
        let (c, _) = check(&deps, ip, "alice", "correct horse".into())
            .await
            .unwrap();
        let Checked::Verified(r) = c else {
            panic!("the delay has passed")
        };
        r.succeeded(clock.now()).await.unwrap();
    }

    #[test]
    fn wait_texts() {
        assert_eq!(wait_text(1), "Wait 1 second and try again.");
        assert_eq!(wait_text(30), "Wait 30 seconds and try again.");
    }
}
