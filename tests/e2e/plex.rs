//! Sign in with Plex over HTTP, against the fake plex.tv: driven like the landing page's
//! script (start, approve at the "Auth App", poll, follow the redirect) and like a relying
//! party (code, tokens, refresh). Who may enter (server access), what the tokens say, the
//! failure modes of plex.tv, the binding of a PIN to its browser, the same-tab and redirect
//! modes, and what doorman sends to plex.tv.

use std::time::{Duration, Instant};

use doorman::accounts::{users, NewUser};
use serde_json::Value;

use crate::common::fake_plex::*;
use crate::common::*;

const PROFILE_SCOPE: &str = "openid profile email groups";

/// A client that gets the per-server token as `plex_token`.
const PLEX_SERVER_RP: Rp = Rp {
    id: "plex-server",
    secret: "plex-server-secret-0123",
    redirect: "http://127.0.0.1:1/plex-server",
};
/// A client that gets the plex.tv account token as `plex_token`.
const PLEX_ACCOUNT_RP: Rp = Rp {
    id: "plex-account",
    secret: "plex-account-secret-0123",
    redirect: "http://127.0.0.1:1/plex-account",
};
const PLEX_CLIENTS_TOML: &str = r#"
[[clients]]
id = "plex-server"
secret = "plex-server-secret-0123"
redirect_uris = ["http://127.0.0.1:1/plex-server"]
plex_token_claim = "server"

[[clients]]
id = "plex-account"
secret = "plex-account-secret-0123"
redirect_uris = ["http://127.0.0.1:1/plex-account"]
plex_token_claim = "account"
"#;

async fn setup(plex_keys: &str) -> (FakePlex, TestServer) {
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", plex_keys, "").await;
    (fake, server)
}

fn id_claims(tokens: &Value) -> Value {
    jwt_claims(tokens["id_token"].as_str().expect("an id_token"))
}

fn groups(claims: &Value) -> Vec<String> {
    claims["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("groups in {claims}"))
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

/// A redirect answering a GET (302 Found or 303 See Other).
fn assert_redirect(page: &Page) {
    assert!(
        matches!(page.status, 302 | 303),
        "expected a redirect, got {}: {}",
        page.status,
        page.text
    );
}

fn count(fake: &FakePlex, method: &str, path: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Who may enter

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_signs_in_and_gets_owner_groups() {
    let (fake, server) = setup("owner_groups = [\"admins\"]\n").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let app = landing.start(&server, &browser).await;

    // The Auth App URL: the fake's /auth, `#?` fragment, our client id and product, and the
    // popup's forwardUrl on doorman.
    assert_eq!(app.base, fake.auth_app_url(), "{}", app.url);
    assert!(app.url.contains("/auth#?"), "{}", app.url);
    let pin = fake.pin_by_code(&app.code);
    assert!(pin.strong, "a strong PIN");
    assert!(pin.id > 1 << 31, "PIN ids above 2^31 survive: {}", pin.id);
    assert_eq!(app.code.len(), 25, "{}", app.code);
    assert_eq!(app.params.get("clientID"), Some(&pin.client_id));
    assert_eq!(
        app.params
            .get("context[device][product]")
            .map(String::as_str),
        Some("doorman")
    );
    assert_eq!(app.forward_url(), server.url("/login/plex/done"));

    fake.approve(&app.code, OWNER);
    let back = landing.poll_until_done(&server, &browser).await;
    let code = landing.code_from(&server, &back);
    let claims = id_claims(&landing.redeem(&server, &code).await);
    assert_eq!(claims["preferred_username"], "owner");
    assert_eq!(claims["email"], "owner@plex.example");
    let g = groups(&claims);
    assert!(g.contains(&"plex".to_string()), "{g:?}");
    assert!(g.contains(&"admins".to_string()), "owner_groups: {g:?}");
    assert_eq!(claims["amr"], serde_json::json!(["plex"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_friend_signs_in_with_her_plex_profile_under_a_stable_sub() {
    let (fake, server) = setup("owner_groups = [\"admins\"]\n").await;
    let alice = fake.account(P_ALICE);

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let claims = id_claims(&tokens);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["name"], "Alice Plex");
    assert_eq!(claims["email"], "alice@plex.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["picture"], alice.thumb().as_str());
    let g = groups(&claims);
    assert!(g.contains(&"plex".to_string()), "{g:?}");
    assert!(!g.contains(&"admins".to_string()), "not an owner: {g:?}");

    // `sub` is doorman's own opaque id, not the Plex id or uuid.
    let sub = claims["sub"].as_str().unwrap().to_string();
    assert_ne!(sub, alice.id.to_string());
    assert!(!sub.contains(&alice.id.to_string()), "{sub}");
    assert_ne!(sub, alice.uuid);
    let user = server
        .state
        .store
        .find_user_by_username("alice")
        .await
        .unwrap()
        .expect("a doorman user for alice");
    assert_eq!(user.id, sub);
    let info = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    info.assert_status(200);
    assert_eq!(info.json()["sub"], sub.as_str());

    // Signing in again (another browser, so no SSO) finds the same user: keyed on the Plex id.
    let other = Browser::new();
    let landing = PlexLanding::open(&server, &other, RP_CLIENT, PROFILE_SCOPE).await;
    let again = id_claims(&landing.sign_in(&server, &fake, &other, P_ALICE).await);
    assert_eq!(again["sub"], sub.as_str());
    assert_eq!(again["preferred_username"], "alice");
    assert_eq!(server.state.store.list_users().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_without_access_are_denied_without_a_session() {
    let (fake, server) = setup("").await;
    for who in [P_BOB, EVE] {
        let browser = Browser::new();
        let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
        let app = landing.start(&server, &browser).await;
        fake.approve(&app.code, who);
        let page = landing.poll_until_settled(&server, &browser).await;
        assert_eq!(page.status, 403, "{who}: {}", page.text);
        let j = page.json();
        assert_eq!(j["status"], "denied", "{who}: {j}");
        let message = j["message"].as_str().unwrap();
        assert!(message.contains("access to this server"), "{message}");
        assert!(!page.sets_cookie("doorman_session"), "{who}");
        assert!(browser.cookie(&server.base, "doorman_session").is_none());
        assert!(
            server
                .state
                .store
                .find_user_by_username(who)
                .await
                .unwrap()
                .is_none(),
            "no doorman user is made for {who}"
        );
        // The landing page still works: an SSO attempt shows it again, no code.
        let (_, again) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
        assert_eq!(again.status, 200, "{who}: {}", again.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_profile_without_email_signs_in_under_its_title() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let claims = id_claims(&landing.sign_in(&server, &fake, &browser, KID).await);
    assert_eq!(claims["preferred_username"], "Kid");
    assert_eq!(claims["name"], "Kid");
    assert!(claims.get("email").is_none(), "no email: {claims}");
    assert!(claims.get("email_verified").is_none(), "{claims}");
    assert!(groups(&claims).contains(&"plex".to_string()));
}

// ---------------------------------------------------------------------------------------------
// plex.tv's failure modes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pin_is_reported_and_a_retry_makes_a_new_one() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let first = landing.start(&server, &browser).await;
    let first_pin = fake.pin_by_code(&first.code);
    fake.expire(first_pin.id);
    let page = landing.poll_until_settled(&server, &browser).await;
    page.assert_status(200);
    let j = page.json();
    assert_eq!(j["status"], "expired", "{j}");
    assert!(j["message"].as_str().unwrap().contains("timed out"), "{j}");

    // "Try again": a new PIN, with a new code.
    let second = landing.start(&server, &browser).await;
    assert_ne!(second.code, first.code);
    let second_pin = fake.pin_by_code(&second.code);
    assert_ne!(second_pin.id, first_pin.id);
    fake.approve(&second.code, P_ALICE);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
    assert!(
        pin_polls(&fake, first_pin.id).len() <= 2,
        "the expired PIN is not polled on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_past_its_expires_in_is_expired_without_asking_plex() {
    let (fake, server) = setup("").await;
    fake.set_pin_lifetime(120);
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    let pin = fake.pin_by_code(&app.code);
    server.clock.advance(121);
    let page = landing.poll(&server, &browser).await;
    assert_eq!(page.json()["status"], "expired", "{}", page.text);
    assert!(pin_polls(&fake, pin.id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_503_on_the_pin_poll_is_pending_then_completes() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    // Enough failures for the poll and its one retry.
    fake.fault("/api/v2/pins/", 503, 2, None);
    server.clock.advance(1);
    let page = landing.poll(&server, &browser).await;
    page.assert_status(200);
    let j = page.json();
    assert_eq!(j["status"], "pending", "never a denial: {j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap_or("")
            .contains("not responding"),
        "{j}"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.is_pin_poll() && r.status == 503),
        "the fault was hit"
    );
    // The fault is used up: the next poll completes.
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_429_on_the_pin_poll_backs_off_then_completes() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    let pin = fake.pin_by_code(&app.code);
    fake.approve(&app.code, P_ALICE);
    fake.fault("/api/v2/pins/", 429, 1, Some(3));
    server.clock.advance(1);
    let page = landing.poll(&server, &browser).await;
    page.assert_status(200);
    let j = page.json();
    assert_eq!(j["status"], "pending", "never a denial: {j}");
    assert!(j["message"].is_string(), "a message: {j}");
    assert_eq!(pin_polls(&fake, pin.id).len(), 1);

    // Retry-After: 3 is honoured: no plex.tv poll for 3 seconds.
    server.clock.advance(2);
    let page = landing.poll(&server, &browser).await;
    assert_eq!(page.json()["status"], "pending");
    assert_eq!(pin_polls(&fake, pin.id).len(), 1, "backing off after a 429");
    server.clock.advance(1);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_503_on_the_user_while_finishing_is_pending_then_completes() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    fake.fault("/api/v2/user", 503, 2, None);
    server.clock.advance(1);
    let page = landing.poll(&server, &browser).await;
    page.assert_status(200);
    let j = page.json();
    assert_eq!(j["status"], "pending", "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap_or("")
            .contains("not responding"),
        "{j}"
    );
    assert!(!page.sets_cookie("doorman_session"));
    let back = landing.poll_until_done(&server, &browser).await;
    let code = landing.code_from(&server, &back);
    let claims = id_claims(&landing.redeem(&server, &code).await);
    assert_eq!(claims["preferred_username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_before_the_poll_fails_the_sign_in() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    fake.revoke(&account_token(P_ALICE));
    let page = landing.poll_until_settled(&server, &browser).await;
    let j = page.json();
    assert_eq!(j["status"], "error", "{j}");
    assert!(j.get("redirect").is_none(), "{j}");
    assert!(!page.sets_cookie("doorman_session"));
    assert!(browser.cookie(&server.base, "doorman_session").is_none());
    // The PIN is used up: polling again does not sign in either.
    server.clock.advance(1);
    let again = landing.poll(&server, &browser).await;
    assert_ne!(again.json()["status"], "done", "{}", again.text);
}

// ---------------------------------------------------------------------------------------------
// Access re-checks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_share_stops_refresh_and_sso_after_recheck_after() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid offline_access").await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let mut refresh = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();

    fake.share(P_ALICE, false);
    let checks = count(&fake, "GET", "/api/v2/resources");
    server.clock.advance(600);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(200);
    refresh = page.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        count(&fake, "GET", "/api/v2/resources"),
        checks,
        "no re-check before recheck_after"
    );

    server.clock.advance(3600);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
    assert!(
        count(&fake, "GET", "/api/v2/resources") > checks,
        "re-checked"
    );

    // The SSO session is no good either: the landing page again, no code.
    let (_, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    assert_eq!(page.status, 200, "{:?} {}", page.location(), page.text);
    assert!(page.text.contains("plex-button"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_down_during_a_recheck_is_tolerated_for_recheck_grace_only() {
    let (fake, server) = setup("recheck_grace = \"6h\"\n").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid offline_access").await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    fake.fault("/api/v2/resources", 503, 1000, None);
    server.clock.advance(3600 + 60);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(200);
    let refresh = page.json()["refresh_token"].as_str().unwrap().to_string();
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == "/api/v2/resources" && r.status == 503),
        "a re-check was tried"
    );

    server.clock.advance(6 * 3600);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// The plex_token claim

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_token_claim_is_per_client_opt_in() {
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", "", PLEX_CLIENTS_TOML).await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, PLEX_SERVER_RP, "openid").await;
    let claims = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    assert_eq!(claims["plex_token"], server_token(P_ALICE).as_str());

    // SSO to the other clients: same user, their own kind of claim (or none).
    for (rp, want) in [
        (PLEX_ACCOUNT_RP, Some(account_token(P_ALICE))),
        (RP_CLIENT, None),
    ] {
        let (landing, page) = PlexLanding::authorize(&server, &browser, rp, "openid").await;
        assert_eq!(page.status, 302, "SSO for {}: {}", rp.id, page.text);
        let code = landing.code_from(&server, &page.redirect());
        let claims = id_claims(&landing.redeem(&server, &code).await);
        match want {
            Some(t) => assert_eq!(claims["plex_token"], t.as_str(), "{}", rp.id),
            None => assert!(claims.get("plex_token").is_none(), "{claims}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Login CSRF: a PIN belongs to the browser that started it

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_is_bound_to_its_browser() {
    let (fake, server) = setup("").await;
    let a = Browser::new();
    let landing_a = PlexLanding::open(&server, &a, RP_CLIENT, "openid").await;
    let app = landing_a.start(&server, &a).await;
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);

    // Browser B without any doorman cookie, with A's flow and csrf.
    let b = Browser::new();
    for path in ["/login/plex/poll", "/login/plex/start"] {
        let page = landing_a.post(&server, &b, path).await;
        assert_eq!(page.status, 403, "{path}: {}", page.text);
        assert_ne!(page.json()["status"], "done");
    }
    // Browser C with its own flow: A's flow with A's csrf, and A's flow with C's csrf.
    let c = Browser::new();
    let landing_c = PlexLanding::open(&server, &c, RP_CLIENT, "openid").await;
    let mixes = [
        (landing_a.flow.clone(), landing_a.csrf.clone()),
        (landing_a.flow.clone(), landing_c.csrf.clone()),
    ];
    for (flow, csrf) in &mixes {
        for _ in 0..2 {
            let page = c
                .post_form(
                    &server.url("/login/plex/poll"),
                    &[("flow", flow), ("csrf", csrf)],
                )
                .await;
            assert_eq!(page.status, 403, "{}", page.text);
            assert!(!page.sets_cookie("doorman_session"));
            server.clock.advance(1);
        }
    }
    assert!(b.cookie(&server.base, "doorman_session").is_none());
    assert!(c.cookie(&server.base, "doorman_session").is_none());

    // A is unaffected and finishes.
    let back = landing_a.poll_until_done(&server, &a).await;
    landing_a.code_from(&server, &back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tab_return_completes_only_in_the_browser_that_started_it() {
    let (fake, server) = setup("").await;
    let a = Browser::new();
    let landing = PlexLanding::open(&server, &a, RP_CLIENT, PROFILE_SCOPE).await;
    let page = landing.post(&server, &a, "/login/plex/redirect").await;
    page.assert_status(303);
    let location = page.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}#?", fake.auth_app_url())),
        "{location}"
    );
    let app = AuthApp::parse(&location);
    let forward = app.forward_url();
    let want = url::Url::parse_with_params(
        &server.url("/login/plex/return"),
        &[("flow", landing.flow.as_str())],
    )
    .unwrap();
    assert_eq!(forward, want.as_str());
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);

    // Another browser opening the same return URL: no cookie, or its own cookie.
    let stranger = Browser::new();
    let page = stranger.get(&forward).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(page.location().is_none());
    let other = Browser::new();
    PlexLanding::open(&server, &other, RP_CLIENT, "openid").await;
    let page = other.get(&forward).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(page.location().is_none());
    assert!(!page.sets_cookie("doorman_session"));

    // The browser that started it: straight on to the RP with a code.
    let page = a.get(&forward).await;
    assert_redirect(&page);
    assert!(page.sets_cookie("doorman_session"));
    let code = landing.code_from(&server, &page.redirect());
    let claims = id_claims(&landing.redeem(&server, &code).await);
    assert_eq!(claims["preferred_username"], "alice");

    // Used up: the other browser still gets nothing.
    let page = other.get(&forward).await;
    assert!(page.status >= 400, "{}", page.text);
    assert!(page.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_sends_authorize_straight_to_plex() {
    let fake = FakePlex::start().await;
    let server = start_doorman(
        &fake,
        "",
        "mode = \"redirect\"\n",
        "[login]\nmethods = [\"plex\"]\n",
    )
    .await;
    let browser = Browser::new();
    let (landing, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    page.assert_status(302);
    assert!(!page.is_html(), "no doorman page: {}", page.text);
    assert!(page.sets_cookie("doorman_csrf"), "{:?}", page.set_cookies());
    let location = page.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}#?", fake.auth_app_url())),
        "{location}"
    );
    let app = AuthApp::parse(&location);
    let forward = app.forward_url();
    assert!(
        forward.starts_with(&server.url("/login/plex/return?flow=")),
        "{forward}"
    );
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);
    let page = browser.get(&forward).await;
    assert_redirect(&page);
    let code = landing.code_from(&server, &page.redirect());
    let claims = id_claims(&landing.redeem(&server, &code).await);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@plex.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popup_and_done_pages_render() {
    let (_fake, server) = setup("").await;
    let browser = Browser::new();
    let popup = browser.get(&server.url("/login/plex/popup")).await;
    popup.assert_status(200);
    assert!(popup.is_html());
    let done = browser.get(&server.url("/login/plex/done")).await;
    done.assert_status(200);
    assert!(done.is_html());
    assert!(done.text.contains("plex-done.js"), "{}", done.text);
}

// ---------------------------------------------------------------------------------------------
// What doorman sends to plex.tv

fn assert_well_behaved(fake: &FakePlex, client_id: Option<&str>) -> String {
    let log = fake.requests();
    let creates: Vec<_> = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/pins")
        .collect();
    assert!(!creates.is_empty());
    let cid = creates[0]
        .header("x-plex-client-identifier")
        .expect("a client identifier")
        .to_string();
    if let Some(want) = client_id {
        assert_eq!(cid, want);
    }
    for r in &log {
        assert_eq!(r.header("accept"), Some("application/json"), "{r:?}");
        assert_eq!(
            r.header("x-plex-client-identifier"),
            Some(cid.as_str()),
            "{r:?}"
        );
        assert_eq!(r.header("x-plex-product"), Some("doorman"), "{r:?}");
        let q = r.query.clone().unwrap_or_default().to_lowercase();
        assert!(!q.contains("token"), "no token in a query string: {r:?}");
        assert!(!q.contains("account-token"), "{r:?}");
        assert!(r.status < 400, "{r:?}");
    }
    for c in &creates {
        assert_eq!(c.query.as_deref(), Some("strong=true"), "{c:?}");
        assert!(c.header("x-plex-token").is_none(), "{c:?}");
    }
    for r in log.iter().filter(|r| r.is_pin_poll()) {
        assert!(r.header("x-plex-token").is_none(), "{r:?}");
    }
    let user_calls: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/api/v2/user" || r.path == "/api/v2/resources")
        .collect();
    assert!(user_calls.len() >= 2, "{log:?}");
    for r in user_calls {
        assert_eq!(
            r.header("x-plex-token"),
            Some(account_token(P_ALICE).as_str()),
            "{r:?}"
        );
    }
    let resources = log.iter().find(|r| r.path == "/api/v2/resources").unwrap();
    let q = resources.query.clone().unwrap_or_default();
    assert!(
        q.contains("includeHttps=1") && q.contains("includeRelay=1"),
        "{q}"
    );
    cid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_calls_use_the_configured_client_identifier_json_and_header_tokens() {
    let (fake, server) = setup("client_identifier = \"doorman-e2e-cid\"\n").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    assert_eq!(
        app.params.get("clientID").map(String::as_str),
        Some("doorman-e2e-cid")
    );
    fake.approve(&app.code, P_ALICE);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
    assert_well_behaved(&fake, Some("doorman-e2e-cid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_client_identifier_is_kept_across_restarts() {
    let (fake, mut server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let cid = assert_well_behaved(&fake, None);

    server.restart().await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    assert_eq!(app.params.get("clientID"), Some(&cid));
    fake.approve(&app.code, P_ALICE);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
    assert_eq!(assert_well_behaved(&fake, None), cid, "the same identifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_polls_are_paced_to_one_a_second_whatever_the_page_does() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let t0 = Instant::now();
    let app = landing.start(&server, &browser).await;
    let pin = fake.pin_by_code(&app.code);

    // Right after start: the page may poll, plex.tv is not asked yet.
    let page = landing.poll(&server, &browser).await;
    assert_eq!(page.json()["status"], "pending");
    if t0.elapsed() < Duration::from_millis(900) {
        assert!(
            pin_polls(&fake, pin.id).is_empty(),
            "no poll in the first second"
        );
    }

    // Two bursts of 10 concurrent page polls, one second apart by doorman's clock.
    for burst in 1..=2usize {
        server.clock.advance(1);
        let started = Instant::now();
        let before = pin_polls(&fake, pin.id).len();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (server_base, browser, flow, csrf) = (
                server.base.clone(),
                browser.clone(),
                landing.flow.clone(),
                landing.csrf.clone(),
            );
            tasks.push(tokio::spawn(async move {
                browser
                    .post_form(
                        &format!("{server_base}/login/plex/poll"),
                        &[("flow", &flow), ("csrf", &csrf)],
                    )
                    .await
            }));
        }
        for t in tasks {
            let page = t.await.unwrap();
            page.assert_status(200);
            assert_eq!(page.json()["status"], "pending", "{}", page.text);
        }
        let polls = pin_polls(&fake, pin.id).len() - before;
        if started.elapsed() < Duration::from_millis(900) {
            assert_eq!(
                polls, 1,
                "burst {burst}: one plex.tv poll for ten page polls"
            );
        } else {
            assert!(polls <= 2, "burst {burst}: {polls} plex.tv polls");
        }
    }
    assert_eq!(pin_polls(&fake, pin.id).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Accounts: never merged on email

fn run_doorman(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"));
    c.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    c.args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn create_local_alice(server: &TestServer) -> String {
    users::create(
        &*server.state.store,
        NewUser {
            username: "alice".into(),
            email: Some("alice@plex.example".into()),
            email_verified: true,
            name: Some("Alice Local".into()),
            groups: vec![],
            password_hash: None,
        },
        server.now(),
    )
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_clash_makes_a_separate_user_until_the_operator_links_them() {
    let (fake, server) = setup("").await;
    let local_id = create_local_alice(&server).await;

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let claims = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    assert_eq!(claims["preferred_username"], "alice-2", "a unique username");
    assert_ne!(claims["sub"], local_id.as_str(), "never merged on email");
    assert!(
        claims.get("email").is_none(),
        "the email stays with its owner: {claims}"
    );
    let local = server
        .state
        .store
        .get_user(&local_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local.email.as_deref(), Some("alice@plex.example"));

    // The operator makes them one account: the auto-made user goes, the Plex id is linked.
    let config = server.dir.path().join("doorman-cli.toml");
    std::fs::write(&config, server_config_text(&server)).unwrap();
    let out = run_doorman(&config, &["user", "delete", "alice-2"]);
    assert!(out.status.success(), "{}", out_text(&out));
    let out = run_doorman(&config, &["user", "link-plex", "alice", "1002"]);
    assert!(out.status.success(), "{}", out_text(&out));

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let claims = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    assert_eq!(claims["sub"], local_id.as_str(), "the local alice");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@plex.example");
    assert!(groups(&claims).contains(&"plex".to_string()));
}

/// The clash warning tells the operator to run `doorman user link-plex alice 1002`; by then the
/// sign-in has linked 1002 to the new `alice-2`, so that exact command must still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_plex_as_the_clash_warning_says_links_the_local_user() {
    let (fake, server) = setup("").await;
    let local_id = create_local_alice(&server).await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    landing.sign_in(&server, &fake, &browser, P_ALICE).await;

    let config = server.dir.path().join("doorman-cli.toml");
    std::fs::write(&config, server_config_text(&server)).unwrap();
    let out = run_doorman(&config, &["user", "link-plex", "alice", "1002"]);
    assert!(out.status.success(), "{}", out_text(&out));

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let claims = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    assert_eq!(claims["sub"], local_id.as_str());
}

// ---------------------------------------------------------------------------------------------
// Abuse and configuration

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_start_is_rate_limited_per_ip() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..20 {
        let page = landing.post(&server, &browser, "/login/plex/start").await;
        statuses.push(page.status);
        if page.status == 429 {
            limited = Some(page);
            break;
        }
    }
    let page = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(statuses.len() > 10, "the first ten pass: {statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    let j = page.json();
    assert_eq!(j["status"], "error");
    assert!(j["message"].as_str().unwrap().contains("Too many"), "{j}");
    assert_eq!(
        count(&fake, "POST", "/api/v2/pins"),
        statuses.len() - 1,
        "no PIN for the limited request"
    );
}

#[test]
fn plex_config_errors_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| -> String {
        match doorman::config::from_str(text, &std::collections::HashMap::new(), dir.path()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    };
    let base = "issuer = \"http://127.0.0.1:9\"\n";

    let e = check(&format!("{base}[plex]\nproduct = \"doorman\"\n"));
    assert!(e.contains("plex.servers"), "{e}");
    assert!(e.contains("/identity"), "the hint: {e}");

    let e = check(&format!("{base}[plex]\nservers = []\n"));
    assert!(e.contains("plex.servers"), "{e}");

    let e = check(&format!("{base}[login]\nmethods = [\"plex\"]\n"));
    assert!(e.contains("login.methods[0]"), "{e}");

    let e = check(&format!(
        "{base}[plex]\nservers = [\"SRV1\"]\nmode = \"iframe\"\n"
    ));
    assert!(e.contains("plex.mode"), "{e}");

    let e = check(&format!(
        "{base}[[clients]]\nid = \"x\"\nsecret = \"0123456789abcdef0\"\nredirect_uris = [\"http://127.0.0.1:1/x\"]\nplex_token_claim = \"server\"\n"
    ));
    assert!(e.contains("clients[0].plex_token_claim"), "{e}");

    // And a good one passes, with the documented defaults.
    let ok = doorman::config::from_str(
        &format!("{base}[plex]\nservers = [\"SRV1\"]\n"),
        &std::collections::HashMap::new(),
        dir.path(),
    )
    .unwrap();
    let plex = ok.plex.expect("[plex]");
    assert_eq!(plex.groups, vec!["plex".to_string()]);
    assert_eq!(plex.recheck_after, Duration::from_secs(3600));
    assert_eq!(plex.recheck_grace, Duration::from_secs(6 * 3600));
    assert_eq!(plex.api_base.as_str(), "https://plex.tv/");
}

// ---------------------------------------------------------------------------------------------
// More of the same, at the edges

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_after_approval_finish_the_sign_in_once() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (url, browser, flow, csrf) = (
            server.url("/login/plex/poll"),
            browser.clone(),
            landing.flow.clone(),
            landing.csrf.clone(),
        );
        tasks.push(tokio::spawn(async move {
            browser
                .post_form(&url, &[("flow", &flow), ("csrf", &csrf)])
                .await
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        let page = t.await.unwrap();
        let j = page.json();
        assert_ne!(j["status"], "denied", "{j}");
        if j["status"] == "done" {
            done.push(j["redirect"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(done.len(), 1, "one sign-in, one code: {done:?}");
    assert_eq!(pin_polls(&fake, fake.pin_by_code(&app.code).id).len(), 1);
    assert_eq!(count(&fake, "GET", "/api/v2/user"), 1);
    let code = landing.code_from(&server, &url::Url::parse(&done[0]).unwrap());
    landing.redeem(&server, &code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tab_return_for_a_denied_account_shows_the_denial() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let page = landing
        .post(&server, &browser, "/login/plex/redirect")
        .await;
    page.assert_status(303);
    let app = AuthApp::parse(page.header("location").unwrap());
    fake.approve(&app.code, P_BOB);
    server.clock.advance(1);
    let page = browser.get(&app.forward_url()).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(page.is_html());
    assert!(page.text.contains("access to this server"), "{}", page.text);
    assert!(page.location().is_none());
    assert!(!page.sets_cookie("doorman_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sign_in_with_plex_returns_to_rd() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let rd = server.url("/.well-known/openid-configuration");
    let login = url::Url::parse_with_params(&server.url("/login"), &[("rd", rd.as_str())]).unwrap();
    let page = browser.get(login.as_str()).await;
    page.assert_status(200);
    let (flow, csrf) = landing_fields(&page);
    let landing = PlexLanding {
        rp: RP_CLIENT,
        state: String::new(),
        verifier: String::new(),
        flow,
        csrf,
    };
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    let back = landing.poll_until_done(&server, &browser).await;
    assert_eq!(back.as_str(), rd);
    let page = browser.get(&server.url("/login")).await;
    page.assert_status(200);
    assert!(page.text.contains("Signed in as alice"), "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_linked_user_cannot_sign_in_with_plex() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    users::set_disabled(&*server.state.store, "alice", true, server.now())
        .await
        .unwrap();

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    let page = landing.poll_until_settled(&server, &browser).await;
    let j = page.json();
    assert_eq!(j["status"], "error", "{j}");
    assert!(j["message"].as_str().unwrap().contains("disabled"), "{j}");
    assert!(!page.sets_cookie("doorman_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_profile_changes_follow_the_plex_id_and_the_username_stays() {
    let (fake, server) = setup("").await;
    fake.update(OWNER, |a| a.username = "The Owner!".into());
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let owner = id_claims(&landing.sign_in(&server, &fake, &browser, OWNER).await);
    assert_eq!(
        owner["preferred_username"], "The-Owner-",
        "a valid username"
    );

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let first = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    fake.update(P_ALICE, |a| {
        a.username = "alice-renamed".into();
        a.friendly_name = Some("Alice Renamed".into());
        a.email = Some("alice@new.example".into());
        a.confirmed = false;
    });
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, PROFILE_SCOPE).await;
    let second = id_claims(&landing.sign_in(&server, &fake, &browser, P_ALICE).await);
    assert_eq!(
        second["sub"], first["sub"],
        "keyed on the Plex id, not the email"
    );
    assert_eq!(
        second["preferred_username"], "alice",
        "the username is fixed"
    );
    assert_eq!(second["name"], "Alice Renamed");
    // An email Plex has not confirmed is not adopted (it may be anybody's).
    assert!(second.get("email").is_none(), "unconfirmed: {second}");
    assert!(second.get("email_verified").is_none(), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_sign_in_ends_earlier_grants_at_once() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid offline_access").await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    fake.share(P_ALICE, false);
    let other = Browser::new();
    let landing = PlexLanding::open(&server, &other, RP_CLIENT, "openid").await;
    let app = landing.start(&server, &other).await;
    fake.approve(&app.code, P_ALICE);
    let page = landing.poll_until_settled(&server, &other).await;
    assert_eq!(page.json()["status"], "denied");

    // plex.tv just said no: no waiting for recheck_after.
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");

    // Shared again: she signs in again.
    fake.share(P_ALICE, true);
    let again = Browser::new();
    let landing = PlexLanding::open(&server, &again, RP_CLIENT, "openid").await;
    landing.sign_in(&server, &fake, &again, P_ALICE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_plex_stops_refresh_after_recheck_after() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid offline_access").await;
    let tokens = landing.sign_in(&server, &fake, &browser, P_ALICE).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    fake.revoke(&account_token(P_ALICE));
    server.clock.advance(600);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(200);
    let refresh = page.json()["refresh_token"].as_str().unwrap().to_string();
    server.clock.advance(3600);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(400);
    assert_eq!(page.oauth_error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_down_when_starting_is_unavailable_not_an_error_page() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    fake.fault("/api/v2/pins", 503, 1, None);
    let page = landing.post(&server, &browser, "/login/plex/start").await;
    assert_eq!(page.status, 503, "{}", page.text);
    let j = page.json();
    assert_eq!(j["status"], "unavailable", "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("not responding"),
        "{j}"
    );
    // The fault is gone: a retry starts.
    landing.start(&server, &browser).await;

    // Same tab: the landing page again, with the message.
    fake.fault("/api/v2/pins", 503, 1, None);
    let page = landing
        .post(&server, &browser, "/login/plex/redirect")
        .await;
    assert_eq!(page.status, 503, "{}", page.text);
    assert!(page.is_html());
    assert!(page.text.contains("not responding"), "{}", page.text);
    assert!(
        page.text.contains("plex-button"),
        "the landing page: {}",
        page.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_with_plex_down_says_so_and_sso_skips_plex() {
    let fake = FakePlex::start().await;
    let server = start_doorman(
        &fake,
        "",
        "mode = \"redirect\"\n",
        "[login]\nmethods = [\"plex\"]\n",
    )
    .await;
    fake.fault("/api/v2/pins", 503, 1, None);
    let browser = Browser::new();
    let (_, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    assert_eq!(page.status, 503, "{}", page.text);
    assert!(page.is_html());

    // Signed in once, the next authorize is answered from the session, not sent to Plex.
    let (landing, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    page.assert_status(302);
    let app = AuthApp::parse(page.header("location").unwrap());
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);
    let page = browser.get(&app.forward_url()).await;
    assert_redirect(&page);
    landing.code_from(&server, &page.redirect());
    let pins = fake.pins().len();
    let (landing, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    page.assert_status(302);
    landing.code_from(&server, &page.redirect());
    assert_eq!(fake.pins().len(), pins, "no new PIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_configured_but_not_offered_is_closed() {
    let fake = FakePlex::start().await;
    let server = start_doorman(&fake, "", "", "[login]\nmethods = [\"password\"]\n").await;
    let browser = Browser::new();
    let (_, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    page.assert_status(200);
    assert!(!page.text.contains("plex-button"), "{}", page.text);
    let flow = input_value(&page.text, "flow").unwrap();
    let csrf = input_value(&page.text, "csrf").unwrap();
    for path in ["/login/plex/start", "/login/plex/redirect"] {
        let page = browser
            .post_form(&server.url(path), &[("flow", &flow), ("csrf", &csrf)])
            .await;
        assert_eq!(page.status, 404, "{path}: {}", page.text);
    }
    assert!(fake.pins().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plex_start_limit_ignores_forged_forwarded_for() {
    let (_fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let resp = browser
            .http
            .post(server.url("/login/plex/start"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .form(&[("flow", &landing.flow), ("csrf", &landing.csrf)])
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

/// Same-tab starts create plex.tv PINs just like /login/plex/start, so they share its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tab_starts_are_rate_limited_too() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    let mut statuses = Vec::new();
    for _ in 0..14 {
        let page = landing
            .post(&server, &browser, "/login/plex/redirect")
            .await;
        statuses.push(page.status);
        if page.status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(count(&fake, "POST", "/api/v2/pins") <= 10);
}

fn plex_cli_config(fake: &FakePlex, dir: &std::path::Path) -> std::path::PathBuf {
    let text = config_text(
        free_port(),
        &dir.join("data"),
        &Options {
            extra_toml: format!("[plex]\n{}", fake.plex_toml()),
            ..Default::default()
        },
    );
    let path = dir.join("doorman.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plex_servers_lists_the_servers_a_token_reaches() {
    let fake = FakePlex::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = plex_cli_config(&fake, dir.path());
    let run = |token: String| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            run_doorman(&config, &["plex", "servers", "--token", &token])
        })
    };

    let out = run(account_token(OWNER)).await.unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(SRV1))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_end().ends_with("yes"), "owned: {text}");

    let out = run(account_token(P_ALICE)).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(SRV1))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_end().ends_with("no"), "shared: {text}");
    assert!(!text.contains("player-"), "players are not servers: {text}");

    let out = run(account_token(P_BOB)).await.unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SRV1));

    let out = run("not-a-token".into()).await.unwrap();
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not accept"),
        "{}",
        out_text(&out)
    );
    // The token went in the header only.
    for r in fake.requests() {
        assert!(
            r.query.as_deref().unwrap_or("").find("oken").is_none(),
            "{r:?}"
        );
        assert!(r.header("x-plex-token").is_some(), "{r:?}");
    }
}

/// The fake itself keeps to plex.md §6 (so the tests above test doorman, not the fake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_plex_tv_keeps_to_the_contract() {
    let fake = FakePlex::start().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", fake.base);
    let json = "application/json";

    let r = http
        .post(url("/api/v2/pins?strong=true"))
        .header("accept", json)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], 1000);
    let r = http
        .post(url("/api/v2/pins?strong=true"))
        .header("x-plex-client-identifier", "cid")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406, "JSON only when asked for");

    let r = http
        .post(url("/api/v2/pins?strong=true"))
        .header("accept", json)
        .header("x-plex-client-identifier", "cid")
        .header("x-plex-product", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pin: Value = r.json().await.unwrap();
    let id = pin["id"].as_i64().unwrap();
    assert!(id > 1 << 31);
    let code = pin["code"].as_str().unwrap();
    assert_eq!(code.len(), 25);
    assert!(code
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert_eq!(pin["expiresIn"], 1800);
    assert!(pin["authToken"].is_null());
    assert_eq!(pin["clientIdentifier"], "cid");

    let get_pin = |cid: &'static str| {
        http.get(url(&format!("/api/v2/pins/{id}")))
            .header("accept", json)
            .header("x-plex-client-identifier", cid)
            .send()
    };
    let r = get_pin("other").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], 1020);
    let r = get_pin("cid").await.unwrap();
    assert!(r.json::<Value>().await.unwrap()["authToken"].is_null());
    fake.approve_pin(id, P_ALICE);
    let r = get_pin("cid").await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["authToken"],
        account_token(P_ALICE).as_str()
    );
    fake.advance_clock(1801);
    assert_eq!(get_pin("cid").await.unwrap().status(), 404, "expired");

    let as_user = |path: &str, token: &str| {
        http.get(url(path))
            .header("accept", json)
            .header("x-plex-token", token.to_string())
            .send()
    };
    let r = as_user("/api/v2/user", "nope").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], 1001);
    let u: Value = as_user("/api/v2/user", &account_token(P_ALICE))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["id"], 1002);
    assert_eq!(u["email"], "alice@plex.example");
    let kid: Value = as_user("/api/v2/user", &account_token(KID))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(kid["email"].is_null() && kid["username"] == "" && kid["restricted"] == true);
    assert_eq!(kid["title"], "Kid");

    let res: Value = as_user("/api/v2/resources", &account_token(P_ALICE))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let srv = res
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["clientIdentifier"] == SRV1)
        .unwrap();
    assert_eq!(srv["owned"], false);
    assert_eq!(srv["sourceTitle"], "owner");
    assert_eq!(srv["accessToken"], "srv1-alice-token");
    assert!(res
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["provides"] == "client,player,pubsub-player" && r["owned"] == true));
    let res: Value = as_user("/api/v2/resources", &account_token(OWNER))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res[0]["owned"], true);
    assert_eq!(res[0]["accessToken"], "srv1-owner-token");
    for who in [P_BOB, EVE] {
        let res: Value = as_user("/api/v2/resources", &account_token(who))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            res.as_array()
                .unwrap()
                .iter()
                .all(|r| r["clientIdentifier"] != SRV1),
            "{who}"
        );
    }
    let friends: Value = as_user("/api/v2/friends", &account_token(OWNER))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = friends
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let r = http
        .delete(url("/api/v2/users/signout"))
        .header("accept", json)
        .header("x-plex-token", account_token(EVE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        as_user("/api/v2/user", &account_token(EVE))
            .await
            .unwrap()
            .status(),
        401
    );

    fake.fault("/api/v2/user", 429, 1, Some(7));
    let r = as_user("/api/v2/user", &account_token(P_ALICE))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        as_user("/api/v2/user", &account_token(P_ALICE))
            .await
            .unwrap()
            .status(),
        200
    );

    let page = http
        .get(url("/auth"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/auth.js"));
    let r = http
        .post(url("/__fake/approve"))
        .json(&serde_json::json!({"code": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no next user set");
    assert!(
        fake.requests().iter().all(|r| r.path != "/__fake/approve"),
        "not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_groups_open_group_restricted_clients_to_owners_only() {
    let (fake, server) = setup("owner_groups = [\"admins\"]\n").await;
    let admins_only = Rp {
        id: ADMINS_ONLY,
        secret: ADMINS_ONLY_SECRET,
        redirect: ADMINS_ONLY_REDIRECT,
    };
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, admins_only, "openid").await;
    landing.sign_in(&server, &fake, &browser, OWNER).await;

    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, admins_only, "openid").await;
    let app = landing.start(&server, &browser).await;
    fake.approve(&app.code, P_ALICE);
    let page = landing.poll_until_settled(&server, &browser).await;
    let j = page.json();
    assert_eq!(
        j["status"], "done",
        "signed in, but this client says no: {j}"
    );
    let back = url::Url::parse(j["redirect"].as_str().unwrap()).unwrap();
    let q = query(&back);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{back}"
    );
    assert!(!q.contains_key("code"), "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_never_goes_to_plex_and_respects_a_lost_share() {
    let fake = FakePlex::start().await;
    let server = start_doorman(
        &fake,
        "",
        "mode = \"redirect\"\n",
        "[login]\nmethods = [\"plex\"]\n",
    )
    .await;
    let browser = Browser::new();
    let silent = |browser: Browser| {
        let (_, challenge) = pkce_pair();
        let url = server.authorize_url(
            RP,
            RP_REDIRECT,
            "openid",
            "st",
            None,
            Some(&challenge),
            &[("prompt", "none")],
        );
        async move { browser.get(&url).await }
    };
    let page = silent(browser.clone()).await;
    page.assert_status(302);
    let back = page.redirect();
    assert!(
        back.as_str().starts_with(RP_REDIRECT),
        "not to Plex: {back}"
    );
    assert_eq!(
        query(&back).get("error").map(String::as_str),
        Some("login_required")
    );
    assert!(fake.pins().is_empty(), "no PIN for prompt=none");

    // Signed in, prompt=none answers with a code; once the share is gone (and re-checked),
    // with login_required.
    let (landing, page) = PlexLanding::authorize(&server, &browser, RP_CLIENT, "openid").await;
    let app = AuthApp::parse(page.header("location").unwrap());
    fake.approve(&app.code, P_ALICE);
    server.clock.advance(1);
    let page = browser.get(&app.forward_url()).await;
    landing.code_from(&server, &page.redirect());
    let page = silent(browser.clone()).await;
    assert!(
        query(&page.redirect()).contains_key("code"),
        "{:?}",
        page.location()
    );
    fake.share(P_ALICE, false);
    server.clock.advance(3601);
    let page = silent(browser.clone()).await;
    assert_eq!(
        query(&page.redirect()).get("error").map(String::as_str),
        Some("login_required"),
        "{:?}",
        page.location()
    );
}

/// A slow poll of an old PIN must not clobber the PIN a retry just made: the user approves the
/// code they see (the new one), so that is the one that has to count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_during_a_slow_poll_keeps_the_new_pin() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    landing.start(&server, &browser).await;
    // plex.tv answers the poll of the first PIN late, with 404 (gone at Plex).
    fake.fault_delayed("/api/v2/pins/", 404, 1, None, 600);
    server.clock.advance(1);
    let slow = {
        let (url, browser, flow, csrf) = (
            server.url("/login/plex/poll"),
            browser.clone(),
            landing.flow.clone(),
            landing.csrf.clone(),
        );
        tokio::spawn(async move {
            browser
                .post_form(&url, &[("flow", &flow), ("csrf", &csrf)])
                .await
        })
    };
    // Once plex.tv has the slow poll in hand...
    let first = fake.pins()[0].id;
    for _ in 0..200 {
        if !pin_polls(&fake, first).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pin_polls(&fake, first).len(), 1);
    // ...the user starts again ("continue in this tab", or "Try again").
    let second = landing.start(&server, &browser).await;
    let old = slow.await.unwrap();
    assert_eq!(old.json()["status"], "expired", "{}", old.text);

    fake.approve(&second.code, P_ALICE);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
}

/// The re-check keeps owner groups in line with ownership: gone when the account no longer
/// owns the server (while it still has access), back when it owns it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_groups_follow_ownership_at_the_recheck() {
    let (fake, server) = setup("owner_groups = [\"admins\"]\n").await;
    let browser = Browser::new();
    let landing =
        PlexLanding::open(&server, &browser, RP_CLIENT, "openid groups offline_access").await;
    let tokens = landing.sign_in(&server, &fake, &browser, OWNER).await;
    assert!(groups(&id_claims(&tokens)).contains(&"admins".to_string()));
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    fake.update(OWNER, |a| {
        a.owner = false;
        a.shared = true;
    });
    server.clock.advance(3601);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(200);
    let g = groups(&id_claims(&page.json()));
    assert!(g.contains(&"plex".to_string()), "still shared: {g:?}");
    assert!(
        !g.contains(&"admins".to_string()),
        "no longer the owner: {g:?}"
    );
    let stored = server
        .state
        .store
        .find_user_by_username("owner")
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.groups.contains(&"admins".to_string()), "{stored:?}");
    refresh = page.json()["refresh_token"].as_str().unwrap().to_string();

    fake.update(OWNER, |a| a.owner = true);
    server.clock.advance(3601);
    let page = server.refresh(RP, &refresh).await;
    page.assert_status(200);
    assert!(groups(&id_claims(&page.json())).contains(&"admins".to_string()));
}

/// A 429 on a slow poll of an old PIN backs off only that PIN: the PIN a retry made meanwhile
/// keeps its row and its polling, so approving the code the user sees still signs them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_a_slow_poll_does_not_clobber_the_new_pin() {
    let (fake, server) = setup("").await;
    let browser = Browser::new();
    let landing = PlexLanding::open(&server, &browser, RP_CLIENT, "openid").await;
    landing.start(&server, &browser).await;
    fake.fault_delayed("/api/v2/pins/", 429, 1, Some(30), 600);
    server.clock.advance(1);
    let slow = {
        let (url, browser, flow, csrf) = (
            server.url("/login/plex/poll"),
            browser.clone(),
            landing.flow.clone(),
            landing.csrf.clone(),
        );
        tokio::spawn(async move {
            browser
                .post_form(&url, &[("flow", &flow), ("csrf", &csrf)])
                .await
        })
    };
    let first = fake.pins()[0].id;
    for _ in 0..200 {
        if !pin_polls(&fake, first).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pin_polls(&fake, first).len(), 1);
    let second = landing.start(&server, &browser).await;
    let old = slow.await.unwrap();
    assert_eq!(old.json()["status"], "pending", "{}", old.text);

    fake.approve(&second.code, P_ALICE);
    server.clock.advance(1);
    let back = landing.poll_until_done(&server, &browser).await;
    landing.code_from(&server, &back);
    let second_pin = fake.pin_by_code(&second.code).id;
    assert!(!pin_polls(&fake, second_pin).is_empty());
}
