//! The /admin Users page over HTTP: only members of `[accounts] admin_groups` (sign in first;
//! a 403 page for anyone else), the search, disabling (the user's open session and refresh
//! tokens stop at once) and enabling, the last admin who cannot be disabled, unlocking a
//! locked account, and CSRF on every form.

use crate::common::*;

const ADMIN: &str = "/admin";

const LOCKOUT: &str =
    "[login]\nmax_failures_per_account = 3\nlockout_base = \"30s\"\nlockout_max = \"2m\"\n";

/// Signs `browser` in through `path` (the landing page, then back there).
async fn sign_in_at(server: &TestServer, browser: &Browser, path: &str, user: &str, pass: &str) {
    let landing = browser.get(&server.url(path)).await;
    landing.assert_status(200);
    assert!(
        landing.login_form().is_some(),
        "not signed in: the landing page:\n{}",
        landing.text
    );
    let done = browser.submit_login(&landing, user, pass).await;
    assert_eq!(done.status, 303, "sign-in failed:\n{}", done.text);
    assert_eq!(done.redirect().as_str(), server.url(path), "back to {path}");
}

/// The admin page of a signed-in admin browser (with `query`, e.g. `?q=bob`).
async fn admin_page(server: &TestServer, browser: &Browser, query: &str) -> Page {
    let page = browser.get(&server.url(&format!("{ADMIN}{query}"))).await;
    page.assert_status(200);
    assert!(
        page.text.contains("<h1>Users</h1>"),
        "the admin page:\n{}",
        page.text
    );
    page
}

/// Alice (in `admins`) signed in on /admin in a new browser; the page.
async fn alice_admin(server: &TestServer) -> (Browser, Page) {
    let browser = Browser::new();
    sign_in_at(server, &browser, ADMIN, ALICE, ALICE_PASSWORD).await;
    let page = admin_page(server, &browser, "").await;
    (browser, page)
}

/// Whether `browser` is signed out: /account shows the landing page.
async fn signed_out(server: &TestServer, browser: &Browser) -> bool {
    let page = browser.get(&server.url("/account")).await;
    page.status == 200 && page.login_form().is_some() && !page.text.contains("Your account")
}

async fn user(server: &TestServer, name: &str) -> doorman::store::User {
    server
        .state
        .store
        .find_user_by_username(name)
        .await
        .unwrap()
        .unwrap()
}

fn csrf(page: &Page) -> String {
    input_value(&page.text, "csrf").expect("a csrf field on the admin page")
}

/// POSTs an action on `name` with `token` as its CSRF field; the answer is not followed.
async fn act(
    server: &TestServer,
    browser: &Browser,
    name: &str,
    action: &str,
    token: Option<&str>,
) -> Page {
    let id = user(server, name).await.id;
    let url = server.url(&format!("{ADMIN}/users/{id}/{action}"));
    match token {
        Some(t) => browser.post_form(&url, &[("csrf", t)]).await,
        None => browser.post_form(&url, &[("other", "x")]).await,
    }
}

fn assert_done(server: &TestServer, page: &Page, what: &str) {
    assert_eq!(page.status, 303, "{what}: {}", page.text);
    assert_eq!(
        page.redirect().as_str(),
        server.url(&format!("{ADMIN}?done={what}"))
    );
}

/// The `<li>` of `name` on the page.
fn entry<'a>(page: &'a Page, name: &str) -> Option<&'a str> {
    let marker = format!("data-user=\"{name}\"");
    let at = page.text.find(&marker)?;
    let rest = &page.text[at..];
    Some(&rest[..rest.find("</li>").unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_signed_in_the_landing_page_then_back_to_the_admin_page() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let landing = browser.get(&server.url(ADMIN)).await;
    landing.assert_status(200);
    assert!(landing.login_form().is_some(), "{}", landing.text);
    assert!(!landing.text.contains("<h1>Users</h1>"));
    let done = browser.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.redirect().as_str(), server.url(ADMIN));
    let page = admin_page(&server, &browser, "").await;
    let alice = entry(&page, ALICE).expect("alice listed");
    assert!(alice.contains("alice@example.com"), "{alice}");
    assert!(alice.contains("Alice Liddell"));
    assert!(alice.contains("class=\"groups\">admins<"));
    assert!(alice.contains("class=\"second-factor\">no<"));
    assert!(alice.contains("class=\"disabled-status\">no<"));
    assert!(
        !alice.contains("class=\"last-sign-in\">never<"),
        "alice just signed in"
    );
    let bob = entry(&page, BOB).expect("bob listed");
    assert!(bob.contains("class=\"last-sign-in\">never<"), "{bob}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_gets_a_403_page() {
    let server = TestServer::start("").await;
    let bob = Browser::new();
    sign_in_at(&server, &bob, ADMIN, BOB, BOB_PASSWORD).await;
    let page = bob.get(&server.url(ADMIN)).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(
        page.text.contains("This page is for administrators"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("data-user="), "no user list");
    // Nor can bob act, even with a token of his own browser and session.
    let (_, admin) = alice_admin(&server).await;
    let refused = act(&server, &bob, ALICE, "disable", Some(&csrf(&admin))).await;
    assert_eq!(refused.status, 403);
    assert!(!user(&server, ALICE).await.disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_matches_username_email_name_or_group() {
    let server = TestServer::start("").await;
    let (browser, all) = alice_admin(&server).await;
    assert!(entry(&all, ALICE).is_some() && entry(&all, BOB).is_some());
    for (q, alice, bob) in [
        ("BOB", false, true),
        ("Example.COM", true, false),
        ("liddell", true, false),
        ("admins", true, false),
        ("nobody-at-all", false, false),
    ] {
        let page = admin_page(&server, &browser, &format!("?q={q}")).await;
        assert_eq!(entry(&page, ALICE).is_some(), alice, "{q}: alice");
        assert_eq!(entry(&page, BOB).is_some(), bob, "{q}: bob");
        assert!(
            page.text.contains(&format!("value=\"{q}\"")),
            "the box keeps {q}"
        );
    }
    let none = admin_page(&server, &browser, "?q=nobody-at-all").await;
    assert!(none.text.contains("No users match."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_the_users_session_and_refresh_token_at_once() {
    let server = TestServer::start("").await;
    let bob = Browser::new();
    sign_in_at(&server, &bob, "/account", BOB, BOB_PASSWORD).await;
    let tokens = server
        .code_flow(&bob, RP, "openid offline_access", BOB, BOB_PASSWORD)
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    assert!(!signed_out(&server, &bob).await);

    let (alice, page) = alice_admin(&server).await;
    let answer = act(&server, &alice, BOB, "disable", Some(&csrf(&page))).await;
    assert_done(&server, &answer, "disabled");
    assert!(user(&server, BOB).await.disabled);

    assert!(
        signed_out(&server, &bob).await,
        "bob's browser is signed out"
    );
    let refreshed = server.refresh(RP, &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    // Nor can bob sign in again.
    let landing = bob.get(&server.url("/account")).await;
    let refused = bob.submit_login(&landing, BOB, BOB_PASSWORD).await;
    assert_ne!(refused.status, 303, "a disabled user cannot sign in");

    let page = admin_page(&server, &alice, "?done=disabled").await;
    assert!(page.text.contains("The user was disabled"), "{}", page.text);
    let entry_bob = entry(&page, BOB).unwrap();
    assert!(
        entry_bob.contains("class=\"disabled-status\">yes<"),
        "{entry_bob}"
    );
    assert!(entry_bob.contains("/enable\""));

    // Enabled again, bob signs in.
    let answer = act(&server, &alice, BOB, "enable", Some(&csrf(&page))).await;
    assert_done(&server, &answer, "enabled");
    assert!(!user(&server, BOB).await.disabled);
    let again = Browser::new();
    sign_in_at(&server, &again, "/account", BOB, BOB_PASSWORD).await;
    assert!(!signed_out(&server, &again).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_disabled() {
    let server = TestServer::start("").await;
    let (alice, page) = alice_admin(&server).await;
    let refused = act(&server, &alice, ALICE, "disable", Some(&csrf(&page))).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("last enabled member of the admin group"),
        "{}",
        refused.text
    );
    assert!(!user(&server, ALICE).await.disabled);
    assert!(!signed_out(&server, &alice).await, "alice stays signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_can_be_unlocked() {
    let server = TestServer::start(LOCKOUT).await;
    server.clock.freeze();
    let (alice, _) = alice_admin(&server).await;
    let bob = Browser::new();
    for _ in 0..3 {
        let landing = bob.get(&server.url("/account")).await;
        let wrong = bob.submit_login(&landing, BOB, "wrong-password").await;
        assert_ne!(wrong.status, 303);
    }
    let landing = bob.get(&server.url("/account")).await;
    let locked = bob.submit_login(&landing, BOB, BOB_PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.text);

    let page = admin_page(&server, &alice, "").await;
    let entry_bob = entry(&page, BOB).unwrap();
    assert!(entry_bob.contains(">locked<"), "{entry_bob}");
    assert!(entry_bob.contains("/unlock\""));
    let entry_alice = entry(&page, ALICE).unwrap();
    assert!(!entry_alice.contains("/unlock\""), "{entry_alice}");
    let answer = act(&server, &alice, BOB, "unlock", Some(&csrf(&page))).await;
    assert_done(&server, &answer, "unlocked");
    let page = admin_page(&server, &alice, "").await;
    assert!(!entry(&page, BOB).unwrap().contains(">locked<"));

    let landing = bob.get(&server.url("/account")).await;
    let done = bob.submit_login(&landing, BOB, BOB_PASSWORD).await;
    assert_eq!(done.status, 303, "bob signs in at once: {}", done.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_refuses_no_token_or_another_browsers_token() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let (_, other_page) = alice_admin(&server).await;
    let theirs = csrf(&other_page);
    for action in ["disable", "enable", "unlock", "reset-2fa"] {
        let none = act(&server, &alice, BOB, action, None).await;
        assert_eq!(none.status, 403, "{action} without a token: {}", none.text);
        assert!(none.text.contains("could not be verified"), "{}", none.text);
        let other = act(&server, &alice, BOB, action, Some(&theirs)).await;
        assert_eq!(other.status, 403, "{action} with another browser's token");
    }
    assert!(!user(&server, BOB).await.disabled, "nothing changed");
    // Not signed in at all: refused too.
    let stranger = Browser::new();
    let refused = act(&server, &stranger, BOB, "disable", Some(&theirs)).await;
    assert_eq!(refused.status, 403);
    assert!(!user(&server, BOB).await.disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_the_second_factor_removes_it_and_signs_the_user_out() {
    let server = TestServer::start("").await;
    let bob = Browser::new();
    sign_in_at(&server, &bob, "/account", BOB, BOB_PASSWORD).await;
    let id = user(&server, BOB).await.id;
    let secret = doorman::accounts::totp::new_secret();
    let sealed = server.state.secret_box.seal(&secret).unwrap();
    server
        .state
        .store
        .enable_totp(&id, &sealed, &[], server.now())
        .await
        .unwrap();
    let (alice, page) = alice_admin(&server).await;
    let entry_bob = entry(&page, BOB).unwrap();
    assert!(
        entry_bob.contains("class=\"second-factor\">yes<"),
        "{entry_bob}"
    );
    let answer = act(&server, &alice, BOB, "reset-2fa", Some(&csrf(&page))).await;
    assert_done(&server, &answer, "second-factor");
    assert!(server.state.store.get_totp(&id).await.unwrap().is_none());
    assert!(
        signed_out(&server, &bob).await,
        "bob's browser is signed out"
    );
    let page = admin_page(&server, &alice, "").await;
    assert!(entry(&page, BOB)
        .unwrap()
        .contains("class=\"second-factor\">no<"));
    assert!(!entry(&page, BOB).unwrap().contains("/reset-2fa\""));
}
