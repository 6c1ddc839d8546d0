//! The /admin pages over HTTP: only members of `[accounts] admin_groups` (sign in first; a
//! 403 page for anyone else, on every page and form), the navigation and CSP on every page,
//! the Users search, disabling (the user's open session and refresh tokens stop at once) and
//! enabling, unlocking a locked account, resetting the second factor; each user's page (name
//! and groups, email verified, a reset link shown once, delete after typing the username, the
//! name kept from later invitees and Plex sign-ups); the last admin who cannot be disabled,
//! demoted or deleted; Invites (create with the link shown once, list, revoke); Sessions
//! (revoking another user's ends their browser and refresh token); Clients (never a secret);
//! and CSRF on every form.

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

// ---- the rest of /admin: the user page, Invites, Sessions, Clients ----

/// The pages of /admin for a user id (for the navigation, CSP and 403 checks).
fn pages(bob_id: &str) -> Vec<String> {
    vec![
        ADMIN.to_string(),
        format!("{ADMIN}/users/{bob_id}"),
        format!("{ADMIN}/users/{bob_id}/delete"),
        format!("{ADMIN}/invites"),
        format!("{ADMIN}/sessions"),
        format!("{ADMIN}/clients"),
    ]
}

/// Every new form POST: its path and its fields besides `csrf`.
fn new_actions(bob_id: &str) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            format!("{ADMIN}/users/{bob_id}/profile"),
            vec![("name", "Robert"), ("groups", "family")],
        ),
        (format!("{ADMIN}/users/{bob_id}/verify-email"), vec![]),
        (format!("{ADMIN}/users/{bob_id}/reset-link"), vec![]),
        (
            format!("{ADMIN}/users/{bob_id}/delete"),
            vec![("confirm", "bob")],
        ),
        (
            format!("{ADMIN}/invites"),
            vec![("groups", "family"), ("uses", "1")],
        ),
        (format!("{ADMIN}/invites/0123456789/revoke"), vec![]),
        (format!("{ADMIN}/sessions/revoke"), vec![("sid", "x")]),
    ]
}

/// POSTs `fields` to `path` with `token` as the CSRF field (none when None).
async fn post(
    server: &TestServer,
    browser: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    token: Option<&str>,
) -> Page {
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    if let Some(t) = token {
        all.push(("csrf", t));
    }
    browser.post_form(&server.url(path), &all).await
}

/// The admin page at `path` for a signed-in admin browser.
async fn get_page(server: &TestServer, browser: &Browser, path: &str) -> Page {
    let page = browser.get(&server.url(path)).await;
    page.assert_status(200);
    page
}

/// The one-time link on a page (`class="one-time-link"`), unescaped.
fn one_time_link(page: &Page) -> Option<String> {
    let marker = "class=\"one-time-link\">";
    let at = page.text.find(marker)? + marker.len();
    let len = page.text[at..].find('<')?;
    Some(html_unescape(&page.text[at..at + len]))
}

/// A page that shows a link once: never cached, never framed.
fn assert_no_store(page: &Page) {
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

/// Redeems the invite `token` in a new browser as `username`; the answer.
async fn redeem_invite(server: &TestServer, token: &str, username: &str) -> Page {
    let b = Browser::new();
    let page = b.get(&server.url(&format!("/invite/{token}"))).await;
    page.assert_status(200);
    let action = form_action(&page.text).expect("an invite form");
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    let password = "a long enough passphrase";
    b.post_form(
        &action,
        &[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
            ("password_confirm", password),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_page_has_the_navigation_and_is_never_framed() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let bob_id = user(&server, BOB).await.id;
    for path in pages(&bob_id) {
        let page = get_page(&server, &alice, &path).await;
        let text = html_unescape(&page.text);
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        for (href, label) in [
            ("/admin\"", "Users"),
            ("/admin/invites\"", "Invites"),
            ("/admin/sessions\"", "Sessions"),
            ("/admin/clients\"", "Clients"),
        ] {
            let link = format!("{}{href}", server.url(""));
            assert!(
                text.contains(&link) && text.contains(&format!(">{label}</a>")),
                "{path}: no {label} link:\n{text}"
            );
        }
    }
    // Signed out, each page asks to sign in first and then comes back.
    for path in pages(&bob_id).into_iter().skip(1) {
        let b = Browser::new();
        sign_in_at(&server, &b, &path, ALICE, ALICE_PASSWORD).await;
    }
    // The Users list links each user's page and "Invite someone".
    let list = admin_page(&server, &alice, "").await;
    assert!(html_unescape(entry(&list, BOB).unwrap()).contains(&format!("/admin/users/{bob_id}\"")));
    assert!(list.text.contains("Invite someone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_gets_403_on_every_new_page_and_action() {
    let server = TestServer::start("").await;
    let (_, admin) = alice_admin(&server).await;
    let token = csrf(&admin);
    let bob = Browser::new();
    sign_in_at(&server, &bob, "/account", BOB, BOB_PASSWORD).await;
    let bob_id = user(&server, BOB).await.id;
    for path in pages(&bob_id) {
        let page = bob.get(&server.url(&path)).await;
        assert_eq!(page.status, 403, "{path}: {}", page.text);
        assert!(page.text.contains("This page is for administrators"));
    }
    for (path, fields) in new_actions(&bob_id) {
        let page = post(&server, &bob, &path, &fields, Some(&token)).await;
        assert_eq!(page.status, 403, "{path}: {}", page.text);
        assert!(page.text.contains("This page is for administrators"));
    }
    let after = user(&server, BOB).await;
    assert!(
        after.groups.is_empty() && after.name.is_none(),
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_action_refuses_no_token_or_another_browsers_token() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let (_, other_page) = alice_admin(&server).await;
    let theirs = csrf(&other_page);
    let bob_id = user(&server, BOB).await.id;
    for (path, fields) in new_actions(&bob_id) {
        let none = post(&server, &alice, &path, &fields, None).await;
        assert_eq!(none.status, 403, "{path} without a token: {}", none.text);
        assert!(none.text.contains("could not be verified"), "{}", none.text);
        let other = post(&server, &alice, &path, &fields, Some(&theirs)).await;
        assert_eq!(other.status, 403, "{path} with another browser's token");
        assert!(other.text.contains("could not be verified"));
    }
    let after = user(&server, BOB).await;
    assert!(
        after.groups.is_empty() && after.name.is_none(),
        "nothing changed"
    );
    assert!(server
        .state
        .store
        .list_links(doorman::store::LinkKind::Invite, server.now())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_page_shows_the_details_and_edits_name_and_groups() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let alice_id = user(&server, ALICE).await.id;
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{alice_id}")).await;
    for fact in [
        "class=\"username\">alice<",
        "alice@example.com <span class=\"email-status\">(verified: yes)",
        "class=\"groups\">admins<",
        "class=\"kind\">local password<",
        "class=\"plex\">none<",
        "class=\"second-factor\">no<",
        "class=\"locked-status\">no<",
        "class=\"disabled-status\">no<",
        "class=\"created\">",
    ] {
        assert!(page.text.contains(fact), "{fact}:\n{}", page.text);
    }
    assert!(!page.text.contains("class=\"last-sign-in\">never<"));

    let bob_id = user(&server, BOB).await.id;
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    assert!(page.text.contains("class=\"last-sign-in\">never<"));
    let path = format!("{ADMIN}/users/{bob_id}/profile");
    let fields = [
        ("name", "Bob Builder"),
        ("groups", "family, friends  family"),
    ];
    let answer = post(&server, &alice, &path, &fields, Some(&csrf(&page))).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(
        answer.redirect().as_str(),
        server.url(&format!("{ADMIN}/users/{bob_id}?done=profile"))
    );
    let bob = user(&server, BOB).await;
    assert_eq!(bob.name.as_deref(), Some("Bob Builder"));
    assert_eq!(bob.groups, ["family", "friends"]);
    let page = get_page(
        &server,
        &alice,
        &format!("{ADMIN}/users/{bob_id}?done=profile"),
    )
    .await;
    assert!(page.text.contains("The name and groups were saved."));
    assert!(page.text.contains("class=\"groups\">family, friends<"));
    assert!(page.text.contains("value=\"Bob Builder\""));

    // A bad group name is refused with the reason, and nothing changes.
    let long = "g".repeat(65);
    let fields = [("name", ""), ("groups", long.as_str())];
    let refused = post(&server, &alice, &path, &fields, Some(&csrf(&page))).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("invalid group name"),
        "{}",
        refused.text
    );
    assert_eq!(user(&server, BOB).await.groups, ["family", "friends"]);
    let long = "n".repeat(201);
    let fields = [("name", long.as_str()), ("groups", "x")];
    let refused = post(&server, &alice, &path, &fields, Some(&csrf(&page))).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("The name is too long"),
        "{}",
        refused.text
    );
    let bob = user(&server, BOB).await;
    assert_eq!(bob.name.as_deref(), Some("Bob Builder"));
    assert_eq!(bob.groups, ["family", "friends"]);

    // The buttons moved here work from here and come back here.
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    let disable = format!("{ADMIN}/users/{bob_id}/disable");
    let answer = post(
        &server,
        &alice,
        &disable,
        &[("from", "user")],
        Some(&csrf(&page)),
    )
    .await;
    assert_eq!(
        answer.redirect().as_str(),
        server.url(&format!("{ADMIN}/users/{bob_id}?done=disabled"))
    );
    assert!(user(&server, BOB).await.disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_demoted_or_deleted() {
    let server = TestServer::start("").await;
    let (alice, page) = alice_admin(&server).await;
    let alice_id = user(&server, ALICE).await.id;
    let profile = format!("{ADMIN}/users/{alice_id}/profile");
    for groups in ["family", ""] {
        let fields = [("name", "Alice"), ("groups", groups)];
        let refused = post(&server, &alice, &profile, &fields, Some(&csrf(&page))).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert!(
            refused.text.contains(
                "last enabled member of the admin group &quot;admins&quot;: taking it out of that group would leave no one"
            ),
            "{}",
            refused.text
        );
    }
    let after = user(&server, ALICE).await;
    assert_eq!(after.groups, ["admins"]);
    assert_eq!(
        after.name.as_deref(),
        Some("Alice Liddell"),
        "nothing written"
    );

    let delete = format!("{ADMIN}/users/{alice_id}/delete");
    let fields = [("confirm", ALICE)];
    let refused = post(&server, &alice, &delete, &fields, Some(&csrf(&page))).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.text.contains("deleting it would leave no one"),
        "{}",
        refused.text
    );
    assert!(server
        .state
        .store
        .get_user(&alice_id)
        .await
        .unwrap()
        .is_some());
    assert!(!signed_out(&server, &alice).await);
    // Disabling from her own page: refused there, on that page.
    let disable = format!("{ADMIN}/users/{alice_id}/disable");
    let fields = [("from", "user")];
    let refused = post(&server, &alice, &disable, &fields, Some(&csrf(&page))).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("disabling it would leave no one"));
    assert!(refused.text.contains("Name and groups"), "the user page");
    assert!(!user(&server, ALICE).await.disabled);

    // With a second admin, alice may be demoted.
    let bob_id = user(&server, BOB).await.id;
    let bob_profile = format!("{ADMIN}/users/{bob_id}/profile");
    let fields = [("name", ""), ("groups", "admins")];
    let made = post(&server, &alice, &bob_profile, &fields, Some(&csrf(&page))).await;
    assert_eq!(made.status, 303, "{}", made.text);
    let fields = [("name", "Alice"), ("groups", "family")];
    let demoted = post(&server, &alice, &profile, &fields, Some(&csrf(&page))).await;
    assert_eq!(demoted.status, 303, "{}", demoted.text);
    assert_eq!(user(&server, ALICE).await.groups, ["family"]);
    // Not an admin any more: the page is closed to her.
    let closed = alice.get(&server.url(ADMIN)).await;
    assert_eq!(closed.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_marks_an_email_verified() {
    let server = TestServer::start("").await;
    let (alice, page) = alice_admin(&server).await;
    let bob_id = user(&server, BOB).await.id;
    let path = format!("{ADMIN}/users/{bob_id}/verify-email");
    let refused = post(&server, &alice, &path, &[], Some(&csrf(&page))).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("no email address"));
    server
        .state
        .store
        .set_user_name_and_email(&bob_id, None, Some("bob@home.test"), false, server.now())
        .await
        .unwrap();
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    assert!(page.text.contains("(verified: no)"), "{}", page.text);
    assert!(page.text.contains("/verify-email\""));
    let shown = input_value(&page.text, "email").expect("the address shown");
    let answer = post(
        &server,
        &alice,
        &path,
        &[("email", &shown)],
        Some(&csrf(&page)),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(
        answer.redirect().as_str(),
        server.url(&format!("{ADMIN}/users/{bob_id}?done=email-verified"))
    );
    assert!(user(&server, BOB).await.email_verified);
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    assert!(page.text.contains("(verified: yes)"));
    assert!(!page.text.contains("/verify-email\""), "no button any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_is_shown_once_on_the_answer_and_never_in_a_url() {
    let server = TestServer::start("").await;
    let (alice, page) = alice_admin(&server).await;
    let bob_id = user(&server, BOB).await.id;
    let path = format!("{ADMIN}/users/{bob_id}/reset-link");
    let answer = post(&server, &alice, &path, &[], Some(&csrf(&page))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_no_store(&answer);
    assert!(answer.header("location").is_none());
    let link = one_time_link(&answer).expect("the link on the page");
    let prefix = server.url("/reset/");
    assert!(link.starts_with(&prefix), "{link}");
    let token = &link[prefix.len()..];
    assert_eq!(token.len(), 43, "{token}");
    assert!(answer.url.as_str().find(token).is_none());
    let stored = server
        .state
        .store
        .find_link(&doorman::accounts::links::token_hash(token), server.now())
        .await
        .unwrap()
        .expect("the link is stored (hashed)");
    assert_eq!(stored.kind, doorman::store::LinkKind::Reset);
    assert_eq!(stored.user_id.as_deref(), Some(bob_id.as_str()));
    assert_eq!(stored.created_by, ALICE);
    assert_eq!(stored.uses_left, 1);
    assert_eq!(stored.expires_at, server.now() + 86_400);
    // Shown once: the user page does not show it again.
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    assert!(!page.text.contains(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_needs_the_username_ends_everything_and_the_name_stays_reserved() {
    let server = TestServer::start("").await;
    let bob = Browser::new();
    sign_in_at(&server, &bob, "/account", BOB, BOB_PASSWORD).await;
    let tokens = server
        .code_flow(&bob, RP, "openid offline_access", BOB, BOB_PASSWORD)
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    let bob_id = user(&server, BOB).await.id;

    let (alice, _) = alice_admin(&server).await;
    let path = format!("{ADMIN}/users/{bob_id}/delete");
    let confirm = get_page(&server, &alice, &path).await;
    assert!(confirm.text.contains("Type the username to confirm"));
    assert!(confirm.text.contains("name=\"confirm\""));
    for typed in ["", "Bob", "yes", "bo"] {
        let fields = [("confirm", typed)];
        let refused = post(&server, &alice, &path, &fields, Some(&csrf(&confirm))).await;
        assert_eq!(refused.status, 400, "{typed:?}: {}", refused.text);
        assert!(
            refused
                .text
                .contains("Nothing was deleted: type the username &quot;bob&quot; exactly"),
            "{}",
            refused.text
        );
    }
    assert!(!signed_out(&server, &bob).await, "bob is still there");

    let fields = [("confirm", BOB)];
    let answer = post(&server, &alice, &path, &fields, Some(&csrf(&confirm))).await;
    assert_done(&server, &answer, "deleted");
    assert!(server
        .state
        .store
        .find_user_by_username(BOB)
        .await
        .unwrap()
        .is_none());
    assert!(
        signed_out(&server, &bob).await,
        "bob's browser is signed out"
    );
    let refreshed = server.refresh(RP, &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    let page = admin_page(&server, &alice, "?done=deleted").await;
    assert!(page.text.contains("The user was deleted"));
    assert!(entry(&page, BOB).is_none());

    // An invitee cannot take the name, in any case.
    let (token, _) = doorman::accounts::links::create_invite(
        &*server.state.store,
        doorman::accounts::links::NewInvite {
            uses: Some(3),
            created_by: "cli".into(),
            ..Default::default()
        },
        server.now(),
    )
    .await
    .unwrap();
    for name in ["bob", "BOB"] {
        let refused = redeem_invite(&server, &token, name).await;
        assert_eq!(refused.status, 400, "{name}: {}", refused.text);
        assert!(
            refused
                .text
                .contains("that username belonged to a deleted account and is not reused"),
            "{}",
            refused.text
        );
    }
    assert!(server
        .state
        .store
        .find_user_by_username(BOB)
        .await
        .unwrap()
        .is_none());
    // Another name is fine.
    let made = redeem_invite(&server, &token, "bobby").await;
    assert!(made.status == 200 || made.status == 303, "{}", made.text);
    assert!(server
        .state
        .store
        .find_user_by_username("bobby")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invites_page_creates_lists_and_revokes_invites() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let page = get_page(&server, &alice, &format!("{ADMIN}/invites")).await;
    assert!(page.text.contains("No live invites."));
    assert!(
        !page.text.contains("MAIL:"),
        "the mail spot is a template comment"
    );

    // The CLI's limits, with the reason.
    for (fields, reason) in [
        (vec![("uses", "0")], "an invite has 1 to 1000 uses"),
        (vec![("expires", "soon")], "Expires:"),
        (vec![("expires", "400d")], "at most 365 days"),
        (vec![("email", "not-an-email")], "invalid email"),
    ] {
        let refused = post(
            &server,
            &alice,
            &format!("{ADMIN}/invites"),
            &fields,
            Some(&csrf(&page)),
        )
        .await;
        assert_eq!(refused.status, 400, "{fields:?}: {}", refused.text);
        assert!(refused.text.contains(reason), "{reason}: {}", refused.text);
        assert!(one_time_link(&refused).is_none());
    }

    let fields = [
        ("groups", "family friends"),
        ("expires", "2d"),
        ("uses", "2"),
        ("email", ""),
        ("note", "for carol"),
    ];
    let made = post(
        &server,
        &alice,
        &format!("{ADMIN}/invites"),
        &fields,
        Some(&csrf(&page)),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text);
    assert_no_store(&made);
    let link = one_time_link(&made).expect("the link on the answer");
    let prefix = server.url("/invite/");
    assert!(link.starts_with(&prefix), "{link}");
    let token = link[prefix.len()..].to_string();
    let invites = server
        .state
        .store
        .list_links(doorman::store::LinkKind::Invite, server.now())
        .await
        .unwrap();
    assert_eq!(invites.len(), 1);
    let invite = &invites[0];
    assert_eq!(invite.groups, ["family", "friends"]);
    assert_eq!(invite.uses, 2);
    assert_eq!(invite.expires_at, server.now() + 2 * 86_400);
    assert_eq!(invite.created_by, ALICE);
    assert_eq!(
        invite.token_hash,
        doorman::accounts::links::token_hash(&token)
    );

    // Listed, never with its token.
    let list = get_page(&server, &alice, &format!("{ADMIN}/invites")).await;
    assert!(!list.text.contains(&token));
    assert!(list
        .text
        .contains(&format!("data-invite=\"{}\"", invite.id)));
    assert!(list.text.contains("for carol"));
    assert!(list.text.contains("family, friends"));
    assert!(list.text.contains("class=\"uses\">2 of 2<"));
    assert!(list.text.contains("class=\"created-by\">alice<"));

    // The link works; revoked, it no longer does.
    let form = Browser::new()
        .get(&server.url(&format!("/invite/{token}")))
        .await;
    form.assert_status(200);
    let revoke = format!("{ADMIN}/invites/{}/revoke", invite.id);
    let answer = post(&server, &alice, &revoke, &[], Some(&csrf(&list))).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(
        answer.redirect().as_str(),
        server.url(&format!("{ADMIN}/invites?done=invite-revoked"))
    );
    let list = get_page(
        &server,
        &alice,
        &format!("{ADMIN}/invites?done=invite-revoked"),
    )
    .await;
    assert!(list.text.contains("The invite was revoked"));
    assert!(list.text.contains("No live invites."));
    let gone = Browser::new()
        .get(&server.url(&format!("/invite/{token}")))
        .await;
    assert_ne!(gone.status, 200, "{}", gone.text);
    // Revoking again: no such invite.
    let again = post(&server, &alice, &revoke, &[], Some(&csrf(&list))).await;
    assert_eq!(again.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_another_users_session_signs_them_out_and_ends_their_refresh_token() {
    let server = TestServer::start("").await;
    let bob = Browser::new();
    sign_in_at(&server, &bob, "/account", BOB, BOB_PASSWORD).await;
    let tokens = server
        .code_flow(&bob, RP, "openid offline_access", BOB, BOB_PASSWORD)
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    let bob_cookie = bob
        .cookie(&server.url("/account"), "doorman_session")
        .expect("bob's session cookie");

    let (alice, _) = alice_admin(&server).await;
    let page = get_page(&server, &alice, &format!("{ADMIN}/sessions")).await;
    assert!(page.text.contains("data-session-user=\"alice\""));
    assert!(page.text.contains("this browser"));
    let marker = "data-session-user=\"bob\"";
    let at = page.text.find(marker).expect("bob's session listed");
    let bob_entry = &page.text[at..at + page.text[at..].find("</li>").unwrap()];
    assert!(
        bob_entry.contains("class=\"method\">password<"),
        "{bob_entry}"
    );
    assert!(bob_entry.contains("class=\"ip\">127.0.0.1<"), "{bob_entry}");
    // Never the session id or its hash.
    let hash = doorman::secrets::digest(&bob_cookie);
    assert!(!page.text.contains(&bob_cookie));
    assert!(!page.text.contains(&doorman::secrets::to_hex(&hash)));
    let sid = input_value(bob_entry, "sid").expect("a sid field");
    let bobs = server
        .state
        .store
        .get_session(&hash, server.now())
        .await
        .unwrap()
        .expect("bob's session");
    assert_eq!(sid, server.state.provider.sid_for(&bobs));

    let answer = post(
        &server,
        &alice,
        &format!("{ADMIN}/sessions/revoke"),
        &[("sid", sid.as_str())],
        Some(&csrf(&page)),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(
        answer.redirect().as_str(),
        server.url(&format!("{ADMIN}/sessions?done=session-revoked"))
    );
    assert!(
        signed_out(&server, &bob).await,
        "bob's browser is signed out"
    );
    let refreshed = server.refresh(RP, &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    assert!(!signed_out(&server, &alice).await, "alice stays signed in");
    let page = get_page(
        &server,
        &alice,
        &format!("{ADMIN}/sessions?done=session-revoked"),
    )
    .await;
    assert!(page.text.contains("The session was signed out"));
    assert!(!page.text.contains(marker));
    // Again: that session is gone.
    let again = post(
        &server,
        &alice,
        &format!("{ADMIN}/sessions/revoke"),
        &[("sid", sid.as_str())],
        Some(&csrf(&page)),
    )
    .await;
    assert_eq!(again.status, 404);
}

const APACHE_CLIENT: &str = "[[clients]]\nid = \"apache\"\nname = \"Wiki behind Apache\"\nsecret = \"apache-secret-0123456789\"\nredirect_uris = [\"https://wiki.example.test/redirect\"]\nrequire_second_factor = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_page_shows_the_clients_never_a_secret() {
    let server = TestServer::start(APACHE_CLIENT).await;
    let (alice, _) = alice_admin(&server).await;
    let page = get_page(&server, &alice, &format!("{ADMIN}/clients")).await;
    let client = |id: &str| -> String {
        let marker = format!("data-client=\"{id}\"");
        let at = page
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("{id} listed"));
        html_unescape(&page.text[at..at + page.text[at..].find("</li>").unwrap()])
    };
    let rp = client(RP);
    assert!(rp.contains("Relying Party"), "{rp}");
    assert!(rp.contains("http://127.0.0.1:1/cb"));
    assert!(rp.contains("class=\"allowed-groups\">everyone<"));
    assert!(rp.contains("class=\"second-factor\">not required<"));
    assert!(rp.contains("doorman integrate list"));
    assert!(client(ADMINS_ONLY).contains("class=\"allowed-groups\">admins<"));
    assert!(client(SPA).contains("public (no secret)"));
    let apache = client("apache");
    assert!(apache.contains("Wiki behind Apache"));
    assert!(apache.contains("class=\"second-factor\">required<"));
    assert!(apache.contains("doorman integrate apache --client apache"));
    let text = html_unescape(&page.text);
    for secret in [
        RP_SECRET,
        ADMINS_ONLY_SECRET,
        NC_SECRET,
        SPECIAL_SECRET,
        "apache-secret-0123456789",
    ] {
        assert!(!text.contains(secret), "{secret} on the page");
        let hash = doorman::secrets::to_hex(&doorman::secrets::digest(secret));
        assert!(!text.contains(&hash), "the hash of {secret} on the page");
    }
}

/// A Plex sign-up never takes the name of a deleted account either: doorman picks the next
/// free one, as for a taken name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plex_sign_up_never_takes_the_name_of_a_deleted_admin_page_user() {
    use crate::common::fake_plex::*;
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", "", "").await;
    let store = &*server.state.store;
    let new = doorman::accounts::NewUser {
        username: "alice".into(),
        ..Default::default()
    };
    doorman::accounts::users::create(store, new, server.now())
        .await
        .unwrap();
    doorman::accounts::users::delete(store, "alice", server.now())
        .await
        .unwrap();
    let browser = Browser::new();
    let landing =
        PlexLanding::open(&server, &browser, RP_CLIENT, "openid profile email groups").await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "alice-2", "{claims}");
}

/// Review: the last-admin rule holds when two admins demote (or disable) each other at the
/// same moment: each request sees the other admin still there, so without one check-and-write
/// at a time both succeed and no admin is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let server = TestServer::start("").await;
    let store = &server.state.store;
    let alice_id = user(&server, ALICE).await.id;
    let bob_id = user(&server, BOB).await.id;
    let admins = vec!["admins".to_string()];
    for round in 0..15 {
        for id in [&alice_id, &bob_id] {
            store
                .set_user_name_and_groups(id, None, &admins, server.now())
                .await
                .unwrap();
        }
        let (alice, page) = alice_admin(&server).await;
        let alice_csrf = csrf(&page);
        let bob = Browser::new();
        sign_in_at(&server, &bob, ADMIN, BOB, BOB_PASSWORD).await;
        let bob_csrf = csrf(&admin_page(&server, &bob, "").await);
        let demote_bob = format!("{ADMIN}/users/{bob_id}/profile");
        let demote_alice = format!("{ADMIN}/users/{alice_id}/profile");
        let (disable_bob, disable_alice) = (
            format!("{ADMIN}/users/{bob_id}/disable"),
            format!("{ADMIN}/users/{alice_id}/disable"),
        );
        let fields = [("name", ""), ("groups", "family")];
        let (a, b) = if round % 2 == 0 {
            tokio::join!(
                post(&server, &alice, &demote_bob, &fields, Some(&alice_csrf)),
                post(&server, &bob, &demote_alice, &fields, Some(&bob_csrf)),
            )
        } else {
            tokio::join!(
                post(&server, &alice, &disable_bob, &[], Some(&alice_csrf)),
                post(&server, &bob, &disable_alice, &[], Some(&bob_csrf)),
            )
        };
        let all = store.list_users().await.unwrap();
        let left = all
            .iter()
            .filter(|u| !u.disabled && u.groups.iter().any(|g| g == "admins"))
            .count();
        assert_eq!(
            left, 1,
            "round {round}: {} / {}: {left} enabled admins left",
            a.status, b.status
        );
        for id in [&alice_id, &bob_id] {
            let mut u = store.get_user(id).await.unwrap().unwrap();
            if u.disabled {
                u.disabled = false;
                store.update_user(&u).await.unwrap();
            }
        }
    }
}

/// Review: "Mark email verified" vouches for the address the admin saw on the page. With
/// `users_may_change_email`, the user can change it between the admin's page and the click;
/// the click must then verify nothing (else any address the user types, say one that a
/// forward-auth email rule lets in, comes out verified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_an_email_verified_vouches_only_for_the_address_shown() {
    let server = TestServer::start("").await;
    let (alice, _) = alice_admin(&server).await;
    let bob_id = user(&server, BOB).await.id;
    let store = &server.state.store;
    store
        .set_user_name_and_email(&bob_id, None, Some("bob@home.test"), false, server.now())
        .await
        .unwrap();
    let page = get_page(&server, &alice, &format!("{ADMIN}/users/{bob_id}")).await;
    let shown = input_value(&page.text, "email").expect("the address shown is in the form");
    assert_eq!(shown, "bob@home.test");
    // Bob changes his address on /account meanwhile.
    store
        .set_user_name_and_email(&bob_id, None, Some("boss@corp.test"), false, server.now())
        .await
        .unwrap();
    let path = format!("{ADMIN}/users/{bob_id}/verify-email");
    let fields = [("email", shown.as_str())];
    let answer = post(&server, &alice, &path, &fields, Some(&csrf(&page))).await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    let bob = user(&server, BOB).await;
    assert_eq!(bob.email.as_deref(), Some("boss@corp.test"));
    assert!(
        !bob.email_verified,
        "an address the admin never saw was verified"
    );
    // No address in the form: nothing to vouch for either.
    let answer = post(&server, &alice, &path, &[], Some(&csrf(&page))).await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert!(!user(&server, BOB).await.email_verified);
}
