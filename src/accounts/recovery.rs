//! Recovery codes: ten single-use codes shown once at enrolment, each standing in for an
//! authenticator code. Only their SHA-256 digests are kept (they are random, so a fast hash is
//! enough, as for every other secret doorman hands out). No storage and no HTTP here.

use rand::Rng;

use crate::secrets;
use crate::store::Hash;

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters in a code, not counting the dash.
const LENGTH: usize = 10;
/// Lower-case letters and digits without the look-alikes 0/o, 1/l/i: 31 symbols, so a code
/// holds 10 x log2(31) = 49.5 bits.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A new set of [`COUNT`] distinct codes from the OS RNG, each `abcde-fghij`.
pub fn generate() -> Vec<String> {
    let mut rng = rand::rng();
    let mut codes: Vec<String> = Vec::with_capacity(COUNT);
    while codes.len() < COUNT {
        let mut code = String::with_capacity(LENGTH + 1);
        for i in 0..LENGTH {
            if i == LENGTH / 2 {
                code.push('-');
            }
            if let Some(&c) = ALPHABET.get(rng.random_range(0..ALPHABET.len())) {
                code.push(char::from(c));
            }
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The canonical form of a typed code: lower case, without spaces and dashes (so `ABCDE FGHIJ`,
/// `abcdefghij` and `abcde-fghij` are one code). None unless it then has a code's length and
/// alphabet. Hash this, both when storing a new set and when checking a typed code.
pub fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(code)
}

/// The stored digest of a [`normalise`]d code.
pub fn hash(normalised: &str) -> Hash {
    secrets::digest(normalised)
}

/// The body of the "download as text" file: a header line, then one code per line.
pub fn as_text(codes: &[String]) -> String {
    let mut text = String::from(
        "doorman recovery codes: each one signs you in once in place of an authenticator code\n",
    );
    for code in codes {
        text.push_str(code);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_distinct_codes_of_the_documented_form() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-', "{code}");
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b)),
                "{code}"
            );
            assert!(!code.contains(['0', 'o', '1', 'l', 'i']), "{code}");
            assert_eq!(
                normalise(code).as_deref(),
                Some(code.replace('-', "").as_str())
            );
        }
        assert_ne!(generate(), codes);
        // At least 48 bits each.
        assert!((LENGTH as f64) * (ALPHABET.len() as f64).log2() >= 48.0);
        assert_eq!(ALPHABET.len(), 31);
    }

    #[test]
    fn typed_codes_normalise_to_one_form() {
        for typed in [
            "abcde-fghjk",
            "ABCDE-FGHJK",
            "abcdefghjk",
            "abcde fghjk",
            " AbCdE - fGhJk ",
            "ab-cd-ef-gh-jk",
        ] {
            assert_eq!(normalise(typed).as_deref(), Some("abcdefghjk"), "{typed:?}");
        }
        assert_eq!(hash(&normalise("ABCDE FGHJK").unwrap()), hash("abcdefghjk"));
        assert_ne!(hash("abcdefghjk"), hash("abcdefghjm"));
    }

    #[test]
    fn junk_is_refused() {
        for junk in [
            "",
            "-----",
            "abcde-fghj",
            "abcde-fghjkm",
            "abcde-fghi0",
            "abcde-fghjl",
            "abcde_fghjk",
            "abcde-fghjé",
            "123456",
            "abcde-fghjk-x",
        ] {
            assert_eq!(normalise(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_text_file_has_a_header_and_one_code_per_line() {
        let codes = generate();
        let text = as_text(&codes);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("doorman"));
        assert_eq!(lines.collect::<Vec<_>>(), codes);
        assert!(text.ends_with('\n'));
    }
}
