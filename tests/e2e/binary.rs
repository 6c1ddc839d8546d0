//! The `doorman` binary: its command line, and `serve` as a separate process (key rotation
//! picked up while running, no secrets in the logs, durability across `kill -9`).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::*;

fn doorman() -> Command {
    doorman_command()
}

fn run(args: &[&str]) -> Output {
    doorman().args(args).stdin(Stdio::null()).output().unwrap()
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut cmd = doorman();
    cmd.args(args);
    output_with_stdin(cmd, stdin)
}

/// A directory with a config file for the binary, on a port of its own.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
            port: 0,
        };
        s.with_new_port()
    }

    fn with_new_port(mut self) -> Setup {
        self.port = free_port();
        let config = config_text(
            self.port,
            &self.dir.path().join("data"),
            &Options::default(),
        );
        std::fs::write(self.config(), config).unwrap();
        self
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("doorman.toml")
    }

    fn config_str(&self) -> String {
        self.config().display().to_string()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `doorman ARGS --config <this config>`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config_str();
        all.extend(["--config", &config]);
        run(&all)
    }

    fn add_user(&self, name: &str, password: &str, extra: &[&str]) -> Output {
        let config = self.config_str();
        let mut args = vec!["user", "add", name, "--password-stdin", "--config", &config];
        args.extend(extra);
        run_with_stdin(&args, &format!("{password}\n"))
    }

    fn add_alice(&self) {
        let out = self.add_user(
            ALICE,
            ALICE_PASSWORD,
            &["--email", ALICE_EMAIL, "--groups", "admins"],
        );
        assert_ok(&out, "user add alice");
    }
}

/// `doorman serve` as a child process; killed if the test ends early.
struct Serve {
    child: Option<Child>,
    idp: Idp,
}

impl Serve {
    /// Starts `serve` and waits until /healthz answers (a port collision moves to another port).
    async fn start(setup: Setup, extra_args: &[&str]) -> (Setup, Serve) {
        let mut setup = setup;
        for _ in 0..5 {
            let config = setup.config_str();
            let mut args = vec!["serve", "--config", config.as_str()];
            args.extend(extra_args);
            let child = doorman()
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut serve = Serve {
                child: Some(child),
                idp: Idp::new(setup.base()),
            };
            if serve.wait_healthy().await {
                return (setup, serve);
            }
            let out = serve.child.take().unwrap().wait_with_output().unwrap();
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("cannot listen"),
                "serve exited:\nstdout:\n{}\nstderr:\n{stderr}",
                text(&out.stdout)
            );
            setup = setup.with_new_port();
        }
        panic!("serve never started");
    }

    /// Polls /healthz for up to 20 s; false if the process exited.
    async fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.idp.url("/healthz");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let _ = status;
                return false;
            }
            if let Ok(r) = self.idp.http.get(&url).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not become healthy within 20 s");
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    /// Sends a signal with the `kill` command and collects the process's output.
    fn signal_and_wait(mut self, signal: &str) -> Output {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .unwrap();
        assert!(status.success());
        let child = self.child.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("serve did not exit within 20 s of the signal")
            .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn version() {
    let out = run(&["--version"]);
    assert_ok(&out, "--version");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("doorman"), "{stdout}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn example_config_checks_in_an_empty_environment() {
    let out = run(&["check-config", "--config", "config/doorman.example.toml"]);
    assert_ok(&out, "check-config of the example");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn invalid_configs_fail_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown key",
            "[session]\nidle_timout = \"1h\"\n",
            vec!["session.idle_timout", "idle_timeout"],
        ),
        (
            "duration without a unit",
            "[session]\nidle_timeout = \"12\"\n",
            vec!["session.idle_timeout"],
        ),
        (
            "short client secret",
            "[[clients]]\nid = \"app\"\nsecret = \"too-short\"\nredirect_uris = [\"https://app.example/cb\"]\n",
            vec!["clients[0].secret", "16"],
        ),
        (
            "the example's old placeholder secret",
            "[[clients]]\nid = \"app\"\nsecret = \"change-me-to-a-long-random-secret\"\nredirect_uris = [\"https://app.example/cb\"]\n",
            vec!["clients[0].secret", "published", "doorman client secret"],
        ),
        (
            "a public suffix as cookie domain",
            "[session]\ncookie_domain = \"com\"\n",
            vec!["session.cookie_domain", "public suffix", "example.com"],
        ),
        (
            "all three at once",
            "[session]\nidle_timout = \"1h\"\n[tokens]\naccess_token_lifetime = \"ten minutes\"\n[[clients]]\nid = \"app\"\nsecret = \"too-short\"\nredirect_uris = [\"https://app.example/cb\"]\n",
            vec!["session.idle_timout", "tokens.access_token_lifetime", "clients[0].secret"],
        ),
    ];
    for (what, toml, needles) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let out = run(&["check-config", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{what}: accepted");
        let stderr = text(&out.stderr);
        for n in needles {
            assert!(stderr.contains(n), "{what}: {n:?} not in stderr:\n{stderr}");
        }
    }
    // The hint for the typo.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[session]\nidle_timout = \"1h\"\n",
    )
    .unwrap();
    let out = run(&[
        "check-config",
        "--config",
        dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    assert!(text(&out.stderr).contains("did you mean `idle_timeout`?"));
    // A missing file.
    let out = run(&["check-config", "--config", "/nonexistent/doorman.toml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/doorman.toml"));
}

#[test]
fn user_add_list_and_taken_names() {
    let setup = Setup::new();
    let out = setup.add_user(
        "carol",
        "carol-password-1",
        &["--email", "carol@example.com", "--groups", "staff,ops"],
    );
    assert_ok(&out, "user add carol");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("created user carol"), "{stdout}");
    assert!(
        !stdout.contains("carol-password-1") && !text(&out.stderr).contains("carol-password-1"),
        "the password is never echoed"
    );

    let out = setup.run(&["user", "list"]);
    assert_ok(&out, "user list");
    let list = text(&out.stdout);
    let line = list
        .lines()
        .find(|l| l.starts_with("carol "))
        .unwrap_or_else(|| panic!("carol not listed:\n{list}"));
    assert!(
        line.contains("carol@example.com") && line.contains("staff,ops"),
        "{line}"
    );
    assert!(line.contains("active"), "{line}");

    // Taken, whatever the case.
    for name in ["carol", "Carol"] {
        let out = setup.add_user(name, "another-password", &[]);
        assert!(!out.status.success(), "{name} added twice");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("already taken"), "{stderr}");
    }
    // Too short a password.
    let out = setup.add_user("dave", "short", &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("at least 10 characters"));
    let list = text(&setup.run(&["user", "list"]).stdout);
    assert!(!list.contains("dave"), "{list}");
}

#[test]
fn client_secret_prints_a_secret_and_its_hash() {
    let out = run(&["client", "secret"]);
    assert_ok(&out, "client secret");
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
    };
    let secret = field("secret:");
    let hash = field("secret_hash:");
    assert!(secret.len() >= 32, "{secret}");
    let expected: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected, "secret_hash is the SHA-256 of the secret");
    assert_ne!(
        text(&run(&["client", "secret"]).stdout),
        stdout,
        "a new secret every time"
    );

    // The hash is accepted as a client's secret_hash.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[[clients]]\nid = \"app\"\nsecret_hash = \"{hash}\"\nredirect_uris = [\"https://app.example/cb\"]\n"),
    )
    .unwrap();
    assert_ok(
        &run(&["check-config", "--config", path.to_str().unwrap()]),
        "check-config with secret_hash",
    );
}

#[test]
fn backup_writes_a_usable_copy() {
    let setup = Setup::new();
    setup.add_alice();
    let backup = setup.dir.path().join("backups").join("copy.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let out = setup.run(&["backup", backup.to_str().unwrap()]);
    assert_ok(&out, "backup");
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"), "an SQLite file");

    // Restoring it: a data dir holding the copy lists the same user.
    let restored = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(restored.path().join("data")).unwrap();
    std::fs::copy(&backup, restored.path().join("data").join("doorman.db")).unwrap();
    let config = restored.path().join("doorman.toml");
    std::fs::write(
        &config,
        format!("data_dir = '{}'\n", restored.path().join("data").display()),
    )
    .unwrap();
    let out = run(&["user", "list", "--config", config.to_str().unwrap()]);
    assert_ok(&out, "user list on the restored copy");
    assert!(text(&out.stdout).contains(ALICE_EMAIL));
}

async fn jwks_kids(idp: &Idp) -> Vec<String> {
    let jwks = Browser::new().get(&idp.url("/jwks.json")).await.json();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reaches_a_running_server() {
    let setup = Setup::new();
    setup.add_alice();
    let (setup, serve) = Serve::start(setup, &[]).await;
    let idp = serve.idp.clone();
    let before = jwks_kids(&idp).await;
    assert_eq!(before.len(), 1);
    let browser = Browser::new();
    let t = idp
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(jwt_header(&t.id_token)["kid"], before[0].as_str());

    let out = setup.run(&["keys", "rotate"]);
    assert_ok(&out, "keys rotate");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("starts signing at") && stdout.contains(" UTC"),
        "the CLI says when the new key signs: {stdout}"
    );
    let new_kid = stdout
        .split_whitespace()
        .skip_while(|w| *w != "key")
        .nth(1)
        .unwrap_or_else(|| panic!("no kid in: {stdout}"))
        .to_string();
    assert_ne!(new_kid, before[0]);

    // The server reloads keys every 5 s: poll for up to ~8 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut kids = jwks_kids(&idp).await;
    while kids.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        kids = jwks_kids(&idp).await;
    }
    assert_eq!(kids.len(), 2, "JWKS after rotation: {kids:?}");
    assert!(kids.contains(&new_kid) && kids.contains(&before[0]));

    // Published now, but it signs only once every cached JWKS (max-age 300 s) can have it:
    // new id_tokens still use the old key (SSO, so no password this time).
    let t2 = idp
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(jwt_header(&t2.id_token)["kid"], before[0].as_str());
    // The old id_token is still a valid logout hint (its key is still published).
    let mut url = url::Url::parse(&idp.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &t.id_token)
        .append_pair("post_logout_redirect_uri", RP_LOGOUT_REDIRECT);
    let page = browser.get(url.as_str()).await;
    page.assert_status(302);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secrets_in_the_logs() {
    let setup = Setup::new();
    setup.add_alice();
    let (_setup, serve) = Serve::start(setup, &["--log-format", "json"]).await;
    let idp = serve.idp.clone();
    let browser = Browser::new();

    // A failed sign-in first, then the right password.
    let req = idp.auth_request(RP, "openid email offline_access");
    let page = browser.get(&req.url).await;
    let form = page.login_form().unwrap();
    let failed = browser
        .submit_login(&page, ALICE, "wrong-password-in-the-log")
        .await;
    failed.assert_status(401);
    let done = browser.submit_login(&failed, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let session = browser.cookie(&idp.base, "doorman_session").unwrap();
    let browser_cookie = browser.cookie(&idp.base, "doorman_csrf").unwrap();
    let code = query(&done.redirect())["code"].clone();
    let page = idp
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    page.assert_status(200);
    let t = Tokens::from_json(page.json(), code.clone());
    let page = idp.refresh(RP, t.refresh_token.as_deref().unwrap()).await;
    page.assert_status(200);
    let t2 = Tokens::from_json(page.json(), String::new());
    idp.userinfo(&t2.access_token).await.assert_status(200);
    // A bad client secret and a replayed code are logged too; their values must not be.
    idp.token_basic(
        RP,
        "a-wrong-client-secret-123",
        &[("grant_type", "authorization_code")],
    )
    .await
    .assert_status(401);
    idp.redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await
        .assert_status(400);
    // A PKCE mismatch (SSO gives a new code at once).
    let req2 = idp.auth_request(RP, "openid");
    let code2 = req2.code(&idp, &browser, ALICE, ALICE_PASSWORD).await;
    let wrong_verifier = format!("{}-wrong", req2.verifier);
    idp.redeem(RP, &code2, RP_REDIRECT, Some(&wrong_verifier))
        .await
        .assert_status(400);

    let out = serve.signal_and_wait("-TERM");
    let log = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "serve exits cleanly on SIGTERM: {:?}\n{stderr}",
        out.status
    );
    assert!(
        log.contains("\"event\":\"sign_in\""),
        "no sign-in audit line:\n{log}"
    );
    assert!(
        log.contains("\"outcome\":\"failure\""),
        "no failed sign-in line:\n{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .collect();
    // Failures name the client and the reason: the client authentication, the replayed code,
    // the PKCE mismatch.
    let logged = |event: &str, reason: &str| {
        lines.iter().any(|l| {
            let f = if l.get("fields").is_some() {
                &l["fields"]
            } else {
                l
            };
            f["event"] == event
                && f["client"] == RP
                && f["reason"].as_str().is_some_and(|r| r.contains(reason))
        })
    };
    assert!(
        logged("client_auth", "failed"),
        "client_auth failure:\n{log}"
    );
    assert!(logged("code_exchange", "already used"), "replay:\n{log}");
    assert!(
        logged("code_exchange", "code_verifier"),
        "PKCE mismatch:\n{log}"
    );
    let secrets = [
        ("alice's password", ALICE_PASSWORD.to_string()),
        (
            "the wrong password",
            "wrong-password-in-the-log".to_string(),
        ),
        ("the code", code.clone()),
        ("the access token", t.access_token.clone()),
        ("the refresh token", t.refresh_token.clone().unwrap()),
        ("the id_token", t.id_token.clone()),
        ("the refreshed access token", t2.access_token.clone()),
        (
            "the refreshed refresh token",
            t2.refresh_token.clone().unwrap(),
        ),
        ("the refreshed id_token", t2.id_token.clone()),
        ("the client secret", RP_SECRET.to_string()),
        (
            "the wrong client secret",
            "a-wrong-client-secret-123".to_string(),
        ),
        ("the session cookie", session.clone()),
        ("the browser cookie", browser_cookie.clone()),
        ("the PKCE verifier", req.verifier.clone()),
        ("the second code", code2.clone()),
        ("the second PKCE verifier", req2.verifier.clone()),
        ("the wrong PKCE verifier", wrong_verifier.clone()),
        ("the sign-in flow id", form.flow.clone()),
        ("the sign-in CSRF token", form.csrf.clone()),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what}");
        assert!(!log.contains(&secret), "{what} is in the log:\n{log}");
        assert!(!stderr.contains(&secret), "{what} is on stderr:\n{stderr}");
    }
    // Nor the id_token's signature-less parts (a log of claims would show the payload).
    let payload = t.id_token.split('.').nth(1).unwrap();
    assert!(!log.contains(payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_kill_9() {
    let setup = Setup::new();
    setup.add_alice();
    let (setup, serve) = Serve::start(setup, &[]).await;
    let idp = serve.idp.clone();
    let browser = Browser::new();
    let req = idp.auth_request(RP, "openid offline_access");
    let code = req.code(&idp, &browser, ALICE, ALICE_PASSWORD).await;
    let page = idp
        .redeem(RP, &code, RP_REDIRECT, Some(&req.verifier))
        .await;
    page.assert_status(200);
    let rt = page.json()["refresh_token"].as_str().unwrap().to_string();

    let out = serve.signal_and_wait("-KILL");
    assert!(!out.status.success());

    // Same port (the issuer is in the config): a new process on the same data dir.
    let (_setup, serve) = Serve::start(setup, &[]).await;
    let idp = serve.idp.clone();
    let req = idp.auth_request(RP, "openid");
    let page = browser.get(&req.url).await;
    assert_eq!(page.status, 302, "SSO after kill -9: {}", page.text);
    let q = query(&page.redirect());
    assert!(q.contains_key("code"), "{q:?}");
    idp.refresh(RP, &rt).await.assert_status(200);
}

#[test]
fn environment_overrides_and_doorman_config() {
    let setup = Setup::new();
    // DOORMAN_CONFIG names the file; DOORMAN_ISSUER overrides the file's issuer.
    let out = doorman()
        .args(["check-config"])
        .env("DOORMAN_CONFIG", setup.config())
        .env("DOORMAN_ISSUER", "https://auth.example.org")
        .output()
        .unwrap();
    assert_ok(&out, "check-config from DOORMAN_CONFIG");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("https://auth.example.org"), "{stdout}");
    assert!(stdout.contains("6 client"), "{stdout}");
    // A bad value from the environment is named by its variable, with the key it sets.
    let out = doorman()
        .args(["check-config", "--config", &setup.config_str()])
        .env("DOORMAN_SESSION__IDLE_TIMEOUT", "forever")
        .env("DOORMAN_LOGIN__MAX_FAILURES_PER_IP", "many")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for needle in [
        "DOORMAN_SESSION__IDLE_TIMEOUT (environment): session.idle_timeout:",
        "DOORMAN_LOGIN__MAX_FAILURES_PER_IP (environment): login.max_failures_per_ip:",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    // A DOORMAN_CONFIG naming no file says so, and what to do.
    let out = doorman()
        .args(["user", "list"])
        .env("DOORMAN_CONFIG", "/nonexistent/doorman.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("DOORMAN_CONFIG=/nonexistent/doorman.toml: cannot read")
            && stderr.contains("unset DOORMAN_CONFIG or point it at the config file"),
        "{stderr}"
    );
    // --config wins over it.
    let out = doorman()
        .args(["check-config", "--config", &setup.config_str()])
        .env("DOORMAN_CONFIG", "/nonexistent/doorman.toml")
        .output()
        .unwrap();
    assert_ok(&out, "check-config --config with a stale DOORMAN_CONFIG");
}

#[test]
fn every_argument_has_help_and_typos_get_a_suggestion() {
    let out = run(&["usr", "add", "bob"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'usr'")
            && stderr.contains("a similar subcommand exists: 'user'"),
        "{stderr}"
    );
    let out = run(&["user", "pasword", "bob"]);
    assert!(
        text(&out.stderr).contains("'passwd'"),
        "{}",
        text(&out.stderr)
    );
    // Help describes the arguments, not only names them.
    let out = run(&["user", "passwd", "--help"]);
    assert_ok(&out, "user passwd --help");
    let help = text(&out.stdout);
    for needle in [
        "The user whose password to set",
        "--password-stdin",
        "Read the password from one line of standard input",
        "Ends the user's sessions",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
    let help = text(&run(&["backup", "--help"]).stdout);
    assert!(
        help.contains("an existing one is never overwritten"),
        "{help}"
    );
}

#[test]
fn user_set_without_a_flag_changes_nothing_and_says_why() {
    let setup = Setup::new();
    setup.add_alice();
    let out = setup.run(&["user", "set", ALICE]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("updated"));
    let stderr = text(&out.stderr);
    for flag in ["--email", "--name", "--groups"] {
        assert!(stderr.contains(flag), "{flag} not in: {stderr}");
    }
    // With a flag it still works.
    let out = setup.run(&["user", "set", ALICE, "--groups", "staff"]);
    assert_ok(&out, "user set --groups");
    assert!(text(&out.stdout).contains("updated user alice"));
}

#[test]
fn backup_to_an_existing_file_says_what_happened() {
    let setup = Setup::new();
    setup.add_alice();
    let target = setup.dir.path().join("copy.db");
    std::fs::write(&target, b"keep me").unwrap();
    let out = setup.run(&["backup", target.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "backup: {} already exists; choose another path or delete it",
            target.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("storage unavailable"), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_disable_reaches_a_running_server() {
    let setup = Setup::new();
    setup.add_alice();
    let (setup, serve) = Serve::start(setup, &[]).await;
    let idp = serve.idp.clone();
    let browser = Browser::new();
    let t = idp
        .code_flow(&browser, RP, "openid offline_access", ALICE, ALICE_PASSWORD)
        .await;

    let out = setup.run(&["user", "disable", ALICE]);
    assert_ok(&out, "user disable");
    // The promise is "within 5 seconds": the server's caches of users, sessions and access
    // tokens live that long. Wait that out, then everything must have taken effect.
    tokio::time::sleep(doorman::store::cached::TTL + std::time::Duration::from_millis(500)).await;
    let page = browser.get(&idp.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(page.login_form().is_some(), "SSO for a disabled user");
    let refresh = idp.refresh(RP, t.refresh_token.as_deref().unwrap()).await;
    assert_eq!(refresh.oauth_error(), "invalid_grant");
    idp.userinfo(&t.access_token).await.assert_status(401);
    let list = text(&setup.run(&["user", "list"]).stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice ") && l.contains("disabled")),
        "{list}"
    );

    let out = setup.run(&["user", "enable", ALICE]);
    assert_ok(&out, "user enable");
    let back = browser
        .login(&idp.auth_request(RP, "openid").url, ALICE, ALICE_PASSWORD)
        .await;
    assert!(query(&back).contains_key("code"));
    drop(serve);
}

/// A username is attacker input: one with a newline must not forge an audit line in the text
/// log, and a name that is no account (perhaps a password typed into the wrong field) is logged
/// as "unknown", never as typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_cannot_forge_log_lines_nor_leak_into_them() {
    let setup = Setup::new();
    setup.add_alice();
    let (_setup, serve) = Serve::start(setup, &[]).await;
    let idp = serve.idp.clone();
    let browser = Browser::new();
    let forged = "mallory\n2026-12-01T00:00:00.000000Z  INFO audit: event=\"sign_in\" method=\"password\" user=alice ip=127.0.0.1 outcome=\"success\"";
    let typed_password = "Hunter2-typed-into-the-username-field";
    let page = browser.get(&idp.auth_request(RP, "openid").url).await;
    let failed = browser.submit_login(&page, forged, "whatever").await;
    failed.assert_status(401);
    let failed = browser.submit_login(&failed, typed_password, "x").await;
    failed.assert_status(401);
    let failed = browser.submit_login(&failed, ALICE, "wrong-password").await;
    failed.assert_status(401);

    let out = serve.signal_and_wait("-TERM");
    let log = text(&out.stdout);
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit") && l.contains("sign_in"))
        .collect();
    assert_eq!(audit.len(), 3, "one line per attempt:\n{log}");
    assert!(
        !log.contains("outcome=\"success\""),
        "a forged success line:\n{log}"
    );
    assert!(!log.contains("user=alice ip=127.0.0.1 outcome"), "{log}");
    assert!(
        !log.contains(typed_password),
        "the typed text is logged:\n{log}"
    );
    assert!(
        !log.contains("mallory"),
        "an unknown name is logged:\n{log}"
    );
    assert_eq!(
        audit.iter().filter(|l| l.contains("user=unknown")).count(),
        2,
        "{log}"
    );
    assert!(audit.iter().any(|l| l.contains("user=alice")), "{log}");
}

/// An https issuer reached over plain http: the browser drops the Secure cookie, and the log
/// says so and names the likely cause (not just the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_issuer_over_plain_http_is_logged() {
    let setup = Setup::new();
    let opts = Options {
        issuer_override: Some(format!("https://127.0.0.1:{}", setup.port)),
        ..Default::default()
    };
    std::fs::write(
        setup.config(),
        config_text(setup.port, &setup.dir.path().join("data"), &opts),
    )
    .unwrap();
    let (setup, serve) = Serve::start(setup, &[]).await;
    let http = reqwest::Client::new();
    let url = idp_url_over_http(&serve.idp.auth_request(RP, "openid").url, setup.port);
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    let form = LoginForm::parse(&page).unwrap();
    let action = idp_url_over_http(&form.action, setup.port);
    let resp = http
        .post(&action)
        .form(&[
            ("flow", form.flow.as_str()),
            ("csrf", form.csrf.as_str()),
            ("username", ALICE),
            ("password", ALICE_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let out = serve.signal_and_wait("-TERM");
    let log = text(&out.stdout);
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("over plain http"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(line.contains("http://"), "{line}");
    assert!(line.contains("X-Forwarded-Proto"), "{line}");
}

fn idp_url_over_http(url: &str, port: u16) -> String {
    let u = url::Url::parse(url).unwrap();
    let mut s = format!("http://127.0.0.1:{port}{}", u.path());
    if let Some(q) = u.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

#[test]
fn check_config_refuses_plain_http_redirects_with_an_https_issuer_and_warns_of_an_http_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.toml");
    let client = |uri: &str, extra: &str| {
        format!(
            "[[clients]]\nid = \"app\"\nsecret = \"0123456789abcdef-app\"\nredirect_uris = [\"{uri}\"]\n{extra}"
        )
    };
    let check = |toml: String| {
        std::fs::write(&path, toml).unwrap();
        run(&["check-config", "--config", path.to_str().unwrap()])
    };
    let https = "issuer = \"https://auth.example.com\"\n";
    let out = check(format!(
        "{https}{}",
        client("http://app.example.com/cb", "")
    ));
    assert!(!out.status.success(), "accepted");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("clients[0].redirect_uris[0]")
            && stderr.contains("allow_http_redirect_uris = true"),
        "{stderr}"
    );
    let out = check(format!(
        "{https}{}",
        client(
            "http://192.168.1.20:8096/cb",
            "allow_http_redirect_uris = true"
        )
    ));
    assert_ok(&out, "a LAN app that opted in");
    let out = check(format!("{https}{}", client("http://localhost:5173/cb", "")));
    assert_ok(&out, "a loopback redirect");

    let out = check(format!(
        "issuer = \"http://auth.example.com\"\n{}",
        client("http://app.example.com/cb", "")
    ));
    assert_ok(&out, "an http issuer is a warning, not an error");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("http://auth.example.com") && all.contains("unencrypted"),
        "the warning is printed:\n{all}"
    );
}

/// The first start with no admin says how to make one (issue 11); once there is one, it
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_says_how_to_make_an_admin_until_there_is_one() {
    const LINE: &str = "no admin yet: make one with `doorman user add NAME --groups admins` or `doorman invite create --groups admins`";
    let setup = Setup::new();
    let out = setup.add_user("carol", "carol-password-1", &["--groups", "family"]);
    assert_ok(&out, "user add carol");
    let (setup, serve) = Serve::start(setup, &[]).await;
    let out = serve.signal_and_wait("-TERM");
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(log.contains(LINE), "no hint in:\n{log}");
    assert_eq!(log.matches("no admin yet").count(), 1, "one line:\n{log}");

    let out = setup.add_user("x", "x-password-123", &["--groups", "admins"]);
    assert_ok(&out, "user add x");
    let (_setup, serve) = Serve::start(setup, &[]).await;
    let out = serve.signal_and_wait("-TERM");
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(log.contains("doorman is listening"), "{log}");
    assert!(!log.contains("no admin yet"), "an admin exists:\n{log}");
}

/// `doorman user delete` retires the username as /admin's delete does: `user add` (and so
/// every invite) refuses it afterwards, in any case.
#[test]
fn cli_user_delete_keeps_the_name_reserved_like_admin_delete() {
    let setup = Setup::new();
    assert_ok(
        &setup.add_user("carol", "carol-password-1", &[]),
        "user add carol",
    );
    let out = setup.run(&["user", "delete", "carol"]);
    assert_ok(&out, "user delete carol");
    assert!(
        text(&out.stdout).contains("stays reserved"),
        "{}",
        text(&out.stdout)
    );
    for name in ["carol", "CAROL"] {
        let out = setup.add_user(name, "another-password", &[]);
        assert!(!out.status.success(), "{name} was given again");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("that username belonged to a deleted account and is not reused"),
            "{stderr}"
        );
    }
    assert_ok(
        &setup.add_user("carol2", "carol-password-2", &[]),
        "another name",
    );
}

/// `doorman integrate list`, which the /admin Clients page shows for a client that is not
/// one of the apps, prints the apps `integrate` knows.
#[test]
fn integrate_list_prints_the_apps_the_admin_clients_page_points_to() {
    let setup = Setup::new();
    let out = setup.run(&["integrate", "list"]);
    assert_ok(&out, "integrate list");
    let stdout = text(&out.stdout);
    // One app a line, its name first, then what it prints.
    let apps: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(apps, doorman::integrate::APPS, "{stdout}");
    assert!(
        stdout.lines().all(|l| l.split_whitespace().count() > 2),
        "{stdout}"
    );
}
