//! The SSO browser session: a random id in the `doorman_session` cookie, stored as its hash
//! with idle and absolute lifetimes. Also the browser-binding cookie that ties pending flows
//! and their CSRF tokens to one browser. No HTTP types here: cookies are built as strings.
//!
//! Cookie names depend on the issuer (`CookieNames::of`): on https, `__Host-` for the host-only
//! cookies when the issuer has no path (a sibling subdomain cannot set or shadow them), else
//! `__Secure-`, and `__Secure-doorman_fa` (it carries `Domain=`, which `__Host-` forbids); on
//! http the plain names, because browsers drop prefixed cookies that are not `Secure`.

use crate::config::Config;
use crate::secrets::{digest, random_token};
use crate::store::{Session, Store, StoreError, Timestamp, User};

/// The cookie names for one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    /// The SSO session.
    pub session: &'static str,
    /// Binds a pending sign-in (and its CSRF token) to the browser that started it.
    pub browser: &'static str,
    /// The forward-auth cookie on `[session] cookie_domain`: answers forward-auth checks only.
    pub forward_auth: &'static str,
}

impl CookieNames {
    pub fn of(config: &Config) -> CookieNames {
        let https = config.issuer.scheme() == "https";
        let pathless = matches!(config.issuer.path(), "" | "/");
        match (https, pathless) {
            (true, true) => CookieNames {
                session: "__Host-doorman_session",
                browser: "__Host-doorman_csrf",
                forward_auth: "__Secure-doorman_fa",
            },
            (true, false) => CookieNames {
                session: "__Secure-doorman_session",
                browser: "__Secure-doorman_csrf",
                forward_auth: "__Secure-doorman_fa",
            },
            (false, _) => CookieNames {
                session: "doorman_session",
                browser: "doorman_csrf",
                forward_auth: "doorman_fa",
            },
        }
    }
}

/// last_seen_at is written at most this often, so an active session costs no write per request.
const TOUCH_EVERY: i64 = 60;

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Where a session is started from, for the user's own list of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The longest User-Agent kept with a session.
const MAX_USER_AGENT: usize = 200;

impl SessionMeta {
    pub fn new(ip: std::net::IpAddr, user_agent: Option<&str>) -> SessionMeta {
        SessionMeta {
            ip: Some(ip.to_string()),
            user_agent: user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
        }
    }
}

/// Starts a session for `user`; returns the cookie value (the only copy of the id).
pub async fn start(
    store: &dyn Store,
    config: &Config,
    user: &User,
    amr: Vec<String>,
    meta: &SessionMeta,
    sid: Option<String>,
    now: Timestamp,
) -> Result<(String, Session), StoreError> {
    let id = random_token();
    // A new public sid, unless the same user's session in this browser hands its own on.
    let sid = sid.unwrap_or_else(|| crate::secrets::random_id(16));
    let session = Session {
        id_hash: digest(&id),
        user_id: user.id.clone(),
        auth_time: now,
        amr,
        created_at: now,
        last_seen_at: now,
        expires_at: now + secs(config.session.max_lifetime),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        sid: Some(sid),
    };
    store.create_session(&session).await?;
    store.record_login(&user.id, now).await?;
    Ok((id, session))
}

/// The live session behind a cookie value with its user, or None (unknown, expired, idle too
/// long, user disabled or gone). Keeps the idle clock running.
pub async fn lookup(
    store: &dyn Store,
    config: &Config,
    cookie: &str,
    now: Timestamp,
) -> Result<Option<(Session, User)>, StoreError> {
    lookup_hash(store, config, &digest(cookie), now).await
}

/// As `lookup`, for the SSO session with this id hash.
pub async fn lookup_hash(
    store: &dyn Store,
    config: &Config,
    hash: &crate::store::Hash,
    now: Timestamp,
) -> Result<Option<(Session, User)>, StoreError> {
    let hash = *hash;
    let Some(session) = store.get_session(&hash, now).await? else {
        return Ok(None);
    };
    if now - session.last_seen_at > secs(config.session.idle_timeout) {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    let user = match store.get_user(&session.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => return Ok(None),
    };
    if now - session.last_seen_at >= TOUCH_EVERY {
        store.touch_session(&hash, now).await?;
    }
    Ok(Some((session, user)))
}

pub async fn end(store: &dyn Store, cookie: &str) -> Result<(), StoreError> {
    store.delete_session(&digest(cookie)).await
}

/// Cookie attributes shared by doorman's cookies: host-only, HttpOnly, Lax, scoped to the
/// issuer's path, Secure when the issuer is https.
pub fn cookie(config: &Config, name: &str, value: &str, max_age: Option<i64>) -> String {
    let path = match config.issuer.path() {
        "" | "/" => "/".to_string(),
        p => p.trim_end_matches('/').to_string(),
    };
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if config.issuer.scheme() == "https" {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// A forward-auth cookie for the SSO session `session`, when `[session] cookie_domain` is set:
/// its own random id, on the shared domain, so app hosts send it with their proxies' checks.
pub async fn start_forward_auth(
    store: &dyn Store,
    config: &Config,
    session: &Session,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let Some(domain) = &config.session.cookie_domain else {
        return Ok(None);
    };
    let id = random_token();
    store
        .create_forward_auth_session(&digest(&id), &session.id_hash, now)
        .await?;
    let mut c = format!(
        "{}={id}; Domain={domain}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        CookieNames::of(config).forward_auth,
        (session.expires_at - now).max(0)
    );
    if config.issuer.scheme() == "https" {
        c.push_str("; Secure");
    }
    Ok(Some(c))
}

/// The SSO session (and user) behind a forward-auth cookie, if live.
pub async fn lookup_forward_auth(
    store: &dyn Store,
    config: &Config,
    cookie: &str,
    now: Timestamp,
) -> Result<Option<(Session, User)>, StoreError> {
    match store.forward_auth_parent(&digest(cookie)).await? {
        Some(parent) => lookup_hash(store, config, &parent, now).await,
        None => Ok(None),
    }
}

pub fn clear_forward_auth_cookie(config: &Config) -> Option<String> {
    let domain = config.session.cookie_domain.as_ref()?;
    let mut c = format!(
        "{}=; Domain={domain}; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        CookieNames::of(config).forward_auth
    );
    // Browsers ignore a `__Secure-` cookie, even one that clears, without `Secure`.
    if config.issuer.scheme() == "https" {
        c.push_str("; Secure");
    }
    Some(c)
}

pub fn session_cookie(config: &Config, value: &str) -> String {
    cookie(
        config,
        CookieNames::of(config).session,
        value,
        Some(secs(config.session.max_lifetime)),
    )
}

pub fn clear_cookie(config: &Config, name: &str) -> String {
    cookie(config, name, "", Some(0))
}

/// Reads one cookie from a `Cookie` header value.
pub fn read_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies() {
        let h = "a=1; doorman_session=abc; b=2";
        assert_eq!(read_cookie(h, "doorman_session"), Some("abc"));
        assert_eq!(read_cookie(h, "c"), None);
        assert_eq!(read_cookie("doorman_session=", "doorman_session"), None);
    }

    fn config(issuer: &str) -> Config {
        let mut c = crate::config::defaults();
        c.issuer = url::Url::parse(issuer).unwrap();
        c.session.cookie_domain = Some("example.com".into());
        c
    }

    #[test]
    fn prefixed_names_on_https_only() {
        let host = config("https://id.example.com");
        let n = CookieNames::of(&host);
        assert_eq!(
            (n.session, n.browser, n.forward_auth),
            (
                "__Host-doorman_session",
                "__Host-doorman_csrf",
                "__Secure-doorman_fa"
            )
        );
        let c = session_cookie(&host, "v");
        assert!(
            c.starts_with("__Host-doorman_session=v; Path=/;") && c.contains("; Secure"),
            "{c}"
        );
        let cleared = clear_forward_auth_cookie(&host).unwrap();
        assert!(
            cleared.starts_with("__Secure-doorman_fa=;") && cleared.contains("; Secure"),
            "{cleared}"
        );
        let path = config("https://example.com/auth");
        let n = CookieNames::of(&path);
        assert_eq!(
            (n.session, n.browser),
            ("__Secure-doorman_session", "__Secure-doorman_csrf")
        );
        let plain = config("http://127.0.0.1:8080");
        let n = CookieNames::of(&plain);
        assert_eq!(
            (n.session, n.browser, n.forward_auth),
            ("doorman_session", "doorman_csrf", "doorman_fa")
        );
    }
}
