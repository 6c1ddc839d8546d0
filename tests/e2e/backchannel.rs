//! OIDC Back-Channel Logout 1.0: when a session ends, each client that signed in through it and
//! registered a `backchannel_logout_uri` gets one POSTed logout token. A small receiver on
//! 127.0.0.1 checks every token the way an RP library does: the signature against the JWKS,
//! `typ`, iss, aud, iat/exp, the event, no nonce, and the same `sid` and `sub` as the
//! id_token it got at sign-in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::*;

const ONE: &str = "bc-one";
const ONE_SECRET: &str = "bc-one-secret-0123456789";
const ONE_REDIRECT: &str = "http://127.0.0.1:1/bc-one";
const NONE: &str = "bc-none";
const NONE_SECRET: &str = "bc-none-secret-0123456789";
const NONE_REDIRECT: &str = "http://127.0.0.1:1/bc-none";

/// What the receiver saw: each POST's content type and logout_token.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

impl Seen {
    fn tokens(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A back-channel logout endpoint on a free local port that answers the statuses of `script`
/// in turn, then 200. Its URL and what it saw.
async fn receiver(script: Vec<u16>) -> (String, Seen) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    let seen = Seen::default();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    type S = (Seen, Arc<Mutex<VecDeque<u16>>>);
    async fn handle(
        State((seen, script)): State<S>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let token = url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        seen.0.lock().unwrap().push((content_type, token));
        let status = script.lock().unwrap().pop_front().unwrap_or(200);
        StatusCode::from_u16(status).unwrap()
    }
    let app = axum::Router::new()
        .route("/backchannel", axum::routing::post(handle))
        .with_state((seen.clone(), script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn clients_toml(uri: &str) -> String {
    format!(
        r#"
[[clients]]
id = "{ONE}"
secret = "{ONE_SECRET}"
redirect_uris = ["{ONE_REDIRECT}"]
backchannel_logout_uri = "{uri}"
backchannel_logout_session_required = true

[[clients]]
id = "{NONE}"
secret = "{NONE_SECRET}"
redirect_uris = ["{NONE_REDIRECT}"]
"#
    )
}

async fn server_with(uri: &str) -> TestServer {
    TestServer::start(&clients_toml(uri)).await
}

/// Signs `browser` in to `client` (or uses its SSO session) and redeems the code: the id_token's
/// claims.
async fn sign_in(
    server: &TestServer,
    browser: &Browser,
    client: &str,
    user: &str,
    pass: &str,
) -> Value {
    sign_in_with(server, browser, client, user, pass, &[]).await
}

/// `sign_in` with `extra` authorization parameters (e.g. `prompt=login`).
async fn sign_in_with(
    server: &TestServer,
    browser: &Browser,
    client: &str,
    user: &str,
    pass: &str,
    extra: &[(&str, &str)],
) -> Value {
    let (secret, redirect) = match client {
        ONE => (ONE_SECRET, ONE_REDIRECT),
        NONE => (NONE_SECRET, NONE_REDIRECT),
        other => panic!("unknown client {other}"),
    };
    let (verifier, challenge) = pkce_pair();
    let url = server.authorize_url(
        client,
        redirect,
        "openid",
        "st",
        Some("n-1"),
        Some(&challenge),
        extra,
    );
    let page = browser.get(&url).await;
    let back = match page.status {
        302 => page.redirect(),
        200 => {
            let done = browser.submit_login(&page, user, pass).await;
            assert_eq!(done.status, 303, "{}", done.text);
            done.redirect()
        }
        s => panic!("authorize answered {s}: {}", page.text),
    };
    let code = query(&back)["code"].clone();
    let page = server
        .token_basic(
            client,
            secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    page.assert_status(200);
    let id_token = page.json()["id_token"].as_str().unwrap().to_string();
    let mut claims = jwt_claims(&id_token);
    claims["id_token"] = Value::String(id_token);
    claims
}

/// Waits (bounded) until the receiver has seen `n` POSTs; moving the server's clock a second
/// at a time when `advance`, so retries fall due without the test waiting for them.
async fn wait_for(server: &TestServer, seen: &Seen, n: usize, advance: bool) {
    for _ in 0..400 {
        if seen.len() >= n {
            return;
        }
        if advance {
            server.clock.advance(1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the receiver saw {} POSTs, not {n}", seen.len());
}

/// Waits (bounded) until no delivery is pending any more.
async fn settled(server: &TestServer) {
    for _ in 0..400 {
        if server.state.backchannel.outstanding() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("deliveries still outstanding");
}

/// Verifies a logout token as an RP library would (Back-Channel Logout 1.0 §2.6) for `client`;
/// its claims.
async fn verify(server: &TestServer, token: &str, client: &str) -> Value {
    let header = jwt_header(token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "logout+jwt");
    let kid = header["kid"].as_str().expect("a kid");
    let jwks: Value = server
        .http
        .get(server.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[server.base.as_str()]);
    validation.set_audience(&[client]);
    // The server's clock is a test clock: exp and iat are checked against it below.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the logout token does not verify: {e}"))
        .claims;
    let now = server.now();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat <= now && now < exp && exp - iat <= 300, "{claims}");
    assert_eq!(
        claims["events"],
        serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(claims.get("nonce").is_none(), "never a nonce: {claims}");
    assert!(!claims["jti"].as_str().unwrap_or_default().is_empty());
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_sends_one_token_with_the_sessions_sid() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let browser = Browser::new();
    let id = sign_in(&server, &browser, ONE, ALICE, ALICE_PASSWORD).await;
    // The same session signs in to a client without the URI, and a second session of alice
    // to the client with it: neither is told.
    sign_in(&server, &browser, NONE, ALICE, ALICE_PASSWORD).await;
    let other = Browser::new();
    let other_id = sign_in(&server, &other, ONE, ALICE, ALICE_PASSWORD).await;
    assert_ne!(id["sid"], other_id["sid"]);
    let discovery = server
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    let mut url = url::Url::parse(&server.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id["id_token"].as_str().unwrap());
    let page = browser.get(url.as_str()).await;
    page.assert_status(200);
    assert!(page.text.contains("You are signed out"), "{}", page.text);

    wait_for(&server, &seen, 1, false).await;
    settled(&server).await;
    let sent = seen.0.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        1,
        "one delivery, to the one client with the URI"
    );
    assert_eq!(sent[0].0, "application/x-www-form-urlencoded");
    let claims = verify(&server, &sent[0].1, ONE).await;
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["sub"], id["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_ending_a_session_or_disabling_the_user_sends_a_token() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let bob = Browser::new();
    let first = sign_in(&server, &bob, ONE, BOB, BOB_PASSWORD).await;

    // Alice ends bob's session on /admin/sessions.
    let alice = Browser::new();
    let landing = alice.get(&server.url("/admin")).await;
    let done = alice.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let page = alice.get(&server.url("/admin/sessions")).await;
    page.assert_status(200);
    let at = page.text.find("data-session-user=\"bob\"").unwrap();
    let entry = &page.text[at..at + page.text[at..].find("</li>").unwrap()];
    let sid = input_value(entry, "sid").unwrap();
    assert_eq!(sid, first["sid"].as_str().unwrap());
    let csrf = input_value(&page.text, "csrf").unwrap();
    let answer = alice
        .post_form(
            &server.url("/admin/sessions/revoke"),
            &[("sid", sid.as_str()), ("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    wait_for(&server, &seen, 1, false).await;
    let claims = verify(&server, &seen.tokens()[0], ONE).await;
    assert_eq!(claims["sid"], first["sid"]);
    assert_eq!(claims["sub"], first["sub"]);

    // Bob signs in again; alice disables him.
    let bob = Browser::new();
    let second = sign_in(&server, &bob, ONE, BOB, BOB_PASSWORD).await;
    let bob_id = second["sub"].as_str().unwrap();
    let page = alice.get(&server.url("/admin")).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    let answer = alice
        .post_form(
            &server.url(&format!("/admin/users/{bob_id}/disable")),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    wait_for(&server, &seen, 2, false).await;
    settled(&server).await;
    assert_eq!(seen.len(), 2);
    let claims = verify(&server, &seen.tokens()[1], ONE).await;
    assert_eq!(claims["sid"], second["sid"]);
    assert_eq!(claims["sub"], second["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_token_on_the_third_try() {
    let (uri, seen) = receiver(vec![500, 500]).await;
    let server = server_with(&uri).await;
    let browser = Browser::new();
    let id = sign_in(&server, &browser, ONE, ALICE, ALICE_PASSWORD).await;
    let mut url = url::Url::parse(&server.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id["id_token"].as_str().unwrap());
    browser.get(url.as_str()).await.assert_status(200);

    wait_for(&server, &seen, 1, false).await;
    // The retries wait 5 s, then 15 s, by the server's clock: move it.
    wait_for(&server, &seen, 2, true).await;
    wait_for(&server, &seen, 3, true).await;
    settled(&server).await;
    let tokens = seen.tokens();
    assert_eq!(tokens.len(), 3, "delivered on the third try, then no more");
    let third = verify(&server, &tokens[2], ONE).await;
    assert_eq!(third["sid"], id["sid"]);
    // Each try is a freshly signed token.
    let first = jwt_claims(&tokens[0]);
    assert_ne!(first["jti"], third["jti"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disabling_a_user_sends_a_token() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let browser = Browser::new();
    let id = sign_in(&server, &browser, ONE, BOB, BOB_PASSWORD).await;
    let config = server.dir.path().join("doorman.toml");
    let opts = Options {
        extra_toml: clients_toml(&uri),
        ..Default::default()
    };
    std::fs::write(&config, config_text(server.port, server.dir.path(), &opts)).unwrap();
    let out = doorman_command()
        .args(["user", "disable", BOB, "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("back-channel logout: 1 application(s) told"),
        "{stdout}"
    );
    assert_eq!(seen.len(), 1);
    let claims = verify(&server, &seen.tokens()[0], ONE).await;
    assert_eq!(claims["sid"], id["sid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_on_the_account_page_sends_a_token() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let phone = Browser::new();
    let id = sign_in(&server, &phone, ONE, ALICE, ALICE_PASSWORD).await;
    let here = Browser::new();
    let landing = here.get(&server.url("/account")).await;
    let done = here.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let page = here.get(&server.url("/account")).await;
    page.assert_status(200);
    let sid = id["sid"].as_str().unwrap();
    assert!(page.text.contains(sid), "the phone's session is listed");
    let csrf = input_value(&page.text, "csrf").unwrap();
    let answer = here
        .post_form(
            &server.url("/account/sessions/end"),
            &[("csrf", csrf.as_str()), ("sid", sid)],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    wait_for(&server, &seen, 1, false).await;
    settled(&server).await;
    assert_eq!(seen.len(), 1, "only the ended session's client is told");
    let claims = verify(&server, &seen.tokens()[0], ONE).await;
    assert_eq!(claims["sid"], id["sid"]);
}

/// A new password on /account ends the other sessions: their clients are told; the session
/// that changed it goes on, so its own client is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_on_the_account_page_tells_the_other_sessions_clients() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let phone = Browser::new();
    let phone_id = sign_in(&server, &phone, ONE, ALICE, ALICE_PASSWORD).await;
    let here = Browser::new();
    let here_id = sign_in(&server, &here, ONE, ALICE, ALICE_PASSWORD).await;
    let page = here.get(&server.url("/account")).await;
    page.assert_status(200);
    let csrf = input_value(&page.text, "csrf").unwrap();
    let new = "a-new-long-passphrase";
    let answer = here
        .post_form(
            &server.url("/account/password"),
            &[
                ("csrf", csrf.as_str()),
                ("current_password", ALICE_PASSWORD),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    wait_for(&server, &seen, 1, false).await;
    settled(&server).await;
    assert_eq!(seen.len(), 1);
    let claims = verify(&server, &seen.tokens()[0], ONE).await;
    assert_eq!(claims["sid"], phone_id["sid"]);
    assert_ne!(claims["sid"], here_id["sid"]);
}

/// Signs `browser` in again with `prompt=login` as `user`, to `NONE`: the id_token's claims.
async fn sign_in_again(server: &TestServer, browser: &Browser, user: &str, pass: &str) -> Value {
    sign_in_with(server, browser, NONE, user, pass, &[("prompt", "login")]).await
}

/// A new sign-in of the same user in the same browser (`prompt=login`, a step-up) rotates the
/// cookie but keeps the session's `sid`: signing out later still tells the application that
/// signed in before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_keeps_the_sid_so_signing_out_tells_the_earlier_app() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let browser = Browser::new();
    let first = sign_in(&server, &browser, ONE, ALICE, ALICE_PASSWORD).await;
    let before = browser.cookie(&server.base, "doorman_session");
    let again = sign_in_again(&server, &browser, ALICE, ALICE_PASSWORD).await;
    assert_ne!(
        browser.cookie(&server.base, "doorman_session"),
        before,
        "the cookie rotates"
    );
    assert_eq!(again["sid"], first["sid"], "the sid stays");
    let mut url = url::Url::parse(&server.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", again["id_token"].as_str().unwrap());
    browser.get(url.as_str()).await.assert_status(200);
    wait_for(&server, &seen, 1, false).await;
    settled(&server).await;
    let tokens = seen.tokens();
    assert_eq!(tokens.len(), 1);
    let claims = verify(&server, &tokens[0], ONE).await;
    assert_eq!(claims["sid"], first["sid"]);
}

/// Another user signing in over a session in the same browser ends it as a sign-out: its
/// applications are told, and the new user's session has its own `sid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_signing_in_over_a_session_signs_it_out() {
    let (uri, seen) = receiver(vec![]).await;
    let server = server_with(&uri).await;
    let browser = Browser::new();
    let alice = sign_in(&server, &browser, ONE, ALICE, ALICE_PASSWORD).await;
    let bob = sign_in_again(&server, &browser, BOB, BOB_PASSWORD).await;
    assert_ne!(bob["sid"], alice["sid"]);
    wait_for(&server, &seen, 1, false).await;
    settled(&server).await;
    let tokens = seen.tokens();
    assert_eq!(tokens.len(), 1, "alice's application is told");
    let claims = verify(&server, &tokens[0], ONE).await;
    assert_eq!(claims["sid"], alice["sid"]);
    assert_eq!(claims["sub"], alice["sub"]);
}
