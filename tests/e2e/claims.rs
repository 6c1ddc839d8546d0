//! What the tokens say: an opaque stable `sub`, profile claims by scope (or all of them for
//! `id_token_claims = "all"`), and the tolerances real clients need (special characters in
//! Basic secrets, `scope` at /token, unknown scopes).

use crate::common::*;

const PROFILE_CLAIMS: [&str; 5] = [
    "preferred_username",
    "email",
    "email_verified",
    "groups",
    "name",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_is_opaque_and_stable() {
    let server = TestServer::start("").await;
    let first = server
        .code_flow(&Browser::new(), RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let second = server
        .code_flow(&Browser::new(), NC, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let bob = server
        .code_flow(&Browser::new(), RP, "openid", BOB, BOB_PASSWORD)
        .await;
    let sub = first.id_claims()["sub"].as_str().unwrap().to_string();
    assert_ne!(sub, ALICE);
    assert!(!sub.to_lowercase().contains(ALICE), "{sub}");
    assert_ne!(sub, ALICE_EMAIL);
    assert_eq!(
        second.id_claims()["sub"],
        sub.as_str(),
        "stable across logins and clients"
    );
    assert_ne!(bob.id_claims()["sub"], sub.as_str());
    let info = server.userinfo(&first.access_token).await.json();
    assert_eq!(info["sub"], sub.as_str());

    // The standard id_token claims.
    let c = first.id_claims();
    assert_eq!(c["iss"], server.base);
    assert_eq!(c["aud"], RP);
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp > iat && (iat - server.now()).abs() < 5);
    assert!(c["auth_time"].as_i64().unwrap() <= iat);
    assert!(c["at_hash"].is_string());
    assert_eq!(jwt_header(&first.id_token)["alg"], "RS256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_claims_all_puts_the_profile_in_the_id_token() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let nc = server
        .code_flow(&browser, NC, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let c = nc.id_claims();
    assert_eq!(c["preferred_username"], ALICE);
    assert_eq!(c["email"], ALICE_EMAIL);
    assert_eq!(c["groups"], serde_json::json!(["admins"]));
    // userinfo still follows the scopes.
    let info = server.userinfo(&nc.access_token).await.json();
    assert!(info.get("email").is_none(), "{info}");

    let rp = server
        .code_flow(&browser, RP, "openid", ALICE, ALICE_PASSWORD)
        .await;
    let c = rp.id_claims();
    for claim in PROFILE_CLAIMS {
        assert!(
            c.get(claim).is_none(),
            "rp with scope openid got {claim}: {c}"
        );
    }
    let info = server.userinfo(&rp.access_token).await.json();
    for claim in PROFILE_CLAIMS {
        assert!(
            info.get(claim).is_none(),
            "userinfo for openid got {claim}: {info}"
        );
    }

    // And with the scopes, rp gets them.
    let rp = server
        .code_flow(
            &browser,
            RP,
            "openid profile email groups",
            ALICE,
            ALICE_PASSWORD,
        )
        .await;
    let c = rp.id_claims();
    assert_eq!(c["preferred_username"], ALICE);
    assert_eq!(c["name"], "Alice Liddell");
    assert_eq!(c["email"], ALICE_EMAIL);
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["groups"], serde_json::json!(["admins"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_secrets_with_special_characters_encoded_or_raw() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let encoded = basic_auth(SPECIAL, SPECIAL_SECRET);
    let raw = basic_auth_raw(SPECIAL, SPECIAL_SECRET);
    assert_ne!(encoded, raw, "the secret needs encoding");
    let wrong = basic_auth(SPECIAL, "s3cr t/with=special&chars");
    let double = basic_auth(
        SPECIAL,
        &url::form_urlencoded::byte_serialize(SPECIAL_SECRET.as_bytes()).collect::<String>(),
    );
    for (what, auth, ok) in [
        ("form-urlencoded", encoded, true),
        ("raw", raw, true),
        ("'+' read as a space", wrong, false),
        ("encoded twice", double, false),
    ] {
        let req = server.auth_request(SPECIAL, "openid");
        let code = req.code(&server, &browser, ALICE, ALICE_PASSWORD).await;
        let page = server
            .post_with_auth(
                "/token",
                Some(auth),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", SPECIAL_REDIRECT),
                    ("code_verifier", &req.verifier),
                ],
            )
            .await;
        if ok {
            assert_eq!(page.status, 200, "{what}: {}", page.text);
        } else {
            assert_eq!(page.status, 401, "{what}: {}", page.text);
            assert_eq!(page.oauth_error(), "invalid_client");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_at_the_token_endpoint_is_tolerated_not_obeyed() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let req = server.auth_request(RP, "openid offline_access");
    let code = req.code(&server, &browser, ALICE, ALICE_PASSWORD).await;
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", RP_REDIRECT),
                ("code_verifier", &req.verifier),
                ("scope", "openid email groups offline_access"),
            ],
        )
        .await;
    page.assert_status(200);
    let json = page.json();
    assert_eq!(
        json["scope"], "openid offline_access",
        "no scope escalation"
    );
    let claims = jwt_claims(json["id_token"].as_str().unwrap());
    assert!(claims.get("email").is_none() && claims.get("groups").is_none());

    let rt = json["refresh_token"].as_str().unwrap();
    let page = server
        .token_basic(
            RP,
            RP_SECRET,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("scope", "openid email"),
            ],
        )
        .await;
    page.assert_status(200);
    let json = page.json();
    assert_eq!(json["scope"], "openid offline_access");
    let info = server
        .userinfo(json["access_token"].as_str().unwrap())
        .await
        .json();
    assert!(info.get("email").is_none(), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_scopes_are_ignored() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    let t = server
        .code_flow(
            &browser,
            RP,
            "openid https://graph.example/read email admin",
            ALICE,
            ALICE_PASSWORD,
        )
        .await;
    assert_eq!(t.json["scope"], "openid email");
    assert_eq!(t.id_claims()["email"], ALICE_EMAIL);
}

/// A code flow for a client of the test's own TOML: PKCE, the secret posted in the form
/// (as Jellyfin's SSO plugin does), the given scope; the token response.
async fn custom_flow(
    server: &TestServer,
    client: &str,
    secret: &str,
    redirect: &str,
    scope: &str,
) -> Tokens {
    let (verifier, challenge) = pkce_pair();
    let state = random_string();
    let req = AuthRequest {
        client: client.into(),
        redirect: redirect.into(),
        url: server.authorize_url(
            client,
            redirect,
            scope,
            &state,
            Some("n-0S6_WzA2Mj"),
            Some(&challenge),
            &[],
        ),
        state,
        nonce: "n-0S6_WzA2Mj".into(),
        verifier: verifier.clone(),
    };
    let code = req
        .code(server, &Browser::new(), ALICE, ALICE_PASSWORD)
        .await;
    let page = server
        .post_with_auth(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
                ("client_id", client),
                ("client_secret", secret),
            ],
        )
        .await;
    page.assert_status(200);
    Tokens::from_json(page.json(), code)
}

const JELLYFIN_TOML: &str = r#"
[[clients]]
id = "jellyfin"
secret = "jellyfin-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/sso/OID/redirect/doorman"]
token_endpoint_auth_method = "client_secret_post"
require_pkce = true
roles_claim = "realm_access.roles"

[[clients]]
id = "meet"
secret = "meet-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/meet"]
access_token_format = "jwt"
roles_claim = "resource_access.meet.roles"
"#;

/// `roles_claim = "realm_access.roles"`: a Jellyfin-like client asking only `openid profile`
/// finds the user's groups nested there in the id_token and at userinfo (and a JWT access
/// token carries its own path), while `groups` itself still follows the scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_claim_nests_the_groups_whatever_the_scopes() {
    let server = TestServer::start(JELLYFIN_TOML).await;
    let t = custom_flow(
        &server,
        "jellyfin",
        "jellyfin-secret-0123456789",
        "http://127.0.0.1:1/sso/OID/redirect/doorman",
        "openid profile",
    )
    .await;
    let id = t.id_claims();
    assert_eq!(id["realm_access"]["roles"], serde_json::json!(["admins"]));
    assert_eq!(id["preferred_username"], ALICE);
    assert!(id.get("groups").is_none(), "{id}");
    let info = server.userinfo(&t.access_token).await.json();
    assert_eq!(info["realm_access"]["roles"], serde_json::json!(["admins"]));
    assert!(info.get("groups").is_none(), "{info}");

    let t = custom_flow(
        &server,
        "meet",
        "meet-secret-0123456789",
        "http://127.0.0.1:1/meet",
        "openid",
    )
    .await;
    let at = jwt_claims(&t.access_token);
    assert_eq!(
        at["resource_access"]["meet"]["roles"],
        serde_json::json!(["admins"])
    );
    assert_eq!(
        t.id_claims()["resource_access"]["meet"]["roles"][0],
        "admins"
    );
    // A client without the key gets no such claim.
    let plain = server
        .code_flow(&Browser::new(), RP, "openid profile", ALICE, ALICE_PASSWORD)
        .await;
    assert!(plain.id_claims().get("realm_access").is_none());
}

/// `[clients.claims]`: a claim copied from a standard one under another name, in the id_token,
/// userinfo and a JWT access token, whatever the scopes (scope `openid` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_mapping_copies_a_standard_claim_under_another_name() {
    let server = TestServer::start(
        r#"
[[clients]]
id = "social"
secret = "social-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/social"]
access_token_format = "jwt"

[clients.claims]
nickname = "preferred_username"
mail = "email"
"#,
    )
    .await;
    let t = custom_flow(
        &server,
        "social",
        "social-secret-0123456789",
        "http://127.0.0.1:1/social",
        "openid",
    )
    .await;
    let id = t.id_claims();
    assert_eq!(id["nickname"], ALICE);
    assert_eq!(id["mail"], ALICE_EMAIL);
    assert!(id.get("preferred_username").is_none(), "{id}");
    let info = server.userinfo(&t.access_token).await.json();
    assert_eq!(info["nickname"], ALICE);
    assert_eq!(info["mail"], ALICE_EMAIL);
    assert_eq!(jwt_claims(&t.access_token)["nickname"], ALICE);
}
