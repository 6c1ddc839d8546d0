//! Apache httpd with mod_auth_openidc as a relying party of doorman, configured with exactly
//! what `doorman integrate apache` prints (the client secret and the passphrase filled in),
//! proxying to an echo app that shows the `OIDC_CLAIM_*` headers mod_auth_openidc adds.

use crate::common::proxies::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_apache_signs_in_through_doorman_and_passes_the_claims() {
    if !available(APACHE) {
        return;
    }
    let port = free_port();
    let doorman = Doorman::start(&forward_auth_toml(
        r#"["127.0.0.1/32"]"#,
        &apache_client_toml(port),
    ))
    .await;
    let echo = Echo::start().await;
    let printed = doorman.integrate("apache");
    let redirect_uri = format!("http://{APACHE_HOST}:{port}/redirect_uri");
    assert!(
        printed.contains(&format!("OIDCClientID {APACHE_CLIENT}"))
            && printed.contains(&format!("OIDCRedirectURI {redirect_uri}")),
        "the registered client is picked:\n{printed}"
    );
    let passphrase = random_string();
    let snippet = fill_placeholders(&printed, |p| {
        if p.contains("secret") {
            Some(APACHE_SECRET.to_string())
        } else if p.contains("random") {
            Some(passphrase.clone())
        } else {
            None
        }
    });
    let apache = Proxy::apache(port, &snippet, echo.addr);
    let b = browser();
    let target = apache.url(APACHE_HOST, "/hello?x=1");

    // Anonymous: to doorman's /authorize for the Apache client, which shows the login page.
    let page = b.get(&target).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", apache.context());
    let authorize = page.redirect();
    assert_eq!(
        authorize.as_str().split('?').next(),
        Some(doorman.url("/authorize").as_str()),
        "{authorize}\n{}",
        apache.context()
    );
    let q = query(&authorize);
    assert_eq!(q.get("client_id").map(String::as_str), Some(APACHE_CLIENT));
    assert_eq!(q.get("redirect_uri"), Some(&redirect_uri));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let login = b.get(authorize.as_str()).await;
    login.assert_status(200);
    assert!(login.login_form().is_some(), "{}", login.text);
    assert_eq!(echo.count(), 0);

    // Sign in: the code goes to Apache's redirect_uri, Apache redeems it and returns to the page.
    let done = b.submit_login(&login, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    let callback = done.redirect();
    assert!(callback.as_str().starts_with(&redirect_uri), "{callback}");
    let page = b.get(callback.as_str()).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", apache.context());
    assert_eq!(page.redirect().as_str(), target);

    // The page, with the claims; a forged claim header is scrubbed by mod_auth_openidc.
    let page = send(
        b.http.get(&target),
        &[
            ("OIDC_CLAIM_email", "mallory@evil.example"),
            ("X-Remote-User", "mallory"),
            // Identity headers of the forward-auth kind: the snippet unsets them.
            ("Remote-User", "mallory"),
            ("Remote-Groups", "mallory-admins"),
            ("Remote_Groups", "mallory-admins"),
        ],
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}\n{}", apache.context());
    let seen = Seen::of(&page);
    assert_eq!(seen.uri, "/hello?x=1");
    assert_eq!(seen.one("oidc_claim_email"), Some(ALICE_EMAIL), "{seen:?}");
    assert_eq!(seen.one("oidc_claim_groups"), Some("admins"), "{seen:?}");
    assert_eq!(
        seen.one("oidc_claim_preferred_username"),
        Some(ALICE),
        "{seen:?}"
    );
    assert_eq!(
        seen.one("oidc_claim_name"),
        Some("Alice Liddell"),
        "{seen:?}"
    );
    assert_eq!(
        seen.one("oidc_claim_iss"),
        Some(doorman.issuer.as_str()),
        "{seen:?}"
    );
    assert_eq!(seen.one("oidc_claim_aud"), Some(APACHE_CLIENT), "{seen:?}");
    // OIDCRemoteUserClaim preferred_username: REMOTE_USER is alice.
    assert_eq!(seen.one("x-remote-user"), Some(ALICE), "{seen:?}");
    assert!(!seen.mentions("mallory"), "{seen:?}");

    // Apache's session holds: another page needs no new sign-in.
    let page = b.get(&apache.url(APACHE_HOST, "/other")).await;
    assert_eq!(Seen::of(&page).one("oidc_claim_email"), Some(ALICE_EMAIL));

    // Single sign-on: a browser with only doorman's session goes through Apache's sign-in
    // without seeing the login page.
    let sso = b.cookie(&doorman.issuer, "doorman_session").unwrap();
    let b2 = browser();
    b2.set_cookie(&doorman.issuer, &format!("doorman_session={sso}; Path=/"));
    let page = b2.get(&target).await;
    let page = b2.get(page.redirect().as_str()).await;
    assert_eq!(
        page.status, 302,
        "SSO did not skip the login page: {page:?}"
    );
    let callback = page.redirect();
    assert!(callback.as_str().starts_with(&redirect_uri), "{callback}");
    let page = b2.get(callback.as_str()).await;
    let page = b2.get(page.redirect().as_str()).await;
    assert_eq!(
        Seen::of(&page).one("oidc_claim_preferred_username"),
        Some(ALICE),
        "{}",
        apache.context()
    );
}

/// `--client` names a [[clients]] entry that does not exist: an error naming the configured
/// ones, a failing exit, and nothing to paste.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_apache_integrate_with_an_unknown_client_fails_and_names_the_clients() {
    let doorman = Doorman::start(&forward_auth_toml(
        r#"["127.0.0.1/32"]"#,
        &apache_client_toml(free_port()),
    ))
    .await;
    let out = doorman.integrate_output(&["apache", "--client", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("nope") && stderr.contains(APACHE_CLIENT),
        "{stderr}"
    );
    let out = doorman.integrate_output(&["apache", "--client", APACHE_CLIENT]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("OIDCClientID {APACHE_CLIENT}")),
        "{printed}"
    );
    assert!(
        printed.contains("RequestHeader unset Remote-Groups early"),
        "{printed}"
    );
}

/// `apache2 -t` accepts what `doorman integrate apache` prints, placeholders filled: for a
/// config without the app's client (the `<client id>` form) and with doorman remote.
#[test]
fn proxy_apache_printed_snippets_pass_apache2_t() {
    if !available(APACHE) {
        return;
    }
    for printed in [integrate_local("apache"), integrate_remote("apache")] {
        assert!(printed.contains("OIDCProviderMetadataURL "), "{printed}");
        let snippet = fill_placeholders(&printed, |p| {
            Some(match p {
                "client id" => "apache".to_string(),
                p if p.contains("secret") => "s3cret-0123456789".to_string(),
                p if p.contains("random") => random_string(),
                _ => return None,
            })
        });
        let (ok, out) = Proxy::check_apache(&snippet);
        assert!(ok, "apache2 -t refused the snippet:\n{out}\n{snippet}");
    }
}

/// Back-channel logout to a real relying party: mod_auth_openidc's back-channel endpoint
/// (`<OIDCRedirectURI>?logout=backchannel`) verifies doorman's logout token by its own rules
/// (signature against the JWKS, iss, aud, iat, events, no nonce, the id_token's sid) and ends
/// its session: after signing out at doorman, the same browser is sent to sign in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_apache_session_ends_by_back_channel_logout() {
    if !available(APACHE) {
        return;
    }
    let port = free_port();
    // The line `integrate apache` suggests for the client, its host made 127.0.0.1 (doorman
    // does not resolve the test's Apache host name; Apache answers on 127.0.0.1 all the same).
    let hint = text(
        &crate::integrate::integrate(
            &format!("http://{AUTH_HOST}:1"),
            &apache_client_toml(port),
            &["apache"],
        )
        .stdout,
    );
    let line = hint
        .lines()
        .find_map(|l| l.strip_prefix("#   backchannel_logout_uri = "))
        .unwrap_or_else(|| panic!("no backchannel_logout_uri hint in:\n{hint}"))
        .replace(APACHE_HOST, "127.0.0.1");
    assert_eq!(
        line,
        format!("\"http://127.0.0.1:{port}/redirect_uri?logout=backchannel\"")
    );
    let client = format!(
        "{}backchannel_logout_uri = {line}\nbackchannel_logout_session_required = true\n",
        apache_client_toml(port)
    );
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, &client)).await;
    let echo = Echo::start().await;
    let passphrase = random_string();
    let snippet = fill_placeholders(&doorman.integrate("apache"), |p| {
        if p.contains("secret") {
            Some(APACHE_SECRET.to_string())
        } else if p.contains("random") {
            Some(passphrase.clone())
        } else {
            None
        }
    });
    let apache = Proxy::apache(port, &snippet, echo.addr);
    let b = browser();
    let target = apache.url(APACHE_HOST, "/hello");
    let page = b.get(&target).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", apache.context());
    let login = b.get(page.redirect().as_str()).await;
    let done = b.submit_login(&login, ALICE, ALICE_PASSWORD).await;
    done.assert_status(303);
    let page = b.get(done.redirect().as_str()).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", apache.context());
    let page = b.get(&target).await;
    assert_eq!(page.status, 200, "{page:?}\n{}", apache.context());
    assert_eq!(Seen::of(&page).one("oidc_claim_email"), Some(ALICE_EMAIL));

    // Sign out at doorman (the confirmation form: this browser holds no id_token).
    let logout = b.get(&doorman.url("/logout")).await;
    logout.assert_status(200);
    let csrf = input_value(&logout.text, "csrf").expect("a csrf field");
    let out = b
        .post_form(
            &doorman.url("/logout"),
            &[("confirm", "yes"), ("csrf", csrf.as_str())],
        )
        .await;
    out.assert_status(200);
    // Delivered (a 2xx from mod_auth_openidc), not left to retry.
    let backchannel = &doorman.server.state.backchannel;
    for _ in 0..400 {
        if backchannel.outstanding() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(backchannel.outstanding(), 0, "{}", apache.context());

    // Apache's own session is gone: the next request goes to sign in again.
    let page = b.get(&target).await;
    assert_eq!(page.status, 302, "{page:?}\n{}", apache.context());
    assert!(
        page.redirect()
            .as_str()
            .starts_with(&doorman.url("/authorize")),
        "{}",
        page.redirect()
    );
}
