//! "Forgot your password?" (only with `[smtp]`): `GET /login/forgot` asks for an email
//! address, `POST /login/forgot` mails a password-reset link to it when it is an enabled
//! account's verified email. The answer is the same page whether or not an account has that
//! address, and whether or not a limit was reached (no oracle). Thin handlers: who gets a
//! mail and the limits are `accounts::forgot`, the mail `mail::messages`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::forgot::{self, Outcome};
use crate::accounts::links;
use crate::error::WebError;
use crate::mail::{messages, Mail};
use crate::state::AppState;
use crate::store::LinkKind;
use crate::web::{Browser, ClientIp, Cookies};

pub mod paths {
    pub const FORGOT: &str = "/login/forgot";
}

pub fn routes() -> Router<AppState> {
    Router::new().route(paths::FORGOT, get(page).post(submit))
}

const CSRF_PURPOSE: &str = "forgot-password";

/// What the page says after a request, whatever happened.
pub const SENT: &str = "If an account has that address, a mail with a link is on its way. The link works once, for 24 hours.";

#[derive(Debug, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

#[derive(Serialize)]
struct FormPage<'a> {
    base: &'a str,
    csrf: &'a str,
    sent: Option<&'a str>,
}

fn no_mail() -> WebError {
    WebError::page(
        StatusCode::NOT_FOUND,
        "Password reset by mail is not set up",
        "Ask the person who runs this site to reset your password.",
    )
}

fn render(state: &AppState, browser: &Browser, sent: Option<&str>) -> Response {
    let csrf = state.csrf.token(CSRF_PURPOSE, &browser.value);
    let html = state.templates.render(
        "forgot.html",
        FormPage {
            base: state.issuer(),
            csrf: &csrf,
            sent,
        },
    );
    let mut resp = crate::web::html(StatusCode::OK, html);
    browser.keep(state, &mut resp);
    resp
}

/// GET /login/forgot.
async fn page(State(state): State<AppState>, browser: Browser) -> Result<Response, WebError> {
    if state.mailer.is_none() {
        return Err(no_mail());
    }
    Ok(render(&state, &browser, None))
}

/// POST /login/forgot: CSRF, the per-IP limit, then the same answer in every case; after it
/// (for an enabled account's verified email, within its limit) a reset link is stored and its
/// mail queued.
async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    Form(form): Form<ForgotForm>,
) -> Result<Response, WebError> {
    let Some(outbox) = state.mailer.as_ref() else {
        return Err(no_mail());
    };
    let browser = Browser::of(&state, &cookies);
    if browser.fresh || !state.csrf.verify(CSRF_PURPOSE, &browser.value, &form.csrf) {
        tracing::warn!(target: "audit", event = "password_reset_requested", ip = %ip, outcome = "csrf_refused");
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "This form could not be verified",
            "The form did not come from this browser's page. Open the page again.",
        ));
    }
    let now = state.now();
    if !state.forgot_limiter.reserve(ip, now) {
        tracing::warn!(target: "audit", event = "password_reset_requested", ip = %ip, outcome = "ip_rate_limited");
        return Ok(render(&state, &browser, Some(SENT)));
    }
    // The lookup, the link and the mail happen after the answer, so its timing says nothing
    // about whether the address has an account (at most `BACKGROUND` at once; beyond that,
    // in line).
    let work = {
        let (state, email, outbox) = (state.clone(), form.email.clone(), outbox.clone());
        async move {
            if let Err(e) = mail_reset_link(&state, &outbox, &email, ip, now).await {
                tracing::error!(error = %e, "forgot password: the store failed");
            }
        }
    };
    match state.forgot_limiter.background() {
        Some(permit) => {
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
        None => work.await,
    }
    Ok(render(&state, &browser, Some(SENT)))
}

/// Stores a reset link for the enabled account whose verified email is `email` (within its
/// limit) and queues its mail; audit lines either way.
async fn mail_reset_link(
    state: &AppState,
    outbox: &crate::mail::Outbox,
    email: &str,
    ip: std::net::IpAddr,
    now: crate::store::Timestamp,
) -> Result<(), crate::store::StoreError> {
    match forgot::request(&*state.store, email, now).await? {
        Outcome::Mail { user, token, link } => {
            let url = links::url(state.issuer(), LinkKind::Reset, &token);
            let text = messages::reset(
                &messages::site(state.issuer()),
                &user.username,
                &url,
                link.expires_at.saturating_sub(link.created_at),
            );
            let to = user.email.clone().unwrap_or_default();
            let queued = outbox.queue(Mail {
                to,
                subject: text.subject,
                body: text.body,
                what: "reset",
            });
            tracing::info!(target: "audit", event = "password_reset_requested", user = %user.username, link = %link.id, ip = %ip, outcome = if queued { "mailed" } else { "mail_dropped" });
        }
        Outcome::NoAccount => {
            tracing::info!(target: "audit", event = "password_reset_requested", ip = %ip, outcome = "no_account");
        }
        Outcome::Limited => {
            tracing::warn!(target: "audit", event = "password_reset_requested", ip = %ip, outcome = "account_rate_limited");
        }
    }
    Ok(())
}
