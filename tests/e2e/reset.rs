//! Password-reset links over HTTP (`/reset/{token}`), as issue 11 describes them: single use
//! (of two racing browsers exactly one sets the password), 24 hours, the password policy, CSRF
//! bound to this browser, a disabled account's link refused, and the second factor never
//! bypassed (no code or a wrong one refused and counted; a right TOTP code or a recovery code
//! works). Afterwards the user's old session and refresh token are dead, the new password
//! signs in and the old one does not.

use doorman::accounts::links;
use doorman::store::User;

use crate::common::authenticator::totp_at;
use crate::common::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn user(server: &TestServer, name: &str) -> User {
    server
        .state
        .store
        .find_user_by_username(name)
        .await
        .unwrap()
        .unwrap()
}

/// A reset link for `name`, as /admin makes it; returns its token.
async fn reset_link(server: &TestServer, name: &str) -> String {
    let u = user(server, name).await;
    let (token, _) = links::create_reset(&*server.state.store, &u.id, "admin", None, server.now())
        .await
        .unwrap();
    token
}

/// The reset form of `page`: its action and CSRF token.
fn reset_form(page: &Page) -> (String, String) {
    assert_eq!(page.status, 200, "no reset form:\n{}", page.text);
    let action = form_action(&page.text).expect("a form");
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    (action, csrf)
}

async fn post_reset(b: &Browser, action: &str, csrf: &str, pw: &str, code: Option<&str>) -> Page {
    let mut fields = vec![("csrf", csrf), ("password", pw), ("password_confirm", pw)];
    if let Some(c) = code {
        fields.push(("code", c));
    }
    b.post_form(action, &fields).await
}

/// Opens the link in `b` and submits its form.
async fn reset(
    server: &TestServer,
    b: &Browser,
    token: &str,
    pw: &str,
    code: Option<&str>,
) -> Page {
    let page = b.get(&server.url(&format!("/reset/{token}"))).await;
    let (action, csrf) = reset_form(&page);
    post_reset(b, &action, &csrf, pw, code).await
}

fn assert_changed(page: &Page) {
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("Your password was changed"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Sign in</a>"), "{}", page.text);
}

fn assert_gone(page: &Page) {
    assert_eq!(page.status, 410, "{}", page.text);
    assert!(
        page.text.contains("This link can no longer be used"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Ask for a new one"), "{}", page.text);
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

/// Signs a fresh browser in with the landing page of /account; the status of the answer.
async fn sign_in_status(server: &TestServer, name: &str, pw: &str) -> u16 {
    let b = Browser::new();
    let landing = b.get(&server.url("/account")).await;
    b.submit_login(&landing, name, pw).await.status
}

async fn signed_out(server: &TestServer, b: &Browser) -> bool {
    let page = b.get(&server.url("/account")).await;
    page.status == 200 && page.login_form().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_the_old_sign_ins_and_the_new_password_signs_in() {
    let server = TestServer::start("").await;
    let old = Browser::new();
    let tokens = server
        .code_flow(&old, "rp", "openid offline_access", BOB, BOB_PASSWORD)
        .await;
    let refresh = tokens.refresh_token.clone().expect("a refresh token");
    assert!(!signed_out(&server, &old).await);

    let token = reset_link(&server, BOB).await;
    let b = Browser::new();
    let page = b.get(&server.url(&format!("/reset/{token}"))).await;
    assert!(page.text.contains("Choose a new password"), "{}", page.text);
    assert!(
        !page.text.contains("name=\"code\""),
        "bob has no second factor"
    );
    let (action, csrf) = reset_form(&page);
    let done = post_reset(&b, &action, &csrf, NEW_PASSWORD, None).await;
    assert_changed(&done);
    assert!(!done.sets_cookie("doorman_session"), "not signed in");
    assert!(signed_out(&server, &b).await, "the reset does not sign in");

    // Single use: the same form again, and the link itself, are gone.
    assert_gone(&post_reset(&b, &action, &csrf, "yet another passphrase", None).await);
    assert_gone(&b.get(&server.url(&format!("/reset/{token}"))).await);

    assert!(signed_out(&server, &old).await, "the old session ended");
    let refreshed = server.refresh("rp", &refresh).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.oauth_error(), "invalid_grant");
    assert_eq!(sign_in_status(&server, BOB, BOB_PASSWORD).await, 401);
    assert_eq!(sign_in_status(&server, BOB, NEW_PASSWORD).await, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_browsers_racing_with_one_link_one_wins() {
    let server = TestServer::start("").await;
    let token = reset_link(&server, BOB).await;
    let (b1, b2) = (Browser::new(), Browser::new());
    let url = server.url(&format!("/reset/{token}"));
    let (a1, c1) = reset_form(&b1.get(&url).await);
    let (a2, c2) = reset_form(&b2.get(&url).await);
    let (p1, p2) = tokio::join!(
        post_reset(&b1, &a1, &c1, "first racer's passphrase", None),
        post_reset(&b2, &a2, &c2, "second racer's passphrase", None)
    );
    let mut statuses = [p1.status, p2.status];
    statuses.sort();
    assert_eq!(statuses, [200, 410], "{}\n{}", p1.text, p2.text);
    let winner = if p1.status == 200 {
        "first racer's passphrase"
    } else {
        "second racer's passphrase"
    };
    let loser = if p1.status == 200 {
        "second racer's passphrase"
    } else {
        "first racer's passphrase"
    };
    assert_eq!(sign_in_status(&server, BOB, winner).await, 303);
    assert_eq!(sign_in_status(&server, BOB, loser).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_expires_after_a_day_and_a_disabled_accounts_link_is_refused() {
    let server = TestServer::start("").await;
    let token = reset_link(&server, BOB).await;
    let b = Browser::new();
    let url = server.url(&format!("/reset/{token}"));
    let (action, csrf) = reset_form(&b.get(&url).await);
    server.clock.advance(24 * 3600 + 1);
    assert_gone(&b.get(&url).await);
    assert_gone(&post_reset(&b, &action, &csrf, NEW_PASSWORD, None).await);

    let token = reset_link(&server, BOB).await;
    let url = server.url(&format!("/reset/{token}"));
    let (action, csrf) = reset_form(&b.get(&url).await);
    doorman::accounts::users::set_disabled(&*server.state.store, BOB, true, server.now())
        .await
        .unwrap();
    assert_gone(&b.get(&url).await);
    assert_gone(&post_reset(&b, &action, &csrf, NEW_PASSWORD, None).await);
    // Unknown and malformed links read the same.
    assert_gone(
        &b.get(&server.url(&format!("/reset/{}", "A".repeat(43))))
            .await,
    );
    assert_gone(&b.get(&server.url("/reset/short")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_and_the_confirmation_are_enforced_and_csrf_is_bound_to_the_browser() {
    let server = TestServer::start("").await;
    let token = reset_link(&server, ALICE).await;
    let b = Browser::new();
    let url = server.url(&format!("/reset/{token}"));
    let (action, csrf) = reset_form(&b.get(&url).await);
    for (pw, why) in [
        ("short", "at least"),
        ("password123", "most common"),
        (ALICE_EMAIL, "username or email"),
        ("ALICE@EXAMPLE.COM", "username or email"),
    ] {
        let page = post_reset(&b, &action, &csrf, pw, None).await;
        assert_eq!(page.status, 400, "{pw}: {}", page.text);
        assert!(alert(&page).contains(why), "{pw}: {}", alert(&page));
    }
    let differ = b
        .post_form(
            &action,
            &[
                ("csrf", csrf.as_str()),
                ("password", NEW_PASSWORD),
                ("password_confirm", "something else entirely"),
            ],
        )
        .await;
    assert_eq!(differ.status, 400);
    assert!(alert(&differ).contains("differ"));

    // Another browser with this browser's form token, and a made-up token: refused.
    let other = Browser::new();
    other.get(&url).await.assert_status(200);
    let forged = post_reset(&other, &action, &csrf, NEW_PASSWORD, None).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let forged = post_reset(&b, &action, "made-up", NEW_PASSWORD, None).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    // Nothing was used up by the refusals.
    assert_changed(&post_reset(&b, &action, &csrf, NEW_PASSWORD, None).await);
    assert_eq!(sign_in_status(&server, ALICE, NEW_PASSWORD).await, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_never_bypasses_the_second_factor() {
    let server = TestServer::start("").await;
    server.clock.freeze();
    let bob = user(&server, BOB).await;
    let secret: Vec<u8> = (1..=20).collect();
    let now = server.now();
    let recovery = doorman::signin::second_factor::enrol(
        &*server.state.store,
        &server.state.secret_box,
        &bob.id,
        &secret,
        &totp_at(&secret, now),
        now,
    )
    .await
    .unwrap()
    .expect("enrolled");

    let token = reset_link(&server, BOB).await;
    let b = Browser::new();
    let url = server.url(&format!("/reset/{token}"));
    let page = b.get(&url).await;
    assert!(page.text.contains("name=\"code\""), "{}", page.text);
    assert!(page.text.contains("recovery code"), "{}", page.text);
    let (action, csrf) = reset_form(&page);

    let none = post_reset(&b, &action, &csrf, NEW_PASSWORD, None).await;
    assert_eq!(none.status, 400, "{}", none.text);
    let wrong_code = if totp_at(&secret, now + 30) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let wrong = post_reset(&b, &action, &csrf, NEW_PASSWORD, Some(wrong_code)).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(alert(&wrong).contains("not right"));
    // The wrong code counted in the lockout, like a sign-in's.
    let counted = server.state.store.clear_lockouts(&bob.id).await.unwrap();
    assert!(counted > 0, "the wrong code was counted");
    assert_eq!(sign_in_status(&server, BOB, NEW_PASSWORD).await, 401);

    // A right code (the next step: the enrolment used this one) works.
    let done = post_reset(
        &b,
        &action,
        &csrf,
        NEW_PASSWORD,
        Some(&totp_at(&secret, now + 30)),
    )
    .await;
    assert_changed(&done);

    // A recovery code works too.
    let token = reset_link(&server, BOB).await;
    let done = reset(
        &server,
        &b,
        &token,
        "the recovered passphrase",
        recovery.first().map(String::as_str),
    )
    .await;
    assert_changed(&done);
    // The password alone now leads to the code step, not into the account.
    let fresh = Browser::new();
    let landing = fresh.get(&server.url("/account")).await;
    let next = fresh
        .submit_login(&landing, BOB, "the recovered passphrase")
        .await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert!(next.text.contains("name=\"code\""), "{}", next.text);
}

/// Review: a reset ends every other reset link of the account. Forgot-password hands out up
/// to three links an hour (and an admin can make more); once one has set a new password, an
/// older one (in a mailbox that may be why the password was reset) must not set another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_the_accounts_other_reset_links() {
    let server = TestServer::start("").await;
    let older = reset_link(&server, BOB).await;
    let used = reset_link(&server, BOB).await;
    let alices = reset_link(&server, ALICE).await;
    let b = Browser::new();
    assert_changed(&reset(&server, &b, &used, NEW_PASSWORD, None).await);
    assert_gone(&b.get(&server.url(&format!("/reset/{older}"))).await);
    assert_eq!(sign_in_status(&server, BOB, NEW_PASSWORD).await, 303);
    // Another account's link is not touched.
    let page = b.get(&server.url(&format!("/reset/{alices}"))).await;
    assert_eq!(page.status, 200, "{}", page.text);
}

/// Attack: a parallel burst of guessed codes on a reset page is held to the account's code
/// lockout (reserved before each check), and then even the right code is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_of_guessed_codes_is_held_to_the_lockout() {
    let server = TestServer::start(
        "[login]\nmax_failures_per_account = 3\nlockout_base = \"30s\"\nlockout_max = \"2m\"\n",
    )
    .await;
    server.clock.freeze();
    let bob = user(&server, BOB).await;
    let secret: Vec<u8> = (1..=20).collect();
    let now = server.now();
    doorman::signin::second_factor::enrol(
        &*server.state.store,
        &server.state.secret_box,
        &bob.id,
        &secret,
        &totp_at(&secret, now),
        now,
    )
    .await
    .unwrap()
    .expect("enrolled");
    let token = reset_link(&server, BOB).await;
    let b = Browser::new();
    let page = b.get(&server.url(&format!("/reset/{token}"))).await;
    let (action, csrf) = reset_form(&page);
    let valid: Vec<String> = (-1..=1).map(|s| totp_at(&secret, now + 30 * s)).collect();
    let guesses: Vec<String> = (0..40u32)
        .map(|i| format!("{:06}", 100_000 + i * 7_919))
        .filter(|g| !valid.contains(g))
        .take(20)
        .collect();
    let burst: Vec<_> = guesses
        .into_iter()
        .map(|g| {
            let (b, action, csrf) = (b.clone(), action.clone(), csrf.clone());
            tokio::spawn(async move {
                post_reset(&b, &action, &csrf, NEW_PASSWORD, Some(&g))
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in burst {
        statuses.push(h.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 3,
        "at most the lockout's 3 guesses were checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429)),
        "{statuses:?}"
    );
    // Locked: the right code is not even looked at, and the link is still unused.
    let right = post_reset(
        &b,
        &action,
        &csrf,
        NEW_PASSWORD,
        Some(&totp_at(&secret, now + 30)),
    )
    .await;
    assert_eq!(right.status, 429, "{}", right.text);
    let after = user(&server, BOB).await;
    assert_eq!(
        after.password_hash, bob.password_hash,
        "the password did not change"
    );
}
