//! The `/admin` pages for members of `[accounts] admin_groups`: the Users list with its
//! search, one user's page (`user.rs`: details, name and groups, email verified, a
//! password-reset link, delete; disable, enable, unlock, reset the second factor), Invites
//! (`invites.rs`), every live session (`sessions.rs`) and a read-only view of the clients.
//! Thin handlers over plain rules (`rules.rs`) and the account functions of
//! [`crate::accounts::users`].
//!
//! Every form carries one CSRF token bound to this browser's cookie and to this SSO session;
//! every change is an audit line naming the admin and the target.

mod invites;
pub mod rules;
mod sessions;
mod user;

use std::collections::HashSet;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::users::{self, AccountError};
use crate::error::WebError;
use crate::signin::Purpose;
use crate::state::AppState;
use crate::store::{Session, User};
use crate::web::{Browser, ClientIp, Cookies, SignedIn};

pub mod paths {
    pub const ADMIN: &str = "/admin";
    pub const DISABLE: &str = "/admin/users/{id}/disable";
    pub const ENABLE: &str = "/admin/users/{id}/enable";
    pub const UNLOCK: &str = "/admin/users/{id}/unlock";
    pub const RESET_FACTOR: &str = "/admin/users/{id}/reset-2fa";
    pub const USER: &str = "/admin/users/{id}";
    pub const PROFILE: &str = "/admin/users/{id}/profile";
    pub const VERIFY_EMAIL: &str = "/admin/users/{id}/verify-email";
    pub const RESET_LINK: &str = "/admin/users/{id}/reset-link";
    pub const DELETE: &str = "/admin/users/{id}/delete";
    pub const INVITES: &str = "/admin/invites";
    pub const REVOKE_INVITE: &str = "/admin/invites/{id}/revoke";
    pub const SESSIONS: &str = "/admin/sessions";
    pub const REVOKE_SESSION: &str = "/admin/sessions/revoke";
    pub const CLIENTS: &str = "/admin/clients";
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::ADMIN, get(page))
        .route(paths::DISABLE, post(disable))
        .route(paths::ENABLE, post(enable))
        .route(paths::UNLOCK, post(unlock))
        .route(paths::RESET_FACTOR, post(reset_factor))
        .route(paths::USER, get(user::page))
        .route(paths::PROFILE, post(user::profile))
        .route(paths::VERIFY_EMAIL, post(user::verify_email))
        .route(paths::RESET_LINK, post(user::reset_link))
        .route(paths::DELETE, get(user::confirm_delete).post(user::delete))
        .route(paths::INVITES, get(invites::page).post(invites::create))
        .route(paths::REVOKE_INVITE, post(invites::revoke))
        .route(paths::SESSIONS, get(sessions::page))
        .route(paths::REVOKE_SESSION, post(sessions::revoke))
        .route(paths::CLIENTS, get(sessions::clients))
}

/// The area of the page's session-bound form tokens (`web::session_form_token`).
const AREA: &str = "admin";

fn forbidden() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "This page is for administrators",
        "Your account is not a member of an admin group. Ask the operator if you need access.",
    )
}

fn forged() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "This form could not be verified",
        "The form did not come from the admin page in this browser. Open the page again.",
    )
}

fn signed_out() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "You are signed out",
        "Open the admin page again and sign in.",
    )
}

fn no_such_user() -> WebError {
    WebError::page(
        StatusCode::NOT_FOUND,
        "No such user",
        "That account does not exist any more. Open the admin page again.",
    )
}

/// The signed-in admin of a GET page at `here` (a path), or the answer to give instead: the
/// landing page (then back to `here`) when signed out. A non-admin gets the 403 page.
async fn page_admin(
    state: &AppState,
    cookies: &Cookies,
    ip: IpAddr,
    live: Option<(Session, User)>,
    here: &str,
) -> Result<Result<(Session, User), Response>, WebError> {
    let Some((session, user)) = live else {
        let here = state.url(here);
        return crate::login::begin(state, cookies, ip, Purpose::Continue { url: Some(here) })
            .await
            .map(Err);
    };
    if !rules::is_admin(&user, &state.config.accounts.admin_groups) {
        tracing::warn!(target: "audit", event = "admin", action = "page", user = %user.username, ip = %ip, outcome = "forbidden");
        return Err(forbidden());
    }
    Ok(Ok((session, user)))
}

/// Renders an admin page: `template` with `ctx` plus what every admin page has (`base`,
/// `csrf`, `admin`, `section` for the navigation). Never cached (a link shown once stays
/// on that one answer).
fn render_page(
    state: &AppState,
    cookies: &Cookies,
    (session, admin): (&Session, &User),
    section: &str,
    template: &str,
    status: StatusCode,
    ctx: serde_json::Value,
) -> Response {
    let browser = Browser::of(state, cookies);
    let csrf = crate::web::session_form_token(state, AREA, session, &browser.value);
    let mut ctx = ctx;
    if let Some(map) = ctx.as_object_mut() {
        map.insert("base".into(), state.issuer().into());
        map.insert("csrf".into(), csrf.into());
        map.insert("admin".into(), admin.username.clone().into());
        map.insert("section".into(), section.into());
    }
    let html = state.templates.render(template, ctx);
    let mut resp = crate::web::html(status, html);
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    browser.keep(state, &mut resp);
    resp
}

/// The signed-in admin of a form POST whose CSRF token is this browser's and this session's.
fn authorised(
    state: &AppState,
    cookies: &Cookies,
    live: Option<(Session, User)>,
    csrf: &str,
) -> Result<(Session, User), WebError> {
    let (session, user) = live.ok_or_else(signed_out)?;
    if !rules::is_admin(&user, &state.config.accounts.admin_groups) {
        return Err(forbidden());
    }
    if !crate::web::session_form_ok(state, AREA, &session, cookies, csrf) {
        return Err(forged());
    }
    Ok((session, user))
}

/// Where a change lands: the page again, with a fixed sentence (nothing typed in the URL).
fn done(state: &AppState, what: &str) -> Response {
    Redirect::to(&format!("{}?done={what}", state.url(paths::ADMIN))).into_response()
}

/// Where a change on one user's page lands: that page again, with a fixed sentence.
fn done_user(state: &AppState, id: &str, what: &str) -> Response {
    Redirect::to(&format!(
        "{}/users/{id}?done={what}",
        state.url(paths::ADMIN)
    ))
    .into_response()
}

fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "deleted" => "The user was deleted: their sessions and applications were signed out, and their username is not given to anyone else.",
        "profile" => "The name and groups were saved.",
        "email-verified" => "The email address is marked verified.",
        "invite-revoked" => "The invite was revoked: its link no longer works.",
        "session-revoked" => "The session was signed out, with the applications signed in through it.",
        "disabled" => "The user was disabled: their sessions and applications were signed out.",
        "enabled" => "The user was enabled again.",
        "unlocked" => "The user's sign-in lockout was lifted.",
        "second-factor" => "The user's second factor was removed and their sessions were signed out; they set one up again at their next sign-in.",
        _ => return None,
    })
}

#[derive(Serialize)]
struct UserView {
    id: String,
    username: String,
    email: String,
    name: String,
    groups: String,
    local: bool,
    second_factor: bool,
    last_sign_in: Option<String>,
    disabled: bool,
    locked: bool,
}

/// Whether the account has a counter that blocks sign-ins now.
async fn locked(state: &AppState, user: &User, now: i64) -> Result<bool, WebError> {
    Ok(rules::is_locked(
        &state.store.lockouts_of(&user.id).await?,
        now,
    ))
}

/// The page, with `notice` (or an `error`, then answered 409 Conflict) on top.
async fn render(
    state: &AppState,
    cookies: &Cookies,
    session: &Session,
    admin: &User,
    q: &str,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let now = state.now();
    let all = state.store.list_users().await?;
    let mut factors: HashSet<String> = state
        .store
        .second_factor_users()
        .await?
        .into_iter()
        .collect();
    factors.extend(
        state
            .store
            .passkey_counts()
            .await?
            .into_iter()
            .map(|(id, _)| id),
    );
    let mut views = Vec::new();
    for u in rules::search(&all, q) {
        views.push(UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone().unwrap_or_default(),
            name: u.name.clone().unwrap_or_default(),
            groups: u.groups.join(", "),
            local: u.password_hash.is_some(),
            second_factor: factors.contains(&u.id),
            last_sign_in: u.last_login_at.map(crate::keys::utc),
            disabled: u.disabled,
            locked: locked(state, u, now).await?,
        });
    }
    Ok(render_page(
        state,
        cookies,
        (session, admin),
        "users",
        "admin.html",
        status,
        serde_json::json!({
            "notice": notice,
            "error": error,
            "q": q.trim(),
            "total": all.len(),
            "users": views,
        }),
    ))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    done: String,
}

/// GET /admin: sign in first (the landing page, then back here); a 403 page for a
/// non-admin; then the Users list, filtered by `?q=`.
async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let (session, user) = match page_admin(&state, &cookies, ip, live, paths::ADMIN).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    render(
        &state,
        &cookies,
        &session,
        &user,
        &q.q,
        notice(&q.done),
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// "user": the form is on the user's own page, and the answer goes back there.
    #[serde(default)]
    from: String,
}

/// Where an action lands: the user's page when it was posted from there, else the list.
fn landed(state: &AppState, form: &ActionForm, user: &User, what: &str) -> Response {
    if form.from == "user" {
        done_user(state, &user.id, what)
    } else {
        done(state, what)
    }
}

/// The admin of a checked POST and the user it is about.
async fn target(
    state: &AppState,
    cookies: &Cookies,
    live: Option<(Session, User)>,
    csrf: &str,
    id: &str,
) -> Result<(Session, User, User), WebError> {
    let (session, admin) = authorised(state, cookies, live, csrf)?;
    let user = state.store.get_user(id).await?.ok_or_else(no_such_user)?;
    Ok((session, admin, user))
}

fn account_error(e: AccountError) -> WebError {
    match e {
        AccountError::Store(e) => e.into(),
        _ => no_such_user(),
    }
}

fn audit(action: &str, admin: &User, target: &User, ip: IpAddr) {
    tracing::info!(target: "audit", event = "admin", action, user = %admin.username, target = %target.username, ip = %ip, outcome = "success");
}

/// POST /admin/users/{id}/disable: the user can no longer sign in, and their sessions and
/// grants (so every refresh token) end at once. Not the last enabled member of an admin group.
async fn disable(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let (session, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    // One last-admin check-and-write at a time (see `admin_changes`), on the users as they are now.
    let _one_at_a_time = state.admin_changes.lock().await;
    let all = state.store.list_users().await?;
    let user = rules::current(user, &all);
    let admins = &state.config.accounts.admin_groups;
    if let Err(refusal) = rules::may_change(&user, rules::Change::Disable, &all, admins) {
        tracing::warn!(target: "audit", event = "admin", action = "disable", user = %admin.username, target = %user.username, ip = %ip, outcome = "refused", reason = %refusal);
        if form.from == "user" {
            return user::render(
                &state,
                &cookies,
                (&session, &admin),
                &user,
                None,
                Some((StatusCode::CONFLICT, refusal.to_string())),
            )
            .await;
        }
        return render(
            &state,
            &cookies,
            &session,
            &admin,
            "",
            None,
            Some(refusal.to_string()),
        )
        .await;
    }
    let (_, ended) = users::set_disabled(&*state.store, &user.username, true, state.now())
        .await
        .map_err(account_error)?;
    state.backchannel.notify(&user.id, &ended.logouts);
    tracing::info!(target: "audit", event = "admin", action = "disable", user = %admin.username, target = %user.username, ip = %ip, sessions = ended.sessions, grants = ended.grants, outcome = "success");
    Ok(landed(&state, &form, &user, "disabled"))
}

/// POST /admin/users/{id}/enable.
async fn enable(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let (_, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    users::set_disabled(&*state.store, &user.username, false, state.now())
        .await
        .map_err(account_error)?;
    audit("enable", &admin, &user, ip);
    Ok(landed(&state, &form, &user, "enabled"))
}

/// POST /admin/users/{id}/unlock: lifts every sign-in lockout of the account.
async fn unlock(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let (_, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    users::unlock(&*state.store, &user.username)
        .await
        .map_err(account_error)?;
    audit("unlock", &admin, &user, ip);
    Ok(landed(&state, &form, &user, "unlocked"))
}

/// POST /admin/users/{id}/reset-2fa: removes the user's TOTP and recovery codes and ends
/// their sessions and grants.
async fn reset_factor(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let (_, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    let (_, _, ended) = users::reset_second_factor(&*state.store, &user.username, state.now())
        .await
        .map_err(account_error)?;
    state.backchannel.notify(&user.id, &ended.logouts);
    audit("reset_second_factor", &admin, &user, ip);
    Ok(landed(&state, &form, &user, "second-factor"))
}
