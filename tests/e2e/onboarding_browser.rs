//! Onboarding in a real browser (headless Chromium through playwright-core, script
//! tests/browser/onboarding.mjs, run as tests/e2e/plex_browser.rs runs its script), issue 11:
//! `doorman invite create --groups family,admins` through the real binary, the link opened in
//! Chromium, the account created with TOTP enrolled on the way, /account, sign out, password +
//! code to a relying party whose id_token carries the invite's groups; a password change on
//! /account ends the user's other browser; ending another session from /account signs that
//! browser out; an admin disabling a user on /admin signs the user's browser out and refuses
//! its refresh token at once; a non-admin gets the 403 page on /admin. Screenshots of the
//! invite form, a used-up invite, a populated /account, the /admin Users list and the admin
//! pages of one user, the invites, the sessions and the clients at 390 and 1280 px go to
//! target/screenshots/{invite,invite-gone,account,admin,admin-user,admin-invites,
//! admin-sessions,admin-clients}-{390,1280}.png.
//!
//! The server's clock is frozen and its time handed to the script, so the codes the script
//! computes are the server's. Runs only when DOORMAN_BROWSER_TESTS=1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use doorman::accounts::links::{self, NewInvite};
use doorman::accounts::{password, users, NewUser};
use serde_json::{json, Value};

use crate::common::*;
use crate::plex_browser::{enabled, require_tools, rp_stub, run_script, RpStub};

const CLIENT_ID: &str = "onboarding-rp";
const CLIENT_SECRET: &str = "onboarding-rp-secret-0123";
const CAROL: &str = "carol";
const CAROL_PASSWORD: &str = "carol's long passphrase";

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

/// doorman with a relying party (the stub) that gets refresh tokens, a config file for the
/// binary on the same data directory, and an authorization request for
/// `openid profile groups`.
struct Setup {
    rp: RpStub,
    server: TestServer,
    config: PathBuf,
    url: String,
    state: String,
    verifier: String,
}

async fn setup() -> Setup {
    require_tools();
    let rp = rp_stub().await;
    let opts = Options {
        extra_toml: format!(
            "[[clients]]\nid = \"{CLIENT_ID}\"\nname = \"Family Photos\"\nsecret = \"{CLIENT_SECRET}\"\nredirect_uris = [\"{}\"]\nrefresh_tokens = true\n",
            rp.redirect
        ),
        ..Default::default()
    };
    let server = TestServer::start_with(opts.clone()).await;
    server.clock.freeze();
    let config = server.dir.path().join("doorman.toml");
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();
    let (verifier, challenge) = pkce_pair();
    let state = random_string();
    let url = server.authorize_url(
        CLIENT_ID,
        &rp.redirect,
        "openid profile groups",
        &state,
        Some("onboarding-nonce"),
        Some(&challenge),
        &[],
    );
    Setup {
        rp,
        server,
        config,
        url,
        state,
        verifier,
    }
}

impl Setup {
    /// Runs the script's `scenario` with `extra` keys; its report.
    async fn run(&self, scenario: &str, extra: Value) -> Value {
        let mut args = json!({
            "base": self.server.base,
            "scenario": scenario,
            "authorize_url": self.url,
            "rp_prefix": self.rp.redirect,
            "server_time": self.server.now(),
            "screenshots": screenshots(),
            "state_file": self.server.dir.path().join("browser-state.json"),
            "timeout_ms": 30000,
        });
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let (report, _stderr) = tokio::task::spawn_blocking(move || {
            run_script("onboarding.mjs", &args, Duration::from_secs(180))
        })
        .await
        .unwrap();
        assert_eq!(
            report["scriptErrors"],
            json!([]),
            "no script errors: {report:#}"
        );
        report
    }

    /// The one RP code of the report: it reached the stub with our state and issuer.
    fn code(&self, report: &Value) -> String {
        let codes = report["codes"].as_array().unwrap();
        assert_eq!(codes.len(), 1, "{report:#}");
        let landed = url::Url::parse(codes[0]["url"].as_str().unwrap()).unwrap();
        let q = query(&landed);
        assert_eq!(q.get("state"), Some(&self.state), "{landed}");
        assert_eq!(q.get("iss"), Some(&self.server.base), "{landed}");
        let code = codes[0]["code"].as_str().unwrap().to_string();
        assert!(
            self.rp
                .hits
                .lock()
                .unwrap()
                .iter()
                .any(|h| h.contains(&code)),
            "the RP page loaded with the code"
        );
        code
    }

    /// Redeems an RP code: the token response.
    async fn redeem(&self, code: &str) -> Value {
        let page = self
            .server
            .token_basic(
                CLIENT_ID,
                CLIENT_SECRET,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &self.rp.redirect),
                    ("code_verifier", &self.verifier),
                ],
            )
            .await;
        page.assert_status(200);
        page.json()
    }

    async fn refresh(&self, refresh_token: &str) -> Page {
        self.server
            .token_basic(
                CLIENT_ID,
                CLIENT_SECRET,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
            .await
    }

    /// `doorman ARGS --config CONFIG` through the real binary.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = doorman_command();
        cmd.args(args).arg("--config").arg(&self.config);
        output_with_stdin(cmd, "")
    }
}

/// The failed answers the script saw: (who, path, status).
fn http_errors(s: &Setup, report: &Value) -> Vec<(String, String, u64)> {
    report["httpErrors"]
        .as_array()
        .expect("httpErrors")
        .iter()
        .map(|e| {
            let url = e["url"].as_str().unwrap_or("");
            (
                e["who"].as_str().unwrap_or("").to_string(),
                url.strip_prefix(&s.server.base).unwrap_or(url).to_string(),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn err(who: &str, path: &str, status: u64) -> (String, String, u64) {
    (who.to_string(), path.to_string(), status)
}

/// What /account showed a signed-out browser: the sign-in page.
fn assert_sign_in_page(seen: &Value, what: &str) {
    assert_eq!(seen["heading"], "Sign in", "{what}: {seen:#}");
    assert_eq!(seen["signInForm"], true, "{what}: {seen:#}");
}

/// What /account showed a signed-in browser of `user`.
fn assert_account_page(seen: &Value, user: &str, what: &str) {
    assert_eq!(seen["heading"], "Your account", "{what}: {seen:#}");
    assert_eq!(seen["username"], user, "{what}: {seen:#}");
}

/// Removes the screenshots `names` would leave, so that the run must make them anew.
fn remove_shots(names: &[&str]) {
    for name in names {
        for width in [390, 1280] {
            let _ = std::fs::remove_file(screenshots().join(format!("{name}-{width}.png")));
        }
    }
}

fn assert_shots(names: &[&str]) {
    for name in names {
        for width in [390, 1280] {
            let shot = screenshots().join(format!("{name}-{width}.png"));
            assert!(shot.exists(), "a screenshot at {}", shot.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_the_cli_makes_an_account_with_totp_whose_groups_reach_the_rp_in_chromium() {
    if !enabled(
        "an_invite_from_the_cli_makes_an_account_with_totp_whose_groups_reach_the_rp_in_chromium",
    ) {
        return;
    }
    let t0 = Instant::now();
    let s = setup().await;
    let out = s.cli(&["invite", "create", "--groups", "family,admins"]);
    assert_ok(&out, "invite create");
    let stdout = text(&out.stdout);
    let link = stdout.lines().last().unwrap().trim().to_string();
    assert!(
        link.starts_with(&s.server.url("/invite/")),
        "the last line is the link: {stdout}"
    );

    let report = s
        .run(
            "invite",
            json!({"link": link, "user": CAROL, "password": CAROL_PASSWORD}),
        )
        .await;
    let seen = &report["seen"];
    assert_eq!(seen["inviteStatus"], 200, "{report:#}");
    // TOTP on the way: the enrolment page names the new account, ten recovery codes, then
    // Continue lands on /account, signed in, with the factor on.
    assert_eq!(seen["enrolFor"], CAROL, "{report:#}");
    assert_eq!(seen["recoveryCodes"], 10, "{report:#}");
    assert_eq!(
        seen["afterEnrolment"],
        s.server.url("/account"),
        "{report:#}"
    );
    assert_account_page(&seen["account"], CAROL, "after the invite");
    assert_eq!(seen["account"]["factor"], "on", "{report:#}");
    assert_eq!(seen["account"]["recoveryLeft"], "10", "{report:#}");
    // The account has the invite's groups: the /admin page (the invite made an admin) says so.
    assert_eq!(seen["adminRow"]["groups"], "family, admins", "{report:#}");
    assert_eq!(seen["adminRow"]["secondFactor"], "yes", "{report:#}");
    // A one-use link, used: a readable page that says so and whom to ask.
    assert_eq!(seen["goneStatus"], 410, "{report:#}");
    assert_eq!(
        seen["goneHeading"], "This invite has already been used",
        "{report:#}"
    );
    assert!(
        seen["goneText"]
            .as_str()
            .unwrap()
            .contains("Ask the person who invited you"),
        "{report:#}"
    );
    // Signed out, then password + code at the RP.
    assert_sign_in_page(&seen["afterSignOut"], "after signing out");
    let code = s.code(&report);
    let tokens = s.redeem(&code).await;
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], CAROL, "{claims:#}");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims:#}");
    let groups = claims["groups"].as_array().expect("a groups claim");
    assert!(groups.contains(&json!("family")), "{claims:#}");
    assert!(groups.contains(&json!("admins")), "{claims:#}");
    // Nothing failed but the used-up link.
    let path = link.strip_prefix(&s.server.base).unwrap();
    assert_eq!(
        http_errors(&s, &report),
        vec![err("invitee", path, 410)],
        "{report:#}"
    );
    eprintln!(
        "browser invite to the RP took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_the_account_page_signs_the_other_browser_out_in_chromium() {
    if !enabled("a_password_change_on_the_account_page_signs_the_other_browser_out_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup().await;
    let new_password = "a brand new passphrase";
    let report = s
        .run(
            "password",
            json!({"user": BOB, "password": BOB_PASSWORD, "new_password": new_password}),
        )
        .await;
    let seen = &report["seen"];
    assert_account_page(&seen["aBefore"], BOB, "A before");
    assert_eq!(seen["aBefore"]["sessions"], 2, "{report:#}");
    assert_eq!(
        seen["aUrl"],
        s.server.url("/account?done=password"),
        "{report:#}"
    );
    assert!(
        seen["aNotice"]
            .as_str()
            .unwrap()
            .starts_with("Your password was changed."),
        "{report:#}"
    );
    // B's next page load is the sign-in page; A is still signed in, alone.
    assert_sign_in_page(&seen["b"], "B after the change");
    assert_account_page(&seen["a"], BOB, "A after the change");
    assert_eq!(seen["a"]["sessions"], 1, "{report:#}");
    // The old password no longer signs in; the new one does.
    assert_eq!(seen["oldPasswordHeading"], "Sign in", "{report:#}");
    assert!(seen["oldPasswordError"].is_string(), "{report:#}");
    assert_account_page(&seen["bAgain"], BOB, "B with the new password");
    assert_eq!(
        http_errors(&s, &report),
        vec![err("B", "/login/password", 401)],
        "{report:#}"
    );
    eprintln!(
        "browser password change took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_another_session_on_the_account_page_signs_that_browser_out_in_chromium() {
    if !enabled("ending_another_session_on_the_account_page_signs_that_browser_out_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup().await;
    let report = s
        .run(
            "end-session",
            json!({"user": BOB, "password": BOB_PASSWORD}),
        )
        .await;
    let seen = &report["seen"];
    assert_account_page(&seen["aBefore"], BOB, "A before");
    assert_eq!(seen["aBefore"]["sessions"], 2, "{report:#}");
    assert_eq!(seen["aBefore"]["otherSessions"], 1, "{report:#}");
    assert_account_page(&seen["bBefore"], BOB, "B before");
    assert_eq!(
        seen["aNotice"], "That session was signed out.",
        "{report:#}"
    );
    assert!(
        seen["aNoOthers"]
            .as_str()
            .unwrap()
            .contains("No other sessions."),
        "{report:#}"
    );
    assert_sign_in_page(&seen["b"], "B after A ended its session");
    assert_account_page(&seen["a"], BOB, "A after");
    assert_eq!(seen["a"]["sessions"], 1, "{report:#}");
    assert_eq!(http_errors(&s, &report), vec![], "{report:#}");
    eprintln!(
        "browser end-session took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disabling_a_user_ends_their_browser_and_refresh_token_at_once_in_chromium() {
    if !enabled(
        "an_admin_disabling_a_user_ends_their_browser_and_refresh_token_at_once_in_chromium",
    ) {
        return;
    }
    let t0 = Instant::now();
    let s = setup().await;
    // Bob signs in to the RP in his browser; the RP redeems the code and refreshes once.
    let first = s
        .run("disable-1", json!({"user": BOB, "password": BOB_PASSWORD}))
        .await;
    let tokens = s.redeem(&s.code(&first)).await;
    let refresh = s
        .refresh(tokens["refresh_token"].as_str().expect("a refresh token"))
        .await;
    refresh.assert_status(200);
    let refresh_token = refresh.json()["refresh_token"]
        .as_str()
        .expect("a new refresh token")
        .to_string();

    // Alice (admin) disables him on /admin; his browser (the same cookies) is signed out.
    let report = s
        .run(
            "disable-2",
            json!({"user": BOB, "admin": ALICE, "admin_password": ALICE_PASSWORD}),
        )
        .await;
    let seen = &report["seen"];
    assert_account_page(&seen["userBefore"], BOB, "bob before");
    assert_eq!(seen["rowBefore"]["disabled"], "no", "{report:#}");
    assert_eq!(
        seen["adminUrl"],
        s.server.url("/admin?done=disabled"),
        "{report:#}"
    );
    assert!(
        seen["adminNotice"]
            .as_str()
            .unwrap()
            .starts_with("The user was disabled"),
        "{report:#}"
    );
    assert_eq!(seen["rowAfter"]["disabled"], "yes", "{report:#}");
    assert_eq!(
        seen["rowAfter"]["badges"],
        json!(["disabled"]),
        "{report:#}"
    );
    assert_sign_in_page(&seen["userAfter"], "bob after being disabled");
    assert_eq!(http_errors(&s, &report), vec![], "{report:#}");
    // And the RP's refresh token is refused at once.
    let refused = s.refresh(&refresh_token).await;
    refused.assert_status(400);
    assert_eq!(refused.oauth_error(), "invalid_grant");
    eprintln!(
        "browser admin disable took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_gets_the_403_page_on_admin_in_chromium() {
    if !enabled("a_non_admin_gets_the_403_page_on_admin_in_chromium") {
        return;
    }
    let s = setup().await;
    let report = s
        .run(
            "forbidden",
            json!({"user": BOB, "password": BOB_PASSWORD, "admin": ALICE, "admin_password": ALICE_PASSWORD}),
        )
        .await;
    let seen = &report["seen"];
    assert_eq!(
        seen["userHeading"], "This page is for administrators",
        "{report:#}"
    );
    assert!(
        seen["userText"]
            .as_str()
            .unwrap()
            .contains("not a member of an admin group"),
        "{report:#}"
    );
    assert_eq!(seen["userStatus"], 403, "{report:#}");
    assert_eq!(
        seen["userHeadingAgain"], "This page is for administrators",
        "{report:#}"
    );
    assert_eq!(seen["adminHeading"], "Users", "{report:#}");
    assert_eq!(
        http_errors(&s, &report),
        vec![err("user", "/admin", 403), err("user", "/admin", 403)],
        "{report:#}"
    );
}

/// A few more users for the admin list: a local one, a Plex-only one, a disabled one with a
/// long email address.
async fn more_users(server: &TestServer) {
    let params = password::owasp_params().unwrap();
    let hash = tokio::task::spawn_blocking(move || {
        password::hash_blocking(&params, "dave's long passphrase").unwrap()
    })
    .await
    .unwrap();
    let now = server.now();
    let new = [
        (
            "dave",
            Some("dave@example.com"),
            Some("Dave Lister"),
            vec!["family", "media"],
            Some(hash),
        ),
        ("erin", None, Some("Erin"), vec!["friends"], None),
        (
            "frank-the-long-named",
            Some("frank.with.a.rather.long.address@subdomain.example.org"),
            Some("Franklin Delano Longname-Smythe"),
            vec!["family", "media", "friends", "book-club"],
            None,
        ),
    ];
    for (username, email, name, groups, password_hash) in new {
        users::create(
            &*server.state.store,
            NewUser {
                username: username.into(),
                email: email.map(Into::into),
                email_verified: email.is_some(),
                name: name.map(Into::into),
                groups: groups.into_iter().map(Into::into).collect(),
                password_hash,
            },
            now,
        )
        .await
        .unwrap();
    }
    users::set_disabled(&*server.state.store, "frank-the-long-named", true, now)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_invite_account_and_admin_pages_in_chromium() {
    if !enabled("screenshots_of_the_invite_account_and_admin_pages_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let shots = [
        "invite",
        "invite-gone",
        "account",
        "admin",
        "admin-user",
        "admin-invites",
        "admin-sessions",
        "admin-clients",
    ];
    remove_shots(&shots);
    let s = setup().await;
    more_users(&s.server).await;
    let (token, _) = links::create_invite(
        &*s.server.state.store,
        NewInvite {
            groups: vec!["family".into(), "admins".into()],
            email: Some("carol@example.com".into()),
            note: Some("for Carol".into()),
            created_by: "cli".into(),
            ..Default::default()
        },
        s.server.now(),
    )
    .await
    .unwrap();
    let link = s.server.url(&format!("/invite/{token}"));
    // One more invite, still open, for the Invites page.
    links::create_invite(
        &*s.server.state.store,
        NewInvite {
            groups: vec!["family".into()],
            uses: Some(3),
            note: Some("for the cousins".into()),
            created_by: ALICE.into(),
            ..Default::default()
        },
        s.server.now(),
    )
    .await
    .unwrap();
    let first = s
        .run(
            "screenshots-1",
            json!({"link": link, "user": CAROL, "password": CAROL_PASSWORD}),
        )
        .await;
    // The RP redeems B's code: it keeps a refresh token, so the application is listed.
    s.redeem(&s.code(&first)).await;
    let carol = s
        .server
        .state
        .store
        .find_user_by_username(CAROL)
        .await
        .unwrap()
        .unwrap();
    let admin_pages = json!([
        {"name": "admin-user", "path": format!("/admin/users/{}", carol.id)},
        {"name": "admin-invites", "path": "/admin/invites"},
        {"name": "admin-sessions", "path": "/admin/sessions"},
        {"name": "admin-clients", "path": "/admin/clients"},
    ]);
    let report = s
        .run(
            "screenshots-2",
            json!({ "link": link, "admin_pages": admin_pages }),
        )
        .await;
    let seen = &report["seen"];
    // The account page is populated: a factor, two sessions, one application.
    assert_account_page(&seen["account"], CAROL, "the screenshot's account page");
    assert_eq!(seen["account"]["factor"], "on", "{report:#}");
    assert_eq!(seen["account"]["sessions"], 2, "{report:#}");
    assert_eq!(
        seen["account"]["applications"],
        json!(["Family Photos"]),
        "{report:#}"
    );
    assert_eq!(seen["adminUsers"], 6, "{report:#}");
    for (name, heading) in [
        ("admin-user", CAROL),
        ("admin-invites", "Invites"),
        ("admin-sessions", "Sessions"),
        ("admin-clients", "Clients"),
    ] {
        let page = &seen["adminPages"][name];
        assert_eq!(page["status"], 200, "{name}: {report:#}");
        assert_eq!(page["heading"], heading, "{name}: {report:#}");
    }
    assert_eq!(
        seen["goneHeading"], "This invite has already been used",
        "{report:#}"
    );
    assert_shots(&shots);
    eprintln!(
        "browser screenshots took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
