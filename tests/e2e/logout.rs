//! RP-initiated logout: with a valid id_token_hint straight back to a registered address;
//! otherwise a confirmation form protected against CSRF.

use crate::common::*;

/// Whether `cookie` (a session cookie value) still gives SSO, tried from a fresh browser so
/// that only the server's memory of the session counts, not the browser's cookie jar.
async fn session_alive(server: &TestServer, cookie: &str) -> bool {
    let b = Browser::new();
    b.set_cookie(&server.base, &format!("doorman_session={cookie}; Path=/"));
    let page = b.get(&server.auth_request(RP, "openid").url).await;
    match page.status {
        302 => {
            assert!(query(&page.redirect()).contains_key("code"));
            true
        }
        200 => {
            assert!(page.login_form().is_some());
            false
        }
        s => panic!("authorize answered {s}"),
    }
}

fn logout_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&server.url("/logout")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_id_token_hint_returns_to_the_registered_address() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();
    assert!(session_alive(&server, &cookie).await);

    // Unregistered return address: a page, never a redirect, and the session stays.
    let page = browser
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &t.id_token),
                ("post_logout_redirect_uri", "http://127.0.0.1:1/evil"),
                ("state", "s1"),
            ],
        ))
        .await;
    page.assert_status(400);
    assert!(page.location().is_none());
    assert!(page.is_html());
    assert!(session_alive(&server, &cookie).await);
    // A prefix of the registered one is not it either.
    let page = browser
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &t.id_token),
                ("post_logout_redirect_uri", "http://127.0.0.1:1/bye/x"),
            ],
        ))
        .await;
    page.assert_status(400);
    assert!(page.location().is_none());

    // The registered one, with state.
    let page = browser
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &t.id_token),
                ("post_logout_redirect_uri", RP_LOGOUT_REDIRECT),
                ("state", "st-42"),
            ],
        ))
        .await;
    page.assert_status(302);
    let back = page.redirect();
    assert_eq!(back.as_str(), format!("{RP_LOGOUT_REDIRECT}?state=st-42"));
    assert!(
        !session_alive(&server, &cookie).await,
        "the session is ended on the server, not just forgotten by the browser"
    );
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.login_form().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_hint_asks_and_needs_the_csrf_token() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();

    let page = browser.get(&server.url("/logout")).await;
    page.assert_status(200);
    assert!(page.is_html());
    assert_eq!(form_action(&page.text).unwrap(), server.url("/logout"));
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    assert_eq!(input_value(&page.text, "confirm").as_deref(), Some("yes"));
    assert!(session_alive(&server, &cookie).await, "asking ends nothing");

    // Without the csrf field: refused, still signed in.
    let page = browser
        .post_form(&server.url("/logout"), &[("confirm", "yes")])
        .await;
    page.assert_status(403);
    assert!(session_alive(&server, &cookie).await);
    // A token made for another browser: refused too.
    let other = Browser::new();
    server
        .code_flow(&other, RP, "openid", BOB, BOB_PASSWORD)
        .await;
    let other_page = other.get(&server.url("/logout")).await;
    let other_csrf = input_value(&other_page.text, "csrf").unwrap();
    let page = browser
        .post_form(
            &server.url("/logout"),
            &[("confirm", "yes"), ("csrf", &other_csrf)],
        )
        .await;
    page.assert_status(403);
    assert!(session_alive(&server, &cookie).await);
    // A GET cannot confirm, whatever it carries.
    let page = browser
        .get(&logout_url(&server, &[("confirm", "yes"), ("csrf", &csrf)]))
        .await;
    page.assert_status(200);
    assert!(session_alive(&server, &cookie).await);

    // The real form: signed out.
    let page = browser
        .post_form(
            &server.url("/logout"),
            &[("confirm", "yes"), ("csrf", &csrf)],
        )
        .await;
    page.assert_status(200);
    assert!(page.text.contains("signed out"), "{}", page.text);
    assert!(!session_alive(&server, &cookie).await);
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.login_form().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_for_another_user_does_not_sign_out_silently() {
    let server = TestServer::start("").await;
    let alice = Browser::new();
    server
        .code_flow(&alice, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let bob = Browser::new();
    let bob_tokens = server
        .code_flow(&bob, RP, "openid", BOB, BOB_PASSWORD)
        .await;
    let cookie = alice.cookie(&server.base, "doorman_session").unwrap();
    let page = alice
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &bob_tokens.id_token),
                ("post_logout_redirect_uri", RP_LOGOUT_REDIRECT),
            ],
        ))
        .await;
    page.assert_status(200);
    assert!(page.location().is_none());
    assert!(input_value(&page.text, "csrf").is_some(), "asks to confirm");
    assert!(session_alive(&server, &cookie).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_hint_is_no_hint() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();
    let claims = URL_SAFE_NO_PAD.encode(t.id_claims().to_string());
    let parts: Vec<&str> = t.id_token.split('.').collect();
    let forgeries = [
        // alg none, same claims.
        format!(
            "{}.{claims}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        ),
        // The real header and claims with another token's signature... of different claims.
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(
                t.id_claims()
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.insert("aud".into(), serde_json::json!("nc"));
                        serde_json::Value::Object(o)
                    })
                    .unwrap()
                    .to_string()
            ),
            parts[2]
        ),
        "not-a-jwt".to_string(),
    ];
    for hint in &forgeries {
        let page = browser
            .get(&logout_url(
                &server,
                &[
                    ("id_token_hint", hint),
                    ("post_logout_redirect_uri", RP_LOGOUT_REDIRECT),
                ],
            ))
            .await;
        // Either refused, or asked: never signed out silently or redirected.
        assert!(page.location().is_none(), "{hint}: {:?}", page.location());
        assert!(session_alive(&server, &cookie).await, "{hint}");
    }
}

/// A public client whose access tokens are RS256 JWTs (Jitsi's native OIDC mode).
const JWT_CLIENT_TOML: &str = r#"
[[clients]]
id = "jwt-app"
public = true
redirect_uris = ["http://127.0.0.1:1/jwt-app"]
access_token_format = "jwt"
"#;

/// Signs in through `jwt-app` in `browser` and returns its token response.
async fn jwt_app_tokens(server: &TestServer, browser: &Browser) -> serde_json::Value {
    let (verifier, challenge) = pkce_pair();
    let url = server.authorize_url(
        "jwt-app",
        "http://127.0.0.1:1/jwt-app",
        "openid",
        "s",
        None,
        Some(&challenge),
        &[],
    );
    let back = browser.login(&url, ALICE, ALICE_PASSWORD).await;
    let code = query(&back)["code"].clone();
    let page = server
        .post_with_auth(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:1/jwt-app"),
                ("client_id", "jwt-app"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    page.assert_status(200);
    page.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_access_token_is_no_id_token_hint() {
    let server = TestServer::start(JWT_CLIENT_TOML).await;
    let browser = Browser::new();
    let tokens = jwt_app_tokens(&server, &browser).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        jwt_header(access)["typ"],
        "JWT",
        "signed by doorman, but not an id_token"
    );
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();

    let page = browser
        .get(&logout_url(&server, &[("id_token_hint", access)]))
        .await;
    page.assert_status(200);
    assert!(page.location().is_none());
    assert!(
        input_value(&page.text, "csrf").is_some(),
        "asks to confirm:\n{}",
        page.text
    );
    assert!(session_alive(&server, &cookie).await);

    // The same client's id_token is a hint.
    let id_token = tokens["id_token"].as_str().unwrap();
    let page = browser
        .get(&logout_url(&server, &[("id_token_hint", id_token)]))
        .await;
    page.assert_status(200);
    assert!(input_value(&page.text, "csrf").is_none(), "{}", page.text);
    assert!(!session_alive(&server, &cookie).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_from_an_earlier_session_asks_first() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let old = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let old_sid = old.id_claims()["sid"].as_str().unwrap().to_string();
    // Signed out (confirmed with the old session's own hint), then signed in again.
    browser
        .get(&logout_url(&server, &[("id_token_hint", &old.id_token)]))
        .await
        .assert_status(200);
    let new = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_ne!(new.id_claims()["sid"].as_str().unwrap(), old_sid);
    let cookie = browser.cookie(&server.base, "doorman_session").unwrap();

    // The same user's id_token, but of the earlier session: no silent sign-out.
    let page = browser
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &old.id_token),
                ("post_logout_redirect_uri", RP_LOGOUT_REDIRECT),
            ],
        ))
        .await;
    page.assert_status(200);
    assert!(page.location().is_none());
    assert!(input_value(&page.text, "csrf").is_some(), "asks to confirm");
    assert!(session_alive(&server, &cookie).await);
    // This session's hint signs out at once.
    let page = browser
        .get(&logout_url(
            &server,
            &[
                ("id_token_hint", &new.id_token),
                ("post_logout_redirect_uri", RP_LOGOUT_REDIRECT),
            ],
        ))
        .await;
    page.assert_status(302);
    assert!(!session_alive(&server, &cookie).await);
}
