//! The second factor of a local account: TOTP (RFC 6238) and recovery codes. Checking a code,
//! enrolling an authenticator app, and making new recovery codes, as plain functions over the
//! store. The TOTP secret is stored sealed with `secret_key`; recovery codes only as hashes; a
//! TOTP step accepted once is refused ever after (atomically in the store, so two replicas
//! cannot both accept one code).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::accounts::{recovery, totp};
use crate::secrets::SecretBox;
use crate::store::{Store, StoreResult, Timestamp};

use super::SecondFactorKind;

/// What a typed code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// A right TOTP code of a step not used before.
    Accepted(SecondFactorKind),
    /// Wrong, replayed, or a recovery code already used.
    Wrong,
}

/// Does the user have a second factor?
pub async fn has_one(store: &dyn Store, user_id: &str) -> StoreResult<bool> {
    Ok(store.get_totp(user_id).await?.is_some())
}

/// Checks `typed` for the user: a TOTP code (previous, current or next step, each step once),
/// or one of their unused recovery codes (used up by this call).
pub async fn check_code(
    store: &dyn Store,
    cipher: &SecretBox,
    user_id: &str,
    typed: &str,
    now: Timestamp,
) -> StoreResult<CodeCheck> {
    if let Some(t) = store.get_totp(user_id).await? {
        if let Some(secret) = cipher.open(&t.secret) {
            if let Some(step) = totp::matching_step(&secret, typed, now) {
                return Ok(if store.accept_totp_step(user_id, step).await? {
                    CodeCheck::Accepted(SecondFactorKind::Totp)
                } else {
                    CodeCheck::Wrong
                });
            }
        } else {
            tracing::error!(user = %user_id, "the stored TOTP secret cannot be decrypted: secret_key changed? `doorman user reset-2fa` lets the user enrol again");
        }
    }
    if let Some(code) = recovery::normalise(typed) {
        if store
            .use_recovery_code(user_id, &recovery::hash(&code), now)
            .await?
        {
            return Ok(CodeCheck::Accepted(SecondFactorKind::RecoveryCode));
        }
    }
    Ok(CodeCheck::Wrong)
}

/// A new TOTP secret for an enrolment, sealed for the flow (base64url), and the secret.
pub fn pending_secret(cipher: &SecretBox) -> Option<(String, Vec<u8>)> {
    let secret = totp::new_secret();
    let sealed = cipher.seal(&secret)?;
    Some((URL_SAFE_NO_PAD.encode(sealed), secret))
}

/// The secret of a pending enrolment.
pub fn open_pending(cipher: &SecretBox, sealed: &str) -> Option<Vec<u8>> {
    cipher.open(&URL_SAFE_NO_PAD.decode(sealed).ok()?)
}

/// What the enrolment page shows for a secret.
pub struct EnrolView {
    pub uri: String,
    /// Base32 in groups of four.
    pub secret: String,
    pub qr_svg: String,
}

pub fn enrol_view(issuer_label: &str, account: &str, secret: &[u8]) -> EnrolView {
    let uri = totp::otpauth_uri(issuer_label, account, secret);
    EnrolView {
        secret: totp::grouped(&totp::base32(secret)),
        qr_svg: crate::accounts::qr::svg(&uri).unwrap_or_default(),
        uri,
    }
}

/// Finishes an enrolment when `typed` is the secret's code now: TOTP is on (replacing any
/// earlier app), that step counts as used, and the answer is the new recovery codes (shown
/// once). None: the code is not right.
pub async fn enrol(
    store: &dyn Store,
    cipher: &SecretBox,
    user_id: &str,
    secret: &[u8],
    typed: &str,
    now: Timestamp,
) -> StoreResult<Option<Vec<String>>> {
    let Some(step) = totp::matching_step(secret, typed, now) else {
        return Ok(None);
    };
    let Some(sealed) = cipher.seal(secret) else {
        return Err(crate::store::StoreError::Unavailable(
            "cannot encrypt the TOTP secret".into(),
        ));
    };
    let codes = recovery::generate();
    let hashes: Vec<_> = codes.iter().map(|c| recovery::hash(c)).collect();
    store.enable_totp(user_id, &sealed, &hashes, now).await?;
    // The code that turned it on must not sign in a second time.
    store.accept_totp_step(user_id, step).await?;
    Ok(Some(codes))
}

/// A new set of recovery codes (the old set stops working), shown once.
pub async fn new_recovery_codes(
    store: &dyn Store,
    user_id: &str,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let codes = recovery::generate();
    let hashes: Vec<_> = codes.iter().map(|c| recovery::hash(c)).collect();
    store.replace_recovery_codes(user_id, &hashes, now).await?;
    Ok(codes)
}

/// The "download as text" link of a set of codes.
pub fn download_href(codes: &[String]) -> String {
    let text = recovery::as_text(codes);
    let encoded = percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC);
    format!("data:text/plain;charset=utf-8,{encoded}")
}
