//! The rules of the /admin page as plain functions: who is an admin, the Users search, and
//! the last-admin rule (disable, delete, demote), the forms' parsing, the clients' hints and
//! the start-up line when there is no admin yet.

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

/// What an admin does to a user that could leave an admin group with no enabled member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Disable,
    Delete,
    /// A groups edit: the user's groups become these.
    Groups(&'a [String]),
}

impl Change<'_> {
    fn doing(&self) -> &'static str {
        match self {
            Change::Disable => "disabling it",
            Change::Delete => "deleting it",
            Change::Groups(_) => "taking it out of that group",
        }
    }
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target is the last enabled member of `group` (an admin group); `doing` says what
    /// would have removed it.
    LastAdmin { group: String, doing: &'static str },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::LastAdmin { group, doing } => write!(
                f,
                "This is the last enabled member of the admin group \"{group}\": {doing} would leave no one to run this page. Make another admin first."
            ),
        }
    }
}

/// The last-admin rule, one for disabling, deleting and a groups edit ("demoting"): refused
/// when `target` is the last enabled member of an admin group it would leave. A disabled
/// target is no one's last admin; the other users are `all` (the target among them or not).
pub fn may_change(
    target: &User,
    change: Change<'_>,
    all: &[User],
    admin_groups: &[String],
) -> Result<(), Refusal> {
    if target.disabled {
        return Ok(());
    }
    let leaves = |group: &String| match change {
        Change::Disable | Change::Delete => true,
        Change::Groups(new) => !new.contains(group),
    };
    for group in target
        .groups
        .iter()
        .filter(|g| admin_groups.contains(g))
        .filter(|g| leaves(g))
    {
        let others = all
            .iter()
            .any(|u| u.id != target.id && !u.disabled && u.groups.contains(group));
        if !others {
            return Err(Refusal::LastAdmin {
                group: group.clone(),
                doing: change.doing(),
            });
        }
    }
    Ok(())
}

/// `target` as it is in `all` (read under `AppState::admin_changes`), or as it was read
/// before when `all` no longer has it.
pub fn current(target: User, all: &[User]) -> User {
    match all.iter().find(|u| u.id == target.id) {
        Some(now) => now.clone(),
        None => target,
    }
}

/// The groups typed in the edit form: separated by commas or spaces, empty pieces dropped,
/// each once (in the order typed).
pub fn parse_groups(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in text.split(|c: char| c == ',' || c.is_whitespace()) {
        if !g.is_empty() && !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    out
}

/// Whether `typed` confirms deleting `target`: exactly its username (surrounding spaces
/// aside; case counts).
pub fn delete_confirmed(target: &User, typed: &str) -> bool {
    typed.trim() == target.username
}

/// The `doorman integrate` command to show beside a client: its own app when the client id
/// names one `integrate` knows, else the list of apps.
pub fn integrate_hint(client_id: &str) -> String {
    if crate::integrate::APPS.contains(&client_id) {
        format!("doorman integrate {client_id} --client {client_id}")
    } else {
        "doorman integrate list".to_string()
    }
}

/// The start-up line when no enabled user is a member of an admin group (None when one is):
/// how to make the first admin, with the first configured admin group.
pub fn no_admin_yet(users: &[User], admin_groups: &[String]) -> Option<String> {
    if users
        .iter()
        .any(|u| !u.disabled && is_admin(u, admin_groups))
    {
        return None;
    }
    let group = admin_groups.first().map(String::as_str).unwrap_or("admins");
    Some(format!(
        "no admin yet: make one with `doorman user add NAME --groups {group}` or `doorman invite create --groups {group}`"
    ))
}

/// How many sessions the Sessions page shows at most.
pub const SESSIONS_SHOWN: usize = 500;

/// The invite form as typed: groups (commas or spaces), how long it lasts (`7d`, `12h`; empty:
/// the default), uses (empty: 1), email, note. The limits are `links::create_invite`'s.
pub fn invite_form(
    groups: &str,
    expires: &str,
    uses: &str,
    email: &str,
    note: &str,
    created_by: &str,
) -> Result<crate::accounts::links::NewInvite, String> {
    let expires_in = match expires.trim() {
        "" => None,
        text => {
            let secs = crate::config::parse_duration(text)
                .map_err(|m| format!("Expires: {m}"))?
                .as_secs();
            Some(i64::try_from(secs).unwrap_or(i64::MAX))
        }
    };
    let uses = match uses.trim() {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            format!(
                "Uses: a whole number from 1 to {}",
                crate::accounts::links::MAX_USES
            )
        })?),
    };
    let text = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    Ok(crate::accounts::links::NewInvite {
        groups: parse_groups(groups),
        expires_in,
        uses,
        email: text(email),
        note: text(note),
        created_by: created_by.to_string(),
    })
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

    fn last(group: &str, doing: &'static str) -> Result<(), Refusal> {
        Err(Refusal::LastAdmin {
            group: group.into(),
            doing,
        })
    }

    #[test]
    fn the_last_enabled_admin_cannot_be_disabled() {
        let alice = user("1", "alice", &["admins"]);
        let bob = user("2", "bob", &[]);
        let all = vec![alice.clone(), bob.clone()];
        assert_eq!(
            may_change(&alice, Change::Disable, &all, &admins()),
            last("admins", "disabling it")
        );
        assert!(
            may_change(&bob, Change::Disable, &all, &admins()).is_ok(),
            "not an admin"
        );

        // A second enabled admin: either may be disabled.
        let carol = user("3", "carol", &["admins"]);
        let all = vec![alice.clone(), bob.clone(), carol.clone()];
        assert!(may_change(&alice, Change::Disable, &all, &admins()).is_ok());

        // A disabled second admin does not count.
        let mut off = carol;
        off.disabled = true;
        let all = vec![alice.clone(), bob, off.clone()];
        assert!(may_change(&alice, Change::Disable, &all, &admins()).is_err());
        // A disabled admin is no one's last admin.
        assert!(may_change(&off, Change::Disable, &all, &admins()).is_ok());

        // The last member of any one admin group is refused.
        let dave = user("4", "dave", &["admins", "ops"]);
        let all = vec![alice.clone(), dave.clone()];
        assert_eq!(
            may_change(&dave, Change::Disable, &all, &admins()),
            last("ops", "disabling it")
        );
        let text = Refusal::LastAdmin {
            group: "ops".into(),
            doing: "disabling it",
        }
        .to_string();
        assert!(text.contains("last enabled member"), "{text}");
        assert!(text.contains("\"ops\": disabling it would leave"), "{text}");
    }

    #[test]
    fn the_last_enabled_admin_cannot_be_deleted() {
        let alice = user("1", "alice", &["admins"]);
        let bob = user("2", "bob", &["family"]);
        let all = vec![alice.clone(), bob.clone()];
        assert_eq!(
            may_change(&alice, Change::Delete, &all, &admins()),
            last("admins", "deleting it")
        );
        assert!(may_change(&bob, Change::Delete, &all, &admins()).is_ok());
        let carol = user("3", "carol", &["admins"]);
        let all = vec![alice.clone(), bob, carol];
        assert!(may_change(&alice, Change::Delete, &all, &admins()).is_ok());
        // The target itself never counts as the other admin.
        let alone = std::slice::from_ref(&alice);
        assert!(may_change(&alice, Change::Delete, alone, &admins()).is_err());
    }

    #[test]
    fn the_last_enabled_admin_cannot_be_demoted() {
        let alice = user("1", "alice", &["admins", "family"]);
        let bob = user("2", "bob", &["family"]);
        let all = vec![alice.clone(), bob.clone()];
        let groups = |g: &[&str]| -> Vec<String> { g.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            may_change(
                &alice,
                Change::Groups(&groups(&["family"])),
                &all,
                &admins()
            ),
            last("admins", "taking it out of that group")
        );
        assert_eq!(
            may_change(&alice, Change::Groups(&[]), &all, &admins()),
            last("admins", "taking it out of that group")
        );
        // Keeping the admin group, other edits are fine; so is joining one.
        assert!(may_change(
            &alice,
            Change::Groups(&groups(&["admins"])),
            &all,
            &admins()
        )
        .is_ok());
        assert!(may_change(
            &alice,
            Change::Groups(&groups(&["admins", "x"])),
            &all,
            &admins()
        )
        .is_ok());
        assert!(may_change(&bob, Change::Groups(&groups(&["admins"])), &all, &admins()).is_ok());
        assert!(may_change(&bob, Change::Groups(&[]), &all, &admins()).is_ok());
        // A second admin: alice may be demoted.
        let carol = user("3", "carol", &["admins"]);
        let all = vec![alice.clone(), bob, carol];
        assert!(may_change(&alice, Change::Groups(&[]), &all, &admins()).is_ok());
    }

    #[test]
    fn groups_are_split_on_commas_and_spaces() {
        assert_eq!(parse_groups("admins, family"), ["admins", "family"]);
        assert_eq!(parse_groups(" a b,,c\n a "), ["a", "b", "c"]);
        assert!(parse_groups(" , ").is_empty());
    }

    #[test]
    fn deleting_needs_the_exact_username() {
        let bob = user("2", "bob", &[]);
        assert!(delete_confirmed(&bob, "bob"));
        assert!(delete_confirmed(&bob, " bob "));
        assert!(!delete_confirmed(&bob, "Bob"));
        assert!(!delete_confirmed(&bob, ""));
        assert!(!delete_confirmed(&bob, "bo"));
        assert!(!delete_confirmed(&bob, "yes"));
    }

    #[test]
    fn the_integrate_hint_names_a_known_app_or_the_list() {
        assert_eq!(
            integrate_hint("apache"),
            "doorman integrate apache --client apache"
        );
        assert_eq!(integrate_hint("wiki"), "doorman integrate list");
    }

    #[test]
    fn no_admin_yet_says_how_to_make_the_first_with_the_first_admin_group() {
        let ops = vec!["ops".to_string(), "admins".to_string()];
        let line = no_admin_yet(&[], &ops).unwrap();
        assert_eq!(
            line,
            "no admin yet: make one with `doorman user add NAME --groups ops` or `doorman invite create --groups ops`"
        );
        let bob = user("2", "bob", &["family"]);
        assert!(no_admin_yet(std::slice::from_ref(&bob), &ops).is_some());
        let mut alice = user("1", "alice", &["admins"]);
        assert!(no_admin_yet(&[bob.clone(), alice.clone()], &ops).is_none());
        alice.disabled = true;
        assert!(
            no_admin_yet(&[bob, alice], &ops).is_some(),
            "a disabled admin is none"
        );
    }

    #[test]
    fn the_invite_form_is_parsed_like_the_cli() {
        let new = invite_form(
            "family, friends",
            "12h",
            "3",
            " c@example.com ",
            " for carol ",
            "alice",
        )
        .unwrap();
        assert_eq!(new.groups, ["family", "friends"]);
        assert_eq!(new.expires_in, Some(12 * 3600));
        assert_eq!(new.uses, Some(3));
        assert_eq!(new.email.as_deref(), Some("c@example.com"));
        assert_eq!(new.note.as_deref(), Some("for carol"));
        assert_eq!(new.created_by, "alice");
        let defaults = invite_form("", "", "", "", "", "alice").unwrap();
        assert!(defaults.groups.is_empty() && defaults.expires_in.is_none());
        assert!(defaults.uses.is_none() && defaults.email.is_none() && defaults.note.is_none());
        assert!(invite_form("", "soon", "", "", "", "a")
            .unwrap_err()
            .starts_with("Expires:"));
        assert!(invite_form("", "", "many", "", "", "a")
            .unwrap_err()
            .starts_with("Uses:"));
    }
}
