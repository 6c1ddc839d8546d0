//! A Rust stand-in for Prosody's token check (jitsi-meet's `luajwtjitsi.lib.lua` plus
//! `token/util.lib.lua`, as read and described in ../shared/reference/jitsi.md §3), so the e2e
//! tests can ask "would Jitsi let this token in?" without Lua or Prosody.
//!
//! What it does, in Prosody's order:
//! 1. exactly 3 non-empty dot segments, base64url without padding; header and payload JSON;
//! 2. header `typ` exactly `"JWT"`;
//! 3. header `alg` equal to the configured algorithm (HS256, or RS256 with a `kid` in the JWKS);
//! 4. the signature: HMAC-SHA256 over the ASCII `b64(h).b64(p)` keyed with the RAW UTF-8 bytes of
//!    app_secret (never base64-decoded), or RS256 with the JWKS key;
//! 5. `exp`/`nbf` optional, but JSON numbers when present (floats pass); `now >= exp` or
//!    `now < nbf` fails; no leeway, no maximum lifetime, `iat` ignored;
//! 6. `iss` present and listed (or the list has `*`); `aud` likewise; an array `aud` passes
//!    only with `*`;
//! 7. `room` present unless not required;
//! 8. on MUC join, the room check (`verify_room`), with or without domain verification.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

pub type Claims = Map<String, Value>;

/// Lua basexx's `from_url64`: the URL-safe alphabet, no padding expected; like basexx it drops
/// the unused low bits of the last character instead of insisting they are zero.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// How Prosody checks signatures.
#[derive(Debug, Clone)]
pub enum Key {
    /// `app_secret`: HS256 with the secret's raw bytes.
    Hs256(String),
    /// `cache_keys_url`: RS256 with a key from this JWKS (`{"keys":[{kid,n,e,...}]}`).
    Rs256(Value),
}

/// The Prosody options that decide whether a token is accepted.
#[derive(Debug, Clone)]
pub struct ProsodyConfig {
    pub app_id: String,
    pub key: Key,
    /// `asap_accepted_issuers`, default `{app_id}`.
    pub accepted_issuers: Vec<String>,
    /// `asap_accepted_audiences`, default `{'*'}`.
    pub accepted_audiences: Vec<String>,
    /// `asap_require_room_claim`, default true.
    pub require_room_claim: bool,
    /// `enable_domain_verification` (docker-jitsi-meet's default: false).
    pub enable_domain_verification: bool,
    /// `muc_mapper_domain_prefix` (docker-jitsi-meet: "muc"; Prosody's default "conference").
    pub muc_domain_prefix: String,
}

impl ProsodyConfig {
    /// docker-jitsi-meet with `AUTH_TYPE=jwt`, `JWT_APP_ID`, `JWT_APP_SECRET` and nothing else:
    /// HS256, issuers {app_id}, audiences {*}, room claim required, domain verification off,
    /// MUC prefix "muc".
    pub fn docker(app_id: &str, app_secret: &str) -> ProsodyConfig {
        ProsodyConfig {
            app_id: app_id.to_string(),
            key: Key::Hs256(app_secret.to_string()),
            accepted_issuers: vec![app_id.to_string()],
            accepted_audiences: vec!["*".to_string()],
            require_room_claim: true,
            enable_domain_verification: false,
            muc_domain_prefix: "muc".to_string(),
        }
    }

    /// RS256 against a JWKS (`cache_keys_url`), otherwise the same defaults.
    pub fn rs256(app_id: &str, jwks: Value) -> ProsodyConfig {
        ProsodyConfig {
            key: Key::Rs256(jwks),
            ..ProsodyConfig::docker(app_id, "")
        }
    }

    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Hs256(_) => "HS256",
            Key::Rs256(_) => "RS256",
        }
    }
}

/// The whole check: the token at connect time, then joining `room_node@muc_domain`.
pub fn verify(
    token: &str,
    cfg: &ProsodyConfig,
    now: i64,
    room_jid_node: &str,
    muc_domain: &str,
) -> Result<Claims, String> {
    let claims = verify_token(token, cfg, now)?;
    verify_room(&claims, cfg, room_jid_node, muc_domain)?;
    Ok(claims)
}

fn segment_json(segment: &str, what: &str) -> Result<Value, String> {
    let bytes = B64URL
        .decode(segment)
        .map_err(|e| format!("Invalid {what}: not base64url ({e})"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("Invalid {what}: not JSON ({e})"))
}

/// The connect-time check (mod_auth_token → util `process_and_verify_token` → luajwtjitsi
/// `verify`): returns the claims Prosody binds to the session.
pub fn verify_token(token: &str, cfg: &ProsodyConfig, now: i64) -> Result<Claims, String> {
    // 1. Segments.
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 || segments.iter().any(|s| s.is_empty()) {
        return Err("Invalid token: not three non-empty segments".into());
    }
    let header = segment_json(segments[0], "header")?;
    let body = segment_json(segments[1], "body")?;
    let signature = B64URL
        .decode(segments[2])
        .map_err(|e| format!("Invalid signature encoding ({e})"))?;
    let (Value::Object(header), Value::Object(body)) = (header, body) else {
        return Err("Invalid token: header and body must be JSON objects".into());
    };

    // 2. typ, exactly.
    if header.get("typ") != Some(&Value::String("JWT".into())) {
        return Err("Invalid typ".into());
    }
    // 3. alg, the configured one.
    let alg = cfg.algorithm();
    if header.get("alg").and_then(Value::as_str) != Some(alg) {
        return Err("Invalid or incorrect alg".into());
    }

    // 4. Signature over the token's own first two segments, as ASCII.
    let signing_input = format!("{}.{}", segments[0], segments[1]);
    match &cfg.key {
        Key::Hs256(secret) => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .map_err(|e| e.to_string())?;
            mac.update(signing_input.as_bytes());
            mac.verify_slice(&signature)
                .map_err(|_| "Invalid signature".to_string())?;
        }
        Key::Rs256(jwks) => {
            let kid = header
                .get("kid")
                .and_then(Value::as_str)
                .ok_or("'kid' claim is missing")?;
            let jwk = jwks["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["kid"].as_str() == Some(kid))
                .ok_or_else(|| format!("could not obtain public key for kid {kid}"))?;
            let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
                return Err("the JWKS key is not an RSA key".into());
            };
            let key = jsonwebtoken::DecodingKey::from_rsa_components(n, e)
                .map_err(|e| format!("bad JWKS key: {e}"))?;
            let ok = jsonwebtoken::crypto::verify(
                segments[2],
                signing_input.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::RS256,
            )
            .unwrap_or(false);
            if !ok {
                return Err("Invalid signature".into());
            }
        }
    }

    // 5. exp / nbf: numbers when present (Lua treats `false` like absent), no leeway.
    let number = |name: &str| -> Result<Option<f64>, String> {
        match body.get(name) {
            None | Some(Value::Bool(false)) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(format!("{name} must be number")),
        }
    };
    let exp = number("exp")?;
    let nbf = number("nbf")?;
    let now_f = now as f64;
    if let Some(exp) = exp {
        if now_f >= exp {
            return Err(format!(
                "Not acceptable by exp ({} sec since expired)",
                now_f - exp
            ));
        }
    }
    if let Some(nbf) = nbf {
        if now_f < nbf {
            return Err("Not acceptable by nbf".into());
        }
    }

    // 6. iss and aud against their lists: `*` accepts anything, otherwise an exact string.
    let listed = |claim: &Value, accepted: &[String]| {
        accepted
            .iter()
            .any(|a| a == "*" || claim.as_str() == Some(a.as_str()))
    };
    let iss = body.get("iss").ok_or("'iss' claim is missing")?;
    if !listed(iss, &cfg.accepted_issuers) {
        return Err("invalid 'iss' claim".into());
    }
    // 7. room (util checks it between iss and aud).
    if cfg.require_room_claim && !body.contains_key("room") {
        return Err("'room' claim is missing".into());
    }
    let aud = body.get("aud").ok_or("'aud' claim is missing")?;
    if !listed(aud, &cfg.accepted_audiences) {
        return Err("invalid 'aud' claim".into());
    }
    Ok(body)
}

/// Lua's `string.lower`: ASCII only, every other byte unchanged.
pub fn lua_lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// `[tenant]room` → (tenant, room), as `^%[([^%]]+)%](.+)$`.
fn split_tenant(node: &str) -> Option<(&str, &str)> {
    let rest = node.strip_prefix('[')?;
    let close = rest.find(']')?;
    let (tenant, room) = (&rest[..close], &rest[close + 1..]);
    (!tenant.is_empty() && !room.is_empty()).then_some((tenant, room))
}

/// The MUC join check (token_verification → util `verify_room`) for the room JID
/// `room_jid_node@muc_domain`, with the claims bound at connect time. With domain verification
/// on, `muc_domain` is also Prosody's configured MUC domain (`<prefix>.<muc_mapper_domain_base>`).
pub fn verify_room(
    claims: &Claims,
    cfg: &ProsodyConfig,
    room_jid_node: &str,
    muc_domain: &str,
) -> Result<(), String> {
    let auth_room = match claims.get("room") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => return Err(format!("the room claim is not a string: {other}")),
    };
    let mismatch = || {
        Err(format!(
            "Room and token mismatched: room claim {auth_room:?}, room {room_jid_node}@{muc_domain}"
        ))
    };
    if !cfg.enable_domain_verification {
        // No room claim: let through (jicofo decides who may create rooms).
        let Some(claim) = auth_room else {
            return Ok(());
        };
        let lowered = lua_lower(claim);
        if claim == "*"
            || room_jid_node == lowered
            || room_jid_node.ends_with(&format!("]{lowered}"))
        {
            return Ok(());
        }
        return mismatch();
    }

    let Some(auth_room) = auth_room else {
        return Err("no room claim, and domain verification needs one".into());
    };
    let auth_domain = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("no sub claim, and domain verification needs one")?;
    let tenant_form = split_tenant(room_jid_node);
    let room_to_check = if auth_room == "*" {
        tenant_form.map_or(room_jid_node, |(_, room)| room)
    } else {
        auth_room
    };
    let bare = format!("{room_jid_node}@{muc_domain}");
    let expected = match tenant_form {
        Some((tenant, _)) => {
            let sub = if auth_domain == "*" {
                tenant
            } else {
                auth_domain
            };
            format!(
                "[{}]{}@{muc_domain}",
                lua_lower(sub),
                lua_lower(room_to_check)
            )
        }
        None => {
            let domain = if auth_domain == "*" {
                muc_domain.to_string()
            } else {
                format!("{}.{auth_domain}", cfg.muc_domain_prefix)
            };
            format!("{}@{}", lua_lower(room_to_check), lua_lower(&domain))
        }
    };
    if bare == expected {
        Ok(())
    } else {
        mismatch()
    }
}

// ---------------------------------------------------------------------------------------------
// Making tokens for the verifier's own tests

/// `b64url(header).b64url(payload)` signed with HS256 keyed by `key`'s bytes.
pub fn sign_hs256_raw(header: &str, payload: &str, key: &[u8]) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

/// Whether any string, number, object or array anywhere in `v` is a JSON null.
pub fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// Whether a `features` key appears anywhere in `v`.
pub fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|x| has_key(x, key)),
        Value::Object(o) => o.contains_key(key) || o.values().any(|x| has_key(x, key)),
        _ => false,
    }
}
