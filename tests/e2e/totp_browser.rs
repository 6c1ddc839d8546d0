//! Second factors in a real browser (headless Chromium through playwright-core, script
//! tests/browser/totp.mjs, run as tests/e2e/plex_browser.rs runs its script): enrol from a
//! signed-in session at /account/second-factor with codes the script computes itself from the
//! secret on the page (as an authenticator app would), sign out, password + code lands on the
//! relying party; a replayed code is refused; a recovery code works once, not twice; and with
//! `require_second_factor = "required"` a user without a factor is taken through enrolment,
//! then on to the relying party. Screenshots of the code, enrolment and recovery-codes pages at
//! 390 and 1280 px go to target/screenshots/second-factor-{code,enrol,recovery}-{390,1280}.png.
//!
//! The server's clock is frozen and its time handed to the script, so the codes it computes are
//! the server's: the previous step's code enrols, this step's signs in (and is then a replay),
//! the next step's signs in after that. Runs only when DOORMAN_BROWSER_TESTS=1.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::plex_browser::{enabled, require_tools, rp_stub, run_script, RpStub};

pub(crate) const CLIENT_ID: &str = "browser-rp";
pub(crate) const CLIENT_SECRET: &str = "browser-rp-secret-0123";

/// doorman with the browser RP's client, the RP stub, and an authorization URL for it (the
/// server's clock frozen). Shared by the second-factor and passkey browser tests.
pub(crate) struct Setup {
    pub rp: RpStub,
    pub server: TestServer,
    pub url: String,
    pub state: String,
    pub verifier: String,
}

async fn setup(login_toml: &str) -> Setup {
    setup_with(login_toml, None).await
}

/// As `setup`, with doorman at `http://localhost:PORT` on `port` when given (passkeys need a
/// host name; doorman still listens on 127.0.0.1).
pub(crate) async fn setup_with(login_toml: &str, localhost: Option<u16>) -> Setup {
    require_tools();
    let rp = rp_stub().await;
    let server = TestServer::start_with(Options {
        extra_toml: format!(
            "{login_toml}\n[[clients]]\nid = \"{CLIENT_ID}\"\nname = \"Browser RP\"\nsecret = \"{CLIENT_SECRET}\"\nredirect_uris = [\"{}\"]\n",
            rp.redirect
        ),
        issuer_override: localhost.map(|port| format!("http://localhost:{port}")),
        port: localhost,
        ..Default::default()
    })
    .await;
    server.clock.freeze();
    let (verifier, challenge) = pkce_pair();
    let state = random_string();
    let url = server.authorize_url(
        CLIENT_ID,
        &rp.redirect,
        "openid profile",
        &state,
        Some("browser-nonce"),
        Some(&challenge),
        &[],
    );
    Setup {
        rp,
        server,
        url,
        state,
        verifier,
    }
}

impl Setup {
    async fn run(&self, mode: &str, user: &str, password: &str) -> Value {
        let args = json!({
            "base": self.server.base,
            "authorize_url": self.url,
            "rp_prefix": self.rp.redirect,
            "user": user,
            "password": password,
            "server_time": self.server.now(),
            "mode": mode,
            "screenshots": Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
            "timeout_ms": 30000,
        });
        let (report, _stderr) = tokio::task::spawn_blocking(move || {
            run_script("totp.mjs", &args, Duration::from_secs(180))
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

    /// Redeems an RP code from the report: the id_token's amr.
    pub(crate) async fn amr(&self, code: &str) -> Value {
        self.claims(code).await["amr"].clone()
    }

    /// Redeems an RP code from the report: the id_token's claims.
    pub(crate) async fn claims(&self, code: &str) -> Value {
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
        jwt_claims(page.json()["id_token"].as_str().unwrap())
    }

    /// Every code the script landed with reached the RP stub, with our state and issuer.
    pub(crate) fn check_landings(&self, report: &Value) -> Vec<String> {
        let codes: Vec<String> = report["codes"]
            .as_array()
            .unwrap_or_else(|| panic!("codes: {report:#}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        for (url, code) in report["urls"].as_array().unwrap().iter().zip(&codes) {
            let url = url::Url::parse(url.as_str().unwrap()).unwrap();
            assert!(url.as_str().starts_with(&self.rp.redirect), "{url}");
            let q = query(&url);
            assert_eq!(q.get("state"), Some(&self.state), "{url}");
            assert_eq!(q.get("iss"), Some(&self.server.base), "{url}");
            assert!(
                self.rp
                    .hits
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|h| h.contains(code.as_str())),
                "the RP page loaded with {code}"
            );
        }
        codes
    }
}

/// The failed answers the script saw, favicon aside.
fn http_errors(report: &Value) -> Vec<(String, u64)> {
    report["httpErrors"]
        .as_array()
        .expect("httpErrors")
        .iter()
        .filter(|e| !e["url"].as_str().unwrap_or("").ends_with("/favicon.ico"))
        .map(|e| {
            (
                e["url"].as_str().unwrap_or("").to_string(),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrol_sign_in_replay_and_recovery_in_chromium() {
    if !enabled("totp_enrol_sign_in_replay_and_recovery_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup("").await;
    let report = s.run("enrol", ALICE, ALICE_PASSWORD).await;
    assert_eq!(report["recoveryCount"], 10, "{report:#}");
    assert_eq!(
        report["refusals"],
        json!(["a replayed code", "a used recovery code"]),
        "{report:#}"
    );
    let codes = s.check_landings(&report);
    assert_eq!(codes.len(), 3, "{report:#}");
    assert_eq!(
        s.amr(&codes[0]).await,
        json!(["pwd", "otp"]),
        "password + code"
    );
    assert_eq!(
        s.amr(&codes[1]).await,
        json!(["pwd", "mfa"]),
        "recovery code"
    );
    assert_eq!(
        s.amr(&codes[2]).await,
        json!(["pwd", "otp"]),
        "the next code"
    );
    // The two refusals were 401s on the code form; nothing else failed.
    let errors = http_errors(&report);
    assert_eq!(
        errors,
        vec![
            (s.server.url("/login/code"), 401),
            (s.server.url("/login/code"), 401)
        ],
        "{report:#}"
    );
    for name in ["code", "enrol", "recovery"] {
        for width in [390, 1280] {
            let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "target/screenshots/second-factor-{name}-{width}.png"
            ));
            assert!(shot.exists(), "a screenshot at {}", shot.display());
        }
    }
    eprintln!(
        "browser TOTP enrolment and sign-ins took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_second_factor_enrols_inside_the_sign_in_in_chromium() {
    if !enabled("required_second_factor_enrols_inside_the_sign_in_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup("[login]\nrequire_second_factor = \"required\"\n").await;
    let report = s.run("required", BOB, BOB_PASSWORD).await;
    assert_eq!(report["recoveryCount"], 10, "{report:#}");
    let codes = s.check_landings(&report);
    assert_eq!(codes.len(), 1, "{report:#}");
    assert_eq!(s.amr(&codes[0]).await, json!(["pwd", "otp"]));
    assert!(http_errors(&report).is_empty(), "{report:#}");
    assert_eq!(report["body"], "ok", "{report:#}");
    eprintln!(
        "browser enrolment inside a sign-in took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
