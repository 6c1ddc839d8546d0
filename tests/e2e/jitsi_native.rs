//! Jitsi's native OIDC mode (no bridge: jitsi-meet's sso.html redeems the code itself and uses
//! the access token as its JWT, checked by Prosody against doorman's JWKS), the `[jitsi]`
//! configuration errors, and `doorman integrate jitsi`.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::prosody::{self, ProsodyConfig};
use crate::common::*;
use crate::jitsi::{jitsi_toml, MEET, MUC, SECRET};

const NATIVE: &str = "jitsi-native";
const SSO_HTML: &str = "https://meet.example.com/static/sso.html";

fn native_client(extra: &str) -> String {
    format!(
        r#"
[[clients]]
id = "{NATIVE}"
public = true
redirect_uris = ["{SSO_HTML}"]
post_logout_redirect_uris = ["{MEET}/static/logout.html"]
allowed_origins = ["{MEET}"]
access_token_format = "jwt"
{extra}
"#
    )
}

/// jitsi-meet's sso.html: the code flow with PKCE, then POST /token from the meet origin with
/// no secret. Returns the token response (and checks CORS and the state round trip).
async fn native_tokens(server: &TestServer, state: &str) -> Value {
    let browser = Browser::new();
    let (verifier, challenge) = pkce_pair();
    let url = server.authorize_url(
        NATIVE,
        SSO_HTML,
        "openid profile email",
        state,
        Some("0123abcd"),
        Some(&challenge),
        &[],
    );
    let back = browser.login(&url, ALICE, ALICE_PASSWORD).await;
    assert!(back.as_str().starts_with(SSO_HTML), "{back}");
    let q = query(&back);
    assert_eq!(
        q.get("state").map(String::as_str),
        Some(state),
        "state verbatim: {back}"
    );
    let code = q.get("code").expect("a code").clone();

    let resp = server
        .http
        .post(server.url("/token"))
        .header("origin", MEET)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", SSO_HTML),
            ("client_id", NATIVE),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(MEET),
        "sso.html runs on the meet origin"
    );
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_native_oidc_access_token_is_a_jwt_prosody_accepts() {
    let server = TestServer::start(&format!("{}{}", jitsi_toml(""), native_client(""))).await;
    // jitsi-meet's state is JSON; odd characters must come back untouched.
    let state = r#"{"room":"x","roomSafe":"x y+z&a=b%41","tenant":"ä"}"#;
    let json = native_tokens(&server, state).await;
    let access = json["access_token"].as_str().unwrap().to_string();
    let id_token = json["id_token"]
        .as_str()
        .expect("sso.html needs an id_token")
        .to_string();
    assert_eq!(json["token_type"], "Bearer");

    // The header Prosody wants: typ "JWT", RS256, a kid that /jwks.json publishes.
    let header = jwt_header(&access);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("a kid");
    let jwks: Value = server
        .http
        .get(server.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the kid is in the JWKS");
    assert_eq!(key["kty"], "RSA");

    let claims = jwt_claims(&access);
    assert_eq!(
        claims["aud"], "account",
        "the default audience, never the client id"
    );
    assert_ne!(claims["aud"], NATIVE);
    assert_eq!(claims["iss"], server.base.as_str());
    assert!(!prosody::has_null(&claims), "{claims}");
    assert!(!prosody::has_key(&claims, "features"), "{claims}");
    assert_eq!(claims["context"]["user"]["name"], "Alice Liddell");
    for k in ["iat", "nbf", "exp"] {
        assert!(claims[k].is_i64(), "{k}: {claims}");
    }

    // Prosody: cache_keys_url = doorman's JWKS, asap_accepted_issuers = {issuer},
    // asap_accepted_audiences = {"account"}, asap_require_room_claim = false.
    let cfg = ProsodyConfig {
        accepted_issuers: vec![server.base.clone()],
        accepted_audiences: vec!["account".into()],
        require_room_claim: false,
        ..ProsodyConfig::rs256("jitsi", jwks.clone())
    };
    let now = server.now();
    prosody::verify(&access, &cfg, now, "anyroom", MUC)
        .unwrap_or_else(|e| panic!("Prosody would refuse the access token: {e}"));
    // Not once it expires, not with a changed byte, not with another issuer or JWKS.
    let exp = claims["exp"].as_i64().unwrap();
    assert!(prosody::verify(&access, &cfg, exp, "anyroom", MUC).is_err());
    let mut tampered = access.clone().into_bytes();
    let mid = access.find('.').unwrap() + 5;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(prosody::verify(&tampered, &cfg, now, "anyroom", MUC).is_err());
    let other_issuer = ProsodyConfig {
        accepted_issuers: vec!["jitsi".into()],
        ..cfg.clone()
    };
    assert!(prosody::verify(&access, &other_issuer, now, "anyroom", MUC).is_err());
    let empty_jwks = ProsodyConfig {
        accepted_issuers: vec![server.base.clone()],
        accepted_audiences: vec!["account".into()],
        require_room_claim: false,
        ..ProsodyConfig::rs256("jitsi", serde_json::json!({"keys": []}))
    };
    assert!(prosody::verify(&access, &empty_jwks, now, "anyroom", MUC).is_err());
    // The HS256 bridge configuration refuses it (alg).
    assert!(prosody::verify(&access, &crate::jitsi::docker(), now, "anyroom", MUC).is_err());

    // The id_token is signed by the same key but is for the client: the same Prosody refuses
    // it, and doorman does not take it as a Bearer token.
    assert!(prosody::verify(&id_token, &cfg, now, "anyroom", MUC).is_err());
    assert_eq!(jwt_claims(&id_token)["aud"], NATIVE);
    let page = server.userinfo(&id_token).await;
    page.assert_status(401);
    let page = server.userinfo(&access).await;
    page.assert_status(200);
    assert_eq!(page.json()["sub"], claims["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_native_cors_preflight_and_custom_audience() {
    let server = TestServer::start(&native_client("access_token_audience = \"meet-api\"")).await;
    let r = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/token"))
        .header("origin", MEET)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(MEET)
    );
    let r = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/token"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let json = native_tokens(&server, "plain").await;
    let access = json["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["aud"], "meet-api");
    let jwks: Value = server
        .http
        .get(server.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cfg = ProsodyConfig {
        accepted_issuers: vec![server.base.clone()],
        accepted_audiences: vec!["meet-api".into()],
        require_room_claim: false,
        ..ProsodyConfig::rs256("jitsi", jwks)
    };
    prosody::verify(access, &cfg, server.now(), "anyroom", MUC).unwrap();
    // An opaque-token client is unchanged: its access token is no JWT.
    let tokens = server
        .code_flow(&Browser::new(), RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_ne!(tokens.access_token.split('.').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_native_access_token_survives_a_prosody_clock_slightly_behind() {
    let server = TestServer::start(&format!("{}{}", jitsi_toml(""), native_client(""))).await;
    let json = native_tokens(&server, "s").await;
    let access = json["access_token"].as_str().unwrap();
    let jwks: Value = server
        .http
        .get(server.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cfg = ProsodyConfig {
        accepted_issuers: vec![server.base.clone()],
        accepted_audiences: vec!["account".into()],
        require_room_claim: false,
        ..ProsodyConfig::rs256("jitsi", jwks)
    };
    let iat = jwt_claims(access)["iat"].as_i64().unwrap();
    // The bridge's tokens allow for this with nbf = iat - clock_skew (60 s by default).
    for lag in [1, 30] {
        prosody::verify(access, &cfg, iat - lag, "anyroom", MUC).unwrap_or_else(|e| {
            panic!("a Prosody {lag} s behind refuses the fresh access token: {e}")
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration errors

fn config_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    match doorman::config::from_str(text, &std::collections::HashMap::new(), dir.path()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn config_ok(text: &str) -> doorman::config::Config {
    let dir = tempfile::tempdir().unwrap();
    doorman::config::from_str(text, &std::collections::HashMap::new(), dir.path())
        .unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
}

const BASE: &str = "issuer = \"http://127.0.0.1:9\"\n";

fn jitsi_with(secret: &str, extra: &str) -> String {
    format!(
        "{BASE}[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\napp_secret = \"{secret}\"\n{extra}\n"
    )
}

#[test]
fn jitsi_config_errors_name_their_keys() {
    let e = config_error(&jitsi_with(&"s".repeat(31), ""));
    assert!(e.contains("jitsi.app_secret"), "{e}");
    let e = config_error(&format!(
        "{BASE}[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\n"
    ));
    assert!(e.contains("jitsi.app_secret"), "{e}");
    let e = config_error(&jitsi_with(SECRET, "token_lifetime = \"25h\""));
    assert!(e.contains("jitsi.token_lifetime"), "{e}");
    let e = config_error(&jitsi_with(SECRET, "room_claim = \"all\""));
    assert!(e.contains("jitsi.room_claim"), "{e}");
    let e = config_error(&jitsi_with(SECRET, "allowed_groups = []"));
    assert!(e.contains("jitsi.allowed_groups"), "{e}");
    let e = config_error(&format!(
        "{BASE}[jitsi]\napp_id = \"jitsi\"\napp_secret = \"{SECRET}\"\n"
    ));
    assert!(e.contains("jitsi.meet_url"), "{e}");
    for bad in [
        "meet.example.com",
        "ftp://meet.example.com",
        "https://meet.example.com/?x=1",
    ] {
        let e = config_error(&format!(
            "{BASE}[jitsi]\nmeet_url = \"{bad}\"\napp_id = \"jitsi\"\napp_secret = \"{SECRET}\"\n"
        ));
        assert!(e.contains("jitsi.meet_url"), "{bad}: {e}");
    }
    let e = config_error(&format!(
        "{BASE}[jitsi]\nmeet_url = \"{MEET}\"\napp_secret = \"{SECRET}\"\n"
    ));
    assert!(e.contains("jitsi.app_id"), "{e}");

    // A JWT access token's audience must not be the client id (it would pass for an id_token).
    let e = config_error(&format!(
        "{BASE}{}",
        native_client(&format!("access_token_audience = \"{NATIVE}\""))
    ));
    assert!(e.contains("clients[0].access_token_audience"), "{e}");
    let e = config_error(&format!(
        "{BASE}[[clients]]\nid = \"x\"\npublic = true\nredirect_uris = [\"https://x.example/cb\"]\naccess_token_audience = \"account\"\n"
    ));
    assert!(e.contains("clients[0].access_token_audience"), "{e}");
    let e = config_error(&format!(
        "{BASE}[[clients]]\nid = \"x\"\npublic = true\nredirect_uris = [\"https://x.example/cb\"]\naccess_token_format = \"jws\"\n"
    ));
    assert!(e.contains("clients[0].access_token_format"), "{e}");
}

#[test]
fn jitsi_config_limits_and_defaults() {
    // Exactly 32 characters and exactly 24 hours are fine.
    let c = config_ok(&jitsi_with(&"s".repeat(32), "token_lifetime = \"24h\""));
    let j = c.jitsi.expect("[jitsi]");
    assert_eq!(j.token_lifetime.as_secs(), 24 * 3600);
    // The defaults: iss = aud = app_id, sub "*", 3h, 60s, exact rooms, no group limit.
    let j = config_ok(&jitsi_with(SECRET, "")).jitsi.unwrap();
    assert_eq!(j.issuer, "jitsi");
    assert_eq!(j.audience, "jitsi");
    assert_eq!(j.subject, "*");
    assert_eq!(j.token_lifetime.as_secs(), 3 * 3600);
    assert_eq!(j.clock_skew.as_secs(), 60);
    assert!(j.allowed_groups.is_none());
    assert!(j.moderator_groups.is_empty());
    assert!(!j.skip_prejoin && !j.token_in_fragment);
    assert_eq!(j.app_secret, SECRET);
    // No trailing slash: the room is appended after one.
    let j = config_ok(&format!(
        "{BASE}[jitsi]\nmeet_url = \"https://meet.example.com/\"\napp_id = \"jitsi\"\napp_secret = \"{SECRET}\"\n"
    ))
    .jitsi
    .unwrap();
    assert_eq!(j.meet_url.as_str().trim_end_matches('/'), MEET);

    // app_secret_file: the file's contents, without the final newline.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jitsi.secret"), format!("{SECRET}\n")).unwrap();
    let c = doorman::config::from_str(
        &format!(
            "{BASE}[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\napp_secret_file = \"jitsi.secret\"\n"
        ),
        &std::collections::HashMap::new(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(c.jitsi.unwrap().app_secret, SECRET);

    // A JWT client defaults to the "account" audience.
    let c = config_ok(&format!("{BASE}{}", native_client("")));
    let client = c.clients.iter().find(|c| c.id == NATIVE).unwrap();
    assert_eq!(
        client.access_token_format,
        doorman::config::AccessTokenFormat::Jwt {
            audience: "account".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// doorman integrate jitsi

fn integrate(config_toml: &str) -> (Output, String) {
    integrate_app("jitsi", config_toml)
}

fn integrate_app(app: &str, config_toml: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config_text(
        port,
        &dir.path().join("data"),
        &Options {
            extra_toml: config_toml.to_string(),
            ..Default::default()
        },
    );
    let path = dir.path().join("doorman.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorman"));
    cmd.env_clear();
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    let out = cmd
        .args(["integrate", app, "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, format!("http://127.0.0.1:{port}"))
}

#[test]
fn jitsi_integrate_prints_the_docker_and_prosody_settings() {
    let (out, issuer) = integrate(&jitsi_toml(""));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for expected in [
        "ENABLE_AUTH=1".to_string(),
        "AUTH_TYPE=jwt".to_string(),
        "ENABLE_GUESTS=1".to_string(),
        "JWT_APP_ID=jitsi".to_string(),
        format!("JWT_APP_SECRET={SECRET}"),
        format!("TOKEN_AUTH_URL={issuer}/jitsi/{{room}}"),
        "JICOFO_ENABLE_AUTH=0".to_string(),
        "ENABLE_AUTO_OWNER=0".to_string(),
        "XMPP_MUC_MODULES=token_affiliation".to_string(),
        "authentication = \"token\"".to_string(),
        "app_id = \"jitsi\"".to_string(),
        format!("app_secret = \"{SECRET}\""),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("token_verification"), "{stdout}");
    assert!(stdout.contains("token_affiliation"), "{stdout}");
    // Accepted issuer/audience lines match what the tokens carry.
    assert!(lines.contains(&"JWT_ACCEPTED_ISSUERS=jitsi"), "{stdout}");
    assert!(lines.contains(&"JWT_ACCEPTED_AUDIENCES=jitsi"), "{stdout}");
    // And the native mode hints point at this issuer's JWKS.
    assert!(stdout.contains(&format!("{issuer}/jwks.json")), "{stdout}");

    // Native mode's tokens carry the user id in sub: domain verification must be off.
    assert!(
        stdout.contains("enable_domain_verification = false"),
        "{stdout}"
    );
    assert!(
        stdout.contains("JWT_ENABLE_DOMAIN_VERIFICATION=false"),
        "{stdout}"
    );
    // Which releases ship token_affiliation, and where it comes from otherwise.
    assert!(stdout.contains("stable-9457"), "{stdout}");
    assert!(stdout.contains("/prosody-plugins-contrib"), "{stdout}");
    assert!(
        stdout.contains("jitsi-contrib's prosody-plugins"),
        "{stdout}"
    );
    // Never the advice to recreate the config directory (certificates, custom plugins);
    // the files to edit instead.
    assert!(!stdout.contains("recreate the config"), "{stdout}");
    assert!(
        stdout.contains("~/.jitsi-meet-cfg/web/custom-config.js"),
        "{stdout}"
    );
    assert!(stdout.contains("docker compose up -d"), "{stdout}");
    // modules_enabled is added to, never replaced: no line assigns a list of our modules only.
    for line in stdout.lines().filter(|l| l.contains("modules_enabled")) {
        let code = line.trim_start();
        assert!(
            code.starts_with('#') && (line.contains("existing") || line.contains("already there")),
            "a modules_enabled line that would replace Jitsi's list: {line}"
        );
    }
    assert!(
        stdout.contains("add \"token_verification\" to the existing modules_enabled list"),
        "{stdout}"
    );
}

/// The value of the commented config.js line `#   <key>: '<value>',` in integrate's output.
fn js_line(stdout: &str, key: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| {
            l.trim_start_matches(['#', ' '])
                .strip_prefix(&format!("{key}: '"))
        })
        .unwrap_or_else(|| panic!("no {key} line in:\n{stdout}"));
    line.split('\'').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_integrate_urls_work_against_the_server() {
    let toml = format!("{}{}", jitsi_toml(""), native_client(""));
    let server = TestServer::start(&toml).await;
    // The binary, on a config file for this very server (same issuer).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doorman.toml");
    let text = config_text(
        server.port,
        &dir.path().join("data"),
        &Options {
            extra_toml: toml.clone(),
            ..Default::default()
        },
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_doorman"))
        .env_clear()
        .args(["integrate", "jitsi", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TOKEN_AUTH_URL with jitsi-meet's {room}: the landing page.
    let token_auth_url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN_AUTH_URL="))
        .unwrap()
        .replacen("{room}", "MyRoom", 1);
    let browser = Browser::new();
    let done = browser.login(&token_auth_url, ALICE, ALICE_PASSWORD).await;
    assert!(
        done.as_str().starts_with(&format!("{MEET}/MyRoom?jwt=")),
        "{done}"
    );

    // Native mode: the tokenAuthUrl, with jitsi-meet's {state} and {code_challenge}.
    assert!(stdout.contains(&format!("id = \"{NATIVE}\"")), "{stdout}");
    let (verifier, challenge) = pkce_pair();
    let state = r#"{"room":"MyRoom"}"#;
    let encoded_state: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    let auth = js_line(&stdout, "tokenAuthUrl")
        .replacen("{state}", &encoded_state, 1)
        .replacen("{code_challenge}", &challenge, 1);
    let native = Browser::new();
    let back = native.login(&auth, ALICE, ALICE_PASSWORD).await;
    assert!(back.as_str().starts_with(SSO_HTML), "{back}");
    let q = query(&back);
    assert_eq!(q.get("state").map(String::as_str), Some(state));
    let tokens = server
        .http
        .post(server.url("/token"))
        .header("origin", MEET)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", SSO_HTML),
            ("client_id", NATIVE),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), 200);
    let access = tokens.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // The Prosody settings printed for native mode accept the token at join; with domain
    // verification on (the token plugin's default) the same token is refused.
    let domain_verification = stdout
        .lines()
        .find_map(|l| {
            l.trim_start_matches(['#', ' '])
                .strip_prefix("enable_domain_verification = ")
        })
        .map(|v| v.split_whitespace().next() == Some("true"))
        .expect("an enable_domain_verification line");
    let jwks: Value = server
        .http
        .get(server.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let printed = ProsodyConfig {
        accepted_issuers: vec![server.base.clone()],
        accepted_audiences: vec!["account".into()],
        require_room_claim: false,
        enable_domain_verification: domain_verification,
        ..ProsodyConfig::rs256("jitsi", jwks)
    };
    prosody::verify(&access, &printed, server.now(), "myroom", MUC)
        .unwrap_or_else(|e| panic!("Prosody as printed refuses the native token: {e}"));
    let verifying = ProsodyConfig {
        enable_domain_verification: true,
        ..printed
    };
    assert!(prosody::verify(&access, &verifying, server.now(), "myroom", MUC).is_err());

    // sso.html's tokenService is host/path without a scheme, and it appends /token.
    let sso = stdout
        .lines()
        .find(|l| l.contains("tokenService:"))
        .unwrap()
        .split("tokenService: '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(!sso.contains("://"), "{sso}");
    assert_eq!(format!("http://{sso}/token"), server.url("/token"));

    // The logout URL is accepted for this client (a page or a redirect, not an error).
    let logout = js_line(&stdout, "tokenLogoutUrl");
    let page = native.get(&logout).await;
    assert!(
        page.status == 200 || (300..400).contains(&page.status),
        "{logout}: {} {}",
        page.status,
        page.text
    );

    // The JWKS line names the endpoint that serves the keys.
    let jwks = format!("{}/jwks.json", server.base);
    assert!(stdout.contains(&jwks), "{stdout}");
    let r = server.http.get(&jwks).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A Lua double-quoted string literal's value (the escapes Prosody's config would apply).
fn lua_string(literal: &str) -> Option<String> {
    let body = literal.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                other => {
                    // \ddd and friends: not expected in a secret's rendering.
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

#[test]
fn jitsi_integrate_quotes_the_secret_for_lua() {
    // A secret with a quote and backslashes (valid: 40 characters, any text).
    let secret = r#"abc"def\nghi\\jkl0123456789abcdefghijklmn"#;
    let toml_secret = secret.replace('\\', "\\\\").replace('"', "\\\"");
    let toml = format!(
        "[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\napp_secret = \"{toml_secret}\"\n"
    );
    let (out, _) = integrate(&toml);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("app_secret = "))
        .expect("the Prosody app_secret line");
    let value = lua_string(line.trim_start_matches("app_secret = "));
    assert_eq!(
        value.as_deref(),
        Some(secret),
        "Prosody would read another secret from: {line}"
    );
}

#[test]
fn jitsi_integrate_without_jitsi_says_what_to_add() {
    let (out, _) = integrate("");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[jitsi]"), "{stderr}");
    for key in ["meet_url", "app_id", "app_secret"] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    assert!(out.stdout.is_empty(), "nothing half-printed");
    // An unknown app is refused, naming the ones there are.
    let (out, _) = integrate_app("wordpress", &jitsi_toml(""));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jitsi"), "{stderr}");
}
