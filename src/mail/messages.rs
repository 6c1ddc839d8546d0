//! The plain-text mails doorman sends: an invite, a password reset, an email confirmation.
//! Each has a subject, a greeting, the link on a line of its own, how long it works, and what
//! to do if it was not asked for. Plain functions: no templates, no HTML.

/// A mail's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub subject: String,
    pub body: String,
}

/// How long `seconds` is, in words ("24 hours", "7 days", "30 minutes").
pub fn lasts(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if seconds >= 2 * 86_400 && seconds % 86_400 == 0 {
        plural(seconds / 86_400, "day")
    } else if seconds >= 3600 && seconds % 3600 == 0 {
        plural(seconds / 3600, "hour")
    } else {
        plural((seconds / 60).max(1), "minute")
    }
}

/// The site's name in mails: the issuer's host.
pub fn site(issuer: &str) -> String {
    url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| issuer.to_string())
}

/// An invite to make an account on `site`.
pub fn invite(site: &str, link: &str, lifetime: i64, uses: i64) -> Text {
    let once = if uses == 1 {
        "It works once"
    } else {
        "It works a limited number of times"
    };
    Text {
        subject: format!("You are invited to {site}"),
        body: format!(
            "Hello,\n\n\
             you are invited to make an account on {site}. Open this link to pick a username and a password:\n\n\
             {link}\n\n\
             {once}, for {lasts}.\n\n\
             If you did not expect this invite, ignore this mail: no account is made without the link.\n",
            lasts = lasts(lifetime),
        ),
    }
}

/// A password-reset link for `username`.
pub fn reset(site: &str, username: &str, link: &str, lifetime: i64) -> Text {
    Text {
        subject: format!("Reset your password on {site}"),
        body: format!(
            "Hello {username},\n\n\
             someone (hopefully you) asked to reset the password of your account on {site}. Open this link to choose a new password:\n\n\
             {link}\n\n\
             It works once, for {lasts}. Changing the password signs you out everywhere.\n\n\
             If this was not you, ignore this mail: your password stays as it is.\n",
            lasts = lasts(lifetime),
        ),
    }
}

/// A link confirming that `email` belongs to `username`.
pub fn confirm_email(site: &str, username: &str, email: &str, link: &str, lifetime: i64) -> Text {
    Text {
        subject: format!("Confirm your email address on {site}"),
        body: format!(
            "Hello {username},\n\n\
             the email address of your account on {site} was changed to {email}. Open this link to confirm it is yours:\n\n\
             {link}\n\n\
             It works once, for {lasts}.\n\n\
             If this was not you, ignore this mail: the address stays unconfirmed.\n",
            lasts = lasts(lifetime),
        ),
    }
}

/// A notice that a passkey named `name` was added to `username`'s account: a way in that
/// outlives a password change, so its owner hears of it.
pub fn passkey_added(site: &str, username: &str, name: &str, account_url: &str) -> Text {
    Text {
        subject: format!("A passkey was added to your account on {site}"),
        body: format!(
            "Hello {username},\n\n\
             a passkey named \"{name}\" was just added to your account on {site}. It signs in with or without your password.\n\n\
             If this was you, there is nothing to do. If it was not, open your account page, remove the passkey and change your password:\n\n\
             {account_url}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passkey_notice_names_the_key_and_where_to_remove_it() {
        let t = passkey_added(
            "auth.example.com",
            "alice",
            "Phone",
            "https://auth.example.com/account#passkeys",
        );
        assert!(t.subject.contains("passkey was added"));
        assert!(
            t.body.contains("\"Phone\"")
                && t.body.contains("https://auth.example.com/account#passkeys")
        );
        assert!(t.body.contains("Hello alice"));
    }

    const LINK: &str = "https://id.example.com/reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn has_link_line(body: &str) -> bool {
        body.lines().any(|l| l == LINK)
    }

    #[test]
    fn lifetimes_read_as_words() {
        assert_eq!(lasts(86_400), "24 hours");
        assert_eq!(lasts(7 * 86_400), "7 days");
        assert_eq!(lasts(3600), "1 hour");
        assert_eq!(lasts(1800), "30 minutes");
        assert_eq!(lasts(5), "1 minute");
        assert_eq!(site("https://id.example.com/auth"), "id.example.com");
    }

    #[test]
    fn a_reset_mail_greets_links_says_how_long_and_what_if_not_you() {
        let t = reset("id.example.com", "carol", LINK, 86_400);
        assert_eq!(t.subject, "Reset your password on id.example.com");
        assert!(t.body.starts_with("Hello carol,"), "{}", t.body);
        assert!(has_link_line(&t.body), "{}", t.body);
        assert!(t.body.contains("for 24 hours"), "{}", t.body);
        assert!(t.body.contains("If this was not you, ignore this mail"));
    }

    #[test]
    fn an_invite_mail_and_a_confirmation_mail() {
        let t = invite("id.example.com", LINK, 7 * 86_400, 1);
        assert_eq!(t.subject, "You are invited to id.example.com");
        assert!(t.body.starts_with("Hello,"));
        assert!(has_link_line(&t.body), "{}", t.body);
        assert!(t.body.contains("It works once, for 7 days."), "{}", t.body);
        assert!(t.body.contains("ignore this mail"));

        let t = confirm_email("id.example.com", "carol", "c@example.org", LINK, 86_400);
        assert_eq!(t.subject, "Confirm your email address on id.example.com");
        assert!(t.body.starts_with("Hello carol,"));
        assert!(t.body.contains("changed to c@example.org"));
        assert!(has_link_line(&t.body), "{}", t.body);
        assert!(t.body.contains("for 24 hours"));
        assert!(t.body.contains("If this was not you, ignore this mail"));
    }
}
