//! Builds the application (state, router, middleware), serves it, and runs the background
//! work: sweeping expired rows, picking up key changes made by the CLI or another replica, and
//! automatic key rotation. Shuts down gracefully on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::accounts::PasswordHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{self, Keys};
use crate::oidc::clients::Clients;
use crate::oidc::{discovery, Provider};
use crate::signin::limits::SignInLimiter;
use crate::state::{AppState, Inner};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::web::csrf::CsrfKey;
use crate::web::Templates;

pub const HEALTHZ: &str = "/healthz";
/// How often the server re-reads keys changed outside this process.
pub const KEY_RELOAD_EVERY: Duration = Duration::from_secs(5);
const SWEEP_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database in {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("signing keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Other(String),
}

pub fn database_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("doorman.db")
}

pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let path = database_path(config);
    let store = SqliteStore::open(&path).map_err(|e| StartError::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(crate::store::cached::CachedStore::new(Arc::new(
        store,
    ))))
}

/// Everything the handlers need, from a validated config.
pub async fn build_state(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<AppState, StartError> {
    let now = clock.now();
    let keys = Arc::new(Keys::load(&*store, now).await?);
    let csrf_hex = store
        .init_setting(
            "csrf_key",
            &crate::secrets::to_hex(&crate::secrets::digest(&crate::secrets::random_token())),
        )
        .await
        .map_err(|e| StartError::Other(format!("store: {e}")))?;
    let csrf = CsrfKey::new(
        crate::secrets::from_hex(&csrf_hex)
            .ok_or_else(|| StartError::Other("stored csrf_key is malformed".into()))?,
    );
    // Turns SSO sessions into their public `sid`; shared by replicas through the store.
    let sid_hex = store
        .init_setting(
            "sid_key",
            &crate::secrets::to_hex(&crate::secrets::digest(&crate::secrets::random_token())),
        )
        .await
        .map_err(|e| StartError::Other(format!("store: {e}")))?;
    let sid_key = crate::secrets::from_hex(&sid_hex)
        .ok_or_else(|| StartError::Other("stored sid_key is malformed".into()))?;
    let issuer = config.issuer.as_str().trim_end_matches('/').to_string();
    let params =
        crate::accounts::password::owasp_params().map_err(|e| StartError::Other(e.to_string()))?;
    // Two argon2 computations at once (~19 MiB each), and at most 32 more waiting (about half a
    // second of work): beyond that a sign-in is answered 503 at once instead of queueing.
    let hasher =
        PasswordHasher::new(params, 2, 32).map_err(|e| StartError::Other(e.to_string()))?;
    let templates = Templates::new(config.theme_dir.clone());
    templates.check().map_err(StartError::Other)?;
    let mut cors_origins: Vec<String> = config
        .clients
        .iter()
        .flat_map(|c| c.allowed_origins.iter().cloned())
        .collect();
    cors_origins.sort();
    cors_origins.dedup();
    let discovery_json = discovery::document(&issuer).to_string().into();
    let key = secret_key(&config)?;
    let plex = build_plex(&config, store.clone(), &key).await?;
    let secret_box = Arc::new(
        crate::secrets::SecretBox::new(&key)
            .ok_or_else(|| StartError::Other("cannot set up secret encryption".into()))?,
    );
    let policy = plex.clone().map(|p| p as Arc<dyn crate::oidc::UserPolicy>);
    let mailer = build_mailer(&config)?;
    let backchannel = crate::oidc::backchannel::Backchannel::start(
        &config.clients,
        keys.clone(),
        issuer.clone(),
        clock.clone(),
    )
    .map_err(StartError::Other)?;
    let config = Arc::new(config);
    Ok(AppState(Arc::new(Inner {
        clients: Clients::new(&config.clients),
        provider: Provider {
            store: store.clone(),
            keys: keys.clone(),
            issuer,
            policy,
            sid_key,
        },
        plex,
        cloudflare: match &config.forward_auth.cloudflare {
            Some(cf) => Some(
                crate::forward_auth::cloudflare::CloudflareVerifier::new(cf.clone())
                    .map_err(StartError::Other)?,
            ),
            None => None,
        },
        limiter: SignInLimiter::new(&config.login),
        lockout: crate::accounts::lockout::Lockout::new(
            store.clone(),
            crate::accounts::lockout::LockoutPolicy::of(&config.login),
        ),
        secret_box,
        config,
        store,
        keys,
        templates,
        hasher,
        csrf,
        clock,
        discovery_json,
        cors_origins,
        continuations: vec![("/jitsi/", crate::jitsi::resume)],
        mailer,
        forgot_limiter: Default::default(),
        admin_changes: Default::default(),
        backchannel,
    })))
}

/// The outbox of `[smtp]` (its sending task started), when configured.
fn build_mailer(config: &Config) -> Result<Option<crate::mail::Outbox>, StartError> {
    let Some(smtp) = &config.smtp else {
        return Ok(None);
    };
    let hello = config.issuer.host_str().unwrap_or("localhost");
    let mailer = crate::mail::Mailer::new(smtp, hello)
        .map_err(|e| StartError::Other(format!("[smtp]: {e}")))?;
    Ok(Some(crate::mail::Outbox::start(
        mailer,
        crate::mail::OUTBOX_CAPACITY,
    )))
}

/// The key that encrypts stored Plex tokens: `secret_key` from the config, else one generated
/// once in `data_dir/secret_key` (mode 0600), with a warning that it then sits beside the data.
pub fn secret_key(config: &Config) -> Result<String, StartError> {
    if let Some(k) = &config.secret_key {
        return Ok(k.clone());
    }
    let path = config.data_dir.join("secret_key");
    let fail =
        |e: std::io::Error| StartError::Other(format!("secret key file {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() >= 32 => {
            tracing::warn!(path = %path.display(), "secret_key is not configured: using the generated key beside the database; anyone with a copy of data_dir can decrypt stored Plex tokens and TOTP secrets. Set secret_key (or secret_key_file) to keep them apart");
            Ok(k.trim().to_string())
        }
        Ok(_) => Err(StartError::Other(format!(
            "secret key file {} is too short; delete it to generate a new one, or set secret_key",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&config.data_dir).map_err(fail)?;
            let key =
                crate::secrets::to_hex(&crate::secrets::digest(&crate::secrets::random_token()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(fail)?;
            f.write_all(key.as_bytes()).map_err(fail)?;
            tracing::warn!(path = %path.display(), "secret_key is not configured: generated one beside the database; anyone with a copy of data_dir can decrypt stored Plex tokens and TOTP secrets. Set secret_key (or secret_key_file) to keep them apart");
            Ok(key)
        }
        Err(e) => Err(fail(e)),
    }
}

async fn build_plex(
    config: &Config,
    store: Arc<dyn Store>,
    key: &str,
) -> Result<Option<Arc<crate::plex::PlexService>>, StartError> {
    let Some(plex) = &config.plex else {
        return Ok(None);
    };
    let cipher = crate::secrets::SecretBox::new(key)
        .ok_or_else(|| StartError::Other("cannot set up token encryption".into()))?;
    // One identifier for every call, kept across restarts and shared by replicas: plex.tv
    // refuses to answer a PIN poll made under another one.
    let client_identifier = match &plex.client_identifier {
        Some(id) => id.clone(),
        None => store
            .init_setting(
                "plex_client_identifier",
                &format!("doorman-{}", crate::secrets::random_id(12)),
            )
            .await
            .map_err(|e| StartError::Other(format!("store: {e}")))?,
    };
    let client = crate::plex::PlexClient::new(
        plex.api_base.clone(),
        client_identifier,
        plex.product.clone(),
    )
    .map_err(|e| StartError::Other(e.to_string()))?;
    Ok(Some(Arc::new(crate::plex::PlexService::new(
        client,
        plex.clone(),
        store,
        cipher,
    ))))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

async fn not_found() -> crate::error::WebError {
    crate::error::WebError::page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.",
    )
}

/// `GET /` has no page of its own: the landing page is `/login` (under the issuer's path).
async fn to_landing_page(State(state): State<AppState>) -> axum::response::Redirect {
    axum::response::Redirect::to(&state.url(crate::login::paths::LOGIN))
}

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/", get(to_landing_page))
        .merge(crate::oidc::routes::routes(&state))
        .merge(crate::login::routes(&state))
        .merge(crate::account::routes())
        .merge(crate::admin::routes())
        .merge(crate::jitsi::routes())
        .merge(crate::forward_auth::routes())
        .route(HEALTHZ, get(healthz))
        .route("/static/{*path}", get(crate::web::static_file))
        .fallback(not_found);
    // Every endpoint lives under the issuer's path (e.g. https://example.com/auth).
    let path = state.config.issuer.path().trim_end_matches('/').to_string();
    let app = if path.is_empty() {
        app
    } else {
        // The nest answers `/auth` itself; the host's root and `/auth/` go to the landing page too.
        Router::new()
            .route("/", get(to_landing_page))
            .route(&format!("{path}/"), get(to_landing_page))
            .nest(&path, app)
    };
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::web::render_pages,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::web::security_headers,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
    .layer(
        TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            // The path only: query strings carry codes and tokens; invite and reset links
            // carry theirs in the path.
            let path = crate::accounts::links::redact_path(req.uri().path());
            tracing::debug_span!("request", method = %req.method(), path = %path)
        }),
    )
    .with_state(state)
}

/// Background work; ends when `shutdown` fires.
fn spawn_maintenance(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut reload = tokio::time::interval(KEY_RELOAD_EVERY);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = reload.tick() => {
                    let now = state.now();
                    if let Some(after) = state.config.keys.rotate_after {
                        auto_rotate(&state, now, after).await;
                    }
                    match state.keys.reload(&*state.store, now).await {
                        Ok(true) => tracing::info!(kid = ?state.keys.active_kid(now), "signing keys reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "could not reload signing keys"),
                    }
                }
                _ = sweep.tick() => match state.store.sweep(state.now()).await {
                    Ok(s) => tracing::debug!(?s, "swept expired rows"),
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                },
            }
        }
    });
}

/// The longest a token signed by a key can still be presented: old keys stay published so long.
pub fn key_overlap(config: &Config) -> i64 {
    let longest = config
        .clients
        .iter()
        .map(|c| c.lifetimes.id_token.max(c.lifetimes.access_token))
        .chain([config.tokens.id_token, config.tokens.access_token])
        .max()
        .unwrap_or_default();
    i64::try_from(longest.as_secs()).unwrap_or(86_400) + 300
}

/// How long after a rotation the new key starts signing: one JWKS max-age (what a relying
/// party may have cached) plus one reload period (until every replica publishes it).
pub fn key_publish_ahead() -> i64 {
    keys::JWKS_MAX_AGE + i64::try_from(KEY_RELOAD_EVERY.as_secs()).unwrap_or(5)
}

/// Automatic rotation (`[keys] rotate_after`), run by the maintenance loop: the next key is
/// published now and signs `key_publish_ahead()` later.
pub async fn auto_rotate(state: &AppState, now: i64, after: Duration) {
    match keys::rotate_if_due(
        &*state.store,
        now,
        i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        key_publish_ahead(),
        key_overlap(&state.config),
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(k)) => {
            tracing::info!(kid = %k.kid, signs_from = k.active_from, "published the next signing key (keys.rotate_after); it starts signing in {} s", k.active_from - now)
        }
        Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
    }
}

/// A running server: its address, and the way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (after SIGTERM / Ctrl-C when started by `serve`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds and starts serving `state` on `addr` (port 0 picks a free port).
pub async fn start(state: AppState, addr: SocketAddr) -> Result<Running, StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            addr,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    spawn_maintenance(state.clone(), rx.clone());
    if let Some(cf) = &state.cloudflare {
        cf.spawn_refresher(rx.clone());
    }
    let app = router(state.clone());
    let limits = state.config.server.clone();
    let task = tokio::spawn(crate::connections::serve(listener, app, limits, rx));
    Ok(Running {
        addr,
        state,
        shutdown: tx,
        task,
    })
}

/// `doorman serve`: start, log what to do next, stop on SIGTERM / Ctrl-C.
pub async fn serve(config: Config, clock: Arc<dyn Clock>) -> Result<(), StartError> {
    let listen = config.listen;
    let store = open_store(&config).await?;
    let state = build_state(config, store, clock).await?;
    // Before listening, so the line is out by the time /healthz answers.
    match state.store.list_users().await {
        Ok(users) => {
            if let Some(line) =
                crate::admin::rules::no_admin_yet(&users, &state.config.accounts.admin_groups)
            {
                tracing::warn!("{line}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check for an admin"),
    }
    if crate::signin::passkey::relying_party(&state.config).is_none() {
        if let Ok(counts) = state.store.passkey_counts().await {
            if let Some(line) = crate::signin::passkey::stranded_passkeys(counts.len()) {
                tracing::warn!("{line}");
            }
        }
    }
    let running = start(state.clone(), listen).await?;
    tracing::info!(addr = %running.addr, issuer = %state.issuer(), clients = state.config.clients.len(), config = %state.config.source, "doorman is listening");
    if let Some(outbox) = &state.mailer {
        tracing::info!(server = %outbox.mailer().server(), "mail is on ([smtp]): invites can be mailed, and the sign-in page offers \"Forgot your password?\"");
    }
    if state.config.clients.is_empty() {
        tracing::info!("no clients are registered yet: add a [[clients]] table to the config (see config/doorman.example.toml), and a user with `doorman user add NAME --groups admins` (it asks for the password)");
    }
    let tx = running.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    running.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
