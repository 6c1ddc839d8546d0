//! Who must have a second factor, and what `/authorize` does with the browser's session: the
//! whole decision in one place, as plain functions the handler calls.

use crate::config::{ClientConfig, LoginConfig, SecondFactorPolicy};
use crate::oidc::authorize::{session_satisfies, AuthorizeRequest};
use crate::store::{Session, Timestamp, User};

pub use crate::oidc::authorize::{ACR_1FA, ACR_2FA};

/// A sign-in that began with doorman's own password (the methods a second factor adds to).
pub fn is_local(amr: &[String]) -> bool {
    amr.iter().any(|m| m == "pwd")
}

/// A sign-in with doorman's own methods: a password, or a passkey (with or without one).
pub fn is_doorman_sign_in(amr: &[String]) -> bool {
    amr.iter()
        .any(|m| matches!(m.as_str(), "pwd" | "hwk" | "swk"))
}

/// Two factors were used: a TOTP code, a recovery code, or a key (later: passkeys).
pub use crate::oidc::claims::two_factors as has_second_factor;

/// The `acr` of a sign-in with `amr`.
pub use crate::oidc::claims::acr_for as acr_of;

/// Must this user have a second factor to finish this sign-in? `[login]
/// require_second_factor = "required"`, a member of `second_factor_groups`, a client with
/// `require_second_factor`, or an authorization request with `acr_values=2fa`. Never when the
/// policy is "off".
pub fn must_have_second_factor(
    login: &LoginConfig,
    client: Option<&ClientConfig>,
    asks: bool,
    user: &User,
) -> bool {
    match login.require_second_factor {
        SecondFactorPolicy::Off => false,
        SecondFactorPolicy::Required => true,
        SecondFactorPolicy::Optional => {
            asks || client.is_some_and(|c| c.require_second_factor)
                || user
                    .groups
                    .iter()
                    .any(|g| login.second_factor_groups.contains(g))
        }
    }
}

/// What `/authorize` does for a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtAuthorize {
    /// The session will do: issue the code (or `access_denied` by the client's groups).
    IssueCode,
    /// Signed in with a password only, and this client (or user) needs a second factor: ask
    /// for it (or enrol it) before the code.
    StepUp,
    /// Show the landing page.
    SignIn,
    /// `prompt=none` and no usable session: `login_required` to the client.
    LoginRequired,
    /// `prompt=none` and a second factor is due: `interaction_required` to the client.
    InteractionRequired,
}

/// The /authorize decision. `live` is the browser's SSO session (already checked to be live
/// and its user still allowed), `must_have` what [`must_have_second_factor`] says for that
/// user and this client.
pub fn at_authorize(
    req: &AuthorizeRequest,
    live: Option<&Session>,
    must_have: bool,
    now: Timestamp,
) -> AtAuthorize {
    match live {
        Some(s) if session_satisfies(req, s, now) => {
            if must_have && is_local(&s.amr) && !has_second_factor(&s.amr) {
                if req.prompt_none {
                    AtAuthorize::InteractionRequired
                } else {
                    AtAuthorize::StepUp
                }
            } else {
                AtAuthorize::IssueCode
            }
        }
        _ if req.prompt_none => AtAuthorize::LoginRequired,
        _ => AtAuthorize::SignIn,
    }
}

/// What follows a proved first factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Signed in with these methods.
    Finish(Vec<String>),
    /// Ask for a TOTP or recovery code.
    AskCode,
    /// Set up an authenticator app first (a second factor is required and there is none).
    Enrol,
}

/// The step after a first factor (`amr`): the code when the user has one, enrolment when one
/// is required and missing, else done. Only local passwords get a second factor here: a
/// federation (Plex) brings its own.
pub fn after_first_factor(
    amr: &[String],
    has_second_factor: bool,
    must_have: bool,
    policy: SecondFactorPolicy,
) -> Next {
    if !is_local(amr) || policy == SecondFactorPolicy::Off {
        return Next::Finish(amr.to_vec());
    }
    if has_second_factor {
        Next::AskCode
    } else if must_have {
        Next::Enrol
    } else {
        Next::Finish(amr.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amr(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    fn req() -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example.com/cb".into(),
            scope: "openid".into(),
            state: None,
            nonce: None,
            code_challenge: None,
            prompt_none: false,
            prompt_login: false,
            max_age: None,
            login_hint: None,
            acr_values: Vec::new(),
        }
    }

    fn session(amr: &[&str], auth_time: Timestamp) -> Session {
        Session {
            id_hash: [0; 32],
            user_id: "u".into(),
            auth_time,
            amr: amr.iter().map(|s| s.to_string()).collect(),
            created_at: auth_time,
            last_seen_at: auth_time,
            expires_at: auth_time + 3600,
            ip: None,
            user_agent: None,
            sid: None,
        }
    }

    #[test]
    fn a_session_issues_the_code_unless_a_factor_is_due() {
        let pwd = session(&["pwd"], 100);
        assert_eq!(
            at_authorize(&req(), Some(&pwd), false, 200),
            AtAuthorize::IssueCode
        );
        assert_eq!(
            at_authorize(&req(), Some(&pwd), true, 200),
            AtAuthorize::StepUp
        );
        let otp = session(&["pwd", "otp"], 100);
        assert_eq!(
            at_authorize(&req(), Some(&otp), true, 200),
            AtAuthorize::IssueCode
        );
        // Plex brings its own second factor: never stepped up.
        let plex = session(&["plex"], 100);
        assert_eq!(
            at_authorize(&req(), Some(&plex), true, 200),
            AtAuthorize::IssueCode
        );
    }

    #[test]
    fn no_session_shows_the_page_or_tells_a_silent_client() {
        assert_eq!(at_authorize(&req(), None, false, 0), AtAuthorize::SignIn);
        let silent = AuthorizeRequest {
            prompt_none: true,
            ..req()
        };
        assert_eq!(
            at_authorize(&silent, None, false, 0),
            AtAuthorize::LoginRequired
        );
        let pwd = session(&["pwd"], 100);
        assert_eq!(
            at_authorize(&silent, Some(&pwd), true, 200),
            AtAuthorize::InteractionRequired
        );
    }

    #[test]
    fn max_age_and_prompt_login_ask_again() {
        let pwd = session(&["pwd"], 100);
        let old = AuthorizeRequest {
            max_age: Some(50),
            ..req()
        };
        assert_eq!(
            at_authorize(&old, Some(&pwd), false, 200),
            AtAuthorize::SignIn
        );
        let again = AuthorizeRequest {
            prompt_login: true,
            ..req()
        };
        assert_eq!(
            at_authorize(&again, Some(&pwd), false, 200),
            AtAuthorize::SignIn
        );
    }

    #[test]
    fn acr_follows_the_factors() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(acr_of(&m(&["pwd"])), ACR_1FA);
        assert_eq!(acr_of(&m(&["pwd", "otp"])), ACR_2FA);
        assert_eq!(acr_of(&m(&["pwd", "mfa"])), ACR_2FA);
        assert_eq!(acr_of(&m(&["plex"])), ACR_1FA);
    }

    #[test]
    fn a_password_with_a_factor_asks_for_the_code() {
        let pwd = amr(&["pwd"]);
        assert_eq!(
            after_first_factor(&pwd, true, false, SecondFactorPolicy::Optional),
            Next::AskCode
        );
        assert_eq!(
            after_first_factor(&pwd, true, true, SecondFactorPolicy::Required),
            Next::AskCode
        );
    }

    #[test]
    fn a_required_factor_that_is_missing_is_enrolled() {
        let pwd = amr(&["pwd"]);
        assert_eq!(
            after_first_factor(&pwd, false, true, SecondFactorPolicy::Optional),
            Next::Enrol
        );
        assert_eq!(
            after_first_factor(&pwd, false, false, SecondFactorPolicy::Optional),
            Next::Finish(pwd.clone())
        );
    }

    #[test]
    fn federations_and_the_off_policy_finish_at_once() {
        let plex = amr(&["plex"]);
        assert_eq!(
            after_first_factor(&plex, true, true, SecondFactorPolicy::Required),
            Next::Finish(plex.clone())
        );
        let pwd = amr(&["pwd"]);
        assert_eq!(
            after_first_factor(&pwd, true, true, SecondFactorPolicy::Off),
            Next::Finish(pwd.clone())
        );
    }
}
