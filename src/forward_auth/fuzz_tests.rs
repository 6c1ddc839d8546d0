//! Property tests: no header bytes make forward-auth panic, and `/forward-auth` and
//! `/auth-request` answer nothing but 200/302/303/400/401/403, always with the four Remote-* headers.
//! The Cloudflare verifier runs against a team domain nobody listens on, so no token verifies;
//! what is exercised is every path that refuses one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use tower::ServiceExt;

use super::cloudflare::{CfError, CloudflareVerifier, MAX_TOKEN};
use super::{target_from_forwarded, target_from_original};
use crate::config::{CloudflareConfig, HostPattern};

const CASES: u32 = 256;
const HOST: &str = "media.example.test";
const AUD: &str = "8c3e3f1c4b1e4a6b9c2d7e5f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d";
/// Nothing listens there: every certs fetch fails fast.
const DEAD_TEAM: &str = "http://127.0.0.1:1";

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Only the bytes a `HeaderValue` accepts (visible ASCII, space, tab, obs-text).
fn clean(mut b: Vec<u8>) -> Vec<u8> {
    b.retain(|c| (*c >= 0x20 && *c != 0x7f) || *c == b'\t');
    b
}

/// Arbitrary header value bytes.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(clean)
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Things shaped like JWTs: a header with some algorithm and kid, some claims, some signature.
fn jwt_like() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        Just("RS256"),
        Just("none"),
        Just("HS256"),
        Just("RS384"),
        Just("PS256"),
        Just("ES256"),
        Just(""),
        Just("rs256"),
    ];
    let kid = prop_oneof![
        Just(None),
        "[0-9a-f]{64}".prop_map(Some),
        ".{0,20}".prop_map(Some),
    ];
    let claims = prop_oneof![
        Just(format!(
            r#"{{"aud":["{AUD}"],"email":"a@b.c","exp":99999999999,"iss":"{DEAD_TEAM}","type":"app"}}"#
        )),
        Just(r#"{"exp":"x","aud":1,"type":null}"#.to_string()),
        Just("[]".to_string()),
        ".{0,40}",
    ];
    let sig = prop_oneof![Just(String::new()), "[A-Za-z0-9_-]{0,400}"];
    let extra = prop_oneof![Just(String::new()), Just(".".to_string()), ".{0,5}"];
    (alg, kid, claims, sig, extra).prop_map(|(alg, kid, claims, sig, extra)| {
        let header = match kid {
            Some(k) => serde_json::json!({"alg": alg, "typ": "JWT", "kid": k}).to_string(),
            None => serde_json::json!({"alg": alg}).to_string(),
        };
        format!("{}.{}.{sig}{extra}", b64(&header), b64(&claims))
    })
}

/// Any string at all, JWT-like ones, long ones.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => jwt_like(),
        2 => any::<String>(),
        1 => "[A-Za-z0-9_.=-]{0,64}",
        1 => (MAX_TOKEN - 2..MAX_TOKEN + 3).prop_map(|n| "a".repeat(n)),
    ]
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn check_target(t: &super::Target) -> Result<(), TestCaseError> {
    prop_assert!(t.scheme == "http" || t.scheme == "https", "{t:?}");
    prop_assert!(t.uri.starts_with('/'), "{t:?}");
    prop_assert!(!t.uri.chars().any(char::is_control), "{t:?}");
    prop_assert!(!t.host.is_empty() && t.host.len() <= 255, "{t:?}");
    let host = t.host_only();
    prop_assert!(
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')),
        "{t:?} -> {host}"
    );
    prop_assert!(t.path.resolved.starts_with('/'), "{t:?}");
    let _ = t.url();
    Ok(())
}

#[test]
fn target_parsers_take_any_header_bytes() {
    let any_value = prop_oneof![
        3 => header_bytes(300),
        1 => "[a-zA-Z0-9.:\\[\\]/?#%@_-]{0,80}".prop_map(|s| clean(s.into_bytes())),
        1 => Just(b"https://media.example.test:8443/a?b".to_vec()),
    ];
    let six = proptest::collection::vec(proptest::option::of(any_value), 6);
    runner()
        .run(&six, |v| {
            let names = [
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-forwarded-uri",
                "x-forwarded-method",
                "x-original-url",
                "x-original-method",
            ];
            let pairs: Vec<(&str, &[u8])> = names
                .iter()
                .zip(&v)
                .filter_map(|(n, b)| b.as_deref().map(|b| (*n, b)))
                .collect();
            let h = headers(&pairs);
            if let Ok(t) = target_from_forwarded(&h) {
                check_target(&t)?;
            }
            if let Ok(t) = target_from_original(&h) {
                check_target(&t)?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_verifier_refuses_anything_without_panicking() {
    let rt = runtime();
    let verifier = |service_tokens| {
        CloudflareVerifier::new(CloudflareConfig {
            team_domain: DEAD_TEAM.into(),
            service_tokens,
            apps: vec![(HostPattern(HOST.into()), AUD.into())],
        })
        .unwrap()
    };
    let (plain, with_service) = (verifier(false), verifier(true));
    // The first fetch fails at once: from then on checks do not wait for it.
    rt.block_on(async {
        assert!(plain.refresh().await.is_err());
        assert!(with_service.refresh().await.is_err());
    });
    let host = prop_oneof![
        3 => Just(HOST.to_string()),
        1 => ".{0,30}",
    ];
    let now = prop_oneof![Just(0i64), any::<i64>(), Just(1_800_000_000i64)];
    runner()
        .run(
            &(token_like(), host, now, any::<bool>()),
            |(token, host, now, svc)| {
                let v = if svc { &with_service } else { &plain };
                let r = rt.block_on(v.verify(&token, &host, now));
                prop_assert!(r.is_err(), "verified {token:?} with no keys: {r:?}");
                if token.len() > MAX_TOKEN || token.is_empty() {
                    prop_assert_eq!(r.unwrap_err(), CfError::Malformed);
                }
                Ok(())
            },
        )
        .unwrap();
}

/// A whole doorman (router, store, verifier) with forward-auth configured.
async fn app_state(dir: &std::path::Path) -> crate::state::AppState {
    let text = format!(
        r#"issuer = "https://auth.example.test"
data_dir = '{dir}'
trusted_proxies = ["127.0.0.1"]

[session]
cookie_domain = "example.test"

[forward_auth.cloudflare]
team_domain = "{DEAD_TEAM}"
service_tokens = true

[[forward_auth.cloudflare.apps]]
host = "{HOST}"
aud = "{AUD}"

[[forward_auth.rules]]
host = "{HOST}"
path = "/admin"
groups = ["admins"]

[[forward_auth.rules]]
host = "*.example.test"
allow = "authenticated"

[[forward_auth.rules]]
host = "open.example.org"
allow = "public"

[[forward_auth.headers]]
name = "X-Plex-Token"
claim = "plex_token"
"#,
        dir = dir.display()
    );
    let config = crate::config::from_str(&text, &HashMap::new(), dir)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let store = crate::server::open_store(&config).await.unwrap();
    let state = crate::server::build_state(config, store, Arc::new(crate::clock::SystemClock))
        .await
        .unwrap();
    let verifier = state.cloudflare.as_ref().unwrap();
    assert!(verifier.refresh().await.is_err());
    state
}

#[derive(Debug, Clone)]
struct Ask {
    nginx: bool,
    method: &'static str,
    peer: Option<IpAddr>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn ask() -> impl Strategy<Value = Ask> {
    // Present with probability p; mostly plausible values, some arbitrary bytes.
    let value = |p: f64, interesting: BoxedStrategy<String>| {
        proptest::option::weighted(
            p,
            prop_oneof![
                6 => interesting.prop_map(|s| clean(s.into_bytes())),
                1 => header_bytes(200),
            ],
        )
    };
    let host = prop_oneof![
        3 => Just(HOST.to_string()),
        1 => Just(format!("{HOST}:443")),
        2 => Just("open.example.org".to_string()),
        1 => Just("other.example.test".to_string()),
        1 => "[a-zA-Z0-9.:-]{0,40}",
    ]
    .boxed();
    let uri = prop_oneof![
        2 => Just("/".to_string()),
        1 => Just("/admin/x?y".to_string()),
        2 => "/[ -~]{0,40}",
        1 => ".{0,40}"
    ]
    .boxed();
    let url = prop_oneof![
        Just(format!("https://{HOST}/admin")),
        Just(format!("https://{HOST}/")),
        Just("http://open.example.org/".to_string()),
        "(https?|ftp|javascript)://[a-z.]{0,20}(:[0-9]{0,6})?/.{0,20}",
        ".{0,40}",
    ]
    .boxed();
    let word = prop_oneof![Just("GET".to_string()), Just("post".to_string()), ".{0,10}"].boxed();
    let proto = prop_oneof![
        3 => Just("https".to_string()),
        1 => Just("HTTP".to_string()),
        1 => ".{0,8}"
    ]
    .boxed();
    let token = token_like().boxed();
    let cookie = prop_oneof![
        token_like().prop_map(|t| format!("CF_Authorization={t}")),
        "[a-z_]{0,12}=[ -~]{0,60}",
        "doorman_fa=[A-Za-z0-9_-]{0,50}; doorman_session=[A-Za-z0-9_-]{0,50}",
    ]
    .boxed();
    let accept = prop_oneof![Just("text/html".to_string()), ".{0,20}"].boxed();
    let peer = prop_oneof![
        4 => Just(Some(IpAddr::from([127, 0, 0, 1]))),
        1 => Just(Some(IpAddr::from([10, 1, 2, 3]))),
        1 => Just(None),
    ];
    let method = prop_oneof![Just("GET"), Just("POST"), Just("HEAD"), Just("OPTIONS")];
    (
        any::<bool>(),
        method,
        peer,
        (
            value(0.9, host),
            value(0.6, proto),
            value(0.8, uri),
            value(0.6, word.clone()),
            value(0.9, url),
            value(0.6, word),
        ),
        (
            value(0.7, token),
            value(0.5, cookie),
            value(0.5, accept),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(nginx, method, peer, (fh, fp, fu, fm, ou, om), (cf, cookie, accept, xhr))| {
                let named = [
                    ("x-forwarded-host", fh),
                    ("x-forwarded-proto", fp),
                    ("x-forwarded-uri", fu),
                    ("x-forwarded-method", fm),
                    ("x-original-url", ou),
                    ("x-original-method", om),
                    ("cf-access-jwt-assertion", cf),
                    ("cookie", cookie),
                    ("accept", accept),
                    ("x-requested-with", xhr.then(|| b"XMLHttpRequest".to_vec())),
                ];
                Ask {
                    nginx,
                    method,
                    peer,
                    headers: named
                        .into_iter()
                        .filter_map(|(n, v)| v.map(|v| (n, v)))
                        .collect(),
                }
            },
        )
}

#[test]
fn forward_auth_endpoints_answer_only_allowed_statuses() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let state = rt.block_on(app_state(dir.path()));
    let router = crate::server::router(state);
    runner()
        .run(&ask(), |ask| {
            let path = if ask.nginx {
                super::paths::AUTH_REQUEST
            } else {
                super::paths::FORWARD_AUTH
            };
            let mut req = Request::builder().method(ask.method).uri(path);
            for (k, v) in &ask.headers {
                req = req.header(*k, HeaderValue::from_bytes(v).unwrap());
            }
            let mut req = req.body(Body::empty()).unwrap();
            if let Some(ip) = ask.peer {
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
            }
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            let status = resp.status().as_u16();
            prop_assert!(
                matches!(status, 200 | 302 | 303 | 400 | 401 | 403),
                "{path} answered {status} to {ask:?}"
            );
            for h in [
                "remote-user",
                "remote-email",
                "remote-name",
                "remote-groups",
                "x-plex-token",
            ] {
                prop_assert!(resp.headers().contains_key(h), "{h} missing: {ask:?}");
            }
            if status == 200 {
                // Nothing verifies here, so only the public host can let anyone through.
                prop_assert_eq!(resp.headers()["remote-user"].as_bytes(), b"");
            }
            Ok(())
        })
        .unwrap();
}
