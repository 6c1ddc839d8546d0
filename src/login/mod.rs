//! The landing page and its routes. A sign-in always belongs to a pending flow (an
//! authorization request, or a plain sign-in with a return address) stored in the store and
//! bound to this browser; the password step verifies, starts the SSO session and completes
//! the flow. A second factor will slot in between `verify` and `complete`.

pub mod csrf;
pub mod plex;
pub mod ratelimit;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::config::LoginMethod;
use crate::error::WebError;
use crate::oidc::authorize::{error_redirect, user_allowed, AuthorizeRequest};
use crate::oidc::error::OAuthError;
use crate::secrets::{digest, random_token};
use crate::session::{self, CookieNames};
use crate::state::AppState;
use crate::store::{Flow, Session, User};
use crate::web::{BrowserScheme, ClientIp, Cookies, Transport};
use ratelimit::{LimitReason, Limited};

pub mod paths {
    pub const LOGIN: &str = "/login";
    pub const PASSWORD: &str = "/login/password";
}

/// How long a sign-in page stays usable.
const FLOW_LIFETIME: i64 = 30 * 60;

/// What happens once the user is signed in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FlowPurpose {
    /// Finish an OIDC authorization request: issue the code and return to the client.
    Authorize(AuthorizeRequest),
    /// A plain sign-in (`/login?rd=`): return to `rd` if it is allowed.
    SignIn { rd: Option<String> },
    /// Jitsi's TOKEN_AUTH_URL: mint a token for the room and send the browser to the meeting.
    Jitsi {
        room: String,
        hash: Vec<(String, bool)>,
    },
}

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(plex::routes(state))
        .route(paths::LOGIN, get(login_page))
        .route(paths::PASSWORD, post(password))
}

#[derive(Serialize)]
struct LoginPage<'a> {
    base: &'a str,
    flow: &'a str,
    csrf: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    client_name: Option<&'a str>,
    password: bool,
    plex: bool,
}

fn flow_purpose_key(flow_id: &str) -> String {
    format!("flow:{flow_id}")
}

/// Stores a new pending flow for this browser and renders the landing page in this response.
pub async fn begin(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    purpose: FlowPurpose,
) -> Result<Response, WebError> {
    let now = state.now();
    let (browser, new_browser) = browser_binding(state, cookies);
    let flow_id = random_token();
    let login_hint = match &purpose {
        FlowPurpose::Authorize(r) => r.login_hint.clone(),
        FlowPurpose::SignIn { .. } | FlowPurpose::Jitsi { .. } => None,
    };
    let payload = serde_json::to_string(&purpose).map_err(|e| WebError::Internal(e.to_string()))?;
    let flow = Flow {
        id_hash: digest(&flow_id),
        browser_hash: digest(&browser),
        payload,
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
    };
    if let Err(limited) = state.limiter.open_flow(ip, flow.id_hash, state.now_ms()) {
        tracing::warn!(target: "audit", event = "sign_in_flow", ip = %ip, outcome = "rate_limited");
        let mut resp = WebError::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            format!(
                "Too many sign-in pages were opened from this address. {}",
                wait_text(limited.retry_after)
            ),
        )
        .into_response();
        set_retry_after(&mut resp, limited.retry_after);
        return Ok(resp);
    }
    state.store.put_flow(&flow).await?;
    // A Plex-only site in redirect mode shows no doorman page at all: straight to Plex.
    let mut resp = if plex::redirect_mode(state) {
        plex::redirect_to_plex(state, ip, &flow, &flow_id).await?
    } else {
        let page = LoginView {
            purpose: &purpose,
            flow_id: &flow_id,
            browser: &browser,
            username: login_hint.as_deref().unwrap_or(""),
            error: None,
        };
        render_login(state, &page, StatusCode::OK)
    };
    if new_browser {
        append_cookie(&mut resp, &browser_cookie(state, &browser));
    }
    Ok(resp)
}

/// This browser's binding cookie when doorman minted it, else a new one (and `true`): a value
/// planted by another site is never adopted.
pub(crate) fn browser_binding(state: &AppState, cookies: &Cookies) -> (String, bool) {
    match cookies.get(CookieNames::of(&state.config).browser) {
        Some(b) if state.csrf.minted(b) => (b.to_string(), false),
        _ => (state.csrf.mint_browser(), true),
    }
}

/// The Set-Cookie value for the browser-binding cookie.
pub(crate) fn browser_cookie(state: &AppState, value: &str) -> String {
    session::cookie(
        &state.config,
        CookieNames::of(&state.config).browser,
        value,
        None,
    )
}

/// "Wait 1 second and try again." / "Wait 5 seconds and try again."
fn wait_text(seconds: i64) -> String {
    let unit = if seconds == 1 { "second" } else { "seconds" };
    format!("Wait {seconds} {unit} and try again.")
}

fn set_retry_after(resp: &mut Response, seconds: i64) {
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// What the landing page shows for one pending flow.
pub(crate) struct LoginView<'a> {
    pub purpose: &'a FlowPurpose,
    pub flow_id: &'a str,
    pub browser: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub(crate) fn render_login(state: &AppState, view: &LoginView<'_>, status: StatusCode) -> Response {
    let client_name = match view.purpose {
        FlowPurpose::Authorize(r) => state
            .clients
            .get(&r.client_id)
            .map(|c| c.name.clone().unwrap_or_else(|| c.id.clone())),
        FlowPurpose::SignIn { .. } | FlowPurpose::Jitsi { .. } => None,
    };
    let csrf = state
        .csrf
        .token(&flow_purpose_key(view.flow_id), view.browser);
    let methods = &state.config.login.methods;
    let html = state.templates.render(
        "login.html",
        LoginPage {
            base: state.issuer(),
            flow: view.flow_id,
            csrf: &csrf,
            username: view.username,
            error: view.error,
            client_name: client_name.as_deref(),
            password: methods.contains(&LoginMethod::Password),
            plex: methods.contains(&LoginMethod::Plex) && state.plex.is_some(),
        },
    );
    crate::web::html(status, html)
}

pub fn append_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

const GENERIC_FAILURE: &str = "Wrong username or password.";

/// POST /login/password.
async fn password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    if !state.config.login.methods.contains(&LoginMethod::Password) {
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "Password sign-in is turned off",
            "Use the other sign-in option on the previous page.",
        ));
    }
    let (flow, purpose, browser) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let username = form.username.trim().to_string();
    let view = |username: &str, error: Option<&str>, status| {
        let v = LoginView {
            purpose: &purpose,
            flow_id: &form.flow,
            browser: &browser,
            username,
            error,
        };
        render_login(&state, &v, status)
    };
    if username.is_empty() || username.len() > 254 || form.password.len() > 1024 {
        return Ok(view("", Some(GENERIC_FAILURE), StatusCode::UNAUTHORIZED));
    }
    let user = if username.contains('@') {
        state.store.find_user_by_email(&username).await?
    } else {
        state.store.find_user_by_username(&username).await?
    };
    // What the log may say about who tried: a name typed into the username field may be a
    // password, so only an existing account is named.
    let who = user
        .as_ref()
        .map_or_else(|| "unknown".to_string(), |u| u.username.clone());
    // The per-account budget is keyed on the account, so its username and its email share
    // one budget; unknown names are counted as typed.
    let account = user
        .as_ref()
        .map(|u| u.id.clone())
        .unwrap_or_else(|| username.to_lowercase());
    // Reserved before any argon2 work: the limit holds however many requests arrive at once.
    let mut attempt = match state.limiter.attempt(ip, &account, &*state.clock).await {
        Ok(attempt) => attempt,
        Err(Limited {
            retry_after,
            reason,
        }) => {
            tracing::warn!(target: "audit", event = "sign_in", method = "password", user = %who, ip = %ip, outcome = "rate_limited");
            let msg = match reason {
                LimitReason::Busy => format!(
                    "Too many sign-in attempts are being checked right now. {}",
                    wait_text(retry_after)
                ),
                LimitReason::Failures | LimitReason::Rate => {
                    format!("Too many failed attempts. {}", wait_text(retry_after))
                }
            };
            let mut resp = view(&username, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
            set_retry_after(&mut resp, retry_after);
            return Ok(resp);
        }
    };
    let hash = user
        .as_ref()
        .filter(|u| !u.disabled)
        .and_then(|u| u.password_hash.clone());
    // Runs argon2 even for unknown users, so the answer takes the same time (no enumeration).
    let Ok(admission) = state.hasher.admit() else {
        // Not checked: the attempt's slot goes back unused when `attempt` drops.
        tracing::warn!(ip = %ip, "sign-in refused: the password-check queue is full (503)");
        let mut resp = view(
            &username,
            Some("doorman is busy checking other sign-ins. Try again in a moment."),
            StatusCode::SERVICE_UNAVAILABLE,
        );
        set_retry_after(&mut resp, 2);
        return Ok(resp);
    };
    // From here a request that goes away counts as a failure: its hash runs to the end.
    attempt.checking();
    let ok = admission.verify(hash, form.password).await;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            attempt.failed(state.now_ms());
            tracing::warn!(target: "audit", event = "sign_in", method = "password", user = %who, ip = %ip, client = %client_of(&purpose), outcome = "failure");
            return Ok(view(
                &username,
                Some(GENERIC_FAILURE),
                StatusCode::UNAUTHORIZED,
            ));
        }
    };
    attempt.succeeded(state.now_ms());
    tracing::info!(target: "audit", event = "sign_in", method = "password", user = %user.username, ip = %ip, client = %client_of(&purpose), outcome = "success");
    let (set, url) = signed_in(&state, &cookies, &flow, &purpose, &user, "pwd").await?;
    let mut resp = Redirect::to(&url).into_response();
    for c in &set {
        append_cookie(&mut resp, c);
    }
    Ok(resp)
}

/// The user proved who they are with `method`: a new SSO session (a fresh id at every sign-in,
/// so no session fixation; the old one ends), the flow is used up (and no longer counts
/// against its IP), the browser-binding cookie is minted anew, and the answer is the cookies
/// to set and where the browser goes next.
pub(crate) async fn signed_in(
    state: &AppState,
    cookies: &Cookies,
    flow: &Flow,
    purpose: &FlowPurpose,
    user: &User,
    method: &str,
) -> Result<(Vec<String>, String), WebError> {
    if let Some(old) = cookies.get(CookieNames::of(&state.config).session) {
        session::end(&*state.store, old).await?;
    }
    let now = state.now();
    let (cookie_value, session) = session::start(
        &*state.store,
        &state.config,
        user,
        vec![method.to_string()],
        now,
    )
    .await?;
    state.store.delete_flow(&flow.id_hash).await?;
    state.limiter.flow_completed(&flow.id_hash, state.now_ms());
    let url = completion_url(state, purpose, &session, user).await?;
    let mut set = vec![
        session::session_cookie(&state.config, &cookie_value),
        browser_cookie(state, &state.csrf.mint_browser()),
    ];
    set.extend(session::start_forward_auth(&*state.store, &state.config, &session, now).await?);
    Ok((set, url))
}

pub(crate) fn client_of(purpose: &FlowPurpose) -> &str {
    match purpose {
        FlowPurpose::Authorize(r) => &r.client_id,
        FlowPurpose::SignIn { .. } => "-",
        FlowPurpose::Jitsi { .. } => "jitsi",
    }
}

/// Loads the pending flow named by a form and checks it belongs to this browser (CSRF).
pub(crate) async fn load_flow(
    state: &AppState,
    cookies: &Cookies,
    transport: Transport,
    flow_id: &str,
    csrf: &str,
) -> Result<(Flow, FlowPurpose, String), WebError> {
    let browser = cookies
        .get(CookieNames::of(&state.config).browser)
        .ok_or_else(|| missing_browser_cookie(state, transport))?
        .to_string();
    if flow_id.is_empty()
        || !state
            .csrf
            .verify(&flow_purpose_key(flow_id), &browser, csrf)
    {
        return Err(forged());
    }
    let (flow, purpose) = load_browser_flow(state, &browser, flow_id).await?;
    Ok((flow, purpose, browser))
}

/// No browser cookie on a form post. When the issuer is https and the browser used plain http,
/// that is why (browsers drop `Secure` cookies on http pages): say so, on the page and in the log.
fn missing_browser_cookie(state: &AppState, transport: Transport) -> WebError {
    if state.config.issuer.scheme() != "https" || transport.scheme != BrowserScheme::Http {
        return forged();
    }
    let cause = if transport.via_proxy {
        "the trusted proxy says the browser used http (X-Forwarded-Proto: http): the user typed an http:// address; redirect http to https at the proxy"
    } else {
        "the request came straight to doorman over plain http, not through a trusted proxy: the user typed http://, or the proxy that terminates TLS is not in trusted_proxies or sends no X-Forwarded-Proto"
    };
    tracing::warn!(issuer = %state.issuer(), "a sign-in form arrived without doorman's cookie over plain http while the issuer is https, so the browser dropped the Secure cookie; likely cause: {cause}");
    WebError::page(
        StatusCode::FORBIDDEN,
        "This page was opened over plain http",
        format!(
            "doorman's address is {}, but this page was opened with http://, so your browser did not keep its sign-in cookie. Open the application again using https:// addresses.",
            state.issuer()
        ),
    )
}

fn forged() -> WebError {
    WebError::page(StatusCode::FORBIDDEN, "This form could not be verified", "The sign-in form did not come from this browser's sign-in page. Go back to the application and start again.")
}

/// The pending flow `flow_id`, only if it was started by this browser (cookie `browser`).
pub(crate) async fn load_browser_flow(
    state: &AppState,
    browser: &str,
    flow_id: &str,
) -> Result<(Flow, FlowPurpose), WebError> {
    let expired = || {
        WebError::page(
            StatusCode::BAD_REQUEST,
            "This sign-in page has expired",
            "Go back to the application and start signing in again.",
        )
    };
    let flow = state
        .store
        .get_flow(&digest(flow_id), state.now())
        .await?
        .ok_or_else(expired)?;
    if !crate::secrets::digest_eq(&flow.browser_hash, &digest(browser)) {
        return Err(forged());
    }
    let purpose: FlowPurpose = serde_json::from_str(&flow.payload).map_err(|_| expired())?;
    Ok((flow, purpose))
}

/// The user is signed in: finish what the flow was for.
pub async fn complete(
    state: &AppState,
    purpose: &FlowPurpose,
    session: &Session,
    user: &User,
) -> Result<Response, WebError> {
    Ok(Redirect::to(&completion_url(state, purpose, session, user).await?).into_response())
}

/// Where the browser goes once signed in: the client with a code, the `rd` of a plain sign-in
/// when it is safe, else doorman's own signed-in page.
pub async fn completion_url(
    state: &AppState,
    purpose: &FlowPurpose,
    session: &Session,
    user: &User,
) -> Result<String, WebError> {
    match purpose {
        FlowPurpose::Authorize(req) => authorize_redirect(state, req, session, user).await,
        FlowPurpose::SignIn { rd } => Ok(match rd.as_deref().filter(|rd| safe_return(state, rd)) {
            Some(rd) => rd.to_string(),
            None => state.url(paths::LOGIN),
        }),
        FlowPurpose::Jitsi { room, hash } => crate::jitsi::destination(state, room, hash, user),
    }
}

/// The SSO session behind this browser's cookie, if it is live and its user still allowed (a
/// federation may have withdrawn access since: Plex re-checks). A withdrawn session ends here.
pub async fn live_session(
    state: &AppState,
    cookies: &Cookies,
) -> Result<Option<(Session, User)>, WebError> {
    let Some(cookie) = cookies.get(CookieNames::of(&state.config).session) else {
        return Ok(None);
    };
    let now = state.now();
    let Some((session, user)) = session::lookup(&*state.store, &state.config, cookie, now).await?
    else {
        return Ok(None);
    };
    if !state.provider.still_allowed(&user, &session.amr, now).await {
        session::end(&*state.store, cookie).await?;
        return Ok(None);
    }
    Ok(Some((session, user)))
}

/// Where the browser goes for an authorization request with a signed-in user: the code, or
/// `access_denied` when the client's `allowed_groups` exclude the user.
pub async fn authorize_redirect(
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

fn signed_in_page(state: &AppState, user: &User) -> Response {
    let html = state.templates.render(
        "message.html",
        serde_json::json!({"base": state.issuer(), "title": "You are signed in", "message": format!("Signed in as {}.", user.username)}),
    );
    crate::web::html(StatusCode::OK, html)
}

/// Return addresses after a plain sign-in: only doorman's own origin for now (forward-auth
/// widens this to the hosts its rules cover).
/// Return addresses after a plain sign-in or a logout: doorman's own origin, or an http(s) host
/// that forward-auth protects (its rules or the shared cookie domain). Anything else would make
/// doorman an open redirector.
pub fn safe_return(state: &AppState, rd: &str) -> bool {
    let Ok(url) = url::Url::parse(rd) else {
        return false;
    };
    if url.origin() == state.config.issuer.origin() {
        return true;
    }
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let by_domain = state
        .config
        .session
        .cookie_domain
        .as_deref()
        .is_some_and(|d| host == d || host.ends_with(&format!(".{d}")));
    let by_rule = state
        .config
        .forward_auth
        .rules
        .iter()
        .any(|r| r.host.matches(&host));
    by_domain || by_rule
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    rd: Option<String>,
}

/// GET /login: the landing page without an application (forward-auth's sign-in, `?rd=`).
async fn login_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    if let Some((session, user)) = live_session(&state, &cookies).await? {
        let mut resp = match q.rd.as_deref().filter(|rd| safe_return(&state, rd)) {
            Some(rd) => Redirect::to(rd).into_response(),
            None => signed_in_page(&state, &user),
        };
        // Signed in before forward-auth had its cookie (or it was lost): hand one out now.
        let has_fa = match cookies.get(CookieNames::of(&state.config).forward_auth) {
            Some(c) => session::lookup_forward_auth(&*state.store, &state.config, c, state.now())
                .await?
                .is_some(),
            None => false,
        };
        if !has_fa {
            if let Some(c) =
                session::start_forward_auth(&*state.store, &state.config, &session, state.now())
                    .await?
            {
                append_cookie(&mut resp, &c);
            }
        }
        return Ok(resp);
    }
    begin(&state, &cookies, ip, FlowPurpose::SignIn { rd: q.rd }).await
}
