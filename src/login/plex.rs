//! Sign in with Plex on the landing page. The click opens a popup on a doorman page at once
//! (popup blockers), `/login/plex/start` has the server create a PIN bound to the pending flow
//! and this browser, and the page polls `/login/plex/poll` while the server asks plex.tv at
//! most once a second per PIN. The Plex token never reaches the browser. Same-tab and
//! `plex.mode = "redirect"` come back through `/login/plex/return`, which finds the PIN from
//! the flow and this browser's cookie, never from the URL (that would be login CSRF).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{
    append_cookie, load_browser_flow, load_flow, render_login, set_retry_after, signed_in,
    LoginView,
};
use crate::config::{LoginMethod, PlexMode};
use crate::error::WebError;
use crate::plex::{auth_app_url_for, JoinError, PlexError, SignInError};
use crate::session::CookieNames;
use crate::signin::{FlowState, Step};
use crate::state::AppState;
use crate::store::{Flow, PlexPin};
use crate::web::{ClientInfo, ClientIp, Cookies, Transport};

pub mod paths {
    pub const START: &str = "/login/plex/start";
    pub const POLL: &str = "/login/plex/poll";
    pub const REDIRECT: &str = "/login/plex/redirect";
    pub const RETURN: &str = "/login/plex/return";
    pub const POPUP: &str = "/login/plex/popup";
    pub const DONE: &str = "/login/plex/done";
}

/// How often plex.tv is asked about one PIN, at most.
const POLL_EVERY_MS: i64 = 1000;
const UNAVAILABLE: &str = "Plex is not responding right now. Please try again in a minute.";
const EXPIRED: &str = "Your Plex sign-in timed out. Try again to get a new one.";
const DENIED: &str = "Your Plex account doesn't have access to this server. Ask the owner to share it with you, or use another Plex account.";

pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::START, post(start))
        .route(paths::REDIRECT, post(same_tab))
        .route(paths::POLL, post(poll))
        .route(paths::RETURN, get(plex_return))
        .route(paths::POPUP, get(popup_page))
        .route(paths::DONE, get(done_page))
}

const TOO_MANY: &str = "Too many sign-in attempts from this address. Wait a minute and try again.";

/// Why no PIN was made.
enum NoPin {
    /// plex.tv did not answer.
    Unavailable,
    /// This IP made too many (the limiter's Plex PIN budget); retry after this many seconds.
    Limited(i64),
}

/// Plex-only sites in redirect mode send the browser to Plex from /authorize.
pub fn redirect_mode(state: &AppState) -> bool {
    state
        .plex
        .as_ref()
        .is_some_and(|p| p.config.mode == PlexMode::Redirect)
        && state.config.login.methods == [LoginMethod::Plex]
}

fn plex_enabled(state: &AppState) -> Result<&crate::plex::PlexService, WebError> {
    match &state.plex {
        Some(p) if state.config.login.methods.contains(&LoginMethod::Plex) => Ok(p),
        _ => Err(WebError::page(
            StatusCode::NOT_FOUND,
            "Sign in with Plex is not enabled",
            "Use the other sign-in option on the previous page.",
        )),
    }
}

/// Creates a PIN for the flow (replacing an earlier one) and answers the Auth App URL. Each
/// PIN costs a plex.tv call: the IP's PIN budget is taken first.
async fn new_pin(
    state: &AppState,
    ip: IpAddr,
    flow: &Flow,
    forward_url: &str,
) -> Result<Result<String, NoPin>, WebError> {
    let plex = plex_enabled(state)?;
    if let Err(limited) = state.limiter.create_pin(ip, state.now_ms()) {
        tracing::warn!(ip = %ip, "too many Plex PINs from one address");
        return Ok(Err(NoPin::Limited(limited.retry_after)));
    }
    let pin = match plex.client.create_pin().await {
        Ok(pin) => pin,
        Err(e) => {
            tracing::warn!(error = %e, "could not create a Plex PIN");
            return Ok(Err(NoPin::Unavailable));
        }
    };
    let now = state.now();
    // plex.tv says how long the PIN lives; 30 minutes for strong PINs.
    let lifetime = pin.expires_in.filter(|s| *s > 0).unwrap_or(1800).min(3600);
    state
        .store
        .put_plex_pin(&PlexPin {
            flow_hash: flow.id_hash,
            browser_hash: flow.browser_hash,
            pin_id: pin.id,
            code: pin.code.clone(),
            created_at: now,
            expires_at: now + lifetime,
            next_poll_ms: state.now_ms() + POLL_EVERY_MS,
        })
        .await?;
    Ok(Ok(auth_app_url_for(plex, &pin.code, forward_url)))
}

#[derive(Debug, Deserialize)]
struct FlowForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    csrf: String,
}

fn json_status(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page error as the JSON the landing page's script reads.
fn json_error(e: WebError) -> Response {
    match e {
        WebError::Page {
            status,
            title,
            message,
        } => json_status(
            status,
            json!({"status": "error", "message": format!("{title}. {message}")}),
        ),
        other => {
            let resp = other.into_response();
            json_status(
                resp.status(),
                json!({"status": "error", "message": "Something went wrong. Please try again."}),
            )
        }
    }
}

/// POST /login/plex/start: a PIN for this flow and browser; answers the Plex URL for the popup.
async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<FlowForm>,
) -> Response {
    let result = async {
        let (flow, _, _) = load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
        new_pin(&state, ip, &flow, &state.url(paths::DONE)).await
    }
    .await;
    match result {
        Ok(Ok(url)) => json_status(
            StatusCode::OK,
            json!({"status": "started", "auth_url": url}),
        ),
        Ok(Err(NoPin::Unavailable)) => json_status(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "message": UNAVAILABLE}),
        ),
        Ok(Err(NoPin::Limited(after))) => {
            let mut resp = json_status(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "error", "message": TOO_MANY}),
            );
            set_retry_after(&mut resp, after);
            resp
        }
        Err(e) => json_error(e),
    }
}

/// What one look at the PIN found.
enum Poll {
    Pending(Option<&'static str>),
    /// Signed in: the cookies to set and where to go.
    Done {
        cookies: Vec<String>,
        redirect: String,
    },
    Expired,
    Denied,
    Failed(&'static str),
}

/// Asks plex.tv about the flow's PIN if this is the moment to (at most once a second per PIN,
/// across every page poll and replica), and finishes the sign-in once Plex says yes.
async fn poll_once(
    state: &AppState,
    cookies: &Cookies,
    flow: &Flow,
    flow_state: &FlowState,
    meta: &crate::session::SessionMeta,
) -> Result<Poll, WebError> {
    let purpose = &flow_state.purpose;
    let plex = plex_enabled(state)?;
    let Some(pin) = state.store.get_plex_pin(&flow.id_hash).await? else {
        return Ok(Poll::Failed(
            "No Plex sign-in is in progress here. Start again.",
        ));
    };
    if !crate::secrets::digest_eq(&pin.browser_hash, &flow.browser_hash) {
        return Ok(Poll::Failed(
            "No Plex sign-in is in progress here. Start again.",
        ));
    }
    let now = state.now();
    if now >= pin.expires_at {
        state
            .store
            .delete_plex_pin(&flow.id_hash, pin.pin_id)
            .await?;
        return Ok(Poll::Expired);
    }
    let now_ms = state.now_ms();
    if !state
        .store
        .claim_plex_poll(&flow.id_hash, now_ms, now_ms + POLL_EVERY_MS)
        .await?
    {
        return Ok(Poll::Pending(None));
    }
    let token = match plex.client.check_pin(pin.pin_id).await {
        Ok(None) => return Ok(Poll::Pending(None)),
        Ok(Some(token)) => token,
        Err(PlexError::NotFound) => {
            state
                .store
                .delete_plex_pin(&flow.id_hash, pin.pin_id)
                .await?;
            return Ok(Poll::Expired);
        }
        Err(PlexError::RateLimited(after)) => {
            let wait_ms = i64::try_from(after.unwrap_or(2).max(2))
                .unwrap_or(2)
                .saturating_mul(1000);
            // Only the poll time of this very PIN moves: a PIN started meanwhile (a retry)
            // replaced the row and must not be overwritten with this one.
            state
                .store
                .defer_plex_poll(&flow.id_hash, pin.pin_id, now_ms + wait_ms)
                .await?;
            tracing::warn!(wait_ms, "plex.tv rate-limited a PIN poll; backing off");
            return Ok(Poll::Pending(Some("Plex is busy; still waiting…")));
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not poll the Plex PIN");
            return Ok(Poll::Pending(Some(UNAVAILABLE)));
        }
    };
    if let Step::PlexInvite { link } = &flow_state.step {
        return join_by_invite(
            state, cookies, flow, flow_state, meta, &token, link, pin.pin_id,
        )
        .await;
    }
    let user = match plex.sign_in(&token, now).await {
        Ok(user) => user,
        Err(SignInError::Denied { username }) => {
            state
                .store
                .delete_plex_pin(&flow.id_hash, pin.pin_id)
                .await?;
            tracing::warn!(target: "audit", event = "sign_in", method = "plex", plex_user = %username, client = %super::client_of(purpose), outcome = "denied");
            return Ok(Poll::Denied);
        }
        Err(SignInError::Plex(e)) => {
            // The PIN stays valid: the next poll fetches the token again.
            tracing::warn!(error = %e, "plex.tv failed while finishing a sign-in");
            return Ok(Poll::Pending(Some(UNAVAILABLE)));
        }
        Err(SignInError::Revoked) => {
            state
                .store
                .delete_plex_pin(&flow.id_hash, pin.pin_id)
                .await?;
            return Ok(Poll::Failed(
                "Plex did not accept this sign-in. Please try again.",
            ));
        }
        Err(SignInError::Disabled) => {
            state
                .store
                .delete_plex_pin(&flow.id_hash, pin.pin_id)
                .await?;
            tracing::warn!(target: "audit", event = "sign_in", method = "plex", outcome = "disabled");
            return Ok(Poll::Failed("This account is disabled. Ask the operator."));
        }
        Err(SignInError::Store(e)) => return Err(e.into()),
    };
    state
        .store
        .delete_plex_pin(&flow.id_hash, pin.pin_id)
        .await?;
    tracing::info!(target: "audit", event = "sign_in", method = "plex", user = %user.username, client = %super::client_of(purpose), outcome = "success");
    let amr = vec![crate::plex::AMR.to_string()];
    let (set, redirect) = signed_in(state, cookies, flow, purpose, &user, amr, meta).await?;
    Ok(Poll::Done {
        cookies: set,
        redirect,
    })
}

/// The PIN of an invitee's flow was approved: make the account from the invite and sign in.
#[allow(clippy::too_many_arguments)]
async fn join_by_invite(
    state: &AppState,
    cookies: &Cookies,
    flow: &Flow,
    flow_state: &FlowState,
    meta: &crate::session::SessionMeta,
    token: &str,
    link: &str,
    pin_id: i64,
) -> Result<Poll, WebError> {
    let plex = plex_enabled(state)?;
    let Some(link_hash) = crate::secrets::from_hex(link) else {
        return Ok(Poll::Failed("This invite link is not valid."));
    };
    let now = state.now();
    let joined = plex.join_by_invite(token, &link_hash, now).await;
    if !matches!(joined, Err(JoinError::Plex(_))) {
        state.store.delete_plex_pin(&flow.id_hash, pin_id).await?;
    }
    let user = match joined {
        Ok(user) => user,
        Err(JoinError::Plex(e)) => {
            tracing::warn!(error = %e, "plex.tv failed while finishing an invite");
            return Ok(Poll::Pending(Some(UNAVAILABLE)));
        }
        Err(JoinError::AlreadyLinked { username }) => {
            tracing::warn!(target: "audit", event = "invite_redeemed", method = "plex", user = %username, outcome = "already_linked");
            return Ok(Poll::Failed(
                "This Plex account already has an account here. Sign in with Plex instead; the invite was not used.",
            ));
        }
        Err(JoinError::Gone) => {
            return Ok(Poll::Failed(
                "This invite can no longer be used: it expired, was used up or was withdrawn. Ask the person who invited you for a new one.",
            ))
        }
        Err(JoinError::EmailTaken) => {
            return Ok(Poll::Failed(
                "Another account has the email address this invite is for. Ask the person who invited you.",
            ))
        }
        Err(JoinError::Revoked) => {
            return Ok(Poll::Failed(
                "Plex did not accept this sign-in. Please try again.",
            ))
        }
        Err(JoinError::NoUsername) => {
            return Ok(Poll::Failed(
                "No free username could be made from this Plex account. Ask the person who invited you.",
            ))
        }
        Err(JoinError::Store(e)) => return Err(e.into()),
    };
    let amr = vec![crate::plex::AMR.to_string()];
    let (set, redirect) =
        signed_in(state, cookies, flow, &flow_state.purpose, &user, amr, meta).await?;
    Ok(Poll::Done {
        cookies: set,
        redirect,
    })
}

/// POST /login/plex/poll: the landing page asks about once a second.
async fn poll(
    State(state): State<AppState>,
    ClientInfo(meta): ClientInfo,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<FlowForm>,
) -> Response {
    let result = async {
        let (flow, purpose, _) =
            load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
        poll_once(&state, &cookies, &flow, &purpose, &meta).await
    }
    .await;
    match result {
        Ok(Poll::Pending(notice)) => json_status(
            StatusCode::OK,
            json!({"status": "pending", "message": notice}),
        ),
        Ok(Poll::Done { cookies, redirect }) => {
            let mut resp = json_status(
                StatusCode::OK,
                json!({"status": "done", "redirect": redirect}),
            );
            for c in &cookies {
                append_cookie(&mut resp, c);
            }
            resp
        }
        Ok(Poll::Expired) => json_status(
            StatusCode::OK,
            json!({"status": "expired", "message": EXPIRED}),
        ),
        Ok(Poll::Denied) => json_status(
            StatusCode::FORBIDDEN,
            json!({"status": "denied", "message": DENIED}),
        ),
        Ok(Poll::Failed(message)) => json_status(
            StatusCode::OK,
            json!({"status": "error", "message": message}),
        ),
        Err(e) => json_error(e),
    }
}

/// POST /login/plex/redirect: "continue in this tab" (popups blocked, phones).
async fn same_tab(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<FlowForm>,
) -> Result<Response, WebError> {
    let (flow, purpose, browser) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let (message, status, retry) =
        match new_pin(&state, ip, &flow, &return_url(&state, &form.flow)).await? {
            Ok(url) => return Ok(Redirect::to(&url).into_response()),
            Err(NoPin::Unavailable) => (UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, None),
            Err(NoPin::Limited(after)) => (TOO_MANY, StatusCode::TOO_MANY_REQUESTS, Some(after)),
        };
    let view = LoginView {
        purpose: &purpose.purpose,
        flow_id: &form.flow,
        browser: &browser,
        username: "",
        error: Some(message),
    };
    let mut resp = render_login(&state, &view, status);
    if let Some(after) = retry {
        set_retry_after(&mut resp, after);
    }
    Ok(resp)
}

fn return_url(state: &AppState, flow_id: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("flow", flow_id)
        .finish();
    format!("{}?{query}", state.url(paths::RETURN))
}

/// `plex.mode = "redirect"`: /authorize answers with Plex itself (zero doorman pages).
pub async fn redirect_to_plex(
    state: &AppState,
    ip: IpAddr,
    flow: &Flow,
    flow_id: &str,
) -> Result<Response, WebError> {
    match new_pin(state, ip, flow, &return_url(state, flow_id)).await? {
        Ok(url) => match HeaderValue::from_str(&url) {
            Ok(v) => Ok((StatusCode::FOUND, [(header::LOCATION, v)]).into_response()),
            Err(_) => Err(WebError::Internal(
                "the Plex URL is not a valid header".into(),
            )),
        },
        Err(NoPin::Unavailable) => Err(WebError::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Plex is not responding",
            UNAVAILABLE,
        )),
        Err(NoPin::Limited(after)) => {
            let mut resp = WebError::page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts",
                TOO_MANY,
            )
            .into_response();
            set_retry_after(&mut resp, after);
            Ok(resp)
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReturnQuery {
    flow: Option<String>,
}

/// GET /login/plex/return?flow=: back from Plex in the same tab. The flow must be this
/// browser's; its PIN is looked up server-side. Plex may send the browser back a moment before
/// the PIN reads as approved, so look a few times, a second apart.
async fn plex_return(
    State(state): State<AppState>,
    ClientInfo(meta): ClientInfo,
    cookies: Cookies,
    Query(q): Query<ReturnQuery>,
) -> Result<Response, WebError> {
    let flow_id = q.flow.unwrap_or_default();
    let forged = || {
        WebError::page(
            StatusCode::FORBIDDEN,
            "This sign-in did not start in this browser",
            "Go back to the application and sign in again.",
        )
    };
    let browser = cookies
        .get(CookieNames::of(&state.config).browser)
        .ok_or_else(forged)?
        .to_string();
    let (flow, purpose) = load_browser_flow(&state, &browser, &flow_id).await?;
    let mut outcome = Poll::Pending(None);
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(POLL_EVERY_MS as u64)).await;
        }
        outcome = poll_once(&state, &cookies, &flow, &purpose, &meta).await?;
        if !matches!(outcome, Poll::Pending(_)) {
            break;
        }
    }
    let invite = matches!(purpose.step, Step::PlexInvite { .. });
    let page = |message: &str, status| {
        if invite {
            // No landing page for an invitee: the message, and back to the invite link.
            let html = state.templates.render(
                "message.html",
                json!({"base": state.issuer(), "title": "Your Plex account was not linked", "message": message}),
            );
            return crate::web::html(status, html);
        }
        let view = LoginView {
            purpose: &purpose.purpose,
            flow_id: &flow_id,
            browser: &browser,
            username: "",
            error: Some(message),
        };
        render_login(&state, &view, status)
    };
    Ok(match outcome {
        Poll::Done { cookies, redirect } => {
            let mut resp = Redirect::to(&redirect).into_response();
            for c in &cookies {
                append_cookie(&mut resp, c);
            }
            resp
        }
        Poll::Pending(notice) => page(
            notice.unwrap_or("Plex has not confirmed the sign-in yet. Try again."),
            StatusCode::OK,
        ),
        Poll::Expired => page(EXPIRED, StatusCode::OK),
        Poll::Denied => page(DENIED, StatusCode::FORBIDDEN),
        Poll::Failed(message) => page(message, StatusCode::OK),
    })
}

/// GET /login/plex/popup: what the popup shows while the PIN is made (opened synchronously on
/// click, so no popup blocker objects).
async fn popup_page(State(state): State<AppState>) -> Response {
    let html = state.templates.render(
        "message.html",
        json!({"base": state.issuer(), "title": "Connecting to Plex…", "message": "This window will show Plex's sign-in in a moment."}),
    );
    crate::web::html(StatusCode::OK, html)
}

/// GET /login/plex/done: Plex's forwardUrl in the popup; the page closes itself.
async fn done_page(State(state): State<AppState>) -> Response {
    let html = state
        .templates
        .render("plex_done.html", json!({"base": state.issuer()}));
    crate::web::html(StatusCode::OK, html)
}
