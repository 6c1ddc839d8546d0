//! Reverse proxies in front of apps (forward-auth), Apache as a relying party, and the
//! Cloudflare Access login method. Placeholders in <angle brackets> are for the operator.

use std::fmt::Write;

use crate::config::{ClientConfig, Config};

/// Where the proxy reaches doorman: the issuer (its path included).
fn base(config: &Config) -> &str {
    config.issuer_str()
}

/// doorman's own listening address, for proxies that must not go through the public issuer
/// (Caddy and Traefik keep the app's Host on the check, so a check sent to an issuer the same
/// proxy serves would loop back into the app's site).
fn direct(config: &Config) -> String {
    let l = config.listen;
    if l.ip().is_unspecified() {
        format!("<doorman's address>:{}", l.port())
    } else {
        l.to_string()
    }
}

fn issuer_path(config: &Config) -> String {
    config.issuer.path().trim_end_matches('/').to_string()
}

fn first_protected_host(config: &Config) -> String {
    config
        .forward_auth
        .rules
        .first()
        .map(|r| r.host.0.replace("*.", "app."))
        .unwrap_or_else(|| "app.example.com".into())
}

const IDENTITY: [&str; 4] = [
    "Remote-User",
    "Remote-Email",
    "Remote-Name",
    "Remote-Groups",
];

fn all_headers(config: &Config) -> Vec<String> {
    IDENTITY
        .iter()
        .map(|h| h.to_string())
        .chain(config.forward_auth.headers.iter().map(|(n, _)| n.clone()))
        .collect()
}

fn trusted_note(w: &mut String, config: &Config, remote: bool) {
    if config.forward_auth.rules.is_empty() {
        let _ = writeln!(w, "# doorman has no [[forward_auth.rules]] yet: every request is denied until you add some.");
    }
    if config.trusted_proxies.is_empty() {
        let _ = writeln!(w, "# doorman's trusted_proxies is empty: add the proxy's address, or its forward-auth checks are refused.");
    }
    if remote {
        let _ = writeln!(w, "# Remote mode: every request to a protected app is also a check over the internet to {},", base(config));
        let _ = writeln!(w, "# so a doorman scaled to zero (Fly's auto_stop_machines) is woken by each one: keep one machine");
        let _ = writeln!(w, "# running (min_machines_running = 1) or accept a cold start on the first request. doorman's");
        let _ = writeln!(w, "# trusted_proxies must cover the address the checks arrive from (on Fly: Fly's proxy).");
    }
}

/// The nginx variable name for a header (`Remote-User` → `remote_user`).
fn nginx_var(header: &str) -> String {
    header.to_ascii_lowercase().replace('-', "_")
}

pub fn nginx(config: &Config, remote: bool) -> String {
    let mut w = String::new();
    let host = first_protected_host(config);
    let _ = writeln!(
        w,
        "# nginx (auth_request module): inside the server block of each protected site, whose"
    );
    let _ = writeln!(
        w,
        "# server_name is the protected host (doorman judges that name, never the client's Host)."
    );
    trusted_note(&mut w, config, remote);
    let _ = writeln!(w, "location = /doorman-auth {{");
    let _ = writeln!(w, "    internal;");
    let _ = writeln!(w, "    proxy_pass {}/auth-request;", base(config));
    if remote {
        let name = config.issuer.host_str().unwrap_or_default();
        let _ = writeln!(w, "    # doorman over https: the right name in SNI and Host, and its certificate checked.");
        let _ = writeln!(w, "    proxy_ssl_server_name on;");
        let _ = writeln!(w, "    proxy_ssl_name {name};");
        let _ = writeln!(w, "    proxy_ssl_verify on;");
        let _ = writeln!(w, "    proxy_ssl_verify_depth 3;");
        let _ = writeln!(
            w,
            "    proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;"
        );
        let _ = writeln!(w, "    proxy_set_header Host {name};");
    }
    let _ = writeln!(w, "    proxy_pass_request_body off;");
    let _ = writeln!(w, "    proxy_set_header Content-Length \"\";");
    let _ = writeln!(
        w,
        "    proxy_set_header X-Original-URL $scheme://$server_name:$server_port$request_uri;"
    );
    let _ = writeln!(w, "    proxy_set_header X-Original-Method $request_method;");
    let _ = writeln!(
        w,
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    );
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "location / {{");
    let _ = writeln!(w, "    auth_request /doorman-auth;");
    let _ = writeln!(
        w,
        "    # Not signed in: doorman answers 401 with the login page in Location."
    );
    let _ = writeln!(
        w,
        "    auth_request_set $doorman_location $upstream_http_location;"
    );
    let _ = writeln!(w, "    error_page 401 =302 $doorman_location;");
    let _ = writeln!(w, "    # Each proxy_set_header replaces the client's header of that name (an empty value sends");
    let _ = writeln!(w, "    # none), so a client's own Remote-* never reaches the app; nginx drops Remote_User-style");
    let _ = writeln!(w, "    # names itself unless underscores_in_headers is on, and these lines clear them then too.");
    for h in all_headers(config) {
        let var = nginx_var(&h);
        let _ = writeln!(
            w,
            "    auth_request_set $doorman_{var} $upstream_http_{var};"
        );
        let _ = writeln!(w, "    proxy_set_header {h} $doorman_{var};");
        let _ = writeln!(w, "    proxy_set_header {} \"\";", h.replace('-', "_"));
    }
    let _ = writeln!(w, "    proxy_pass <http://your-app-for-{host}>;");
    let _ = writeln!(w, "}}");
    w
}

pub fn caddy(config: &Config, remote: bool) -> String {
    let mut w = String::new();
    let host = first_protected_host(config);
    let _ = writeln!(w, "# Caddyfile: one block per protected site.");
    trusted_note(&mut w, config, remote);
    let _ = writeln!(w, "{host} {{");
    let _ = writeln!(w, "\troute {{");
    let _ = writeln!(
        w,
        "\t\t# The client's own identity headers never reach the app: Caddy 2.10.0-2.11.1 keep a"
    );
    let _ = writeln!(
        w,
        "\t\t# client's copy when doorman's value is empty (GHSA-7r4p-vjf4-gxv4), and Caddy passes"
    );
    let _ = writeln!(
        w,
        "\t\t# underscore spellings on, which CGI-style apps read as REMOTE_USER."
    );
    let _ = writeln!(w, "\t\trequest_header -Remote-*");
    let _ = writeln!(w, "\t\trequest_header -Remote_*");
    for (name, _) in &config.forward_auth.headers {
        let _ = writeln!(w, "\t\trequest_header -{name}");
    }
    if remote {
        let _ = writeln!(w, "\t\t# doorman over https (SNI is the upstream's name); Host must be doorman's, not the app's.");
        let _ = writeln!(w, "\t\tforward_auth {} {{", base_origin(config));
        let _ = writeln!(w, "\t\t\turi {}/forward-auth", issuer_path(config));
        let _ = writeln!(w, "\t\t\theader_up Host {{upstream_hostport}}");
    } else {
        let _ = writeln!(
            w,
            "\t\t# doorman's own address, not the public issuer (which may be this same Caddy)."
        );
        let _ = writeln!(w, "\t\tforward_auth {} {{", direct(config));
        let _ = writeln!(w, "\t\t\turi {}/forward-auth", issuer_path(config));
    }
    let _ = writeln!(w, "\t\t\tcopy_headers {}", all_headers(config).join(" "));
    let _ = writeln!(w, "\t\t}}");
    let _ = writeln!(w, "\t\treverse_proxy <your-app:port>");
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "}}");
    w
}

/// The issuer's scheme, host and port (no path).
fn base_origin(config: &Config) -> String {
    config.issuer.origin().ascii_serialization()
}

pub fn traefik(config: &Config, remote: bool) -> String {
    let mut w = String::new();
    let address = if remote {
        format!("{}/forward-auth", base(config))
    } else {
        // doorman's own address: a check sent through the same Traefik would be rewritten.
        format!(
            "http://{}{}/forward-auth",
            direct(config),
            issuer_path(config)
        )
    };
    let headers = all_headers(config);
    let _ = writeln!(w, "# Traefik, dynamic configuration (file provider):");
    trusted_note(&mut w, config, remote);
    let _ = writeln!(w, "# trustForwardHeader stays false: doorman needs only the X-Forwarded-* Traefik sets itself,");
    let _ = writeln!(
        w,
        "# and trusting a client's copies would let it describe another request."
    );
    let _ = writeln!(
        w,
        "# Traefik deletes the client's copies of authResponseHeaders before it copies doorman's;"
    );
    let _ = writeln!(
        w,
        "# authResponseHeadersRegex does the same for every Remote-*/Remote_* spelling."
    );
    let _ = writeln!(w, "http:");
    let _ = writeln!(w, "  middlewares:");
    let _ = writeln!(w, "    doorman:");
    let _ = writeln!(w, "      forwardAuth:");
    let _ = writeln!(w, "        address: \"{address}\"");
    let _ = writeln!(w, "        trustForwardHeader: false");
    let _ = writeln!(w, "        authResponseHeadersRegex: \"{TRAEFIK_REGEX}\"");
    let _ = writeln!(w, "        authResponseHeaders:");
    for h in &headers {
        let _ = writeln!(w, "          - \"{h}\"");
    }
    let _ = writeln!(
        w,
        "# then add `middlewares: [doorman]` to each protected router."
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "# Or with Docker labels on any container:");
    let _ = writeln!(
        w,
        "#   traefik.http.middlewares.doorman.forwardauth.address={address}"
    );
    let _ = writeln!(
        w,
        "#   traefik.http.middlewares.doorman.forwardauth.trustForwardHeader=false"
    );
    let _ = writeln!(
        w,
        "#   traefik.http.middlewares.doorman.forwardauth.authResponseHeadersRegex={TRAEFIK_REGEX}"
    );
    let _ = writeln!(
        w,
        "#   traefik.http.middlewares.doorman.forwardauth.authResponseHeaders={}",
        headers.join(",")
    );
    let _ = writeln!(
        w,
        "#   traefik.http.routers.<app>.middlewares=doorman@docker"
    );
    w
}

/// Every spelling of the identity headers, for Traefik's delete-then-copy.
const TRAEFIK_REGEX: &str = "(?i)^remote[-_]";

/// `client`: `--client`'s or the one named "apache"; else the first whose redirect URI is
/// mod_auth_openidc's usual `/redirect_uri`.
pub fn apache(config: &Config, client: Option<&ClientConfig>) -> String {
    let mut w = String::new();
    let c = client.or_else(|| {
        config
            .clients
            .iter()
            .find(|c| c.redirect_uris.iter().any(|r| r.ends_with("/redirect_uri")))
    });
    let id = c
        .map(|c| c.id.clone())
        .unwrap_or_else(|| "<client id>".into());
    let redirect = c
        .and_then(|c| c.redirect_uris.first().cloned())
        .unwrap_or_else(|| "https://app.example.com/redirect_uri".into());
    let _ = writeln!(w, "# Apache httpd with mod_auth_openidc as a relying party of doorman (a2enmod auth_openidc).");
    let _ = writeln!(w, "# doorman side: a [[clients]] entry with id = \"{id}\" and redirect_uris = [\"{redirect}\"].");
    // mod_auth_openidc's back-channel logout endpoint is its redirect URI with ?logout=backchannel.
    let configured_bc = c.and_then(|c| c.backchannel_logout_uri.clone());
    if configured_bc.is_none() {
        let _ = writeln!(w, "# Sign-outs at doorman end Apache's session too (OIDC Back-Channel Logout) with, in that entry:");
        let _ = writeln!(
            w,
            "#   backchannel_logout_uri = \"{redirect}?logout=backchannel\""
        );
    }
    let _ = writeln!(
        w,
        "OIDCProviderMetadataURL {}/.well-known/openid-configuration",
        base(config)
    );
    let _ = writeln!(w, "OIDCClientID {id}");
    let _ = writeln!(w, "OIDCClientSecret <the client's secret>");
    let _ = writeln!(w, "OIDCRedirectURI {redirect}");
    let _ = writeln!(w, "OIDCCryptoPassphrase <a long random string>");
    let _ = writeln!(w, "OIDCScope \"openid email profile groups\"");
    let _ = writeln!(w, "OIDCPKCEMethod S256");
    let _ = writeln!(w, "OIDCRemoteUserClaim preferred_username");
    let _ = writeln!(w, "<Location />");
    let _ = writeln!(w, "    AuthType openid-connect");
    let _ = writeln!(w, "    Require valid-user");
    let _ = writeln!(w, "</Location>");
    let _ = writeln!(
        w,
        "# Claims reach the app as OIDC_CLAIM_* headers, e.g. OIDC_CLAIM_email, OIDC_CLAIM_groups"
    );
    let _ = writeln!(
        w,
        "# (mod_auth_openidc removes client-sent copies). Identity headers a client sends itself never"
    );
    let _ = writeln!(w, "# reach the app either (a2enmod headers):");
    for h in IDENTITY {
        let _ = writeln!(w, "RequestHeader unset {h} early");
        let _ = writeln!(w, "RequestHeader unset {} early", h.replace('-', "_"));
    }
    w
}

/// `client`: `--client`'s or the one named "cloudflare"; else the first that redirects to
/// Cloudflare Access.
pub fn cloudflare(config: &Config, client: Option<&ClientConfig>) -> String {
    let mut w = String::new();
    let b = base(config);
    let client = client.or_else(|| {
        config.clients.iter().find(|c| {
            c.redirect_uris
                .iter()
                .any(|r| r.contains("cloudflareaccess.com"))
        })
    });
    // A new client's secret, made now and shown once.
    let fresh = client.is_none().then(|| {
        let secret = crate::secrets::random_token();
        let hash = crate::secrets::to_hex(&crate::secrets::digest(&secret));
        (secret, hash)
    });
    let id = client
        .map(|c| c.id.clone())
        .unwrap_or_else(|| "cloudflare".into());
    let _ = writeln!(
        w,
        "# Cloudflare Zero Trust → Settings → Authentication → Add new → OpenID Connect:"
    );
    let _ = writeln!(w, "#   Name:             doorman");
    let _ = writeln!(w, "#   App ID:           {id}");
    match &fresh {
        Some((secret, _)) => {
            let _ = writeln!(w, "#   Client secret:    {secret}");
        }
        None => {
            let _ = writeln!(w, "#   Client secret:    <the client's secret: doorman keeps only its hash; `doorman client secret` makes a new one>");
        }
    }
    let _ = writeln!(w, "#   Auth URL:         {b}/authorize");
    let _ = writeln!(w, "#   Token URL:        {b}/token");
    let _ = writeln!(w, "#   Certificate URL:  {b}/jwks.json");
    let _ = writeln!(w, "#   PKCE:             on");
    let _ = writeln!(
        w,
        "#   OIDC Claims:      {}",
        CLOUDFLARE_OIDC_CLAIMS.join(", ")
    );
    if let Some((_, hash)) = &fresh {
        let _ = writeln!(
            w,
            "# doorman side (no Cloudflare client is registered yet; its secret above is shown only now):"
        );
        let _ = writeln!(w, "[[clients]]");
        let _ = writeln!(w, "id = \"{id}\"");
        let _ = writeln!(w, "name = \"Cloudflare Access\"");
        let _ = writeln!(w, "secret_hash = \"{hash}\"");
        let _ = writeln!(w, "redirect_uris = [\"https://<your-team>.cloudflareaccess.com/cdn-cgi/access/callback\"]");
        let _ = writeln!(w, "id_token_claims = \"all\"");
    }
    let _ = writeln!(
        w,
        "# Checking Access tokens at your origins with forward-auth:"
    );
    let _ = writeln!(w, "[forward_auth.cloudflare]");
    let team = config
        .forward_auth
        .cloudflare
        .as_ref()
        .map(|c| c.team_domain.clone())
        .unwrap_or_else(|| "https://<your-team>.cloudflareaccess.com".into());
    let _ = writeln!(w, "team_domain = \"{team}\"");
    let apps = config
        .forward_auth
        .cloudflare
        .as_ref()
        .map(|c| c.apps.clone())
        .unwrap_or_default();
    if apps.is_empty() {
        let _ = writeln!(w, "[[forward_auth.cloudflare.apps]]");
        let _ = writeln!(w, "host = \"app.example.com\"");
        let _ = writeln!(w, "aud = \"<the Access application's AUD tag>\"");
    }
    for (host, aud) in &apps {
        let _ = writeln!(w, "[[forward_auth.cloudflare.apps]]");
        let _ = writeln!(w, "host = \"{}\"", host.0);
        let _ = writeln!(w, "aud = \"{aud}\"");
    }
    w
}

/// What to enter in Cloudflare's "OIDC Claims" for doorman (the README shows the same list).
pub const CLOUDFLARE_OIDC_CLAIMS: [&str; 4] = ["email", "groups", "preferred_username", "name"];
