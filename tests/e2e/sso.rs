//! Single sign-on: one password, then straight back to every client; and the prompt/max_age
//! parameters that ask for a fresh sign-in.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_authorize_is_answered_from_the_session() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let first = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert!(browser.cookie(&server.base, "doorman_session").is_some());

    // Same client again: 302 to the redirect URI, no page.
    let req = server.auth_request(RP, "openid");
    let page = browser.get(&req.url).await;
    page.assert_status(302);
    assert!(page.text.is_empty(), "no HTML body: {}", page.text);
    assert!(!page.is_html());
    let back = page.redirect();
    assert!(back.as_str().starts_with(RP_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q.get("state"), Some(&req.state));
    assert_eq!(q.get("iss"), Some(&server.base));
    let code = q.get("code").expect("a code").clone();
    let tokens = server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    tokens.assert_status(200);
    let claims = jwt_claims(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], first.id_claims()["sub"]);
    assert_eq!(claims["nonce"], req.nonce.as_str());
    assert_eq!(
        claims["auth_time"],
        first.id_claims()["auth_time"],
        "SSO does not pretend the user signed in again"
    );

    // Another client: SSO too.
    let req = server.auth_request(NC, "openid");
    let page = browser.get(&req.url).await;
    page.assert_status(302);
    let back = page.redirect();
    assert!(back.as_str().starts_with(NC_REDIRECT), "{back}");
    assert!(query(&back).contains_key("code"));

    // A browser without the cookie gets the login page.
    let stranger = Browser::new();
    let page = stranger.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.login_form().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_login_asks_again() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let first = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    server.clock.advance(30);

    let (_, challenge) = pkce_pair();
    let url = server.authorize_url(
        RP,
        RP_REDIRECT,
        "openid",
        "st",
        None,
        Some(&challenge),
        &[("prompt", "login")],
    );
    let page = browser.get(&url).await;
    page.assert_status(200);
    assert!(
        page.login_form().is_some(),
        "a password form: {}",
        page.text
    );

    // Signing in there gives a newer auth_time.
    let req = server.auth_request(RP, "openid");
    let url = format!("{}&prompt=login", req.url);
    let page = browser.get(&url).await;
    page.assert_status(200);
    let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let code = query(&done.redirect())["code"].clone();
    let tokens = server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    let claims = jwt_claims(tokens.json()["id_token"].as_str().unwrap());
    assert!(
        claims["auth_time"].as_i64().unwrap()
            >= first.id_claims()["auth_time"].as_i64().unwrap() + 30,
        "auth_time is the new sign-in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_without_a_session_is_login_required() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (_, challenge) = pkce_pair();
    let url = server.authorize_url(
        RP,
        RP_REDIRECT,
        "openid",
        "state-123",
        None,
        Some(&challenge),
        &[("prompt", "none")],
    );
    let page = browser.get(&url).await;
    page.assert_status(302);
    let back = page.redirect();
    assert!(back.as_str().starts_with(RP_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "state-123");
    assert_eq!(q["iss"], server.base);
    assert!(!q.contains_key("code"));

    // With a session, prompt=none answers with a code.
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let page = browser.get(&url).await;
    page.assert_status(302);
    let q = query(&page.redirect());
    assert!(q.contains_key("code"), "{q:?}");
    assert!(!q.contains_key("error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_forces_a_fresh_sign_in() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    server.clock.advance(5);
    let (_, challenge) = pkce_pair();
    let with = |max_age: &'static str| {
        server.authorize_url(
            RP,
            RP_REDIRECT,
            "openid",
            "s",
            None,
            Some(&challenge),
            &[("max_age", max_age)],
        )
    };
    // A generous max_age is satisfied by the session...
    let page = browser.get(&with("3600")).await;
    page.assert_status(302);
    assert!(query(&page.redirect()).contains_key("code"));
    // ...max_age=0 five seconds after the sign-in is not.
    let page = browser.get(&with("0")).await;
    page.assert_status(200);
    assert!(page.login_form().is_some(), "login page: {}", page.text);
    let page = browser.get(&with("4")).await;
    page.assert_status(200);
    assert!(page.login_form().is_some());
}

/// Whether a session cookie value still gives SSO (from a fresh browser, so only the server's
/// memory counts).
async fn gives_sso(server: &TestServer, cookie: &str) -> bool {
    let b = Browser::new();
    b.set_cookie(&server.base, &format!("doorman_session={cookie}; Path=/"));
    let page = b.get(&server.auth_request(RP, "openid").url).await;
    match page.status {
        302 => query(&page.redirect()).contains_key("code"),
        200 => false,
        s => panic!("authorize answered {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sign_in_gets_a_new_session_id() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    // A session id planted before sign-in is not adopted (fixation).
    browser.set_cookie(
        &server.base,
        "doorman_session=planted-by-an-attacker-0123456789abcdef; Path=/",
    );
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let first = browser.cookie(&server.base, "doorman_session").unwrap();
    assert_ne!(first, "planted-by-an-attacker-0123456789abcdef");
    assert!(!gives_sso(&server, "planted-by-an-attacker-0123456789abcdef").await);
    assert!(gives_sso(&server, &first).await);

    // Signing in again (prompt=login) replaces the session; the old id is dead.
    let req = server.auth_request(RP, "openid");
    let page = browser.get(&format!("{}&prompt=login", req.url)).await;
    let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let second = browser.cookie(&server.base, "doorman_session").unwrap();
    assert_ne!(second, first);
    assert!(gives_sso(&server, &second).await);
    assert!(
        !gives_sso(&server, &first).await,
        "the old session id still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_or_too_old() {
    let server =
        TestServer::start("[session]\nidle_timeout = \"1h\"\nmax_lifetime = \"3h\"\n").await;
    let browser = Browser::new();
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();

    // Used every 50 minutes, it lives on past the idle timeout...
    for _ in 0..3 {
        server.clock.advance(50 * 60);
        assert!(gives_sso(&server, &cookie).await, "active session ended");
    }
    // ...but not past max_lifetime (3 h after the password), however active.
    server.clock.advance(40 * 60);
    assert!(
        !gives_sso(&server, &cookie).await,
        "session outlived max_lifetime"
    );

    // Idle for longer than idle_timeout: over.
    let browser = Browser::new();
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();
    server.clock.advance(30 * 60);
    assert!(gives_sso(&server, &cookie).await);
    server.clock.advance(61 * 60);
    assert!(
        !gives_sso(&server, &cookie).await,
        "idle session still alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_by_post_works_like_get() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let req = server.auth_request(RP, "openid");
    let url = url::Url::parse(&req.url).unwrap();
    let fields: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = browser.post_form(&server.url("/authorize"), &fields).await;
    page.assert_status(302);
    let q = query(&page.redirect());
    assert_eq!(q.get("state"), Some(&req.state));
    let code = q["code"].clone();
    server
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await
        .assert_status(200);
}
