//! The relying-party apps: Nextcloud (Social Login), Jellyfin (9p4 SSO plugin), Mastodon,
//! Etherpad (ep_openid_connect), Grafana (generic_oauth), Gitea/Forgejo, Immich. Each says what
//! its doorman client needs (`ClientSpec`) and what to paste on the app's side, from the loaded
//! config. Facts per app: ../shared/reference/relying-parties.md and the apps' own docs.

use crate::config::{AuthMethod, ClientConfig, Config, IdTokenClaims};
use crate::oidc::paths;

use super::model::{self, json_str, plan, ClientPlan, ClientSpec, Integration, Section};

/// doorman's endpoints as an app sees them.
struct Op {
    issuer: String,
}

impl Op {
    fn new(config: &Config) -> Self {
        Op {
            issuer: config.issuer_str().to_string(),
        }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
    fn discovery(&self) -> String {
        self.url(paths::DISCOVERY)
    }
}

/// The display name of the provider inside apps that name it (Nextcloud, Jellyfin, Gitea).
const PROVIDER: &str = "doorman";

fn or_provider(name: String) -> String {
    if name.is_empty() {
        PROVIDER.into()
    } else {
        name
    }
}

fn integration(
    app: &str,
    title: &str,
    plan: ClientPlan,
    mut sections: Vec<Section>,
    spec: &ClientSpec,
    client: Option<&ClientConfig>,
) -> Integration {
    if let Some(c) = client {
        sections.extend(
            mismatches(spec, c)
                .iter()
                .map(|m| Section::note(&format!("Warning: client \"{}\" {m}.", c.id))),
        );
    }
    Integration {
        app: app.into(),
        title: title.into(),
        client: Some(plan),
        sections,
    }
}

/// Where a configured client would refuse what the app does.
fn mismatches(spec: &ClientSpec, c: &ClientConfig) -> Vec<String> {
    let mut out = Vec::new();
    if c.public {
        out.push(format!(
            "is public (no secret), but {} authenticates with a secret; remove public = true and give it a secret_hash",
            spec.name
        ));
    }
    if let Some(allowed) = &c.scopes {
        let missing: Vec<&str> = spec
            .scopes
            .iter()
            .copied()
            .filter(|s| !allowed.iter().any(|a| a == s))
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "may not be granted {} which {} asks for; add it to its scopes",
                missing.join(" "),
                spec.name
            ));
        }
    }
    if let (Some(wanted), Some(set)) = (spec.auth_method, c.token_endpoint_auth_method) {
        if wanted != set && !c.public {
            out.push(format!(
                "has token_endpoint_auth_method = \"{}\", but {} uses {}; remove the key or set that",
                model::method_name(Some(set)),
                spec.name,
                model::method_name(Some(wanted))
            ));
        }
    }
    if c.require_pkce && !spec.pkce {
        out.push(format!(
            "requires PKCE, which {} does not send as printed here",
            spec.name
        ));
    }
    out
}

/// A warning when an existing client would not give the app the claims it reads.
fn claims_warning(client: Option<&ClientConfig>, why: &str, sections: &mut Vec<Section>) {
    if let Some(c) = client {
        if c.id_token_claims != IdTokenClaims::All {
            sections.push(Section::note(&format!(
                "Warning: client \"{}\" has id_token_claims = \"scoped\": {why}; set id_token_claims = \"all\" on it.",
                c.id
            )));
        }
    }
}

pub const NEXTCLOUD: ClientSpec = ClientSpec {
    name: "Nextcloud",
    redirect_paths: &["/apps/sociallogin/custom_oidc/doorman"],
    auth_method: None,
    pkce: false,
    scopes: &["openid"],
    extra: &[
        "# Social Login asks only for scope openid and reads every claim from the id_token:",
        "id_token_claims = \"all\"",
    ],
};

pub fn nextcloud(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("nextcloud", &NEXTCLOUD, client);
    let (_, name) = p.split("/apps/sociallogin/custom_oidc/");
    let name = or_provider(name);
    // With [compat] keycloak_paths the Keycloak URLs work too: a Social Login set up for
    // Keycloak keeps its paths and changes only the host.
    let (authorize, token, logout) = if config.compat.keycloak_paths {
        use paths::keycloak as kc;
        (op.url(kc::AUTH), op.url(kc::TOKEN), op.url(kc::LOGOUT))
    } else {
        (
            op.url(paths::AUTHORIZE),
            op.url(paths::TOKEN),
            op.url(paths::LOGOUT),
        )
    };
    let mut sections = vec![
        Section::fields(
            "Nextcloud: Settings > Administration > Social login > Custom OpenID Connect > +",
            &[
                ("Internal name", name.clone()),
                ("Title", PROVIDER.into()),
                ("Authorize url", authorize),
                ("Token url", token),
                ("Display name claim (optional)", "name".into()),
                ("Username claim (optional)", "preferred_username".into()),
                (
                    "User info URL (optional)",
                    "(leave empty: the id_token carries every claim)".into(),
                ),
                ("Logout URL (optional)", logout),
                ("Client Id", p.id.clone()),
                ("Client Secret", p.secret.clone()),
                ("Scope", "openid".into()),
                ("Groups claim (optional)", "groups".into()),
                ("Default group", "None".into()),
            ],
        ),
        Section::note(&format!(
            "The redirect URI Nextcloud uses is {}\n\
             (with /index.php/ before apps/ when pretty URLs are off: register that one then).\n\
             Leave \"Disable auto create new users\" unchecked; check \"Prevent creating an account if the\n\
             email address exists in another account\".",
            p.redirect_with("/apps/sociallogin/custom_oidc/")
        )),
    ];
    claims_warning(
        client,
        "with scope openid Nextcloud would get only sub",
        &mut sections,
    );
    integration(
        "nextcloud",
        "Nextcloud (Social Login app, Custom OpenID Connect) with doorman",
        p,
        sections,
        &NEXTCLOUD,
        client,
    )
}

pub const JELLYFIN: ClientSpec = ClientSpec {
    name: "Jellyfin",
    redirect_paths: &["/sso/OID/redirect/doorman"],
    auth_method: Some(AuthMethod::ClientSecretPost),
    pkce: true,
    scopes: &["openid", "profile"],
    extra: &[
        "# The SSO plugin asks only for openid profile; its Role Claim reads the groups here:",
        "roles_claim = \"realm_access.roles\"",
    ],
};

pub fn jellyfin(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("jellyfin", &JELLYFIN, client);
    let (base, name) = p.split("/sso/OID/redirect/");
    let name = or_provider(name);
    // Where the plugin finds the groups: the client's roles_claim, else `groups` (in the
    // id_token only with id_token_claims = "all", since the plugin asks for openid profile).
    let role_claim = match client {
        None => "realm_access.roles".to_string(),
        Some(c) => match &c.roles_claim {
            Some(path) => path.join("."),
            None => "groups".into(),
        },
    };
    let roles = client
        .and_then(|c| c.allowed_groups.clone())
        .map(|g| g.join(", "))
        .unwrap_or_else(|| "jellyfin-users".into());
    let mut sections = vec![
        Section::fields(
            "Jellyfin: Dashboard > Plugins > SSO-Auth (repository https://raw.githubusercontent.com/9p4/jellyfin-plugin-sso/manifest-release/manifest.json), add a provider",
            &[
                ("Name of the OID Provider", name.clone()),
                ("OID Endpoint", op.issuer.clone()),
                ("OpenID Client ID", p.id.clone()),
                ("OID Secret", p.secret.clone()),
                ("Enabled", "checked".into()),
                ("Enable Authorization by Plugin", "checked".into()),
                ("Enable All Folders", "checked (or pick the Enabled Folders)".into()),
                ("Roles", roles),
                ("Admin Roles", "jellyfin-admins".into()),
                ("Role Claim", role_claim),
                ("Request Additional Scopes", "(leave empty)".into()),
                ("Set default username claim", "preferred_username".into()),
            ],
        ),
        Section::file(
            "A sign-in button: Dashboard > General > Branding > Login disclaimer",
            None,
            format!(
                "<form action=\"{base}/sso/OID/start/{name}\"><button class=\"raised block emby-button button-submit\">Single Sign-On</button></form>\n"
            ),
        ),
        Section::note(
            "Roles and Admin Roles are doorman groups (`doorman user set NAME --groups jellyfin-users`).\n\
             Restart Jellyfin after installing the plugin and after saving the provider.",
        ),
    ];
    if client.is_some_and(|c| c.roles_claim.is_none()) {
        claims_warning(
            client,
            "with scope openid profile the Role Claim groups would be missing (or set roles_claim = \"realm_access.roles\")",
            &mut sections,
        );
    }
    integration(
        "jellyfin",
        "Jellyfin (9p4 SSO-Auth plugin) with doorman",
        p,
        sections,
        &JELLYFIN,
        client,
    )
}

pub const MASTODON: ClientSpec = ClientSpec {
    name: "Mastodon",
    redirect_paths: &["/auth/auth/openid_connect/callback"],
    auth_method: Some(AuthMethod::ClientSecretBasic),
    pkce: false,
    scopes: &["openid", "profile", "email"],
    extra: &[],
};

pub fn mastodon(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("mastodon", &MASTODON, client);
    let redirect = p.redirect_with("/auth/auth/openid_connect/callback");
    let env = [
        ("OIDC_ENABLED", "true".to_string()),
        ("OIDC_DISPLAY_NAME", PROVIDER.into()),
        ("OIDC_ISSUER", op.issuer.clone()),
        ("OIDC_DISCOVERY", "true".into()),
        ("OIDC_SCOPE", "openid,profile,email".into()),
        ("OIDC_UID_FIELD", "preferred_username".into()),
        ("OIDC_CLIENT_ID", p.id.clone()),
        ("OIDC_CLIENT_SECRET", p.secret.clone()),
        ("OIDC_REDIRECT_URI", redirect),
        ("OIDC_CLIENT_AUTH_METHOD", "basic".into()),
    ];
    let content: String = env
        .iter()
        .map(|(k, v)| format!("{k}={}\n", env_value(v)))
        .collect();
    let sections = vec![
        Section::file("Mastodon", Some(".env.production"), content),
        Section::note(
            "preferred_username (the doorman username) becomes the @handle, which is permanent in the\n\
             fediverse. doorman sends email_verified, so OIDC_SECURITY_ASSUME_EMAIL_IS_VERIFIED stays unset.\n\
             Restart Mastodon's web and sidekiq processes after editing.",
        ),
    ];
    integration(
        "mastodon",
        "Mastodon (OmniAuth OpenID Connect) with doorman",
        p,
        sections,
        &MASTODON,
        client,
    )
}

/// A `.env` value: bare when plain, else single-quoted (no expansion).
fn env_value(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/,+=@".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

pub const ETHERPAD: ClientSpec = ClientSpec {
    name: "Etherpad",
    redirect_paths: &["/ep_openid_connect/callback"],
    auth_method: None,
    pkce: false,
    scopes: &["openid", "profile"],
    extra: &[],
};

pub fn etherpad(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("etherpad", &ETHERPAD, client);
    let (base_url, _) = p.split("/ep_openid_connect/callback");
    let block = |issuer: &str, id: &str, secret: &str, base: &str, require: &str| {
        format!(
            "  \"requireAuthentication\": {require},\n  \"ep_openid_connect\": {{\n    \"issuer\": {},\n    \"client_id\": {},\n    \"client_secret\": {},\n    \"base_url\": {},\n    \"scope\": [\"openid\", \"profile\"]\n  }},\n",
            json_str(issuer),
            json_str(id),
            json_str(secret),
            json_str(base)
        )
    };
    let sections = vec![
        Section::file(
            "Etherpad with the ep_openid_connect plugin",
            Some("settings.json"),
            block(&op.issuer, &p.id, &p.secret, &base_url, "true"),
        ),
        Section::file(
            "Or in Docker: the same block read from the environment",
            Some("settings.json"),
            block(
                "${OIDC_ISSUER:undefined}",
                "${OIDC_CLIENT_ID:undefined}",
                "${OIDC_CLIENT_SECRET:undefined}",
                "${OIDC_BASE_URL:undefined}",
                "\"${REQUIRE_AUTHENTICATION:false}\"",
            ),
        ),
        Section::file(
            "and the environment it reads, in the container's environment or compose's",
            Some(".env"),
            format!(
                "OIDC_ISSUER={}\nOIDC_CLIENT_ID={}\nOIDC_CLIENT_SECRET={}\nOIDC_BASE_URL={}\nREQUIRE_AUTHENTICATION=true\n",
                env_value(&op.issuer),
                env_value(&p.id),
                env_value(&p.secret),
                env_value(&base_url)
            ),
        ),
        Section::note(
            "The plugin must be in the image (ETHERPAD_PLUGINS=\"ep_openid_connect\" when building it).\n\
             Scope profile makes the display name (claim name) arrive; sub, the Etherpad username, is\n\
             doorman's opaque user id, never admin or guest (the plugin's prohibited_usernames).",
        ),
    ];
    integration(
        "etherpad",
        "Etherpad (ep_openid_connect) with doorman",
        p,
        sections,
        &ETHERPAD,
        client,
    )
}

pub const GRAFANA: ClientSpec = ClientSpec {
    name: "Grafana",
    redirect_paths: &["/login/generic_oauth"],
    auth_method: Some(AuthMethod::ClientSecretBasic),
    pkce: true,
    scopes: &["openid", "profile", "email", "groups"],
    extra: &[],
};

/// A JMESPath raw string literal.
fn jmes(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub fn grafana(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("grafana", &GRAFANA, client);
    let (root, _) = p.split("/login/generic_oauth");
    let role = format!(
        "contains(groups[*], {}) && 'Admin' || contains(groups[*], {}) && 'Editor' || 'Viewer'",
        jmes("grafana-admins"),
        jmes("grafana-editors")
    );
    let ini = format!(
        "[server]\nroot_url = {root}/\n\n[auth.generic_oauth]\nenabled = true\nname = {PROVIDER}\nallow_sign_up = true\nclient_id = {}\nclient_secret = {}\nscopes = {}\nauth_url = {}\ntoken_url = {}\napi_url = {}\nauth_style = InHeader\nuse_pkce = true\nlogin_attribute_path = preferred_username\nname_attribute_path = name\nemail_attribute_path = email\ngroups_attribute_path = groups\nrole_attribute_path = {role}\n",
        p.id,
        p.secret,
        GRAFANA.scopes.join(" "),
        op.url(paths::AUTHORIZE),
        op.url(paths::TOKEN),
        op.url(paths::USERINFO),
    );
    let sections = vec![
        Section::file("Grafana", Some("grafana.ini"), ini),
        Section::note(
            "Roles come from doorman groups: grafana-admins -> Admin, grafana-editors -> Editor, everyone\n\
             else Viewer (`doorman user set NAME --groups grafana-editors`). Restart Grafana after editing.",
        ),
    ];
    integration(
        "grafana",
        "Grafana (generic OAuth) with doorman",
        p,
        sections,
        &GRAFANA,
        client,
    )
}

pub const GITEA: ClientSpec = ClientSpec {
    name: "Gitea",
    redirect_paths: &["/user/oauth2/doorman/callback"],
    auth_method: None,
    pkce: false,
    scopes: &["openid", "profile", "email", "groups"],
    extra: &[],
};

pub const FORGEJO: ClientSpec = ClientSpec {
    name: "Forgejo",
    ..GITEA
};

/// A POSIX shell word.
fn sh(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/,+=@%".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// Gitea and Forgejo share `admin auth add-oauth` (Forgejo is a fork).
pub fn gitea(app: &str, config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let spec = if app == "forgejo" { &FORGEJO } else { &GITEA };
    let p = plan(app, spec, client);
    let (_, rest) = p.split("/user/oauth2/");
    let name = or_provider(rest.trim_end_matches("/callback").to_string());
    let mut cmd = format!(
        "{app} admin auth add-oauth \\\n  --name {} \\\n  --provider openidConnect \\\n  --key {} \\\n  --secret {} \\\n  --auto-discover-url {} \\\n",
        sh(&name),
        sh(&p.id),
        sh(&p.secret),
        sh(&op.discovery())
    );
    for s in spec.scopes {
        cmd.push_str(&format!("  --scopes {s} \\\n"));
    }
    cmd.push_str(&format!(
        "  --group-claim-name groups \\\n  --admin-group {}",
        sh(&format!("{app}-admins"))
    ));
    let sections = vec![
        Section::Command {
            title: format!(
                "{}: as the user {app} runs as, e.g. sudo -u git {app} --config /etc/{app}/app.ini admin auth add-oauth ...",
                spec.name
            ),
            command: cmd,
        },
        Section::note(&format!(
            "Members of the doorman group {app}-admins become site admins. The sign-in button is on {0}'s\n\
             login page; the callback {0} uses is {1}.",
            spec.name,
            p.redirect_with("/user/oauth2/")
        )),
    ];
    integration(
        app,
        &format!("{} (admin auth add-oauth) with doorman", spec.name),
        p,
        sections,
        spec,
        client,
    )
}

pub const IMMICH: ClientSpec = ClientSpec {
    name: "Immich",
    redirect_paths: &[
        "/auth/login",
        "/user-settings",
        "/api/oauth/mobile-redirect",
    ],
    auth_method: None,
    pkce: false,
    scopes: &["openid", "email", "profile"],
    extra: &[],
};

pub fn immich(config: &Config, client: Option<&ClientConfig>) -> Integration {
    let op = Op::new(config);
    let p = plan("immich", &IMMICH, client);
    let (base, _) = p.split("/auth/login");
    let sections = vec![
        Section::fields(
            "Immich: Administration > Settings > Authentication Settings > OAuth",
            &[
                ("Enabled", "on".into()),
                ("Issuer URL", op.issuer.clone()),
                ("Client ID", p.id.clone()),
                ("Client Secret", p.secret.clone()),
                ("Token Endpoint Auth Method", "client_secret_post".into()),
                ("Scope", IMMICH.scopes.join(" ")),
                ("Signing Algorithm", "RS256".into()),
                ("Profile Signing Algorithm", "none".into()),
                ("Storage Label Claim", "preferred_username".into()),
                ("Button Text", format!("Sign in with {PROVIDER}")),
                ("Auto Register", "on".into()),
                ("Auto Launch", "off".into()),
                ("Mobile Redirect URI Override", "on".into()),
                ("Mobile Redirect URI", format!("{base}/api/oauth/mobile-redirect")),
            ],
        ),
        Section::note(
            "The labels are Immich's own (its OAuth settings table). Signing Algorithm is the id_token's;\n\
             Profile Signing Algorithm none: doorman's userinfo is plain JSON. Token Endpoint Auth Method\n\
             is on newer Immich releases only; doorman takes Basic or post from this client either way.\n\
             doorman takes only http(s) redirect URIs, so the mobile app's app.immich:///oauth-callback\n\
             goes through the override above.",
        ),
    ];
    integration(
        "immich",
        "Immich (OAuth) with doorman",
        p,
        sections,
        &IMMICH,
        client,
    )
}
