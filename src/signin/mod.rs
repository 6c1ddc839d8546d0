//! Sign-in as a state machine, free of HTTP. A sign-in is a *flow*: what it is for (its
//! [`Purpose`]: authorize an OIDC request, or continue to a doorman URL) and the [`Step`] it is
//! in (first factor, second factor, enrolment, done), stored in the store bound to one browser
//! so any replica can take the next step. Sign-in never knows its callers: a feature that needs
//! a signed-in user (Jitsi, forward-auth, the account pages) hands over a URL to continue to.
//!
//! - `limits`: every in-process sign-in limit (failures per IP, flows per IP, Plex PINs).
//! - `password`: the password check with its limits and lockout, before any argon2 work.
//! - `policy`: who must have a second factor, and what /authorize does with a session.
//! - `second_factor`: TOTP codes, enrolment and recovery codes.
//! - `passkey`: passkey ceremonies (enrolment, second factor, passwordless).
//!
//! The handlers in `crate::login` render the pages for each step and call these functions.

pub mod limits;
pub mod passkey;
pub mod password;
pub mod policy;
pub mod second_factor;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::oidc::authorize::AuthorizeRequest;
use crate::secrets::{digest, random_token};
use crate::session;
use crate::store::{Flow, Hash, Session, Store, StoreResult, Timestamp, User};

/// How long a sign-in page stays usable (and with it every later step of the same flow).
pub const FLOW_LIFETIME: i64 = 30 * 60;

/// What happens once the user is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Finish an OIDC authorization request: issue the code and return to the client.
    Authorize(AuthorizeRequest),
    /// Continue to a URL: doorman's own (Jitsi, the account pages) or a `/login?rd=` return
    /// address, which is checked again when the sign-in completes. None: doorman's
    /// signed-in page.
    Continue { url: Option<String> },
}

impl Purpose {
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Purpose::Authorize(r) => Some(&r.client_id),
            Purpose::Continue { .. } => None,
        }
    }

    pub fn login_hint(&self) -> Option<&str> {
        match self {
            Purpose::Authorize(r) => r.login_hint.as_deref(),
            Purpose::Continue { .. } => None,
        }
    }

    /// The authorization request asks for a second factor (`acr_values` with `2fa`).
    pub fn asks_second_factor(&self) -> bool {
        match self {
            Purpose::Authorize(r) => r.acr_values.iter().any(|v| v == policy::ACR_2FA),
            Purpose::Continue { .. } => false,
        }
    }
}

/// Where a flow is. Each step after the first names the user its first factor proved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The landing page: a password or a federation (Plex).
    #[default]
    FirstFactor,
    /// The first factor is proved (`amr`, by `proof`); a TOTP or recovery code is due.
    SecondFactor {
        user_id: String,
        amr: Vec<String>,
        proof: Proof,
    },
    /// The first factor is proved (by `proof`); the user sets up an authenticator app.
    /// `secret` is the pending TOTP secret, encrypted with `secret_key` (base64url).
    Enrol {
        user_id: String,
        amr: Vec<String>,
        secret: String,
        proof: Proof,
    },
    /// Signed in (the session exists); the flow waits for "Continue" (after the recovery codes).
    Done { user_id: String },
    /// An invitee links a Plex account instead of setting a password: when the PIN is
    /// approved, the account is made from the invite whose token digest is `link` (hex), not
    /// looked up. No password is accepted in this flow.
    PlexInvite { link: String },
}

impl Step {
    /// The user a later step belongs to.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Step::FirstFactor | Step::PlexInvite { .. } => None,
            Step::SecondFactor { user_id, .. }
            | Step::Enrol { user_id, .. }
            | Step::Done { user_id } => Some(user_id),
        }
    }
}

/// What proved the first factor of a later step, checked again at every step: a pending code
/// page dies with a password change, or with the session it stepped up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Proof {
    /// The password whose stored hash digests to `hash` (hex): valid while it is unchanged.
    Password { hash: String },
    /// The SSO session with this id hash (hex): valid while it is live.
    Session { id: String },
}

impl Proof {
    pub fn password(user: &User) -> Proof {
        Proof::Password {
            hash: crate::secrets::to_hex(&digest(user.password_hash.as_deref().unwrap_or(""))),
        }
    }

    pub fn session(session: &Session) -> Proof {
        Proof::Session {
            id: crate::secrets::to_hex(&session.id_hash),
        }
    }

    /// Does it still hold for `user`?
    pub async fn holds(&self, store: &dyn Store, user: &User, now: Timestamp) -> StoreResult<bool> {
        Ok(match self {
            Proof::Password { hash } => {
                user.password_hash.is_some()
                    && *hash
                        == crate::secrets::to_hex(&digest(
                            user.password_hash.as_deref().unwrap_or(""),
                        ))
            }
            Proof::Session { id } => match crate::secrets::from_hex(id) {
                Some(id_hash) => store
                    .get_session(&id_hash, now)
                    .await?
                    .is_some_and(|s| s.user_id == user.id),
                None => false,
            },
        })
    }
}

/// The stored state of one flow (the store's `Flow::payload`, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    pub purpose: Purpose,
    #[serde(default)]
    pub step: Step,
}

impl FlowState {
    pub fn new(purpose: Purpose) -> FlowState {
        FlowState {
            purpose,
            step: Step::FirstFactor,
        }
    }

    pub fn payload(&self) -> String {
        // A derived Serialize of strings and vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The state a stored flow holds; None when it cannot be read (an older format).
    pub fn of(flow: &Flow) -> Option<FlowState> {
        serde_json::from_str(&flow.payload).ok()
    }
}

/// A new flow for this browser: its secret id (goes into the page) and the row to store.
pub fn new_flow(state: &FlowState, browser: &str, now: Timestamp) -> (String, Flow) {
    let id = random_token();
    let flow = Flow {
        id_hash: digest(&id),
        browser_hash: digest(browser),
        payload: state.payload(),
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
    };
    (id, flow)
}

/// The `amr` once a second factor of `kind` followed the first factor `amr` (RFC 8176): a
/// TOTP code adds `otp`; a recovery code is no one-time-password generator, so it is
/// published as `mfa` (two factors were used).
pub fn with_second_factor(amr: &[String], kind: SecondFactorKind) -> Vec<String> {
    let mut out: Vec<String> = amr.to_vec();
    let add = match kind {
        SecondFactorKind::Totp => "otp",
        SecondFactorKind::RecoveryCode => "mfa",
    };
    if !out.iter().any(|m| m == add) {
        out.push(add.to_string());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorKind {
    Totp,
    RecoveryCode,
}

/// A new SSO session of the browser.
pub struct Started {
    /// The cookie value (the only copy of the session id).
    pub cookie: String,
    pub session: Session,
    /// The browser's old session belonged to another user and ended with the grants made in
    /// it: that user and the applications to tell (back-channel logout).
    pub replaced: Option<(String, Vec<crate::store::SessionClient>)>,
}

/// The user proved who they are with `amr`: a new SSO session (a fresh id at every sign-in,
/// so no session fixation; the browser's old session ends). The same user's old session hands
/// on its public `sid` (`sid_of`), so the applications signed in through it stay bound to the
/// session the browser holds (a step-up, `prompt=login`); another user's ends with its grants,
/// as a sign-out. The flow is left to the caller (it may still have a step to show).
#[allow(clippy::too_many_arguments)]
pub async fn start_session(
    store: &dyn Store,
    config: &Config,
    old_cookie: Option<&str>,
    user: &User,
    amr: Vec<String>,
    meta: &session::SessionMeta,
    sid_of: &(dyn Fn(&Session) -> String + Sync),
    now: Timestamp,
) -> StoreResult<Started> {
    let mut inherited = None;
    let mut replaced = None;
    if let Some(old) = old_cookie {
        match store.get_session(&digest(old), now).await? {
            Some(s) if s.user_id == user.id => {
                inherited = Some(sid_of(&s));
                store.delete_session(&s.id_hash).await?;
            }
            Some(s) => {
                let ended = crate::accounts::users::end_session(
                    store,
                    &s.user_id,
                    &s.id_hash,
                    &sid_of(&s),
                    now,
                )
                .await?;
                replaced = Some((s.user_id, ended.logouts));
            }
            None => session::end(store, old).await?,
        }
    }
    let (cookie, session) = session::start(store, config, user, amr, meta, inherited, now).await?;
    Ok(Started {
        cookie,
        session,
        replaced,
    })
}

/// Moves a stored flow to its next step. False when the flow has expired meanwhile.
pub async fn advance(
    store: &dyn Store,
    flow: &Flow,
    state: &FlowState,
    now: Timestamp,
) -> StoreResult<bool> {
    store
        .update_flow_payload(&flow.id_hash, &state.payload(), now)
        .await
}

/// The flow is used up: gone from the store.
pub async fn close(store: &dyn Store, flow: &Hash) -> StoreResult<()> {
    store.delete_flow(flow).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amr(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn amr_after_a_second_factor() {
        let pwd = amr(&["pwd"]);
        assert_eq!(
            with_second_factor(&pwd, SecondFactorKind::Totp),
            amr(&["pwd", "otp"])
        );
        assert_eq!(
            with_second_factor(&pwd, SecondFactorKind::RecoveryCode),
            amr(&["pwd", "mfa"])
        );
    }

    #[test]
    fn flow_state_round_trips_and_old_payloads_start_at_the_first_step() {
        let s = FlowState {
            purpose: Purpose::Continue {
                url: Some("https://app.example.com/".into()),
            },
            step: Step::SecondFactor {
                user_id: "u1".into(),
                amr: amr(&["pwd"]),
                proof: Proof::Password { hash: "ab".into() },
            },
        };
        let (_, flow) = new_flow(&s, "browser", 100);
        assert_eq!(FlowState::of(&flow), Some(s));
        assert_eq!(flow.expires_at, 100 + FLOW_LIFETIME);
        let legacy = Flow {
            payload: r#"{"purpose":{"kind":"continue","url":null}}"#.into(),
            ..flow
        };
        assert_eq!(
            FlowState::of(&legacy).map(|s| s.step),
            Some(Step::FirstFactor)
        );
    }
}
