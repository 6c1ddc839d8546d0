//! doorman's cookies against a sibling subdomain and a lost TLS: `__Host-`/`__Secure-` names on
//! an https issuer, only browser cookies doorman minted are adopted (a planted `doorman_csrf`
//! never binds a sign-in), a new one at every sign-in, and an https issuer reached over plain
//! http says why the form could not be verified. The https servers are reached over plain http,
//! as a TLS-terminating proxy would; cookies are carried by hand (a cookie jar would keep
//! Secure cookies off http).

use crate::common::*;

/// A response, with the cookies it sets by name (value, attributes).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    fn cookie_value(&self, name: &str) -> Option<String> {
        let c = self.set_cookie(name)?;
        let first = c.split(';').next()?;
        Some(first.split_once('=')?.1.to_string())
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

/// A server whose issuer is `issuer_of(port)`, listening on plain http.
async fn https_server(issuer_of: impl Fn(u16) -> String, extra: &str) -> TestServer {
    let port = free_port();
    TestServer::start_with(Options {
        issuer_override: Some(issuer_of(port)),
        port: Some(port),
        extra_toml: extra.to_string(),
        ..Default::default()
    })
    .await
}

/// `url` with its scheme and authority replaced by the listener's.
fn on_listener(server: &TestServer, url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let mut s = format!("http://127.0.0.1:{}{}", server.port, u.path());
    if let Some(q) = u.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

fn assert_attrs(cookie: &str, path: &str) {
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"Secure"), "{cookie}");
    assert!(attrs.contains(&"HttpOnly"), "{cookie}");
    assert!(attrs.contains(&"SameSite=Lax"), "{cookie}");
    assert!(attrs.contains(&format!("Path={path}").as_str()), "{cookie}");
    assert!(!cookie.contains("Domain="), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_issuers_use_prefixed_cookie_names() {
    let server = https_server(
        |_| "https://auth.example.com".to_string(),
        "trusted_proxies = [\"127.0.0.1\"]\n[session]\ncookie_domain = \"example.com\"\n",
    )
    .await;
    let http = plain_client();
    let page = send(
        http.get(on_listener(&server, &server.auth_request(RP, "openid").url))
            .header("x-forwarded-proto", "https"),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = page
        .set_cookie("__Host-doorman_csrf")
        .expect("__Host-doorman_csrf");
    assert_attrs(&csrf, "/");
    assert!(page.set_cookie("doorman_csrf").is_none());
    let browser = page.cookie_value("__Host-doorman_csrf").unwrap();
    let form = LoginForm::parse(&page.text).unwrap();
    let done = send(
        http.post(on_listener(&server, &form.action))
            .header("x-forwarded-proto", "https")
            .header("cookie", format!("__Host-doorman_csrf={browser}"))
            .form(&[
                ("flow", form.flow.as_str()),
                ("csrf", form.csrf.as_str()),
                ("username", ALICE),
                ("password", ALICE_PASSWORD),
            ]),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.text);
    let session = done.set_cookie("__Host-doorman_session").expect("session");
    assert_attrs(&session, "/");
    let fa = done
        .set_cookie("__Secure-doorman_fa")
        .expect("forward-auth cookie");
    assert!(
        fa.contains("Domain=example.com") && fa.contains("Secure"),
        "{fa}"
    );
    // A new browser cookie at sign-in.
    let renewed = done.cookie_value("__Host-doorman_csrf").expect("renewed");
    assert_ne!(renewed, browser);
    for plain in ["doorman_session=", "doorman_fa=", "doorman_csrf="] {
        assert!(
            !done
                .headers
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with(plain)),
            "{plain}"
        );
    }
    // The SSO session works under its prefixed name.
    let session_value = done.cookie_value("__Host-doorman_session").unwrap();
    let sso = send(
        http.get(on_listener(&server, &server.auth_request(RP, "openid").url))
            .header("cookie", format!("__Host-doorman_session={session_value}")),
    )
    .await;
    assert_eq!(sso.status, 302, "{}", sso.text);

    // An issuer with a path cannot use __Host- (it needs Path=/): __Secure- names.
    let server = https_server(|_| "https://example.com/auth".to_string(), "").await;
    let page = send(http.get(on_listener(&server, &server.auth_request(RP, "openid").url))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = page
        .set_cookie("__Secure-doorman_csrf")
        .expect("__Secure-doorman_csrf");
    assert_attrs(&csrf, "/auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_browser_cookie_never_binds_a_sign_in() {
    let server = TestServer::start("").await;
    // A page on a sibling subdomain plants a doorman_csrf of the attacker's choosing.
    let chosen = "planted-by-an-attacker-0123456789abcdef-0123";
    let plant = |b: &Browser| b.set_cookie(&server.base, &format!("doorman_csrf={chosen}; Path=/"));

    // The attacker loads a sign-in page with that value: it is not adopted, so the attacker's
    // flow is bound to a value doorman minted, not to the planted one.
    let attacker = Browser::new();
    plant(&attacker);
    let page = attacker.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.sets_cookie("doorman_csrf"), "a new, minted cookie");
    assert_ne!(
        attacker.cookie(&server.base, "doorman_csrf").unwrap(),
        chosen
    );
    let form = page.login_form().unwrap();

    // The victim's browser carries the planted value and posts the attacker's form with the
    // attacker's credentials: refused, nobody is signed in.
    let victim = Browser::new();
    plant(&victim);
    let forced = victim
        .post_form(
            &form.action,
            &[
                ("flow", form.flow.as_str()),
                ("csrf", form.csrf.as_str()),
                ("username", BOB),
                ("password", BOB_PASSWORD),
            ],
        )
        .await;
    forced.assert_status(403);
    assert!(!forced.sets_cookie("doorman_session"));

    // The victim's own sign-in does not use the planted value either, and ends with a fresh one.
    let own = victim.get(&server.auth_request(RP, "openid").url).await;
    own.assert_status(200);
    let during = victim.cookie(&server.base, "doorman_csrf").unwrap();
    assert_ne!(during, chosen);
    let done = victim.submit_login(&own, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let after = victim.cookie(&server.base, "doorman_csrf").unwrap();
    assert_ne!(after, during, "a new browser cookie at sign-in");
    assert_ne!(after, chosen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_issuer_over_plain_http_says_so() {
    let http = plain_client();
    let post_without_cookie = |server: &TestServer, html: &str, proto: Option<&str>| {
        let form = LoginForm::parse(html).unwrap();
        let mut req = http.post(on_listener(server, &form.action)).form(&[
            ("flow", form.flow.as_str()),
            ("csrf", form.csrf.as_str()),
            ("username", ALICE),
            ("password", ALICE_PASSWORD),
        ]);
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        send(req)
    };
    // No proxy in front: doorman itself speaks plain http, so the browser used http.
    let server = https_server(|port| format!("https://127.0.0.1:{port}"), "").await;
    let page = send(http.get(on_listener(&server, &server.auth_request(RP, "openid").url))).await;
    assert_eq!(page.status, 200);
    // The browser drops the Secure cookie on an http page: the post arrives without it.
    let post = post_without_cookie(&server, &page.text, None).await;
    assert_eq!(post.status, 403, "{}", post.text);
    assert!(
        post.text.contains("opened over plain http"),
        "{}",
        post.text
    );
    assert!(
        html_unescape(&post.text).contains("https://127.0.0.1"),
        "{}",
        post.text
    );

    // Behind a trusted proxy that says http, the same; that says https, the usual message.
    let server = https_server(
        |port| format!("https://127.0.0.1:{port}"),
        "trusted_proxies = [\"127.0.0.1\"]\n",
    )
    .await;
    let page = send(http.get(on_listener(&server, &server.auth_request(RP, "openid").url))).await;
    let post = post_without_cookie(&server, &page.text, Some("http")).await;
    assert_eq!(post.status, 403);
    assert!(
        post.text.contains("opened over plain http"),
        "{}",
        post.text
    );
    let post = post_without_cookie(&server, &page.text, Some("https")).await;
    assert_eq!(post.status, 403);
    assert!(post.text.contains("could not be verified"), "{}", post.text);
    assert!(!post.text.contains("plain http"), "{}", post.text);

    // An http issuer never blames http.
    let plain = TestServer::start("").await;
    let page = Browser::new()
        .get(&plain.auth_request(RP, "openid").url)
        .await;
    let form = page.login_form().unwrap();
    let post = Browser::new()
        .post_form(
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", ALICE),
                ("password", ALICE_PASSWORD),
            ],
        )
        .await;
    post.assert_status(403);
    assert!(!post.text.contains("plain http"), "{}", post.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_page_has_no_empty_status_and_plural_waits() {
    let server =
        TestServer::start("[login]\nmax_failures_per_account = 1\nlockout_base = \"1s\"\n").await;
    server.clock.freeze();
    let browser = Browser::new();
    let page = browser.get(&server.auth_request(RP, "openid").url).await;
    assert!(!page.text.contains(">none<"), "{}", page.text);
    assert!(
        !page.text.contains("id=\"status\""),
        "no status without Plex: {}",
        page.text
    );
    let failed = browser.submit_login(&page, ALICE, "wrong").await;
    failed.assert_status(401);
    let limited = browser.submit_login(&failed, ALICE, "wrong").await;
    limited.assert_status(429);
    assert!(
        limited.text.contains("Wait 1 second and"),
        "{}",
        limited.text
    );
    assert!(!limited.text.contains("1 seconds"), "{}", limited.text);
}
