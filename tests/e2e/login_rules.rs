//! The sign-in page's security rules: login CSRF, one generic failure message, throttling,
//! security headers; and what disabling a user ends.

use doorman::accounts::users;

use crate::common::*;

/// The text of the error paragraph of a login page.
fn error_message(html: &str) -> Option<String> {
    let start = html.find("role=\"alert\">")? + "role=\"alert\">".len();
    let len = html[start..].find("</p>")?;
    Some(html_unescape(&html[start..start + len]))
}

fn assert_forbidden_without_session(page: &Page, what: &str) {
    assert_eq!(page.status, 403, "{what}: {}", page.text);
    assert!(page.location().is_none(), "{what}");
    assert!(
        !page.sets_cookie("doorman_session"),
        "{what}: a session cookie was set: {:?}",
        page.set_cookies()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_needs_its_csrf_token_and_browser() {
    let server = TestServer::start("").await;
    let a = Browser::new();
    let req = server.auth_request(RP, "openid");
    let page_a = a.get(&req.url).await;
    let form_a = page_a.login_form().unwrap();
    let fields = |flow: &str, csrf: Option<&str>| {
        let mut f = vec![
            ("flow".to_string(), flow.to_string()),
            ("username".to_string(), ALICE.to_string()),
            ("password".to_string(), ALICE_PASSWORD.to_string()),
        ];
        if let Some(c) = csrf {
            f.push(("csrf".to_string(), c.to_string()));
        }
        f
    };
    let post = |b: &Browser, f: Vec<(String, String)>| {
        let b = b.clone();
        let action = form_a.action.clone();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            b.post_form(&action, &f).await
        }
    };

    // No csrf field.
    let page = post(&a, fields(&form_a.flow, None)).await;
    assert_forbidden_without_session(&page, "without csrf");
    let page = post(&a, fields(&form_a.flow, Some(""))).await;
    assert_forbidden_without_session(&page, "empty csrf");

    // A csrf (and flow) from another browser: login CSRF.
    let b = Browser::new();
    let page_b = b.get(&server.auth_request(RP, "openid").url).await;
    let form_b = page_b.login_form().unwrap();
    let page = post(&b, fields(&form_a.flow, Some(&form_a.csrf))).await;
    assert_forbidden_without_session(&page, "A's form posted from B");
    let page = post(&a, fields(&form_a.flow, Some(&form_b.csrf))).await;
    assert_forbidden_without_session(&page, "B's csrf with A's flow");
    let page = post(&a, fields(&form_b.flow, Some(&form_b.csrf))).await;
    assert_forbidden_without_session(&page, "B's whole form posted from A");

    // No doorman_csrf cookie at all (a cross-site POST would not carry it).
    let bare = Browser::new();
    let page = post(&bare, fields(&form_a.flow, Some(&form_a.csrf))).await;
    assert_forbidden_without_session(&page, "without the doorman_csrf cookie");
    assert!(bare.cookie(&server.base, "doorman_session").is_none());

    // The genuine form still works in both browsers.
    let done = a.submit_login(&page_a, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(done.sets_cookie("doorman_session"));
    let q = query(&done.redirect());
    assert_eq!(q.get("state"), Some(&req.state));
    let done = b.submit_login(&page_b, BOB, BOB_PASSWORD).await;
    assert_eq!(done.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = browser.get(&server.auth_request(RP, "openid").url).await;

    let wrong = browser
        .submit_login(&page, ALICE, "not-alices-password")
        .await;
    wrong.assert_status(401);
    assert!(!wrong.sets_cookie("doorman_session"));
    assert!(wrong.location().is_none());
    let message = error_message(&wrong.text).expect("an error message");
    assert_eq!(message, "Wrong username or password.");
    // The page is a login form again, ready for another try.
    assert!(wrong.login_form().is_some());

    let unknown = browser
        .submit_login(&wrong, "mallory", "whatever-password")
        .await;
    unknown.assert_status(401);
    assert_eq!(error_message(&unknown.text), Some(message.clone()));
    assert!(!unknown.sets_cookie("doorman_session"));

    // An email address that does not exist, and a user's email with the wrong password.
    let by_email = browser
        .submit_login(&unknown, "nobody@example.com", "whatever-password")
        .await;
    assert_eq!(error_message(&by_email.text), Some(message.clone()));
    let by_email = browser
        .submit_login(&by_email, ALICE_EMAIL, "whatever-password")
        .await;
    assert_eq!(error_message(&by_email.text), Some(message));

    // Nothing about which one was wrong.
    for p in [&wrong, &unknown] {
        let lower = p.text.to_lowercase();
        assert!(!lower.contains("no such user") && !lower.contains("unknown user"));
    }

    // The right password on the re-rendered form signs in (sign-in by email works too).
    let ok = browser
        .submit_login(&by_email, ALICE_EMAIL, ALICE_PASSWORD)
        .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_account() {
    let server = TestServer::start("[login]\nmax_failures_per_account = 3\n").await;
    // The limiter counts whole seconds of the server's clock, which is the wall clock here; a
    // run that straddles a second boundary between the third failure and the next attempt
    // sees the 1-second block already over, so it is repeated (with a new window).
    for attempt in 0..4 {
        let browser = Browser::new();
        let mut page = browser.get(&server.auth_request(RP, "openid").url).await;
        for _ in 0..2 {
            page = browser.submit_login(&page, ALICE, "wrong-password").await;
            page.assert_status(401);
        }
        let before = server.now();
        page = browser.submit_login(&page, ALICE, "wrong-password").await;
        page.assert_status(401);
        let limited = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
        let after = server.now();
        if limited.status != 429 && after != before {
            // Inconclusive: move past the window so the next round starts from zero.
            assert!(attempt < 3, "never throttled: {}", limited.text);
            server.clock.advance(301);
            continue;
        }
        assert_eq!(
            limited.status, 429,
            "the right password after 3 failures must wait: {}",
            limited.text
        );
        let retry: i64 = limited
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");
        assert!(!limited.sets_cookie("doorman_session"));
        assert!(limited.location().is_none());
        assert!(error_message(&limited.text).is_some_and(|m| m.contains("Too many")));

        // The rest of the service, and other accounts, are unaffected.
        let other = Browser::new();
        other
            .get(&server.url("/.well-known/openid-configuration"))
            .await
            .assert_status(200);
        let back = other
            .login(&server.auth_request(RP, "openid").url, BOB, BOB_PASSWORD)
            .await;
        assert!(query(&back).contains_key("code"));

        // Once the wait is over, the right password works.
        server.clock.advance(retry);
        let ok = browser.submit_login(&limited, ALICE, ALICE_PASSWORD).await;
        assert_eq!(ok.status, 303, "{}", ok.text);
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let login = browser.get(&server.auth_request(RP, "openid").url).await;
    login.assert_status(200);
    let error_page = browser
        .get(&server.authorize_url(RP, "http://evil.example/", "openid", "s", None, None, &[]))
        .await;
    error_page.assert_status(400);
    let failed = browser.submit_login(&login, ALICE, "nope-nope").await;
    failed.assert_status(401);
    for (what, page) in [
        ("login", &login),
        ("error", &error_page),
        ("failed login", &failed),
    ] {
        let csp = page
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{what}: CSP"));
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert_eq!(
            page.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            page.header("referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert_eq!(page.header("cache-control"), Some("no-store"), "{what}");
        assert!(page.is_html(), "{what}");
    }
    // Cookies are HttpOnly and SameSite.
    let cookies = login.set_cookies();
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("doorman_csrf="))
        .expect("the browser-binding cookie");
    assert!(
        csrf.contains("HttpOnly") && csrf.contains("SameSite=Lax"),
        "{csrf}"
    );
    let done = browser.submit_login(&failed, ALICE, ALICE_PASSWORD).await;
    let session = done
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("doorman_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_sso_and_refresh() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    // SSO works before; this code is not redeemed yet when she is disabled.
    let pending = server.auth_request(RP, "openid");
    let code = pending.code(&server, &browser, ALICE, ALICE_PASSWORD).await;

    users::set_disabled(&*server.state.store, ALICE, true, server.now())
        .await
        .unwrap();

    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.login_form().is_some(), "no SSO for a disabled user");
    let refresh = server
        .refresh(RP, t.refresh_token.as_deref().unwrap())
        .await;
    refresh.assert_status(400);
    assert_eq!(refresh.oauth_error(), "invalid_grant");
    server.userinfo(&t.access_token).await.assert_status(401);
    let late = server
        .redeem(RP, &code, RP_REDIRECT, Some(&pending.verifier))
        .await;
    late.assert_status(400);
    assert_eq!(late.oauth_error(), "invalid_grant");
    // The password no longer signs in, with the generic message.
    let denied = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    denied.assert_status(401);
    assert!(!denied.sets_cookie("doorman_session"));
    assert_eq!(
        error_message(&denied.text).as_deref(),
        Some("Wrong username or password.")
    );

    // Enabling lets her sign in again, but what was ended stays ended.
    users::set_disabled(&*server.state.store, ALICE, false, server.now())
        .await
        .unwrap();
    let refresh = server
        .refresh(RP, t.refresh_token.as_deref().unwrap())
        .await;
    assert_eq!(refresh.oauth_error(), "invalid_grant");
    server.userinfo(&t.access_token).await.assert_status(401);
    let ok = browser.submit_login(&denied, ALICE, ALICE_PASSWORD).await;
    assert_eq!(ok.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_limit_covers_username_and_email_alike() {
    let server = TestServer::start("[login]\nmax_failures_per_account = 3\n").await;
    for attempt in 0..4 {
        let browser = Browser::new();
        let mut page = browser.get(&server.auth_request(RP, "openid").url).await;
        for _ in 0..2 {
            page = browser.submit_login(&page, ALICE, "wrong-password").await;
            page.assert_status(401);
        }
        let before = server.now();
        page = browser.submit_login(&page, ALICE, "wrong-password").await;
        page.assert_status(401);
        // Same account, named by its email address.
        let limited = browser
            .submit_login(&page, ALICE_EMAIL, ALICE_PASSWORD)
            .await;
        let after = server.now();
        if limited.status != 429 && after != before && attempt < 3 {
            server.clock.advance(301);
            continue;
        }
        assert_eq!(
            limited.status, 429,
            "3 failures for alice must throttle alice@example.com too; got {}",
            limited.status
        );
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_page_expires() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    server.clock.advance(31 * 60);
    let late = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    late.assert_status(400);
    assert!(late.location().is_none());
    assert!(!late.sets_cookie("doorman_session"));
    // A finished sign-in page cannot be replayed either.
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let again = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    // The flow is used up, and the sign-in minted a new browser cookie, so the old page's
    // token no longer matches it either.
    assert!([400, 403].contains(&again.status), "{}", again.text);
    assert!(again.location().is_none());
    assert!(!again.sets_cookie("doorman_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_what_they_echo() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let evil = "\"><script>alert(1)</script>";
    let (_, challenge) = pkce_pair();
    let page = browser
        .get(&server.authorize_url(
            RP,
            RP_REDIRECT,
            "openid",
            "s",
            None,
            Some(&challenge),
            &[("login_hint", evil)],
        ))
        .await;
    page.assert_status(200);
    assert!(!page.text.contains("<script>"), "{}", page.text);
    assert_eq!(input_value(&page.text, "username").as_deref(), Some(evil));
    let page = browser
        .get(&server.authorize_url(
            RP,
            &format!("http://127.0.0.1:1/{evil}"),
            "openid",
            "s",
            None,
            None,
            &[],
        ))
        .await;
    page.assert_status(400);
    assert!(!page.text.contains("<script>"), "{}", page.text);
    let failed = browser
        .submit_login(
            &browser.get(&server.auth_request(RP, "openid").url).await,
            evil,
            "x",
        )
        .await;
    failed.assert_status(401);
    assert!(!failed.text.contains("<script>"), "{}", failed.text);
}

/// A page, or a redirect to doorman's own origin and path: never anywhere else.
fn assert_stays_home(server: &TestServer, page: &Page, rd: &str) {
    if let Some(to) = page.location() {
        assert!(
            to.as_str().starts_with(&format!("{}/", server.base)),
            "{rd}: sent to {to}"
        );
    } else {
        page.assert_status(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sign_in_returns_only_to_doorman_itself() {
    let server = TestServer::start("").await;
    let login = |rd: &str| {
        let mut url = url::Url::parse(&server.url("/login")).unwrap();
        url.query_pairs_mut().append_pair("rd", rd);
        url.to_string()
    };
    let own = server.url("/.well-known/openid-configuration");
    for evil in [
        "http://evil.example/",
        "//evil.example/",
        "http://127.0.0.1:1/cb",
        &format!("http://127.0.0.1:{}@evil.example/", server.port),
        "javascript:alert(1)",
    ] {
        let browser = Browser::new();
        let page = browser.get(&login(evil)).await;
        page.assert_status(200);
        let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
        assert_stays_home(&server, &done, evil);
        // Signed in: the same request answers without leaving doorman too.
        let again = browser.get(&login(evil)).await;
        assert_stays_home(&server, &again, evil);
    }
    let browser = Browser::new();
    let page = browser.get(&login(&own)).await;
    let done = browser.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    assert_eq!(done.redirect().as_str(), own);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_issuer_marks_cookies_secure_and_sends_hsts() {
    let port = free_port();
    let server = TestServer::start_with(Options {
        issuer_override: Some(format!("https://127.0.0.1:{port}")),
        port: Some(port),
        ..Default::default()
    })
    .await;
    // Talk plain HTTP to the listener, as a TLS-terminating proxy would.
    let browser = Browser::new();
    let mut url = url::Url::parse(&server.auth_request(RP, "openid").url).unwrap();
    url.set_scheme("http").unwrap();
    let page = browser.get(url.as_str()).await;
    page.assert_status(200);
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-doorman_csrf="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(page
        .header("strict-transport-security")
        .is_some_and(|h| h.contains("max-age=")));
}

/// Runs `rounds` of: three failed sign-ins (as `fail_as(i)`, with headers `fail_headers(i)`),
/// then one more attempt as `user`/`pass` with `last_headers`; returns that last answer,
/// which the caller expects to be 429.
/// The limiter counts whole seconds of the (wall-clock based) server clock: a round that
/// straddles a second boundary may see the 1-second block over, so it is retried after moving
/// past the window.
async fn after_three_failures(
    server: &TestServer,
    fail_as: &[&str; 3],
    fail_headers: &[&[(&str, &str)]; 3],
    user: &str,
    pass: &str,
    last_headers: &[(&str, &str)],
) -> Page {
    for attempt in 0..4 {
        let browser = Browser::new();
        let mut page = browser.get(&server.auth_request(RP, "openid").url).await;
        let before = server.now();
        for i in 0..3 {
            page = browser
                .submit_login_with(&page, fail_as[i], "wrong-password", fail_headers[i])
                .await;
            page.assert_status(401);
        }
        let last = browser
            .submit_login_with(&page, user, pass, last_headers)
            .await;
        let after = server.now();
        if last.status != 429 && after != before && attempt < 3 {
            server.clock.advance(301);
            continue;
        }
        return last;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_throttled_per_ip_and_forwarded_for_is_not_believed() {
    let server = TestServer::start("[login]\nmax_failures_per_ip = 3\n").await;
    // Three different (unknown) accounts from one address, each claiming another origin.
    let last = after_three_failures(
        &server,
        &["mallory1", "mallory2", "mallory3"],
        &[
            &[("x-forwarded-for", "203.0.113.1")],
            &[("x-forwarded-for", "203.0.113.2")],
            &[("x-forwarded-for", "203.0.113.3")],
        ],
        BOB,
        BOB_PASSWORD,
        &[("x-forwarded-for", "203.0.113.4")],
    )
    .await;
    assert_eq!(
        last.status, 429,
        "X-Forwarded-For from an untrusted peer must not spread the failures: {}",
        last.text
    );
    assert!(last.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_throttled() {
    let server =
        TestServer::start("trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_ip = 3\n")
            .await;
    let attacker: &[(&str, &str)] = &[("x-forwarded-for", "203.0.113.9")];
    // The attacker's address is blocked...
    let last = after_three_failures(
        &server,
        &["mallory1", "mallory2", "mallory3"],
        &[attacker, attacker, attacker],
        BOB,
        BOB_PASSWORD,
        attacker,
    )
    .await;
    assert_eq!(last.status, 429, "{}", last.text);
    // ...other users behind the same proxy are not.
    let browser = Browser::new();
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    let done = browser
        .submit_login_with(
            &page,
            BOB,
            BOB_PASSWORD,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
}
