//! Second factors over HTTP, as the issue 10 contract describes them: enrolment at
//! /account/second-factor and inside a sign-in, the code page after the password, replay
//! refusal, single-use recovery codes, the CSRF and expiry rules of the code form, the policy
//! (`require_second_factor` globally, per client and through `acr_values`), step-up of a
//! password-only SSO session, `amr` / `acr` in the id_token, the store-backed per-account
//! lockout, and the `doorman user unlock / reset-2fa / list` commands.
//!
//! The codes are computed here by an independent RFC 6238 implementation (HMAC-SHA1 from
//! aws-lc-rs, base32 decoded by hand), as an authenticator app would, from the secret shown on
//! the enrolment page and the server's `ManualClock`; the clock is frozen and moved by whole
//! steps, so a fresh code always belongs to a step the server has not accepted yet.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::authenticator::{base32_decode, totp_at, STEP};
use crate::common::*;

const STRICT: &str = "strict";
const STRICT_SECRET: &str = "strict-secret-0123456789";
const STRICT_REDIRECT: &str = "http://127.0.0.1:1/strict";

/// A client that requires a second factor (appended to a test server's TOML).
const STRICT_CLIENT: &str = r#"
[[clients]]
id = "strict"
name = "Strict App"
secret = "strict-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/strict"]
require_second_factor = true
"#;

const LOCKOUT: &str =
    "[login]\nmax_failures_per_account = 3\nlockout_base = \"30s\"\nlockout_max = \"2m\"\n";

// ---------------------------------------------------------------------------------------------
// An authenticator app: RFC 4648 base32, RFC 4226 HOTP, RFC 6238 TOTP (SHA-1, 6 digits, 30 s)

/// A well-formed code that is right for none of the steps around `now`.
fn wrong_code(secret: &[u8], now: i64) -> String {
    let near: Vec<String> = (-3..=3).map(|d| totp_at(secret, now + d * STEP)).collect();
    (0..)
        .map(|i| format!("{:06}", (123_456 + i * 7919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// "123456" as "123 456" (authenticator apps show it that way; people type it so).
fn spaced(code: &str) -> String {
    format!("{} {}", &code[..3], &code[3..])
}

#[test]
fn the_tests_own_totp_matches_rfc_6238() {
    // Appendix B, SHA-1: the 8-digit values' last six digits are the 6-digit codes.
    let secret = b"12345678901234567890";
    for (t, code) in [
        (59, "287082"),
        (1_111_111_109, "081804"),
        (1_111_111_111, "050471"),
        (1_234_567_890, "005924"),
        (2_000_000_000, "279037"),
        (20_000_000_000, "353130"),
    ] {
        assert_eq!(totp_at(secret, t), code, "T = {t}");
    }
    assert_eq!(base32_decode("JBSWY3DPEHPK3PXP"), b"Hello!\xde\xad\xbe\xef");
    assert_eq!(base32_decode("GEZD GNBV GY3T QOJQ"), b"1234567890");
}

// ---------------------------------------------------------------------------------------------
// Reading the pages

/// The text of the error paragraph of a page.
fn error_message(html: &str) -> Option<String> {
    let start = html.find("role=\"alert\">")? + "role=\"alert\">".len();
    let len = html[start..].find("</p>")?;
    Some(html_unescape(html[start..start + len].trim()))
}

/// The value of attribute `name` in one tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let v = tag.find(&needle)? + needle.len();
    let len = tag[v..].find('"')?;
    Some(html_unescape(&tag[v..v + len]))
}

/// The text of the first element with `class="CLASS"` (up to its first child tag or end).
fn text_of_class(html: &str, class: &str) -> Option<String> {
    let at = html.find(&format!("class=\"{class}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let len = html[start..].find('<')?;
    Some(html_unescape(html[start..start + len].trim()))
}

/// A form: its action and hidden fields.
#[derive(Debug, Clone)]
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    html: String,
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first form of `html` whose action ends with `path`.
fn form_posting_to(html: &str, path: &str) -> Option<Form> {
    let mut from = 0;
    while let Some(i) = html[from..].find("<form") {
        let start = from + i;
        let form = &html[start..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let open = &form[..form.find('>').unwrap_or(form.len())];
        if attr(open, "action").is_some_and(|a| a.ends_with(path))
            && attr(open, "method").is_some_and(|m| m.eq_ignore_ascii_case("post"))
        {
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
            return Some(Form {
                action: attr(open, "action")?,
                hidden,
                html: form.to_string(),
            });
        }
        from = start + 5;
    }
    None
}

/// A sign-in step's form (code, enrolment, continue) with its `flow` and `csrf`.
fn step_form(page: &Page, path: &str, what: &str) -> Form {
    let form = form_posting_to(&page.text, path).unwrap_or_else(|| {
        panic!(
            "{what}: no <form method=post action=\"...{path}\"> in the {} page:\n{}",
            page.status, page.text
        )
    });
    assert!(
        form.get("flow").is_some_and(|f| !f.is_empty()),
        "{what}: hidden flow: {form:?}"
    );
    assert!(
        form.get("csrf").is_some_and(|c| !c.is_empty()),
        "{what}: hidden csrf: {form:?}"
    );
    form
}

/// The code page for `user`: checks its hooks, returns its form.
fn code_page(page: &Page, user: &str, what: &str) -> Form {
    assert_eq!(
        page.status, 200,
        "{what}: expected the code page, got {}:\n{}",
        page.status, page.text
    );
    assert!(page.is_html(), "{what}");
    assert!(
        !page.sets_cookie("doorman_session"),
        "{what}: no session before the code"
    );
    let form = step_form(page, "/login/code", what);
    assert!(
        form.html.contains("name=\"code\"") && form.html.contains("autocomplete=\"one-time-code\""),
        "{what}: the code input: {}",
        form.html
    );
    assert_eq!(
        text_of_class(&page.text, "account").as_deref(),
        Some(user),
        "{what}: <strong class=\"account\"> names the account:\n{}",
        page.text
    );
    assert!(
        page.text.contains("<details class=\"use-recovery\""),
        "{what}: offers a recovery code:\n{}",
        page.text
    );
    form
}

/// The enrolment page: checks its hooks, returns the secret and its form.
fn enrolment_page(page: &Page, what: &str) -> (Vec<u8>, Form) {
    assert_eq!(
        page.status, 200,
        "{what}: expected the enrolment page, got {}:\n{}",
        page.status, page.text
    );
    let qr = page
        .text
        .find("<div class=\"qr\"")
        .unwrap_or_else(|| panic!("{what}: <div class=\"qr\">:\n{}", page.text));
    let qr_div = &page.text[qr..];
    assert!(
        qr_div[..qr_div.find("</div>").unwrap_or(qr_div.len())].contains("<svg"),
        "{what}: an inline SVG QR code"
    );
    let grouped = text_of_class(&page.text, "totp-secret")
        .unwrap_or_else(|| panic!("{what}: <code class=\"totp-secret\">:\n{}", page.text));
    let groups: Vec<&str> = grouped.split(' ').collect();
    assert!(
        groups.iter().all(|g| !g.is_empty() && g.len() <= 4)
            && groups[..groups.len() - 1].iter().all(|g| g.len() == 4),
        "{what}: groups of four separated by single spaces: {grouped:?}"
    );
    let b32: String = grouped.chars().filter(|c| *c != ' ').collect();
    assert!(
        b32.chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "{what}: base32 without padding: {b32:?}"
    );
    let secret = base32_decode(&b32);
    assert_eq!(secret.len(), 20, "{what}: 20 bytes of secret");
    let uri = text_of_class(&page.text, "otpauth-uri")
        .unwrap_or_else(|| panic!("{what}: <code class=\"otpauth-uri\">:\n{}", page.text));
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={b32}")),
        "{what}: {uri}"
    );
    let form = step_form(page, "/login/enrol", what);
    assert!(form.html.contains("name=\"code\""), "{what}: {}", form.html);
    (secret, form)
}

/// The ten codes of a recovery-codes page (and its download link).
fn recovery_codes(page: &Page, what: &str) -> Vec<String> {
    assert_eq!(
        page.status, 200,
        "{what}: expected the recovery-codes page, got {}:\n{}",
        page.status, page.text
    );
    let at = page
        .text
        .find("<div class=\"recovery-codes\"")
        .unwrap_or_else(|| panic!("{what}: <div class=\"recovery-codes\">:\n{}", page.text));
    let div = &page.text[at..];
    let div = &div[..div.find("</div>").unwrap_or(div.len())];
    let mut codes = Vec::new();
    let mut rest = div;
    while let Some(i) = rest.find("<code") {
        let open = i + rest[i..].find('>').unwrap() + 1;
        let len = rest[open..].find("</code>").unwrap();
        codes.push(html_unescape(rest[open..open + len].trim()));
        rest = &rest[open + len..];
    }
    assert_eq!(codes.len(), 10, "{what}: ten codes: {codes:?}");
    for c in &codes {
        let (a, b) = c.split_once('-').unwrap_or_else(|| panic!("{what}: {c}"));
        assert!(
            a.len() == 5
                && b.len() == 5
                && (a.chars().chain(b.chars()))
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()),
            "{what}: abcde-fghij: {c:?}"
        );
    }
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{what}: distinct: {codes:?}");
    let link = page
        .text
        .find("<a class=\"download\"")
        .map(|at| &page.text[at..at + page.text[at..].find('>').unwrap_or(0)])
        .unwrap_or_else(|| panic!("{what}: <a class=\"download\">:\n{}", page.text));
    assert_eq!(
        attr(link, "download").as_deref(),
        Some("doorman-recovery-codes.txt"),
        "{what}: {link}"
    );
    assert!(
        attr(link, "href").is_some_and(|h| h.starts_with("data:text/plain")),
        "{what}: the download link: {link}"
    );
    codes
}

/// The 429 answer of a locked account: Retry-After, the message, no session. Returns N.
fn assert_locked(page: &Page, what: &str) -> i64 {
    assert_eq!(
        page.status, 429,
        "{what}: expected 429, got {}:\n{}",
        page.status, page.text
    );
    let retry: i64 = page
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}: {retry}");
    assert!(!page.sets_cookie("doorman_session"), "{what}: a session");
    assert!(page.location().is_none(), "{what}: a redirect");
    assert_eq!(
        error_message(&page.text),
        Some(format!(
            "Too many failed attempts. Wait {retry} seconds and try again."
        )),
        "{what}:\n{}",
        page.text
    );
    retry
}

// ---------------------------------------------------------------------------------------------
// Driving sign-ins

async fn start(extra_toml: &str) -> TestServer {
    let server = TestServer::start(extra_toml).await;
    server.clock.freeze();
    server
}

/// An authorization request for `client` with PKCE, state, nonce and `extra` parameters.
fn request(server: &TestServer, client: &str, extra: &[(&str, &str)]) -> AuthRequest {
    let redirect = match client {
        STRICT => STRICT_REDIRECT,
        other => client_info(other).1,
    };
    let (verifier, challenge) = pkce_pair();
    let (state, nonce) = (random_string(), random_string());
    let url = server.authorize_url(
        client,
        redirect,
        "openid profile",
        &state,
        Some(&nonce),
        Some(&challenge),
        extra,
    );
    AuthRequest {
        client: client.to_string(),
        redirect: redirect.to_string(),
        url,
        state,
        nonce,
        verifier,
    }
}

/// The code in a 303 to the client (state and iss checked).
fn code_of(server: &TestServer, req: &AuthRequest, page: &Page, what: &str) -> String {
    assert_eq!(
        page.status, 303,
        "{what}: expected a redirect to the client, got {}:\n{}",
        page.status, page.text
    );
    let back = page.redirect();
    assert!(
        back.as_str().starts_with(&req.redirect),
        "{what}: sent to {back}"
    );
    let q = query(&back);
    assert_eq!(q.get("state"), Some(&req.state), "{what}: {back}");
    assert_eq!(q.get("iss"), Some(&server.base), "{what}: {back}");
    q.get("code")
        .unwrap_or_else(|| panic!("{what}: no code in {back}"))
        .clone()
}

/// Redeems `code` and returns the id_token's claims.
async fn id_claims(server: &TestServer, req: &AuthRequest, code: &str) -> Value {
    let secret = match req.client.as_str() {
        STRICT => STRICT_SECRET,
        other => client_info(other).0.unwrap(),
    };
    let page = server
        .token_basic(
            &req.client,
            secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &req.redirect),
                ("code_verifier", &req.verifier),
            ],
        )
        .await;
    page.assert_status(200);
    let claims = jwt_claims(page.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], req.nonce.as_str());
    claims
}

/// Opens `req` and types the password: the page that answers.
async fn password_step(b: &Browser, req: &AuthRequest, user: &str, pass: &str) -> Page {
    let page = b.get(&req.url).await;
    page.assert_status(200);
    b.submit_login(&page, user, pass).await
}

/// Posts `form` with `code`.
async fn submit_code(b: &Browser, form: &Form, code: &str) -> Page {
    let mut fields: Vec<(&str, &str)> = form
        .hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fields.push(("code", code));
    b.post_form(&form.action, &fields).await
}

/// Posts `form` as it is (hidden fields only).
async fn submit(b: &Browser, form: &Form) -> Page {
    let fields: Vec<(&str, &str)> = form
        .hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post_form(&form.action, &fields).await
}

/// A whole sign-in with password and `code` in a new browser: the id_token's claims.
async fn sign_in_with_code(
    server: &TestServer,
    req: &AuthRequest,
    user: &str,
    pass: &str,
    code: &str,
) -> (Browser, Value) {
    let b = Browser::new();
    let page = password_step(&b, req, user, pass).await;
    let form = code_page(&page, user, "after the password");
    let done = submit_code(&b, &form, code).await;
    assert!(
        done.sets_cookie("doorman_session"),
        "signed in after the code {code:?}: {} {}",
        done.status,
        done.text
    );
    let code = code_of(server, req, &done, "after the code");
    let claims = id_claims(server, req, &code).await;
    (b, claims)
}

/// What `enrol` leaves: the secret (as the authenticator app holds it) and the recovery codes.
struct Enrolled {
    secret: Vec<u8>,
    recovery: Vec<String>,
}

impl Enrolled {
    fn code(&self, server: &TestServer) -> String {
        totp_at(&self.secret, server.now())
    }
}

/// Signs `user` in (password only, in a browser of its own) and enrols TOTP at
/// /account/second-factor through the pages; then moves the clock on one step, so the next
/// code is one the server has not seen.
async fn enrol(server: &TestServer, user: &str, pass: &str) -> Enrolled {
    let b = Browser::new();
    server.code_flow(&b, RP, "openid", user, pass).await;
    let page = b.get(&server.url("/account/second-factor")).await;
    let (secret, form) = enrolment_page(&page, "/account/second-factor");
    let page = submit_code(&b, &form, &totp_at(&secret, server.now())).await;
    let recovery = recovery_codes(&page, "after enrolling");
    server.clock.advance(STEP);
    Enrolled { secret, recovery }
}

// ---------------------------------------------------------------------------------------------
// Enrolment, the code page, replay, recovery codes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_from_a_session_then_sign_in_with_password_and_code() {
    let server = start("").await;
    // Signed in with a password (no factor yet): the account page offers enrolment.
    let b = Browser::new();
    let t = server
        .code_flow(&b, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(t.id_claims()["amr"], json!(["pwd"]));
    let page = b.get(&server.url("/account/second-factor")).await;
    let (secret, form) = enrolment_page(&page, "enrolment");
    assert!(
        form.action.starts_with(&server.base),
        "under the issuer: {}",
        form.action
    );

    // A wrong code: 401, the same page (same secret) with the error.
    let now = server.now();
    let wrong = submit_code(&b, &form, &wrong_code(&secret, now)).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(
        error_message(&wrong.text).is_some_and(|m| !m.is_empty()),
        "an error paragraph:\n{}",
        wrong.text
    );
    let (again, form) = enrolment_page(
        &Page {
            status: 200,
            ..wrong
        },
        "enrolment after a wrong code",
    );
    assert_eq!(again, secret, "the same secret after a wrong code");

    // The right code: ten recovery codes.
    let page = submit_code(&b, &form, &totp_at(&secret, now)).await;
    recovery_codes(&page, "after enrolling");
    assert!(
        form_posting_to(&page.text, "/login/continue").is_some()
            || html_unescape(&page.text).contains("/account/second-factor\""),
        "a way on from the recovery codes:\n{}",
        page.text
    );

    // The account page now shows the factor and ten codes left.
    let status = b.get(&server.url("/account/second-factor")).await;
    status.assert_status(200);
    assert_eq!(
        text_of_class(&status.text, "recovery-left").as_deref(),
        Some("10"),
        "{}",
        status.text
    );
    assert!(
        !status.text.contains("class=\"warning\""),
        "{}",
        status.text
    );
    assert!(
        !status.text.contains("class=\"totp-secret\""),
        "the secret is shown only while enrolling"
    );

    // A new browser: password, then the code page, then the code.
    server.clock.advance(STEP);
    let req = request(&server, RP, &[]);
    let fresh = Browser::new();
    let page = password_step(&fresh, &req, ALICE, ALICE_PASSWORD).await;
    assert!(
        page.login_form().is_none(),
        "the code page asks no password"
    );
    let form = code_page(&page, ALICE, "code page");
    assert!(form.action.starts_with(&server.base), "{}", form.action);
    let done = submit_code(&fresh, &form, &totp_at(&secret, server.now())).await;
    assert!(done.sets_cookie("doorman_session"));
    let code = code_of(&server, &req, &done, "after the code");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
    assert!(
        claims.get("acr").is_none(),
        "no acr_values, no acr: {claims}"
    );
    assert_eq!(claims["preferred_username"], ALICE);

    // That browser's session now gets codes without asking again.
    let req = request(&server, RP, &[]);
    let page = fresh.get(&req.url).await;
    page.assert_status(302);
    let q = query(&page.redirect());
    let claims = id_claims(&server, &req, &q["code"]).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_accepted_once() {
    let server = start("").await;
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let code = alice.code(&server);
    let (_, claims) = sign_in_with_code(
        &server,
        &request(&server, RP, &[]),
        ALICE,
        ALICE_PASSWORD,
        &code,
    )
    .await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));

    // The same code in another sign-in, still within its step: refused.
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let page = password_step(&b, &req, ALICE, ALICE_PASSWORD).await;
    let form = code_page(&page, ALICE, "second sign-in");
    let replay = submit_code(&b, &form, &code).await;
    assert_eq!(replay.status, 401, "a replayed code:\n{}", replay.text);
    assert!(!replay.sets_cookie("doorman_session"));
    assert!(replay.location().is_none());
    assert_eq!(
        error_message(&replay.text).as_deref(),
        Some("That code is not right.")
    );
    // Still the code page, ready for another try; a new step's code (typed with a space, as
    // apps show it) signs in.
    let form = code_page(
        &Page {
            status: 200,
            ..replay
        },
        ALICE,
        "after a replay",
    );
    server.clock.advance(STEP);
    let fresh = alice.code(&server);
    assert_ne!(fresh, code);
    let replay_again = submit_code(&b, &form, &code).await;
    assert_eq!(
        replay_again.status, 401,
        "the old code stays used in the next step (inside the drift window)"
    );
    let form = step_form(&replay_again, "/login/code", "after a second replay");
    let done = submit_code(&b, &form, &spaced(&fresh)).await;
    let code = code_of(&server, &req, &done, "a spaced code");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_signs_in_once() {
    let server = start("").await;
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let recovery = alice.recovery[0].clone();
    let (_, claims) = sign_in_with_code(
        &server,
        &request(&server, RP, &[]),
        ALICE,
        ALICE_PASSWORD,
        &recovery,
    )
    .await;
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]), "{claims}");

    // Not a second time.
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let page = password_step(&b, &req, ALICE, ALICE_PASSWORD).await;
    let form = code_page(&page, ALICE, "second sign-in");
    let again = submit_code(&b, &form, &recovery).await;
    assert_eq!(again.status, 401, "a used recovery code:\n{}", again.text);
    assert!(!again.sets_cookie("doorman_session"));
    assert_eq!(
        error_message(&again.text).as_deref(),
        Some("That code is not right.")
    );
    // Another one, typed in capitals and without the dash: accepted.
    let typed = alice.recovery[1].replace('-', "").to_uppercase();
    let form = step_form(&again, "/login/code", "after a used recovery code");
    let done = submit_code(&b, &form, &typed).await;
    let code = code_of(&server, &req, &done, "a capitalised recovery code");
    assert_eq!(
        id_claims(&server, &req, &code).await["amr"],
        json!(["pwd", "mfa"])
    );

    // The account page counts them; regenerating voids the old set.
    let page = b.get(&server.url("/account/second-factor")).await;
    page.assert_status(200);
    assert_eq!(
        text_of_class(&page.text, "recovery-left").as_deref(),
        Some("8"),
        "{}",
        page.text
    );
    let regen = form_posting_to(&page.text, "/account/second-factor/recovery-codes")
        .unwrap_or_else(|| panic!("a regenerate form:\n{}", page.text));
    assert!(regen.get("csrf").is_some(), "{regen:?}");
    // Without its csrf token: refused.
    let forged = b.post_form(&regen.action, &[("csrf", "forged")]).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let page = submit(&b, &regen).await;
    let new_codes = recovery_codes(&page, "regenerated");
    assert!(
        new_codes.iter().all(|c| !alice.recovery.contains(c)),
        "a new set"
    );
    assert!(
        html_unescape(&page.text).contains("/account/second-factor\""),
        "the way on goes back to /account/second-factor:\n{}",
        page.text
    );
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let page = password_step(&b, &req, ALICE, ALICE_PASSWORD).await;
    let form = code_page(&page, ALICE, "with an old recovery code");
    let old = submit_code(&b, &form, &alice.recovery[2]).await;
    assert_eq!(
        old.status, 401,
        "an unused code of the old set:\n{}",
        old.text
    );

    // Used down to three: the account page warns.
    for c in &new_codes[..7] {
        sign_in_with_code(
            &server,
            &request(&server, RP, &[]),
            ALICE,
            ALICE_PASSWORD,
            c,
        )
        .await;
    }
    let (b, _) = sign_in_with_code(
        &server,
        &request(&server, RP, &[]),
        ALICE,
        ALICE_PASSWORD,
        &alice.code(&server),
    )
    .await;
    let page = b.get(&server.url("/account/second-factor")).await;
    page.assert_status(200);
    assert_eq!(
        text_of_class(&page.text, "recovery-left").as_deref(),
        Some("3"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("<p class=\"warning\""),
        "a warning at three or fewer:\n{}",
        page.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_signs_visitors_in_first() {
    let server = start("").await;
    let b = Browser::new();
    let page = b.get(&server.url("/account/second-factor")).await;
    page.assert_status(200);
    assert!(
        page.login_form().is_some(),
        "not signed in: the landing page:\n{}",
        page.text
    );
    let done = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let back = done.redirect();
    assert_eq!(back.path(), "/account/second-factor", "{back}");
    let page = b.get(back.as_str()).await;
    enrolment_page(&page, "after signing in");
}

// ---------------------------------------------------------------------------------------------
// The code form's rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_form_needs_its_csrf_token_and_browser() {
    let server = start("").await;
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let req = request(&server, RP, &[]);
    let a = Browser::new();
    let form_a = code_page(
        &password_step(&a, &req, ALICE, ALICE_PASSWORD).await,
        ALICE,
        "browser A",
    );
    let b = Browser::new();
    let form_b = code_page(
        &password_step(&b, &request(&server, RP, &[]), ALICE, ALICE_PASSWORD).await,
        ALICE,
        "browser B",
    );
    let code = alice.code(&server);
    let post = |browser: &Browser, flow: &str, csrf: Option<&str>| {
        let browser = browser.clone();
        let (action, flow, csrf, code) = (
            form_a.action.clone(),
            flow.to_string(),
            csrf.map(str::to_string),
            code.clone(),
        );
        async move {
            let mut f = vec![("flow", flow.as_str()), ("code", code.as_str())];
            if let Some(c) = &csrf {
                f.push(("csrf", c.as_str()));
            }
            browser.post_form(&action, &f).await
        }
    };
    let (flow_a, csrf_a) = (form_a.get("flow").unwrap(), form_a.get("csrf").unwrap());
    let (flow_b, csrf_b) = (form_b.get("flow").unwrap(), form_b.get("csrf").unwrap());
    let bare = Browser::new();
    for (what, page) in [
        ("without csrf", post(&a, flow_a, None).await),
        ("empty csrf", post(&a, flow_a, Some("")).await),
        (
            "A's form posted from B",
            post(&b, flow_a, Some(csrf_a)).await,
        ),
        (
            "B's csrf with A's flow",
            post(&a, flow_a, Some(csrf_b)).await,
        ),
        (
            "B's whole form from A",
            post(&a, flow_b, Some(csrf_b)).await,
        ),
        (
            "without the browser cookie",
            post(&bare, flow_a, Some(csrf_a)).await,
        ),
    ] {
        assert_eq!(page.status, 403, "{what}: {}", page.text);
        assert!(page.location().is_none(), "{what}");
        assert!(!page.sets_cookie("doorman_session"), "{what}");
    }
    // None of that used the code up: the genuine form signs in with it.
    let done = submit_code(&a, &form_a, &code).await;
    let c = code_of(&server, &req, &done, "the genuine form");
    assert_eq!(
        id_claims(&server, &req, &c).await["amr"],
        json!(["pwd", "otp"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_page_expires_with_its_flow() {
    let server = start("").await;
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let form = code_page(
        &password_step(&b, &req, ALICE, ALICE_PASSWORD).await,
        ALICE,
        "code page",
    );
    server.clock.advance(31 * 60);
    let late = submit_code(&b, &form, &alice.code(&server)).await;
    assert_eq!(late.status, 400, "{}", late.text);
    assert!(late.location().is_none());
    assert!(!late.sets_cookie("doorman_session"));
}

// ---------------------------------------------------------------------------------------------
// Policy, step-up, acr

/// Finishes an enrolment inside a sign-in: wrong code, right code, recovery codes, continue.
/// Returns the page the continue form answers.
async fn enrol_inside_sign_in(server: &TestServer, b: &Browser, page: &Page) -> Page {
    assert!(
        !page.sets_cookie("doorman_session"),
        "no session before enrolling"
    );
    let (secret, form) = enrolment_page(page, "enrolment inside the sign-in");
    let wrong = submit_code(b, &form, &wrong_code(&secret, server.now())).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(error_message(&wrong.text).is_some(), "{}", wrong.text);
    let (same, form) = enrolment_page(
        &Page {
            status: 200,
            ..wrong
        },
        "after a wrong code",
    );
    assert_eq!(same, secret);
    let page = submit_code(b, &form, &totp_at(&secret, server.now())).await;
    recovery_codes(&page, "after enrolling inside the sign-in");
    assert!(
        page.sets_cookie("doorman_session"),
        "signed in from the recovery-codes page on"
    );
    let cont = step_form(&page, "/login/continue", "continue");
    assert!(
        cont.html.contains("Continue"),
        "a Continue button: {}",
        cont.html
    );
    submit(b, &cont).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_second_factor_is_enrolled_inside_the_sign_in() {
    let server = start("[login]\nrequire_second_factor = \"required\"\n").await;
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let page = password_step(&b, &req, BOB, BOB_PASSWORD).await;
    let done = enrol_inside_sign_in(&server, &b, &page).await;
    let code = code_of(&server, &req, &done, "continue");
    let claims = id_claims(&server, &req, &code).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
    assert_eq!(claims["preferred_username"], BOB);
    // From now on bob is asked for a code.
    let page = password_step(
        &Browser::new(),
        &request(&server, RP, &[]),
        BOB,
        BOB_PASSWORD,
    )
    .await;
    code_page(&page, BOB, "bob's next sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_can_require_a_second_factor_and_sessions_step_up() {
    let server = start(STRICT_CLIENT).await;
    // Without a factor, bob signs in to the RP with his password only...
    let bob = Browser::new();
    let req = request(&server, RP, &[]);
    let done = password_step(&bob, &req, BOB, BOB_PASSWORD).await;
    let code = code_of(&server, &req, &done, "bob to the RP");
    assert_eq!(id_claims(&server, &req, &code).await["amr"], json!(["pwd"]));

    // ...alice (before she has one) too, in a browser she keeps.
    let kept = Browser::new();
    let req = request(&server, RP, &[]);
    let done = password_step(&kept, &req, ALICE, ALICE_PASSWORD).await;
    code_of(&server, &req, &done, "alice to the RP");

    // The strict client in a new browser: bob enrols inside the sign-in.
    let b = Browser::new();
    let req = request(&server, STRICT, &[]);
    let page = password_step(&b, &req, BOB, BOB_PASSWORD).await;
    let done = enrol_inside_sign_in(&server, &b, &page).await;
    let code = code_of(&server, &req, &done, "bob to the strict client");
    assert_eq!(
        id_claims(&server, &req, &code).await["amr"],
        json!(["pwd", "otp"])
    );

    // Turning the factor on ended bob's other sessions (they were signed in without it): his
    // first browser signs in again, password and code.
    let req = request(&server, STRICT, &[]);
    let page = bob.get(&req.url).await;
    assert!(
        page.login_form().is_some(),
        "enrolling elsewhere ended this password-only session:\n{}",
        page.text
    );

    // Step-up: a password-only session of a user who has a factor (kept from before it was
    // turned on by the operator's store, which ends no session) asks for the strict client:
    // the code page, no password form, then a code for the client, and the session is
    // upgraded.
    let alice = server
        .state
        .store
        .find_user_by_username(ALICE)
        .await
        .unwrap()
        .unwrap();
    let secret: Vec<u8> = (1..=20).collect();
    let sealed = server.state.secret_box.seal(&secret).unwrap();
    server
        .state
        .store
        .enable_totp(&alice.id, &sealed, &[], server.now())
        .await
        .unwrap();
    let page = kept.get(&req.url).await;
    assert!(
        page.login_form().is_none(),
        "no password asked:\n{}",
        page.text
    );
    let form = code_page(&page, ALICE, "alice's step-up");
    let done = submit_code(&kept, &form, &totp_at(&secret, server.now())).await;
    let code = code_of(&server, &req, &done, "after the step-up code");
    assert_eq!(
        id_claims(&server, &req, &code).await["amr"],
        json!(["pwd", "otp"])
    );
    let req = request(&server, STRICT, &[]);
    let page = kept.get(&req.url).await;
    assert_eq!(
        page.status, 302,
        "the upgraded session satisfies it:\n{}",
        page.text
    );
    let claims = id_claims(&server, &req, &query(&page.redirect())["code"]).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_only_session_enrols_for_a_strict_client() {
    let server = start(STRICT_CLIENT).await;
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let done = password_step(&b, &req, BOB, BOB_PASSWORD).await;
    code_of(&server, &req, &done, "bob to the RP");
    // The RP again: SSO, nothing asked (the requirement is that client's only).
    let page = b.get(&request(&server, RP, &[]).url).await;
    assert_eq!(page.status, 302, "{}", page.text);
    // The strict client: the password again (a session cookie alone never sets up an app),
    // then the enrolment page.
    let req = request(&server, STRICT, &[]);
    let page = b.get(&req.url).await;
    assert!(
        page.login_form().is_some(),
        "the password first:\n{}",
        page.text
    );
    let page = b.submit_login(&page, BOB, BOB_PASSWORD).await;
    let done = enrol_inside_sign_in(&server, &b, &page).await;
    let code = code_of(
        &server,
        &req,
        &done,
        "after enrolling for the strict client",
    );
    assert_eq!(
        id_claims(&server, &req, &code).await["amr"],
        json!(["pwd", "otp"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_values_ask_for_a_second_factor_and_get_acr() {
    let server = start("").await;
    let doc = Browser::new()
        .get(&server.url("/.well-known/openid-configuration"))
        .await
        .json();
    assert_eq!(doc["acr_values_supported"], json!(["1fa", "2fa"]), "{doc}");

    // A password-only user: acr_values=1fa gives acr "1fa"; none gives no acr.
    let req = request(&server, RP, &[("acr_values", "1fa")]);
    let b = Browser::new();
    let done = password_step(&b, &req, BOB, BOB_PASSWORD).await;
    let claims = id_claims(&server, &req, &code_of(&server, &req, &done, "1fa")).await;
    assert_eq!(claims["acr"], "1fa", "{claims}");
    let req = request(&server, RP, &[]);
    let page = b.get(&req.url).await;
    let claims = id_claims(&server, &req, &query(&page.redirect())["code"]).await;
    assert!(claims.get("acr").is_none(), "{claims}");
    // acr_values=2fa needs a second factor: bob (none) is taken through enrolment.
    let req = request(&server, RP, &[("acr_values", "2fa")]);
    let page = b.get(&req.url).await;
    assert!(
        page.login_form().is_some(),
        "enrolling from a session asks for the password first"
    );
    let page = b.submit_login(&page, BOB, BOB_PASSWORD).await;
    let done = enrol_inside_sign_in(&server, &b, &page).await;
    let claims = id_claims(&server, &req, &code_of(&server, &req, &done, "2fa bob")).await;
    assert_eq!(claims["acr"], "2fa", "{claims}");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));

    // Alice with a factor: password + code, acr "2fa"; without acr_values, no acr.
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let req = request(&server, RP, &[("acr_values", "2fa")]);
    let (_, claims) =
        sign_in_with_code(&server, &req, ALICE, ALICE_PASSWORD, &alice.code(&server)).await;
    assert_eq!(claims["acr"], "2fa", "{claims}");
    server.clock.advance(STEP);
    let req = request(&server, RP, &[]);
    let (_, claims) =
        sign_in_with_code(&server, &req, ALICE, ALICE_PASSWORD, &alice.code(&server)).await;
    assert!(claims.get("acr").is_none(), "{claims}");
    // With a recovery code: mfa, and still 2fa.
    let req = request(&server, RP, &[("acr_values", "2fa")]);
    let (_, claims) =
        sign_in_with_code(&server, &req, ALICE, ALICE_PASSWORD, &alice.recovery[0]).await;
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
    assert_eq!(claims["acr"], "2fa", "{claims}");
}

// ---------------------------------------------------------------------------------------------
// Lockout

/// Wrong passwords on `page`'s form, each answered 401; the last page.
async fn wrong_passwords(b: &Browser, mut page: Page, n: usize, headers: &[(&str, &str)]) -> Page {
    for i in 0..n {
        page = b
            .submit_login_with(&page, ALICE, "wrong-password", headers)
            .await;
        assert_eq!(page.status, 401, "wrong password #{}: {}", i + 1, page.text);
    }
    page
}

async fn login_page(server: &TestServer, b: &Browser) -> Page {
    let page = b.get(&request(server, RP, &[]).url).await;
    page.assert_status(200);
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_waits_even_with_the_right_password() {
    let server = start(LOCKOUT).await;
    let b = Browser::new();
    let before = server.state.hasher.verifications();
    let page = wrong_passwords(&b, login_page(&server, &b).await, 3, &[]).await;
    let locked = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    let retry = assert_locked(&locked, "the right password after 3 failures");
    assert!((25..=30).contains(&retry), "lockout_base 30s: {retry}");
    assert_eq!(
        server.state.hasher.verifications() - before,
        3,
        "refused before any argon2 work"
    );
    assert!(locked.login_form().is_some(), "the sign-in page again");
    // A wrong password while locked says the same.
    let again = b.submit_login(&locked, ALICE, "wrong-password").await;
    assert_eq!(
        assert_locked(&again, "a wrong password while locked"),
        retry
    );

    // Bob is not affected.
    let other = Browser::new();
    let back = other
        .login(&request(&server, RP, &[]).url, BOB, BOB_PASSWORD)
        .await;
    assert!(query(&back).contains_key("code"));

    // Once the wait is over the right password works, and resets the count.
    server.clock.advance(retry);
    let ok = b.submit_login(&again, ALICE, ALICE_PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    let b = Browser::new();
    let page = wrong_passwords(&b, login_page(&server, &b).await, 2, &[]).await;
    let ok = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(ok.status, 303, "the count started again: {}", ok.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_further_failure_doubles_the_wait_up_to_lockout_max() {
    let server = start(LOCKOUT).await;
    let b = Browser::new();
    let page = wrong_passwords(&b, login_page(&server, &b).await, 3, &[]).await;
    let locked = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    let mut retry = assert_locked(&locked, "first block");
    assert!((25..=30).contains(&retry), "{retry}");
    let mut page = locked;
    for (expected, what) in [
        (60, "doubled"),
        (120, "doubled again"),
        (120, "capped at 2m"),
    ] {
        server.clock.advance(retry);
        page = wrong_passwords(&b, page, 1, &[]).await;
        let locked = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
        retry = assert_locked(&locked, what);
        assert!(
            (expected - 5..=expected).contains(&retry),
            "{what}: {retry}, expected about {expected}"
        );
        page = locked;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockout_is_per_address_first_then_per_account() {
    let server = start(&format!("trusted_proxies = [\"127.0.0.1\"]\n{LOCKOUT}")).await;
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    let a = Browser::new();
    let page = wrong_passwords(&a, login_page(&server, &a).await, 3, &xff("203.0.113.1")).await;
    let locked = a
        .submit_login_with(&page, ALICE, ALICE_PASSWORD, &xff("203.0.113.1"))
        .await;
    assert_locked(&locked, "alice from 203.0.113.1");
    // From another address, below the all-IPs limit (5 x 3): the right password works.
    let b = Browser::new();
    let done = b
        .submit_login_with(
            &login_page(&server, &b).await,
            ALICE,
            ALICE_PASSWORD,
            &xff("198.51.100.7"),
        )
        .await;
    assert_eq!(done.status, 303, "another address: {}", done.text);
    // The first address is still waiting.
    let still = a
        .submit_login_with(&locked, ALICE, ALICE_PASSWORD, &xff("203.0.113.1"))
        .await;
    assert_locked(&still, "203.0.113.1 after another address signed in");

    // Past max_failures_per_account_all_ips, every address waits.
    let server = start(
        "trusted_proxies = [\"127.0.0.1\"]\n[login]\nmax_failures_per_account = 3\n\
         max_failures_per_account_all_ips = 6\nlockout_base = \"30s\"\nlockout_max = \"2m\"\n",
    )
    .await;
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let b = Browser::new();
        wrong_passwords(
            &b,
            login_page(&server, &b).await,
            2,
            &[("x-forwarded-for", ip)],
        )
        .await;
    }
    for ip in ["198.51.100.7", "203.0.113.1"] {
        let b = Browser::new();
        let page = b
            .submit_login_with(
                &login_page(&server, &b).await,
                ALICE,
                ALICE_PASSWORD,
                &[("x-forwarded-for", ip)],
            )
            .await;
        assert_locked(&page, &format!("alice from {ip} past the all-IPs limit"));
    }
    // Bob still signs in from those addresses.
    let b = Browser::new();
    let done = b
        .submit_login_with(
            &login_page(&server, &b).await,
            BOB,
            BOB_PASSWORD,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_count_toward_the_lockout() {
    let server = start(LOCKOUT).await;
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let mut page = password_step(&b, &req, ALICE, ALICE_PASSWORD).await;
    code_page(&page, ALICE, "code page");
    for i in 0..3 {
        let form = step_form(&page, "/login/code", "code page");
        page = submit_code(&b, &form, &wrong_code(&alice.secret, server.now())).await;
        assert_eq!(page.status, 401, "wrong code #{}: {}", i + 1, page.text);
    }
    let form = step_form(&page, "/login/code", "after three wrong codes");
    let locked = submit_code(&b, &form, &alice.code(&server)).await;
    let retry = assert_locked(&locked, "the right code after three wrong ones");
    // The password does not get past it either.
    let other = Browser::new();
    let page = password_step(&other, &request(&server, RP, &[]), ALICE, ALICE_PASSWORD).await;
    assert_locked(&page, "a new sign-in while the codes are locked");

    server.clock.advance(retry.max(STEP));
    let form = step_form(&locked, "/login/code", "the 429 code page");
    let done = submit_code(&b, &form, &alice.code(&server)).await;
    let code = code_of(&server, &req, &done, "after the wait");
    assert_eq!(
        id_claims(&server, &req, &code).await["amr"],
        json!(["pwd", "otp"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_of_codes_checks_no_more_than_the_limit() {
    let server = start(LOCKOUT).await;
    server.clock.freeze();
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let b = Browser::new();
    let req = request(&server, RP, &[]);
    let page = password_step(&b, &req, ALICE, ALICE_PASSWORD).await;
    let form = step_form(&page, "/login/code", "code page");
    // 30 codes at once, the right one among them: the limit (3) is reserved before each
    // check, so at most three are looked at, and everything past them is refused.
    let right = alice.code(&server);
    let wrong = wrong_code(&alice.secret, server.now());
    let attempts: Vec<_> = (0..30)
        .map(|i| {
            let (b, form) = (b.clone(), form.clone());
            let code = if i == 29 {
                right.clone()
            } else {
                wrong.clone()
            };
            tokio::spawn(async move { submit_code(&b, &form, &code).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for a in attempts {
        statuses.push(a.await.unwrap().status);
    }
    let checked = statuses.iter().filter(|s| **s != 429).count();
    assert!(checked <= 3, "checked {checked}: {statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 27,
        "{statuses:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The command line

/// `doorman ARGS --config CONFIG` through the real binary.
fn cli(config: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd: Command = doorman_command();
    cmd.args(args).arg("--config").arg(config);
    output_with_stdin(cmd, "")
}

/// The row of `doorman user list` for `user`.
fn list_row(config: &std::path::Path, user: &str) -> String {
    let out = cli(config, &["user", "list"]);
    assert_ok(&out, "user list");
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(user))
        .unwrap_or_else(|| panic!("no row for {user}:\n{stdout}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_reset_2fa_and_list_on_the_command_line() {
    let opts = Options {
        extra_toml: LOCKOUT.to_string(),
        ..Default::default()
    };
    let server = TestServer::start_with(opts.clone()).await;
    server.clock.freeze();
    let config = server.dir.path().join("doorman.toml");
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();

    let (alice_before, bob_before) = (list_row(&config, ALICE), list_row(&config, BOB));
    let alice = enrol(&server, ALICE, ALICE_PASSWORD).await;
    let alice_with = list_row(&config, ALICE);
    assert_ne!(
        alice_with, alice_before,
        "user list shows alice's second factor"
    );
    assert_eq!(list_row(&config, BOB), bob_before, "bob has none");

    // Locked out...
    let b = Browser::new();
    let page = wrong_passwords(&b, login_page(&server, &b).await, 3, &[]).await;
    let locked = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_locked(&locked, "before unlock");
    // ...and unlocked at once.
    let out = cli(&config, &["user", "unlock", ALICE]);
    assert_ok(&out, "user unlock");
    let page = b.submit_login(&locked, ALICE, ALICE_PASSWORD).await;
    let form = code_page(&page, ALICE, "after unlock");
    let done = submit_code(&b, &form, &alice.code(&server)).await;
    assert_eq!(done.status, 303, "{}", done.text);

    // reset-2fa: the factor is gone and her sessions end.
    let out = cli(&config, &["user", "reset-2fa", ALICE]);
    assert_ok(&out, "user reset-2fa");
    assert_eq!(
        list_row(&config, ALICE),
        alice_before,
        "user list: no factor"
    );
    // The server's caches hold sessions for up to 5 s (the README's promise): wait that out.
    tokio::time::sleep(doorman::store::cached::TTL + Duration::from_millis(500)).await;
    let page = b.get(&request(&server, RP, &[]).url).await;
    page.assert_status(200);
    assert!(
        page.login_form().is_some(),
        "her session ended:\n{}",
        page.text
    );
    // The next sign-in asks no code.
    let done = b.submit_login(&page, ALICE, ALICE_PASSWORD).await;
    assert_eq!(
        done.status, 303,
        "no code page after reset-2fa:\n{}",
        done.text
    );
}
