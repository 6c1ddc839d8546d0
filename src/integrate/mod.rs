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
        other => Err(format!("unknown app {other:?}; known: {}", APPS.join(", "))),
    }
}
