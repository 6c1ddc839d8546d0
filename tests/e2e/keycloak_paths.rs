//! `[compat] keycloak_paths = true`: Keycloak's endpoint paths under a realm issuer answer like
//! doorman's own (a whole code flow through them; certs = JWKS), discovery keeps doorman's
//! paths, and without the key they are 404.

use crate::common::*;

const KC: &str = "/protocol/openid-connect";

async fn realm_server(on: bool) -> TestServer {
    TestServer::start_with(Options {
        extra_toml: if on {
            "[compat]\nkeycloak_paths = true\n".into()
        } else {
            String::new()
        },
        issuer_path: Some("/realms/foundation".into()),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_paths_answer_like_doormans_own() {
    let server = realm_server(true).await;
    assert!(
        server.base.ends_with("/realms/foundation"),
        "{}",
        server.base
    );

    // Discovery keeps doorman's own paths.
    let d = server
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(d["authorization_endpoint"], server.url("/authorize"));
    assert_eq!(d["token_endpoint"], server.url("/token"));

    // certs = JWKS.
    let certs = Browser::new()
        .get(&server.url(&format!("{KC}/certs")))
        .await;
    certs.assert_status(200);
    let jwks = Browser::new().get(&server.url("/jwks.json")).await;
    assert_eq!(certs.json(), jwks.json());
    assert!(certs.json()["keys"][0]["kid"].is_string());

    // A code flow through the Keycloak paths, as Nextcloud's Social Login would run it.
    let mut req = server.auth_request(RP, "openid profile");
    req.url = req.url.replace("/authorize?", &format!("{KC}/auth?"));
    assert!(req
        .url
        .contains("/realms/foundation/protocol/openid-connect/auth?"));
    let code = req
        .code(&server, &Browser::new(), ALICE, ALICE_PASSWORD)
        .await;
    let kc_token = server
        .post_with_auth(
            &format!("{KC}/token"),
            Some(basic_auth(RP, RP_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &req.redirect),
                ("code_verifier", &req.verifier),
            ],
        )
        .await;
    kc_token.assert_status(200);
    let tokens = Tokens::from_json(kc_token.json(), code);
    let claims = tokens.id_claims();
    assert_eq!(claims["iss"], server.base);
    assert_eq!(claims["preferred_username"], ALICE);

    // userinfo, GET and POST.
    let info = server
        .http
        .get(server.url(&format!("{KC}/userinfo")))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: serde_json::Value = info.json().await.unwrap();
    assert_eq!(info["sub"], claims["sub"]);
    let posted = server
        .post_with_auth(
            &format!("{KC}/userinfo"),
            Some(format!("Bearer {}", tokens.access_token)),
            &[],
        )
        .await;
    posted.assert_status(200);

    // introspect (token/introspect), then revoke, then introspect again.
    let introspect = |token: String| {
        let server = &server;
        async move {
            server
                .post_with_auth(
                    &format!("{KC}/token/introspect"),
                    Some(basic_auth(RP, RP_SECRET)),
                    &[("token", &token)],
                )
                .await
        }
    };
    let live = introspect(tokens.access_token.clone()).await;
    live.assert_status(200);
    assert_eq!(live.json()["active"], true);
    let revoked = server
        .post_with_auth(
            &format!("{KC}/revoke"),
            Some(basic_auth(RP, RP_SECRET)),
            &[("token", &tokens.access_token)],
        )
        .await;
    revoked.assert_status(200);
    assert_eq!(
        introspect(tokens.access_token.clone()).await.json()["active"],
        false
    );

    // logout answers as /logout does.
    let own = Browser::new().get(&server.url("/logout")).await;
    let kc = Browser::new()
        .get(&server.url(&format!("{KC}/logout")))
        .await;
    assert_eq!(kc.status, own.status);
    assert_eq!(kc.content_type(), own.content_type());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_paths_are_404_when_the_key_is_off() {
    let server = realm_server(false).await;
    for path in [
        "auth",
        "token",
        "userinfo",
        "certs",
        "logout",
        "revoke",
        "token/introspect",
    ] {
        let url = server.url(&format!("{KC}/{path}"));
        let get = Browser::new().get(&url).await;
        assert_eq!(get.status, 404, "GET {url}");
        let post = server
            .post_with_auth(&format!("{KC}/{path}"), None, &[("a", "b")])
            .await;
        assert_eq!(post.status, 404, "POST {url}");
    }
    // doorman's own still answer.
    Browser::new()
        .get(&server.url("/jwks.json"))
        .await
        .assert_status(200);
}
