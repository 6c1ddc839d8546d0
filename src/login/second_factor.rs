//! The second-factor pages: the code page of a sign-in (`POST /login/code`), enrolling an
//! authenticator app (`POST /login/enrol`, inside a sign-in or from
//! `GET /account/second-factor`), the recovery codes shown once (`POST /login/continue` goes on),
//! and new recovery codes (`POST /account/second-factor/recovery-codes`). Each form belongs to a
//! flow (same CSRF rules as the password form), except the last, which is bound to the session.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use super::{load_flow, redirect_with_cookies, set_retry_after, LoginView};
use crate::accounts::lockout::Reservation;
use crate::error::WebError;
use crate::session;
use crate::signin::limits::IpKey;
use crate::signin::password::wait_text;
use crate::signin::second_factor::{self as factor, CodeCheck};
use crate::signin::{self, FlowState, Proof, Purpose, SecondFactorKind, Step};
use crate::state::AppState;
use crate::store::{Flow, User};
use crate::web::{append_cookie, Browser, ClientInfo, ClientIp, Cookies, SignedIn, Transport};

pub mod paths {
    pub const CODE: &str = "/login/code";
    pub const ENROL: &str = "/login/enrol";
    pub const CONTINUE: &str = "/login/continue";
    pub const ACCOUNT: &str = "/account/second-factor";
    pub const NEW_CODES: &str = "/account/second-factor/recovery-codes";
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::CODE, post(code))
        .route(paths::ENROL, post(enrol))
        .route(paths::CONTINUE, post(continue_on))
        .route(paths::ACCOUNT, get(account_page))
        .route(paths::NEW_CODES, post(new_codes))
}

const WRONG_CODE: &str = "That code is not right.";
/// The area of the status page's session-bound form token (`web::session_form_token`); the
/// account page's "new recovery codes" form carries one too.
pub(crate) const STATUS_AREA: &str = "second-factor";

#[derive(Debug, Deserialize)]
struct CodeForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// A flow's page for its current step, in this response.
pub(crate) async fn render_step(
    state: &AppState,
    flow_id: &str,
    browser: &str,
    flow_state: &FlowState,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let user = match flow_state.step.user_id() {
        Some(id) => Some(state.store.get_user(id).await?.ok_or_else(expired)?),
        None => None,
    };
    let csrf = state.csrf.token(&super::flow_purpose_key(flow_id), browser);
    let client_name = flow_state
        .purpose
        .client_id()
        .and_then(|id| state.clients.get(id))
        .map(|c| c.name.clone().unwrap_or_else(|| c.id.clone()));
    let base = state.issuer();
    let passkeys_on = crate::signin::passkey::relying_party(&state.config).is_some();
    let html = match (&flow_state.step, &user) {
        (Step::SecondFactor { .. }, Some(user)) => {
            let passkeys = passkeys_on && !state.store.list_passkeys(&user.id).await?.is_empty();
            state.templates.render(
                "second_factor_code.html",
                serde_json::json!({
                    "base": base, "flow": flow_id, "csrf": csrf, "username": user.username,
                    "client_name": client_name, "error": error, "passkeys": passkeys,
                    "totp": factor::has_totp(&*state.store, &user.id).await?,
                }),
            )
        }
        (Step::Enrol { secret, .. }, Some(user)) => {
            let secret = factor::open_pending(&state.secret_box, secret).ok_or_else(expired)?;
            // Optional here (the invite page): "Skip" goes on at once.
            let skip = match &flow_state.purpose {
                Purpose::Continue { url: Some(u) }
                    if !is_account_page(state, &flow_state.purpose)
                        && !crate::signin::policy::must_have_second_factor(
                            &state.config.login,
                            None,
                            false,
                            user,
                        ) =>
                {
                    Some(u.clone())
                }
                _ => None,
            };
            let view = factor::enrol_view(&issuer_label(state), &user.username, &secret);
            state.templates.render(
                "second_factor_enrol.html",
                serde_json::json!({
                    "base": base, "flow": flow_id, "csrf": csrf, "username": user.username,
                    "client_name": client_name, "error": error, "qr": view.qr_svg,
                    "secret": view.secret, "uri": view.uri,
                    "required": !is_account_page(state, &flow_state.purpose)
                        && skip.is_none(),
                    "skip_url": skip,
                    "passkey": passkeys_on,
                }),
            )
        }
        (Step::Done { .. }, Some(_)) => state.templates.render(
            "recovery_codes.html",
            RecoveryPage {
                base,
                codes: Vec::new(),
                download: String::new(),
                flow: Some(flow_id),
                csrf: &csrf,
                continue_url: "",
                enrolled: true,
                passkey: false,
            },
        ),
        _ => {
            let view = LoginView {
                purpose: &flow_state.purpose,
                flow_id,
                browser,
                username: flow_state.purpose.login_hint().unwrap_or(""),
                error,
            };
            return Ok(super::render_login(state, &view, status));
        }
    };
    Ok(crate::web::html(status, html))
}

/// The flow began at `/account/second-factor` (enrolment by choice, not because a sign-in
/// requires it).
fn is_account_page(state: &AppState, purpose: &Purpose) -> bool {
    matches!(purpose, Purpose::Continue { url: Some(u) } if *u == state.url(paths::ACCOUNT))
}

/// The name authenticator apps show for doorman: the issuer's host.
fn issuer_label(state: &AppState) -> String {
    state
        .config
        .issuer
        .host_str()
        .unwrap_or("doorman")
        .to_string()
}

pub(crate) fn expired() -> WebError {
    WebError::page(
        StatusCode::BAD_REQUEST,
        "This sign-in page has expired",
        "Go back to the application and start signing in again.",
    )
}

#[derive(Serialize)]
struct RecoveryPage<'a> {
    base: &'a str,
    codes: Vec<String>,
    download: String,
    /// Inside a sign-in: the Continue form's flow.
    flow: Option<&'a str>,
    csrf: &'a str,
    /// Outside a sign-in: where Continue goes.
    continue_url: &'a str,
    enrolled: bool,
    /// What was enrolled was a passkey (not an authenticator app).
    passkey: bool,
}

/// The flow's user, when the flow is at a step that has one, the account may still sign in,
/// and what proved the first factor still holds (the password is unchanged, or the session
/// that was stepped up is still live).
pub(crate) async fn flow_user(state: &AppState, step: &Step) -> Result<User, WebError> {
    let id = step.user_id().ok_or_else(expired)?;
    let user = state.store.get_user(id).await?.ok_or_else(expired)?;
    if user.disabled {
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "This account is disabled",
            "Ask the operator.",
        ));
    }
    let proof = match step {
        Step::SecondFactor { proof, .. } | Step::Enrol { proof, .. } => Some(proof),
        Step::FirstFactor | Step::Done { .. } | Step::PlexInvite { .. } => None,
    };
    if let Some(proof) = proof {
        if !proof.holds(&*state.store, &user, state.now()).await? {
            tracing::warn!(target: "audit", event = "second_factor", user = %user.username, outcome = "stale_flow", "a pending second-factor step outlived its password or session");
            return Err(expired());
        }
    }
    Ok(user)
}

/// An enrolment step may add a factor: the account has none, or the flow began from a
/// session that used one (`/account/second-factor`, `offer_enrolment`). A step left waiting
/// after a password while the account gained a factor elsewhere is refused: it must not
/// add a second way in past the new factor.
pub(crate) async fn may_enrol(
    state: &AppState,
    user: &User,
    amr: &[String],
) -> Result<(), WebError> {
    if crate::signin::policy::has_second_factor(amr)
        || !factor::has_one(&*state.store, &user.id).await?
    {
        return Ok(());
    }
    Err(WebError::page(
        StatusCode::CONFLICT,
        "A second factor is already set up",
        "This account got a second factor meanwhile. Start signing in again and use it.",
    ))
}

/// A step form's flow, loaded and checked (CSRF token, this browser).
struct Posted {
    flow: Flow,
    state: FlowState,
    browser: String,
    /// The flow id the form carried.
    id: String,
}

impl Posted {
    async fn load(
        state: &AppState,
        cookies: &Cookies,
        transport: Transport,
        form: &CodeForm,
    ) -> Result<Posted, WebError> {
        let (flow, flow_state, browser) =
            load_flow(state, cookies, transport, &form.flow, &form.csrf).await?;
        Ok(Posted {
            flow,
            state: flow_state,
            browser,
            id: form.flow.clone(),
        })
    }

    /// The page of the flow's current step.
    async fn page(
        &self,
        state: &AppState,
        error: Option<&str>,
        status: StatusCode,
    ) -> Result<Response, WebError> {
        render_step(state, &self.id, &self.browser, &self.state, error, status).await
    }

    /// A code attempt for `user`, counted before the check like a password (wrong codes lock
    /// the account too, and are kept on the account's code counter, which only a right code
    /// resets); or the lockout answer: the step's page with 429 and Retry-After.
    async fn reserve(
        &self,
        state: &AppState,
        user: &User,
        ip: std::net::IpAddr,
        action: &str,
    ) -> Result<Result<Reservation, Response>, WebError> {
        let now = state.now();
        match state
            .lockout
            .reserve_code(&user.id, &IpKey::of(ip).to_string(), now)
            .await?
        {
            Ok(r) => Ok(Ok(r)),
            Err(retry_after) => {
                tracing::warn!(target: "audit", event = "second_factor", action, user = %user.username, ip = %ip, outcome = "rate_limited");
                let msg = format!("Too many failed attempts. {}", wait_text(retry_after));
                let mut resp = self
                    .page(state, Some(&msg), StatusCode::TOO_MANY_REQUESTS)
                    .await?;
                set_retry_after(&mut resp, retry_after);
                Ok(Err(resp))
            }
        }
    }
}

/// POST /login/code: the TOTP or recovery code after the password (or for a step-up).
async fn code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ClientInfo(meta): ClientInfo,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let posted = Posted::load(&state, &cookies, transport, &form).await?;
    let Step::SecondFactor { amr, .. } = &posted.state.step else {
        return posted.page(&state, None, StatusCode::BAD_REQUEST).await;
    };
    let user = flow_user(&state, &posted.state.step).await?;
    let now = state.now();
    let reservation = match posted.reserve(&state, &user, ip, "code").await? {
        Ok(r) => r,
        Err(locked) => return Ok(locked),
    };
    let (flow, flow_state) = (&posted.flow, &posted.state);
    let client = super::client_of(&flow_state.purpose).to_string();
    match factor::check_code(&*state.store, &state.secret_box, &user.id, &form.code, now).await? {
        CodeCheck::Accepted(kind) => {
            reservation.succeeded(now).await?;
            if kind == SecondFactorKind::RecoveryCode {
                let left = state.store.recovery_codes_left(&user.id).await?;
                tracing::warn!(target: "audit", event = "second_factor", action = "recovery_code_used", user = %user.username, ip = %ip, client = %client, left);
            }
            tracing::info!(target: "audit", event = "sign_in", method = if kind == SecondFactorKind::Totp { "totp" } else { "recovery_code" }, user = %user.username, ip = %ip, client = %client, outcome = "success");
            let amr = signin::with_second_factor(amr, kind);
            let (set, url) = super::signed_in(
                &state,
                &cookies,
                flow,
                &flow_state.purpose,
                &user,
                amr,
                &meta,
            )
            .await?;
            Ok(redirect_with_cookies(&url, &set))
        }
        CodeCheck::Wrong => {
            // The reservation stays counted as a failure.
            drop(reservation);
            tracing::warn!(target: "audit", event = "second_factor", action = "code", user = %user.username, ip = %ip, client = %client, outcome = "failure");
            posted
                .page(&state, Some(WRONG_CODE), StatusCode::UNAUTHORIZED)
                .await
        }
    }
}

/// POST /login/enrol: the first code from a newly added authenticator app turns it on; the
/// browser is signed in from here, and the recovery codes are shown once.
async fn enrol(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ClientInfo(meta): ClientInfo,
    transport: Transport,
    cookies: Cookies,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let posted = Posted::load(&state, &cookies, transport, &form).await?;
    let Step::Enrol { amr, secret, .. } = &posted.state.step else {
        return posted.page(&state, None, StatusCode::BAD_REQUEST).await;
    };
    let user = flow_user(&state, &posted.state.step).await?;
    let secret = factor::open_pending(&state.secret_box, secret).ok_or_else(expired)?;
    may_enrol(&state, &user, amr).await?;
    if factor::has_totp(&*state.store, &user.id).await? {
        // Set up meanwhile (another tab, another flow): this one must not replace it.
        return Err(WebError::page(
            StatusCode::CONFLICT,
            "An authenticator app is already set up",
            "This account already has a second factor. Sign in with its code.",
        ));
    }
    let now = state.now();
    let reservation = match posted.reserve(&state, &user, ip, "enrol").await? {
        Ok(r) => r,
        Err(locked) => return Ok(locked),
    };
    let Some(codes) = factor::enrol(
        &*state.store,
        &state.secret_box,
        &user.id,
        &secret,
        &form.code,
        now,
    )
    .await?
    else {
        drop(reservation);
        tracing::warn!(target: "audit", event = "second_factor", action = "enrol", user = %user.username, ip = %ip, outcome = "failure");
        return posted
            .page(&state, Some(WRONG_CODE), StatusCode::UNAUTHORIZED)
            .await;
    };
    reservation.succeeded(now).await?;
    tracing::info!(target: "audit", event = "second_factor", action = "enrolled", method = "totp", user = %user.username, ip = %ip, outcome = "success");
    let amr = signin::with_second_factor(amr, SecondFactorKind::Totp);
    enrolled(
        &state,
        &cookies,
        &meta,
        EnrolledFlow {
            flow: &posted.flow,
            purpose: &posted.state.purpose,
            id: &form.flow,
            browser: &posted.browser,
            passkey: false,
        },
        &user,
        amr,
        Some(codes),
    )
    .await
}

/// The flow a second factor was just enrolled in.
pub(crate) struct EnrolledFlow<'a> {
    pub flow: &'a Flow,
    pub purpose: &'a Purpose,
    /// The flow id the form carried.
    pub id: &'a str,
    pub browser: &'a str,
    /// A passkey was enrolled (else an authenticator app).
    pub passkey: bool,
}

/// A second factor was enrolled in a sign-in flow (an authenticator app, or a passkey): every
/// other session and grant of the user ends (they were signed in without it), and this
/// browser is signed in with `amr`. With `codes` (the account's first factor), the recovery
/// codes are shown once and the flow waits for "Continue" (the relying party's code is issued
/// then, so reading them cannot make it expire); without, the sign-in completes at once.
pub(crate) async fn enrolled(
    state: &AppState,
    cookies: &Cookies,
    meta: &session::SessionMeta,
    f: EnrolledFlow<'_>,
    user: &User,
    amr: Vec<String>,
    codes: Option<Vec<String>>,
) -> Result<Response, WebError> {
    let now = state.now();
    let ended = crate::accounts::users::end_sign_ins(&*state.store, &user.id, now)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    state.backchannel.notify(&user.id, &ended.logouts);
    let Some(codes) = codes else {
        let (set, url) =
            super::signed_in(state, cookies, f.flow, f.purpose, user, amr, meta).await?;
        return Ok(redirect_with_cookies(&url, &set));
    };
    let (cookie_value, session) = super::new_session(state, cookies, user, amr, meta).await?;
    let done = FlowState {
        purpose: f.purpose.clone(),
        step: Step::Done {
            user_id: user.id.clone(),
        },
    };
    if !signin::advance(&*state.store, f.flow, &done, now).await? {
        return Err(expired());
    }
    let csrf = state.csrf.token(&super::flow_purpose_key(f.id), f.browser);
    let html = state.templates.render(
        "recovery_codes.html",
        RecoveryPage {
            base: state.issuer(),
            download: factor::download_href(&codes),
            codes,
            flow: Some(f.id),
            csrf: &csrf,
            continue_url: "",
            enrolled: true,
            passkey: f.passkey,
        },
    );
    let mut resp = crate::web::html(StatusCode::OK, html);
    append_cookie(
        &mut resp,
        &session::session_cookie(&state.config, &cookie_value),
    );
    if let Some(c) =
        session::start_forward_auth(&*state.store, &state.config, &session, now).await?
    {
        append_cookie(&mut resp, &c);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct FlowForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    csrf: String,
}

/// POST /login/continue: after the recovery codes, on to wherever the flow was going.
async fn continue_on(
    State(state): State<AppState>,
    transport: Transport,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<FlowForm>,
) -> Result<Response, WebError> {
    let (flow, flow_state, _) =
        load_flow(&state, &cookies, transport, &form.flow, &form.csrf).await?;
    let Step::Done { user_id } = &flow_state.step else {
        return Err(expired());
    };
    let Some((session, user)) = live.filter(|(_, u)| &u.id == user_id) else {
        return Err(expired());
    };
    finish_done(&state, &flow, &flow_state.purpose, &session, &user).await
}

async fn finish_done(
    state: &AppState,
    flow: &Flow,
    purpose: &Purpose,
    session: &crate::store::Session,
    user: &User,
) -> Result<Response, WebError> {
    signin::close(&*state.store, &flow.id_hash).await?;
    state.limiter.flow_completed(&flow.id_hash, state.now_ms());
    let url = super::completion_url(state, purpose, session, user).await?;
    let browser = Browser::set_cookie(state, &state.csrf.mint_browser());
    Ok(redirect_with_cookies(&url, &[browser]))
}

/// GET /account/second-factor: sign in first; then the status of the user's second factor, or
/// the enrolment page when they have none.
async fn account_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
) -> Result<Response, WebError> {
    let here = state.url(paths::ACCOUNT);
    let Some((session, user)) = live else {
        return super::begin(&state, &cookies, ip, Purpose::Continue { url: Some(here) }).await;
    };
    if state.config.login.require_second_factor == crate::config::SecondFactorPolicy::Off {
        return Err(WebError::page(
            StatusCode::NOT_FOUND,
            "Second factors are turned off",
            "The operator has turned second factors off on this server.",
        ));
    }
    let has_one = factor::has_one(&*state.store, &user.id).await?;
    if user.password_hash.is_none() && !has_one {
        return Err(WebError::page(
            StatusCode::BAD_REQUEST,
            "No doorman password on this account",
            "This account signs in through another service (such as Plex), which has its own second factor. A code from an authenticator app is for doorman passwords.",
        ));
    }
    if has_one && !crate::signin::policy::has_second_factor(&session.amr) {
        // A session without the factor (from before it was set up, or a federation's) sees
        // nothing of it and changes nothing: the code first.
        let flow_state = FlowState {
            purpose: Purpose::Continue { url: Some(here) },
            step: Step::SecondFactor {
                user_id: user.id.clone(),
                amr: session.amr.clone(),
                proof: Proof::session(&session),
            },
        };
        return super::begin_at(&state, &cookies, ip, flow_state).await;
    }
    if !has_one && !recent_password(&state, &session) {
        // Setting up an app needs a recent password sign-in, not only a session cookie.
        return super::begin(&state, &cookies, ip, Purpose::Continue { url: Some(here) }).await;
    }
    if has_one {
        let browser = Browser::of(&state, &cookies);
        let left = state.store.recovery_codes_left(&user.id).await?;
        let html = state.templates.render(
            "second_factor_status.html",
            serde_json::json!({
                "base": state.issuer(),
                "username": user.username,
                "left": left,
                "csrf": crate::web::session_form_token(&state, STATUS_AREA, &session, &browser.value),
            }),
        );
        let mut resp = crate::web::html(StatusCode::OK, html);
        browser.keep(&state, &mut resp);
        return Ok(resp);
    }
    offer_enrolment(&state, &cookies, ip, &user, &session, &here).await
}

/// The session began with a password at most `[accounts] reauth_after` ago.
fn recent_password(state: &AppState, session: &crate::store::Session) -> bool {
    let reauth = i64::try_from(state.config.accounts.reauth_after.as_secs()).unwrap_or(i64::MAX);
    crate::signin::policy::is_doorman_sign_in(&session.amr)
        && state.now().saturating_sub(session.auth_time) <= reauth
}

/// The enrolment page for a user who just signed in with a password (`session`): set up an
/// authenticator app, then continue to `continue_url` (a Skip link goes there at once when
/// no second factor is required). For the invite page and /account/second-factor.
pub async fn offer_enrolment(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    user: &User,
    session: &crate::store::Session,
    continue_url: &str,
) -> Result<Response, WebError> {
    let (sealed, _) = factor::pending_secret(&state.secret_box)
        .ok_or_else(|| WebError::Internal("cannot encrypt a TOTP secret".into()))?;
    let flow_state = FlowState {
        purpose: Purpose::Continue {
            url: Some(continue_url.to_string()),
        },
        step: Step::Enrol {
            user_id: user.id.clone(),
            amr: session.amr.clone(),
            secret: sealed,
            proof: Proof::session(session),
        },
    };
    super::begin_at(state, cookies, ip, flow_state).await
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// POST /account/second-factor/recovery-codes: a new set; the old one stops working.
async fn new_codes(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    SignedIn(live): SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    let forged = || {
        WebError::page(
            StatusCode::FORBIDDEN,
            "This form could not be verified",
            "The form did not come from doorman's page in this browser. Open the page again.",
        )
    };
    let Some((session, user)) = live else {
        return Err(forged());
    };
    if !crate::signin::policy::has_second_factor(&session.amr) {
        // Only a session that used the factor makes new codes (see `account_page`).
        return Ok(axum::response::Redirect::to(&state.url(paths::ACCOUNT)).into_response());
    }
    if !recent_password(&state, &session) {
        // They void the old set: a recent sign-in first (then back to the status page).
        let here = state.url(paths::ACCOUNT);
        return super::begin(&state, &cookies, ip, Purpose::Continue { url: Some(here) }).await;
    }
    if !crate::web::session_form_ok(&state, STATUS_AREA, &session, &cookies, &form.csrf) {
        return Err(forged());
    }
    if !factor::has_one(&*state.store, &user.id).await? {
        return Err(WebError::page(
            StatusCode::BAD_REQUEST,
            "No second factor yet",
            "Set up an authenticator app first: recovery codes come with it.",
        ));
    }
    let codes =
        factor::new_recovery_codes(&*state.store, &state.secret_box, &user.id, state.now()).await?;
    tracing::info!(target: "audit", event = "second_factor", action = "recovery_codes_replaced", user = %user.username, ip = %ip);
    let here = state.url(paths::ACCOUNT);
    Ok(codes_page(&state, codes, &here, false))
}

/// New recovery codes, shown once, outside a sign-in: Continue goes to `continue_url`.
/// `passkey_added`: they come with a passkey just added (the page says it is set up).
pub(crate) fn codes_page(
    state: &AppState,
    codes: Vec<String>,
    continue_url: &str,
    passkey_added: bool,
) -> Response {
    let html = state.templates.render(
        "recovery_codes.html",
        RecoveryPage {
            base: state.issuer(),
            download: factor::download_href(&codes),
            codes,
            flow: None,
            csrf: "",
            continue_url,
            enrolled: passkey_added,
            passkey: passkey_added,
        },
    );
    crate::web::html(StatusCode::OK, html)
}
