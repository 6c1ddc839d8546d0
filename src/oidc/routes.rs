//! HTTP handlers of the provider: each extracts, calls one rule in `oidc::*`, and answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::authorize;
use super::clients::ClientCredentials;
use super::error::OAuthError;
use super::paths;
use super::token::TokenRequest;
use crate::error::WebError;
use crate::session::{self, CookieNames};
use crate::state::AppState;
use crate::web::{append_cookie, found, parse_form, safe_return, Browser, Cookies};

pub fn routes(state: &AppState) -> Router<AppState> {
    // CORS for browser-based clients, from every client's `allowed_origins`.
    let cors = |router: Router<AppState>| {
        if state.cors_origins.is_empty() {
            return router;
        }
        let origins: Vec<HeaderValue> = state
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        )
    };
    let mut cross_origin = Router::new()
        .route(paths::DISCOVERY, get(discovery))
        .route(paths::JWKS, get(jwks))
        .route(paths::TOKEN, post(token))
        .route(paths::USERINFO, get(userinfo).post(userinfo))
        .route(paths::REVOKE, post(revoke));
    let keycloak = state.config.compat.keycloak_paths;
    if keycloak {
        use paths::keycloak as kc;
        cross_origin = cross_origin
            .route(kc::CERTS, get(jwks))
            .route(kc::TOKEN, post(token))
            .route(kc::USERINFO, get(userinfo).post(userinfo))
            .route(kc::REVOKE, post(revoke));
    }
    let router = cors(cross_origin)
        .route(paths::INTROSPECT, post(introspect))
        .route(paths::LOGOUT, get(logout_get).post(logout_post));
    if keycloak {
        use paths::keycloak as kc;
        router
            .route(kc::INTROSPECT, post(introspect))
            .route(kc::LOGOUT, get(logout_get).post(logout_post))
    } else {
        router
    }
}

fn json_bytes(body: std::sync::Arc<str>, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn discovery(State(state): State<AppState>) -> Response {
    json_bytes(state.discovery_json.clone(), "public, max-age=300")
}

async fn jwks(State(state): State<AppState>) -> Response {
    json_bytes(state.keys.jwks_json(), crate::keys::JWKS_CACHE_CONTROL)
}

#[derive(Debug, Default, Deserialize)]
struct ClientForm {
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn credentials(headers: &HeaderMap, form: ClientForm) -> ClientCredentials {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .map(str::to_string);
    ClientCredentials {
        basic,
        form_client_id: form.client_id.filter(|s| !s.is_empty()),
        form_client_secret: form.client_secret.filter(|s| !s.is_empty()),
    }
}

/// A body the server will not read (too large, broken) still gets a JSON OAuth error: these
/// endpoints never answer with plain text or HTML.
fn too_large(e: BytesRejection) -> WebError {
    OAuthError::invalid_request(format!(
        "the request body could not be read: {}",
        e.body_text()
    ))
    .into()
}

fn no_store_json(value: serde_json::Value) -> Response {
    let mut resp = Json(value).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// POST /token.
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let body = body.map_err(too_large)?;
    let req: TokenRequest = parse_form(&body).map_err(OAuthError::invalid_request)?;
    let creds = credentials(
        &headers,
        parse_form(&body).map_err(OAuthError::invalid_request)?,
    );
    let client = authenticate(&state, &creds, "token")?;
    let resp = state.provider.exchange(client, &req, state.now()).await?;
    Ok(no_store_json(
        serde_json::to_value(resp).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

/// GET|POST /userinfo with a Bearer token (header, or form body per RFC 6750 §2.2).
async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|s| s.trim().to_string());
    #[derive(Deserialize)]
    struct BodyToken {
        access_token: Option<String>,
    }
    let from_body = parse_form::<BodyToken>(&body)
        .ok()
        .and_then(|b| b.access_token);
    let token = from_header
        .or(from_body)
        .ok_or_else(|| OAuthError::invalid_token("a Bearer access token is required"))?;
    let claims = state
        .provider
        .userinfo(&state.clients, &token, state.now())
        .await?;
    Ok(no_store_json(serde_json::Value::Object(claims)))
}

/// Client authentication, with every failure logged naming the client id presented (not a
/// secret) and the reason.
fn authenticate<'a>(
    state: &'a AppState,
    creds: &ClientCredentials,
    endpoint: &'static str,
) -> Result<&'a crate::config::ClientConfig, OAuthError> {
    state.clients.authenticate(creds).inspect_err(|e| {
        let client = creds.presented_client_id();
        tracing::warn!(target: "audit", event = "client_auth", endpoint, outcome = "failure", client = client.as_deref().unwrap_or("-"), reason = %e.description);
    })
}

#[derive(Debug, Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The authenticated client and the `token` parameter of a revocation or introspection.
fn client_and_token<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: &'static str,
) -> Result<(&'a crate::config::ClientConfig, String), WebError> {
    let body = body.map_err(too_large)?;
    let creds = credentials(
        headers,
        parse_form(&body).map_err(OAuthError::invalid_request)?,
    );
    let client = authenticate(state, &creds, endpoint)?;
    let p: TokenParam = parse_form(&body).map_err(OAuthError::invalid_request)?;
    let token = p
        .token
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok((client, token))
}

/// POST /revoke (RFC 7009).
async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (client, token) = client_and_token(&state, &headers, body, "revoke")?;
    state
        .provider
        .revoke(&client.id, &token, state.now())
        .await?;
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response())
}

/// POST /introspect (RFC 7662), for confidential clients.
async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (client, token) = client_and_token(&state, &headers, body, "introspect")?;
    if client.public {
        return Err(OAuthError::invalid_client("public clients cannot introspect tokens").into());
    }
    Ok(no_store_json(
        state
            .provider
            .introspect(client, &token, state.now())
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    csrf: Option<String>,
    confirm: Option<String>,
    /// Forward-auth sign-out: where to go afterwards (doorman's own origin or a protected host).
    rd: Option<String>,
}

async fn logout_get(
    State(state): State<AppState>,
    cookies: Cookies,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let params = parse_form::<LogoutParams>(q.unwrap_or_default().as_bytes())
        .map_err(WebError::bad_request)?;
    // A GET can never carry the confirmation: only the CSRF-protected form can.
    logout(
        state,
        cookies,
        LogoutParams {
            csrf: None,
            confirm: None,
            ..params
        },
    )
    .await
}

async fn logout_post(
    State(state): State<AppState>,
    cookies: Cookies,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = parse_form::<LogoutParams>(&body).map_err(WebError::bad_request)?;
    logout(state, cookies, params).await
}

const LOGOUT_PURPOSE: &str = "logout";

/// RP-initiated logout 1.0: ends the SSO session. Without a valid id_token_hint for the
/// signed-in user, the user confirms with a CSRF-protected form, so another site cannot sign
/// people out. post_logout_redirect_uri is honoured only when registered for that client.
async fn logout(state: AppState, cookies: Cookies, p: LogoutParams) -> Result<Response, WebError> {
    let now = state.now();
    let hint = p.id_token_hint.as_deref().and_then(|t| {
        state
            .provider
            .read_id_token_hint(t, |aud| state.clients.get(aud).is_some())
    });
    let client_id = match (&hint, p.client_id.as_deref()) {
        (Some(h), Some(c)) if h.aud != c => {
            return Err(WebError::bad_request(
                "client_id does not match the id_token_hint.",
            ))
        }
        (Some(h), _) => Some(h.aud.clone()),
        (None, c) => c.map(str::to_string),
    };
    let client = client_id.as_deref().and_then(|c| state.clients.get(c));
    let redirect = match p.post_logout_redirect_uri.as_deref() {
        None => None,
        Some(uri) => match client {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri.to_string()),
            _ => {
                return Err(WebError::bad_request(
                    "The address to return to after signing out is not registered for this application, so doorman will not send you there.",
                ))
            }
        },
    };
    let names = CookieNames::of(&state.config);
    let session_cookie = cookies.get(names.session);
    let live = match session_cookie {
        Some(c) => session::lookup(&*state.store, &state.config, c, now).await?,
        None => None,
    };
    let browser = cookies.get(names.browser).map(str::to_string);
    let confirmed_by_form = p.confirm.as_deref() == Some("yes");
    if confirmed_by_form {
        let valid = match (&browser, &p.csrf) {
            (Some(b), Some(t)) => state.csrf.verify(LOGOUT_PURPOSE, b, t),
            _ => false,
        };
        if !valid {
            return Err(WebError::page(
                StatusCode::FORBIDDEN,
                "This form could not be verified",
                "The sign-out form did not come from doorman's page in this browser.",
            ));
        }
    }
    // The hint stands for the signed-in user's consent only if it is theirs and, when it names
    // its session (`sid`), from this very session: an id_token of an earlier session of the
    // same user does not sign out the current one without asking.
    let hint_matches = hint.as_ref().is_some_and(|h| {
        live.as_ref().is_none_or(|(s, u)| {
            u.id == h.sub
                && h.sid
                    .as_deref()
                    .is_none_or(|sid| sid == state.provider.sid_for(s))
        })
    });
    if let (Some((_, user)), false, false) = (&live, hint_matches, confirmed_by_form) {
        // Ask first.
        let browser = Browser::of(&state, &cookies);
        let html = state.templates.render(
            "logout.html",
            serde_json::json!({
                "base": state.issuer(),
                "csrf": state.csrf.token(LOGOUT_PURPOSE, &browser.value),
                "username": user.username,
                "client_id": client_id,
                "client_name": client.map(|c| c.name.clone().unwrap_or_else(|| c.id.clone())),
                "post_logout_redirect_uri": redirect,
                "state": p.state,
                "rd": p.rd.as_deref().filter(|rd| safe_return(&state.config, rd)),
            }),
        );
        let mut resp = crate::web::html(StatusCode::OK, html);
        browser.keep(&state, &mut resp);
        return Ok(resp);
    }
    if let Some((s, user)) = &live {
        // Back-channel logout to the clients signed in through this session (found before
        // the session goes; their grants stay, as an RP-initiated logout always left them).
        let sid = state.provider.sid_for(s);
        let clients = state.store.session_clients(&user.id, Some(&sid)).await?;
        state.backchannel.notify(&user.id, &clients);
    }
    if let Some(c) = session_cookie {
        session::end(&*state.store, c).await?;
    }
    if let Some((_, user)) = &live {
        tracing::info!(target: "audit", event = "logout", user = %user.username, client = client_id.as_deref().unwrap_or("-"));
    }
    let rd = p.rd.as_deref().filter(|rd| safe_return(&state.config, rd));
    let mut resp = match (redirect, rd) {
        (Some(uri), _) => {
            let params: Vec<(&str, &str)> = p.state.as_deref().map(|s| vec![("state", s)]).unwrap_or_default();
            found(&authorize::redirect_with(&uri, &params))
        }
        (None, Some(rd)) => found(rd),
        (None, None) => crate::web::html(
            StatusCode::OK,
            state.templates.render("message.html", serde_json::json!({"base": state.issuer(), "title": "You are signed out", "message": "You can close this window."})),
        ),
    };
    append_cookie(
        &mut resp,
        &session::clear_cookie(&state.config, names.session),
    );
    // The forward-auth cookie's session is gone with the SSO session; clear the cookie too.
    if let Some(c) = session::clear_forward_auth_cookie(&state.config) {
        append_cookie(&mut resp, &c);
    }
    Ok(resp)
}
