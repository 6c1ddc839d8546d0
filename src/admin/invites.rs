//! The Invites page (`/admin/invites`): the live invites (never a token), revoking one, and
//! making one with the limits of `doorman invite create`; the new link is shown on the
//! answer to the POST only (never in a URL, a redirect or a log).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};

use super::rules;
use super::{authorised, notice, page_admin, paths, render_page, PageQuery};
use crate::accounts::links::{self, LinkError};
use crate::error::WebError;
use crate::state::AppState;
use crate::store::{LinkKind, Session, User};
use crate::web::{ClientIp, Cookies, SignedIn};

#[derive(Serialize)]
struct InviteView {
    id: String,
    note: String,
    groups: String,
    email: String,
    uses: i64,
    uses_left: i64,
    expires: String,
    created_by: String,
}

/// What the create form had, to show it again after a refusal.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct CreateForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    uses: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    note: String,
    /// "1" when "send by mail" was ticked (offered only with `[smtp]`).
    #[serde(default)]
    send: String,
}

/// The page: the live invites, the form (`form` typed before, or empty), a `created` link
/// (shown once), a `notice` or an `error` (and its status).
async fn render(
    state: &AppState,
    cookies: &Cookies,
    who: (&Session, &User),
    form: &CreateForm,
    created: Option<serde_json::Value>,
    notice: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, WebError> {
    let now = state.now();
    let invites: Vec<InviteView> = state
        .store
        .list_links(LinkKind::Invite, now)
        .await?
        .into_iter()
        .map(|l| InviteView {
            id: l.id,
            note: l.note.unwrap_or_default(),
            groups: l.groups.join(", "),
            email: l.email.unwrap_or_default(),
            uses: l.uses,
            uses_left: l.uses_left,
            expires: crate::keys::utc(l.expires_at),
            created_by: l.created_by,
        })
        .collect();
    let (status, error) = match error {
        Some((status, text)) => (status, Some(text)),
        None => (StatusCode::OK, None),
    };
    Ok(render_page(
        state,
        cookies,
        who,
        "invites",
        "admin_invites.html",
        status,
        serde_json::json!({
            "notice": notice,
            "error": error,
            "created": created,
            "form": form,
            "max_uses": links::MAX_USES,
            "mail": state.mailer.is_some(),
            "invites": invites,
        }),
    ))
}

/// GET /admin/invites.
pub(super) async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let (session, admin) = match page_admin(&state, &cookies, ip, live, paths::INVITES).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    let form = CreateForm::default();
    render(
        &state,
        &cookies,
        (&session, &admin),
        &form,
        None,
        notice(&q.done),
        None,
    )
    .await
}

/// POST /admin/invites: makes an invite; the answer shows its link once.
pub(super) async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<CreateForm>,
) -> Result<Response, WebError> {
    let (session, admin) = authorised(&state, &cookies, live, &form.csrf)?;
    let who = (&session, &admin);
    let refused = |text: String| {
        tracing::warn!(target: "audit", event = "admin", action = "invite_create", user = %admin.username, ip = %ip, outcome = "refused", reason = %text);
        Some((StatusCode::BAD_REQUEST, text))
    };
    let new = match rules::invite_form(
        &form.groups,
        &form.expires,
        &form.uses,
        &form.email,
        &form.note,
        &admin.username,
    ) {
        Ok(new) => new,
        Err(text) => return render(&state, &cookies, who, &form, None, None, refused(text)).await,
    };
    let send = !form.send.is_empty();
    if send && state.mailer.is_none() {
        let text = "Mail is not set up here ([smtp]): make the link and pass it on yourself.";
        return render(
            &state,
            &cookies,
            who,
            &form,
            None,
            None,
            refused(text.into()),
        )
        .await;
    }
    if send && form.email.trim().is_empty() {
        let text = "To send the link by mail, type the email address to send it to.";
        return render(
            &state,
            &cookies,
            who,
            &form,
            None,
            None,
            refused(text.into()),
        )
        .await;
    }
    let (token, link) = match links::create_invite(&*state.store, new, state.now()).await {
        Ok(made) => made,
        Err(LinkError::Invalid(text)) => {
            return render(&state, &cookies, who, &form, None, None, refused(text)).await
        }
        Err(LinkError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(target: "audit", event = "admin", action = "invite_create", user = %admin.username, invite = %link.id, groups = %link.groups.join(","), uses = link.uses, ip = %ip, outcome = "success");
    let url = links::url(state.issuer(), LinkKind::Invite, &token);
    let mailed = match (send, state.mailer.as_ref(), link.email.as_deref()) {
        (true, Some(outbox), Some(to)) => {
            let text = crate::mail::messages::invite(
                &crate::mail::messages::site(state.issuer()),
                &url,
                link.expires_at.saturating_sub(link.created_at),
                link.uses,
            );
            let queued = outbox.queue(crate::mail::Mail {
                to: to.to_string(),
                subject: text.subject,
                body: text.body,
                what: "invite",
            });
            tracing::info!(target: "audit", event = "admin", action = "invite_mail", user = %admin.username, invite = %link.id, ip = %ip, outcome = if queued { "mailed" } else { "mail_dropped" });
            Some(queued)
        }
        _ => None,
    };
    let created = serde_json::json!({
        "id": link.id,
        "mailed": mailed,
        "url": url,
        "uses": link.uses,
        "expires": crate::keys::utc(link.expires_at),
        "groups": link.groups.join(", "),
        "email": link.email,
    });
    let empty = CreateForm::default();
    render(&state, &cookies, who, &empty, Some(created), None, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

/// POST /admin/invites/{id}/revoke: the invite's link stops working at once.
pub(super) async fn revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    let (_, admin) = authorised(&state, &cookies, live, &form.csrf)?;
    let now = state.now();
    let live_invite = state
        .store
        .list_links(LinkKind::Invite, now)
        .await?
        .iter()
        .any(|l| l.id == id);
    if !live_invite || !state.store.revoke_link(&id, now).await? {
        return Err(WebError::page(
            StatusCode::NOT_FOUND,
            "No such invite",
            "That invite has expired or was revoked already. Open the Invites page again.",
        ));
    }
    tracing::info!(target: "audit", event = "admin", action = "invite_revoke", user = %admin.username, invite = %id, ip = %ip, outcome = "success");
    Ok(Redirect::to(&format!(
        "{}?done=invite-revoked",
        state.url(paths::INVITES)
    ))
    .into_response())
}
