//! Outgoing mail (SPEC §11): buyer one-time codes and other notices, as plain text.
//!
//! Mail is split in two halves. The durable half is the outbox, a table written in the same database
//! transaction as the change that calls for the mail (a registration, a code request); it lives with
//! the store. This module is the other half, the [`Mailer`] that actually hands a message over, used
//! by whatever drains the outbox.
//!
//! Why the split: talking to an SMTP server takes a network round trip of unknown length and can fail
//! for reasons that have nothing to do with the request (the relay is down, greylisting, a timeout).
//! Sending from inside a request's transaction would hold the transaction open across that wait and
//! tie the request's outcome to the relay's. Instead the request only records the mail; sending
//! happens afterwards, outside any request transaction. A [`MailError::Temporary`] failure leaves the
//! mail in the outbox to be retried later; a [`MailError::Permanent`] one will fail the same way
//! again, so retrying it is pointless. Delivery is at least once: a send that timed out after the
//! server had accepted the message is retried and may arrive twice, which is harmless for codes.
//!
//! Two mailers: [`SmtpMailer`] when SMTP is configured (lettre over tokio, rustls for TLS, one
//! connection pool reused across sends), and the embedded default [`LogMailer`], which writes each
//! mail to the log so an operator of a demo can read the codes there.

mod smtp;
#[cfg(test)]
mod smtpd;

pub use smtp::{SmtpMailer, SmtpSettings, SmtpTls};

/// One outgoing mail: a single recipient, a subject and a plain-text (UTF-8) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// A bare address (`ada@example.com`) or a name and address (`Ada <ada@example.com>`).
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a mail was not sent, and whether trying again later may help.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth retrying later (connection refused/timeout, 4xx SMTP reply).
    #[error("temporary mail failure: {0}")]
    Temporary(String),
    /// Will not succeed as is (5xx reply, bad address).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

impl MailError {
    /// Whether the outbox should keep the mail and try again later.
    pub fn is_temporary(&self) -> bool {
        matches!(self, MailError::Temporary(_))
    }
}

/// Hands one mail over for delivery. Implementations are cheap to share (`Arc<dyn Mailer>`).
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `mail`; `Ok` means the next hop (the SMTP server, or the log) accepted it.
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
    /// "smtp" or "log", for logs/metrics.
    fn kind(&self) -> &'static str;
}

/// The embedded default: logs each mail (recipient, subject and body at info level, so an operator of
/// a demo sees one-time codes) and reports success. The durable outbox table is the other half.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMailer;

#[async_trait::async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        tracing::info!(
            to = %mail.to,
            subject = %mail.subject,
            body = %mail.body,
            "mail logged, not sent (no SMTP server configured)"
        );
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn log_mailer_reports_success() {
        let mail = Mail {
            to: "ada@example.com".into(),
            subject: "Your Kifly code".into(),
            body: "Código: 123456".into(),
        };
        let mailer: std::sync::Arc<dyn Mailer> = std::sync::Arc::new(LogMailer);
        mailer.send(&mail).await.expect("the log mailer never fails");
        assert_eq!(mailer.kind(), "log");
    }

    #[test]
    fn errors_say_whether_to_retry() {
        assert!(MailError::Temporary("x".into()).is_temporary());
        assert!(!MailError::Permanent("x".into()).is_temporary());
        assert_eq!(MailError::Permanent("550 no".into()).to_string(), "permanent mail failure: 550 no");
    }
}
