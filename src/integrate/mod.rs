//! `doorman integrate <app>`: configuration snippets for the other side of an integration,
//! rendered from the loaded config, so what people paste matches what doorman expects.

mod jitsi;

use crate::config::Config;

/// The apps `integrate` knows, for the help text and the error.
pub const APPS: &[&str] = &["jitsi"];

pub fn render(app: &str, config: &Config) -> Result<String, String> {
    match app {
        "jitsi" => jitsi::render(config),
        other => Err(format!("unknown app {other:?}; known: {}", APPS.join(", "))),
    }
}
