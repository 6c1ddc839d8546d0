//! OIDC Back-Channel Logout 1.0: when an SSO session ends (sign-out, an admin ending it, the
//! user disabled or deleted, ...), every client that got a code or tokens in it and registered
//! a `backchannel_logout_uri` is sent a signed logout token, server to server.
//!
//! Delivery never blocks the page that ended the session: [`Backchannel::notify`] only puts the
//! deliveries in a bounded queue, drained by one task that POSTs each with short timeouts and
//! no redirects followed, and retries a failed one with back-off ([`RETRY_DELAYS`], by the
//! clock, so tests move a `ManualClock` instead of waiting). Each delivery and each final
//! failure is an audit line naming the client and the outcome, never the token.
//!
//! The pending deliveries live in this process's memory only: a restart loses the ones not yet
//! sent (issue 14 may move them into the store). The applications still lose their refresh
//! and access tokens, which the store revokes at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::clock::Clock;
use crate::config::ClientConfig;
use crate::keys::Keys;
use crate::store::{SessionClient, Timestamp};

/// The one event of a logout token (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The JWS `typ` of logout tokens (§2.4, so they cannot pass for another kind of JWT).
pub const TOKEN_TYPE: &str = "logout+jwt";
/// Logout tokens are valid this long (seconds); each attempt signs a fresh one.
pub const TOKEN_LIFETIME: i64 = 120;
/// Seconds to wait before the 2nd, 3rd, ... attempt: five attempts over about two minutes.
pub const RETRY_DELAYS: [i64; 4] = [5, 15, 30, 60];
/// Deliveries waiting to be queued; beyond it a delivery is dropped with a warning.
pub const QUEUE_CAPACITY: usize = 256;
/// Deliveries pending or under way at once; beyond it a delivery is dropped with a warning.
pub const MAX_PENDING: usize = 1024;
/// How long one POST may take, and its connection.
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the task looks for retries that are due.
const TICK: Duration = Duration::from_millis(200);

/// The claims of a logout token (§2.4): never a `nonce`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogoutClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: Timestamp,
    pub exp: Timestamp,
    pub jti: String,
    pub events: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The logout token's claims for `client_id` about user `sub` and session `sid`.
pub fn logout_claims(
    issuer: &str,
    client_id: &str,
    sub: &str,
    sid: Option<&str>,
    now: Timestamp,
    jti: String,
) -> LogoutClaims {
    LogoutClaims {
        iss: issuer.to_string(),
        sub: sub.to_string(),
        aud: client_id.to_string(),
        iat: now,
        exp: now + TOKEN_LIFETIME,
        jti,
        events: json!({ EVENT: {} }),
        sid: sid.map(str::to_string),
    }
}

/// When attempt `attempts + 1` is due after `attempts` failed ones at `now_ms`; None: give up.
pub fn next_attempt_ms(attempts: usize, now_ms: i64) -> Option<i64> {
    RETRY_DELAYS
        .get(attempts.checked_sub(1)?)
        .map(|s| now_ms + s * 1000)
}

#[derive(Debug, Clone)]
struct Target {
    uri: String,
    session_required: bool,
}

#[derive(Debug, Clone)]
struct Job {
    client_id: String,
    uri: String,
    sub: String,
    sid: Option<String>,
    /// Attempts made so far.
    attempts: usize,
    due_ms: i64,
}

/// The queue of back-channel logout deliveries (cheap to clone).
#[derive(Clone)]
pub struct Backchannel {
    tx: Option<mpsc::Sender<Job>>,
    targets: Arc<HashMap<String, Target>>,
    outstanding: Arc<(AtomicUsize, Notify)>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Backchannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backchannel")
            .field("clients", &self.targets.len())
            .finish_non_exhaustive()
    }
}

struct Sender {
    http: reqwest::Client,
    keys: Arc<Keys>,
    issuer: String,
    clock: Arc<dyn Clock>,
}

impl Backchannel {
    /// The queue for the clients with a `backchannel_logout_uri`, its task started (none
    /// without such a client). Must run inside the tokio runtime.
    pub fn start(
        clients: &[ClientConfig],
        keys: Arc<Keys>,
        issuer: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Backchannel, String> {
        let targets: HashMap<String, Target> = clients
            .iter()
            .filter_map(|c| {
                c.backchannel_logout_uri.as_ref().map(|uri| {
                    (
                        c.id.clone(),
                        Target {
                            uri: uri.clone(),
                            session_required: c.backchannel_logout_session_required,
                        },
                    )
                })
            })
            .collect();
        let outstanding = Arc::new((AtomicUsize::new(0), Notify::new()));
        let tx = if targets.is_empty() {
            None
        } else {
            let http = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                // Straight to the app: a proxy from the environment would see the token (and
                // its `localhost` is another machine).
                .no_proxy()
                .user_agent(concat!("doorman/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("back-channel logout HTTP client: {e}"))?;
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let sender = Arc::new(Sender {
                http,
                keys,
                issuer,
                clock: clock.clone(),
            });
            tokio::spawn(run(rx, sender, outstanding.clone()));
            Some(tx)
        };
        Ok(Backchannel {
            tx,
            targets: Arc::new(targets),
            outstanding,
            clock,
        })
    }

    /// Queues a logout token for each client of `sessions` (user `sub`) that registered a
    /// `backchannel_logout_uri`; returns at once with how many were queued.
    pub fn notify(&self, sub: &str, sessions: &[SessionClient]) -> usize {
        let Some(tx) = &self.tx else {
            return 0;
        };
        let mut sessions = sessions.to_vec();
        sessions.sort();
        sessions.dedup();
        let now_ms = self.clock.now_ms();
        let mut queued = 0;
        for s in sessions {
            let Some(target) = self.targets.get(&s.client_id) else {
                continue;
            };
            if target.session_required && s.sid.is_none() {
                tracing::info!(target: "audit", event = "backchannel_logout", client = %s.client_id, outcome = "skipped", reason = "the client requires sid and the grant has none");
                continue;
            }
            let job = Job {
                client_id: s.client_id.clone(),
                uri: target.uri.clone(),
                sub: sub.to_string(),
                sid: s.sid.clone(),
                attempts: 0,
                due_ms: now_ms,
            };
            self.outstanding.0.fetch_add(1, Ordering::SeqCst);
            match tx.try_send(job) {
                Ok(()) => queued += 1,
                Err(e) => {
                    done(&self.outstanding);
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "the queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the queue is closed",
                    };
                    tracing::warn!(target: "audit", event = "backchannel_logout", client = %s.client_id, outcome = "dropped", reason);
                }
            }
        }
        queued
    }

    /// Deliveries queued, pending a retry or under way.
    pub fn outstanding(&self) -> usize {
        self.outstanding.0.load(Ordering::SeqCst)
    }

    /// Waits until every queued delivery is done (delivered or given up) or `within` passed
    /// (the CLI, before it exits); the number still outstanding.
    pub async fn flush(&self, within: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.outstanding.1.notified();
                if self.outstanding() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
        self.outstanding()
    }
}

fn done(outstanding: &(AtomicUsize, Notify)) {
    outstanding.0.fetch_sub(1, Ordering::SeqCst);
    outstanding.1.notify_waiters();
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    sender: Arc<Sender>,
    outstanding: Arc<(AtomicUsize, Notify)>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Job, Result<u16, String>)>();
    let mut pending: Vec<Job> = Vec::new();
    let mut in_flight = 0usize;
    let mut closed = false;
    loop {
        let now_ms = sender.clock.now_ms();
        let (due, later): (Vec<Job>, Vec<Job>) = std::mem::take(&mut pending)
            .into_iter()
            .partition(|j| j.due_ms <= now_ms);
        pending = later;
        for job in due {
            in_flight += 1;
            let (sender, done_tx) = (sender.clone(), done_tx.clone());
            tokio::spawn(async move {
                let outcome = sender.attempt(&job).await;
                let _ = done_tx.send((job, outcome));
            });
        }
        if closed && pending.is_empty() && in_flight == 0 {
            return;
        }
        tokio::select! {
            job = rx.recv(), if !closed => match job {
                Some(job) if pending.len() + in_flight >= MAX_PENDING => {
                    tracing::warn!(target: "audit", event = "backchannel_logout", client = %job.client_id, outcome = "dropped", reason = "too many deliveries pending");
                    done(&outstanding);
                }
                Some(job) => pending.push(job),
                None => closed = true,
            },
            Some((mut job, outcome)) = done_rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                job.attempts += 1;
                let attempt = job.attempts;
                match outcome {
                    Ok(status) if (200..300).contains(&status) => {
                        tracing::info!(target: "audit", event = "backchannel_logout", client = %job.client_id, sid = job.sid.as_deref().unwrap_or("-"), attempt, status, outcome = "delivered");
                        done(&outstanding);
                    }
                    other => {
                        let error = match other {
                            Ok(status) => format!("HTTP {status}"),
                            Err(e) => e,
                        };
                        match next_attempt_ms(attempt, sender.clock.now_ms()) {
                            Some(due_ms) => {
                                tracing::info!(target: "audit", event = "backchannel_logout", client = %job.client_id, attempt, error = %error, outcome = "retry");
                                job.due_ms = due_ms;
                                pending.push(job);
                            }
                            None => {
                                tracing::warn!(target: "audit", event = "backchannel_logout", client = %job.client_id, sid = job.sid.as_deref().unwrap_or("-"), attempt, error = %error, outcome = "failed");
                                done(&outstanding);
                            }
                        }
                    }
                }
            },
            _ = tokio::time::sleep(TICK), if !pending.is_empty() => {}
        }
    }
}

impl Sender {
    /// One POST of a freshly signed logout token: the response status, or what went wrong.
    async fn attempt(&self, job: &Job) -> Result<u16, String> {
        let now = self.clock.now();
        let claims = logout_claims(
            &self.issuer,
            &job.client_id,
            &job.sub,
            job.sid.as_deref(),
            now,
            crate::secrets::random_id(16),
        );
        let token = self
            .keys
            .sign(now, Some(TOKEN_TYPE), claims)
            .await
            .map_err(|e| format!("signing: {e}"))?;
        let response = self
            .http
            .post(&job.uri)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await
            .map_err(|e| {
                // reqwest's error names the URL (never the token, which is in the body).
                if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    e.to_string()
                }
            })?;
        Ok(response.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logout_token_has_the_spec_claims_and_no_nonce() {
        let c = logout_claims(
            "https://id.example.com",
            "app",
            "u1",
            Some("s1"),
            1000,
            "j".into(),
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["iss"], "https://id.example.com");
        assert_eq!(v["aud"], "app");
        assert_eq!(v["sub"], "u1");
        assert_eq!(v["sid"], "s1");
        assert_eq!(v["exp"], 1000 + TOKEN_LIFETIME);
        assert_eq!(v["events"], json!({ EVENT: {} }));
        assert!(v.get("nonce").is_none());
        let without =
            serde_json::to_value(logout_claims("i", "a", "u", None, 1, "j".into())).unwrap();
        assert!(without.get("sid").is_none());
    }

    #[test]
    fn five_attempts_over_about_two_minutes() {
        let mut at = 0;
        let mut attempts = 1;
        while let Some(next) = next_attempt_ms(attempts, at) {
            at = next;
            attempts += 1;
        }
        assert_eq!(attempts, 5);
        assert_eq!(at, 110_000);
        assert_eq!(next_attempt_ms(0, 0), None);
    }
}
