//! Typed configuration. The TOML file is parsed to a table, `${VAR}` interpolated, `DOORMAN_*`
//! overrides applied, checked against a schema (unknown keys, types, `*_file` secrets), then
//! deserialized into the file's shape (`file::*`) and `validate`d into this runtime `Config` or a
//! list of errors that each name the key and the fix. Every problem is reported at once, since
//! a config that fails one key at a time is a slow loop for the operator. Nothing reads the
//! environment or the file after `load`.

mod duration;
mod file;
mod raw;
mod validate;

pub use duration::{duration_to_string, format_duration, parse_duration};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// The runtime configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Published issuer, as configured minus one trailing slash; publish `issuer_str()`.
    pub issuer: Url,
    pub listen: SocketAddr,
    /// Connection limits and timeouts (`[server]`).
    pub server: ServerConfig,
    pub data_dir: PathBuf,
    pub theme_dir: Option<PathBuf>,
    /// The one list of proxies whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header naming the client's IP when the peer is a trusted proxy, lower-case.
    pub client_ip_header: String,
    pub session: SessionConfig,
    pub keys: KeysConfig,
    /// Global token lifetimes; each client's `lifetimes` already has these filled in.
    pub tokens: Lifetimes,
    pub login: LoginConfig,
    pub accounts: AccountsConfig,
    /// `[compat]`: other providers' URLs.
    pub compat: CompatConfig,
    pub clients: Vec<ClientConfig>,
    /// Things worth logging at start-up that are not errors, e.g. ignored `DOORMAN_*` variables.
    pub warnings: Vec<String>,
    /// Which configuration was loaded, for check-config and the start-up log line.
    pub source: String,
    /// Encrypts stored Plex tokens; None: a key generated in `data_dir` is used.
    pub secret_key: Option<String>,
    /// Sign in with Plex, when configured.
    pub plex: Option<PlexConfig>,
    /// The Jitsi Meet bridge, when configured.
    pub jitsi: Option<JitsiConfig>,
    /// The forward-auth hook (rules empty when not configured: everything is denied).
    pub forward_auth: ForwardAuthConfig,
    /// Outgoing mail, when configured.
    pub smtp: Option<SmtpConfig>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS).
    Tls,
    /// No encryption (a local relay only, when a password is sent).
    None,
}

impl SmtpTls {
    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `[smtp]`: the server doorman hands its mail to.
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// With `password` (both or neither).
    pub username: Option<String>,
    pub password: Option<String>,
    /// A mailbox (`Name <addr@host>` or `addr@host`), already checked.
    pub from: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `example.com` (exactly) or `*.example.com` (any subdomain, not the domain itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(pub String);

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == self.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAccess {
    Public,
    Authenticated,
    Groups(Vec<String>),
    Users(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ForwardAuthRule {
    pub host: HostPattern,
    pub path: Option<String>,
    pub access: RuleAccess,
}

#[derive(Debug, Clone)]
pub struct CloudflareConfig {
    /// The team domain, without a trailing slash: the expected `iss`.
    pub team_domain: String,
    pub service_tokens: bool,
    pub apps: Vec<(HostPattern, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    pub rules: Vec<ForwardAuthRule>,
    pub cloudflare: Option<CloudflareConfig>,
    /// (response header, claim) pairs.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomClaim {
    /// The room's normalised name.
    Exact,
    /// `*`: any room.
    Wildcard,
}

#[derive(Debug, Clone)]
pub struct JitsiConfig {
    /// Without a trailing slash.
    pub meet_url: Url,
    pub app_id: String,
    pub app_secret: String,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub room_claim: RoomClaim,
    pub token_lifetime: Duration,
    pub clock_skew: Duration,
    pub allowed_groups: Option<Vec<String>>,
    pub moderator_groups: Vec<String>,
    pub lobby_bypass_groups: Vec<String>,
    pub skip_prejoin: bool,
    pub token_in_fragment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTokenFormat {
    Opaque,
    /// RS256 JWT (header typ "JWT") with this audience.
    Jwt {
        audience: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    Plex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlexMode {
    /// The landing page opens Plex in a popup and polls.
    Popup,
    /// /authorize sends the browser straight to Plex (Plex-only sites).
    Redirect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlexTokenClaim {
    /// The per-server `accessToken`: opens only the configured Plex server.
    Server,
    /// The full plex.tv account token.
    Account,
}

impl PlexConfig {
    /// https://plex.tv (a constant that parses; a test checks it).
    pub fn default_api_base() -> Url {
        #[allow(clippy::expect_used)]
        Url::parse("https://plex.tv").expect("constant URL")
    }
}

#[derive(Debug, Clone)]
pub struct PlexConfig {
    pub servers: Vec<String>,
    pub product: String,
    pub client_identifier: Option<String>,
    pub groups: Vec<String>,
    pub owner_groups: Vec<String>,
    pub recheck_after: Duration,
    pub recheck_grace: Duration,
    /// Without a trailing slash.
    pub api_base: Url,
    pub auth_app_url: Url,
    pub mode: PlexMode,
}

impl Config {
    /// The issuer as published in `iss` and discovery: never a trailing slash. Use this rather
    /// than `issuer.as_str()`, which keeps the `/` of a bare host (`https://example.com/`).
    pub fn issuer_str(&self) -> &str {
        let s = self.issuer.as_str();
        s.strip_suffix('/').unwrap_or(s)
    }
}

/// `[server]`: what one client can hold of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A request's headers must arrive within this long of the connection opening, or of the
    /// first byte of the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A kept-alive connection waiting for its next request is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once; while full, new ones wait in the listen backlog.
    pub max_connections: u32,
}

/// The longest `header_read_timeout` accepted.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    /// For the forward-auth cookie (a later issue); accepted now.
    pub cookie_domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Automatic rotation: a new key is made when the active one is older than this.
    pub rotate_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access_token: Duration,
    pub id_token: Duration,
    pub refresh_token_idle: Duration,
    pub refresh_token_max: Duration,
}

/// `[login] require_second_factor`: who needs an authenticator code after the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorPolicy {
    /// Nobody is asked for a code and nobody can enrol.
    Off,
    /// Users may enrol; a code is needed from those who did, from `second_factor_groups`, for
    /// clients with `require_second_factor` and for `acr_values=2fa`.
    Optional,
    /// Every password sign-in needs a second factor (those without one enrol first).
    Required,
}

/// `[compat]`: for apps configured for another provider.
#[derive(Debug, Clone, Default)]
pub struct CompatConfig {
    /// Keycloak's `/protocol/openid-connect/{auth,token,userinfo,certs,logout,revoke,
    /// token/introspect}` are served under the issuer too (discovery keeps doorman's paths).
    pub keycloak_paths: bool,
}

/// `[accounts]`: local accounts.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// The shortest password accepted anywhere (CLI, invites, /account, reset links).
    pub min_password_length: usize,
    pub users_may_change_email: bool,
    /// Changes that matter need a sign-in at most this old (or the password again).
    pub reauth_after: Duration,
    /// Who may use /admin.
    pub admin_groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Failed sign-ins (passwords or codes) allowed per (account, client IP) within
    /// `failure_window` before that pair is locked out.
    pub max_failures_per_account: u32,
    /// Failed sign-ins allowed per account over all client IPs within `failure_window` before
    /// the account is locked out; at least `max_failures_per_account`.
    pub max_failures_per_account_all_ips: u32,
    /// Failed attempts allowed per client IP, whatever the account, within `failure_window`.
    pub max_failures_per_ip: u32,
    pub failure_window: Duration,
    /// The first lockout at a limit; doubled per further failure, up to `lockout_max`.
    pub lockout_base: Duration,
    /// The longest lockout; at least `lockout_base`.
    pub lockout_max: Duration,
    pub require_second_factor: SecondFactorPolicy,
    /// Members of any of these groups need a second factor.
    pub second_factor_groups: Vec<String>,
    /// Sign-in flows one client IP may open per minute (completed ones are given back).
    pub max_flows_per_ip: u32,
    /// What the landing page offers, in order.
    pub methods: Vec<LoginMethod>,
    /// Passkeys may be enrolled and used (a second factor, and passwordless sign-in); only
    /// with second factors on, a password sign-in, and an issuer whose host is a name.
    pub passkeys: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenClaims {
    /// Profile claims as the granted scopes allow.
    Scoped,
    /// Every profile claim, whatever the scope (Nextcloud Social Login).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: String,
    /// Display name for the login and consent pages.
    pub name: Option<String>,
    /// SHA-256 of the secret; None for public clients.
    pub secret_hash: Option<[u8; 32]>,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Effective value: always true for public clients.
    pub require_pkce: bool,
    /// Scopes this client may be granted; None = every supported scope.
    pub scopes: Option<Vec<String>>,
    /// Users outside these groups get access_denied; None = everyone.
    pub allowed_groups: Option<Vec<String>>,
    /// Issue refresh tokens even without `offline_access`.
    pub refresh_tokens: bool,
    pub id_token_claims: IdTokenClaims,
    /// Origins allowed by CORS (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// None: a confidential client may use either Basic or post. Always `Some(None)` for public
    /// clients.
    pub token_endpoint_auth_method: Option<AuthMethod>,
    pub lifetimes: Lifetimes,
    /// Put the user's Plex token in the id_token as `plex_token`.
    pub plex_token_claim: Option<PlexTokenClaim>,
    pub access_token_format: AccessTokenFormat,
    /// A resource server: /introspect answers it about every client's tokens, not only its own.
    pub introspect_any: bool,
    /// `http://` redirect URIs on non-loopback hosts are accepted with an https issuer.
    pub allow_http_redirect_uris: bool,
    /// Signing in to this client needs a second factor.
    pub require_second_factor: bool,
    /// The segments of `roles_claim` (`["realm_access", "roles"]`): the user's groups nested
    /// there in the id_token, userinfo and JWT access tokens, whatever the scopes.
    pub roles_claim: Option<Vec<String>>,
    /// `[clients.claims]`: (claim name, the standard claim it copies), added whatever the
    /// scopes to the id_token, userinfo and JWT access tokens.
    pub claims: Vec<(String, String)>,
    /// How a sent redirect_uri is matched against `redirect_uris`.
    pub redirect_uri_match: RedirectUriMatch,
    /// OIDC Back-Channel Logout: where logout tokens go (https, or http on loopback).
    pub backchannel_logout_uri: Option<String>,
    /// Logout tokens must carry `sid`; one without a known session is not sent.
    pub backchannel_logout_session_required: bool,
}

/// `redirect_uri_match`: exact by default (RFC 9700 §4.1.3); `Prefix` for apps whose callback
/// carries a varying suffix: each registered URI ends in `/` after a path, and a URI that only
/// starts with one may not hold `..`, `%2e` or a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectUriMatch {
    #[default]
    Exact,
    Prefix,
}

/// One problem with the configuration: which key, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, e.g. `clients[0].redirect_uris` or `session.idle_timeout`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the configuration came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Defaults,
}

/// Keys that may be given as `K_file = "/path"` instead, to keep the secret out of the file.
pub const SECRET_KEYS: &[&str] = &["secret", "secret_key", "app_secret", "password"];

/// Scopes doorman can grant; a client's `scopes` must be drawn from these.
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "groups", "offline_access"];

const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The configuration with no file and no environment: the single source of every default.
pub fn defaults() -> Config {
    // A constant that parses (`empty_file_is_the_defaults` checks it): cannot fail at run time.
    #[allow(clippy::expect_used)]
    let issuer = Url::parse("http://127.0.0.1:8080").expect("constant URL");
    Config {
        issuer,
        listen: DEFAULT_LISTEN,
        server: ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        },
        data_dir: PathBuf::from("./doorman-data"),
        theme_dir: None,
        trusted_proxies: Vec::new(),
        client_ip_header: "x-forwarded-for".to_string(),
        session: SessionConfig {
            idle_timeout: Duration::from_secs(12 * HOUR),
            max_lifetime: Duration::from_secs(30 * DAY),
            cookie_domain: None,
        },
        keys: KeysConfig { rotate_after: None },
        tokens: Lifetimes {
            access_token: Duration::from_secs(600),
            id_token: Duration::from_secs(600),
            refresh_token_idle: Duration::from_secs(14 * DAY),
            refresh_token_max: Duration::from_secs(90 * DAY),
        },
        login: LoginConfig {
            max_failures_per_account: 10,
            max_failures_per_account_all_ips: 50,
            max_failures_per_ip: 50,
            failure_window: Duration::from_secs(300),
            lockout_base: Duration::from_secs(30),
            lockout_max: Duration::from_secs(15 * 60),
            require_second_factor: SecondFactorPolicy::Optional,
            second_factor_groups: Vec::new(),
            max_flows_per_ip: 300,
            passkeys: true,
            methods: vec![LoginMethod::Password],
        },
        accounts: AccountsConfig {
            min_password_length: 10,
            users_may_change_email: false,
            reauth_after: Duration::from_secs(600),
            admin_groups: vec!["admins".to_string()],
        },
        compat: CompatConfig::default(),
        clients: Vec::new(),
        warnings: Vec::new(),
        source: NO_FILE.to_string(),
        secret_key: None,
        plex: None,
        jitsi: None,
        forward_auth: ForwardAuthConfig::default(),
        smtp: None,
    }
}

/// Loads the configuration: `path` if given (an error if missing), else `doorman.toml` in the
/// working directory if present, else the built-in defaults. `env` is the process environment
/// (passed in so tests control it); `DOORMAN_*` overrides apply in all three cases.
pub fn load(
    path: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<(Config, Source), ConfigErrors> {
    load_named(path.map(|p| (p, NamedBy::Flag)), env)
}

/// [`Config::source`] when no file was read.
pub const NO_FILE: &str = "no config file: built-in defaults + DOORMAN_* variables";

/// The variable that names the config file when `--config` is not given.
pub const CONFIG_VAR: &str = "DOORMAN_CONFIG";

/// Who named the config file: an unreadable file is reported as coming from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    /// `--config PATH`.
    Flag,
    /// The environment variable [`CONFIG_VAR`].
    Env,
}

/// [`load`], with the file named by the flag or by `DOORMAN_CONFIG`.
pub fn load_named(
    path: Option<(&Path, NamedBy)>,
    env: &HashMap<String, String>,
) -> Result<(Config, Source), ConfigErrors> {
    let default = Path::new("doorman.toml");
    let (path, named_by) = match path {
        Some((p, by)) => (p, Some(by)),
        None if default.exists() => (default, None),
        None => return from_str("", env, Path::new(".")).map(|c| (c, Source::Defaults)),
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        let shown = path.display();
        let (key, message) = match named_by {
            Some(NamedBy::Env) => (
                format!("{CONFIG_VAR}={shown}"),
                format!(
                    "cannot read {shown}: {e}: unset {CONFIG_VAR} or point it at the config \
                     file (`--config PATH` wins over it)"
                ),
            ),
            Some(NamedBy::Flag) => (
                "--config".to_string(),
                format!("cannot read {shown}: {e}; pass the path of a readable TOML file"),
            ),
            None => (
                "doorman.toml".to_string(),
                format!("cannot read {shown}: {e}; make it readable, or pass --config PATH"),
            ),
        };
        ConfigErrors(vec![ConfigError { key, message }])
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let shown = path.display().to_string();
    from_str(&text, env, base_dir).map(|mut c| {
        for w in &mut c.warnings {
            *w = w.replace(raw::FILE_MARK, &shown);
        }
        c.source = format!("config file {shown}");
        (c, Source::File(path.to_path_buf()))
    })
}

/// Parses and validates configuration text (no file lookup); `base_dir` resolves relative
/// `*_file` paths.
pub fn from_str(
    text: &str,
    env: &HashMap<String, String>,
    base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| ConfigErrors(vec![syntax_error(text, &e)]))?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    raw::interpolate(&mut table, "", env, &mut errors);
    let mut env_origins = Vec::new();
    raw::apply_env(
        &mut table,
        env,
        &mut errors,
        &mut warnings,
        &mut env_origins,
    );
    raw::check(&mut table, file::ROOT, "", base_dir, &mut errors);
    // The walk removed whatever serde would reject, so this fails only if schema and structs
    // disagree (a test guards that); still an error, never a panic.
    let config = match table.try_into::<file::File>() {
        Ok(f) => validate::validate(f, warnings, &mut errors),
        Err(e) => {
            errors.push(ConfigError {
                key: "config".into(),
                message: e.message().to_string(),
            });
            raw::name_env_origins(&mut errors, &env_origins);
            return Err(ConfigErrors(errors));
        }
    };
    if errors.is_empty() {
        Ok(config)
    } else {
        raw::name_env_origins(&mut errors, &env_origins);
        Err(ConfigErrors(errors))
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!(" at line {line}, column {column}")
    });
    ConfigError {
        key: "toml".into(),
        message: format!(
            "syntax error{}: {}; fix the TOML syntax",
            at.unwrap_or_default(),
            e.message().trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        from_str(text, &HashMap::new(), Path::new("."))
    }

    /// The errors of `text`, asserting there is one at `key` whose message contains `needle`.
    fn error_at(text: &str, key: &str, needle: &str) {
        let errors = parse(text).unwrap_err();
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.key == key && e.message.contains(needle)),
            "no error at {key} containing {needle:?} in:\n{errors}"
        );
    }

    const CLIENT: &str = r#"
        [[clients]]
        id = "app"
        secret = "0123456789abcdef"
        redirect_uris = ["https://app.example.com/cb"]
    "#;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", defaults()));
        assert_eq!(c.issuer_str(), "http://127.0.0.1:8080");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.tokens.refresh_token_max, Duration::from_secs(90 * 86400));
        assert_eq!(c.login.max_failures_per_ip, 50);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn plex_table_and_login_methods() {
        let c = parse(
            "[plex]\nservers = [\"SRV1\"]\nowner_groups = [\"admins\"]\nmode = \"redirect\"\n\
             api_base = \"http://127.0.0.1:9/\"\n[login]\nmethods = [\"plex\"]",
        )
        .unwrap();
        let plex = c.plex.unwrap();
        assert_eq!(plex.servers, ["SRV1"]);
        assert_eq!(plex.groups, ["plex"], "default groups");
        assert_eq!(plex.mode, PlexMode::Redirect);
        assert_eq!(plex.api_base.as_str(), "http://127.0.0.1:9/");
        assert_eq!(plex.recheck_after, Duration::from_secs(3600));
        assert_eq!(c.login.methods, [LoginMethod::Plex]);
        let both = parse("[plex]\nservers = [\"SRV1\"]").unwrap();
        assert_eq!(
            both.login.methods,
            [LoginMethod::Password, LoginMethod::Plex]
        );
        assert_eq!(parse("").unwrap().login.methods, [LoginMethod::Password]);
        error_at("[plex]\nservers = []", "plex.servers", "/identity");
        error_at(
            "[plex]\nproduct = \"x\"",
            "plex.servers",
            "doorman plex servers",
        );
        error_at(
            "[login]\nmethods = [\"plex\"]",
            "login.methods[0]",
            "[plex]",
        );
        error_at(
            "[plex]\nservers = [\"SRV1\"]\nmode = \"tab\"",
            "plex.mode",
            "redirect",
        );
        error_at("secret_key = \"short\"", "secret_key", "32");
    }

    #[test]
    fn example_file_loads_in_an_empty_environment() {
        let c = parse(include_str!("../../config/doorman.example.toml")).unwrap();
        assert_eq!(c.clients.len(), 2);
        let spa = &c.clients[1];
        assert!(spa.public && spa.require_pkce && spa.secret_hash.is_none());
        assert_eq!(spa.lifetimes.refresh_token_idle, Duration::from_secs(86400));
        assert_eq!(spa.lifetimes.refresh_token_max, c.tokens.refresh_token_max);
        // A placeholder hash, never the hash of a published secret.
        let hash = c.clients[0].secret_hash.unwrap();
        assert_ne!(
            hash,
            crate::secrets::digest("change-me-to-a-long-random-secret")
        );
    }

    #[test]
    fn client_is_resolved() {
        let c = parse(&format!(
            "[tokens]\naccess_token_lifetime = \"5m\"\n{CLIENT}id_token_lifetime = \"1m\""
        ))
        .unwrap();
        let app = &c.clients[0];
        assert_eq!(app.lifetimes.access_token, Duration::from_secs(300));
        assert_eq!(app.lifetimes.id_token, Duration::from_secs(60));
        assert!(!app.require_pkce && app.token_endpoint_auth_method.is_none());
        assert_eq!(app.id_token_claims, IdTokenClaims::Scoped);
    }

    #[test]
    fn issuer_keeps_path_and_loses_trailing_slash() {
        let c = parse("issuer = \"https://example.com/auth/\"").unwrap();
        assert_eq!(c.issuer.as_str(), "https://example.com/auth");
        assert_eq!(c.issuer_str(), "https://example.com/auth");
        assert_eq!(
            parse("issuer = \"https://example.com/\"")
                .unwrap()
                .issuer_str(),
            "https://example.com"
        );
        error_at("issuer = \"https://example.com/?a=b\"", "issuer", "query");
        error_at("issuer = \"ftp://example.com\"", "issuer", "https");
    }

    #[test]
    fn issuer_defaults_from_listen() {
        let c = parse("listen = \"192.168.1.5:9000\"").unwrap();
        assert_eq!(c.issuer_str(), "http://192.168.1.5:9000");
        let c = parse("listen = \"0.0.0.0:9000\"").unwrap();
        assert_eq!(c.issuer_str(), "http://127.0.0.1:9000");
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errors = parse(
            "listen = \"nowhere\"\n[session]\nidle_timeout = \"soon\"\n[login]\nfailure_window = 300",
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["login.failure_window", "listen", "session.idle_timeout"]
        );
    }

    #[test]
    fn bad_durations() {
        error_at(
            "[session]\nidle_timeout = \"12\"",
            "session.idle_timeout",
            "write a unit, e.g. \"90s\"",
        );
        error_at(
            "[session]\nidle_timeout = 12",
            "session.idle_timeout",
            "write a unit",
        );
        error_at(
            "[tokens]\naccess_token_lifetime = \"0s\"",
            "tokens.access_token_lifetime",
            "longer than 0",
        );
        error_at(
            "[session]\nidle_timeout = \"31d\"",
            "session.idle_timeout",
            "longer than max_lifetime (30d)",
        );
        error_at(
            &format!("{CLIENT}refresh_token_idle_timeout = \"100d\""),
            "clients[0].refresh_token_idle_timeout",
            "longer than refresh_token_max_lifetime (90d)",
        );
    }

    #[test]
    fn unknown_keys_get_hints() {
        error_at(
            "[session]\nidle_timout = \"1h\"",
            "session.idle_timout",
            "did you mean `idle_timeout`?",
        );
        error_at(
            "[session]\nissuer = \"https://x\"",
            "session.issuer",
            "move it above the first header",
        );
        error_at(
            "idle_timeout = \"1h\"",
            "idle_timeout",
            "belongs in [server] or [session]",
        );
        error_at(
            &format!("{CLIENT}secret_fil = \"x\""),
            "clients[0].secret_fil",
            "did you mean `secret_file`?",
        );
        error_at("[clients]\nid = \"x\"", "clients", "[[clients]]");
        error_at(
            "[login]\nmax_failures_per_ip = \"5\"",
            "login.max_failures_per_ip",
            "expected an integer, found a string",
        );
    }

    #[test]
    fn roles_claim_is_a_dotted_path_that_takes_no_registered_claim() {
        let c = parse(&format!("{CLIENT}roles_claim = \"realm_access.roles\"")).unwrap();
        assert_eq!(
            c.clients[0].roles_claim,
            Some(vec!["realm_access".to_string(), "roles".to_string()])
        );
        assert_eq!(parse(CLIENT).unwrap().clients[0].roles_claim, None);
        for bad in [
            "",
            "realm_access..roles",
            ".roles",
            "realm access",
            "a.b%c",
            "roles.",
        ] {
            error_at(
                &format!("{CLIENT}roles_claim = \"{bad}\""),
                "clients[0].roles_claim",
                "dotted claim path",
            );
        }
        for taken in ["sub", "groups", "iss.x", "email"] {
            error_at(
                &format!("{CLIENT}roles_claim = \"{taken}\""),
                "clients[0].roles_claim",
                "doorman sets itself",
            );
        }
    }

    #[test]
    fn claims_map_copies_standard_claims_and_refuses_protocol_names() {
        let c = parse(&format!(
            "{CLIENT}[clients.claims]\nnickname = \"preferred_username\"\nuid = \"sub\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.clients[0].claims,
            vec![
                ("nickname".to_string(), "preferred_username".to_string()),
                ("uid".to_string(), "sub".to_string())
            ]
        );
        for taken in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nonce",
            "azp",
            "sid",
            "auth_time",
            "acr",
            "amr",
            "at_hash",
        ] {
            error_at(
                &format!("{CLIENT}[clients.claims]\n{taken} = \"preferred_username\"\n"),
                &format!("clients[0].claims.{taken}"),
                "protocol claim",
            );
        }
        error_at(
            &format!("{CLIENT}[clients.claims]\nnickname = \"password\"\n"),
            "clients[0].claims.nickname",
            "not a standard claim",
        );
        error_at(
            &format!("{CLIENT}[clients.claims]\nnickname = 3\n"),
            "clients[0].claims.nickname",
            "expected a string",
        );
        error_at(
            &format!("{CLIENT}roles_claim = \"realm_access.roles\"\n[clients.claims]\nrealm_access = \"groups\"\n"),
            "clients[0].claims.realm_access",
            "roles_claim",
        );
    }

    #[test]
    fn compat_keycloak_paths_is_off_by_default() {
        assert!(!parse("").unwrap().compat.keycloak_paths);
        assert!(
            parse("[compat]\nkeycloak_paths = true")
                .unwrap()
                .compat
                .keycloak_paths
        );
        error_at(
            "[compat]\nkeycloak_path = true",
            "compat.keycloak_path",
            "keycloak_paths",
        );
    }

    #[test]
    fn backchannel_logout_uris_are_https_or_loopback_http() {
        let with = |uri: &str| format!("{CLIENT}backchannel_logout_uri = \"{uri}\"");
        for good in [
            "https://app.example.com/logout/backchannel",
            "http://127.0.0.1:8080/bc",
            "http://localhost/bc",
        ] {
            let c = parse(&with(good)).unwrap();
            assert_eq!(c.clients[0].backchannel_logout_uri.as_deref(), Some(good));
            assert!(!c.clients[0].backchannel_logout_session_required);
        }
        assert_eq!(
            parse(CLIENT).unwrap().clients[0].backchannel_logout_uri,
            None
        );
        for bad in [
            "http://app.example.com/bc",
            "ftp://app.example.com/bc",
            "/bc",
            "https://app.example.com/bc#x",
        ] {
            error_at(&with(bad), "clients[0].backchannel_logout_uri", bad);
        }
        let required = format!(
            "{}\nbackchannel_logout_session_required = true",
            with("https://app.example.com/bc")
        );
        assert!(parse(&required).unwrap().clients[0].backchannel_logout_session_required);
        error_at(
            &format!("{CLIENT}backchannel_logout_session_required = true"),
            "clients[0].backchannel_logout_session_required",
            "backchannel_logout_uri",
        );
    }

    #[test]
    fn redirect_uri_prefixes_end_in_a_slash_after_a_path() {
        let prefix = CLIENT.replace(
            "[\"https://app.example.com/cb\"]",
            "[\"https://app.example.com/cb/\"]\nredirect_uri_match = \"prefix\"",
        );
        assert_eq!(
            parse(&prefix).unwrap().clients[0].redirect_uri_match,
            RedirectUriMatch::Prefix
        );
        assert_eq!(
            parse(CLIENT).unwrap().clients[0].redirect_uri_match,
            RedirectUriMatch::Exact
        );
        for bad in [
            "https://app.example.com/cb",
            "https://app.example.com/",
            "https://app.example.com/cb/?x=1/",
        ] {
            let text = prefix.replace("https://app.example.com/cb/", bad);
            error_at(&text, "clients[0].redirect_uris[0]", "cannot be a prefix");
        }
        error_at(
            &CLIENT.replace(
                "[[clients]]",
                "[[clients]]\nredirect_uri_match = \"wildcard\"",
            ),
            "clients[0].redirect_uri_match",
            "\"prefix\"",
        );
    }

    #[test]
    fn client_secret_rules() {
        let short = CLIENT.replace("0123456789abcdef", "short");
        error_at(&short, "clients[0].secret", "at least 16 characters");
        let missing = CLIENT.replace("secret = \"0123456789abcdef\"", "");
        error_at(&missing, "clients[0].secret", "doorman client secret");
        error_at(
            &format!("{CLIENT}public = true"),
            "clients[0].secret",
            "public client has no secret",
        );
        error_at(
            &format!("{CLIENT}secret_hash = \"{}\"", "ab".repeat(32)),
            "clients[0].secret_hash",
            "only one",
        );
        error_at(
            &format!("{CLIENT}token_endpoint_auth_method = \"none\""),
            "clients[0].token_endpoint_auth_method",
            "public",
        );
        let hashed = missing.replace(
            "[[clients]]",
            &format!("[[clients]]\nsecret_hash = \"{}\"", "ab".repeat(32)),
        );
        assert_eq!(
            parse(&hashed).unwrap().clients[0].secret_hash,
            Some([0xab; 32])
        );
    }

    #[test]
    fn client_uri_and_id_rules() {
        let uri = |u: &str| CLIENT.replace("https://app.example.com/cb", u);
        error_at(&uri("/cb"), "clients[0].redirect_uris[0]", "absolute URL");
        error_at(
            &uri("https://app.example.com/cb#x"),
            "clients[0].redirect_uris[0]",
            "fragment",
        );
        error_at(
            &CLIENT.replace("\"https://app.example.com/cb\"", ""),
            "clients[0].redirect_uris",
            "at least one",
        );
        error_at(
            &format!("{CLIENT}{CLIENT}"),
            "clients[1].id",
            "already the id of clients[0]",
        );
        error_at(
            &CLIENT.replace("\"app\"", "\"a:b\""),
            "clients[0].id",
            "`:`",
        );
        error_at(
            &format!("{CLIENT}scopes = [\"openid\", \"admin\"]"),
            "clients[0].scopes[1]",
            "unknown scope",
        );
        error_at(
            &format!("{CLIENT}allowed_origins = [\"https://a.example.com/\"]"),
            "clients[0].allowed_origins[0]",
            "write \"https://a.example.com\"",
        );
    }

    #[test]
    fn client_ip_header_and_flows_per_ip() {
        let c = parse("").unwrap();
        assert_eq!(c.client_ip_header, "x-forwarded-for");
        assert_eq!(c.login.max_flows_per_ip, 300);
        let c = parse(
            "trusted_proxies = [\"10.0.0.0/8\"]\nclient_ip_header = \"Fly-Client-IP\"\n[login]\nmax_flows_per_ip = 20",
        )
        .unwrap();
        assert_eq!(c.client_ip_header, "fly-client-ip");
        assert_eq!(c.login.max_flows_per_ip, 20);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let alone = parse("client_ip_header = \"CF-Connecting-IP\"").unwrap();
        assert!(
            alone.warnings.iter().any(|w| w.contains("trusted_proxies")),
            "{:?}",
            alone.warnings
        );
        error_at(
            "client_ip_header = \"X Forwarded: For\"",
            "client_ip_header",
            "not a header name",
        );
        error_at(
            "[login]\nmax_flows_per_ip = 0",
            "login.max_flows_per_ip",
            "out of range",
        );
    }

    #[test]
    fn second_factor_and_lockout_defaults() {
        let c = parse(CLIENT).unwrap();
        assert_eq!(c.login.require_second_factor, SecondFactorPolicy::Optional);
        assert!(c.login.second_factor_groups.is_empty());
        assert_eq!(c.login.max_failures_per_account, 10);
        assert_eq!(c.login.max_failures_per_account_all_ips, 50);
        assert_eq!(c.login.lockout_base, Duration::from_secs(30));
        assert_eq!(c.login.lockout_max, Duration::from_secs(15 * 60));
        assert!(!c.clients[0].require_second_factor);

        let set = parse(&format!(
            "[login]\nrequire_second_factor = \"required\"\nsecond_factor_groups = [\"admins\"]\n\
             max_failures_per_account = 3\nmax_failures_per_account_all_ips = 3\n\
             lockout_base = \"1s\"\nlockout_max = \"1s\"\n{CLIENT}require_second_factor = true"
        ))
        .unwrap();
        assert_eq!(
            set.login.require_second_factor,
            SecondFactorPolicy::Required
        );
        assert_eq!(set.login.second_factor_groups, ["admins"]);
        assert_eq!(set.login.max_failures_per_account_all_ips, 3);
        assert_eq!(set.login.lockout_base, Duration::from_secs(1));
        assert_eq!(set.login.lockout_max, Duration::from_secs(1));
        assert!(set.clients[0].require_second_factor);
        let off = parse("[login]\nrequire_second_factor = \"off\"").unwrap();
        assert_eq!(off.login.require_second_factor, SecondFactorPolicy::Off);
        // From the environment too.
        let vars = env(&[("DOORMAN_LOGIN__REQUIRE_SECOND_FACTOR", "required")]);
        let from_env = from_str("", &vars, Path::new(".")).unwrap();
        assert_eq!(
            from_env.login.require_second_factor,
            SecondFactorPolicy::Required
        );
    }

    #[test]
    fn the_all_ips_limit_defaults_to_five_times_the_per_account_one() {
        let c = parse("[login]\nmax_failures_per_account = 4").unwrap();
        assert_eq!(c.login.max_failures_per_account_all_ips, 20);
        let c =
            parse("[login]\nmax_failures_per_account = 4\nmax_failures_per_account_all_ips = 9")
                .unwrap();
        assert_eq!(c.login.max_failures_per_account_all_ips, 9);
        error_at(
            "[login]\nmax_failures_per_account = 4\nmax_failures_per_account_all_ips = 3",
            "login.max_failures_per_account_all_ips",
            "raise it to at least 4",
        );
        error_at(
            "[login]\nmax_failures_per_account_all_ips = 0",
            "login.max_failures_per_account_all_ips",
            "out of range",
        );
    }

    #[test]
    fn lockout_durations_are_checked() {
        error_at(
            "[login]\nlockout_base = \"500ms\"",
            "login.lockout_base",
            "at least \"1s\"",
        );
        error_at(
            "[login]\nlockout_base = \"0s\"",
            "login.lockout_base",
            "longer than 0",
        );
        error_at(
            "[login]\nlockout_base = \"soon\"",
            "login.lockout_base",
            "not a duration",
        );
        error_at(
            "[login]\nlockout_base = \"1m\"\nlockout_max = \"30s\"",
            "login.lockout_max",
            "raise lockout_max or shorten lockout_base",
        );
        // The default base (30s) counts too.
        error_at(
            "[login]\nlockout_max = \"10s\"",
            "login.lockout_max",
            "shorter than lockout_base (30s)",
        );
    }

    #[test]
    fn second_factor_policy_values_and_contradictions() {
        error_at(
            "[login]\nrequire_second_factor = \"always\"",
            "login.require_second_factor",
            "use \"off\", \"optional\" (the default) or \"required\"",
        );
        error_at(
            "[login]\nrequire_second_factor = true",
            "login.require_second_factor",
            "",
        );
        error_at(
            "[login]\nrequire_second_factor = \"off\"\nsecond_factor_groups = [\"admins\"]",
            "login.second_factor_groups",
            "turn [login] require_second_factor to optional or required",
        );
        error_at(
            &format!(
                "[login]\nrequire_second_factor = \"off\"\n{CLIENT}require_second_factor = true"
            ),
            "clients[0].require_second_factor",
            "turn [login] require_second_factor to optional or required",
        );
        // Off is fine when nothing asks for a second factor, and an empty list asks nothing.
        let off = parse(&format!(
            "[login]\nrequire_second_factor = \"off\"\nsecond_factor_groups = []\n\
             {CLIENT}require_second_factor = false"
        ));
        assert!(off.is_ok(), "{off:?}");
    }

    #[test]
    fn http_redirect_uris_need_loopback_or_an_opt_in_with_an_https_issuer() {
        let https = |uri: &str, extra: &str| {
            format!(
                "issuer = \"https://auth.example.com\"\n{}{extra}",
                CLIENT.replace("https://app.example.com/cb", uri)
            )
        };
        error_at(
            &https("http://app.example.com/cb", ""),
            "clients[0].redirect_uris[0]",
            "allow_http_redirect_uris = true",
        );
        error_at(
            &https("http://192.168.1.20/cb", ""),
            "clients[0].redirect_uris[0]",
            "RFC 9700",
        );
        for loopback in [
            "http://127.0.0.1:8000/cb",
            "http://127.5.6.7/cb",
            "http://[::1]:8000/cb",
            "http://localhost:5173/cb",
        ] {
            assert!(parse(&https(loopback, "")).is_ok(), "{loopback}");
        }
        let lan = parse(&https(
            "http://192.168.1.20/cb",
            "allow_http_redirect_uris = true",
        ))
        .unwrap();
        assert!(lan.clients[0].allow_http_redirect_uris);
        // An http issuer cannot protect codes anyway; its own warning says so.
        let plain = parse(&format!(
            "issuer = \"http://auth.example.com\"\n{}",
            CLIENT.replace("https://app.example.com/cb", "http://app.example.com/cb")
        ))
        .unwrap();
        assert!(
            plain
                .warnings
                .iter()
                .any(|w| w.contains("http://auth.example.com") && w.contains("https")),
            "{:?}",
            plain.warnings
        );
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            let c = parse(&format!("issuer = \"{local}\"")).unwrap();
            // An IP address has only the passkey warning (no relying-party id), not http's.
            assert!(
                c.warnings.iter().all(|w| w.contains("WebAuthn")),
                "{local}: {:?}",
                c.warnings
            );
        }
    }

    #[test]
    fn an_ip_issuer_warns_that_no_passkey_is_offered() {
        let c = parse("issuer = \"http://192.168.1.5:8080\"").unwrap();
        let w = c.warnings.iter().find(|w| w.contains("WebAuthn"));
        assert!(
            w.is_some_and(
                |w| w.contains("http://192.168.1.5:8080") && w.contains("passkeys = false")
            ),
            "{:?}",
            c.warnings
        );
        for quiet in [
            "issuer = \"http://localhost:8080\"",
            "issuer = \"http://192.168.1.5:8080\"\n[login]\npasskeys = false",
            "issuer = \"http://192.168.1.5:8080\"\n[login]\nrequire_second_factor = \"off\"",
            "",
        ] {
            let c = parse(quiet).unwrap();
            assert!(
                !c.warnings.iter().any(|w| w.contains("WebAuthn")),
                "{quiet}: {:?}",
                c.warnings
            );
        }
    }

    #[test]
    fn introspect_any_and_audiences_that_are_client_ids() {
        let c = parse(&format!("{CLIENT}introspect_any = true")).unwrap();
        assert!(c.clients[0].introspect_any);
        assert!(!parse(CLIENT).unwrap().clients[0].introspect_any);
        error_at(
            "[[clients]]\nid = \"spa\"\npublic = true\nintrospect_any = true\n\
             redirect_uris = [\"https://spa.example.com/cb\"]",
            "clients[0].introspect_any",
            "confidential",
        );
        let jitsi = format!(
            "{CLIENT}access_token_format = \"jwt\"\naccess_token_audience = \"other\"\n{}",
            CLIENT.replace("\"app\"", "\"other\"")
        );
        error_at(
            &jitsi,
            "clients[0].access_token_audience",
            "is the id of clients[1]",
        );
    }

    #[test]
    fn trusted_proxies_and_cookie_domain() {
        let text = "issuer = \"https://auth.example.com\"\n\
            trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\", \"::1\"]\n\
            [session]\ncookie_domain = \".Example.com\"";
        let c = parse(text).unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.1/32", "::1/128"]);
        assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
        error_at(
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "trusted_proxies[0]",
            "CIDR",
        );
        error_at(
            "issuer = \"https://auth.example.org\"\n[session]\ncookie_domain = \"example.com\"",
            "session.cookie_domain",
            "does not cover",
        );
        error_at(
            "[session]\ncookie_domain = \"https://example.com\"",
            "session.cookie_domain",
            "bare domain",
        );
    }

    #[test]
    fn interpolation() {
        let text = "data_dir = \"${DIR}/$${x}\"";
        let c = from_str(text, &env(&[("DIR", "/srv")]), Path::new(".")).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/${x}"));
        error_at(
            &CLIENT.replace("0123456789abcdef", "${APP_SECRET}"),
            "clients[0].secret",
            "APP_SECRET is not set",
        );
    }

    #[test]
    fn env_overrides() {
        let vars = env(&[
            ("DOORMAN_SESSION__IDLE_TIMEOUT", "1h"),
            ("DOORMAN_LOGIN__MAX_FAILURES_PER_IP", "7"),
            ("DOORMAN_TRUSTED_PROXIES", "10.0.0.1, 10.1.0.0/16"),
            ("DOORMAN_ISSUER", "https://env.example.com"),
            ("DOORMAN_BIN", "/usr/bin/doorman"),
            ("DOORMAN_ISSUR", "x"),
            ("DOORMAN_LISTEN", ""),
        ]);
        let c = from_str(
            "issuer = \"https://file.example.com\"\n[session]\nidle_timeout = \"2h\"",
            &vars,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(3600));
        assert_eq!(c.login.max_failures_per_ip, 7);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.issuer_str(), "https://env.example.com");
        assert_eq!(c.listen, DEFAULT_LISTEN);
        // Two unknown variables, and two that override keys the file sets (issue 9).
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("DOORMAN_ISSUR") && w.contains("did you mean DOORMAN_ISSUER?")));
        assert!(c
            .warnings
            .iter()
            .any(|w| w == "DOORMAN_ISSUER overrides issuer from the config file"));
        assert!(c.warnings.iter().any(|w| {
            w == "DOORMAN_SESSION__IDLE_TIMEOUT overrides session.idle_timeout from the config file"
        }));

        let bad = from_str(
            "",
            &env(&[("DOORMAN_LOGIN__MAX_FAILURES_PER_IP", "many")]),
            Path::new("."),
        )
        .unwrap_err();
        // Named after the variable, with the key it sets (issue 9).
        assert_eq!(
            bad.0[0].key,
            "DOORMAN_LOGIN__MAX_FAILURES_PER_IP (environment)"
        );
        assert!(bad.0[0].message.starts_with("login.max_failures_per_ip: "));
    }

    #[test]
    fn secret_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.secret"), "0123456789abcdefXYZ\n\n").unwrap();
        let text = CLIENT.replace(
            "secret = \"0123456789abcdef\"",
            "secret_file = \"app.secret\"",
        );
        let c = from_str(&text, &HashMap::new(), dir.path()).unwrap();
        assert_eq!(
            c.clients[0].secret_hash,
            Some(crate::secrets::digest("0123456789abcdefXYZ"))
        );

        let missing = from_str(
            &text.replace("app.secret", "nope"),
            &HashMap::new(),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(missing.0.len(), 1, "{missing}");
        assert_eq!(missing.0[0].key, "clients[0].secret_file");
        assert!(missing.0[0].message.contains("nope"));
        error_at(
            &format!("{CLIENT}secret_file = \"x\""),
            "clients[0].secret_file",
            "not both",
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("issuer = \"x\"\nlisten = = 1").unwrap_err();
        assert_eq!(e.0[0].key, "toml");
        assert!(e.0[0].message.contains("line 2"), "{e}");
    }

    #[test]
    fn server_limits() {
        let c = parse("").unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 4096);
        let c = parse(
            "[server]\nheader_read_timeout = \"30s\"\nidle_timeout = \"5m\"\nmax_connections = 100",
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.server.max_connections, 100);
        error_at(
            "[server]\nheader_read_timeout = \"31s\"",
            "server.header_read_timeout",
            "at most \"30s\"",
        );
        error_at(
            "[server]\nidle_timeout = \"0s\"",
            "server.idle_timeout",
            "longer than 0",
        );
        error_at(
            "[server]\nmax_connections = 0",
            "server.max_connections",
            "out of range",
        );
        let c = from_str(
            "",
            &env(&[("DOORMAN_SERVER__MAX_CONNECTIONS", "7")]),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 7);
    }

    #[test]
    fn theme_dir_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let ok = format!("theme_dir = '{}'", dir.path().display());
        assert_eq!(parse(&ok).unwrap().theme_dir.as_deref(), Some(dir.path()));
        let missing = dir.path().join("nope");
        error_at(
            &format!("theme_dir = '{}'", missing.display()),
            "theme_dir",
            "does not exist",
        );
        std::fs::write(dir.path().join("file"), "x").unwrap();
        error_at(
            &format!("theme_dir = '{}'", dir.path().join("file").display()),
            "theme_dir",
            "is not a directory",
        );
    }

    #[test]
    fn load_reports_a_missing_file() {
        let e = load(
            Some(Path::new("/nonexistent/doorman.toml")),
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(e.0[0].key, "--config");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"").unwrap();
        let (c, source) = load(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(c.source, format!("config file {}", path.display()));
        assert_eq!((c.listen.port(), source), (9999, Source::File(path)));
    }

    #[test]
    fn an_override_of_a_file_key_is_a_warning_naming_variable_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(
            &path,
            "issuer = \"https://file.example.com\"\ntrusted_proxies = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        let vars = env(&[
            ("DOORMAN_ISSUER", "https://env.example.com"),
            ("DOORMAN_TRUSTED_PROXIES", "172.16.0.0/12,10.0.0.0/8"),
            ("DOORMAN_DATA_DIR", "/tmp/x"),
        ]);
        let (c, _) = load(Some(&path), &vars).unwrap();
        let shown = path.display();
        assert_eq!(
            c.warnings,
            vec![
                format!("DOORMAN_ISSUER overrides issuer from {shown}"),
                format!("DOORMAN_TRUSTED_PROXIES overrides trusted_proxies from {shown}"),
            ]
        );
        assert_eq!(c.trusted_proxies.len(), 2);
        // Without a file nothing is overridden, and the source says so.
        let c = from_str("", &vars, Path::new(".")).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.source, NO_FILE);
    }

    #[test]
    fn nested_arrays_of_tables_from_the_environment_say_use_the_file() {
        let vars = env(&[
            ("DOORMAN_FORWARD_AUTH__RULES", "x"),
            ("DOORMAN_CLIENTS", "x"),
        ]);
        let c = from_str("", &vars, Path::new(".")).unwrap();
        assert!(
            c.warnings.iter().any(|w| w
                == "DOORMAN_FORWARD_AUTH__RULES is ignored: [[forward_auth.rules]] cannot be set \
                    from the environment; use the file"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("DOORMAN_CLIENTS is ignored: [[clients]] cannot be set")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn published_secrets_are_refused_naming_the_key() {
        let placeholder = "change-me-to-a-long-random-secret";
        let client = |line: &str| {
            format!(
                "[[clients]]\nid = \"app\"\n{line}\nredirect_uris = [\"https://app.example.com/cb\"]\n"
            )
        };
        error_at(
            &client(&format!("secret = \"{placeholder}\"")),
            "clients[0].secret",
            "doorman client secret",
        );
        let hash = crate::secrets::to_hex(&crate::secrets::digest(placeholder));
        error_at(
            &client(&format!("secret_hash = \"{hash}\"")),
            "clients[0].secret_hash",
            "published",
        );
        error_at(
            &format!("secret_key = \"{placeholder}\""),
            "secret_key",
            "openssl rand",
        );
        error_at(
            &format!(
                "[jitsi]\nmeet_url = \"https://meet.example.com\"\napp_id = \"jitsi\"\n\
                 app_secret = \"{placeholder}\"\n"
            ),
            "jitsi.app_secret",
            "JWT_APP_SECRET",
        );
        // The message never repeats the value.
        let errors = parse(&client(&format!("secret = \"{placeholder}\""))).unwrap_err();
        assert!(!errors.to_string().contains(placeholder), "{errors}");
        // A secret of one's own passes.
        parse(&client("secret = \"a-secret-of-my-own-0123456789\"")).unwrap();
    }

    #[test]
    fn a_public_suffix_is_no_cookie_domain() {
        for suffix in ["com", ".com", "co.uk", "github.io", "duckdns.org"] {
            error_at(
                &format!("[session]\ncookie_domain = \"{suffix}\""),
                "session.cookie_domain",
                "public suffix",
            );
        }
        let c = parse(
            "issuer = \"https://auth.example.co.uk\"\n[session]\ncookie_domain = \"example.co.uk\"",
        )
        .unwrap();
        assert_eq!(c.session.cookie_domain.as_deref(), Some("example.co.uk"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let errors = from_str(
            "",
            &env(&[
                ("DOORMAN_LOGIN__MAX_FAILURES_PER_IP", "many"),
                ("DOORMAN_SESSION__IDLE_TIMEOUT", "forever"),
                ("DOORMAN_TRUSTED_PROXIES", "not-a-cidr"),
            ]),
            Path::new("."),
        )
        .unwrap_err();
        for (var, key) in [
            (
                "DOORMAN_LOGIN__MAX_FAILURES_PER_IP",
                "login.max_failures_per_ip",
            ),
            ("DOORMAN_SESSION__IDLE_TIMEOUT", "session.idle_timeout"),
            ("DOORMAN_TRUSTED_PROXIES", "trusted_proxies"),
        ] {
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.key == format!("{var} (environment)") && e.message.starts_with(key)),
                "{var} not named in:\n{errors}"
            );
        }
        // The same mistakes in the file are named by their keys.
        let errors = parse("[login]\nmax_failures_per_ip = \"many\"").unwrap_err();
        assert!(
            errors.to_string().starts_with("login.max_failures_per_ip:"),
            "{errors}"
        );
    }

    #[test]
    fn an_unreadable_doorman_config_is_named_as_such() {
        let e = load_named(
            Some((Path::new("/nonexistent/doorman.toml"), NamedBy::Env)),
            &HashMap::new(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("DOORMAN_CONFIG=/nonexistent/doorman.toml: cannot read")
                && text.contains("unset DOORMAN_CONFIG or point it at the config file"),
            "{text}"
        );
    }

    // ---- [smtp] ----

    #[test]
    fn smtp_defaults_its_port_by_tls_and_needs_host_and_from() {
        let c =
            parse("[smtp]\nhost = \"smtp.example.com\"\nfrom = \"doorman <sso@example.com>\"\n")
                .unwrap();
        let s = c.smtp.unwrap();
        assert_eq!((s.tls, s.port), (SmtpTls::StartTls, 587));
        assert_eq!(s.timeout, Duration::from_secs(10));
        let c = parse(
            "[smtp]\nhost = \"smtp.example.com\"\ntls = \"tls\"\nfrom = \"sso@example.com\"\n",
        )
        .unwrap();
        assert_eq!(c.smtp.unwrap().port, 465);
        let c = parse("[smtp]\nhost = \"localhost\"\ntls = \"none\"\nport = 2525\nfrom = \"sso@example.com\"\n").unwrap();
        assert_eq!(c.smtp.unwrap().port, 2525);
        assert!(parse("").unwrap().smtp.is_none());
        error_at(
            "[smtp]\nfrom = \"sso@example.com\"\n",
            "smtp.host",
            "required",
        );
        error_at(
            "[smtp]\nhost = \"smtp.example.com\"\n",
            "smtp.from",
            "required",
        );
        error_at(
            "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"not a mailbox\"\n",
            "smtp.from",
            "not a mailbox",
        );
        error_at(
            "[smtp]\nhost = \"h\"\nfrom = \"a@b\"\ntls = \"ssl\"\n",
            "smtp.tls",
            "starttls",
        );
        error_at(
            "[smtp]\nhost = \"h\"\nfrom = \"a@b\"\nport = 70000\n",
            "smtp.port",
            "65535",
        );
    }

    #[test]
    fn smtp_password_goes_with_a_username_and_never_in_clear_over_the_network() {
        let base = "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"sso@example.com\"\n";
        error_at(
            &format!("{base}username = \"u\"\n"),
            "smtp.password",
            "password_file",
        );
        error_at(
            &format!("{base}password = \"p\"\n"),
            "smtp.username",
            "required",
        );
        error_at(
            &format!("{base}username = \"u\"\npassword = \"p\"\ntls = \"none\"\n"),
            "smtp.tls",
            "clear text",
        );
        // A relay on this machine may take a password without TLS.
        let local = "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"sso@example.com\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n";
        let s = parse(local).unwrap().smtp.unwrap();
        assert_eq!(s.password.as_deref(), Some("p"));
        assert!(
            !format!("{s:?}").contains("\"p\""),
            "the password is not in Debug"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smtp-pass"), "from-a-file\n").unwrap();
        let text = format!("{base}username = \"u\"\npassword_file = \"smtp-pass\"\n");
        let c = from_str(&text, &HashMap::new(), dir.path()).unwrap();
        assert_eq!(c.smtp.unwrap().password.as_deref(), Some("from-a-file"));
        let both =
            format!("{base}username = \"u\"\npassword = \"p\"\npassword_file = \"smtp-pass\"\n");
        let errors = from_str(&both, &HashMap::new(), dir.path()).unwrap_err();
        assert!(errors.to_string().contains("not both"), "{errors}");
    }
}
