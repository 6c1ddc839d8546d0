//! AppState: everything a handler needs, built once at start and shared behind Arcs. No globals.

use std::sync::Arc;

use crate::accounts::PasswordHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::Keys;
use crate::oidc::clients::Clients;
use crate::oidc::Provider;
use crate::signin::limits::SignInLimiter;
use crate::store::{Store, Timestamp};
use crate::web::csrf::CsrfKey;
use crate::web::Templates;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub clients: Clients,
    pub provider: Provider,
    /// Sign in with Plex, when configured.
    pub plex: Option<Arc<crate::plex::PlexService>>,
    /// Verifies Cloudflare Access tokens for forward-auth, when configured.
    pub cloudflare: Option<Arc<crate::forward_auth::cloudflare::CloudflareVerifier>>,
    pub templates: Templates,
    pub hasher: PasswordHasher,
    /// The in-process sign-in limits: failures per IP, flows per IP, Plex PINs per IP.
    pub limiter: SignInLimiter,
    /// The per-account lockout (per account and IP, then per account), kept in the store.
    pub lockout: crate::accounts::lockout::Lockout,
    /// Seals secrets at rest under `secret_key` (TOTP secrets; Plex keeps its own).
    pub secret_box: Arc<crate::secrets::SecretBox>,
    pub csrf: CsrfKey,
    pub clock: Arc<dyn Clock>,
    /// The discovery document, serialized once.
    pub discovery_json: Arc<str>,
    /// Cross-origin requests allowed from these origins (every client's `allowed_origins`).
    pub cors_origins: Vec<String>,
    /// Features that finish a sign-in themselves: a sign-in that continues to a URL under
    /// `prefix` (a doorman path) asks `resume` where to go instead of redirecting there.
    pub continuations: Vec<(&'static str, Resume)>,
    /// Outgoing mail (`[smtp]`): the bounded outbox; None without `[smtp]`.
    pub mailer: Option<crate::mail::Outbox>,
    /// The per-IP limit of the forgot-password page (this process).
    pub forgot_limiter: crate::accounts::forgot::ForgotLimiter,
    /// Held by an /admin change that could remove the last admin (disable, a groups edit,
    /// delete) from its last-admin check through its write, so two such changes made at
    /// once cannot both see the other admin still there.
    pub admin_changes: tokio::sync::Mutex<()>,
    /// Back-channel logout: the queue of logout tokens to the clients of ended sessions.
    pub backchannel: crate::oidc::backchannel::Backchannel,
}

/// Where a signed-in user goes for a continuation URL; None: to the URL itself.
pub type Resume =
    fn(&AppState, &str, &crate::store::User) -> Result<Option<String>, crate::error::WebError>;

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn issuer(&self) -> &str {
        &self.provider.issuer
    }

    /// An absolute URL of one of doorman's own paths.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.provider.issuer, path)
    }
}
