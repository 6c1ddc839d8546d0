//! Property tests: no spelling of a protected path gets a non-admin through. Paths are built
//! from pieces an attacker would use (percent-encodings in either case, double encodings,
//! dot segments raw and encoded, `;` parameters, repeated and encoded slashes, backslashes,
//! overlong UTF-8, NULs, `#`), and read by several models of how upstream apps decode a path.
//! Whenever any model reads the path as under `/a` (the protected prefix), doorman must refuse
//! the path or deny it.

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::rules::{decide_canonical, Decision, Principal};
use super::target_from_forwarded;
use crate::config::{ForwardAuthRule, HostPattern, RuleAccess};

const HOST: &str = "app.example.test";

fn rules(protected: &str) -> Vec<ForwardAuthRule> {
    vec![
        ForwardAuthRule {
            host: HostPattern(HOST.into()),
            path: Some(protected.into()),
            access: RuleAccess::Groups(vec!["admins".into()]),
        },
        ForwardAuthRule {
            host: HostPattern(HOST.into()),
            path: None,
            access: RuleAccess::Authenticated,
        },
    ]
}

fn bob() -> Principal {
    Principal {
        user: "bob".into(),
        ..Principal::default()
    }
}

/// How one kind of upstream app reads a path.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// Cut `;` parameters before decoding (Tomcat) rather than after.
    params_before_decoding: bool,
    /// How many times it percent-decodes.
    decodes: u8,
    /// Whether it removes dot segments (some routers match them literally).
    resolves_dots: bool,
    /// Whether it reads overlong UTF-8 (`%C0%AF`) as the ASCII it spells.
    lenient_utf8: bool,
}

const MODELS: [Model; 6] = [
    Model {
        params_before_decoding: true,
        decodes: 1,
        resolves_dots: true,
        lenient_utf8: false,
    },
    Model {
        params_before_decoding: false,
        decodes: 1,
        resolves_dots: true,
        lenient_utf8: false,
    },
    Model {
        params_before_decoding: false,
        decodes: 1,
        resolves_dots: false,
        lenient_utf8: false,
    },
    Model {
        params_before_decoding: false,
        decodes: 2,
        resolves_dots: true,
        lenient_utf8: false,
    },
    Model {
        params_before_decoding: false,
        decodes: 1,
        resolves_dots: true,
        lenient_utf8: true,
    },
    Model {
        params_before_decoding: true,
        decodes: 2,
        resolves_dots: false,
        lenient_utf8: true,
    },
];

/// Lenient percent-decoding: an invalid escape stays as it is.
fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Two-byte overlong forms (`C0 AF` for `/`) read as what they spell.
fn lenient(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], 0xC0 | 0xC1) && i + 1 < b.len() {
            out.push(((b[i] & 0x1F) << 6) | (b[i + 1] & 0x3F));
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn cut_params(segment: &[u8]) -> &[u8] {
    match segment.iter().position(|&c| c == b';') {
        Some(i) => &segment[..i],
        None => segment,
    }
}

/// The path's segments as `m` reads them (lower-cased: routers like ASP.NET's ignore case).
fn upstream(m: Model, raw: &str) -> Vec<Vec<u8>> {
    // A fragment is never part of the path.
    let raw = raw.split('#').next().unwrap_or_default().as_bytes();
    let mut bytes: Vec<u8> = if m.params_before_decoding {
        raw.split(|&c| c == b'/')
            .map(|s| cut_params(s).to_vec())
            .collect::<Vec<_>>()
            .join(&b'/')
    } else {
        raw.to_vec()
    };
    for _ in 0..m.decodes {
        bytes = percent_decode(&bytes);
    }
    if m.lenient_utf8 {
        bytes = lenient(&bytes);
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for s in bytes.split(|&c| c == b'/' || c == b'\\') {
        let s = if m.params_before_decoding {
            s
        } else {
            cut_params(s)
        };
        // Some servers stop at a NUL.
        let s = s.split(|&c| c == 0).next().unwrap_or_default();
        if s.is_empty() {
            continue;
        }
        match (m.resolves_dots, s) {
            (true, b".") => {}
            (true, b"..") => {
                segments.pop();
            }
            _ => segments.push(s.to_ascii_lowercase()),
        }
    }
    segments
}

/// Whether `m` reads `raw` as under the one-segment `prefix` (`/a`).
fn protected_for(m: Model, raw: &str, prefix: &str) -> bool {
    upstream(m, raw)
        .first()
        .is_some_and(|s| s.as_slice() == prefix.trim_start_matches('/').as_bytes())
}

fn doorman_lets_bob_in(uri: &str, protected: &str) -> bool {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-host", HeaderValue::from_static(HOST));
    let Ok(v) = HeaderValue::from_str(uri) else {
        return false;
    };
    h.insert("x-forwarded-uri", v);
    match target_from_forwarded(&h) {
        Err(_) => false,
        Ok(t) => {
            decide_canonical(&rules(protected), HOST, &t.path, Some(&bob())) == Decision::Allow
        }
    }
}

/// Pieces of a path: the protected name's letters in many spellings, and separators.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("a".to_string()),
        2 => Just("A".to_string()),
        2 => Just("%61".to_string()),
        1 => Just("%41".to_string()),
        1 => Just("%2561".to_string()),
        6 => Just("/".to_string()),
        1 => Just("\\".to_string()),
        2 => Just("%2f".to_string()),
        1 => Just("%2F".to_string()),
        1 => Just("%5c".to_string()),
        1 => Just("%252f".to_string()),
        1 => Just("%c0%af".to_string()),
        1 => Just("%c0%ae".to_string()),
        3 => Just(".".to_string()),
        2 => Just("%2e".to_string()),
        1 => Just("%2E".to_string()),
        1 => Just("%252e".to_string()),
        2 => Just(";".to_string()),
        1 => Just("%3b".to_string()),
        1 => Just("x=1".to_string()),
        2 => Just("b".to_string()),
        1 => Just("%00".to_string()),
        1 => Just("#".to_string()),
        1 => Just("%".to_string()),
        1 => Just("%23".to_string()),
        1 => Just("%25".to_string()),
        2 => Just("%25%36%31".to_string()),
        1 => Just("%36%31".to_string()),
        1 => Just("%32%66".to_string()),
        1 => Just("%32%65".to_string()),
    ]
}

fn spelling() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 1..12).prop_map(|p| format!("/{}", p.concat()))
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: 4096,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

#[test]
fn the_models_read_the_plain_spellings_as_expected() {
    for m in MODELS {
        assert!(protected_for(m, "/a", "/a"));
        assert!(protected_for(m, "/A/x", "/a"));
        assert!(!protected_for(m, "/b", "/a"));
    }
    assert!(protected_for(MODELS[1], "/%61%2fx", "/a"));
    assert!(protected_for(MODELS[1], "/b/../a", "/a"));
    assert!(!protected_for(MODELS[2], "/b/../a", "/a"));
    assert!(protected_for(MODELS[2], "/a/../b", "/a"));
    assert!(protected_for(MODELS[3], "/%2561", "/a"));
    assert!(protected_for(MODELS[4], "/%c0%afa", "/a"));
    // doorman itself: the plain spelling is denied, another path allowed.
    assert!(!doorman_lets_bob_in("/a", "/a"));
    assert!(doorman_lets_bob_in("/b/c", "/a"));
}

#[test]
fn no_spelling_of_a_protected_path_gets_a_non_admin_through() {
    runner()
        .run(&spelling(), |raw| {
            for m in MODELS {
                if protected_for(m, &raw, "/a") {
                    prop_assert!(
                        !doorman_lets_bob_in(&raw, "/a"),
                        "{raw:?} is /a to {m:?}, and doorman let bob in"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The same with the README's own rule (`/admin`) and a target built around it: prefixes,
/// suffixes and per-letter spellings.
#[test]
fn no_spelling_of_admin_gets_a_non_admin_through() {
    let letter = |c: char| {
        let b = c as u8;
        prop_oneof![
            4 => Just(c.to_string()),
            2 => Just(c.to_ascii_uppercase().to_string()),
            1 => Just(format!("%{b:02x}")),
            1 => Just(format!("%{b:02X}")),
            1 => Just(format!("%25{b:02x}")),
            // Double encoding with the hex digits themselves encoded: `%25%36%31` is `a`.
            1 => Just(
                format!("{b:02x}")
                    .bytes()
                    .fold("%25".to_string(), |acc, d| format!("{acc}%{d:02X}"))
            ),
        ]
    };
    let word = (
        letter('a'),
        letter('d'),
        letter('m'),
        letter('i'),
        letter('n'),
    )
        .prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}"));
    let before = prop_oneof![
        Just("/"),
        Just("//"),
        Just("/./"),
        Just("/%2e/"),
        Just("/x/../"),
        Just("/x/%2e%2e/"),
        Just("/x/..;/"),
        Just("/.;/"),
        Just("\\"),
        Just("/x%2f..%2f"),
        Just("/;x/"),
    ];
    let after = prop_oneof![
        Just(""),
        Just("/"),
        Just("/users"),
        Just(";jsessionid=x"),
        Just("%3bx"),
        Just("%2Fusers"),
        Just("\\users"),
        Just("#x"),
        Just("%00"),
        Just("/."),
        Just("/x/.."),
        Just("%c0%afusers"),
        Just("?q=1"),
    ];
    runner()
        .run(&(before, word, after), |(before, word, after)| {
            let raw = format!("{before}{word}{after}");
            let path = raw.split('?').next().unwrap_or_default();
            for m in MODELS {
                if protected_for(m, path, "/admin") {
                    prop_assert!(
                        !doorman_lets_bob_in(&raw, "/admin"),
                        "{raw:?} is /admin to {m:?}, and doorman let bob in"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
