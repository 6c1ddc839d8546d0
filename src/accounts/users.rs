//! User rules: what a username and an email may be, how a user is created and changed, and
//! what disabling means (sessions and refresh tokens end with it).

use crate::store::{Store, StoreError, Timestamp, User};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("the username {0:?} is already taken")]
    UsernameTaken(String),
    #[error("the email {0:?} already belongs to another user")]
    EmailTaken(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// The name of a deleted account: apps key accounts on `preferred_username`, so a new
    /// account must not inherit the old one's data there.
    #[error("that username belonged to a deleted account and is not reused")]
    UsernameRetired(String),
    #[error(transparent)]
    Store(StoreError),
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    /// True when the operator (CLI, admin) set the email: they vouch for it.
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub password_hash: Option<String>,
}

/// Changes to a profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub name: Option<Option<String>>,
    pub groups: Option<Vec<String>>,
}

/// Usernames: 1-64 characters of letters, digits, `.`, `_`, `-`, starting with a letter or digit
/// (they end up as handles in apps like Mastodon, and in headers).
pub fn validate_username(name: &str) -> Result<(), AccountError> {
    let ok_len = !name.is_empty() && name.len() <= 64;
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid username {name:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Names a person cannot choose for themselves (on an invite page): they read as the
/// operator's or the system's. The operator can still make them (`doorman user add`).
const RESERVED_USERNAMES: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "doorman",
    "hostmaster",
    "no-reply",
    "noreply",
    "null",
    "operator",
    "postmaster",
    "root",
    "security",
    "support",
    "system",
    "webmaster",
];

/// A username someone picks for themselves: the rules of [`validate_username`], and none of
/// the names that read as the operator's (compared without regard to case).
pub fn validate_chosen_username(name: &str) -> Result<(), AccountError> {
    validate_username(name)?;
    if RESERVED_USERNAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(AccountError::Invalid(format!(
            "the username {name:?} is reserved: choose another"
        )));
    }
    Ok(())
}

/// Emails: one `@` with something on both sides, no spaces or control characters, ASCII only.
/// doorman compares addresses without regard to ASCII case; an address with other characters
/// has several spellings (Unicode case and normalisation forms) that would count as different
/// accounts, so it is refused: use its ASCII form (`xn--` for an international domain).
pub fn validate_email(email: &str) -> Result<(), AccountError> {
    if !email.is_ascii() {
        return Err(AccountError::Invalid(format!(
            "invalid email {email:?}: use the address's ASCII form (an international domain as its xn-- name)"
        )));
    }
    let parts: Vec<&str> = email.split('@').collect();
    let valid = email.len() <= 254
        && parts.len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!("invalid email {email:?}")))
    }
}

pub fn validate_groups(groups: &[String]) -> Result<(), AccountError> {
    for g in groups {
        if g.is_empty()
            || g.len() > 64
            || g.chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
        {
            return Err(AccountError::Invalid(format!(
                "invalid group name {g:?}: no commas, spaces or control characters"
            )));
        }
    }
    Ok(())
}

fn map_store(e: StoreError, user: &str, email: Option<&str>) -> AccountError {
    match e {
        StoreError::Conflict { field: "username" } => AccountError::UsernameTaken(user.to_string()),
        StoreError::Conflict { .. } => {
            AccountError::EmailTaken(email.unwrap_or_default().to_string())
        }
        other => AccountError::Store(other),
    }
}

/// A new opaque subject: 128 random bits, prefixed so it can never be a reserved word such as
/// `admin` or `guest` (Etherpad refuses those as `sub`).
pub fn new_user_id() -> String {
    format!("u{}", crate::secrets::random_id(16))
}

pub async fn create(store: &dyn Store, new: NewUser, now: Timestamp) -> Result<User, AccountError> {
    validate_username(&new.username)?;
    if let Some(e) = &new.email {
        validate_email(e)?;
    }
    validate_groups(&new.groups)?;
    if store
        .username_retired(&new.username)
        .await
        .map_err(AccountError::Store)?
    {
        return Err(AccountError::UsernameRetired(new.username));
    }
    let user = User {
        id: new_user_id(),
        username: new.username.clone(),
        email: new.email.clone(),
        email_verified: new.email.is_some() && new.email_verified,
        name: new.name,
        given_name: None,
        family_name: None,
        picture: None,
        groups: new.groups,
        password_hash: new.password_hash,
        disabled: false,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    store
        .create_user(&user)
        .await
        .map_err(|e| map_store(e, &new.username, new.email.as_deref()))?;
    Ok(user)
}

pub async fn find(store: &dyn Store, username: &str) -> Result<User, AccountError> {
    store
        .find_user_by_username(username)
        .await
        .map_err(AccountError::Store)?
        .ok_or_else(|| AccountError::NoSuchUser(username.to_string()))
}

pub async fn update_profile(
    store: &dyn Store,
    username: &str,
    change: ProfileUpdate,
    now: Timestamp,
) -> Result<User, AccountError> {
    let mut user = find(store, username).await?;
    if let Some(email) = change.email {
        if let Some(e) = &email {
            validate_email(e)?;
        }
        user.email_verified = email.is_some() && change.email_verified.unwrap_or(true);
        user.email = email;
    }
    if let Some(name) = change.name {
        user.name = name;
    }
    if let Some(groups) = change.groups {
        validate_groups(&groups)?;
        user.groups = groups;
    }
    user.updated_at = now;
    store
        .update_user(&user)
        .await
        .map_err(|e| map_store(e, username, user.email.as_deref()))?;
    Ok(user)
}

/// A user's own change of name and (optionally) email, on /account: only those columns are
/// written, so a disable or a group change made meanwhile elsewhere (the CLI, another replica)
/// is never undone by a stale copy of the row. A changed email is unverified.
pub async fn set_own_name_and_email(
    store: &dyn Store,
    user: &User,
    name: Option<String>,
    email: Option<Option<String>>,
    now: Timestamp,
) -> Result<(), AccountError> {
    let (email, verified) = match email {
        Some(Some(e)) => {
            validate_email(&e)?;
            let same = user
                .email
                .as_deref()
                .is_some_and(|old| old.eq_ignore_ascii_case(&e));
            let verified = same && user.email_verified;
            (Some(e), verified)
        }
        Some(None) => (None, false),
        None => (user.email.clone(), user.email_verified),
    };
    store
        .set_user_name_and_email(&user.id, name.as_deref(), email.as_deref(), verified, now)
        .await
        .map_err(|e| map_store(e, &user.username, email.as_deref()))
}

/// What ending a user's sign-ins removed, for the CLI to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    /// SSO sessions ended; the forward-auth (`doorman_fa`) sessions bound to them end with them.
    pub sessions: u64,
    /// Grants revoked, and with them every refresh and opaque access token they issued.
    pub grants: u64,
    /// The clients that got a code or tokens in the ended sessions: for back-channel logout
    /// (`oidc::backchannel`).
    pub logouts: Vec<crate::store::SessionClient>,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "ended {} session{}, revoked {} grant{}",
            self.sessions,
            plural(self.sessions),
            self.grants,
            plural(self.grants)
        )
    }
}

/// Ends everything a past sign-in left: every SSO session of the user (forward-auth sessions
/// are bound to one and end with it) and every grant (so its refresh and access tokens). One
/// rule for disabling a user and for changing their password: whoever knew the old password
/// must not stay signed in. Another process's caches see it within their TTL (5 s).
pub async fn end_sign_ins(
    store: &dyn Store,
    user_id: &str,
    now: Timestamp,
) -> Result<Ended, AccountError> {
    let logouts = store
        .session_clients(user_id, None)
        .await
        .map_err(AccountError::Store)?;
    let sessions = store
        .delete_user_sessions(user_id)
        .await
        .map_err(AccountError::Store)?;
    let grants = store
        .revoke_user_grants(user_id, now)
        .await
        .map_err(AccountError::Store)?;
    Ok(Ended {
        sessions,
        grants,
        logouts,
    })
}

/// Ends one SSO session (its forward-auth sessions go with it) and revokes the grants made in
/// it (`sid`, its public handle), so the applications signed in through it lose their refresh
/// and access tokens too. Signing out one session from /account or /admin, and RP-initiated
/// logout, end exactly this.
pub async fn end_session(
    store: &dyn Store,
    user_id: &str,
    session_hash: &crate::store::Hash,
    sid: &str,
    now: Timestamp,
) -> crate::store::StoreResult<Ended> {
    let logouts = store.session_clients(user_id, Some(sid)).await?;
    store.delete_session(session_hash).await?;
    let grants = store.revoke_session_grants(user_id, sid, now).await?;
    Ok(Ended {
        sessions: 1,
        grants: grants.len() as u64,
        logouts,
    })
}

/// Sets a new password and ends the user's sessions and grants (see [`end_sign_ins`]).
pub async fn set_password_hash(
    store: &dyn Store,
    username: &str,
    hash: String,
    now: Timestamp,
) -> Result<(User, Ended), AccountError> {
    let mut user = find(store, username).await?;
    // Only the password column: a disable or group change made meanwhile stays.
    store
        .set_user_password(&user.id, &hash, now)
        .await
        .map_err(AccountError::Store)?;
    user.password_hash = Some(hash);
    user.updated_at = now;
    let ended = end_sign_ins(store, &user.id, now).await?;
    Ok((user, ended))
}

/// Disabling ends every session and grant of the user (see [`end_sign_ins`]); enabling only
/// lifts the flag.
pub async fn set_disabled(
    store: &dyn Store,
    username: &str,
    disabled: bool,
    now: Timestamp,
) -> Result<(User, Ended), AccountError> {
    let mut user = find(store, username).await?;
    // Only the flag: a password, group or email change made meanwhile stays.
    store
        .set_user_disabled(&user.id, disabled, now)
        .await
        .map_err(AccountError::Store)?;
    user.disabled = disabled;
    user.updated_at = now;
    let ended = if disabled {
        end_sign_ins(store, &user.id, now).await?
    } else {
        Ended::default()
    };
    Ok((user, ended))
}

/// Removes the user's second factors (TOTP, passkeys, recovery codes) and ends their sessions and
/// grants: whoever signs in next as them sets one up again. `false`: they had none.
pub async fn reset_second_factor(
    store: &dyn Store,
    username: &str,
    now: Timestamp,
) -> Result<(User, bool, Ended), AccountError> {
    let user = find(store, username).await?;
    let removed = store
        .remove_second_factor(&user.id)
        .await
        .map_err(AccountError::Store)?;
    let ended = end_sign_ins(store, &user.id, now).await?;
    Ok((user, removed, ended))
}

/// Lifts every lockout of the user's account (per IP and over all IPs); the number of
/// counters cleared.
pub async fn unlock(store: &dyn Store, username: &str) -> Result<(User, u64), AccountError> {
    let user = find(store, username).await?;
    let cleared = store
        .clear_lockouts(&user.id)
        .await
        .map_err(AccountError::Store)?;
    Ok((user, cleared))
}

/// Deletes the user: their sessions and grants end first (see [`end_sign_ins`]), then the
/// account goes and its username stays reserved (no later account gets it).
pub async fn delete(
    store: &dyn Store,
    username: &str,
    now: Timestamp,
) -> Result<(User, Ended), AccountError> {
    let user = find(store, username).await?;
    let ended = end_sign_ins(store, &user.id, now).await?;
    store
        .retire_user(&user.id)
        .await
        .map_err(AccountError::Store)?;
    Ok((user, ended))
}

/// An admin's change of a user's name and groups: only those columns are written (see
/// [`set_own_name_and_email`]). An empty name is none.
pub async fn set_name_and_groups(
    store: &dyn Store,
    user: &User,
    name: Option<String>,
    groups: Vec<String>,
    now: Timestamp,
) -> Result<(), AccountError> {
    validate_groups(&groups)?;
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    store
        .set_user_name_and_groups(&user.id, name.as_deref(), &groups, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => AccountError::NoSuchUser(user.username.clone()),
            other => AccountError::Store(other),
        })
}

/// Marks the user's email verified (an admin vouches for `shown`, the address they saw);
/// false if the user has no email, or another one than `shown` (compared as the store
/// compares emails: ASCII case ignored), read now or at the write.
pub async fn mark_email_verified(
    store: &dyn Store,
    user: &User,
    shown: &str,
    now: Timestamp,
) -> Result<bool, AccountError> {
    let Some(email) = user
        .email
        .as_deref()
        .filter(|e| e.eq_ignore_ascii_case(shown.trim()))
    else {
        return Ok(false);
    };
    store
        .mark_email_verified(&user.id, email, now)
        .await
        .map_err(AccountError::Store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("Alice.B-2_x").is_ok());
        for bad in ["", "-alice", "al ice", "ålice", "a/b", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
        assert!(
            validate_username("admin").is_ok(),
            "the operator may make it"
        );
        for reserved in ["admin", "Root", "POSTMASTER", "no-reply"] {
            assert!(validate_chosen_username(reserved).is_err(), "{reserved:?}");
        }
        assert!(validate_chosen_username("adminton").is_ok());
    }

    #[test]
    fn emails_and_groups() {
        assert!(validate_email("a@example.com").is_ok());
        assert!(validate_email("a@xn--bcher-kva.example").is_ok());
        // Two spellings of one address (NFC and NFD) would be two accounts: refused.
        for two_ways in [
            "\u{e4}lice@example.com",
            "a\u{308}lice@example.com",
            "a@b\u{fc}cher.example",
        ] {
            assert!(validate_email(two_ways).is_err(), "{two_ways:?}");
        }
        for bad in ["a", "@x", "a@", "a@b@c", "a b@c"] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert!(validate_groups(&["admins".into()]).is_ok());
        assert!(validate_groups(&["a,b".into()]).is_err());
    }

    #[test]
    fn user_ids_are_opaque_and_never_reserved() {
        let id = new_user_id();
        assert!(id.starts_with('u') && id.len() > 20);
        assert_ne!(id, new_user_id());
    }
}
