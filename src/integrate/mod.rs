//! `doorman integrate <app>`: configuration snippets for the other side of an integration,
//! rendered from the loaded config, so what people paste matches what doorman expects.

mod jitsi;
mod proxies;

use crate::config::Config;

/// The apps `integrate` knows, for the help text and the error.
pub const APPS: &[&str] = &["traefik", "caddy", "nginx", "apache", "cloudflare", "jitsi"];

/// `client` picks the [[clients]] entry for apps that are relying parties (apache).
pub fn render(app: &str, config: &Config, client: Option<&str>) -> Result<String, String> {
    match app {
        "jitsi" => jitsi::render(config),
        "nginx" => Ok(proxies::nginx(config)),
        "caddy" => Ok(proxies::caddy(config)),
        "traefik" => Ok(proxies::traefik(config)),
        "apache" => Ok(proxies::apache(config, client)),
        "cloudflare" => Ok(proxies::cloudflare(config)),
        other => Err(format!("unknown app {other:?}; known: {}", APPS.join(", "))),
    }
}
