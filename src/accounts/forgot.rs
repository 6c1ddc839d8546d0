//! "Forgot your password?": who gets a reset mail, and the limits that keep the page from
//! being a way to flood someone's mailbox. A mail goes only to an enabled local account's
//! verified email (the address compared as the store compares emails: trimmed, ASCII case
//! ignored); at most [`PER_ACCOUNT`] reset links per account per [`WINDOW`], counted in the
//! store in one statement (so replicas share the count and a parallel burst cannot overrun
//! it); and at most [`PER_IP`] requests per client IP per window, counted in this process
//! ([`ForgotLimiter`]; each replica allows that many). Each limit is reserved before the work.
//! The caller answers the same whatever the outcome. No HTTP here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;

use crate::accounts::links;
use crate::accounts::users;
use crate::secrets::{digest, random_token, to_hex};
use crate::signin::limits::IpKey;
use crate::store::{Link, LinkKind, Store, StoreResult, Timestamp, User};

/// Reset links per account per window (whoever made them: this page or an admin).
pub const PER_ACCOUNT: u32 = 3;
/// Forgot-password requests per client IP per window, per process.
pub const PER_IP: u32 = 10;
/// The window of both limits (an hour).
pub const WINDOW: i64 = 3600;

/// What a request for `email` came to (the page says the same for each).
#[derive(Debug)]
pub enum Outcome {
    /// Mail this link to the user's verified email.
    Mail {
        user: Box<User>,
        token: String,
        link: Box<Link>,
    },
    /// No enabled local account has that verified address.
    NoAccount,
    /// The account had [`PER_ACCOUNT`] reset links this hour already.
    Limited,
}

/// Looks the address up and, for an enabled local account whose verified email it is, stores
/// a new single-use reset link (24 hours) unless the account is at its limit.
pub async fn request(store: &dyn Store, email: &str, now: Timestamp) -> StoreResult<Outcome> {
    let email = email.trim();
    if users::validate_email(email).is_err() {
        return Ok(Outcome::NoAccount);
    }
    let user = match store.find_user_by_email(email).await? {
        Some(u) if !u.disabled && u.email_verified && u.password_hash.is_some() => u,
        _ => return Ok(Outcome::NoAccount),
    };
    let token = random_token();
    let link = Link {
        id: to_hex(
            &digest(&random_token())
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<u8>>(),
        ),
        token_hash: links::token_hash(&token),
        kind: LinkKind::Reset,
        groups: Vec::new(),
        email: None,
        email_verified: false,
        note: None,
        user_id: Some(user.id.clone()),
        uses: 1,
        uses_left: 1,
        created_by: "forgot-password".to_string(),
        created_at: now,
        expires_at: now.saturating_add(links::RESET_LIFETIME),
        revoked_at: None,
    };
    let since = now.saturating_sub(WINDOW - 1);
    Ok(
        if store.create_link_limited(&link, PER_ACCOUNT, since).await? {
            Outcome::Mail {
                user: Box::new(user),
                token,
                link: Box::new(link),
            }
        } else {
            Outcome::Limited
        },
    )
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: Timestamp,
    count: u32,
}

/// The per-IP limit of the forgot-password page, in this process's memory (bounded).
pub struct ForgotLimiter {
    windows: Cache<IpKey, Arc<Mutex<Window>>>,
    /// Requests being looked up after their answer was sent.
    background: Arc<tokio::sync::Semaphore>,
}

/// How many forgot-password requests are worked on after their answer at once.
pub const BACKGROUND: usize = 16;

impl Default for ForgotLimiter {
    fn default() -> Self {
        ForgotLimiter {
            windows: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(WINDOW as u64))
                .build(),
            background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND)),
        }
    }
}

impl ForgotLimiter {
    /// A place to work on a request after its answer, if one is free.
    pub fn background(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.background.clone().try_acquire_owned().ok()
    }

    /// Takes one request of `ip`'s budget: false when it is used up for this window.
    pub fn reserve(&self, ip: std::net::IpAddr, now: Timestamp) -> bool {
        let slot = self
            .windows
            .get_with(IpKey::of(ip), || Arc::new(Mutex::new(Window::default())));
        let Ok(mut w) = slot.lock() else {
            return false;
        };
        if now.saturating_sub(w.start) >= WINDOW {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        if w.count >= PER_IP {
            return false;
        }
        w.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::users::NewUser;
    use crate::store::sqlite::SqliteStore;

    const NOW: Timestamp = 1_700_000_000;

    #[test]
    fn an_ip_gets_its_budget_per_hour() {
        let l = ForgotLimiter::default();
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_IP {
            assert!(l.reserve(ip, NOW));
        }
        assert!(!l.reserve(ip, NOW + 10));
        assert!(l.reserve("192.0.2.2".parse().unwrap(), NOW), "another IP");
        assert!(l.reserve(ip, NOW + WINDOW), "a new hour");
    }

    #[tokio::test]
    async fn only_an_enabled_local_accounts_verified_email_and_three_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let make = |name: &str, email: &str, verified: bool| NewUser {
            username: name.into(),
            email: Some(email.into()),
            email_verified: verified,
            password_hash: Some("hash".into()),
            ..Default::default()
        };
        users::create(&s, make("carol", "Carol@Example.com", true), NOW)
            .await
            .unwrap();
        users::create(&s, make("dave", "dave@example.com", false), NOW)
            .await
            .unwrap();
        assert!(matches!(
            request(&s, "dave@example.com", NOW).await.unwrap(),
            Outcome::NoAccount
        ));
        assert!(matches!(
            request(&s, "nobody@example.com", NOW).await.unwrap(),
            Outcome::NoAccount
        ));
        for _ in 0..PER_ACCOUNT {
            match request(&s, " carol@EXAMPLE.com ", NOW).await.unwrap() {
                Outcome::Mail { user, token, link } => {
                    assert_eq!(user.username, "carol");
                    assert_eq!(link.token_hash, links::token_hash(&token));
                    assert_eq!(link.expires_at, NOW + 86_400);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            request(&s, "carol@example.com", NOW + 60).await.unwrap(),
            Outcome::Limited
        ));
        assert!(matches!(
            request(&s, "carol@example.com", NOW + WINDOW)
                .await
                .unwrap(),
            Outcome::Mail { .. }
        ));
        users::set_disabled(&s, "carol", true, NOW).await.unwrap();
        assert!(matches!(
            request(&s, "carol@example.com", NOW + 2 * WINDOW)
                .await
                .unwrap(),
            Outcome::NoAccount
        ));
    }
}
