//! `doorman integrate <app>`: configuration snippets for the other side of an integration,
//! rendered from the loaded config, so what people paste matches what doorman expects.

mod jitsi;
mod proxies;

use crate::config::Config;

/// The apps `integrate` knows, for the help text and the error.
pub const APPS: &[&str] = &["traefik", "caddy", "nginx", "apache", "cloudflare", "jitsi"];

pub use proxies::CLOUDFLARE_OIDC_CLAIMS;

/// `client` picks the [[clients]] entry for apps that are relying parties (apache). `remote`:
/// the proxy reaches doorman over the internet at its https issuer (doorman on Fly, proxies at
/// home) instead of next to it.
pub fn render(
    app: &str,
    config: &Config,
    client: Option<&str>,
    remote: bool,
) -> Result<String, String> {
    if remote && config.issuer.scheme() != "https" {
        return Err(format!(
            "--remote sends every check, cookies included, over the internet: it needs an https issuer, not {}",
            config.issuer_str()
        ));
    }
    match app {
        "jitsi" => jitsi::render(config),
        "nginx" => Ok(proxies::nginx(config, remote)),
        "caddy" => Ok(proxies::caddy(config, remote)),
        "traefik" => Ok(proxies::traefik(config, remote)),
        "apache" => proxies::apache(config, client),
        "cloudflare" => Ok(proxies::cloudflare(config)),
        // The apps, one a line (the /admin Clients page points here).
        "list" => Ok(format!("{}\n", APPS.join("\n"))),
        other => Err(format!("unknown app {other:?}; known: {}", APPS.join(", "))),
    }
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
}
