//! The Store: every piece of state doorman keeps, behind one trait that SQLite implements now
//! and PostgreSQL will later. Storage errors become meaning here ("username taken", "code
//! already used"); nothing in this module knows HTTP.
//!
//! Secrets never reach the store in the clear: codes, tokens, session ids and flow ids arrive
//! as SHA-256 digests (`Hash`), computed by the caller with [`crate::secrets::digest`].

pub mod cached;
pub mod sqlite;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A SHA-256 digest of a secret (session id, code, token, flow id, client secret).
pub type Hash = [u8; 32];

/// Unix seconds. Time is always passed in; the store never reads the clock.
pub type Timestamp = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique field is already taken: `field` is "username" or "email".
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    #[error("not found")]
    NotFound,
    /// The database could not answer (disk full, locked, corrupt, I/O): a 503 / 500 upstream.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A backup cannot be written where asked (the file exists, the directory is missing):
    /// the operator's to fix, so the message says what happened and what to do.
    #[error("backup: {0}")]
    BackupTarget(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable opaque id: the `sub` claim. Never a username.
    pub id: String,
    /// Unique case-insensitively; fixed once created.
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub groups: Vec<String>,
    /// PHC-format argon2id hash; None for accounts that sign in only through a federation.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

/// An SSO browser session. Looked up by the hash of the cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: Hash,
    pub user_id: String,
    /// When the user last authenticated (the `auth_time` claim).
    pub auth_time: Timestamp,
    /// Authentication methods (`amr`), e.g. ["pwd"].
    pub amr: Vec<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute end, whatever the activity.
    pub expires_at: Timestamp,
    /// The client IP the session was started from (for the user's own session list).
    pub ip: Option<String>,
    /// The browser's User-Agent at the start, shortened.
    pub user_agent: Option<String>,
    /// The public `sid` (id_tokens, back-channel logout), kept when the same user signs in
    /// again in this browser; None for sessions stored before it was (derived from the hash).
    pub sid: Option<String>,
}

/// A pending authorization (or other sign-in purpose) waiting for the user to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub id_hash: Hash,
    /// Hash of the browser-binding cookie the flow was created for (login CSRF, Plex PIN binding).
    pub browser_hash: Hash,
    /// What to do once signed in, serialized by the caller (JSON).
    pub payload: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A grant: what a user allowed a client in one authorization. Codes, access tokens and
/// refresh tokens hang off it, so revoking the grant revokes all of them at once (code replay,
/// refresh reuse, user disabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    /// Space-separated granted scopes.
    pub scope: String,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub nonce: Option<String>,
    pub created_at: Timestamp,
    /// When refresh tokens of this grant stop working at the latest (absolute lifetime).
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The `sid` claim: the public handle of the SSO session the grant was made in (never the
    /// session id or its hash). None for grants stored before it existed.
    pub sid: Option<String>,
    /// The `acr` claim ("1fa" / "2fa"), set only when the client asked with `acr_values`.
    pub acr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub hash: Hash,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// S256 challenge (base64url), when PKCE was used.
    pub code_challenge: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

// Returned once per token request and matched at once: boxing the grant would only add an
// allocation to every exchange.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code is now marked used.
    Fresh(AuthCode, Grant),
    /// Already used before: its grant has now been revoked (RFC 9700 §4.2.4 / RFC 6749 §4.1.2).
    Replayed(AuthCode),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub hash: Hash,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: Hash,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: Timestamp,
    /// Idle expiry: a refresh token unused for this long dies; each rotation starts a new one.
    pub expires_at: Timestamp,
    /// Set when it was exchanged for a successor; using it again is reuse.
    pub used_at: Option<Timestamp>,
}

// Returned once per token request and matched at once: boxing the grant would only add an
// allocation to every exchange.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The old token is now used and `new` is stored; returns the old token and its grant.
    Rotated(RefreshToken, Grant),
    /// The token had already been rotated: its whole family (grant) is now revoked.
    Reused(RefreshToken),
    /// Unknown, expired, or its grant is revoked / expired.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    /// "RS256".
    pub alg: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    pub created_at: Timestamp,
    /// The newest key with `active_from <= now` signs; older ones are published until `retire_at`.
    pub active_from: Timestamp,
    /// When set, the key is no longer published or accepted after this time.
    pub retire_at: Option<Timestamp>,
}

/// A user's account at an external provider (Plex), keyed by the provider's account id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// "plex".
    pub provider: String,
    /// The provider's stable account id (Plex `id`, as a string).
    pub subject: String,
    pub user_id: String,
    /// The account token, encrypted (`secrets::SecretBox`).
    pub token: Option<Vec<u8>>,
    /// A narrower per-server token, encrypted.
    pub server_token: Option<Vec<u8>>,
    /// Owns one of the configured servers.
    pub owner: bool,
    /// The last access decision.
    pub allowed: bool,
    /// When access was last confirmed with the provider.
    pub checked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Linked on an invite page: the invite, not a share of the configured servers, lets the
    /// account in, so its access is not re-checked with the provider.
    pub by_invite: bool,
}

/// The plex.tv PIN of a pending sign-in, bound to its flow and browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexPin {
    pub flow_hash: Hash,
    pub browser_hash: Hash,
    pub pin_id: i64,
    pub code: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Milliseconds: plex.tv is not asked about this PIN again before then.
    pub next_poll_ms: i64,
}

/// A Jitsi guest link: opens one room for `uses` guests until `expires_at`, unless its
/// creator revokes it first. The link itself carries `id` under a MAC; uses are counted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLink {
    /// Random, public (it is in the link).
    pub id: String,
    /// The room's roomSafe name.
    pub room: String,
    /// The user who made it; only they may revoke it.
    pub created_by: String,
    /// How many guests it admits in all.
    pub uses: i64,
    /// How many more it admits.
    pub uses_left: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A user's TOTP second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totp {
    pub user_id: String,
    /// The shared secret, encrypted by the caller (`secrets::SecretBox`).
    pub secret: Vec<u8>,
    pub enabled_at: Timestamp,
    /// The newest time step accepted; a code of this step or an earlier one is a replay.
    /// None until the first code is accepted.
    pub last_step: Option<i64>,
}

/// How many live challenges one flow or session may have (`put_passkey_challenge`).
pub const PASSKEY_CHALLENGES_PER_BINDING: u32 = 4;

/// A passkey (WebAuthn credential) of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// doorman's short handle (in URLs), not the credential id.
    pub id: String,
    /// The authenticator's credential id: unique across all users.
    pub credential_id: Vec<u8>,
    pub user_id: String,
    /// The COSE_Key as registered.
    pub public_key: Vec<u8>,
    /// Its COSE algorithm (-7, -8, -257).
    pub alg: i64,
    /// The last sign count seen; 0 for authenticators without a counter.
    pub sign_count: u32,
    /// A hint for the browser (`usb`, `internal`, ...), never trusted.
    pub transports: Vec<String>,
    /// The name the user gave it.
    pub name: String,
    pub aaguid: Option<Vec<u8>>,
    /// May be synced to other devices (`swk` in `amr`), else bound to one (`hwk`).
    pub backup_eligible: bool,
    pub backed_up: bool,
    /// Enrolled as a discoverable credential: signs in without a username.
    pub discoverable: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// The challenge of a passkey ceremony in progress, bound to a flow or a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyChallenge {
    /// SHA-256 of the challenge bytes.
    pub challenge_hash: Hash,
    /// Digest of the sign-in flow id, or the SSO session's id hash, it was issued to.
    pub binding_hash: Hash,
    /// What the ceremony is for (JSON, the caller's).
    pub ceremony: String,
    pub expires_at: Timestamp,
}

/// A failed-sign-in counter's key: an account with one client IP (its /64 for IPv6), or the
/// account over all IPs (`ip` empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockoutKey {
    pub account: String,
    pub ip: String,
}

/// One failed-sign-in counter. The default (nothing counted, not blocked) is never stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockoutCounter {
    pub failures: u32,
    /// When the current counting window began.
    pub window_start: Timestamp,
    /// Attempts are refused while `now < blocked_until`.
    pub blocked_until: Timestamp,
}

/// Changes the counters of an `update_lockouts` call, in the order of its keys, inside the
/// store's transaction; its result is the call's result.
pub type LockoutUpdate = Box<dyn FnOnce(&mut [LockoutCounter]) -> Option<Timestamp> + Send>;

/// Counts of rows removed by a sweep, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub flows: u64,
    pub codes: u64,
    pub access_tokens: u64,
    pub refresh_tokens: u64,
    pub grants: u64,
    pub keys: u64,
    pub plex_pins: u64,
    pub guest_links: u64,
    pub lockouts: u64,
    pub links: u64,
    pub passkey_challenges: u64,
}

/// What a link is for: an invite (makes an account) or a password reset (of one account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    Invite,
    Reset,
    /// Confirms that an account's (changed) email is its user's.
    Confirm,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invite => "invite",
            LinkKind::Reset => "reset",
            LinkKind::Confirm => "confirm",
        }
    }

    pub fn parse(text: &str) -> Option<LinkKind> {
        match text {
            "invite" => Some(LinkKind::Invite),
            "reset" => Some(LinkKind::Reset),
            "confirm" => Some(LinkKind::Confirm),
            _ => None,
        }
    }
}

/// An invite or password-reset link. The token in the link is stored only as its digest;
/// `id` is the public handle for listing and revoking. Uses are counted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Short, random, public (shown by `invite list`; never enough to redeem the link).
    pub id: String,
    /// SHA-256 of the token in the link.
    pub token_hash: Hash,
    pub kind: LinkKind,
    /// The groups an invited account gets.
    pub groups: Vec<String>,
    /// The invitee's email (invites).
    pub email: Option<String>,
    /// The account's email is marked verified (the invite named it).
    pub email_verified: bool,
    pub note: Option<String>,
    /// The account a reset link is for.
    pub user_id: Option<String>,
    pub uses: i64,
    pub uses_left: i64,
    /// A username, or "cli".
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip to the database (for /healthz).
    async fn ping(&self) -> StoreResult<()>;

    // ---- settings: small server-wide values shared by replicas (e.g. the CSRF key) ----
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the key already has one; returns the value in force.
    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String>;

    // ---- users ----
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;
    /// Case-insensitive.
    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Case-insensitive.
    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces every field but id, username and created_at. Conflict on a taken email.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    /// Sets only the password hash (a write that cannot undo a concurrent disable or group
    /// change made elsewhere, as writing back a whole cached row could). NotFound if no user.
    async fn set_user_password(&self, id: &str, hash: &str, now: Timestamp) -> StoreResult<()>;
    /// Sets only the disabled flag (a write that cannot undo a concurrent password, group or
    /// email change). NotFound if no user.
    async fn set_user_disabled(&self, id: &str, disabled: bool, now: Timestamp) -> StoreResult<()>;
    /// Sets only the name and the email with its verified flag. Conflict on a taken email.
    async fn set_user_name_and_email(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
        email_verified: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn record_login(&self, user_id: &str, now: Timestamp) -> StoreResult<()>;
    /// Removes the user with their sessions and grants (and so their tokens), their second
    /// factor and recovery codes, and the lockout counters of account `id`.
    async fn delete_user(&self, id: &str) -> StoreResult<()>;

    // ---- SSO sessions ----
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// Returns the session only while `now < expires_at`.
    async fn get_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Session>>;
    /// The user's live sessions (`now < expires_at`; the idle limit is the caller's), newest
    /// first.
    async fn list_user_sessions(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Session>>;
    async fn touch_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &Hash) -> StoreResult<()>;
    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64>;

    // ---- pending flows ----
    async fn put_flow(&self, flow: &Flow) -> StoreResult<()>;
    /// Returns the flow only while `now < expires_at`.
    async fn get_flow(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Flow>>;
    async fn delete_flow(&self, id_hash: &Hash) -> StoreResult<()>;
    /// Replaces the payload of a live flow (its sign-in moved on a step); false if the flow is
    /// gone or expired (`expires_at <= now`).
    async fn update_flow_payload(
        &self,
        id_hash: &Hash,
        payload: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;

    // ---- second factor: TOTP and recovery codes ----
    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<Totp>>;
    /// In one transaction: replaces any earlier TOTP of the user with `secret` (no step
    /// accepted yet) and the user's recovery codes with `recovery`.
    async fn enable_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        recovery: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Atomically records `step` as accepted, only if it is newer than the last accepted one:
    /// true once; a replayed code (or a replica racing with the same step) gets false.
    async fn accept_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Deletes the user's recovery codes and stores `codes` as the new set, in one transaction.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        codes: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Atomically marks the unused recovery code `code` used: true only the first time.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &Hash,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32>;
    /// Deletes the user's TOTP, passkeys and recovery codes; true if there was any.
    async fn remove_second_factor(&self, user_id: &str) -> StoreResult<bool>;
    /// The ids of the users with a TOTP (`passkey_counts` has the passkeys).
    async fn second_factor_users(&self) -> StoreResult<Vec<String>>;

    // ---- sign-in lockouts ----
    /// In one write transaction: reads the counters of `keys` in order (a missing one is
    /// `LockoutCounter::default()`), lets `f` change them, writes every one back (one equal to
    /// the default is deleted instead) stamped `now`, and returns what `f` returned. Callers on
    /// any replica are serialised: none sees a counter another is changing.
    async fn update_lockouts(
        &self,
        keys: Vec<LockoutKey>,
        now: Timestamp,
        f: LockoutUpdate,
    ) -> StoreResult<Option<Timestamp>>;
    /// Deletes every counter of `account` (all IPs); returns how many there were.
    async fn clear_lockouts(&self, account: &str) -> StoreResult<u64>;
    /// Every stored counter of `account`, the all-IPs one (`ip` empty) first.
    async fn lockouts_of(&self, account: &str) -> StoreResult<Vec<(LockoutKey, LockoutCounter)>>;

    // ---- grants, codes, tokens ----
    /// Stores the grant and its code in one transaction.
    async fn create_grant_with_code(&self, grant: &Grant, code: &AuthCode) -> StoreResult<()>;
    /// Atomically marks the code used. A code seen before revokes its grant. Expired codes are
    /// returned as Fresh with their expiry, for the caller to judge (`expires_at`).
    async fn redeem_code(&self, hash: &Hash, now: Timestamp) -> StoreResult<CodeRedemption>;
    /// `redeem_code`, and on a first use also stores the access token `access_hash` for the
    /// code's grant (valid until `access_expires_at`) in the same transaction: one write for
    /// the token endpoint. A caller that then refuses the redemption revokes the grant.
    async fn redeem_code_issuing(
        &self,
        hash: &Hash,
        now: Timestamp,
        access_hash: &Hash,
        access_expires_at: Timestamp,
    ) -> StoreResult<CodeRedemption>;
    async fn get_grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    async fn revoke_grant(&self, id: &str, now: Timestamp) -> StoreResult<()>;
    async fn revoke_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<u64>;
    /// Revokes the live grants made in the SSO session whose public handle is `sid` (so their
    /// refresh and access tokens): ending one session ends the applications signed in through
    /// it. The ids of the grants revoked.
    async fn revoke_session_grants(
        &self,
        user_id: &str,
        sid: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;

    async fn put_access_token(&self, token: &AccessToken) -> StoreResult<()>;
    /// Returns the token only while unexpired and its grant is not revoked.
    async fn get_access_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<AccessToken>>;
    async fn delete_access_token(&self, hash: &Hash) -> StoreResult<()>;

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// Returns the token only while unexpired, unused, and its grant is live (not revoked, not
    /// past its absolute expiry).
    async fn get_refresh_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<RefreshToken>>;
    /// In one transaction: check `old_hash` is live (as get_refresh_token), mark it used, store
    /// `new`. A token already used revokes its grant and answers Reused.
    async fn rotate_refresh_token(
        &self,
        old_hash: &Hash,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<RefreshRotation>;
    /// The refresh token `hash` whatever its state (used, expired, grant revoked): revoking a
    /// rotated token must still find its family (RFC 7009 §2.1, RFC 9700 §4.14).
    async fn find_refresh_token(&self, hash: &Hash) -> StoreResult<Option<RefreshToken>>;

    // ---- signing keys ----
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Adds `key` only if the newest key not yet retiring is still `newest` (None: there is
    /// none), in one transaction: of two replicas rotating at once, one adds a key.
    async fn add_signing_key_after(
        &self,
        key: &SigningKey,
        newest: Option<&str>,
    ) -> StoreResult<bool>;
    async fn set_key_retire_at(&self, kid: &str, retire_at: Option<Timestamp>) -> StoreResult<()>;

    // ---- external identities (Plex) ----
    /// Inserts or replaces the identity (provider, subject).
    async fn put_identity(&self, identity: &Identity) -> StoreResult<()>;
    /// Inserts the identity only if none exists for its provider and subject: false if one
    /// does (two sign-ups racing with one external account: exactly one links it).
    async fn insert_identity(&self, identity: &Identity) -> StoreResult<bool>;
    async fn get_identity(&self, provider: &str, subject: &str) -> StoreResult<Option<Identity>>;
    async fn user_identity(&self, user_id: &str, provider: &str) -> StoreResult<Option<Identity>>;

    // ---- Plex PINs ----
    /// Inserts or replaces the PIN of a flow.
    async fn put_plex_pin(&self, pin: &PlexPin) -> StoreResult<()>;
    async fn get_plex_pin(&self, flow_hash: &Hash) -> StoreResult<Option<PlexPin>>;
    /// Atomically takes the right to ask plex.tv about this PIN now: true (and the next right
    /// moves to `next_ms`) only when `next_poll_ms <= now_ms`. Every replica agrees.
    async fn claim_plex_poll(
        &self,
        flow_hash: &Hash,
        now_ms: i64,
        next_ms: i64,
    ) -> StoreResult<bool>;
    /// Deletes the flow's PIN if it is still `pin_id` (a newer PIN of the flow stays).
    async fn delete_plex_pin(&self, flow_hash: &Hash, pin_id: i64) -> StoreResult<()>;
    /// Moves the next poll of the flow's PIN to `next_ms`, if the PIN is still `pin_id`.
    async fn defer_plex_poll(&self, flow_hash: &Hash, pin_id: i64, next_ms: i64)
        -> StoreResult<()>;

    // ---- Jitsi guest links ----
    async fn create_guest_link(&self, link: &GuestLink) -> StoreResult<()>;
    /// Atomically takes one use of the link for `room`: true only while it is unrevoked,
    /// unexpired and has a use left. Of two guests racing for the last use, exactly one wins.
    async fn use_guest_link(&self, id: &str, room: &str, now: Timestamp) -> StoreResult<bool>;
    /// The live links `created_by` made for `room`, newest first.
    async fn list_guest_links(
        &self,
        created_by: &str,
        room: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<GuestLink>>;
    /// Revokes a link of `created_by`; false if there is no such live link of theirs.
    async fn revoke_guest_link(
        &self,
        id: &str,
        created_by: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;

    // ---- forward-auth sessions ----
    /// Stores a forward-auth cookie's hash, bound to the SSO session `session_hash`.
    async fn create_forward_auth_session(
        &self,
        id_hash: &Hash,
        session_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The hash of the SSO session a forward-auth cookie belongs to.
    async fn forward_auth_parent(&self, id_hash: &Hash) -> StoreResult<Option<Hash>>;

    // ---- housekeeping ----
    /// Deletes what has expired: sessions, flows, codes, tokens, grants (revoked or past their
    /// absolute expiry with no live token), keys past retire_at, lockout counters untouched
    /// for a day and not blocking, links expired or revoked more than a week ago.
    async fn sweep(&self, now: Timestamp) -> StoreResult<Swept>;
    /// Writes a consistent copy of the live database to `path`.
    async fn backup(&self, path: &std::path::Path) -> StoreResult<()>;

    // ---- /account: the applications a user signed in to, their other sessions ----
    /// The user's live grants (not revoked, `now < expires_at`) that still have a live refresh
    /// token (unused, `now < expires_at`), oldest first.
    async fn list_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Grant>>;
    /// Deletes every SSO session of the user except `keep` (their forward-auth sessions go
    /// with them); how many.
    async fn delete_user_sessions_except(&self, user_id: &str, keep: &Hash) -> StoreResult<u64>;
    // ---- invite and reset links ----
    async fn create_link(&self, link: &Link) -> StoreResult<()>;
    /// Atomically takes one use of the `kind` link with token digest `token_hash`: the link
    /// (uses_left already counted down) only while it is unrevoked, unexpired and has a use
    /// left. Of two redemptions racing for the last use, exactly one gets it.
    async fn take_link_use(
        &self,
        token_hash: &Hash,
        kind: LinkKind,
        now: Timestamp,
    ) -> StoreResult<Option<Link>>;
    /// Gives back a use taken by a redemption that then failed (e.g. the username was taken);
    /// never beyond the link's `uses`.
    async fn give_back_link_use(&self, id: &str) -> StoreResult<()>;
    /// The link with token digest `token_hash` in whatever state (expired, used up, revoked:
    /// the caller says which), unless it expired or was revoked more than a week before `now`
    /// (the sweep removes those; before or after it, the answer is the same: none).
    async fn find_link(&self, token_hash: &Hash, now: Timestamp) -> StoreResult<Option<Link>>;
    /// The unrevoked, unexpired links of `kind` (used-up ones included), newest first.
    async fn list_links(&self, kind: LinkKind, now: Timestamp) -> StoreResult<Vec<Link>>;
    /// Revokes the unexpired link `id`; false if there is no such live link.
    async fn revoke_link(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
    // ---- /admin: a profile edit, every session, retired usernames ----
    /// Sets the name and groups of user `id`: only those columns (and `updated_at`), so a
    /// change made meanwhile elsewhere (disabled, a new password) is never undone.
    async fn set_user_name_and_groups(
        &self,
        id: &str,
        name: Option<&str>,
        groups: &[String],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Marks the email of user `id` verified if it still is `email` (the address someone
    /// vouched for); false if the user has no email or another one.
    async fn mark_email_verified(&self, id: &str, email: &str, now: Timestamp)
        -> StoreResult<bool>;
    /// Every user's live SSO sessions (`now < expires_at`), newest first, at most `limit`.
    async fn list_sessions(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Session>>;
    /// Deletes user `id` as `delete_user` does and, in the same transaction, keeps the
    /// username (lower-cased) as retired: `create_user` refuses it from then on (as
    /// `Conflict { field: "username" }`). How accounts are deleted (`users::delete`).
    async fn retire_user(&self, id: &str) -> StoreResult<()>;
    /// Whether `username` (case-insensitively) belonged to an account `retire_user` deleted.
    async fn username_retired(&self, username: &str) -> StoreResult<bool>;

    // ---- mail ----
    /// Stores `link` only if fewer than `max` links of its kind for its `user_id` were created
    /// at or after `since`, in one statement (of a parallel burst, at most `max` are stored);
    /// true when it was stored.
    async fn create_link_limited(
        &self,
        link: &Link,
        max: u32,
        since: Timestamp,
    ) -> StoreResult<bool>;
    // ---- passkeys ----
    /// Stores a new passkey. `Conflict { field: "credential" }` when its credential id is
    /// registered already (to anyone).
    async fn add_passkey(&self, passkey: &Passkey) -> StoreResult<()>;
    /// The user's passkeys, oldest first.
    async fn list_passkeys(&self, user_id: &str) -> StoreResult<Vec<Passkey>>;
    /// The passkey with this credential id, whoever it belongs to.
    async fn find_passkey(&self, credential_id: &[u8]) -> StoreResult<Option<Passkey>>;
    /// Records a use of passkey `id` with sign count `count`, in one statement that checks the
    /// counter grew (or both it and the stored one are 0): false for a regression (a cloned
    /// authenticator) or a replica that raced with the same assertion.
    async fn use_passkey(
        &self,
        id: &str,
        count: u32,
        backed_up: bool,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Renames passkey `id` of `user_id`; false when the user has no such passkey.
    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool>;
    /// Deletes passkey `id` of `user_id` and, when it was the user's last second factor (no
    /// other passkey, no TOTP), the recovery codes with it, in one transaction; false when
    /// the user has no such passkey.
    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Deletes the user's TOTP and, when no passkey remains, the recovery codes, in one
    /// transaction; true if there was a TOTP.
    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool>;
    /// How many passkeys each user with any has.
    async fn passkey_counts(&self) -> StoreResult<Vec<(String, u32)>>;
    /// Stores a challenge; of one binding's challenges only the newest
    /// [`PASSKEY_CHALLENGES_PER_BINDING`] are kept (a page asking again and again cannot fill
    /// the store, and an aborted autofill request does not void the button's).
    async fn put_passkey_challenge(&self, challenge: &PasskeyChallenge) -> StoreResult<()>;
    /// Takes the challenge `challenge_hash` issued to `binding_hash`, once: its ceremony while
    /// `now < expires_at`, and gone from the store either way (one DELETE ... RETURNING, so two
    /// replicas cannot both take it). A challenge of another binding stays.
    async fn take_passkey_challenge(
        &self,
        challenge_hash: &Hash,
        binding_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<String>>;

    // ---- back-channel logout ----
    /// The distinct (client, `sid`) pairs of the user's unrevoked grants, of the session
    /// `sid` only when given: the applications to tell (OIDC Back-Channel Logout) when that
    /// session, or every session of the user, ends. Call it before revoking the grants.
    async fn session_clients(
        &self,
        user_id: &str,
        sid: Option<&str>,
    ) -> StoreResult<Vec<SessionClient>>;
}

/// A client that got a code or tokens in an SSO session (`sid`, None for grants made before
/// grants recorded it): who gets a back-channel logout token when the session ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionClient {
    pub client_id: String,
    pub sid: Option<String>,
}
