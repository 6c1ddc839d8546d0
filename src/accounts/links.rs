//! Invite and password-reset links: one token machinery for both. A link carries a 256-bit
//! random token (43 base64url characters, the whole last path segment of its URL); the store
//! keeps only its SHA-256 digest, counts its uses atomically, and the link expires. `id` is a
//! short public handle for listing and revoking, never enough to redeem a link. No HTTP here.

use crate::accounts::users::{self, AccountError, NewUser};
use crate::secrets::{digest, random_token, to_hex};
use crate::store::{Link, LinkKind, Store, StoreError, Timestamp, User};

/// Where invite links open (`{issuer}/invite/{token}`).
pub const INVITE_PATH: &str = "/invite";
/// Where password-reset links open (`{issuer}/reset/{token}`).
pub const RESET_PATH: &str = "/reset";

/// An invite lasts this long unless told otherwise (7 days).
pub const INVITE_LIFETIME: i64 = 7 * 86_400;
/// A reset link lasts this long unless told otherwise (24 hours).
pub const RESET_LIFETIME: i64 = 86_400;
/// The longest a link may last (a year).
pub const MAX_LIFETIME: i64 = 365 * 86_400;
/// The most uses one invite may have.
pub const MAX_USES: i64 = 1000;
/// The longest note.
pub const MAX_NOTE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A bad argument; the text says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new invite grants.
#[derive(Debug, Clone, Default)]
pub struct NewInvite {
    pub groups: Vec<String>,
    /// Seconds; default [`INVITE_LIFETIME`].
    pub expires_in: Option<i64>,
    /// Default 1.
    pub uses: Option<i64>,
    /// The account gets this email, marked verified (whoever made the invite vouches for it).
    pub email: Option<String>,
    pub note: Option<String>,
    /// A username, or "cli".
    pub created_by: String,
}

/// What a link's page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Usable,
    Expired,
    UsedUp,
    Revoked,
}

/// The state of `link` at `now` (a revocation wins over expiry, expiry over use).
pub fn state(link: &Link, now: Timestamp) -> LinkState {
    if link.revoked_at.is_some() {
        LinkState::Revoked
    } else if link.expires_at <= now {
        LinkState::Expired
    } else if link.uses_left <= 0 {
        LinkState::UsedUp
    } else {
        LinkState::Usable
    }
}

/// A token as `random_token` makes them: 43 base64url characters. Anything else is no link
/// (and is never looked up).
pub fn well_formed_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The path segments a link token follows (`{issuer path}/invite/{token}`, `.../reset/{token}`,
/// `.../account/confirm-email/{token}`).
const LINK_SEGMENTS: &[&str] = &["invite", "reset", "confirm-email"];

/// `path` as it may be logged: whatever follows an `invite` or `reset` segment is replaced by
/// `{token}`, whether or not it looks like a token (a percent-encoded spelling, a trailing
/// slash or extra segments decode to the same usable token), so request logs never hold a
/// usable link.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.contains('%') {
        // Decoded first, so `/%69nvite/TOKEN` or `/invite%2FTOKEN` (not routed, but logged)
        // is seen as the link path it spells.
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        return match redact_decoded(&decoded) {
            std::borrow::Cow::Owned(redacted) => redacted.into(),
            std::borrow::Cow::Borrowed(_) => path.into(),
        };
    }
    redact_decoded(path)
}

fn redact_decoded(path: &str) -> std::borrow::Cow<'_, str> {
    let mut at = 0;
    for segment in path.split('/') {
        let next = at + segment.len() + 1;
        if LINK_SEGMENTS.contains(&segment) && next < path.len() {
            return format!("{}{{token}}", path.get(..next).unwrap_or_default()).into();
        }
        at = next;
    }
    path.into()
}

/// The digest a token is stored under.
pub fn token_hash(token: &str) -> crate::store::Hash {
    digest(token)
}

/// The link URL of `token` for `kind` under `issuer` (no trailing slash).
pub fn url(issuer: &str, kind: LinkKind, token: &str) -> String {
    let path = match kind {
        LinkKind::Invite => INVITE_PATH,
        LinkKind::Reset => RESET_PATH,
        LinkKind::Confirm => crate::accounts::confirm::CONFIRM_PATH,
    };
    format!("{issuer}{path}/{token}")
}

/// A new public id: 10 hex characters (40 random bits; never starts with `-`, so it is safe
/// as a command-line argument).
fn new_id() -> String {
    let bytes: Vec<u8> = digest(&random_token()).iter().take(5).copied().collect();
    to_hex(&bytes)
}

fn lifetime(expires_in: Option<i64>, default: i64) -> Result<i64, LinkError> {
    let secs = expires_in.unwrap_or(default);
    if secs <= 0 || secs > MAX_LIFETIME {
        return Err(LinkError::Invalid(format!(
            "a link lasts more than 0 seconds and at most 365 days (got {secs} s)"
        )));
    }
    Ok(secs)
}

fn invalid(e: AccountError) -> LinkError {
    match e {
        AccountError::Store(s) => LinkError::Store(s),
        other => LinkError::Invalid(other.to_string()),
    }
}

/// Creates an invite; returns the token (shown once, never stored) and the stored link.
pub async fn create_invite(
    store: &dyn Store,
    new: NewInvite,
    now: Timestamp,
) -> Result<(String, Link), LinkError> {
    let expires_in = lifetime(new.expires_in, INVITE_LIFETIME)?;
    let uses = new.uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&uses) {
        return Err(LinkError::Invalid(format!(
            "an invite has 1 to {MAX_USES} uses (got {uses})"
        )));
    }
    let groups: Vec<String> = new
        .groups
        .iter()
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    users::validate_groups(&groups).map_err(invalid)?;
    let email = new
        .email
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &email {
        users::validate_email(e).map_err(invalid)?;
    }
    let note = new
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if let Some(n) = &note {
        if n.chars().count() > MAX_NOTE || n.chars().any(char::is_control) {
            return Err(LinkError::Invalid(format!(
                "a note has at most {MAX_NOTE} characters and no control characters"
            )));
        }
    }
    let token = random_token();
    let link = Link {
        id: new_id(),
        token_hash: token_hash(&token),
        kind: LinkKind::Invite,
        groups,
        email_verified: email.is_some(),
        email,
        note,
        user_id: None,
        uses,
        uses_left: uses,
        created_by: new.created_by,
        created_at: now,
        expires_at: now.saturating_add(expires_in),
        revoked_at: None,
    };
    store.create_link(&link).await?;
    Ok((token, link))
}

/// Creates a single-use password-reset link for the user `user_id` (default lifetime 24
/// hours); returns the token and the stored link.
pub async fn create_reset(
    store: &dyn Store,
    user_id: &str,
    created_by: &str,
    expires_in: Option<i64>,
    now: Timestamp,
) -> Result<(String, Link), LinkError> {
    let expires_in = lifetime(expires_in, RESET_LIFETIME)?;
    let token = random_token();
    let link = Link {
        id: new_id(),
        token_hash: token_hash(&token),
        kind: LinkKind::Reset,
        groups: Vec::new(),
        email: None,
        email_verified: false,
        note: None,
        user_id: Some(user_id.to_string()),
        uses: 1,
        uses_left: 1,
        created_by: created_by.to_string(),
        created_at: now,
        expires_at: now.saturating_add(expires_in),
        revoked_at: None,
    };
    store.create_link(&link).await?;
    Ok((token, link))
}

/// Revokes every live password-reset link of the user `user_id`: once the password was set
/// anew, an older link (in a mailbox that may be why it was reset) must not set another.
/// How many were revoked.
pub async fn revoke_resets_of(
    store: &dyn Store,
    user_id: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut revoked = 0;
    for link in store.list_links(LinkKind::Reset, now).await? {
        if link.user_id.as_deref() == Some(user_id) && store.revoke_link(&link.id, now).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// An invite that names an email vouches for it: if another account holds that address
/// unverified (typed on /account, never confirmed), the address leaves that account, so an
/// unconfirmed claim cannot keep its owner out. A verified holder keeps it (the redemption is
/// then refused as taken).
pub async fn free_vouched_email(
    store: &dyn Store,
    link: &Link,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(email) = link.email.as_deref().filter(|_| link.email_verified) else {
        return Ok(());
    };
    if let Some(holder) = store.find_user_by_email(email).await? {
        if !holder.email_verified {
            store
                .set_user_name_and_email(&holder.id, holder.name.as_deref(), None, false, now)
                .await?;
            tracing::warn!(target: "audit", event = "email_released", user = %holder.username, invite = %link.id, "an invite vouches for the unverified email of this account: the address moves to the invitee");
        }
    }
    Ok(())
}

/// Why redeeming an invite made no account.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Expired, used up (another browser took the last use), revoked or unknown by now.
    #[error("the invite can no longer be used")]
    Gone,
    /// Creating the account failed (the username or email was taken meanwhile); the use was
    /// given back.
    #[error(transparent)]
    Account(AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Redeems one use of the invite `token`: takes the use atomically, then creates `username`
/// with the invite's groups and email (verified when the invite named it) and the given
/// password hash. If creating fails, the use is given back. The caller has already checked
/// the username and the password policy.
pub async fn redeem_invite(
    store: &dyn Store,
    token: &str,
    username: &str,
    password_hash: String,
    now: Timestamp,
) -> Result<(User, Link), RedeemError> {
    if !well_formed_token(token) {
        return Err(RedeemError::Gone);
    }
    let link = store
        .take_link_use(&token_hash(token), LinkKind::Invite, now)
        .await?
        .ok_or(RedeemError::Gone)?;
    if let Err(e) = free_vouched_email(store, &link, now).await {
        store.give_back_link_use(&link.id).await?;
        return Err(e.into());
    }
    let created = users::create(
        store,
        NewUser {
            username: username.to_string(),
            email: link.email.clone(),
            email_verified: link.email_verified,
            name: None,
            groups: link.groups.clone(),
            password_hash: Some(password_hash),
        },
        now,
    )
    .await;
    match created {
        Ok(user) => Ok((user, link)),
        Err(e) => {
            store.give_back_link_use(&link.id).await?;
            Err(RedeemError::Account(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    const NOW: Timestamp = 1_700_000_000;

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("doorman.db")).unwrap()
    }

    #[tokio::test]
    async fn an_invite_has_defaults_a_url_and_its_token_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let (token, link) = create_invite(
            &s,
            NewInvite {
                groups: vec!["family".into(), " ".into()],
                email: Some("carol@example.com".into()),
                created_by: "cli".into(),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        assert!(well_formed_token(&token), "{token}");
        assert_eq!(link.token_hash, digest(&token));
        assert_eq!(link.expires_at, NOW + 7 * 86_400);
        assert_eq!((link.uses, link.uses_left), (1, 1));
        assert_eq!(link.groups, ["family"]);
        assert!(link.email_verified);
        assert_eq!(link.id.len(), 10);
        assert_eq!(
            url("https://id.example", LinkKind::Invite, &token),
            format!("https://id.example/invite/{token}")
        );
        assert_eq!(state(&link, NOW), LinkState::Usable);
        assert_eq!(state(&link, link.expires_at), LinkState::Expired);
    }

    #[test]
    fn logged_paths_never_hold_a_link_token() {
        let token = random_token();
        assert_eq!(redact_path(&format!("/invite/{token}")), "/invite/{token}");
        assert_eq!(
            redact_path(&format!("/auth/reset/{token}")),
            "/auth/reset/{token}"
        );
        // Anything after the segment: the router decodes %-escapes, so these are the token.
        assert_eq!(redact_path("/invite/short"), "/invite/{token}");
        let encoded: String = token
            .chars()
            .map(|c| format!("%{:02X}", c as u32))
            .collect();
        assert_eq!(
            redact_path(&format!("/invite/{encoded}")),
            "/invite/{token}"
        );
        assert_eq!(redact_path(&format!("/reset/{token}/")), "/reset/{token}");
        assert_eq!(redact_path("/invite/"), "/invite/");
        // Spellings the router does not take still never log the token.
        assert_eq!(
            redact_path(&format!("/%69nvite/{token}")),
            "/invite/{token}"
        );
        assert_eq!(
            redact_path(&format!("/invite%2F{token}")),
            "/invite/{token}"
        );
        assert_eq!(redact_path(&format!("/reset%2f{token}")), "/reset/{token}");
        assert_eq!(redact_path("/jitsi/a%20room"), "/jitsi/a%20room");
        assert_eq!(redact_path("/invite"), "/invite");
        assert_eq!(redact_path("/jitsi/room"), "/jitsi/room");
        assert_eq!(redact_path("/"), "/");
    }

    #[tokio::test]
    async fn bad_invites_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let bad = [
            NewInvite {
                uses: Some(0),
                ..Default::default()
            },
            NewInvite {
                expires_in: Some(0),
                ..Default::default()
            },
            NewInvite {
                email: Some("not-an-email".into()),
                ..Default::default()
            },
            NewInvite {
                groups: vec!["a,b".into()],
                ..Default::default()
            },
            NewInvite {
                note: Some("x".repeat(201)),
                ..Default::default()
            },
        ];
        for new in bad {
            let what = format!("{new:?}");
            assert!(
                matches!(
                    create_invite(&s, new, NOW).await,
                    Err(LinkError::Invalid(_))
                ),
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn redeeming_gives_the_use_back_when_the_account_cannot_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let (token, link) = create_invite(
            &s,
            NewInvite {
                groups: vec!["family".into()],
                created_by: "cli".into(),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        users::create(
            &s,
            NewUser {
                username: "carol".into(),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        let taken = redeem_invite(&s, &token, "carol", "hash".into(), NOW).await;
        assert!(matches!(
            taken,
            Err(RedeemError::Account(AccountError::UsernameTaken(_)))
        ));
        let (user, _) = redeem_invite(&s, &token, "carol2", "hash".into(), NOW)
            .await
            .unwrap();
        assert_eq!(user.groups, ["family"]);
        assert!(matches!(
            redeem_invite(&s, &token, "carol3", "hash".into(), NOW).await,
            Err(RedeemError::Gone)
        ));
        let found = s.find_link(&link.token_hash, NOW).await.unwrap().unwrap();
        assert_eq!(state(&found, NOW), LinkState::UsedUp);
        assert!(matches!(
            redeem_invite(&s, "short", "carol4", "hash".into(), NOW).await,
            Err(RedeemError::Gone)
        ));
    }

    #[tokio::test]
    async fn a_reset_link_is_single_use_for_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let user = users::create(
            &s,
            NewUser {
                username: "dave".into(),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        let (token, link) = create_reset(&s, &user.id, "alice", None, NOW)
            .await
            .unwrap();
        assert_eq!(link.expires_at, NOW + 86_400);
        assert_eq!(link.user_id.as_deref(), Some(user.id.as_str()));
        assert_eq!(
            url("https://id.example", LinkKind::Reset, &token),
            format!("https://id.example/reset/{token}")
        );
        // Not an invite.
        assert!(matches!(
            redeem_invite(&s, &token, "eve", "hash".into(), NOW).await,
            Err(RedeemError::Gone)
        ));
        assert!(s
            .take_link_use(&digest(&token), LinkKind::Reset, NOW)
            .await
            .unwrap()
            .is_some());
        assert!(s
            .take_link_use(&digest(&token), LinkKind::Reset, NOW)
            .await
            .unwrap()
            .is_none());
    }
}
