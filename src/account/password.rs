//! Checking the current password on the account page: counted in the per-account lockout
//! before any hashing, exactly as a sign-in's password step is, then argon2 on the bounded
//! queue. No HTTP.

use std::net::IpAddr;

use crate::accounts::lockout::Lockout;
use crate::accounts::PasswordHasher;
use crate::signin::limits::IpKey;
use crate::store::{StoreResult, Timestamp, User};

/// The answer to a typed current password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    Right,
    /// Wrong (or the account has no password): counted as a failure.
    Wrong,
    /// Refused before any hashing: wait this many seconds.
    Locked(i64),
    /// The argon2 queue is full: nothing counted.
    Busy,
}

/// Checks `typed` against the user's password. A right password settles its reservation as
/// unused (not a failure, and no reset of the failures counted so far: a session alone does
/// not prove the second factor again).
pub async fn check(
    lockout: &Lockout,
    hasher: &PasswordHasher,
    user: &User,
    typed: &str,
    ip: IpAddr,
    now: Timestamp,
) -> StoreResult<Current> {
    if typed.is_empty() || typed.len() > crate::accounts::password_policy::MAX_LENGTH {
        return Ok(Current::Wrong);
    }
    let reservation = match lockout
        .reserve(&user.id, &IpKey::of(ip).to_string(), now)
        .await?
    {
        Ok(r) => r,
        Err(retry_after) => return Ok(Current::Locked(retry_after)),
    };
    let Ok(admission) = hasher.admit() else {
        reservation.unused(now).await?;
        return Ok(Current::Busy);
    };
    if admission
        .verify(user.password_hash.clone(), typed.to_string())
        .await
    {
        reservation.unused(now).await?;
        Ok(Current::Right)
    } else {
        // The reservation stays counted: a failure.
        drop(reservation);
        Ok(Current::Wrong)
    }
}
