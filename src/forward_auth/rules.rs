//! Who may reach what: the first rule whose host and path match decides; no match means deny.

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

/// Whether `path` is under `prefix` (`/admin` covers `/admin`, `/admin/x` and `/admin?x`, not
/// `/administrator`).
pub fn path_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
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
    }
}
