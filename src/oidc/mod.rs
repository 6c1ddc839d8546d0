//! The OpenID provider's rules: what each endpoint decides, as plain async functions over the
//! store and the keys. The HTTP handlers live in `routes.rs` and only translate.

pub mod authorize;
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
use crate::store::{Store, Timestamp, User};
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
}

/// What the provider's rules need: the store, the keys, the issuer string, and the policy of
/// federated sign-ins (re-checks and extra claims; Plex implements it).
pub struct Provider {
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub issuer: String,
    pub policy: Option<Arc<dyn UserPolicy>>,
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
}

impl Provider {
    /// Claims for a Bearer access token (OIDC Core §5.3), or `invalid_token`.
    pub async fn userinfo(
        &self,
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
        Ok(claims)
    }

    /// RFC 7009: revokes a token the client owns. Unknown tokens are not an error (§2.2).
    pub async fn revoke(
        &self,
        client_id: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<(), OAuthError> {
        let hash = digest(token);
        if let Some(rt) = self.store.get_refresh_token(&hash, now).await? {
            if rt.client_id == client_id {
                // Revoking a refresh token ends its grant, access tokens included (§2.1).
                self.store.revoke_grant(&rt.grant_id, now).await?;
                tracing::info!(target: "audit", event = "token_revoked", kind = "refresh_token", client = %client_id);
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

    /// RFC 7662 for an authenticated client: `{"active": false}` for anything not live.
    pub async fn introspect(&self, token: &str, now: Timestamp) -> Result<Value, OAuthError> {
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
    /// still a valid hint). The signature and issuer must hold.
    pub fn read_id_token_hint(&self, token: &str) -> Option<HintClaims> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims =
            HashSet::from(["sub".to_string(), "iss".to_string(), "aud".to_string()]);
        v.set_issuer(&[self.issuer.as_str()]);
        self.keys.verify::<HintClaims>(token, &v)
    }
}
