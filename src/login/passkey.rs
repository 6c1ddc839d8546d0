//! The passkey steps of a sign-in flow, thin handlers over [`crate::signin::passkey`]:
//!
//! - `POST /login/passkey/options` (flow, csrf): the options for `navigator.credentials`,
//!   by the flow's step: passwordless on the landing page, the second factor on the code page,
//!   an enrolment on the enrolment page. JSON `{"publicKey": ...}`.
//! - `POST /login/passkey` (flow, csrf, credential): the assertion; signs in.
//! - `POST /login/passkey/enrol` (flow, csrf, credential, name): the registration; the
//!   passkey is the account's second factor from here (recovery codes when it is the first).
//!
//! Each form belongs to a flow, with the same CSRF rules as the password form; the challenge
//! is bound to the flow, single use, and lives in the store (any replica can finish it).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::second_factor::{enrolled, expired, flow_user, may_enrol, render_step, EnrolledFlow};
use super::{load_flow, redirect_with_cookies};
use crate::accounts::webauthn::Rp;
use crate::error::WebError;
use crate::signin::passkey::{self as pk, Ceremony, Expect, PasskeyError};
use crate::signin::second_factor as factor;
use crate::signin::{FlowState, Step};
use crate::state::AppState;
use crate::store::{Flow, User};
use crate::web::{ClientInfo, ClientIp, Cookies, Transport};

pub mod paths {
    pub const OPTIONS: &str = "/login/passkey/options";
    pub const SIGN_IN: &str = "/login/passkey";
    pub const ENROL: &str = "/login/passkey/enrol";
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::OPTIONS, post(options))
        .route(paths::SIGN_IN, post(sign_in))
        .route(paths::ENROL, post(enrol))
}

#[derive(Debug, Deserialize)]
struct PasskeyForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    csrf: String,
    /// The JSON the page's script made of the browser's answer.
    #[serde(default)]
    credential: String,
    #[serde(default)]
    name: String,
}

/// What a user sees when a passkey did not work (the log says why).
pub const NOT_ACCEPTED: &str = "That passkey was not accepted. Try again, or use another way.";

/// Passkeys are on, or the answer is a readable 404.
pub(crate) fn rp_or_404(state: &AppState) -> Result<Rp, WebError> {
    pk::relying_party(&state.config).ok_or_else(|| {
        WebError::page(
            StatusCode::NOT_FOUND,
            "Passkeys are not available here",
            "The operator has not turned passkeys on for this address. Use another way to sign in.",
        )
    })
}

/// The passkey ceremony of a flow's step, and the user it is for.
async fn ceremony_of(state: &AppState, step: &Step) -> Result<(Ceremony, Option<User>), WebError> {
    Ok(match step {
        Step::FirstFactor => (Ceremony::Passwordless, None),
        Step::SecondFactor { .. } => {
            let user = flow_user(state, step).await?;
            (
                Ceremony::SecondFactor {
                    user_id: user.id.clone(),
                },
                Some(user),
            )
        }
        Step::Enrol { amr, .. } => {
            let user = flow_user(state, step).await?;
            may_enrol(state, &user, amr).await?;
            (
                Ceremony::Enrol {
                    user_id: user.id.clone(),
                    resident: true,
                },
                Some(user),
            )
        }
        Step::Done { .. } | Step::PlexInvite { .. } => return Err(expired()),
    })
}

/// POST /login/passkey/options.
async fn options(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let rp = rp_or_404(&state)?;
    if let Err(limited) = state.limiter.passkey_challenge(ip, state.now_ms()) {
        return Ok(too_many(ip, limited.retry_after));
    }
    let (flow, flow_state, _) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let (ceremony, user) = ceremony_of(&state, &flow_state.step).await?;
    if matches!(ceremony, Ceremony::Passwordless) && !password_method(&state) {
        return Err(rp_or_404_off());
    }
    let now = state.now();
    let options = pk::start(
        &*state.store,
        &rp,
        &ceremony,
        user.as_ref(),
        &flow.id_hash,
        flow.expires_at,
        now,
    )
    .await
    .map_err(internal)?;
    Ok(Json(options).into_response())
}

/// A JSON answer the page's script shows (`{"error": ...}`).
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// 429 for an IP asking for too many passkey challenges.
pub(crate) fn too_many(ip: std::net::IpAddr, retry_after: i64) -> Response {
    tracing::warn!(target: "audit", event = "passkey", action = "options", ip = %ip, outcome = "rate_limited");
    let mut resp = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "Too many passkey requests from this address. {}",
            crate::signin::password::wait_text(retry_after)
        ),
    );
    super::set_retry_after(&mut resp, retry_after);
    resp
}

/// Mails the account's verified address that a passkey was added (with `[smtp]`): a way in
/// that outlives a password change, so its owner hears of it at once.
pub(crate) fn tell_owner(state: &AppState, user: &User, passkey_name: &str) {
    let (Some(outbox), Some(to)) = (
        state.mailer.as_ref(),
        user.email.as_deref().filter(|_| user.email_verified),
    ) else {
        return;
    };
    let site = crate::mail::messages::site(state.issuer());
    let account = format!("{}#passkeys", state.url(crate::account::paths::ACCOUNT));
    let text = crate::mail::messages::passkey_added(&site, &user.username, passkey_name, &account);
    outbox.queue(crate::mail::Mail {
        to: to.to_string(),
        subject: text.subject,
        body: text.body,
        what: "passkey_added",
    });
}

fn password_method(state: &AppState) -> bool {
    state
        .config
        .login
        .methods
        .contains(&crate::config::LoginMethod::Password)
}

fn rp_or_404_off() -> WebError {
    WebError::page(
        StatusCode::NOT_FOUND,
        "Passkeys are not available here",
        "Only doorman's own accounts have passkeys, and this server signs in elsewhere.",
    )
}

fn internal(e: PasskeyError) -> WebError {
    match e {
        PasskeyError::Store(e) => e.into(),
        e => WebError::Internal(e.to_string()),
    }
}

/// Logs a refused passkey and answers with the step's page again.
/// The page a refusal shows again: the flow's current step.
struct Shown<'a> {
    flow_id: &'a str,
    browser: &'a str,
    flow_state: &'a FlowState,
}

async fn refused(
    state: &AppState,
    shown: Shown<'_>,
    ip: std::net::IpAddr,
    action: &str,
    user: Option<&User>,
    e: PasskeyError,
) -> Result<Response, WebError> {
    let who = user.map(|u| u.username.as_str()).unwrap_or("-");
    match &e {
        PasskeyError::Store(_) => return Err(internal(e)),
        PasskeyError::Counter { .. } | PasskeyError::OtherUser { .. } => {
            tracing::error!(target: "audit", event = "passkey", action, user = %who, ip = %ip, outcome = "refused", reason = ?e.to_string());
        }
        _ => {
            tracing::warn!(target: "audit", event = "passkey", action, user = %who, ip = %ip, outcome = "refused", reason = ?e.to_string());
        }
    }
    let message = match e {
        PasskeyError::Duplicate => "That passkey is registered already.",
        PasskeyError::TooMany => "This account has as many passkeys as it may have. Remove one on your account page first.",
        _ => NOT_ACCEPTED,
    };
    render_step(
        state,
        shown.flow_id,
        shown.browser,
        shown.flow_state,
        Some(message),
        StatusCode::UNAUTHORIZED,
    )
    .await
}

/// POST /login/passkey: passwordless on the landing page, or the second factor.
async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ClientInfo(meta): ClientInfo,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let rp = rp_or_404(&state)?;
    let (flow, flow_state, browser) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let now = state.now();
    let proved = match &flow_state.step {
        Step::FirstFactor if password_method(&state) => None,
        Step::SecondFactor { amr, .. } => Some((flow_user(&state, &flow_state.step).await?, amr)),
        _ => return Err(expired()),
    };
    let expect = proved
        .as_ref()
        .map_or(Expect::Anyone, |(u, _)| Expect::User(&u.id));
    let action = if proved.is_some() {
        "second_factor"
    } else {
        "passwordless"
    };
    let signed = match pk::finish_assertion(
        &*state.store,
        &rp,
        &flow.id_hash,
        expect,
        &form.credential,
        now,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            return refused(
                &state,
                Shown {
                    flow_id: &form.flow,
                    browser: &browser,
                    flow_state: &flow_state,
                },
                ip,
                action,
                proved.as_ref().map(|(u, _)| u),
                e,
            )
            .await
        }
    };
    let (user, amr) = match proved {
        Some((user, first)) => (user, signed.amr(Some(first))),
        None => (
            passwordless_user(&state, &signed.user_id, ip).await?,
            signed.amr(None),
        ),
    };
    let client = super::client_of(&flow_state.purpose).to_string();
    tracing::info!(target: "audit", event = "sign_in", method = signed.method, passkey = ?signed.passkey_name, passwordless = (action == "passwordless"), user = %user.username, ip = %ip, client = %client, outcome = "success");
    finish(&state, &cookies, &flow, &flow_state, &user, amr, &meta).await
}

/// The account a passwordless passkey names, if it may sign in.
async fn passwordless_user(
    state: &AppState,
    user_id: &str,
    ip: std::net::IpAddr,
) -> Result<User, WebError> {
    let user = state.store.get_user(user_id).await?.ok_or_else(expired)?;
    if user.disabled {
        tracing::warn!(target: "audit", event = "sign_in", method = "passkey", user = %user.username, ip = %ip, outcome = "disabled");
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "This account is disabled",
            "Ask the operator.",
        ));
    }
    Ok(user)
}

async fn finish(
    state: &AppState,
    cookies: &Cookies,
    flow: &Flow,
    flow_state: &FlowState,
    user: &User,
    amr: Vec<String>,
    meta: &crate::session::SessionMeta,
) -> Result<Response, WebError> {
    let (set, url) =
        super::signed_in(state, cookies, flow, &flow_state.purpose, user, amr, meta).await?;
    Ok(redirect_with_cookies(&url, &set))
}

/// POST /login/passkey/enrol: a passkey as the account's second factor, inside a sign-in
/// (required enrolment, or the invite page's optional one).
async fn enrol(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ClientInfo(meta): ClientInfo,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let rp = rp_or_404(&state)?;
    let (flow, flow_state, browser) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let Step::Enrol { amr, .. } = &flow_state.step else {
        return Err(expired());
    };
    let user = flow_user(&state, &flow_state.step).await?;
    may_enrol(&state, &user, amr).await?;
    let now = state.now();
    let had = factor::has_one(&*state.store, &user.id).await?;
    let added = match pk::finish_enrol(
        &*state.store,
        &rp,
        &flow.id_hash,
        &user.id,
        had,
        &form.credential,
        &form.name,
        now,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            return refused(
                &state,
                Shown {
                    flow_id: &form.flow,
                    browser: &browser,
                    flow_state: &flow_state,
                },
                ip,
                "enrol",
                Some(&user),
                e,
            )
            .await
        }
    };
    tracing::info!(target: "audit", event = "second_factor", action = "enrolled", method = "passkey", passkey = ?added.passkey.name, user = %user.username, ip = %ip, outcome = "success");
    tell_owner(&state, &user, &added.passkey.name);
    let codes = if added.first_factor {
        Some(factor::new_recovery_codes(&*state.store, &state.secret_box, &user.id, now).await?)
    } else {
        None
    };
    let method = crate::accounts::webauthn::amr_method(added.passkey.backup_eligible);
    let amr = pk::amr_after(amr, method);
    enrolled(
        &state,
        &cookies,
        &meta,
        EnrolledFlow {
            flow: &flow,
            purpose: &flow_state.purpose,
            id: &form.flow,
            browser: &browser,
            passkey: true,
        },
        &user,
        amr,
        codes,
    )
    .await
}
