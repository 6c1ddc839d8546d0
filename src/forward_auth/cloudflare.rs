//! Cloudflare Access application tokens (reference: cloudflare-access-and-forward-auth.md §1).
//! RS256 only, the key chosen by `kid` from the team domain's certs (fetched at start, hourly,
//! and again when a token names an unknown kid, at most once per 30 s), `iss` the team domain,
//! `aud` containing the AUD tag of the application configured for the host, `exp`/`nbf` with
//! a small leeway, `type` "app". A token once verified is remembered by its hash until it
//! expires, so the common case costs no RSA verification. Nothing here panics on any input.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::CloudflareConfig;
use crate::secrets::digest;
use crate::store::{Hash, Timestamp};

/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN: usize = 8 * 1024;
const LEEWAY: u64 = 30;
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
const UNKNOWN_KID_PAUSE: Duration = Duration::from_secs(30);
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfError {
    #[error("the token is malformed or too large")]
    Malformed,
    #[error("the token is not RS256 or has no kid")]
    Algorithm,
    #[error("no Cloudflare key has this kid")]
    UnknownKey,
    #[error("no [[forward_auth.cloudflare.apps]] entry covers this host")]
    NoApp,
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token is not an application token")]
    NotAppToken,
    #[error("service tokens are not accepted (forward_auth.cloudflare.service_tokens)")]
    ServiceTokenRefused,
}

/// Who a verified Access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfIdentity {
    /// The verified email of a user; empty for a service token.
    pub email: String,
    /// A service token's client id (`common_name`).
    pub service_token: Option<String>,
    /// The `custom` claims (OIDC claims Access copied from the IdP), plus the top-level ones.
    pub claims: Map<String, Value>,
    pub exp: Timestamp,
}

#[derive(Debug, Deserialize)]
struct AccessClaims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    exp: Timestamp,
    #[serde(default)]
    nbf: Option<Timestamp>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Certs {
    #[serde(default)]
    keys: Vec<Value>,
}

pub struct CloudflareVerifier {
    config: CloudflareConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// Becomes true once the first fetch finished (successfully or not).
    loaded: tokio::sync::watch::Sender<bool>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    verified: Cache<Hash, Arc<CfIdentity>>,
}

impl CloudflareVerifier {
    pub fn new(config: CloudflareConfig) -> Result<Arc<CloudflareVerifier>, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let (loaded, _) = tokio::sync::watch::channel(false);
        Ok(Arc::new(CloudflareVerifier {
            config,
            http,
            keys: RwLock::new(Arc::new(HashMap::new())),
            loaded,
            last_unknown_kid_fetch: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            // ~1.6 KiB an entry: a few thousand live tokens cover a community's users and apps
            // at a few MiB; beyond that the oldest are verified again.
            verified: Cache::builder()
                .max_capacity(4_096)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }))
    }

    pub fn certs_url(&self) -> String {
        format!("{}/cdn-cgi/access/certs", self.config.team_domain)
    }

    fn snapshot(&self) -> Arc<HashMap<String, DecodingKey>> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Fetches the certs; on failure the keys already held stay in use.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        let result = self.fetch().await;
        match &result {
            Ok(keys) => {
                let count = keys.len();
                match self.keys.write() {
                    Ok(mut g) => *g = Arc::new(keys.clone()),
                    Err(p) => *p.into_inner() = Arc::new(keys.clone()),
                }
                self.loaded.send_replace(true);
                Ok(count)
            }
            Err(e) => {
                self.loaded.send_replace(true);
                tracing::warn!(url = %self.certs_url(), error = %e, "could not fetch Cloudflare Access certs; keeping the keys already known");
                Err(e.clone())
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let resp = self
            .http
            .get(self.certs_url())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > 1024 * 1024 {
            return Err("the certs document is too large".into());
        }
        let certs: Certs = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in certs.keys {
            let field = |k: &str| jwk.get(k).and_then(Value::as_str);
            let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
                continue;
            };
            if field("kty") != Some("RSA") {
                continue;
            }
            if let Ok(key) = DecodingKey::from_rsa_components(n, e) {
                keys.insert(kid.to_string(), key);
            }
        }
        Ok(keys)
    }

    /// Fetches now, then hourly, for as long as the server runs.
    pub fn spawn_refresher(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let ok = me.refresh().await.is_ok();
                // Retry sooner while nothing could be fetched.
                let wait = if ok || !me.snapshot().is_empty() {
                    REFRESH_EVERY
                } else {
                    Duration::from_secs(10)
                };
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, CfError> {
        if !*self.loaded.borrow() {
            // Checks that arrive before the first fetch finished wait for it (a little).
            let mut rx = self.loaded.subscribe();
            let _ = tokio::time::timeout(FIRST_FETCH_WAIT, rx.wait_for(|l| *l)).await;
        }
        if let Some(k) = self.snapshot().get(kid) {
            return Ok(k.clone());
        }
        // An unknown kid: Cloudflare may have rotated. Refetch, but not more than once per 30 s,
        // so forged kids cannot make doorman hammer Cloudflare.
        let due = match self.last_unknown_kid_fetch.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_PAUSE);
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        // Never queue behind a fetch already under way (a hanging certs endpoint would hold
        // every check for its whole timeout); that fetch will serve the next check.
        if due && self.fetch_lock.try_lock().is_ok() {
            let _ = self.refresh().await;
            if let Some(k) = self.snapshot().get(kid) {
                return Ok(k.clone());
            }
        }
        Err(CfError::UnknownKey)
    }

    /// The AUD tag configured for `host`.
    pub fn aud_for(&self, host: &str) -> Option<&str> {
        self.config
            .apps
            .iter()
            .find(|(h, _)| h.matches(host))
            .map(|(_, aud)| aud.as_str())
    }

    /// Verifies an Access token presented for `host`.
    pub async fn verify(
        &self,
        token: &str,
        host: &str,
        now: Timestamp,
    ) -> Result<Arc<CfIdentity>, CfError> {
        if token.len() > MAX_TOKEN || token.is_empty() {
            return Err(CfError::Malformed);
        }
        let aud = self.aud_for(host).ok_or(CfError::NoApp)?;
        // Keyed on the token and the audience it is checked against.
        let cache_key = digest(&format!("{aud}\0{token}"));
        if let Some(hit) = self.verified.get(&cache_key) {
            if now < hit.exp {
                return Ok(hit);
            }
            self.verified.invalidate(&cache_key);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| CfError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(CfError::Algorithm);
        }
        let kid = header.kid.ok_or(CfError::Algorithm)?;
        let key = self.key_for(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        // Time is judged below against doorman's clock, not the library's reading of it.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_issuer(&[self.config.team_domain.as_str()]);
        v.set_audience(&[aud]);
        v.required_spec_claims =
            HashSet::from(["exp".to_string(), "iss".to_string(), "aud".to_string()]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &v)
            .map_err(|e| CfError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let leeway = i64::try_from(LEEWAY).unwrap_or(30);
        if now >= claims.exp + leeway {
            return Err(CfError::Invalid("the token has expired".into()));
        }
        if claims.nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(CfError::Invalid("the token is not valid yet".into()));
        }
        if claims.kind.as_deref() != Some("app") {
            return Err(CfError::NotAppToken);
        }
        let email = claims.email.unwrap_or_default();
        let service_token = match (&claims.common_name, email.is_empty()) {
            (Some(cn), true) if !cn.is_empty() => {
                if !self.config.service_tokens {
                    return Err(CfError::ServiceTokenRefused);
                }
                Some(cn.clone())
            }
            (_, true) => {
                return Err(CfError::Invalid(
                    "neither an email nor a service token".into(),
                ))
            }
            _ => None,
        };
        let mut all = claims.rest;
        if let Some(Value::Object(custom)) = all.remove("custom") {
            for (k, v) in custom {
                all.entry(k).or_insert(v);
            }
        }
        let identity = Arc::new(CfIdentity {
            email,
            service_token,
            claims: all,
            exp: claims.exp,
        });
        self.verified.insert(cache_key, identity.clone());
        Ok(identity)
    }
}
