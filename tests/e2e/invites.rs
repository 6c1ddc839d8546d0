//! Invite links, as issue 11 describes them: `doorman invite create / list / revoke` through
//! the real binary, and `/invite/{token}` over HTTP: the account it makes (the invite's groups
//! and email, verified when the invite named it), the browser signed in, the username rules
//! and the password policy, the CSRF binding to this browser, `rd` only to a safe return
//! address, the optional authenticator app on the way (the browser already signed in), and
//! the pages of expired, revoked, used-up and unknown links. Uses are counted
//! atomically: of two browsers racing for the last use, exactly one makes an account.

use std::process::{Command, Output};

use doorman::accounts::links::{self, NewInvite};
use serde_json::Value;

use crate::common::authenticator::{base32_decode, totp_at};
use crate::common::*;

/// `doorman ARGS --config CONFIG` through the real binary.
fn cli(config: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd: Command = doorman_command();
    cmd.args(args).arg("--config").arg(config);
    output_with_stdin(cmd, "")
}

/// A test server and a config file for the binary on the same data directory.
async fn server_with_config() -> (TestServer, std::path::PathBuf) {
    let opts = Options::default();
    let server = TestServer::start_with(opts.clone()).await;
    let config = server.dir.path().join("doorman.toml");
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();
    (server, config)
}

/// An invite made through the domain, as the CLI makes it; returns its token.
async fn invite(server: &TestServer, new: NewInvite) -> String {
    let new = NewInvite {
        created_by: "cli".into(),
        ..new
    };
    let (token, _) = links::create_invite(&*server.state.store, new, server.now())
        .await
        .unwrap();
    token
}

/// The token at the end of an invite link.
fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_string()
}

/// The invite form of `page`: its action and CSRF token.
fn invite_form(page: &Page) -> (String, String) {
    assert_eq!(page.status, 200, "no invite form:\n{}", page.text);
    let action = form_action(&page.text).expect("a form");
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    (action, csrf)
}

async fn post_invite(
    b: &Browser,
    action: &str,
    csrf: &str,
    username: &str,
    password: &str,
    confirm: &str,
) -> Page {
    b.post_form(
        action,
        &[
            ("csrf", csrf),
            ("username", username),
            ("password", password),
            ("password_confirm", confirm),
        ],
    )
    .await
}

/// Opens the invite in `b` and submits its form.
async fn redeem(
    server: &TestServer,
    b: &Browser,
    token: &str,
    username: &str,
    password: &str,
) -> Page {
    let page = b.get(&server.url(&format!("/invite/{token}"))).await;
    let (action, csrf) = invite_form(&page);
    post_invite(b, &action, &csrf, username, password, password).await
}

/// The page after a redemption: the optional TOTP enrolment for the new account (the
/// browser is already signed in); returns where its Skip link goes.
fn enrolment_skip(page: &Page, username: &str) -> String {
    assert_eq!(page.status, 200, "no enrolment page:\n{}", page.text);
    assert!(
        page.text.contains("Set up a second factor"),
        "{}",
        page.text
    );
    assert!(page.text.contains(username), "{}", page.text);
    let marker = "class=\"skip\" href=\"";
    let at = page.text.find(marker).expect("a Skip link") + marker.len();
    let len = page.text[at..].find('"').unwrap();
    html_unescape(&page.text[at..at + len])
}

/// Whether `b` is signed in (the landing page says so).
async fn signed_in(server: &TestServer, b: &Browser) -> bool {
    let page = b.get(&server.url("/login")).await;
    page.status == 200 && page.text.contains("You are signed in")
}

const PASSWORD: &str = "carol's long passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_create_prints_the_link_last_list_never_shows_it_and_revoke_ends_it() {
    let (server, config) = server_with_config().await;
    let out = cli(
        &config,
        &[
            "invite",
            "create",
            "--groups",
            "family,media",
            "--uses",
            "2",
            "--note",
            "for Carol",
            "--email",
            "carol@example.com",
        ],
    );
    assert_ok(&out, "invite create");
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let prefix = server.url("/invite/");
    assert!(last.starts_with(&prefix), "last line: {last:?}\n{stdout}");
    let token = token_of(last);
    assert_eq!(token.len(), 43, "{token}");
    assert!(
        stdout.contains("family,media") && stdout.contains("2 uses"),
        "{stdout}"
    );

    // JSON: everything, the link included.
    let out = cli(
        &config,
        &["invite", "create", "--format", "json", "--expires", "2h"],
    );
    assert_ok(&out, "invite create --format json");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let json_link = json["link"].as_str().unwrap().to_string();
    assert!(json_link.starts_with(&prefix), "{json}");
    let json_id = json["id"].as_str().unwrap().to_string();
    assert_eq!(json["uses"], 1);
    assert_eq!(json["uses_left"], 1);
    let expires = json["expires_at"].as_i64().unwrap();
    let now = server.now();
    assert!((now + 7000..=now + 7300).contains(&expires), "{json}");

    // The list: id, note, groups, uses left, expiry; never a token.
    let out = cli(&config, &["invite", "list"]);
    assert_ok(&out, "invite list");
    let list = text(&out.stdout);
    assert!(
        list.contains("for Carol") && list.contains("family,media"),
        "{list}"
    );
    assert!(list.contains(&json_id) && list.contains("2/2"), "{list}");
    assert!(
        !list.contains(&token) && !list.contains(&token_of(&json_link)),
        "{list}"
    );
    let out = cli(&config, &["invite", "list", "--format", "json"]);
    assert_ok(&out, "invite list --format json");
    let all = text(&out.stdout);
    assert!(!all.contains(&token) && !all.contains("/invite/"), "{all}");
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);

    // The link works, until revoked.
    let b = Browser::new();
    let page = b.get(&json_link).await;
    page.assert_status(200);
    let out = cli(&config, &["invite", "revoke", &json_id]);
    assert_ok(&out, "invite revoke");
    let page = b.get(&json_link).await;
    page.assert_status(410);
    assert!(page.text.contains("withdrawn"), "{}", page.text);
    assert!(
        page.text.contains("Ask the person who invited you"),
        "{}",
        page.text
    );
    let list = text(&cli(&config, &["invite", "list"]).stdout);
    assert!(!list.contains(&json_id), "{list}");
    // Revoking it again, or an unknown id: a clear error.
    let out = cli(&config, &["invite", "revoke", &json_id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invite list"),
        "{}",
        text(&out.stderr)
    );

    // A bad argument says what is wrong.
    let out = cli(&config, &["invite", "create", "--expires", "7"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--expires"),
        "{}",
        text(&out.stderr)
    );

    // The CLI's invite makes an account with its groups and its email, verified.
    let page = redeem(&server, &b, &token, "carol", PASSWORD).await;
    enrolment_skip(&page, "carol");
    let carol = server
        .state
        .store
        .find_user_by_username("carol")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.groups, ["family", "media"]);
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));
    assert!(carol.email_verified);
    let list = text(&cli(&config, &["invite", "list"]).stdout);
    assert!(list.contains("1/2"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeeming_makes_the_account_and_signs_the_browser_in() {
    let server = TestServer::start("").await;
    let token = invite(
        &server,
        NewInvite {
            groups: vec!["family".into()],
            ..Default::default()
        },
    )
    .await;
    let b = Browser::new();
    let done = redeem(&server, &b, &token, "dave", PASSWORD).await;
    // Signed in already, then offered an authenticator app, with a Skip link to /account.
    assert_eq!(enrolment_skip(&done, "dave"), server.url("/account"));
    assert!(signed_in(&server, &b).await, "the session cookie works");
    let dave = server
        .state
        .store
        .find_user_by_username("dave")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dave.groups, ["family"]);
    assert_eq!(dave.email, None);
    assert!(!dave.email_verified);
    // The password works in a fresh browser; the one-use link is used up.
    let other = Browser::new();
    let login = other.get(&server.url("/login")).await;
    assert_eq!(
        other.submit_login(&login, "dave", PASSWORD).await.status,
        303
    );
    let page = other.get(&server.url(&format!("/invite/{token}"))).await;
    page.assert_status(410);
    assert!(page.text.contains("already been used"), "{}", page.text);
    assert!(page.text.contains("Ask the person who invited you"));
    // An id_token of an application carries the invite's groups.
    let tokens = server
        .code_flow(&b, RP, "openid groups", "dave", PASSWORD)
        .await;
    assert_eq!(tokens.id_claims()["groups"], serde_json::json!(["family"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_revoked_used_up_and_unknown_links_say_so() {
    let server = TestServer::start("").await;
    let b = Browser::new();
    let page_of = |token: &str| server.url(&format!("/invite/{token}"));

    // Expiry, by the server's clock: usable until then, gone after, even mid-form.
    let token = invite(
        &server,
        NewInvite {
            expires_in: Some(3600),
            ..Default::default()
        },
    )
    .await;
    let (action, csrf) = invite_form(&b.get(&page_of(&token)).await);
    server.clock.advance(3600);
    let page = b.get(&page_of(&token)).await;
    page.assert_status(410);
    assert!(page.text.contains("has expired"), "{}", page.text);
    assert!(page.text.contains("Ask the person who invited you"));
    let page = post_invite(&b, &action, &csrf, "erin", PASSWORD, PASSWORD).await;
    page.assert_status(410);
    assert!(server
        .state
        .store
        .find_user_by_username("erin")
        .await
        .unwrap()
        .is_none());

    // Revoked.
    let token = invite(&server, NewInvite::default()).await;
    let id = server
        .state
        .store
        .list_links(doorman::store::LinkKind::Invite, server.now())
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.token_hash == links::token_hash(&token))
        .unwrap()
        .id;
    assert!(server
        .state
        .store
        .revoke_link(&id, server.now())
        .await
        .unwrap());
    let page = b.get(&page_of(&token)).await;
    page.assert_status(410);
    assert!(page.text.contains("withdrawn"), "{}", page.text);

    // Unknown, malformed (the whole last segment is the token), or another kind of link.
    let unknown = doorman::secrets::random_token();
    for t in [unknown.as_str(), "short", &format!("{unknown}x"), "a%2Fb"] {
        let page = b.get(&page_of(t)).await;
        page.assert_status(404);
        assert!(page.text.contains("not valid"), "{t}: {}", page.text);
        assert!(page.text.contains("Ask the person who invited you"));
    }
    let bob = server
        .state
        .store
        .find_user_by_username(BOB)
        .await
        .unwrap()
        .unwrap();
    let (reset, _) =
        links::create_reset(&*server.state.store, &bob.id, "alice", None, server.now())
            .await
            .unwrap();
    b.get(&page_of(&reset)).await.assert_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_browsers_racing_for_a_one_use_invite_make_one_account() {
    let server = TestServer::start("").await;
    for round in 0..3 {
        let token = invite(&server, NewInvite::default()).await;
        let (b1, b2) = (Browser::new(), Browser::new());
        let url = server.url(&format!("/invite/{token}"));
        let (a1, c1) = invite_form(&b1.get(&url).await);
        let (a2, c2) = invite_form(&b2.get(&url).await);
        let (n1, n2) = (format!("racer{round}a"), format!("racer{round}b"));
        let (p1, p2) = tokio::join!(
            post_invite(&b1, &a1, &c1, &n1, PASSWORD, PASSWORD),
            post_invite(&b2, &a2, &c2, &n2, PASSWORD, PASSWORD)
        );
        let mut statuses = [p1.status, p2.status];
        statuses.sort();
        assert_eq!(statuses, [200, 410], "{}\n{}", p1.text, p2.text);
        let loser = if p1.status == 410 { &p1 } else { &p2 };
        assert!(loser.text.contains("already been used"), "{}", loser.text);
        let mut made = 0;
        for n in [&n1, &n2] {
            made += usize::from(
                server
                    .state
                    .store
                    .find_user_by_username(n)
                    .await
                    .unwrap()
                    .is_some(),
            );
        }
        assert_eq!(made, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_and_passwords_follow_the_rules_and_refusals_keep_the_invite() {
    let server = TestServer::start("").await;
    let token = invite(
        &server,
        NewInvite {
            email: Some("frank@example.com".into()),
            ..Default::default()
        },
    )
    .await;
    let b = Browser::new();
    let (action, csrf) = invite_form(&b.get(&server.url(&format!("/invite/{token}"))).await);
    let refused = [
        // Taken (whatever the case), and the username rules of `doorman user add`.
        ("Alice", PASSWORD, PASSWORD, "already taken"),
        ("-frank", PASSWORD, PASSWORD, "invalid username"),
        ("frank smith", PASSWORD, PASSWORD, "invalid username"),
        // The policy: length, not the username or email, not a common password.
        ("frank", "short", "short", "at least 10 characters"),
        (
            "frank.jones",
            "Frank.Jones",
            "Frank.Jones",
            "not be your username or email",
        ),
        (
            "frank",
            "frank@example.com",
            "frank@example.com",
            "not be your username or email",
        ),
        ("frank", "password123", "password123", "most common"),
        ("frank", "1234567890", "1234567890", "most common"),
        // The confirmation.
        ("frank", PASSWORD, "another long passphrase", "differ"),
    ];
    for (username, password, confirm, says) in refused {
        let page = post_invite(&b, &action, &csrf, username, password, confirm).await;
        page.assert_status(400);
        assert!(
            page.text.contains(says) || html_unescape(&page.text).contains(says),
            "{username}/{password}: expected {says:?}:\n{}",
            page.text
        );
        // The form is shown again, the username kept, the passwords not.
        assert!(page.text.contains("name=\"password_confirm\""));
        assert_eq!(input_value(&page.text, "password"), None);
        assert_eq!(input_value(&page.text, "password_confirm"), None);
        assert_eq!(
            input_value(&page.text, "username").as_deref(),
            Some(username)
        );
    }
    // None of that used the invite up.
    let done = post_invite(&b, &action, &csrf, "frank", PASSWORD, PASSWORD).await;
    enrolment_skip(&done, "frank");
    let frank = server
        .state
        .store
        .find_user_by_username("frank")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frank.email.as_deref(), Some("frank@example.com"));
    assert!(frank.email_verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_is_bound_to_its_browser() {
    let server = TestServer::start("").await;
    let token = invite(&server, NewInvite::default()).await;
    let url = server.url(&format!("/invite/{token}"));
    let (b1, b2) = (Browser::new(), Browser::new());
    let (action, csrf1) = invite_form(&b1.get(&url).await);
    let (_, csrf2) = invite_form(&b2.get(&url).await);
    // No token, another browser's token, a browser without doorman's cookie: refused.
    let page = post_invite(&b1, &action, "", "gina", PASSWORD, PASSWORD).await;
    page.assert_status(403);
    let page = post_invite(&b1, &action, &csrf2, "gina", PASSWORD, PASSWORD).await;
    page.assert_status(403);
    let page = post_invite(&Browser::new(), &action, &csrf1, "gina", PASSWORD, PASSWORD).await;
    page.assert_status(403);
    assert!(server
        .state
        .store
        .find_user_by_username("gina")
        .await
        .unwrap()
        .is_none());
    // The invite is still there for the right browser.
    let page = post_invite(&b1, &action, &csrf1, "gina", PASSWORD, PASSWORD).await;
    enrolment_skip(&page, "gina");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rd_is_honoured_only_for_a_safe_return_address() {
    let server = TestServer::start("").await;
    // A foreign host: dropped from the form, ignored if posted anyway.
    let token = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let evil = "https://evil.example/steal";
    let page = b
        .get(&server.url(&format!("/invite/{token}?rd={}", urlencode(evil))))
        .await;
    let (action, csrf) = invite_form(&page);
    assert!(!action.contains("evil"), "{action}");
    let posted = format!("{action}?rd={}", urlencode(evil));
    let done = post_invite(&b, &posted, &csrf, "hank", PASSWORD, PASSWORD).await;
    assert_eq!(enrolment_skip(&done, "hank"), server.url("/account"));

    // doorman's own origin: carried through the form and followed.
    let token = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let back = server.url("/login?x=1");
    let page = b
        .get(&server.url(&format!("/invite/{token}?rd={}", urlencode(&back))))
        .await;
    let (action, csrf) = invite_form(&page);
    let done = post_invite(&b, &action, &csrf, "ivy", PASSWORD, PASSWORD).await;
    assert_eq!(enrolment_skip(&done, "ivy"), back);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_and_passwd_apply_the_password_policy() {
    let (server, config) = server_with_config().await;
    let with_stdin = |args: &[&str], stdin: &str| {
        let mut cmd: Command = doorman_command();
        cmd.args(args).arg("--config").arg(&config);
        output_with_stdin(cmd, stdin)
    };
    let add = [
        "user",
        "add",
        "kim",
        "--email",
        "kim@example.com",
        "--password-stdin",
    ];
    for (password, rule) in [
        ("short", "at least 10 characters"),
        ("kim@example.com", "not be your username or email"),
        ("password123", "most common"),
        ("Qwertyuiop", "most common"),
    ] {
        let out = with_stdin(&add, &format!("{password}\n"));
        assert!(!out.status.success(), "{password} accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("password refused") && stderr.contains(rule),
            "{password}: {stderr}"
        );
    }
    assert!(server
        .state
        .store
        .find_user_by_username("kim")
        .await
        .unwrap()
        .is_none());
    // `user passwd` checks against the user's own name and email.
    for password in [ALICE, ALICE_EMAIL, "1234567890"] {
        let out = with_stdin(&["user", "passwd", ALICE], &format!("{password}\n"));
        assert!(!out.status.success(), "{password} accepted");
        assert!(
            text(&out.stderr).contains("password refused"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_ok(&with_stdin(&add, &format!("{PASSWORD}\n")), "user add kim");
}

// An authenticator app, for enrolling on the way: RFC 4648 base32, RFC 6238 TOTP (SHA-1, 6
// digits, 30 s steps).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_may_enrol_an_authenticator_app_on_the_way() {
    let server = TestServer::start("").await;
    server.clock.freeze();
    let token = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let back = server.url("/login?from=invite");
    let page = b
        .get(&server.url(&format!("/invite/{token}?rd={}", urlencode(&back))))
        .await;
    let (action, csrf) = invite_form(&page);
    let page = post_invite(&b, &action, &csrf, "jo", PASSWORD, PASSWORD).await;
    enrolment_skip(&page, "jo");
    let marker = "class=\"totp-secret\">";
    let at = page.text.find(marker).unwrap() + marker.len();
    let secret = base32_decode(&page.text[at..at + page.text[at..].find('<').unwrap()]);
    let enrol_action = form_action(&page.text).unwrap();
    let codes = b
        .post_form(
            &enrol_action,
            &[
                ("flow", &input_value(&page.text, "flow").unwrap()),
                ("csrf", &input_value(&page.text, "csrf").unwrap()),
                ("code", &totp_at(&secret, server.now())),
            ],
        )
        .await;
    codes.assert_status(200);
    assert!(codes.text.contains("recovery codes"), "{}", codes.text);
    let jo = server
        .state
        .store
        .find_user_by_username("jo")
        .await
        .unwrap()
        .unwrap();
    assert!(server.state.store.get_totp(&jo.id).await.unwrap().is_some());
    // Continue: on to the `rd` the invite carried.
    let done = b
        .post_form(
            &form_action(&codes.text).unwrap(),
            &[
                ("flow", &input_value(&codes.text, "flow").unwrap()),
                ("csrf", &input_value(&codes.text, "csrf").unwrap()),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.redirect().as_str(), back);
    assert!(signed_in(&server, &b).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_second_factor_is_set_up_before_the_invitee_is_signed_in() {
    let server = TestServer::start("[login]\nsecond_factor_groups = [\"admins\"]\n").await;
    let token = invite(
        &server,
        NewInvite {
            groups: vec!["admins".into()],
            ..Default::default()
        },
    )
    .await;
    let b = Browser::new();
    let page = redeem(&server, &b, &token, "erin", PASSWORD).await;
    page.assert_status(200);
    assert!(
        page.text.contains("totp-secret"),
        "the enrolment page:\n{}",
        page.text
    );
    assert!(
        !page.text.contains("class=\"skip\""),
        "no Skip: it is required"
    );
    assert!(
        !page.sets_cookie("doorman_session"),
        "no session (and no forward-auth cookie) before the factor"
    );
    assert!(!signed_in(&server, &b).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_which_usernames_are_taken_counts_against_the_ip() {
    // Each "already taken" answer tells a holder of a multi-use invite that an account exists:
    // they count like wrong passwords, so one IP learns a handful of names, not a directory.
    let server = TestServer::start("[login]\nmax_failures_per_ip = 3\n").await;
    server.clock.freeze();
    let token = invite(
        &server,
        NewInvite {
            uses: Some(10),
            ..Default::default()
        },
    )
    .await;
    let b = Browser::new();
    let (action, csrf) = invite_form(&b.get(&server.url(&format!("/invite/{token}"))).await);
    // Refusals that tell nothing (the rules, the policy) do not count.
    for _ in 0..5 {
        let page = post_invite(&b, &action, &csrf, "-bad", PASSWORD, PASSWORD).await;
        page.assert_status(400);
    }
    for name in ["alice", "bob", "alice"] {
        let page = post_invite(&b, &action, &csrf, name, PASSWORD, PASSWORD).await;
        page.assert_status(400);
        assert!(page.text.contains("already taken"), "{}", page.text);
    }
    // The IP's failures are used up: no more answers, not even for a free name.
    let page = post_invite(&b, &action, &csrf, "carol", PASSWORD, PASSWORD).await;
    page.assert_status(429);
    assert!(!page.text.contains("already taken"));
    assert!(page.headers.get("retry-after").is_some());
    // ... until the window is over.
    server.clock.advance(3600);
    let done = post_invite(&b, &action, &csrf, "carol", PASSWORD, PASSWORD).await;
    enrolment_skip(&done, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_cannot_pick_a_name_that_reads_as_the_operators() {
    let server = TestServer::start("").await;
    let token = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let (action, csrf) = invite_form(&b.get(&server.url(&format!("/invite/{token}"))).await);
    for name in ["admin", "Root", "postmaster"] {
        let page = post_invite(&b, &action, &csrf, name, PASSWORD, PASSWORD).await;
        page.assert_status(400);
        assert!(
            html_unescape(&page.text).contains("is reserved"),
            "{name}: {}",
            page.text
        );
    }
    assert!(server
        .state
        .store
        .find_user_by_username("admin")
        .await
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------------------
// Linking a Plex account instead of a password

/// Opens the invite in `b`, clicks "Use my Plex account" and answers the redirect to Plex.
async fn invite_with_plex(
    server: &TestServer,
    b: &Browser,
    token: &str,
) -> crate::common::fake_plex::AuthApp {
    let page = b.get(&server.url(&format!("/invite/{token}"))).await;
    page.assert_status(200);
    assert!(page.text.contains("Use my Plex account"), "{}", page.text);
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    let action = server.url(&format!("/invite/{token}/plex"));
    let answer = b.post_form(&action, &[("csrf", csrf.as_str())]).await;
    assert!(
        matches!(answer.status, 302 | 303),
        "to Plex: {} {}",
        answer.status,
        answer.text
    );
    crate::common::fake_plex::AuthApp::parse(answer.header("location").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_may_link_plex_instead_of_a_password() {
    use crate::common::fake_plex::*;
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", "", "").await;
    let token = invite(
        &server,
        NewInvite {
            groups: vec!["family".into()],
            ..Default::default()
        },
    )
    .await;
    // Eve has no share of the operator's Plex server: Plex sign-in alone would refuse her.
    let b = Browser::new();
    let app = invite_with_plex(&server, &b, &token).await;
    fake.approve(&app.code, EVE);
    server.clock.advance(1);
    let back = b.get(&app.forward_url()).await;
    assert!(
        matches!(back.status, 302 | 303),
        "{} {}",
        back.status,
        back.text
    );
    assert_eq!(back.redirect().as_str(), server.url("/account"));
    assert!(back.sets_cookie("doorman_session"));
    let eve = server
        .state
        .store
        .find_user_by_username(EVE)
        .await
        .unwrap()
        .expect("an account for eve");
    assert!(
        eve.groups.contains(&"family".to_string()),
        "{:?}",
        eve.groups
    );
    assert!(eve.password_hash.is_none(), "no password was set");
    let page = b.get(&server.url("/account")).await;
    page.assert_status(200);
    assert!(page.text.contains(EVE), "{}", page.text);
    // The invite is used up.
    let again = Browser::new();
    let gone = again.get(&server.url(&format!("/invite/{token}"))).await;
    assert_eq!(gone.status, 410, "{}", gone.text);

    // From now on eve signs in with Plex like anybody, share or not, also after a re-check.
    server.clock.advance(7 * 86_400);
    let later = Browser::new();
    let landing = PlexLanding::open(&server, &later, RP_CLIENT, "openid groups").await;
    let app = landing.start(&server, &later).await;
    fake.approve(&app.code, EVE);
    let page = landing.poll_until_settled(&server, &later).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json()["status"], "done", "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plex_account_already_here_does_not_use_up_an_invite() {
    use crate::common::fake_plex::*;
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", "", "").await;
    let first = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let app = invite_with_plex(&server, &b, &first).await;
    fake.approve(&app.code, EVE);
    server.clock.advance(1);
    let back = b.get(&app.forward_url()).await;
    assert!(matches!(back.status, 302 | 303), "{}", back.text);

    // A second invite, and the same Plex account: refused, the invite kept.
    let second = invite(&server, NewInvite::default()).await;
    let c = Browser::new();
    let app = invite_with_plex(&server, &c, &second).await;
    fake.approve(&app.code, EVE);
    server.clock.advance(1);
    let page = c.get(&app.forward_url()).await;
    assert!(
        page.text.contains("already has an account here"),
        "{} {}",
        page.status,
        page.text
    );
    assert!(!page.sets_cookie("doorman_session"));
    let open = c.get(&server.url(&format!("/invite/{second}"))).await;
    open.assert_status(200);
    // And the form cannot be posted from another browser.
    let stranger = Browser::new();
    let refused = stranger
        .post_form(
            &server.url(&format!("/invite/{second}/plex")),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_plex_the_invite_page_offers_only_a_password() {
    let server = TestServer::start("").await;
    let token = invite(&server, NewInvite::default()).await;
    let b = Browser::new();
    let page = b.get(&server.url(&format!("/invite/{token}"))).await;
    page.assert_status(200);
    assert!(!page.text.contains("Use my Plex account"));
    let csrf = input_value(&page.text, "csrf").unwrap();
    let answer = b
        .post_form(
            &server.url(&format!("/invite/{token}/plex")),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_that_names_an_email_takes_it_from_an_unconfirmed_claim() {
    let server = TestServer::start("").await;
    let store = &server.state.store;
    let alice = store.find_user_by_username(ALICE).await.unwrap().unwrap();
    // Alice typed sam's address on /account and never confirmed it.
    store
        .set_user_name_and_email(
            &alice.id,
            None,
            Some("sam@example.com"),
            false,
            server.now(),
        )
        .await
        .unwrap();
    let token = invite(
        &server,
        NewInvite {
            email: Some("sam@example.com".into()),
            ..Default::default()
        },
    )
    .await;
    let done = redeem(&server, &Browser::new(), &token, "sam", PASSWORD).await;
    enrolment_skip(&done, "sam");
    let sam = store.find_user_by_username("sam").await.unwrap().unwrap();
    assert_eq!(sam.email.as_deref(), Some("sam@example.com"));
    assert!(sam.email_verified);
    let alice = store.get_user(&alice.id).await.unwrap().unwrap();
    assert_eq!(alice.email, None, "the unconfirmed claim is gone");

    // A verified holder keeps the address: the invite is refused, and kept.
    let token = invite(
        &server,
        NewInvite {
            email: Some("sam@example.com".into()),
            ..Default::default()
        },
    )
    .await;
    let page = redeem(&server, &Browser::new(), &token, "sam2", PASSWORD).await;
    assert_eq!(page.status, 409, "{}", page.text);
    let open = Browser::new()
        .get(&server.url(&format!("/invite/{token}")))
        .await;
    open.assert_status(200);
}

/// Attack: a parallel burst of "is this name taken?" posts gets no more answers than the IP's
/// failure budget (the limit is reserved before each lookup).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_of_taken_names_gets_at_most_the_ips_budget() {
    let server = TestServer::start("[login]\nmax_failures_per_ip = 3\n").await;
    server.clock.freeze();
    let token = invite(
        &server,
        NewInvite {
            uses: Some(10),
            ..Default::default()
        },
    )
    .await;
    let b = Browser::new();
    let (action, csrf) = invite_form(&b.get(&server.url(&format!("/invite/{token}"))).await);
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let (b, action, csrf) = (b.clone(), action.clone(), csrf.clone());
            let name = if i % 2 == 0 { ALICE } else { BOB };
            tokio::spawn(
                async move { post_invite(&b, &action, &csrf, name, PASSWORD, PASSWORD).await },
            )
        })
        .collect();
    let mut taken = 0;
    for h in burst {
        let page = h.await.unwrap();
        assert!(matches!(page.status, 400 | 429), "{}", page.status);
        if page.text.contains("already taken") {
            taken += 1;
        }
    }
    assert!(taken <= 3, "{taken} answers said a name was taken");
}
