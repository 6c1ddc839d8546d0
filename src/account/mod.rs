//! The `/account` page: a signed-in user's own profile, password, second factor, sessions,
//! applications and linked Plex identity. Thin handlers over plain rules (`rules.rs`), the
//! current-password check (`password.rs`) and ending sign-ins (`sign_ins.rs`).
//!
//! Every form carries one CSRF token bound to this browser's cookie and to this SSO session;
//! every change is an audit line; the changes that matter (password, second factor, email)
//! need a recent sign-in (`[accounts] reauth_after`) or the password again.

pub mod passkeys;
pub mod password;
pub mod rules;
pub mod sign_ins;

use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::password_policy;
use crate::accounts::users::{self, AccountError};
use crate::error::WebError;
use crate::session::{self, CookieNames};
use crate::signin::limits::IpKey;
use crate::signin::password::wait_text;
use crate::signin::second_factor::{self as factor, CodeCheck};
use crate::signin::Purpose;
use crate::state::AppState;
use crate::store::{Session, User};
use crate::web::{append_cookie, Browser, ClientIp, Cookies, SignedIn};
use password::Current;

pub mod paths {
    pub const ACCOUNT: &str = "/account";
    pub const PROFILE: &str = "/account/profile";
    pub const PASSWORD: &str = "/account/password";
    pub const REMOVE_FACTOR: &str = "/account/second-factor/remove";
    pub const END_SESSION: &str = "/account/sessions/end";
    pub const END_OTHERS: &str = "/account/sessions/end-others";
    pub const REVOKE_APP: &str = "/account/applications/revoke";
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::ACCOUNT, get(page))
        .route(paths::PROFILE, post(profile))
        .route(paths::PASSWORD, post(change_password))
        .route(paths::REMOVE_FACTOR, post(remove_factor))
        .route(paths::END_SESSION, post(end_session))
        .route(paths::END_OTHERS, post(end_others))
        .route(paths::REVOKE_APP, post(revoke_application))
        .route(passkeys::paths::GATE, get(passkeys::gate))
        .route(passkeys::paths::OPTIONS, post(passkeys::options))
        .route(passkeys::paths::ADD, post(passkeys::add))
        .route(passkeys::paths::RENAME, post(passkeys::rename))
        .route(passkeys::paths::REMOVE, post(passkeys::remove))
}

/// The area of the page's session-bound form tokens (`web::session_form_token`).
const AREA: &str = "account";

fn forged() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "This form could not be verified",
        "The form did not come from your account page in this browser. Open the page again.",
    )
}

fn signed_out() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "You are signed out",
        "Open your account page again and sign in.",
    )
}

/// The signed-in user of a form POST whose CSRF token is this browser's and this session's.
fn authorised(
    state: &AppState,
    cookies: &Cookies,
    live: Option<(Session, User)>,
    csrf: &str,
) -> Result<(Session, User), WebError> {
    let (session, user) = live.ok_or_else(signed_out)?;
    if !crate::web::session_form_ok(state, AREA, &session, cookies, csrf) {
        return Err(forged());
    }
    Ok((session, user))
}

/// Where a change lands: the page again, with a fixed sentence (nothing typed in the URL).
fn done(state: &AppState, what: &str) -> Response {
    Redirect::to(&format!("{}?done={what}", state.url(paths::ACCOUNT))).into_response()
}

fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "profile" => "Your profile was saved.",
        "email" => "Your email address was changed. It is not verified until it is confirmed.",
        "password" => "Your password was changed. Your other sessions and every application were signed out; this browser stays signed in.",
        "second-factor" => "The authenticator app was removed from your account.",
        "session" => "That session was signed out.",
        "others" => "Every other session was signed out.",
        "application" => "The application's access was revoked.",
        "passkey-added" => "The passkey was added. It signs you in from now on.",
        "passkey-renamed" => "The passkey was renamed.",
        "passkey-removed" => "The passkey was removed from your account. Your other sessions, and the applications signed in through them, were signed out; this browser stays signed in.",
        _ => return None,
    })
}

/// An error shown in one section of the page.
#[derive(Debug, Default, Serialize)]
struct Errors {
    profile: Option<String>,
    password: Option<String>,
    factor: Option<String>,
    passkeys: Option<String>,
    sessions: Option<String>,
    applications: Option<String>,
}

#[derive(Serialize)]
struct SessionView {
    sid: String,
    current: bool,
    started: String,
    last_seen: String,
    method: String,
    ip: Option<String>,
    user_agent: Option<String>,
}

#[derive(Serialize)]
struct ApplicationView {
    client_id: String,
    name: String,
    since: String,
}

#[derive(Serialize)]
struct PlexView {
    username: String,
    subject: String,
    checked: Option<String>,
}

/// The user's live SSO sessions, this one first.
async fn user_sessions(
    state: &AppState,
    user: &User,
    current: &Session,
) -> Result<Vec<Session>, WebError> {
    let mut all = state
        .store
        .list_user_sessions(&user.id, state.now())
        .await?;
    all.sort_by_key(|s| {
        (
            s.id_hash != current.id_hash,
            std::cmp::Reverse(s.last_seen_at),
        )
    });
    Ok(all)
}

/// The page, with `notice` on top and `errors` in their sections.
async fn render(
    state: &AppState,
    cookies: &Cookies,
    session: &Session,
    user: &User,
    notice: Option<&str>,
    errors: Errors,
    status: StatusCode,
) -> Result<Response, WebError> {
    let now = state.now();
    let browser = Browser::of(state, cookies);
    let csrf = crate::web::session_form_token(state, AREA, session, &browser.value);
    let factor_on = factor::has_totp(&*state.store, &user.id).await?;
    let passkey_rows = state.store.list_passkeys(&user.id).await?;
    let passkeys_on = crate::signin::passkey::relying_party(&state.config).is_some()
        && user.password_hash.is_some();
    let passkey_views: Vec<serde_json::Value> = passkey_rows
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id, "name": p.name, "created": crate::keys::utc(p.created_at),
                "last_used": p.last_used_at.map(crate::keys::utc),
                "synced": p.backup_eligible,
            })
        })
        .collect();
    let may_add_passkey = passkeys_on && passkeys::may_add(state, session, user).await?;
    let codes_csrf = crate::web::session_form_token(
        state,
        crate::login::second_factor::STATUS_AREA,
        session,
        &browser.value,
    );
    let recovery_left = if factor_on || !passkey_rows.is_empty() {
        state.store.recovery_codes_left(&user.id).await?
    } else {
        0
    };
    let factors_available = state.config.login.require_second_factor
        != crate::config::SecondFactorPolicy::Off
        && user.password_hash.is_some();
    let sessions: Vec<SessionView> = user_sessions(state, user, session)
        .await?
        .into_iter()
        .map(|s| SessionView {
            sid: state.provider.sid_for(&s),
            current: s.id_hash == session.id_hash,
            started: crate::keys::utc(s.created_at),
            last_seen: crate::keys::utc(s.last_seen_at),
            method: rules::method_text(&s.amr),
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
        })
        .collect();
    let other_sessions = sessions.iter().any(|s| !s.current);
    let grants = state.store.list_user_grants(&user.id, now).await?;
    let applications: Vec<ApplicationView> = rules::applications(&grants, |id| {
        state
            .clients
            .get(id)
            .map(|c| c.name.clone().unwrap_or_else(|| c.id.clone()))
    })
    .into_iter()
    .map(|a| ApplicationView {
        client_id: a.client_id,
        name: a.name,
        since: crate::keys::utc(a.since),
    })
    .collect();
    let plex = state
        .store
        .user_identity(&user.id, "plex")
        .await?
        .map(|i| PlexView {
            username: user.username.clone(),
            subject: i.subject,
            checked: i.checked_at.map(crate::keys::utc),
        });
    let accounts = &state.config.accounts;
    let html = state.templates.render(
        "account.html",
        serde_json::json!({
            "base": state.issuer(),
            "csrf": csrf,
            "notice": notice,
            "errors": errors,
            "username": user.username,
            "name": user.name.clone().unwrap_or_default(),
            "email": user.email.clone().unwrap_or_default(),
            "email_verified": user.email_verified,
            "groups": user.groups.join(", "),
            "mail": state.mailer.is_some(),
            "may_change_email": accounts.users_may_change_email,
            "recent": rules::sign_in_is_recent(session.auth_time, now, accounts.reauth_after),
            "reauth_text": rules::duration_text(accounts.reauth_after),
            "has_password": user.password_hash.is_some(),
            "min_password_length": accounts.min_password_length,
            "factor_on": factor_on,
            "passkeys": passkey_views,
            "passkeys_on": passkeys_on,
            "may_add_passkey": may_add_passkey,
            "codes_csrf": codes_csrf,
            "recovery_left": recovery_left,
            "factors_available": factors_available,
            "sessions": sessions,
            "other_sessions": other_sessions,
            "applications": applications,
            "plex": plex,
        }),
    );
    let mut resp = crate::web::html(status, html);
    browser.keep(state, &mut resp);
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// GET /account: sign in first (the landing page, then back here); then the page.
async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Query(q): Query<DoneQuery>,
) -> Result<Response, WebError> {
    let Some((session, user)) = live else {
        let here = state.url(paths::ACCOUNT);
        return crate::login::begin(&state, &cookies, ip, Purpose::Continue { url: Some(here) })
            .await;
    };
    render(
        &state,
        &cookies,
        &session,
        &user,
        notice(&q.done),
        Errors::default(),
        StatusCode::OK,
    )
    .await
}

/// A refused current password as the page's error in `section`, with its status.
fn password_refusal(current: Current) -> Option<(StatusCode, String, Option<i64>)> {
    match current {
        Current::Right => None,
        Current::Wrong => Some((
            StatusCode::UNAUTHORIZED,
            "Your current password is not right.".to_string(),
            None,
        )),
        Current::Locked(retry) => Some((
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed attempts. {}", wait_text(retry)),
            Some(retry),
        )),
        Current::Busy => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many passwords are being checked right now. Wait a moment and try again."
                .to_string(),
            None,
        )),
    }
}

/// Renders the page with one section's error; sets Retry-After when given.
async fn refuse(
    state: &AppState,
    cookies: &Cookies,
    session: &Session,
    user: &User,
    errors: Errors,
    status: StatusCode,
    retry_after: Option<i64>,
) -> Result<Response, WebError> {
    let mut resp = render(state, cookies, session, user, None, errors, status).await?;
    if let Some(s) = retry_after {
        crate::login::set_retry_after(&mut resp, s);
    }
    Ok(resp)
}

async fn check_current(
    state: &AppState,
    user: &User,
    typed: &str,
    ip: IpAddr,
) -> Result<Current, WebError> {
    Ok(password::check(&state.lockout, &state.hasher, user, typed, ip, state.now()).await?)
}

#[derive(Debug, Deserialize)]
struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Absent when the page did not offer it.
    email: Option<String>,
    #[serde(default)]
    password: String,
}

/// POST /account/profile: the name; the email too, when the operator allows it (a changed
/// email is no longer verified; it needs a recent sign-in or the password).
async fn profile(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<ProfileForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let accounts = &state.config.accounts;
    let refuse_with = |msg: String, status: StatusCode, retry: Option<i64>| {
        let errors = Errors {
            profile: Some(msg),
            ..Errors::default()
        };
        refuse(&state, &cookies, &session, &user, errors, status, retry)
    };
    let change = match rules::profile_change(
        &user,
        &form.name,
        form.email.as_deref(),
        accounts.users_may_change_email,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(target: "audit", event = "account", action = "profile", user = %user.username, ip = %ip, outcome = "refused", reason = %e);
            return refuse_with(e.to_string(), StatusCode::BAD_REQUEST, None).await;
        }
    };
    if change.is_empty(&user) {
        return Ok(done(&state, "profile"));
    }
    let now = state.now();
    if change.email.is_some()
        && !rules::sign_in_is_recent(session.auth_time, now, accounts.reauth_after)
    {
        if user.password_hash.is_none() {
            return refuse_with(
                "Changing your email needs a recent sign-in: sign out, sign in again, and change it then.".into(),
                StatusCode::UNAUTHORIZED,
                None,
            )
            .await;
        }
        let current = check_current(&state, &user, &form.password, ip).await?;
        if let Some((status, msg, retry)) = password_refusal(current) {
            tracing::warn!(target: "audit", event = "account", action = "email", user = %user.username, ip = %ip, outcome = "wrong_password");
            let msg = if form.password.is_empty() {
                format!(
                    "You signed in more than {} ago: type your current password to change your email.",
                    rules::duration_text(accounts.reauth_after)
                )
            } else {
                msg
            };
            return refuse_with(msg, status, retry).await;
        }
    }
    let email_changed = change.email.is_some();
    match users::set_own_name_and_email(
        &*state.store,
        &user,
        change.name.clone(),
        change.email.clone(),
        now,
    )
    .await
    {
        Ok(_) => {}
        Err(AccountError::EmailTaken(_)) => {
            return refuse_with(
                "That email address belongs to another account.".into(),
                StatusCode::CONFLICT,
                None,
            )
            .await;
        }
        Err(AccountError::Invalid(_)) => {
            return refuse_with(
                rules::ProfileError::EmailInvalid.to_string(),
                StatusCode::BAD_REQUEST,
                None,
            )
            .await;
        }
        Err(e) => return Err(WebError::Internal(format!("profile: {e}"))),
    }
    let name_changed = change.name != user.name;
    tracing::info!(target: "audit", event = "account", action = "profile", user = %user.username, ip = %ip, name_changed, email_changed, outcome = "success");
    if let Some(Some(email)) = &change.email {
        crate::login::confirm::mail_link(&state, &user, email).await?;
    }
    Ok(done(
        &state,
        if email_changed { "email" } else { "profile" },
    ))
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

/// POST /account/password: the current password (counted in the lockout), the new one twice
/// and the policy; then the user's other sessions end and every grant is revoked.
async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let refuse_with = |msg: String, status: StatusCode, retry: Option<i64>| {
        let errors = Errors {
            password: Some(msg),
            ..Errors::default()
        };
        refuse(&state, &cookies, &session, &user, errors, status, retry)
    };
    if user.password_hash.is_none() {
        return refuse_with(
            "This account has no doorman password: it signs in through another service.".into(),
            StatusCode::BAD_REQUEST,
            None,
        )
        .await;
    }
    if form.new_password != form.new_password_confirm {
        return refuse_with(
            "The two new passwords are not the same.".into(),
            StatusCode::BAD_REQUEST,
            None,
        )
        .await;
    }
    if let Err(e) = password_policy::check(
        &form.new_password,
        &user.username,
        user.email.as_deref(),
        state.config.accounts.min_password_length,
    ) {
        tracing::info!(target: "audit", event = "account", action = "password", user = %user.username, ip = %ip, outcome = "policy");
        return refuse_with(e.to_string(), StatusCode::BAD_REQUEST, None).await;
    }
    let current = check_current(&state, &user, &form.current_password, ip).await?;
    if let Some((status, msg, retry)) = password_refusal(current) {
        tracing::warn!(target: "audit", event = "account", action = "password", user = %user.username, ip = %ip, outcome = "wrong_password");
        return refuse_with(msg, status, retry).await;
    }
    let hash = state.hasher.hash(form.new_password).await?;
    let now = state.now();
    // Only the password column: a stale cached row must not undo a disable made meanwhile.
    state.store.set_user_password(&user.id, &hash, now).await?;
    let keep_sid = state.provider.sid_for(&session);
    let ended =
        sign_ins::end_other_sign_ins(&*state.store, &user.id, &session.id_hash, &keep_sid, now)
            .await?;
    state.backchannel.notify(&user.id, &ended.logouts);
    let reset_links =
        crate::accounts::links::revoke_resets_of(&*state.store, &user.id, now).await?;
    tracing::info!(target: "audit", event = "account", action = "password", user = %user.username, ip = %ip, sessions_ended = ended.sessions, grants_revoked = ended.grants, reset_links_revoked = reset_links, outcome = "success");
    Ok(done(&state, "password"))
}

#[derive(Debug, Deserialize)]
struct RemoveFactorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

/// POST /account/second-factor/remove: removes the authenticator app (passkeys stay); needs
/// a current code from it or the password, each counted in the lockout.
async fn remove_factor(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<RemoveFactorForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let refuse_with = |msg: String, status: StatusCode, retry: Option<i64>| {
        let errors = Errors {
            factor: Some(msg),
            ..Errors::default()
        };
        refuse(&state, &cookies, &session, &user, errors, status, retry)
    };
    if !factor::has_totp(&*state.store, &user.id).await? {
        return refuse_with(
            "There is no authenticator app on your account.".into(),
            StatusCode::BAD_REQUEST,
            None,
        )
        .await;
    }
    let method =
        match confirm_change(&state, &user, &form.code, &form.password, ip, "remove").await? {
            Ok(method) => method,
            Err(Refusal(msg, status, retry)) => return refuse_with(msg, status, retry).await,
        };
    state.store.remove_totp(&user.id).await?;
    tracing::info!(target: "audit", event = "second_factor", action = "removed", method = "totp", user = %user.username, ip = %ip, confirmed_with = method, outcome = "success");
    Ok(done(&state, "second-factor"))
}

/// Why a change was not confirmed: the sentence, the status, a Retry-After.
pub(crate) struct Refusal(pub String, pub StatusCode, pub Option<i64>);

/// Confirms a change to the account's second factors with a current code from the
/// authenticator app (not a recovery code, which a stolen session could make a new set of) or
/// the password, each counted in the lockout like a sign-in. The method that confirmed it.
pub(crate) async fn confirm_change(
    state: &AppState,
    user: &User,
    code: &str,
    password: &str,
    ip: IpAddr,
    action: &str,
) -> Result<Result<&'static str, Refusal>, WebError> {
    let now = state.now();
    let code = code.trim();
    if !code.is_empty() {
        // Counted like a sign-in's code: also on the account's code counter.
        let reservation = match state
            .lockout
            .reserve_code(&user.id, &IpKey::of(ip).to_string(), now)
            .await?
        {
            Ok(r) => r,
            Err(retry) => {
                let msg = format!("Too many failed attempts. {}", wait_text(retry));
                return Ok(Err(Refusal(
                    msg,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(retry),
                )));
            }
        };
        if crate::accounts::recovery::normalise(code).is_some() {
            reservation.unused(now).await?;
            return Ok(Err(Refusal(
                "Use a code from your authenticator app or your password; a recovery code does not do this.".into(),
                StatusCode::BAD_REQUEST,
                None,
            )));
        }
        return Ok(
            match factor::check_code(&*state.store, &state.secret_box, &user.id, code, now).await? {
                CodeCheck::Accepted(_) => {
                    reservation.succeeded(now).await?;
                    Ok("code")
                }
                CodeCheck::Wrong => {
                    // The reservation stays counted: a failure.
                    drop(reservation);
                    tracing::warn!(target: "audit", event = "second_factor", action, user = %user.username, ip = %ip, outcome = "wrong_code");
                    Err(Refusal(
                        "That code is not right.".into(),
                        StatusCode::UNAUTHORIZED,
                        None,
                    ))
                }
            },
        );
    }
    if !password.is_empty() && user.password_hash.is_some() {
        let current = check_current(state, user, password, ip).await?;
        if let Some((status, msg, retry)) = password_refusal(current) {
            tracing::warn!(target: "audit", event = "second_factor", action, user = %user.username, ip = %ip, outcome = "wrong_password");
            return Ok(Err(Refusal(msg, status, retry)));
        }
        return Ok(Ok("password"));
    }
    Ok(Err(Refusal(
        "Type a code from your authenticator app, or your password.".into(),
        StatusCode::BAD_REQUEST,
        None,
    )))
}

#[derive(Debug, Deserialize)]
struct SessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sid: String,
}

/// POST /account/sessions/end: signs out one of the user's sessions, named by its public
/// handle (`sid`). This browser's own ends it here too.
async fn end_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<SessionForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let target = user_sessions(&state, &user, &session)
        .await?
        .into_iter()
        .find(|s| state.provider.sid_for(s) == form.sid);
    let Some(target) = target else {
        let errors = Errors {
            sessions: Some("That session has already ended.".into()),
            ..Errors::default()
        };
        return refuse(
            &state,
            &cookies,
            &session,
            &user,
            errors,
            StatusCode::NOT_FOUND,
            None,
        )
        .await;
    };
    let ended = users::end_session(
        &*state.store,
        &user.id,
        &target.id_hash,
        &form.sid,
        state.now(),
    )
    .await?;
    state.backchannel.notify(&user.id, &ended.logouts);
    let own = target.id_hash == session.id_hash;
    tracing::info!(target: "audit", event = "account", action = "end_session", user = %user.username, ip = %ip, sid = %form.sid, own, grants = ended.grants, outcome = "success");
    if own {
        let mut resp = Redirect::to(&state.url(paths::ACCOUNT)).into_response();
        let names = CookieNames::of(&state.config);
        append_cookie(
            &mut resp,
            &session::clear_cookie(&state.config, names.session),
        );
        if let Some(c) = session::clear_forward_auth_cookie(&state.config) {
            append_cookie(&mut resp, &c);
        }
        return Ok(resp);
    }
    Ok(done(&state, "session"))
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// POST /account/sessions/end-others: every other session of the user ends; this one stays.
async fn end_others(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let ended = sign_ins::end_other_sessions(
        &*state.store,
        &user.id,
        &session.id_hash,
        state.now(),
        |s| state.provider.sid_for(s),
    )
    .await?;
    state.backchannel.notify(&user.id, &ended.logouts);
    tracing::info!(target: "audit", event = "account", action = "end_other_sessions", user = %user.username, ip = %ip, sessions_ended = ended.sessions, grants_revoked = ended.grants, outcome = "success");
    Ok(done(&state, "others"))
}

#[derive(Debug, Deserialize)]
struct ApplicationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client: String,
}

/// POST /account/applications/revoke: revokes the user's live grants of one client (and with
/// them its refresh and access tokens).
async fn revoke_application(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<ApplicationForm>,
) -> Result<Response, WebError> {
    let (session, user) = authorised(&state, &cookies, live, &form.csrf)?;
    let now = state.now();
    let grants: Vec<_> = state
        .store
        .list_user_grants(&user.id, now)
        .await?
        .into_iter()
        .filter(|g| g.client_id == form.client)
        .collect();
    if grants.is_empty() {
        let errors = Errors {
            applications: Some("That application has no access to revoke.".into()),
            ..Errors::default()
        };
        return refuse(
            &state,
            &cookies,
            &session,
            &user,
            errors,
            StatusCode::NOT_FOUND,
            None,
        )
        .await;
    }
    for g in &grants {
        state.store.revoke_grant(&g.id, now).await?;
    }
    tracing::info!(target: "audit", event = "account", action = "revoke_application", user = %user.username, ip = %ip, client = %form.client, grants_revoked = grants.len(), outcome = "success");
    Ok(done(&state, "application"))
}
