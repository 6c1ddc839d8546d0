//! OAuth / OIDC errors as the RFCs name them. The web layer maps each to its status and body
//! (see `crate::error`); this module only knows the codes.

/// An OAuth 2.0 error: RFC 6749 §5.2 / §4.1.2.1, RFC 6750 §3.1, OIDC Core §3.1.2.6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
}

macro_rules! codes {
    ($($fn:ident => $code:literal),* $(,)?) => {
        impl OAuthError {
            $(pub fn $fn(description: impl Into<String>) -> OAuthError {
                OAuthError { code: $code, description: description.into() }
            })*
        }
    };
}

codes! {
    invalid_request => "invalid_request",
    invalid_client => "invalid_client",
    invalid_grant => "invalid_grant",
    unauthorized_client => "unauthorized_client",
    unsupported_grant_type => "unsupported_grant_type",
    unsupported_response_type => "unsupported_response_type",
    invalid_scope => "invalid_scope",
    access_denied => "access_denied",
    login_required => "login_required",
    interaction_required => "interaction_required",
    request_not_supported => "request_not_supported",
    request_uri_not_supported => "request_uri_not_supported",
    invalid_token => "invalid_token",
    server_error => "server_error",
    temporarily_unavailable => "temporarily_unavailable",
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> OAuthError {
        tracing::error!(error = %e, "store error");
        OAuthError::temporarily_unavailable("the server cannot reach its database; try again")
    }
}

impl From<crate::keys::KeyError> for OAuthError {
    fn from(e: crate::keys::KeyError) -> OAuthError {
        tracing::error!(error = %e, "signing error");
        OAuthError::server_error("the server could not sign the token")
    }
}
