//! Ending a user's sign-ins from their own account page: the variant of
//! [`crate::accounts::users::end_sign_ins`] that keeps the browser doing it signed in.

use crate::accounts::users::Ended;
use crate::store::{Hash, Store, StoreResult, Timestamp};

/// Ends every SSO session of the user except `keep` (forward-auth sessions end with theirs)
/// and revokes every grant (so every refresh and access token): whoever knew the old password,
/// or holds another session, is signed out; this browser stays signed in. Another process's
/// caches see it within their TTL. `keep_sid` is the kept session's public `sid`: the
/// applications of every other session get a back-channel logout (`Ended::logouts`); this
/// session goes on, so its own are not told (their grants are revoked all the same).
pub async fn end_other_sign_ins(
    store: &dyn Store,
    user_id: &str,
    keep: &Hash,
    keep_sid: &str,
    now: Timestamp,
) -> StoreResult<Ended> {
    let logouts = store
        .session_clients(user_id, None)
        .await?
        .into_iter()
        .filter(|c| c.sid.as_deref() != Some(keep_sid))
        .collect();
    let sessions = store.delete_user_sessions_except(user_id, keep).await?;
    let grants = store.revoke_user_grants(user_id, now).await?;
    Ok(Ended {
        sessions,
        grants,
        logouts,
    })
}

/// Ends the other SSO sessions of the user and the grants made in them (`sid_of` gives a
/// session's public `sid`, which its grants carry): whoever holds another session loses the
/// applications they signed in to through it as well. Grants made in this session stay.
pub async fn end_other_sessions(
    store: &dyn Store,
    user_id: &str,
    keep: &Hash,
    now: Timestamp,
    sid_of: impl Fn(&crate::store::Session) -> String,
) -> StoreResult<Ended> {
    let others: Vec<String> = store
        .list_user_sessions(user_id, now)
        .await?
        .iter()
        .filter(|s| s.id_hash != *keep)
        .map(&sid_of)
        .collect();
    let mut logouts = Vec::new();
    for sid in &others {
        logouts.extend(store.session_clients(user_id, Some(sid)).await?);
    }
    let sessions = store.delete_user_sessions_except(user_id, keep).await?;
    let mut grants = 0;
    for sid in &others {
        grants += store.revoke_session_grants(user_id, sid, now).await?.len() as u64;
    }
    Ok(Ended {
        sessions,
        grants,
        logouts,
    })
}
