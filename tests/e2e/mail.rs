//! Mail, as issue 11 describes it, against the test harness's SMTP sink (`common/smtp.rs`,
//! `tls = "none"`): "Forgot your password?" only with `[smtp]`; the answer the same for a
//! known and an unknown address; a mail only to an enabled account's verified email, whose
//! link sets a new password that signs in; the limits (per address: 3 links an hour, even
//! under a parallel burst; per IP) answered with the same page; `invite create --send`.
//!
//! The outbox sends in order, one mail at a time: once a later mail has arrived, every mail
//! queued before it has too, so "no mail for X" is checked by the next mail being Y's.

use doorman::accounts::users::{self, NewUser};

use crate::common::smtp::{Received, SmtpSink};
use crate::common::*;

const FORGOT: &str = "/login/forgot";
const NEW_PASSWORD: &str = "a mailed new passphrase";

async fn with_sink() -> (TestServer, SmtpSink) {
    let sink = SmtpSink::start().await;
    let server = TestServer::start(&sink.toml()).await;
    (server, sink)
}

/// A user with a password and an email, verified or not.
async fn add_user(server: &TestServer, name: &str, email: &str, verified: bool) {
    let hash = server
        .state
        .hasher
        .hash("carol's own passphrase".into())
        .await
        .unwrap();
    users::create(
        &*server.state.store,
        NewUser {
            username: name.into(),
            email: Some(email.into()),
            email_verified: verified,
            password_hash: Some(hash),
            ..Default::default()
        },
        server.now(),
    )
    .await
    .unwrap();
}

/// Asks for a reset mail to `email` with `b` (the form first); the answer.
async fn forgot(server: &TestServer, b: &Browser, email: &str) -> Page {
    let page = b.get(&server.url(FORGOT)).await;
    page.assert_status(200);
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    b.post_form(&server.url(FORGOT), &[("csrf", &csrf), ("email", email)])
        .await
}

/// The page without its CSRF token.
fn without_csrf(page: &Page) -> String {
    match input_value(&page.text, "csrf") {
        Some(token) => page.text.replace(&token, "{csrf}"),
        None => page.text.clone(),
    }
}

fn assert_sent_page(page: &Page) {
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text
            .contains("If an account has that address, a mail with a link is on its way"),
        "{}",
        page.text
    );
}

fn recipients(mails: &[Received]) -> Vec<String> {
    mails.iter().map(|m| m.to.join(",")).collect()
}

/// Follows a mailed reset link in a fresh browser and sets `pw`.
async fn reset_through(server: &TestServer, mail: &Received, pw: &str) {
    let link = mail.link(&server.url("/reset/"));
    let b = Browser::new();
    let page = b.get(&link).await;
    page.assert_status(200);
    let action = form_action(&page.text).expect("a reset form");
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    let done = b
        .post_form(
            &action,
            &[("csrf", &csrf), ("password", pw), ("password_confirm", pw)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("Your password was changed"));
}

async fn sign_in_status(server: &TestServer, name: &str, pw: &str) -> u16 {
    let b = Browser::new();
    let landing = b.get(&server.url("/account")).await;
    b.submit_login(&landing, name, pw).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_your_password_is_offered_only_with_smtp() {
    let plain = TestServer::start("").await;
    let b = Browser::new();
    let landing = b.get(&plain.url("/account")).await;
    assert!(landing.login_form().is_some());
    assert!(
        !landing.text.contains("Forgot your password?"),
        "{}",
        landing.text
    );
    assert_eq!(b.get(&plain.url(FORGOT)).await.status, 404);

    let (server, _sink) = with_sink().await;
    let b = Browser::new();
    let landing = b.get(&server.url("/account")).await;
    assert!(
        landing.text.contains("Forgot your password?"),
        "{}",
        landing.text
    );
    assert!(html_unescape(&landing.text).contains(&format!("href=\"{}\"", server.url(FORGOT))));
    let page = b.get(&server.url(FORGOT)).await;
    page.assert_status(200);
    assert!(page.text.contains("name=\"email\""));
    // CSRF: a post without this browser's token is refused.
    let forged = Browser::new()
        .post_form(
            &server.url(FORGOT),
            &[("csrf", "x"), ("email", ALICE_EMAIL)],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_the_same_and_only_a_verified_address_gets_a_link_that_works() {
    let (server, sink) = with_sink().await;
    add_user(&server, "dave", "dave@example.com", false).await;
    let b = Browser::new();
    let unknown = forgot(&server, &b, "nobody@example.com").await;
    let unverified = forgot(&server, &b, "dave@example.com").await;
    let known = forgot(&server, &b, " Alice@Example.COM ").await;
    for page in [&unknown, &unverified, &known] {
        assert_sent_page(page);
    }
    assert_eq!(without_csrf(&unknown), without_csrf(&known), "no oracle");
    assert_eq!(without_csrf(&unverified), without_csrf(&known), "no oracle");

    let mails = sink.wait_for(1).await;
    assert_eq!(
        recipients(&mails),
        [ALICE_EMAIL],
        "only alice's verified address"
    );
    let mail = &mails[0];
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Reset your password on 127.0.0.1")
    );
    assert!(mail.header("From").unwrap().contains("sso@example.com"));
    assert!(mail.body().contains("Hello alice,"), "{}", mail.body());
    reset_through(&server, mail, NEW_PASSWORD).await;
    assert_eq!(sign_in_status(&server, ALICE, ALICE_PASSWORD).await, 401);
    assert_eq!(sign_in_status(&server, ALICE, NEW_PASSWORD).await, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_for_one_address_sends_at_most_three_mails_and_ips_are_limited() {
    let (server, sink) = with_sink().await;
    server.clock.freeze();
    add_user(&server, "carol", "carol@example.com", true).await;
    let b = Browser::new();
    let page = b.get(&server.url(FORGOT)).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    let url = server.url(FORGOT);
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let (b, url, csrf) = (b.clone(), url.clone(), csrf.clone());
            tokio::spawn(async move {
                b.post_form(&url, &[("csrf", csrf.as_str()), ("email", ALICE_EMAIL)])
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in burst {
        answers.push(h.await.unwrap());
    }
    let first = without_csrf(&answers[0]);
    for a in &answers {
        assert_sent_page(a);
        assert_eq!(
            without_csrf(a),
            first,
            "over a limit the answer is the same"
        );
    }
    // The IP's budget is used up too: carol gets nothing now ...
    assert_sent_page(&forgot(&server, &b, "carol@example.com").await);
    // ... but an hour later she does, after at most three mails for alice.
    server.clock.advance(3600);
    assert_sent_page(&forgot(&server, &b, "carol@example.com").await);
    let mails = sink.wait_for(4).await;
    // The links are made after the answers, so the mails may arrive in any order.
    let mut to = recipients(&mails);
    to.sort();
    assert_eq!(
        to,
        [ALICE_EMAIL, ALICE_EMAIL, ALICE_EMAIL, "carol@example.com"],
        "three for alice, and carol's"
    );
}

/// `doorman ARGS --config CONFIG` through the real binary.
fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = doorman_command();
    cmd.args(args).arg("--config").arg(config);
    output_with_stdin(cmd, "")
}

/// A test server with `extra` and a config file for the binary on the same data directory.
async fn server_with_config(extra: &str) -> (TestServer, std::path::PathBuf) {
    let opts = Options {
        extra_toml: extra.to_string(),
        ..Default::default()
    };
    let server = TestServer::start_with(opts.clone()).await;
    let config = server.dir.path().join("doorman.toml");
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();
    (server, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_create_send_mails_the_link_and_it_makes_the_account() {
    let sink = SmtpSink::start().await;
    let (server, config) = server_with_config(&sink.toml()).await;
    let out = cli(
        &config,
        &[
            "invite",
            "create",
            "--groups",
            "family",
            "--email",
            "erin@example.com",
            "--send",
        ],
    );
    assert_ok(&out, "invite create --send");
    let stdout = text(&out.stdout);
    let printed = stdout.lines().last().unwrap().to_string();
    assert!(printed.starts_with(&server.url("/invite/")), "{stdout}");
    assert!(text(&out.stderr).contains("mailed the invite to erin@example.com"));

    let mails = sink.wait_for(1).await;
    assert_eq!(recipients(&mails), ["erin@example.com"]);
    let mail = &mails[0];
    assert!(mail
        .header("Subject")
        .unwrap()
        .starts_with("You are invited to"));
    let link = mail.link(&server.url("/invite/"));
    assert_eq!(link, printed, "the mailed link is the printed one");

    let b = Browser::new();
    let page = b.get(&link).await;
    page.assert_status(200);
    let action = form_action(&page.text).unwrap();
    let csrf = input_value(&page.text, "csrf").unwrap();
    let pw = "erin's long passphrase";
    let made = b
        .post_form(
            &action,
            &[
                ("csrf", csrf.as_str()),
                ("username", "erin"),
                ("password", pw),
                ("password_confirm", pw),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let erin = server
        .state
        .store
        .find_user_by_username("erin")
        .await
        .unwrap()
        .expect("the account was made");
    assert_eq!(erin.email.as_deref(), Some("erin@example.com"));
    assert!(erin.email_verified);
    assert_eq!(erin.groups, ["family"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_create_send_needs_an_email_and_smtp_and_names_the_smtp_error() {
    let (_server, config) = server_with_config("").await;
    let out = cli(&config, &["invite", "create", "--send"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--send needs --email"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(
        &config,
        &["invite", "create", "--email", "e@example.com", "--send"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("[smtp]"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).is_empty(),
        "no invite made: {}",
        text(&out.stdout)
    );

    // A server that is not there: the link is printed, then the SMTP error, and exit non-zero.
    let port = free_port();
    let smtp = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"sso@example.com\"\ntimeout = \"2s\"\n"
    );
    let (server, config) = server_with_config(&smtp).await;
    let out = cli(
        &config,
        &["invite", "create", "--email", "e@example.com", "--send"],
    );
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with(&server.url("/invite/")),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mailing it to e@example.com failed"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// Signs `b` in through /account; the account page.
async fn account_page(server: &TestServer, b: &Browser, user: &str, pw: &str) -> Page {
    let landing = b.get(&server.url("/account")).await;
    let done = b.submit_login(&landing, user, pw).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = b.get(&server.url("/account")).await;
    page.assert_status(200);
    page
}

async fn change_email(server: &TestServer, b: &Browser, email: &str) {
    let page = b.get(&server.url("/account")).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    let done = b
        .post_form(
            &server.url("/account/profile"),
            &[("csrf", csrf.as_str()), ("name", "Alice"), ("email", email)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
}

async fn alice_now(server: &TestServer) -> doorman::store::User {
    server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_email_is_confirmed_by_a_mailed_link_only_while_it_is_the_accounts() {
    let sink = SmtpSink::start().await;
    let extra = format!("[accounts]\nusers_may_change_email = true\n{}", sink.toml());
    let server = TestServer::start(&extra).await;
    let b = Browser::new();
    account_page(&server, &b, ALICE, ALICE_PASSWORD).await;

    change_email(&server, &b, "alice@first.example").await;
    change_email(&server, &b, "alice@second.example").await;
    assert!(!alice_now(&server).await.email_verified);
    let mails = sink.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        ["alice@first.example", "alice@second.example"]
    );
    assert!(mails[1]
        .header("Subject")
        .unwrap()
        .starts_with("Confirm your email address"));
    let prefix = server.url("/account/confirm-email/");
    let (stale, fresh) = (mails[0].link(&prefix), mails[1].link(&prefix));

    // The first address is no longer the account's: its link confirms nothing.
    let other = Browser::new();
    let page = other.get(&stale).await;
    assert_eq!(page.status, 410, "{}", page.text);

    // Opening the right link changes nothing; its button does.
    let page = other.get(&fresh).await;
    page.assert_status(200);
    assert!(page.text.contains("alice@second.example"), "{}", page.text);
    assert!(
        !alice_now(&server).await.email_verified,
        "a GET confirms nothing"
    );
    let action = form_action(&page.text).unwrap();
    let csrf = input_value(&page.text, "csrf").unwrap();
    let forged = Browser::new()
        .post_form(&action, &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(forged.status, 403, "CSRF: {}", forged.text);
    let done = other.post_form(&action, &[("csrf", csrf.as_str())]).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("Your email address is confirmed"));
    let alice = alice_now(&server).await;
    assert_eq!(alice.email.as_deref(), Some("alice@second.example"));
    assert!(alice.email_verified);
    // Single use.
    assert_eq!(
        other
            .post_form(&action, &[("csrf", csrf.as_str())])
            .await
            .status,
        410
    );
}

/// Alice (an admin) signed in on /admin/invites in `b`; the page.
async fn admin_invites(server: &TestServer, b: &Browser) -> Page {
    let landing = b.get(&server.url("/admin/invites")).await;
    let done = b.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = b.get(&server.url("/admin/invites")).await;
    page.assert_status(200);
    page
}

async fn post_invite(
    server: &TestServer,
    b: &Browser,
    page: &Page,
    fields: &[(&str, &str)],
) -> Page {
    let csrf = input_value(&page.text, "csrf").unwrap();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(&server.url("/admin/invites"), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_invites_page_sends_by_mail_only_with_smtp() {
    let plain = TestServer::start("").await;
    let b = Browser::new();
    let page = admin_invites(&plain, &b).await;
    assert!(
        !page.text.contains("name=\"send\""),
        "no checkbox without [smtp]"
    );
    let refused = post_invite(
        &plain,
        &b,
        &page,
        &[("email", "frank@example.com"), ("send", "1")],
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("Mail is not set up"),
        "{}",
        refused.text
    );

    let (server, sink) = with_sink().await;
    let b = Browser::new();
    let page = admin_invites(&server, &b).await;
    assert!(page.text.contains("name=\"send\""), "{}", page.text);
    let refused = post_invite(&server, &b, &page, &[("send", "1")]).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("type the email address"),
        "{}",
        refused.text
    );

    let made = post_invite(
        &server,
        &b,
        &page,
        &[
            ("email", "frank@example.com"),
            ("groups", "family"),
            ("send", "1"),
        ],
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text);
    assert!(
        made.text
            .contains("on its way by mail to frank@example.com"),
        "{}",
        made.text
    );
    let marker = "class=\"one-time-link\">";
    let at = made.text.find(marker).unwrap() + marker.len();
    let shown = html_unescape(&made.text[at..at + made.text[at..].find('<').unwrap()]);
    let mails = sink.wait_for(1).await;
    assert_eq!(recipients(&mails), ["frank@example.com"]);
    let link = mails[0].link(&server.url("/invite/"));
    assert_eq!(link, shown, "the mailed link is the one shown");
    let invite = Browser::new().get(&link).await;
    invite.assert_status(200);
    assert!(invite.text.contains("frank@example.com"), "{}", invite.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_mails_a_reset_link_only_to_a_verified_address() {
    let (server, sink) = with_sink().await;
    add_user(&server, "carol", "carol@example.com", true).await;
    add_user(&server, "dave", "dave@example.com", false).await;
    let store = &server.state.store;
    let carol = store.find_user_by_username("carol").await.unwrap().unwrap();
    let dave = store.find_user_by_username("dave").await.unwrap().unwrap();
    let b = Browser::new();
    let landing = b
        .get(&server.url(&format!("/admin/users/{}", carol.id)))
        .await;
    let done = b.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = b
        .get(&server.url(&format!("/admin/users/{}", carol.id)))
        .await;
    page.assert_status(200);
    assert!(
        page.text.contains("Also mail it to carol@example.com"),
        "{}",
        page.text
    );
    let csrf = input_value(&page.text, "csrf").unwrap();
    let made = b
        .post_form(
            &server.url(&format!("/admin/users/{}/reset-link", carol.id)),
            &[("csrf", csrf.as_str()), ("send", "1")],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    assert!(
        made.text
            .contains("The link was mailed to carol@example.com"),
        "{}",
        made.text
    );
    let mails = sink.wait_for(1).await;
    assert_eq!(recipients(&mails), ["carol@example.com"]);
    reset_through(&server, &mails[0], NEW_PASSWORD).await;
    assert_eq!(sign_in_status(&server, "carol", NEW_PASSWORD).await, 303);

    // Dave's address is unverified: no checkbox, and a forged one is refused.
    let page = b
        .get(&server.url(&format!("/admin/users/{}", dave.id)))
        .await;
    page.assert_status(200);
    assert!(!page.text.contains("Also mail it to"), "{}", page.text);
    let refused = b
        .post_form(
            &server.url(&format!("/admin/users/{}/reset-link", dave.id)),
            &[("csrf", csrf.as_str()), ("send", "1")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("no verified email address"),
        "{}",
        refused.text
    );
    assert_eq!(sink.messages().len(), 1, "nothing more was mailed");
}
