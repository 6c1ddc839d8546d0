//! Refresh tokens (rotation, reuse detection), single-use codes, revocation (RFC 7009) and
//! introspection (RFC 7662).

use serde_json::json;

use crate::common::*;

const ALWAYS_REFRESH: &str = r#"
[[clients]]
id = "rt-always"
secret = "rt-always-secret-0123"
redirect_uris = ["http://127.0.0.1:1/rt"]
refresh_tokens = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let tokens = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let rt1 = tokens
        .refresh_token
        .clone()
        .expect("offline_access gives a refresh token");
    let sub = tokens.id_claims()["sub"].clone();

    // Rotation.
    let page = server.refresh(RP, &rt1).await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let json = page.json();
    let rt2 = json["refresh_token"]
        .as_str()
        .expect("a new refresh token")
        .to_string();
    let at2 = json["access_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt1, "the refresh token rotates");
    assert_ne!(at2, tokens.access_token);
    assert_eq!(json["token_type"], "Bearer");
    let id = jwt_claims(json["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], sub);
    assert_eq!(id["aud"], RP);
    server.userinfo(&at2).await.assert_status(200);
    server
        .userinfo(&tokens.access_token)
        .await
        .assert_status(200);

    // The old one is spent: using it again is reuse, which kills the whole family.
    let reuse = server.refresh(RP, &rt1).await;
    reuse.assert_status(400);
    assert_eq!(reuse.oauth_error(), "invalid_grant");
    let next = server.refresh(RP, &rt2).await;
    next.assert_status(400);
    assert_eq!(
        next.oauth_error(),
        "invalid_grant",
        "the new refresh token dies with its family"
    );
    for at in [&at2, &tokens.access_token] {
        let info = server.userinfo(at).await;
        info.assert_status(401);
        assert!(info
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_only_when_asked_for_or_configured() {
    let server = TestServer::start(ALWAYS_REFRESH).await;
    let browser = Browser::new();
    let tokens = server
        .code_flow(&browser, RP, "openid email", ALICE, ALICE_PASSWORD)
        .await;
    assert!(
        tokens.json.get("refresh_token").is_none(),
        "rp has refresh_tokens = false and did not ask for offline_access: {}",
        tokens.json
    );

    // refresh_tokens = true issues one without offline_access.
    let (verifier, challenge) = pkce_pair();
    let url = server.authorize_url(
        "rt-always",
        "http://127.0.0.1:1/rt",
        "openid",
        "s",
        None,
        Some(&challenge),
        &[],
    );
    let page = browser.get(&url).await;
    page.assert_status(302);
    let code = query(&page.redirect())["code"].clone();
    let page = server
        .token_basic(
            "rt-always",
            "rt-always-secret-0123",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:1/rt"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    page.assert_status(200);
    assert!(page.json()["refresh_token"].is_string(), "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_code_fails_and_revokes_its_tokens() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let req = server.auth_request(RP, "openid offline_access");
    let code = req.code(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let first = server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    first.assert_status(200);
    let tokens = Tokens::from_json(first.json(), code.clone());
    server
        .userinfo(&tokens.access_token)
        .await
        .assert_status(200);

    let second = server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    second.assert_status(400);
    assert_eq!(second.oauth_error(), "invalid_grant");
    assert!(second.json().get("access_token").is_none());

    server
        .userinfo(&tokens.access_token)
        .await
        .assert_status(401);
    let refresh = server
        .refresh(RP, tokens.refresh_token.as_deref().unwrap())
        .await;
    assert_eq!(refresh.oauth_error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let revoke = |client: &'static str, token: String| {
        let (secret, _) = client_info(client);
        let server = &server;
        async move {
            server
                .post_with_auth(
                    "/revoke",
                    Some(basic_auth(client, secret.unwrap())),
                    &[("token", &token)],
                )
                .await
        }
    };

    // An access token.
    let a = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    server.userinfo(&a.access_token).await.assert_status(200);
    revoke(RP, a.access_token.clone()).await.assert_status(200);
    let info = server.userinfo(&a.access_token).await;
    info.assert_status(401);
    assert_eq!(info.oauth_error(), "invalid_token");

    // A refresh token: refreshing fails afterwards, and its grant's access token goes too.
    let b = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let rt = b.refresh_token.clone().unwrap();
    revoke(RP, rt.clone()).await.assert_status(200);
    let page = server.refresh(RP, &rt).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
    server.userinfo(&b.access_token).await.assert_status(401);

    // Unknown tokens are fine (RFC 7009 §2.2).
    let page = revoke(RP, "no-such-token".into()).await;
    page.assert_status(200);

    // Another client cannot revoke rp's tokens.
    let c = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    revoke(NC, c.access_token.clone()).await.assert_status(200);
    revoke(NC, c.refresh_token.clone().unwrap())
        .await
        .assert_status(200);
    server.userinfo(&c.access_token).await.assert_status(200);
    server
        .refresh(RP, c.refresh_token.as_deref().unwrap())
        .await
        .assert_status(200);

    // Client authentication is required.
    let page = server
        .post_with_auth("/revoke", None, &[("token", &c.access_token)])
        .await;
    page.assert_status(401);
    assert_eq!(page.oauth_error(), "invalid_client");
    let page = server
        .post_with_auth(
            "/revoke",
            Some(basic_auth(RP, "wrong-secret-0123456789")),
            &[("token", &c.access_token)],
        )
        .await;
    page.assert_status(401);
    server.userinfo(&c.access_token).await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(
            &browser,
            RP,
            "openid email offline_access",
            ALICE,
            ALICE_PASSWORD,
        )
        .await;
    let sub = t.id_claims()["sub"].as_str().unwrap().to_string();
    let introspect = |auth: Option<String>, token: String| {
        let server = &server;
        async move {
            server
                .post_with_auth("/introspect", auth, &[("token", &token)])
                .await
        }
    };
    let rp = || Some(basic_auth(RP, RP_SECRET));

    let page = introspect(rp(), t.access_token.clone()).await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let j = page.json();
    assert_eq!(j["active"], true);
    assert_eq!(j["sub"], sub.as_str());
    assert_eq!(j["client_id"], RP);
    assert_eq!(j["scope"], "openid email offline_access");
    let exp = j["exp"].as_i64().expect("exp");
    assert!(exp > server.now() && exp <= server.now() + 600 + 5, "{exp}");

    let page = introspect(rp(), t.refresh_token.clone().unwrap()).await;
    assert_eq!(page.json()["active"], true);

    // Unknown and revoked tokens are inactive, and say nothing more.
    let page = introspect(rp(), "nope".into()).await;
    page.assert_status(200);
    assert_eq!(page.json(), json!({"active": false}));
    server
        .post_with_auth("/revoke", rp(), &[("token", &t.access_token)])
        .await
        .assert_status(200);
    let page = introspect(rp(), t.access_token.clone()).await;
    assert_eq!(page.json(), json!({"active": false}));

    // Expired tokens too.
    let u = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    server.clock.advance(601);
    let page = introspect(rp(), u.access_token.clone()).await;
    assert_eq!(page.json(), json!({"active": false}));
    server.userinfo(&u.access_token).await.assert_status(401);

    // Without client authentication, or as a public client: invalid_client.
    let page = introspect(None, t.refresh_token.clone().unwrap()).await;
    page.assert_status(401);
    assert_eq!(page.oauth_error(), "invalid_client");
    assert!(page.header("www-authenticate").is_some());
    assert!(page.json().get("active").is_none());
    let page = server
        .post_with_auth(
            "/introspect",
            None,
            &[
                ("token", t.refresh_token.as_deref().unwrap()),
                ("client_id", SPA),
            ],
        )
        .await;
    page.assert_status(401);
    assert_eq!(page.oauth_error(), "invalid_client");
    assert!(page.json().get("active").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_expire_when_idle_and_at_the_chain_maximum() {
    let server = TestServer::start(
        "[tokens]\nrefresh_token_idle_timeout = \"1d\"\nrefresh_token_max_lifetime = \"3d\"\n",
    )
    .await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let auth_time = t.id_claims()["auth_time"].clone();
    let hours = |h: i64| h * 3600;

    // Refreshed every 20 hours, the chain lives...
    let mut rt = t.refresh_token.clone().unwrap();
    for _ in 0..3 {
        server.clock.advance(hours(20));
        let page = server.refresh(RP, &rt).await;
        page.assert_status(200);
        let json = page.json();
        assert_eq!(
            jwt_claims(json["id_token"].as_str().unwrap())["auth_time"],
            auth_time,
            "auth_time stays the time of the sign-in"
        );
        rt = json["refresh_token"].as_str().unwrap().to_string();
    }
    // ...until 3 days after the sign-in, however active (60 h + 20 h = 80 h > 72 h).
    server.clock.advance(hours(20));
    let page = server.refresh(RP, &rt).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");

    // Unused for more than a day: expired.
    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    server.clock.advance(hours(24) + 1);
    let page = server
        .refresh(RP, t.refresh_token.as_deref().unwrap())
        .await;
    assert_eq!(page.oauth_error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_bound_to_its_client() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let rt = t.refresh_token.clone().unwrap();
    let page = server.refresh(NC, &rt).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
    assert!(page.json().get("access_token").is_none());
    // The rightful client is not hurt by the attempt.
    server.refresh(RP, &rt).await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_of_one_code_give_one_token() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    for _ in 0..3 {
        let req = server.auth_request(RP, "openid");
        let code = req.code(&server, &browser, ALICE, ALICE_PASSWORD).await;
        let redeem = || server.redeem(RP, &code, RP_REDIRECT, Some(&req.verifier));
        let (a, b, c) = tokio::join!(redeem(), redeem(), redeem());
        let ok: Vec<&Page> = [&a, &b, &c]
            .into_iter()
            .filter(|p| p.status == 200)
            .collect();
        assert_eq!(ok.len(), 1, "exactly one redemption wins");
        for p in [&a, &b, &c].into_iter().filter(|p| p.status != 200) {
            assert_eq!(p.oauth_error(), "invalid_grant");
        }
        // Whatever won, the replay revoked it.
        for p in ok {
            let at = p.json()["access_token"].as_str().unwrap().to_string();
            server.userinfo(&at).await.assert_status(401);
        }
    }
}

/// A resource server: it may introspect every client's tokens.
const RESOURCE_SERVER: &str = r#"
[[clients]]
id = "api"
secret = "api-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/api"]
introspect_any = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_only_for_the_clients_own_tokens_unless_a_resource_server() {
    let server = TestServer::start(RESOURCE_SERVER).await;
    let browser = Browser::new();
    let t = server
        .code_flow(
            &browser,
            RP,
            "openid email offline_access",
            ALICE,
            ALICE_PASSWORD,
        )
        .await;
    let introspect = |client: &'static str, secret: &'static str, token: String| {
        let server = &server;
        async move {
            server
                .post_with_auth(
                    "/introspect",
                    Some(basic_auth(client, secret)),
                    &[("token", &token)],
                )
                .await
        }
    };
    for token in [t.access_token.clone(), t.refresh_token.clone().unwrap()] {
        // Another ordinary client learns nothing, not even that the token is live.
        let page = introspect(NC, NC_SECRET, token.clone()).await;
        page.assert_status(200);
        assert_eq!(page.json(), json!({"active": false}), "{}", page.text);
        // The client it was issued to, and a resource server, do.
        for (client, secret) in [(RP, RP_SECRET), ("api", "api-secret-0123456789")] {
            let page = introspect(client, secret, token.clone()).await;
            let j = page.json();
            assert_eq!(j["active"], true, "{client}: {j}");
            assert_eq!(j["client_id"], RP);
            assert_eq!(j["username"], ALICE);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_rotated_refresh_token_revokes_its_family() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let rt1 = t.refresh_token.clone().unwrap();
    let page = server.refresh(RP, &rt1).await;
    page.assert_status(200);
    let rt2 = page.json()["refresh_token"].as_str().unwrap().to_string();
    let at2 = page.json()["access_token"].as_str().unwrap().to_string();

    // Another client revoking it changes nothing.
    server
        .post_with_auth(
            "/revoke",
            Some(basic_auth(NC, NC_SECRET)),
            &[("token", &rt1)],
        )
        .await
        .assert_status(200);
    server.userinfo(&at2).await.assert_status(200);

    // rp revokes the spent one: the live successor and every access token die with it.
    server
        .post_with_auth(
            "/revoke",
            Some(basic_auth(RP, RP_SECRET)),
            &[("token", &rt1)],
        )
        .await
        .assert_status(200);
    let page = server.refresh(RP, &rt2).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
    for at in [&at2, &t.access_token] {
        server.userinfo(at).await.assert_status(401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_carry_a_sid_stable_for_the_sso_session() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let server = TestServer::start("").await;
    let discovery = server
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(discovery["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("sid")));

    let browser = Browser::new();
    let a = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let sid = a.id_claims()["sid"]
        .as_str()
        .expect("a sid in the id_token")
        .to_string();
    // The same SSO session, another client and another code: the same sid.
    let b = server
        .code_flow(&browser, NC, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(b.id_claims()["sid"], sid.as_str());
    // And after a refresh.
    let page = server
        .refresh(RP, a.refresh_token.as_deref().unwrap())
        .await;
    page.assert_status(200);
    let refreshed = jwt_claims(page.json()["id_token"].as_str().unwrap());
    assert_eq!(refreshed["sid"], sid.as_str());
    // Not the session cookie, nor its stored hash in any usual spelling.
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();
    let hash = Sha256::digest(cookie.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    for secretish in [cookie.clone(), hex, URL_SAFE_NO_PAD.encode(hash)] {
        assert!(!secretish.contains(&sid) && !sid.contains(&secretish[..16]));
    }
    // Another SSO session: another sid.
    let other = Browser::new();
    let c = server
        .code_flow(&other, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_ne!(c.id_claims()["sid"], sid.as_str());
}
