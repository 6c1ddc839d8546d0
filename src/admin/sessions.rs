//! The Sessions page (`/admin/sessions`: every live SSO session, newest first, each with
//! "revoke") and the Clients page (`/admin/clients`: the registered `[[clients]]`, read-only,
//! never a secret). A session is named on the page and in the form only by its `sid`, never
//! by its id or the id's hash.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};

use super::rules::{self, SESSIONS_SHOWN};
use super::{authorised, notice, page_admin, paths, render_page, PageQuery};
use crate::error::WebError;
use crate::state::AppState;
use crate::web::{ClientIp, Cookies, SignedIn};

#[derive(Serialize)]
struct SessionView {
    sid: String,
    username: String,
    user_id: String,
    started: String,
    last_seen: String,
    ip: String,
    user_agent: String,
    method: String,
    this_browser: bool,
}

/// GET /admin/sessions.
pub(super) async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let (session, admin) = match page_admin(&state, &cookies, ip, live, paths::SESSIONS).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    let now = state.now();
    let mut sessions = state
        .store
        .list_sessions(now, SESSIONS_SHOWN.saturating_add(1))
        .await?;
    let capped = sessions.len() > SESSIONS_SHOWN;
    sessions.truncate(SESSIONS_SHOWN);
    let names: HashMap<String, String> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect();
    let views: Vec<SessionView> = sessions
        .iter()
        .map(|s| SessionView {
            sid: state.provider.sid_for(s),
            username: names.get(&s.user_id).cloned().unwrap_or_default(),
            user_id: s.user_id.clone(),
            started: crate::keys::utc(s.created_at),
            last_seen: crate::keys::utc(s.last_seen_at),
            ip: s.ip.clone().unwrap_or_default(),
            user_agent: s.user_agent.clone().unwrap_or_default(),
            method: crate::account::rules::method_text(&s.amr),
            this_browser: s.id_hash == session.id_hash,
        })
        .collect();
    Ok(render_page(
        &state,
        &cookies,
        (&session, &admin),
        "sessions",
        "admin_sessions.html",
        StatusCode::OK,
        serde_json::json!({
            "notice": notice(&q.done),
            "sessions": views,
            "capped": capped,
            "shown": SESSIONS_SHOWN,
        }),
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sid: String,
}

/// POST /admin/sessions/revoke (`sid`): ends that session and the grants made in it, so the
/// browser is signed out and the applications signed in through it lose their tokens.
pub(super) async fn revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    let (_, admin) = authorised(&state, &cookies, live, &form.csrf)?;
    let now = state.now();
    let found = state
        .store
        .list_sessions(now, usize::MAX)
        .await?
        .into_iter()
        .find(|s| !form.sid.is_empty() && state.provider.sid_for(s) == form.sid);
    let Some(s) = found else {
        return Err(WebError::page(
            StatusCode::NOT_FOUND,
            "No such session",
            "That session has ended already. Open the Sessions page again.",
        ));
    };
    let ended =
        crate::accounts::users::end_session(&*state.store, &s.user_id, &s.id_hash, &form.sid, now)
            .await?;
    state.backchannel.notify(&s.user_id, &ended.logouts);
    let target = state
        .store
        .get_user(&s.user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    tracing::info!(target: "audit", event = "admin", action = "session_revoke", user = %admin.username, target = %target, grants = ended.grants, ip = %ip, outcome = "success");
    Ok(Redirect::to(&format!(
        "{}?done=session-revoked",
        state.url(paths::SESSIONS)
    ))
    .into_response())
}

#[derive(Serialize)]
struct ClientView {
    id: String,
    name: String,
    public: bool,
    redirect_uris: Vec<String>,
    allowed_groups: Option<String>,
    second_factor: bool,
    hint: String,
}

/// GET /admin/clients: the registered clients as configured (never a secret or its hash).
pub(super) async fn clients(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
) -> Result<Response, WebError> {
    let (session, admin) = match page_admin(&state, &cookies, ip, live, paths::CLIENTS).await? {
        Ok(admin) => admin,
        Err(landing) => return Ok(landing),
    };
    let views: Vec<ClientView> = state
        .config
        .clients
        .iter()
        .map(|c| ClientView {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_default(),
            public: c.public,
            redirect_uris: c.redirect_uris.clone(),
            allowed_groups: c.allowed_groups.as_ref().map(|g| g.join(", ")),
            second_factor: c.require_second_factor,
            hint: rules::integrate_hint(&c.id),
        })
        .collect();
    Ok(render_page(
        &state,
        &cookies,
        (&session, &admin),
        "clients",
        "admin_clients.html",
        StatusCode::OK,
        serde_json::json!({ "clients": views }),
    ))
}
