//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 9700): validation order
//! matters. Client and redirect_uri are checked first and, when wrong, the user gets a page and
//! is never redirected (no open redirector); every later error goes back to the client.

use serde::{Deserialize, Serialize};

use super::claims::{grant_scopes, has_scope};
use super::clients::Clients;
use super::error::OAuthError;
use super::pkce;
use crate::config::{ClientConfig, RedirectUriMatch};
use crate::store::{Session, Timestamp, User};

/// The raw parameters, from the query (GET) or the form (POST).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub acr_values: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

/// A validated authorization request, kept in the pending flow while the user signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// Requested `acr` values, in order of preference (`1fa`, `2fa`); unknown ones ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeReject {
    /// Unknown client or unregistered redirect_uri: an error page, never a redirect.
    Page(String),
    /// Sent back to the client's redirect_uri.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

const MAX_PARAM: usize = 2048;

/// Whether `sent` may receive this client's codes. Exact string match (RFC 9700 §4.1.3: no
/// wildcard, no normalisation), or with `redirect_uri_match = "prefix"` a URI that starts with
/// a registered one (which ends in `/` after a path, checked at config load) and holds no `..`,
/// `%2e` (any case) or fragment, so no reading of it leaves the registered path. The error is
/// the reason to add to the mismatch message ("" when nothing matched at all).
pub fn redirect_uri_allowed(client: &ClientConfig, sent: &str) -> Result<(), &'static str> {
    if client.redirect_uris.iter().any(|r| r == sent) {
        return Ok(());
    }
    if client.redirect_uri_match == RedirectUriMatch::Exact {
        return Err("");
    }
    if !client
        .redirect_uris
        .iter()
        .any(|r| sent.starts_with(r.as_str()))
    {
        return Err("");
    }
    if sent.contains("..") || sent.to_ascii_lowercase().contains("%2e") {
        return Err(" (it starts with a registered prefix but holds \"..\" or \"%2e\")");
    }
    if sent.contains('#') {
        return Err(" (it starts with a registered prefix but has a fragment)");
    }
    Ok(())
}

pub fn validate(
    params: &AuthorizeParams,
    clients: &Clients,
) -> Result<AuthorizeRequest, AuthorizeReject> {
    let client_id = params
        .client_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AuthorizeReject::Page(
                "The application did not say who it is (client_id is missing).".into(),
            )
        })?;
    let client = clients.get(client_id).ok_or_else(|| {
        AuthorizeReject::Page(format!(
            "The application {:?} is not registered here.",
            truncate(client_id)
        ))
    })?;
    let redirect_uri = params.redirect_uri.as_deref().ok_or_else(|| {
        AuthorizeReject::Page(
            "The application did not say where to return (redirect_uri is missing).".into(),
        )
    })?;
    if let Err(why) = redirect_uri_allowed(client, redirect_uri) {
        // For the operator (the page and the log), never the relying party.
        let registered: Vec<String> = client
            .redirect_uris
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        return Err(AuthorizeReject::Page(format!(
            "The address {:?} is not registered as a redirect URI for the application {:?}{why}. Registered ({}): {}.",
            truncate(redirect_uri),
            client.id,
            match client.redirect_uri_match {
                RedirectUriMatch::Exact => "matched exactly",
                RedirectUriMatch::Prefix => "as prefixes",
            },
            registered.join(", ")
        )));
    }
    let back = |error: OAuthError| AuthorizeReject::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: params.state.clone(),
        error,
    };

    if params.request.is_some() {
        return Err(back(OAuthError::request_not_supported(
            "request objects are not supported",
        )));
    }
    if params.request_uri.is_some() {
        return Err(back(OAuthError::request_uri_not_supported(
            "request_uri is not supported",
        )));
    }
    for (name, value) in [
        ("state", &params.state),
        ("nonce", &params.nonce),
        ("login_hint", &params.login_hint),
        ("acr_values", &params.acr_values),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_PARAM) {
            return Err(back(OAuthError::invalid_request(format!(
                "{name} is too long"
            ))));
        }
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(back(OAuthError::invalid_request(
                "response_type is required",
            )))
        }
        Some(_) => {
            return Err(back(OAuthError::unsupported_response_type(
                "only response_type=code is supported",
            )))
        }
    }
    if params
        .response_mode
        .as_deref()
        .is_some_and(|m| m != "query")
    {
        return Err(back(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }
    let scope = grant_scopes(params.scope.as_deref().unwrap_or(""), client);
    if !scope.iter().any(|s| s == "openid") {
        return Err(back(OAuthError::invalid_scope(
            "the openid scope is required",
        )));
    }
    let code_challenge = check_pkce(params, client).map_err(back)?;
    let prompts: Vec<&str> = params
        .prompt
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return Err(AuthorizeReject::Redirect {
            redirect_uri: redirect_uri.to_string(),
            state: params.state.clone(),
            error: OAuthError::invalid_request("prompt=none cannot be combined with other values"),
        });
    }
    let max_age = match params.max_age.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            back(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };
    Ok(AuthorizeRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: scope.join(" "),
        state: params.state.clone(),
        nonce: params.nonce.clone(),
        code_challenge,
        prompt_none,
        prompt_login: prompts.contains(&"login"),
        max_age,
        login_hint: params.login_hint.clone(),
        acr_values: params
            .acr_values
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|v| ACR_VALUES.contains(v))
            .map(str::to_string)
            .collect(),
    })
}

/// The `acr` values doorman knows (`acr_values_supported`): one factor, or two.
pub const ACR_1FA: &str = "1fa";
pub const ACR_2FA: &str = "2fa";
pub const ACR_VALUES: &[&str] = &[ACR_1FA, ACR_2FA];

fn check_pkce(
    params: &AuthorizeParams,
    client: &ClientConfig,
) -> Result<Option<String>, OAuthError> {
    match (
        &params.code_challenge,
        params.code_challenge_method.as_deref(),
    ) {
        (None, None) if client.require_pkce => Err(OAuthError::invalid_request(
            "this client must use PKCE: send code_challenge with code_challenge_method=S256",
        )),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "code_challenge_method without code_challenge",
        )),
        (Some(c), Some("S256")) if pkce::valid_challenge(c) => Ok(Some(c.clone())),
        (Some(_), Some("S256")) => Err(OAuthError::invalid_request(
            "code_challenge is not a valid S256 challenge",
        )),
        // RFC 7636 defaults a missing method to "plain", which we do not support.
        (Some(_), _) => Err(OAuthError::invalid_request(
            "only code_challenge_method=S256 is supported",
        )),
    }
}

/// Whether the request can be answered from the existing SSO session, or needs a sign-in.
pub fn session_satisfies(req: &AuthorizeRequest, session: &Session, now: Timestamp) -> bool {
    if req.prompt_login {
        return false;
    }
    match req.max_age {
        Some(max) => now - session.auth_time <= max,
        None => true,
    }
}

/// The client's `allowed_groups` rule.
pub fn user_allowed(client: &ClientConfig, user: &User) -> bool {
    match &client.allowed_groups {
        None => true,
        Some(groups) => user.groups.iter().any(|g| groups.contains(g)),
    }
}

/// Whether refresh tokens come with this grant.
pub fn wants_refresh(client: &ClientConfig, scope: &str) -> bool {
    client.refresh_tokens || has_scope(scope, "offline_access")
}

/// Appends query parameters to a redirect URI that may already have a query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_string();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        sep = '&';
    }
    url
}

/// The error redirect (RFC 6749 §4.1.2.1 with RFC 9207's `iss`).
pub fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    error: &OAuthError,
    issuer: &str,
) -> String {
    let mut params = vec![
        ("error", error.code),
        ("error_description", error.description.as_str()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    redirect_with(redirect_uri, &params)
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IdTokenClaims, Lifetimes};
    use std::time::Duration;

    fn clients() -> Clients {
        let d = Duration::from_secs(60);
        let c = ClientConfig {
            id: "rp".into(),
            name: None,
            secret_hash: None,
            public: true,
            redirect_uris: vec!["https://rp.example/cb".into()],
            post_logout_redirect_uris: vec![],
            require_pkce: true,
            scopes: None,
            allowed_groups: None,
            refresh_tokens: false,
            id_token_claims: IdTokenClaims::Scoped,
            allowed_origins: vec![],
            token_endpoint_auth_method: None,
            lifetimes: Lifetimes {
                access_token: d,
                id_token: d,
                refresh_token_idle: d,
                refresh_token_max: d,
            },
            plex_token_claim: None,
            access_token_format: crate::config::AccessTokenFormat::Opaque,
            introspect_any: false,
            require_second_factor: false,
            roles_claim: None,
            claims: vec![],
            redirect_uri_match: crate::config::RedirectUriMatch::Exact,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            allow_http_redirect_uris: false,
        };
        Clients::new(&[c])
    }

    fn good() -> AuthorizeParams {
        AuthorizeParams {
            client_id: Some("rp".into()),
            redirect_uri: Some("https://rp.example/cb".into()),
            response_type: Some("code".into()),
            scope: Some("openid email bogus".into()),
            state: Some("xyz".into()),
            code_challenge: Some(pkce::challenge_of(&"v".repeat(43))),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        }
    }

    #[test]
    fn valid_request_ignores_unknown_scopes() {
        let req = validate(&good(), &clients()).unwrap();
        assert_eq!(req.scope, "openid email");
    }

    #[test]
    fn wrong_client_or_redirect_never_redirects() {
        for p in [
            AuthorizeParams {
                client_id: Some("nope".into()),
                ..good()
            },
            AuthorizeParams {
                client_id: None,
                ..good()
            },
            AuthorizeParams {
                redirect_uri: Some("https://rp.example/cb/".into()),
                ..good()
            },
            AuthorizeParams {
                redirect_uri: Some("https://evil.example/cb".into()),
                ..good()
            },
            AuthorizeParams {
                redirect_uri: None,
                ..good()
            },
        ] {
            assert!(
                matches!(validate(&p, &clients()), Err(AuthorizeReject::Page(_))),
                "{p:?}"
            );
        }
    }

    #[test]
    fn prefix_matching_stays_under_the_registered_path() {
        let mut c = clients().get("rp").unwrap().clone();
        c.redirect_uris = vec!["https://rp.example/cb/".into()];
        assert!(redirect_uri_allowed(&c, "https://rp.example/cb/").is_ok());
        assert!(
            redirect_uri_allowed(&c, "https://rp.example/cb/x").is_err(),
            "exact by default"
        );
        c.redirect_uri_match = RedirectUriMatch::Prefix;
        for ok in [
            "https://rp.example/cb/",
            "https://rp.example/cb/google",
            "https://rp.example/cb/a/b?x=1",
        ] {
            assert!(redirect_uri_allowed(&c, ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://rp.example/cb",
            "https://rp.example/cbx/",
            "https://rp.example/other/",
            "https://rp.example.evil/cb/",
            "http://rp.example/cb/x",
            "https://rp.example/cb/../admin",
            "https://rp.example/cb/%2e%2e/admin",
            "https://rp.example/cb/%2E%2E/admin",
            "https://rp.example/cb/.%2E/admin",
            "https://rp.example/cb/x#frag",
        ] {
            assert!(redirect_uri_allowed(&c, bad).is_err(), "{bad}");
        }
        // The page names the sent URI and the registered ones.
        let mut registry = crate::config::defaults();
        registry.clients = vec![c];
        let p = AuthorizeParams {
            redirect_uri: Some("https://rp.example/cb/%2e%2e/admin".into()),
            ..good()
        };
        match validate(&p, &Clients::new(&registry.clients)) {
            Err(AuthorizeReject::Page(m)) => {
                assert!(m.contains("https://rp.example/cb/%2e%2e/admin"), "{m}");
                assert!(m.contains("\"https://rp.example/cb/\""), "{m}");
                assert!(m.contains("%2e"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn later_errors_go_back_to_the_client() {
        let cases = [
            (
                AuthorizeParams {
                    response_type: Some("token".into()),
                    ..good()
                },
                "unsupported_response_type",
            ),
            (
                AuthorizeParams {
                    code_challenge: None,
                    code_challenge_method: None,
                    ..good()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: Some("plain".into()),
                    ..good()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    scope: Some("email".into()),
                    ..good()
                },
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    request: Some("x".into()),
                    ..good()
                },
                "request_not_supported",
            ),
            (
                AuthorizeParams {
                    prompt: Some("none login".into()),
                    ..good()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    max_age: Some("-1".into()),
                    ..good()
                },
                "invalid_request",
            ),
        ];
        for (p, code) in cases {
            match validate(&p, &clients()) {
                Err(AuthorizeReject::Redirect { error, state, .. }) => {
                    assert_eq!(error.code, code);
                    assert_eq!(state.as_deref(), Some("xyz"));
                }
                other => panic!("{p:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn redirects_keep_existing_queries_and_encode() {
        assert_eq!(
            redirect_with("https://a/cb?x=1", &[("code", "a b")]),
            "https://a/cb?x=1&code=a+b"
        );
        let e = error_redirect(
            "https://a/cb",
            Some("s"),
            &OAuthError::access_denied("no"),
            "https://idp",
        );
        assert_eq!(
            e,
            "https://a/cb?error=access_denied&error_description=no&state=s&iss=https%3A%2F%2Fidp"
        );
    }
}
