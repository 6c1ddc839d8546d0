//! Sign in with Plex in a real browser (headless Chromium through playwright-core, script in
//! tests/browser/): the landing page's own script opens the popup, the fake Auth App approves,
//! the popup closes itself on /login/plex/done and the page lands on the relying party with a
//! code. Also the same-tab fallback and `plex.mode = "redirect"`.
//!
//! Needs /usr/bin/chromium and tests/browser/node_modules, which `scripts/test` installs; it
//! runs only when DOORMAN_BROWSER_TESTS=1 (as `scripts/test` sets it), so a plain `cargo test`
//! works on a machine without Chromium. When enabled, a missing tool is a failure, not a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::fake_plex::*;
use crate::common::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT_ID: &str = "browser-rp";
const CLIENT_SECRET: &str = "browser-rp-secret-0123";

pub(crate) fn enabled(test: &str) -> bool {
    if std::env::var("DOORMAN_BROWSER_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipping {test}: set DOORMAN_BROWSER_TESTS=1 (scripts/test does) to run the real-browser tests");
    false
}

pub(crate) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails (never skips) when what the browser tests need is missing.
pub(crate) fn require_tools() {
    let dir = browser_dir();
    let missing: Vec<String> = [
        (
            PathBuf::from(CHROMIUM),
            "Chromium (Debian package chromium)",
        ),
        (
            dir.join("node_modules/playwright-core"),
            "tests/browser/node_modules (npm ci)",
        ),
    ]
    .into_iter()
    .filter(|(p, _)| !p.exists())
    .map(|(p, what)| format!("{} ({what})", p.display()))
    .collect();
    assert!(
        missing.is_empty(),
        "the browser tests need {}: run scripts/test, which installs them",
        missing.join(" and ")
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser tests need node (and npm): install Node.js 20 or later, then run scripts/test"
    );
}

/// The relying party: answers 200 "ok" at its redirect URI and records what it was sent.
pub(crate) struct RpStub {
    pub(crate) redirect: String,
    pub(crate) hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn rp_stub() -> RpStub {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(uri.to_string());
            ([(axum::http::header::CONTENT_TYPE, "text/plain")], "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/cb", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    RpStub {
        redirect,
        hits,
        task,
    }
}

/// Runs `node tests/browser/plex-login.mjs ARGS`, killed after `limit`.
fn run_node(args: &Value, limit: Duration) -> (Value, String) {
    run_script("plex-login.mjs", args, limit)
}

/// Runs `node tests/browser/SCRIPT ARGS`, killed after `limit`: its last JSON line and stderr.
pub(crate) fn run_script(script: &str, args: &Value, limit: Duration) -> (Value, String) {
    let mut child = Command::new("node")
        .arg(script)
        .arg(args.to_string())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the browser script took over {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON from the browser script ({:?});\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        });
    assert!(
        out.status.success(),
        "the browser script failed ({:?}): {report:#}\nstderr:\n{stderr}",
        out.status
    );
    (report, stderr)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Popup,
    SameTab,
    Redirect,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Popup => "popup",
            Mode::SameTab => "same-tab",
            Mode::Redirect => "redirect",
        }
    }
}

/// doorman (with the fake and the RP stub), an authorization request, and where the landing
/// page's screenshot goes.
struct Setup {
    fake: FakePlex,
    rp: RpStub,
    server: TestServer,
    url: String,
    state: String,
    verifier: String,
    shot: PathBuf,
}

async fn setup(mode: Mode, next_user: &str, shot_name: &str) -> Setup {
    require_tools();
    let fake = FakePlex::start().await;
    fake.set_next_user(next_user);
    let rp = rp_stub().await;
    let client = format!(
        "[[clients]]\nid = \"{CLIENT_ID}\"\nname = \"Browser RP\"\nsecret = \"{CLIENT_SECRET}\"\nredirect_uris = [\"{}\"]\n",
        rp.redirect
    );
    let (plex_keys, tables) = match mode {
        Mode::Redirect => (
            "mode = \"redirect\"\n",
            format!("[login]\nmethods = [\"plex\"]\n{client}"),
        ),
        _ => ("", client),
    };
    let server = start_doorman(&fake, "", plex_keys, &tables).await;
    let (verifier, challenge) = pkce_pair();
    let state = random_string();
    let url = server.authorize_url(
        CLIENT_ID,
        &rp.redirect,
        "openid profile email groups",
        &state,
        Some("browser-nonce"),
        Some(&challenge),
        &[],
    );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots")
        .join(shot_name);
    Setup {
        fake,
        rp,
        server,
        url,
        state,
        verifier,
        shot,
    }
}

impl Setup {
    async fn run(&self, mode: Mode, expect_error: bool) -> Value {
        let args = serde_json::json!({
            "authorize_url": self.url,
            "rp_prefix": self.rp.redirect,
            "screenshot": self.shot,
            "mode": mode.name(),
            "timeout_ms": 30000,
            "expect_error": expect_error,
        });
        let (report, _stderr) =
            tokio::task::spawn_blocking(move || run_node(&args, Duration::from_secs(120)))
                .await
                .unwrap();
        assert_eq!(
            report["scriptErrors"],
            serde_json::json!([]),
            "no script errors: {report:#}"
        );
        report
    }
}

async fn sign_in_in_chromium(mode: Mode) {
    let t0 = Instant::now();
    let shot_name = match mode {
        Mode::Popup => "plex-landing.png".to_string(),
        other => format!("plex-landing-{}.png", other.name()),
    };
    let s = setup(mode, P_ALICE, &shot_name).await;
    let report = s.run(mode, false).await;
    let (fake, rp, server, shot) = (&s.fake, &s.rp, &s.server, &s.shot);
    let landed = report["url"].as_str().unwrap_or_default();
    assert!(landed.starts_with(&rp.redirect), "{report:#}");
    let q = query(&url::Url::parse(landed).unwrap());
    assert_eq!(q.get("state"), Some(&s.state), "{report:#}");
    assert_eq!(q.get("iss"), Some(&server.base), "{report:#}");
    let code = report["code"].as_str().expect("a code").to_string();
    assert_eq!(q.get("code"), Some(&code));
    assert!(
        rp.hits.lock().unwrap().iter().any(|h| h.contains(&code)),
        "the RP page loaded with the code"
    );
    assert_eq!(report["body"], "ok", "{report:#}");
    match mode {
        Mode::Popup => {
            assert_eq!(
                report["popupOpened"], true,
                "the popup opened (not blocked): {report:#}"
            );
            assert_eq!(
                report["popupClosed"], true,
                "the popup closed itself: {report:#}"
            );
            assert!(shot.exists(), "a screenshot at {}", shot.display());
            assert!(
                report["landingTitle"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Sign in"),
                "{report:#}"
            );
        }
        Mode::SameTab => assert_eq!(report["popupOpened"], false),
        Mode::Redirect => {}
    }
    let http_errors: Vec<&Value> = report["httpErrors"]
        .as_array()
        .expect("httpErrors")
        .iter()
        .filter(|e| !e["url"].as_str().unwrap_or("").ends_with("/favicon.ico"))
        .collect();
    assert!(http_errors.is_empty(), "no failed requests: {report:#}");
    let approved: Vec<_> = fake
        .pins()
        .into_iter()
        .filter(|p| p.approved_by.as_deref() == Some(P_ALICE))
        .collect();
    assert_eq!(approved.len(), 1, "the Auth App page approved one PIN");

    let page = server
        .token_basic(
            CLIENT_ID,
            CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &rp.redirect),
                ("code_verifier", &s.verifier),
            ],
        )
        .await;
    page.assert_status(200);
    let claims = jwt_claims(page.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@plex.example");
    assert_eq!(claims["nonce"], "browser-nonce");
    assert_eq!(claims["amr"], serde_json::json!(["plex"]));
    eprintln!(
        "browser sign-in ({}) took {:.1} s",
        mode.name(),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_popup_sign_in_in_chromium() {
    if enabled("plex_popup_sign_in_in_chromium") {
        sign_in_in_chromium(Mode::Popup).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_same_tab_sign_in_in_chromium() {
    if enabled("plex_same_tab_sign_in_in_chromium") {
        sign_in_in_chromium(Mode::SameTab).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_redirect_mode_sign_in_in_chromium() {
    if enabled("plex_redirect_mode_sign_in_in_chromium") {
        sign_in_in_chromium(Mode::Redirect).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_popup_denial_is_shown_on_the_landing_page_in_chromium() {
    if !enabled("plex_popup_denial_is_shown_on_the_landing_page_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup(Mode::Popup, P_BOB, "plex-denied.png").await;
    let report = s.run(Mode::Popup, true).await;
    assert_eq!(report["popupOpened"], true, "{report:#}");
    assert!(report["code"].is_null(), "{report:#}");
    let status = report["status"].as_str().unwrap_or_default();
    assert!(status.contains("access to this server"), "{report:#}");
    assert_eq!(report["buttonText"], "Try again with Plex", "{report:#}");
    assert!(s.rp.hits.lock().unwrap().is_empty(), "never sent to the RP");
    eprintln!(
        "browser denial (popup) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
