//! The command line (clap): `serve`, `check-config`, `user ...`, `invite ...`, `keys rotate`,
//! `client secret`, `backup`. Each command loads the config, opens the store, and calls the
//! same domain functions the server uses.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
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
    /// Configuration file. Default: $DOORMAN_CONFIG if set, else ./doorman.toml if present,
    /// else built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (SIGTERM stops it gracefully).
    Serve,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Invite links: someone who opens one picks a username and a password.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Client helpers.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Write a consistent copy of the live database to PATH (while the server runs).
    Backup {
        /// Where to write the copy: a new file (an existing one is never overwritten).
        path: PathBuf,
    },
    /// Plex helpers.
    #[command(subcommand)]
    Plex(PlexCommand),
    /// Print the configuration the other side needs, from this instance's config.
    Integrate {
        /// The app: nextcloud, jellyfin, grafana, traefik, ... (`list` prints them all).
        app: String,
        /// The [[clients]] id the app uses (default: the one named like the app; without one,
        /// the output includes the [[clients]] block to add).
        #[arg(long)]
        client: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
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
    /// Create a user. On a terminal it asks for a password (empty: none, for a Plex-only
    /// account); otherwise it sets none unless --password-stdin is given.
    Add {
        /// The username: 1-64 letters, digits, '.', '_' or '-' (fixed once created).
        name: String,
        /// Email address (taken as verified: you vouch for it).
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long = "name")]
        display_name: Option<String>,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Read the password from one line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's email, display name or groups (at least one of the flags).
    Set {
        /// The user to change.
        name: String,
        /// New email address (taken as verified); "" removes it.
        #[arg(long)]
        email: Option<String>,
        /// New display name; "" removes it.
        #[arg(long = "name")]
        display_name: Option<String>,
        /// New comma-separated groups, replacing the old ones; "" removes them all.
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
    },
    /// Set a user's password: asked twice without echo on a terminal, else one line of
    /// standard input. Ends the user's sessions and revokes their refresh tokens.
    Passwd {
        /// The user whose password to set.
        name: String,
        /// Read the password from one line of standard input, even on a terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: ends their sessions and refresh tokens.
    Disable {
        /// The user to disable.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user to enable.
        name: String,
    },
    /// Remove a user's second factor (authenticator app and recovery codes) and end their
    /// sessions and refresh tokens; their next sign-in sets one up again where one is required.
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// The user whose second factor to remove.
        name: String,
    },
    /// Lift a lockout after too many failed sign-ins (for every client IP).
    Unlock {
        /// The user to unlock.
        name: String,
    },
    /// Delete a user with their sessions and tokens; the username is never given again.
    Delete {
        /// The user to delete.
        name: String,
    },
    /// Link a user to a Plex account: signing in with that Plex account then signs in as NAME.
    LinkPlex {
        /// The doorman user.
        name: String,
        /// The Plex account id (digits; the log line about an email clash names it).
        plex_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Make an invite link; the link is the last line of the output.
    Create {
        /// Comma-separated groups the new account gets.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// How long the link works, e.g. 7d, 12h, 30m.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// How many accounts the link can make.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// The invitee's email: the account gets it, marked verified.
        #[arg(long)]
        email: Option<String>,
        /// A note for `invite list` (who it is for).
        #[arg(long)]
        note: Option<String>,
        /// Also mail the link to --email through [smtp] (after printing it; fails loudly).
        #[arg(long)]
        send: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// List the invites that have not expired or been revoked (never their links).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Revoke an invite: its link stops working at once.
    Revoke {
        /// The invite's id (from `invite create` or `invite list`).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Publish a new signing key now; it signs 5 minutes later (one JWKS cache lifetime), and
    /// older keys stay published until their tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print a new random client secret and its SHA-256 (for `secret_hash`).
    Secret,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    // `--config` wins; DOORMAN_CONFIG (an empty value counts as unset) is named as such when
    // the file it names cannot be read.
    let named = match &cli.config {
        Some(path) => Some((path.clone(), config::NamedBy::Flag)),
        None => env
            .get(config::CONFIG_VAR)
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), config::NamedBy::Env)),
    };
    let (config, source) =
        config::load_named(named.as_ref().map(|(p, by)| (p.as_path(), *by)), &env)
            .map_err(|e| format!("invalid configuration:\n{e}"))?;
    if let Source::File(path) = &source {
        tracing::debug!(path = %path.display(), "configuration loaded");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// How many times a terminal prompt asks before giving up.
const PROMPT_TRIES: usize = 3;

/// Checks a new password against the password policy; the error names the rule.
type PolicyCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// The password policy (`accounts::password_policy`) for the account `username` (`email`).
fn policy_for(
    username: &str,
    email: Option<&str>,
    min_length: usize,
) -> impl Fn(&str) -> Result<(), String> {
    let (username, email) = (username.to_string(), email.map(str::to_string));
    move |pw: &str| {
        accounts::password_policy::check(pw, &username, email.as_deref(), min_length)
            .map_err(|e| format!("password refused: {e}"))
    }
}

/// One line of `input`, without its line ending.
fn read_password_line_from(input: &mut dyn BufRead, check: PolicyCheck) -> Result<String, String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw).to_string();
    check(&pw)?;
    Ok(pw)
}

fn read_password_line(check: PolicyCheck) -> Result<String, String> {
    read_password_line_from(&mut std::io::stdin().lock(), check)
}

/// Asks for a new password on a terminal through `ask` (which reads without echo): twice,
/// until both entries match and it meets the policy `check`, at most [`PROMPT_TRIES`] times;
/// what went wrong goes to `say`. With `allow_empty`, an empty first entry means "no password"
/// (None).
fn prompt_new_password(
    user: &str,
    allow_empty: bool,
    check: PolicyCheck,
    ask: &mut dyn FnMut(&str) -> std::io::Result<String>,
    say: &mut dyn FnMut(&str),
) -> Result<Option<String>, String> {
    let read = |ask: &mut dyn FnMut(&str) -> std::io::Result<String>, prompt: &str| {
        ask(prompt).map_err(|e| format!("cannot read the password from the terminal: {e}"))
    };
    let first_prompt = if allow_empty {
        format!("New password for {user} (empty for none): ")
    } else {
        format!("New password for {user}: ")
    };
    for _ in 0..PROMPT_TRIES {
        let first = read(ask, &first_prompt)?;
        if first.is_empty() && allow_empty {
            return Ok(None);
        }
        if let Err(m) = check(&first) {
            say(&format!("{m} Try again."));
            continue;
        }
        let second = read(ask, "Repeat the new password: ")?;
        if first == second {
            return Ok(Some(first));
        }
        say("the two passwords differ; try again");
    }
    Err(format!(
        "no password set: {PROMPT_TRIES} tries without two matching passwords that meet the \
         password policy"
    ))
}

/// The new password: from one line of standard input when asked to (`--password-stdin`) or
/// when it is not a terminal; else asked on the terminal, twice, without echo.
fn new_password(
    user: &str,
    password_stdin: bool,
    allow_empty: bool,
    check: PolicyCheck,
) -> Result<Option<String>, String> {
    if password_stdin || !std::io::stdin().is_terminal() {
        return read_password_line(check).map(Some);
    }
    prompt_new_password(
        user,
        allow_empty,
        check,
        &mut |prompt| rpassword::prompt_password(prompt),
        &mut |m| eprintln!("{m}"),
    )
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
                "configuration is valid ({}): issuer {}, {} client(s)",
                config.source,
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
            let key = crate::keys::rotate(
                &*store,
                now,
                server::key_publish_ahead(),
                server::key_overlap(&config),
            )
            .await
            .map_err(|e| e.to_string())?;
            println!(
                "new signing key {} is published now (a running server picks it up within {} s) \
                 and starts signing at {} ({} s from now, once cached JWKS have it); the previous \
                 key stays published until its tokens expire",
                key.kid,
                server::KEY_RELOAD_EVERY.as_secs(),
                crate::keys::utc(key.active_from),
                key.active_from - now
            );
            Ok(())
        }
        Command::Backup { path } => {
            let config = load_config(&cli)?;
            let store = server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            store.backup(path).await.map_err(|e| match e {
                crate::store::StoreError::BackupTarget(_) => e.to_string(),
                other => format!("backup failed: {other}"),
            })?;
            println!(
                "wrote a consistent copy of the database to {}",
                path.display()
            );
            Ok(())
        }
        Command::Integrate {
            app,
            client,
            format,
            remote,
        } => {
            let config = load_config(&cli)?;
            print!(
                "{}",
                crate::integrate::render_as(
                    app,
                    &config,
                    client.as_deref(),
                    *remote,
                    *format == OutputFormat::Json
                )?
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
            let mut logouts = Vec::new();
            let result = user_command(
                &*store,
                cmd,
                now,
                config.accounts.min_password_length,
                &mut logouts,
            )
            .await;
            backchannel_logout(&config, store, logouts, now).await;
            result
        }
        Command::Invite(cmd) => {
            let config = load_config(&cli)?;
            let store = server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            invite_command(&*store, config.issuer_str(), cmd, now, config.smtp.as_ref()).await
        }
    }
}

/// How long a CLI command waits for its back-channel logout deliveries before it exits.
const CLI_BACKCHANNEL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends the logout tokens of the sessions a `user` command ended (OIDC Back-Channel Logout)
/// and waits for them a little: the command is its own process, so what is not delivered by
/// then is given up (and said so).
async fn backchannel_logout(
    config: &crate::config::Config,
    store: std::sync::Arc<dyn crate::store::Store>,
    logouts: Vec<(String, Vec<crate::store::SessionClient>)>,
    now: i64,
) {
    if logouts.iter().all(|(_, l)| l.is_empty())
        || config
            .clients
            .iter()
            .all(|c| c.backchannel_logout_uri.is_none())
    {
        return;
    }
    let keys = match crate::keys::Keys::load(&*store, now).await {
        Ok(k) => std::sync::Arc::new(k),
        Err(e) => {
            eprintln!("back-channel logout not sent: the signing keys: {e}");
            return;
        }
    };
    let issuer = config.issuer_str().trim_end_matches('/').to_string();
    let clock: std::sync::Arc<dyn crate::clock::Clock> =
        std::sync::Arc::new(crate::clock::SystemClock);
    let bc =
        match crate::oidc::backchannel::Backchannel::start(&config.clients, keys, issuer, clock) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("back-channel logout not sent: {e}");
                return;
            }
        };
    let queued: usize = logouts.iter().map(|(sub, l)| bc.notify(sub, l)).sum();
    if queued == 0 {
        return;
    }
    let left = bc.flush(CLI_BACKCHANNEL_WAIT).await;
    if left == 0 {
        println!("back-channel logout: {queued} application(s) told (see the audit log for each)");
    } else {
        println!(
            "back-channel logout: {} of {queued} application(s) told; {left} not reached within {} s (given up)",
            queued - left,
            CLI_BACKCHANNEL_WAIT.as_secs()
        );
    }
}

async fn user_command(
    store: &dyn crate::store::Store,
    cmd: &UserCommand,
    now: i64,
    min_password_length: usize,
    logouts: &mut Vec<(String, Vec<crate::store::SessionClient>)>,
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
            // Not a terminal and no --password-stdin: no password (a Plex-only account, or
            // `user passwd` later), as scripts expect.
            let policy = policy_for(name, email.as_deref(), min_password_length);
            let password = if *password_stdin || std::io::stdin().is_terminal() {
                new_password(name, *password_stdin, true, &policy)?
            } else {
                None
            };
            let password_hash = password.as_deref().map(hash_password).transpose()?;
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
                "{:<24} {:<32} {:<24} {:<9} {:<4} {:<8} SUB",
                "USERNAME", "EMAIL", "GROUPS", "STATE", "2FA", "PASSKEYS"
            );
            let passkeys: std::collections::HashMap<String, u32> = store
                .passkey_counts()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
            let with_factor: std::collections::HashSet<String> = store
                .second_factor_users()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
            for u in store.list_users().await.map_err(|e| e.to_string())? {
                let state = if u.disabled { "disabled" } else { "active" };
                let keys = passkeys.get(&u.id).copied().unwrap_or(0);
                let factor = if with_factor.contains(&u.id) {
                    "totp"
                } else if keys > 0 {
                    "key"
                } else {
                    "-"
                };
                println!(
                    "{:<24} {:<32} {:<24} {:<9} {:<4} {:<8} {}",
                    u.username,
                    u.email.unwrap_or_default(),
                    u.groups.join(","),
                    state,
                    factor,
                    keys,
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
            if email.is_none() && display_name.is_none() && groups.is_none() {
                return Err(format!(
                    "nothing to change for {name}: give at least one of --email E, --name N, \
                     --groups a,b (an empty value, e.g. --email '', removes it)"
                ));
            }
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
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let user = users::find(store, name).await.map_err(e)?;
            let policy = policy_for(&user.username, user.email.as_deref(), min_password_length);
            let password = new_password(name, *password_stdin, false, &policy)?
                .ok_or_else(|| format!("no password given for {name}"))?;
            let hash = hash_password(&password)?;
            let (user, ended) = users::set_password_hash(store, name, hash, now)
                .await
                .map_err(e)?;
            logouts.push((user.id, ended.logouts.clone()));
            println!(
                "password changed for {name}; {ended} (a running server sees it within {} s)",
                crate::store::cached::TTL.as_secs()
            );
        }
        UserCommand::Disable { name } => {
            let (user, ended) = users::set_disabled(store, name, true, now)
                .await
                .map_err(e)?;
            logouts.push((user.id, ended.logouts.clone()));
            println!(
                "disabled {name}: {ended} (a running server sees it within {} s)",
                crate::store::cached::TTL.as_secs()
            );
        }
        UserCommand::Reset2fa { name } => {
            let (user, removed, ended) = users::reset_second_factor(store, name, now)
                .await
                .map_err(e)?;
            logouts.push((user.id, ended.logouts.clone()));
            if removed {
                tracing::warn!(target: "audit", event = "second_factor", action = "removed", user = %name, by = "cli");
            }
            let what = if removed {
                "removed the authenticator app and recovery codes of"
            } else {
                "no second factor to remove for"
            };
            println!(
                "{what} {name}; {ended} (a running server sees it within {} s)",
                crate::store::cached::TTL.as_secs()
            );
        }
        UserCommand::Unlock { name } => {
            let (_, cleared) = users::unlock(store, name).await.map_err(e)?;
            if cleared == 0 {
                println!("{name} was not locked");
            } else {
                println!("unlocked {name}: {cleared} failure counter(s) cleared");
            }
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
                    by_invite: false,
                })
                .await
                .map_err(|e| e.to_string())?;
            println!("linked {name} to Plex account {plex_id}: signing in with Plex now signs in as {name}");
        }
        UserCommand::Delete { name } => {
            let (user, ended) = users::delete(store, name, now).await.map_err(e)?;
            logouts.push((user.id, ended.logouts));
            println!(
                "deleted {name}; the username stays reserved and is not given to a new account"
            );
        }
    }
    Ok(())
}

/// What `invite create --format json` and `invite list --format json` print of an invite
/// (never its token, except as the link `create` prints once).
fn invite_json(link: &crate::store::Link, url: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": link.id,
        "groups": link.groups,
        "uses": link.uses,
        "uses_left": link.uses_left,
        "email": link.email,
        "email_verified": link.email_verified,
        "note": link.note,
        "created_by": link.created_by,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "expires": crate::keys::utc(link.expires_at),
    });
    if let (Some(url), Some(obj)) = (url, v.as_object_mut()) {
        obj.insert("link".into(), url.into());
    }
    v
}

/// Mails the invite `url` to `to` now, waiting at most the `[smtp]` timeout (twice, for
/// connecting and the commands); says so on stderr (stdout's last line stays the link).
async fn send_invite(
    smtp: &crate::config::SmtpConfig,
    issuer: &str,
    to: &str,
    url: &str,
    link: &crate::store::Link,
) -> Result<(), String> {
    use crate::mail::{messages, Mail, Mailer};
    let site = messages::site(issuer);
    let hello = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    let failed = |e: String| {
        format!(
            "the invite was made (its link is printed above), but mailing it to {to} failed: {e}"
        )
    };
    let mailer = Mailer::new(smtp, &hello).map_err(|e| failed(e.to_string()))?;
    let text = messages::invite(
        &site,
        url,
        link.expires_at.saturating_sub(link.created_at),
        link.uses,
    );
    let mail = Mail {
        to: to.to_string(),
        subject: text.subject,
        body: text.body,
        what: "invite",
    };
    match tokio::time::timeout(smtp.timeout.saturating_mul(2), mailer.send(&mail)).await {
        Ok(Ok(())) => {
            tracing::warn!(target: "audit", event = "invite_mailed", invite = %link.id, by = "cli");
            eprintln!("mailed the invite to {to} through {}", mailer.server());
            Ok(())
        }
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!(
            "{} did not answer within {:?}",
            mailer.server(),
            smtp.timeout.saturating_mul(2)
        ))),
    }
}

async fn invite_command(
    store: &dyn crate::store::Store,
    issuer: &str,
    cmd: &InviteCommand,
    now: i64,
    smtp: Option<&crate::config::SmtpConfig>,
) -> Result<(), String> {
    use crate::accounts::links::{self, LinkError, NewInvite};
    use crate::store::LinkKind;
    let e = |e: LinkError| e.to_string();
    match cmd {
        InviteCommand::Create {
            groups,
            expires,
            uses,
            email,
            note,
            send,
            format,
        } => {
            let mail_to = match (send, email, smtp) {
                (false, _, _) => None,
                (true, None, _) => {
                    return Err("--send needs --email: the address to mail the invite to".into())
                }
                (true, Some(_), None) => return Err(
                    "--send needs an [smtp] table in the configuration (see config/doorman.example.toml); without it, leave out --send and pass the printed link on yourself".into(),
                ),
                (true, Some(to), Some(smtp)) => Some((to.trim().to_string(), smtp)),
            };
            let expires_in = config::parse_duration(expires)
                .map_err(|m| format!("--expires: {m}"))?
                .as_secs();
            let (token, link) = links::create_invite(
                store,
                NewInvite {
                    groups: groups.clone(),
                    expires_in: Some(i64::try_from(expires_in).unwrap_or(i64::MAX)),
                    uses: Some(*uses),
                    email: email.clone(),
                    note: note.clone(),
                    created_by: "cli".into(),
                },
                now,
            )
            .await
            .map_err(e)?;
            tracing::warn!(target: "audit", event = "invite_created", invite = %link.id, groups = %link.groups.join(","), uses = link.uses, by = "cli");
            let url = links::url(issuer, LinkKind::Invite, &token);
            match format {
                OutputFormat::Json => println!("{}", invite_json(&link, Some(&url))),
                OutputFormat::Text => {
                    let plural = if link.uses == 1 { "" } else { "s" };
                    println!(
                        "invite {}: {} use{plural}, until {}",
                        link.id,
                        link.uses,
                        crate::keys::utc(link.expires_at)
                    );
                    if !link.groups.is_empty() {
                        println!("groups: {}", link.groups.join(","));
                    }
                    if let Some(m) = &link.email {
                        println!("email: {m} (marked verified)");
                    }
                    if let Some(n) = &link.note {
                        println!("note: {n}");
                    }
                    println!("send this link to the person you invite (shown only now):");
                    println!("{url}");
                }
            }
            if let Some((to, smtp)) = mail_to {
                send_invite(smtp, issuer, &to, &url, &link).await?;
            }
        }
        InviteCommand::List { format } => {
            let invites = store
                .list_links(LinkKind::Invite, now)
                .await
                .map_err(|e| e.to_string())?;
            match format {
                OutputFormat::Json => {
                    let all: Vec<_> = invites.iter().map(|l| invite_json(l, None)).collect();
                    println!("{}", serde_json::Value::from(all));
                }
                OutputFormat::Text => {
                    println!(
                        "{:<10} {:<9} {:<23} {:<24} NOTE",
                        "ID", "USES LEFT", "EXPIRES", "GROUPS"
                    );
                    for l in &invites {
                        println!(
                            "{:<10} {:<9} {:<23} {:<24} {}",
                            l.id,
                            format!("{}/{}", l.uses_left, l.uses),
                            crate::keys::utc(l.expires_at),
                            l.groups.join(","),
                            l.note.as_deref().unwrap_or_default()
                        );
                    }
                }
            }
        }
        InviteCommand::Revoke { id } => {
            let live = store
                .list_links(LinkKind::Invite, now)
                .await
                .map_err(|e| e.to_string())?;
            let revoked = live.iter().any(|l| &l.id == id)
                && store
                    .revoke_link(id, now)
                    .await
                    .map_err(|e| e.to_string())?;
            if !revoked {
                return Err(format!(
                    "no invite {id:?} that is still live (see `doorman invite list`)"
                ));
            }
            tracing::warn!(target: "audit", event = "invite_revoked", invite = %id, by = "cli");
            println!("revoked invite {id}: its link no longer works");
        }
    }
    Ok(())
}

/// Sets up logging: the server's on stdout (Fly has no usable stderr for logs); the other
/// commands print their result on stdout (snippets, secrets), so their warnings go to stderr.
pub fn init_logging(format: LogFormat, serving: bool) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let writer = if serving {
        BoxMakeWriter::new(std::io::stdout)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        // Control characters in values are escaped, so a value cannot forge a log line.
        LogFormat::Text => builder
            .fmt_fields(crate::log_format::EscapedFields)
            .with_ansi(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != " doorman" {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }

    /// Runs the prompt with scripted answers; returns its result and what it said.
    fn prompt(
        answers: &[&str],
        allow_empty: bool,
    ) -> (Result<Option<String>, String>, Vec<String>) {
        let mut answers = answers.iter().map(|a| a.to_string());
        let mut prompts = Vec::new();
        let mut said = Vec::new();
        let policy = policy_for("alice", None, 10);
        let result = prompt_new_password(
            "alice",
            allow_empty,
            &policy,
            &mut |p| {
                prompts.push(p.to_string());
                answers
                    .next()
                    .ok_or_else(|| std::io::Error::other("no more input"))
            },
            &mut |m| said.push(m.to_string()),
        );
        said.extend(prompts.into_iter().map(|p| format!("prompt: {p}")));
        (result, said)
    }

    #[test]
    fn the_prompt_asks_twice_and_again_until_both_match() {
        let (r, said) = prompt(&["password-one", "password-one"], false);
        assert_eq!(r.unwrap().as_deref(), Some("password-one"));
        assert_eq!(
            said,
            [
                "prompt: New password for alice: ",
                "prompt: Repeat the new password: "
            ]
        );

        let (r, said) = prompt(
            &[
                "password-one",
                "password-two",
                "short",
                "pw-three-x",
                "pw-three-x",
            ],
            false,
        );
        assert_eq!(r.unwrap().as_deref(), Some("pw-three-x"));
        assert!(
            said.iter().any(|s| s.contains("differ; try again")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|s| s.contains("at least 10 characters long. Try again.")),
            "{said:?}"
        );
        // The rest of the policy: not the username, not a common password.
        let (r, said) = prompt(&["Alice", "password123", "pw-three-x", "pw-three-x"], false);
        assert_eq!(r.unwrap().as_deref(), Some("pw-three-x"));
        assert!(
            said.iter().any(|s| s.contains("most common ones")),
            "{said:?}"
        );

        let (r, _) = prompt(
            &["aaaaaaaaaa", "b", "aaaaaaaaaa", "c", "aaaaaaaaaa", "d"],
            false,
        );
        assert!(r.unwrap_err().contains("no password set: 3 tries"));
        // An empty entry: no password where that is allowed (user add), too short elsewhere.
        assert_eq!(prompt(&[""], true).0.unwrap(), None);
        assert!(prompt(&["", "", ""], false).0.is_err());
        // A terminal that fails is an error, not a loop.
        assert!(prompt(&[], false).0.unwrap_err().contains("cannot read"));
    }

    #[test]
    fn a_password_line_loses_its_line_ending() {
        let mut input = std::io::Cursor::new("a long password\r\nnext line\n");
        let policy = policy_for("alice", Some("alice@example.com"), 10);
        assert_eq!(
            read_password_line_from(&mut input, &policy).unwrap(),
            "a long password"
        );
        for refused in ["short\n", "alice@example.com\n", "password123\n"] {
            let mut input = std::io::Cursor::new(refused);
            let err = read_password_line_from(&mut input, &policy).unwrap_err();
            assert!(err.starts_with("password refused: "), "{err}");
        }
    }
}
