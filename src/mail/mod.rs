//! Outgoing mail over SMTP (`[smtp]`): the [`Mailer`] (lettre's async SMTP transport, rustls on
//! aws-lc-rs), the plain-text mails doorman sends (`messages.rs`), and the [`Outbox`] request
//! handlers send through: a bounded queue drained by one background task, so a slow or dead
//! mail server never holds a request, and a full queue drops the mail with a warning instead of
//! growing without end. No HTTP here.

pub mod messages;

use std::sync::Arc;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;

use crate::config::{SmtpConfig, SmtpTls};

/// Mails waiting for the background task; more are dropped (with a warning).
pub const OUTBOX_CAPACITY: usize = 64;

/// One plain-text mail to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// What it is, for the log ("invite", "reset", "confirm_email"); never the link.
    pub what: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient or sender is no mailbox.
    #[error("{0}")]
    Address(String),
    /// Connecting, TLS, signing in or the server's answer.
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// Sends mail through the `[smtp]` server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for messages.
    server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `config`; `hello` is the name doorman gives itself in EHLO (the issuer's
    /// host). STARTTLS is required (never skipped) with `tls = "starttls"`.
    pub fn new(config: &SmtpConfig, hello: &str) -> Result<Mailer, MailError> {
        let smtp = |e: lettre::transport::smtp::Error| MailError::Smtp(e.to_string());
        let builder = match config.tls {
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host).map_err(smtp)?
            }
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).map_err(smtp)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        };
        let mut builder = builder
            .port(config.port)
            .timeout(Some(config.timeout))
            .hello_name(ClientId::Domain(hello.to_string()));
        if let (Some(user), Some(pass)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| MailError::Address(format!("smtp.from {:?}: {e}", config.from)))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: format!("{}:{}", config.host, config.port),
        })
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends `mail` now, waiting for the server's answer.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| MailError::Address(format!("{:?} is no mail address: {e}", mail.to)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Address(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Smtp(format!("{}: {e}", self.server)))
    }
}

/// The queue request handlers send mail through (see the module doc).
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Mail>,
    mailer: Arc<Mailer>,
}

impl Outbox {
    /// Starts the background task that sends the queued mail one by one (on the current tokio
    /// runtime); it ends when every `Outbox` clone is gone.
    pub fn start(mailer: Mailer, capacity: usize) -> Outbox {
        let (tx, mut rx) = mpsc::channel::<Mail>(capacity.max(1));
        let mailer = Arc::new(mailer);
        let sender = Arc::clone(&mailer);
        tokio::spawn(async move {
            while let Some(mail) = rx.recv().await {
                match sender.send(&mail).await {
                    Ok(()) => tracing::info!(mail = mail.what, "mail sent"),
                    Err(e) => {
                        tracing::warn!(mail = mail.what, error = %e, "a mail could not be sent")
                    }
                }
            }
        });
        Outbox { tx, mailer }
    }

    /// Queues `mail` without waiting: false (and a warning) when the queue is full.
    pub fn queue(&self, mail: Mail) -> bool {
        let what = mail.what;
        match self.tx.try_send(mail) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    mail = what,
                    capacity = OUTBOX_CAPACITY,
                    "the mail queue is full: a mail was dropped (is the SMTP server slow or down?)"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(mail = what, "the mail queue is closed: a mail was dropped");
                false
            }
        }
    }

    /// The mailer behind the queue, for a caller that must wait for the answer.
    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "doorman <sso@example.com>".into(),
            timeout: Duration::from_secs(60),
        }
    }

    fn mail(n: usize) -> Mail {
        Mail {
            to: format!("user{n}@example.com"),
            subject: "s".into(),
            body: "b".into(),
            what: "test",
        }
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_mail_instead_of_waiting_or_growing() {
        // A server that accepts the connection and never greets: the sending task hangs on
        // the first mail.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let outbox = Outbox::start(Mailer::new(&config(port), "id.example").unwrap(), 1);
        // At most one mail in the task and one in the queue; the third cannot fit.
        let accepted: Vec<bool> = (0..3).map(|n| outbox.queue(mail(n))).collect();
        assert!(accepted[0], "{accepted:?}");
        assert!(!accepted[2], "{accepted:?}");
        assert_eq!(outbox.mailer().server(), format!("127.0.0.1:{port}"));
        drop(silent);
    }

    #[test]
    fn starttls_and_tls_transports_build_with_rustls_on_aws_lc() {
        for tls in [SmtpTls::StartTls, SmtpTls::Tls] {
            let mut c = config(tls.default_port());
            c.host = "smtp.example.com".into();
            c.tls = tls;
            c.username = Some("sso".into());
            c.password = Some("secret".into());
            let m = Mailer::new(&c, "id.example").unwrap();
            assert_eq!(
                m.server(),
                format!("smtp.example.com:{}", tls.default_port())
            );
        }
    }

    #[test]
    fn a_bad_sender_or_recipient_is_an_address_error() {
        let mut c = config(25);
        c.from = "not a mailbox".into();
        assert!(matches!(
            Mailer::new(&c, "id.example"),
            Err(MailError::Address(_))
        ));
    }
}
