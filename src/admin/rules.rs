//! The rules of the /admin page as plain functions: who is an admin, the Users search, and
//! the refusal to disable the last enabled member of an admin group.

use crate::store::{LockoutCounter, LockoutKey, Timestamp, User};

/// Whether `user` is a member of one of `admin_groups` (an exact group name).
pub fn is_admin(user: &User, admin_groups: &[String]) -> bool {
    user.groups.iter().any(|g| admin_groups.contains(g))
}

/// Whether `user` matches the search `q`: a case-insensitive substring of the username,
/// email, name or one of the groups. An empty (or blank) query matches everyone.
pub fn matches(user: &User, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    let hit = |s: &str| s.to_lowercase().contains(&q);
    hit(&user.username)
        || user.email.as_deref().is_some_and(hit)
        || user.name.as_deref().is_some_and(hit)
        || user.groups.iter().any(|g| hit(g))
}

/// The users matching `q`, ordered by username (case-insensitively).
pub fn search<'a>(users: &'a [User], q: &str) -> Vec<&'a User> {
    let mut out: Vec<&User> = users.iter().filter(|u| matches(u, q)).collect();
    out.sort_by_key(|u| u.username.to_lowercase());
    out
}

/// Whether the account's counters (from `Store::lockouts_of`) block a sign-in at `now`: a
/// failure counter still blocking. The known-IP markers (`ip` starting with `known `) mark
/// where the user signed in before, not a lockout.
pub fn is_locked(counters: &[(LockoutKey, LockoutCounter)], now: Timestamp) -> bool {
    counters
        .iter()
        .any(|(k, c)| !k.ip.starts_with("known ") && now < c.blocked_until)
}

/// Why a user may not be disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target is the last enabled member of this admin group.
    LastAdmin(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::LastAdmin(group) => write!(
                f,
                "This is the last enabled member of the admin group \"{group}\": disabling it would leave no one to run this page. Make another admin first."
            ),
        }
    }
}

/// Whether `target` may be disabled, given every user: not if it is the last enabled member
/// of one of `admin_groups` (a disabled target is no one's last admin).
pub fn may_disable(target: &User, all: &[User], admin_groups: &[String]) -> Result<(), Refusal> {
    if target.disabled {
        return Ok(());
    }
    for group in target.groups.iter().filter(|g| admin_groups.contains(g)) {
        let others = all
            .iter()
            .any(|u| u.id != target.id && !u.disabled && u.groups.contains(group));
        if !others {
            return Err(Refusal::LastAdmin(group.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, username: &str, groups: &[&str]) -> User {
        User {
            id: id.into(),
            username: username.into(),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            password_hash: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        }
    }

    fn admins() -> Vec<String> {
        vec!["admins".to_string(), "ops".to_string()]
    }

    #[test]
    fn admins_are_members_of_an_admin_group() {
        assert!(is_admin(
            &user("1", "alice", &["family", "admins"]),
            &admins()
        ));
        assert!(is_admin(&user("1", "alice", &["ops"]), &admins()));
        assert!(!is_admin(&user("2", "bob", &["family"]), &admins()));
        assert!(!is_admin(&user("2", "bob", &["Admins"]), &admins()));
        assert!(!is_admin(&user("2", "bob", &[]), &admins()));
    }

    #[test]
    fn search_matches_username_email_name_or_group_ignoring_case() {
        let mut alice = user("1", "alice", &["admins"]);
        alice.email = Some("Alice@Example.com".into());
        alice.name = Some("Alice Liddell".into());
        let mut bob = user("2", "Bob", &["Family"]);
        bob.email = Some("bob@home.test".into());
        let carol = user("3", "carol", &[]);
        let all = vec![carol, bob, alice];
        let names = |q: &str| -> Vec<String> {
            search(&all, q).iter().map(|u| u.username.clone()).collect()
        };
        assert_eq!(
            names(""),
            ["alice", "Bob", "carol"],
            "everyone, by username"
        );
        assert_eq!(names("  "), ["alice", "Bob", "carol"]);
        assert_eq!(names("BOB"), ["Bob"], "username");
        assert_eq!(names("example.COM"), ["alice"], "email");
        assert_eq!(names("liddell"), ["alice"], "name");
        assert_eq!(names("family"), ["Bob"], "group");
        assert_eq!(names("ADMINS"), ["alice"], "group");
        assert_eq!(names("c"), ["alice", "carol"], "alice's email has a c");
        assert!(names("nobody").is_empty());
    }

    #[test]
    fn locked_means_a_failure_counter_still_blocking() {
        let key = |ip: &str| LockoutKey {
            account: "u1".into(),
            ip: ip.into(),
        };
        let until = |t: i64| LockoutCounter {
            failures: 3,
            window_start: 0,
            blocked_until: t,
        };
        assert!(!is_locked(&[], 100));
        assert!(is_locked(&[(key(""), until(130))], 100), "all IPs");
        assert!(is_locked(&[(key("192.0.2.7"), until(130))], 100), "one IP");
        assert!(is_locked(&[(key("codes"), until(130))], 100), "codes");
        assert!(
            !is_locked(&[(key(""), until(100))], 100),
            "the block is over"
        );
        let known = (key("known 192.0.2.7"), until(100 + 86_400));
        assert!(
            !is_locked(std::slice::from_ref(&known), 100),
            "a known-IP marker"
        );
        assert!(is_locked(&[known, (key(""), until(130))], 100));
    }

    #[test]
    fn the_last_enabled_admin_cannot_be_disabled() {
        let alice = user("1", "alice", &["admins"]);
        let bob = user("2", "bob", &[]);
        let all = vec![alice.clone(), bob.clone()];
        assert_eq!(
            may_disable(&alice, &all, &admins()),
            Err(Refusal::LastAdmin("admins".into()))
        );
        assert!(may_disable(&bob, &all, &admins()).is_ok(), "not an admin");

        // A second enabled admin: either may be disabled.
        let carol = user("3", "carol", &["admins"]);
        let all = vec![alice.clone(), bob.clone(), carol.clone()];
        assert!(may_disable(&alice, &all, &admins()).is_ok());

        // A disabled second admin does not count.
        let mut off = carol;
        off.disabled = true;
        let all = vec![alice.clone(), bob, off];
        assert!(may_disable(&alice, &all, &admins()).is_err());

        // The last member of any one admin group is refused.
        let dave = user("4", "dave", &["admins", "ops"]);
        let all = vec![alice.clone(), dave.clone()];
        assert_eq!(
            may_disable(&dave, &all, &admins()),
            Err(Refusal::LastAdmin("ops".into()))
        );
        assert!(Refusal::LastAdmin("ops".into())
            .to_string()
            .contains("last enabled member"));
    }
}
