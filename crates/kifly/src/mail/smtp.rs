//! [`SmtpMailer`]: mail over SMTP with lettre, async on tokio, TLS by rustls (the aws-lc-rs provider and
//! the platform certificate verifier, as the HTTP clients use).
//!
//! Timeouts: `SmtpSettings::timeout` bounds one whole send (connect, TLS, AUTH and the transaction),
//! not only the connect, since lettre's own timeout covers the connect alone and a server that accepts
//! the connection and then says nothing would otherwise hold a send for ever. A send cut short may
//! leave a pooled connection in the middle of a transaction, so a timeout also discards the pool: the
//! next send starts from fresh connections (the old pool closes its own once nothing uses it).

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Mail, MailError, Mailer};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text all along (a relay on localhost or a private network).
    None,
    /// Plain connect, then STARTTLS, which is required: a server that does not offer it is an error.
    StartTls,
    /// TLS from the first byte ("SMTPS", implicit TLS).
    Tls,
}

impl SmtpTls {
    /// `"none"`, `"starttls"` or `"tls"` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    /// The usual port for this mode: 25 (relay), 587 (submission) or 465 (submissions).
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how to send mail over SMTP.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// AUTH (PLAIN or LOGIN, whichever the server offers) when set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender: `"Kifly <no-reply@example.com>"` or a bare address.
    pub from: String,
    /// The most one send may take, end to end.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Connections kept open between sends; mail here is a trickle of one-time codes.
const POOL_MAX_SIZE: u32 = 4;
/// How long an unused connection stays open (servers drop idle clients after a few minutes).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends mail through one SMTP server. Built once; keeps a small pool of connections that later sends
/// reuse. The pool is created on the first send (it runs a tokio task, so it needs the runtime), which
/// lets `new` be called anywhere.
pub struct SmtpMailer {
    from: Mailbox,
    /// `host:port` for messages.
    server: String,
    tls: SmtpTls,
    timeout: Duration,
    builder: AsyncSmtpTransportBuilder,
    transport: Mutex<Option<Transport>>,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Checks the settings (sender address, credentials, TLS set-up); connects only when sending.
    pub fn new(settings: SmtpSettings) -> Result<SmtpMailer, String> {
        let host = settings.host.trim();
        if host.is_empty() {
            return Err("smtp host is empty".into());
        }
        if settings.port == 0 {
            return Err("smtp port must not be 0".into());
        }
        if settings.timeout.is_zero() {
            return Err("smtp timeout must be more than 0".into());
        }
        let from: Mailbox = settings
            .from
            .trim()
            .parse()
            .map_err(|e| format!("smtp sender {:?} is not a mail address: {e}", settings.from))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Tls => {
                let params = TlsParameters::new(host.to_string())
                    .map_err(|e| format!("smtp TLS set-up for {host}: {e}"))?;
                if settings.tls == SmtpTls::StartTls { Tls::Required(params) } else { Tls::Wrapper(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .pool_config(PoolConfig::new().max_size(POOL_MAX_SIZE).idle_timeout(POOL_IDLE_TIMEOUT));
        match (settings.username, settings.password) {
            (Some(user), password) => {
                builder = builder.credentials(Credentials::new(user, password.unwrap_or_default()));
            }
            (None, Some(_)) => return Err("smtp password is set without a username".into()),
            (None, None) => {}
        }
        Ok(SmtpMailer {
            from,
            server: format!("{host}:{}", settings.port),
            tls: settings.tls,
            timeout: settings.timeout,
            builder,
            transport: Mutex::new(None),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Transport>> {
        // Nothing panics while holding the lock; should it, the slot is still a valid Option.
        self.transport.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current transport (a cheap handle on the shared pool), built on first use.
    fn transport(&self) -> Transport {
        self.slot().get_or_insert_with(|| self.builder.clone().build()).clone()
    }

    /// Drops the current pool; the next send builds a new one.
    fn discard_pool(&self) {
        self.slot().take();
    }

    fn message(&self, mail: &Mail) -> Result<Message, MailError> {
        let to: Mailbox = mail.to.trim().parse().map_err(|e| {
            MailError::Permanent(format!("recipient {:?} is not a mail address: {e}", mail.to))
        })?;
        // A subject is one header line; fold any line breaks rather than fail on them.
        let subject: String =
            mail.subject.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))
    }
}

/// 5xx replies and mails lettre refuses to send as they are (e.g. a non-ASCII address to a server
/// without SMTPUTF8, no AUTH mechanism in common) are permanent; everything on the way there (refused
/// or dropped connections, TLS, unreadable replies, 4xx replies) is temporary.
fn classify(server: &str, e: &lettre::transport::smtp::Error) -> MailError {
    let text = format!("smtp {server}: {e}");
    if e.is_permanent() || e.is_client() { MailError::Permanent(text) } else { MailError::Temporary(text) }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.message(mail)?;
        let transport = self.transport();
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(classify(&self.server, &e)),
            Err(_elapsed) => {
                self.discard_pool();
                Err(MailError::Temporary(format!(
                    "smtp {}: no complete answer within {:?}",
                    self.server, self.timeout
                )))
            }
        }
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::mail::smtpd::{ServerTls, Smtpd};

    fn settings(port: u16) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Kifly <no-reply@kifly.test>".into(),
            timeout: Duration::from_secs(10),
        }
    }

    fn code_mail(to: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "Tu código de Kifly".into(),
            body: "Código: 123456\nCaduca en 10 minutos.\n".into(),
        }
    }

    /// A loopback port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("local addr").port()
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!(SmtpTls::parse("none"), Some(SmtpTls::None));
        assert_eq!(SmtpTls::parse("starttls"), Some(SmtpTls::StartTls));
        assert_eq!(SmtpTls::parse(" TLS "), Some(SmtpTls::Tls));
        assert_eq!(SmtpTls::parse("ssl"), None);
        assert_eq!(SmtpTls::parse(""), None);
        for t in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
            assert_eq!(SmtpTls::parse(&t.to_string()), Some(t));
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let s = SmtpSettings {
            username: Some("mailer".into()),
            password: Some("hunter2-secret".into()),
            ..settings(25)
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let mailer = SmtpMailer::new(s).expect("valid settings");
        let shown = format!("{mailer:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }

    #[test]
    fn settings_are_checked() {
        let bad = |s: SmtpSettings| SmtpMailer::new(s).expect_err("rejected");
        assert!(bad(SmtpSettings { from: "not an address".into(), ..settings(25) }).contains("sender"));
        assert!(bad(SmtpSettings { host: " ".into(), ..settings(25) }).contains("host"));
        assert!(bad(SmtpSettings { timeout: Duration::ZERO, ..settings(25) }).contains("timeout"));
        assert!(bad(SmtpSettings { password: Some("x".into()), ..settings(25) }).contains("username"));
        // TLS modes build their rustls configuration up front.
        for tls in [SmtpTls::StartTls, SmtpTls::Tls] {
            SmtpMailer::new(SmtpSettings { host: "smtp.example.com".into(), tls, ..settings(587) })
                .expect("TLS settings");
        }
        SmtpMailer::new(SmtpSettings { from: "no-reply@kifly.test".into(), ..settings(25) })
            .expect("bare from");
    }

    #[tokio::test]
    async fn a_bad_recipient_is_permanent() {
        // Refused before any connection: the port is closed, yet the answer is Permanent.
        let mailer = SmtpMailer::new(settings(closed_port())).expect("mailer");
        let err = mailer.send(&code_mail("not an address")).await.expect_err("refused");
        assert!(matches!(err, MailError::Permanent(_)), "{err:?}");
    }

    #[tokio::test]
    async fn server_down_is_temporary() {
        let timeout = Duration::from_secs(2);
        let mailer = SmtpMailer::new(SmtpSettings { timeout, ..settings(closed_port()) }).expect("mailer");
        let started = Instant::now();
        let err = mailer.send(&code_mail("ada@example.com")).await.expect_err("nothing listens");
        assert!(matches!(err, MailError::Temporary(_)), "{err:?}");
        assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_temporary() {
        // Accepts connections (the kernel completes the handshake) but never sends its greeting.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let timeout = Duration::from_millis(500);
        let mailer = SmtpMailer::new(SmtpSettings { timeout, ..settings(port) }).expect("mailer");
        for _ in 0..2 {
            let started = Instant::now();
            let err = mailer.send(&code_mail("ada@example.com")).await.expect_err("no greeting");
            assert!(matches!(err, MailError::Temporary(_)), "{err:?}");
            let took = started.elapsed();
            assert!(took >= timeout && took < timeout + Duration::from_secs(2), "took {took:?}");
        }
        drop(listener);
    }

    #[tokio::test]
    #[ignore = "needs aiosmtpd: KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)"]
    async fn delivers_over_smtp() {
        let smtpd = Smtpd::start().await;
        let mailer = SmtpMailer::new(settings(smtpd.port())).expect("mailer");
        assert_eq!(mailer.kind(), "smtp");
        mailer.send(&code_mail("Ada Lovelace <ada@example.com>")).await.expect("delivered");
        // A second mail goes over the pooled connection.
        let second = Mail { to: "grace@example.com".into(), subject: "Second".into(), body: "Two".into() };
        mailer.send(&second).await.expect("delivered");

        let mut got = smtpd.messages();
        got.sort_by(|a, b| a.subject.cmp(&b.subject));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].to, "Ada Lovelace <ada@example.com>");
        assert_eq!(got[1].rcpt_to, "ada@example.com");
        assert_eq!(got[1].from, "Kifly <no-reply@kifly.test>");
        assert_eq!(got[1].mail_from, "no-reply@kifly.test");
        assert_eq!(got[1].subject, "Tu código de Kifly");
        assert_eq!(got[1].content_type, "text/plain");
        // lettre ends the DATA with CRLF "." CRLF after the body's own last line break, so the stored
        // body gains one empty line at the end; compare the text without trailing line breaks.
        assert_eq!(got[1].body.trim_end_matches('\n'), "Código: 123456\nCaduca en 10 minutos.");
        assert_eq!(got[0].to, "grace@example.com");
        assert_eq!(got[0].subject, "Second");
        assert_eq!(got[0].body.trim_end(), "Two");
    }

    #[tokio::test]
    #[ignore = "needs aiosmtpd: KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)"]
    async fn authenticates_when_the_server_requires_it() {
        let smtpd = Smtpd::start_with_auth("mailer", "s3cret pass").await;
        let with = |user: Option<&str>, password: Option<&str>| {
            SmtpMailer::new(SmtpSettings {
                username: user.map(Into::into),
                password: password.map(Into::into),
                ..settings(smtpd.port())
            })
            .expect("mailer")
        };

        with(Some("mailer"), Some("s3cret pass")).send(&code_mail("ada@example.com")).await.expect("sent");
        let got = smtpd.messages();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].rcpt_to, "ada@example.com");

        // A wrong password: 535, permanent.
        let err =
            with(Some("mailer"), Some("wrong")).send(&code_mail("ada@example.com")).await.expect_err("535");
        assert!(matches!(err, MailError::Permanent(ref m) if m.contains("535")), "{err:?}");
        // No credentials: 530 authentication required, permanent.
        let err = with(None, None).send(&code_mail("ada@example.com")).await.expect_err("530");
        assert!(matches!(err, MailError::Permanent(ref m) if m.contains("530")), "{err:?}");
        assert_eq!(smtpd.messages().len(), 1);
    }

    #[tokio::test]
    #[ignore = "needs aiosmtpd: KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)"]
    async fn starttls_is_required_when_configured() {
        // A server that offers no STARTTLS: the mail is not sent in clear.
        let smtpd = Smtpd::start().await;
        let mailer = SmtpMailer::new(SmtpSettings { tls: SmtpTls::StartTls, ..settings(smtpd.port()) })
            .expect("mailer");
        let err = mailer.send(&code_mail("ada@example.com")).await.expect_err("no STARTTLS");
        assert!(matches!(err, MailError::Permanent(ref m) if m.contains("STARTTLS")), "{err:?}");
        assert!(smtpd.messages().is_empty());
    }

    #[tokio::test]
    #[ignore = "needs aiosmtpd: KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)"]
    async fn tls_checks_the_server_certificate() {
        // Real TLS handshakes (rustls, aws-lc-rs) against servers with a self-signed certificate: the
        // platform verifier refuses it, so nothing is sent. Temporary: fixing the server's certificate
        // or the trust store makes the same mail go through.
        for (server, client) in
            [(ServerTls::StartTls, SmtpTls::StartTls), (ServerTls::Implicit, SmtpTls::Tls)]
        {
            let smtpd = Smtpd::start_tls(server).await;
            let mailer =
                SmtpMailer::new(SmtpSettings { tls: client, ..settings(smtpd.port()) }).expect("mailer");
            let err = mailer.send(&code_mail("ada@example.com")).await.expect_err("untrusted certificate");
            assert!(
                matches!(err, MailError::Temporary(ref m) if m.contains("certificate")),
                "{client}: {err:?}"
            );
            assert!(smtpd.messages().is_empty());
        }
    }
}
