//! One user's admin page (`/admin/users/{id}`): the details, and the forms that change them:
//! name and groups, email verified, a password-reset link (shown once, on the answer to the
//! POST), and delete with a confirmation step. Disable, enable, unlock and reset the second
//! factor post to the handlers in `mod.rs` with `from=user`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::rules::{self, Change};
use super::{
    account_error, audit, done, done_user, no_such_user, notice, page_admin, render_page, target,
    PageQuery,
};
use crate::accounts::links;
use crate::accounts::users::{self, AccountError};
use crate::error::WebError;
use crate::state::AppState;
use crate::store::{LinkKind, Session, User};
use crate::web::{ClientIp, Cookies, SignedIn};

/// The path of `id`'s page, when `id` can be one (as user ids are: letters, digits, `-`, `_`).
fn user_path(id: &str) -> Option<String> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| format!("{}/users/{id}", super::paths::ADMIN))
}

/// The user's page, with `notice` or an `error` (and its status) on top.
pub(super) async fn render(
    state: &AppState,
    cookies: &Cookies,
    who: (&Session, &User),
    user: &User,
    notice: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, WebError> {
    let now = state.now();
    let plex = state
        .store
        .user_identity(&user.id, crate::plex::PROVIDER)
        .await?
        .map(|i| {
            serde_json::json!({
                "subject": i.subject,
                "checked": i.checked_at.map(crate::keys::utc),
            })
        });
    let second_factor = state.store.get_totp(&user.id).await?.is_some();
    let locked = rules::is_locked(&state.store.lockouts_of(&user.id).await?, now);
    let (status, error) = match error {
        Some((status, text)) => (status, Some(text)),
        None => (StatusCode::OK, None),
    };
    Ok(render_page(
        state,
        cookies,
        who,
        "users",
        "admin_user.html",
        status,
        serde_json::json!({
            "notice": notice,
            "error": error,
            // A reset link can be mailed only to an address someone vouched for.
            "can_mail_reset": state.mailer.is_some() && user.email_verified && user.email.is_some(),
            "user": {
                "id": user.id,
                "username": user.username,
                "name": user.name.clone().unwrap_or_default(),
                "email": user.email.clone().unwrap_or_default(),
                "email_verified": user.email_verified,
                "groups": user.groups.join(", "),
                "local": user.password_hash.is_some(),
                "plex": plex,
                "second_factor": second_factor,
                "last_sign_in": user.last_login_at.map(crate::keys::utc),
                "locked": locked,
                "disabled": user.disabled,
                "created": crate::keys::utc(user.created_at),
            },
        }),
    ))
}

/// GET /admin/users/{id}.
pub(super) async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let here = user_path(&id).ok_or_else(no_such_user)?;
    let (session, admin) = match page_admin(&state, &cookies, ip, live, &here).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    let user = state.store.get_user(&id).await?.ok_or_else(no_such_user)?;
    render(
        &state,
        &cookies,
        (&session, &admin),
        &user,
        notice(&q.done),
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    groups: String,
}

/// POST /admin/users/{id}/profile: the name and the groups (commas or spaces); only those
/// columns are written. A groups edit that would leave an admin group with no enabled
/// member is refused.
pub(super) async fn profile(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ProfileForm>,
) -> Result<Response, WebError> {
    let (session, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    let groups = rules::parse_groups(&form.groups);
    let refuse = |status: StatusCode, text: String| {
        tracing::warn!(target: "audit", event = "admin", action = "profile", user = %admin.username, target = %user.username, ip = %ip, outcome = "refused", reason = %text);
        Some((status, text))
    };
    // The name's rules are the /account page's.
    let name = match crate::account::rules::profile_change(&user, &form.name, None, false) {
        Ok(change) => change.name,
        Err(e) => {
            let error = refuse(StatusCode::BAD_REQUEST, e.to_string());
            return render(&state, &cookies, (&session, &admin), &user, None, error).await;
        }
    };
    if let Err(e) = users::validate_groups(&groups) {
        let error = refuse(StatusCode::BAD_REQUEST, e.to_string());
        return render(&state, &cookies, (&session, &admin), &user, None, error).await;
    }
    // One last-admin check-and-write at a time (see `admin_changes`), on the users as they are now.
    let _one_at_a_time = state.admin_changes.lock().await;
    let all = state.store.list_users().await?;
    let fresh = rules::current(user.clone(), &all);
    let admins = &state.config.accounts.admin_groups;
    if let Err(refusal) = rules::may_change(&fresh, Change::Groups(&groups), &all, admins) {
        let error = refuse(StatusCode::CONFLICT, refusal.to_string());
        return render(&state, &cookies, (&session, &admin), &user, None, error).await;
    }
    users::set_name_and_groups(&*state.store, &user, name, groups.clone(), state.now())
        .await
        .map_err(account_error)?;
    tracing::info!(target: "audit", event = "admin", action = "profile", user = %admin.username, target = %user.username, ip = %ip, groups = %groups.join(","), outcome = "success");
    Ok(done_user(&state, &user.id, "profile"))
}

#[derive(Debug, Deserialize)]
pub(super) struct VerifyForm {
    #[serde(default)]
    csrf: String,
    /// The address the page showed: only that one is vouched for.
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResetLinkForm {
    #[serde(default)]
    csrf: String,
    /// Set (the checkbox): also mail the link to the account's verified email.
    send: Option<String>,
}

/// POST /admin/users/{id}/verify-email: the admin vouches for the user's email address.
pub(super) async fn verify_email(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<VerifyForm>,
) -> Result<Response, WebError> {
    let (session, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    let marked = users::mark_email_verified(&*state.store, &user, &form.email, state.now())
        .await
        .map_err(account_error)?;
    if !marked {
        let text = if user.email.is_none() {
            "This account has no email address to mark verified."
        } else {
            "Nothing was marked: the account's email address is not the one shown when you clicked. Check the address below and mark it again."
        };
        tracing::warn!(target: "audit", event = "admin", action = "verify_email", user = %admin.username, target = %user.username, ip = %ip, outcome = "refused");
        let error = Some((StatusCode::CONFLICT, text.to_string()));
        return render(&state, &cookies, (&session, &admin), &user, None, error).await;
    }
    audit("verify_email", &admin, &user, ip);
    Ok(done_user(&state, &user.id, "email-verified"))
}

/// POST /admin/users/{id}/reset-link: a single-use password-reset link (24 hours), shown on
/// this answer only: never in a URL, a redirect or a log.
pub(super) async fn reset_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ResetLinkForm>,
) -> Result<Response, WebError> {
    let (session, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    let send = form.send.as_deref().is_some_and(|v| !v.is_empty());
    let verified_email = user.email.as_deref().filter(|_| user.email_verified);
    let outbox = match (send, state.mailer.as_ref(), verified_email) {
        (false, _, _) => None,
        (true, Some(outbox), Some(_)) => Some(outbox),
        (true, None, _) => {
            let error = Some((
                StatusCode::BAD_REQUEST,
                "Mail is not set up ([smtp]): make the link without mailing it and pass it on yourself.".to_string(),
            ));
            return render(&state, &cookies, (&session, &admin), &user, None, error).await;
        }
        (true, Some(_), None) => {
            let error = Some((
                StatusCode::BAD_REQUEST,
                "This account has no verified email address to mail the link to.".to_string(),
            ));
            return render(&state, &cookies, (&session, &admin), &user, None, error).await;
        }
    };
    let (token, link) =
        links::create_reset(&*state.store, &user.id, &admin.username, None, state.now())
            .await
            .map_err(|e| WebError::Internal(format!("reset link: {e}")))?;
    tracing::info!(target: "audit", event = "admin", action = "reset_link", user = %admin.username, target = %user.username, link = %link.id, ip = %ip, outcome = "success");
    let url = links::url(state.issuer(), LinkKind::Reset, &token);
    let mailed = match (outbox, verified_email) {
        (Some(outbox), Some(to)) => {
            let text = crate::mail::messages::reset(
                &crate::mail::messages::site(state.issuer()),
                &user.username,
                &url,
                link.expires_at.saturating_sub(link.created_at),
            );
            let queued = outbox.queue(crate::mail::Mail {
                to: to.to_string(),
                subject: text.subject,
                body: text.body,
                what: "reset",
            });
            tracing::info!(target: "audit", event = "admin", action = "reset_mail", user = %admin.username, target = %user.username, link = %link.id, ip = %ip, outcome = if queued { "mailed" } else { "mail_dropped" });
            Some(queued)
        }
        _ => None,
    };
    Ok(render_page(
        &state,
        &cookies,
        (&session, &admin),
        "users",
        "admin_link.html",
        StatusCode::OK,
        serde_json::json!({
            "kind": "reset",
            "mailed": mailed,
            "email": verified_email,
            "url": url,
            "expires": crate::keys::utc(link.expires_at),
            "user": { "id": user.id, "username": user.username },
        }),
    ))
}

/// The delete confirmation page, with an `error` (and its status) on top.
fn render_delete(
    state: &AppState,
    cookies: &Cookies,
    who: (&Session, &User),
    user: &User,
    error: Option<(StatusCode, String)>,
) -> Response {
    let (status, error) = match error {
        Some((status, text)) => (status, Some(text)),
        None => (StatusCode::OK, None),
    };
    render_page(
        state,
        cookies,
        who,
        "users",
        "admin_delete.html",
        status,
        serde_json::json!({
            "error": error,
            "user": { "id": user.id, "username": user.username },
        }),
    )
}

/// GET /admin/users/{id}/delete: "type the username to confirm".
pub(super) async fn confirm_delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let here = user_path(&id)
        .map(|p| format!("{p}/delete"))
        .ok_or_else(no_such_user)?;
    let (session, admin) = match page_admin(&state, &cookies, ip, live, &here).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    let user = state.store.get_user(&id).await?.ok_or_else(no_such_user)?;
    Ok(render_delete(
        &state,
        &cookies,
        (&session, &admin),
        &user,
        None,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// POST /admin/users/{id}/delete with `confirm` = the exact username: the user's sessions and
/// grants end, the account goes, and its username stays reserved. Not the last enabled
/// member of an admin group.
pub(super) async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    let (session, admin, user) = target(&state, &cookies, live, &form.csrf, &id).await?;
    let who = (&session, &admin);
    if !rules::delete_confirmed(&user, &form.confirm) {
        tracing::warn!(target: "audit", event = "admin", action = "delete", user = %admin.username, target = %user.username, ip = %ip, outcome = "unconfirmed");
        let text = format!(
            "Nothing was deleted: type the username \"{}\" exactly to confirm.",
            user.username
        );
        let error = Some((StatusCode::BAD_REQUEST, text));
        return Ok(render_delete(&state, &cookies, who, &user, error));
    }
    // One last-admin check-and-write at a time (see `admin_changes`), on the users as they are now.
    let _one_at_a_time = state.admin_changes.lock().await;
    let all = state.store.list_users().await?;
    let user = rules::current(user, &all);
    let admins = &state.config.accounts.admin_groups;
    if let Err(refusal) = rules::may_change(&user, Change::Delete, &all, admins) {
        tracing::warn!(target: "audit", event = "admin", action = "delete", user = %admin.username, target = %user.username, ip = %ip, outcome = "refused", reason = %refusal);
        let error = Some((StatusCode::CONFLICT, refusal.to_string()));
        return Ok(render_delete(&state, &cookies, who, &user, error));
    }
    match users::delete(&*state.store, &user.username, state.now()).await {
        Ok((_, ended)) => {
            state.backchannel.notify(&user.id, &ended.logouts);
        }
        Err(AccountError::NoSuchUser(_)) => {}
        Err(e) => return Err(account_error(e)),
    }
    audit("delete", &admin, &user, ip);
    Ok(done(&state, "deleted"))
}
