//! Passkeys over real HTTP, with the test's own [`SoftAuthenticator`] playing the browser and
//! the authenticator, against a server whose issuer is `http://localhost:PORT` (a name, so
//! WebAuthn allows it as the relying-party id; every URL goes through localhost, as cookies are
//! host-scoped): enrolment on /account (recovery codes once, `user list`), the passkey as the
//! second factor after the password and passwordless sign-in (`amr`, `acr` at the relying
//! party), the single-use challenge (replayed, expired, of another flow), the sign counter,
//! forged client data, another user's credential, CSRF, rename and removal, `user reset-2fa`,
//! a disabled or deleted account, a client's groups, an IP issuer (no passkeys, a check-config
//! warning) and the re-auth gate. The refusals the server logs are read from its audit log
//! (a capturing subscriber installed once for this test binary, `audit` lines only).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::authenticator::totp_at;
use crate::common::webauthn::SoftAuthenticator;
use crate::common::*;

/// What the user reads when a passkey is refused (`login::passkey::NOT_ACCEPTED`).
const NOT_ACCEPTED: &str = "That passkey was not accepted. Try again, or use another way.";

const ACCOUNT: &str = "/account";
const ACCOUNT_OPTIONS: &str = "/account/passkeys/options";
const ACCOUNT_ADD: &str = "/account/passkeys/add";
const ACCOUNT_RENAME: &str = "/account/passkeys/rename";
const ACCOUNT_REMOVE: &str = "/account/passkeys/remove";
const LOGIN_OPTIONS: &str = "/login/passkey/options";

// ---------------------------------------------------------------------------------------------
// The audit log, as the server writes it (every test of this binary shares the subscriber;
// only `audit` lines are kept)

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("audit=info"))
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The audit lines logged so far that contain every one of `needles`.
fn audit_lines(needles: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server

/// A server at `http://localhost:PORT` (clock frozen), its config written for the CLI.
async fn localhost_server(extra_toml: &str) -> TestServer {
    log_buffer();
    let port = free_port();
    let opts = Options {
        issuer_override: Some(format!("http://localhost:{port}")),
        port: Some(port),
        extra_toml: extra_toml.to_string(),
        ..Default::default()
    };
    let server = TestServer::start_with(opts.clone()).await;
    server.clock.freeze();
    std::fs::write(
        config_path(&server),
        config_text(server.port, server.dir.path(), &opts),
    )
    .unwrap();
    server
}

fn config_path(server: &TestServer) -> PathBuf {
    server.dir.path().join("doorman.toml")
}

/// What a browser on the issuer's pages puts in clientDataJSON.
fn origin(server: &TestServer) -> String {
    format!("http://localhost:{}", server.port)
}

async fn user(server: &TestServer, name: &str) -> doorman::store::User {
    server
        .state
        .store
        .find_user_by_username(name)
        .await
        .unwrap()
        .unwrap()
}

async fn passkeys_of(server: &TestServer, name: &str) -> Vec<doorman::store::Passkey> {
    let id = user(server, name).await.id;
    server.state.store.list_passkeys(&id).await.unwrap()
}

/// `doorman ARGS --config CONFIG` through the real binary.
fn cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut cmd = doorman_command();
    cmd.args(args).arg("--config").arg(config_path(server));
    output_with_stdin(cmd, "")
}

/// The 2FA and PASSKEYS columns of `doorman user list` for `name`.
fn list_columns(server: &TestServer, name: &str) -> (String, String) {
    let out = cli(server, &["user", "list"]);
    assert_ok(&out, "user list");
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().next().unwrap().contains("PASSKEYS"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
    // USERNAME EMAIL GROUPS STATE 2FA PASSKEYS SUB: counted from the end (email and groups
    // may be empty).
    let cols: Vec<&str> = row.split_whitespace().collect();
    let n = cols.len();
    (cols[n - 3].to_string(), cols[n - 2].to_string())
}

// ---------------------------------------------------------------------------------------------
// Reading pages

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let v = tag.find(&needle)? + needle.len();
    let len = tag[v..].find('"')?;
    Some(html_unescape(&tag[v..v + len]))
}

/// A form: its action and hidden fields.
#[derive(Debug, Clone)]
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
}

impl Form {
    fn get(&self, name: &str) -> &str {
        self.hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no hidden {name} in {self:?}"))
    }

    /// The hidden fields but `credential`, plus `extra`.
    fn fields<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = self
            .hidden
            .iter()
            .filter(|(k, _)| k != "credential")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.extend_from_slice(extra);
        out
    }
}

/// Every form of `html` whose opening tag contains `marker`.
fn forms_with(html: &str, marker: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = html[from..].find("<form") {
        let start = from + i;
        let form = &html[start..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let open = &form[..form.find('>').unwrap_or(form.len())];
        if open.contains(marker) {
            let mut hidden = Vec::new();
            let mut rest = form;
            while let Some(j) = rest.find("<input") {
                let tag = &rest[j..];
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                if attr(tag, "type").as_deref() == Some("hidden") {
                    if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                        hidden.push((n, v));
                    }
                }
                rest = &rest[j + 6..];
            }
            out.push(Form {
                action: attr(open, "action").unwrap_or_default(),
                hidden,
            });
        }
        from = start + 5;
    }
    out
}

fn form_with(page: &Page, marker: &str, what: &str) -> Form {
    forms_with(&page.text, marker)
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            panic!(
                "{what}: no <form {marker}> in the {} page:\n{}",
                page.status, page.text
            )
        })
}

/// The error paragraph of a page.
fn alert(page: &Page) -> Option<String> {
    let at = page.text.find("role=\"alert\">")? + "role=\"alert\">".len();
    let len = page.text[at..].find("</p>")?;
    Some(html_unescape(page.text[at..at + len].trim()))
}

/// The names shown in the passkey list of an account page.
fn listed_names(page: &Page) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page.text.as_str();
    while let Some(i) = rest.find("<span class=\"passkey-name\">") {
        let start = i + "<span class=\"passkey-name\">".len();
        let len = rest[start..].find('<').unwrap();
        out.push(html_unescape(rest[start..start + len].trim()));
        rest = &rest[start..];
    }
    out
}

/// The ten codes of a recovery-codes page.
fn recovery_codes(page: &Page, what: &str) -> Vec<String> {
    assert_eq!(page.status, 200, "{what}: {}", page.text);
    let at = page
        .text
        .find("<div class=\"recovery-codes\"")
        .unwrap_or_else(|| panic!("{what}: no recovery codes:\n{}", page.text));
    let div = &page.text[at..];
    let div = &div[..div.find("</div>").unwrap()];
    let mut codes = Vec::new();
    let mut rest = div;
    while let Some(i) = rest.find("<code") {
        let open = i + rest[i..].find('>').unwrap() + 1;
        let len = rest[open..].find("</code>").unwrap();
        codes.push(html_unescape(rest[open..open + len].trim()));
        rest = &rest[open + len..];
    }
    assert_eq!(codes.len(), 10, "{what}: {codes:?}");
    codes
}

/// A refused passkey: the step's page again with the sentence, 401, no session.
fn assert_refused(page: &Page, what: &str) {
    assert_eq!(page.status, 401, "{what}: {}", page.text);
    assert_eq!(alert(page).as_deref(), Some(NOT_ACCEPTED), "{what}");
    assert!(!page.sets_cookie("doorman_session"), "{what}: a session");
    assert!(page.location().is_none(), "{what}: a redirect");
}

// ---------------------------------------------------------------------------------------------
// Driving the pages

/// An authorization request for the RP with PKCE and `extra` parameters.
fn request(server: &TestServer, extra: &[(&str, &str)]) -> AuthRequest {
    let (verifier, challenge) = pkce_pair();
    let (state, nonce) = (random_string(), random_string());
    let url = server.authorize_url(
        RP,
        RP_REDIRECT,
        "openid profile",
        &state,
        Some(&nonce),
        Some(&challenge),
        extra,
    );
    AuthRequest {
        client: RP.to_string(),
        redirect: RP_REDIRECT.to_string(),
        url,
        state,
        nonce,
        verifier,
    }
}

/// The code in a 303 to the RP (state and iss checked).
fn code_of(server: &TestServer, req: &AuthRequest, page: &Page, what: &str) -> String {
    assert_eq!(page.status, 303, "{what}: {}", page.text);
    let back = page.redirect();
    assert!(back.as_str().starts_with(RP_REDIRECT), "{what}: {back}");
    let q = query(&back);
    assert_eq!(q.get("state"), Some(&req.state), "{what}: {back}");
    assert_eq!(q.get("iss"), Some(&server.base), "{what}: {back}");
    q.get("code").cloned().unwrap()
}

/// Redeems `code` as the RP: the id_token's claims.
async fn id_claims(server: &TestServer, req: &AuthRequest, code: &str) -> Value {
    let page = server
        .redeem(RP, code, RP_REDIRECT, Some(&req.verifier))
        .await;
    page.assert_status(200);
    let claims = jwt_claims(page.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], req.nonce.as_str());
    claims
}

/// Signs `b` in through /account with a password; the account page.
async fn account_sign_in(server: &TestServer, b: &Browser, name: &str, pass: &str) -> Page {
    let landing = b.get(&server.url(ACCOUNT)).await;
    landing.assert_status(200);
    let done = b.submit_login(&landing, name, pass).await;
    assert_eq!(done.status, 303, "sign-in: {}", done.text);
    account_page(server, b).await
}

async fn account_page(server: &TestServer, b: &Browser) -> Page {
    let page = b.get(&server.url(ACCOUNT)).await;
    page.assert_status(200);
    assert!(page.text.contains("<h1>Your account</h1>"), "{}", page.text);
    page
}

/// Signs `b` in through /account with a password and `key` as the second factor.
async fn account_sign_in_with_passkey(
    server: &TestServer,
    b: &Browser,
    name: &str,
    pass: &str,
    key: &mut SoftAuthenticator,
) -> Page {
    let landing = b.get(&server.url(ACCOUNT)).await;
    landing.assert_status(200);
    let page = b.submit_login(&landing, name, pass).await;
    page.assert_status(200);
    let form = form_with(&page, "id=\"passkey-form\"", "the code page");
    let options = login_options(server, b, &form).await.json();
    let done = post_assertion(b, &form, &key.assert(&options, &origin(server))).await;
    assert_eq!(done.status, 303, "password + passkey: {}", done.text);
    assert_eq!(done.redirect().as_str(), server.url(ACCOUNT));
    account_page(server, b).await
}

/// The csrf of the account page's "add a passkey" form.
fn add_csrf(page: &Page) -> String {
    form_with(page, "id=\"add-passkey\"", "add a passkey")
        .get("csrf")
        .to_string()
}

/// The creation options /account hands out.
async fn account_options(server: &TestServer, b: &Browser, csrf: &str) -> Value {
    // The options ask for the account's password again: whose is this browser's session?
    let account = account_page(server, b).await;
    let pass = if account.text.contains("<dd class=\"username\">bob</dd>") {
        BOB_PASSWORD
    } else {
        ALICE_PASSWORD
    };
    let page = b
        .post_form(
            &server.url(ACCOUNT_OPTIONS),
            &[("csrf", csrf), ("password", pass)],
        )
        .await;
    page.assert_status(200);
    page.json()
}

/// Adds `auth` as a passkey named `name` on the account page of signed-in `b`: the answer.
async fn add_on_account(
    server: &TestServer,
    b: &Browser,
    auth: &mut SoftAuthenticator,
    name: &str,
) -> Page {
    let csrf = add_csrf(&account_page(server, b).await);
    let options = account_options(server, b, &csrf).await;
    let credential = auth.register(&options, &origin(server));
    b.post_form(
        &server.url(ACCOUNT_ADD),
        &[("csrf", &csrf), ("name", name), ("credential", &credential)],
    )
    .await
}

/// `name` signs in with a password on /account and adds a passkey (its first factor): the
/// authenticator and the recovery codes shown.
async fn with_passkey(
    server: &TestServer,
    name: &str,
    pass: &str,
    backup_eligible: bool,
) -> (SoftAuthenticator, Vec<String>) {
    let b = Browser::new();
    account_sign_in(server, &b, name, pass).await;
    let mut auth = SoftAuthenticator::new(backup_eligible);
    let page = add_on_account(server, &b, &mut auth, "My key").await;
    let codes = recovery_codes(&page, "first passkey");
    (auth, codes)
}

/// Opens `req` in `b`: the landing page's passkey form.
async fn landing_passkey_form(b: &Browser, req: &AuthRequest) -> Form {
    let page = b.get(&req.url).await;
    page.assert_status(200);
    assert!(
        page.text.contains("id=\"passkey-button\"") && page.text.contains("Sign in with a passkey"),
        "the landing page offers a passkey:\n{}",
        page.text
    );
    assert!(
        page.text.contains("autocomplete=\"username webauthn\""),
        "conditional UI on #username"
    );
    form_with(&page, "id=\"passkey-form\"", "landing page")
}

/// POST /login/passkey/options with a step form's flow and csrf.
async fn login_options(server: &TestServer, b: &Browser, form: &Form) -> Page {
    b.post_form(
        &server.url(LOGIN_OPTIONS),
        &[("flow", form.get("flow")), ("csrf", form.get("csrf"))],
    )
    .await
}

/// Posts `credential` with a step form (POST /login/passkey).
async fn post_assertion(b: &Browser, form: &Form, credential: &str) -> Page {
    assert!(form.action.ends_with("/login/passkey"), "{form:?}");
    b.post_form(&form.action, &form.fields(&[("credential", credential)]))
        .await
}

/// A passwordless attempt in a new flow of `b`: the answer to the assertion that `make`
/// produces from the options.
async fn passwordless_with(
    server: &TestServer,
    b: &Browser,
    req: &AuthRequest,
    make: impl FnOnce(&Value) -> String,
) -> Page {
    let form = landing_passkey_form(b, req).await;
    let options = login_options(server, b, &form).await;
    options.assert_status(200);
    let credential = make(&options.json());
    post_assertion(b, &form, &credential).await
}

async fn passwordless(
    server: &TestServer,
    b: &Browser,
    req: &AuthRequest,
    auth: &mut SoftAuthenticator,
) -> Page {
    let origin = origin(server);
    passwordless_with(server, b, req, |o| auth.assert(o, &origin)).await
}

/// Password in `b` for `req`: the code page.
async fn code_page(b: &Browser, req: &AuthRequest, name: &str, pass: &str) -> Page {
    let page = b.get(&req.url).await;
    page.assert_status(200);
    b.submit_login(&page, name, pass).await
}

/// Password in `b` for `req`: the code page's passkey form.
async fn code_page_passkey_form(b: &Browser, req: &AuthRequest, name: &str, pass: &str) -> Form {
    let page = code_page(b, req, name, pass).await;
    assert_eq!(page.status, 200, "the code page: {}", page.text);
    assert!(!page.sets_cookie("doorman_session"), "no session yet");
    assert!(
        page.text.contains("id=\"passkey-button\"") && page.text.contains("Use your passkey"),
        "the code page offers the passkey:\n{}",
        page.text
    );
    form_with(&page, "id=\"passkey-form\"", "code page")
}

async fn sign_out(server: &TestServer, b: &Browser) {
    let page = b.get(&server.url("/logout")).await;
    page.assert_status(200);
    let csrf = input_value(&page.text, "csrf").unwrap();
    let done = b
        .post_form(
            &server.url("/logout"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert!(done.status < 400, "logout: {} {}", done.status, done.text);
    let page = b.get(&server.url(ACCOUNT)).await;
    assert!(
        page.login_form().is_some(),
        "signed out: /account shows the landing page:\n{}",
        page.text
    );
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Enrolment on /account, then password + passkey at the relying party

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_on_account_then_password_and_passkey_reach_the_rp() {
    let server = localhost_server("").await;
    assert_eq!(list_columns(&server, ALICE), ("-".into(), "0".into()));
    // Alice is also signed in elsewhere, with her password only.
    let elsewhere = Browser::new();
    account_sign_in(&server, &elsewhere, ALICE, ALICE_PASSWORD).await;
    let b = Browser::new();
    let page = account_sign_in(&server, &b, ALICE, ALICE_PASSWORD).await;
    assert!(
        page.text.contains("id=\"add-passkey-button\""),
        "{}",
        page.text
    );
    let csrf = add_csrf(&page);
    let options = account_options(&server, &b, &csrf).await;
    let o = &options["publicKey"];
    assert_eq!(o["rp"]["id"], "localhost", "{options}");
    assert_eq!(o["user"]["name"], ALICE, "{options}");
    let mut key = SoftAuthenticator::new(false);
    let credential = key.register(&options, &origin(&server));
    let added = b
        .post_form(
            &server.url(ACCOUNT_ADD),
            &[
                ("csrf", &csrf),
                ("name", "Laptop key"),
                ("credential", &credential),
            ],
        )
        .await;
    let codes = recovery_codes(&added, "first passkey on /account");
    assert!(
        added.text.contains("Your passkey is set up."),
        "{}",
        added.text
    );
    assert!(
        html_unescape(&added.text).contains(&format!(
            "<a class=\"continue\" href=\"{}\"",
            server.url("/account?done=passkey-added")
        )),
        "{}",
        added.text
    );
    // Shown once: the account page lists the passkey, never the codes.
    let page = account_page(&server, &b).await;
    assert_eq!(listed_names(&page), vec!["Laptop key"]);
    assert!(codes.iter().all(|c| !page.text.contains(c.as_str())));
    assert_eq!(list_columns(&server, ALICE), ("key".into(), "1".into()));
    // The first second factor ends the sessions that were signed in without it.
    let page = elsewhere.get(&server.url(ACCOUNT)).await;
    assert!(
        page.login_form().is_some(),
        "the other session ended:\n{}",
        page.text
    );

    sign_out(&server, &b).await;
    let req = request(&server, &[("acr_values", "2fa")]);
    let form = code_page_passkey_form(&b, &req, ALICE, ALICE_PASSWORD).await;
    let options = login_options(&server, &b, &form).await;
    options.assert_status(200);
    let options = options.json();
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1, "{options}");
    assert_eq!(
        allowed[0]["id"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(key.credential_id())
    );
    assert_eq!(options["publicKey"]["userVerification"], "preferred");
    // A security key without user verification is fine as a second factor.
    key.user_verified(false);
    let done = post_assertion(&b, &form, &key.assert(&options, &origin(&server))).await;
    let code = code_of(&server, &req, &done, "password + passkey");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(strings(&claims["amr"]), ["pwd", "hwk"], "{claims}");
    assert_eq!(claims["acr"], "2fa", "{claims}");
    let stored = passkeys_of(&server, ALICE).await;
    assert_eq!(stored[0].sign_count, 1);
    assert!(stored[0].last_used_at.is_some());

    // A synced passkey (backup eligible) is published as swk.
    let (mut synced, _) = with_passkey(&server, BOB, BOB_PASSWORD, true).await;
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = code_page_passkey_form(&b, &req, BOB, BOB_PASSWORD).await;
    let options = login_options(&server, &b, &form).await.json();
    let done = post_assertion(&b, &form, &synced.assert(&options, &origin(&server))).await;
    let code = code_of(&server, &req, &done, "bob: password + synced passkey");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(strings(&claims["amr"]), ["pwd", "swk"], "{claims}");
}

// ---------------------------------------------------------------------------------------------
// 2. Passwordless

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwordless_sign_in_reaches_the_rp_without_a_password() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = landing_passkey_form(&b, &req).await;
    let options = login_options(&server, &b, &form).await;
    options.assert_status(200);
    let options = options.json();
    let o = &options["publicKey"];
    assert!(
        o.get("allowCredentials")
            .is_none_or(|a| a.as_array().is_some_and(|a| a.is_empty())),
        "discoverable: no allowCredentials: {options}"
    );
    assert_eq!(o["userVerification"], "required", "{options}");
    assert_eq!(o["rpId"], "localhost", "{options}");
    let credential = key.assert(&options, &origin(&server));
    let sent: Value = serde_json::from_str(&credential).unwrap();
    assert!(sent["userHandle"].as_str().is_some_and(|h| !h.is_empty()));
    // Only flow, csrf and the credential are posted.
    let done = post_assertion(&b, &form, &credential).await;
    assert!(done.sets_cookie("doorman_session"));
    let code = code_of(&server, &req, &done, "passwordless");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(strings(&claims["amr"]), ["hwk", "user", "mfa"], "{claims}");
    assert_eq!(
        claims["sub"].as_str(),
        Some(user(&server, ALICE).await.id.as_str()),
        "{claims}"
    );
    // Two factors in one: acr 2fa when asked, and the session is SSO for the next request.
    let req = request(&server, &[("acr_values", "2fa")]);
    let page = b.get(&req.url).await;
    page.assert_status(302);
    let code = query(&page.redirect())["code"].clone();
    assert_eq!(id_claims(&server, &req, &code).await["acr"], "2fa");

    // A synced passkey alone: swk.
    let (mut synced, _) = with_passkey(&server, BOB, BOB_PASSWORD, true).await;
    let req = request(&server, &[]);
    let done = passwordless(&server, &Browser::new(), &req, &mut synced).await;
    let code = code_of(&server, &req, &done, "bob, passwordless");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(strings(&claims["amr"]), ["swk", "user", "mfa"], "{claims}");
}

// ---------------------------------------------------------------------------------------------
// 3. The challenge is single use, expires, and belongs to its flow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_is_single_use_expires_and_belongs_to_its_flow() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let o = origin(&server);

    // Used once: the same assertion again (same flow, and in an attacker's own flow).
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = landing_passkey_form(&b, &req).await;
    let options = login_options(&server, &b, &form).await.json();
    let credential = key.assert(&options, &o);
    let first = post_assertion(&b, &form, &credential).await;
    code_of(&server, &req, &first, "the first time");
    let again = post_assertion(&b, &form, &credential).await;
    assert!(
        again.status >= 400 && !again.sets_cookie("doorman_session"),
        "replayed in the same flow: {} {}",
        again.status,
        again.text
    );
    let attacker = Browser::new();
    let their = landing_passkey_form(&attacker, &request(&server, &[])).await;
    let replay = post_assertion(&attacker, &their, &credential).await;
    assert_refused(&replay, "replayed in another browser's flow");

    // Used once even when the first answer failed: a forged answer uses up the challenge, and
    // the genuine one over the same options is refused; the flow itself lives on.
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = landing_passkey_form(&b, &req).await;
    let options = login_options(&server, &b, &form).await.json();
    let forged = key.assert(&options, &format!("http://localhost:{}", server.port + 1));
    assert_refused(&post_assertion(&b, &form, &forged).await, "forged");
    let genuine = key.assert(&options, &o);
    assert_refused(
        &post_assertion(&b, &form, &genuine).await,
        "the genuine answer to a used challenge",
    );
    let options = login_options(&server, &b, &form).await.json();
    let done = post_assertion(&b, &form, &key.assert(&options, &o)).await;
    code_of(&server, &req, &done, "a new challenge");

    // On /account too: one set of creation options registers one passkey.
    let b = Browser::new();
    let csrf =
        add_csrf(&account_sign_in_with_passkey(&server, &b, ALICE, ALICE_PASSWORD, &mut key).await);
    let options = account_options(&server, &b, &csrf).await;
    for (name, want) in [("Second", 303), ("Third", 401)] {
        let credential = SoftAuthenticator::new(false).register(&options, &o);
        let page = b
            .post_form(
                &server.url(ACCOUNT_ADD),
                &[("csrf", &csrf), ("name", name), ("credential", &credential)],
            )
            .await;
        assert_eq!(page.status, want, "{name}: {}", page.text);
        if want == 401 {
            assert_eq!(alert(&page).as_deref(), Some(NOT_ACCEPTED), "{name}");
        }
    }
    let mut names = listed_names(&account_page(&server, &b).await);
    names.sort();
    assert_eq!(names, ["My key", "Second"]);

    // A flow keeps its four newest challenges: asking again and again does not pile them up.
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = landing_passkey_form(&b, &req).await;
    let mut issued = Vec::new();
    for _ in 0..5 {
        issued.push(login_options(&server, &b, &form).await.json());
    }
    let oldest = post_assertion(&b, &form, &key.assert(&issued[0], &o)).await;
    assert_refused(&oldest, "the fifth-newest challenge");
    let done = post_assertion(&b, &form, &key.assert(&issued[1], &o)).await;
    code_of(&server, &req, &done, "the fourth-newest challenge");

    // Expired: the flow lives on, its 5-minute challenge does not.
    let b = Browser::new();
    let req = request(&server, &[]);
    let form = landing_passkey_form(&b, &req).await;
    let options = login_options(&server, &b, &form).await.json();
    server.clock.advance(5 * 60 + 1);
    let late = post_assertion(&b, &form, &key.assert(&options, &o)).await;
    assert_refused(&late, "a challenge older than 5 minutes");
    let options = login_options(&server, &b, &form).await.json();
    let done = post_assertion(&b, &form, &key.assert(&options, &o)).await;
    code_of(&server, &req, &done, "a fresh challenge in the same flow");

    // Another flow's challenge: options from flow A, the assertion posted with flow B.
    let b = Browser::new();
    let (req_a, req_b) = (request(&server, &[]), request(&server, &[]));
    let form_a = landing_passkey_form(&b, &req_a).await;
    let form_b = landing_passkey_form(&b, &req_b).await;
    assert_ne!(form_a.get("flow"), form_b.get("flow"));
    let options = login_options(&server, &b, &form_a).await.json();
    let crossed = post_assertion(&b, &form_b, &key.assert(&options, &o)).await;
    assert_refused(&crossed, "flow A's challenge posted with flow B");
}

// ---------------------------------------------------------------------------------------------
// 4. Sign counter

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_counter_that_does_not_grow_is_refused_and_logged() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    for _ in 0..3 {
        let req = request(&server, &[]);
        let done = passwordless(&server, &Browser::new(), &req, &mut key).await;
        code_of(&server, &req, &done, "a growing counter");
    }
    assert_eq!(passkeys_of(&server, ALICE).await[0].sign_count, 3);
    // A clone that sends 2, then one that sends 3 again.
    for (keeps, sends) in [(1, 2), (2, 3)] {
        key.set_sign_count(keeps);
        let page = passwordless(&server, &Browser::new(), &request(&server, &[]), &mut key).await;
        assert_refused(&page, &format!("counter {sends} after 3"));
        let reason = format!("the sign counter went from 3 to {sends}");
        let logged = audit_lines(&["event=\"passkey\"", "outcome=\"refused\"", &reason]);
        assert_eq!(logged.len(), 1, "logged once: {logged:?}");
        assert!(logged[0].contains("ERROR"), "{logged:?}");
        assert_eq!(passkeys_of(&server, ALICE).await[0].sign_count, 3);
    }
    key.set_sign_count(3);
    let req = request(&server, &[]);
    let done = passwordless(&server, &Browser::new(), &req, &mut key).await;
    code_of(&server, &req, &done, "4 after 3");

    // An authenticator without a counter (always 0, as synced passkeys send) keeps working.
    let (mut synced, _) = with_passkey(&server, BOB, BOB_PASSWORD, true).await;
    for _ in 0..2 {
        synced.set_sign_count(u32::MAX);
        let req = request(&server, &[]);
        let done = passwordless(&server, &Browser::new(), &req, &mut synced).await;
        assert_eq!(synced.sign_count(), 0);
        code_of(&server, &req, &done, "a counter that stays 0");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Forged client data

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_client_data_is_refused() {
    let server = localhost_server("").await;
    let (key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let port = server.port;
    let b = Browser::new();
    let mut key = key;
    for forged in [
        format!("http://localhost:{}", port + 1),
        format!("https://localhost:{port}"),
        format!("http://localhost:{port}0"),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost.evil.example:{port}"),
    ] {
        let page = passwordless_with(&server, &b, &request(&server, &[]), |o| {
            key.assert(o, &forged)
        })
        .await;
        assert_refused(&page, &format!("origin {forged}"));
    }
    key.cross_origin(true);
    let page = passwordless(&server, &b, &request(&server, &[]), &mut key).await;
    assert_refused(&page, "crossOrigin true");
    key.cross_origin(false);
    key.user_verified(false);
    let page = passwordless(&server, &b, &request(&server, &[]), &mut key).await;
    assert_refused(&page, "passwordless without user verification");
    key.user_verified(true);
    // The genuine article still works: only the forgeries failed.
    let req = request(&server, &[]);
    let done = passwordless(&server, &b, &req, &mut key).await;
    code_of(&server, &req, &done, "unforged");
    let mut key = key.with_rp_id("evil.example");
    let page = passwordless(&server, &Browser::new(), &request(&server, &[]), &mut key).await;
    assert_refused(&page, "another rp id");
    // And as a second factor, the wrong origin is refused too.
    let b = Browser::new();
    let mut key = key.with_rp_id("localhost");
    let form = code_page_passkey_form(&b, &request(&server, &[]), ALICE, ALICE_PASSWORD).await;
    let options = login_options(&server, &b, &form).await.json();
    let page = post_assertion(
        &b,
        &form,
        &key.assert(&options, &format!("http://localhost:{}", port + 1)),
    )
    .await;
    assert_refused(&page, "second factor from another origin");

    // Enrolment on /account: the same forgeries, and no user verification (a passkey that
    // signs in alone must verify the user), are refused and nothing is stored.
    let b = Browser::new();
    account_sign_in_with_passkey(&server, &b, ALICE, ALICE_PASSWORD, &mut key).await;
    let csrf = add_csrf(&account_page(&server, &b).await);
    let forgeries: Vec<(&str, SoftAuthenticator, String)> = vec![
        (
            "another origin",
            SoftAuthenticator::new(false),
            format!("http://localhost:{}", port + 1),
        ),
        (
            "another rp id",
            SoftAuthenticator::new(false).with_rp_id("evil.example"),
            origin(&server),
        ),
        (
            "crossOrigin",
            SoftAuthenticator::new(false),
            origin(&server),
        ),
    ];
    for (what, mut forged, at) in forgeries {
        forged.cross_origin(what == "crossOrigin");
        let options = account_options(&server, &b, &csrf).await;
        let credential = forged.register(&options, &at);
        let page = b
            .post_form(
                &server.url(ACCOUNT_ADD),
                &[("csrf", &csrf), ("name", what), ("credential", &credential)],
            )
            .await;
        assert_eq!(page.status, 401, "enrolment, {what}: {}", page.text);
        assert_eq!(alert(&page).as_deref(), Some(NOT_ACCEPTED), "{what}");
    }
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);
    // Enrolment prefers user verification: a security key without a PIN is a second factor
    // (signing in with it alone is refused, see the passwordless "no UV" case above).
    let mut pinless = SoftAuthenticator::new(false);
    pinless.user_verified(false);
    let page = add_on_account(&server, &b, &mut pinless, "No PIN").await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 6. Another user's credential

/// `options` with `allowCredentials` emptied (so any authenticator answers, as a tampered
/// page would make it).
fn allow_any(mut options: Value) -> Value {
    options["publicKey"]["allowCredentials"] = json!([]);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_credential_is_refused() {
    let server = localhost_server("").await;
    let (mut alices, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let (mut bobs, _) = with_passkey(&server, BOB, BOB_PASSWORD, false).await;
    let o = origin(&server);

    // Bob's passkey after alice's password.
    let b = Browser::new();
    let form = code_page_passkey_form(&b, &request(&server, &[]), ALICE, ALICE_PASSWORD).await;
    let options = allow_any(login_options(&server, &b, &form).await.json());
    let page = post_assertion(&b, &form, &bobs.assert(&options, &o)).await;
    assert_refused(&page, "bob's passkey as alice's second factor");
    let bob_id = user(&server, BOB).await.id;
    let logged = audit_lines(&[
        "action=\"second_factor\"",
        "user=alice",
        &format!("belongs to user {bob_id}"),
    ]);
    assert_eq!(logged.len(), 1, "{logged:?}");
    // Alice's own still works in that flow.
    let options = login_options(&server, &b, &form).await.json();
    let done = post_assertion(&b, &form, &alices.assert(&options, &o)).await;
    assert_eq!(done.status, 303, "{}", done.text);

    // Passwordless: bob's credential presented with alice's user handle.
    let alice_handle = URL_SAFE_NO_PAD.encode(user(&server, ALICE).await.id.as_bytes());
    let b = Browser::new();
    let page = passwordless_with(&server, &b, &request(&server, &[]), |opts| {
        let mut sent: Value = serde_json::from_str(&bobs.assert(opts, &o)).unwrap();
        sent["userHandle"] = json!(alice_handle);
        sent.to_string()
    })
    .await;
    assert_refused(&page, "alice's handle on bob's credential");
    // A passwordless assertion that names nobody (no userHandle).
    let page = passwordless_with(&server, &b, &request(&server, &[]), |opts| {
        let mut sent: Value = serde_json::from_str(&alices.assert(opts, &o)).unwrap();
        sent.as_object_mut().unwrap().remove("userHandle");
        sent.to_string()
    })
    .await;
    assert_refused(&page, "no user handle");

    // Alice's authenticator registered again, on bob's account (a page that drops
    // excludeCredentials, or bob at alice's device): refused, the credential stays hers.
    let bob = Browser::new();
    account_sign_in_with_passkey(&server, &bob, BOB, BOB_PASSWORD, &mut bobs).await;
    let csrf = add_csrf(&account_page(&server, &bob).await);
    let mut options = account_options(&server, &bob, &csrf).await;
    options["publicKey"]["excludeCredentials"] = json!([]);
    let credential = alices.register(&options, &o);
    let page = bob
        .post_form(
            &server.url(ACCOUNT_ADD),
            &[
                ("csrf", &csrf),
                ("name", "Hers"),
                ("credential", &credential),
            ],
        )
        .await;
    assert_eq!(page.status, 401, "{}", page.text);
    assert_eq!(
        alert(&page).as_deref(),
        Some("That passkey is registered already.")
    );
    assert_eq!(passkeys_of(&server, BOB).await.len(), 1);
    let hers = passkeys_of(&server, ALICE).await;
    assert_eq!(hers.len(), 1);
    assert_eq!(hers[0].credential_id, alices.credential_id());
    assert!(
        b.get(&request(&server, &[]).url)
            .await
            .login_form()
            .is_some(),
        "nobody is signed in"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_forms_need_their_csrf_token() {
    let server = localhost_server("").await;
    // Alice has a passkey; this browser signed in with it (adding another needs that).
    let (mut first, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    server
        .state
        .store
        .rename_passkey(
            &user(&server, ALICE).await.id,
            &passkeys_of(&server, ALICE).await[0].id,
            "First",
        )
        .await
        .unwrap();
    let b = Browser::new();
    let page = account_sign_in_with_passkey(&server, &b, ALICE, ALICE_PASSWORD, &mut first).await;
    let csrf = add_csrf(&page);
    let id = passkeys_of(&server, ALICE).await[0].id.clone();
    // Another browser's valid token is a wrong one here.
    let other = Browser::new();
    let other_csrf = add_csrf(&account_sign_in(&server, &other, BOB, BOB_PASSWORD).await);

    let mut second = SoftAuthenticator::new(false);
    let options = account_options(&server, &b, &csrf).await;
    let credential = second.register(&options, &origin(&server));
    for token in [None, Some("forged"), Some(other_csrf.as_str())] {
        let with = |fields: &[(&'static str, &str)]| {
            let mut all: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
            if let Some(t) = token {
                all.push(("csrf", t.to_string()));
            }
            all
        };
        let what = format!("csrf {token:?}");
        for (path, fields) in [
            (ACCOUNT_OPTIONS, with(&[])),
            (
                ACCOUNT_ADD,
                with(&[("name", "Sneaky"), ("credential", &credential)]),
            ),
            (ACCOUNT_RENAME, with(&[("id", &id), ("name", "Renamed")])),
            (
                ACCOUNT_REMOVE,
                with(&[("id", &id), ("password", ALICE_PASSWORD)]),
            ),
        ] {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = b.post_form(&server.url(path), &fields).await;
            assert_eq!(page.status, 403, "{path} with {what}: {}", page.text);
        }
        let now = passkeys_of(&server, ALICE).await;
        assert_eq!(now.len(), 1, "{what}: nothing added or removed");
        assert_eq!(now[0].name, "First", "{what}: not renamed");
    }
    // With the right token the same registration is accepted (it was only the token).
    let page = b
        .post_form(
            &server.url(ACCOUNT_ADD),
            &[
                ("csrf", &csrf),
                ("name", "Second"),
                ("credential", &credential),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert_eq!(
        page.redirect().as_str(),
        server.url("/account?done=passkey-added")
    );
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 2);

    // /login/passkey/options with another browser's cookie, or none.
    let x = Browser::new();
    let form = landing_passkey_form(&x, &request(&server, &[])).await;
    let y = Browser::new();
    landing_passkey_form(&y, &request(&server, &[])).await;
    for (who, browser) in [("another browser", &y), ("no cookie", &Browser::new())] {
        let page = login_options(&server, browser, &form).await;
        assert_eq!(page.status, 403, "{who}: {}", page.text);
        assert!(!page.text.contains("publicKey"), "{who}: {}", page.text);
    }
    login_options(&server, &x, &form).await.assert_status(200);
}

// ---------------------------------------------------------------------------------------------
// 8. Rename and removal

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_remove_on_the_account_page() {
    let server = localhost_server("").await;
    let b = Browser::new();
    account_sign_in(&server, &b, ALICE, ALICE_PASSWORD).await;
    let mut key = SoftAuthenticator::new(false);
    let codes = recovery_codes(
        &add_on_account(&server, &b, &mut key, "Phone").await,
        "alice's passkey",
    );
    let alice_id = user(&server, ALICE).await.id;
    assert_eq!(
        server
            .state
            .store
            .recovery_codes_left(&alice_id)
            .await
            .unwrap(),
        10
    );
    let page = account_page(&server, &b).await;
    let rename = form_with(&page, "/account/passkeys/rename\"", "rename");
    let id = rename.get("id").to_string();
    assert_eq!(id, passkeys_of(&server, ALICE).await[0].id);
    let csrf = rename.get("csrf").to_string();
    let done = b
        .post_form(
            &server.url(ACCOUNT_RENAME),
            &[("csrf", &csrf), ("id", &id), ("name", "  Work laptop\n ")],
        )
        .await;
    assert_eq!(
        done.redirect().as_str(),
        server.url("/account?done=passkey-renamed")
    );
    assert_eq!(
        listed_names(&account_page(&server, &b).await),
        ["Work laptop"]
    );
    // A name is text, never markup.
    let done = b
        .post_form(
            &server.url(ACCOUNT_RENAME),
            &[("csrf", &csrf), ("id", &id), ("name", "<b>mine</b>")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = account_page(&server, &b).await;
    assert!(!page.text.contains("<b>mine</b>"), "{}", page.text);
    assert_eq!(listed_names(&page), ["<b>mine</b>"]);
    b.post_form(
        &server.url(ACCOUNT_RENAME),
        &[("csrf", &csrf), ("id", &id), ("name", "Work laptop")],
    )
    .await
    .assert_status(303);

    // Bob cannot rename or remove alice's passkey.
    let bob = Browser::new();
    let bob_csrf = add_csrf(&account_sign_in(&server, &bob, BOB, BOB_PASSWORD).await);
    let page = bob
        .post_form(
            &server.url(ACCOUNT_RENAME),
            &[("csrf", &bob_csrf), ("id", &id), ("name", "Bob's now")],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.text);
    assert_eq!(
        alert(&page).as_deref(),
        Some("That passkey is not on your account.")
    );
    let page = bob
        .post_form(
            &server.url(ACCOUNT_REMOVE),
            &[("csrf", &bob_csrf), ("id", &id), ("password", BOB_PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.text);
    assert_eq!(passkeys_of(&server, ALICE).await[0].name, "Work laptop");

    // A wrong password: refused, the passkey stays.
    let page = b
        .post_form(
            &server.url(ACCOUNT_REMOVE),
            &[
                ("csrf", &csrf),
                ("id", &id),
                ("password", "not-her-password"),
            ],
        )
        .await;
    assert_eq!(page.status, 401, "{}", page.text);
    assert!(alert(&page).is_some(), "{}", page.text);
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);
    // Nor with nothing typed.
    let page = b
        .post_form(
            &server.url(ACCOUNT_REMOVE),
            &[("csrf", &csrf), ("id", &id), ("password", "")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);
    let req = request(&server, &[]);
    let done = passwordless(&server, &Browser::new(), &req, &mut key).await;
    code_of(&server, &req, &done, "still signs in");

    // The right one: gone, and with it (the last factor) the recovery codes.
    let done = b
        .post_form(
            &server.url(ACCOUNT_REMOVE),
            &[("csrf", &csrf), ("id", &id), ("password", ALICE_PASSWORD)],
        )
        .await;
    assert_eq!(
        done.redirect().as_str(),
        server.url("/account?done=passkey-removed")
    );
    assert!(passkeys_of(&server, ALICE).await.is_empty());
    let page = account_page(&server, &b).await;
    assert!(listed_names(&page).is_empty(), "{}", page.text);
    assert_eq!(
        server
            .state
            .store
            .recovery_codes_left(&alice_id)
            .await
            .unwrap(),
        0,
        "the recovery codes went with the last factor"
    );
    let page = passwordless(&server, &Browser::new(), &request(&server, &[]), &mut key).await;
    assert_refused(&page, "a removed passkey");
    assert!(!audit_lines(&[
        "action=\"passwordless\"",
        "the credential is not registered"
    ])
    .is_empty());
    // No factor left: the password alone signs in, and no code page asks for a recovery code.
    let b2 = Browser::new();
    let req = request(&server, &[]);
    let page = b2.get(&req.url).await;
    let done = b2.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    code_of(&server, &req, &done, "password only after the removal");
    // A new first passkey gets new codes; the old ones are dead.
    let mut again = SoftAuthenticator::new(false);
    let fresh = recovery_codes(
        &add_on_account(&server, &b, &mut again, "New").await,
        "new passkey",
    );
    assert!(codes.iter().all(|c| !fresh.contains(c)));
    let b3 = Browser::new();
    let req = request(&server, &[]);
    let page = code_page(&b3, &req, ALICE, ALICE_PASSWORD).await;
    let code_form = form_with(&page, "/login/code\"", "the code page");
    let old = b3
        .post_form(&code_form.action, &code_form.fields(&[("code", &codes[0])]))
        .await;
    assert_eq!(old.status, 401, "an old recovery code: {}", old.text);
    let new = b3
        .post_form(&code_form.action, &code_form.fields(&[("code", &fresh[0])]))
        .await;
    code_of(&server, &req, &new, "a new recovery code");
}

// ---------------------------------------------------------------------------------------------
// 9. reset-2fa

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_2fa_removes_passkeys() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    assert_eq!(list_columns(&server, ALICE), ("key".into(), "1".into()));
    let out = cli(&server, &["user", "reset-2fa", ALICE]);
    assert_ok(&out, "user reset-2fa");
    assert!(passkeys_of(&server, ALICE).await.is_empty());
    assert_eq!(list_columns(&server, ALICE), ("-".into(), "0".into()));
    let page = passwordless(&server, &Browser::new(), &request(&server, &[]), &mut key).await;
    assert_refused(&page, "after reset-2fa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_passkey_does_not_sign_in() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let alice_id = user(&server, ALICE).await.id;
    let out = cli(&server, &["user", "delete", ALICE]);
    assert_ok(&out, "user delete");
    assert!(server
        .state
        .store
        .list_passkeys(&alice_id)
        .await
        .unwrap()
        .is_empty());
    let page = passwordless(&server, &Browser::new(), &request(&server, &[]), &mut key).await;
    assert_refused(&page, "after user delete");
}

// ---------------------------------------------------------------------------------------------
// 10. A disabled account

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_users_passkey_does_not_sign_in() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    doorman::accounts::users::set_disabled(&*server.state.store, ALICE, true, server.now())
        .await
        .unwrap();
    let b = Browser::new();
    let page = passwordless(&server, &b, &request(&server, &[]), &mut key).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(
        page.text.contains("This account is disabled"),
        "{}",
        page.text
    );
    assert!(!page.sets_cookie("doorman_session"));
    assert!(page.location().is_none());
}

// ---------------------------------------------------------------------------------------------
// 11. An IP issuer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_issuer_offers_no_passkeys_and_check_config_warns() {
    let opts = Options::default();
    let server = TestServer::start_with(opts.clone()).await;
    let b = Browser::new();
    let page = b.get(&server.auth_request(RP, "openid").url).await;
    page.assert_status(200);
    assert!(!page.text.contains("passkey"), "{}", page.text);
    assert!(
        page.text.contains("autocomplete=\"username\""),
        "{}",
        page.text
    );
    let form = page.login_form().unwrap();
    let answer = b
        .post_form(
            &server.url(LOGIN_OPTIONS),
            &[("flow", &form.flow), ("csrf", &form.csrf)],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    let answer = b
        .post_form(
            &server.url("/login/passkey"),
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("credential", "{}"),
            ],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    // Nor on /account.
    let done = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let account = b.get(&server.url(ACCOUNT)).await;
    assert!(
        !account.text.contains("id=\"passkeys\""),
        "{}",
        account.text
    );
    let csrf = input_value(&account.text, "csrf").unwrap();
    let answer = b
        .post_form(&server.url(ACCOUNT_OPTIONS), &[("csrf", &csrf)])
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    let gate = b.get(&server.url("/account/passkeys")).await;
    assert_eq!(gate.status, 404, "{}", gate.text);

    let config = server.dir.path().join("doorman.toml");
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();
    let mut cmd = doorman_command();
    cmd.arg("check-config").arg("--config").arg(&config);
    let out = output_with_stdin(cmd, "");
    assert_ok(&out, "check-config");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains(&format!(
            "issuer http://127.0.0.1:{} has an IP address for its host",
            server.port
        )),
        "{all}"
    );
    // A host name (localhost) is no warning.
    let named = Options {
        issuer_override: Some(format!("http://localhost:{}", server.port)),
        ..Default::default()
    };
    std::fs::write(&config, config_text(server.port, server.dir.path(), &named)).unwrap();
    let mut cmd = doorman_command();
    cmd.arg("check-config").arg("--config").arg(&config);
    let out = output_with_stdin(cmd, "");
    assert_ok(&out, "check-config (localhost)");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("IP address"), "{all}");
    assert!(all.contains("configuration is valid"), "{all}");
}

// ---------------------------------------------------------------------------------------------
// 12. The re-auth gate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_passkey_needs_the_password_and_the_accounts_factor() {
    let server = localhost_server("[accounts]\nreauth_after = \"10m\"\n").await;
    let b = Browser::new();
    let page = account_sign_in(&server, &b, ALICE, ALICE_PASSWORD).await;
    let csrf = add_csrf(&page);
    // A session cookie alone does not get the options: no password, a wrong one.
    let options = |fields: Vec<(&'static str, String)>| {
        let (server, b) = (&server, &b);
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post_form(&server.url(ACCOUNT_OPTIONS), &fields).await
        }
    };
    let none = options(vec![("csrf", csrf.clone())]).await;
    assert_eq!(none.status, 400, "{}", none.text);
    assert!(
        none.json()["error"].as_str().unwrap().contains("password"),
        "{}",
        none.text
    );
    let wrong = options(vec![("csrf", csrf.clone()), ("password", "not-it".into())]).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.text.contains("not right"), "{}", wrong.text);
    assert!(passkeys_of(&server, ALICE).await.is_empty());
    // An older session types the password: that is the proof, not the session's age.
    server.clock.advance(10 * 60 + 1);
    let mut key = SoftAuthenticator::new(false);
    let page = add_on_account(&server, &b, &mut key, "After re-auth").await;
    recovery_codes(&page, "after re-auth");
    let csrf = input_value(&account_page(&server, &b).await.text, "csrf").unwrap();

    // Now the account has a second factor and this session did not use it: another passkey
    // needs it first, and the gate asks for it (the passkey just added) and comes back.
    let page = account_page(&server, &b).await;
    assert!(
        page.text.contains("id=\"add-passkey-link\""),
        "{}",
        page.text
    );
    let page = b
        .post_form(
            &server.url(ACCOUNT_OPTIONS),
            &[("csrf", &csrf), ("password", ALICE_PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.text);
    let gate = b.get(&server.url("/account/passkeys")).await;
    let step = if gate.status == 200 {
        gate
    } else {
        let to = gate.redirect();
        b.get(to.as_str()).await
    };
    assert!(
        step.login_form().is_none(),
        "no password again: {}",
        step.text
    );
    let form = form_with(&step, "id=\"passkey-form\"", "the gate's code page");
    let options = login_options(&server, &b, &form).await.json();
    let done = post_assertion(&b, &form, &key.assert(&options, &origin(&server))).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.redirect().as_str(), server.url("/account/passkeys"));
    let back = b.get(done.redirect().as_str()).await;
    assert_eq!(back.redirect().as_str(), server.url("/account#passkeys"));
    let mut another = SoftAuthenticator::new(true);
    let page = add_on_account(&server, &b, &mut another, "Second").await;
    assert_eq!(
        page.redirect().as_str(),
        server.url("/account?done=passkey-added"),
        "not the first factor: no new codes"
    );
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// A passkey sign-in is held to the client's rules like a password one

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_does_not_get_past_a_clients_groups() {
    let server = localhost_server("").await;
    let (mut bobs, _) = with_passkey(&server, BOB, BOB_PASSWORD, false).await;
    let b = Browser::new();
    let req = server.auth_request(ADMINS_ONLY, "openid");
    let done = passwordless(&server, &b, &req, &mut bobs).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let back = done.redirect();
    assert!(back.as_str().starts_with(ADMINS_ONLY_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{back}"
    );
    assert!(!q.contains_key("code"), "{back}");
}

// ---------------------------------------------------------------------------------------------
// From the attacker's review

/// A sign-in left waiting at the enrolment step after the password (someone who has it) must
/// not add a factor once the account got one elsewhere: neither a passkey nor an app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_enrolment_cannot_add_a_factor_past_one_added_meanwhile() {
    let server = localhost_server("[login]\nrequire_second_factor = \"required\"\n").await;
    let req = request(&server, &[]);
    // The attacker, with the password: the enrolment page of a pending sign-in.
    let attacker = Browser::new();
    let waiting = code_page(&attacker, &req, ALICE, ALICE_PASSWORD).await;
    assert_eq!(waiting.status, 200, "{}", waiting.text);
    let attackers_form = form_with(&waiting, "id=\"passkey-form\"", "the waiting enrolment");
    assert!(attackers_form.action.ends_with("/login/passkey/enrol"));
    // Alice, meanwhile: her own sign-in enrols a passkey.
    let alice = Browser::new();
    let page = code_page(&alice, &req, ALICE, ALICE_PASSWORD).await;
    let form = form_with(&page, "id=\"passkey-form\"", "alice's enrolment");
    let options = login_options(&server, &alice, &form).await;
    options.assert_status(200);
    let mut key = SoftAuthenticator::new(false);
    let credential = key.register(&options.json(), &origin(&server));
    let page = alice
        .post_form(
            &form.action,
            &form.fields(&[("credential", &credential), ("name", "Mine")]),
        )
        .await;
    recovery_codes(&page, "alice's first factor");
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);

    // The attacker's step is refused: no options, no registration, no app.
    let options = login_options(&server, &attacker, &attackers_form).await;
    assert_eq!(options.status, 409, "{}", options.text);
    let mut theirs = SoftAuthenticator::new(false);
    let forged = theirs.register(
        &serde_json::json!({"publicKey": {"rp": {"id": "localhost"}, "user": {"id": "dTE", "name": "alice"}, "challenge": "AAAA", "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}}),
        &origin(&server),
    );
    let page = attacker
        .post_form(
            &attackers_form.action,
            &attackers_form.fields(&[("credential", &forged), ("name", "Theirs")]),
        )
        .await;
    assert_eq!(page.status, 409, "{}", page.text);
    let totp = forms_with(&waiting.text, "/login/enrol\"");
    let totp = totp.first().expect("the app form of the waiting page");
    let page = attacker
        .post_form(&totp.action, &totp.fields(&[("code", "123456")]))
        .await;
    assert_eq!(page.status, 409, "{}", page.text);
    assert!(!page.sets_cookie("doorman_session"));
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);
    assert!(server
        .state
        .store
        .get_totp(&user(&server, ALICE).await.id)
        .await
        .unwrap()
        .is_none());
}

/// Removing a passkey (a lost phone) signs out every other session: sessions do not say which
/// passkey signed them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_passkey_signs_out_the_other_sessions() {
    let server = localhost_server("").await;
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, true).await;
    let req = request(&server, &[]);
    let thief = Browser::new();
    let page = passwordless(&server, &thief, &req, &mut key).await;
    code_of(&server, &req, &page, "the thief's passwordless sign-in");
    let owner = Browser::new();
    let account =
        account_sign_in_with_passkey(&server, &owner, ALICE, ALICE_PASSWORD, &mut key).await;
    let id = passkeys_of(&server, ALICE).await[0].id.clone();
    let csrf = input_value(&account.text, "csrf").unwrap();
    let done = owner
        .post_form(
            &server.url(ACCOUNT_REMOVE),
            &[("csrf", &csrf), ("id", &id), ("password", ALICE_PASSWORD)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = thief.get(&server.url(ACCOUNT)).await;
    assert!(
        page.login_form().is_some(),
        "the thief is signed out:\n{}",
        page.text
    );
    let page = owner.get(&server.url(ACCOUNT)).await;
    assert_eq!(page.status, 200);
    assert!(page.login_form().is_none(), "the owner stays signed in");
}

/// Each IP gets a burst of passkey challenges (each a database write), then one a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_challenges_are_rate_limited_per_ip() {
    let server = localhost_server("").await;
    let req = request(&server, &[]);
    let b = Browser::new();
    let form = landing_passkey_form(&b, &req).await;
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(login_options(&server, &b, &form).await);
    }
    let ok = statuses.iter().filter(|p| p.status == 200).count();
    assert_eq!(
        ok,
        20,
        "{:?}",
        statuses.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    let limited = statuses.last().unwrap();
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert!(limited.json()["error"]
        .as_str()
        .unwrap()
        .contains("Too many"));
}

// ---------------------------------------------------------------------------------------------
// The invite's enrolment step, and an account with both an app and a passkey

/// An invitee sets up a passkey on the enrolment step after choosing a password: recovery
/// codes once, then the passkey signs in alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_may_add_a_passkey_on_the_way() {
    let server = localhost_server("").await;
    let (token, _) = doorman::accounts::links::create_invite(
        &*server.state.store,
        doorman::accounts::links::NewInvite {
            created_by: "cli".into(),
            ..Default::default()
        },
        server.now(),
    )
    .await
    .unwrap();
    let b = Browser::new();
    let page = b.get(&server.url(&format!("/invite/{token}"))).await;
    page.assert_status(200);
    let page = b
        .post_form(
            &form_action(&page.text).unwrap(),
            &[
                ("csrf", &input_value(&page.text, "csrf").unwrap()),
                ("username", "jo"),
                ("password", "jo-password-1234"),
                ("password_confirm", "jo-password-1234"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("Skip for now"),
        "optional: {}",
        page.text
    );
    let form = form_with(&page, "id=\"passkey-form\"", "the invite's enrolment step");
    assert!(form.action.ends_with("/login/passkey/enrol"), "{form:?}");
    let options = login_options(&server, &b, &form).await;
    options.assert_status(200);
    let options = options.json();
    assert_eq!(options["publicKey"]["user"]["name"], "jo");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    let mut key = SoftAuthenticator::new(false);
    let credential = key.register(&options, &origin(&server));
    let page = b
        .post_form(
            &form.action,
            &form.fields(&[("credential", &credential), ("name", "Jo's phone")]),
        )
        .await;
    recovery_codes(&page, "the invitee's first factor");
    assert!(
        page.text.contains("Your passkey is set up."),
        "{}",
        page.text
    );
    let names: Vec<String> = passkeys_of(&server, "jo")
        .await
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["Jo's phone"]);
    let req = request(&server, &[]);
    let page = passwordless(&server, &Browser::new(), &req, &mut key).await;
    let code = code_of(&server, &req, &page, "jo's passwordless sign-in");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(strings(&claims["amr"]), ["hwk", "user", "mfa"]);
}

/// With both an authenticator app and a passkey, the code page offers both, and either signs
/// in; removing the app keeps the passkey and its recovery codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_an_app_and_a_passkey_may_use_either() {
    let server = localhost_server("").await;
    server.clock.freeze();
    let (mut key, _) = with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let alice = user(&server, ALICE).await;
    let secret = b"12345678901234567890".to_vec();
    let now = server.now();
    doorman::signin::second_factor::enrol(
        &*server.state.store,
        &server.state.secret_box,
        &alice.id,
        &secret,
        &totp_at(&secret, now),
        now,
    )
    .await
    .unwrap()
    .expect("the app is on");
    let req = request(&server, &[]);
    let b = Browser::new();
    let page = code_page(&b, &req, ALICE, ALICE_PASSWORD).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Use your passkey"), "{}", page.text);
    assert!(
        page.text
            .contains("6-digit code from your authenticator app"),
        "{}",
        page.text
    );
    // The app's code (of the next step: this one enrolled it).
    server.clock.advance(30);
    let done = b
        .post_form(
            &server.url("/login/code"),
            &[
                ("flow", &input_value(&page.text, "flow").unwrap()),
                ("csrf", &input_value(&page.text, "csrf").unwrap()),
                ("code", &totp_at(&secret, server.now())),
            ],
        )
        .await;
    let code = code_of(&server, &req, &done, "password + app");
    assert_eq!(
        strings(&id_claims(&server, &req, &code).await["amr"]),
        ["pwd", "otp"]
    );
    // The passkey, in another sign-in.
    let b = Browser::new();
    let form = code_page_passkey_form(&b, &req, ALICE, ALICE_PASSWORD).await;
    let options = login_options(&server, &b, &form).await.json();
    let page = post_assertion(&b, &form, &key.assert(&options, &origin(&server))).await;
    let code = code_of(&server, &req, &page, "password + passkey");
    assert_eq!(
        strings(&id_claims(&server, &req, &code).await["amr"]),
        ["pwd", "hwk"]
    );
    // The app goes; the passkey and the recovery codes stay.
    assert!(server.state.store.remove_totp(&alice.id).await.unwrap());
    assert_eq!(passkeys_of(&server, ALICE).await.len(), 1);
    assert_eq!(
        server
            .state
            .store
            .recovery_codes_left(&alice.id)
            .await
            .unwrap(),
        10
    );
}

/// With `[smtp]`, the owner hears at once that a passkey was added (a way in that outlives a
/// password change): a mail to the verified address naming the passkey and the account page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_added_is_mailed_to_the_owner() {
    let sink = crate::common::smtp::SmtpSink::start().await;
    let server = localhost_server(&sink.toml()).await;
    with_passkey(&server, ALICE, ALICE_PASSWORD, false).await;
    let mails = sink.wait_for(1).await;
    let mail = mails.first().unwrap();
    assert_eq!(mail.header("To").as_deref(), Some(ALICE_EMAIL));
    assert!(mail
        .header("Subject")
        .unwrap()
        .contains("passkey was added"));
    let body = mail.body();
    assert!(body.contains("\"My key\""), "{body}");
    assert!(body.contains(&server.url("/account#passkeys")), "{body}");
}
