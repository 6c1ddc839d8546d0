//! Email confirmation: when a user changes their email on /account and `[smtp]` is set, a
//! single-use link (24 hours) is mailed to the new address; opening it and confirming marks
//! the email verified, but only if the account's email still is the one the link was made
//! for (a later change makes older links worthless). The same token machinery as invites and
//! resets (`links`); no HTTP here.

use crate::accounts::links;
use crate::secrets::{digest, random_token, to_hex};
use crate::store::{Link, LinkKind, Store, StoreError, Timestamp, User};

/// Where confirmation links open (`{issuer}/account/confirm-email/{token}`).
pub const CONFIRM_PATH: &str = "/account/confirm-email";
/// A confirmation link lasts this long (24 hours).
pub const LIFETIME: i64 = 86_400;
/// Confirmation links (so mails) per account per [`WINDOW`]: each email change mails the
/// typed address, which must not make doorman mail any address without end.
pub const PER_ACCOUNT: u32 = 3;
/// The window of [`PER_ACCOUNT`] (an hour).
pub const WINDOW: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// Expired, used, revoked, unknown, or the account is gone, disabled or has another email
    /// by now.
    #[error("the confirmation link can no longer be used")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a confirmation link for `user`'s address `email`; returns the token and the link,
/// or None when the account had [`PER_ACCOUNT`] links this hour already (counted in the store
/// in one statement, so a parallel burst cannot overrun it).
pub async fn create(
    store: &dyn Store,
    user: &User,
    email: &str,
    now: Timestamp,
) -> Result<Option<(String, Link)>, StoreError> {
    let token = random_token();
    let link = Link {
        id: to_hex(
            &digest(&random_token())
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<u8>>(),
        ),
        token_hash: links::token_hash(&token),
        kind: LinkKind::Confirm,
        groups: Vec::new(),
        email: Some(email.to_string()),
        email_verified: false,
        note: None,
        user_id: Some(user.id.clone()),
        uses: 1,
        uses_left: 1,
        created_by: user.username.clone(),
        created_at: now,
        expires_at: now.saturating_add(LIFETIME),
        revoked_at: None,
    };
    let since = now.saturating_sub(WINDOW - 1);
    Ok(store
        .create_link_limited(&link, PER_ACCOUNT, since)
        .await?
        .then_some((token, link)))
}

/// Whether `link` still speaks for `user`'s current email.
pub fn still_matches(link: &Link, user: &User) -> bool {
    !user.disabled
        && link.user_id.as_deref() == Some(user.id.as_str())
        && matches!((&link.email, &user.email), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

/// The usable confirmation link of `token` and its account (without using it), if any.
pub async fn find(
    store: &dyn Store,
    token: &str,
    now: Timestamp,
) -> Result<(Link, User), ConfirmError> {
    if !links::well_formed_token(token) {
        return Err(ConfirmError::Gone);
    }
    let link = store
        .find_link(&links::token_hash(token), now)
        .await?
        .filter(|l| l.kind == LinkKind::Confirm && links::state(l, now) == links::LinkState::Usable)
        .ok_or(ConfirmError::Gone)?;
    let user = match link.user_id.as_deref() {
        Some(id) => store.get_user(id).await?,
        None => None,
    }
    .filter(|u| still_matches(&link, u))
    .ok_or(ConfirmError::Gone)?;
    Ok((link, user))
}

/// Uses the link `token` (atomically, once) and marks the account's email verified if it is
/// still the link's.
pub async fn confirm(store: &dyn Store, token: &str, now: Timestamp) -> Result<User, ConfirmError> {
    if !links::well_formed_token(token) {
        return Err(ConfirmError::Gone);
    }
    let link = store
        .take_link_use(&links::token_hash(token), LinkKind::Confirm, now)
        .await?
        .ok_or(ConfirmError::Gone)?;
    let user = match link.user_id.as_deref() {
        Some(id) => store.get_user(id).await?,
        None => None,
    }
    .filter(|u| still_matches(&link, u))
    .ok_or(ConfirmError::Gone)?;
    // Only the verified flag, and only while the email is still the link's: a profile change
    // made meanwhile is neither undone nor verified.
    let email = link.email.as_deref().unwrap_or_default();
    if !store.mark_email_verified(&user.id, email, now).await? {
        return Err(ConfirmError::Gone);
    }
    Ok(User {
        email_verified: true,
        ..user
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::users::{self, NewUser};
    use crate::store::sqlite::SqliteStore;

    const NOW: Timestamp = 1_700_000_000;

    #[test]
    fn logged_paths_never_hold_a_confirmation_token() {
        let token = random_token();
        assert_eq!(
            links::redact_path(&format!("/account/confirm-email/{token}")),
            "/account/confirm-email/{token}"
        );
    }

    /// Review: each email change on /account mails a link to the typed address; without a
    /// limit a signed-in user could make doorman mail any address without end.
    #[tokio::test]
    async fn at_most_a_few_confirmation_links_per_account_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let user = users::create(
            &s,
            NewUser {
                username: "carol".into(),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        for n in 0..PER_ACCOUNT {
            let to = format!("victim{n}@example.org");
            assert!(create(&s, &user, &to, NOW).await.unwrap().is_some(), "{n}");
        }
        assert!(create(&s, &user, "victim@example.org", NOW + 60)
            .await
            .unwrap()
            .is_none());
        assert!(create(&s, &user, "victim@example.org", NOW + WINDOW)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_link_confirms_the_email_it_was_made_for_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let user = users::create(
            &s,
            NewUser {
                username: "carol".into(),
                email: Some("carol@new.example".into()),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
        assert!(!user.email_verified);
        let (token, link) = create(&s, &user, "carol@new.example", NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            links::url("https://id.example", LinkKind::Confirm, &token),
            format!("https://id.example/account/confirm-email/{token}")
        );
        assert_eq!(link.expires_at, NOW + 86_400);
        assert!(find(&s, &token, NOW).await.is_ok());
        let done = confirm(&s, &token, NOW).await.unwrap();
        assert!(done.email_verified);
        assert!(s.get_user(&user.id).await.unwrap().unwrap().email_verified);
        assert!(matches!(
            confirm(&s, &token, NOW).await,
            Err(ConfirmError::Gone)
        ));

        // A link for an address the account no longer has confirms nothing.
        let (old, _) = create(&s, &user, "carol@old.example", NOW)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(find(&s, &old, NOW).await, Err(ConfirmError::Gone)));
        assert!(matches!(
            confirm(&s, &old, NOW).await,
            Err(ConfirmError::Gone)
        ));
        // Expired.
        let (late, _) = create(&s, &user, "carol@new.example", NOW)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            confirm(&s, &late, NOW + LIFETIME).await,
            Err(ConfirmError::Gone)
        ));
    }
}
