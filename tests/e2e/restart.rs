//! What survives a restart on the same data directory: users, signing keys, SSO sessions and
//! refresh tokens (everything lives in the database, nothing only in memory).

use crate::common::*;

async fn kids(server: &TestServer) -> Vec<String> {
    let jwks = Browser::new().get(&server.url("/jwks.json")).await.json();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keys_sessions_and_refresh_tokens_survive_a_restart() {
    let mut server = TestServer::start("").await;
    let browser = Browser::new();
    let before = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let kids_before = kids(&server).await;
    let kid = jwt_header(&before.id_token)["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(kids_before.contains(&kid));
    let sub = before.id_claims()["sub"].clone();
    let base = server.base.clone();
    // A sign-in page opened before the restart (its CSRF key lives in the database).
    let other = Browser::new();
    let open_page = other.get(&server.auth_request(NC, "openid").url).await;
    open_page.assert_status(200);

    server.restart().await;
    assert_eq!(server.base, base);

    // Keys: the same kid is published and signs.
    assert_eq!(kids(&server).await, kids_before);

    // The SSO session: the browser's cookie still signs it in, no page.
    let req = server.auth_request(RP, "openid");
    let page = browser.get(&req.url).await;
    page.assert_status(302);
    let code = query(&page.redirect())["code"].clone();
    let after = server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    after.assert_status(200);
    let id = after.json()["id_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_header(&id)["kid"], kid.as_str());
    assert_eq!(jwt_claims(&id)["sub"], sub);

    // The refresh token still redeems, and the access token still works.
    server
        .userinfo(&before.access_token)
        .await
        .assert_status(200);
    let page = server
        .refresh(RP, before.refresh_token.as_deref().unwrap())
        .await;
    page.assert_status(200);
    assert!(page.json()["refresh_token"].is_string());

    // Users: alice's password still signs her in from a new browser, with the same sub.
    let fresh = server
        .code_flow(&Browser::new(), RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(fresh.id_claims()["sub"], sub);

    // The sign-in page opened before the restart still works.
    let done = other.submit_login(&open_page, BOB, BOB_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(query(&done.redirect()).contains_key("code"));

    // An id_token from before the restart is still a valid logout hint.
    let mut url = url::Url::parse(&server.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &before.id_token)
        .append_pair("post_logout_redirect_uri", RP_LOGOUT_REDIRECT);
    let page = browser.get(url.as_str()).await;
    page.assert_status(302);
    assert!(page.redirect().as_str().starts_with(RP_LOGOUT_REDIRECT));
}
