//! Raw file values to the runtime `Config`: parses URLs, durations and CIDRs, fills defaults and
//! checks the rules that span keys. Each problem is pushed as an error and the default is used
//! in its place, so one run reports everything.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::file::{self, File};
use super::*;
use crate::secrets;

const PUBLISHED_FIX: &str = "generate a secret of your own with `doorman client secret` and \
    set it in the app and here (as `secret_hash`, `secret_file` or `secret`)";

const SHORT_SECRET: &str = "client secrets must be high-entropy random strings of at least 16 \
    characters; generate one with `doorman client secret`";

/// The example config shipped with doorman: every secret value in it is public.
const EXAMPLE_CONFIG: &str = include_str!("../../config/doorman.example.toml");

/// Secret values that were published (in older example files) whatever the example shows now.
const PUBLISHED_SECRETS: &[&str] = &["change-me-to-a-long-random-secret"];

/// Every published secret value: [`PUBLISHED_SECRETS`] and each literal value of a secret key
/// (`secret`, `secret_key`, `app_secret`) in the example config, commented out or not.
/// `${VAR}` references and `<placeholders>` are not values.
fn published_secrets() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = PUBLISHED_SECRETS.to_vec();
    out.extend(secret_values(EXAMPLE_CONFIG));
    out
}

/// The literal values of secret keys in a TOML text, in comments too.
fn secret_values(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['#', ' ', '\t']);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !SECRET_KEYS.contains(&key.trim()) {
            continue;
        }
        let value = value.trim();
        let Some(quote) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            continue;
        };
        let Some((inner, _)) = value.get(1..).and_then(|v| v.split_once(quote)) else {
            continue;
        };
        if !inner.is_empty() && !inner.contains("${") && !inner.starts_with('<') {
            out.push(inner);
        }
    }
    out
}

/// Whether `value` is a published secret, for the message naming `key`; `fix` says what to
/// do instead.
fn refuse_published(errors: &mut Vec<ConfigError>, key: &str, value: &str, fix: &str) -> bool {
    let published = published_secrets().contains(&value);
    if published {
        push(
            errors,
            key,
            format!(
                "this value is published in doorman's example config, so anyone can use it; {fix}"
            ),
        );
    }
    published
}

fn push(errors: &mut Vec<ConfigError>, key: &str, message: impl Into<String>) {
    errors.push(ConfigError {
        key: key.into(),
        message: message.into(),
    });
}

/// Whether the schema walk already reported `key` (a wrong type removes it, and "missing"
/// would then be a second, misleading error).
fn reported(errors: &[ConfigError], key: &str) -> bool {
    errors.iter().any(|e| {
        e.key == key
            || e.key
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('[') || rest == "_file")
    })
}

pub(super) fn validate(
    f: File,
    mut warnings: Vec<String>,
    errors: &mut Vec<ConfigError>,
) -> Config {
    let d = defaults();

    let listen = match f.listen.as_deref().map(str::trim) {
        None => d.listen,
        Some(s) => s.parse().unwrap_or_else(|_| {
            let m =
                format!("\"{s}\" is not ip:port; write e.g. \"127.0.0.1:8080\" or \"[::]:8080\"");
            push(errors, "listen", m);
            d.listen
        }),
    };
    let issuer_set = f.issuer.is_some();
    let issuer = match f.issuer.as_deref() {
        Some(s) => parse_issuer(s).unwrap_or_else(|m| {
            push(errors, "issuer", m);
            d.issuer.clone()
        }),
        None => default_issuer(listen, &mut warnings).unwrap_or_else(|| {
            let m = format!("cannot derive an issuer from listen = \"{listen}\"; set it");
            push(errors, "issuer", m);
            d.issuer.clone()
        }),
    };

    let mut trusted_proxies = Vec::new();
    for (i, s) in f.trusted_proxies.iter().flatten().enumerate() {
        let s = s.trim();
        match s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => push(
                errors,
                &format!("trusted_proxies[{i}]"),
                format!(
                    "\"{s}\" is not an IP or CIDR; write e.g. \"10.0.0.0/8\" or \"192.168.1.10\""
                ),
            ),
        }
    }

    let client_ip_header = match f.client_ip_header.as_deref().map(str::trim) {
        None => d.client_ip_header.clone(),
        Some(h)
            if !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            h.to_ascii_lowercase()
        }
        Some(h) => {
            push(
                errors,
                "client_ip_header",
                format!("\"{h}\" is not a header name; write e.g. \"X-Forwarded-For\", \"Fly-Client-IP\" or \"CF-Connecting-IP\""),
            );
            d.client_ip_header.clone()
        }
    };
    if f.client_ip_header.is_some() && trusted_proxies.is_empty() {
        warnings.push(format!(
            "client_ip_header = \"{client_ip_header}\" is set but trusted_proxies is empty, so the header is never believed; \
             list the proxy's addresses in trusted_proxies"
        ));
    }

    let idle = dur(
        errors,
        "session.idle_timeout",
        f.session.idle_timeout.as_deref(),
        d.session.idle_timeout,
    );
    let max = dur(
        errors,
        "session.max_lifetime",
        f.session.max_lifetime.as_deref(),
        d.session.max_lifetime,
    );
    not_longer(errors, "session.idle_timeout", idle, "max_lifetime", max);
    let cookie_domain = f.session.cookie_domain.as_deref().and_then(|s| {
        cookie_domain(s)
            .map_err(|m| push(errors, "session.cookie_domain", m))
            .ok()
    });
    // Browsers only accept a cookie for a domain that covers the host setting it.
    if let (Some(domain), Some(host)) = (&cookie_domain, issuer.host_str()) {
        let host = host.to_ascii_lowercase();
        if host != *domain && !host.ends_with(&format!(".{domain}")) {
            push(
                errors,
                "session.cookie_domain",
                format!(
                    "\"{domain}\" does not cover doorman's own host {host}, so browsers would refuse \
                     the cookie; use a domain that both doorman and the apps are under"
                ),
            );
        }
    }

    let rotate_after = f
        .keys
        .rotate_after
        .as_deref()
        .and_then(|s| dur(errors, "keys.rotate_after", Some(s), Duration::ZERO));
    let tokens = lifetimes(errors, "tokens.", &f.tokens, d.tokens);

    let max_failures_per_account = count(
        errors,
        "login.max_failures_per_account",
        f.login.max_failures_per_account,
        d.login.max_failures_per_account,
    );
    let (lockout_base, lockout_max) = lockouts(errors, &f.login, &d.login);
    let login = LoginConfig {
        max_failures_per_account,
        max_failures_per_account_all_ips: failures_all_ips(
            errors,
            f.login.max_failures_per_account_all_ips,
            max_failures_per_account,
        ),
        lockout_base,
        lockout_max,
        require_second_factor: second_factor_policy(
            errors,
            f.login.require_second_factor.as_deref(),
            d.login.require_second_factor,
        ),
        second_factor_groups: f.login.second_factor_groups.clone().unwrap_or_default(),
        max_failures_per_ip: count(
            errors,
            "login.max_failures_per_ip",
            f.login.max_failures_per_ip,
            d.login.max_failures_per_ip,
        ),
        failure_window: dur(
            errors,
            "login.failure_window",
            f.login.failure_window.as_deref(),
            d.login.failure_window,
        )
        .unwrap_or(d.login.failure_window),
        max_flows_per_ip: count(
            errors,
            "login.max_flows_per_ip",
            f.login.max_flows_per_ip,
            d.login.max_flows_per_ip,
        ),
        methods: Vec::new(),
        passkeys: f.login.passkeys.unwrap_or(d.login.passkeys),
    };
    let plex = f.plex.map(|p| plex(errors, p));
    let mut login = login;
    login.methods = login_methods(errors, f.login.methods, plex.is_some());
    let secret_key = f.secret_key.filter(|k| {
        let long = k.chars().count() >= 32;
        if !long {
            push(errors, "secret_key", "must be at least 32 random characters (e.g. `openssl rand -hex 32`); or remove it to let doorman generate one in data_dir");
        }
        let published = refuse_published(
            errors,
            "secret_key",
            k,
            "set 32+ random characters of your own (e.g. `openssl rand -hex 32`), or remove it to let doorman generate one in data_dir",
        );
        long && !published
    });

    let mut seen = HashMap::new();
    let https_issuer = issuer.scheme() == "https";
    let clients: Vec<ClientConfig> = f
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| client(errors, i, c, tokens, &mut seen, https_issuer))
        .collect();
    audiences_are_not_client_ids(errors, &clients);
    if !https_issuer && !is_loopback(&issuer) {
        warnings.push(format!(
            "issuer {} is plain http on a host other than this machine: passwords, codes and \
             tokens cross the network unencrypted; serve doorman over https (behind a TLS proxy) \
             and set issuer to its https URL",
            issuer.as_str().trim_end_matches('/')
        ));
    }

    second_factor_needs_a_policy(errors, &login, &clients);
    // Only for an issuer the operator chose: the default (http://127.0.0.1:PORT, a first try
    // on one machine) says nothing about passkeys.
    if issuer_set
        && login.passkeys
        && login.require_second_factor != SecondFactorPolicy::Off
        && crate::accounts::webauthn::Rp::from_issuer(&issuer).is_none()
    {
        warnings.push(format!(
            "issuer {} has an IP address for its host, which WebAuthn does not allow as a \
             relying-party id: no passkey is offered; give doorman a host name (localhost for \
             a test on this machine), or set [login] passkeys = false to silence this",
            issuer.as_str().trim_end_matches('/')
        ));
    }
    for (i, c) in clients.iter().enumerate() {
        match c.plex_token_claim {
            Some(_) if plex.is_none() => push(errors, &format!("clients[{i}].plex_token_claim"), "needs a [plex] table; add one or remove the key"),
            Some(PlexTokenClaim::Account) => warnings.push(format!(
                "clients[{i}] ({}) gets the user's full plex.tv account token in its id_tokens (plex_token_claim = \"account\"): \
                 anyone who sees those tokens can act as the user on plex.tv; prefer \"server\"", c.id)),
            _ => {}
        }
    }
    Config {
        issuer,
        listen,
        server: server(errors, &f.server, d.server),
        data_dir: nonempty_path(errors, "data_dir", f.data_dir).unwrap_or(d.data_dir),
        theme_dir: nonempty_path(errors, "theme_dir", f.theme_dir)
            .filter(|dir| theme_dir_exists(errors, dir)),
        trusted_proxies,
        client_ip_header,
        session: SessionConfig {
            idle_timeout: idle.unwrap_or(d.session.idle_timeout),
            max_lifetime: max.unwrap_or(d.session.max_lifetime),
            cookie_domain,
        },
        keys: KeysConfig { rotate_after },
        tokens,
        login,
        accounts: accounts(errors, f.accounts, &d.accounts),
        compat: super::CompatConfig {
            keycloak_paths: f.compat.keycloak_paths.unwrap_or(d.compat.keycloak_paths),
        },
        clients,
        warnings,
        source: super::NO_FILE.to_string(),
        secret_key,
        plex,
        jitsi: f.jitsi.map(|j| jitsi(errors, j)),
        forward_auth: f
            .forward_auth
            .map(|fa| forward_auth(errors, fa))
            .unwrap_or_default(),
        smtp: f.smtp.map(|s| smtp(errors, s)),
    }
}

fn host_pattern(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&str>,
) -> Option<HostPattern> {
    let Some(raw) = value.map(|v| v.trim().to_ascii_lowercase()) else {
        push(
            errors,
            key,
            "required: a host like \"app.example.com\" or \"*.example.com\"",
        );
        return None;
    };
    let bare = raw.strip_prefix("*.").unwrap_or(&raw);
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if bare.split('.').all(label_ok) && !bare.is_empty() {
        Some(HostPattern(raw))
    } else {
        push(errors, key, format!("\"{raw}\" is not a host; write \"app.example.com\" or \"*.example.com\" (no scheme, port or path)"));
        None
    }
}

fn forward_auth(errors: &mut Vec<ConfigError>, fa: file::ForwardAuth) -> ForwardAuthConfig {
    let mut rules = Vec::new();
    for (i, r) in fa.rules.into_iter().enumerate() {
        let key = |k: &str| format!("forward_auth.rules[{i}].{k}");
        let host = host_pattern(errors, &key("host"), r.host.as_deref());
        // The rule's path in the canonical form requests are judged in.
        let mut path = None;
        if let Some(p) = &r.path {
            if !p.starts_with('/') {
                push(
                    errors,
                    &key("path"),
                    format!("\"{p}\" must start with /, e.g. \"/admin\""),
                );
            } else if p.contains('?') {
                push(
                    errors,
                    &key("path"),
                    format!("\"{p}\": rules match paths, not queries; remove the ?..."),
                );
            } else {
                match crate::forward_auth::canonical::canonical_path(p) {
                    Ok(c) => path = Some(c.resolved),
                    Err(why) => push(
                        errors,
                        &key("path"),
                        format!("\"{p}\" contains {why}; write the path plainly, e.g. \"/admin\""),
                    ),
                }
            }
        }
        let access = match (r.groups, r.users, r.allow.as_deref()) {
            (Some(g), None, None) if !g.is_empty() => Some(RuleAccess::Groups(g)),
            (None, Some(u), None) if !u.is_empty() => Some(RuleAccess::Users(u)),
            (None, None, Some("authenticated")) => Some(RuleAccess::Authenticated),
            (None, None, Some("public")) => Some(RuleAccess::Public),
            (None, None, Some(other)) => {
                push(errors, &key("allow"), format!("unknown value \"{other}\"; use \"authenticated\" or \"public\" (or groups = [...] / users = [...])"));
                None
            }
            _ => {
                push(errors, &format!("forward_auth.rules[{i}]"), "give exactly one of groups = [...], users = [...] or allow = \"authenticated\" | \"public\" (non-empty lists)");
                None
            }
        };
        if let (Some(host), Some(access)) = (host, access) {
            rules.push(ForwardAuthRule { host, path, access });
        }
    }
    let cloudflare = fa.cloudflare.map(|cf| {
        let team_domain = match cf.team_domain.as_deref().map(str::trim) {
            Some(t) => match Url::parse(t) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() && u.query().is_none() => t.trim_end_matches('/').to_string(),
                _ => {
                    push(errors, "forward_auth.cloudflare.team_domain", format!("\"{t}\" is not a URL; write \"https://<your-team>.cloudflareaccess.com\""));
                    String::new()
                }
            },
            None => {
                push(errors, "forward_auth.cloudflare.team_domain", "required: \"https://<your-team>.cloudflareaccess.com\" (Zero Trust → Settings → Custom Pages shows the team domain)");
                String::new()
            }
        };
        let mut apps = Vec::new();
        for (i, a) in cf.apps.into_iter().enumerate() {
            let host = host_pattern(errors, &format!("forward_auth.cloudflare.apps[{i}].host"), a.host.as_deref());
            let aud = a.aud.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            if aud.is_none() {
                push(errors, &format!("forward_auth.cloudflare.apps[{i}].aud"), "required: the Access application's AUD tag (Access → Applications → Configure → Overview)");
            }
            if let (Some(h), Some(a)) = (host, aud) {
                apps.push((h, a));
            }
        }
        if apps.is_empty() && !errors.iter().any(|e| e.key.starts_with("forward_auth.cloudflare.apps")) {
            push(errors, "forward_auth.cloudflare.apps", "add at least one [[forward_auth.cloudflare.apps]] with host and aud: tokens are accepted only for the application they were made for");
        }
        CloudflareConfig { team_domain, service_tokens: cf.service_tokens.unwrap_or(false), apps }
    });
    let mut headers = Vec::new();
    for (i, h) in fa.headers.into_iter().enumerate() {
        let name = h.name.unwrap_or_default();
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            push(
                errors,
                &format!("forward_auth.headers[{i}].name"),
                format!("\"{name}\" is not a header name (letters, digits, -)"),
            );
        }
        let reserved = [
            "remote-user",
            "remote-email",
            "remote-name",
            "remote-groups",
        ];
        if reserved.contains(&name.to_ascii_lowercase().as_str()) {
            push(
                errors,
                &format!("forward_auth.headers[{i}].name"),
                format!("{name} is always sent; choose another name"),
            );
        }
        match h.claim.filter(|c| !c.is_empty()) {
            Some(claim) if valid => headers.push((name, claim)),
            Some(_) => {}
            None => push(
                errors,
                &format!("forward_auth.headers[{i}].claim"),
                "required: the claim whose value the header carries",
            ),
        }
    }
    ForwardAuthConfig {
        rules,
        cloudflare,
        headers,
    }
}

const DAY_SECS: u64 = 86_400;

fn jitsi(errors: &mut Vec<ConfigError>, j: file::Jitsi) -> JitsiConfig {
    let meet_url = match j.meet_url.as_deref().map(str::trim) {
        None => {
            push(errors, "jitsi.meet_url", "the address of your Jitsi Meet site is required, e.g. meet_url = \"https://meet.example.com\"");
            None
        }
        Some(text) => match Url::parse(text) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.host_str().is_some() =>
            {
                Some(u)
            }
            _ => {
                push(errors, "jitsi.meet_url", format!("\"{text}\" is not an http(s) URL without query or fragment; write e.g. \"https://meet.example.com\""));
                None
            }
        },
    };
    // The room is appended with a `/`: keep one form, without a trailing slash (a missing slash
    // is how other bridges produced https://meet.hostroom?jwt=).
    let meet_url = meet_url.map(|mut u| {
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&path);
        u
    });
    let app_id = j.app_id.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
        if !reported(errors, "jitsi.app_id") {
            push(errors, "jitsi.app_id", "required: Prosody's app_id (JWT_APP_ID in docker-jitsi-meet), e.g. app_id = \"jitsi\"");
        }
        String::new()
    });
    let app_secret = j.app_secret.clone().unwrap_or_default();
    if app_secret.chars().count() < 32 && !reported(errors, "jitsi.app_secret") {
        push(errors, "jitsi.app_secret", "must be at least 32 characters (JWT_APP_SECRET in docker-jitsi-meet; e.g. `openssl rand -hex 32`), set inline, as ${VAR}, or with app_secret_file");
    } else {
        refuse_published(
            errors,
            "jitsi.app_secret",
            &app_secret,
            "set a new random value (e.g. `openssl rand -hex 32`) here and as Prosody's JWT_APP_SECRET",
        );
    }
    let room_claim = match j.room_claim.as_deref() {
        None | Some("exact") => RoomClaim::Exact,
        Some("wildcard") => RoomClaim::Wildcard,
        Some(other) => {
            push(errors, "jitsi.room_claim", format!("unknown value \"{other}\"; use \"exact\" (the default: a token opens one room) or \"wildcard\""));
            RoomClaim::Exact
        }
    };
    let lifetime = dur(
        errors,
        "jitsi.token_lifetime",
        j.token_lifetime.as_deref(),
        Duration::from_secs(3 * 3600),
    )
    .unwrap_or(Duration::from_secs(3 * 3600));
    if lifetime > Duration::from_secs(DAY_SECS) {
        push(errors, "jitsi.token_lifetime", "must be at most 24h: Prosody checks exp only when a client (re)connects, so a longer token outlives its purpose");
    }
    let skew = match j.clock_skew.as_deref() {
        None => Duration::from_secs(60),
        Some(s) => match parse_duration(s) {
            Ok(d) if d <= Duration::from_secs(3600) => d,
            Ok(_) => {
                push(
                    errors,
                    "jitsi.clock_skew",
                    "must be at most 1h, e.g. \"60s\"",
                );
                Duration::from_secs(60)
            }
            Err(m) => {
                push(errors, "jitsi.clock_skew", m);
                Duration::from_secs(60)
            }
        },
    };
    if let Some(groups) = &j.allowed_groups {
        if groups.is_empty() {
            push(errors, "jitsi.allowed_groups", "an empty list lets nobody in; list groups, or remove the key to let every signed-in user in");
        }
    }
    JitsiConfig {
        meet_url: meet_url.unwrap_or_else(unreachable_url),
        issuer: j
            .issuer
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| app_id.clone()),
        audience: j
            .audience
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| app_id.clone()),
        subject: j
            .subject
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "*".to_string()),
        app_id,
        app_secret,
        room_claim,
        token_lifetime: lifetime,
        clock_skew: skew,
        allowed_groups: j.allowed_groups,
        moderator_groups: j.moderator_groups.unwrap_or_default(),
        lobby_bypass_groups: j.lobby_bypass_groups.unwrap_or_default(),
        skip_prejoin: j.skip_prejoin.unwrap_or(false),
        token_in_fragment: j.token_in_fragment.unwrap_or(false),
    }
}

const PLEX_SERVERS_HELP: &str = "list the machineIdentifier of each Plex server whose users may \
    sign in, e.g. servers = [\"0123abcd...\"]; find it at http://<your-server>:32400/identity \
    (machineIdentifier) or with `doorman plex servers --token <your Plex token>`";

fn plex(errors: &mut Vec<ConfigError>, p: file::Plex) -> PlexConfig {
    let servers: Vec<String> = p
        .servers
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_string())
        .collect();
    if servers.is_empty() && !reported(errors, "plex.servers") {
        push(errors, "plex.servers", PLEX_SERVERS_HELP);
    }
    for (i, s) in servers.iter().enumerate() {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            push(errors, &format!("plex.servers[{i}]"), format!("\"{s}\" is not a machineIdentifier (letters, digits and '-'); {PLEX_SERVERS_HELP}"));
        }
    }
    let url = |errors: &mut Vec<ConfigError>, key: &str, v: Option<String>, default: &str| {
        let text = v.unwrap_or_else(|| default.to_string());
        match Url::parse(text.trim()) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                let mut u = u;
                if let Some(path) = u.path().strip_suffix('/').filter(|p| !p.is_empty()) {
                    let path = path.to_string();
                    u.set_path(&path);
                }
                u
            }
            _ => {
                push(errors, key, format!("\"{text}\" is not an absolute http(s) URL without query; the default is \"{default}\""));
                // The value is never used: the error stops the start.
                Url::parse(default).unwrap_or_else(|_| unreachable_url())
            }
        }
    };
    let api_base = url(errors, "plex.api_base", p.api_base, "https://plex.tv");
    let auth_app_url = url(
        errors,
        "plex.auth_app_url",
        p.auth_app_url,
        "https://app.plex.tv/auth",
    );
    let mode = match p.mode.as_deref() {
        None | Some("popup") => PlexMode::Popup,
        Some("redirect") => PlexMode::Redirect,
        Some(other) => {
            push(
                errors,
                "plex.mode",
                format!("unknown mode \"{other}\"; use \"popup\" (the default) or \"redirect\""),
            );
            PlexMode::Popup
        }
    };
    let product = p.product.unwrap_or_else(|| "doorman".to_string());
    if product.trim().is_empty() {
        push(
            errors,
            "plex.product",
            "must not be empty; it is shown in the user's Plex devices",
        );
    }
    if let Some(id) = &p.client_identifier {
        if id.trim().is_empty() || id.len() > 128 {
            push(
                errors,
                "plex.client_identifier",
                "must be 1-128 characters; remove it to let doorman generate and keep one",
            );
        }
    }
    let recheck_after = dur(
        errors,
        "plex.recheck_after",
        p.recheck_after.as_deref(),
        Duration::from_secs(3600),
    )
    .unwrap_or(Duration::from_secs(3600));
    let recheck_grace = dur(
        errors,
        "plex.recheck_grace",
        p.recheck_grace.as_deref(),
        Duration::from_secs(6 * 3600),
    )
    .unwrap_or(Duration::from_secs(6 * 3600));
    let groups = p.groups.unwrap_or_else(|| vec!["plex".to_string()]);
    let owner_groups = p.owner_groups.unwrap_or_default();
    for (key, list) in [
        ("plex.groups", &groups),
        ("plex.owner_groups", &owner_groups),
    ] {
        for (i, g) in list.iter().enumerate() {
            if g.trim().is_empty() || g.contains(',') || g.chars().any(char::is_whitespace) {
                push(
                    errors,
                    &format!("{key}[{i}]"),
                    format!("\"{g}\" is not a group name (no spaces or commas)"),
                );
            }
        }
    }
    PlexConfig {
        servers,
        product,
        client_identifier: p.client_identifier,
        groups,
        owner_groups,
        recheck_after,
        recheck_grace,
        api_base,
        auth_app_url,
        mode,
    }
}

/// Never reached: parsing a constant URL. Kept out of line so `plex()` has no panic path.
fn unreachable_url() -> Url {
    super::defaults().issuer
}

fn login_methods(
    errors: &mut Vec<ConfigError>,
    methods: Option<Vec<String>>,
    plex: bool,
) -> Vec<LoginMethod> {
    let Some(list) = methods else {
        return if plex {
            vec![LoginMethod::Password, LoginMethod::Plex]
        } else {
            vec![LoginMethod::Password]
        };
    };
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let method = match m.as_str() {
            "password" => LoginMethod::Password,
            "plex" if plex => LoginMethod::Plex,
            "plex" => {
                push(errors, &format!("login.methods[{i}]"), "\"plex\" needs a [plex] table with your server ids; add one or remove \"plex\"");
                continue;
            }
            other => {
                push(
                    errors,
                    &format!("login.methods[{i}]"),
                    format!("unknown method \"{other}\"; use \"password\" and/or \"plex\""),
                );
                continue;
            }
        };
        if !out.contains(&method) {
            out.push(method);
        }
    }
    if list.is_empty() {
        push(
            errors,
            "login.methods",
            "an empty list lets nobody sign in; use [\"password\"], [\"plex\"] or both",
        );
    }
    out
}

/// `[login] max_failures_per_account_all_ips`: 5 x `max_failures_per_account` when unset, and
/// never below it (the per-pair limit would then never be reached).
fn failures_all_ips(errors: &mut Vec<ConfigError>, value: Option<i64>, per_account: u32) -> u32 {
    let key = "login.max_failures_per_account_all_ips";
    let default = per_account.saturating_mul(5);
    let n = count(errors, key, value, default);
    if n < per_account {
        push(
            errors,
            key,
            format!(
                "({n}) is below max_failures_per_account ({per_account}), the limit for one \
                 client IP; raise it to at least {per_account} or remove it (default: 5 x \
                 max_failures_per_account)"
            ),
        );
        return default;
    }
    n
}

/// `[login] lockout_base` (at least 1s) and `lockout_max` (at least `lockout_base`).
fn lockouts(
    errors: &mut Vec<ConfigError>,
    l: &file::Login,
    d: &LoginConfig,
) -> (Duration, Duration) {
    let base = dur(
        errors,
        "login.lockout_base",
        l.lockout_base.as_deref(),
        d.lockout_base,
    );
    let base = base.filter(|b| {
        let long_enough = *b >= Duration::from_secs(1);
        if !long_enough {
            push(
                errors,
                "login.lockout_base",
                format!(
                    "({}) is shorter than 1s; write at least \"1s\" (default \"30s\")",
                    format_duration(*b)
                ),
            );
        }
        long_enough
    });
    let max = dur(
        errors,
        "login.lockout_max",
        l.lockout_max.as_deref(),
        d.lockout_max,
    );
    if let (Some(b), Some(m)) = (base, max) {
        if m < b {
            push(
                errors,
                "login.lockout_max",
                format!(
                    "({}) is shorter than lockout_base ({}); raise lockout_max or shorten \
                     lockout_base",
                    format_duration(m),
                    format_duration(b)
                ),
            );
        }
    }
    let base = base.unwrap_or(d.lockout_base);
    (base, max.unwrap_or(d.lockout_max).max(base))
}

fn second_factor_policy(
    errors: &mut Vec<ConfigError>,
    value: Option<&str>,
    default: SecondFactorPolicy,
) -> SecondFactorPolicy {
    match value.map(str::trim) {
        None => default,
        Some("off") => SecondFactorPolicy::Off,
        Some("optional") => SecondFactorPolicy::Optional,
        Some("required") => SecondFactorPolicy::Required,
        Some(other) => {
            push(
                errors,
                "login.require_second_factor",
                format!(
                    "unknown value \"{other}\"; use \"off\", \"optional\" (the default) or \
                     \"required\""
                ),
            );
            default
        }
    }
}

/// Asking for a second factor somewhere while `require_second_factor = "off"` turns it off
/// everywhere is a contradiction: say so rather than silently skip the code.
fn second_factor_needs_a_policy(
    errors: &mut Vec<ConfigError>,
    login: &LoginConfig,
    clients: &[ClientConfig],
) {
    if login.require_second_factor != SecondFactorPolicy::Off {
        return;
    }
    const FIX: &str = "turn [login] require_second_factor to optional or required";
    if !login.second_factor_groups.is_empty() {
        push(
            errors,
            "login.second_factor_groups",
            format!(
                "asks members of these groups for a second factor, but require_second_factor = \
                 \"off\"; {FIX}, or empty this list"
            ),
        );
    }
    for (i, c) in clients.iter().enumerate() {
        if c.require_second_factor {
            push(
                errors,
                &format!("clients[{i}].require_second_factor"),
                format!(
                    "is true but [login] require_second_factor = \"off\"; {FIX}, or remove \
                     this key"
                ),
            );
        }
    }
}

fn parse_issuer(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s.trim()).map_err(|e| {
        format!("\"{s}\" is not an absolute URL ({e}); write e.g. \"https://auth.example.com\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "\"{s}\" must be an https URL (or http for local testing)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "\"{s}\" must not have a query (?...) or fragment (#...); remove it"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "\"{s}\" must not contain a user name or password; remove it"
        ));
    }
    // Clients compare `iss` byte for byte, so the form is fixed here: no trailing slash.
    if let Some(path) = url.path().strip_suffix('/').filter(|p| !p.is_empty()) {
        let path = path.to_string();
        url.set_path(&path);
    }
    Ok(url)
}

/// `http://<listen>`, with 127.0.0.1 in place of a wildcard address (and a warning: that issuer
/// only works for clients on this machine).
fn default_issuer(listen: SocketAddr, warnings: &mut Vec<String>) -> Option<Url> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        warnings.push(format!(
            "issuer is not set, so it defaults to http://{addr}, which only clients on this \
             machine can reach; set issuer to doorman's public URL"
        ));
    }
    Url::parse(&format!("http://{addr}")).ok()
}

/// A bare cookie domain: lower-case, leading dot dropped (browsers ignore it anyway).
fn cookie_domain(s: &str) -> Result<String, String> {
    let domain = s
        .trim()
        .strip_prefix('.')
        .unwrap_or(s.trim())
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() <= 253 && domain.split('.').all(label_ok) {
        // A public suffix (`com`, `co.uk`, `github.io`): browsers refuse such a cookie, and
        // one they took would reach every site under it.
        let public = psl::Psl::suffix(&psl::List, domain.as_bytes())
            .is_some_and(|sfx| sfx.is_known() && sfx.as_bytes() == domain.as_bytes());
        if public {
            return Err(format!(
                "\"{domain}\" is a public suffix (on the Public Suffix List): browsers refuse \
                 cookies for it and it would cover other people's sites; set the domain that \
                 doorman and your apps share, e.g. \"example.com\" for auth.example.com and \
                 app.example.com"
            ));
        }
        Ok(domain)
    } else {
        Err(format!(
            "\"{s}\" is not a domain; write a bare domain like \"example.com\" \
             (no scheme, port, path or wildcard)"
        ))
    }
}

fn nonempty_path(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<String>,
) -> Option<PathBuf> {
    let value = value?;
    if value.trim().is_empty() {
        push(
            errors,
            key,
            "must not be empty; remove the key to use the default",
        );
        return None;
    }
    Some(PathBuf::from(value))
}

fn accounts(
    errors: &mut Vec<ConfigError>,
    a: super::file::Accounts,
    d: &super::AccountsConfig,
) -> super::AccountsConfig {
    let min_password_length = match a.min_password_length {
        None => d.min_password_length,
        Some(n) if (8..=1024).contains(&n) => usize::try_from(n).unwrap_or(d.min_password_length),
        Some(n) => {
            push(
                errors,
                "accounts.min_password_length",
                format!("{n} is out of range; use a length from 8 to 1024 (the default is 10)"),
            );
            d.min_password_length
        }
    };
    let admin_groups = a
        .admin_groups
        .map(|g| {
            g.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| d.admin_groups.clone());
    super::AccountsConfig {
        min_password_length,
        users_may_change_email: a.users_may_change_email.unwrap_or(d.users_may_change_email),
        reauth_after: dur(
            errors,
            "accounts.reauth_after",
            a.reauth_after.as_deref(),
            d.reauth_after,
        )
        .unwrap_or(d.reauth_after),
        admin_groups,
    }
}

/// A positive duration: `default` when unset, None (and an error) when invalid.
fn dur(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Option<Duration> {
    let Some(s) = value else { return Some(default) };
    match parse_duration(s) {
        Ok(d) if d.is_zero() => {
            push(errors, key, "must be longer than 0, e.g. \"10m\"");
            None
        }
        Ok(d) => Some(d),
        Err(m) => {
            push(errors, key, m);
            None
        }
    }
}

/// Reports `key` if it is longer than `other` (a sibling key), when both are valid.
fn not_longer(
    errors: &mut Vec<ConfigError>,
    key: &str,
    a: Option<Duration>,
    other: &str,
    b: Option<Duration>,
) {
    if let (Some(a), Some(b)) = (a, b) {
        if a > b {
            let (a, b) = (format_duration(a), format_duration(b));
            push(
                errors,
                key,
                format!("({a}) is longer than {other} ({b}); shorten it or raise {other}"),
            );
        }
    }
}

fn count(errors: &mut Vec<ConfigError>, key: &str, value: Option<i64>, default: u32) -> u32 {
    let Some(n) = value else { return default };
    match u32::try_from(n) {
        Ok(n) if n >= 1 => n,
        _ => {
            push(
                errors,
                key,
                format!(
                    "{n} is out of range; use a whole number from 1 to {}",
                    u32::MAX
                ),
            );
            default
        }
    }
}

/// `prefix` is `tokens.` or `clients[i].`; unset keys take the value from `base`.
fn lifetimes(
    errors: &mut Vec<ConfigError>,
    prefix: &str,
    l: &file::Lifetimes,
    base: Lifetimes,
) -> Lifetimes {
    let mut one = |name: &str, v: &Option<String>, default| {
        dur(errors, &format!("{prefix}{name}"), v.as_deref(), default)
    };
    let access = one(
        "access_token_lifetime",
        &l.access_token_lifetime,
        base.access_token,
    );
    let id = one("id_token_lifetime", &l.id_token_lifetime, base.id_token);
    let idle = one(
        "refresh_token_idle_timeout",
        &l.refresh_token_idle_timeout,
        base.refresh_token_idle,
    );
    let max = one(
        "refresh_token_max_lifetime",
        &l.refresh_token_max_lifetime,
        base.refresh_token_max,
    );
    not_longer(
        errors,
        &format!("{prefix}refresh_token_idle_timeout"),
        idle,
        "refresh_token_max_lifetime",
        max,
    );
    Lifetimes {
        access_token: access.unwrap_or(base.access_token),
        id_token: id.unwrap_or(base.id_token),
        refresh_token_idle: idle.unwrap_or(base.refresh_token_idle),
        refresh_token_max: max.unwrap_or(base.refresh_token_max),
    }
}

/// Loopback: 127.0.0.0/8, ::1 and `localhost` (RFC 8252 §7.3, RFC 9700 §4.1).
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A JWT access token whose `aud` is another client's id would pass for that client's id_token
/// (OIDC Core §3.1.3.7 checks `aud`), so no audience may be a client id.
fn audiences_are_not_client_ids(errors: &mut Vec<ConfigError>, clients: &[ClientConfig]) {
    for (i, c) in clients.iter().enumerate() {
        let AccessTokenFormat::Jwt { audience } = &c.access_token_format else {
            continue;
        };
        if let Some(j) = clients
            .iter()
            .enumerate()
            .position(|(j, other)| j != i && other.id == *audience)
        {
            push(
                errors,
                &format!("clients[{i}].access_token_audience"),
                format!(
                    "\"{audience}\" is the id of clients[{j}]: its access tokens would pass for \
                     that client's id_tokens; use an audience that is no client's id, e.g. \
                     \"account\" or your API's name"
                ),
            );
        }
    }
}

fn client(
    errors: &mut Vec<ConfigError>,
    i: usize,
    c: file::Client,
    tokens: Lifetimes,
    seen: &mut HashMap<String, usize>,
    https_issuer: bool,
) -> ClientConfig {
    let key = |k: &str| format!("clients[{i}].{k}");

    let id = c.id.clone().unwrap_or_default();
    if c.id.is_none() {
        if !reported(errors, &key("id")) {
            push(
                errors,
                &key("id"),
                "every client needs an id (its client_id), e.g. id = \"grafana\"",
            );
        }
    } else if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_graphic() && ch != ':') {
        let m = format!(
            "\"{id}\" is not a valid client id; use printable ASCII without spaces or `:` \
             (it is sent in HTTP Basic auth), e.g. \"grafana\""
        );
        push(errors, &key("id"), m);
    } else if let Some(first) = seen.get(&id) {
        push(
            errors,
            &key("id"),
            format!("\"{id}\" is already the id of clients[{first}]; client ids must be unique"),
        );
    } else {
        seen.insert(id.clone(), i);
    }

    let public = c.public.unwrap_or(false);
    let secret_hash = if public {
        for (k, set) in [
            ("secret", c.secret.is_some()),
            ("secret_hash", c.secret_hash.is_some()),
        ] {
            if set {
                let m = "a public client has no secret; remove it, or set public = false \
                    if the client can keep a secret";
                push(errors, &key(k), m);
            }
        }
        None
    } else {
        match (&c.secret, &c.secret_hash) {
            (Some(_), Some(_)) => {
                push(
                    errors,
                    &key("secret_hash"),
                    "set only one of `secret` and `secret_hash`",
                );
                None
            }
            (Some(s), None) => {
                if s.chars().count() < 16 {
                    push(errors, &key("secret"), SHORT_SECRET);
                } else {
                    refuse_published(errors, &key("secret"), s, PUBLISHED_FIX);
                }
                Some(secrets::digest(s))
            }
            (None, Some(h)) => {
                let hash = secrets::from_hex(h);
                if hash.is_none() {
                    let m = "expected 64 hex characters: the SHA-256 of the secret, as \
                        printed by `doorman client secret`";
                    push(errors, &key("secret_hash"), m);
                }
                let published = published_secrets()
                    .iter()
                    .any(|p| Some(secrets::digest(p)) == hash);
                if published {
                    let m = format!(
                        "this is the hash of a secret published in doorman's example config, \
                         so anyone can use it; {PUBLISHED_FIX}"
                    );
                    push(errors, &key("secret_hash"), m);
                }
                hash
            }
            (None, None) => {
                if !reported(errors, &key("secret")) {
                    let m = "a confidential client needs `secret`, `secret_file` or \
                        `secret_hash` (generate one with `doorman client secret`); or set \
                        public = true for a browser or native app that cannot keep a secret";
                    push(errors, &key("secret"), m);
                }
                None
            }
        }
    };

    let method = match c.token_endpoint_auth_method.as_deref() {
        None => None,
        Some("client_secret_basic") => Some(AuthMethod::ClientSecretBasic),
        Some("client_secret_post") => Some(AuthMethod::ClientSecretPost),
        Some("none") => Some(AuthMethod::None),
        Some(other) => {
            let m = format!(
                "unknown method \"{other}\"; use client_secret_basic, client_secret_post or none"
            );
            push(errors, &key("token_endpoint_auth_method"), m);
            None
        }
    };
    match (public, method) {
        (true, Some(AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)) => push(
            errors,
            &key("token_endpoint_auth_method"),
            "a public client has no secret to send; use \"none\" or remove the key",
        ),
        (false, Some(AuthMethod::None)) => push(
            errors,
            &key("token_endpoint_auth_method"),
            "\"none\" is only for public clients; remove it (a confidential client may use \
             Basic or post), or set public = true",
        ),
        _ => {}
    }

    let redirect_uris = uris(errors, &key("redirect_uris"), c.redirect_uris.clone(), true);
    let allow_http_redirect_uris = c.allow_http_redirect_uris.unwrap_or(false);
    if https_issuer && !allow_http_redirect_uris {
        for (j, u) in redirect_uris.iter().enumerate() {
            let plain = Url::parse(u).is_ok_and(|u| u.scheme() == "http" && !is_loopback(&u));
            if plain {
                push(
                    errors,
                    &format!("{}[{j}]", key("redirect_uris")),
                    format!(
                        "\"{u}\" is plain http on a host other than this machine while the issuer \
                         is https: the authorization code would cross the network unencrypted \
                         (RFC 9700 §4.1); use an https URI, or set allow_http_redirect_uris = true \
                         for an app on your LAN"
                    ),
                );
            }
        }
    }
    let introspect_any = c.introspect_any.unwrap_or(false);
    if public && introspect_any {
        push(
            errors,
            &key("introspect_any"),
            "a public client cannot authenticate, so it cannot introspect tokens; remove it, or \
             give the resource server its own confidential client",
        );
    }
    let post_logout_redirect_uris = uris(
        errors,
        &key("post_logout_redirect_uris"),
        c.post_logout_redirect_uris.clone(),
        false,
    );

    if let Some(scopes) = &c.scopes {
        if scopes.is_empty() {
            let m = "an empty list allows no scope; remove the key to allow every scope";
            push(errors, &key("scopes"), m);
        }
        for (j, s) in scopes.iter().enumerate() {
            if !SUPPORTED_SCOPES.contains(&s.as_str()) {
                push(
                    errors,
                    &format!("{}[{j}]", key("scopes")),
                    format!(
                        "unknown scope \"{s}\"; supported: {}",
                        SUPPORTED_SCOPES.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(groups) = &c.allowed_groups {
        if groups.is_empty() {
            let m = "an empty list lets nobody log in; list groups, or remove the key to \
                let every user in";
            push(errors, &key("allowed_groups"), m);
        }
        for (j, g) in groups.iter().enumerate() {
            if g.trim().is_empty() {
                push(
                    errors,
                    &format!("{}[{j}]", key("allowed_groups")),
                    "group names must not be empty",
                );
            }
        }
    }

    let id_token_claims = match c.id_token_claims.as_deref() {
        None | Some("scoped") => IdTokenClaims::Scoped,
        Some("all") => IdTokenClaims::All,
        Some(other) => {
            let m = format!("unknown value \"{other}\"; use \"scoped\" (the default) or \"all\"");
            push(errors, &key("id_token_claims"), m);
            IdTokenClaims::Scoped
        }
    };

    let mut allowed_origins = Vec::new();
    for (j, o) in c.allowed_origins.iter().flatten().enumerate() {
        match origin(o) {
            Ok(o) => allowed_origins.push(o),
            Err(m) => push(errors, &format!("{}[{j}]", key("allowed_origins")), m),
        }
    }

    let plex_token_claim = match c.plex_token_claim.as_deref() {
        None => None,
        Some("server") => Some(PlexTokenClaim::Server),
        Some("account") => Some(PlexTokenClaim::Account),
        Some(other) => {
            let m = format!("unknown value \"{other}\"; use \"server\" (a token that opens only your Plex server) or \"account\" (the full plex.tv token)");
            push(errors, &key("plex_token_claim"), m);
            None
        }
    };
    let access_token_format = match (
        c.access_token_format.as_deref(),
        c.access_token_audience.clone(),
    ) {
        (None | Some("opaque"), None) => AccessTokenFormat::Opaque,
        (None | Some("opaque"), Some(_)) => {
            push(
                errors,
                &key("access_token_audience"),
                "only for access_token_format = \"jwt\"; remove it or set the format",
            );
            AccessTokenFormat::Opaque
        }
        (Some("jwt"), audience) => {
            // Jitsi's Prosody accepts "account" by default (asap_accepted_audiences).
            let audience = audience.unwrap_or_else(|| "account".to_string());
            if audience == id {
                push(errors, &key("access_token_audience"), "must not be the client id: an access token must never pass for an id_token; use e.g. \"account\" or your API's name");
            }
            AccessTokenFormat::Jwt { audience }
        }
        (Some(other), _) => {
            push(
                errors,
                &key("access_token_format"),
                format!("unknown value \"{other}\"; use \"opaque\" (the default) or \"jwt\""),
            );
            AccessTokenFormat::Opaque
        }
    };
    let roles_claim = c.roles_claim.as_deref().and_then(|path| {
        claim_path(path)
            .map_err(|m| push(errors, &key("roles_claim"), m))
            .ok()
    });
    let redirect_uri_match = match c.redirect_uri_match.as_deref() {
        None | Some("exact") => RedirectUriMatch::Exact,
        Some("prefix") => {
            for (j, u) in redirect_uris.iter().enumerate() {
                let has_path = Url::parse(u).is_ok_and(|p| p.path() != "/");
                if !u.ends_with('/') || !has_path || u.contains('?') {
                    push(
                        errors,
                        &format!("{}[{j}]", key("redirect_uris")),
                        format!(
                            "\"{u}\" cannot be a prefix: with redirect_uri_match = \"prefix\" each \
                             redirect URI must have a path and end in '/', with no query, e.g. \
                             \"https://app.example.com/callback/\""
                        ),
                    );
                }
            }
            RedirectUriMatch::Prefix
        }
        Some(other) => {
            push(
                errors,
                &key("redirect_uri_match"),
                format!("unknown value \"{other}\"; use \"exact\" (the default) or \"prefix\""),
            );
            RedirectUriMatch::Exact
        }
    };
    let mut claims = Vec::new();
    for (name, source) in c.claims.iter().flatten() {
        let at = format!("{}.{name}", key("claims"));
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if crate::oidc::claims::PROTOCOL_CLAIMS.contains(&name.as_str()) {
            push(
                errors,
                &at,
                format!(
                    "\"{name}\" is a protocol claim doorman sets itself and cannot be mapped; \
                     pick another name (e.g. nickname = \"preferred_username\")"
                ),
            );
        } else if !plain {
            push(
                errors,
                &at,
                format!("\"{name}\" is not a claim name; use letters, digits, '_' or '-'"),
            );
        } else if roles_claim
            .as_ref()
            .and_then(|p| p.first())
            .is_some_and(|top| top == name)
        {
            push(
                errors,
                &at,
                format!("\"{name}\" is where roles_claim puts the groups; pick another name"),
            );
        } else if !crate::oidc::claims::MAPPABLE_CLAIMS.contains(&source.as_str()) {
            push(
                errors,
                &at,
                format!(
                    "\"{source}\" is not a standard claim to copy; use one of {}",
                    crate::oidc::claims::MAPPABLE_CLAIMS.join(", ")
                ),
            );
        } else {
            claims.push((name.clone(), source.clone()));
        }
    }
    let backchannel_logout_uri = c
        .backchannel_logout_uri
        .as_deref()
        .map(str::trim)
        .and_then(|u| {
            backchannel_uri(u)
                .map_err(|m| push(errors, &key("backchannel_logout_uri"), m))
                .ok()
        });
    let backchannel_logout_session_required =
        c.backchannel_logout_session_required.unwrap_or(false);
    if backchannel_logout_session_required && c.backchannel_logout_uri.is_none() {
        push(
            errors,
            &key("backchannel_logout_session_required"),
            "only for a client with backchannel_logout_uri; set the URI or remove this key",
        );
    }
    let lifetimes = lifetimes(errors, &key(""), &c.lifetimes(), tokens);
    ClientConfig {
        id,
        name: c.name,
        secret_hash,
        public,
        redirect_uris,
        post_logout_redirect_uris,
        require_pkce: public || c.require_pkce.unwrap_or(false),
        scopes: c.scopes,
        allowed_groups: c.allowed_groups,
        refresh_tokens: c.refresh_tokens.unwrap_or(false),
        id_token_claims,
        allowed_origins,
        // A public client can only ever use `none`; say so rather than leave it implicit.
        token_endpoint_auth_method: if public {
            Some(AuthMethod::None)
        } else {
            method
        },
        lifetimes,
        plex_token_claim,
        access_token_format,
        introspect_any,
        allow_http_redirect_uris,
        require_second_factor: c.require_second_factor.unwrap_or(false),
        roles_claim,
        claims,
        redirect_uri_match,
        backchannel_logout_uri,
        backchannel_logout_session_required,
    }
}

/// A `backchannel_logout_uri`: an absolute https URL (http only on a loopback host, as for
/// redirect URIs in development), no fragment (Back-Channel Logout 1.0 §2.2).
fn backchannel_uri(u: &str) -> Result<String, String> {
    let url = Url::parse(u).map_err(|e| {
        format!("\"{u}\" is not an absolute URL ({e}); write e.g. \"https://app.example.com/backchannel-logout\"")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => {
            return Err(format!(
                "\"{u}\" must be an https URL (http only on localhost or 127.0.0.1): the \
                 logout token travels in it, e.g. \"https://app.example.com/backchannel-logout\""
            ))
        }
    }
    if url.fragment().is_some() {
        return Err(format!(
            "\"{u}\" must not contain a fragment (#...); remove it"
        ));
    }
    Ok(u.to_string())
}

/// A dotted path of claim names (`realm_access.roles`): segments of letters, digits, `_` or
/// `-`, the first not a claim doorman already sets (`sub`, `groups`, ...).
fn claim_path(path: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    let plain = |s: &String| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !segments.iter().all(plain) {
        return Err(format!(
            "\"{path}\" is not a dotted claim path; write names of letters, digits, '_' or '-' \
             joined by '.', e.g. \"realm_access.roles\""
        ));
    }
    match segments.first() {
        Some(top) if crate::oidc::claims::is_registered(top) => Err(format!(
            "\"{path}\" would overwrite the claim \"{top}\" doorman sets itself; use another \
             name, e.g. \"realm_access.roles\""
        )),
        _ => Ok(segments),
    }
}

/// Redirect URIs are matched exactly, so they are kept as written (trimmed), only checked.
fn uris(
    errors: &mut Vec<ConfigError>,
    key: &str,
    list: Option<Vec<String>>,
    required: bool,
) -> Vec<String> {
    let list: Vec<String> = list
        .unwrap_or_default()
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    if required && list.is_empty() && !reported(errors, key) {
        let m = "a client needs at least one redirect URI, e.g. [\"https://app.example.com/cb\"]";
        push(errors, key, m);
    }
    for (j, s) in list.iter().enumerate() {
        let problem = match Url::parse(s) {
            Err(e) => Some(format!(
                "\"{s}\" is not an absolute URL ({e}); write e.g. \"https://app.example.com/cb\""
            )),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                Some(format!("\"{s}\" must be an http or https URL"))
            }
            Ok(u) if u.fragment().is_some() => Some(format!(
                "\"{s}\" must not contain a fragment (#...); remove it"
            )),
            Ok(_) => None,
        };
        if let Some(m) = problem {
            push(errors, &format!("{key}[{j}]"), m);
        }
    }
    list
}

/// An origin exactly as browsers send it in the `Origin` header.
fn origin(s: &str) -> Result<String, String> {
    let url = Url::parse(s.trim()).map_err(|e| {
        format!("\"{s}\" is not an origin ({e}); write e.g. \"https://app.example.com\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "\"{s}\" must be an http or https origin, e.g. \"https://app.example.com\""
        ));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != s.trim() {
        return Err(format!(
            "\"{s}\" is not an origin (scheme://host[:port], no path or trailing slash); \
             write \"{canonical}\""
        ));
    }
    Ok(canonical)
}

/// `[server]`: the connection timeouts and limit.
fn server(errors: &mut Vec<ConfigError>, s: &file::Server, d: ServerConfig) -> ServerConfig {
    let header_read_timeout = dur(
        errors,
        "server.header_read_timeout",
        s.header_read_timeout.as_deref(),
        d.header_read_timeout,
    )
    .filter(|t| {
        let ok = *t <= MAX_HEADER_READ_TIMEOUT;
        if !ok {
            push(
                errors,
                "server.header_read_timeout",
                format!(
                    "must be at most \"{}\": a client that holds a connection open with half a \
                     request costs memory all that time; use e.g. \"10s\"",
                    format_duration(MAX_HEADER_READ_TIMEOUT)
                ),
            );
        }
        ok
    });
    ServerConfig {
        header_read_timeout: header_read_timeout.unwrap_or(d.header_read_timeout),
        idle_timeout: dur(
            errors,
            "server.idle_timeout",
            s.idle_timeout.as_deref(),
            d.idle_timeout,
        )
        .unwrap_or(d.idle_timeout),
        max_connections: count(
            errors,
            "server.max_connections",
            s.max_connections,
            d.max_connections,
        ),
    }
}

/// A configured theme directory must exist: a typo would otherwise silently give the built-in
/// look.
fn theme_dir_exists(errors: &mut Vec<ConfigError>, dir: &std::path::Path) -> bool {
    let problem = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return true,
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    };
    push(
        errors,
        "theme_dir",
        format!(
            "{} {problem} (a relative path is relative to the working directory); create it \
             with templates/ and static/ inside, fix the path, or remove the key to use the \
             built-in theme",
            dir.display()
        ),
    );
    false
}

/// `[smtp]`: host and from are required; a password goes with a username (both or neither),
/// and never in clear text over the network.
fn smtp(errors: &mut Vec<ConfigError>, s: file::Smtp) -> SmtpConfig {
    let host = s.host.map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        push(
            errors,
            "smtp.host",
            "required: the SMTP server's host name or IP, e.g. host = \"smtp.example.com\"",
        );
    }
    let tls = match s.tls.as_deref().map(str::trim) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            push(
                errors,
                "smtp.tls",
                format!("unknown value {other:?}; use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (a local relay)"),
            );
            SmtpTls::StartTls
        }
    };
    let port = match s.port {
        None => tls.default_port(),
        Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).unwrap_or_else(|| {
            push(errors, "smtp.port", format!("{p} is not a port; use 1 to 65535, or leave it out for the usual port of `tls`"));
            tls.default_port()
        }),
    };
    let username = s.username.filter(|u| !u.trim().is_empty());
    let password = s.password.filter(|p| !p.is_empty());
    match (&username, &password) {
        (Some(_), None) => push(
            errors,
            "smtp.password",
            "required when smtp.username is set; set password = \"${SMTP_PASSWORD}\" or password_file = \"/run/secrets/smtp\"",
        ),
        (None, Some(_)) => push(
            errors,
            "smtp.username",
            "required when smtp.password is set; set the account to sign in as, or remove the password",
        ),
        _ => {}
    }
    if tls == SmtpTls::None && username.is_some() && !host.is_empty() && !is_loopback_host(&host) {
        push(
            errors,
            "smtp.tls",
            format!("\"none\" would send the SMTP password in clear text over the network to {host}; use \"starttls\" or \"tls\" (tls = \"none\" with a username only for a relay on this machine: localhost, 127.0.0.1, ::1)"),
        );
    }
    let from = s.from.map(|f| f.trim().to_string()).unwrap_or_default();
    if from.parse::<lettre::message::Mailbox>().is_err() {
        push(
            errors,
            "smtp.from",
            if from.is_empty() {
                "required: the sender of doorman's mail, e.g. from = \"doorman <sso@example.com>\""
                    .to_string()
            } else {
                format!("{from:?} is not a mailbox; write an address, optionally with a name: \"doorman <sso@example.com>\" or \"sso@example.com\"")
            },
        );
    }
    let timeout = Duration::from_secs(10);
    let timeout = dur(errors, "smtp.timeout", s.timeout.as_deref(), timeout).unwrap_or(timeout);
    SmtpConfig {
        host,
        port,
        tls,
        username,
        password,
        from,
        timeout,
    }
}

/// `localhost`, or a loopback IP (`127.0.0.0/8`, `::1`, also in brackets).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod published_secret_tests {
    use super::*;

    #[test]
    fn secret_values_are_found_in_comments_and_both_quotes() {
        let text = "secret = \"abc-visible-secret\"\n# app_secret = 'in-a-comment'\n\
            #   secret_key = \"${NOT_A_VALUE}\"\nsecret = \"<placeholder>\"\n\
            secret_hash = \"0123\"\nname = \"secret\"\n";
        assert_eq!(secret_values(text), ["abc-visible-secret", "in-a-comment"]);
    }

    #[test]
    fn the_old_placeholder_stays_published() {
        assert!(published_secrets().contains(&"change-me-to-a-long-random-secret"));
    }
}
