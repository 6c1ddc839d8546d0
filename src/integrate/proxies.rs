//! Reverse proxies in front of apps (forward-auth), Apache as a relying party, and the
//! Cloudflare Access login method. Placeholders in <angle brackets> are for the operator.

use std::fmt::Write;

use crate::config::Config;

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

fn trusted_note(w: &mut String, config: &Config) {
    if config.forward_auth.rules.is_empty() {
        let _ = writeln!(w, "# doorman has no [[forward_auth.rules]] yet: every request is denied until you add some.");
    }
    if config.trusted_proxies.is_empty() {
        let _ = writeln!(w, "# doorman's trusted_proxies is empty: add the proxy's address, or its forward-auth checks are refused.");
    }
}

pub fn nginx(config: &Config) -> String {
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
    trusted_note(&mut w, config);
    let _ = writeln!(w, "location = /doorman-auth {{");
    let _ = writeln!(w, "    internal;");
    let _ = writeln!(w, "    proxy_pass {}/auth-request;", base(config));
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
    for h in all_headers(config) {
        let var = h.to_ascii_lowercase().replace('-', "_");
        let _ = writeln!(
            w,
            "    auth_request_set $doorman_{var} $upstream_http_{var};"
        );
        let _ = writeln!(w, "    proxy_set_header {h} $doorman_{var};");
    }
    let _ = writeln!(w, "    proxy_pass <http://your-app-for-{host}>;");
    let _ = writeln!(w, "}}");
    w
}

pub fn caddy(config: &Config) -> String {
    let mut w = String::new();
    let host = first_protected_host(config);
    let _ = writeln!(w, "# Caddyfile: one block per protected site.");
    trusted_note(&mut w, config);
    let _ = writeln!(w, "{host} {{");
    let _ = writeln!(
        w,
        "    # doorman's own address, not the public issuer (which may be this same Caddy)."
    );
    let _ = writeln!(w, "    forward_auth {} {{", direct(config));
    let _ = writeln!(w, "        uri {}/forward-auth", issuer_path(config));
    let _ = writeln!(w, "        copy_headers {}", all_headers(config).join(" "));
    let _ = writeln!(w, "    }}");
    let _ = writeln!(w, "    reverse_proxy <your-app:port> {{");
    let _ = writeln!(w, "        # Caddy passes underscore spellings on; CGI-style apps read Remote_User as REMOTE_USER.");
    let _ = writeln!(w, "        header_up -Remote_*");
    let _ = writeln!(w, "    }}");
    let _ = writeln!(w, "}}");
    w
}

pub fn traefik(config: &Config) -> String {
    let mut w = String::new();
    // doorman's own address: a check sent through the same Traefik would be rewritten.
    let address = format!(
        "http://{}{}/forward-auth",
        direct(config),
        issuer_path(config)
    );
    let headers = all_headers(config);
    let _ = writeln!(w, "# Traefik, dynamic configuration (file provider):");
    trusted_note(&mut w, config);
    let _ = writeln!(w, "http:");
    let _ = writeln!(w, "  middlewares:");
    let _ = writeln!(w, "    doorman:");
    let _ = writeln!(w, "      forwardAuth:");
    let _ = writeln!(w, "        address: \"{address}\"");
    let _ = writeln!(w, "        trustForwardHeader: true");
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
        "#   traefik.http.middlewares.doorman.forwardauth.trustForwardHeader=true"
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

pub fn apache(config: &Config, client: Option<&str>) -> String {
    let mut w = String::new();
    let c = client
        .and_then(|id| config.clients.iter().find(|c| c.id == id))
        .or_else(|| {
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
        "# Claims reach the app as OIDC_CLAIM_* headers, e.g. OIDC_CLAIM_email, OIDC_CLAIM_groups."
    );
    w
}

pub fn cloudflare(config: &Config) -> String {
    let mut w = String::new();
    let b = base(config);
    let client = config.clients.iter().find(|c| {
        c.redirect_uris
            .iter()
            .any(|r| r.contains("cloudflareaccess.com"))
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
    let _ = writeln!(
        w,
        "#   Client secret:    <the secret from `doorman client secret`>"
    );
    let _ = writeln!(w, "#   Auth URL:         {b}/authorize");
    let _ = writeln!(w, "#   Token URL:        {b}/token");
    let _ = writeln!(w, "#   Certificate URL:  {b}/jwks.json");
    let _ = writeln!(w, "#   PKCE:             on");
    let _ = writeln!(w, "#   OIDC Claims:      groups, preferred_username, name");
    if client.is_none() {
        let _ = writeln!(
            w,
            "# doorman side (no Cloudflare client is registered yet):"
        );
        let _ = writeln!(w, "[[clients]]");
        let _ = writeln!(w, "id = \"{id}\"");
        let _ = writeln!(w, "name = \"Cloudflare Access\"");
        let _ = writeln!(
            w,
            "secret_hash = \"<the secret_hash from `doorman client secret`>\""
        );
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
    let _ = writeln!(w, "[[forward_auth.cloudflare.apps]]");
    let _ = writeln!(w, "host = \"app.example.com\"");
    let _ = writeln!(w, "aud = \"<the Access application's AUD tag>\"");
    w
}
