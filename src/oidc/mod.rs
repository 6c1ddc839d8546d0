//! The OpenID provider's rules: what each endpoint decides, as plain async functions over the
//! store and the keys. The HTTP handlers live in `routes.rs` and only translate.

pub mod authorize;
pub mod backchannel;
pub mod claims;
pub mod clients;
pub mod discovery;
pub mod error;
pub mod pkce;
pub mod routes;
pub mod token;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::ClientConfig;
use crate::keys::Keys;
use crate::secrets::digest;
use crate::store::{Hash, Store, Timestamp, User};
use error::OAuthError;

/// Endpoint paths, relative to the issuer. Used by the router and the discovery document alike.
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/jwks.json";
    pub const AUTHORIZE: &str = "/authorize";
    pub const TOKEN: &str = "/token";
    pub const USERINFO: &str = "/userinfo";
    pub const REVOKE: &str = "/revoke";
    pub const INTROSPECT: &str = "/introspect";
    pub const LOGOUT: &str = "/logout";

    /// Keycloak's endpoint paths (under a realm's issuer), served too with `[compat]
    /// keycloak_paths = true` by the same handlers.
    pub mod keycloak {
        pub const AUTH: &str = "/protocol/openid-connect/auth";
        pub const TOKEN: &str = "/protocol/openid-connect/token";
        pub const USERINFO: &str = "/protocol/openid-connect/userinfo";
        pub const CERTS: &str = "/protocol/openid-connect/certs";
        pub const LOGOUT: &str = "/protocol/openid-connect/logout";
        pub const REVOKE: &str = "/protocol/openid-connect/revoke";
        pub const INTROSPECT: &str = "/protocol/openid-connect/token/introspect";
    }
}

/// What the provider's rules need: the store, the keys, the issuer string, and the policy of
/// federated sign-ins (re-checks and extra claims; Plex implements it).
pub struct Provider {
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub issuer: String,
    pub policy: Option<Arc<dyn UserPolicy>>,
    /// Server-wide key (shared by replicas through the store) that turns a session into its
    /// public `sid`.
    pub sid_key: Hash,
}

/// Rules a federation adds to the provider without the provider knowing the federation.
#[async_trait::async_trait]
pub trait UserPolicy: Send + Sync {
    /// Whether a user signed in with `amr` may still use SSO and refresh tokens.
    async fn still_allowed(&self, user: &User, amr: &[String], now: Timestamp) -> bool;
    /// Extra id_token claims for this client (e.g. `plex_token`).
    async fn extra_claims(&self, client: &ClientConfig, user: &User) -> Map<String, Value>;
}

impl Provider {
    pub async fn still_allowed(&self, user: &User, amr: &[String], now: Timestamp) -> bool {
        match &self.policy {
            Some(p) => p.still_allowed(user, amr, now).await,
            None => true,
        }
    }
}

/// The parts of an id_token we read back (`id_token_hint` at logout).
#[derive(Debug, Clone, Deserialize)]
pub struct HintClaims {
    pub sub: String,
    pub aud: String,
    /// The SSO session the id_token was issued in, when it says.
    #[serde(default)]
    pub sid: Option<String>,
}

/// The `sid` of an SSO session (OIDC Front-/Back-Channel Logout §2): stable for the session,
/// the same on every replica, and neither the cookie nor its stored hash, from which it cannot
/// be turned back. HMAC-SHA256 under `key` of the session's hash, 128 bits, base64url.
pub fn session_sid(key: &Hash, session_hash: &Hash) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(b"doorman sid v1\0");
    ctx.update(session_hash);
    let tag = ctx.sign();
    URL_SAFE_NO_PAD.encode(tag.as_ref().get(..16).unwrap_or_default())
}

impl Provider {
    /// Claims for a Bearer access token (OIDC Core §5.3), or `invalid_token`.
    pub async fn userinfo(
        &self,
        clients: &clients::Clients,
        access_token: &str,
        now: Timestamp,
    ) -> Result<Map<String, Value>, OAuthError> {
        let token = self
            .store
            .get_access_token(&digest(access_token), now)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the access token is invalid or expired"))?;
        let user = match self.store.get_user(&token.user_id).await? {
            Some(u) if !u.disabled => u,
            _ => {
                return Err(OAuthError::invalid_token(
                    "the user no longer exists or is disabled",
                ))
            }
        };
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(user.id.clone()));
        // userinfo follows the scopes; `id_token_claims = "all"` is about the id_token only.
        claims.extend(claims::profile_claims(&user, &token.scope, false));
        if let Some(client) = clients.get(&token.client_id) {
            claims::client_claims(client, &user, &mut claims);
        }
        Ok(claims)
    }

    /// The public `sid` of an SSO session: the stored one, or (for sessions stored before
    /// sids were) one derived from its id hash.
    pub fn sid_for(&self, session: &crate::store::Session) -> String {
        session
            .sid
            .clone()
            .unwrap_or_else(|| session_sid(&self.sid_key, &session.id_hash))
    }

    /// RFC 7009: revokes a token the client owns. Unknown tokens are not an error (§2.2).
    pub async fn revoke(
        &self,
        client_id: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<(), OAuthError> {
        let hash = digest(token);
        // Whatever the token's state: a refresh token already rotated (or expired) still names
        // its family, and revoking it ends the whole family (RFC 7009 §2.1, RFC 9700 §4.14).
        if let Some(rt) = self.store.find_refresh_token(&hash).await? {
            if rt.client_id == client_id {
                // Revoking a refresh token ends its grant, access tokens included (§2.1).
                self.store.revoke_grant(&rt.grant_id, now).await?;
                let rotated = rt.used_at.is_some();
                tracing::info!(target: "audit", event = "token_revoked", kind = "refresh_token", client = %client_id, rotated);
            }
            return Ok(());
        }
        if let Some(at) = self.store.get_access_token(&hash, now).await? {
            if at.client_id == client_id {
                self.store.delete_access_token(&hash).await?;
                tracing::info!(target: "audit", event = "token_revoked", kind = "access_token", client = %client_id);
            }
        }
        Ok(())
    }

    /// RFC 7662 for an authenticated client: `{"active": false}` for anything not live, and
    /// (§4) for tokens issued to another client unless the asking client is a resource server
    /// (`introspect_any`): a client learns nothing about other clients' tokens.
    pub async fn introspect(
        &self,
        asking: &ClientConfig,
        token: &str,
        now: Timestamp,
    ) -> Result<Value, OAuthError> {
        let hash = digest(token);
        let (kind, client_id, user_id, scope, iat, exp) =
            if let Some(at) = self.store.get_access_token(&hash, now).await? {
                (
                    "access_token",
                    at.client_id,
                    at.user_id,
                    at.scope,
                    at.created_at,
                    at.expires_at,
                )
            } else if let Some(rt) = self.store.get_refresh_token(&hash, now).await? {
                (
                    "refresh_token",
                    rt.client_id,
                    rt.user_id,
                    rt.scope,
                    rt.created_at,
                    rt.expires_at,
                )
            } else {
                return Ok(json!({"active": false}));
            };
        if client_id != asking.id && !asking.introspect_any {
            tracing::info!(target: "audit", event = "introspect", outcome = "other_client", client = %asking.id, "a client asked about another client's token: answered inactive");
            return Ok(json!({"active": false}));
        }
        let user = match self.store.get_user(&user_id).await? {
            Some(u) if !u.disabled => u,
            _ => return Ok(json!({"active": false})),
        };
        Ok(json!({
            "active": true,
            "token_type": if kind == "access_token" { "Bearer" } else { "refresh_token" },
            "scope": scope,
            "client_id": client_id,
            "username": user.username,
            "sub": user.id,
            "aud": client_id,
            "iss": self.issuer,
            "iat": iat,
            "exp": exp,
        }))
    }

    /// Reads an id_token we issued, expired or not (RP-initiated logout §2: an expired hint is
    /// still a valid hint). The signature and issuer must hold, and it must be an id_token: no
    /// `typ` header (JWT access tokens carry `typ: "JWT"`) and an `aud` that `is_client` knows
    /// (a JWT access token's audience is never a client id). Any other JWT we signed is no hint.
    pub fn read_id_token_hint(
        &self,
        token: &str,
        is_client: impl Fn(&str) -> bool,
    ) -> Option<HintClaims> {
        if jsonwebtoken::decode_header(token).ok()?.typ.is_some() {
            return None;
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims =
            HashSet::from(["sub".to_string(), "iss".to_string(), "aud".to_string()]);
        v.set_issuer(&[self.issuer.as_str()]);
        self.keys
            .verify::<HintClaims>(token, &v)
            .filter(|h| is_client(&h.aud))
    }
}
