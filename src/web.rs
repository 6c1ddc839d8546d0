//! Pages and assets: minijinja templates and static files embedded in the binary, each
//! overridable by a file of the same name in `theme_dir`; the security headers every response
//! carries; the error-page renderer; and the request facts handlers must not parse themselves
//! (client IP behind trusted proxies, cookies).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use include_dir::{include_dir, Dir};
use ipnet::IpNet;
use minijinja::Environment;
use serde::Serialize;

use crate::error::PageError;
use crate::state::AppState;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/static");

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new(theme_dir: Option<PathBuf>) -> Templates {
        let mut env = Environment::new();
        env.set_loader(move |name| {
            if name.contains("..") {
                return Ok(None);
            }
            if let Some(dir) = &theme_dir {
                if let Ok(text) = std::fs::read_to_string(dir.join("templates").join(name)) {
                    return Ok(Some(text));
                }
            }
            Ok(EMBEDDED
                .get_file(format!("templates/{name}"))
                .and_then(|f| f.contents_utf8())
                .map(str::to_string))
        });
        Templates { env }
    }

    /// Renders a template; a broken theme template falls back to a plain message, logged.
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> String {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed to render");
                "<!doctype html><title>doorman</title><p>This page could not be shown. The operator's log says why.</p>".to_string()
            }
        }
    }

    /// Checks every embedded template (and its theme override) compiles; for start-up.
    pub fn check(&self) -> Result<(), String> {
        for file in EMBEDDED
            .get_dir("templates")
            .map(|d| d.files())
            .into_iter()
            .flatten()
        {
            let name = file
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            self.env
                .get_template(name)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(())
    }
}

/// GET /static/{*path}: the theme's file if it has one, else the embedded one.
pub async fn static_file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let bytes: Option<Vec<u8>> = state
        .config
        .theme_dir
        .as_ref()
        .and_then(|dir| std::fs::read(dir.join("static").join(&path)).ok())
        .or_else(|| EMBEDDED.get_file(&path).map(|f| f.contents().to_vec()));
    let Some(bytes) = bytes else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

/// Headers on every response. Pages get a strict CSP; `form-action` is left out on purpose:
/// browsers apply it to the redirect that follows a login POST, which goes to the client.
pub async fn security_headers(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self' data: https:; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.issuer.scheme() == "https" {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    error_id: Option<&'a str>,
    base: &'a str,
}

/// Fills the body of responses marked with `PageError` from the `error.html` template.
pub async fn render_pages(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    let Some(page) = resp.extensions().get::<PageError>().cloned() else {
        return resp;
    };
    let html = state.templates.render(
        "error.html",
        ErrorPage {
            title: &page.title,
            message: &page.message,
            error_id: page.error_id.as_deref(),
            base: state.issuer(),
        },
    );
    let (mut parts, _) = resp.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}

pub fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

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

    #[test]
    fn embedded_templates_compile() {
        Templates::new(None).check().unwrap();
    }
}
