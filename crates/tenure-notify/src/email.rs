//! E-mail over SMTP with `lettre` (tokio, rustls with the ring provider and
//! the system's trusted CAs, like the rest of Tenure).
//!
//! One message per recipient address, so that one bad address fails alone.
//! A permanent SMTP answer (5xx: no such mailbox, relaying denied) is a
//! refusal; no connection, a timeout or a transient 4xx answer is retried.

use crate::NotifyError;
use crate::secret;
use crate::templates::RenderedEmail;
use crate::webhook::Outcome;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use tenure_core::config::{SmtpConfig, SmtpTls};

/// An e-mail as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEmail {
    pub(crate) to: String,
    #[serde(flatten)]
    pub(crate) content: RenderedEmail,
}

/// Sends e-mail through the configured SMTP server.
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl Mailer {
    pub(crate) fn new(cfg: &SmtpConfig, config_dir: &Path) -> Result<Mailer, NotifyError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| NotifyError::Config(format!("[smtp] from = {:?}: {e}", cfg.from)))?;
        let tls = |host: &str| {
            TlsParameters::new_rustls(host.to_owned())
                .map_err(|e| NotifyError::Config(format!("[smtp] TLS for {host}: {e}")))
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
            .port(cfg.port())
            .timeout(Some(Duration::from_secs(cfg.timeout_seconds)));
        b = match cfg.tls {
            SmtpTls::None => b.tls(Tls::None),
            SmtpTls::Starttls => b.tls(Tls::Required(tls(&cfg.host)?)),
            SmtpTls::Tls => b.tls(Tls::Wrapper(tls(&cfg.host)?)),
        };
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            let p = secret::read("[smtp] password", password, config_dir, true)?;
            b = b.credentials(Credentials::new(user.clone(), p.expose().to_owned()));
        }
        Ok(Mailer {
            transport: b.build(),
            from,
            server: format!("{}:{}", cfg.host, cfg.port()),
        })
    }

    pub(crate) async fn send(&self, mail: &StoredEmail, delivery_id: &str) -> Outcome {
        let to: Mailbox = match mail.to.parse() {
            Ok(m) => m,
            Err(e) => return Outcome::Refused(format!("recipient {:?}: {e}", mail.to)),
        };
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.content.subject.clone())
            .message_id(Some(format!("<{delivery_id}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.content.body.clone());
        let message = match message {
            Ok(m) => m,
            Err(e) => return Outcome::Refused(format!("cannot build the message: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Delivered,
            Err(e) if e.is_permanent() => {
                Outcome::Refused(format!("SMTP server {}: {e}", self.server))
            }
            Err(e) => Outcome::Retry(format!("SMTP server {}: {e}", self.server)),
        }
    }
}
