//! Who may reach what: the first rule whose host and path match decides; no match means deny.
//! Paths arrive canonical (see `canonical`); prefixes match case-insensitively, because
//! Jellyfin and other ASP.NET apps route `/ADMIN` to `/admin`: an allow rule matching more
//! spellings is harmless, a deny rule matching fewer is not.

use super::canonical::CanonicalPath;
use crate::config::{ForwardAuthRule, RuleAccess};

/// Who is asking, as far as the rules care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Known but not allowed (403).
    Deny,
    /// Unknown, and signing in could help (redirect to the login page, or 401).
    SignIn,
}

/// Whether `path` is under `prefix`, segment by segment, ignoring ASCII case (`/admin` and
/// `/admin/` cover `/admin`, `/Admin/x` and `/admin?x`, not `/administrator`). Trailing dots
/// and spaces on every matched segment are ignored too (`/admin.`, `/api./admin`,
/// `/api%20/admin`): Windows file APIs drop them, so an IIS upstream reads them as the plain name.
pub fn path_matches(prefix: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return false;
    }
    let mut have = path.split('/').filter(|s| !s.is_empty());
    prefix.split('/').filter(|s| !s.is_empty()).all(|want| {
        have.next().is_some_and(|seg| {
            let (seg, want) = (windows_name(seg), windows_name(want));
            !seg.is_empty() && seg.eq_ignore_ascii_case(want)
        })
    })
}

/// A path segment as Windows reads it: trailing dots and (encoded) spaces dropped.
fn windows_name(mut seg: &str) -> &str {
    while let Some(rest) = seg.strip_suffix('.').or_else(|| seg.strip_suffix("%20")) {
        seg = rest;
    }
    seg
}

/// How much a decision keeps out: the stricter of two wins.
fn strictness(d: Decision) -> u8 {
    match d {
        Decision::Allow => 0,
        Decision::SignIn => 1,
        Decision::Deny => 2,
    }
}

/// `decide` for both readings of a canonical path (dot segments resolved, and kept as a
/// router that does not resolve them sees them): the stricter answer wins.
pub fn decide_canonical(
    rules: &[ForwardAuthRule],
    host: &str,
    path: &CanonicalPath,
    who: Option<&Principal>,
) -> Decision {
    let resolved = decide(rules, host, &path.resolved, who);
    if path.literal == path.resolved {
        return resolved;
    }
    let literal = decide(rules, host, &path.literal, who);
    if strictness(literal) > strictness(resolved) {
        literal
    } else {
        resolved
    }
}

pub fn decide(
    rules: &[ForwardAuthRule],
    host: &str,
    path: &str,
    who: Option<&Principal>,
) -> Decision {
    let Some(rule) = rules
        .iter()
        .find(|r| r.host.matches(host) && r.path.as_deref().is_none_or(|p| path_matches(p, path)))
    else {
        // No rule covers this: nobody gets in, so signing in would not help.
        return Decision::Deny;
    };
    let Some(who) = who else {
        return if rule.access == RuleAccess::Public {
            Decision::Allow
        } else {
            Decision::SignIn
        };
    };
    let allowed = match &rule.access {
        RuleAccess::Public | RuleAccess::Authenticated => true,
        RuleAccess::Groups(groups) => who.groups.iter().any(|g| groups.contains(g)),
        RuleAccess::Users(users) => users.iter().any(|u| {
            (!who.user.is_empty() && u.eq_ignore_ascii_case(&who.user))
                || (!who.email.is_empty() && u.eq_ignore_ascii_case(&who.email))
        }),
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPattern;

    fn rule(host: &str, path: Option<&str>, access: RuleAccess) -> ForwardAuthRule {
        ForwardAuthRule {
            host: HostPattern(host.into()),
            path: path.map(Into::into),
            access,
        }
    }

    fn alice() -> Principal {
        Principal {
            user: "alice".into(),
            email: "alice@example.com".into(),
            name: "Alice".into(),
            groups: vec!["family".into()],
        }
    }

    #[test]
    fn first_match_wins_and_no_match_denies() {
        let rules = vec![
            rule(
                "app.example.com",
                Some("/admin"),
                RuleAccess::Groups(vec!["admins".into()]),
            ),
            rule("*.example.com", None, RuleAccess::Authenticated),
            rule("open.example.org", None, RuleAccess::Public),
        ];
        assert_eq!(
            decide(&rules, "app.example.com", "/admin/x", Some(&alice())),
            Decision::Deny
        );
        assert_eq!(
            decide(&rules, "app.example.com", "/administrator", Some(&alice())),
            Decision::Allow
        );
        assert_eq!(
            decide(&rules, "app.example.com", "/", None),
            Decision::SignIn
        );
        assert_eq!(
            decide(&rules, "APP.example.com", "/", Some(&alice())),
            Decision::Allow
        );
        assert_eq!(
            decide(&rules, "example.com", "/", Some(&alice())),
            Decision::Deny,
            "*.example.com is not example.com"
        );
        assert_eq!(
            decide(&rules, "evil.com", "/", Some(&alice())),
            Decision::Deny
        );
        assert_eq!(
            decide(&rules, "open.example.org", "/", None),
            Decision::Allow
        );
        let users = vec![rule(
            "a.example.com",
            None,
            RuleAccess::Users(vec!["ALICE@example.com".into()]),
        )];
        assert_eq!(
            decide(&users, "a.example.com", "/", Some(&alice())),
            Decision::Allow
        );
    }

    #[test]
    fn paths() {
        assert!(path_matches("/admin", "/admin"));
        assert!(path_matches("/admin", "/admin/"));
        assert!(path_matches("/admin", "/admin?x=1"));
        assert!(!path_matches("/admin", "/administrator"));
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/admin", "/ADMIN/users"));
        assert!(path_matches("/Admin", "/aDmIn"));
        assert!(path_matches("/admin/", "/admin"), "/admin/ covers /admin");
        assert!(path_matches("/admin/", "/admin/x"));
        assert!(!path_matches("/admin/", "/administrator"));
        assert!(!path_matches("/admin", "/adm"));
        assert!(path_matches("/%C3%A9t%C3%A9", "/%c3%a9T%C3%A9/x"));
        assert!(path_matches("/admin", "/admin."));
        assert!(path_matches("/admin", "/admin..%20/x"));
        assert!(!path_matches("/admin", "/admin.php"));
        assert!(path_matches("/", "/.x"));
        // Every segment of a longer prefix is read the Windows way, not just the last.
        assert!(path_matches("/api/admin", "/api./admin"));
        assert!(path_matches("/api/admin", "/API%20/Admin./x"));
        assert!(!path_matches("/api/admin", "/api/administrator"));
        assert!(!path_matches("/api/admin", "/apiv/admin"));
    }

    /// The README's pair of rules against the spellings of issue 9: a signed-in user outside
    /// admins never gets one of them.
    #[test]
    fn spellings_of_a_protected_path_are_denied() {
        let rules = vec![
            rule(
                "app.example.com",
                Some("/admin"),
                RuleAccess::Groups(vec!["admins".into()]),
            ),
            rule("app.example.com", None, RuleAccess::Authenticated),
        ];
        for raw in [
            "/admin",
            "/%61dmin/users",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/%2e/admin",
            "/admin;jsessionid=x",
            "/ADMIN/users",
            "/Admin",
            "/admin/",
            "/admin/../x",
            "/admin/%2e%2e/x",
            "/admin/..;/x",
        ] {
            let path = crate::forward_auth::canonical::canonical_path(raw).unwrap();
            assert_eq!(
                decide_canonical(&rules, "app.example.com", &path, Some(&alice())),
                Decision::Deny,
                "{raw} -> {path:?}"
            );
        }
        let path = crate::forward_auth::canonical::canonical_path("/x/y").unwrap();
        assert_eq!(
            decide_canonical(&rules, "app.example.com", &path, Some(&alice())),
            Decision::Allow
        );
    }
}

#[cfg(test)]
mod config_tests {
    use std::collections::HashMap;

    fn load(path: &str) -> Result<Option<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "issuer = \"https://auth.example.com\"\n[[forward_auth.rules]]\nhost = \"app.example.com\"\npath = \"{path}\"\ngroups = [\"admins\"]\n"
        );
        crate::config::from_str(&text, &HashMap::new(), dir.path())
            .map(|c| c.forward_auth.rules.first().and_then(|r| r.path.clone()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_rules_path_is_canonicalised_at_load() {
        assert_eq!(load("/%61dmin//x/../"), Ok(Some("/admin/".into())));
        assert_eq!(load("/admin;v=1"), Ok(Some("/admin".into())));
        for bad in ["/admin%2Fx", "/admin\\\\x", "/admin?x=1", "/admin%zz"] {
            let err = load(bad).unwrap_err();
            assert!(err.contains("forward_auth.rules[0].path"), "{bad}: {err}");
        }
    }
}
