//! Passkeys in a real browser: headless Chromium through playwright-core (script
//! tests/browser/passkey.mjs, run as tests/e2e/plex_browser.rs runs its script) with CDP
//! virtual authenticators (CTAP2, platform, resident keys, user verification), against a
//! server whose issuer is `http://localhost:PORT` (an IP cannot be a WebAuthn RP ID).
//!
//! - A passkey added by name on /account (password sign-in) shows the recovery codes, then is
//!   listed; password + "Use your passkey" lands on the relying party (amr `pwd`, `hwk`);
//!   "Sign in with a passkey" lands there with no password typed (`hwk`, `user`, `mfa`), the
//!   pending autofill (conditional) request aborted first, without "request already pending".
//! - Another user's passkey (bob's, on a second authenticator) offered where alice's second
//!   factor is asked is refused on doorman's page; a recovery code signs in instead.
//! - A passkey removed on /account (with the password) no longer signs in, even with the same
//!   credential back in the browser; bob's then signs bob in from that page.
//! - The browser makes ES256 (alice), Ed25519 (bob) and RS256 (the enrolment inside a sign-in)
//!   keys: the options are rewritten to offer one algorithm.
//! - With `require_second_factor = "required"`, a passkey is the factor set up inside the
//!   sign-in (a synced one: `swk`).
//!
//! Screenshots at 390 and 1280 px go to target/screenshots/passkey-{landing,code,account,
//! account-empty,refused,enrol,recovery}-{390,1280}.png (the account ones: the passkeys
//! section only). Runs only when DOORMAN_BROWSER_TESTS=1.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::plex_browser::{enabled, run_script};
use crate::totp_browser::{setup_with, Setup};

/// doorman at `http://localhost:PORT` (listening on 127.0.0.1), the RP stub on 127.0.0.1.
async fn setup(login_toml: &str) -> Setup {
    let port = free_port();
    let s = setup_with(login_toml, Some(port)).await;
    assert_eq!(s.server.base, format!("http://localhost:{port}"));
    s
}

impl Setup {
    async fn run_passkeys(&self, mode: &str, user: &str, password: &str) -> Value {
        let args = json!({
            "base": self.server.base,
            "authorize_url": self.url,
            "rp_prefix": self.rp.redirect,
            "user": user,
            "password": password,
            "other_user": BOB,
            "other_password": BOB_PASSWORD,
            "mode": mode,
            "screenshots": Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
            "timeout_ms": 30000,
        });
        let (report, _stderr) = tokio::task::spawn_blocking(move || {
            run_script("passkey.mjs", &args, Duration::from_secs(240))
        })
        .await
        .unwrap();
        assert_eq!(
            report["scriptErrors"],
            json!([]),
            "no console errors: {report:#}"
        );
        report
    }

    async fn passkeys_of(&self, username: &str) -> Vec<doorman::store::Passkey> {
        let store = &self.server.state.store;
        let user = store
            .find_user_by_username(username)
            .await
            .unwrap()
            .unwrap();
        store.list_passkeys(&user.id).await.unwrap()
    }
}

/// The failed answers the script saw, favicon aside: (path, status).
fn http_errors(s: &Setup, report: &Value) -> Vec<(String, u64)> {
    report["httpErrors"]
        .as_array()
        .expect("httpErrors")
        .iter()
        .filter(|e| !e["url"].as_str().unwrap_or("").ends_with("/favicon.ico"))
        .map(|e| {
            let url = e["url"].as_str().unwrap_or("");
            (
                url.strip_prefix(&s.server.base).unwrap_or(url).to_string(),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The navigator.credentials calls that failed, but autofill (conditional) requests that
/// ended with NotAllowedError (no passkey for this site in the browser, or the password form
/// was sent) or that the passkey button aborted (AbortError).
fn passkey_call_failures(report: &Value) -> Vec<Value> {
    report["passkeyCalls"]
        .as_array()
        .expect("passkeyCalls")
        .iter()
        .filter(|c| c["phase"] == "end" && c["outcome"] != "ok")
        .filter(|c| {
            !(c["mediation"] == "conditional"
                && (c["outcome"] == "AbortError" || c["outcome"] == "NotAllowedError"))
        })
        .cloned()
        .collect()
}

fn assert_screenshots(names: &[&str]) {
    for name in names {
        for width in [390, 1280] {
            let shot = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("target/screenshots/passkey-{name}-{width}.png"));
            assert!(shot.exists(), "a screenshot at {}", shot.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_added_used_refused_and_removed_in_chromium() {
    if !enabled("passkeys_added_used_refused_and_removed_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup("").await;
    let report = s.run_passkeys("account", ALICE, ALICE_PASSWORD).await;
    assert_eq!(report["recoveryCount"], 10, "{report:#}");
    assert_eq!(
        report["passkeyNames"],
        json!(["alice's laptop"]),
        "/account lists the passkey by its name: {report:#}"
    );
    assert_eq!(
        report["refusals"],
        json!(["another user's passkey", "a removed passkey"]),
        "{report:#}"
    );
    assert_eq!(report["algorithmMissing"], Value::Null, "{report:#}");
    let codes = s.check_landings(&report);
    assert_eq!(codes.len(), 4, "{report:#}");
    assert_eq!(
        s.amr(&codes[0]).await,
        json!(["pwd", "hwk"]),
        "password + passkey"
    );
    assert_eq!(
        s.amr(&codes[1]).await,
        json!(["hwk", "user", "mfa"]),
        "passwordless"
    );
    assert_eq!(
        s.amr(&codes[2]).await,
        json!(["pwd", "mfa"]),
        "a recovery code"
    );
    // Bob's Ed25519 passkey, from the page that refused alice's removed one.
    let bob = s.claims(&codes[3]).await;
    assert_eq!(
        bob["amr"],
        json!(["hwk", "user", "mfa"]),
        "bob, passwordless"
    );
    assert_eq!(bob["preferred_username"], BOB, "{bob:#}");
    // The two refusals were 401s on the passkey form; nothing else failed.
    assert_eq!(
        http_errors(&s, &report),
        vec![
            ("/login/passkey".into(), 401),
            ("/login/passkey".into(), 401)
        ],
        "{report:#}"
    );
    // Every ceremony the pages started ended well, but the two refused ones, which the
    // browser completed (the server said no); none met "request already pending".
    let calls = report["passkeyCalls"].to_string();
    assert!(!calls.contains("pending"), "{report:#}");
    assert_eq!(
        passkey_call_failures(&report),
        Vec::<Value>::new(),
        "{report:#}"
    );
    // The landing page's autofill request was pending when the button was clicked, and the
    // button aborted it before its own request.
    assert_eq!(report["conditionalAvailable"], true, "{report:#}");
    let calls = report["passkeyCalls"].as_array().unwrap();
    let of = |call: &Value, phase: &str| {
        calls
            .iter()
            .position(|c| c["call"] == *call && c["phase"] == phase)
            .unwrap_or_else(|| panic!("no {phase} of {call}: {report:#}"))
    };
    let pending = &report["abortedCall"];
    let ended = of(pending, "end");
    assert_eq!(calls[ended]["outcome"], "AbortError", "{report:#}");
    let modal = calls
        .iter()
        .skip(of(pending, "start") + 1)
        .find(|c| c["mediation"] == "modal" && c["kind"] == "get" && c["phase"] == "start")
        .map(|c| &c["call"])
        .unwrap_or_else(|| panic!("a modal get after the conditional one: {report:#}"));
    assert!(
        ended < of(modal, "start"),
        "aborted before the button's request: {report:#}"
    );
    assert_eq!(calls[of(modal, "end")]["outcome"], "ok", "{report:#}");
    // The store agrees: alice's passkey is gone, bob's stays.
    assert!(s.passkeys_of(ALICE).await.is_empty());
    let bobs = s.passkeys_of(BOB).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].name, "bob's phone");
    assert_eq!(bobs[0].alg, -8, "Ed25519, as the rewritten options asked");
    assert!(bobs[0].discoverable && !bobs[0].backup_eligible);
    assert!(bobs[0].sign_count >= 1, "bob's passkey was used");
    assert_screenshots(&["landing", "code", "account", "account-empty", "refused"]);
    eprintln!("browser passkeys took {:.1} s", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_second_factor_enrols_a_passkey_inside_the_sign_in_in_chromium() {
    if !enabled("required_second_factor_enrols_a_passkey_inside_the_sign_in_in_chromium") {
        return;
    }
    let t0 = Instant::now();
    let s = setup("[login]\nrequire_second_factor = \"required\"\n").await;
    let report = s.run_passkeys("required", BOB, BOB_PASSWORD).await;
    assert_eq!(report["recoveryCount"], 10, "{report:#}");
    assert_eq!(report["algorithmMissing"], Value::Null, "{report:#}");
    let codes = s.check_landings(&report);
    assert_eq!(codes.len(), 2, "{report:#}");
    assert_eq!(
        s.amr(&codes[0]).await,
        json!(["pwd", "swk"]),
        "a synced passkey, enrolled"
    );
    assert_eq!(
        s.amr(&codes[1]).await,
        json!(["pwd", "swk"]),
        "a synced passkey, the next sign-in"
    );
    assert!(http_errors(&s, &report).is_empty(), "{report:#}");
    assert_eq!(
        passkey_call_failures(&report),
        Vec::<Value>::new(),
        "{report:#}"
    );
    assert_eq!(report["body"], "ok", "{report:#}");
    let bobs = s.passkeys_of(BOB).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].name, "bob's laptop");
    assert_eq!(bobs[0].alg, -257, "RS256, as the rewritten options asked");
    assert!(bobs[0].backup_eligible);
    assert_screenshots(&["enrol", "recovery"]);
    eprintln!(
        "browser passkey enrolment inside a sign-in took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
