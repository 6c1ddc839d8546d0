//! The file's shape. Two views of the same keys, kept side by side so they are edited together
//! (a test checks they agree):
//! - the serde structs, which hold raw values (strings, not yet URLs or durations) so that
//!   `validate` can check each one and report every problem with its key;
//! - `ROOT`, a schema of key names and kinds, which `raw` walks before serde runs to report
//!   unknown keys (with hints) and wrong types all at once (serde stops at the first), and to
//!   know how to type `DOORMAN_*` overrides.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    /// Public base URL, published as `iss`: absolute http(s), may have a path, no query.
    pub issuer: Option<String>,
    /// Socket address to listen on, `ip:port`.
    pub listen: Option<String>,
    /// Connection limits and timeouts.
    #[serde(default)]
    pub server: Server,
    /// Where the database and signing keys live; relative to the working directory.
    pub data_dir: Option<String>,
    /// Directory overriding the built-in templates and static files.
    pub theme_dir: Option<String>,
    /// CIDRs (or bare IPs) of reverse proxies whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// The header holding the client's IP, believed only from `trusted_proxies`:
    /// "X-Forwarded-For" (default), or a single-value one such as "Fly-Client-IP".
    pub client_ip_header: Option<String>,
    #[serde(default)]
    pub session: Session,
    #[serde(default)]
    pub keys: Keys,
    #[serde(default)]
    pub tokens: Lifetimes,
    #[serde(default)]
    pub login: Login,
    /// Local accounts: password policy, self-service, admins.
    #[serde(default)]
    pub accounts: Accounts,
    /// Compatibility with other providers' URLs (Keycloak's endpoint paths).
    #[serde(default)]
    pub compat: Compat,
    #[serde(default)]
    pub clients: Vec<Client>,
    /// Key that encrypts stored Plex tokens (or `secret_key_file`); generated in data_dir if unset.
    pub secret_key: Option<String>,
    /// Sign in with Plex; its presence enables it.
    pub plex: Option<Plex>,
    /// The Jitsi Meet bridge; its presence enables it.
    pub jitsi: Option<Jitsi>,
    /// The forward-auth hook for reverse proxies.
    pub forward_auth: Option<ForwardAuth>,
    /// Outgoing mail (invites, password resets, email confirmations); its presence enables it.
    pub smtp: Option<Smtp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Server {
    /// A client must send a request's headers within this long (at most 30s).
    pub header_read_timeout: Option<String>,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout: Option<String>,
    /// Connections served at once; further ones wait until one closes.
    pub max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardAuth {
    /// Accept Cloudflare Access tokens.
    pub cloudflare: Option<Cloudflare>,
    /// Who may reach what: first match wins, no match means deny.
    #[serde(default)]
    pub rules: Vec<FaRule>,
    /// Extra response headers taken from claims.
    #[serde(default)]
    pub headers: Vec<FaHeader>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cloudflare {
    /// https://<team>.cloudflareaccess.com
    pub team_domain: Option<String>,
    /// Accept Access service tokens (identified by their client id).
    pub service_tokens: Option<bool>,
    #[serde(default)]
    pub apps: Vec<CfApp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CfApp {
    /// Exact host or `*.example.com`.
    pub host: Option<String>,
    /// The Access application's AUD tag.
    pub aud: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaRule {
    /// Exact host or `*.example.com`.
    pub host: Option<String>,
    /// Optional path prefix.
    pub path: Option<String>,
    /// Members of any of these groups.
    pub groups: Option<Vec<String>>,
    /// These usernames (or emails).
    pub users: Option<Vec<String>>,
    /// "authenticated" or "public".
    pub allow: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaHeader {
    /// The response header, e.g. "X-Preferred-Username".
    pub name: Option<String>,
    /// The claim it carries, e.g. "preferred_username" (or a Cloudflare custom claim).
    pub claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Jitsi {
    /// The Jitsi Meet site, e.g. https://meet.example.com.
    pub meet_url: Option<String>,
    /// Prosody's app_id (JWT_APP_ID).
    pub app_id: Option<String>,
    /// Prosody's app_secret (JWT_APP_SECRET), or `app_secret_file`.
    pub app_secret: Option<String>,
    /// `iss` of the tokens (default app_id).
    pub issuer: Option<String>,
    /// `aud` of the tokens (default app_id).
    pub audience: Option<String>,
    /// `sub` of the tokens (default "*").
    pub subject: Option<String>,
    /// "exact" (the room's name) or "wildcard" ("*").
    pub room_claim: Option<String>,
    /// How long a token is valid (default 3h, at most 24h).
    pub token_lifetime: Option<String>,
    /// `nbf` is this long before now (default 60s).
    pub clock_skew: Option<String>,
    /// Only these groups may join; unset: every signed-in user.
    pub allowed_groups: Option<Vec<String>>,
    /// Members of these groups are moderators (affiliation owner).
    pub moderator_groups: Option<Vec<String>>,
    /// Members of these groups skip the lobby.
    pub lobby_bypass_groups: Option<Vec<String>>,
    /// Skip Jitsi's pre-join page.
    pub skip_prejoin: Option<bool>,
    /// Hand the token over in the URL fragment (needs a recent jitsi-meet).
    pub token_in_fragment: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Plex {
    /// machineIdentifiers of the Plex servers whose access grants entry.
    pub servers: Option<Vec<String>>,
    /// Shown in the user's Plex devices.
    pub product: Option<String>,
    /// X-Plex-Client-Identifier; generated once and kept in the store when unset.
    pub client_identifier: Option<String>,
    /// Groups every Plex user gets.
    pub groups: Option<Vec<String>>,
    /// Extra groups for the owners of a listed server.
    pub owner_groups: Option<Vec<String>>,
    /// Re-ask plex.tv about access when the last check is older than this.
    pub recheck_after: Option<String>,
    /// If plex.tv cannot be reached, the previous decision holds this long.
    pub recheck_grace: Option<String>,
    /// plex.tv API base URL.
    pub api_base: Option<String>,
    /// Plex Auth App URL.
    pub auth_app_url: Option<String>,
    /// "popup" or "redirect".
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Session {
    /// A login session ends after this long without use.
    pub idle_timeout: Option<String>,
    /// A login session ends this long after the password was entered, used or not.
    pub max_lifetime: Option<String>,
    /// Domain for the forward-auth cookie, e.g. `example.com`.
    pub cookie_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    /// Make a new signing key when the active one is older than this.
    pub rotate_after: Option<String>,
}

/// `[tokens]`, and the same four keys on a client.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Lifetimes {
    /// How long an access token is accepted.
    pub access_token_lifetime: Option<String>,
    /// How long an ID token is valid (`exp`).
    pub id_token_lifetime: Option<String>,
    /// A refresh token unused for this long expires.
    pub refresh_token_idle_timeout: Option<String>,
    /// A refresh token chain ends this long after the login, used or not.
    pub refresh_token_max_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    /// Failed sign-ins (wrong passwords or codes) per account and client IP within
    /// `failure_window` before that pair is locked out for a while.
    pub max_failures_per_account: Option<i64>,
    /// Failed sign-ins per account over all client IPs within `failure_window` before the account
    /// is locked out for a while (default 5 x `max_failures_per_account`).
    pub max_failures_per_account_all_ips: Option<i64>,
    /// Failed sign-ins per client IP, whatever the account, within `failure_window` before that
    /// IP's attempts are slowed.
    pub max_failures_per_ip: Option<i64>,
    /// The window the failure counters cover.
    pub failure_window: Option<String>,
    /// The first lockout at a failure limit; it doubles with each further failure.
    pub lockout_base: Option<String>,
    /// The longest lockout.
    pub lockout_max: Option<String>,
    /// "off", "optional" (users may add an authenticator app) or "required" (every password
    /// sign-in needs one).
    pub require_second_factor: Option<String>,
    /// Members of these groups need a second factor (with "optional").
    pub second_factor_groups: Option<Vec<String>>,
    /// Sign-in flows one client IP may open per minute; completed ones do not count.
    pub max_flows_per_ip: Option<i64>,
    /// What the landing page offers: "password", "plex".
    pub methods: Option<Vec<String>>,
    /// Passkeys (WebAuthn): a second factor, and passwordless sign-in.
    pub passkeys: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Compat {
    /// Also serve Keycloak's `/protocol/openid-connect/...` endpoint paths under the issuer.
    pub keycloak_paths: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Accounts {
    /// The shortest password doorman accepts (at least 8).
    pub min_password_length: Option<i64>,
    /// Users may change their own email on /account (it is then unverified until confirmed).
    pub users_may_change_email: Option<bool>,
    /// Changes that matter (password, second factor, email) need a sign-in this recent, or
    /// ask for the password again.
    pub reauth_after: Option<String>,
    /// Members of these groups may use /admin.
    pub admin_groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Smtp {
    /// The SMTP server's host name (required).
    pub host: Option<String>,
    /// Default by `tls`: 587 (starttls), 465 (tls), 25 (none).
    pub port: Option<i64>,
    /// "starttls" (default), "tls" (TLS from the first byte) or "none" (plain text).
    pub tls: Option<String>,
    /// Sign in to the server as this user (then `password` or `password_file` is required).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, a mailbox such as `doorman <sso@example.com>` (required).
    pub from: Option<String>,
    /// Connecting and each SMTP command give up after this long (default 10s).
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Client {
    /// The `client_id`: printable ASCII, no spaces or `:`, unique.
    pub id: Option<String>,
    /// Display name shown on the login and consent pages.
    pub name: Option<String>,
    /// The client secret (or `secret_file`, resolved before serde); at least 16 characters.
    pub secret: Option<String>,
    /// SHA-256 of the secret as 64 hex characters, so the file need not hold the secret.
    pub secret_hash: Option<String>,
    /// Exact redirect URIs the client may use.
    pub redirect_uris: Option<Vec<String>>,
    /// Exact URIs the client may return to after logout.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// A browser or native app that cannot keep a secret (implies `require_pkce`).
    pub public: Option<bool>,
    /// Reject authorization requests without PKCE.
    pub require_pkce: Option<bool>,
    /// Scopes the client may be granted; unset means every supported scope.
    pub scopes: Option<Vec<String>>,
    /// Only members of these groups may log in to the client; unset means everyone.
    pub allowed_groups: Option<Vec<String>>,
    /// Issue refresh tokens even without the `offline_access` scope.
    pub refresh_tokens: Option<bool>,
    /// `"scoped"` or `"all"`: which profile claims go into the ID token.
    pub id_token_claims: Option<String>,
    /// Origins (`scheme://host[:port]`) allowed to call the token and userinfo endpoints (CORS).
    pub allowed_origins: Option<Vec<String>>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub token_endpoint_auth_method: Option<String>,
    /// `"server"` or `"account"`: put the user's Plex token in the id_token as `plex_token`.
    pub plex_token_claim: Option<String>,
    /// `"opaque"` (default) or `"jwt"`: RS256 access tokens (Jitsi's native OIDC mode).
    pub access_token_format: Option<String>,
    /// `aud` of JWT access tokens (never the client id).
    pub access_token_audience: Option<String>,
    /// A resource server: /introspect answers it about any client's tokens (default: only its own).
    pub introspect_any: Option<bool>,
    /// Allow `http://` redirect URIs on non-loopback hosts with an https issuer (LAN apps).
    pub allow_http_redirect_uris: Option<bool>,
    /// Signing in to this client needs a second factor (password + authenticator code).
    pub require_second_factor: Option<bool>,
    /// A dotted claim path (`realm_access.roles`) holding the user's groups, whatever the scopes.
    pub roles_claim: Option<String>,
    /// `"exact"` (default) or `"prefix"`: redirect URIs that start with a registered one (ending in `/`).
    pub redirect_uri_match: Option<String>,
    /// `[clients.claims]`: extra claims copied from a standard one (`nickname = "preferred_username"`).
    pub claims: Option<std::collections::BTreeMap<String, String>>,
    /// OIDC Back-Channel Logout: where doorman POSTs a signed `logout_token` when a session
    /// the client signed in through ends (https, or http on a loopback host).
    pub backchannel_logout_uri: Option<String>,
    /// The client needs `sid` in its logout tokens (session-bound logout).
    pub backchannel_logout_session_required: Option<bool>,
    /// Per-client overrides of `[tokens]`.
    pub access_token_lifetime: Option<String>,
    pub id_token_lifetime: Option<String>,
    pub refresh_token_idle_timeout: Option<String>,
    pub refresh_token_max_lifetime: Option<String>,
}

impl Client {
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            access_token_lifetime: self.access_token_lifetime.clone(),
            id_token_lifetime: self.id_token_lifetime.clone(),
            refresh_token_idle_timeout: self.refresh_token_idle_timeout.clone(),
            refresh_token_max_lifetime: self.refresh_token_max_lifetime.clone(),
        }
    }
}

/// What a key holds, as far as the raw walk and env overrides care.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Str,
    /// A string like "90s"; separate from `Str` only for a better message when given a number.
    Duration,
    Int,
    Bool,
    StrList,
    Table(Fields),
    /// An array of tables, `[[name]]`; not settable from the environment.
    Tables(Fields),
    /// A table of string values under names the operator picks (`[clients.claims]`).
    StrMap,
}

pub(super) type Fields = &'static [(&'static str, Kind)];

use Kind::{Bool, Duration, Int, Str, StrList, StrMap, Table, Tables};

pub(super) const ROOT: Fields = &[
    ("issuer", Str),
    ("listen", Str),
    ("server", Table(SERVER)),
    ("data_dir", Str),
    ("theme_dir", Str),
    ("trusted_proxies", StrList),
    ("client_ip_header", Str),
    ("session", Table(SESSION)),
    ("keys", Table(KEYS)),
    ("tokens", Table(TOKENS)),
    ("login", Table(LOGIN)),
    ("accounts", Table(ACCOUNTS)),
    ("compat", Table(COMPAT)),
    ("clients", Tables(CLIENT)),
    ("secret_key", Str),
    ("plex", Table(PLEX)),
    ("jitsi", Table(JITSI)),
    ("forward_auth", Table(FORWARD_AUTH)),
    ("smtp", Table(SMTP)),
];

pub(super) const SMTP: Fields = &[
    ("host", Str),
    ("port", Int),
    ("tls", Str),
    ("username", Str),
    ("password", Str),
    ("from", Str),
    ("timeout", Duration),
];

pub(super) const SERVER: Fields = &[
    ("header_read_timeout", Duration),
    ("idle_timeout", Duration),
    ("max_connections", Int),
];

pub(super) const FORWARD_AUTH: Fields = &[
    ("cloudflare", Table(CLOUDFLARE)),
    ("rules", Tables(FA_RULE)),
    ("headers", Tables(FA_HEADER)),
];

pub(super) const CLOUDFLARE: Fields = &[
    ("team_domain", Str),
    ("service_tokens", Bool),
    ("apps", Tables(CF_APP)),
];

pub(super) const CF_APP: Fields = &[("host", Str), ("aud", Str)];

pub(super) const FA_RULE: Fields = &[
    ("host", Str),
    ("path", Str),
    ("groups", StrList),
    ("users", StrList),
    ("allow", Str),
];

pub(super) const FA_HEADER: Fields = &[("name", Str), ("claim", Str)];

pub(super) const JITSI: Fields = &[
    ("meet_url", Str),
    ("app_id", Str),
    ("app_secret", Str),
    ("issuer", Str),
    ("audience", Str),
    ("subject", Str),
    ("room_claim", Str),
    ("token_lifetime", Duration),
    ("clock_skew", Duration),
    ("allowed_groups", StrList),
    ("moderator_groups", StrList),
    ("lobby_bypass_groups", StrList),
    ("skip_prejoin", Bool),
    ("token_in_fragment", Bool),
];

pub(super) const PLEX: Fields = &[
    ("servers", StrList),
    ("product", Str),
    ("client_identifier", Str),
    ("groups", StrList),
    ("owner_groups", StrList),
    ("recheck_after", Duration),
    ("recheck_grace", Duration),
    ("api_base", Str),
    ("auth_app_url", Str),
    ("mode", Str),
];

pub(super) const SESSION: Fields = &[
    ("idle_timeout", Duration),
    ("max_lifetime", Duration),
    ("cookie_domain", Str),
];

pub(super) const KEYS: Fields = &[("rotate_after", Duration)];

pub(super) const TOKENS: Fields = &[
    ("access_token_lifetime", Duration),
    ("id_token_lifetime", Duration),
    ("refresh_token_idle_timeout", Duration),
    ("refresh_token_max_lifetime", Duration),
];

pub(super) const LOGIN: Fields = &[
    ("max_failures_per_account", Int),
    ("max_failures_per_account_all_ips", Int),
    ("max_failures_per_ip", Int),
    ("failure_window", Duration),
    ("lockout_base", Duration),
    ("lockout_max", Duration),
    ("require_second_factor", Str),
    ("second_factor_groups", StrList),
    ("max_flows_per_ip", Int),
    ("methods", StrList),
    ("passkeys", Bool),
];

pub(super) const COMPAT: Fields = &[("keycloak_paths", Bool)];

pub(super) const ACCOUNTS: Fields = &[
    ("min_password_length", Int),
    ("users_may_change_email", Bool),
    ("reauth_after", Duration),
    ("admin_groups", StrList),
];

pub(super) const CLIENT: Fields = &[
    ("id", Str),
    ("name", Str),
    ("secret", Str),
    ("secret_hash", Str),
    ("redirect_uris", StrList),
    ("post_logout_redirect_uris", StrList),
    ("public", Bool),
    ("require_pkce", Bool),
    ("scopes", StrList),
    ("allowed_groups", StrList),
    ("refresh_tokens", Bool),
    ("id_token_claims", Str),
    ("allowed_origins", StrList),
    ("token_endpoint_auth_method", Str),
    ("plex_token_claim", Str),
    ("access_token_format", Str),
    ("access_token_audience", Str),
    ("introspect_any", Bool),
    ("allow_http_redirect_uris", Bool),
    ("require_second_factor", Bool),
    ("roles_claim", Str),
    ("redirect_uri_match", Str),
    ("claims", StrMap),
    ("backchannel_logout_uri", Str),
    ("backchannel_logout_session_required", Bool),
    ("access_token_lifetime", Duration),
    ("id_token_lifetime", Duration),
    ("refresh_token_idle_timeout", Duration),
    ("refresh_token_max_lifetime", Duration),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// Every schema key deserializes (schema ⊆ serde), and serde's list of expected fields,
    /// quoted in its unknown-field error ("expected `a`" or "expected one of `a`, `b`"), is
    /// exactly the schema (serde ⊆ schema).
    fn agree<T: DeserializeOwned + std::fmt::Debug>(fields: Fields) {
        let mut full = toml::Table::new();
        for (name, kind) in fields {
            let v = match kind {
                Str | Duration => toml::Value::String("x".into()),
                Int => toml::Value::Integer(1),
                Bool => toml::Value::Boolean(true),
                StrList | Tables(_) => toml::Value::Array(vec![]),
                Table(_) | StrMap => toml::Value::Table(toml::Table::new()),
            };
            full.insert((*name).into(), v);
        }
        assert!(full.clone().try_into::<T>().is_ok(), "{fields:?}");
        full.insert("zzz_unknown".into(), toml::Value::Boolean(true));
        let err = full.try_into::<T>().unwrap_err().to_string();
        let (_, expected) = err.split_once(", expected").unwrap();
        let serde_names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let schema_names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(serde_names, schema_names);
    }

    /// config/doorman.example.toml is the commented reference: every key appears in it, set or
    /// commented out (`key =` or `# key =`).
    #[test]
    fn example_documents_every_key() {
        let example = include_str!("../../config/doorman.example.toml");
        fn walk(fields: Fields, out: &mut Vec<&'static str>) {
            for (name, kind) in fields {
                match kind {
                    Table(sub) | Tables(sub) => walk(sub, out),
                    _ => out.push(name),
                }
            }
        }
        let mut keys = Vec::new();
        walk(ROOT, &mut keys);
        for key in keys {
            let documented = example.lines().any(|l| {
                let l = l.trim_start_matches('#').trim();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(
                documented,
                "config/doorman.example.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn schema_matches_serde_structs() {
        agree::<File>(ROOT);
        agree::<Server>(SERVER);
        agree::<Session>(SESSION);
        agree::<Keys>(KEYS);
        agree::<Lifetimes>(TOKENS);
        agree::<Login>(LOGIN);
        agree::<Client>(CLIENT);
        agree::<Compat>(COMPAT);
        agree::<Plex>(PLEX);
        agree::<Jitsi>(JITSI);
        agree::<ForwardAuth>(FORWARD_AUTH);
        agree::<Cloudflare>(CLOUDFLARE);
        agree::<CfApp>(CF_APP);
        agree::<FaRule>(FA_RULE);
        agree::<FaHeader>(FA_HEADER);
        agree::<Smtp>(SMTP);
    }
}
