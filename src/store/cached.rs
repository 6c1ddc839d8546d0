//! Short-lived caches in front of the store's hottest reads: users, SSO sessions and access
//! tokens, read on every authorize, token and userinfo call. Writes made through this process invalidate their
//! entries at once; writes from another process (the CLI, another replica) show within the TTL
//! (5 s), which is the promise the CLI makes. Everything else passes straight through.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache;

use super::{
    AccessToken, AuthCode, CodeRedemption, Flow, Grant, GuestLink, Hash, Identity, LockoutCounter,
    LockoutKey, LockoutUpdate, PlexPin, RefreshRotation, RefreshToken, Session, SigningKey, Store,
    StoreResult, Swept, Timestamp, Totp, User,
};

/// How long a cached read may be stale when another process wrote.
pub const TTL: Duration = Duration::from_secs(5);

pub struct CachedStore {
    inner: Arc<dyn Store>,
    users: Cache<String, User>,
    sessions: Cache<Hash, Session>,
    /// Written through at issue, so userinfo right after /token needs no database read.
    access_tokens: Cache<Hash, AccessToken>,
    /// Grants and users whose tokens this process revoked. A cached token is believed only if
    /// neither is listed, checked at read time: a token cached just after its grant was
    /// revoked (a racing code replay) is still refused.
    revoked_grants: Cache<String, ()>,
    revoked_users: Cache<String, ()>,
    /// Lowercased email → user (or none): forward-auth maps every Cloudflare identity by email.
    users_by_email: Cache<String, Option<User>>,
    /// Forward-auth cookie → its SSO session: fixed for life, so it can be kept; whether the
    /// session is still live is asked of the (cached) session itself.
    forward_auth: Cache<Hash, Hash>,
}

/// How long a revocation is remembered: far longer than any cached token lives.
const REVOCATION_MEMORY: Duration = Duration::from_secs(3600);

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>) -> CachedStore {
        CachedStore {
            inner,
            users: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            sessions: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            access_tokens: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            revoked_grants: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REVOCATION_MEMORY)
                .build(),
            revoked_users: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REVOCATION_MEMORY)
                .build(),
            users_by_email: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            forward_auth: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        if let Some(u) = self.users.get(id) {
            return Ok(Some(u));
        }
        let user = self.inner.get_user(id).await?;
        if let Some(u) = &user {
            self.users.insert(id.to_string(), u.clone());
        }
        Ok(user)
    }

    async fn set_user_password(&self, id: &str, hash: &str, now: Timestamp) -> StoreResult<()> {
        let result = self.inner.set_user_password(id, hash, now).await;
        self.users.invalidate(id);
        // A sign-in by email reads the user (and its hash) through the email cache.
        self.users_by_email.invalidate_all();
        result
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool, now: Timestamp) -> StoreResult<()> {
        let result = self.inner.set_user_disabled(id, disabled, now).await;
        self.users.invalidate(id);
        self.users_by_email.invalidate_all();
        result
    }

    async fn set_user_name_and_email(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
        email_verified: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.users_by_email.invalidate_all();
        let result = self
            .inner
            .set_user_name_and_email(id, name, email, email_verified, now)
            .await;
        self.users.invalidate(id);
        self.users_by_email.invalidate_all();
        result
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        self.users.invalidate(&user.id);
        // The old email is not known here; user updates are rare.
        self.users_by_email.invalidate_all();
        let result = self.inner.update_user(user).await;
        self.users.invalidate(&user.id);
        result
    }

    async fn record_login(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        self.users.invalidate(user_id);
        self.inner.record_login(user_id, now).await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let result = self.inner.delete_user(id).await;
        self.users.invalidate(id);
        self.users_by_email.invalidate_all();
        // Their sessions and tokens went with them (cascade); entries do not say whose they
        // are cheaply, and deleting a user is rare.
        self.sessions.invalidate_all();
        self.revoked_users.insert(id.to_string(), ());
        result
    }

    async fn get_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Session>> {
        if let Some(s) = self.sessions.get(id_hash) {
            // The store answers only live sessions; so does the cache.
            return Ok((now < s.expires_at).then_some(s));
        }
        let session = self.inner.get_session(id_hash, now).await?;
        if let Some(s) = &session {
            self.sessions.insert(*id_hash, s.clone());
        }
        Ok(session)
    }

    async fn list_user_sessions(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Session>> {
        self.inner.list_user_sessions(user_id, now).await
    }

    async fn touch_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<()> {
        self.sessions.invalidate(id_hash);
        self.inner.touch_session(id_hash, now).await
    }

    async fn delete_session(&self, id_hash: &Hash) -> StoreResult<()> {
        self.sessions.invalidate(id_hash);
        self.inner.delete_session(id_hash).await
    }

    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
        let result = self.inner.delete_user_sessions(user_id).await;
        self.sessions.invalidate_all();
        result
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.inner.get_setting(key).await
    }

    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
        self.inner.init_setting(key, value).await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.inner.create_user(user).await?;
        // A cached "no user with this email" must not outlive the user's creation.
        self.users_by_email.invalidate_all();
        Ok(())
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.inner.find_user_by_username(username).await
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let key = email.to_lowercase();
        if let Some(hit) = self.users_by_email.get(&key) {
            return Ok(hit);
        }
        let user = self.inner.find_user_by_email(email).await?;
        self.users_by_email.insert(key, user.clone());
        Ok(user)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.inner.list_users().await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        self.inner.create_session(session).await
    }

    async fn put_flow(&self, flow: &Flow) -> StoreResult<()> {
        self.inner.put_flow(flow).await
    }

    async fn get_flow(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Flow>> {
        self.inner.get_flow(id_hash, now).await
    }

    async fn delete_flow(&self, id_hash: &Hash) -> StoreResult<()> {
        self.inner.delete_flow(id_hash).await
    }

    async fn update_flow_payload(
        &self,
        id_hash: &Hash,
        payload: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.update_flow_payload(id_hash, payload, now).await
    }

    // The second factor and the lockout counters are never cached: a replayed code and a
    // failure counted by another replica must be seen at once.

    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<Totp>> {
        self.inner.get_totp(user_id).await
    }

    async fn enable_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        recovery: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.inner.enable_totp(user_id, secret, recovery, now).await
    }

    async fn accept_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        self.inner.accept_totp_step(user_id, step).await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        codes: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.inner.replace_recovery_codes(user_id, codes, now).await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &Hash,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.use_recovery_code(user_id, code, now).await
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        self.inner.recovery_codes_left(user_id).await
    }

    async fn remove_second_factor(&self, user_id: &str) -> StoreResult<bool> {
        self.inner.remove_second_factor(user_id).await
    }

    async fn second_factor_users(&self) -> StoreResult<Vec<String>> {
        self.inner.second_factor_users().await
    }

    async fn update_lockouts(
        &self,
        keys: Vec<LockoutKey>,
        now: Timestamp,
        f: LockoutUpdate,
    ) -> StoreResult<Option<Timestamp>> {
        self.inner.update_lockouts(keys, now, f).await
    }

    async fn clear_lockouts(&self, account: &str) -> StoreResult<u64> {
        self.inner.clear_lockouts(account).await
    }

    async fn lockouts_of(&self, account: &str) -> StoreResult<Vec<(LockoutKey, LockoutCounter)>> {
        self.inner.lockouts_of(account).await
    }

    async fn create_grant_with_code(&self, grant: &Grant, code: &AuthCode) -> StoreResult<()> {
        self.inner.create_grant_with_code(grant, code).await
    }

    async fn redeem_code(&self, hash: &Hash, now: Timestamp) -> StoreResult<CodeRedemption> {
        let result = self.inner.redeem_code(hash, now).await?;
        if let CodeRedemption::Replayed(code) = &result {
            // The store revoked the code's grant: its access tokens must stop here too.
            self.revoked_grants.insert(code.grant_id.clone(), ());
        }
        Ok(result)
    }

    async fn redeem_code_issuing(
        &self,
        hash: &Hash,
        now: Timestamp,
        access_hash: &Hash,
        access_expires_at: Timestamp,
    ) -> StoreResult<CodeRedemption> {
        let result = self
            .inner
            .redeem_code_issuing(hash, now, access_hash, access_expires_at)
            .await?;
        match &result {
            CodeRedemption::Fresh(_, grant) => {
                self.access_tokens.insert(
                    *access_hash,
                    AccessToken {
                        hash: *access_hash,
                        grant_id: grant.id.clone(),
                        client_id: grant.client_id.clone(),
                        user_id: grant.user_id.clone(),
                        scope: grant.scope.clone(),
                        created_at: now,
                        expires_at: access_expires_at,
                    },
                );
            }
            CodeRedemption::Replayed(code) => {
                self.revoked_grants.insert(code.grant_id.clone(), ());
            }
            CodeRedemption::NotFound => {}
        }
        Ok(result)
    }

    async fn get_grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        self.inner.get_grant(id).await
    }

    async fn revoke_grant(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let result = self.inner.revoke_grant(id, now).await;
        self.revoked_grants.insert(id.to_string(), ());
        result
    }

    async fn revoke_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<u64> {
        let result = self.inner.revoke_user_grants(user_id, now).await;
        self.revoked_users.insert(user_id.to_string(), ());
        result
    }

    async fn revoke_session_grants(
        &self,
        user_id: &str,
        sid: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let ids = self.inner.revoke_session_grants(user_id, sid, now).await?;
        for id in &ids {
            self.revoked_grants.insert(id.clone(), ());
        }
        Ok(ids)
    }

    async fn put_access_token(&self, token: &AccessToken) -> StoreResult<()> {
        self.inner.put_access_token(token).await?;
        self.access_tokens.insert(token.hash, token.clone());
        Ok(())
    }

    async fn get_access_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<AccessToken>> {
        if let Some(t) = self.access_tokens.get(hash) {
            if !self.revoked_grants.contains_key(&t.grant_id)
                && !self.revoked_users.contains_key(&t.user_id)
            {
                return Ok((now < t.expires_at).then_some(t));
            }
        }
        self.inner.get_access_token(hash, now).await
    }

    async fn delete_access_token(&self, hash: &Hash) -> StoreResult<()> {
        self.access_tokens.invalidate(hash);
        self.inner.delete_access_token(hash).await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.inner.put_refresh_token(token).await
    }

    async fn get_refresh_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<RefreshToken>> {
        self.inner.get_refresh_token(hash, now).await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &Hash,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<RefreshRotation> {
        let result = self.inner.rotate_refresh_token(old_hash, new, now).await?;
        if let RefreshRotation::Reused(old) = &result {
            // The whole family was revoked.
            self.revoked_grants.insert(old.grant_id.clone(), ());
        }
        Ok(result)
    }

    async fn find_refresh_token(&self, hash: &Hash) -> StoreResult<Option<RefreshToken>> {
        self.inner.find_refresh_token(hash).await
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.inner.list_signing_keys().await
    }

    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        self.inner.add_signing_key(key).await
    }

    async fn add_signing_key_after(
        &self,
        key: &SigningKey,
        newest: Option<&str>,
    ) -> StoreResult<bool> {
        self.inner.add_signing_key_after(key, newest).await
    }

    async fn set_key_retire_at(&self, kid: &str, retire_at: Option<Timestamp>) -> StoreResult<()> {
        self.inner.set_key_retire_at(kid, retire_at).await
    }

    async fn put_identity(&self, identity: &Identity) -> StoreResult<()> {
        self.inner.put_identity(identity).await
    }

    async fn insert_identity(&self, identity: &Identity) -> StoreResult<bool> {
        self.inner.insert_identity(identity).await
    }

    async fn get_identity(&self, provider: &str, subject: &str) -> StoreResult<Option<Identity>> {
        self.inner.get_identity(provider, subject).await
    }

    async fn user_identity(&self, user_id: &str, provider: &str) -> StoreResult<Option<Identity>> {
        self.inner.user_identity(user_id, provider).await
    }

    async fn put_plex_pin(&self, pin: &PlexPin) -> StoreResult<()> {
        self.inner.put_plex_pin(pin).await
    }

    async fn get_plex_pin(&self, flow_hash: &Hash) -> StoreResult<Option<PlexPin>> {
        self.inner.get_plex_pin(flow_hash).await
    }

    async fn claim_plex_poll(
        &self,
        flow_hash: &Hash,
        now_ms: i64,
        next_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.claim_plex_poll(flow_hash, now_ms, next_ms).await
    }

    async fn delete_plex_pin(&self, flow_hash: &Hash, pin_id: i64) -> StoreResult<()> {
        self.inner.delete_plex_pin(flow_hash, pin_id).await
    }

    async fn defer_plex_poll(
        &self,
        flow_hash: &Hash,
        pin_id: i64,
        next_ms: i64,
    ) -> StoreResult<()> {
        self.inner.defer_plex_poll(flow_hash, pin_id, next_ms).await
    }

    async fn create_guest_link(&self, link: &GuestLink) -> StoreResult<()> {
        self.inner.create_guest_link(link).await
    }

    async fn use_guest_link(&self, id: &str, room: &str, now: Timestamp) -> StoreResult<bool> {
        self.inner.use_guest_link(id, room, now).await
    }

    async fn list_guest_links(
        &self,
        created_by: &str,
        room: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<GuestLink>> {
        self.inner.list_guest_links(created_by, room, now).await
    }

    async fn revoke_guest_link(
        &self,
        id: &str,
        created_by: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.revoke_guest_link(id, created_by, now).await
    }

    async fn create_forward_auth_session(
        &self,
        id_hash: &Hash,
        session_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.inner
            .create_forward_auth_session(id_hash, session_hash, now)
            .await?;
        self.forward_auth.insert(*id_hash, *session_hash);
        Ok(())
    }

    async fn forward_auth_parent(&self, id_hash: &Hash) -> StoreResult<Option<Hash>> {
        if let Some(parent) = self.forward_auth.get(id_hash) {
            return Ok(Some(parent));
        }
        let parent = self.inner.forward_auth_parent(id_hash).await?;
        if let Some(p) = parent {
            self.forward_auth.insert(*id_hash, p);
        }
        Ok(parent)
    }

    async fn sweep(&self, now: Timestamp) -> StoreResult<Swept> {
        self.inner.sweep(now).await
    }

    async fn backup(&self, path: &std::path::Path) -> StoreResult<()> {
        self.inner.backup(path).await
    }

    // ---- /account: the applications a user signed in to, their other sessions ----

    async fn list_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Grant>> {
        self.inner.list_user_grants(user_id, now).await
    }

    async fn delete_user_sessions_except(&self, user_id: &str, keep: &Hash) -> StoreResult<u64> {
        let result = self.inner.delete_user_sessions_except(user_id, keep).await;
        self.sessions.invalidate_all();
        result
    }

    // ---- invite and reset links: never cached (uses are counted in the database) ----

    async fn create_link(&self, link: &super::Link) -> StoreResult<()> {
        self.inner.create_link(link).await
    }

    async fn take_link_use(
        &self,
        token_hash: &Hash,
        kind: super::LinkKind,
        now: Timestamp,
    ) -> StoreResult<Option<super::Link>> {
        self.inner.take_link_use(token_hash, kind, now).await
    }

    async fn give_back_link_use(&self, id: &str) -> StoreResult<()> {
        self.inner.give_back_link_use(id).await
    }

    async fn find_link(
        &self,
        token_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<super::Link>> {
        self.inner.find_link(token_hash, now).await
    }

    async fn list_links(
        &self,
        kind: super::LinkKind,
        now: Timestamp,
    ) -> StoreResult<Vec<super::Link>> {
        self.inner.list_links(kind, now).await
    }

    async fn revoke_link(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        self.inner.revoke_link(id, now).await
    }

    // ---- /admin ----

    async fn set_user_name_and_groups(
        &self,
        id: &str,
        name: Option<&str>,
        groups: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.users.invalidate(id);
        let result = self
            .inner
            .set_user_name_and_groups(id, name, groups, now)
            .await;
        self.users.invalidate(id);
        // Cloudflare Access identities read the user (and its groups) by email.
        self.users_by_email.invalidate_all();
        result
    }

    async fn mark_email_verified(
        &self,
        id: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.users.invalidate(id);
        let result = self.inner.mark_email_verified(id, email, now).await;
        self.users.invalidate(id);
        self.users_by_email.invalidate_all();
        result
    }

    async fn list_sessions(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Session>> {
        self.inner.list_sessions(now, limit).await
    }

    async fn retire_user(&self, id: &str) -> StoreResult<()> {
        let result = self.inner.retire_user(id).await;
        // As `delete_user`.
        self.users.invalidate(id);
        self.users_by_email.invalidate_all();
        self.sessions.invalidate_all();
        self.revoked_users.insert(id.to_string(), ());
        result
    }

    async fn username_retired(&self, username: &str) -> StoreResult<bool> {
        self.inner.username_retired(username).await
    }

    async fn create_link_limited(
        &self,
        link: &super::Link,
        max: u32,
        since: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.create_link_limited(link, max, since).await
    }

    // ---- passkeys: never cached (counters and challenges are single-use state) ----

    async fn add_passkey(&self, passkey: &super::Passkey) -> StoreResult<()> {
        self.inner.add_passkey(passkey).await
    }

    async fn list_passkeys(&self, user_id: &str) -> StoreResult<Vec<super::Passkey>> {
        self.inner.list_passkeys(user_id).await
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> StoreResult<Option<super::Passkey>> {
        self.inner.find_passkey(credential_id).await
    }

    async fn use_passkey(
        &self,
        id: &str,
        count: u32,
        backed_up: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.use_passkey(id, count, backed_up, now).await
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        self.inner.rename_passkey(user_id, id, name).await
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        self.inner.delete_passkey(user_id, id).await
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        self.inner.remove_totp(user_id).await
    }

    async fn passkey_counts(&self) -> StoreResult<Vec<(String, u32)>> {
        self.inner.passkey_counts().await
    }

    async fn put_passkey_challenge(&self, challenge: &super::PasskeyChallenge) -> StoreResult<()> {
        self.inner.put_passkey_challenge(challenge).await
    }

    async fn take_passkey_challenge(
        &self,
        challenge_hash: &Hash,
        binding_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        self.inner
            .take_passkey_challenge(challenge_hash, binding_hash, now)
            .await
    }

    async fn session_clients(
        &self,
        user_id: &str,
        sid: Option<&str>,
    ) -> StoreResult<Vec<super::SessionClient>> {
        self.inner.session_clients(user_id, sid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn user() -> User {
        User {
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
        }
    }

    /// Review: a sign-in by email and Cloudflare Access read the user through the email cache;
    /// a new password or a groups edit made through this store must show there at once (an
    /// old password must not sign in, a removed group must not pass a forward-auth rule).
    #[tokio::test]
    async fn password_and_groups_writes_are_seen_at_once_by_email() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("doorman.db")).unwrap());
        let cached = CachedStore::new(inner);
        let u = User {
            email: Some("alice@example.com".into()),
            email_verified: true,
            groups: vec!["admins".into()],
            password_hash: Some("old".into()),
            ..user()
        };
        cached.create_user(&u).await.unwrap();
        let email = "alice@example.com";
        let found = cached.find_user_by_email(email).await.unwrap().unwrap();
        assert_eq!(found.password_hash.as_deref(), Some("old"));
        cached.set_user_password("u1", "new", 1).await.unwrap();
        let found = cached.find_user_by_email(email).await.unwrap().unwrap();
        assert_eq!(found.password_hash.as_deref(), Some("new"));
        cached
            .set_user_name_and_groups("u1", None, &["family".to_string()], 2)
            .await
            .unwrap();
        let found = cached.find_user_by_email(email).await.unwrap().unwrap();
        assert_eq!(found.groups, ["family"]);
    }

    #[tokio::test]
    async fn writes_through_the_cache_are_seen_at_once_and_others_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doorman.db");
        let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let cached = CachedStore::new(inner);
        cached.create_user(&user()).await.unwrap();
        assert!(!cached.get_user("u1").await.unwrap().unwrap().disabled);
        // Through the cache: seen at once.
        cached
            .update_user(&User {
                disabled: true,
                ..user()
            })
            .await
            .unwrap();
        assert!(cached.get_user("u1").await.unwrap().unwrap().disabled);
        // Another process (a second store on the same file): stale until the TTL passes.
        let other = SqliteStore::open(&path).unwrap();
        other
            .update_user(&User {
                disabled: false,
                ..user()
            })
            .await
            .unwrap();
        assert!(cached.get_user("u1").await.unwrap().unwrap().disabled);
        cached.users.invalidate_all();
        assert!(!cached.get_user("u1").await.unwrap().unwrap().disabled);

        let session = Session {
            id_hash: [1; 32],
            user_id: "u1".into(),
            auth_time: 0,
            amr: vec![],
            created_at: 0,
            last_seen_at: 0,
            expires_at: 100,
            ip: None,
            user_agent: None,
            sid: None,
        };
        cached.create_session(&session).await.unwrap();
        assert!(cached.get_session(&[1; 32], 50).await.unwrap().is_some());
        assert!(
            cached.get_session(&[1; 32], 100).await.unwrap().is_none(),
            "expiry holds in the cache too"
        );
        cached.delete_session(&[1; 32]).await.unwrap();
        assert!(cached.get_session(&[1; 32], 50).await.unwrap().is_none());
    }
}
