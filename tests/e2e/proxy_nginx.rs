//! nginx's `auth_request` in front of an app, configured with exactly what `doorman integrate
//! nginx` prints (only the upstream placeholder filled in), against doorman's `/auth-request`.

use crate::common::proxies::*;
use crate::common::*;

struct Setup {
    doorman: Doorman,
    echo: Echo,
    nginx: Proxy,
}

async fn setup() -> Option<Setup> {
    if !available(NGINX) {
        return None;
    }
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let echo = Echo::start().await;
    let printed = doorman.integrate("nginx");
    let upstream = format!("http://{}", echo.addr);
    let snippet = fill_placeholders(&printed, |p| {
        p.contains("your-app").then(|| upstream.clone())
    });
    let nginx = Proxy::nginx(&snippet);
    Some(Setup {
        doorman,
        echo,
        nginx,
    })
}

const FORGED: [(&str, &str); 4] = [
    ("Remote-User", "mallory"),
    ("Remote-Email", "mallory@evil.example"),
    ("Remote-Name", "Mallory"),
    ("Remote-Groups", "admins"),
];

fn with_forged<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FORGED
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_nginx_sends_visitors_to_sign_in_and_back_with_their_identity() {
    let Some(s) = setup().await else { return };
    let b = browser();
    let target = s.nginx.url(APP_HOST, "/x/y?z=1&w=%2F");

    // Anonymous: doorman's 401 with Location becomes nginx's 302 to the login page.
    let page = send(b.http.get(&target), &[("accept", "text/html")]).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.nginx.context());
    let login = page.redirect();
    s.doorman.assert_login_redirect(&login, &target);
    assert_eq!(s.echo.count(), 0, "the app was reached anonymously");

    // Sign in as alice there: back at the original URL, with both cookies.
    let form = b.get(login.as_str()).await;
    form.assert_status(200);
    let done = b.submit_login(&form, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    assert_eq!(done.redirect().as_str(), target);
    let cookies = done.set_cookies();
    let fa = cookies
        .iter()
        .find(|c| c.starts_with("doorman_fa="))
        .unwrap_or_else(|| panic!("no doorman_fa cookie: {cookies:?}"));
    assert!(
        fa.to_ascii_lowercase()
            .contains(&format!("domain={DOMAIN}")),
        "{fa}"
    );
    let sso = cookies
        .iter()
        .find(|c| c.starts_with("doorman_session="))
        .unwrap();
    assert!(!sso.to_ascii_lowercase().contains("domain="), "{sso}");
    assert!(b.cookie(&target, "doorman_fa").is_some());
    assert!(
        b.cookie(&target, "doorman_session").is_none(),
        "the SSO cookie is host-only on doorman's host"
    );
    assert!(b.cookie(&s.doorman.issuer, "doorman_session").is_some());

    // The app, with alice's identity; forged copies of the headers are gone.
    let page = send(
        b.http.get(&target),
        &with_forged(&[("accept", "text/html")]),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.nginx.context());
    let seen = Seen::of(&page);
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/x/y?z=1&w=%2F")
    );
    assert_eq!(seen.one("remote-user"), Some(ALICE), "{seen:?}");
    assert_eq!(seen.one("remote-email"), Some(ALICE_EMAIL), "{seen:?}");
    assert_eq!(seen.one("remote-name"), Some("Alice Liddell"), "{seen:?}");
    assert_eq!(seen.one("remote-groups"), Some("admins"), "{seen:?}");
    assert!(!seen.mentions("mallory"), "{seen:?}");

    // /admin is for admins: alice is one.
    let page = b.get(&s.nginx.url(APP_HOST, "/admin/panel")).await;
    assert_eq!(Seen::of(&page).one("remote-user"), Some(ALICE));

    // A POST goes through with its body (only the auth subrequest drops it).
    let page = send(
        b.http
            .post(s.nginx.url(APP_HOST, "/admin/save"))
            .form(&[("a", "1"), ("b", "two")]),
        &[],
    )
    .await;
    let seen = Seen::of(&page);
    assert_eq!(
        (seen.method.as_str(), seen.body.as_str()),
        ("POST", "a=1&b=two")
    );
    assert_eq!(seen.one("remote-user"), Some(ALICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_nginx_keeps_forged_identities_out_and_applies_the_rules() {
    let Some(s) = setup().await else { return };
    let b = browser();
    let home = s.nginx.url(APP_HOST, "/");
    let admin = s.nginx.url(APP_HOST, "/admin");

    // Anonymous with forged identity headers: redirected, the app never sees them. Same for a
    // POST (nginx passes the method as X-Original-Method; the subrequest itself is a GET).
    let page = send(b.http.get(&home), &with_forged(&[])).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.nginx.context());
    s.doorman.assert_login_redirect(&page.redirect(), &home);
    let page = send(b.http.post(&admin).form(&[("a", "1")]), &with_forged(&[])).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.nginx.context());
    s.doorman.assert_login_redirect(&page.redirect(), &admin);
    assert_eq!(s.echo.count(), 0, "the app was reached anonymously");

    // bob (no email, no groups): his name only; the forged values never arrive, and nginx
    // sends nothing for doorman's empty headers.
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let page = send(b.http.get(&home), &with_forged(&[])).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.nginx.context());
    let seen = Seen::of(&page);
    assert_eq!(seen.all("remote-user"), vec![BOB], "{seen:?}");
    for h in ["remote-email", "remote-name", "remote-groups"] {
        assert!(seen.all(h).iter().all(|v| v.is_empty()), "{h}: {seen:?}");
    }
    assert!(!seen.mentions("mallory"), "{seen:?}");

    // /admin is for admins: bob gets nginx's 403, by GET or POST, even claiming to be an admin
    // or forging the original URL.
    let before = s.echo.count();
    let forged_target = [
        ("X-Original-URL", home.as_str()),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/"),
    ];
    let page = send(b.http.get(&admin), &with_forged(&forged_target)).await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.nginx.context());
    let page = send(b.http.post(&admin).form(&[("a", "1")]), &with_forged(&[])).await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.nginx.context());
    assert_eq!(s.echo.count(), before, "bob reached /admin");

    // A Host header no rule covers changes nothing: doorman judges the site nginx serves
    // (its server_name), so bob gets app.example.test's answer for / (allowed), and for /admin
    // still 403.
    let page = send(b.http.get(&home), &[("host", "other.test")]).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.nginx.context());
    let page = send(b.http.get(&admin), &[("host", "other.test")]).await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.nginx.context());
}

/// nginx answers any Host from the server block that is the default (here the only one), but
/// the printed snippet describes the request to doorman with the client's own Host header
/// (`$http_host`). So doorman judges whatever host the client names, not the site nginx
/// serves: bob names another host the wildcard rule lets him into and gets app's /admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_nginx_judges_the_site_nginx_serves_not_the_host_the_client_names() {
    let Some(s) = setup().await else { return };
    let b = browser();
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let admin = s.nginx.url(APP_HOST, "/admin");
    let page = b.get(&admin).await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.nginx.context());
    for host in [
        format!("other.{DOMAIN}:{}", s.nginx.port),
        format!("other.{DOMAIN}"),
        format!("x@other.{DOMAIN}:{}", s.nginx.port),
    ] {
        let page = send(b.http.get(&admin), &[("host", host.as_str())]).await;
        assert_ne!(
            page.status,
            200,
            "Host: {host} got bob into app.example.test/admin: {}\n{}",
            page.text,
            s.nginx.context()
        );
        assert_eq!(s.echo.count(), 0, "Host: {host}: {:?}", s.echo.requests());
    }
}

/// A `CF_Authorization` cookie doorman cannot use (a leftover from Cloudflare Access on this
/// host, here with no `[forward_auth.cloudflare]` at all) must not lock the browser out: nginx
/// needs a Location on every 401 to redirect to, and after signing in the visitor must get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_nginx_a_stray_cloudflare_cookie_does_not_lock_the_visitor_out() {
    let Some(s) = setup().await else { return };
    let b = browser();
    let target = s.nginx.url(APP_HOST, "/x");
    b.set_cookie(&target, "CF_Authorization=stale.access.token; Path=/");
    let page = send(b.http.get(&target), &[("accept", "text/html")]).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.nginx.context());
    assert!(
        page.header("location").is_some_and(|l| !l.is_empty()),
        "a redirect to nowhere: {page:?}"
    );
    s.doorman.assert_login_redirect(&page.redirect(), &target);
    let form = b.get(page.redirect().as_str()).await;
    let done = b.submit_login(&form, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.redirect().as_str(), target);
    let page = send(b.http.get(&target), &[("accept", "text/html")]).await;
    assert_eq!(
        page.status,
        200,
        "signed in, still not let in: {page:?}\n{}",
        s.nginx.context()
    );
    assert_eq!(Seen::of(&page).one("remote-user"), Some(ALICE));
}

/// Spellings of `/admin`, sent byte for byte through nginx: bob (signed in, not an admin)
/// never reaches the app's admin page, whatever nginx makes of the spelling, and the identity
/// he forges never reaches the app at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_nginx_no_spelling_of_admin_reaches_the_app_for_a_non_admin() {
    let Some(s) = setup().await else { return };
    let b = browser();
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let cookie = cookie_for(&b, &s.nginx.url(APP_HOST, "/")).unwrap();
    let forged = with_forged(&[("Cookie", cookie.as_str()), ("Remote-User", "admin")]);
    let (status, text) = raw_get(s.nginx.port, APP_HOST, "/x", &forged).await;
    assert_eq!(status, 200, "{text}\n{}", s.nginx.context());
    for target in ["/admin"].iter().chain(ADMIN_SPELLINGS.iter()) {
        let (status, text) = raw_get(s.nginx.port, APP_HOST, target, &forged).await;
        assert_ne!(status, 200, "{target}: {text}\n{}", s.nginx.context());
    }
    for seen in s.echo.requests() {
        assert!(
            !upstream_reads_admin(&seen.uri),
            "bob reached {}: {seen:?}",
            seen.uri
        );
        assert!(!seen.mentions("mallory"), "{seen:?}");
        assert_eq!(seen.all("remote-user"), vec![BOB], "{seen:?}");
        assert!(
            seen.all("remote-groups").iter().all(|v| v.is_empty()),
            "{seen:?}"
        );
    }

    // A client's own X-Original-* (once or twice) changes nothing: nginx sets its own.
    let before = s.echo.count();
    let (status, text) = raw_get(
        s.nginx.port,
        APP_HOST,
        "/admin",
        &[
            ("Cookie", cookie.as_str()),
            ("X-Original-URL", "http://app.example.test/"),
            ("X-Original-URL", "http://app.example.test/x"),
            ("X-Original-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{text}\n{}", s.nginx.context());
    assert_eq!(s.echo.count(), before);
}

/// `doorman integrate nginx --remote` (doorman at an https issuer elsewhere) passes `nginx -t`.
#[test]
fn proxy_nginx_remote_mode_snippet_passes_nginx_t() {
    if !available(NGINX) {
        return;
    }
    let printed = integrate_remote("nginx");
    for line in [
        "proxy_pass https://auth.example.test/auth-request;",
        "proxy_ssl_server_name on;",
        "proxy_set_header Host auth.example.test;",
        "proxy_ssl_verify on;",
    ] {
        assert!(printed.contains(line), "{line}:\n{printed}");
    }
    let snippet = fill_placeholders(&printed, |p| {
        p.contains("your-app")
            .then(|| "http://127.0.0.1:9".to_string())
    });
    let out = Proxy::check_nginx(&snippet);
    assert!(
        out.0,
        "nginx -t refused the remote-mode snippet:\n{}\n{snippet}",
        out.1
    );
}

/// `nginx -t` accepts what `doorman integrate nginx` prints next to doorman, placeholders
/// filled.
#[test]
fn proxy_nginx_local_mode_snippet_passes_nginx_t() {
    if !available(NGINX) {
        return;
    }
    let printed = integrate_local("nginx");
    let snippet = fill_placeholders(&printed, |p| {
        p.contains("your-app")
            .then(|| "http://127.0.0.1:9".to_string())
    });
    let (ok, out) = Proxy::check_nginx(&snippet);
    assert!(ok, "nginx -t refused the snippet:\n{out}\n{snippet}");
}
