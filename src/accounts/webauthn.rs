//! WebAuthn (Level 2, with Level 3's backup flags) relying-party checks, as plain functions:
//! the options a page hands to `navigator.credentials`, and the verification of what the
//! browser sends back. No store and no HTTP: the caller keeps the challenge (single use), finds
//! the stored credential, checks its owner and updates the sign counter atomically.
//!
//! Attestation is `none`: the public key is trusted the way the signed-in session that enrols
//! it is. Signatures and digests come from aws-lc-rs (ES256, EdDSA, RS256); COSE keys and the
//! attestation object are CBOR, read with minicbor.

use aws_lc_rs::digest;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use minicbor::data::Type;
use minicbor::Decoder;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use url::Url;

mod cose;
#[cfg(test)]
mod tests;

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
        let host = match issuer.host()? {
            url::Host::Domain(host) if !host.is_empty() => host.to_ascii_lowercase(),
            url::Host::Domain(_) | url::Host::Ipv4(_) | url::Host::Ipv6(_) => return None,
        };
        let origin = issuer.origin();
        if !origin.is_tuple() {
            return None;
        }
        Some(Rp {
            id: host.clone(),
            origin: origin.ascii_serialization(),
            name: host,
        })
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
    json!({
        "rp": { "id": rp.id, "name": rp.name },
        "user": {
            "id": URL_SAFE_NO_PAD.encode(user.handle),
            "name": user.name,
            "displayName": user.display_name,
        },
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "pubKeyCredParams": ALGORITHMS
            .iter()
            .map(|alg| json!({ "type": "public-key", "alg": alg }))
            .collect::<Vec<_>>(),
        "timeout": TIMEOUT_MS,
        "attestation": "none",
        "authenticatorSelection": {
            "residentKey": if resident { "required" } else { "discouraged" },
            "requireResidentKey": resident,
            "userVerification": uv.as_str(),
        },
        "excludeCredentials": descriptors(exclude),
    })
}

/// `PublicKeyCredentialDescriptor`s, ids base64url.
fn descriptors(credentials: &[Allowed]) -> Vec<Value> {
    credentials
        .iter()
        .map(|c| {
            json!({
                "type": "public-key",
                "id": URL_SAFE_NO_PAD.encode(&c.id),
                "transports": c.transports,
            })
        })
        .collect()
}

impl Uv {
    /// The `userVerification` value.
    fn as_str(self) -> &'static str {
        match self {
            Uv::Required => "required",
            Uv::Preferred => "preferred",
        }
    }
}

/// `PublicKeyCredentialRequestOptions` as JSON (binary fields base64url). `allow` empty:
/// discoverable credentials (passwordless sign-in).
pub fn request_options(rp: &Rp, challenge: &[u8], allow: &[Allowed], uv: Uv) -> serde_json::Value {
    json!({
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "timeout": TIMEOUT_MS,
        "rpId": rp.id,
        "allowCredentials": descriptors(allow),
        "userVerification": uv.as_str(),
    })
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
    #[derive(Deserialize)]
    struct Posted {
        #[serde(rename = "rawId")]
        raw_id: String,
        #[serde(rename = "clientDataJSON")]
        client_data_json: String,
        #[serde(rename = "attestationObject")]
        attestation_object: String,
        #[serde(default)]
        transports: Value,
    }
    if json.len() > MAX_POSTED_JSON {
        return Err(WebauthnError::Malformed("registration too large"));
    }
    let posted: Posted = serde_json::from_str(json)
        .map_err(|_| WebauthnError::Malformed("registration is not the expected JSON"))?;
    Ok(Registration {
        raw_id: decode_field(&posted.raw_id, MAX_CREDENTIAL_ID, "rawId")?,
        client_data_json: decode_field(
            &posted.client_data_json,
            MAX_CLIENT_DATA,
            "clientDataJSON",
        )?,
        attestation_object: decode_field(
            &posted.attestation_object,
            MAX_ATTESTATION_OBJECT,
            "attestationObject",
        )?,
        transports: transports(&posted.transports),
    })
}

/// The longest JSON body accepted for a registration or an assertion: every field at its
/// bound, base64url-encoded, with room for keys and transports.
const MAX_POSTED_JSON: usize = (MAX_CREDENTIAL_ID
    + MAX_CLIENT_DATA
    + MAX_ATTESTATION_OBJECT
    + MAX_AUTHENTICATOR_DATA
    + MAX_SIGNATURE
    + MAX_USER_HANDLE)
    * 4
    / 3
    + 4096;

/// At most this many transports, each at most this long; otherwise none are kept.
const MAX_TRANSPORTS: usize = 8;
const MAX_TRANSPORT_LEN: usize = 32;

/// Base64url, padded or not; the standard alphabet's `+` and `/` are refused.
const B64URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes one binary field, refusing before decoding a string too long to fit `max` bytes.
fn decode_field(text: &str, max: usize, name: &'static str) -> Result<Vec<u8>, WebauthnError> {
    let too_large = WebauthnError::Malformed(match name {
        "rawId" => "rawId too large",
        "clientDataJSON" => "clientDataJSON too large",
        "attestationObject" => "attestationObject too large",
        "authenticatorData" => "authenticatorData too large",
        "signature" => "signature too large",
        _ => "userHandle too large",
    });
    if text.len() > max * 4 / 3 + 4 {
        return Err(too_large);
    }
    let bytes = B64URL_ANY_PAD
        .decode(text)
        .map_err(|_| WebauthnError::Malformed(name))?;
    if bytes.len() > max {
        return Err(too_large);
    }
    Ok(bytes)
}

/// The transports hint: kept only when it is a short list of short strings.
fn transports(value: &Value) -> Vec<String> {
    let Some(list) = value.as_array() else {
        return Vec::new();
    };
    if list.len() > MAX_TRANSPORTS {
        return Vec::new();
    }
    let kept: Vec<String> = list
        .iter()
        .filter_map(|t| t.as_str())
        .filter(|t| t.len() <= MAX_TRANSPORT_LEN)
        .map(str::to_owned)
        .collect();
    if kept.len() == list.len() {
        kept
    } else {
        Vec::new()
    }
}

/// Reads the JSON the page posts for an assertion:
/// `{"rawId", "clientDataJSON", "authenticatorData", "signature", "userHandle"}` (userHandle
/// null or absent when the authenticator gave none).
pub fn parse_assertion(json: &str) -> Result<Assertion, WebauthnError> {
    #[derive(Deserialize)]
    struct Posted {
        #[serde(rename = "rawId")]
        raw_id: String,
        #[serde(rename = "clientDataJSON")]
        client_data_json: String,
        #[serde(rename = "authenticatorData")]
        authenticator_data: String,
        signature: String,
        #[serde(rename = "userHandle", default)]
        user_handle: Option<String>,
    }
    if json.len() > MAX_POSTED_JSON {
        return Err(WebauthnError::Malformed("assertion too large"));
    }
    let posted: Posted = serde_json::from_str(json)
        .map_err(|_| WebauthnError::Malformed("assertion is not the expected JSON"))?;
    let user_handle = match posted.user_handle.as_deref() {
        None | Some("") => None,
        Some(text) => Some(decode_field(text, MAX_USER_HANDLE, "userHandle")?),
    };
    Ok(Assertion {
        raw_id: decode_field(&posted.raw_id, MAX_CREDENTIAL_ID, "rawId")?,
        client_data_json: decode_field(
            &posted.client_data_json,
            MAX_CLIENT_DATA,
            "clientDataJSON",
        )?,
        authenticator_data: decode_field(
            &posted.authenticator_data,
            MAX_AUTHENTICATOR_DATA,
            "authenticatorData",
        )?,
        signature: decode_field(&posted.signature, MAX_SIGNATURE, "signature")?,
        user_handle,
    })
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
    if reg.client_data_json.len() > MAX_CLIENT_DATA
        || reg.attestation_object.len() > MAX_ATTESTATION_OBJECT
        || reg.raw_id.len() > MAX_CREDENTIAL_ID
    {
        return Err(WebauthnError::Malformed("registration too large"));
    }
    check_client_data(rp, challenge, "webauthn.create", &reg.client_data_json)?;
    let auth_data = attested_auth_data(&reg.attestation_object)?;
    let parsed = parse_auth_data(auth_data)?;
    parsed.check(rp, uv)?;
    let attested = parsed
        .attested
        .ok_or(WebauthnError::Malformed("no attested credential data"))?;
    attested.key.validate()?;
    if attested.id != reg.raw_id.as_slice() {
        return Err(WebauthnError::IdMismatch);
    }
    Ok(NewCredential {
        id: attested.id.to_vec(),
        public_key: attested.cose_key.to_vec(),
        alg: attested.key.alg,
        sign_count: parsed.sign_count,
        aaguid: attested.aaguid,
        uv: parsed.flags & FLAG_UV != 0,
        backup_eligible: parsed.flags & FLAG_BE != 0,
        backed_up: parsed.flags & FLAG_BS != 0,
    })
}

/// Authenticator data flags (WebAuthn §6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// The fields of `CollectedClientData` that are checked; unknown keys are ignored.
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin", default)]
    top_origin: Option<String>,
}

/// §7.1 steps 5-10 / §7.2 steps 9-14: type, challenge, origin, not framed.
fn check_client_data(
    rp: &Rp,
    challenge: &[u8],
    kind: &'static str,
    client_data_json: &[u8],
) -> Result<(), WebauthnError> {
    let text = client_data_json
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(client_data_json);
    let data: ClientData = serde_json::from_slice(text)
        .map_err(|_| WebauthnError::Malformed("clientDataJSON is not the expected JSON"))?;
    if data.kind != kind {
        return Err(WebauthnError::WrongType(kind));
    }
    let sent = URL_SAFE_NO_PAD
        .decode(&data.challenge)
        .map_err(|_| WebauthnError::WrongChallenge)?;
    if challenge.is_empty() || !bool::from(sent.as_slice().ct_eq(challenge)) {
        return Err(WebauthnError::WrongChallenge);
    }
    if data.origin != rp.origin {
        return Err(WebauthnError::WrongOrigin(data.origin));
    }
    if data.cross_origin.unwrap_or(false) || data.top_origin.is_some_and(|top| top != rp.origin) {
        return Err(WebauthnError::CrossOrigin);
    }
    Ok(())
}

/// The `authData` of an attestation object `{fmt, attStmt, authData}`. `fmt: "none"` must come
/// with an empty statement; any other statement is ignored (the credential is unattested).
fn attested_auth_data(attestation_object: &[u8]) -> Result<&[u8], WebauthnError> {
    let bad = WebauthnError::Malformed;
    let mut d = Decoder::new(attestation_object);
    let entries = d
        .map()
        .map_err(|_| bad("attestation object is not a map"))?
        .ok_or(bad("attestation object of indefinite length"))?;
    if entries > 8 {
        return Err(bad("attestation object has too many entries"));
    }
    let (mut fmt, mut statement_empty, mut auth_data) = (None, None, None);
    for _ in 0..entries {
        let key = d
            .str()
            .map_err(|_| bad("attestation object key is not text"))?;
        match key {
            "fmt" if fmt.is_none() => {
                fmt = Some(d.str().map_err(|_| bad("fmt is not text"))?);
            }
            "attStmt" if statement_empty.is_none() => {
                if !matches!(d.datatype(), Ok(Type::Map | Type::MapIndef)) {
                    return Err(bad("attStmt is not a map"));
                }
                let start = d.position();
                let empty = matches!(d.map(), Ok(Some(0)));
                if !empty {
                    d.set_position(start);
                    d.skip().map_err(|_| bad("attStmt"))?;
                }
                statement_empty = Some(empty);
            }
            "authData" if auth_data.is_none() => {
                auth_data = Some(d.bytes().map_err(|_| bad("authData is not bytes"))?);
            }
            "fmt" | "attStmt" | "authData" => {
                return Err(bad("attestation object key appears twice"))
            }
            _ => d.skip().map_err(|_| bad("attestation object value"))?,
        }
    }
    if d.position() != attestation_object.len() {
        return Err(bad("trailing bytes after the attestation object"));
    }
    let (Some(fmt), Some(statement_empty), Some(auth_data)) = (fmt, statement_empty, auth_data)
    else {
        return Err(bad("attestation object lacks fmt, attStmt or authData"));
    };
    if fmt == "none" && !statement_empty {
        return Err(bad("fmt none with an attestation statement"));
    }
    Ok(auth_data)
}

/// Parsed authenticator data (§6.1).
struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    sign_count: u32,
    attested: Option<Attested<'a>>,
}

/// Attested credential data (§6.5.1).
struct Attested<'a> {
    aaguid: [u8; 16],
    id: &'a [u8],
    /// The COSE_Key bytes as sent.
    cose_key: &'a [u8],
    key: cose::Key,
}

fn parse_auth_data(data: &[u8]) -> Result<AuthData<'_>, WebauthnError> {
    let short = WebauthnError::Malformed("authenticator data too short");
    let (rp_id_hash, rest) = data.split_at_checked(32).ok_or(short.clone())?;
    let (&flags, rest) = rest.split_first().ok_or(short.clone())?;
    let (count, mut rest) = rest.split_at_checked(4).ok_or(short.clone())?;
    let sign_count = u32::from_be_bytes(count.try_into().map_err(|_| short.clone())?);
    let attested = if flags & FLAG_AT != 0 {
        let (aaguid, r) = rest.split_at_checked(16).ok_or(short.clone())?;
        let (len, r) = r.split_at_checked(2).ok_or(short.clone())?;
        let len = usize::from(u16::from_be_bytes(
            len.try_into().map_err(|_| short.clone())?,
        ));
        if len > MAX_CREDENTIAL_ID {
            return Err(WebauthnError::Malformed("credential id too long"));
        }
        let (id, r) = r.split_at_checked(len).ok_or(short.clone())?;
        let mut d = Decoder::new(r);
        let key = cose::read(&mut d)?;
        let (cose_key, r) = r.split_at_checked(d.position()).ok_or(short.clone())?;
        rest = r;
        Some(Attested {
            aaguid: aaguid.try_into().map_err(|_| short.clone())?,
            id,
            cose_key,
            key,
        })
    } else {
        None
    };
    if flags & FLAG_ED != 0 {
        let mut d = Decoder::new(rest);
        if !matches!(d.datatype(), Ok(Type::Map | Type::MapIndef)) {
            return Err(WebauthnError::Malformed("extensions are not a map"));
        }
        d.skip()
            .map_err(|_| WebauthnError::Malformed("extensions"))?;
        rest = rest.get(d.position()..).unwrap_or_default();
    }
    if !rest.is_empty() {
        return Err(WebauthnError::Malformed(
            "trailing bytes in authenticator data",
        ));
    }
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}

impl AuthData<'_> {
    /// The checks common to both ceremonies: relying party, presence, verification, backup.
    fn check(&self, rp: &Rp, uv: Uv) -> Result<(), WebauthnError> {
        if self.rp_id_hash != digest::digest(&digest::SHA256, rp.id.as_bytes()).as_ref() {
            return Err(WebauthnError::WrongRpId);
        }
        if self.flags & FLAG_UP == 0 {
            return Err(WebauthnError::NoUserPresence);
        }
        if uv == Uv::Required && self.flags & FLAG_UV == 0 {
            return Err(WebauthnError::NoUserVerification);
        }
        if self.flags & FLAG_BS != 0 && self.flags & FLAG_BE == 0 {
            return Err(WebauthnError::Malformed(
                "backed up but not backup eligible",
            ));
        }
        Ok(())
    }
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
    if assertion.client_data_json.len() > MAX_CLIENT_DATA
        || assertion.authenticator_data.len() > MAX_AUTHENTICATOR_DATA
        || assertion.signature.len() > MAX_SIGNATURE
    {
        return Err(WebauthnError::Malformed("assertion too large"));
    }
    check_client_data(rp, challenge, "webauthn.get", &assertion.client_data_json)?;
    let key = cose::read_all(public_key)?;
    if key.alg != alg {
        return Err(WebauthnError::UnsupportedKey(alg));
    }
    let parsed = parse_auth_data(&assertion.authenticator_data)?;
    if parsed.attested.is_some() || parsed.flags & FLAG_AT != 0 {
        return Err(WebauthnError::Malformed(
            "attested credential data in an assertion",
        ));
    }
    parsed.check(rp, uv)?;
    let client_data_hash = digest::digest(&digest::SHA256, &assertion.client_data_json);
    let mut signed =
        Vec::with_capacity(assertion.authenticator_data.len() + client_data_hash.as_ref().len());
    signed.extend_from_slice(&assertion.authenticator_data);
    signed.extend_from_slice(client_data_hash.as_ref());
    key.verify(&signed, &assertion.signature)?;
    Ok(Verified {
        sign_count: parsed.sign_count,
        uv: parsed.flags & FLAG_UV != 0,
        backup_eligible: parsed.flags & FLAG_BE != 0,
        backed_up: parsed.flags & FLAG_BS != 0,
    })
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
