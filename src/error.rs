//! The web layer's one error type and the table that maps it to a response: OAuth errors as
//! JSON with the RFC status and headers, user-facing problems as themed HTML pages, internal
//! failures as a page with an error id (details only in the log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::oidc::error::OAuthError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum WebError {
    /// JSON OAuth error (token, revoke, introspect, userinfo endpoints).
    OAuth(OAuthError),
    /// A readable page for a person; rendered by `web::render_pages` with the theme.
    Page {
        status: StatusCode,
        title: String,
        message: String,
    },
    /// Something broke inside; the detail is logged, never shown.
    Internal(String),
}

/// Marks a response whose body `web::render_pages` fills in from the error template.
#[derive(Debug, Clone)]
pub struct PageError {
    pub title: String,
    pub message: String,
    pub error_id: Option<String>,
}

impl WebError {
    pub fn page(
        status: StatusCode,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> WebError {
        WebError::Page {
            status,
            title: title.into(),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::page(
            StatusCode::BAD_REQUEST,
            "Something is wrong with this request",
            message,
        )
    }
}

impl From<OAuthError> for WebError {
    fn from(e: OAuthError) -> WebError {
        WebError::OAuth(e)
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        WebError::Internal(format!("store: {e}"))
    }
}

/// A new password could not be hashed: a full argon2 queue is a readable 503 page (try again
/// in a moment); anything else is internal.
impl From<crate::accounts::password::PasswordError> for WebError {
    fn from(e: crate::accounts::password::PasswordError) -> WebError {
        match e {
            crate::accounts::password::PasswordError::Busy => WebError::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "doorman is busy",
                "Too many passwords are being checked right now. Go back and send the form again in a moment.",
            ),
            other => WebError::Internal(format!("hashing a password: {other}")),
        }
    }
}

impl From<crate::keys::KeyError> for WebError {
    fn from(e: crate::keys::KeyError) -> WebError {
        WebError::Internal(format!("keys: {e}"))
    }
}

/// Status of an OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1).
pub fn oauth_status(code: &str) -> StatusCode {
    match code {
        "invalid_client" | "invalid_token" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "insufficient_scope" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub fn oauth_response(e: &OAuthError) -> Response {
    let status = oauth_status(e.code);
    let mut resp = (
        status,
        Json(json!({"error": e.code, "error_description": e.description})),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    match e.code {
        "invalid_client" => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"doorman\""),
            );
        }
        "invalid_token" => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        _ => {}
    }
    resp
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::OAuth(e) => oauth_response(&e),
            WebError::Page {
                status,
                title,
                message,
            } => {
                let mut resp = status.into_response();
                resp.extensions_mut().insert(PageError {
                    title,
                    message,
                    error_id: None,
                });
                resp
            }
            WebError::Internal(detail) => {
                let id = crate::secrets::random_id(6);
                tracing::error!(error_id = %id, detail = %detail, "internal error");
                let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
                resp.extensions_mut().insert(PageError {
                    title: "Something went wrong".into(),
                    message: "doorman could not finish this request. Please try again in a moment."
                        .into(),
                    error_id: Some(id),
                });
                resp
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_mapping() {
        let r = oauth_response(&OAuthError::invalid_client("x"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            oauth_response(&OAuthError::invalid_grant("x")).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            oauth_response(&OAuthError::invalid_token("x")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            oauth_response(&OAuthError::temporarily_unavailable("x")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(oauth_response(&OAuthError::invalid_grant("x"))
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .is_none());
    }

    #[test]
    fn internal_errors_hide_details() {
        let r = WebError::Internal("secret detail".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let page = r.extensions().get::<PageError>().unwrap();
        assert!(!page.message.contains("secret"));
        assert!(page.error_id.is_some());
    }
}
