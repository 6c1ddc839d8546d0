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

/// Does the user have a second factor (an authenticator app or a passkey)?
pub async fn has_one(store: &dyn Store, user_id: &str) -> StoreResult<bool> {
    Ok(has_totp(store, user_id).await? || !store.list_passkeys(user_id).await?.is_empty())
}

/// Does the user have an authenticator app?
pub async fn has_totp(store: &dyn Store, user_id: &str) -> StoreResult<bool> {
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
            .use_recovery_code(user_id, &code_hash(cipher, user_id, &code), now)
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
    let hashes = hashes_of(cipher, user_id, &codes);
    store.enable_totp(user_id, &sealed, &hashes, now).await?;
    // The code that turned it on must not sign in a second time.
    store.accept_totp_step(user_id, step).await?;
    Ok(Some(codes))
}

/// A new set of recovery codes (the old set stops working), shown once.
pub async fn new_recovery_codes(
    store: &dyn Store,
    cipher: &SecretBox,
    user_id: &str,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let codes = recovery::generate();
    let hashes = hashes_of(cipher, user_id, &codes);
    store.replace_recovery_codes(user_id, &hashes, now).await?;
    Ok(codes)
}

/// What the store keeps of a set of codes: a keyed hash (under `secret_key`) of the user and
/// each code's typed-in form. The codes carry ~50 bits: a plain hash in a copied database
/// could be searched through; this one cannot without the key.
fn hashes_of(cipher: &SecretBox, user_id: &str, codes: &[String]) -> Vec<crate::store::Hash> {
    codes
        .iter()
        .filter_map(|c| recovery::normalise(c))
        .map(|c| code_hash(cipher, user_id, &c))
        .collect()
}

fn code_hash(cipher: &SecretBox, user_id: &str, normalised: &str) -> crate::store::Hash {
    cipher.mac(&[b"recovery code", user_id.as_bytes(), normalised.as_bytes()])
}

/// The "download as text" link of a set of codes.
pub fn download_href(codes: &[String]) -> String {
    let text = recovery::as_text(codes);
    let encoded = percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC);
    format!("data:text/plain;charset=utf-8,{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::User;

    async fn setup() -> (tempfile::TempDir, SqliteStore, SecretBox) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let user = User {
            id: "u1".into(),
            username: "alice".into(),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec![],
            password_hash: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        };
        store.create_user(&user).await.unwrap();
        let cipher = SecretBox::new("0123456789abcdef0123456789abcdef").unwrap();
        (dir, store, cipher)
    }

    const NOW: Timestamp = 1_800_000_000;

    #[tokio::test]
    async fn enrolment_needs_the_right_code_and_that_code_is_used_up() {
        let (_d, store, cipher) = setup().await;
        let (sealed, secret) = pending_secret(&cipher).unwrap();
        assert_eq!(open_pending(&cipher, &sealed).unwrap(), secret);
        assert!(!has_one(&store, "u1").await.unwrap());
        let step = totp::step_at(NOW);
        let wrong = if totp::code_at(&secret, step) == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(
            enrol(&store, &cipher, "u1", &secret, wrong, NOW)
                .await
                .unwrap(),
            None
        );
        assert!(!has_one(&store, "u1").await.unwrap());
        let code = totp::code_at(&secret, step);
        let codes = enrol(&store, &cipher, "u1", &secret, &code, NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(codes.len(), recovery::COUNT);
        assert!(has_one(&store, "u1").await.unwrap());
        // The code that turned it on does not sign in.
        assert_eq!(
            check_code(&store, &cipher, "u1", &code, NOW).await.unwrap(),
            CodeCheck::Wrong
        );
        // The next step's code does, once.
        let next = totp::code_at(&secret, step + 1);
        let later = NOW + totp::PERIOD;
        assert_eq!(
            check_code(&store, &cipher, "u1", &next, later)
                .await
                .unwrap(),
            CodeCheck::Accepted(SecondFactorKind::Totp)
        );
        assert_eq!(
            check_code(&store, &cipher, "u1", &next, later)
                .await
                .unwrap(),
            CodeCheck::Wrong,
            "a replayed code is refused"
        );
    }

    #[tokio::test]
    async fn recovery_codes_sign_in_once_each_and_a_new_set_voids_the_old() {
        let (_d, store, cipher) = setup().await;
        let (_, secret) = pending_secret(&cipher).unwrap();
        let code = totp::code_at(&secret, totp::step_at(NOW));
        let codes = enrol(&store, &cipher, "u1", &secret, &code, NOW)
            .await
            .unwrap()
            .unwrap();
        let first = codes.first().unwrap().to_uppercase().replace('-', " ");
        assert_eq!(
            check_code(&store, &cipher, "u1", &first, NOW)
                .await
                .unwrap(),
            CodeCheck::Accepted(SecondFactorKind::RecoveryCode),
            "typed in capitals with a space"
        );
        assert_eq!(
            check_code(&store, &cipher, "u1", &first, NOW)
                .await
                .unwrap(),
            CodeCheck::Wrong
        );
        assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 9);
        let fresh = new_recovery_codes(&store, &cipher, "u1", NOW)
            .await
            .unwrap();
        let old = codes.get(1).unwrap();
        assert_eq!(
            check_code(&store, &cipher, "u1", old, NOW).await.unwrap(),
            CodeCheck::Wrong
        );
        assert_eq!(
            check_code(&store, &cipher, "u1", fresh.first().unwrap(), NOW)
                .await
                .unwrap(),
            CodeCheck::Accepted(SecondFactorKind::RecoveryCode)
        );
    }

    #[tokio::test]
    async fn a_secret_sealed_under_another_key_checks_nothing() {
        let (_d, store, cipher) = setup().await;
        let (_, secret) = pending_secret(&cipher).unwrap();
        let code = totp::code_at(&secret, totp::step_at(NOW));
        enrol(&store, &cipher, "u1", &secret, &code, NOW)
            .await
            .unwrap()
            .unwrap();
        let other = SecretBox::new("another key another key another key").unwrap();
        let next = totp::code_at(&secret, totp::step_at(NOW) + 1);
        assert_eq!(
            check_code(&store, &other, "u1", &next, NOW + 30)
                .await
                .unwrap(),
            CodeCheck::Wrong
        );
    }

    #[test]
    fn the_download_link_is_a_text_data_url() {
        let href = download_href(&["abcde-fghjk".to_string()]);
        assert!(href.starts_with("data:text/plain;charset=utf-8,"));
        assert!(href.contains("abcde%2Dfghjk"), "{href}");
        assert!(!href.contains(' ') && !href.contains('\n'));
    }
}
