//! Forward-auth: reverse proxies ask "may this request through, and who is it?".
//! `/forward-auth` speaks Traefik's and Caddy's dialect (X-Forwarded-*; unauthenticated → 302 to
//! the login page, or 401 for XHR / non-HTML), `/auth-request` nginx's (X-Original-*;
//! unauthenticated → 401 with Location, for `error_page 401 =302`). Proxy headers are believed
//! only from `trusted_proxies`. Identity comes from a Cloudflare Access token (header, then
//! cookie) or doorman's own session (the `doorman_fa` cookie on the shared domain, or the SSO
//! cookie on doorman's own host). Every answer carries the four Remote-* headers, empty when
//! unknown, so a client-sent copy can never reach an app through a proxy that copies only what
//! it gets. The path is judged in one canonical form (`canonical`); a path an app could read
//! two ways is refused (403), and a proxy header that arrives twice with different values (or
//! comma-joined) is refused with 400, never resolved by picking one (nginx turns that 400 into
//! a 500: the request is still refused). No input makes this panic or answer 500.

pub mod canonical;
pub mod cloudflare;
pub mod rules;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{Map, Value};

use crate::session;
use crate::state::AppState;
use crate::store::User;
use crate::web::{Cookies, PeerIp};
use canonical::CanonicalPath;
use cloudflare::CfIdentity;
use rules::{Decision, Principal};

pub mod paths {
    pub const FORWARD_AUTH: &str = "/forward-auth";
    pub const AUTH_REQUEST: &str = "/auth-request";
}

pub const CF_HEADER: &str = "cf-access-jwt-assertion";
pub const CF_COOKIE: &str = "CF_Authorization";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::FORWARD_AUTH, any(forward_auth))
        .route(paths::AUTH_REQUEST, any(auth_request))
}

/// The request the proxy is asking about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: String,
    pub scheme: String,
    pub host: String,
    /// Path and query, as the proxy sent them (for the return address).
    pub uri: String,
    /// The path in canonical form: what the rules judge.
    pub path: CanonicalPath,
}

impl Target {
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.uri)
    }
    /// The host as rules and cookies see it (proxies add ports, some a trailing dot).
    fn host_only(&self) -> String {
        canonical::canonical_host(&self.host)
    }
}

/// Why a proxy's description of the request is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Missing or malformed: 403 (nothing to allow).
    Invalid(&'static str),
    /// A path an upstream could read two ways: 403, logged.
    Ambiguous(canonical::Refusal),
    /// A proxy header that arrived twice with different values, or two values joined by a
    /// comma: 400, logged. A proxy that appends instead of replacing would let the client
    /// choose.
    Repeated(&'static str),
}

impl TargetError {
    fn status(&self) -> StatusCode {
        match self {
            TargetError::Repeated(_) => StatusCode::BAD_REQUEST,
            TargetError::Invalid(_) | TargetError::Ambiguous(_) => StatusCode::FORBIDDEN,
        }
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The one value of a proxy header: refused when it is not text, or arrives twice with
/// different values, or carries a comma-joined list (any comma, for `no_commas` headers whose
/// values never contain one: host, proto, method).
fn proxy_header<'a>(
    h: &'a HeaderMap,
    name: &'static str,
    no_commas: bool,
) -> Result<Option<&'a str>, TargetError> {
    let mut found: Option<&str> = None;
    for v in h.get_all(name) {
        let v = v.to_str().map_err(|_| TargetError::Invalid(name))?.trim();
        if v.is_empty() {
            continue;
        }
        // ", " cannot occur in a URL (a raw space is not allowed), so it means two values.
        if (no_commas && v.contains(',')) || v.contains(", ") {
            return Err(TargetError::Repeated(name));
        }
        match found {
            Some(f) if f != v => return Err(TargetError::Repeated(name)),
            _ => found = Some(v),
        }
    }
    Ok(found)
}

fn method_of(h: &HeaderMap, name: &'static str) -> Result<String, TargetError> {
    let m = proxy_header(h, name, true)?.unwrap_or("GET");
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        return Err(TargetError::Invalid(name));
    }
    Ok(m.to_ascii_uppercase())
}

/// Traefik/Caddy: X-Forwarded-Method/-Proto/-Host/-Uri.
pub fn target_from_forwarded(h: &HeaderMap) -> Result<Target, TargetError> {
    let host = proxy_header(h, "x-forwarded-host", true)?
        .ok_or(TargetError::Invalid("x-forwarded-host"))?
        .to_string();
    let scheme = proxy_header(h, "x-forwarded-proto", true)?
        .unwrap_or("https")
        .to_ascii_lowercase();
    let uri = proxy_header(h, "x-forwarded-uri", false)?
        .ok_or(TargetError::Invalid("x-forwarded-uri"))?
        .to_string();
    let method = method_of(h, "x-forwarded-method")?;
    build(method, scheme, host, uri)
}

/// nginx: X-Original-URL and X-Original-Method. The URL is split by hand, not parsed with a
/// URL library: a WHATWG parser rewrites `\` to `/` and resolves dot segments, and the rules
/// must see the path as the proxy received it before canonicalising it themselves.
pub fn target_from_original(h: &HeaderMap) -> Result<Target, TargetError> {
    let url =
        proxy_header(h, "x-original-url", false)?.ok_or(TargetError::Invalid("x-original-url"))?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(TargetError::Invalid("x-original-url"))?;
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (host, path) = rest
        .split_at_checked(end)
        .ok_or(TargetError::Invalid("x-original-url"))?;
    let uri = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let method = method_of(h, "x-original-method")?;
    build(method, scheme.to_ascii_lowercase(), host.to_string(), uri)
}

fn build(method: String, scheme: String, host: String, uri: String) -> Result<Target, TargetError> {
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(TargetError::Invalid("host"));
    }
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(TargetError::Invalid("scheme"));
    }
    if uri.len() > 8192 {
        return Err(TargetError::Invalid("uri"));
    }
    let raw_path = uri.split('?').next().unwrap_or_default();
    let path = canonical::canonical_path(raw_path).map_err(TargetError::Ambiguous)?;
    if uri.chars().any(char::is_control) {
        return Err(TargetError::Ambiguous(canonical::Refusal::Control));
    }
    Ok(Target {
        method,
        scheme,
        host,
        uri,
        path,
    })
}

/// Who the request comes from, once authenticated.
struct Authenticated {
    principal: Principal,
    claims: Map<String, Value>,
}

/// An email counts (for `users = [...]` rules, `Remote-Email` and claim headers) only when it
/// is verified: an unverified one may be anybody's.
fn principal_of_user(user: &User) -> (Principal, Map<String, Value>) {
    let mut claims = crate::oidc::claims::profile_claims(user, "", true);
    claims.insert("sub".into(), Value::String(user.id.clone()));
    let email = user.email.clone().filter(|_| user.email_verified);
    if email.is_none() {
        claims.remove("email");
        claims.remove("email_verified");
    }
    let principal = Principal {
        user: user.username.clone(),
        email: email.unwrap_or_default(),
        name: user.name.clone().unwrap_or_default(),
        groups: user.groups.clone(),
    };
    (principal, claims)
}

enum Identify {
    Known(Box<Authenticated>),
    Anonymous,
    /// A token was presented and is invalid: 401, no redirect.
    Rejected(String),
    /// A valid token for an account doorman has shut (disabled, or access withdrawn): 403.
    Refused(String),
}

static UNTRUSTED_LOGGED: AtomicBool = AtomicBool::new(false);

async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    cookies: &Cookies,
    target: &Target,
) -> Result<Identify, crate::store::StoreError> {
    let now = state.now();
    // Without [forward_auth.cloudflare], Access tokens mean nothing here: a stray cookie from
    // another site must not lock anyone out.
    if let Some(verifier) = &state.cloudflare {
        // A header that is present but not text is a bad token, not an absent one.
        if headers.get(CF_HEADER).is_some_and(|v| v.to_str().is_err()) {
            return Ok(Identify::Rejected(
                "the Cf-Access-Jwt-Assertion header is not text".into(),
            ));
        }
        if let Some(token) = header_str(headers, CF_HEADER) {
            // Cloudflare put it there: it is the identity, valid or not.
            return match verifier.verify(token, &target.host_only(), now).await {
                Ok(id) => from_cloudflare(state, &id, now).await,
                Err(e) => Ok(Identify::Rejected(e.to_string())),
            };
        }
        if let Some(token) = cookies.get(CF_COOKIE) {
            // The cookie is not guaranteed to be Access's own for this app (it may be stale, or
            // another app's): a valid one counts, an invalid one gives way to doorman's cookies.
            match verifier.verify(token, &target.host_only(), now).await {
                Ok(id) => return from_cloudflare(state, &id, now).await,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a CF_Authorization cookie that does not verify")
                }
            }
        }
    }
    let mut live = None;
    if let Some(c) = cookies.get(session::CookieNames::of(&state.config).forward_auth) {
        live = session::lookup_forward_auth(&*state.store, &state.config, c, now).await?;
    }
    if live.is_none() {
        if let Some(c) = cookies.get(session::CookieNames::of(&state.config).session) {
            live = session::lookup(&*state.store, &state.config, c, now).await?;
        }
    }
    if let Some((session, user)) = live {
        if state.provider.still_allowed(&user, &session.amr, now).await {
            let (principal, claims) = principal_of_user(&user);
            return Ok(Identify::Known(Box::new(Authenticated {
                principal,
                claims,
            })));
        }
    }
    Ok(Identify::Anonymous)
}

/// A Cloudflare identity becomes the local (or Plex) user with that verified email, so group
/// rules apply; otherwise it carries only its email.
async fn from_cloudflare(
    state: &AppState,
    id: &CfIdentity,
    now: crate::store::Timestamp,
) -> Result<Identify, crate::store::StoreError> {
    if let Some(client_id) = &id.service_token {
        let principal = Principal {
            user: client_id.clone(),
            ..Principal::default()
        };
        return Ok(Identify::Known(Box::new(Authenticated {
            principal,
            claims: id.claims.clone(),
        })));
    }
    if let Some(user) = state.store.find_user_by_email(&id.email).await? {
        if user.email_verified {
            // Access still vouches for the email, but doorman has shut this account: a
            // disabled user, or a Plex user whose share was removed, stays out.
            let plex = [crate::plex::AMR.to_string()];
            if user.disabled || !state.provider.still_allowed(&user, &plex, now).await {
                return Ok(Identify::Refused(format!(
                    "the account {} is disabled or no longer allowed",
                    user.username
                )));
            }
            let (principal, mut claims) = principal_of_user(&user);
            for (k, v) in &id.claims {
                claims.entry(k.clone()).or_insert_with(|| v.clone());
            }
            return Ok(Identify::Known(Box::new(Authenticated {
                principal,
                claims,
            })));
        }
    }
    let principal = Principal {
        user: id.email.clone(),
        email: id.email.clone(),
        ..Principal::default()
    };
    Ok(Identify::Known(Box::new(Authenticated {
        principal,
        claims: id.claims.clone(),
    })))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .or_else(|_| HeaderValue::from_bytes(s.as_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The identity headers; all four always present.
fn identity_headers(state: &AppState, who: Option<&Authenticated>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let p = who.map(|a| a.principal.clone()).unwrap_or_default();
    h.insert("remote-user", header_value(&p.user));
    h.insert("remote-email", header_value(&p.email));
    h.insert("remote-name", header_value(&p.name));
    h.insert("remote-groups", header_value(&p.groups.join(",")));
    for (name, claim) in &state.config.forward_auth.headers {
        let value = who.and_then(|a| a.claims.get(claim)).map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => String::new(),
            other => other.to_string(),
        });
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            h.insert(n, header_value(&value.unwrap_or_default()));
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Traefik, Caddy.
    ForwardAuth,
    /// nginx auth_request.
    AuthRequest,
}

fn wants_html(headers: &HeaderMap) -> bool {
    let xhr = header_str(headers, "x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let html = header_str(headers, "accept").is_some_and(|a| a.contains("text/html"));
    html && !xhr
}

async fn check(
    state: AppState,
    peer: Option<IpAddr>,
    headers: HeaderMap,
    cookies: Cookies,
    dialect: Dialect,
) -> Response {
    let trusted =
        peer.is_some_and(|ip| state.config.trusted_proxies.iter().any(|n| n.contains(&ip)));
    if !trusted {
        if !UNTRUSTED_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(peer = ?peer, "forward-auth request from an address outside trusted_proxies: its X-Forwarded-*/X-Original-* headers are ignored (logged once)");
        }
        // Without a trustworthy description of the request there is nothing to allow.
        return (StatusCode::FORBIDDEN, identity_headers(&state, None)).into_response();
    }
    let target = match dialect {
        Dialect::ForwardAuth => target_from_forwarded(&headers),
        Dialect::AuthRequest => target_from_original(&headers),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            match &e {
                TargetError::Invalid(what) => {
                    tracing::debug!(what, "forward-auth: no usable description of the request")
                }
                TargetError::Ambiguous(why) => {
                    let uri = header_str(&headers, "x-forwarded-uri")
                        .or_else(|| header_str(&headers, "x-original-url"))
                        .unwrap_or_default();
                    tracing::warn!(target: "audit", event = "forward_auth", uri = ?uri, reason = %why, outcome = "refused", "forward-auth: a path an app could read two ways is refused");
                }
                TargetError::Repeated(name) => {
                    tracing::warn!(target: "audit", event = "forward_auth", header = name, outcome = "refused", "forward-auth: a proxy header arrived twice (or with two values) and is refused: make the proxy replace it, not append");
                }
            }
            return (e.status(), identity_headers(&state, None)).into_response();
        }
    };
    let identity = match identify(&state, &headers, &cookies, &target).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "forward-auth: the store did not answer");
            // 401, never 500: nginx would turn a 500 into an error page for every app.
            return (StatusCode::UNAUTHORIZED, identity_headers(&state, None)).into_response();
        }
    };
    let who = match identity {
        Identify::Rejected(reason) => {
            tracing::warn!(host = %target.host_only(), reason = %reason, "forward-auth: token refused");
            let mut h = identity_headers(&state, None);
            if dialect == Dialect::AuthRequest {
                // nginx turns every 401 into a redirect to Location: never leave it empty.
                h.insert(header::LOCATION, header_value(&login_url(&state, &target)));
            }
            return (StatusCode::UNAUTHORIZED, h).into_response();
        }
        Identify::Refused(reason) => {
            tracing::warn!(target: "audit", event = "forward_auth", host = %target.host_only(), reason = %reason, outcome = "denied");
            return (StatusCode::FORBIDDEN, identity_headers(&state, None)).into_response();
        }
        Identify::Known(a) => Some(a),
        Identify::Anonymous => None,
    };
    let decision = rules::decide_canonical(
        &state.config.forward_auth.rules,
        &target.host_only(),
        &target.path,
        who.as_ref().map(|a| &a.principal),
    );
    match decision {
        Decision::Allow => {
            (StatusCode::OK, identity_headers(&state, who.as_deref())).into_response()
        }
        Decision::Deny => {
            tracing::info!(target: "audit", event = "forward_auth", host = %target.host_only(), user = who.as_ref().map(|a| a.principal.user.as_str()).unwrap_or("-"), outcome = "denied");
            (StatusCode::FORBIDDEN, identity_headers(&state, None)).into_response()
        }
        Decision::SignIn => sign_in(&state, &headers, &target, dialect),
    }
}

fn login_url(state: &AppState, target: &Target) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", &target.url())
        .finish();
    format!("{}?{query}", state.url(crate::login::paths::LOGIN))
}

fn sign_in(state: &AppState, headers: &HeaderMap, target: &Target, dialect: Dialect) -> Response {
    let login = login_url(state, target);
    let mut h = identity_headers(state, None);
    let location = header_value(&login);
    match dialect {
        Dialect::AuthRequest => {
            h.insert(header::LOCATION, location);
            (StatusCode::UNAUTHORIZED, h).into_response()
        }
        Dialect::ForwardAuth if !wants_html(headers) => {
            (StatusCode::UNAUTHORIZED, h).into_response()
        }
        Dialect::ForwardAuth => {
            let status = if matches!(target.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
                StatusCode::FOUND
            } else {
                StatusCode::SEE_OTHER
            };
            h.insert(header::LOCATION, location);
            (status, h).into_response()
        }
    }
}

async fn forward_auth(
    State(state): State<AppState>,
    PeerIp(peer): PeerIp,
    headers: HeaderMap,
    cookies: Cookies,
) -> Response {
    check(state, peer, headers, cookies, Dialect::ForwardAuth).await
}

async fn auth_request(
    State(state): State<AppState>,
    PeerIp(peer): PeerIp,
    headers: HeaderMap,
    cookies: Cookies,
) -> Response {
    check(state, peer, headers, cookies, Dialect::AuthRequest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn targets_from_each_dialect() {
        let t = target_from_forwarded(&headers(&[
            ("x-forwarded-host", "App.example.com:8443"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-uri", "/a?b=1"),
            ("x-forwarded-method", "post"),
        ]))
        .unwrap();
        assert_eq!(t.url(), "https://App.example.com:8443/a?b=1");
        assert_eq!(t.host_only(), "app.example.com");
        assert_eq!(t.method, "POST");
        let o = target_from_original(&headers(&[
            ("x-original-url", "http://app.example.com/x/y?z"),
            ("x-original-method", "DELETE"),
        ]))
        .unwrap();
        assert_eq!(
            (o.host.as_str(), o.uri.as_str(), o.method.as_str()),
            ("app.example.com", "/x/y?z", "DELETE")
        );
        assert!(target_from_forwarded(&headers(&[
            ("x-forwarded-host", "evil host"),
            ("x-forwarded-uri", "/")
        ]))
        .is_err());
        assert!(target_from_forwarded(&headers(&[
            ("x-forwarded-host", "a.example.com"),
            ("x-forwarded-uri", "no-slash")
        ]))
        .is_err());
        assert!(
            target_from_original(&headers(&[("x-original-url", "javascript:alert(1)")])).is_err()
        );
    }

    fn appended(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_proxy_header_that_arrives_twice_is_refused() {
        let base = [
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-uri", "/x"),
            ("x-forwarded-method", "GET"),
        ];
        for (name, second) in [
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-host", "other.example.com"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-method", "POST"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, second));
            assert_eq!(
                target_from_forwarded(&appended(&pairs)),
                Err(TargetError::Repeated(name)),
                "{name}"
            );
        }
        // The same value twice says one thing.
        let mut pairs = base.to_vec();
        pairs.push(("x-forwarded-uri", "/x"));
        assert!(target_from_forwarded(&appended(&pairs)).is_ok());
        // Comma-joined values in one header.
        for (name, joined) in [
            ("x-forwarded-host", "app.example.com, other.example.com"),
            ("x-forwarded-host", "app.example.com,other.example.com"),
            ("x-forwarded-proto", "https,http"),
            ("x-forwarded-method", "GET, POST"),
            ("x-forwarded-uri", "/x, /admin"),
        ] {
            let pairs: Vec<_> = base
                .iter()
                .map(|&(k, v)| if k == name { (k, joined) } else { (k, v) })
                .collect();
            assert_eq!(
                target_from_forwarded(&appended(&pairs)),
                Err(TargetError::Repeated(name)),
                "{joined}"
            );
        }
        // A comma inside a path is data.
        let pairs: Vec<_> = base
            .iter()
            .map(|&(k, v)| {
                if k == "x-forwarded-uri" {
                    (k, "/a,b?c=1,2")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert!(target_from_forwarded(&appended(&pairs)).is_ok());
        for (name, second) in [
            ("x-original-url", "https://app.example.com/admin"),
            ("x-original-method", "POST"),
        ] {
            let pairs = [
                ("x-original-url", "https://app.example.com/x"),
                ("x-original-method", "GET"),
                (name, second),
            ];
            assert_eq!(
                target_from_original(&appended(&pairs)),
                Err(TargetError::Repeated(name)),
                "{name}"
            );
            assert_eq!(
                TargetError::Repeated(name).status(),
                StatusCode::BAD_REQUEST
            );
        }
    }

    #[test]
    fn the_original_url_is_split_by_hand_not_normalised() {
        let path = |url: &str| {
            target_from_original(&headers(&[("x-original-url", url)])).map(|t| t.path.resolved)
        };
        assert_eq!(
            path("http://app.example.com:80/%61dmin/x?q"),
            Ok("/admin/x".into())
        );
        assert_eq!(path("http://app.example.com?q"), Ok("/".into()));
        assert_eq!(
            path("http://app.example.com/admin\\x"),
            Err(TargetError::Ambiguous(canonical::Refusal::Backslash))
        );
        assert_eq!(
            path("http://app.example.com\\admin"),
            Err(TargetError::Ambiguous(canonical::Refusal::Backslash))
        );
        assert_eq!(
            path("http://app.example.com/admin%2Fx"),
            Err(TargetError::Ambiguous(canonical::Refusal::EncodedSeparator))
        );
        assert!(path("http://user@app.example.com/").is_err());
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod spelling_tests;
