//! `doorman integrate <app>`: configuration snippets for the other side of an integration,
//! rendered from the loaded config, so what people paste matches what doorman expects.

mod apps;
mod jitsi;
pub mod model;
mod proxies;

use crate::config::Config;

pub use model::{resolve_client, Integration};

/// The apps `integrate` knows, each with one line about what it prints (`list` shows them).
pub const APPS_DESCRIBED: &[(&str, &str)] = &[
    (
        "traefik",
        "Traefik forwardAuth middleware (forward-auth in front of any app)",
    ),
    (
        "caddy",
        "Caddy forward_auth block (forward-auth in front of any app)",
    ),
    (
        "nginx",
        "nginx auth_request locations (forward-auth in front of any app)",
    ),
    (
        "apache",
        "Apache httpd mod_auth_openidc vhost lines (Apache as a relying party)",
    ),
    (
        "cloudflare",
        "Cloudflare Access OpenID Connect login method and its origin checks",
    ),
    (
        "jitsi",
        "Jitsi Meet: docker .env, Prosody lines, or native OIDC mode",
    ),
    (
        "nextcloud",
        "Nextcloud Social Login: the Custom OpenID Connect fields",
    ),
    (
        "jellyfin",
        "Jellyfin 9p4 SSO-Auth plugin: provider fields and a sign-in button",
    ),
    ("mastodon", "Mastodon .env.production OIDC_* lines"),
    (
        "etherpad",
        "Etherpad ep_openid_connect settings.json block and its Docker env form",
    ),
    (
        "grafana",
        "Grafana [auth.generic_oauth] ini with roles from doorman groups",
    ),
    ("gitea", "Gitea `admin auth add-oauth` command line"),
    ("forgejo", "Forgejo `admin auth add-oauth` command line"),
    ("immich", "Immich OAuth settings"),
];

/// The apps `integrate` knows, for the help text and the error.
pub const APPS: &[&str] = &[
    "traefik",
    "caddy",
    "nginx",
    "apache",
    "cloudflare",
    "jitsi",
    "nextcloud",
    "jellyfin",
    "mastodon",
    "etherpad",
    "grafana",
    "gitea",
    "forgejo",
    "immich",
];

pub use proxies::CLOUDFLARE_OIDC_CLAIMS;

/// `client` picks the [[clients]] entry for apps that are relying parties (`--client`; it must
/// exist). `remote`: the proxy reaches doorman over the internet at its https issuer (doorman
/// on Fly, proxies at home) instead of next to it.
pub fn integration(
    app: &str,
    config: &Config,
    client: Option<&str>,
    remote: bool,
) -> Result<Integration, String> {
    if remote && config.issuer.scheme() != "https" {
        return Err(format!(
            "--remote sends every check, cookies included, over the internet: it needs an https issuer, not {}",
            config.issuer_str()
        ));
    }
    if !APPS.contains(&app) {
        return Err(format!(
            "unknown app {app:?}; known: {} (`doorman integrate list` says what each prints)",
            APPS.join(", ")
        ));
    }
    let chosen = resolve_client(config, app, client)?;
    let snippet = |text: String| Integration::snippet(app, text);
    Ok(match app {
        "jitsi" => snippet(jitsi::render(config)?),
        "nginx" => snippet(proxies::nginx(config, remote)),
        "caddy" => snippet(proxies::caddy(config, remote)),
        "traefik" => snippet(proxies::traefik(config, remote)),
        "apache" => snippet(proxies::apache(config, chosen)),
        "cloudflare" => snippet(proxies::cloudflare(config, chosen)),
        "nextcloud" => apps::nextcloud(config, chosen),
        "jellyfin" => apps::jellyfin(config, chosen),
        "mastodon" => apps::mastodon(config, chosen),
        "etherpad" => apps::etherpad(config, chosen),
        "grafana" => apps::grafana(config, chosen),
        "gitea" | "forgejo" => apps::gitea(app, config, chosen),
        _ => apps::immich(config, chosen),
    })
}

/// What `doorman integrate <app>` prints: text for people, or the same as JSON.
pub fn render_as(
    app: &str,
    config: &Config,
    client: Option<&str>,
    remote: bool,
    json: bool,
) -> Result<String, String> {
    if app == "list" {
        return Ok(list(json));
    }
    let i = integration(app, config, client, remote)?;
    Ok(if json { i.json() } else { i.text() })
}

/// The text form.
pub fn render(
    app: &str,
    config: &Config,
    client: Option<&str>,
    remote: bool,
) -> Result<String, String> {
    render_as(app, config, client, remote, false)
}

/// The apps, one a line with what each prints (the /admin Clients page points here).
fn list(json: bool) -> String {
    if json {
        let apps: Vec<_> = APPS_DESCRIBED
            .iter()
            .map(|(app, about)| serde_json::json!({"app": app, "description": about}))
            .collect();
        return serde_json::Value::from(apps).to_string() + "\n";
    }
    let width = APPS.iter().map(|a| a.len()).max().unwrap_or(0);
    APPS_DESCRIBED
        .iter()
        .map(|(app, about)| format!("{app:<width$}  {about}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(issuer: &str, extra: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:8080\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n{extra}\n[[forward_auth.rules]]\nhost = \"app.example.com\"\nallow = \"authenticated\"\n"
        );
        let config = crate::config::from_str(&text, &HashMap::new(), dir.path()).unwrap();
        (dir, config)
    }

    #[test]
    fn remote_mode_needs_an_https_issuer_and_reaches_it_with_sni() {
        let (_d, http) = config("http://auth.example.com", "");
        let err = render("nginx", &http, None, true).unwrap_err();
        assert!(err.contains("https"), "{err}");
        let (_d, https) = config("https://auth.example.com", "");
        let nginx = render("nginx", &https, None, true).unwrap();
        assert!(nginx.contains("proxy_pass https://auth.example.com/auth-request;"));
        assert!(nginx.contains("proxy_ssl_server_name on;"));
        assert!(nginx.contains("proxy_set_header Host auth.example.com;"));
        assert!(nginx.contains("min_machines_running"), "the wake-up note");
        let caddy = render("caddy", &https, None, true).unwrap();
        assert!(caddy.contains("forward_auth https://auth.example.com {"));
        assert!(caddy.contains("header_up Host {upstream_hostport}"));
        let traefik = render("traefik", &https, None, true).unwrap();
        assert!(traefik.contains("address: \"https://auth.example.com/forward-auth\""));
        // Local mode: doorman's own address, as before.
        let local = render("caddy", &https, None, false).unwrap();
        assert!(local.contains("forward_auth 127.0.0.1:8080 {"), "{local}");
    }

    #[test]
    fn every_snippet_strips_the_clients_identity_headers() {
        let (_d, c) = config("https://auth.example.com", "");
        let traefik = render("traefik", &c, None, false).unwrap();
        assert!(traefik.contains("trustForwardHeader: false"), "{traefik}");
        assert!(!traefik.contains("trustForwardHeader: true"), "{traefik}");
        assert!(traefik.contains("authResponseHeadersRegex"), "{traefik}");
        let caddy = render("caddy", &c, None, false).unwrap();
        let strip = caddy.find("request_header -Remote-*").unwrap();
        assert!(strip > caddy.find("route {").unwrap());
        assert!(strip < caddy.find("forward_auth").unwrap());
        let nginx = render("nginx", &c, None, false).unwrap();
        assert!(nginx.contains("proxy_set_header Remote-Groups $doorman_remote_groups;"));
        let apache = render("apache", &c, None, false).unwrap();
        assert!(
            apache.contains("RequestHeader unset Remote-User early"),
            "{apache}"
        );
    }

    #[test]
    fn an_unknown_client_is_an_error_naming_the_configured_ones() {
        let (_d, none) = config("https://auth.example.com", "");
        assert!(render("apache", &none, Some("nope"), false)
            .unwrap_err()
            .contains("none is configured"));
        let (_d, c) = config(
            "https://auth.example.com",
            "[[clients]]\nid = \"wiki\"\nname = \"Wiki\"\nsecret = \"wiki-secret-0123456789abcdef\"\nredirect_uris = [\"https://wiki.example.com/redirect_uri\"]\n",
        );
        let err = render("apache", &c, Some("nope"), false).unwrap_err();
        assert!(err.contains("\"nope\"") && err.contains("wiki"), "{err}");
        assert!(render("apache", &c, Some("wiki"), false)
            .unwrap()
            .contains("OIDCClientID wiki"));
    }

    /// The relying-party apps, and a marker of what each prints for the operator to paste.
    const RP_APPS: &[(&str, &str)] = &[
        ("nextcloud", "Authorize url:"),
        ("jellyfin", "OID Endpoint:"),
        ("mastodon", "OIDC_CLIENT_SECRET="),
        ("etherpad", "\"ep_openid_connect\": {"),
        ("grafana", "[auth.generic_oauth]"),
        ("gitea", "gitea admin auth add-oauth"),
        ("forgejo", "forgejo admin auth add-oauth"),
        ("immich", "Issuer URL:"),
    ];

    /// The value of the text form's field line `  Label: value`.
    fn field(text: &str, label: &str) -> String {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{label}:")))
            .unwrap_or_else(|| panic!("no field {label}: {text}"))
            .trim()
            .to_string()
    }

    fn json(app: &str, c: &Config, client: Option<&str>) -> serde_json::Value {
        serde_json::from_str(&render_as(app, c, client, false, true).unwrap()).unwrap()
    }

    /// Without a client named like the app, the output carries a [[clients]] block with a
    /// fresh URL-safe secret (the one pasted into the app) whose hash is in the block, on the
    /// placeholder host; appended to the config, it loads and is then the app's client.
    #[test]
    fn without_a_client_the_block_to_add_loads_and_carries_the_pasted_secret() {
        let (_d, c) = config("https://auth.example.com", "");
        for (app, marker) in RP_APPS {
            // One run's text and JSON (each run makes a new secret).
            let i = integration(app, &c, None, false).unwrap();
            let text = i.text();
            assert!(text.contains(marker), "{app}: {text}");
            let v: serde_json::Value = serde_json::from_str(&i.json()).unwrap();
            let plan = &v["client"];
            assert_eq!(plan["id"], *app);
            assert_eq!(plan["configured"], false);
            let secret = plan["secret"].as_str().unwrap();
            assert!(secret.len() >= 32, "{app}: {secret}");
            assert!(
                secret
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
                "{app}: {secret}"
            );
            let hash = crate::secrets::to_hex(&crate::secrets::digest(secret));
            assert_eq!(plan["secret_hash"], hash.as_str());
            let block = plan["toml"].as_str().unwrap();
            assert!(
                block.contains(&format!("secret_hash = \"{hash}\"")),
                "{block}"
            );
            assert!(
                block.contains(&format!("https://{app}.example.com/")),
                "{app}: the placeholder host: {block}"
            );
            // Every section's text is in the JSON too (the same content as data).
            let sections = v["sections"].as_array().unwrap();
            assert!(!sections.is_empty());
            assert!(text.contains(block), "{app}: the block in the text");
            let pasted = text.matches(secret).count();
            assert!(pasted >= 1, "{app}: the secret is shown to paste: {text}");

            let (_d, with) = config("https://auth.example.com", block);
            let client = with.clients.iter().find(|cl| cl.id == *app).unwrap();
            assert_eq!(
                client.secret_hash,
                Some(crate::secrets::digest(secret)),
                "{app}"
            );
            let again = json(app, &with, None);
            assert_eq!(again["client"]["configured"], true, "{app}");
            assert!(again["client"].get("toml").is_none(), "{app}");
        }
    }

    /// For a configured client, app-side URLs come from its redirect_uris and its secret is
    /// a placeholder saying how to get a new one (doorman keeps only a hash).
    #[test]
    fn a_configured_client_gives_the_app_urls_and_a_secret_placeholder() {
        let client = |id: &str, uris: &str, extra: &str| {
            format!("[[clients]]\nid = \"{id}\"\nsecret = \"{id}-secret-0123456789abcdef\"\nredirect_uris = [{uris}]\n{extra}\n")
        };
        let extra = [
            client("nextcloud", "\"https://cloud.example.org/nc/apps/sociallogin/custom_oidc/sso\"", "id_token_claims = \"all\""),
            client("jellyfin", "\"https://tv.example.org/sso/OID/redirect/home\"", "token_endpoint_auth_method = \"client_secret_post\"\nallowed_groups = [\"family\"]"),
            client("mastodon", "\"https://social.example.org/auth/auth/openid_connect/callback\"", ""),
            client("etherpad", "\"https://meet.example.org/pad/ep_openid_connect/callback\"", ""),
            client("grafana", "\"https://grafana.example.org/dash/login/generic_oauth\"", ""),
            client("git", "\"https://git.example.org/user/oauth2/sso/callback\"", ""),
            client("immich", "\"https://photos.example.org/auth/login\", \"https://photos.example.org/api/oauth/mobile-redirect\"", ""),
        ]
        .concat();
        let (_d, c) = config("https://auth.example.com", &extra);
        let text = |app: &str, client: Option<&str>| render(app, &c, client, false).unwrap();

        let nc = text("nextcloud", None);
        assert!(nc.contains("Internal name:                 sso"), "{nc}");
        assert!(
            nc.contains("Client Id:                     nextcloud"),
            "{nc}"
        );
        assert!(nc.contains("Authorize url:                 https://auth.example.com/authorize"));
        assert!(nc.contains("Scope:                         openid\n"));
        assert!(!nc.contains("Warning"), "{nc}");
        // With [compat] keycloak_paths: Keycloak's paths, as a Social Login set up for it has.
        let (_d, kc) = config(
            "https://sso.example.com/realms/foundation",
            "[compat]\nkeycloak_paths = true\n",
        );
        let nk = render("nextcloud", &kc, None, false).unwrap();
        assert!(nk.contains("Authorize url:                 https://sso.example.com/realms/foundation/protocol/openid-connect/auth\n"), "{nk}");
        assert!(nk.contains("Token url:                     https://sso.example.com/realms/foundation/protocol/openid-connect/token\n"), "{nk}");

        let jf = text("jellyfin", None);
        assert!(jf.contains("Name of the OID Provider:       home"), "{jf}");
        assert!(jf.contains("OID Endpoint:                   https://auth.example.com\n"));
        assert!(
            jf.contains("Roles:                          family"),
            "{jf}"
        );
        assert!(jf.contains("Role Claim:                     groups"));
        // A new client gets roles_claim; one with it is read there (no warning).
        let (_d, none) = config("https://auth.example.com", "");
        let new = render("jellyfin", &none, None, false).unwrap();
        assert!(
            new.contains("roles_claim = \"realm_access.roles\"\n"),
            "{new}"
        );
        assert!(new.contains("Role Claim:                     realm_access.roles\n"));
        let (_d, nested) = config(
            "https://auth.example.com",
            "[[clients]]\nid = \"jellyfin\"\nsecret = \"jellyfin-secret-0123456789\"\nredirect_uris = [\"https://tv.example.org/sso/OID/redirect/home\"]\nroles_claim = \"realm_access.roles\"\n",
        );
        let jn = render("jellyfin", &nested, None, false).unwrap();
        assert!(
            jn.contains("Role Claim:                     realm_access.roles\n"),
            "{jn}"
        );
        assert!(!jn.contains("Warning"), "{jn}");
        assert!(
            jf.contains("action=\"https://tv.example.org/sso/OID/start/home\""),
            "{jf}"
        );
        assert!(
            jf.contains("Warning: client \"jellyfin\" has id_token_claims"),
            "{jf}"
        );

        let md = text("mastodon", None);
        assert!(md.contains(
            "OIDC_REDIRECT_URI=https://social.example.org/auth/auth/openid_connect/callback\n"
        ));
        assert!(md.contains("OIDC_ISSUER=https://auth.example.com\n"));
        assert!(md.contains("OIDC_SCOPE=openid,profile,email\n"));
        assert!(md.contains("OIDC_UID_FIELD=preferred_username\n"));

        let ep = text("etherpad", None);
        assert!(
            ep.contains("\"base_url\": \"https://meet.example.org/pad\","),
            "{ep}"
        );
        assert!(
            ep.contains("OIDC_BASE_URL=https://meet.example.org/pad\n"),
            "{ep}"
        );
        assert!(ep.contains("\"scope\": [\"openid\", \"profile\"]"));

        let gf = text("grafana", None);
        assert!(
            gf.contains("root_url = https://grafana.example.org/dash/\n"),
            "{gf}"
        );
        assert!(
            gf.contains("role_attribute_path = contains(groups[*], 'grafana-admins') && 'Admin'")
        );
        assert!(gf.contains("token_url = https://auth.example.com/token\n"));

        // gitea without a client named gitea: the block; with --client git: that one.
        assert!(text("gitea", None).contains("[[clients]]\nid = \"gitea\""));
        let gt = text("gitea", Some("git"));
        assert!(!gt.contains("[[clients]]\nid"), "{gt}");
        assert!(gt.contains("--name sso \\\n"), "{gt}");
        assert!(gt.contains("--key git \\\n"), "{gt}");
        assert!(gt.contains(
            "--auto-discover-url https://auth.example.com/.well-known/openid-configuration"
        ));

        // A configured client that would refuse what the app does is named with the fix.
        let (_d, strict) = config(
            "https://auth.example.com",
            "[[clients]]\nid = \"grafana\"\nsecret = \"grafana-secret-0123456789\"\nredirect_uris = [\"https://g.example.org/login/generic_oauth\"]\nscopes = [\"openid\", \"profile\"]\ntoken_endpoint_auth_method = \"client_secret_post\"\n[[clients]]\nid = \"mastodon\"\nsecret = \"mastodon-secret-0123456789\"\nredirect_uris = [\"https://m.example.org/auth/auth/openid_connect/callback\"]\nrequire_pkce = true\n",
        );
        let g = render("grafana", &strict, None, false).unwrap();
        assert!(
            g.contains("may not be granted email groups which Grafana asks for"),
            "{g}"
        );
        assert!(g.contains("token_endpoint_auth_method = \"client_secret_post\", but Grafana uses client_secret_basic"), "{g}");
        let m = render("mastodon", &strict, None, false).unwrap();
        assert!(
            m.contains("requires PKCE, which Mastodon does not send"),
            "{m}"
        );
        assert!(!md.contains("Warning"), "{md}");

        let im = text("immich", None);
        assert_eq!(
            field(&im, "Mobile Redirect URI"),
            "https://photos.example.org/api/oauth/mobile-redirect",
            "{im}"
        );

        for (app, _) in RP_APPS {
            let v = json(
                app,
                &c,
                if *app == "gitea" || *app == "forgejo" {
                    Some("git")
                } else {
                    None
                },
            );
            let secret = v["client"]["secret"].as_str().unwrap();
            assert!(secret.contains("doorman client secret"), "{app}: {secret}");
            assert!(v["client"].get("secret_hash").is_none());
            assert!(!render(app, &c, Some("git"), false)
                .unwrap()
                .contains("-secret-0123456789abcdef"));
        }
    }

    /// `--client` must name a configured client: the error lists the ids, for every app.
    #[test]
    fn an_unknown_client_flag_fails_for_every_app_listing_the_ids() {
        let (_d, c) = config(
            "https://auth.example.com",
            "[[clients]]\nid = \"wiki\"\nsecret = \"wiki-secret-0123456789abcdef\"\nredirect_uris = [\"https://wiki.example.com/cb\"]\n[[clients]]\nid = \"photos\"\nsecret = \"photos-secret-0123456789abcdef\"\nredirect_uris = [\"https://photos.example.com/cb\"]\n",
        );
        for app in APPS {
            let err = render_as(app, &c, Some("nope"), false, true).unwrap_err();
            assert!(
                err.contains("\"nope\"") && err.contains("wiki, photos"),
                "{app}: {err}"
            );
        }
        assert_eq!(
            resolve_client(&c, "wiki", None)
                .unwrap()
                .map(|c| c.id.as_str()),
            Some("wiki")
        );
        assert!(resolve_client(&c, "grafana", None).unwrap().is_none());
        assert_eq!(
            resolve_client(&c, "grafana", Some("photos"))
                .unwrap()
                .map(|c| c.id.as_str()),
            Some("photos")
        );
    }

    #[test]
    fn list_names_every_app_with_a_line_about_it() {
        let names: Vec<&str> = APPS_DESCRIBED.iter().map(|(a, _)| *a).collect();
        assert_eq!(names, APPS);
        let (_d, c) = config("https://auth.example.com", "");
        let text = render("list", &c, None, false).unwrap();
        for (line, (app, about)) in text.lines().zip(APPS_DESCRIBED) {
            assert!(line.starts_with(app) && line.ends_with(about), "{line}");
        }
        let v = json("list", &c, None);
        assert_eq!(v[6]["app"], "nextcloud");
        assert!(render("wordpress", &c, None, false)
            .unwrap_err()
            .contains("known: traefik"));
    }
}
