//! Pages and assets: minijinja templates and static files embedded in the binary, each
//! overridable by a file of the same name in `theme_dir`; the security headers every response
//! carries; the error-page renderer; and the request facts handlers must not parse themselves
//! (`extract`: client IP behind trusted proxies, cookies, the browser, the signed-in user) and
//! form tokens (`csrf`).

pub mod csrf;
pub mod extract;

pub use extract::{
    append_cookie, live_session, Browser, BrowserScheme, ClientInfo, ClientIp, Cookies, PeerIp,
    SignedIn, Transport,
};

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use include_dir::{include_dir, Dir};
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

/// The CSRF token of a form of `area` ("account", "admin", ...) on a signed-in page: bound to
/// this browser and to the SSO session, so it dies with the session.
pub fn session_form_token(
    state: &AppState,
    area: &str,
    session: &crate::store::Session,
    browser: &str,
) -> String {
    state
        .csrf
        .token(&session_form_purpose(area, session), browser)
}

/// Whether a posted `token` is this browser's and this session's for `area`.
pub fn session_form_ok(
    state: &AppState,
    area: &str,
    session: &crate::store::Session,
    cookies: &Cookies,
    token: &str,
) -> bool {
    cookies
        .get(crate::session::CookieNames::of(&state.config).browser)
        .is_some_and(|browser| {
            state
                .csrf
                .verify(&session_form_purpose(area, session), browser, token)
        })
}

fn session_form_purpose(area: &str, session: &crate::store::Session) -> String {
    format!("{area}:{}", crate::secrets::to_hex(&session.id_hash))
}

/// The CSRF purpose of the form on a link page (`kind` "invite", "reset", "confirm-email"):
/// bound to the link by its token's digest (and, by the token itself, to the browser).
pub fn link_form_purpose(kind: &str, token_hash: &crate::store::Hash) -> String {
    format!("{kind}:{}", crate::secrets::to_hex(token_hash))
}

/// The CSRF token of the form on a link page, for `browser`.
pub fn link_form_token(
    state: &AppState,
    kind: &str,
    token_hash: &crate::store::Hash,
    browser: &str,
) -> String {
    state
        .csrf
        .token(&link_form_purpose(kind, token_hash), browser)
}

/// The browser that posted a link page's form, if `token` is that page's for this browser (a
/// browser without doorman's cookie yet never is).
pub fn link_form_browser(
    state: &AppState,
    cookies: &Cookies,
    kind: &str,
    token_hash: &crate::store::Hash,
    token: &str,
) -> Option<Browser> {
    let browser = Browser::of(state, cookies);
    let ok = !browser.fresh
        && state
            .csrf
            .verify(&link_form_purpose(kind, token_hash), &browser.value, token);
    ok.then_some(browser)
}

/// The page for a form that did not come from doorman's `page` in this browser; `again` says
/// what to do.
pub fn forged_form(page: &str, again: &str) -> crate::error::WebError {
    crate::error::WebError::page(
        StatusCode::FORBIDDEN,
        "This form could not be verified",
        format!("The form did not come from this browser's {page}. {again}"),
    )
}

/// A 302 to `url`, or a readable 400 when it cannot be a Location header.
pub fn found(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => crate::error::WebError::bad_request("The return address is not a valid URL.")
            .into_response(),
    }
}

/// Form bodies and query strings: parse failures (duplicates, bad encoding) become a clear
/// message instead of axum's plain-text rejection.
pub fn parse_form<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    serde_urlencoded::from_bytes(raw).map_err(|e| format!("malformed parameters: {e}"))
}

/// Return addresses after a plain sign-in or a logout: doorman's own origin, or an http(s) host
/// that forward-auth protects (its rules or the shared cookie domain). Anything else would make
/// doorman an open redirector.
pub fn safe_return(config: &crate::config::Config, rd: &str) -> bool {
    let Ok(url) = url::Url::parse(rd) else {
        return false;
    };
    if url.origin() == config.issuer.origin() {
        return true;
    }
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let by_domain = config
        .session
        .cookie_domain
        .as_deref()
        .is_some_and(|d| host == d || host.ends_with(&format!(".{d}")));
    let by_rule = config
        .forward_auth
        .rules
        .iter()
        .any(|r| r.host.matches(&host));
    by_domain || by_rule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_templates_compile() {
        Templates::new(None).check().unwrap();
    }
}
