//! Password-reset links in the browser: `GET /reset/{token}` shows the new-password form of a
//! usable reset link (with a code field when the account has a second factor), `POST
//! /reset/{token}` sets the password. A reset never bypasses the second factor (the code is
//! checked first and counts in the lockout like a sign-in's), takes the link's one use
//! atomically, ends every session and grant of the user, and does not sign the browser in.
//! Thin handlers: the link rules are `accounts::links`, the password rules
//! `accounts::password_policy`, the codes `signin::second_factor`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::links::{self, LinkState};
use crate::accounts::password_policy;
use crate::accounts::users;
use crate::error::WebError;
use crate::signin::limits::IpKey;
use crate::signin::password::wait_text;
use crate::signin::second_factor::{self as factor, CodeCheck};
use crate::state::AppState;
use crate::store::{Link, LinkKind, User};
use crate::web::{Browser, ClientIp, Cookies};

pub mod paths {
    /// The reset page; the whole last segment is the token.
    pub const RESET: &str = "/reset/{token}";
    /// Where the "sign in" link of the done page goes.
    pub const LOGIN: &str = "/account";
}

pub fn routes() -> Router<AppState> {
    Router::new().route(paths::RESET, get(page).post(submit))
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    #[serde(default)]
    code: String,
}

#[derive(Serialize)]
struct FormPage<'a> {
    base: &'a str,
    action: &'a str,
    csrf: &'a str,
    username: &'a str,
    code: bool,
    app: bool,
    min_length: usize,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct MessagePage<'a> {
    base: &'a str,
    title: &'a str,
    message: &'a str,
    link: Option<&'a str>,
}

fn message(
    state: &AppState,
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<&str>,
) -> Response {
    let html = state.templates.render(
        "reset_message.html",
        MessagePage {
            base: state.issuer(),
            title,
            message: text,
            link,
        },
    );
    crate::web::html(status, html)
}

/// The page of a link that cannot be used (whatever the reason: expired, used, revoked,
/// unknown, or its account disabled or gone).
fn gone(state: &AppState) -> Response {
    message(
        state,
        StatusCode::GONE,
        "This link can no longer be used",
        "Password-reset links work once and for a limited time. Ask for a new one.",
        None,
    )
}

/// The reset link behind `token` and its account, if both can be used now; else the gone page.
async fn usable(state: &AppState, token: &str) -> Result<Result<(Link, User), Response>, WebError> {
    if !links::well_formed_token(token) {
        return Ok(Err(gone(state)));
    }
    let now = state.now();
    let Some(link) = state
        .store
        .find_link(&links::token_hash(token), now)
        .await?
        .filter(|l| l.kind == LinkKind::Reset && links::state(l, now) == LinkState::Usable)
    else {
        return Ok(Err(gone(state)));
    };
    let Some(user_id) = link.user_id.as_deref() else {
        return Ok(Err(gone(state)));
    };
    match state.store.get_user(user_id).await? {
        Some(user) if !user.disabled => Ok(Ok((link, user))),
        _ => Ok(Err(gone(state))),
    }
}

struct View<'a> {
    token: &'a str,
    link: &'a Link,
    user: &'a User,
    browser: &'a str,
    code: bool,
    /// The account has an authenticator app (else only passkeys: a recovery code it is).
    app: bool,
    error: Option<&'a str>,
}

fn render_form(state: &AppState, view: &View<'_>, status: StatusCode) -> Response {
    let action = format!("{}/reset/{}", state.issuer(), view.token);
    let csrf = state.csrf.token(
        &crate::web::link_form_purpose("reset", &view.link.token_hash),
        view.browser,
    );
    let html = state.templates.render(
        "reset.html",
        FormPage {
            base: state.issuer(),
            action: &action,
            csrf: &csrf,
            username: &view.user.username,
            code: view.code,
            app: view.app,
            min_length: state.config.accounts.min_password_length,
            error: view.error,
        },
    );
    crate::web::html(status, html)
}

/// GET /reset/{token}.
async fn page(
    State(state): State<AppState>,
    browser: Browser,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let (link, user) = match usable(&state, &token).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let code = factor::has_one(&*state.store, &user.id).await?;
    let app = factor::has_totp(&*state.store, &user.id).await?;
    let view = View {
        token: &token,
        link: &link,
        user: &user,
        browser: &browser.value,
        code,
        app,
        error: None,
    };
    let mut resp = render_form(&state, &view, StatusCode::OK);
    browser.keep(&state, &mut resp);
    Ok(resp)
}

/// POST /reset/{token}: the second factor (when the account has one), the password policy
/// and the confirmation; then the link's one use is taken atomically, the password hashed
/// (the use given back when the hasher is busy) and set, every session and grant of the user
/// ends and the password lockout is lifted.
async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    Path(token): Path<String>,
    Form(form): Form<ResetForm>,
) -> Result<Response, WebError> {
    let (link, user) = match usable(&state, &token).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let Some(browser) =
        crate::web::link_form_browser(&state, &cookies, "reset", &link.token_hash, &form.csrf)
    else {
        tracing::warn!(target: "audit", event = "password_reset", link = %link.id, user = %user.username, ip = %ip, outcome = "csrf_refused");
        return Err(crate::web::forged_form(
            "password-reset page",
            "Open the link again.",
        ));
    };
    let has_factor = factor::has_one(&*state.store, &user.id).await?;
    let app = factor::has_totp(&*state.store, &user.id).await?;
    let again = |error: &str, status: StatusCode| {
        let view = View {
            token: &token,
            link: &link,
            user: &user,
            browser: &browser.value,
            code: has_factor,
            app,
            error: Some(error),
        };
        render_form(&state, &view, status)
    };
    let now = state.now();
    if has_factor {
        let code = form.code.trim();
        if code.is_empty() {
            return Ok(again(
                "Type a code from your authenticator app or a recovery code.",
                StatusCode::BAD_REQUEST,
            ));
        }
        let reservation = match state
            .lockout
            .reserve_code(&user.id, &IpKey::of(ip).to_string(), now)
            .await?
        {
            Ok(r) => r,
            Err(retry) => {
                tracing::warn!(target: "audit", event = "password_reset", link = %link.id, user = %user.username, ip = %ip, outcome = "rate_limited");
                let msg = format!("Too many failed attempts. {}", wait_text(retry));
                let mut resp = again(&msg, StatusCode::TOO_MANY_REQUESTS);
                crate::login::set_retry_after(&mut resp, retry);
                return Ok(resp);
            }
        };
        match factor::check_code(&*state.store, &state.secret_box, &user.id, code, now).await? {
            CodeCheck::Accepted(_) => reservation.succeeded(now).await?,
            CodeCheck::Wrong => {
                // The reservation stays counted: a failure, as in a sign-in.
                drop(reservation);
                tracing::warn!(target: "audit", event = "password_reset", link = %link.id, user = %user.username, ip = %ip, outcome = "wrong_code");
                return Ok(again("That code is not right.", StatusCode::UNAUTHORIZED));
            }
        }
    }
    if let Err(e) = password_policy::check(
        &form.password,
        &user.username,
        user.email.as_deref(),
        state.config.accounts.min_password_length,
    ) {
        return Ok(again(&e.to_string(), StatusCode::BAD_REQUEST));
    }
    if form.password != form.password_confirm {
        return Ok(again(
            "The two passwords differ. Type the same password twice.",
            StatusCode::BAD_REQUEST,
        ));
    }
    let Some(taken) = state
        .store
        .take_link_use(&link.token_hash, LinkKind::Reset, now)
        .await?
    else {
        // Another browser used the link meanwhile (or it was revoked).
        return Ok(gone(&state));
    };
    let hash = match state.hasher.hash(form.password).await {
        Ok(hash) => hash,
        Err(e) => {
            // The link stays usable: a full argon2 queue is a 503 page (try again), anything
            // else internal.
            state.store.give_back_link_use(&taken.id).await?;
            tracing::warn!(ip = %ip, error = %e, "password reset not done: the new password could not be hashed");
            return Err(e.into());
        }
    };
    let (user, ended) = users::set_password_hash(&*state.store, &user.username, hash, now)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    state.backchannel.notify(&user.id, &ended.logouts);
    state.store.clear_lockouts(&user.id).await?;
    let other_links = links::revoke_resets_of(&*state.store, &user.id, now).await?;
    tracing::info!(target: "audit", event = "password_reset", link = %link.id, user = %user.username, created_by = %link.created_by, sessions_ended = ended.sessions, grants_revoked = ended.grants, reset_links_revoked = other_links, ip = %ip, outcome = "success");
    let login = state.url(paths::LOGIN);
    let passkeys = state.store.list_passkeys(&user.id).await?.len();
    let text = if passkeys == 0 {
        "You were signed out everywhere. Sign in with your new password.".to_string()
    } else {
        format!(
            "You were signed out everywhere. Sign in with your new password. Your account's {passkeys} passkey(s) still sign in: if you did not add them all yourself, remove them on your account page."
        )
    };
    Ok(message(
        &state,
        StatusCode::OK,
        "Your password was changed",
        &text,
        Some(&login),
    ))
}
