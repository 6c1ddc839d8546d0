//! Caddy's `forward_auth` in front of an app, configured with exactly what `doorman integrate
//! caddy` prints (the upstream placeholder filled in, the site address given the test's port and
//! `http://`), against doorman's `/forward-auth`.

use crate::common::proxies::*;
use crate::common::*;

struct Setup {
    doorman: Doorman,
    echo: Echo,
    caddy: Proxy,
}

async fn setup() -> Option<Setup> {
    if !available(CADDY) {
        return None;
    }
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let echo = Echo::start().await;
    let printed = doorman.integrate("caddy");
    assert!(
        printed.contains(&format!("{APP_HOST} {{")),
        "the Caddy site is the first rule's host:\n{printed}"
    );
    let upstream = echo.addr.to_string();
    let site = fill_placeholders(&printed, |p| {
        p.contains("your-app").then(|| upstream.clone())
    });
    let caddy = Proxy::caddy(&site);
    Some(Setup {
        doorman,
        echo,
        caddy,
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

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_caddy_redirects_browsers_and_answers_scripts_401() {
    let Some(s) = setup().await else { return };
    let b = browser();
    let target = s.caddy.url(APP_HOST, "/x/y?z=1&w=%2F");

    // A browser's GET: 302 to the login page with the original URL.
    let page = send(b.http.get(&target), &with_forged(&[HTML])).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.caddy.context());
    s.doorman.assert_login_redirect(&page.redirect(), &target);
    // A form POST: 303 (Caddy passes the method as X-Forwarded-Method).
    let page = send(b.http.post(&target).form(&[("a", "1")]), &[HTML]).await;
    assert_eq!(page.status, 303, "{page:?}\n{}", s.caddy.context());
    s.doorman.assert_login_redirect(&page.redirect(), &target);
    // Scripts get 401, no redirect: an XHR, a JSON client, and one that accepts anything.
    for headers in [
        vec![HTML, ("x-requested-with", "XMLHttpRequest")],
        vec![("accept", "application/json")],
        vec![("accept", "*/*")],
    ] {
        let page = send(b.http.get(&target), &headers).await;
        assert_eq!(
            page.status,
            401,
            "{headers:?}: {page:?}\n{}",
            s.caddy.context()
        );
        assert!(page.location().is_none(), "{page:?}");
    }
    assert_eq!(s.echo.count(), 0, "the app was reached anonymously");

    // Sign in through the redirect: back at the original URL, then through to the app.
    let page = send(b.http.get(&target), &[HTML]).await;
    let form = b.get(page.redirect().as_str()).await;
    let done = b.submit_login(&form, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    assert_eq!(done.redirect().as_str(), target);
    let page = send(b.http.get(&target), &with_forged(&[HTML])).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.caddy.context());
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

    // Signed in, an XHR and a POST go through too; alice may use /admin.
    let page = send(
        b.http.get(s.caddy.url(APP_HOST, "/api")),
        &[("x-requested-with", "XMLHttpRequest")],
    )
    .await;
    assert_eq!(Seen::of(&page).one("remote-user"), Some(ALICE));
    let page = send(
        b.http
            .post(s.caddy.url(APP_HOST, "/admin/save"))
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
async fn proxy_caddy_keeps_forged_identities_out_and_applies_the_rules() {
    let Some(s) = setup().await else { return };
    let b = browser();
    let home = s.caddy.url(APP_HOST, "/");
    let admin = s.caddy.url(APP_HOST, "/admin");

    let page = send(b.http.get(&home), &with_forged(&[HTML])).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", s.caddy.context());
    assert_eq!(s.echo.count(), 0, "the app was reached anonymously");

    // bob (no email, no groups): Caddy copies what doorman sends, all four headers, the empty
    // ones empty, so none of the forged values survives.
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let page = send(b.http.get(&home), &with_forged(&[HTML])).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.caddy.context());
    let seen = Seen::of(&page);
    assert_eq!(seen.all("remote-user"), vec![BOB], "{seen:?}");
    for h in ["remote-email", "remote-name", "remote-groups"] {
        assert!(seen.all(h).iter().all(|v| v.is_empty()), "{h}: {seen:?}");
    }
    assert!(!seen.mentions("mallory"), "{seen:?}");

    // /admin is for admins: 403 for bob, whatever he claims about himself or the request
    // (Caddy sets X-Forwarded-* itself).
    let before = s.echo.count();
    let forged_target = [
        HTML,
        ("X-Forwarded-Uri", "/"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Host", "other.example.test"),
        ("X-Original-URL", home.as_str()),
    ];
    let page = send(b.http.get(&admin), &with_forged(&forged_target)).await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.caddy.context());
    let page = send(
        b.http.post(&admin).form(&[("a", "1")]),
        &with_forged(&[HTML]),
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}\n{}", s.caddy.context());
    assert_eq!(s.echo.count(), before, "bob reached /admin");
}

/// `Remote_User` is not `Remote-User` to Caddy, but it is to every app that reads headers
/// through CGI-style variables (PHP's `$_SERVER['HTTP_REMOTE_USER']`, WSGI, Rack): both become
/// `HTTP_REMOTE_USER`. nginx drops headers with underscores by default; Caddy passes them on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_caddy_keeps_underscore_spellings_of_the_identity_headers_out() {
    let Some(s) = setup().await else { return };
    let b = browser();
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let forged = [
        ("Remote_User", "mallory"),
        ("Remote_Email", "mallory@evil.example"),
        ("Remote_Groups", "admins"),
    ];
    let page = send(b.http.get(s.caddy.url(APP_HOST, "/")), &forged).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", s.caddy.context());
    let seen = Seen::of(&page);
    assert!(!seen.mentions("mallory"), "{seen:?}");
    assert!(
        seen.all("remote_groups").is_empty(),
        "a forged Remote_Groups reached the app: {seen:?}"
    );
}

/// The usual way to give doorman its address: the same Caddy serves `auth.example.test` with a
/// `reverse_proxy` to doorman. The printed `forward_auth auth.example.test:PORT` then reaches
/// doorman through that site, so it has to arrive there as a request for the auth site and
/// still describe the app's request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_caddy_works_when_the_same_caddy_serves_doorman() {
    if !available(CADDY) {
        return;
    }
    let caddy_port = free_port();
    let doorman = Doorman::start_at(
        &forward_auth_toml(r#"["127.0.0.1/32"]"#, ""),
        Some(caddy_port),
    )
    .await;
    let echo = Echo::start().await;
    let printed = doorman.integrate("caddy");
    let upstream = echo.addr.to_string();
    let site = fill_placeholders(&printed, |p| {
        p.contains("your-app").then(|| upstream.clone())
    });
    let auth_site = format!(
        "http://{AUTH_HOST}:{caddy_port} {{\n\treverse_proxy 127.0.0.1:{}\n}}\n",
        doorman.server.port
    );
    let caddy = Proxy::caddy_on(caddy_port, &site, &auth_site).unwrap_or_else(|e| panic!("{e}"));
    let b = browser();
    let page = b
        .get(&doorman.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(
        page.status,
        200,
        "doorman through Caddy: {page:?}\n{}",
        caddy.context()
    );

    let target = caddy.url(APP_HOST, "/x?y=1");
    let page = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        send(b.http.get(&target), &[HTML]),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no answer within 10 s (the check loops?)\n{}",
            caddy.context()
        )
    });
    assert_eq!(page.status, 302, "{page:?}\n{}", caddy.context());
    doorman.assert_login_redirect(&page.redirect(), &target);
    let form = b.get(page.redirect().as_str()).await;
    let done = b.submit_login(&form, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.redirect().as_str(), target);
    let page = send(b.http.get(&target), &[HTML]).await;
    assert_eq!(
        Seen::of(&page).one("remote-user"),
        Some(ALICE),
        "{}",
        caddy.context()
    );
}

/// Spellings of `/admin`, sent byte for byte through Caddy: bob (signed in, not an admin)
/// never reaches the app's admin page, whatever Caddy makes of the spelling, and the identity
/// he forges never reaches the app at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_caddy_no_spelling_of_admin_reaches_the_app_for_a_non_admin() {
    let Some(s) = setup().await else { return };
    let b = browser();
    sign_in(&s.doorman, &b, BOB, BOB_PASSWORD).await;
    let cookie = cookie_for(&b, &s.caddy.url(APP_HOST, "/")).unwrap();
    let forged = with_forged(&[("Cookie", cookie.as_str()), ("Remote-User", "admin")]);
    let (status, text) = raw_get(s.caddy.port, APP_HOST, "/x", &forged).await;
    assert_eq!(status, 200, "{text}\n{}", s.caddy.context());
    for target in ["/admin"].iter().chain(ADMIN_SPELLINGS.iter()) {
        let (status, text) = raw_get(s.caddy.port, APP_HOST, target, &forged).await;
        assert_ne!(status, 200, "{target}: {text}\n{}", s.caddy.context());
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

    // A client's own X-Forwarded-* (once or twice) changes nothing: Caddy sets its own.
    let before = s.echo.count();
    let (status, text) = raw_get(
        s.caddy.port,
        APP_HOST,
        "/admin",
        &[
            ("Cookie", cookie.as_str()),
            ("X-Forwarded-Uri", "/"),
            ("X-Forwarded-Uri", "/x"),
            ("X-Forwarded-Host", "other.example.test"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{text}\n{}", s.caddy.context());
    assert_eq!(s.echo.count(), before);
}

/// The printed Caddyfile is what `caddy fmt` makes of it, and the client's identity headers
/// are dropped inside a `route`, before `forward_auth` (whose copy_headers keeps a client's
/// copy in Caddy 2.10.0-2.11.1 when doorman's value is empty).
#[test]
fn proxy_caddy_snippet_is_caddy_fmt_formatted_and_strips_client_identity_first() {
    if !available(CADDY) {
        return;
    }
    for printed in [integrate_local("caddy"), integrate_remote("caddy")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, &printed).unwrap();
        let out = std::process::Command::new(CADDY)
            .arg("fmt")
            .arg(&path)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), printed);
        let strip = printed.find("request_header -Remote-*").expect(&printed);
        let route = printed.find("route {").expect(&printed);
        let check = printed.find("forward_auth ").expect(&printed);
        assert!(route < strip && strip < check, "{printed}");
    }
}

/// `doorman integrate caddy --remote` (doorman at an https issuer elsewhere) passes
/// `caddy validate`.
#[test]
fn proxy_caddy_remote_mode_snippet_passes_caddy_validate() {
    if !available(CADDY) {
        return;
    }
    let printed = integrate_remote("caddy");
    assert!(
        printed.contains("forward_auth https://auth.example.test {")
            && printed.contains("header_up Host {upstream_hostport}"),
        "{printed}"
    );
    let site = fill_placeholders(&printed, |p| {
        p.contains("your-app").then(|| "127.0.0.1:9".to_string())
    });
    let out = Proxy::check_caddy(&site);
    assert!(
        out.0,
        "caddy validate refused the remote-mode snippet:\n{}\n{site}",
        out.1
    );
}

/// `caddy validate` accepts what `doorman integrate caddy` prints next to doorman,
/// placeholders filled.
#[test]
fn proxy_caddy_local_mode_snippet_passes_caddy_validate() {
    if !available(CADDY) {
        return;
    }
    let printed = integrate_local("caddy");
    let site = fill_placeholders(&printed, |p| {
        p.contains("your-app").then(|| "127.0.0.1:9".to_string())
    });
    let (ok, out) = Proxy::check_caddy(&site);
    assert!(ok, "caddy validate refused the snippet:\n{out}\n{site}");
}
