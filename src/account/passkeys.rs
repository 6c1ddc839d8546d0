//! Passkeys on `/account`: add one (a ceremony bound to this SSO session), rename, remove.
//!
//! - `GET /account/passkeys`: when the account has a second factor this session did not use,
//!   asks for it first; then back to the page's section.
//! - `POST /account/passkeys/options` (csrf, password or code): the creation options, JSON,
//!   once the password (or a code from the app) is right, counted in the lockout like a
//!   sign-in; the challenge is bound to this session.
//! - `POST /account/passkeys/add` (csrf, name, credential): the registration; recovery codes
//!   (shown once) when it is the account's first second factor.
//! - `POST /account/passkeys/rename` (csrf, id, name).
//! - `POST /account/passkeys/remove` (csrf, id, password or code): confirmed like removing
//!   the authenticator app.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;

use super::{authorised, confirm_change, done, refuse, Errors, Refusal};
use crate::error::WebError;
use crate::login::passkey::{json_error, rp_or_404, tell_owner, too_many, NOT_ACCEPTED};
use crate::signin::passkey::{self as pk, Ceremony, PasskeyError};
use crate::signin::second_factor as factor;
use crate::signin::{FlowState, Proof, Purpose, Step};
use crate::state::AppState;
use crate::store::{Session, User};
use crate::web::{ClientIp, Cookies, SignedIn};

pub mod paths {
    pub const GATE: &str = "/account/passkeys";
    pub const OPTIONS: &str = "/account/passkeys/options";
    pub const ADD: &str = "/account/passkeys/add";
    pub const RENAME: &str = "/account/passkeys/rename";
    pub const REMOVE: &str = "/account/passkeys/remove";
}

/// May this session add a passkey? A doorman account (with a password) and, when it has a
/// second factor, a session that used one. The options then ask for the password (or an app
/// code) again: a session cookie alone must not add a way in that outlives a password change.
pub(crate) async fn may_add(
    state: &AppState,
    session: &Session,
    user: &User,
) -> Result<bool, WebError> {
    if user.password_hash.is_none() || pk::relying_party(&state.config).is_none() {
        return Ok(false);
    }
    Ok(crate::signin::policy::has_second_factor(&session.amr)
        || !factor::has_one(&*state.store, &user.id).await?)
}

fn section(state: &AppState) -> String {
    format!("{}#passkeys", state.url(super::paths::ACCOUNT))
}

/// GET /account/passkeys.
pub(super) async fn gate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
) -> Result<Response, WebError> {
    rp_or_404(&state)?;
    let here = state.url(paths::GATE);
    let Some((session, user)) = live else {
        return crate::login::begin(&state, &cookies, ip, Purpose::Continue { url: Some(here) })
            .await;
    };
    if may_add(&state, &session, &user).await? || user.password_hash.is_none() {
        return Ok(Redirect::to(&section(&state)).into_response());
    }
    // The account has a second factor this session did not use: that first.
    let flow_state = FlowState {
        purpose: Purpose::Continue { url: Some(here) },
        step: Step::SecondFactor {
            user_id: user.id.clone(),
            amr: session.amr.clone(),
            proof: Proof::session(&session),
        },
    };
    crate::login::begin_at(&state, &cookies, ip, flow_state).await
}

#[derive(Debug, Deserialize)]
pub(super) struct PasskeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

fn sign_in_again() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "Use your second factor first",
        "Adding a passkey needs a sign-in with your account's second factor. Open your account page and choose \"Add a passkey\" again.",
    )
}

/// POST /account/passkeys/options: after the password (or an app code), checked and
/// counted like a sign-in's.
pub(super) async fn options(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let rp = rp_or_404(&state)?;
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    if !may_add(&state, &session, &user).await? {
        return Err(sign_in_again());
    }
    if let Err(limited) = state.limiter.passkey_challenge(ip, state.now_ms()) {
        return Ok(too_many(ip, limited.retry_after));
    }
    if let Err(Refusal(msg, status, retry)) =
        confirm_change(&state, &user, &form.code, &form.password, ip, "add_passkey").await?
    {
        let mut resp = json_error(status, &msg);
        if let Some(s) = retry {
            crate::login::set_retry_after(&mut resp, s);
        }
        return Ok(resp);
    }
    let now = state.now();
    let ceremony = Ceremony::Enrol {
        user_id: user.id.clone(),
        resident: true,
    };
    let options = pk::start(
        &*state.store,
        &rp,
        &ceremony,
        Some(&user),
        &session.id_hash,
        session.expires_at,
        now,
    )
    .await
    .map_err(|e| match e {
        PasskeyError::Store(e) => e.into(),
        e => WebError::Internal(e.to_string()),
    })?;
    Ok(Json(options).into_response())
}

async fn refuse_in_section(
    state: &AppState,
    cookies: &Cookies,
    session: &Session,
    user: &User,
    Refusal(msg, status, retry): Refusal,
) -> Result<Response, WebError> {
    let errors = Errors {
        passkeys: Some(msg),
        ..Errors::default()
    };
    refuse(state, cookies, session, user, errors, status, retry).await
}

/// POST /account/passkeys/add.
pub(super) async fn add(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let rp = rp_or_404(&state)?;
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    if !may_add(&state, &session, &user).await? {
        return Err(sign_in_again());
    }
    let now = state.now();
    let had = factor::has_one(&*state.store, &user.id).await?;
    let added = match pk::finish_enrol(
        &*state.store,
        &rp,
        &session.id_hash,
        &user.id,
        had,
        &form.credential,
        &form.name,
        now,
    )
    .await
    {
        Ok(a) => a,
        Err(PasskeyError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(target: "audit", event = "passkey", action = "enrol", user = %user.username, ip = %ip, outcome = "refused", reason = ?e.to_string());
            let msg = match e {
                PasskeyError::Duplicate => "That passkey is registered already.",
                PasskeyError::TooMany => {
                    "Your account has as many passkeys as it may have. Remove one first."
                }
                _ => NOT_ACCEPTED,
            };
            return refuse_in_section(
                &state,
                &cookies,
                &session,
                &user,
                Refusal(msg.into(), StatusCode::UNAUTHORIZED, None),
            )
            .await;
        }
    };
    tracing::info!(target: "audit", event = "second_factor", action = "enrolled", method = "passkey", passkey = ?added.passkey.name, user = %user.username, ip = %ip, outcome = "success");
    tell_owner(&state, &user, &added.passkey.name);
    if !added.first_factor {
        return Ok(done(&state, "passkey-added"));
    }
    // The account's first second factor: the other sessions and their applications were
    // signed in without it and end; recovery codes are shown once.
    let keep_sid = state.provider.sid_for(&session);
    let ended = super::sign_ins::end_other_sign_ins(
        &*state.store,
        &user.id,
        &session.id_hash,
        &keep_sid,
        now,
    )
    .await?;
    state.backchannel.notify(&user.id, &ended.logouts);
    tracing::info!(target: "audit", event = "account", action = "first_second_factor", user = %user.username, ip = %ip, sessions_ended = ended.sessions, grants_revoked = ended.grants);
    let codes = factor::new_recovery_codes(&*state.store, &state.secret_box, &user.id, now).await?;
    Ok(crate::login::second_factor::codes_page(
        &state,
        codes,
        &format!("{}?done=passkey-added", state.url(super::paths::ACCOUNT)),
        true,
    ))
}

fn not_yours() -> Refusal {
    Refusal(
        "That passkey is not on your account.".into(),
        StatusCode::NOT_FOUND,
        None,
    )
}

/// POST /account/passkeys/rename.
pub(super) async fn rename(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let name = pk::clean_name(&form.name);
    if !state
        .store
        .rename_passkey(&user.id, &form.id, &name)
        .await?
    {
        return refuse_in_section(&state, &cookies, &session, &user, not_yours()).await;
    }
    tracing::info!(target: "audit", event = "passkey", action = "renamed", passkey = ?name, user = %user.username, ip = %ip, outcome = "success");
    Ok(done(&state, "passkey-renamed"))
}

/// POST /account/passkeys/remove.
pub(super) async fn remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<PasskeyForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let mine = state.store.list_passkeys(&user.id).await?;
    let Some(passkey) = mine.iter().find(|p| p.id == form.id) else {
        return refuse_in_section(&state, &cookies, &session, &user, not_yours()).await;
    };
    let method = match confirm_change(
        &state,
        &user,
        &form.code,
        &form.password,
        ip,
        "remove_passkey",
    )
    .await?
    {
        Ok(m) => m,
        Err(refusal) => return refuse_in_section(&state, &cookies, &session, &user, refusal).await,
    };
    state.store.delete_passkey(&user.id, &passkey.id).await?;
    // Sessions do not record which passkey signed them in: a removed passkey (a lost phone)
    // must not leave its sessions and their applications signed in, so every other session
    // ends with the grants made in it ("sign out everywhere else").
    let ended = super::sign_ins::end_other_sessions(
        &*state.store,
        &user.id,
        &session.id_hash,
        state.now(),
        |s| state.provider.sid_for(s),
    )
    .await?;
    state.backchannel.notify(&user.id, &ended.logouts);
    tracing::info!(target: "audit", event = "second_factor", action = "removed", method = "passkey", passkey = ?passkey.name, user = %user.username, ip = %ip, confirmed_with = method, sessions_ended = ended.sessions, grants_revoked = ended.grants, outcome = "success");
    Ok(done(&state, "passkey-removed"))
}
