//! Found by the security review of the second factor and lockout: each test asserts the
//! secure behaviour and failed on the reviewed code, showing the attack.

use doorman::accounts::lockout::{reserve_roles, succeed_roles, LockoutPolicy, Role};
use doorman::accounts::totp;
use doorman::store::LockoutCounter;
#[allow(unused_imports)]
use doorman::store::Store as _;

use crate::common::authenticator::base32_decode;
use crate::common::*;

/// The text of the first `<code class="CLASS">` element.
fn code_text(html: &str, class: &str) -> String {
    let marker = format!("<code class=\"{class}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in\n{html}"))
        + marker.len();
    let end = at + html[at..].find("</code>").unwrap();
    html_unescape(&html[at..end])
}

/// The codes of a recovery-codes page.
fn recovery_codes(html: &str) -> Vec<String> {
    let at = html.find("<div class=\"recovery-codes\">").unwrap();
    let end = at + html[at..].find("</div>").unwrap();
    html[at..end]
        .split("<code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").unwrap()].to_string())
        .collect()
}

/// Signs `browser` in at /login with a password only; the 303 must come at once.
async fn password_session(server: &TestServer, browser: &Browser, user: &str, pass: &str) {
    let page = browser.get(&server.url("/login")).await;
    page.assert_status(200);
    let done = browser.submit_login(&page, user, pass).await;
    assert_eq!(done.status, 303, "{}", done.text);
}

/// On an enrolment page: the current TOTP code of its secret, with the form's flow and csrf.
fn enrol_form(server: &TestServer, html: &str) -> (String, String, String) {
    let secret = base32_decode(&code_text(html, "totp-secret"));
    let code = totp::code_at(&secret, totp::step_at(server.now()));
    let form_at = html.find("/login/enrol").unwrap();
    let form = &html[form_at..];
    (
        input_value(form, "flow").unwrap(),
        input_value(form, "csrf").unwrap(),
        code,
    )
}

/// Finding 1: a password-only session that was already live when the user turned TOTP on
/// (on another browser) is not ended, and may make a new set of recovery codes without any
/// second factor. With the password, those codes then pass the second factor forever (and the
/// user's own codes stop working).
#[tokio::test]
async fn a_stale_password_only_session_cannot_mint_recovery_codes() {
    let server = TestServer::start("").await;
    // The thief knows alice's password and signs in while she has no second factor.
    let thief = Browser::new();
    password_session(&server, &thief, ALICE, ALICE_PASSWORD).await;

    // Alice turns TOTP on from her own browser.
    let alice = Browser::new();
    password_session(&server, &alice, ALICE, ALICE_PASSWORD).await;
    let enrol = alice.get(&server.url("/account/second-factor")).await;
    enrol.assert_status(200);
    let (flow, csrf, code) = enrol_form(&server, &enrol.text);
    let codes = alice
        .post_form(
            &server.url("/login/enrol"),
            &[("flow", &flow), ("csrf", &csrf), ("code", &code)],
        )
        .await;
    codes.assert_status(200);
    assert_eq!(recovery_codes(&codes.text).len(), 10);

    // The thief's password-only session still works and mints a fresh set.
    let status = thief.get(&server.url("/account/second-factor")).await;
    let minted = if status.status == 200 && status.text.contains("recovery-left") {
        let csrf = input_value(&status.text, "csrf").unwrap();
        let page = thief
            .post_form(
                &server.url("/account/second-factor/recovery-codes"),
                &[("csrf", &csrf)],
            )
            .await;
        (page.status == 200).then(|| recovery_codes(&page.text))
    } else {
        None
    };

    // Later, from a clean browser: password + a self-minted recovery code.
    if let Some(minted) = minted {
        let later = Browser::new();
        let req = server.auth_request(RP, "openid");
        let page = later.get(&req.url).await;
        let code_page = later.submit_login(&page, ALICE, ALICE_PASSWORD).await;
        code_page.assert_status(200);
        let done = later
            .post_form(
                &server.url("/login/code"),
                &[
                    ("flow", &input_value(&code_page.text, "flow").unwrap()),
                    ("csrf", &input_value(&code_page.text, "csrf").unwrap()),
                    ("code", &minted[0]),
                ],
            )
            .await;
        panic!(
            "a password-only session minted recovery codes after TOTP was turned on; \
             password + minted code at /login/code -> {} {:?}",
            done.status,
            done.header("location")
        );
    }
}

/// Finding 2: a sign-in flow whose password step was passed keeps that proof after the
/// password is changed (which is meant to end everything the old password gave). In
/// `required` mode the enrolment step then turns on the attacker's authenticator and signs
/// in with the old password.
#[tokio::test]
async fn a_password_change_voids_a_pending_enrolment() {
    let server = TestServer::start("[login]\nrequire_second_factor = \"required\"\n").await;
    let attacker = Browser::new();
    let page = attacker.get(&server.url("/login")).await;
    let enrol = attacker.submit_login(&page, BOB, BOB_PASSWORD).await;
    enrol.assert_status(200);
    assert!(enrol.text.contains("totp-secret"), "{}", enrol.text);

    // Bob's password leaked; the operator sets a new one (ends his sessions and grants).
    let params = doorman::accounts::password::owasp_params().unwrap();
    let hash = tokio::task::spawn_blocking(move || {
        doorman::accounts::password::hash_blocking(&params, "bob-new-password").unwrap()
    })
    .await
    .unwrap();
    doorman::accounts::users::set_password_hash(&*server.state.store, BOB, hash, server.now())
        .await
        .unwrap();
    server.clock.advance(60);

    let (flow, csrf, code) = enrol_form(&server, &enrol.text);
    let done = attacker
        .post_form(
            &server.url("/login/enrol"),
            &[("flow", &flow), ("csrf", &csrf), ("code", &code)],
        )
        .await;
    assert_ne!(
        done.status,
        200,
        "the old password still enrolled the attacker's app and signed in (session cookie: {})",
        done.sets_cookie("doorman_session")
    );
}

/// Finding 3: someone who knows the password guesses TOTP codes. The account's code counter
/// is never forgotten by the window (only a right code resets it), so however the guesses are
/// spread over addresses and time, few are admitted per day.
#[test]
fn totp_guesses_per_day_with_the_default_lockout_are_bounded() {
    const CODE: &[Role] = &[Role::Pair, Role::Account, Role::Known, Role::Codes];
    let p = LockoutPolicy::default();
    let ips = 5usize;
    let mut pairs = vec![LockoutCounter::default(); ips];
    let mut account = LockoutCounter::default();
    let mut codes = LockoutCounter::default();
    let known = LockoutCounter::default();
    let (mut admitted, mut now) = (0u64, 1_800_000_000i64);
    let end = now + 86_400;
    while now < end {
        let mut any = false;
        for pair in pairs.iter_mut() {
            let mut c = [*pair, account, known, codes];
            if reserve_roles(&p, CODE, &mut c, now).is_none() {
                admitted += 1;
                any = true;
            }
            [*pair, account, _, codes] = c;
        }
        // At a block, wait a second and try again, for a whole day.
        if !any {
            now += 1;
        }
    }
    let chance = 1.0 - (1.0 - 3e-6f64).powf(admitted as f64);
    assert!(
        admitted < 200,
        "{admitted} wrong TOTP codes admitted per day for one account ({:.3} % chance of a hit)",
        chance * 100.0
    );
}

/// Finding 4: a third party keeps the account's all-IPs counter locked with one request each
/// time its block ends; the owner, at an address they signed in from before, still gets in.
#[test]
fn a_stranger_cannot_lock_the_owner_out_indefinitely() {
    const PASSWORD: &[Role] = &[Role::Pair, Role::Account, Role::Known];
    let p = LockoutPolicy::default();
    let mut account = LockoutCounter::default();
    let mut stranger = [LockoutCounter::default(); 5];
    let unknown = LockoutCounter::default();
    let mut now = 1_800_000_000i64;
    // The owner signed in from home yesterday.
    let mut owner = [LockoutCounter::default(); 3];
    succeed_roles(PASSWORD, &mut owner, now - 86_400);
    let (mut owner_pair, mut owner_known) = (owner[0], owner[2]);
    // 50 failures from 5 addresses.
    for pair in stranger.iter_mut() {
        for _ in 0..10 {
            let mut c = [*pair, account, unknown];
            assert!(reserve_roles(&p, PASSWORD, &mut c, now).is_none());
            [*pair, account, _] = c;
        }
    }
    let (mut owner_in, mut stranger_requests) = (0, 0);
    let end = now + 86_400;
    while now < end {
        now += 1;
        if account.blocked_until <= now {
            let i = stranger_requests % 5;
            let mut c = [stranger[i], account, unknown];
            if reserve_roles(&p, PASSWORD, &mut c, now).is_none() {
                stranger_requests += 1;
            }
            [stranger[i], account, _] = c;
        }
        // The owner tries once a minute from home with the right password.
        if now % 60 == 30 {
            let mut c = [owner_pair, account, owner_known];
            if reserve_roles(&p, PASSWORD, &mut c, now).is_none() {
                owner_in += 1;
                // As `Reservation::succeeded` does: every counter of the attempt.
                succeed_roles(PASSWORD, &mut c, now);
            }
            [owner_pair, account, owner_known] = c;
        }
    }
    assert!(
        owner_in > 1000,
        "the owner got in {owner_in} times in 24 h; the stranger needed {stranger_requests} requests"
    );
}

/// Finding 2b: the enrolment flow that /account/second-factor opens outlives the session that
/// opened it: after that session has ended (sign-out, or the operator ending every sign-in of
/// the user), whoever has the page still turns on their own app and gets a fresh session with
/// amr ["pwd","otp"].
#[tokio::test]
async fn an_enrolment_page_dies_with_the_session_that_opened_it() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    password_session(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let enrol = browser.get(&server.url("/account/second-factor")).await;
    enrol.assert_status(200);
    let alice = server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap();
    doorman::accounts::users::end_sign_ins(&*server.state.store, &alice.id, server.now())
        .await
        .unwrap();
    server.clock.advance(60);
    let (flow, csrf, code) = enrol_form(&server, &enrol.text);
    let done = browser
        .post_form(
            &server.url("/login/enrol"),
            &[("flow", &flow), ("csrf", &csrf), ("code", &code)],
        )
        .await;
    assert_ne!(
        done.status,
        200,
        "an ended session's enrolment page signed in again (session cookie set: {})",
        done.sets_cookie("doorman_session")
    );
}
