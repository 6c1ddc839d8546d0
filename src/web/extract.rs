//! Extractors for what handlers keep re-deriving: the client IP, the transport the browser
//! used, the cookies, this browser's binding cookie and the signed-in user. Imports no feature.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use ipnet::IpNet;

use crate::error::WebError;
use crate::session::{self, CookieNames};
use crate::state::AppState;
use crate::store::{Session, User};

/// The client's IP: the socket peer, or what the peer says when it is one of `trusted_proxies`,
/// read from `client_ip_header`. For `X-Forwarded-For` that is the right-most entry we do not
/// trust (every header line joined, as RFC 9110 §5.3 allows). Any other header is single-valued
/// (`Fly-Client-IP`, `CF-Connecting-IP`, `X-Real-IP`): one line holding one IP, else it is not
/// believed and the peer's address is used (never one of two values picked). Never fails: a
/// missing peer address reads as 0.0.0.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header_name: &str,
) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    if !header_name.eq_ignore_ascii_case("x-forwarded-for") {
        let mut values = headers.get_all(header_name).iter();
        return match (values.next(), values.next()) {
            (None, _) => peer,
            (Some(v), None) => match v.to_str().ok().map(|s| s.trim().parse::<IpAddr>()) {
                Some(Ok(ip)) => ip,
                _ => {
                    tracing::warn!(header = header_name, peer = %peer, "the client IP header from a trusted proxy is not one IP address; using the proxy's address");
                    peer
                }
            },
            (Some(_), Some(_)) => {
                tracing::warn!(header = header_name, peer = %peer, "the client IP header arrived twice from a trusted proxy; using the proxy's address");
                peer
            }
        };
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    // Walk from the nearest hop outwards; the first address we do not trust is the client.
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientIp, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
            &state.config.client_ip_header,
        )))
    }
}

/// How the browser reached doorman, as far as doorman can tell: doorman itself speaks plain
/// http, so a request straight from an untrusted peer came over http; from a trusted proxy,
/// its one `X-Forwarded-Proto` says (none, or two: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserScheme {
    Https,
    Http,
    Unknown,
}

/// Where a request came from, for messages that explain a missing cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub scheme: BrowserScheme,
    /// The peer is one of `trusted_proxies`.
    pub via_proxy: bool,
}

pub fn transport(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Transport {
    let via_proxy = peer.is_some_and(|p| trusted.iter().any(|net| net.contains(&p)));
    if !via_proxy {
        return Transport {
            scheme: BrowserScheme::Http,
            via_proxy,
        };
    }
    let mut values = headers.get_all("x-forwarded-proto").iter();
    let scheme = match (values.next().and_then(|v| v.to_str().ok()), values.next()) {
        (Some(v), None) if v.trim().eq_ignore_ascii_case("https") => BrowserScheme::Https,
        (Some(v), None) if v.trim().eq_ignore_ascii_case("http") => BrowserScheme::Http,
        _ => BrowserScheme::Unknown,
    };
    Transport { scheme, via_proxy }
}

impl FromRequestParts<AppState> for Transport {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Transport, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(transport(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        ))
    }
}

/// The socket peer's address, when the server was started with connect info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<PeerIp, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The request's cookies, read once.
#[derive(Debug, Clone, Default)]
pub struct Cookies(pub String);

impl Cookies {
    pub fn get(&self, name: &str) -> Option<&str> {
        crate::session::read_cookie(&self.0, name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Cookies {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Cookies, Self::Rejection> {
        let joined = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Cookies(joined))
    }
}

/// This browser's binding cookie (login CSRF, Plex PIN binding) when doorman minted it, else a
/// new one (`fresh`): a value planted by another site is never adopted.
#[derive(Debug, Clone)]
pub struct Browser {
    pub value: String,
    /// Minted for this response: set it with [`Browser::keep`].
    pub fresh: bool,
}

impl Browser {
    pub fn of(state: &AppState, cookies: &Cookies) -> Browser {
        match cookies.get(CookieNames::of(&state.config).browser) {
            Some(b) if state.csrf.minted(b) => Browser {
                value: b.to_string(),
                fresh: false,
            },
            _ => Browser {
                value: state.csrf.mint_browser(),
                fresh: true,
            },
        }
    }

    /// The Set-Cookie value for a browser-binding cookie.
    pub fn set_cookie(state: &AppState, value: &str) -> String {
        session::cookie(
            &state.config,
            CookieNames::of(&state.config).browser,
            value,
            None,
        )
    }

    /// Sets the cookie on `resp` when it was minted for this request.
    pub fn keep(&self, state: &AppState, resp: &mut Response) {
        if self.fresh {
            append_cookie(resp, &Browser::set_cookie(state, &self.value));
        }
    }
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Browser, Self::Rejection> {
        let cookies = Cookies::from_request_parts(parts, state).await?;
        Ok(Browser::of(state, &cookies))
    }
}

/// Appends a Set-Cookie header.
pub fn append_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The SSO session behind this browser's cookie, if it is live and its user still allowed (a
/// federation may have withdrawn access since: Plex re-checks). A withdrawn session ends here.
pub async fn live_session(
    state: &AppState,
    cookies: &Cookies,
) -> Result<Option<(Session, User)>, WebError> {
    let Some(cookie) = cookies.get(CookieNames::of(&state.config).session) else {
        return Ok(None);
    };
    let now = state.now();
    let Some((session, user)) = session::lookup(&*state.store, &state.config, cookie, now).await?
    else {
        return Ok(None);
    };
    if !state.provider.still_allowed(&user, &session.amr, now).await {
        // The applications signed in through it hear of it (back-channel logout).
        let sid = state.provider.sid_for(&session);
        let clients = state.store.session_clients(&user.id, Some(&sid)).await?;
        session::end(&*state.store, cookie).await?;
        state.backchannel.notify(&user.id, &clients);
        return Ok(None);
    }
    Ok(Some((session, user)))
}

/// Where this request comes from, as a new session records it: the client IP and User-Agent.
pub struct ClientInfo(pub session::SessionMeta);

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientInfo, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(ClientInfo(session::SessionMeta::new(ip, ua)))
    }
}

/// The signed-in user of this request, or none (see [`live_session`]).
pub struct SignedIn(pub Option<(Session, User)>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<SignedIn, Self::Rejection> {
        let cookies = Cookies::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        Ok(SignedIn(live_session(state, &cookies).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        let xff = "x-forwarded-for";
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted, xff),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(Some(stranger), &h, &trusted, xff),
            stranger,
            "spoofed header from an untrusted peer"
        );
        assert_eq!(
            client_ip(None, &HeaderMap::new(), &trusted, xff),
            IpAddr::from([0, 0, 0, 0])
        );
    }

    #[test]
    fn a_single_value_header_only_from_trusted_proxies_and_only_when_unambiguous() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let fly = "fly-client-ip";
        let mut h = HeaderMap::new();
        h.insert(fly, "2001:db8::7".parse().unwrap());
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted, fly),
            "2001:db8::7".parse::<IpAddr>().unwrap(),
            "X-Forwarded-For is not read when another header is configured"
        );
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(Some(stranger), &h, &trusted, fly), stranger);
        h.append(fly, "1.2.3.4".parse().unwrap());
        assert_eq!(client_ip(Some(proxy), &h, &trusted, fly), proxy, "twice");
        let mut h = HeaderMap::new();
        h.insert(fly, "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(client_ip(Some(proxy), &h, &trusted, fly), proxy, "a list");
        assert_eq!(
            client_ip(Some(proxy), &HeaderMap::new(), &trusted, fly),
            proxy
        );
    }

    #[test]
    fn the_browsers_scheme() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        assert_eq!(
            transport(Some(proxy), &h, &trusted).scheme,
            BrowserScheme::Http
        );
        assert_eq!(
            transport(Some("8.8.8.8".parse().unwrap()), &h, &trusted).scheme,
            BrowserScheme::Http,
            "doorman itself speaks plain http"
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            transport(Some(proxy), &h, &trusted).scheme,
            BrowserScheme::Https
        );
        assert_eq!(
            transport(Some(proxy), &HeaderMap::new(), &trusted).scheme,
            BrowserScheme::Unknown
        );
    }
}
