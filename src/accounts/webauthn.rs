//! WebAuthn (Level 2, with Level 3's backup flags) relying-party checks, as plain functions:
//! the options a page hands to `navigator.credentials`, and the verification of what the
//! browser sends back. No store and no HTTP: the caller keeps the challenge (single use), finds
//! the stored credential, checks its owner and updates the sign counter atomically.
//!
//! Attestation is `none`: the public key is trusted the way the signed-in session that enrols
//! it is. Signatures and digests come from aws-lc-rs (ES256, EdDSA, RS256); COSE keys and the
//! attestation object are CBOR, read with minicbor.

use serde::Deserialize;
use url::Url;

/// COSE algorithm identifiers doorman accepts (RFC 9053, RFC 8230).
pub const ES256: i64 = -7;
pub const EDDSA: i64 = -8;
pub const RS256: i64 = -257;
/// The algorithms offered at enrolment, in order of preference.
pub const ALGORITHMS: [i64; 3] = [ES256, EDDSA, RS256];

/// The longest credential id accepted (WebAuthn L3: 1023 bytes).
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// Upper bounds on what a browser posts, checked before any decoding.
pub const MAX_CLIENT_DATA: usize = 4 * 1024;
pub const MAX_ATTESTATION_OBJECT: usize = 16 * 1024;
pub const MAX_AUTHENTICATOR_DATA: usize = 4 * 1024;
pub const MAX_SIGNATURE: usize = 1024;
pub const MAX_USER_HANDLE: usize = 64;

/// How long a ceremony may take in the browser (milliseconds, WebAuthn `timeout`).
pub const TIMEOUT_MS: u64 = 300_000;

/// The relying party: id = the issuer's host, origin = the issuer's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rp {
    /// The host, no port (an A-label, as `Url::host_str` gives it).
    pub id: String,
    /// `scheme://host[:port]`, what the browser puts in clientDataJSON.
    pub origin: String,
    /// Shown by authenticators beside the account name.
    pub name: String,
}

impl Rp {
    /// The relying party of an issuer; None when the host is an IP address (WebAuthn forbids
    /// those as RP ids) or the URL has no host.
    pub fn from_issuer(issuer: &Url) -> Option<Rp> {
        let _ = issuer;
        None
    }
}

/// User verification: `preferred` for a second factor, `required` for passwordless sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Uv {
    Required,
    Preferred,
}

/// The account an enrolment is for, as the authenticator stores it.
#[derive(Debug, Clone)]
pub struct UserEntity<'a> {
    /// The user handle: opaque, at most 64 bytes, no personal data (doorman's user id).
    pub handle: &'a [u8],
    /// The username (shown by the authenticator).
    pub name: &'a str,
    pub display_name: &'a str,
}

/// A credential the browser may use in an assertion (`allowCredentials`).
#[derive(Debug, Clone)]
pub struct Allowed {
    pub id: Vec<u8>,
    /// Stored hints (`usb`, `internal`, ...), passed back as they were given.
    pub transports: Vec<String>,
}

/// `PublicKeyCredentialCreationOptions` as JSON, binary fields base64url (no padding), for
/// `navigator.credentials.create({ publicKey })` after the page's script decodes them.
/// `resident`: ask for a discoverable credential (`residentKey: "required"`), so it can sign
/// in without a username. `exclude`: the user's credential ids (one authenticator once).
pub fn creation_options(
    rp: &Rp,
    user: &UserEntity<'_>,
    challenge: &[u8],
    exclude: &[Allowed],
    uv: Uv,
    resident: bool,
) -> serde_json::Value {
    let _ = (rp, user, challenge, exclude, uv, resident);
    serde_json::Value::Null
}

/// `PublicKeyCredentialRequestOptions` as JSON (binary fields base64url). `allow` empty:
/// discoverable credentials (passwordless sign-in).
pub fn request_options(rp: &Rp, challenge: &[u8], allow: &[Allowed], uv: Uv) -> serde_json::Value {
    let _ = (rp, challenge, allow, uv);
    serde_json::Value::Null
}

/// A fresh challenge: 32 random bytes.
pub fn new_challenge() -> [u8; 32] {
    rand::random()
}

/// What the page's script posts after `navigator.credentials.create`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub raw_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
    /// `response.getTransports()`: a hint only, never trusted.
    pub transports: Vec<String>,
}

/// What the page's script posts after `navigator.credentials.get`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub raw_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
    /// Present for discoverable credentials (the user handle given at enrolment).
    pub user_handle: Option<Vec<u8>>,
}

/// Reads the JSON the page posts for a registration:
/// `{"rawId", "clientDataJSON", "attestationObject", "transports"}`, binary fields base64url
/// (padding tolerated), each within its size bound, unknown keys ignored.
pub fn parse_registration(json: &str) -> Result<Registration, WebauthnError> {
    let _ = json;
    Err(WebauthnError::Malformed("not implemented"))
}

/// Reads the JSON the page posts for an assertion:
/// `{"rawId", "clientDataJSON", "authenticatorData", "signature", "userHandle"}` (userHandle
/// null or absent when the authenticator gave none).
pub fn parse_assertion(json: &str) -> Result<Assertion, WebauthnError> {
    let _ = json;
    Err(WebauthnError::Malformed("not implemented"))
}

/// A verified new credential, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    /// The COSE_Key as the authenticator sent it.
    pub public_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: u32,
    /// Unverified (attestation none); kept to name the authenticator model one day.
    pub aaguid: [u8; 16],
    /// Flags of the registration: user verified, backup eligible, backed up.
    pub uv: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

/// A verified assertion: what the caller checks against the stored credential and stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub sign_count: u32,
    pub uv: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

/// Why a ceremony's answer was refused (for the log; the user sees one generic sentence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("clientDataJSON type is not {0}")]
    WrongType(&'static str),
    #[error("the challenge is not the one issued")]
    WrongChallenge,
    #[error("origin {0} is not the issuer's")]
    WrongOrigin(String),
    #[error("the ceremony ran in a cross-origin frame")]
    CrossOrigin,
    #[error("the authenticator data is for another relying party id")]
    WrongRpId,
    #[error("the user was not present")]
    NoUserPresence,
    #[error("the user was not verified")]
    NoUserVerification,
    #[error("unsupported or inconsistent COSE key (alg {0})")]
    UnsupportedKey(i64),
    #[error("rawId is not the credential id of the authenticator data")]
    IdMismatch,
    #[error("the signature does not verify")]
    BadSignature,
}

/// Verifies a registration (WebAuthn §7.1) against the challenge issued for it.
pub fn verify_registration(
    rp: &Rp,
    challenge: &[u8],
    uv: Uv,
    reg: &Registration,
) -> Result<NewCredential, WebauthnError> {
    let _ = (rp, challenge, uv, reg);
    Err(WebauthnError::Malformed("not implemented"))
}

/// Verifies an assertion (WebAuthn §7.2) against the challenge issued for it, with the
/// stored public key and algorithm (never anything from the request). The caller has already
/// matched `assertion.raw_id` to the stored credential and its owner, and must refuse a sign
/// counter that did not grow ([`counter_ok`]).
pub fn verify_assertion(
    rp: &Rp,
    challenge: &[u8],
    uv: Uv,
    public_key: &[u8],
    alg: i64,
    assertion: &Assertion,
) -> Result<Verified, WebauthnError> {
    let _ = (rp, challenge, uv, public_key, alg, assertion);
    Err(WebauthnError::Malformed("not implemented"))
}

/// Is `new` a sign count that may follow `stored`? Authenticators without a counter (synced
/// passkeys) send 0 every time; otherwise it must grow, or the credential may be cloned.
pub fn counter_ok(stored: u32, new: u32) -> bool {
    (stored == 0 && new == 0) || new > stored
}

/// The RFC 8176 method of a passkey: `swk` when it may be synced to other devices (backup
/// eligible), `hwk` when the key stays on one authenticator.
pub fn amr_method(backup_eligible: bool) -> &'static str {
    if backup_eligible {
        "swk"
    } else {
        "hwk"
    }
}
