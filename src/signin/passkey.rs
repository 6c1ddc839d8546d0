//! Passkey ceremonies over the store, free of HTTP: start one (a challenge kept in the store,
//! bound to the sign-in flow or the SSO session that asked, so any replica can finish it) and
//! finish it (the challenge taken once, the answer verified by `accounts::webauthn`, the
//! credential's owner and counter checked). Three ceremonies: enrolment, a passkey as the
//! second factor after a password, and passwordless sign-in with a discoverable credential.
//!
//! What a passkey proves is published in `amr` (RFC 8176): `hwk` for a key bound to one
//! authenticator, `swk` for one that may be synced (backup eligible). After a password:
//! `["pwd", "hwk"]`; alone, with the user verified by the authenticator (PIN or biometric):
//! `["hwk", "user", "mfa"]`, two factors in one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::accounts::webauthn::{self, Allowed, Rp, UserEntity, Uv, WebauthnError};
use crate::config::{Config, SecondFactorPolicy};
use crate::secrets::{digest_bytes, random_id};
use crate::store::{Hash, Passkey, PasskeyChallenge, Store, StoreError, Timestamp, User};

/// How long a ceremony's challenge stays usable (also bounded by its flow's expiry).
pub const CHALLENGE_LIFETIME: i64 = 5 * 60;
/// The longest passkey name kept.
pub const MAX_NAME: usize = 64;
/// Passkeys one account may have.
pub const MAX_PER_USER: usize = 20;

/// The relying party, when passkeys are on: `[login] passkeys`, second factors not off, and
/// an issuer whose host is a name (never an IP address).
pub fn relying_party(config: &Config) -> Option<Rp> {
    if !config.login.passkeys || config.login.require_second_factor == SecondFactorPolicy::Off {
        return None;
    }
    Rp::from_issuer(&config.issuer)
}

/// The start-up warning when passkeys are not offered (`[login] passkeys = false`, second
/// factors off, or an IP issuer) but `accounts` accounts have some: they are kept, and an
/// account whose only factor is a passkey signs in with a recovery code meanwhile.
pub fn stranded_passkeys(accounts: usize) -> Option<String> {
    (accounts > 0).then(|| {
        format!(
            "{accounts} account(s) have passkeys, but passkeys are not offered (see [login] passkeys, \
             require_second_factor and the issuer's host): accounts whose only second factor is a \
             passkey sign in with a recovery code until passkeys are back, or after `doorman user reset-2fa NAME`"
        )
    })
}

/// What a stored challenge is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ceremony {
    /// Add a passkey to `user_id`'s account: discoverable (`resident`: it can sign in alone,
    /// where the authenticator verifies the user) or not.
    Enrol { user_id: String, resident: bool },
    /// The second factor of `user_id`, after their password.
    SecondFactor { user_id: String },
    /// Sign in with a discoverable credential: no username, no password.
    Passwordless,
}

impl Ceremony {
    /// User verification: required to sign in without a password; preferred otherwise,
    /// also at enrolment, so a security key without a PIN can still be a second factor.
    fn uv(&self) -> Uv {
        match self {
            Ceremony::Passwordless => Uv::Required,
            Ceremony::Enrol { .. } | Ceremony::SecondFactor { .. } => Uv::Preferred,
        }
    }
}

/// Why a ceremony failed. The user sees one sentence per kind; the log gets the detail.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The browser's answer does not verify (origin, rp id, challenge, signature, ...).
    #[error("refused: {0}")]
    Refused(#[from] WebauthnError),
    /// No live challenge of this flow or session matches (used, expired, or another's).
    #[error("the challenge is unknown, used or expired")]
    NoChallenge,
    /// The credential is not registered here.
    #[error("the credential is not registered")]
    Unknown,
    /// The credential (or its user handle) belongs to another user than the ceremony's.
    #[error("the credential belongs to user {owner}, not the one signing in")]
    OtherUser { owner: String },
    /// The sign counter did not grow: a cloned authenticator, or a replayed assertion.
    #[error("the sign counter went from {stored} to {sent}: a cloned authenticator?")]
    Counter { stored: u32, sent: u32 },
    /// The credential is registered already (to this user or another).
    #[error("the credential is registered already")]
    Duplicate,
    /// The account has as many passkeys as it may.
    #[error("too many passkeys")]
    TooMany,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for PasskeyError {
    fn from(e: StoreError) -> PasskeyError {
        match e {
            StoreError::Conflict {
                field: "credential",
            } => PasskeyError::Duplicate,
            e => PasskeyError::Store(e),
        }
    }
}

/// The options for `navigator.credentials`: stores a new challenge for `ceremony`, bound to
/// `binding` (a flow id digest or a session id hash) until `expires_at` (at most
/// [`CHALLENGE_LIFETIME`] from now). The JSON is `{"publicKey": {...}}` for a create
/// (enrolment) or a get.
pub async fn start(
    store: &dyn Store,
    rp: &Rp,
    ceremony: &Ceremony,
    user: Option<&User>,
    binding: &Hash,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<serde_json::Value, PasskeyError> {
    let challenge = webauthn::new_challenge();
    let uv = ceremony.uv();
    let options = match (ceremony, user) {
        (Ceremony::Enrol { resident, .. }, Some(user)) => {
            let existing = allowed(&store.list_passkeys(&user.id).await?);
            let display = user.name.as_deref().unwrap_or(&user.username);
            let entity = UserEntity {
                handle: user.id.as_bytes(),
                name: &user.username,
                display_name: display,
            };
            webauthn::creation_options(rp, &entity, &challenge, &existing, uv, *resident)
        }
        (Ceremony::SecondFactor { .. }, Some(user)) => {
            let mine = allowed(&store.list_passkeys(&user.id).await?);
            webauthn::request_options(rp, &challenge, &mine, uv)
        }
        (Ceremony::Passwordless, _) => webauthn::request_options(rp, &challenge, &[], uv),
        (_, None) => return Err(PasskeyError::NoChallenge),
    };
    store
        .put_passkey_challenge(&PasskeyChallenge {
            challenge_hash: digest_bytes(&challenge),
            binding_hash: *binding,
            // A derived Serialize of strings cannot fail.
            ceremony: serde_json::to_string(ceremony).unwrap_or_default(),
            expires_at: expires_at.min(now + CHALLENGE_LIFETIME),
        })
        .await?;
    Ok(serde_json::json!({ "publicKey": options }))
}

fn allowed(passkeys: &[Passkey]) -> Vec<Allowed> {
    passkeys
        .iter()
        .map(|p| Allowed {
            id: p.credential_id.clone(),
            transports: p.transports.clone(),
        })
        .collect()
}

/// The challenge the browser signed, read from its clientDataJSON (verified again, with
/// everything else, by `accounts::webauthn`).
fn signed_challenge(client_data_json: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct ClientData {
        challenge: String,
    }
    let data: ClientData = serde_json::from_slice(client_data_json).ok()?;
    URL_SAFE_NO_PAD
        .decode(data.challenge.trim_end_matches('='))
        .ok()
}

/// Takes (once) the challenge the browser answered, issued to `binding`: its ceremony.
async fn take(
    store: &dyn Store,
    binding: &Hash,
    client_data_json: &[u8],
    now: Timestamp,
) -> Result<(Vec<u8>, Ceremony), PasskeyError> {
    let challenge = signed_challenge(client_data_json).ok_or(PasskeyError::NoChallenge)?;
    let ceremony = store
        .take_passkey_challenge(&digest_bytes(&challenge), binding, now)
        .await?
        .ok_or(PasskeyError::NoChallenge)?;
    let ceremony = serde_json::from_str(&ceremony).map_err(|_| PasskeyError::NoChallenge)?;
    Ok((challenge, ceremony))
}

/// A passkey added to an account.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub passkey: Passkey,
    /// It is the account's first second factor: recovery codes are due (shown once).
    pub first_factor: bool,
}

/// Finishes an enrolment for `user_id` from the posted `registration` JSON: the challenge of
/// `binding` taken once, the registration verified, and the passkey stored with `name`.
#[allow(clippy::too_many_arguments)]
pub async fn finish_enrol(
    store: &dyn Store,
    rp: &Rp,
    binding: &Hash,
    user_id: &str,
    had_factor: bool,
    registration: &str,
    name: &str,
    now: Timestamp,
) -> Result<Enrolled, PasskeyError> {
    let reg = webauthn::parse_registration(registration)?;
    let (challenge, ceremony) = take(store, binding, &reg.client_data_json, now).await?;
    let Ceremony::Enrol {
        user_id: for_user,
        resident,
    } = &ceremony
    else {
        return Err(PasskeyError::NoChallenge);
    };
    if for_user != user_id {
        return Err(PasskeyError::OtherUser {
            owner: for_user.clone(),
        });
    }
    let new = webauthn::verify_registration(rp, &challenge, ceremony.uv(), &reg)?;
    if store.list_passkeys(user_id).await?.len() >= MAX_PER_USER {
        return Err(PasskeyError::TooMany);
    }
    let passkey = Passkey {
        id: random_id(12),
        credential_id: new.id,
        user_id: user_id.to_string(),
        public_key: new.public_key,
        alg: new.alg,
        sign_count: new.sign_count,
        transports: reg.transports,
        name: clean_name(name),
        aaguid: Some(new.aaguid.to_vec()),
        backup_eligible: new.backup_eligible,
        backed_up: new.backed_up,
        discoverable: *resident,
        created_at: now,
        last_used_at: None,
    };
    store.add_passkey(&passkey).await?;
    Ok(Enrolled {
        passkey,
        first_factor: !had_factor,
    })
}

/// A passkey name as kept: trimmed, control characters dropped, at most [`MAX_NAME`]
/// characters; "Passkey" when nothing is left.
pub fn clean_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    let kept = kept.trim();
    if kept.is_empty() {
        "Passkey".to_string()
    } else {
        kept.to_string()
    }
}

/// Who an assertion may be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// The second factor of this user (their password is proved).
    User(&'a str),
    /// Anyone with a discoverable credential here (passwordless).
    Anyone,
}

/// A verified passkey sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedWith {
    pub user_id: String,
    /// `hwk` or `swk`.
    pub method: &'static str,
    pub passkey_name: String,
}

impl SignedWith {
    /// The session's `amr` after the first factor `amr` (none: passwordless).
    pub fn amr(&self, first: Option<&[String]>) -> Vec<String> {
        match first {
            Some(first) => amr_after(first, self.method),
            None => vec![self.method.to_string(), "user".into(), "mfa".into()],
        }
    }
}

/// `amr` after a first factor `first` and a passkey of `method` (`hwk`/`swk`).
pub fn amr_after(first: &[String], method: &str) -> Vec<String> {
    let mut out = first.to_vec();
    if !out.iter().any(|m| m == method) {
        out.push(method.to_string());
    }
    out
}

/// Finishes an assertion from the posted JSON: the challenge of `binding` taken once (and of
/// the expected kind), the credential found, its owner the expected one (and, without a
/// username, the user handle the authenticator returned that owner's), the signature
/// verified with the stored key, and the counter moved on in one conditional write.
pub async fn finish_assertion(
    store: &dyn Store,
    rp: &Rp,
    binding: &Hash,
    expect: Expect<'_>,
    assertion: &str,
    now: Timestamp,
) -> Result<SignedWith, PasskeyError> {
    let sent = webauthn::parse_assertion(assertion)?;
    let (challenge, ceremony) = take(store, binding, &sent.client_data_json, now).await?;
    match (&ceremony, expect) {
        (Ceremony::SecondFactor { user_id }, Expect::User(expected)) if user_id == expected => {}
        (Ceremony::Passwordless, Expect::Anyone) => {}
        _ => return Err(PasskeyError::NoChallenge),
    }
    let passkey = store
        .find_passkey(&sent.raw_id)
        .await?
        .ok_or(PasskeyError::Unknown)?;
    let handle_ok = match (&sent.user_handle, expect) {
        (Some(handle), _) => handle.as_slice() == passkey.user_id.as_bytes(),
        // A discoverable credential always returns its handle; without one nobody is named.
        (None, Expect::Anyone) => false,
        (None, Expect::User(_)) => true,
    };
    let owner_ok = match expect {
        Expect::User(expected) => passkey.user_id == expected,
        Expect::Anyone => true,
    };
    if !handle_ok || !owner_ok {
        return Err(PasskeyError::OtherUser {
            owner: passkey.user_id,
        });
    }
    let verified = webauthn::verify_assertion(
        rp,
        &challenge,
        ceremony.uv(),
        &passkey.public_key,
        passkey.alg,
        &sent,
    )?;
    let counter = PasskeyError::Counter {
        stored: passkey.sign_count,
        sent: verified.sign_count,
    };
    if !webauthn::counter_ok(passkey.sign_count, verified.sign_count)
        || !store
            .use_passkey(&passkey.id, verified.sign_count, verified.backed_up, now)
            .await?
    {
        return Err(counter);
    }
    Ok(SignedWith {
        user_id: passkey.user_id,
        method: webauthn::amr_method(passkey.backup_eligible),
        passkey_name: passkey.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_never_empty() {
        assert_eq!(clean_name("  My phone \n"), "My phone");
        assert_eq!(clean_name("a\u{7}b"), "ab");
        assert_eq!(clean_name("   "), "Passkey");
        assert_eq!(clean_name(&"x".repeat(200)).chars().count(), MAX_NAME);
    }

    #[test]
    fn amr_of_a_passkey() {
        let s = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        let signed = SignedWith {
            user_id: "u".into(),
            method: "hwk",
            passkey_name: "k".into(),
        };
        assert_eq!(signed.amr(Some(&s(&["pwd"]))), s(&["pwd", "hwk"]));
        assert_eq!(signed.amr(None), s(&["hwk", "user", "mfa"]));
        assert!(crate::oidc::claims::two_factors(&signed.amr(None)));
        assert_eq!(amr_after(&s(&["pwd", "hwk"]), "hwk"), s(&["pwd", "hwk"]));
    }

    #[test]
    fn stranded_passkeys_are_said_once_there_are_any() {
        assert_eq!(stranded_passkeys(0), None);
        let line = stranded_passkeys(3).unwrap();
        assert!(
            line.contains("3 account(s)") && line.contains("recovery code"),
            "{line}"
        );
    }

    #[test]
    fn verification_is_required_only_without_a_password() {
        assert_eq!(Ceremony::Passwordless.uv(), Uv::Required);
        let user_id = "u".to_string();
        assert_eq!(Ceremony::SecondFactor { user_id }.uv(), Uv::Preferred);
    }
}
