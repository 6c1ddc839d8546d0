//! The text log format's field formatter: like tracing-subscriber's default (`message` first,
//! then `name=value`), but every value has its control characters escaped (`\n`, `\r`, `\t`,
//! `\u{1b}`, ...), so a value that came from a request (a username, a Plex name) cannot end a
//! line and forge another one, nor drive the terminal. The JSON format escapes on its own.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// The field formatter for `--log-format text`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{}", Escaped(&text))
        } else {
            write!(self.writer, "{sep}{name}={}", Escaped(&text))
        };
    }
}

/// Writes a string with every control character escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                // Line and paragraph separators end lines in some viewers.
                '\u{2028}' | '\u{2029}' => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_cannot_forge_a_line() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let evil = "x\n2026-01-01T00:00:00Z  INFO audit: event=\"sign_in\" user=admin outcome=\"success\"\u{1b}[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "audit", event = "sign_in", user = %evil, name = evil, outcome = "failure", "seen {}", evil);
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("user=x\\n2026"), "{out}");
        assert!(out.contains("\\u{1b}[2J"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(out.contains("outcome=\"failure\""), "{out}");
    }
}
