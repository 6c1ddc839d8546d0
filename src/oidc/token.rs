//! The token endpoint's rules (RFC 6749 §4.1.3, §6; RFC 9700 §4.14; OIDC Core §3.1.3):
//! single-use codes bound to client, redirect_uri and PKCE; a replayed code revokes what it
//! issued; refresh tokens rotate on every use and reuse revokes the whole family.

use serde::{Deserialize, Serialize};

use super::authorize::{wants_refresh, AuthorizeRequest};
use super::claims::{acr_for, at_hash, profile_claims, IdTokenClaims};
use super::error::OAuthError;
use super::{pkce, Provider};
use crate::config::{AccessTokenFormat, ClientConfig, IdTokenClaims as ClaimsMode};
use crate::secrets::{digest, random_id, random_token};
use crate::store::{
    AccessToken, AuthCode, CodeRedemption, Grant, RefreshRotation, RefreshToken, Session,
    Timestamp, User,
};

pub const CODE_LIFETIME: i64 = 60;

/// What a token response holds besides the access token and id_token.
struct Mint {
    /// Issue a refresh token too.
    with_refresh: bool,
    /// Put the authorization request's nonce in the id_token (not on refresh).
    with_nonce: bool,
    /// The access token, when the code exchange already stored it.
    stored_access: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    /// Tolerated and ignored: Mastodon sends it on every grant.
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl Provider {
    /// Issues a code for a signed-in user; returns the URL to send the browser to.
    pub async fn issue_code(
        &self,
        req: &AuthorizeRequest,
        client: &ClientConfig,
        session: &Session,
        now: Timestamp,
    ) -> Result<String, OAuthError> {
        let grant = Grant {
            id: random_id(16),
            client_id: client.id.clone(),
            user_id: session.user_id.clone(),
            scope: req.scope.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            nonce: req.nonce.clone(),
            created_at: now,
            expires_at: now + secs(client.lifetimes.refresh_token_max),
            revoked_at: None,
            sid: Some(self.sid_for(session)),
            // Asked for with `acr_values`: the level this session reached.
            acr: (!req.acr_values.is_empty()).then(|| acr_for(&session.amr).to_string()),
        };
        let code = random_token();
        let row = AuthCode {
            hash: digest(&code),
            grant_id: grant.id.clone(),
            client_id: client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            created_at: now,
            expires_at: now + CODE_LIFETIME,
            used_at: None,
        };
        self.store.create_grant_with_code(&grant, &row).await?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &req.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.issuer));
        Ok(super::authorize::redirect_with(&req.redirect_uri, &params))
    }

    /// POST /token for an authenticated client.
    pub async fn exchange(
        &self,
        client: &ClientConfig,
        req: &TokenRequest,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        match req.grant_type.as_deref() {
            Some("authorization_code") => {
                // Every refusal is logged with the client and the reason (never the code or
                // the verifier), so a misconfigured RP can be diagnosed from doorman's log.
                self.redeem_code(client, req, now).await.inspect_err(|e| {
                    tracing::warn!(target: "audit", event = "code_exchange", outcome = "failure", client = %client.id, error = e.code, reason = %e.description);
                })
            }
            Some("refresh_token") => self.refresh(client, req, now).await.inspect_err(|e| {
                tracing::warn!(target: "audit", event = "refresh", outcome = "failure", client = %client.id, error = e.code, reason = %e.description);
            }),
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some(_) => Err(OAuthError::unsupported_grant_type(
                "supported grant types: authorization_code, refresh_token",
            )),
        }
    }

    async fn redeem_code(
        &self,
        client: &ClientConfig,
        req: &TokenRequest,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let code = req
            .code
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        // Opaque access tokens are stored in the same transaction that burns the code: one
        // write for the whole exchange. If the redemption is then refused, its grant is revoked,
        // which kills that token too (and a refused redemption of a live code is suspect anyway).
        let access_ttl = secs(client.lifetimes.access_token);
        let pre_issued = match client.access_token_format {
            AccessTokenFormat::Opaque => Some(random_token()),
            AccessTokenFormat::Jwt { .. } => None,
        };
        let redemption = match &pre_issued {
            Some(access) => {
                self.store
                    .redeem_code_issuing(&digest(code), now, &digest(access), now + access_ttl)
                    .await?
            }
            None => self.store.redeem_code(&digest(code), now).await?,
        };
        let (row, grant) = match redemption {
            CodeRedemption::Fresh(row, grant) => (row, grant),
            CodeRedemption::Replayed(row) => {
                tracing::warn!(target: "audit", event = "code_replay", client = %row.client_id, grant = %row.grant_id, "authorization code used twice: every token it produced is revoked");
                return Err(OAuthError::invalid_grant("the code was already used"));
            }
            CodeRedemption::NotFound => {
                return Err(OAuthError::invalid_grant("unknown or expired code"))
            }
        };
        if let Err(e) = check_redemption(client, req, &row, &grant, now) {
            if row.client_id != client.id || pre_issued.is_some() {
                // A code stolen by another client is burnt now; and a token already stored for
                // a refused redemption must die with its grant.
                self.store.revoke_grant(&grant.id, now).await?;
            }
            return Err(e);
        }
        let user = match self.active_user(&grant.user_id).await {
            Ok(u) => u,
            Err(e) => {
                self.store.revoke_grant(&grant.id, now).await?;
                return Err(e);
            }
        };
        let refresh = wants_refresh(client, &grant.scope);
        let resp = self
            .mint(
                client,
                &grant,
                &user,
                Mint {
                    with_refresh: refresh,
                    with_nonce: true,
                    stored_access: pre_issued,
                },
                now,
            )
            .await?;
        tracing::info!(target: "audit", event = "token_issued", grant_type = "authorization_code", client = %client.id, user = %user.username, refresh = refresh);
        Ok(resp)
    }

    async fn refresh(
        &self,
        client: &ClientConfig,
        req: &TokenRequest,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = req
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let hash = digest(presented);
        let live = self.store.get_refresh_token(&hash, now).await?;
        if let Some(old) = &live {
            if old.client_id != client.id {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
        }
        let new_secret = random_token();
        let new = RefreshToken {
            hash: digest(&new_secret),
            grant_id: live
                .as_ref()
                .map(|t| t.grant_id.clone())
                .unwrap_or_default(),
            client_id: client.id.clone(),
            user_id: live.as_ref().map(|t| t.user_id.clone()).unwrap_or_default(),
            scope: live.as_ref().map(|t| t.scope.clone()).unwrap_or_default(),
            created_at: now,
            expires_at: now + secs(client.lifetimes.refresh_token_idle),
            used_at: None,
        };
        // Called even when the lookup found nothing live: the rotation is what detects reuse
        // (and revokes the family); it stores `new` only when the old token was live.
        let (old, grant) = match self.store.rotate_refresh_token(&hash, &new, now).await? {
            RefreshRotation::Rotated(old, grant) => (old, grant),
            RefreshRotation::Reused(old) => {
                tracing::warn!(target: "audit", event = "refresh_reuse", client = %old.client_id, grant = %old.grant_id, "rotated refresh token used again: the whole family is revoked");
                return Err(OAuthError::invalid_grant(
                    "the refresh token was already used",
                ));
            }
            RefreshRotation::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "unknown, expired or revoked refresh token",
                ))
            }
        };
        let user = match self.active_user(&old.user_id).await {
            Ok(u) => u,
            Err(e) => {
                self.store.revoke_grant(&grant.id, now).await?;
                return Err(e);
            }
        };
        if !self.still_allowed(&user, &grant.amr, now).await {
            self.store.revoke_grant(&grant.id, now).await?;
            return Err(OAuthError::invalid_grant(
                "the user's access has been withdrawn",
            ));
        }
        // A federation's re-check may just have changed the user (Plex owner groups): the
        // tokens say what it found. The read is a cache hit unless it did.
        let user = if self.policy.is_some() {
            self.active_user(&old.user_id).await?
        } else {
            user
        };
        let mut resp = self
            .mint(
                client,
                &grant,
                &user,
                Mint {
                    with_refresh: false,
                    with_nonce: false,
                    stored_access: None,
                },
                now,
            )
            .await?;
        resp.refresh_token = Some(new_secret);
        tracing::info!(target: "audit", event = "token_issued", grant_type = "refresh_token", client = %client.id, user = %user.username);
        Ok(resp)
    }

    async fn active_user(&self, user_id: &str) -> Result<User, OAuthError> {
        match self.store.get_user(user_id).await? {
            Some(u) if !u.disabled => Ok(u),
            _ => Err(OAuthError::invalid_grant(
                "the user no longer exists or is disabled",
            )),
        }
    }

    /// A new access token of the client's format (not yet stored).
    async fn new_access_token(
        &self,
        client: &ClientConfig,
        grant: &Grant,
        user: &User,
        now: Timestamp,
        ttl: i64,
    ) -> Result<String, OAuthError> {
        Ok(match &client.access_token_format {
            AccessTokenFormat::Opaque => random_token(),
            AccessTokenFormat::Jwt { audience } => {
                self.keys
                    .sign(
                        now,
                        Some("JWT"),
                        jwt_access_claims(&self.issuer, client, grant, user, audience, now, ttl),
                    )
                    .await?
            }
        })
    }

    /// Access token (opaque, stored hashed, unless the code exchange stored it already),
    /// id_token (RS256), and a refresh token if asked.
    async fn mint(
        &self,
        client: &ClientConfig,
        grant: &Grant,
        user: &User,
        opts: Mint,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let Mint {
            with_refresh,
            with_nonce,
            stored_access,
        } = opts;
        let access_ttl = secs(client.lifetimes.access_token);
        let (access, stored) = match stored_access {
            Some(a) => (a, true),
            None => (
                self.new_access_token(client, grant, user, now, access_ttl)
                    .await?,
                false,
            ),
        };
        if !stored {
            self.store
                .put_access_token(&AccessToken {
                    hash: digest(&access),
                    grant_id: grant.id.clone(),
                    client_id: client.id.clone(),
                    user_id: user.id.clone(),
                    scope: grant.scope.clone(),
                    created_at: now,
                    expires_at: now + access_ttl,
                })
                .await?;
        }
        let refresh_token = if with_refresh {
            let secret = random_token();
            self.store
                .put_refresh_token(&RefreshToken {
                    hash: digest(&secret),
                    grant_id: grant.id.clone(),
                    client_id: client.id.clone(),
                    user_id: user.id.clone(),
                    scope: grant.scope.clone(),
                    created_at: now,
                    expires_at: (now + secs(client.lifetimes.refresh_token_idle))
                        .min(grant.expires_at),
                    used_at: None,
                })
                .await?;
            Some(secret)
        } else {
            None
        };
        let claims = IdTokenClaims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            aud: client.id.clone(),
            azp: client.id.clone(),
            exp: now + secs(client.lifetimes.id_token),
            iat: now,
            auth_time: grant.auth_time,
            nonce: if with_nonce {
                grant.nonce.clone()
            } else {
                None
            },
            at_hash: Some(at_hash(&access)),
            amr: grant.amr.clone(),
            acr: grant.acr.clone(),
            sid: grant.sid.clone(),
            profile: profile_claims(
                user,
                &grant.scope,
                client.id_token_claims == ClaimsMode::All,
            ),
        };
        let mut claims = claims;
        super::claims::client_claims(client, user, &mut claims.profile);
        if let Some(policy) = &self.policy {
            claims
                .profile
                .extend(policy.extra_claims(client, user).await);
        }
        let id_token = self.keys.sign(now, None, claims).await?;
        Ok(TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: access_ttl,
            id_token: Some(id_token),
            refresh_token,
            scope: grant.scope.clone(),
        })
    }
}

/// Claims of a JWT access token (`access_token_format = "jwt"`, for Jitsi's native OIDC mode).
/// Header `typ` is "JWT" because Prosody demands it (RFC 9068 would say `at+jwt`); `aud` is the
/// configured audience, never the client id, so it can never pass for an id_token, and doorman
/// itself still only accepts it by its stored hash. `room` and `context.user` are what Jitsi
/// reads from its token.
pub fn jwt_access_claims(
    issuer: &str,
    client: &ClientConfig,
    grant: &Grant,
    user: &User,
    audience: &str,
    now: Timestamp,
    ttl: i64,
) -> serde_json::Value {
    let context_user = super::claims::jitsi_context_user(user);
    let mut extra = serde_json::Map::new();
    super::claims::client_claims(client, user, &mut extra);
    let mut claims = serde_json::json!({
        "iss": issuer,
        "sub": user.id,
        "aud": audience,
        "client_id": client.id,
        "scope": grant.scope,
        "iat": now,
        // A minute early: Prosody checks nbf with no leeway, and its clock may lag ours.
        "nbf": now - 60,
        "exp": now + ttl,
        "jti": random_id(16),
        "room": "*",
        "context": {"user": context_user},
    });
    if let Some(obj) = claims.as_object_mut() {
        // Per-client claims never take a protocol claim's name (config validation).
        for (k, v) in extra {
            obj.entry(k).or_insert(v);
        }
    }
    claims
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6: the code belongs to this client, is unexpired and live,
/// and comes with the same redirect_uri and the PKCE verifier of its challenge.
fn check_redemption(
    client: &ClientConfig,
    req: &TokenRequest,
    row: &AuthCode,
    grant: &Grant,
    now: Timestamp,
) -> Result<(), OAuthError> {
    if row.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if now >= row.expires_at || grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if req.redirect_uri.as_deref() != Some(row.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&row.code_challenge, &req.code_verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        // RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent but the authorization used no PKCE",
        )),
        (None, None) => Ok(()),
    }
}
