//! Discovery and JWKS: what an RP reads before anything else, at the root and under an issuer
//! path.

use serde_json::{json, Value};

use crate::common::*;

const ENDPOINTS: [(&str, &str); 8] = [
    ("authorization_endpoint", "/authorize"),
    ("token_endpoint", "/token"),
    ("userinfo_endpoint", "/userinfo"),
    ("jwks_uri", "/jwks.json"),
    ("revocation_endpoint", "/revoke"),
    ("introspection_endpoint", "/introspect"),
    ("end_session_endpoint", "/logout"),
    ("issuer", ""),
];

fn check_document(doc: &Value, issuer: &str) {
    for (field, path) in ENDPOINTS {
        assert_eq!(doc[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert_eq!(algs[0], "RS256");
    assert!(!algs.contains(&json!("none")), "alg none is never offered");
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"][0], "client_secret_basic",
        "Basic first (mod_auth_openidc takes the first)"
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert!(doc["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
}

async fn check_jwks(browser: &Browser, jwks_uri: &str) -> Vec<String> {
    let page = browser.get(jwks_uri).await;
    page.assert_status(200);
    assert!(page.content_type().starts_with("application/json"));
    let jwks = page.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    let mut kids = Vec::new();
    for k in keys {
        let kid = k["kid"].as_str().expect("every key has a kid");
        assert!(!kid.is_empty());
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kty"], "RSA");
        assert!(k["n"].is_string() && k["e"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private part {private} published");
        }
        kids.push(kid.to_string());
    }
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_document_and_jwks() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let page = browser
        .get(&server.url("/.well-known/openid-configuration"))
        .await;
    page.assert_status(200);
    assert!(page.content_type().starts_with("application/json"));
    let doc = page.json();
    check_document(&doc, &server.base);
    assert_eq!(server.base, format!("http://127.0.0.1:{}", server.port));
    check_jwks(&browser, doc["jwks_uri"].as_str().unwrap()).await;

    // The id_token is signed with a published key.
    let tokens = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let header = jwt_header(&tokens.id_token);
    assert_eq!(header["alg"], "RS256");
    let kids = check_jwks(&browser, &server.url("/jwks.json")).await;
    assert!(kids.contains(&header["kid"].as_str().unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_with_a_path_serves_everything_under_it() {
    let server = TestServer::start_with(Options {
        issuer_path: Some("/auth".into()),
        ..Default::default()
    })
    .await;
    let issuer = format!("http://127.0.0.1:{}/auth", server.port);
    assert_eq!(server.base, issuer);
    let browser = Browser::new();

    let page = browser
        .get(&format!("{issuer}/.well-known/openid-configuration"))
        .await;
    page.assert_status(200);
    let doc = page.json();
    check_document(&doc, &issuer);
    check_jwks(&browser, &format!("{issuer}/jwks.json")).await;
    browser
        .get(&format!("{issuer}/healthz"))
        .await
        .assert_status(200);

    // Nothing at the root.
    for path in [
        "/.well-known/openid-configuration",
        "/jwks.json",
        "/healthz",
    ] {
        let root = browser
            .get(&format!("http://127.0.0.1:{}{path}", server.port))
            .await;
        assert_eq!(root.status, 404, "{path} at the root");
    }

    // A whole sign-in under the path: the login form posts under /auth and the code redeems.
    let req = server.auth_request(RP, "openid email");
    let login_page = browser.get(&req.url).await;
    login_page.assert_status(200);
    let form = login_page.login_form().unwrap();
    assert_eq!(form.action, format!("{issuer}/login/password"));
    let tokens = server
        .code_flow(&browser, RP, "openid email", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(tokens.id_claims()["iss"], issuer);
    let info = server.userinfo(&tokens.access_token).await;
    info.assert_status(200);
    assert_eq!(info.json()["email"], ALICE_EMAIL);
    // The session cookie is scoped to the issuer's path.
    assert!(browser
        .cookie(&format!("{issuer}/authorize"), "doorman_session")
        .is_some());
    assert!(
        browser
            .cookie(
                &format!("http://127.0.0.1:{}/", server.port),
                "doorman_session"
            )
            .is_none(),
        "cookie Path is the issuer path"
    );
}

async fn stored_keys(server: &TestServer) -> Vec<doorman::store::SigningKey> {
    server.state.store.list_signing_keys().await.unwrap()
}

/// Relying parties cache the JWKS for its max-age: a rotated key is published at once but signs
/// only a max-age (plus a reload period) later, decided from the stored timestamp, so every
/// replica switches together; the old key stays published until its tokens expire, and a
/// restart in between adds no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_published_a_jwks_max_age_before_it_signs() {
    let mut server = TestServer::start("").await;
    let browser = Browser::new();
    let page = browser.get(&server.url("/jwks.json")).await;
    assert_eq!(page.header("cache-control"), Some("public, max-age=300"));
    let old = check_jwks(&browser, &server.url("/jwks.json")).await;
    assert_eq!(old.len(), 1);

    let now = server.now();
    let overlap = doorman::server::key_overlap(&server.state.config);
    let key = doorman::keys::rotate(
        &*server.state.store,
        now,
        doorman::server::key_publish_ahead(),
        overlap,
    )
    .await
    .unwrap();
    assert!(key.active_from >= now + 300, "{} vs {now}", key.active_from);
    server
        .state
        .keys
        .reload(&*server.state.store, now)
        .await
        .unwrap();
    let kids = check_jwks(&browser, &server.url("/jwks.json")).await;
    assert_eq!(kids.len(), 2, "published at once: {kids:?}");
    assert!(kids.contains(&key.kid));
    let t = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(
        jwt_header(&t.id_token)["kid"],
        old[0].as_str(),
        "not signing yet"
    );

    // A restart before the switch adds no key and still signs with the old one.
    server.restart().await;
    assert_eq!(stored_keys(&server).await.len(), 2);
    assert_eq!(
        check_jwks(&browser, &server.url("/jwks.json")).await.len(),
        2
    );
    let t = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(jwt_header(&t.id_token)["kid"], old[0].as_str());

    // At the stored switch time the new key signs; the old one is still published.
    server.clock.advance(key.active_from - server.now());
    let t = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    assert_eq!(jwt_header(&t.id_token)["kid"], key.kid.as_str());
    let kids = check_jwks(&browser, &server.url("/jwks.json")).await;
    assert!(
        kids.contains(&old[0]) && kids.contains(&key.kid),
        "{kids:?}"
    );

    // Once the old key's tokens have expired, it is gone.
    server.clock.advance(overlap);
    server
        .state
        .keys
        .reload(&*server.state.store, server.now())
        .await
        .unwrap();
    assert_eq!(
        check_jwks(&browser, &server.url("/jwks.json")).await,
        vec![key.kid.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_publishes_ahead_and_does_not_repeat() {
    let server = TestServer::start("").await;
    let after = std::time::Duration::from_secs(3600);
    server.clock.advance(3600);
    let now = server.now();
    doorman::server::auto_rotate(&server.state, now, after).await;
    let keys = stored_keys(&server).await;
    assert_eq!(keys.len(), 2);
    let next = keys.iter().max_by_key(|k| k.active_from).unwrap().clone();
    assert!(next.active_from >= now + 300, "published ahead: {next:?}");
    // The maintenance loop asks again every few seconds: while the new key waits, and once it
    // signs, no further key until it is itself rotate_after old.
    for at in [now + 5, next.active_from, next.active_from + 3599] {
        doorman::server::auto_rotate(&server.state, at, after).await;
        assert_eq!(stored_keys(&server).await.len(), 2, "at {at}");
    }
    doorman::server::auto_rotate(&server.state, next.active_from + 3600, after).await;
    assert_eq!(stored_keys(&server).await.len(), 3);
}

/// Two replicas on one database run their maintenance at the same moment: one new key, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_rotating_at_once_add_one_key() {
    let server = TestServer::start("").await;
    let after = std::time::Duration::from_secs(3600);
    let now = server.now() + 3600;
    let (a, b) = tokio::join!(
        doorman::server::auto_rotate(&server.state, now, after),
        doorman::server::auto_rotate(&server.state, now, after),
    );
    let ((), ()) = (a, b);
    assert_eq!(stored_keys(&server).await.len(), 2);
}
