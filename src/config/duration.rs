//! Durations are written as strings with units (`"90s"`, `"1h30m"`): a bare number is ambiguous
//! (seconds? minutes?) and is the classic source of "my sessions last 12 seconds" bugs.

use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `"500ms"`, `"90s"`, `"15m"`, `"12h"`, `"30d"` and sums like `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write a number with a unit, e.g. \"90s\"".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{text}\" has no unit; write a unit, e.g. \"90s\" (units: ms, s, m, h, d)"
        ));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, tail) = rest.split_at(digits);
        let letters = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, tail) = tail.split_at(letters);
        if number.is_empty() || unit.is_empty() {
            return Err(format!(
                "\"{text}\" is not a duration; write whole numbers with units, e.g. \
                 \"90s\" or \"1h30m\""
            ));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in \"{text}\"; use ms, s, m, h or d"
            ));
        };
        millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .and_then(|n| n.checked_add(millis))
            .ok_or_else(|| format!("\"{text}\" is too long a duration"))?;
        rest = tail;
    }
    Ok(Duration::from_millis(millis))
}

/// The shortest string `parse_duration` reads back as `d` (to the millisecond): `"1h30m"`.
pub fn format_duration(d: Duration) -> String {
    let mut millis = d.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for &(unit, scale) in UNITS {
        let scale = u128::from(scale);
        if millis >= scale {
            out.push_str(&format!("{}{unit}", millis / scale));
            millis %= scale;
        }
    }
    out
}

/// Same as [`format_duration`].
pub fn duration_to_string(d: Duration) -> String {
    format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(parse_duration("90s"), Ok(s(90)));
        assert_eq!(parse_duration("15m"), Ok(s(900)));
        assert_eq!(parse_duration("12h"), Ok(s(43_200)));
        assert_eq!(parse_duration("30d"), Ok(s(2_592_000)));
        assert_eq!(parse_duration("1h30m"), Ok(s(5_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_bare_numbers_and_garbage() {
        assert!(parse_duration("90")
            .unwrap_err()
            .contains("write a unit, e.g. \"90s\""));
        for bad in [
            "",
            "h",
            "1.5h",
            "1 h",
            "10x",
            "-5s",
            "99999999999999999999d",
            "1h30",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0s", "500ms", "1m30s", "12h", "30d", "1d1h1m1s1ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(duration_to_string(Duration::from_secs(90)), "1m30s");
    }
}
