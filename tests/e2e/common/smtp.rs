//! A small SMTP sink for the tests: plain TCP on 127.0.0.1 (a free port), EHLO/HELO, MAIL,
//! RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT; every accepted message is kept. doorman talks
//! to it with `tls = "none"`.

use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message as sent (headers and body), dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Received {
    /// A header's value (the first one named `name`, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = out.as_mut() {
                    v.push_str(line.trim_start());
                    continue;
                }
            }
            if out.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    out = Some(v.trim().to_string());
                }
            }
        }
        out
    }

    /// The body, decoded (quoted-printable or base64, as the header says).
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        match self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "quoted-printable" => quoted_printable(raw),
            "base64" => {
                let joined: String = raw.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .expect("base64 body");
                String::from_utf8(bytes).expect("utf-8 body")
            }
            _ => raw.to_string(),
        }
        .replace("\r\n", "\n")
    }

    /// The first link in the body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> String {
        let body = self.body();
        let at = body
            .find(prefix)
            .unwrap_or_else(|| panic!("no link starting with {prefix} in:\n{body}"));
        body[at..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

fn quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 body")
}

/// The running sink.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = SmtpSink {
            port,
            messages: Arc::new(Mutex::new(Vec::new())),
            arrived: Arc::new(Notify::new()),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(conn).await;
                });
            }
        });
        sink
    }

    /// The `[smtp]` table that sends doorman's mail here.
    pub fn toml(&self) -> String {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"doorman <sso@example.com>\"\ntimeout = \"5s\"\n",
            self.port
        )
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived (at most 20 s) and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let notified = self.arrived.notified();
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{} of {n} mails arrived: {got:?}", got.len());
            }
        }
    }

    async fn serve(&self, conn: tokio::net::TcpStream) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut lines = BufReader::new(r);
        w.write_all(b"220 sink.test ESMTP test sink\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let verb = cmd
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                "HELO" => b"250 sink.test\r\n",
                "MAIL" => {
                    from = address(&cmd);
                    to.clear();
                    b"250 OK\r\n"
                }
                "RCPT" => {
                    to.push(address(&cmd));
                    b"250 OK\r\n"
                }
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").await?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                        let l = line.strip_prefix('.').unwrap_or(&line);
                        data.push_str(l);
                    }
                    self.messages.lock().unwrap().push(Received {
                        from: from.clone(),
                        to: std::mem::take(&mut to),
                        data,
                    });
                    self.arrived.notify_waiters();
                    b"250 OK queued\r\n"
                }
                "RSET" => {
                    from.clear();
                    to.clear();
                    b"250 OK\r\n"
                }
                "NOOP" => b"250 OK\r\n",
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"502 not implemented\r\n",
            };
            w.write_all(reply).await?;
        }
    }
}

/// The address of `MAIL FROM:<a>` / `RCPT TO:<a>`.
fn address(cmd: &str) -> String {
    let start = cmd.find('<').map(|i| i + 1).unwrap_or(0);
    let end = cmd[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(cmd.len());
    cmd[start..end].to_string()
}
