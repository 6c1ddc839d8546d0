//! Email-confirmation links in the browser: `GET /account/confirm-email/{token}` shows a
//! confirm button for a usable link (opening a link changes nothing: mail scanners open links),
//! its POST marks the email verified if the account's email still is the link's. The token is
//! the credential: no sign-in needed. Thin handlers over `accounts::confirm`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::confirm::{self, ConfirmError};
use crate::error::WebError;
use crate::state::AppState;
use crate::web::{Browser, ClientIp, Cookies};

pub mod paths {
    /// The confirmation page; the whole last segment is the token.
    pub const CONFIRM: &str = "/account/confirm-email/{token}";
}

/// The link kind of this page's form tokens (`web::link_form_token`).
const KIND: &str = "confirm-email";

pub fn routes() -> Router<AppState> {
    Router::new().route(paths::CONFIRM, get(page).post(submit))
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Serialize)]
struct FormPage<'a> {
    base: &'a str,
    action: &'a str,
    csrf: &'a str,
    username: &'a str,
    email: &'a str,
}

#[derive(Serialize)]
struct MessagePage<'a> {
    base: &'a str,
    title: &'a str,
    message: &'a str,
    link: Option<&'a str>,
}

fn message(state: &AppState, status: StatusCode, title: &str, text: &str) -> Response {
    let html = state.templates.render(
        "reset_message.html",
        MessagePage {
            base: state.issuer(),
            title,
            message: text,
            link: None,
        },
    );
    crate::web::html(status, html)
}

fn gone(state: &AppState) -> Response {
    message(
        state,
        StatusCode::GONE,
        "This link can no longer be used",
        "Confirmation links work once, for 24 hours, and only for the address your account has now. Change the address on your account page again for a new link.",
    )
}

/// GET /account/confirm-email/{token}.
async fn page(
    State(state): State<AppState>,
    browser: Browser,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let (link, user) = match confirm::find(&*state.store, &token, state.now()).await {
        Ok(found) => found,
        Err(ConfirmError::Gone) => return Ok(gone(&state)),
        Err(ConfirmError::Store(e)) => return Err(e.into()),
    };
    let action = format!("{}/account/confirm-email/{token}", state.issuer());
    let csrf = crate::web::link_form_token(&state, KIND, &link.token_hash, &browser.value);
    let html = state.templates.render(
        "confirm_email.html",
        FormPage {
            base: state.issuer(),
            action: &action,
            csrf: &csrf,
            username: &user.username,
            email: link.email.as_deref().unwrap_or_default(),
        },
    );
    let mut resp = crate::web::html(StatusCode::OK, html);
    browser.keep(&state, &mut resp);
    Ok(resp)
}

/// POST /account/confirm-email/{token} (CSRF): the link's one use, then the email verified.
async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    Path(token): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, WebError> {
    let now = state.now();
    let link = match confirm::find(&*state.store, &token, now).await {
        Ok((link, _)) => link,
        Err(ConfirmError::Gone) => return Ok(gone(&state)),
        Err(ConfirmError::Store(e)) => return Err(e.into()),
    };
    if crate::web::link_form_browser(&state, &cookies, KIND, &link.token_hash, &form.csrf).is_none()
    {
        tracing::warn!(target: "audit", event = "email_confirmed", link = %link.id, ip = %ip, outcome = "csrf_refused");
        return Err(crate::web::forged_form(
            "confirmation page",
            "Open the link again.",
        ));
    }
    match confirm::confirm(&*state.store, &token, now).await {
        Ok(user) => {
            tracing::info!(target: "audit", event = "email_confirmed", link = %link.id, user = %user.username, ip = %ip, outcome = "success");
            let text = format!(
                "The address {} of the account {} is confirmed.",
                user.email.as_deref().unwrap_or_default(),
                user.username
            );
            Ok(message(
                &state,
                StatusCode::OK,
                "Your email address is confirmed",
                &text,
            ))
        }
        Err(ConfirmError::Gone) => Ok(gone(&state)),
        Err(ConfirmError::Store(e)) => Err(e.into()),
    }
}

/// With `[smtp]`: stores a confirmation link for `user`'s new address `email` and queues its
/// mail (the /account profile form calls this after a changed email was saved).
pub async fn mail_link(
    state: &AppState,
    user: &crate::store::User,
    email: &str,
) -> Result<(), WebError> {
    let Some(outbox) = state.mailer.as_ref() else {
        return Ok(());
    };
    let now = state.now();
    let Some((token, link)) = confirm::create(&*state.store, user, email, now).await? else {
        tracing::warn!(target: "audit", event = "email_confirmation_sent", user = %user.username, outcome = "account_rate_limited");
        return Ok(());
    };
    let url = crate::accounts::links::url(state.issuer(), crate::store::LinkKind::Confirm, &token);
    let text = crate::mail::messages::confirm_email(
        &crate::mail::messages::site(state.issuer()),
        &user.username,
        email,
        &url,
        confirm::LIFETIME,
    );
    let queued = outbox.queue(crate::mail::Mail {
        to: email.to_string(),
        subject: text.subject,
        body: text.body,
        what: "confirm_email",
    });
    tracing::info!(target: "audit", event = "email_confirmation_sent", link = %link.id, user = %user.username, outcome = if queued { "mailed" } else { "mail_dropped" });
    Ok(())
}
