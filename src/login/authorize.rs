//! `GET|POST /authorize`: validate the request (`oidc::authorize`), then the one decision
//! (`signin::policy::at_authorize`): SSO straight back with a code, a second factor first
//! (step-up), the landing page, or an error back to the client for `prompt=none`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::error::WebError;
use crate::oidc::authorize::{
    self, error_redirect, user_allowed, AuthorizeParams, AuthorizeReject, AuthorizeRequest,
};
use crate::oidc::error::OAuthError;
use crate::oidc::paths;
use crate::signin::policy::{self, AtAuthorize, Next};
use crate::signin::{FlowState, Proof, Purpose};
use crate::state::AppState;
use crate::store::{Session, User};
use crate::web::{found, live_session, parse_form, ClientIp, Cookies};

/// `/authorize`, and Keycloak's `/protocol/openid-connect/auth` with `[compat] keycloak_paths`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new().route(paths::AUTHORIZE, get(authorize_get).post(authorize_post));
    if state.config.compat.keycloak_paths {
        router.route(
            paths::keycloak::AUTH,
            get(authorize_get).post(authorize_post),
        )
    } else {
        router
    }
}

async fn authorize_get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let params = parse_form::<AuthorizeParams>(q.unwrap_or_default().as_bytes())
        .map_err(WebError::bad_request)?;
    authorize(state, cookies, ip, params).await
}

async fn authorize_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = parse_form::<AuthorizeParams>(&body).map_err(WebError::bad_request)?;
    authorize(state, cookies, ip, params).await
}

/// GET|POST /authorize (see `oidc::authorize` for the order of checks).
async fn authorize(
    state: AppState,
    cookies: Cookies,
    ip: std::net::IpAddr,
    params: AuthorizeParams,
) -> Result<Response, WebError> {
    let req = match authorize::validate(&params, &state.clients) {
        Ok(req) => req,
        Err(AuthorizeReject::Page(message)) => {
            tracing::warn!(target: "audit", event = "authorize", outcome = "rejected", reason = %message);
            return Err(WebError::page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                message,
            ));
        }
        Err(AuthorizeReject::Redirect {
            redirect_uri,
            state: st,
            error,
        }) => {
            return Ok(found(&error_redirect(
                &redirect_uri,
                st.as_deref(),
                &error,
                state.issuer(),
            )));
        }
    };
    let live = live_session(&state, &cookies).await?;
    let purpose = Purpose::Authorize(req);
    let must_have = live.as_ref().is_some_and(|(_, user)| {
        policy::must_have_second_factor(
            &state.config.login,
            purpose.client_id().and_then(|id| state.clients.get(id)),
            purpose.asks_second_factor(),
            user,
        )
    });
    let Purpose::Authorize(req) = &purpose else {
        return Err(WebError::Internal(
            "an authorization lost its request".into(),
        ));
    };
    let back = |e: OAuthError| {
        found(&error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
            state.issuer(),
        ))
    };
    match policy::at_authorize(req, live.as_ref().map(|(s, _)| s), must_have, state.now()) {
        AtAuthorize::IssueCode => match &live {
            // SSO: straight back to the client, no page at all.
            Some((session, user)) => Ok(found(&code_redirect(&state, req, session, user).await?)),
            None => Err(WebError::Internal("no session to issue a code from".into())),
        },
        AtAuthorize::LoginRequired => Ok(back(OAuthError::login_required("the user must sign in"))),
        AtAuthorize::InteractionRequired => Ok(back(OAuthError::interaction_required(
            "the application requires a second factor, which the user must enter",
        ))),
        AtAuthorize::StepUp => {
            let Some((session, user)) = &live else {
                return Err(WebError::Internal("no session to step up".into()));
            };
            // Signed in with a password only: the code first, no password again. Without a
            // factor yet, the password is asked again before enrolling (a session cookie alone
            // must not set up an authenticator app).
            if !crate::signin::second_factor::has_one(&*state.store, &user.id).await? {
                return super::begin(&state, &cookies, ip, purpose.clone()).await;
            }
            let step = super::second_factor_step(
                &state,
                Next::AskCode,
                user,
                session.amr.clone(),
                Proof::session(session),
            )?;
            let flow_state = FlowState {
                purpose: purpose.clone(),
                step,
            };
            super::begin_at(&state, &cookies, ip, flow_state).await
        }
        AtAuthorize::SignIn => super::begin(&state, &cookies, ip, purpose.clone()).await,
    }
}

/// Where the browser goes for an authorization request with a signed-in user: the code, or
/// `access_denied` when the client's `allowed_groups` exclude the user.
pub async fn code_redirect(
    state: &AppState,
    req: &AuthorizeRequest,
    session: &Session,
    user: &User,
) -> Result<String, WebError> {
    let client = state
        .clients
        .get(&req.client_id)
        .ok_or_else(|| WebError::bad_request("The application is no longer registered."))?;
    if !user_allowed(client, user) {
        tracing::warn!(target: "audit", event = "authorize", user = %user.username, client = %client.id, outcome = "access_denied");
        let e =
            OAuthError::access_denied("the user is not in a group allowed to use this application");
        return Ok(error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
            state.issuer(),
        ));
    }
    match state
        .provider
        .issue_code(req, client, session, state.now())
        .await
    {
        Ok(url) => Ok(url),
        Err(e) => Ok(error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
            state.issuer(),
        )),
    }
}
