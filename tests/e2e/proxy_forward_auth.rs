//! `/forward-auth` called the way Traefik's `forwardAuth` calls it (Traefik is not packaged in
//! Debian, so the test plays Traefik), the sign-in return address, sign-out with `?rd=`, and
//! the scope of the `doorman_fa` cookie.

use reqwest::cookie::CookieStore;
use url::Url;

use crate::common::proxies::*;
use crate::common::*;

const HTML: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

/// The Cookie header `b` would send to `url` (what a proxy passes on to doorman).
fn cookie_header(b: &Browser, url: &str) -> Option<String> {
    b.jar
        .cookies(&Url::parse(url).unwrap())
        .map(|v| v.to_str().unwrap().to_string())
}

/// What Traefik sends to the auth server for a request to `https://<host><uri>`: a GET to
/// the address with X-Forwarded-Method/-Proto/-Host/-Uri/-For, and the original request's
/// other headers (Cookie, Accept, ...) copied.
async fn traefik(
    doorman: &Doorman,
    method: &str,
    host: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Page {
    let mut all = vec![
        ("X-Forwarded-Method", method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", host),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-For", "203.0.113.7"),
        ("User-Agent", "Mozilla/5.0 (test)"),
    ];
    all.extend_from_slice(headers);
    send(plain_client().get(doorman.url("/forward-auth")), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_traefik_forward_auth_answers_like_traefik_expects() {
    let doorman = Doorman::start(&forward_auth_toml(
        r#"["127.0.0.1/32"]"#,
        "[[forward_auth.headers]]\nname = \"X-Preferred-Username\"\nclaim = \"preferred_username\"\n",
    ))
    .await;
    let printed = doorman.integrate("traefik");
    // doorman's own address, not the issuer: a check sent through the same Traefik would be
    // rewritten (or loop back into the app's site).
    let direct = format!(
        "address: \"http://127.0.0.1:{}/forward-auth\"",
        doorman.server.port
    );
    assert!(printed.contains(&direct), "{printed}");
    // doorman needs only what Traefik sets itself: a client's X-Forwarded-* must not count.
    assert!(
        printed.contains("trustForwardHeader: false") && !printed.contains("=true"),
        "{printed}"
    );
    assert!(
        printed.contains("authResponseHeadersRegex: \"(?i)^remote[-_]\""),
        "{printed}"
    );
    let response_headers = traefik_response_headers(&printed);
    assert_eq!(
        response_headers,
        vec![
            "Remote-User",
            "Remote-Email",
            "Remote-Name",
            "Remote-Groups",
            "X-Preferred-Username"
        ],
        "{printed}"
    );

    // Anonymous: a browser is redirected to the login page with the original URL (302 for
    // GET, 303 otherwise); a script gets 401.
    let page = traefik(&doorman, "GET", APP_HOST, "/x?y=1", &[("Accept", HTML)]).await;
    page.assert_status(302);
    doorman.assert_login_redirect(&page.redirect(), "https://app.example.test/x?y=1");
    let page = traefik(&doorman, "POST", APP_HOST, "/x", &[("Accept", HTML)]).await;
    page.assert_status(303);
    doorman.assert_login_redirect(&page.redirect(), "https://app.example.test/x");
    for headers in [
        vec![("Accept", HTML), ("X-Requested-With", "XMLHttpRequest")],
        vec![("Accept", "application/json")],
        vec![],
    ] {
        let page = traefik(&doorman, "GET", APP_HOST, "/x", &headers).await;
        page.assert_status(401);
        assert!(page.location().is_none(), "{headers:?}: {page:?}");
    }

    // alice, with the cookie her browser sends to the app: 2xx, and every header Traefik is
    // told to copy is there.
    let alice = browser();
    sign_in(&doorman, &alice, ALICE, ALICE_PASSWORD).await;
    let app = format!("https://{APP_HOST}/x");
    let cookie = cookie_header(&alice, &app).expect("the browser sends doorman_fa to the app");
    assert!(cookie.contains("doorman_fa="), "{cookie}");
    assert!(!cookie.contains("doorman_session="), "{cookie}");
    let page = traefik(
        &doorman,
        "GET",
        APP_HOST,
        "/x",
        &[("Accept", HTML), ("Cookie", &cookie)],
    )
    .await;
    page.assert_status(200);
    let got: Vec<Option<&str>> = response_headers.iter().map(|h| page.header(h)).collect();
    assert_eq!(
        got,
        vec![
            Some(ALICE),
            Some(ALICE_EMAIL),
            Some("Alice Liddell"),
            Some("admins"),
            Some(ALICE)
        ]
    );
    // Any method, and /admin (she is an admin).
    let page = traefik(
        &doorman,
        "DELETE",
        APP_HOST,
        "/admin/x",
        &[("Cookie", &cookie)],
    )
    .await;
    page.assert_status(200);

    // bob: every header present, the unknown ones empty, so Traefik replaces any client copy.
    let bob = browser();
    sign_in(&doorman, &bob, BOB, BOB_PASSWORD).await;
    let cookie = cookie_header(&bob, &app).unwrap();
    let page = traefik(&doorman, "GET", APP_HOST, "/x", &[("Cookie", &cookie)]).await;
    page.assert_status(200);
    let got: Vec<Option<&str>> = response_headers.iter().map(|h| page.header(h)).collect();
    assert_eq!(
        got,
        vec![Some(BOB), Some(""), Some(""), Some(""), Some(BOB)],
        "{:?}",
        page.headers
    );
    // Signed in but not allowed: 403, also for a POST and with a query; and 403 on a host no
    // rule covers (even for alice).
    for (method, uri) in [
        ("GET", "/admin"),
        ("POST", "/admin/x"),
        ("GET", "/admin?x=1"),
    ] {
        let page = traefik(
            &doorman,
            method,
            APP_HOST,
            uri,
            &[("Accept", HTML), ("Cookie", &cookie)],
        )
        .await;
        page.assert_status(403);
        assert_eq!(page.header("remote-user"), Some(""), "{page:?}");
    }
    let cookie = cookie_header(&alice, &app).unwrap();
    let page = traefik(
        &doorman,
        "GET",
        "app.other.test",
        "/",
        &[("Accept", HTML), ("Cookie", &cookie)],
    )
    .await;
    page.assert_status(403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_traefik_headers_from_an_untrusted_peer_are_ignored() {
    // The proxy would be on 10.0.0.0/8; the test connects from 127.0.0.1.
    let doorman = Doorman::start(&forward_auth_toml(r#"["10.0.0.0/8"]"#, "")).await;
    let alice = browser();
    sign_in(&doorman, &alice, ALICE, ALICE_PASSWORD).await;
    let cookie = cookie_header(&alice, &format!("https://{APP_HOST}/")).unwrap();
    let page = traefik(
        &doorman,
        "GET",
        APP_HOST,
        "/",
        &[("Accept", HTML), ("Cookie", &cookie)],
    )
    .await;
    page.assert_status(403);
    assert_eq!(page.header("remote-user"), Some(""), "{page:?}");
    let page = traefik(&doorman, "GET", APP_HOST, "/", &[("Accept", HTML)]).await;
    page.assert_status(403);
    assert!(page.location().is_none());
    // nginx's dialect too.
    let page = send(
        plain_client().get(doorman.url("/auth-request")),
        &[
            ("X-Original-URL", "https://app.example.test/"),
            ("X-Original-Method", "GET"),
            ("Cookie", &cookie),
        ],
    )
    .await;
    page.assert_status(403);
    assert_eq!(page.header("remote-user"), Some(""), "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sign_in_returns_only_to_protected_hosts() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let login = |rd: &str| {
        let mut u = Url::parse(&doorman.url("/login")).unwrap();
        u.query_pairs_mut().append_pair("rd", rd);
        u.to_string()
    };

    // A protected host: straight back there after the password.
    let b = browser();
    let page = b.get(&login("https://app.example.test/x?y=1")).await;
    let done = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    assert_eq!(done.redirect().as_str(), "https://app.example.test/x?y=1");

    // Anywhere else: doorman's own signed-in page.
    let b = browser();
    let page = b.get(&login("https://evil.example/x")).await;
    let done = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    let next = done.redirect();
    assert_eq!(next.as_str(), doorman.url("/login"));
    let page = b.get(next.as_str()).await;
    page.assert_status(200);
    assert!(page.text.contains("signed in"), "{}", page.text);

    // Already signed in: the same choice without a form.
    for (rd, followed) in [
        ("https://app.example.test/a", true),
        ("https://other.example.test/b", true),
        ("https://evil.example/x", false),
        ("https://example.test.evil.example/x", false),
        ("https://app.example.test@evil.example/x", false),
        ("javascript:alert(1)//app.example.test", false),
    ] {
        let page = b.get(&login(rd)).await;
        if followed {
            assert!(matches!(page.status, 302 | 303), "{rd}: {page:?}");
            assert_eq!(page.redirect().as_str(), rd);
        } else {
            page.assert_status(200);
            assert!(page.location().is_none(), "{rd}: {page:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sign_out_returns_to_rd_and_ends_forward_auth() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let b = browser();
    sign_in(&doorman, &b, ALICE, ALICE_PASSWORD).await;
    let app = format!("https://{APP_HOST}/");
    let fa_cookie = cookie_header(&b, &app).unwrap();
    let page = traefik(&doorman, "GET", APP_HOST, "/", &[("Cookie", &fa_cookie)]).await;
    page.assert_status(200);

    // Somewhere else to return to: the form does not carry it.
    let page = b
        .get(&doorman.url("/logout?rd=https%3A%2F%2Fevil.example%2F"))
        .await;
    page.assert_status(200);
    assert!(input_value(&page.text, "rd").is_none(), "{}", page.text);

    // The confirmation page, then its form: back at rd, both cookies cleared.
    let mut url = Url::parse(&doorman.url("/logout")).unwrap();
    url.query_pairs_mut().append_pair("rd", &app);
    let page = b.get(url.as_str()).await;
    page.assert_status(200);
    let csrf = input_value(&page.text, "csrf").expect("a CSRF token");
    let rd = input_value(&page.text, "rd").expect("rd in the form");
    assert_eq!(rd, app);
    let action = form_action(&page.text).unwrap();
    let done = b
        .post_form(&action, &[("csrf", &csrf), ("rd", &rd), ("confirm", "yes")])
        .await;
    assert!(matches!(done.status, 302 | 303), "{done:?}");
    assert_eq!(done.redirect().as_str(), app);
    let cleared = |name: &str| {
        done.set_cookies().iter().any(|c| {
            c.starts_with(&format!("{name}=;")) && c.to_ascii_lowercase().contains("max-age=0")
        })
    };
    assert!(cleared("doorman_session"), "{:?}", done.set_cookies());
    assert!(cleared("doorman_fa"), "{:?}", done.set_cookies());
    assert!(
        done.set_cookies()
            .iter()
            .any(|c| c.starts_with("doorman_fa=;")
                && c.to_ascii_lowercase().contains(&format!("domain={DOMAIN}"))),
        "doorman_fa is cleared on its domain: {:?}",
        done.set_cookies()
    );
    assert!(b.cookie(&app, "doorman_fa").is_none());
    assert!(b.cookie(&doorman.issuer, "doorman_session").is_none());

    // The old forward-auth cookie no longer signs anyone in, in either dialect.
    let page = traefik(
        &doorman,
        "GET",
        APP_HOST,
        "/",
        &[("Accept", HTML), ("Cookie", &fa_cookie)],
    )
    .await;
    page.assert_status(302);
    doorman.assert_login_redirect(&page.redirect(), &app);
    let page = send(
        plain_client().get(doorman.url("/auth-request")),
        &[
            ("X-Original-URL", app.as_str()),
            ("X-Original-Method", "GET"),
            ("Cookie", &fa_cookie),
        ],
    )
    .await;
    page.assert_status(401);
    doorman.assert_login_redirect(&page.redirect(), &app);
}

/// An authorization request of the `rp` client in `b`.
async fn authorize(doorman: &Doorman, b: &Browser) -> Page {
    b.get(&doorman.server.auth_request(RP, "openid").url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forward_auth_cookie_is_not_an_sso_session() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let b = browser();
    sign_in(&doorman, &b, ALICE, ALICE_PASSWORD).await;
    let fa = b
        .cookie(&format!("https://{APP_HOST}/"), "doorman_fa")
        .unwrap();
    let sso = b.cookie(&doorman.issuer, "doorman_session").unwrap();
    assert_ne!(fa, sso);

    // The real SSO cookie gives a code without a login page.
    let page = authorize(&doorman, &b).await;
    page.assert_status(302);
    assert!(query(&page.redirect()).contains_key("code"), "{page:?}");

    // The forward-auth cookie's value as the SSO cookie, or the forward-auth cookie itself on
    // doorman's host: the login page, no code.
    for cookie in [
        format!("doorman_session={fa}; Path=/"),
        format!("doorman_fa={fa}; Path=/"),
    ] {
        let other = browser();
        other.set_cookie(&doorman.issuer, &cookie);
        let page = authorize(&doorman, &other).await;
        page.assert_status(200);
        assert!(page.login_form().is_some(), "{cookie}: {}", page.text);
        let page = other.get(&doorman.url("/login")).await;
        page.assert_status(200);
        assert!(page.login_form().is_some(), "{cookie}: {}", page.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_spellings_of_a_protected_path_are_refused_in_both_dialects() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let bob = browser();
    sign_in(&doorman, &bob, BOB, BOB_PASSWORD).await;
    let cookie = cookie_header(&bob, &format!("https://{APP_HOST}/")).unwrap();
    let ask = |dialect: &'static str, uri: &'static str| {
        let cookie = cookie.clone();
        let doorman = &doorman;
        async move {
            if dialect == "forward-auth" {
                traefik(doorman, "GET", APP_HOST, uri, &[("Cookie", &cookie)]).await
            } else {
                let url = format!("https://{APP_HOST}{uri}");
                send(
                    plain_client().get(doorman.url("/auth-request")),
                    &[
                        ("X-Original-URL", url.as_str()),
                        ("X-Original-Method", "GET"),
                        ("Cookie", &cookie),
                    ],
                )
                .await
            }
        }
    };
    for dialect in ["forward-auth", "auth-request"] {
        // bob is let in elsewhere, and the plain /admin is denied.
        let page = ask(dialect, "/x/y").await;
        assert_eq!(page.status, 200, "{dialect} /x/y: {page:?}");
        assert_eq!(page.header("remote-user"), Some(BOB));
        for uri in ["/admin"].iter().chain(ADMIN_SPELLINGS.iter()) {
            let page = ask(dialect, uri).await;
            assert_eq!(page.status, 403, "{dialect} {uri}: {page:?}");
            assert_eq!(page.header("remote-user"), Some(""), "{dialect} {uri}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_a_rule_for_admin_slash_covers_admin() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "").replacen(
        "path = \"/admin\"",
        "path = \"/Admin/\"",
        1,
    ))
    .await;
    let bob = browser();
    sign_in(&doorman, &bob, BOB, BOB_PASSWORD).await;
    let cookie = cookie_header(&bob, &format!("https://{APP_HOST}/")).unwrap();
    for (uri, status) in [
        ("/admin", 403),
        ("/admin/", 403),
        ("/ADMIN/x", 403),
        ("/administrator", 200),
        ("/", 200),
    ] {
        let page = traefik(&doorman, "GET", APP_HOST, uri, &[("Cookie", &cookie)]).await;
        assert_eq!(page.status, status, "{uri}: {page:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_a_proxy_header_that_arrives_twice_is_refused() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let bob = browser();
    sign_in(&doorman, &bob, BOB, BOB_PASSWORD).await;
    let cookie = cookie_header(&bob, &format!("https://{APP_HOST}/")).unwrap();
    // A proxy that appends the client's copy after (or before) its own.
    for (name, second) in [
        ("X-Forwarded-Uri", "/admin"),
        ("X-Forwarded-Host", "other.example.test"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Method", "POST"),
    ] {
        let page = traefik(
            &doorman,
            "GET",
            APP_HOST,
            "/x",
            &[(name, second), ("Cookie", &cookie)],
        )
        .await;
        assert_eq!(page.status, 400, "{name}: {page:?}");
        assert_eq!(page.header("remote-user"), Some(""), "{name}");
    }
    // Two values joined in one header.
    let page = send(
        plain_client().get(doorman.url("/forward-auth")),
        &[
            ("X-Forwarded-Host", "app.example.test, other.example.test"),
            ("X-Forwarded-Uri", "/x"),
            ("Cookie", &cookie),
        ],
    )
    .await;
    assert_eq!(page.status, 400, "{page:?}");
    for (name, second) in [
        ("X-Original-URL", "https://app.example.test/admin"),
        ("X-Original-Method", "POST"),
    ] {
        let page = send(
            plain_client().get(doorman.url("/auth-request")),
            &[
                ("X-Original-URL", "https://app.example.test/x"),
                ("X-Original-Method", "GET"),
                (name, second),
                ("Cookie", &cookie),
            ],
        )
        .await;
        assert_eq!(page.status, 400, "{name}: {page:?}");
    }
    // The same value twice is one value.
    let page = traefik(
        &doorman,
        "GET",
        APP_HOST,
        "/x",
        &[("X-Forwarded-Uri", "/x"), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
}

/// bob's stored email is carol's, unverified: a `users = ["carol@..."]` rule must not let him
/// in, and no Remote-Email carries it; verified, it counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_only_verified_emails_decide_access() {
    const CAROL: &str = "carol@example.test";
    let doorman = Doorman::start(&forward_auth_toml(
        r#"["127.0.0.1/32"]"#,
        "[[forward_auth.headers]]\nname = \"X-Email\"\nclaim = \"email\"\n",
    )
    .replacen(
        "[[forward_auth.rules]]",
        &format!("[[forward_auth.rules]]\nhost = \"carol.{DOMAIN}\"\nusers = [\"{CAROL}\"]\n\n[[forward_auth.rules]]"),
        1,
    ))
    .await;
    let store = &doorman.server.state.store;
    let mut user = store.find_user_by_username(BOB).await.unwrap().unwrap();
    user.email = Some(CAROL.into());
    user.email_verified = false;
    store.update_user(&user).await.unwrap();
    let bob = browser();
    sign_in(&doorman, &bob, BOB, BOB_PASSWORD).await;
    let cookie = cookie_header(&bob, &format!("https://{APP_HOST}/")).unwrap();
    let carol_host = format!("carol.{DOMAIN}");
    let page = traefik(&doorman, "GET", &carol_host, "/", &[("Cookie", &cookie)]).await;
    assert_eq!(
        page.status, 403,
        "an unverified email passed a users rule: {page:?}"
    );
    let page = traefik(&doorman, "GET", APP_HOST, "/", &[("Cookie", &cookie)]).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("remote-email"), Some(""), "{page:?}");
    assert_eq!(page.header("x-email"), Some(""), "{page:?}");

    user.email_verified = true;
    store.update_user(&user).await.unwrap();
    // The user cache may hold the old record for a moment: a bounded wait.
    let mut page = traefik(&doorman, "GET", &carol_host, "/", &[("Cookie", &cookie)]).await;
    for _ in 0..100 {
        if page.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = traefik(&doorman, "GET", &carol_host, "/", &[("Cookie", &cookie)]).await;
    }
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("remote-email"), Some(CAROL));
}
