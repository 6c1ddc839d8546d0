//! `doorman integrate <app>` run as the real binary: the JSON form parsed and used as the app
//! would use it (the printed [[clients]] block added to the config, the printed fields driving
//! a code flow), and `--client` with an unknown id failing with nothing on stdout.

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
