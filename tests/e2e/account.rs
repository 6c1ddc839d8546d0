//! The /account page over HTTP: signing in first, the profile (name; email only when the
//! operator allows it, unverified after, and only with a recent sign-in or the password), the
//! password change (current password, policy, the other sessions and applications end while
//! this browser stays), removing the second factor (a code or the password), the sessions
//! ("sign out this one", "everywhere else"), revoking an application, and CSRF on every form.

use crate::common::*;

const ACCOUNT: &str = "/account";

const MAY_CHANGE_EMAIL: &str = "[accounts]\nusers_may_change_email = true\n";

const LOCKOUT: &str =
    "[login]\nmax_failures_per_account = 3\nlockout_base = \"30s\"\nlockout_max = \"2m\"\n";

/// Signs `browser` in through /account (the landing page, then back) and returns the page.
async fn sign_in(server: &TestServer, browser: &Browser, user: &str, pass: &str) -> Page {
    let landing = browser.get(&server.url(ACCOUNT)).await;
    landing.assert_status(200);
    assert!(
        landing.login_form().is_some(),
        "not signed in: the landing page:\n{}",
        landing.text
    );
    let done = browser.submit_login(&landing, user, pass).await;
    assert_eq!(done.status, 303, "sign-in failed:\n{}", done.text);
    assert_eq!(
        done.redirect().as_str(),
        server.url(ACCOUNT),
        "back to /account"
    );
    account_page(server, browser).await
}

/// The account page of a signed-in browser.
async fn account_page(server: &TestServer, browser: &Browser) -> Page {
    let page = browser.get(&server.url(ACCOUNT)).await;
    page.assert_status(200);
    assert!(
        page.text.contains("<h1>Your account</h1>"),
        "the account page:\n{}",
        page.text
    );
    page
}

/// Whether `browser` is signed out: /account shows the landing page.
async fn signed_out(server: &TestServer, browser: &Browser) -> bool {
    let page = browser.get(&server.url(ACCOUNT)).await;
    page.status == 200 && page.login_form().is_some() && !page.text.contains("Your account")
}

fn csrf(page: &Page) -> String {
    input_value(&page.text, "csrf").expect("a csrf field on the account page")
}

/// The error paragraph of a page.
fn alert(page: &Page) -> String {
    let at = page
        .text
        .find("role=\"alert\">")
        .unwrap_or_else(|| panic!("an error on the page:\n{}", page.text));
    let rest = &page.text[at + "role=\"alert\">".len()..];
    html_unescape(rest[..rest.find("</p>").unwrap()].trim())
}

/// POSTs `fields` (plus the page's csrf) to an /account path; the answer is not followed.
async fn post(
    server: &TestServer,
    browser: &Browser,
    page: &Page,
    path: &str,
    fields: &[(&str, &str)],
) -> Page {
    let token = csrf(page);
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(fields);
    browser.post_form(&server.url(path), &all).await
}

fn assert_done(server: &TestServer, page: &Page, what: &str) {
    assert_eq!(page.status, 303, "{what}: {}", page.text);
    assert_eq!(
        page.redirect().as_str(),
        server.url(&format!("{ACCOUNT}?done={what}"))
    );
}

async fn alice(server: &TestServer) -> doorman::store::User {
    server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap()
}

/// The `data-sid` of the sessions on the page that are not this browser's.
fn other_sids(page: &Page) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page.text.as_str();
    while let Some(i) = rest.find("<li class=\"session") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap()];
        if !tag.contains(" current") {
            let v = tag.find("data-sid=\"").unwrap() + "data-sid=\"".len();
            out.push(tag[v..v + tag[v..].find('"').unwrap()].to_string());
        }
        rest = &rest[i + 1..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_signed_in_the_landing_page_then_back_to_the_account_page() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    assert!(
        page.text.contains("class=\"username\">alice<"),
        "{}",
        page.text
    );
    assert!(page.text.contains("alice@example.com"));
    assert!(page.text.contains("(verified)"));
    assert!(page.text.contains("value=\"Alice Liddell\""));
    assert!(
        page.text
            .contains("Only the operator can change your email address."),
        "email not editable by default"
    );
    assert!(!page.text.contains("name=\"email\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_can_be_changed() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/profile",
        &[("name", "  Alice Pleasance Liddell ")],
    )
    .await;
    assert_done(&server, &answer, "profile");
    let page = browser.get(answer.redirect().as_str()).await;
    page.assert_status(200);
    assert!(page.text.contains("value=\"Alice Pleasance Liddell\""));
    assert!(page.text.contains("Your profile was saved."));
    assert_eq!(
        alice(&server).await.name.as_deref(),
        Some("Alice Pleasance Liddell")
    );
    // An email field sent anyway is refused while the operator does not allow it.
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/profile",
        &[("name", "Alice"), ("email", "new@example.com")],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("does not let users change their email"));
    let u = alice(&server).await;
    assert_eq!(u.email.as_deref(), Some(ALICE_EMAIL));
    assert!(u.email_verified);
    assert_eq!(
        u.name.as_deref(),
        Some("Alice Pleasance Liddell"),
        "nothing saved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_email_is_unverified_and_needs_a_recent_sign_in_or_the_password() {
    let server = TestServer::start(MAY_CHANGE_EMAIL).await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    assert!(page.text.contains("name=\"email\""));
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/profile",
        &[("name", "Alice Liddell"), ("email", "not an address")],
    )
    .await;
    assert_eq!(answer.status, 400);
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/profile",
        &[
            ("name", "Alice Liddell"),
            ("email", "alice@wonderland.example"),
        ],
    )
    .await;
    assert_done(&server, &answer, "email");
    let u = alice(&server).await;
    assert_eq!(u.email.as_deref(), Some("alice@wonderland.example"));
    assert!(!u.email_verified, "a changed email is not verified");
    let page = account_page(&server, &browser).await;
    assert!(page.text.contains("(not verified)"), "{}", page.text);
    assert!(page.text.contains("Ask the operator to mark it verified."));

    // Eleven minutes later the sign-in is no longer recent: the password is asked for.
    server.clock.advance(11 * 60);
    let page = account_page(&server, &browser).await;
    assert!(page.text.contains("name=\"password\""), "{}", page.text);
    let change = |pass: &'static str| {
        let (server, browser, page) = (&server, &browser, &page);
        async move {
            post(
                server,
                browser,
                page,
                "/account/profile",
                &[
                    ("name", "Alice Liddell"),
                    ("email", "alice@looking-glass.example"),
                    ("password", pass),
                ],
            )
            .await
        }
    };
    let answer = change("").await;
    assert_eq!(answer.status, 401);
    assert!(alert(&answer).contains("type your current password"));
    let answer = change("not-alices-password").await;
    assert_eq!(answer.status, 401);
    assert_eq!(alert(&answer), "Your current password is not right.");
    assert_eq!(
        alice(&server).await.email.as_deref(),
        Some("alice@wonderland.example")
    );
    // The name alone needs no password.
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/profile",
        &[
            ("name", "A. Liddell"),
            ("email", "alice@wonderland.example"),
        ],
    )
    .await;
    assert_done(&server, &answer, "profile");
    let answer = change(ALICE_PASSWORD).await;
    assert_done(&server, &answer, "email");
    assert_eq!(
        alice(&server).await.email.as_deref(),
        Some("alice@looking-glass.example")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_ends_the_other_sessions_and_applications_but_not_this_one() {
    let server = TestServer::start("").await;
    let here = Browser::new();
    let page = sign_in(&server, &here, ALICE, ALICE_PASSWORD).await;
    let elsewhere = Browser::new();
    sign_in(&server, &elsewhere, ALICE, ALICE_PASSWORD).await;
    let tokens = server
        .code_flow(
            &elsewhere,
            RP,
            "openid offline_access",
            ALICE,
            ALICE_PASSWORD,
        )
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    let change = |current: &'static str, new: &'static str, again: &'static str| {
        let (server, here, page) = (&server, &here, &page);
        async move {
            post(
                server,
                here,
                page,
                "/account/password",
                &[
                    ("current_password", current),
                    ("new_password", new),
                    ("new_password_confirm", again),
                ],
            )
            .await
        }
    };
    let answer = change(
        "wrong-password",
        "a-new-long-passphrase",
        "a-new-long-passphrase",
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(alert(&answer), "Your current password is not right.");
    let answer = change(ALICE_PASSWORD, "short", "short").await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        alert(&answer),
        "The password must be at least 10 characters long."
    );
    let answer = change(ALICE_PASSWORD, "password123", "password123").await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("most common"));
    let answer = change(ALICE_PASSWORD, "alice@example.com", "alice@example.com").await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("not be your username or email"));
    let answer = change(ALICE_PASSWORD, "a-new-long-passphrase", "a-different-one").await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("not the same"));
    assert!(
        !signed_out(&server, &elsewhere).await,
        "nothing changed so far"
    );

    let answer = change(
        ALICE_PASSWORD,
        "a-new-long-passphrase",
        "a-new-long-passphrase",
    )
    .await;
    assert_done(&server, &answer, "password");
    let page = here.get(answer.redirect().as_str()).await;
    page.assert_status(200);
    assert!(page.text.contains("Your password was changed."));
    assert!(
        signed_out(&server, &elsewhere).await,
        "the other browser is signed out"
    );
    let refreshed = server.refresh(RP, &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");

    // The new password signs in; the old one no longer does.
    let fresh = Browser::new();
    let landing = fresh.get(&server.url(ACCOUNT)).await;
    let refused = fresh.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    sign_in(&server, &fresh, ALICE, "a-new-long-passphrase").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_count_in_the_lockout() {
    let server = TestServer::start(LOCKOUT).await;
    server.clock.freeze();
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let change = |current: &'static str| {
        let (server, browser, page) = (&server, &browser, &page);
        async move {
            post(
                server,
                browser,
                page,
                "/account/password",
                &[
                    ("current_password", current),
                    ("new_password", "a-new-long-passphrase"),
                    ("new_password_confirm", "a-new-long-passphrase"),
                ],
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(change("wrong-password").await.status, 401);
    }
    let locked = change(ALICE_PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert!(locked.header("retry-after").is_some());
    assert!(alert(&locked).contains("Too many failed attempts"));
    // The sign-in page of another browser is locked too: one lockout per account.
    let other = Browser::new();
    let landing = other.get(&server.url(ACCOUNT)).await;
    let refused = other.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(refused.status, 429);
    server.clock.advance(31);
    assert_done(&server, &change(ALICE_PASSWORD).await, "password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_other_session_can_be_signed_out() {
    let server = TestServer::start("").await;
    let here = Browser::new();
    sign_in(&server, &here, ALICE, ALICE_PASSWORD).await;
    let phone = Browser::new();
    sign_in(&server, &phone, ALICE, ALICE_PASSWORD).await;
    let laptop = Browser::new();
    sign_in(&server, &laptop, ALICE, ALICE_PASSWORD).await;
    let bobs = Browser::new();
    sign_in(&server, &bobs, BOB, BOB_PASSWORD).await;
    // An application signed in through the phone's session, and one through the laptop's.
    let phone_app = server
        .code_flow(&phone, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await
        .refresh_token
        .expect("a refresh token");
    let laptop_app = server
        .code_flow(&laptop, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await
        .refresh_token
        .expect("a refresh token");

    let page = account_page(&server, &here).await;
    let others = other_sids(&page);
    assert_eq!(
        others.len(),
        2,
        "alice's two other sessions, not bob's:\n{}",
        page.text
    );
    assert!(page.text.contains("This browser"));
    assert!(
        page.text
            .contains(" with password from 127.0.0.1; last seen "),
        "method, IP and last seen:\n{}",
        page.text
    );
    // The phone's session is the one the phone's own page calls current.
    let phone_page = account_page(&server, &phone).await;
    let phone_sid = others
        .iter()
        .find(|sid| !other_sids(&phone_page).contains(sid))
        .unwrap()
        .clone();
    let answer = post(
        &server,
        &here,
        &page,
        "/account/sessions/end",
        &[("sid", &phone_sid)],
    )
    .await;
    assert_done(&server, &answer, "session");
    assert!(signed_out(&server, &phone).await, "the phone is signed out");
    assert!(!signed_out(&server, &laptop).await, "the laptop is not");
    // What signed in through the phone's session is signed out with it; the laptop's is not.
    let refreshed = server.refresh(RP, &phone_app).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    let refreshed = server.refresh(RP, &laptop_app).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert!(!signed_out(&server, &bobs).await);
    let page = account_page(&server, &here).await;
    assert_eq!(other_sids(&page).len(), 1);
    // Again: that session has already ended.
    let again = post(
        &server,
        &here,
        &page,
        "/account/sessions/end",
        &[("sid", &phone_sid)],
    )
    .await;
    assert_eq!(again.status, 404);
    // Bob cannot end alice's sessions: his page does not know them.
    let bob_page = account_page(&server, &bobs).await;
    let laptop_sid = other_sids(&page).remove(0);
    let answer = post(
        &server,
        &bobs,
        &bob_page,
        "/account/sessions/end",
        &[("sid", &laptop_sid)],
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(!signed_out(&server, &laptop).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_else_keeps_this_browser() {
    let server = TestServer::start("").await;
    let here = Browser::new();
    sign_in(&server, &here, ALICE, ALICE_PASSWORD).await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let firefox = Browser {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Firefox/140.0")
            .build()
            .unwrap(),
        jar,
    };
    let others: Vec<Browser> = vec![Browser::new(), firefox];
    for b in &others {
        sign_in(&server, b, ALICE, ALICE_PASSWORD).await;
    }
    let bobs = Browser::new();
    sign_in(&server, &bobs, BOB, BOB_PASSWORD).await;
    // An application signed in through another session, and one through this one.
    let theirs = server
        .code_flow(
            &others[0],
            RP,
            "openid offline_access",
            ALICE,
            ALICE_PASSWORD,
        )
        .await
        .refresh_token
        .expect("a refresh token");
    let mine = server
        .code_flow(&here, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await
        .refresh_token
        .expect("a refresh token");
    let page = account_page(&server, &here).await;
    assert_eq!(other_sids(&page).len(), 2);
    assert!(
        html_unescape(&page.text)
            .contains("<strong>Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Firefox/140.0</strong>"),
        "the other browser's user agent:\n{}",
        page.text
    );
    let answer = post(&server, &here, &page, "/account/sessions/end-others", &[]).await;
    assert_done(&server, &answer, "others");
    for b in &others {
        assert!(signed_out(&server, b).await);
    }
    assert!(!signed_out(&server, &bobs).await, "bob's session is his");
    let refreshed = server.refresh(RP, &theirs).await;
    assert_eq!(
        refreshed.oauth_error(),
        "invalid_grant",
        "{}",
        refreshed.text
    );
    let refreshed = server.refresh(RP, &mine).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let page = account_page(&server, &here).await;
    assert!(other_sids(&page).is_empty());
    assert!(page.text.contains("No other sessions."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_application_stops_its_refresh_token() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let tokens = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    let page = account_page(&server, &browser).await;
    assert!(
        page.text.contains("data-client=\"rp\"") && page.text.contains("Relying Party"),
        "{}",
        page.text
    );
    let answer = post(
        &server,
        &browser,
        &page,
        "/account/applications/revoke",
        &[("client", RP)],
    )
    .await;
    assert_done(&server, &answer, "application");
    let refreshed = server.refresh(RP, &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    let page = account_page(&server, &browser).await;
    assert!(!page.text.contains("data-client=\"rp\""));
    assert!(
        !signed_out(&server, &browser).await,
        "the browser stays signed in"
    );
    let again = post(
        &server,
        &browser,
        &page,
        "/account/applications/revoke",
        &[("client", RP)],
    )
    .await;
    assert_eq!(again.status, 404);
}

/// Turns on a TOTP for alice straight in the store; returns its secret.
async fn give_alice_totp(server: &TestServer) -> Vec<u8> {
    let secret = doorman::accounts::totp::new_secret();
    let sealed = server.state.secret_box.seal(&secret).unwrap();
    let user = alice(server).await;
    server
        .state
        .store
        .enable_totp(&user.id, &sealed, &[], server.now())
        .await
        .unwrap();
    secret
}

fn code_now(server: &TestServer, secret: &[u8]) -> String {
    doorman::accounts::totp::code_at(secret, doorman::accounts::totp::step_at(server.now()))
}

async fn alice_has_totp(server: &TestServer) -> bool {
    let user = alice(server).await;
    server
        .state
        .store
        .get_totp(&user.id)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_second_factor_needs_a_code_or_the_password() {
    let server = TestServer::start("").await;
    server.clock.freeze();
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    assert!(page.text.contains("class=\"factor-status\">off<"));
    let secret = give_alice_totp(&server).await;
    let page = account_page(&server, &browser).await;
    assert!(
        page.text.contains("class=\"factor-status\">on<"),
        "{}",
        page.text
    );
    let remove = |code: String, pass: &'static str| {
        let (server, browser, page) = (&server, &browser, &page);
        async move {
            post(
                server,
                browser,
                page,
                "/account/second-factor/remove",
                &[("code", &code), ("password", pass)],
            )
            .await
        }
    };
    let answer = remove(String::new(), "").await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("Type a code"));
    let right = code_now(&server, &secret);
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    let answer = remove(wrong.to_string(), "").await;
    assert_eq!(answer.status, 401);
    assert_eq!(alert(&answer), "That code is not right.");
    let answer = remove(String::new(), "not-alices-password").await;
    assert_eq!(answer.status, 401);
    // A recovery code (which a stolen session could have made a set of) does not remove it.
    let answer = remove("abcde-fghjk".to_string(), "").await;
    assert_eq!(answer.status, 400);
    assert!(alert(&answer).contains("recovery code"), "{}", answer.text);
    assert!(alice_has_totp(&server).await, "still on");

    let answer = remove(right, "").await;
    assert_done(&server, &answer, "second-factor");
    assert!(!alice_has_totp(&server).await, "removed with a code");

    give_alice_totp(&server).await;
    let answer = remove(String::new(), ALICE_PASSWORD).await;
    assert_done(&server, &answer, "second-factor");
    assert!(!alice_has_totp(&server).await, "removed with the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_refuses_a_token_of_another_browser_or_session() {
    let server = TestServer::start(MAY_CHANGE_EMAIL).await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let other = Browser::new();
    let other_page = sign_in(&server, &other, ALICE, ALICE_PASSWORD).await;
    give_alice_totp(&server).await;
    let tokens = server
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;
    let other_sid = other_sids(&account_page(&server, &browser).await).remove(0);
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/account/profile",
            vec![("name", "Mallory"), ("email", "m@evil.example")],
        ),
        (
            "/account/password",
            vec![
                ("current_password", ALICE_PASSWORD),
                ("new_password", "mallorys-passphrase"),
                ("new_password_confirm", "mallorys-passphrase"),
            ],
        ),
        (
            "/account/second-factor/remove",
            vec![("password", ALICE_PASSWORD)],
        ),
        ("/account/sessions/end", vec![("sid", other_sid.as_str())]),
        ("/account/sessions/end-others", vec![]),
        ("/account/applications/revoke", vec![("client", RP)]),
    ];
    // This browser's own session with the token of another browser's page, or no token.
    let mine = csrf(&page);
    let theirs = csrf(&other_page);
    assert_ne!(mine, theirs);
    for (path, fields) in &forms {
        for (what, token, who) in [
            ("another browser's token", theirs.as_str(), &browser),
            ("no token", "", &browser),
        ] {
            let mut all = vec![("csrf", token)];
            all.extend_from_slice(fields);
            let answer = who.post_form(&server.url(path), &all).await;
            assert_eq!(answer.status, 403, "{path}: {what}: {}", answer.text);
            assert!(
                answer.text.contains("could not be verified"),
                "{path}: {what}"
            );
        }
        // A token from this browser without its browser cookie (another site's form).
        let bare = reqwest::Client::new();
        let mut all = vec![("csrf", mine.as_str())];
        all.extend_from_slice(fields);
        let answer = bare
            .post(server.url(path))
            .header(
                "cookie",
                format!(
                    "doorman_session={}",
                    browser
                        .cookie(&server.url(ACCOUNT), "doorman_session")
                        .unwrap()
                ),
            )
            .form(&all)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{path}: no browser cookie");
    }
    // Nothing happened.
    let u = alice(&server).await;
    assert_eq!(u.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(u.email.as_deref(), Some(ALICE_EMAIL));
    assert!(alice_has_totp(&server).await);
    assert!(!signed_out(&server, &other).await);
    assert_eq!(
        server
            .refresh(RP, tokens.refresh_token.as_ref().unwrap())
            .await
            .status,
        200
    );
    // The password is unchanged: it still gets alice as far as her code page.
    let fresh = Browser::new();
    let landing = fresh.get(&server.url(ACCOUNT)).await;
    let next = fresh.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert!(next.text.contains("/login/code"), "{}", next.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_an_earlier_session_in_the_same_browser_is_refused() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let stale = csrf(&page);
    // This browser signs its own session out from the page, and signs in again.
    let answer = browser
        .post_form(
            &server.url("/account/sessions/end"),
            &[("csrf", stale.as_str()), ("sid", &current_sid(&page))],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert!(signed_out(&server, &browser).await, "its own session ended");
    sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let fresh = account_page(&server, &browser).await;
    assert_ne!(csrf(&fresh), stale);
    let answer = browser
        .post_form(
            &server.url("/account/profile"),
            &[("csrf", stale.as_str()), ("name", "Mallory")],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert_eq!(alice(&server).await.name.as_deref(), Some("Alice Liddell"));
}

/// The `data-sid` of this browser's own session on the page.
fn current_sid(page: &Page) -> String {
    let at = page.text.find("<li class=\"session current\"").unwrap();
    let tag = &page.text[at..at + page.text[at..].find('>').unwrap()];
    let v = tag.find("data-sid=\"").unwrap() + "data-sid=\"".len();
    tag[v..v + tag[v..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_plex_identity_is_shown_with_when_it_was_last_checked() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = sign_in(&server, &browser, ALICE, ALICE_PASSWORD).await;
    assert!(
        !page.text.contains("id=\"plex\""),
        "no Plex section without one"
    );
    let user = alice(&server).await;
    server
        .state
        .store
        .put_identity(&doorman::store::Identity {
            provider: "plex".into(),
            subject: "424242".into(),
            user_id: user.id.clone(),
            token: None,
            server_token: None,
            owner: false,
            allowed: true,
            checked_at: Some(1_767_225_600),
            created_at: 1_767_225_600,
            updated_at: 1_767_225_600,
            by_invite: false,
        })
        .await
        .unwrap();
    let page = account_page(&server, &browser).await;
    assert!(page.text.contains("id=\"plex\""), "{}", page.text);
    assert!(page.text.contains("(id 424242)"));
    assert!(
        page.text
            .contains("class=\"plex-checked\">2026-01-01 00:00:00 UTC<"),
        "{}",
        page.text
    );
}
