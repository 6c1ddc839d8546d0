//! The command line (clap): `serve`, `check-config`, `user ...`, `keys rotate`,
//! `client secret`, `backup`. Each command loads the config, opens the store, and calls the
//! same domain functions the server uses.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::accounts::{self, users, NewUser, ProfileUpdate};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, Source};
use crate::server;

#[derive(Debug, Parser)]
#[command(
    name = "doorman",
    version,
    about = "A small, complete OpenID Connect identity provider"
)]
pub struct Cli {
    /// Configuration file (default: ./doorman.toml if present, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH", env = "DOORMAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Client helpers.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Write a consistent copy of the live database to PATH.
    Backup { path: PathBuf },
    /// Plex helpers.
    #[command(subcommand)]
    Plex(PlexCommand),
    /// Print the configuration the other side needs, from this instance's config.
    Integrate {
        /// traefik, caddy, nginx, apache, cloudflare or jitsi.
        app: String,
        /// The [[clients]] id to use (apache).
        #[arg(long)]
        client: Option<String>,
        /// The proxy reaches doorman over the internet at its https issuer (not next to it).
        #[arg(long)]
        remote: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlexCommand {
    /// List the Plex servers an account can reach, with the machineIdentifier for [plex] servers.
    Servers {
        /// A Plex token of the account (the server owner's, typically).
        #[arg(long)]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long = "name")]
        display_name: Option<String>,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's email, display name or groups.
    Set {
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long = "name")]
        display_name: Option<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
    },
    /// Set a user's password (read from one line of standard input).
    Passwd { name: String },
    /// Disable a user: ends their sessions and refresh tokens.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Delete a user with their sessions and tokens.
    Delete { name: String },
    /// Link a user to a Plex account: signing in with that Plex account then signs in as NAME.
    LinkPlex { name: String, plex_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active signing key; older ones stay published until their tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print a new random client secret and its SHA-256 (for `secret_hash`).
    Secret,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let (config, source) = config::load(cli.config.as_deref(), &env)
        .map_err(|e| format!("invalid configuration:\n{e}"))?;
    if let Source::File(path) = &source {
        tracing::debug!(path = %path.display(), "configuration loaded");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

const MIN_PASSWORD: usize = 8;

fn read_password_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw).to_string();
    if pw.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        ));
    }
    Ok(pw)
}

fn hash_password(pw: &str) -> Result<String, String> {
    let params = accounts::password::owasp_params().map_err(|e| e.to_string())?;
    accounts::password::hash_blocking(&params, pw).map_err(|e| e.to_string())
}

/// Runs a command; the error text is what the user sees.
pub async fn run(cli: Cli) -> Result<(), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    match &cli.command {
        Command::Serve => {
            let config = load_config(&cli)?;
            server::serve(config, clock)
                .await
                .map_err(|e| e.to_string())
        }
        Command::CheckConfig => {
            let config = load_config(&cli)?;
            println!(
                "configuration is valid: issuer {}, {} client(s)",
                config.issuer_str(),
                config.clients.len()
            );
            Ok(())
        }
        Command::Client(ClientCommand::Secret) => {
            let secret = crate::secrets::random_token();
            println!("secret:      {secret}");
            println!(
                "secret_hash: {}",
                crate::secrets::to_hex(&crate::secrets::digest(&secret))
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let config = load_config(&cli)?;
            let store = server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            let key = crate::keys::rotate(&*store, now, server::key_overlap(&config))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "new signing key {} is active; a running server picks it up within {} s",
                key.kid,
                server::KEY_RELOAD_EVERY.as_secs()
            );
            Ok(())
        }
        Command::Backup { path } => {
            let config = load_config(&cli)?;
            let store = server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            store
                .backup(path)
                .await
                .map_err(|e| format!("backup failed: {e}"))?;
            println!(
                "wrote a consistent copy of the database to {}",
                path.display()
            );
            Ok(())
        }
        Command::Integrate {
            app,
            client,
            remote,
        } => {
            let config = load_config(&cli)?;
            print!(
                "{}",
                crate::integrate::render(app, &config, client.as_deref(), *remote)?
            );
            Ok(())
        }
        Command::Plex(PlexCommand::Servers { token }) => {
            let config = load_config(&cli)?;
            let defaults = crate::plex::client::Defaults::default();
            let (base, product, id) = match &config.plex {
                Some(p) => (
                    p.api_base.clone(),
                    p.product.clone(),
                    p.client_identifier
                        .clone()
                        .unwrap_or_else(|| defaults.client_identifier.clone()),
                ),
                None => (
                    defaults.api_base.clone(),
                    defaults.product.clone(),
                    defaults.client_identifier.clone(),
                ),
            };
            let client =
                crate::plex::PlexClient::new(base, id, product).map_err(|e| e.to_string())?;
            let resources = client
                .resources(token)
                .await
                .map_err(|e| format!("cannot list servers: {e}"))?;
            println!(
                "{:<32} {:<44} OWNED",
                "NAME", "MACHINE IDENTIFIER (for [plex] servers)"
            );
            for r in resources.iter().filter(|r| r.is_server()) {
                println!(
                    "{:<32} {:<44} {}",
                    r.name.clone().unwrap_or_default(),
                    r.client_identifier.clone().unwrap_or_default(),
                    if r.owned == Some(true) { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        Command::User(cmd) => {
            let config = load_config(&cli)?;
            let store = server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            user_command(&*store, cmd, now).await
        }
    }
}

async fn user_command(
    store: &dyn crate::store::Store,
    cmd: &UserCommand,
    now: i64,
) -> Result<(), String> {
    let e = |e: users::AccountError| e.to_string();
    match cmd {
        UserCommand::Add {
            name,
            email,
            display_name,
            groups,
            password_stdin,
        } => {
            let password_hash = if *password_stdin {
                Some(hash_password(&read_password_line()?)?)
            } else {
                None
            };
            let groups = groups
                .iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            let user = users::create(
                store,
                NewUser {
                    username: name.clone(),
                    email: email.clone(),
                    email_verified: true,
                    name: display_name.clone(),
                    groups,
                    password_hash,
                },
                now,
            )
            .await
            .map_err(e)?;
            println!("created user {} (sub {})", user.username, user.id);
            if user.password_hash.is_none() {
                println!(
                    "no password set: run `doorman user passwd {}` to set one",
                    user.username
                );
            }
        }
        UserCommand::List => {
            println!(
                "{:<24} {:<32} {:<24} {:<9} SUB",
                "USERNAME", "EMAIL", "GROUPS", "STATE"
            );
            for u in store.list_users().await.map_err(|e| e.to_string())? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<24} {:<32} {:<24} {:<9} {}",
                    u.username,
                    u.email.unwrap_or_default(),
                    u.groups.join(","),
                    state,
                    u.id
                );
            }
        }
        UserCommand::Set {
            name,
            email,
            display_name,
            groups,
        } => {
            let change = ProfileUpdate {
                email: email
                    .as_ref()
                    .map(|m| Some(m.clone()).filter(|m| !m.is_empty())),
                email_verified: email.as_ref().map(|_| true),
                name: display_name
                    .as_ref()
                    .map(|n| Some(n.clone()).filter(|n| !n.is_empty())),
                groups: groups.as_ref().map(|g| {
                    g.iter()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                }),
            };
            let user = users::update_profile(store, name, change, now)
                .await
                .map_err(e)?;
            println!("updated user {}", user.username);
        }
        UserCommand::Passwd { name } => {
            users::find(store, name).await.map_err(e)?;
            eprintln!("New password for {name} (one line on standard input):");
            let hash = hash_password(&read_password_line()?)?;
            users::set_password_hash(store, name, hash, now)
                .await
                .map_err(e)?;
            println!("password changed for {name}");
        }
        UserCommand::Disable { name } => {
            users::set_disabled(store, name, true, now)
                .await
                .map_err(e)?;
            println!("disabled {name}: their sessions and refresh tokens are ended");
        }
        UserCommand::Enable { name } => {
            users::set_disabled(store, name, false, now)
                .await
                .map_err(e)?;
            println!("enabled {name}");
        }
        UserCommand::LinkPlex { name, plex_id } => {
            let user = users::find(store, name).await.map_err(e)?;
            if plex_id.is_empty() || !plex_id.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("{plex_id:?} is not a Plex account id (digits; the log line about the email clash names it)"));
            }
            let existing = store
                .get_identity(crate::plex::PROVIDER, plex_id)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(mut ident) = existing {
                if ident.user_id == user.id {
                    println!("{name} is already linked to Plex account {plex_id}");
                    return Ok(());
                }
                // Typically the account a Plex sign-in created when its email clashed with
                // NAME's: the link moves to NAME; the old account stays until deleted.
                let previous = store
                    .get_user(&ident.user_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|u| u.username)
                    .unwrap_or_default();
                ident.user_id = user.id.clone();
                ident.updated_at = now;
                store
                    .put_identity(&ident)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "linked {name} to Plex account {plex_id} (it was linked to {previous}; \
                     `doorman user delete {previous}` removes that account if nobody needs it)"
                );
                return Ok(());
            }
            store
                .put_identity(&crate::store::Identity {
                    provider: crate::plex::PROVIDER.into(),
                    subject: plex_id.clone(),
                    user_id: user.id.clone(),
                    token: None,
                    server_token: None,
                    owner: false,
                    allowed: true,
                    checked_at: None,
                    created_at: now,
                    updated_at: now,
                })
                .await
                .map_err(|e| e.to_string())?;
            println!("linked {name} to Plex account {plex_id}: signing in with Plex now signs in as {name}");
        }
        UserCommand::Delete { name } => {
            users::delete(store, name).await.map_err(e)?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

/// Sets up logging on stdout (Fly has no usable stderr for logs).
pub fn init_logging(format: LogFormat, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
