//! Scopes and the claims they grant (OIDC Core §5.4), and the id_token's claim set.
//! Profile claims go into the id_token itself, because Cloudflare Access never calls userinfo.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::ClientConfig;
use crate::store::{Timestamp, User};

pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];
pub const SUPPORTED_CLAIMS: [&str; 18] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "acr",
    "azp",
    "sid",
    "preferred_username",
    "name",
    "given_name",
    "family_name",
    "picture",
    "email",
];

/// Claims that carry the protocol (who issued a token, to whom, when, for which session) in
/// id_tokens and JWT access tokens: no per-client claim may take their names.
pub const PROTOCOL_CLAIMS: [&str; 20] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "azp",
    "sid",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "s_hash",
    "client_id",
    "scope",
    "cnf",
    "typ",
];

/// A claim doorman sets itself: a protocol claim, a profile claim, `groups`, `plex_token`, or
/// what Jitsi reads from its tokens.
pub fn is_registered(name: &str) -> bool {
    PROTOCOL_CLAIMS.contains(&name)
        || SUPPORTED_CLAIMS.contains(&name)
        || matches!(
            name,
            "email_verified" | "groups" | "plex_token" | "room" | "context"
        )
}

/// The standard claims a `[clients.claims]` entry may copy under another name.
pub const MAPPABLE_CLAIMS: [&str; 9] = [
    "sub",
    "preferred_username",
    "name",
    "given_name",
    "family_name",
    "picture",
    "email",
    "email_verified",
    "groups",
];

/// What a client gets whatever its scopes: the user's groups nested at its `roles_claim`
/// (`realm_access.roles` becomes `{"realm_access": {"roles": [...]}}`, as Keycloak-minded
/// apps read it), and its `[clients.claims]` copies (`nickname` = `preferred_username`, for
/// apps that pick the uid claim by name). Added to the id_token, userinfo and JWT access tokens
/// alike.
pub fn client_claims(client: &ClientConfig, user: &User, claims: &mut Map<String, Value>) {
    if let Some(path) = &client.roles_claim {
        let groups = Value::Array(user.groups.iter().cloned().map(Value::String).collect());
        nest(claims, path, groups);
    }
    if client.claims.is_empty() {
        return;
    }
    let mut standard = profile_claims(user, "", true);
    standard.insert("sub".into(), Value::String(user.id.clone()));
    for (name, source) in &client.claims {
        // A claim the user lacks (no email) is left out, as the standard one would be.
        if let Some(v) = standard.get(source) {
            claims.insert(name.clone(), v.clone());
        }
    }
}

/// Puts `value` at `path` inside `map`, making (or replacing with) objects on the way.
fn nest(map: &mut Map<String, Value>, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                nest(inner, rest, value);
            }
        }
    }
}

/// The scopes granted for a request: the supported ones the client may have, in request order.
/// Unknown scopes are ignored, not errors.
pub fn grant_scopes(requested: &str, client: &ClientConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        let supported = SUPPORTED_SCOPES.contains(&s);
        let allowed = client
            .scopes
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == s));
        if supported && allowed && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The profile claims `scope` allows (or all of them), without `sub`.
pub fn profile_claims(user: &User, scope: &str, all: bool) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.clone()));
        }
    };
    if all || has_scope(scope, "profile") {
        put("preferred_username", &Some(user.username.clone()));
        put("name", &user.name);
        put("given_name", &user.given_name);
        put("family_name", &user.family_name);
        put("picture", &user.picture);
    }
    if (all || has_scope(scope, "email")) && user.email.is_some() {
        put("email", &user.email);
        m.insert("email_verified".into(), Value::Bool(user.email_verified));
    }
    if all || has_scope(scope, "groups") {
        m.insert(
            "groups".into(),
            Value::Array(user.groups.iter().cloned().map(Value::String).collect()),
        );
    }
    m
}

/// The `context.user` Jitsi reads from its tokens: id, name (display name, else username),
/// and email and avatar only when known (never null: lib-jitsi-meet throws on `avatar: null`).
pub fn jitsi_context_user(user: &User) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(user.id.clone()));
    let name = user
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| user.username.clone());
    m.insert("name".into(), Value::String(name));
    if let Some(e) = &user.email {
        m.insert("email".into(), Value::String(e.clone()));
    }
    if let Some(p) = &user.picture {
        m.insert("avatar".into(), Value::String(p.clone()));
    }
    m
}

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let d = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(d.get(..16).unwrap_or_default())
}

/// Two factors were used (RFC 8176 values): a TOTP code (`otp`), a recovery code (`mfa`), or a
/// key (`hwk`, `swk`).
pub fn two_factors(amr: &[String]) -> bool {
    amr.iter()
        .any(|m| matches!(m.as_str(), "otp" | "mfa" | "hwk" | "swk"))
}

/// `acr` (one of `acr_values_supported`): `2fa` once a second factor was used, else `1fa`.
pub fn acr_for(amr: &[String]) -> &'static str {
    if two_factors(amr) {
        super::authorize::ACR_2FA
    } else {
        super::authorize::ACR_1FA
    }
}

#[derive(Debug, Serialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: Timestamp,
    pub iat: Timestamp,
    pub auth_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    pub amr: Vec<String>,
    /// Only when the client asked with `acr_values`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The SSO session's public handle (OIDC Back-Channel Logout §2.1); absent for grants
    /// made before doorman issued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub profile: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            name: Some("Alice".into()),
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec!["admins".into()],
            password_hash: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        }
    }

    #[test]
    fn scopes_gate_claims() {
        let only_openid = profile_claims(&user(), "openid", false);
        assert!(only_openid.is_empty());
        let email = profile_claims(&user(), "openid email", false);
        assert_eq!(email["email"], "alice@example.com");
        assert_eq!(email["email_verified"], true);
        assert!(!email.contains_key("preferred_username"));
        let all = profile_claims(&user(), "openid", true);
        assert_eq!(all["preferred_username"], "alice");
        assert_eq!(all["groups"][0], "admins");
    }

    #[test]
    fn roles_claim_nests_the_groups_whatever_the_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::from_str(
            "issuer = \"https://auth.example.com\"\n[[clients]]\nid = \"jellyfin\"\nsecret = \"jellyfin-secret-0123456789\"\nredirect_uris = [\"https://tv.example.com/cb\"]\n",
            &std::collections::HashMap::new(),
            dir.path(),
        )
        .unwrap();
        let mut client = config.clients[0].clone();
        let mut m = profile_claims(&user(), "openid profile", false);
        client_claims(&client, &user(), &mut m);
        assert!(!m.contains_key("realm_access"), "off by default");
        assert!(!m.contains_key("groups"), "not by scope");
        client.roles_claim = Some(vec!["realm_access".into(), "roles".into()]);
        client_claims(&client, &user(), &mut m);
        assert_eq!(m["realm_access"], serde_json::json!({"roles": ["admins"]}));
        assert!(!m.contains_key("groups"));
        client.roles_claim = Some(vec!["roles".into()]);
        let mut flat = Map::new();
        client_claims(&client, &user(), &mut flat);
        assert_eq!(flat["roles"], serde_json::json!(["admins"]));
        let mut deep = Map::new();
        client.roles_claim = Some(vec!["a".into(), "b".into(), "c".into()]);
        client_claims(&client, &user(), &mut deep);
        assert_eq!(deep["a"]["b"]["c"][0], "admins");
        assert!(is_registered("sub") && is_registered("groups") && !is_registered("realm_access"));
        // [clients.claims]: copies under another name, whatever the scopes; absent stays absent.
        client.roles_claim = None;
        client.claims = vec![
            ("nickname".into(), "preferred_username".into()),
            ("uid".into(), "sub".into()),
            ("mail".into(), "email".into()),
        ];
        let mut m = profile_claims(&user(), "openid", false);
        client_claims(&client, &user(), &mut m);
        assert_eq!(m["nickname"], "alice");
        assert_eq!(m["uid"], "u1");
        assert_eq!(m["mail"], "alice@example.com");
        assert!(!m.contains_key("preferred_username") && !m.contains_key("email"));
        let mut no_email = user();
        no_email.email = None;
        let mut m = Map::new();
        client_claims(&client, &no_email, &mut m);
        assert!(!m.contains_key("mail"), "{m:?}");
    }

    #[test]
    fn at_hash_matches_spec_example() {
        // OIDC Core A.3 example access token and its at_hash.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
