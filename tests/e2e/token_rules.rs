//! The token endpoint's security rules: client authentication, PKCE, code binding to client,
//! redirect_uri and lifetime; JSON errors and no caching.

use crate::common::*;

/// A signed-in browser and a fresh code for `client` (with PKCE unless `pkce` is false).
async fn code_for(
    server: &TestServer,
    browser: &Browser,
    client: &str,
    pkce: bool,
) -> (String, String) {
    let (_, redirect) = client_info(client);
    let (verifier, challenge) = pkce_pair();
    let url = server.authorize_url(
        client,
        redirect,
        "openid",
        "s",
        None,
        pkce.then_some(challenge.as_str()),
        &[],
    );
    let page = browser.get(&url).await;
    let back = match page.status {
        302 => page.redirect(),
        200 => {
            let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
            done.redirect()
        }
        s => panic!("authorize answered {s}"),
    };
    (query(&back)["code"].clone(), verifier)
}

fn code_form<'a>(code: &'a str, redirect: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ]
}

/// A JSON OAuth error with this status and code, never cached.
fn assert_oauth_error(page: &Page, status: u16, error: &str) {
    assert_eq!(page.status, status, "{}", page.text);
    assert!(
        page.content_type().starts_with("application/json"),
        "content-type {:?}: {}",
        page.content_type(),
        page.text
    );
    assert_eq!(page.oauth_error(), error, "{}", page.text);
    assert!(page.json().get("access_token").is_none());
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secret_is_invalid_client() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let form = code_form(&code, RP_REDIRECT, &verifier);

    let page = server.token_basic(RP, "rp-secret-0123456788", &form).await;
    assert_oauth_error(&page, 401, "invalid_client");
    assert!(page
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));

    // The same through client_secret_post.
    let mut post = form.clone();
    post.extend([
        ("client_id", RP),
        ("client_secret", "wrong-wrong-wrong-wrong"),
    ]);
    let page = server.post_with_auth("/token", None, &post).await;
    assert_oauth_error(&page, 401, "invalid_client");
    assert!(page.header("www-authenticate").is_some());

    // No authentication at all, and an unknown client.
    let page = server.post_with_auth("/token", None, &form).await;
    assert_oauth_error(&page, 401, "invalid_client");
    let page = server
        .token_basic("nobody", "whatever-whatever-123", &form)
        .await;
    assert_oauth_error(&page, 401, "invalid_client");

    // The code is still good for the right secret (failed client auth burns nothing).
    let page = server.token_basic(RP, RP_SECRET, &form).await;
    page.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_for_a_basic_only_client_is_refused() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, BASIC_ONLY, true).await;
    let mut form = code_form(&code, BASIC_ONLY_REDIRECT, &verifier);
    form.extend([
        ("client_id", BASIC_ONLY),
        ("client_secret", BASIC_ONLY_SECRET),
    ]);
    let page = server.post_with_auth("/token", None, &form).await;
    assert_oauth_error(&page, 401, "invalid_client");

    // Basic works for it, and post works for a client without a method set.
    let page = server
        .token_basic(
            BASIC_ONLY,
            BASIC_ONLY_SECRET,
            &code_form(&code, BASIC_ONLY_REDIRECT, &verifier),
        )
        .await;
    page.assert_status(200);
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let mut form = code_form(&code, RP_REDIRECT, &verifier);
    form.extend([("client_id", RP), ("client_secret", RP_SECRET)]);
    server
        .post_with_auth("/token", None, &form)
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pkce_verifier_is_invalid_grant() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, _) = code_for(&server, &browser, RP, true).await;
    let (other_verifier, _) = pkce_pair();
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &code_form(&code, RP_REDIRECT, &other_verifier),
        )
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");

    // The public client too.
    let (code, _) = code_for(&server, &browser, SPA, true).await;
    let page = server
        .redeem(SPA, &code, SPA_REDIRECT, Some(&other_verifier))
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pkce_verifier_is_invalid_grant() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, _) = code_for(&server, &browser, RP, true).await;
    let page = server.redeem(RP, &code, RP_REDIRECT, None).await;
    assert_oauth_error(&page, 400, "invalid_grant");
    let (code, _) = code_for(&server, &browser, SPA, true).await;
    let page = server.redeem(SPA, &code, SPA_REDIRECT, None).await;
    assert_oauth_error(&page, 400, "invalid_grant");

    // A verifier for a request made without PKCE is a downgrade attempt (RFC 9700 §2.1.1);
    // without one the confidential client's code redeems.
    let (code, verifier) = code_for(&server, &browser, RP, false).await;
    let page = server.redeem(RP, &code, RP_REDIRECT, Some(&verifier)).await;
    assert_oauth_error(&page, 400, "invalid_grant");
    let (code, _) = code_for(&server, &browser, RP, false).await;
    server
        .redeem(RP, &code, RP_REDIRECT, None)
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire_after_a_minute() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    server.clock.advance(61);
    let page = server.redeem(RP, &code, RP_REDIRECT, Some(&verifier)).await;
    assert_oauth_error(&page, 400, "invalid_grant");

    // Within the minute it redeems.
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    server.clock.advance(50);
    server
        .redeem(RP, &code, RP_REDIRECT, Some(&verifier))
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_bound_to_its_client() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    // nc authenticates fine, but the code is not its own.
    let page = server
        .token_basic(NC, NC_SECRET, &code_form(&code, RP_REDIRECT, &verifier))
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");
    let page = server
        .token_basic(NC, NC_SECRET, &code_form(&code, NC_REDIRECT, &verifier))
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uri_must_match_at_the_token_endpoint() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &code_form(&code, "http://127.0.0.1:1/cb/", &verifier),
        )
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");

    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_oauth_error(&page, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_responses_are_not_cached() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let page = server
        .token_basic(RP, RP_SECRET, &code_form(&code, RP_REDIRECT, &verifier))
        .await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.content_type().starts_with("application/json"));
    let access = page.json()["access_token"].as_str().unwrap().to_string();
    let info = server.userinfo(&access).await;
    info.assert_status(200);
    assert_eq!(info.header("cache-control"), Some("no-store"));

    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let page = server
        .refresh(RP, t.refresh_token.as_deref().unwrap())
        .await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_are_json() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let (code, verifier) = code_for(&server, &browser, RP, true).await;
    let rp = Some(basic_auth(RP, RP_SECRET));
    /// (what, Authorization header, form, status, error)
    type Case<'a> = (
        &'a str,
        Option<String>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("empty body", rp.clone(), vec![], 400, "invalid_request"),
        (
            "unknown grant type",
            rp.clone(),
            vec![("grant_type", "password"), ("username", "alice")],
            400,
            "unsupported_grant_type",
        ),
        (
            "duplicate parameter",
            rp.clone(),
            vec![
                ("grant_type", "authorization_code"),
                ("grant_type", "refresh_token"),
            ],
            400,
            "invalid_request",
        ),
        (
            "no code",
            rp.clone(),
            vec![("grant_type", "authorization_code")],
            400,
            "invalid_request",
        ),
        (
            "unknown code",
            rp.clone(),
            vec![
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("redirect_uri", RP_REDIRECT),
            ],
            400,
            "invalid_grant",
        ),
        (
            "unknown refresh token",
            rp.clone(),
            vec![("grant_type", "refresh_token"), ("refresh_token", "nope")],
            400,
            "invalid_grant",
        ),
        (
            "malformed Basic",
            Some("Basic !!!not-base64".into()),
            vec![("grant_type", "authorization_code")],
            401,
            "invalid_client",
        ),
        (
            "no client",
            None,
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", RP_REDIRECT),
                ("code_verifier", &verifier),
            ],
            401,
            "invalid_client",
        ),
        (
            "public client with a secret",
            None,
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", SPA),
                ("client_secret", "not-a-secret-at-all"),
            ],
            401,
            "invalid_client",
        ),
    ];
    for (what, auth, form, status, error) in cases {
        let page = server.post_with_auth("/token", auth, &form).await;
        assert!(!page.is_html(), "{what}: HTML from the token endpoint");
        assert_eq!(page.status, status, "{what}: {}", page.text);
        assert!(
            page.content_type().starts_with("application/json"),
            "{what}: {:?}",
            page.content_type()
        );
        assert_eq!(page.oauth_error(), error, "{what}");
        assert!(page.json()["error_description"].is_string(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_are_json_even_for_oversized_bodies() {
    let server = TestServer::start("").await;
    let big = "x".repeat(70_000);
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &[("grant_type", "authorization_code"), ("code", &big)],
        )
        .await;
    assert!(page.status >= 400);
    assert!(
        page.content_type().starts_with("application/json"),
        "{} {:?}: {}",
        page.status,
        page.content_type(),
        page.text
    );
    assert!(page.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_registered_origins() {
    let server = TestServer::start(
        r#"
[[clients]]
id = "browser-app"
public = true
redirect_uris = ["https://app.example/cb"]
allowed_origins = ["https://app.example"]
"#,
    )
    .await;
    let preflight = |path: &'static str, origin: &'static str| {
        let server = &server;
        async move {
            server
                .http
                .request(reqwest::Method::OPTIONS, server.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("/token", "https://app.example").await;
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    for (path, origin) in [
        ("/token", "https://evil.example"),
        ("/token", "https://app.example.evil.example"),
        ("/authorize", "https://app.example"),
        ("/introspect", "https://app.example"),
    ] {
        let r = preflight(path, origin).await;
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path} from {origin}"
        );
    }
    let r = server
        .http
        .get(server.url("/userinfo"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
