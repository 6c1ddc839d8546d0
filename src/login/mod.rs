//! The sign-in pages: thin handlers over [`crate::signin`]. A sign-in always belongs to a
//! pending flow (see `signin::FlowState`) stored in the store and bound to this browser; each
//! handler loads the flow (checking its CSRF token against this browser), asks `signin` for the
//! next step, and renders that step's page or finishes the purpose.
//!
//! - `authorize.rs`: `GET|POST /authorize`, the one place that decides between SSO, a second
//!   factor and the landing page, and issues the code once signed in.
//! - `plex.rs`: the Plex PIN routes of the landing page.
//! - `second_factor.rs`: the code page, enrolment, recovery codes, `/account/second-factor`.

pub mod authorize;
pub mod confirm;
pub mod forgot;
pub mod invite;
pub mod passkey;
pub mod plex;
pub mod reset;
pub mod second_factor;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::config::LoginMethod;
use crate::error::WebError;
use crate::secrets::digest;
use crate::session::{self, CookieNames};
use crate::signin::password::{self as pw, Checked};
use crate::signin::policy::{self, Next};
use crate::signin::{self, FlowState, Purpose};
use crate::state::AppState;
use crate::store::{Flow, Session, User};
pub use crate::web::append_cookie;
use crate::web::{Browser, BrowserScheme, ClientInfo, ClientIp, Cookies, SignedIn, Transport};

pub mod paths {
    pub const LOGIN: &str = "/login";
    pub const PASSWORD: &str = "/login/password";
}

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(plex::routes(state))
        .merge(authorize::routes(state))
        .merge(second_factor::routes())
        .merge(passkey::routes())
        .merge(invite::routes())
        .merge(reset::routes())
        .merge(forgot::routes())
        .merge(confirm::routes())
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
    /// The "Forgot your password?" link (only with `[smtp]`).
    forgot: bool,
    /// "Sign in with a passkey" (and passkeys in the username's autofill).
    passkey: bool,
}

fn flow_purpose_key(flow_id: &str) -> String {
    format!("flow:{flow_id}")
}

/// Starts a sign-in for `purpose` and renders the landing page in this response.
pub async fn begin(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    purpose: Purpose,
) -> Result<Response, WebError> {
    begin_at(state, cookies, ip, FlowState::new(purpose)).await
}

/// Stores a new pending flow in `flow_state` for this browser and renders its step's page in
/// this response.
pub async fn begin_at(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    flow_state: FlowState,
) -> Result<Response, WebError> {
    let now = state.now();
    let browser = Browser::of(state, cookies);
    let (flow_id, flow) = signin::new_flow(&flow_state, &browser.value, now);
    if let Err(limited) = state.limiter.open_flow(ip, flow.id_hash, state.now_ms()) {
        tracing::warn!(target: "audit", event = "sign_in_flow", ip = %ip, outcome = "rate_limited");
        let mut resp = WebError::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            format!(
                "Too many sign-in pages were opened from this address. {}",
                pw::wait_text(limited.retry_after)
            ),
        )
        .into_response();
        set_retry_after(&mut resp, limited.retry_after);
        return Ok(resp);
    }
    state.store.put_flow(&flow).await?;
    // A Plex-only site in redirect mode shows no doorman page at all: straight to Plex.
    let mut resp = if flow_state.step == signin::Step::FirstFactor && plex::redirect_mode(state) {
        plex::redirect_to_plex(state, ip, &flow, &flow_id).await?
    } else {
        second_factor::render_step(
            state,
            &flow_id,
            &browser.value,
            &flow_state,
            None,
            StatusCode::OK,
        )
        .await?
    };
    browser.keep(state, &mut resp);
    Ok(resp)
}

pub(crate) fn set_retry_after(resp: &mut Response, seconds: i64) {
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// What the landing page shows for one pending flow.
pub(crate) struct LoginView<'a> {
    pub purpose: &'a Purpose,
    pub flow_id: &'a str,
    pub browser: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub(crate) fn render_login(state: &AppState, view: &LoginView<'_>, status: StatusCode) -> Response {
    let client_name = view
        .purpose
        .client_id()
        .and_then(|id| state.clients.get(id))
        .map(|c| c.name.clone().unwrap_or_else(|| c.id.clone()));
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
            forgot: state.mailer.is_some(),
            passkey: methods.contains(&LoginMethod::Password)
                && signin::passkey::relying_party(&state.config).is_some(),
        },
    );
    crate::web::html(status, html)
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
    ClientInfo(meta): ClientInfo,
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
    let (flow, flow_state, browser) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    if flow_state.step != signin::Step::FirstFactor {
        // The password of this flow was already accepted (a second submit, the back button):
        // show the step it is at.
        return second_factor::render_step(
            &state,
            &form.flow,
            &browser,
            &flow_state,
            None,
            StatusCode::OK,
        )
        .await;
    }
    let purpose = &flow_state.purpose;
    let username = form.username.trim().to_string();
    let view = |username: &str, error: Option<&str>, status| {
        let v = LoginView {
            purpose,
            flow_id: &form.flow,
            browser: &browser,
            username,
            error,
        };
        render_login(&state, &v, status)
    };
    if !pw::well_formed(&username, &form.password) {
        return Ok(view("", Some(GENERIC_FAILURE), StatusCode::UNAUTHORIZED));
    }
    let deps = pw::Deps {
        store: &*state.store,
        hasher: &state.hasher,
        limiter: &state.limiter,
        lockout: &state.lockout,
        clock: &*state.clock,
    };
    let (checked, user) = pw::check(&deps, ip, &username, form.password).await?;
    let who = pw::who(user.as_ref()).to_string();
    let client = client_of(purpose);
    let user = match (checked, user) {
        (Checked::Verified(reservation), Some(user)) => (reservation, user),
        (Checked::Verified(_) | Checked::Wrong, _) => {
            tracing::warn!(target: "audit", event = "sign_in", method = "password", user = %who, ip = %ip, client = %client, outcome = "failure");
            return Ok(view(
                &username,
                Some(GENERIC_FAILURE),
                StatusCode::UNAUTHORIZED,
            ));
        }
        (Checked::Limited(limited), _) => {
            tracing::warn!(target: "audit", event = "sign_in", method = "password", user = %who, ip = %ip, outcome = "rate_limited");
            let mut resp = view(
                &username,
                Some(&pw::limited_text(&limited)),
                StatusCode::TOO_MANY_REQUESTS,
            );
            set_retry_after(&mut resp, limited.retry_after);
            return Ok(resp);
        }
        (Checked::Busy, _) => {
            tracing::warn!(ip = %ip, "sign-in refused: the password-check queue is full (503)");
            let mut resp = view(
                &username,
                Some("doorman is busy checking other sign-ins. Try again in a moment."),
                StatusCode::SERVICE_UNAVAILABLE,
            );
            set_retry_after(&mut resp, 2);
            return Ok(resp);
        }
    };
    let (reservation, user) = user;
    let amr = vec!["pwd".to_string()];
    let now = state.now();
    match after_password(&state, purpose, &user, &amr).await? {
        Next::Finish(amr) => {
            tracing::info!(target: "audit", event = "sign_in", method = "password", user = %user.username, ip = %ip, client = %client, outcome = "success");
            reservation.succeeded(now).await?;
            let (set, url) = signed_in(&state, &cookies, &flow, purpose, &user, amr, &meta).await?;
            Ok(redirect_with_cookies(&url, &set))
        }
        next => {
            // A right password is no failure, but it resets nothing either while a second
            // factor is due: a stolen password cannot wipe the count of wrong codes.
            reservation.unused(now).await?;
            tracing::info!(target: "audit", event = "sign_in", method = "password", user = %user.username, ip = %ip, client = %client, outcome = "second_factor_due");
            let step =
                second_factor_step(&state, next, &user, amr, signin::Proof::password(&user))?;
            let moved = FlowState {
                purpose: purpose.clone(),
                step,
            };
            if !signin::advance(&*state.store, &flow, &moved, now).await? {
                return Err(WebError::page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in page has expired",
                    "Go back to the application and start signing in again.",
                ));
            }
            second_factor::render_step(&state, &form.flow, &browser, &moved, None, StatusCode::OK)
                .await
        }
    }
}

/// What follows a proved first factor `amr` for this user and purpose.
pub(crate) async fn after_password(
    state: &AppState,
    purpose: &Purpose,
    user: &User,
    amr: &[String],
) -> Result<Next, WebError> {
    let must_have = policy::must_have_second_factor(
        &state.config.login,
        purpose.client_id().and_then(|id| state.clients.get(id)),
        purpose.asks_second_factor(),
        user,
    );
    // No second factors at all, or a federation: nothing to look up.
    let needs_lookup = state.config.login.require_second_factor
        != crate::config::SecondFactorPolicy::Off
        && policy::is_local(amr);
    let has = needs_lookup && signin::second_factor::has_one(&*state.store, &user.id).await?;
    Ok(policy::after_first_factor(
        amr,
        has,
        must_have,
        state.config.login.require_second_factor,
    ))
}

/// The step a flow moves to for `next` (ask for the code, or enrol).
pub(crate) fn second_factor_step(
    state: &AppState,
    next: Next,
    user: &User,
    amr: Vec<String>,
    proof: signin::Proof,
) -> Result<signin::Step, WebError> {
    Ok(match next {
        Next::Enrol => {
            let (secret, _) = signin::second_factor::pending_secret(&state.secret_box)
                .ok_or_else(|| WebError::Internal("cannot encrypt a TOTP secret".into()))?;
            signin::Step::Enrol {
                user_id: user.id.clone(),
                amr,
                secret,
                proof,
            }
        }
        Next::AskCode | Next::Finish(_) => signin::Step::SecondFactor {
            user_id: user.id.clone(),
            amr,
            proof,
        },
    })
}

/// A 303 to `url` setting `cookies`.
pub(crate) fn redirect_with_cookies(url: &str, cookies: &[String]) -> Response {
    let mut resp = Redirect::to(url).into_response();
    for c in cookies {
        append_cookie(&mut resp, c);
    }
    resp
}

/// A new SSO session for this browser (`signin::start_session`): the cookie value and the
/// session; another user's session it replaces is signed out, its applications told.
pub(crate) async fn new_session(
    state: &AppState,
    cookies: &Cookies,
    user: &User,
    amr: Vec<String>,
    meta: &session::SessionMeta,
) -> Result<(String, Session), WebError> {
    let old = cookies.get(CookieNames::of(&state.config).session);
    let sid_of = |s: &Session| state.provider.sid_for(s);
    let started = signin::start_session(
        &*state.store,
        &state.config,
        old,
        user,
        amr,
        meta,
        &sid_of,
        state.now(),
    )
    .await?;
    if let Some((other, logouts)) = &started.replaced {
        state.backchannel.notify(other, logouts);
    }
    Ok((started.cookie, started.session))
}

/// The user proved who they are with `amr`: a new SSO session, the flow is used up (and no
/// longer counts against its IP), the browser-binding cookie is minted anew, and the answer is
/// the cookies to set and where the browser goes next.
pub(crate) async fn signed_in(
    state: &AppState,
    cookies: &Cookies,
    flow: &Flow,
    purpose: &Purpose,
    user: &User,
    amr: Vec<String>,
    meta: &session::SessionMeta,
) -> Result<(Vec<String>, String), WebError> {
    let now = state.now();
    let (cookie_value, session) = new_session(state, cookies, user, amr, meta).await?;
    signin::close(&*state.store, &flow.id_hash).await?;
    state.limiter.flow_completed(&flow.id_hash, state.now_ms());
    let url = completion_url(state, purpose, &session, user).await?;
    let mut set = vec![
        session::session_cookie(&state.config, &cookie_value),
        Browser::set_cookie(state, &state.csrf.mint_browser()),
    ];
    set.extend(session::start_forward_auth(&*state.store, &state.config, &session, now).await?);
    Ok((set, url))
}

pub(crate) fn client_of(purpose: &Purpose) -> &str {
    match purpose {
        Purpose::Authorize(r) => &r.client_id,
        Purpose::Continue { .. } => "-",
    }
}

/// Loads the pending flow named by a form and checks it belongs to this browser (CSRF).
pub(crate) async fn load_flow(
    state: &AppState,
    cookies: &Cookies,
    transport: Transport,
    flow_id: &str,
    csrf: &str,
) -> Result<(Flow, FlowState, String), WebError> {
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
    let (flow, flow_state) = load_browser_flow(state, &browser, flow_id).await?;
    Ok((flow, flow_state, browser))
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
) -> Result<(Flow, FlowState), WebError> {
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
    let flow_state = FlowState::of(&flow).ok_or_else(expired)?;
    Ok((flow, flow_state))
}

/// Where the browser goes once signed in: the client with a code, or the URL to continue to
/// (a feature's own continuation when it registered one for that URL, see
/// `AppState::continuations`), else doorman's own signed-in page.
pub async fn completion_url(
    state: &AppState,
    purpose: &Purpose,
    session: &Session,
    user: &User,
) -> Result<String, WebError> {
    match purpose {
        Purpose::Authorize(req) => authorize::code_redirect(state, req, session, user).await,
        Purpose::Continue { url } => {
            let Some(url) = url
                .as_deref()
                .filter(|u| crate::web::safe_return(&state.config, u))
            else {
                return Ok(state.url(paths::LOGIN));
            };
            for (prefix, resume) in &state.continuations {
                if url.starts_with(&state.url(prefix)) {
                    if let Some(to) = resume(state, url, user)? {
                        return Ok(to);
                    }
                }
            }
            Ok(url.to_string())
        }
    }
}

fn signed_in_page(state: &AppState, user: &User) -> Response {
    let html = state.templates.render(
        "message.html",
        serde_json::json!({"base": state.issuer(), "title": "You are signed in", "message": format!("Signed in as {}.", user.username)}),
    );
    crate::web::html(StatusCode::OK, html)
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
    SignedIn(live): SignedIn,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    if let Some((session, user)) = live {
        let mut resp = match q
            .rd
            .as_deref()
            .filter(|rd| crate::web::safe_return(&state.config, rd))
        {
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
    begin(&state, &cookies, ip, Purpose::Continue { url: q.rd }).await
}
