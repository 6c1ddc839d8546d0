//! Sign-in limits under parallel load: attempts are reserved before argon2, so bursts cannot
//! overrun the per-account and per-IP failure budgets; the argon2 queue is bounded (503); one IP
//! opens a bounded number of sign-in flows; the client IP comes from `client_ip_header` only
//! from trusted proxies, and IPv6 clients are throttled per /64. The server's clock is frozen
//! where a second passing would end a delay mid-test.

use std::time::{Duration, Instant};

use crate::common::*;

/// Posts the sign-in form `form` once per attempt, all at once; answers in attempt order.
async fn burst(browser: &Browser, form: &LoginForm, attempts: Vec<Attempt>) -> Vec<Page> {
    let handles: Vec<_> = attempts
        .into_iter()
        .map(|a| tokio::spawn(post(browser.clone(), form.clone(), a)))
        .collect();
    let mut pages = Vec::new();
    for h in handles {
        pages.push(h.await.unwrap());
    }
    pages
}

#[derive(Clone)]
struct Attempt {
    user: String,
    pass: String,
    headers: Vec<(String, String)>,
}

fn attempt(user: &str, pass: &str, headers: &[(&str, &str)]) -> Attempt {
    Attempt {
        user: user.to_string(),
        pass: pass.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn post(browser: Browser, form: LoginForm, a: Attempt) -> Page {
    let headers: Vec<(&str, &str)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser
        .post_form_with(
            &form.action,
            &[
                ("flow", form.flow.as_str()),
                ("csrf", form.csrf.as_str()),
                ("username", a.user.as_str()),
                ("password", a.pass.as_str()),
            ],
            &headers,
        )
        .await
}

fn count(pages: &[Page], status: u16) -> usize {
    pages.iter().filter(|p| p.status == status).count()
}

fn statuses(pages: &[Page]) -> Vec<u16> {
    pages.iter().map(|p| p.status).collect()
}

fn verifications(server: &TestServer) -> u64 {
    server.state.hasher.verifications()
}

/// A fresh login page for `browser`.
async fn login_page(server: &TestServer, browser: &Browser) -> (Page, LoginForm) {
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    let form = page.login_form().unwrap();
    (page, form)
}

fn assert_limited(page: &Page, what: &str) {
    assert_eq!(page.status, 429, "{what}: {}", page.text);
    let retry: i64 = page
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}: {retry}");
    assert!(!page.sets_cookie("doorman_session"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_for_one_account_verify_at_most_the_limit() {
    let server = TestServer::start(
        "trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_account = 10\nmax_failures_per_account_all_ips = 10\n",
    )
    .await;
    server.clock.freeze();
    let browser = Browser::new();
    let (_, form) = login_page(&server, &browser).await;
    let before = verifications(&server);
    // From 100 addresses, so only the account's budget is in play.
    let attempts = (0..100)
        .map(|i| {
            let ip = format!("203.0.113.{}", i + 1);
            attempt(ALICE, "wrong-password", &[("x-forwarded-for", &ip)])
        })
        .collect();
    let pages = burst(&browser, &form, attempts).await;
    assert_eq!(count(&pages, 401), 10, "{:?}", statuses(&pages));
    assert_eq!(count(&pages, 429), 90, "{:?}", statuses(&pages));
    for p in pages.iter().filter(|p| p.status == 429) {
        assert_limited(p, "beyond the budget");
    }
    assert_eq!(
        verifications(&server) - before,
        10,
        "only the account's budget reaches argon2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_late_in_a_burst_does_not_get_in() {
    let server = TestServer::start(
        "trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_account = 10\nmax_failures_per_account_all_ips = 10\n",
    )
    .await;
    server.clock.freeze();
    let browser = Browser::new();
    let (_, form) = login_page(&server, &browser).await;
    let before = verifications(&server);
    let xff = |i: usize| {
        vec![(
            "x-forwarded-for".to_string(),
            format!("203.0.113.{}", i + 1),
        )]
    };
    // #1..#85: wrong passwords, all at once.
    let early: Vec<_> = (0..85)
        .map(|i| {
            let mut a = attempt(ALICE, "wrong-password", &[]);
            a.headers = xff(i);
            tokio::spawn(post(browser.clone(), form.clone(), a))
        })
        .collect();
    // Once the account's ten remaining failures are being checked...
    let deadline = Instant::now() + Duration::from_secs(20);
    while verifications(&server) - before < 10 {
        assert!(Instant::now() < deadline, "the burst never reached argon2");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...#86 brings the right password, #87..#90 more wrong ones.
    let late: Vec<_> = (85..90)
        .map(|i| {
            let pass = if i == 85 {
                ALICE_PASSWORD
            } else {
                "wrong-password"
            };
            let mut a = attempt(ALICE, pass, &[]);
            a.headers = xff(i);
            tokio::spawn(post(browser.clone(), form.clone(), a))
        })
        .collect();
    let mut pages = Vec::new();
    for h in early.into_iter().chain(late) {
        pages.push(h.await.unwrap());
    }
    let right = &pages[85];
    assert_limited(right, "the right password after the budget was spent");
    assert_eq!(count(&pages, 303), 0, "{:?}", statuses(&pages));
    assert_eq!(count(&pages, 401), 10, "{:?}", statuses(&pages));
    assert_eq!(verifications(&server) - before, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_usernames_from_one_ip_verify_at_most_the_ip_limit() {
    let server = TestServer::start("trusted_proxies = [\"127.0.0.1\"]\n").await;
    server.clock.freeze();
    let browser = Browser::new();
    let (_, form) = login_page(&server, &browser).await;
    let before = verifications(&server);
    let attacker = [("x-forwarded-for", "203.0.113.9")];
    let attempts = (0..300)
        .map(|i| attempt(&format!("mallory{i}"), "guess", &attacker))
        .collect();
    let burst = tokio::spawn({
        let (browser, form) = (browser.clone(), form.clone());
        async move { burst(&browser, &form, attempts).await }
    });
    // Meanwhile, someone else behind the same proxy signs in normally.
    let other = Browser::new();
    let (page, _) = login_page(&server, &other).await;
    let done = other
        .submit_login_with(
            &page,
            BOB,
            BOB_PASSWORD,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    let pages = burst.await.unwrap();
    assert!(count(&pages, 401) <= 50, "{:?}", statuses(&pages));
    assert_eq!(
        count(&pages, 401) + count(&pages, 429),
        300,
        "{:?}",
        statuses(&pages)
    );
    assert!(
        verifications(&server) - before <= 51,
        "at most the IP's 50 failures (and bob's sign-in) reach argon2: {}",
        verifications(&server) - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_argon2_queue_answers_503_at_once() {
    let server = TestServer::start(
        "trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_ip = 1000\n",
    )
    .await;
    server.clock.freeze();
    let browser = Browser::new();
    let (_, form) = login_page(&server, &browser).await;
    let before = verifications(&server);
    // 20 addresses, 10 distinct usernames each: far more than the queue holds.
    let attempts = (0..200)
        .map(|i| {
            let ip = format!("203.0.113.{}", i % 20 + 1);
            attempt(&format!("user{i}"), "guess", &[("x-forwarded-for", &ip)])
        })
        .collect();
    let pages = burst(&browser, &form, attempts).await;
    let busy: Vec<&Page> = pages.iter().filter(|p| p.status == 503).collect();
    assert!(!busy.is_empty(), "{:?}", statuses(&pages));
    for p in &busy {
        assert!(p.header("retry-after").is_some(), "{:?}", p.headers);
        assert!(p.text.contains("busy"), "{}", p.text);
        assert!(p.login_form().is_some(), "the form, to try again");
    }
    assert!(
        pages.iter().all(|p| [401, 429, 503].contains(&p.status)),
        "{:?}",
        statuses(&pages)
    );
    assert!(verifications(&server) - before < 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_opens_a_bounded_number_of_sign_in_flows() {
    let server =
        TestServer::start("trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_flows_per_ip = 3\n")
            .await;
    server.clock.freeze();
    let browser = Browser::new();
    let open = |xff: &'static str| {
        let browser = browser.clone();
        let url = server.auth_request(RP, "openid").url;
        async move {
            let req = browser.http.get(&url).header("x-forwarded-for", xff);
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, resp.text().await.unwrap())
        }
    };
    let mut pages = Vec::new();
    for _ in 0..3 {
        let (status, _, html) = open("203.0.113.5").await;
        assert_eq!(status, 200);
        pages.push(html);
    }
    let (status, retry, html) = open("203.0.113.5").await;
    assert_eq!(status, 429, "{html}");
    assert!(retry.is_some_and(|r| r.parse::<i64>().unwrap() >= 1));
    assert!(html.contains("Too many"), "{html}");
    // Another address is not affected.
    assert_eq!(open("198.51.100.7").await.0, 200);
    // A finished sign-in gives its flow back.
    let form = LoginForm::parse(&pages[0]).unwrap();
    let done = browser
        .post_form_with(
            &form.action,
            &[
                ("flow", form.flow.as_str()),
                ("csrf", form.csrf.as_str()),
                ("username", ALICE),
                ("password", ALICE_PASSWORD),
            ],
            &[("x-forwarded-for", "203.0.113.5")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    // Signed in now, so /authorize needs no page; a plain browser opens the freed one.
    let fresh = Browser::new();
    let resp = fresh
        .http
        .get(server.auth_request(RP, "openid").url)
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Three failures (unknown names) with `headers`, then bob with `last`: the answer to bob.
async fn three_failures_then(
    server: &TestServer,
    headers: &[&[(&str, &str)]; 3],
    last: &[(&str, &str)],
) -> Page {
    let browser = Browser::new();
    let (mut page, _) = login_page(server, &browser).await;
    for (i, h) in headers.iter().enumerate() {
        page = browser
            .submit_login_with(&page, &format!("mallory{i}"), "guess", h)
            .await;
        page.assert_status(401);
    }
    browser
        .submit_login_with(&page, BOB, BOB_PASSWORD, last)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_header_is_believed_from_trusted_proxies_only() {
    let fly = "fly-client-ip";
    // Behind a trusted proxy: Fly-Client-IP is the client, X-Forwarded-For is not read.
    let server = TestServer::start(
        "trusted_proxies = [\"127.0.0.1\"]\nclient_ip_header = \"Fly-Client-IP\"\n[login]\nmax_failures_per_ip = 3\n",
    )
    .await;
    server.clock.freeze();
    let h = |ip: &'static str, xff: &'static str| [(fly, ip), ("x-forwarded-for", xff)];
    let last = three_failures_then(
        &server,
        &[
            &h("203.0.113.9", "192.0.2.1"),
            &h("203.0.113.9", "192.0.2.2"),
            &h("203.0.113.9", "192.0.2.3"),
        ],
        &h("203.0.113.9", "192.0.2.4"),
    )
    .await;
    assert_limited(&last, "the attacker's Fly-Client-IP");
    let other = three_failures_then(
        &server,
        &[
            &[(fly, "198.51.100.1")],
            &[(fly, "198.51.100.2")],
            &[(fly, "198.51.100.3")],
        ],
        &[(fly, "198.51.100.4")],
    )
    .await;
    assert_eq!(
        other.status, 303,
        "each Fly-Client-IP has its own budget: {}",
        other.text
    );

    // A header that arrives twice is not resolved by picking one: the proxy's own address
    // (127.0.0.1) is used, so varying the values does not spread the failures.
    let browser = Browser::new();
    let (mut page, _) = login_page(&server, &browser).await;
    for i in 0..3 {
        let resp = browser
            .http
            .post(&page.login_form().unwrap().action)
            .header(fly, format!("192.0.2.{}", 10 + i))
            .header(fly, format!("192.0.2.{}", 20 + i))
            .form(&[
                ("flow", page.login_form().unwrap().flow),
                ("csrf", page.login_form().unwrap().csrf),
                ("username", format!("eve{i}")),
                ("password", "guess".to_string()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert!(!headers.contains_key("retry-after"));
        page = Page {
            status: 401,
            headers,
            text,
            url: page.url.clone(),
        };
    }
    let peer = browser
        .submit_login_with(&page, BOB, BOB_PASSWORD, &[])
        .await;
    assert_limited(
        &peer,
        "duplicated headers count against the proxy's address",
    );

    // Without trusted proxies the header is not believed at all.
    let direct = TestServer::start(
        "client_ip_header = \"Fly-Client-IP\"\n[login]\nmax_failures_per_ip = 3\n",
    )
    .await;
    direct.clock.freeze();
    let last = three_failures_then(
        &direct,
        &[
            &[(fly, "203.0.113.1")],
            &[(fly, "203.0.113.2")],
            &[(fly, "203.0.113.3")],
        ],
        &[(fly, "203.0.113.4")],
    )
    .await;
    assert_limited(&last, "a forged Fly-Client-IP from an untrusted peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_throttled_per_64() {
    let server =
        TestServer::start("trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_ip = 3\n")
            .await;
    server.clock.freeze();
    let xff = "x-forwarded-for";
    let last = three_failures_then(
        &server,
        &[
            &[(xff, "2001:db8:1:2::1")],
            &[(xff, "2001:db8:1:2:aaaa::2")],
            &[(xff, "2001:db8:1:2:ffff:ffff:ffff:3")],
        ],
        &[(xff, "2001:db8:1:2::4")],
    )
    .await;
    assert_limited(&last, "another address in the same /64");
    let browser = Browser::new();
    let (page, _) = login_page(&server, &browser).await;
    let done = browser
        .submit_login_with(&page, BOB, BOB_PASSWORD, &[(xff, "2001:db8:1:3::1")])
        .await;
    assert_eq!(
        done.status, 303,
        "the next /64 is someone else: {}",
        done.text
    );
}
