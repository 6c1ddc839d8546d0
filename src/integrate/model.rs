//! What `doorman integrate <app>` prints, as data: the client plan (the `[[clients]]` entry the
//! app uses, or the one to add) and ordered sections of fields, file snippets, commands and
//! notes. Rendered to text for people or serialised to JSON for scripts; both come from the
//! same value, so they cannot say different things.

use std::fmt::Write;

use serde::Serialize;

use crate::config::{AuthMethod, ClientConfig, Config};

#[derive(Debug, Clone, Serialize)]
pub struct Integration {
    pub app: String,
    /// One line: what this is (empty for the snippets that carry their own header).
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientPlan>,
    pub sections: Vec<Section>,
}

/// The doorman side of an app that is a relying party.
#[derive(Debug, Clone, Serialize)]
pub struct ClientPlan {
    pub id: String,
    /// The `[[clients]]` entry exists; else `toml` is the block to add.
    pub configured: bool,
    pub redirect_uris: Vec<String>,
    /// How the app sends its secret to /token.
    pub token_endpoint_auth_method: String,
    pub pkce: bool,
    /// The scopes the app asks for.
    pub scopes: Vec<String>,
    /// What to paste into the app as its secret: a fresh one for a new client (shown once),
    /// else a placeholder (doorman keeps only a hash).
    pub secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Field {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Section {
    /// Form fields in the app's settings page, in the order the page shows them.
    Fields {
        title: String,
        fields: Vec<Field>,
    },
    /// Lines for a file (`path` when it has a usual one).
    File {
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        content: String,
    },
    /// A command line to run on the app's host.
    Command {
        title: String,
        command: String,
    },
    Note {
        text: String,
    },
}

impl Section {
    pub fn fields(title: &str, fields: &[(&str, String)]) -> Self {
        Section::Fields {
            title: title.into(),
            fields: fields
                .iter()
                .map(|(l, v)| Field {
                    label: (*l).into(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    pub fn file(title: &str, path: Option<&str>, content: String) -> Self {
        Section::File {
            title: Some(title.into()),
            path: path.map(str::to_string),
            content,
        }
    }

    pub fn note(text: &str) -> Self {
        Section::Note { text: text.into() }
    }
}

impl Integration {
    /// A snippet that is its own text (the proxies, Apache, Cloudflare, Jitsi).
    pub fn snippet(app: &str, content: String) -> Self {
        Integration {
            app: app.into(),
            title: String::new(),
            client: None,
            sections: vec![Section::File {
                title: None,
                path: None,
                content,
            }],
        }
    }

    pub fn text(&self) -> String {
        let mut w = String::new();
        if !self.title.is_empty() {
            let _ = writeln!(w, "# {}", self.title);
            let _ = writeln!(w);
        }
        if let Some(c) = &self.client {
            client_text(&mut w, c);
        }
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 || self.client.is_some() {
                let _ = writeln!(w);
            }
            section_text(&mut w, s);
        }
        w
    }

    pub fn json(&self) -> String {
        // Serialising plain strings, bools and lists cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

fn client_text(w: &mut String, c: &ClientPlan) {
    match &c.toml {
        Some(toml) => {
            let _ = writeln!(
                w,
                "# doorman side: no [[clients]] entry has id \"{}\" yet. Add this one to doorman.toml",
                c.id
            );
            let _ = writeln!(
                w,
                "# (edit the placeholder host of its redirect URIs) and restart doorman. Its secret is"
            );
            let _ = writeln!(
                w,
                "# shown only now: it is filled in below; doorman keeps only its hash."
            );
            let _ = write!(w, "{toml}");
        }
        None => {
            let _ = writeln!(
                w,
                "# doorman side: the [[clients]] entry \"{}\" (redirect_uris = [{}]).",
                c.id,
                c.redirect_uris
                    .iter()
                    .map(|u| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

fn section_text(w: &mut String, s: &Section) {
    match s {
        Section::Fields { title, fields } => {
            let _ = writeln!(w, "# {title}");
            let width = fields.iter().map(|f| f.label.len()).max().unwrap_or(0) + 1;
            for f in fields {
                let label = format!("{}:", f.label);
                let _ = writeln!(w, "  {label:<width$} {}", f.value, width = width);
            }
        }
        Section::File {
            title,
            path,
            content,
        } => {
            match (title, path) {
                (Some(t), Some(p)) => {
                    let _ = writeln!(w, "# {t} ({p}):");
                }
                (Some(t), None) => {
                    let _ = writeln!(w, "# {t}:");
                }
                _ => {}
            }
            let _ = write!(w, "{content}");
            if !content.ends_with('\n') {
                let _ = writeln!(w);
            }
        }
        Section::Command { title, command } => {
            let _ = writeln!(w, "# {title}:");
            let _ = writeln!(w, "{command}");
        }
        Section::Note { text } => {
            for line in text.lines() {
                let _ = writeln!(w, "# {line}");
            }
        }
    }
}

/// What an app needs of its doorman client; the block for a new one is derived from it.
pub struct ClientSpec {
    /// Display name for the login page.
    pub name: &'static str,
    /// Paths of the app's usual redirect URIs, on `https://<app>.example.com`.
    pub redirect_paths: &'static [&'static str],
    /// None: the app picks (doorman accepts Basic or post).
    pub auth_method: Option<AuthMethod>,
    pub pkce: bool,
    /// The scopes the app asks for.
    pub scopes: &'static [&'static str],
    /// More lines for the new client's block (`id_token_claims = "all"`, ...).
    pub extra: &'static [&'static str],
}

/// The configured client the app uses: `--client ID` (which must exist), else the one whose id
/// is the app's name, else none (the output then prints the block to add).
pub fn resolve_client<'a>(
    config: &'a Config,
    app: &str,
    flag: Option<&str>,
) -> Result<Option<&'a ClientConfig>, String> {
    match flag {
        Some(id) => config
            .clients
            .iter()
            .find(|c| c.id == id)
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<&str> = config.clients.iter().map(|c| c.id.as_str()).collect();
                if known.is_empty() {
                    format!("--client {id:?}: no [[clients]] entry has that id, and none is configured; add one first (see `doorman integrate {app}` without --client)")
                } else {
                    format!(
                        "--client {id:?}: no [[clients]] entry has that id; configured: {}",
                        known.join(", ")
                    )
                }
            }),
        None => Ok(config.clients.iter().find(|c| c.id == app)),
    }
}

pub fn method_name(m: Option<AuthMethod>) -> &'static str {
    match m {
        Some(AuthMethod::ClientSecretBasic) => "client_secret_basic",
        Some(AuthMethod::ClientSecretPost) => "client_secret_post",
        Some(AuthMethod::None) => "none",
        None => "client_secret_basic or client_secret_post",
    }
}

/// A TOML basic string (JSON's string escapes are all valid TOML ones).
pub fn toml_str(v: &str) -> String {
    json_str(v)
}

/// A JSON string literal.
pub fn json_str(v: &str) -> String {
    serde_json::Value::String(v.to_string()).to_string()
}

/// The client plan for `app`: the configured client, or a new one with a fresh secret.
pub fn plan(app: &str, spec: &ClientSpec, client: Option<&ClientConfig>) -> ClientPlan {
    let scopes: Vec<String> = spec.scopes.iter().map(|s| s.to_string()).collect();
    match client {
        Some(c) => ClientPlan {
            id: c.id.clone(),
            configured: true,
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: method_name(c.token_endpoint_auth_method).into(),
            pkce: spec.pkce || c.require_pkce,
            scopes,
            secret: format!(
                "<the secret of client \"{}\": doorman keeps only its hash; for a new one run `doorman client secret` and put its secret_hash on the client>",
                c.id
            ),
            secret_hash: None,
            toml: None,
        },
        None => {
            let secret = crate::secrets::random_token();
            let hash = crate::secrets::to_hex(&crate::secrets::digest(&secret));
            let redirect_uris: Vec<String> = spec
                .redirect_paths
                .iter()
                .map(|p| format!("https://{app}.example.com{p}"))
                .collect();
            let mut t = String::new();
            let _ = writeln!(t, "[[clients]]");
            let _ = writeln!(t, "id = {}", toml_str(app));
            let _ = writeln!(t, "name = {}", toml_str(spec.name));
            let _ = writeln!(t, "secret_hash = {}", toml_str(&hash));
            let _ = writeln!(
                t,
                "redirect_uris = [{}]",
                redirect_uris
                    .iter()
                    .map(|u| toml_str(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(m) = spec.auth_method {
                let _ = writeln!(
                    t,
                    "token_endpoint_auth_method = {}",
                    toml_str(method_name(Some(m)))
                );
            }
            if spec.pkce {
                let _ = writeln!(t, "require_pkce = true");
            }
            for line in spec.extra {
                let _ = writeln!(t, "{line}");
            }
            ClientPlan {
                id: app.into(),
                configured: false,
                redirect_uris,
                token_endpoint_auth_method: method_name(spec.auth_method).into(),
                pkce: spec.pkce,
                scopes,
                secret,
                secret_hash: Some(hash),
                toml: Some(t),
            }
        }
    }
}

impl ClientPlan {
    /// The app's base URL and the variable part of the first redirect URI that has `marker` in
    /// its path: `https://cloud.example.com/nc` and `doorman` from
    /// `https://cloud.example.com/nc/apps/sociallogin/custom_oidc/doorman` with marker
    /// `/apps/sociallogin/custom_oidc/`. Without a match: the first URI's origin and "".
    pub fn split(&self, marker: &str) -> (String, String) {
        for u in &self.redirect_uris {
            if let Some((base, rest)) = u.split_once(marker) {
                let rest = rest.split(['?', '#']).next().unwrap_or_default();
                return (
                    base.trim_end_matches('/').to_string(),
                    rest.trim_end_matches('/').to_string(),
                );
            }
        }
        let origin = self
            .redirect_uris
            .first()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|| "https://app.example.com".into());
        (origin, String::new())
    }

    /// The first redirect URI that contains `marker`, else the first one.
    pub fn redirect_with(&self, marker: &str) -> String {
        self.redirect_uris
            .iter()
            .find(|u| u.contains(marker))
            .or(self.redirect_uris.first())
            .cloned()
            .unwrap_or_default()
    }
}
