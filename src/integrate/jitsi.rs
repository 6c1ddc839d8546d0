//! Jitsi Meet: docker-jitsi-meet `.env` lines, the Prosody lines of a Debian install, and the
//! config.js lines of Jitsi's native OIDC mode.

use std::fmt::Write;

use crate::config::{AccessTokenFormat, Config};

/// A Lua string literal, escaped (a secret with `"` or `\` would otherwise become another
/// secret, or a config Prosody cannot parse).
fn lua(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A docker compose `.env` value: bare when plain, else single-quoted (no `$` expansion), or
/// double-quoted with escapes when it holds a single quote.
fn env(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=@,".contains(c))
    {
        v.to_string()
    } else if !v.contains('\'') {
        format!("'{v}'")
    } else {
        format!(
            "\"{}\"",
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
        )
    }
}

pub fn render(config: &Config) -> Result<String, String> {
    let j = config.jitsi.as_ref().ok_or("no [jitsi] table in the configuration: add meet_url, app_id and app_secret first (see config/doorman.example.toml)")?;
    let issuer = config.issuer_str();
    let host = j.meet_url.host_str().unwrap_or("meet.example.com");
    let mut out = String::new();
    let w = &mut out;
    // Writing to a String cannot fail.
    for line in [
        "# 1. docker-jitsi-meet: add to .env (it holds the app secret: keep it private), then run",
        "#    `docker compose up -d`: the containers are created again with the new .env and write",
        "#    their configuration from it (`docker compose restart` keeps the old values). Never",
        "#    delete the config directory (~/.jitsi-meet-cfg, or CONFIG in .env) for this: it holds",
        "#    the certificates and your custom plugins. Do not edit the generated files under",
        "#    ~/.jitsi-meet-cfg/prosody/config/ either (rewritten from .env at each start); config.js",
        "#    settings that have no variable go in ~/.jitsi-meet-cfg/web/custom-config.js (appended to",
        "#    config.js at start), Prosody modules of your own in",
        "#    ~/.jitsi-meet-cfg/prosody/prosody-plugins-custom/.",
    ] {
        let _ = writeln!(w, "{line}");
    }
    let _ = writeln!(w, "ENABLE_AUTH=1");
    let _ = writeln!(w, "AUTH_TYPE=jwt");
    let _ = writeln!(w, "ENABLE_GUESTS=1");
    let _ = writeln!(w, "JWT_APP_ID={}", env(&j.app_id));
    let _ = writeln!(w, "JWT_APP_SECRET={}", env(&j.app_secret));
    let _ = writeln!(w, "JWT_ACCEPTED_ISSUERS={}", env(&j.issuer));
    let _ = writeln!(w, "JWT_ACCEPTED_AUDIENCES={}", env(&j.audience));
    let _ = writeln!(w, "TOKEN_AUTH_URL={issuer}/jitsi/{{room}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Moderators chosen by doorman's moderator_groups (affiliation \"owner\" in the token)"
    );
    let _ = writeln!(
        w,
        "# instead of every signed-in user: also set the lines below. token_affiliation is"
    );
    let _ = writeln!(
        w,
        "# jitsi-contrib's prosody-plugins module: docker-jitsi-meet ships it in"
    );
    let _ = writeln!(
        w,
        "# /prosody-plugins-contrib from stable-9457 on; on older releases (or jitsi-contrib's"
    );
    let _ = writeln!(
        w,
        "# prosody-plugins) copy its token_affiliation/mod_token_affiliation.lua into"
    );
    let _ = writeln!(w, "# ~/.jitsi-meet-cfg/prosody/prosody-plugins-custom/.");
    let _ = writeln!(w, "JICOFO_ENABLE_AUTH=0");
    let _ = writeln!(w, "ENABLE_AUTO_OWNER=0");
    let _ = writeln!(w, "XMPP_MUC_MODULES=token_affiliation");
    let _ = writeln!(w);
    let _ = writeln!(w, "# 2. Prosody without docker (jitsi-meet-tokens installed), /etc/prosody/conf.d/{host}.cfg.lua:");
    let _ = writeln!(w, "#    in the existing VirtualHost \"{host}\" block, set (replacing its authentication line):");
    let _ = writeln!(w, "    authentication = \"token\"");
    let _ = writeln!(w, "    app_id = {}", lua(&j.app_id));
    let _ = writeln!(w, "    app_secret = {}", lua(&j.app_secret));
    let _ = writeln!(w, "    asap_accepted_issuers = {{ {} }}", lua(&j.issuer));
    let _ = writeln!(
        w,
        "    asap_accepted_audiences = {{ {} }}",
        lua(&j.audience)
    );
    let _ = writeln!(w, "    allow_empty_token = false");
    let _ = writeln!(
        w,
        "#    and add \"token_verification\" to the existing modules_enabled list of the"
    );
    let _ = writeln!(
        w,
        "#    Component \"conference.{host}\" \"muc\" block (keep every module Jitsi put there):"
    );
    let _ = writeln!(
        w,
        "#        modules_enabled = {{ ...the modules already there...; \"token_verification\"; }}"
    );
    let _ = writeln!(
        w,
        "#    For moderators by group add \"token_affiliation\" to that list too: it is not in"
    );
    let _ = writeln!(w, "#    jitsi-meet-prosody; copy token_affiliation/mod_token_affiliation.lua from jitsi-contrib's");
    let _ = writeln!(
        w,
        "#    prosody-plugins into a directory of your own listed in plugin_paths (not"
    );
    let _ = writeln!(
        w,
        "#    /usr/share/jitsi-meet/prosody-plugins, which upgrades replace)."
    );
    let _ = writeln!(
        w,
        "# and in /etc/jitsi/meet/{host}-config.js: tokenAuthUrl: '{issuer}/jitsi/{{room}}',"
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# 3. Or Jitsi's native OIDC mode (no bridge): a public client in doorman.toml"
    );
    let native = config
        .clients
        .iter()
        .find(|c| matches!(c.access_token_format, AccessTokenFormat::Jwt { .. }));
    let (client_id, audience) = match native {
        Some(c) => (
            c.id.clone(),
            match &c.access_token_format {
                AccessTokenFormat::Jwt { audience } => audience.clone(),
                AccessTokenFormat::Opaque => "account".into(),
            },
        ),
        None => ("jitsi".to_string(), "account".to_string()),
    };
    let meet = j.meet_url.as_str().trim_end_matches('/');
    let origin = j.meet_url.origin().ascii_serialization();
    let _ = writeln!(w, "#   [[clients]]");
    let _ = writeln!(w, "#   id = \"{client_id}\"");
    let _ = writeln!(w, "#   public = true");
    let _ = writeln!(w, "#   redirect_uris = [\"{meet}/static/sso.html\"]");
    let _ = writeln!(
        w,
        "#   post_logout_redirect_uris = [\"{meet}/static/logout.html\"]"
    );
    let _ = writeln!(w, "#   allowed_origins = [\"{origin}\"]");
    let _ = writeln!(w, "#   access_token_format = \"jwt\"");
    let _ = writeln!(w, "#   access_token_audience = \"{audience}\"");
    let _ = writeln!(
        w,
        "# with Prosody verifying RS256 tokens against doorman's keys:"
    );
    let _ = writeln!(
        w,
        "#   JWT_ASAP_KEYSERVER= (unset)   cache_keys_url = \"{issuer}/jwks.json\""
    );
    let _ = writeln!(w, "#   asap_accepted_issuers = {{ \"{issuer}\" }}  asap_accepted_audiences = {{ \"{audience}\" }}  asap_require_room_claim = false");
    let _ = writeln!(
        w,
        "# and domain verification off: these tokens carry the user's id in sub, which Prosody"
    );
    let _ = writeln!(w, "# would otherwise take for the meeting's domain and refuse at join (jitsi-meet's token plugin");
    let _ = writeln!(
        w,
        "# turns it on by default, and so did docker-jitsi-meet from stable-7648 to stable-8218):"
    );
    let _ = writeln!(w, "#   enable_domain_verification = false   (docker .env: JWT_ENABLE_DOMAIN_VERIFICATION=false)");
    let token_service = issuer
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(issuer);
    let _ = writeln!(w, "# and in config.js:");
    let _ = writeln!(w, "#   tokenAuthUrl: '{issuer}/authorize?client_id={client_id}&response_type=code&scope=openid%20profile%20email&state={{state}}&redirect_uri={meet}/static/sso.html&code_challenge={{code_challenge}}&code_challenge_method=S256',");
    let _ = writeln!(
        w,
        "#   tokenAuthInline: true, tokenAuthUrlAutoRedirect: true,"
    );
    let _ = writeln!(w, "#   tokenLogoutUrl: '{issuer}/logout?client_id={client_id}&post_logout_redirect_uri={meet}/static/logout.html',");
    let _ = writeln!(w, "#   sso: {{ ssoService: '{token_service}', tokenService: '{token_service}', clientId: '{client_id}' }},");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{env, lua};

    #[test]
    fn values_survive_lua_and_compose_quoting() {
        assert_eq!(lua("plain"), "\"plain\"");
        assert_eq!(lua("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(env("abc-123"), "abc-123");
        assert_eq!(env("a$b c"), "'a$b c'");
        assert_eq!(env("it's $x"), "\"it's $$x\"");
    }
}
