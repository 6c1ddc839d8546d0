//! `doorman user passwd` through the real binary, against a running server on the same data
//! dir: a new password ends the user's SSO and forward-auth sessions and revokes their grants
//! (so refresh tokens issued before stop working), and the password is read from standard input
//! (`--password-stdin`, or whenever it is not a terminal) or asked twice without echo on a
//! terminal (a pty made by util-linux `script`), by `user passwd` and `user add` alike.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::proxies::*;
use crate::common::*;

const HTML: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

/// The binary in an empty environment (PATH only).
fn doorman_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doorman"));
    c.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    c
}

/// `doorman ARGS --config CONFIG` with `stdin` piped in (not a terminal).
fn cli(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = doorman_bin();
    cmd.args(args).arg("--config").arg(config);
    output_with_stdin(cmd, stdin)
}

/// A forward-auth check as Traefik sends it, with `cookie`.
async fn forward_auth(doorman: &Doorman, cookie: &str) -> Page {
    send(
        plain_client().get(doorman.url("/forward-auth")),
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", APP_HOST),
            ("X-Forwarded-Uri", "/x"),
            ("Accept", HTML),
            ("Cookie", cookie),
        ],
    )
    .await
}

/// Whether a fresh browser can sign in as alice with `password`.
async fn signs_in(doorman: &Doorman, password: &str) -> bool {
    signs_in_as(doorman, ALICE, password).await
}

async fn signs_in_as(doorman: &Doorman, user: &str, password: &str) -> bool {
    let b = browser();
    let page = b.get(&doorman.url("/login")).await;
    page.assert_status(200);
    b.submit_login(&page, user, password).await.status == 303
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_passwd_ends_sessions_and_revokes_refresh_tokens() {
    let doorman = Doorman::start(&forward_auth_toml(r#"["127.0.0.1/32"]"#, "")).await;
    let b = browser();
    sign_in(&doorman, &b, ALICE, ALICE_PASSWORD).await;
    let fa = b
        .cookie(&format!("https://{APP_HOST}/"), "doorman_fa")
        .expect("a forward-auth cookie");
    let fa_cookie = format!("doorman_fa={fa}");
    forward_auth(&doorman, &fa_cookie).await.assert_status(200);
    // A code through SSO, and a refresh token for it.
    let req = doorman.server.idp.auth_request(RP, "openid offline_access");
    let page = b.get(&req.url).await;
    page.assert_status(302);
    let code = query(&page.redirect())["code"].clone();
    let token_endpoint = Idp::new(doorman.server.origin.clone());
    let page = token_endpoint
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    page.assert_status(200);
    let refresh_token = page.json()["refresh_token"].as_str().unwrap().to_string();

    // Not a terminal: one line of standard input, as before.
    let out = cli(
        &doorman.config_path,
        &["user", "passwd", ALICE],
        "alice-new-password\n",
    );
    assert_ok(&out, "user passwd");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("password changed for alice")
            && stdout.contains("ended 1 session, revoked 1 grant"),
        "{stdout}"
    );
    assert!(!stdout.contains("alice-new-password") && !text(&out.stderr).contains("alice-new"));

    // The server's caches hold sessions for up to 5 s (the README's promise): wait that out.
    tokio::time::sleep(doorman::store::cached::TTL + Duration::from_millis(500)).await;
    let page = b.get(&req.url).await;
    page.assert_status(200);
    assert!(
        page.login_form().is_some(),
        "the old SSO session still gets a code: {page:?}"
    );
    let refresh = token_endpoint.refresh(RP, &refresh_token).await;
    assert_eq!(refresh.oauth_error(), "invalid_grant", "{refresh:?}");
    let page = forward_auth(&doorman, &fa_cookie).await;
    page.assert_status(302);
    doorman.assert_login_redirect(&page.redirect(), &format!("https://{APP_HOST}/x"));
    assert!(!signs_in(&doorman, ALICE_PASSWORD).await, "old password");
    assert!(
        signs_in(&doorman, "alice-new-password").await,
        "new password"
    );

    // --password-stdin works on `user passwd` too; nothing left to end now but the session
    // the sign-in above made.
    let out = cli(
        &doorman.config_path,
        &["user", "passwd", ALICE, "--password-stdin"],
        "alice-third-password\n",
    );
    assert_ok(&out, "user passwd --password-stdin");
    assert!(
        text(&out.stdout).contains("ended 1 session, revoked 0 grants"),
        "{}",
        text(&out.stdout)
    );
    assert!(signs_in(&doorman, "alice-third-password").await);
    // Too short: refused, nothing changed.
    let out = cli(&doorman.config_path, &["user", "passwd", ALICE], "short\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("at least 10 characters"));
    assert!(signs_in(&doorman, "alice-third-password").await);
}

/// Runs `doorman ARGS` on a pty (`script -qec`), answering each prompt in `answers` once it
/// appears; returns everything the terminal showed, and whether the command succeeded.
fn on_a_terminal(args: &[&str], answers: &[(&str, &str)]) -> (String, bool) {
    let command = std::iter::once(env!("CARGO_BIN_EXE_doorman").to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script`");
    let shown = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = 0;
    for (prompt, answer) in answers {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = shown.lock().unwrap().clone();
            if let Some(i) = all[seen..].find(prompt) {
                seen += i + prompt.len();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} within 20 s; the terminal showed:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // rpassword prints its prompt a moment before it turns the terminal's echo off; type
        // like a person, a little after the prompt shows (on a loaded machine that moment
        // is longer than the 20 ms poll).
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let all = shown.lock().unwrap().clone();
    (all, status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_passwd_on_a_terminal_asks_twice_without_echo() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let doorman = Doorman::start("").await;
    let config = doorman.config_path.display().to_string();
    let args = ["user", "passwd", ALICE, "--config", &config];
    // Two entries that differ: asked again; then a matching pair.
    let (shown, ok) = on_a_terminal(
        &args,
        &[
            ("New password for alice: ", "typed-on-a-terminal-1"),
            ("Repeat the new password: ", "typed-on-a-terminal-2"),
            ("New password for alice: ", "typed-on-a-terminal-3"),
            ("Repeat the new password: ", "typed-on-a-terminal-3"),
        ],
    );
    assert!(ok, "{shown}");
    assert!(shown.contains("differ; try again"), "{shown}");
    assert!(shown.contains("password changed for alice"), "{shown}");
    assert!(
        !shown.contains("typed-on-a-terminal"),
        "the password was echoed:\n{shown}"
    );
    assert!(signs_in(&doorman, "typed-on-a-terminal-3").await);

    // Never two matching entries: a clear error, nothing changed.
    let answers: Vec<(&str, &str)> = (0..3)
        .flat_map(|_| {
            [
                ("New password for alice: ", "first-entry-xyz"),
                ("Repeat the new password: ", "second-entry-xyz"),
            ]
        })
        .collect();
    let (shown, ok) = on_a_terminal(&args, &answers);
    assert!(!ok, "{shown}");
    assert!(shown.contains("no password set"), "{shown}");
    assert!(signs_in(&doorman, "typed-on-a-terminal-3").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_on_a_terminal_asks_for_a_password() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let doorman = Doorman::start("").await;
    let config = doorman.config_path.display().to_string();
    let (shown, ok) = on_a_terminal(
        &["user", "add", "carol", "--config", &config],
        &[
            (
                "New password for carol (empty for none): ",
                "carol-on-a-terminal",
            ),
            ("Repeat the new password: ", "carol-on-a-terminal"),
        ],
    );
    assert!(ok && shown.contains("created user carol"), "{shown}");
    assert!(!shown.contains("carol-on-a-terminal"), "echoed:\n{shown}");
    assert!(signs_in_as(&doorman, "carol", "carol-on-a-terminal").await);
    // An empty answer: an account without a password, as before.
    let (shown, ok) = on_a_terminal(
        &["user", "add", "dave", "--config", &config],
        &[("New password for dave (empty for none): ", "")],
    );
    assert!(ok && shown.contains("no password set"), "{shown}");
}
