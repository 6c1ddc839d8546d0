//! A software passkey for end-to-end tests, written independently of doorman's
//! `accounts::webauthn`: it reads the options JSON the server sends (bare, or wrapped as
//! `{"publicKey": {...}}`), plays the browser and a CTAP2 authenticator (ES256, attestation
//! `none`), and returns the JSON the page's script would post back.
//!
//! Knobs to forge what a real browser never would: the `origin` given to each ceremony,
//! [`SoftAuthenticator::with_rp_id`], [`SoftAuthenticator::set_sign_count`] (a cloned
//! authenticator), [`SoftAuthenticator::user_verified`] and
//! [`SoftAuthenticator::cross_origin`].

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

/// One authenticator holding one ES256 credential.
pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    credential_id: Vec<u8>,
    backup_eligible: bool,
    /// Set by `register`: what the authenticator keeps beside the key.
    user_handle: Option<Vec<u8>>,
    rp_id: Option<String>,
    rp_id_override: Option<String>,
    sign_count: u32,
    user_verified: bool,
    cross_origin: bool,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("not base64url: {text:?}: {e}"))
}

/// The options dict, bare or wrapped as `{"publicKey": ...}`.
fn public_key(options: &Value) -> &Value {
    options.get("publicKey").unwrap_or(options)
}

fn str_at<'a>(options: &'a Value, pointer: &str) -> &'a str {
    options
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("options have no {pointer}: {options}"))
}

impl SoftAuthenticator {
    /// A new authenticator: `backup_eligible` makes it a synced passkey (BE and BS set).
    pub fn new(backup_eligible: bool) -> Self {
        SoftAuthenticator {
            key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key"),
            credential_id: rand::random::<[u8; 32]>().to_vec(),
            backup_eligible,
            user_handle: None,
            rp_id: None,
            rp_id_override: None,
            sign_count: 0,
            user_verified: true,
            cross_origin: false,
        }
    }

    /// Writes this relying-party id into authenticator data instead of the one the options
    /// name (the hash of which a real authenticator would use).
    pub fn with_rp_id(mut self, rp_id: &str) -> Self {
        self.rp_id_override = Some(rp_id.to_owned());
        self
    }

    /// Sets the counter as the authenticator keeps it: the next assertion carries `count + 1`
    /// (so `set_sign_count(0)` after two sign-ins replays a count the server has seen).
    pub fn set_sign_count(&mut self, count: u32) {
        self.sign_count = count;
    }

    /// Whether the UV flag is set (default true).
    pub fn user_verified(&mut self, verified: bool) {
        self.user_verified = verified;
    }

    /// Whether clientDataJSON says the ceremony ran in a cross-origin frame (default false).
    pub fn cross_origin(&mut self, cross_origin: bool) {
        self.cross_origin = cross_origin;
    }

    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The counter as the authenticator keeps it (the last one sent).
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// The user handle registered (the server's `user.id`), once registered.
    pub fn user_handle(&self) -> Option<&[u8]> {
        self.user_handle.as_deref()
    }

    fn flags(&self) -> u8 {
        let mut flags = UP;
        if self.user_verified {
            flags |= UV;
        }
        if self.backup_eligible {
            flags |= BE | BS;
        }
        flags
    }

    fn client_data(&self, kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        // As Chrome writes it: the challenge re-encoded from its bytes, unpadded.
        json!({
            "type": kind,
            "challenge": b64(&unb64(challenge)),
            "origin": origin,
            "crossOrigin": self.cross_origin,
        })
        .to_string()
        .into_bytes()
    }

    fn auth_data_head(&self, rp_id: &str, flags: u8) -> Vec<u8> {
        let rp_id = self.rp_id_override.as_deref().unwrap_or(rp_id);
        let mut out = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        out.push(flags);
        out.extend_from_slice(&self.sign_count.to_be_bytes());
        out
    }

    /// The COSE_Key of the credential: EC2, ES256, P-256.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(5).unwrap();
        e.i8(1).unwrap().i8(2).unwrap();
        e.i8(3).unwrap().i8(-7).unwrap();
        e.i8(-1).unwrap().i8(1).unwrap();
        e.i8(-2).unwrap().bytes(&point[1..33]).unwrap();
        e.i8(-3).unwrap().bytes(&point[33..65]).unwrap();
        e.into_writer()
    }

    /// `navigator.credentials.create`: the JSON the page posts (`rawId`, `clientDataJSON`,
    /// `attestationObject`, `transports`). Panics, as the browser would refuse, when ES256 is not
    /// offered or this credential is excluded.
    pub fn register(&mut self, options: &Value, origin: &str) -> String {
        let o = public_key(options);
        let rp_id = str_at(o, "/rp/id").to_owned();
        let user_handle = unb64(str_at(o, "/user/id"));
        let challenge = str_at(o, "/challenge");
        let algs: Vec<i64> = o["pubKeyCredParams"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["alg"].as_i64()).collect())
            .unwrap_or_default();
        assert!(algs.contains(&-7), "ES256 not offered: {o}");
        let excluded = o["excludeCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["id"].as_str().map(unb64).as_deref() == Some(&self.credential_id[..]));
        assert!(!excluded, "this authenticator's credential is excluded");

        let client_data = self.client_data("webauthn.create", challenge, origin);
        let mut auth_data = self.auth_data_head(&rp_id, self.flags() | AT);
        auth_data.extend_from_slice(&[0; 16]); // aaguid: none
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(3).unwrap();
        e.str("fmt").unwrap().str("none").unwrap();
        e.str("attStmt").unwrap().map(0).unwrap();
        e.str("authData").unwrap().bytes(&auth_data).unwrap();
        let attestation_object = e.into_writer();

        self.user_handle = Some(user_handle);
        self.rp_id = Some(rp_id);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "clientDataJSON": b64(&client_data),
            "attestationObject": b64(&attestation_object),
            "transports": ["internal"],
        })
        .to_string()
    }

    /// `navigator.credentials.get`: the JSON the page posts (`rawId`, `clientDataJSON`,
    /// `authenticatorData`, `signature`, `userHandle`), the counter one higher than the last.
    /// Panics, as the browser would find no credential, when `allowCredentials` is non-empty
    /// and does not name this one, or before `register`.
    pub fn assert(&mut self, options: &Value, origin: &str) -> String {
        let o = public_key(options);
        let rp_id = o
            .get("rpId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.rp_id.clone())
            .expect("options name no rpId and nothing was registered");
        let challenge = str_at(o, "/challenge");
        let allowed: Vec<Vec<u8>> = o["allowCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(unb64))
            .collect();
        assert!(
            allowed.is_empty() || allowed.contains(&self.credential_id),
            "this authenticator's credential is not allowed: {o}"
        );
        let user_handle = self
            .user_handle
            .clone()
            .expect("assert before register: no credential");

        self.sign_count = self.sign_count.wrapping_add(1);
        let client_data = self.client_data("webauthn.get", challenge, origin);
        let auth_data = self.auth_data_head(&rp_id, self.flags());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let signature = self
            .key
            .sign(&SystemRandom::new(), &signed)
            .expect("ECDSA signature");
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "clientDataJSON": b64(&client_data),
            "authenticatorData": b64(&auth_data),
            "signature": b64(signature.as_ref()),
            "userHandle": b64(&user_handle),
        })
        .to_string()
    }
}

/// The authenticator's output passes doorman's verifier, and each knob makes it fail the way
/// it should. No server.
#[test]
fn soft_authenticator_passes_the_verifier() {
    use doorman::accounts::webauthn::{self as w, Uv, WebauthnError};
    let rp = w::Rp::from_issuer(&url::Url::parse("http://localhost:8123/").unwrap()).unwrap();
    let origin = rp.origin.clone();
    let user = w::UserEntity {
        handle: b"u0123456789abcdef",
        name: "alice",
        display_name: "Alice",
    };
    let challenge = w::new_challenge();
    let options = w::creation_options(&rp, &user, &challenge, &[], Uv::Required, true);
    let mut auth = SoftAuthenticator::new(true);
    // Wrapped as the page may receive it.
    let posted = auth.register(&json!({ "publicKey": options }), &origin);
    let reg = w::parse_registration(&posted).unwrap();
    assert_eq!(reg.transports, vec!["internal"]);
    let cred = w::verify_registration(&rp, &challenge, Uv::Required, &reg).unwrap();
    assert_eq!(cred.id, auth.credential_id());
    assert_eq!((cred.alg, cred.sign_count), (w::ES256, 0));
    assert!(cred.uv && cred.backup_eligible && cred.backed_up);

    let verify = |auth: &mut SoftAuthenticator, origin: &str, allow: &[w::Allowed]| {
        let challenge = w::new_challenge();
        let options = w::request_options(&rp, &challenge, allow, Uv::Required);
        let assertion = w::parse_assertion(&auth.assert(&options, origin)).unwrap();
        assert_eq!(assertion.user_handle.as_deref(), Some(user.handle));
        assert_eq!(assertion.raw_id, cred.id);
        w::verify_assertion(
            &rp,
            &challenge,
            Uv::Required,
            &cred.public_key,
            cred.alg,
            &assertion,
        )
    };
    let allow = [w::Allowed {
        id: cred.id.clone(),
        transports: vec![],
    }];
    assert_eq!(verify(&mut auth, &origin, &[]).unwrap().sign_count, 1);
    assert_eq!(verify(&mut auth, &origin, &allow).unwrap().sign_count, 2);
    auth.set_sign_count(0);
    assert_eq!(verify(&mut auth, &origin, &[]).unwrap().sign_count, 1);

    assert_eq!(
        verify(&mut auth, "http://localhost:8124", &[]),
        Err(WebauthnError::WrongOrigin("http://localhost:8124".into()))
    );
    auth.user_verified(false);
    assert_eq!(
        verify(&mut auth, &origin, &[]),
        Err(WebauthnError::NoUserVerification)
    );
    auth.user_verified(true);
    auth.cross_origin(true);
    assert_eq!(
        verify(&mut auth, &origin, &[]),
        Err(WebauthnError::CrossOrigin)
    );
    auth.cross_origin(false);
    let mut auth = auth.with_rp_id("evil.example");
    assert_eq!(
        verify(&mut auth, &origin, &[]),
        Err(WebauthnError::WrongRpId)
    );

    // A second-factor authenticator (no backup) registers with UV preferred.
    let options = w::creation_options(&rp, &user, &challenge, &[], Uv::Preferred, false);
    let mut key = SoftAuthenticator::new(false);
    key.user_verified(false);
    let reg = w::parse_registration(&key.register(&options, &origin)).unwrap();
    let cred = w::verify_registration(&rp, &challenge, Uv::Preferred, &reg).unwrap();
    assert!(!cred.uv && !cred.backup_eligible && !cred.backed_up);
}
