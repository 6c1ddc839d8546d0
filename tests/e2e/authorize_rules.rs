//! The authorization endpoint's security rules: never redirect to an unregistered address,
//! PKCE S256 only, public clients must use PKCE, allowed_groups.

use crate::common::*;

/// An authorization request with PKCE for `client`, sent to `redirect`.
fn request(server: &TestServer, client: &str, redirect: &str) -> String {
    let (_, challenge) = pkce_pair();
    server.authorize_url(
        client,
        redirect,
        "openid",
        "st",
        None,
        Some(&challenge),
        &[],
    )
}

/// A 400 page for a person, with no redirect at all.
fn assert_error_page(page: &Page, what: &str) {
    assert_eq!(page.status, 400, "{what}: {}", page.text);
    assert!(
        page.location().is_none(),
        "{what}: redirected to {:?}",
        page.location()
    );
    assert!(page.is_html(), "{what}: {}", page.content_type());
    assert!(
        page.login_form().is_none(),
        "{what}: no sign-in for a bad request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_redirect_uris_get_a_page_never_a_redirect() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    // A signed-in browser is the interesting case: SSO must not hand a code to an attacker.
    server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    for bad in [
        "http://evil.example/cb",
        "http://127.0.0.1:1/c",       // prefix
        "http://127.0.0.1:1/cb/",     // suffix
        "http://127.0.0.1:1/cbx",     // suffix
        "http://127.0.0.1:1/cb/../x", // path games
        "http://127.0.0.1:1/cb?next=http://evil.example",
        "http://127.0.0.1:2/cb", // another port
        "https://127.0.0.1:1/cb",
        SPA_REDIRECT, // another client's
        "",
    ] {
        let page = browser.get(&request(&server, RP, bad)).await;
        assert_error_page(&page, bad);
    }
    // No redirect_uri at all.
    let (_, challenge) = pkce_pair();
    let url = format!(
        "{}?response_type=code&client_id=rp&scope=openid&state=s&code_challenge={challenge}&code_challenge_method=S256",
        server.url("/authorize")
    );
    assert_error_page(&browser.get(&url).await, "missing redirect_uri");
    // The registered one works (the rule is what rejected the others).
    let page = browser.get(&request(&server, RP, RP_REDIRECT)).await;
    page.assert_status(302);
    assert!(query(&page.redirect()).contains_key("code"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_gets_a_page() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = browser
        .get(&request(&server, "no-such-client", RP_REDIRECT))
        .await;
    assert_error_page(&page, "unknown client");
    let page = browser.get(&request(&server, "", RP_REDIRECT)).await;
    assert_error_page(&page, "empty client_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_must_use_pkce() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let url = server.authorize_url(SPA, SPA_REDIRECT, "openid", "st-9", None, None, &[]);
    let page = browser.get(&url).await;
    page.assert_status(302);
    let back = page.redirect();
    assert!(back.as_str().starts_with(SPA_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st-9");
    assert!(!q.contains_key("code"));

    // With PKCE the public client signs in and redeems without a secret.
    let t = server
        .code_flow(&browser, SPA, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(t.id_claims()["aud"], SPA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_s256_is_accepted() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (verifier, _) = pkce_pair();
    for (client, redirect) in [(RP, RP_REDIRECT), (SPA, SPA_REDIRECT)] {
        for extra in [
            vec![
                ("code_challenge", verifier.as_str()),
                ("code_challenge_method", "plain"),
            ],
            // No method means plain (RFC 7636 §4.3).
            vec![("code_challenge", verifier.as_str())],
        ] {
            let url = server.authorize_url(client, redirect, "openid", "s", None, None, &extra);
            let page = browser.get(&url).await;
            page.assert_status(302);
            let q = query(&page.redirect());
            assert_eq!(
                q.get("error").map(String::as_str),
                Some("invalid_request"),
                "{client} {extra:?}"
            );
            assert!(!q.contains_key("code"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_groups_keeps_others_out() {
    let server = TestServer::start("").await;
    let req = server.auth_request(ADMINS_ONLY, "openid");

    // bob is not in admins: access_denied back to the client, no code.
    let bob = Browser::new();
    let back = bob.login(&req.url, BOB, BOB_PASSWORD).await;
    assert!(back.as_str().starts_with(ADMINS_ONLY_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state"), Some(&req.state));
    assert!(!q.contains_key("code"));
    // Also through SSO (bob's session is fine for other clients).
    let page = bob
        .get(&server.auth_request(ADMINS_ONLY, "openid").url)
        .await;
    page.assert_status(302);
    assert_eq!(query(&page.redirect())["error"], "access_denied");
    let page = bob.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(302);
    assert!(query(&page.redirect()).contains_key("code"));

    // alice is: a code that redeems.
    let alice = Browser::new();
    let t = server
        .code_flow(&alice, ADMINS_ONLY, "openid groups", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(t.id_claims()["aud"], ADMINS_ONLY);
}

/// `redirect_uri_match = "prefix"`: a callback with a varying suffix under the registered
/// prefix gets its code (and redeems it with the same URI); one that climbs out (`..`, `%2e`
/// in any case) or has a fragment gets a page naming the sent and registered URIs, never a
/// redirect; an exact client still takes only its exact URIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_redirect_uris_stay_under_the_registered_path() {
    let server = TestServer::start(
        r#"
[[clients]]
id = "prefixed"
secret = "prefixed-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/sso/OID/redirect/"]
redirect_uri_match = "prefix"
"#,
    )
    .await;
    let browser = Browser::new();
    let sent = "http://127.0.0.1:1/sso/OID/redirect/doorman?x=1";
    let (verifier, challenge) = pkce_pair();
    let req = AuthRequest {
        client: "prefixed".into(),
        redirect: sent.into(),
        url: server.authorize_url(
            "prefixed",
            sent,
            "openid",
            "st",
            None,
            Some(&challenge),
            &[],
        ),
        state: "st".into(),
        nonce: String::new(),
        verifier: verifier.clone(),
    };
    let code = req.code(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let token = server
        .token_basic(
            "prefixed",
            "prefixed-secret-0123456789",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", sent),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    token.assert_status(200);

    for bad in [
        "http://127.0.0.1:1/sso/OID/redirect/../../admin",
        "http://127.0.0.1:1/sso/OID/redirect/%2E%2E/admin",
        "http://127.0.0.1:1/sso/OID/redirect/x#frag",
        "http://127.0.0.1:1/sso/OID/redirec",
        "http://127.0.0.1:1/sso/OID/redirectx/",
    ] {
        // Signed in already: SSO must not hand a code to it either.
        let page = browser.get(&request(&server, "prefixed", bad)).await;
        assert_error_page(&page, bad);
        let text = html_unescape(&page.text);
        assert!(text.contains(bad), "{bad}: the sent URI named: {text}");
        assert!(
            text.contains("\"http://127.0.0.1:1/sso/OID/redirect/\""),
            "{bad}: the registered prefix named: {text}"
        );
    }
    // Exact clients are unchanged: a suffix is refused.
    let page = browser
        .get(&request(&server, RP, &format!("{RP_REDIRECT}/more")))
        .await;
    assert_error_page(&page, "exact client with a suffix");
    assert!(html_unescape(&page.text).contains(&format!("\"{RP_REDIRECT}\"")));
}
