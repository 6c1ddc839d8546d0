//! One spelling of the request a proxy asks about, before any rule sees it. A rule must judge
//! the path the upstream app will act on, and apps decode paths in different ways; so a path is
//! brought to one canonical form (RFC 3986 §6.2.2), and a path an upstream could read in two
//! ways that matter is refused, never resolved by picking one. Plain functions, no HTTP types.
//!
//! The canonical form: unreserved characters percent-decoded (`%61` is `a`, `%2E` is `.`), the
//! other percent-encodings kept with upper-case hex; `;` path parameters (or `%3B` ones, for
//! apps that decode first) cut from each segment (`/admin;jsessionid=x` is `/admin`, as Tomcat
//! and Spring read it); repeated slashes merged;
//! dot segments removed (RFC 3986 §5.2.4), `%2e%2e` included, since it decodes to `..`.
//! Because some routers do not remove dot segments, the same path is also kept with them as
//! literal segments, and the rules judge both readings (the stricter answer wins).
//!
//! Refused (the caller answers 403): an encoded `/` or `\` (`%2F`, `%5C`: one app splits on
//! them, another does not), a raw `\` (read as `/` by browsers, Windows and some frameworks),
//! a `%` without two hex digits, a percent-encoded byte sequence that is not UTF-8 (overlong
//! forms such as `%C0%AF` for `/`), a NUL or any control character, raw whitespace, a raw `#`
//! or a raw non-ASCII character (some servers cut or re-encode them), and double encoding
//! (`%25` followed by two hex digits, e.g. `%252e` or `%25%32%65`), which an app that decodes
//! twice would read as another character; and a non-ASCII character whose upper or lower case
//! is ASCII (`ı`, `ſ`, the Kelvin sign), which an app matching with Unicode case rules reads as
//! `I`, `S` or `k`.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAbsolute,
    EncodedSeparator,
    Backslash,
    BadPercent,
    DoubleEncoded,
    NotUtf8,
    Control,
    Whitespace,
    Fragment,
    NonAscii,
    CaseFoldsToAscii,
    Compatibility,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotAbsolute => "the path does not start with /",
            Refusal::EncodedSeparator => "an encoded / or \\ (%2F, %5C)",
            Refusal::Backslash => "a raw backslash",
            Refusal::BadPercent => "a % not followed by two hex digits",
            Refusal::DoubleEncoded => "a double percent-encoding (%25 followed by hex digits)",
            Refusal::NotUtf8 => "percent-encoded bytes that are not UTF-8 (or an overlong form)",
            Refusal::Control => "a NUL or control character",
            Refusal::Whitespace => "raw whitespace",
            Refusal::Fragment => "a raw #",
            Refusal::NonAscii => "a raw non-ASCII character",
            Refusal::Compatibility => {
                "a character that compatibility normalisation (NFKC) reads as another one"
            }
            Refusal::CaseFoldsToAscii => {
                "a non-ASCII character whose upper or lower case is ASCII (ı, ſ, the Kelvin sign)"
            }
        })
    }
}

/// A path in canonical form, in the two readings rules must both allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Dot segments removed: how RFC 3986 (and most servers) read it.
    pub resolved: String,
    /// Dot segments kept as segments: how a router that does not resolve them reads it.
    pub literal: String,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `s` holds `%25` followed by two hex digits.
fn double_encoded(s: &[u8]) -> bool {
    s.windows(5).any(|w| {
        w.starts_with(b"%25")
            && w.get(3).copied().and_then(hex_value).is_some()
            && w.get(4).copied().and_then(hex_value).is_some()
    })
}

/// Canonicalises an absolute path (no query: the caller cuts at the first `?`).
pub fn canonical_path(raw: &str) -> Result<CanonicalPath, Refusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Refusal::NotAbsolute);
    }
    // The fully decoded bytes, only to check that the encoded ones form UTF-8.
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut segments: Vec<String> = Vec::new();
    let mut segment = String::new();
    // Inside a `;` parameter: the rest of the segment is dropped (still checked).
    let mut in_params = false;
    // The whole path with the unreserved characters decoded, parameters included: what the
    // double-encoding check reads (an app that decodes twice before it cuts parameters reads
    // `/;%25%32%66...` as `/;/...`, a path segment doorman would otherwise have dropped).
    let mut once = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'/' => {
                segments.push(std::mem::take(&mut segment));
                in_params = false;
                decoded.push(b);
                once.push('/');
                continue;
            }
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i).copied().and_then(hex_value),
                    bytes.get(i + 1).copied().and_then(hex_value),
                ) else {
                    return Err(Refusal::BadPercent);
                };
                i += 2;
                let d = h * 16 + l;
                if d == b'/' || d == b'\\' {
                    return Err(Refusal::EncodedSeparator);
                }
                if d.is_ascii_control() {
                    return Err(Refusal::Control);
                }
                if d == b'%'
                    && bytes.get(i).copied().and_then(hex_value).is_some()
                    && bytes.get(i + 1).copied().and_then(hex_value).is_some()
                {
                    return Err(Refusal::DoubleEncoded);
                }
                decoded.push(d);
                if is_unreserved(d) {
                    once.push(char::from(d));
                } else {
                    once.push_str(&format!("%{d:02X}"));
                }
                if in_params {
                    continue;
                }
                if d == b';' {
                    // An app that decodes before it cuts parameters reads `%3B` as `;`.
                    in_params = true;
                    continue;
                }
                if is_unreserved(d) {
                    segment.push(char::from(d));
                } else {
                    segment.push_str(&format!("%{d:02X}"));
                }
                continue;
            }
            b'\\' => return Err(Refusal::Backslash),
            b'#' => return Err(Refusal::Fragment),
            b' ' | b'\t' => return Err(Refusal::Whitespace),
            _ if b.is_ascii_control() => return Err(Refusal::Control),
            _ if !b.is_ascii() => return Err(Refusal::NonAscii),
            b';' => in_params = true,
            _ => {}
        }
        decoded.push(b);
        once.push(char::from(b));
        if !in_params {
            segment.push(char::from(b));
        }
    }
    segments.push(segment);
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return Err(Refusal::NotUtf8);
    };
    // Prefixes match ignoring ASCII case; an app comparing with Unicode case rules (.NET's
    // OrdinalIgnoreCase) would also take `ı` for `I`, `ſ` for `S` and the Kelvin sign for `k`.
    if text.chars().any(|c| {
        !c.is_ascii()
            && c.to_uppercase()
                .chain(c.to_lowercase())
                .any(|f| f.is_ascii())
    }) {
        return Err(Refusal::CaseFoldsToAscii);
    }
    // An app that applies compatibility normalisation (NFKC, IIS "best fit") would read the
    // full-width `ａ` as `a`: a character that normalises to something else has two readings.
    if text
        .chars()
        .any(|c| !c.is_ascii() && c.nfkc().ne(std::iter::once(c)))
    {
        return Err(Refusal::Compatibility);
    }
    // Double encoding spelled with encoded digits (`%25%36%31`) shows only once the unreserved
    // characters are decoded: `%2561`, which an app that decodes twice reads as `a`.
    if double_encoded(once.as_bytes()) {
        return Err(Refusal::DoubleEncoded);
    }
    // segments[0] is the empty string before the leading slash.
    let trailing = segments
        .last()
        .is_some_and(|s| s.is_empty() || s == "." || s == "..")
        && segments.len() > 2;
    let mut resolved: Vec<&str> = Vec::new();
    let mut literal: Vec<&str> = Vec::new();
    for s in segments.iter().skip(1).filter(|s| !s.is_empty()) {
        literal.push(s);
        match s.as_str() {
            "." => {}
            ".." => {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    let join = |parts: &[&str]| {
        let mut p = format!("/{}", parts.join("/"));
        if trailing && !parts.is_empty() {
            p.push('/');
        }
        p
    };
    Ok(CanonicalPath {
        resolved: join(&resolved),
        literal: join(&literal),
    })
}

/// A host as rules compare it: no port, no brackets, lower-case, no trailing dot.
pub fn canonical_host(raw: &str) -> String {
    let h = raw
        .rsplit_once(':')
        .filter(|(h, p)| {
            p.chars().all(|c| c.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
        })
        .map(|(h, _)| h)
        .unwrap_or(raw);
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(raw: &str) -> String {
        canonical_path(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .resolved
    }

    #[test]
    fn spellings_of_admin_become_admin() {
        for raw in [
            "/admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "//admin",
            "///admin",
            "/./admin",
            "/x/../admin",
            "/x/y/../../admin",
            "/../admin",
            "/%2e/admin",
            "/%2E%2E/admin",
            "/x/.%2e/admin",
            "/admin;jsessionid=x",
            "/admin;a=b;c=d",
            "/x/..;/admin",
        ] {
            assert_eq!(resolved(raw), "/admin", "{raw}");
        }
        assert_eq!(resolved("/admin;x/users"), "/admin/users");
        assert_eq!(
            resolved("/ADMIN/users"),
            "/ADMIN/users",
            "case is the matcher's job"
        );
        assert_eq!(resolved("/"), "/");
    }

    #[test]
    fn the_other_encodings_are_kept_with_upper_case_hex() {
        assert_eq!(
            resolved("/a%3bb/c"),
            "/a/c",
            "an app that decodes first cuts there too"
        );
        assert_eq!(resolved("/a%3fb"), "/a%3Fb");
        assert_eq!(resolved("/a%20b/%c3%a9"), "/a%20b/%C3%A9");
        assert_eq!(resolved("/a/"), "/a/");
        assert_eq!(resolved("/a/."), "/a/");
        assert_eq!(resolved("/a/b/.."), "/a/");
    }

    #[test]
    fn both_readings_of_dot_segments_are_kept() {
        let c = canonical_path("/admin/../public").unwrap();
        assert_eq!(c.resolved, "/public");
        assert_eq!(c.literal, "/admin/../public");
        let c = canonical_path("/admin/%2e%2e/public").unwrap();
        assert_eq!(c.literal, "/admin/../public");
        let c = canonical_path("//a///b").unwrap();
        assert_eq!((c.resolved.as_str(), c.literal.as_str()), ("/a/b", "/a/b"));
    }

    #[test]
    fn paths_an_upstream_could_read_two_ways_are_refused() {
        // Full-width `ａ` (U+FF41): NFKC reads it as `a`.
        assert_eq!(
            canonical_path("/%EF%BD%81dmin"),
            Err(Refusal::Compatibility)
        );
        assert!(
            canonical_path("/caf%C3%A9").is_ok(),
            "é is its own NFKC form"
        );
        for (raw, why) in [
            ("/admin%2Fusers", Refusal::EncodedSeparator),
            // Double encoding hidden in a parameter doorman would cut: an app that decodes
            // twice before cutting reads `/;/a` (found by the spelling property test).
            ("/;%25%32%66%25%36%31", Refusal::DoubleEncoded),
            ("/x;%2561dmin", Refusal::DoubleEncoded),
            ("/admin%2fusers", Refusal::EncodedSeparator),
            ("/admin%5Cusers", Refusal::EncodedSeparator),
            ("/admin\\users", Refusal::Backslash),
            ("\\admin", Refusal::NotAbsolute),
            ("admin", Refusal::NotAbsolute),
            ("/admin%", Refusal::BadPercent),
            ("/admin%2", Refusal::BadPercent),
            ("/admin%zz", Refusal::BadPercent),
            ("/%c0%afadmin", Refusal::NotUtf8),
            ("/%c0%ae%c0%ae/admin", Refusal::NotUtf8),
            ("/%e0%80%af", Refusal::NotUtf8),
            ("/%ff", Refusal::NotUtf8),
            ("/%ed%a0%80", Refusal::NotUtf8),
            ("/admin%00", Refusal::Control),
            ("/admin%0a", Refusal::Control),
            ("/admin%7f", Refusal::Control),
            ("/admin\u{0}", Refusal::Control),
            ("/admin\r\n", Refusal::Control),
            ("/admin x", Refusal::Whitespace),
            ("/admin#x", Refusal::Fragment),
            ("/admin\u{e9}", Refusal::NonAscii),
            ("/%252e%252e/admin", Refusal::DoubleEncoded),
            ("/%2561dmin", Refusal::DoubleEncoded),
            ("/%25%36%31dmin", Refusal::DoubleEncoded),
            ("/adm%C4%B1n", Refusal::CaseFoldsToAscii),
            ("/%C5%BFecret", Refusal::CaseFoldsToAscii),
            ("/%E2%84%AAey", Refusal::CaseFoldsToAscii),
            ("/x%25%32%66admin", Refusal::DoubleEncoded),
            ("/admin;x%2f", Refusal::EncodedSeparator),
        ] {
            assert_eq!(canonical_path(raw), Err(why), "{raw:?}");
        }
        // A literal % that cannot be read twice is data.
        assert_eq!(resolved("/100%25"), "/100%25");
        assert_eq!(resolved("/100%25x"), "/100%25x");
    }

    #[test]
    fn hosts() {
        for raw in [
            "App.Example.com",
            "app.example.com.",
            "app.example.com:443",
            "APP.example.com.:8443",
        ] {
            assert_eq!(canonical_host(raw), "app.example.com", "{raw}");
        }
        assert_eq!(canonical_host("[::1]:8080"), "::1");
        assert_eq!(canonical_host("[::1]"), "::1");
    }
}
