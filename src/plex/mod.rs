//! Sign in with Plex, the domain part: who a plex.tv account is, whether it may enter (access
//! to one of the configured servers), the doorman user it maps to, and the periodic re-check.
//! No HTTP handlers here (see `login::plex`); plex.tv itself is behind `client`.

pub mod client;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::accounts::users::{new_user_id, validate_username};
use crate::config::{ClientConfig, PlexConfig, PlexTokenClaim};
use crate::oidc::UserPolicy;
use crate::secrets::SecretBox;
use crate::store::{Identity, Store, StoreError, Timestamp, User};
pub use client::{PlexClient, PlexError, PlexUser, Resource};

pub const PROVIDER: &str = "plex";

/// The Plex Auth App address for a PIN of this deployment.
pub fn auth_app_url_for(plex: &PlexService, code: &str, forward_url: &str) -> String {
    client::auth_app_url(
        &plex.config.auth_app_url,
        plex.client.client_identifier(),
        code,
        &plex.config.product,
        forward_url,
    )
}
/// The `amr` value of a Plex sign-in.
pub const AMR: &str = "plex";

/// The access decision from a user's resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allowed: bool,
    /// Owns one of the configured servers.
    pub owner: bool,
    /// The per-server token of the first configured server the user can reach.
    pub server_token: Option<String>,
}

/// Allowed iff some resource is one of `servers` and provides `server` (plex.md §3.2).
pub fn decide(resources: &[Resource], servers: &[String]) -> Access {
    let mut access = Access::default();
    for r in resources {
        let listed = r
            .client_identifier
            .as_ref()
            .is_some_and(|id| servers.iter().any(|s| s == id));
        if listed && r.is_server() {
            access.allowed = true;
            access.owner |= r.owned == Some(true);
            if access.server_token.is_none() {
                access.server_token = r.access_token.clone().filter(|t| !t.is_empty());
            }
        }
    }
    access
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The account cannot reach any configured server.
    #[error("the Plex account {username} has no access to the configured servers")]
    Denied { username: String },
    /// plex.tv refused the token it just issued (revoked meanwhile).
    #[error("plex.tv did not accept the sign-in")]
    Revoked,
    #[error("the doorman account linked to this Plex account is disabled")]
    Disabled,
    #[error(transparent)]
    Plex(PlexError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an invitee's Plex account made no account.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// This Plex account is already linked to `username`: it signs in with Plex.
    #[error("the Plex account is already linked to {username}")]
    AlreadyLinked { username: String },
    /// Expired, used up, revoked or unknown by now.
    #[error("the invite can no longer be used")]
    Gone,
    /// The invite's email belongs to another account.
    #[error("the invite's email belongs to another account")]
    EmailTaken,
    #[error("plex.tv did not accept the sign-in")]
    Revoked,
    #[error("no free username for this Plex account")]
    NoUsername,
    #[error(transparent)]
    Plex(PlexError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Plex username made into a doorman username: letters, digits, `.`, `_`, `-`.
pub fn username_from(plex: &PlexUser) -> String {
    let raw = plex
        .username
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(plex.title.as_deref())
        .unwrap_or("");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(56)
        .collect();
    if name.is_empty() {
        name = format!("plex-{}", plex.id);
    }
    name
}

pub struct PlexService {
    pub client: PlexClient,
    pub config: PlexConfig,
    store: Arc<dyn Store>,
    cipher: SecretBox,
}

impl PlexService {
    pub fn new(
        client: PlexClient,
        config: PlexConfig,
        store: Arc<dyn Store>,
        cipher: SecretBox,
    ) -> PlexService {
        PlexService {
            client,
            config,
            store,
            cipher,
        }
    }

    fn seal(&self, token: &str) -> Option<Vec<u8>> {
        self.cipher.seal(token.as_bytes())
    }

    fn open(&self, sealed: Option<&Vec<u8>>) -> Option<String> {
        sealed
            .and_then(|s| self.cipher.open(s))
            .and_then(|b| String::from_utf8(b).ok())
    }

    /// A PIN was approved with `token`: identify the account, decide access, and create or
    /// update its doorman user. Never logs the token.
    pub async fn sign_in(&self, token: &str, now: Timestamp) -> Result<User, SignInError> {
        let plex = match self.client.user(token).await {
            Ok(u) => u,
            Err(PlexError::Unauthorized) => return Err(SignInError::Revoked),
            Err(e) => return Err(SignInError::Plex(e)),
        };
        let resources = match self.client.resources(token).await {
            Ok(r) => r,
            Err(PlexError::Unauthorized) => return Err(SignInError::Revoked),
            Err(e) => return Err(SignInError::Plex(e)),
        };
        let access = decide(&resources, &self.config.servers);
        let plex_name = plex
            .username
            .clone()
            .filter(|s| !s.is_empty())
            .or(plex.title.clone())
            .unwrap_or_default();
        let existing = self
            .store
            .get_identity(PROVIDER, &plex.id.to_string())
            .await?;
        // An account made from an invite is let in by the invite, shared server or not.
        let by_invite = existing.as_ref().is_some_and(|e| e.by_invite);
        if !access.allowed && !by_invite {
            if let Some(mut ident) = existing {
                ident.allowed = false;
                ident.checked_at = Some(now);
                ident.updated_at = now;
                self.store.put_identity(&ident).await?;
            }
            return Err(SignInError::Denied {
                username: format!("{plex_name} (Plex id {})", plex.id),
            });
        }
        let user = self.provision(&plex, &access, by_invite, now).await?;
        if user.disabled {
            return Err(SignInError::Disabled);
        }
        self.store
            .put_identity(&Identity {
                provider: PROVIDER.into(),
                subject: plex.id.to_string(),
                user_id: user.id.clone(),
                token: self.seal(token),
                server_token: access.server_token.as_deref().and_then(|t| self.seal(t)),
                owner: access.owner,
                allowed: true,
                checked_at: Some(now),
                created_at: existing.map(|e| e.created_at).unwrap_or(now),
                updated_at: now,
                by_invite,
            })
            .await?;
        Ok(user)
    }

    /// An invitee approved a PIN on the invite page with `token`: makes their account from
    /// the invite whose token digest is `link_hash` (one use taken atomically, given back if
    /// the account cannot be made) and links the Plex account to it. The account gets the
    /// invite's groups (and the groups every Plex user gets), the invite's email (verified when
    /// the invite named it) or else the email Plex confirmed if nobody has it, and a username
    /// from Plex. The invite is its access: no server share is needed, now or later. A Plex
    /// account already linked here is refused (it signs in with Plex instead).
    pub async fn join_by_invite(
        &self,
        token: &str,
        link_hash: &crate::store::Hash,
        now: Timestamp,
    ) -> Result<User, JoinError> {
        let plex = match self.client.user(token).await {
            Ok(u) => u,
            Err(PlexError::Unauthorized) => return Err(JoinError::Revoked),
            Err(e) => return Err(JoinError::Plex(e)),
        };
        let subject = plex.id.to_string();
        if let Some(ident) = self.store.get_identity(PROVIDER, &subject).await? {
            let username = self
                .store
                .get_user(&ident.user_id)
                .await?
                .map(|u| u.username)
                .unwrap_or_default();
            return Err(JoinError::AlreadyLinked { username });
        }
        let link = self
            .store
            .take_link_use(link_hash, crate::store::LinkKind::Invite, now)
            .await?
            .ok_or(JoinError::Gone)?;
        let made = match crate::accounts::links::free_vouched_email(&*self.store, &link, now).await
        {
            Ok(()) => self.make_invited(&plex, &link, now).await,
            Err(e) => Err(e.into()),
        };
        let user = match made {
            Ok(user) => user,
            Err(e) => {
                self.store.give_back_link_use(&link.id).await?;
                return Err(e);
            }
        };
        let linked = self
            .store
            .insert_identity(&Identity {
                provider: PROVIDER.into(),
                subject,
                user_id: user.id.clone(),
                token: self.seal(token),
                server_token: None,
                owner: false,
                allowed: true,
                checked_at: Some(now),
                created_at: now,
                updated_at: now,
                by_invite: true,
            })
            .await?;
        if !linked {
            // Another sign-up with this Plex account won the race: undo this one (a plain
            // delete: the name was never used, so it is not retired) and give the use back.
            self.store.delete_user(&user.id).await?;
            self.store.give_back_link_use(&link.id).await?;
            let username = match self
                .store
                .get_identity(PROVIDER, &plex.id.to_string())
                .await?
            {
                Some(i) => self.store.get_user(&i.user_id).await?.map(|u| u.username),
                None => None,
            };
            return Err(JoinError::AlreadyLinked {
                username: username.unwrap_or_default(),
            });
        }
        tracing::info!(target: "audit", event = "invite_redeemed", invite = %link.id, user = %user.username, method = "plex", plex_id = plex.id, groups = %user.groups.join(","), outcome = "success");
        Ok(user)
    }

    async fn make_invited(
        &self,
        plex: &PlexUser,
        link: &crate::store::Link,
        now: Timestamp,
    ) -> Result<User, JoinError> {
        use crate::accounts::users::{self, AccountError, NewUser};
        let mut groups = link.groups.clone();
        for g in &self.config.groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        // The invite's email; else the one Plex confirmed, unless another account has it.
        let (mut email, email_verified) = match &link.email {
            Some(e) => (Some(e.clone()), link.email_verified),
            None => {
                let confirmed = plex
                    .email
                    .clone()
                    .filter(|e| !e.trim().is_empty() && users::validate_email(e).is_ok())
                    .filter(|_| plex.confirmed.unwrap_or(false));
                let free = match &confirmed {
                    Some(e) => self.store.find_user_by_email(e).await?.is_none(),
                    None => false,
                };
                (confirmed.filter(|_| free), free)
            }
        };
        let name = plex
            .friendly_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or(plex.title.clone());
        let base = username_from(plex);
        for n in 1..=50u32 {
            let candidate = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if users::validate_chosen_username(&candidate).is_err() {
                continue;
            }
            let new = NewUser {
                username: candidate,
                email: email.clone(),
                email_verified: email_verified && email.is_some(),
                name: name.clone(),
                groups: groups.clone(),
                password_hash: None,
            };
            match users::create(&*self.store, new, now).await {
                Ok(user) => return Ok(user),
                Err(AccountError::UsernameTaken(_)) => continue,
                Err(AccountError::EmailTaken(_)) if link.email.is_none() => {
                    // Plex's email was taken meanwhile: leave it off.
                    email = None;
                    continue;
                }
                Err(AccountError::EmailTaken(_)) => return Err(JoinError::EmailTaken),
                Err(AccountError::Store(e)) => return Err(e.into()),
                Err(_) => continue,
            }
        }
        Err(JoinError::NoUsername)
    }

    /// Creates the user on first sign-in (username from Plex, made unique, fixed from then
    /// on) or refreshes name, email, picture and groups. Keyed on the Plex id, never on email;
    /// an email owned by another user, or one Plex has not confirmed, is left out, never merged.
    /// An account made from an invite (`by_invite`) keeps the email the invite gave it.
    async fn provision(
        &self,
        plex: &PlexUser,
        access: &Access,
        by_invite: bool,
        now: Timestamp,
    ) -> Result<User, SignInError> {
        // Only an email Plex has confirmed becomes the account's: an unconfirmed one may be
        // anybody's, and rules and apps take an account's email at its word.
        let email = plex
            .email
            .clone()
            .filter(|e| !e.trim().is_empty())
            .filter(|_| plex.confirmed.unwrap_or(false));
        let name = plex
            .friendly_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or(plex.title.clone());
        let picture = plex.thumb.clone().filter(|s| !s.is_empty());
        let mut groups = self.config.groups.clone();
        if access.owner {
            groups.extend(self.config.owner_groups.iter().cloned());
        }
        let linked = match self
            .store
            .get_identity(PROVIDER, &plex.id.to_string())
            .await?
        {
            Some(ident) => self.store.get_user(&ident.user_id).await?,
            None => None,
        };
        let email = match &email {
            Some(e) => match self.store.find_user_by_email(e).await? {
                Some(other) if linked.as_ref().is_none_or(|u| u.id != other.id) => {
                    tracing::warn!(
                        plex_id = plex.id, other_user = %other.username,
                        "the Plex account's email belongs to another doorman user, so it is left off; to make them one account, run `doorman user link-plex {} {}`",
                        other.username, plex.id
                    );
                    None
                }
                _ => Some(e.clone()),
            },
            None => None,
        };
        let email_verified = email.is_some();
        if let Some(mut user) = linked {
            user.name = name;
            if !(by_invite && user.email.is_some()) {
                user.email = email;
                user.email_verified = email_verified;
            }
            user.picture = picture;
            for g in groups {
                if !user.groups.contains(&g) {
                    user.groups.push(g);
                }
            }
            if !access.owner {
                // Ownership ended: the groups it gave go with it.
                self.drop_owner_groups(&mut user.groups);
            }
            user.updated_at = now;
            self.store.update_user(&user).await?;
            return Ok(user);
        }
        let base = username_from(plex);
        for n in 1..=50u32 {
            let candidate = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if validate_username(&candidate).is_err() {
                continue;
            }
            let user = User {
                id: new_user_id(),
                username: candidate,
                email: email.clone(),
                email_verified,
                name: name.clone(),
                given_name: None,
                family_name: None,
                picture: picture.clone(),
                groups: groups.clone(),
                password_hash: None,
                disabled: false,
                created_at: now,
                updated_at: now,
                last_login_at: None,
            };
            match self.store.create_user(&user).await {
                Ok(()) => {
                    tracing::info!(target: "audit", event = "user_created", user = %user.username, method = "plex", plex_id = plex.id);
                    return Ok(user);
                }
                Err(StoreError::Conflict { field: "username" }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SignInError::Store(StoreError::Unavailable(
            "no free username for this Plex account".into(),
        )))
    }

    /// Removes the owner-only groups (those `owner_groups` adds that `groups` does not).
    fn drop_owner_groups(&self, groups: &mut Vec<String>) {
        groups.retain(|g| !self.config.owner_groups.contains(g) || self.config.groups.contains(g));
    }

    /// Brings the user's owner groups in line with `owner` (a re-check found ownership begun
    /// or ended). Reads the user afresh, so nothing else about them is overwritten.
    async fn sync_owner_groups(
        &self,
        user_id: &str,
        owner: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(mut user) = self.store.get_user(user_id).await? else {
            return Ok(());
        };
        let before = user.groups.clone();
        if owner {
            for g in &self.config.owner_groups {
                if !user.groups.contains(g) {
                    user.groups.push(g.clone());
                }
            }
        } else {
            self.drop_owner_groups(&mut user.groups);
        }
        if user.groups != before {
            user.updated_at = now;
            self.store.update_user(&user).await?;
            tracing::info!(target: "audit", event = "plex_owner_groups", user = %user.username, owner, "Plex re-check: owner groups updated");
        }
        Ok(())
    }

    /// Asks plex.tv again when the last check is older than `recheck_after`. If plex.tv cannot
    /// be reached, the previous decision holds for `recheck_grace` more.
    pub async fn still_allowed(&self, user: &User, now: Timestamp) -> Result<bool, StoreError> {
        let Some(mut ident) = self.store.user_identity(&user.id, PROVIDER).await? else {
            return Ok(true);
        };
        if !ident.allowed {
            return Ok(false);
        }
        if ident.by_invite {
            // Let in by its invite: no share to re-check (the operator disables it instead).
            return Ok(true);
        }
        let checked = ident.checked_at.unwrap_or(0);
        let after = secs(self.config.recheck_after);
        if now - checked < after {
            return Ok(true);
        }
        let Some(token) = self.open(ident.token.as_ref()) else {
            return Ok(true);
        };
        let verdict = match self.client.resources(&token).await {
            Ok(resources) => {
                let access = decide(&resources, &self.config.servers);
                ident.owner = access.owner;
                ident.server_token = access.server_token.as_deref().and_then(|t| self.seal(t));
                self.sync_owner_groups(&user.id, access.owner, now).await?;
                Some(access.allowed)
            }
            Err(PlexError::Unauthorized) => Some(false),
            Err(e) => {
                let within_grace = now - checked < after + secs(self.config.recheck_grace);
                tracing::warn!(user = %user.username, error = %e, within_grace, "could not re-check Plex access");
                return Ok(within_grace);
            }
        };
        let allowed = verdict.unwrap_or(false);
        ident.allowed = allowed;
        ident.checked_at = Some(now);
        ident.updated_at = now;
        self.store.put_identity(&ident).await?;
        if !allowed {
            tracing::warn!(target: "audit", event = "plex_access_lost", user = %user.username, "Plex access re-check: no longer shared; sessions and refresh tokens stop working");
        }
        Ok(allowed)
    }

    /// The `plex_token` claim of the kind the client opted into.
    pub async fn token_claim(&self, kind: PlexTokenClaim, user: &User) -> Option<String> {
        let ident = self.store.user_identity(&user.id, PROVIDER).await.ok()??;
        match kind {
            PlexTokenClaim::Server => self.open(ident.server_token.as_ref()),
            PlexTokenClaim::Account => self.open(ident.token.as_ref()),
        }
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[async_trait]
impl UserPolicy for PlexService {
    async fn still_allowed(&self, user: &User, amr: &[String], now: Timestamp) -> bool {
        if !amr.iter().any(|m| m == AMR) {
            return true;
        }
        PlexService::still_allowed(self, user, now)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "store error during the Plex re-check");
                false
            })
    }

    async fn extra_claims(&self, client: &ClientConfig, user: &User) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(kind) = client.plex_token_claim {
            if let Some(token) = self.token_claim(kind, user).await {
                m.insert("plex_token".into(), Value::String(token));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str, provides: &str, owned: bool, token: Option<&str>) -> Resource {
        Resource {
            client_identifier: Some(id.into()),
            provides: Some(provides.into()),
            owned: Some(owned),
            access_token: token.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn access_needs_a_listed_server_that_provides_server() {
        let servers = vec!["SRV1".to_string()];
        let owner = decide(&[res("SRV1", "server", true, Some("t"))], &servers);
        assert_eq!(
            owner,
            Access {
                allowed: true,
                owner: true,
                server_token: Some("t".into())
            }
        );
        let friend = decide(
            &[
                res("P", "client,player", true, None),
                res("SRV1", "server,sync-target", false, Some("s")),
            ],
            &servers,
        );
        assert!(friend.allowed && !friend.owner);
        assert!(
            !decide(&[res("SRV2", "server", true, None)], &servers).allowed,
            "another server"
        );
        assert!(
            !decide(&[res("SRV1", "client,player", true, None)], &servers).allowed,
            "a player with the same id"
        );
        assert!(!decide(&[], &servers).allowed);
    }

    #[test]
    fn usernames_from_plex() {
        let u = |username: Option<&str>, title: Option<&str>| PlexUser {
            id: 42,
            username: username.map(Into::into),
            title: title.map(Into::into),
            ..Default::default()
        };
        assert_eq!(username_from(&u(Some("Alice"), None)), "Alice");
        assert_eq!(username_from(&u(Some("al ice!"), None)), "al-ice-");
        assert_eq!(username_from(&u(Some(""), Some("Kid"))), "Kid");
        assert_eq!(username_from(&u(None, None)), "plex-42");
        assert_eq!(username_from(&u(Some("__x"), None)), "x");
    }
}
