//! Real relying-party libraries against a running doorman, each configured only from what
//! doorman prints or publishes:
//! - Etherpad's ep_openid_connect is built on `openid-client` v5 (npm): `tests/node/
//!   etherpad-login.mjs` signs in exactly as the plugin does, with the settings.json block
//!   `doorman integrate etherpad --format json` prints, and `sub` and `name` must arrive in
//!   userinfo (where the plugin reads them).
//! - Python's `authlib` (PyPI), the OIDC client under many Flask/FastAPI/Django apps:
//!   `tests/python/authlib_login.py` (discovery, nonce, PKCE, id_token validation, userinfo).
//!
//! The libraries come from `scripts/test` (`tests/node/node_modules`, `target/python-venv`),
//! pinned by `tests/node/package-lock.json` and `tests/python/requirements.txt`. Without them
//! a test says so and passes, unless `DOORMAN_LIBRARY_TESTS=1` (as `scripts/test` sets), where
//! a missing library fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::integrate::integrate;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `what` (a path that installing the library creates) is there; if not, a test may
/// skip only outside `scripts/test`.
fn installed(what: &Path, how: &str) -> bool {
    if what.exists() {
        return true;
    }
    assert!(
        std::env::var("DOORMAN_LIBRARY_TESTS").as_deref() != Ok("1"),
        "{} is missing: {how}",
        what.display()
    );
    eprintln!("skipped: {} is missing ({how})", what.display());
    false
}

/// The content of the first `file` section of an `integrate --format json` answer titled
/// with `title_start`.
fn file_section(v: &Value, title_start: &str) -> String {
    v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "file" && s["title"].as_str().unwrap().starts_with(title_start))
        .unwrap_or_else(|| panic!("no file section {title_start:?} in {v:#}"))["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etherpad_openid_client_v5_signs_in_with_the_printed_settings() {
    let dir = root().join("tests/node");
    if !installed(
        &dir.join("node_modules/openid-client"),
        "scripts/test runs npm ci in tests/node",
    ) {
        return;
    }
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let out = integrate(&issuer, "", &["etherpad", "--format", "json"]);
    assert_ok(&out, "integrate etherpad --format json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let block = v["client"]["toml"].as_str().unwrap().to_string();
    // settings.json's lines, as pasted into Etherpad's settings object.
    let fragment = file_section(&v, "Etherpad with the ep_openid_connect plugin");
    let settings: Value =
        serde_json::from_str(&format!("{{{}}}", fragment.trim().trim_end_matches(',')))
            .unwrap_or_else(|e| {
                panic!("the printed settings.json lines are no JSON ({e}):\n{fragment}")
            });
    assert_eq!(settings["requireAuthentication"], true);
    let plugin = settings["ep_openid_connect"].clone();
    assert_eq!(plugin["issuer"], issuer.as_str());

    let server = TestServer::start_with(Options {
        extra_toml: block,
        port: Some(port),
        ..Default::default()
    })
    .await;
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("etherpad-login.mjs")
            .current_dir(&dir)
            .env("SETTINGS", plugin.to_string())
            .env("USERNAME", ALICE)
            .env("PASSWORD", ALICE_PASSWORD)
            .output()
            .expect("node runs (install Node.js 20 or later)")
    })
    .await
    .unwrap();
    assert_ok(&run, "node etherpad-login.mjs");
    let result: Value = serde_json::from_slice(&run.stdout).unwrap();
    let info = &result["userinfo"];
    // `sub` is the Etherpad username: doorman's opaque id, never admin or guest.
    let sub = info["sub"].as_str().unwrap();
    assert_eq!(sub, result["id_token_claims"]["sub"].as_str().unwrap());
    assert!(!["admin", "guest", ALICE].contains(&sub), "{sub}");
    assert_eq!(
        info["name"], "Alice Liddell",
        "the display name arrives: {info}"
    );
    let user = server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub, user.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_validates_the_id_token_with_nonce_and_pkce() {
    let python = root().join("target/python-venv/bin/python");
    if !installed(
        &python,
        "scripts/test makes target/python-venv from tests/python/requirements.txt",
    ) {
        return;
    }
    let server = TestServer::start("").await;
    let (issuer, script) = (
        server.base.clone(),
        root().join("tests/python/authlib_login.py"),
    );
    let run = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("ISSUER", issuer)
            .env("CLIENT_ID", RP)
            .env("CLIENT_SECRET", RP_SECRET)
            .env("REDIRECT_URI", RP_REDIRECT)
            .env("USERNAME", ALICE)
            .env("PASSWORD", ALICE_PASSWORD)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_ok(&run, "authlib_login.py");
    let result: Value = serde_json::from_slice(&run.stdout).unwrap();
    let claims = &result["claims"];
    assert_eq!(claims["iss"], server.base.as_str());
    assert_eq!(claims["aud"], RP);
    assert!(claims["nonce"].is_string());
    assert_eq!(result["userinfo"]["sub"], claims["sub"]);
    assert_eq!(result["userinfo"]["email"], ALICE_EMAIL);
    assert_eq!(result["userinfo"]["preferred_username"], ALICE);
}
