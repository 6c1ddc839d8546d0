//! The rules of the /account page as plain functions: when a change needs a recent sign-in,
//! what a profile form may change, how a sign-in method and the applications are shown. No
//! HTTP, no store.

use std::time::Duration;

use crate::accounts::users::validate_email;
use crate::store::{Grant, Timestamp, User};

/// The longest display name doorman keeps.
pub const MAX_NAME: usize = 200;

/// A change that matters (password, second factor, email) needs a sign-in at most
/// `reauth_after` old; an older one asks for the password again.
pub fn sign_in_is_recent(auth_time: Timestamp, now: Timestamp, reauth_after: Duration) -> bool {
    let limit = i64::try_from(reauth_after.as_secs()).unwrap_or(i64::MAX);
    now.saturating_sub(auth_time) <= limit
}

/// "10 minutes", "1 hour", "90 seconds": how recent a sign-in must be, for the page.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s % 3600 == 0 && s >= 3600 {
        (s / 3600, "hour")
    } else if s % 60 == 0 && s >= 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// What a profile form asks to change, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    /// The new display name (None: cleared).
    pub name: Option<String>,
    /// A new email (Some(None): cleared), when it differs from the stored one.
    pub email: Option<Option<String>>,
}

impl ProfileChange {
    pub fn is_empty(&self, user: &User) -> bool {
        self.email.is_none() && self.name == user.name
    }
}

/// Why a profile form is refused; the text is shown as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("The name is too long (at most 200 characters).")]
    NameTooLong,
    #[error("The name must not contain control characters.")]
    NameControl,
    #[error("The operator does not let users change their email address here. Ask them.")]
    EmailLocked,
    #[error("That does not look like an email address.")]
    EmailInvalid,
}

/// Reads a profile form: `name` as typed (trimmed; empty clears it), and `email` when the form
/// had the field (None: it did not). Changing the email needs `may_change_email`.
pub fn profile_change(
    user: &User,
    name: &str,
    email: Option<&str>,
    may_change_email: bool,
) -> Result<ProfileChange, ProfileError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME {
        return Err(ProfileError::NameTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(ProfileError::NameControl);
    }
    let name = (!name.is_empty()).then(|| name.to_string());
    let email = match email.map(str::trim) {
        None => None,
        Some(typed) => {
            let typed = (!typed.is_empty()).then(|| typed.to_string());
            let same = match (&typed, &user.email) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                _ => false,
            };
            if same {
                None
            } else if !may_change_email {
                return Err(ProfileError::EmailLocked);
            } else {
                if let Some(e) = &typed {
                    validate_email(e).map_err(|_| ProfileError::EmailInvalid)?;
                }
                Some(typed)
            }
        }
    };
    Ok(ProfileChange { name, email })
}

/// How a session was signed in to, from its `amr`, for people.
pub fn method_text(amr: &[String]) -> String {
    let has = |m: &str| amr.iter().any(|a| a == m);
    let passkey = has("hwk") || has("swk");
    let first = if has(crate::plex::AMR) {
        "Plex"
    } else if has("pwd") {
        "password"
    } else if passkey {
        return "passkey".to_string();
    } else {
        "unknown"
    };
    if passkey {
        format!("{first} + passkey")
    } else if has("otp") {
        format!("{first} + authenticator app")
    } else if has("mfa") {
        format!("{first} + recovery code")
    } else {
        first.to_string()
    }
}

/// One application on the page: a client with live refresh tokens for this user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Application {
    pub client_id: String,
    pub name: String,
    /// When the oldest live grant was made.
    pub since: Timestamp,
}

/// The user's live grants grouped by client (in the order of their oldest grant); `name`
/// gives a client's display name.
pub fn applications(grants: &[Grant], name: impl Fn(&str) -> Option<String>) -> Vec<Application> {
    let mut out: Vec<Application> = Vec::new();
    for g in grants {
        match out.iter_mut().find(|a| a.client_id == g.client_id) {
            Some(a) => a.since = a.since.min(g.created_at),
            None => out.push(Application {
                client_id: g.client_id.clone(),
                name: name(&g.client_id).unwrap_or_else(|| g.client_id.clone()),
                since: g.created_at,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: Option<&str>) -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            email: email.map(Into::into),
            email_verified: true,
            name: Some("Alice".into()),
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec![],
            password_hash: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        }
    }

    #[test]
    fn a_sign_in_is_recent_up_to_reauth_after() {
        let ten = Duration::from_secs(600);
        assert!(sign_in_is_recent(1000, 1000, ten));
        assert!(sign_in_is_recent(1000, 1600, ten));
        assert!(!sign_in_is_recent(1000, 1601, ten));
        assert_eq!(duration_text(ten), "10 minutes");
        assert_eq!(duration_text(Duration::from_secs(3600)), "1 hour");
        assert_eq!(duration_text(Duration::from_secs(90)), "90 seconds");
    }

    #[test]
    fn the_profile_form() {
        let u = user(Some("alice@example.com"));
        let c = profile_change(&u, "  Alice L. ", Some("ALICE@example.com"), false).unwrap();
        assert_eq!(c.name.as_deref(), Some("Alice L."));
        assert_eq!(
            c.email, None,
            "the same address in another case is no change"
        );
        assert_eq!(
            profile_change(&u, "Alice", Some("new@example.com"), false),
            Err(ProfileError::EmailLocked)
        );
        assert_eq!(
            profile_change(&u, "Alice", Some("not an address"), true),
            Err(ProfileError::EmailInvalid)
        );
        let c = profile_change(&u, "Alice", Some("new@example.com"), true).unwrap();
        assert_eq!(c.email, Some(Some("new@example.com".into())));
        assert!(!c.is_empty(&u));
        let c = profile_change(&u, "", None, false).unwrap();
        assert_eq!(
            c,
            ProfileChange {
                name: None,
                email: None
            }
        );
        assert!(profile_change(&u, "Alice", None, false)
            .unwrap()
            .is_empty(&u));
        assert_eq!(
            profile_change(&u, &"x".repeat(201), None, false),
            Err(ProfileError::NameTooLong)
        );
        assert_eq!(
            profile_change(&u, "a\u{7}b", None, false),
            Err(ProfileError::NameControl)
        );
    }

    #[test]
    fn methods_and_applications() {
        let amr = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(method_text(&amr(&["pwd"])), "password");
        assert_eq!(
            method_text(&amr(&["pwd", "otp"])),
            "password + authenticator app"
        );
        assert_eq!(
            method_text(&amr(&["pwd", "mfa"])),
            "password + recovery code"
        );
        assert_eq!(method_text(&amr(&["plex"])), "Plex");
        assert_eq!(method_text(&amr(&["pwd", "hwk"])), "password + passkey");
        assert_eq!(method_text(&amr(&["swk", "user", "mfa"])), "passkey");
        let g = |id: &str, client: &str, at: i64| Grant {
            id: id.into(),
            client_id: client.into(),
            user_id: "u1".into(),
            scope: "openid".into(),
            auth_time: at,
            amr: vec![],
            nonce: None,
            created_at: at,
            expires_at: at + 100,
            revoked_at: None,
            sid: None,
            acr: None,
        };
        let apps = applications(
            &[g("1", "nc", 5), g("2", "wiki", 7), g("3", "nc", 3)],
            |c| (c == "nc").then(|| "Nextcloud".to_string()),
        );
        assert_eq!(
            apps,
            vec![
                Application {
                    client_id: "nc".into(),
                    name: "Nextcloud".into(),
                    since: 3
                },
                Application {
                    client_id: "wiki".into(),
                    name: "wiki".into(),
                    since: 7
                },
            ]
        );
    }
}
