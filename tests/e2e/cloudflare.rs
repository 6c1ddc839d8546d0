//! Cloudflare Access tokens at `/forward-auth` (asked like Traefik asks) and `/auth-request`
//! (asked like nginx asks), against a fake team domain that publishes RSA keys in Cloudflare's
//! shape (cloudflare-access-and-forward-auth.md §1). Every invalid token is a 401, never a
//! 400/500; a valid one is a 200 with the Remote-* headers of the local user whose verified
//! email it carries, or of the bare email.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use doorman::accounts::{users, NewUser};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde_json::{json, Value};

use crate::common::fake_cloudflare::{hex64, unsigned, CertsMode, FakeCloudflare};
use crate::common::{Options, Page, TestServer, ALICE, ALICE_EMAIL};

const MEDIA: &str = "media.example.test";
const OTHER: &str = "other.example.test";
/// Covered by a rule but by no `[[forward_auth.cloudflare.apps]]`.
const NO_APP: &str = "plain.example.test";
const STRANGER: &str = "stranger@elsewhere.example";
const MAX_TOKEN: usize = 8 * 1024;

/// A doorman that accepts Cloudflare Access tokens from `fake`.
struct Env {
    server: TestServer,
    /// The AUD tag of the app on MEDIA.
    aud: String,
    /// The AUD tag of the app on OTHER.
    other_aud: String,
}

fn toml(fake: &FakeCloudflare, aud: &str, other_aud: &str, service_tokens: bool) -> String {
    format!(
        r#"trusted_proxies = ["127.0.0.1"]

[forward_auth.cloudflare]
team_domain = "{team}"
service_tokens = {service_tokens}

[[forward_auth.cloudflare.apps]]
host = "{MEDIA}"
aud = "{aud}"

[[forward_auth.cloudflare.apps]]
host = "{OTHER}"
aud = "{other_aud}"

[[forward_auth.rules]]
host = "{MEDIA}"
path = "/admin"
groups = ["admins"]

[[forward_auth.rules]]
host = "{MEDIA}"
allow = "authenticated"

[[forward_auth.rules]]
host = "{OTHER}"
allow = "authenticated"

[[forward_auth.rules]]
host = "{NO_APP}"
allow = "authenticated"

[[forward_auth.headers]]
name = "X-Plex-Token"
claim = "plex_token"

[[forward_auth.headers]]
name = "X-Username"
claim = "preferred_username"
"#,
        team = fake.team_domain(),
    )
}

async fn start_doorman(fake: &FakeCloudflare, service_tokens: bool) -> Env {
    start_doorman_with(fake, service_tokens, |t| t).await
}

/// `start_doorman`, with the config text passed through `edit` first.
async fn start_doorman_with(
    fake: &FakeCloudflare,
    service_tokens: bool,
    edit: impl FnOnce(String) -> String,
) -> Env {
    let aud = hex64();
    let other_aud = hex64();
    let server = TestServer::start_with(Options {
        extra_toml: edit(toml(fake, &aud, &other_aud, service_tokens)),
        ..Default::default()
    })
    .await;
    Env {
        server,
        aud,
        other_aud,
    }
}

/// A fake and a doorman that has loaded the fake's keys.
async fn setup(service_tokens: bool) -> (FakeCloudflare, Env) {
    let fake = FakeCloudflare::start().await;
    let env = start_doorman(&fake, service_tokens).await;
    fake.wait_served(1).await;
    (fake, env)
}

async fn read(resp: reqwest::Response) -> Page {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let url = resp.url().clone();
    let text = resp.text().await.unwrap();
    Page {
        status,
        headers,
        text,
        url,
    }
}

/// Asks `/forward-auth` about `GET https://{host}{uri}` as Traefik does, with extra headers.
async fn forward_auth_raw(
    server: &TestServer,
    host: &str,
    uri: &str,
    extra: &[(&str, HeaderValue)],
) -> Page {
    let mut req = server
        .http
        .get(server.url("/forward-auth"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.7");
    for (k, v) in extra {
        req = req.header(*k, v.clone());
    }
    read(req.send().await.unwrap()).await
}

/// `/forward-auth` with the token in `Cf-Access-Jwt-Assertion` (if any).
async fn fa(server: &TestServer, host: &str, uri: &str, token: Option<&str>) -> Page {
    let extra: Vec<(&str, HeaderValue)> = token
        .map(|t| vec![("cf-access-jwt-assertion", HeaderValue::from_str(t).unwrap())])
        .unwrap_or_default();
    forward_auth_raw(server, host, uri, &extra).await
}

/// `/forward-auth` with the token in the `CF_Authorization` cookie.
async fn fa_cookie(server: &TestServer, host: &str, uri: &str, token: &str) -> Page {
    let cookie = format!("theme=dark; CF_Authorization={token}; other=1");
    forward_auth_raw(
        server,
        host,
        uri,
        &[("cookie", HeaderValue::from_str(&cookie).unwrap())],
    )
    .await
}

/// Asks `/auth-request` as nginx does (X-Original-URL / X-Original-Method).
async fn auth_request(server: &TestServer, url: &str, token: Option<&str>) -> Page {
    let mut req = server
        .http
        .get(server.url("/auth-request"))
        .header("x-original-url", url)
        .header("x-original-method", "GET")
        .header("x-forwarded-for", "203.0.113.7");
    if let Some(t) = token {
        req = req.header("cf-access-jwt-assertion", t);
    }
    read(req.send().await.unwrap()).await
}

/// The four Remote-* headers, which every answer must carry.
fn remote(page: &Page) -> [String; 4] {
    [
        "remote-user",
        "remote-email",
        "remote-name",
        "remote-groups",
    ]
    .map(|h| {
        page.header(h)
            .unwrap_or_else(|| {
                panic!(
                    "{h} missing from a {} answer: {:?}",
                    page.status, page.headers
                )
            })
            .to_string()
    })
}

/// A 401 that names nobody.
fn assert_refused(page: &Page, what: &str) {
    assert_eq!(
        page.status, 401,
        "{what}: expected 401; headers {:?}; body {}",
        page.headers, page.text
    );
    assert_eq!(remote(page), ["", "", "", ""].map(String::from), "{what}");
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

// ---------------------------------------------------------------------------------------------
// Valid tokens

#[tokio::test]
async fn a_valid_token_names_the_local_user_with_that_verified_email() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    page.assert_status(200);
    assert_eq!(
        remote(&page),
        [ALICE, ALICE_EMAIL, "Alice Liddell", "admins"].map(String::from)
    );
    assert_eq!(page.header("x-username"), Some(ALICE));
    assert_eq!(page.header("cache-control"), Some("no-store"));

    // The same token again (now from the verified-token cache), with a port and odd case in
    // the forwarded host: the same answer.
    for host in [MEDIA, "media.example.test:443", "MEDIA.Example.Test"] {
        let page = fa(s, host, "/library?x=1", Some(&token)).await;
        page.assert_status(200);
        assert_eq!(remote(&page)[0], ALICE, "{host}");
    }

    // Emails are matched without regard to case, as the store keeps them.
    let shouty = fake.mint(
        &fake.identity_claims(&env.aud, "ALICE@Example.COM", s.now()),
        &fake.current_kid(),
    );
    let page = fa(s, MEDIA, "/", Some(&shouty)).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], ALICE);
    assert_eq!(remote(&page)[3], "admins");
}

#[tokio::test]
async fn an_unknown_email_is_only_an_email() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, STRANGER, s.now()),
        &fake.current_kid(),
    );
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    page.assert_status(200);
    assert_eq!(
        remote(&page),
        [STRANGER, STRANGER, "", ""].map(String::from)
    );
    assert_eq!(page.header("x-username"), Some(""));
}

#[tokio::test]
async fn an_unverified_local_email_is_not_trusted_for_the_mapping() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    // carol's email is not verified: a Cloudflare login with it must not borrow her groups.
    users::create(
        &*s.state.store,
        NewUser {
            username: "carol".into(),
            email: Some("carol@example.com".into()),
            email_verified: false,
            name: Some("Carol".into()),
            groups: vec!["admins".into()],
            password_hash: None,
        },
        s.now(),
    )
    .await
    .unwrap();
    let token = fake.mint(
        &fake.identity_claims(&env.aud, "carol@example.com", s.now()),
        &fake.current_kid(),
    );
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    page.assert_status(200);
    assert_eq!(
        remote(&page),
        ["carol@example.com", "carol@example.com", "", ""].map(String::from)
    );
    fa(s, MEDIA, "/admin", Some(&token))
        .await
        .assert_status(403);
}

#[tokio::test]
async fn the_cf_authorization_cookie_works_like_the_header() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let page = fa_cookie(s, MEDIA, "/", &token).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], ALICE);
    // An invalid cookie token is refused like an invalid header.
    assert_refused(
        &fa_cookie(s, MEDIA, "/", "not.a.token").await,
        "garbage cookie",
    );
}

#[tokio::test]
async fn the_header_is_checked_before_the_cookie() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let good = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let stranger = fake.mint(
        &fake.identity_claims(&env.aud, STRANGER, s.now()),
        &fake.current_kid(),
    );
    let cookie = HeaderValue::from_str(&format!("CF_Authorization={good}")).unwrap();
    // Header valid, cookie another valid token: the header's identity.
    let page = forward_auth_raw(
        s,
        MEDIA,
        "/",
        &[
            (
                "cf-access-jwt-assertion",
                HeaderValue::from_str(&stranger).unwrap(),
            ),
            ("cookie", cookie.clone()),
        ],
    )
    .await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], STRANGER);
    // Header invalid, cookie valid: refused (the header is what Cloudflare vouches for).
    let page = forward_auth_raw(
        s,
        MEDIA,
        "/",
        &[
            ("cf-access-jwt-assertion", HeaderValue::from_static("x.y.z")),
            ("cookie", cookie),
        ],
    )
    .await;
    assert_refused(&page, "invalid header, valid cookie");
}

#[tokio::test]
async fn custom_claims_become_configured_headers() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    for email in [ALICE_EMAIL, STRANGER] {
        let claims = with(
            fake.identity_claims(&env.aud, email, s.now()),
            json!({"custom": {"plex_token": "plex-abc123", "groups": ["a", "b"]}}),
        );
        let page = fa(
            s,
            MEDIA,
            "/",
            Some(&fake.mint(&claims, &fake.current_kid())),
        )
        .await;
        page.assert_status(200);
        assert_eq!(page.header("x-plex-token"), Some("plex-abc123"), "{email}");
    }
    // Without the claim the header is still sent, empty, so a client's copy never gets through.
    let plain = fake.mint(
        &fake.identity_claims(&env.aud, STRANGER, s.now()),
        &fake.current_kid(),
    );
    let page = forward_auth_raw(
        s,
        MEDIA,
        "/",
        &[
            (
                "cf-access-jwt-assertion",
                HeaderValue::from_str(&plain).unwrap(),
            ),
            ("x-plex-token", HeaderValue::from_static("forged")),
        ],
    )
    .await;
    page.assert_status(200);
    assert_eq!(page.header("x-plex-token"), Some(""));
}

#[tokio::test]
async fn group_rules_apply_to_cloudflare_identities() {
    let (fake, env) = setup(true).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let alice = fake.mint(&fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()), &kid);
    let stranger = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &kid);
    let service = fake.mint(&fake.service_claims(&env.aud, "svc.access", s.now()), &kid);

    let page = fa(s, MEDIA, "/admin/settings", Some(&alice)).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[3], "admins");

    for (who, token) in [("stranger", &stranger), ("service token", &service)] {
        let page = fa(s, MEDIA, "/admin", Some(token)).await;
        assert_eq!(page.status, 403, "{who}: {:?}", page.headers);
        assert_eq!(remote(&page), ["", "", "", ""].map(String::from), "{who}");
        // The same identity may use the rest of the app.
        fa(s, MEDIA, "/", Some(token)).await.assert_status(200);
    }
}

#[tokio::test]
async fn a_disabled_local_user_is_refused() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    users::set_disabled(&*s.state.store, ALICE, true, s.now())
        .await
        .unwrap();
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    // Her groups are gone in any case...
    let page = fa(s, MEDIA, "/admin", Some(&token)).await;
    page.assert_status(403);
    // ...and disabling her in doorman cuts her off, as it does her doorman sessions.
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    assert_eq!(
        page.status,
        403,
        "disabled alice let through as {:?}",
        remote(&page)
    );
}

// ---------------------------------------------------------------------------------------------
// Service tokens

#[tokio::test]
async fn service_tokens_are_refused_unless_enabled() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.service_claims(&env.aud, "abcdef.access", s.now()),
        &fake.current_kid(),
    );
    assert_refused(&fa(s, MEDIA, "/", Some(&token)).await, "service token");
    assert_refused(
        &auth_request(s, "https://media.example.test/", Some(&token)).await,
        "service token (nginx)",
    );
}

#[tokio::test]
async fn service_tokens_are_named_by_their_client_id_when_enabled() {
    let (fake, env) = setup(true).await;
    let s = &env.server;
    let client_id = "88bf3b6d86161464f6509f7219099e57.access";
    let token = fake.mint(
        &fake.service_claims(&env.aud, client_id, s.now()),
        &fake.current_kid(),
    );
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    page.assert_status(200);
    assert_eq!(remote(&page), [client_id, "", "", ""].map(String::from));

    // Neither an email nor a client id: nobody.
    for claims in [
        with(
            fake.service_claims(&env.aud, client_id, s.now()),
            json!({"common_name": ""}),
        ),
        with(
            fake.service_claims(&env.aud, client_id, s.now()),
            json!({"common_name": null}),
        ),
        with(
            fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
            json!({"email": ""}),
        ),
    ] {
        let t = fake.mint(&claims, &fake.current_kid());
        assert_refused(&fa(s, MEDIA, "/", Some(&t)).await, &claims.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Claims that make a token invalid

#[tokio::test]
async fn time_claims_are_checked_with_a_small_leeway() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let now = s.now();
    let base = fake.identity_claims(&env.aud, STRANGER, now);
    let cases = [
        (
            "expired 10 s ago (inside the leeway)",
            json!({"exp": now - 10}),
            200,
        ),
        (
            "nbf in 10 s (inside the leeway)",
            json!({"nbf": now + 10}),
            200,
        ),
        (
            "expired 2 min ago",
            json!({"iat": now - 300, "nbf": now - 300, "exp": now - 120}),
            401,
        ),
        (
            "expired an hour ago",
            json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
            401,
        ),
        (
            "nbf in 2 min",
            json!({"nbf": now + 120, "exp": now + 600}),
            401,
        ),
        ("no exp", json!({"exp": null}), 401),
        ("exp not a number", json!({"exp": "tomorrow"}), 401),
    ];
    for (what, changes, status) in cases {
        let token = fake.mint(&with(base.clone(), changes), &kid);
        let page = fa(s, MEDIA, "/", Some(&token)).await;
        assert_eq!(page.status, status, "{what}: {:?}", page.headers);
        if status == 401 {
            assert_refused(&page, what);
        }
    }
}

#[tokio::test]
async fn time_claims_follow_doormans_clock() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let real = s.now();
    s.clock.advance(3600);
    let now = s.now();
    // Issued by doorman's clock: valid.
    let fresh = fake.mint(&fake.identity_claims(&env.aud, STRANGER, now), &kid);
    fa(s, MEDIA, "/", Some(&fresh)).await.assert_status(200);
    // Expired 2 minutes ago by doorman's clock (still in the future by the wall clock).
    let stale = fake.mint(
        &with(
            fake.identity_claims(&env.aud, STRANGER, real),
            json!({"exp": now - 120}),
        ),
        &kid,
    );
    assert_refused(
        &fa(s, MEDIA, "/", Some(&stale)).await,
        "expired by doorman's clock",
    );
}

#[tokio::test]
async fn audience_issuer_and_type_must_match() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let now = s.now();
    let base = fake.identity_claims(&env.aud, STRANGER, now);
    let team = fake.team_domain();
    let ok = [
        ("aud among others", json!({"aud": [hex64(), env.aud]})),
        ("aud as a plain string", json!({"aud": env.aud})),
    ];
    for (what, changes) in ok {
        let token = fake.mint(&with(base.clone(), changes), &kid);
        let page = fa(s, MEDIA, "/", Some(&token)).await;
        assert_eq!(page.status, 200, "{what}");
    }
    let bad = [
        ("a wrong aud", json!({"aud": [hex64()]})),
        ("an empty aud", json!({"aud": []})),
        ("no aud", json!({"aud": null})),
        (
            "the aud in upper case",
            json!({"aud": [env.aud.to_uppercase()]}),
        ),
        ("another app's aud", json!({"aud": [env.other_aud]})),
        (
            "iss with a trailing slash",
            json!({"iss": format!("{team}/")}),
        ),
        (
            "iss of another team",
            json!({"iss": "https://otherteam.cloudflareaccess.com"}),
        ),
        (
            "iss over https",
            json!({"iss": team.replace("http://", "https://")}),
        ),
        ("no iss", json!({"iss": null})),
        ("type org", json!({"type": "org"})),
        ("type APP", json!({"type": "APP"})),
        ("no type", json!({"type": null})),
    ];
    for (what, changes) in bad {
        let token = fake.mint(&with(base.clone(), changes), &kid);
        assert_refused(&fa(s, MEDIA, "/", Some(&token)).await, what);
    }
}

#[tokio::test]
async fn a_token_is_only_good_for_its_own_apps_host() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let for_other = fake.mint(
        &fake.identity_claims(&env.other_aud, STRANGER, s.now()),
        &kid,
    );
    let for_media = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &kid);
    fa(s, OTHER, "/", Some(&for_other)).await.assert_status(200);
    fa(s, MEDIA, "/", Some(&for_media)).await.assert_status(200);
    assert_refused(
        &fa(s, MEDIA, "/", Some(&for_other)).await,
        "OTHER's token on MEDIA",
    );
    assert_refused(
        &fa(s, OTHER, "/", Some(&for_media)).await,
        "MEDIA's token on OTHER",
    );
    // A host with no Access application accepts no Access token at all.
    assert_refused(
        &fa(s, NO_APP, "/", Some(&for_media)).await,
        "a host without an app",
    );
}

// ---------------------------------------------------------------------------------------------
// Algorithms and forgeries

#[tokio::test]
async fn only_rs256_signatures_from_the_team_domain_count() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let claims = fake.identity_claims(&env.aud, ALICE_EMAIL, s.now());
    let key = fake.key(&kid);
    let mut forged = Vec::new();

    // alg none, with and without a kid, in a few spellings.
    for alg in ["none", "None", "NONE", ""] {
        forged.push((
            format!("alg {alg:?}"),
            unsigned(&json!({"alg": alg, "typ": "JWT", "kid": kid}), &claims),
        ));
    }
    forged.push((
        "alg none, no kid".into(),
        unsigned(&json!({"alg": "none"}), &claims),
    ));
    // Key confusion: HS256 with the public key (PEM, DER-in-base64url, modulus) as the secret.
    for (what, secret) in [
        ("PEM", key.public_pem.clone().into_bytes()),
        ("n", key.n.clone().into_bytes()),
        ("JWK", key.jwk().to_string().into_bytes()),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        forged.push((
            format!("HS256 keyed with the public {what}"),
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap(),
        ));
    }
    // Other RSA algorithms with the genuine key.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let mut h = Header::new(alg);
        h.kid = Some(kid.clone());
        forged.push((format!("{alg:?}"), fake.mint_with(&h, &claims, &kid)));
    }
    // RS256 without a kid.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = None;
    forged.push(("no kid".into(), fake.mint_with(&h, &claims, &kid)));
    // RS256 by a key nobody publishes, claiming the published kid.
    let rogue = fake.add_key();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.clone());
    forged.push((
        "another key under the published kid".into(),
        fake.mint_with(&h, &claims, &rogue),
    ));
    // A genuine token whose payload was swapped for another.
    let genuine = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &kid);
    let parts: Vec<&str> = genuine.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    forged.push((
        "a swapped payload".into(),
        format!("{}.{payload}.{}", parts[0], parts[2]),
    ));

    for (what, token) in forged {
        assert_refused(&fa(s, MEDIA, "/", Some(&token)).await, &what);
    }
    // The genuine one still works (nothing above broke the verifier).
    fa(s, MEDIA, "/", Some(&genuine)).await.assert_status(200);
}

#[tokio::test]
async fn malformed_and_truncated_tokens_are_refused() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut at (before and after) every '.', and inside the signature.
    for (i, _) in token.match_indices('.') {
        bad.push((format!("cut before . at {i}"), token[..i].into()));
        bad.push((format!("cut after . at {i}"), token[..=i].into()));
    }
    bad.push((
        "signature cut short".into(),
        token[..token.len() - 10].into(),
    ));
    bad.push(("one char dropped".into(), token[..token.len() - 1].into()));
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    bad.push(("a flipped signature char".into(), flipped));
    bad.push(("a fourth segment".into(), format!("{token}.AAAA").into()));
    bad.push(("Bearer prefix".into(), format!("Bearer {token}").into()));
    bad.push(("token twice".into(), format!("{token},{token}").into()));
    for junk in [
        "x",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b",
        "e30.e30.",
        "e30.e30.e30",
        "eyJ.eyJ.eyJ",
        "null",
        "{}",
        "%00",
        "=====.=====.=====",
    ] {
        bad.push((format!("junk {junk:?}"), junk.into()));
    }
    // Header JSON that is not an object, or not JSON.
    for header in ["[]", "\"RS256\"", "{\"alg\":\"RS256\"", "{\"alg\":1}"] {
        bad.push((
            format!("header {header}"),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                token.split('.').nth(1).unwrap(),
                token.split('.').nth(2).unwrap()
            )
            .into(),
        ));
    }
    // Random printable bytes and random base64url.
    for n in [1usize, 17, 300, 2000] {
        let mut b = vec![0u8; n];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        let printable: Vec<u8> = b.iter().map(|x| b'!' + x % 94).collect();
        bad.push((format!("{n} random printable bytes"), printable));
        bad.push((
            format!("{n} random base64url bytes"),
            URL_SAFE_NO_PAD.encode(&b).into(),
        ));
    }
    // Not ASCII at all (obs-text in the header).
    bad.push(("non-ASCII".into(), "ëyJ.ëyJ.ëyJ".as_bytes().to_vec()));
    bad.push(("Latin-1 bytes".into(), vec![0xe9, 0xff, b'.', 0x80]));
    // Empty and blank (as good as no token: still 401 for a non-browser request).
    bad.push(("empty".into(), Vec::new()));
    bad.push(("blank".into(), b"   ".to_vec()));

    for (what, value) in bad {
        let value = HeaderValue::from_bytes(&value).unwrap();
        let page = forward_auth_raw(s, MEDIA, "/", &[("cf-access-jwt-assertion", value)]).await;
        assert_refused(&page, &what);
    }
    fa(s, MEDIA, "/", Some(&token)).await.assert_status(200);
}

#[tokio::test]
async fn a_non_ascii_token_is_refused_not_ignored() {
    let (_fake, env) = setup(false).await;
    let s = &env.server;
    let page = forward_auth_raw(
        s,
        MEDIA,
        "/",
        &[
            ("accept", HeaderValue::from_static("text/html")),
            (
                "cf-access-jwt-assertion",
                HeaderValue::from_bytes(&[0xe9, b'.', 0xff, b'.', 0x80]).unwrap(),
            ),
        ],
    )
    .await;
    assert_refused(&page, "non-ASCII token from a browser");
}

#[tokio::test]
async fn a_browser_without_a_token_is_sent_to_sign_in_but_a_bad_token_is_not() {
    let (_fake, env) = setup(false).await;
    let s = &env.server;
    let html = (
        "accept",
        HeaderValue::from_static("text/html,application/xhtml+xml"),
    );
    let page = forward_auth_raw(s, MEDIA, "/", std::slice::from_ref(&html)).await;
    page.assert_status(302);
    assert!(page.header("location").unwrap().contains("/login"));
    let page = forward_auth_raw(
        s,
        MEDIA,
        "/",
        &[
            html,
            ("cf-access-jwt-assertion", HeaderValue::from_static("a.b.c")),
        ],
    )
    .await;
    assert_refused(&page, "invalid token from a browser");
    assert_eq!(page.header("location"), None);
}

#[tokio::test]
async fn oversized_tokens_are_refused_without_trouble() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let padded = |n: usize| {
        fake.mint(
            &with(
                fake.identity_claims(&env.aud, STRANGER, s.now()),
                json!({"custom": {"pad": "x".repeat(n)}}),
            ),
            &kid,
        )
    };
    // The largest genuine token under the limit passes...
    let base = padded(0).len();
    let mut n = (MAX_TOKEN - base) * 3 / 4;
    while padded(n).len() > MAX_TOKEN {
        n -= 1;
    }
    let fits = padded(n);
    assert!(fits.len() <= MAX_TOKEN && fits.len() > MAX_TOKEN - 8);
    fa(s, MEDIA, "/", Some(&fits)).await.assert_status(200);
    // ...and a genuine one just over it is refused before any parsing.
    let over = padded(n + 8);
    assert!(over.len() > MAX_TOKEN);
    assert_refused(&fa(s, MEDIA, "/", Some(&over)).await, "a token over 8 KiB");
    assert_refused(
        &fa_cookie(s, MEDIA, "/", &over).await,
        "a cookie token over 8 KiB",
    );
    // Far beyond: hyper's own limits may answer 431, never 500.
    for size in [64 * 1024, 200 * 1024] {
        let huge = "a".repeat(size);
        let page = fa(s, MEDIA, "/", Some(&huge)).await;
        assert!(
            page.status == 401 || page.status == 431,
            "a {size}-byte header: {}",
            page.status
        );
    }
    fa(s, MEDIA, "/", Some(&fits)).await.assert_status(200);
}

// ---------------------------------------------------------------------------------------------
// Keys: unknown kids, rotation, outages

#[tokio::test]
async fn an_unknown_kid_refetches_the_certs_once_per_30_seconds() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let now = s.now();
    let claims = fake.identity_claims(&env.aud, STRANGER, now);
    let before = fake.fetches();
    assert_eq!(before, 1, "doorman fetches the certs once at start");

    let unknown = fake.add_key();
    let token = fake.mint(&claims, &unknown);
    assert_refused(&fa(s, MEDIA, "/", Some(&token)).await, "unknown kid");
    assert_eq!(fake.fetches(), before + 1, "exactly one refetch");

    // Another unknown kid (a forged one, too), within 30 s: no further fetch.
    let unknown2 = fake.add_key();
    assert_refused(
        &fa(s, MEDIA, "/", Some(&fake.mint(&claims, &unknown2))).await,
        "second unknown kid",
    );
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(hex64());
    assert_refused(
        &fa(s, MEDIA, "/", Some(&fake.mint_with(&h, &claims, &unknown2))).await,
        "forged kid",
    );
    // Even a burst of them.
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(hex64());
            fake.mint_with(&h, &claims, &unknown2)
        })
        .collect();
    for t in &burst {
        assert_refused(&fa(s, MEDIA, "/", Some(t)).await, "burst of unknown kids");
    }
    assert_eq!(fake.fetches(), before + 1, "no further fetch within 30 s");

    // The published key keeps working meanwhile.
    let ok = fake.mint(&claims, &fake.current_kid());
    fa(s, MEDIA, "/", Some(&ok)).await.assert_status(200);
    assert_eq!(fake.fetches(), before + 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_the_refetch() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let old = fake.current_kid();
    let claims = fake.identity_claims(&env.aud, ALICE_EMAIL, s.now());
    let before = fake.fetches();

    let new = fake.rotate();
    assert_eq!(fake.published(), vec![old.clone(), new.clone()]);
    let doc = fake.document();
    assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
    assert_eq!(doc["public_cert"]["kid"], json!(new));
    assert_eq!(doc["public_certs"].as_array().unwrap().len(), 2);
    assert_eq!(new.len(), 64);

    let page = fa(s, MEDIA, "/", Some(&fake.mint(&claims, &new))).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], ALICE);
    assert_eq!(fake.fetches(), before + 1, "one refetch for the new kid");
    // The previous key is still published, and still accepted; no more fetches.
    let page = fa(s, MEDIA, "/", Some(&fake.mint(&claims, &old))).await;
    page.assert_status(200);
    assert_eq!(fake.fetches(), before + 1);
}

#[tokio::test]
async fn verified_tokens_are_remembered_even_after_their_key_is_withdrawn() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let old = fake.current_kid();
    let now = s.now();
    let remembered = fake.mint(&fake.identity_claims(&env.aud, ALICE_EMAIL, now), &old);
    for _ in 0..3 {
        fa(s, MEDIA, "/", Some(&remembered))
            .await
            .assert_status(200);
    }
    // Cloudflare rotates and drops the old key; a token with the new kid makes doorman refetch.
    let new = fake.rotate();
    fake.remove(&old);
    let before = fake.fetches();
    let fresh = fake.mint(&fake.identity_claims(&env.aud, STRANGER, now), &new);
    fa(s, MEDIA, "/", Some(&fresh)).await.assert_status(200);
    assert_eq!(fake.fetches(), before + 1);
    // doorman no longer knows the old key: a new token signed with it is refused...
    let unseen = fake.mint(&fake.identity_claims(&env.aud, "x@example.org", now), &old);
    assert_refused(&fa(s, MEDIA, "/", Some(&unseen)).await, "withdrawn key");
    // ...but the token it verified before is answered from the cache, without the key.
    let page = fa(s, MEDIA, "/", Some(&remembered)).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], ALICE);
    // The cache is per audience: the remembered token is still no good on another app.
    assert_refused(
        &fa(s, OTHER, "/", Some(&remembered)).await,
        "cached token, other app",
    );
}

#[tokio::test]
async fn known_keys_outlive_a_failing_certs_endpoint() {
    for mode in [CertsMode::Fail, CertsMode::Close] {
        let (fake, env) = setup(false).await;
        let s = &env.server;
        let kid = fake.current_kid();
        fake.set_mode(mode);
        // A token never seen before, signed by the known key: verified with the cached key.
        let fresh = fake.mint(&fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()), &kid);
        fa(s, MEDIA, "/", Some(&fresh)).await.assert_status(200);
        // An unknown kid makes doorman try the endpoint, which fails: 401, not 500...
        let before = fake.fetches();
        let rotated = fake.rotate();
        let page = fa(
            s,
            MEDIA,
            "/",
            Some(&fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &rotated)),
        )
        .await;
        assert_refused(
            &page,
            &format!("{mode:?}: unknown kid while the endpoint fails"),
        );
        assert!(
            fake.fetches() > before,
            "{mode:?}: doorman tried to refetch"
        );
        // ...and the failed fetch did not throw away the keys already known.
        let another = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &kid);
        fa(s, MEDIA, "/", Some(&another)).await.assert_status(200);
        fake.set_mode(CertsMode::Serve);
    }
}

#[tokio::test]
async fn a_hanging_certs_endpoint_does_not_hold_up_known_keys() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    fake.set_mode(CertsMode::Hang);
    let rotated = fake.rotate();
    let stuck_token = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &rotated);
    let stuck = {
        let http = s.http.clone();
        let url = s.url("/forward-auth");
        tokio::spawn(async move {
            http.get(url)
                .header("x-forwarded-host", MEDIA)
                .header("x-forwarded-uri", "/")
                .header("cf-access-jwt-assertion", stuck_token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Wait until the refetch is hanging at the fake.
    let t = Instant::now();
    while fake.fetches() < 2 {
        assert!(t.elapsed() < Duration::from_secs(5), "no refetch started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A known kid is answered at once.
    let fresh = fake.mint(&fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()), &kid);
    let page = tokio::time::timeout(Duration::from_secs(3), fa(s, MEDIA, "/", Some(&fresh)))
        .await
        .expect("a known kid waited for the hanging certs fetch");
    page.assert_status(200);
    // Release the fake (it answers 500): the stuck check ends in a 401.
    fake.set_mode(CertsMode::Serve);
    let status = tokio::time::timeout(Duration::from_secs(15), stuck)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_first_check_waits_for_a_slow_first_fetch() {
    let fake = FakeCloudflare::start().await;
    fake.set_delay(Duration::from_millis(3000));
    let env = start_doorman(&fake, false).await;
    let s = &env.server;
    assert_eq!(fake.served(), 0, "the first fetch is still on its way");
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let t = Instant::now();
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    page.assert_status(200);
    assert_eq!(remote(&page)[0], ALICE);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        fake.served(),
        1,
        "the check used the first fetch, no second one"
    );
    fake.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn a_hanging_first_fetch_holds_the_first_check_only_briefly() {
    let fake = FakeCloudflare::start().await;
    fake.set_mode(CertsMode::Hang);
    let env = start_doorman(&fake, false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    let t = Instant::now();
    let page = fa(s, MEDIA, "/", Some(&token)).await;
    let took = t.elapsed();
    fake.set_mode(CertsMode::Serve);
    assert_refused(&page, "no keys while the endpoint hangs");
    // FIRST_FETCH_WAIT is 5 s; allow some slack, not a queue of 10 s HTTP timeouts.
    assert!(
        took < Duration::from_secs(8),
        "the first check took {took:?} while the certs endpoint hung"
    );
}

#[tokio::test]
async fn a_team_domain_written_with_a_trailing_slash_still_matches() {
    let fake = FakeCloudflare::start().await;
    let team = fake.team_domain();
    let env = start_doorman_with(&fake, false, |t| {
        t.replace(&format!("\"{team}\""), &format!("\"{team}/\""))
    })
    .await;
    assert!(env.server.state.config.forward_auth.cloudflare.is_some());
    fake.wait_served(1).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    fa(s, MEDIA, "/", Some(&token)).await.assert_status(200);
}

#[tokio::test]
async fn a_failed_first_fetch_is_retried() {
    let fake = FakeCloudflare::start().await;
    fake.set_mode(CertsMode::Fail);
    let env = start_doorman(&fake, false).await;
    let s = &env.server;
    let token = fake.mint(
        &fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()),
        &fake.current_kid(),
    );
    // No keys at all: a valid token cannot be verified, and that is a 401.
    assert_refused(&fa(s, MEDIA, "/", Some(&token)).await, "no keys yet");
    fake.set_mode(CertsMode::Serve);
    // doorman retries on its own (every 10 s while it has no keys).
    let t = Instant::now();
    loop {
        let page = fa(s, MEDIA, "/", Some(&token)).await;
        if page.status == 200 {
            break;
        }
        assert_refused(&page, "still no keys");
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "the certs were never fetched again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// nginx

#[tokio::test]
async fn nginx_auth_request_speaks_the_same_tokens() {
    let (fake, env) = setup(false).await;
    let s = &env.server;
    let kid = fake.current_kid();
    let alice = fake.mint(&fake.identity_claims(&env.aud, ALICE_EMAIL, s.now()), &kid);
    let stranger = fake.mint(&fake.identity_claims(&env.aud, STRANGER, s.now()), &kid);

    let page = auth_request(s, "https://media.example.test/admin/x?y=1", Some(&alice)).await;
    page.assert_status(200);
    assert_eq!(
        remote(&page),
        [ALICE, ALICE_EMAIL, "Alice Liddell", "admins"].map(String::from)
    );
    let page = auth_request(s, "https://media.example.test/admin", Some(&stranger)).await;
    page.assert_status(403);
    auth_request(s, "https://media.example.test/", Some(&stranger))
        .await
        .assert_status(200);

    // No token: 401 with the login page in Location (for error_page 401 =302).
    let page = auth_request(s, "https://media.example.test/", None).await;
    page.assert_status(401);
    assert!(page.header("location").unwrap().contains("/login"));

    // Any invalid token: 401, never 400 or 500 (nginx makes those an error page).
    let expired = fake.mint(
        &with(
            fake.identity_claims(&env.aud, STRANGER, s.now()),
            json!({"exp": s.now() - 3600}),
        ),
        &kid,
    );
    for (what, token) in [
        ("garbage", "garbage".to_string()),
        ("truncated", alice[..alice.len() / 2].to_string()),
        ("expired", expired),
        ("oversized", "a".repeat(MAX_TOKEN + 1)),
        (
            "other app",
            fake.mint(
                &fake.identity_claims(&env.other_aud, STRANGER, s.now()),
                &kid,
            ),
        ),
    ] {
        let page = auth_request(s, "https://media.example.test/", Some(&token)).await;
        assert_refused(&page, what);
    }
}

/// `doorman integrate cloudflare` prints the configured client and Access apps (not
/// placeholders), and the OIDC Claims the README lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_cloudflare_prints_the_configured_apps_and_the_readmes_claims() {
    use crate::common::proxies::{forward_auth_toml, Doorman};
    let fake = FakeCloudflare::start().await;
    let aud = hex64();
    let doorman = Doorman::start(&forward_auth_toml(
        r#"["127.0.0.1/32"]"#,
        &format!(
            r#"
[forward_auth.cloudflare]
team_domain = "{team}"

[[forward_auth.cloudflare.apps]]
host = "{MEDIA}"
aud = "{aud}"

[[clients]]
id = "cf-access"
name = "Cloudflare Access"
secret = "cloudflare-secret-0123456789abcdef"
redirect_uris = ["https://myteam.cloudflareaccess.com/cdn-cgi/access/callback"]
id_token_claims = "all"
"#,
            team = fake.team_domain()
        ),
    ))
    .await;
    let printed = doorman.integrate("cloudflare");
    assert!(printed.contains("App ID:           cf-access"), "{printed}");
    assert!(
        printed.contains(&format!("host = \"{MEDIA}\"\naud = \"{aud}\"")),
        "{printed}"
    );
    assert!(
        !printed.contains("app.example.com"),
        "a placeholder app: {printed}"
    );
    assert!(
        !printed.contains("AUD tag>"),
        "a placeholder aud: {printed}"
    );

    let claims = doorman::integrate::CLOUDFLARE_OIDC_CLAIMS;
    assert!(
        printed.contains(&format!("OIDC Claims:      {}", claims.join(", "))),
        "{printed}"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let listed = claims
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        readme.contains(&format!("| OIDC Claims | {listed}")),
        "the README's Cloudflare table lists other claims than `integrate cloudflare`: want {listed}"
    );
}
