//! `doorman integrate <app>` run as the real binary: the JSON form parsed and used as the app
//! would use it (the printed [[clients]] block added to the config, the printed fields driving
//! a code flow), and `--client` with an unknown id failing with nothing on stdout. Each app's
//! documented client behaviour is reproduced from its printed settings: Nextcloud's Social
//! Login (scope openid, id_token only, Keycloak paths), Jellyfin's SSO plugin (PKCE,
//! client_secret_post, realm_access.roles), Mastodon (basic, nonce, scope at /token,
//! preferred_username) and Cloudflare Access (raw Basic, every claim in the id_token, kid in
//! the JWKS).

use std::process::Output;

use serde_json::Value;

use crate::common::*;

/// `doorman integrate <args>` for a config holding only `issuer` and `extra`.
pub fn integrate(issuer: &str, extra: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doorman.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"{issuer}\"\ndata_dir = '{}'\n{extra}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = doorman_command();
    cmd.arg("integrate").args(args).arg("--config").arg(&path);
    output_with_stdin(cmd, "")
}

/// The value of a field in a `fields` section of `integrate --format json`.
pub fn field(v: &Value, label: &str) -> String {
    v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "fields")
        .flat_map(|s| s["fields"].as_array().unwrap().iter())
        .find(|f| f["label"] == label)
        .unwrap_or_else(|| panic!("no field {label:?} in {v:#}"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Nextcloud's Social Login, set up from `integrate nextcloud --format json` alone: the block
/// it prints makes the client, and a code flow with the printed Authorize url, Token url,
/// client id and secret and scope `openid` gets an id_token carrying what Nextcloud reads
/// without userinfo (preferred_username, name, email, groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_nextcloud_json_sets_up_a_client_that_works_with_scope_openid() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let out = integrate(&issuer, "", &["nextcloud", "--format", "json"]);
    assert_ok(&out, "integrate nextcloud --format json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["app"], "nextcloud");
    let plan = &v["client"];
    assert_eq!(plan["configured"], false);
    let block = plan["toml"].as_str().unwrap();
    let secret = plan["secret"].as_str().unwrap().to_string();
    let redirect = plan["redirect_uris"][0].as_str().unwrap().to_string();
    assert_eq!(
        redirect,
        "https://nextcloud.example.com/apps/sociallogin/custom_oidc/doorman"
    );
    assert_eq!(field(&v, "Scope"), "openid");
    assert_eq!(field(&v, "Client Secret"), secret);
    let client = field(&v, "Client Id");
    let authorize = field(&v, "Authorize url");
    let token = field(&v, "Token url");

    let server = TestServer::start_with(Options {
        extra_toml: block.to_string(),
        port: Some(port),
        ..Default::default()
    })
    .await;
    let (verifier, _) = pkce_pair();
    let state = random_string();
    let mut url = url::Url::parse(&authorize).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid")
        .append_pair("state", &state);
    let req = AuthRequest {
        client: client.clone(),
        redirect: redirect.clone(),
        url: url.to_string(),
        state,
        nonce: String::new(),
        verifier,
    };
    let code = req
        .code(&server, &Browser::new(), ALICE, ALICE_PASSWORD)
        .await;
    // Social Login (Hybridauth) posts its credentials in the form body.
    let resp = reqwest::Client::new()
        .post(&token)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", client.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "nextcloud");
    assert_eq!(claims["preferred_username"], ALICE);
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["email"], ALICE_EMAIL);
    assert_eq!(claims["groups"][0], "admins");
}

/// `--client` naming no configured client: a failing exit, an error listing the configured
/// ids, and nothing on stdout to paste; the text form of an existing client has no secret.
#[test]
fn integrate_with_an_unknown_client_prints_nothing_and_lists_the_ids() {
    let clients = "[[clients]]\nid = \"wiki\"\nsecret = \"wiki-secret-0123456789abcdef\"\nredirect_uris = [\"https://wiki.example.com/cb\"]\n[[clients]]\nid = \"cloud\"\nsecret = \"cloud-secret-0123456789abcdef\"\nredirect_uris = [\"https://cloud.example.com/apps/sociallogin/custom_oidc/home\"]\nid_token_claims = \"all\"\n";
    for format in ["text", "json"] {
        let out = integrate(
            "https://auth.example.com",
            clients,
            &["nextcloud", "--client", "nope", "--format", format],
        );
        assert!(!out.status.success(), "{out:?}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("\"nope\"") && stderr.contains("wiki, cloud"),
            "{stderr}"
        );
    }
    let out = integrate(
        "https://auth.example.com",
        clients,
        &["nextcloud", "--client", "cloud"],
    );
    assert_ok(&out, "integrate nextcloud --client cloud");
    let printed = text(&out.stdout);
    assert!(printed.contains("Client Id:"), "{printed}");
    assert!(
        printed.contains("Internal name:                 home"),
        "{printed}"
    );
    assert!(!printed.contains("cloud-secret"), "{printed}");
    assert!(!printed.contains("[[clients]]\nid"), "{printed}");
}

// ---------------------------------------------------------------------------------------------
// Each app's documented behaviour, configured only from what `integrate <app>` prints.

/// `integrate <app> --format json` for a config with `issuer` and `extra`: the answer and the
/// printed `[[clients]]` block (for an app with no client yet).
fn printed(issuer: &str, extra: &str, app: &str) -> (Value, String) {
    let out = integrate(issuer, extra, &[app, "--format", "json"]);
    assert_ok(&out, &format!("integrate {app} --format json"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let block = v["client"]["toml"].as_str().unwrap_or_default().to_string();
    (v, block)
}

/// A doorman on `port` with `extra` and the printed block.
async fn server_for(port: u16, issuer_path: Option<&str>, extra: &str) -> TestServer {
    TestServer::start_with(Options {
        extra_toml: extra.to_string(),
        port: Some(port),
        issuer_path: issuer_path.map(str::to_string),
        ..Default::default()
    })
    .await
}

/// The code for an authorization request at `authorize` with `params`, after alice signs in.
async fn code_at(
    server: &TestServer,
    authorize: &str,
    client: &str,
    redirect: &str,
    params: &[(&str, &str)],
) -> String {
    let state = random_string();
    let mut url = url::Url::parse(authorize).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", &state)
        .extend_pairs(params);
    AuthRequest {
        client: client.to_string(),
        redirect: redirect.to_string(),
        url: url.to_string(),
        state,
        nonce: String::new(),
        verifier: String::new(),
    }
    .code(server, &Browser::new(), ALICE, ALICE_PASSWORD)
    .await
}

async fn discovery(server: &TestServer, issuer: &str) -> Value {
    server
        .http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Nextcloud's Social Login moving over from Keycloak: with `[compat] keycloak_paths` on a
/// realm issuer, the printed Authorize and Token urls are Keycloak's own paths (what a Social
/// Login set up for Keycloak already has), scope `openid` only, credentials in the form body,
/// and every claim it reads is in the id_token, with no userinfo call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextcloud_with_keycloak_paths_works_from_the_printed_urls() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/realms/foundation");
    let compat = "[compat]\nkeycloak_paths = true\n";
    let (v, block) = printed(&issuer, compat, "nextcloud");
    let authorize = field(&v, "Authorize url");
    let token = field(&v, "Token url");
    assert_eq!(authorize, format!("{issuer}/protocol/openid-connect/auth"));
    assert_eq!(token, format!("{issuer}/protocol/openid-connect/token"));
    assert_eq!(field(&v, "Scope"), "openid");
    let (client, secret) = (field(&v, "Client Id"), field(&v, "Client Secret"));
    let redirect = v["client"]["redirect_uris"][0]
        .as_str()
        .unwrap()
        .to_string();

    let server = server_for(
        port,
        Some("/realms/foundation"),
        &format!("{compat}{block}"),
    )
    .await;
    let code = code_at(
        &server,
        &authorize,
        &client,
        &redirect,
        &[("scope", "openid")],
    )
    .await;
    let resp = server
        .http
        .post(&token)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", client.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    // Social Login base64-decodes the payload without verifying it: only the id_token counts.
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], client.as_str());
    assert_eq!(claims["preferred_username"], ALICE);
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["email"], ALICE_EMAIL);
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
}

/// Jellyfin's SSO plugin (IdentityModel.OidcClient): discovery from the printed OID Endpoint,
/// PKCE S256 (the printed client requires it), scope `openid profile`, client_secret_post, and
/// the printed Role Claim path (`realm_access.roles`) holding the user's groups, among them the
/// printed Roles and Admin Roles, in the id_token and userinfo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jellyfin_works_from_the_printed_provider_fields() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (v, block) = printed(&issuer, "", "jellyfin");
    assert_eq!(
        v["client"]["token_endpoint_auth_method"],
        "client_secret_post"
    );
    let endpoint = field(&v, "OID Endpoint");
    let (client, secret) = (field(&v, "OpenID Client ID"), field(&v, "OID Secret"));
    let role_claim = field(&v, "Role Claim");
    let (roles, admin_roles) = (field(&v, "Roles"), field(&v, "Admin Roles"));
    let redirect = v["client"]["redirect_uris"][0]
        .as_str()
        .unwrap()
        .to_string();
    let server = server_for(port, None, &block).await;
    // An admin of Jellyfin: in both printed groups.
    let alice = server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap();
    doorman::accounts::users::set_name_and_groups(
        &*server.state.store,
        &alice,
        alice.name.clone(),
        vec![roles.clone(), admin_roles.clone()],
        server.now(),
    )
    .await
    .unwrap();

    let meta = discovery(&server, &endpoint).await;
    let authorize = meta["authorization_endpoint"].as_str().unwrap().to_string();
    // The printed client insists on PKCE, as the plugin always sends it.
    let page = Browser::new()
        .get(&format!(
            "{authorize}?response_type=code&client_id={client}&redirect_uri={redirect}&scope=openid%20profile&state=s"
        ))
        .await;
    let refused = page.location().expect("an error back to the app");
    assert!(query(&refused).contains_key("error"), "{refused}");

    let (verifier, challenge) = pkce_pair();
    let code = code_at(
        &server,
        &authorize,
        &client,
        &redirect,
        &[
            ("scope", "openid profile"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", "n-jellyfin"),
        ],
    )
    .await;
    let resp = server
        .http
        .post(meta["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
            ("client_id", client.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    let info = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await
        .json();
    // The plugin splits the Role Claim on dots.
    let at = |v: &Value| {
        role_claim
            .split('.')
            .fold(v.clone(), |v, k| v.get(k).cloned().unwrap_or(Value::Null))
    };
    for source in [&id, &info] {
        let got = at(source);
        assert_eq!(got, serde_json::json!([roles, admin_roles]), "{source}");
    }
    // Username: preferred_username, as printed.
    assert_eq!(
        field(&v, "Set default username claim"),
        "preferred_username"
    );
    assert_eq!(info["preferred_username"], ALICE);
}

/// The `KEY=value` lines of a printed `.env` file.
fn env_lines(content: &str) -> std::collections::HashMap<String, String> {
    content
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Mastodon (omniauth_openid_connect) from the printed `.env.production`: discovery, the
/// comma-separated scope, a nonce (send_nonce), client_secret_basic (OIDC_CLIENT_AUTH_METHOD=basic),
/// `scope` sent to the token endpoint too, and the uid from OIDC_UID_FIELD (preferred_username).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mastodon_works_from_the_printed_env() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (v, block) = printed(&issuer, "", "mastodon");
    let section = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == ".env.production")
        .unwrap();
    let env = env_lines(section["content"].as_str().unwrap());
    assert_eq!(env["OIDC_DISCOVERY"], "true");
    assert_eq!(env["OIDC_CLIENT_AUTH_METHOD"], "basic");
    let server = server_for(port, None, &block).await;
    let meta = discovery(&server, &env["OIDC_ISSUER"]).await;
    assert_eq!(meta["issuer"], env["OIDC_ISSUER"].as_str());
    let scope = env["OIDC_SCOPE"].replace(',', " ");
    let (client, secret, redirect) = (
        &env["OIDC_CLIENT_ID"],
        &env["OIDC_CLIENT_SECRET"],
        &env["OIDC_REDIRECT_URI"],
    );
    let nonce = random_string();
    let code = code_at(
        &server,
        meta["authorization_endpoint"].as_str().unwrap(),
        client,
        redirect,
        &[("scope", &scope), ("nonce", &nonce)],
    )
    .await;
    let resp = server
        .http
        .post(meta["token_endpoint"].as_str().unwrap())
        .header("authorization", basic_auth(client, secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], nonce.as_str());
    let info = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(info[env["OIDC_UID_FIELD"].as_str()], ALICE);
    assert_eq!(info["email"], ALICE_EMAIL);
    assert_eq!(info["email_verified"], true);
}

/// Cloudflare Access's generic OIDC login method from the printed lines: PKCE, Basic
/// credentials sent raw (not form-encoded), no userinfo call (every printed OIDC claim is in
/// the id_token), and an RS256 id_token whose kid is in the printed Certificate URL's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_access_works_from_the_printed_login_method() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let out = integrate(&issuer, "", &["cloudflare"]);
    assert_ok(&out, "integrate cloudflare");
    let printed = text(&out.stdout);
    let setting = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#   {name}:")))
            .unwrap_or_else(|| panic!("no {name} in:\n{printed}"))
            .trim()
            .to_string()
    };
    let (client, secret) = (setting("App ID"), setting("Client secret"));
    let (auth_url, token_url, certs) = (
        setting("Auth URL"),
        setting("Token URL"),
        setting("Certificate URL"),
    );
    assert_eq!(setting("PKCE"), "on");
    let wanted: Vec<String> = setting("OIDC Claims")
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    // The doorman side, the team placeholder filled in; the forward-auth part is not needed.
    let team = "https://home.cloudflareaccess.com";
    let block = printed[printed.find("[[clients]]").unwrap()..printed.find("# Checking").unwrap()]
        .replace("https://<your-team>.cloudflareaccess.com", team);
    let redirect = format!("{team}/cdn-cgi/access/callback");
    let server = server_for(port, None, &block).await;

    let (verifier, challenge) = pkce_pair();
    let code = code_at(
        &server,
        &auth_url,
        &client,
        &redirect,
        &[
            ("scope", "openid email profile"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let resp = server
        .http
        .post(&token_url)
        .header("authorization", basic_auth_raw(&client, &secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let header = jwt_header(id_token);
    assert_eq!(header["alg"], "RS256");
    let jwks: Value = server
        .http
        .get(&certs)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the id_token's kid is at the Certificate URL");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[client.as_str()]);
    validation.set_issuer(&[issuer.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims;
    for c in &wanted {
        assert!(
            claims.get(c).is_some(),
            "{c} is not in the id_token: {claims}"
        );
    }
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
}

/// The printed labels and keys are the apps' own: Immich's OAuth settings table (Enabled,
/// Signing Algorithm, Profile Signing Algorithm, Storage Label Claim, ...), Grafana's
/// `auth_style = InHeader` (Go's oauth2 AuthStyle names: AutoDetect, InParams, InHeader) for a
/// client_secret_basic client, and Mastodon's OIDC_CLIENT_AUTH_METHOD=basic.
#[test]
fn immich_grafana_and_mastodon_use_the_apps_own_names() {
    let (v, _) = printed("https://auth.example.com", "", "immich");
    for (label, value) in [
        ("Enabled", "on"),
        ("Issuer URL", "https://auth.example.com"),
        ("Scope", "openid email profile"),
        ("Signing Algorithm", "RS256"),
        ("Profile Signing Algorithm", "none"),
        ("Storage Label Claim", "preferred_username"),
        ("Auto Register", "on"),
        ("Mobile Redirect URI Override", "on"),
        (
            "Mobile Redirect URI",
            "https://immich.example.com/api/oauth/mobile-redirect",
        ),
    ] {
        assert_eq!(field(&v, label), value, "{label}");
    }
    let grafana = text(&integrate("https://auth.example.com", "", &["grafana"]).stdout);
    assert!(grafana.contains("\nauth_style = InHeader\n"), "{grafana}");
    assert!(
        grafana.contains("token_endpoint_auth_method = \"client_secret_basic\""),
        "{grafana}"
    );
    let mastodon = text(&integrate("https://auth.example.com", "", &["mastodon"]).stdout);
    assert!(
        mastodon.contains("\nOIDC_CLIENT_AUTH_METHOD=basic\n"),
        "{mastodon}"
    );
}
