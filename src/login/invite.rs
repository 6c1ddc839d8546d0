//! Invite links in the browser: `GET /invite/{token}` shows the sign-up form of a usable
//! invite (or a page saying why it cannot be used), `POST /invite/{token}` makes the account
//! and signs the browser in. Thin handlers: the link rules are `accounts::links`, the username
//! rules `accounts::users`, the password rules `accounts::password_policy`.
//!
//! With Plex sign-in on, `POST /invite/{token}/plex` takes the invitee to Plex instead: the
//! account is made when the PIN is approved (`login::plex`, `PlexService::join_by_invite`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::accounts::links::{self, LinkState, RedeemError};
use crate::accounts::password_policy;
use crate::accounts::users::{self, AccountError};
use crate::error::WebError;
use crate::secrets::to_hex;
use crate::session::{self, CookieNames};
use crate::state::AppState;
use crate::store::{Link, LinkKind};
use crate::web::{Browser, ClientInfo, ClientIp, Cookies};

pub mod paths {
    /// The invite page; the whole last segment is the token.
    pub const INVITE: &str = "/invite/{token}";
    /// "Use my Plex account": the invitee links Plex instead of setting a password.
    pub const INVITE_PLEX: &str = "/invite/{token}/plex";
    /// Where an invited account lands without an `rd`.
    pub const ACCOUNT: &str = "/account";
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::INVITE, get(page).post(submit))
        .route(paths::INVITE_PLEX, axum::routing::post(with_plex))
}

#[derive(Debug, Deserialize)]
pub struct InviteQuery {
    rd: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

#[derive(Serialize)]
struct FormPage<'a> {
    base: &'a str,
    action: &'a str,
    csrf: &'a str,
    username: &'a str,
    email: Option<&'a str>,
    min_length: usize,
    error: Option<&'a str>,
    plex_action: Option<String>,
}

#[derive(Serialize)]
struct GonePage<'a> {
    base: &'a str,
    title: &'a str,
    message: &'a str,
}

/// The page for a link that cannot be used, and why.
fn gone(state: &AppState, why: Option<LinkState>) -> Response {
    let (status, title, message) = match why {
        Some(LinkState::Expired) => (
            StatusCode::GONE,
            "This invite has expired",
            "The link was only valid for a limited time.",
        ),
        Some(LinkState::UsedUp) => (
            StatusCode::GONE,
            "This invite has already been used",
            "Every account this link could make has been made.",
        ),
        Some(LinkState::Revoked) => (
            StatusCode::GONE,
            "This invite was withdrawn",
            "The link no longer works.",
        ),
        Some(LinkState::Usable) | None => (
            StatusCode::NOT_FOUND,
            "This invite link is not valid",
            "The link is unknown here: it may be incomplete (copy the whole link) or very old.",
        ),
    };
    let html = state.templates.render(
        "invite_gone.html",
        GonePage {
            base: state.issuer(),
            title,
            message,
        },
    );
    crate::web::html(status, html)
}

/// The invite behind `token`, if it can be used now; else the page that says why not.
async fn usable(state: &AppState, token: &str) -> Result<Result<Link, Response>, WebError> {
    if !links::well_formed_token(token) {
        return Ok(Err(gone(state, None)));
    }
    let now = state.now();
    let found = state
        .store
        .find_link(&links::token_hash(token), now)
        .await?
        .filter(|l| l.kind == LinkKind::Invite);
    Ok(match found {
        Some(link) if links::state(&link, now) == LinkState::Usable => Ok(link),
        Some(link) => Err(gone(state, Some(links::state(&link, now)))),
        None => Err(gone(state, None)),
    })
}

/// The `rd` to carry along, only when it is a return address doorman would honour.
fn safe_rd<'a>(state: &AppState, rd: Option<&'a str>) -> Option<&'a str> {
    rd.filter(|rd| crate::web::safe_return(&state.config, rd))
}

struct View<'a> {
    token: &'a str,
    link: &'a Link,
    browser: &'a str,
    rd: Option<&'a str>,
    username: &'a str,
    error: Option<&'a str>,
}

/// Whether invitees may link a Plex account instead of setting a password.
fn plex_offered(state: &AppState) -> bool {
    state.plex.is_some()
        && state
            .config
            .login
            .methods
            .contains(&crate::config::LoginMethod::Plex)
}

fn render_form(state: &AppState, view: &View<'_>, status: StatusCode) -> Response {
    let rd_query = safe_rd(state, view.rd)
        .map(|rd| {
            let mut q = String::from("?rd=");
            q.extend(url::form_urlencoded::byte_serialize(rd.as_bytes()));
            q
        })
        .unwrap_or_default();
    let action = format!("{}/invite/{}{rd_query}", state.issuer(), view.token);
    let plex_action = plex_offered(state)
        .then(|| format!("{}/invite/{}/plex{rd_query}", state.issuer(), view.token));
    let csrf = state.csrf.token(
        &crate::web::link_form_purpose("invite", &view.link.token_hash),
        view.browser,
    );
    let html = state.templates.render(
        "invite.html",
        FormPage {
            base: state.issuer(),
            action: &action,
            csrf: &csrf,
            username: view.username,
            email: view.link.email.as_deref(),
            min_length: state.config.accounts.min_password_length,
            error: view.error,
            plex_action,
        },
    );
    crate::web::html(status, html)
}

/// GET /invite/{token}.
async fn page(
    State(state): State<AppState>,
    browser: Browser,
    Path(token): Path<String>,
    Query(q): Query<InviteQuery>,
) -> Result<Response, WebError> {
    let link = match usable(&state, &token).await? {
        Ok(link) => link,
        Err(page) => return Ok(page),
    };
    let view = View {
        token: &token,
        link: &link,
        browser: &browser.value,
        rd: q.rd.as_deref(),
        username: "",
        error: None,
    };
    let mut resp = render_form(&state, &view, StatusCode::OK);
    browser.keep(&state, &mut resp);
    Ok(resp)
}

/// POST /invite/{token}: username rules, the name not taken, the password policy, the
/// confirmation; then one use of the invite is taken atomically, the account is made (or the
/// use given back), and the browser is signed in.
async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ClientInfo(meta): ClientInfo,
    cookies: Cookies,
    Path(token): Path<String>,
    Query(q): Query<InviteQuery>,
    Form(form): Form<InviteForm>,
) -> Result<Response, WebError> {
    let link = match usable(&state, &token).await? {
        Ok(link) => link,
        Err(page) => return Ok(page),
    };
    let Some(browser) =
        crate::web::link_form_browser(&state, &cookies, "invite", &link.token_hash, &form.csrf)
    else {
        tracing::warn!(target: "audit", event = "invite_redeemed", invite = %link.id, ip = %ip, outcome = "csrf_refused");
        return Err(crate::web::forged_form(
            "invite page",
            "Open the invite link again.",
        ));
    };
    let username = form.username.trim();
    let again_with = |error: &str, status: StatusCode| {
        let view = View {
            token: &token,
            link: &link,
            browser: &browser.value,
            rd: q.rd.as_deref(),
            username,
            error: Some(error),
        };
        Ok(render_form(&state, &view, status))
    };
    let again = |error: &str| again_with(error, StatusCode::BAD_REQUEST);
    if let Err(e) = users::validate_chosen_username(username) {
        return again(&e.to_string());
    }
    // "That name is taken" tells which usernames exist: each such answer counts against the
    // IP like a wrong password (reserved first, so a parallel burst cannot overrun it).
    let attempt = match state.limiter.attempt(ip, &*state.clock).await {
        Ok(a) => a,
        Err(limited) => {
            let mut resp = again_with(
                &crate::signin::password::limited_text(&limited),
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            crate::login::set_retry_after(&mut resp, limited.retry_after);
            return Ok(resp);
        }
    };
    if state.store.find_user_by_username(username).await?.is_some() {
        attempt.failed(state.clock.now_ms());
        return again(&taken(username));
    }
    if state.store.username_retired(username).await? {
        attempt.failed(state.clock.now_ms());
        return again(&AccountError::UsernameRetired(username.to_string()).to_string());
    }
    if let Err(e) = password_policy::check(
        &form.password,
        username,
        link.email.as_deref(),
        state.config.accounts.min_password_length,
    ) {
        return again(&e.to_string());
    }
    if form.password != form.password_confirm {
        return again("The two passwords differ. Type the same password twice.");
    }
    let hash = state.hasher.hash(form.password).await?;
    let now = state.now();
    let user = match links::redeem_invite(&*state.store, &token, username, hash, now).await {
        Ok((user, _)) => user,
        Err(RedeemError::Gone) => {
            // Another browser took the last use meanwhile (or it was revoked).
            return Ok(match usable(&state, &token).await? {
                Err(page) => page,
                Ok(_) => gone(&state, Some(LinkState::UsedUp)),
            });
        }
        Err(RedeemError::Account(AccountError::UsernameTaken(_))) => {
            attempt.failed(state.clock.now_ms());
            return again(&taken(username));
        }
        Err(RedeemError::Account(AccountError::EmailTaken(_))) => {
            return Err(WebError::page(
                StatusCode::CONFLICT,
                "This invite's email address is already in use",
                "Another account has the email address this invite is for. Ask the person who invited you.",
            ));
        }
        Err(RedeemError::Account(AccountError::Store(e)) | RedeemError::Store(e)) => {
            return Err(e.into());
        }
        Err(RedeemError::Account(other)) => return again(&other.to_string()),
    };
    attempt.succeeded(state.clock.now_ms());
    tracing::info!(target: "audit", event = "invite_redeemed", invite = %link.id, user = %user.username, groups = %user.groups.join(","), ip = %ip, outcome = "success");

    let names = CookieNames::of(&state.config);
    let continue_url = safe_rd(&state, q.rd.as_deref())
        .map(str::to_string)
        .unwrap_or_else(|| state.url(paths::ACCOUNT));
    if crate::signin::policy::must_have_second_factor(&state.config.login, None, false, &user) {
        // A second factor is required of this account: no session before it is set up (the
        // enrolment step signs the browser in), as in any sign-in.
        let (secret, _) = crate::signin::second_factor::pending_secret(&state.secret_box)
            .ok_or_else(|| WebError::Internal("cannot encrypt a TOTP secret".into()))?;
        let flow_state = crate::signin::FlowState {
            purpose: crate::signin::Purpose::Continue {
                url: Some(continue_url),
            },
            step: crate::signin::Step::Enrol {
                user_id: user.id.clone(),
                amr: vec!["pwd".to_string()],
                secret,
                proof: crate::signin::Proof::password(&user),
            },
        };
        return crate::login::begin_at(&state, &cookies, ip, flow_state).await;
    }
    // Signed in with the password just set, before the optional second factor.
    let (cookie_value, session) =
        crate::login::new_session(&state, &cookies, &user, vec!["pwd".to_string()], &meta).await?;
    let fresh_browser = state.csrf.mint_browser();
    let mut set = vec![
        session::session_cookie(&state.config, &cookie_value),
        Browser::set_cookie(&state, &fresh_browser),
    ];
    set.extend(session::start_forward_auth(&*state.store, &state.config, &session, now).await?);
    // The enrolment page (with its Skip link to `continue_url`), bound to the fresh browser
    // cookie this response sets.
    let fresh = Cookies(format!("{}={fresh_browser}", names.browser));
    let mut resp = crate::login::second_factor::offer_enrolment(
        &state,
        &fresh,
        ip,
        &user,
        &session,
        &continue_url,
    )
    .await?;
    for c in &set {
        crate::web::append_cookie(&mut resp, c);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct PlexForm {
    #[serde(default)]
    csrf: String,
}

/// POST /invite/{token}/plex: a sign-in flow that makes the account from this invite once the
/// invitee approves a Plex PIN, and the browser goes to Plex. The invite's use is taken only
/// then, so an abandoned attempt costs nothing.
async fn with_plex(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    Path(token): Path<String>,
    Query(q): Query<InviteQuery>,
    Form(form): Form<PlexForm>,
) -> Result<Response, WebError> {
    if !plex_offered(&state) {
        return Err(WebError::page(
            StatusCode::NOT_FOUND,
            "Sign in with Plex is not enabled",
            "Pick a username and a password on the invite page instead.",
        ));
    }
    let link = match usable(&state, &token).await? {
        Ok(link) => link,
        Err(page) => return Ok(page),
    };
    let Some(browser) =
        crate::web::link_form_browser(&state, &cookies, "invite", &link.token_hash, &form.csrf)
    else {
        tracing::warn!(target: "audit", event = "invite_redeemed", invite = %link.id, ip = %ip, method = "plex", outcome = "csrf_refused");
        return Err(crate::web::forged_form(
            "invite page",
            "Open the invite link again.",
        ));
    };
    let continue_url = safe_rd(&state, q.rd.as_deref())
        .map(str::to_string)
        .unwrap_or_else(|| state.url(paths::ACCOUNT));
    let flow_state = crate::signin::FlowState {
        purpose: crate::signin::Purpose::Continue {
            url: Some(continue_url),
        },
        step: crate::signin::Step::PlexInvite {
            link: to_hex(&link.token_hash),
        },
    };
    let now = state.now();
    let (flow_id, flow) = crate::signin::new_flow(&flow_state, &browser.value, now);
    if let Err(limited) = state.limiter.open_flow(ip, flow.id_hash, state.now_ms()) {
        let mut resp = WebError::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            "Too many sign-in pages were opened from this address. Wait a minute and try again.",
        )
        .into_response();
        crate::login::set_retry_after(&mut resp, limited.retry_after);
        return Ok(resp);
    }
    state.store.put_flow(&flow).await?;
    crate::login::plex::redirect_to_plex(&state, ip, &flow, &flow_id).await
}

fn taken(username: &str) -> String {
    format!("The username \"{username}\" is already taken. Choose another.")
}
