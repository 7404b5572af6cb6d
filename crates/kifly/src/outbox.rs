//! The mail outbox worker: sends what requests queued, after their transactions committed.
//!
//! Requests never talk to the mail server. They insert a row into `outbox` in their own transaction
//! (so a code is mailed if and only if it was stored), and this worker, on every node, claims due rows
//! with a lease, sends them through the configured [`Mailer`], and records the result: sent; a
//! temporary failure retried with exponential backoff (1 s, 2 s, 4 s … up to 10 min, 12 attempts);
//! a permanent failure kept as `failed` for operators (`kifly mail list`). A node that dies mid-send
//! leaves the lease to expire and another node retries, so a mail may (rarely) go out twice but is
//! never lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::app::now_ms;
use crate::config::Config;
use crate::mail::{LogMailer, Mail, MailError, Mailer, SmtpMailer, SmtpSettings, SmtpTls};
use kifly_store::Store;

/// How long a claimed mail is held before another worker may retry it.
const LEASE_MS: i64 = 60_000;
/// Attempts before a mail is given up as failed.
const MAX_ATTEMPTS: i64 = 12;
/// How often the worker looks for due mail when nobody wakes it.
const POLL: Duration = Duration::from_secs(2);

/// Wakes the worker at once after a request queued mail (saves waiting for the next poll).
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The mailer the configuration asks for: SMTP when `smtp_host` is set, else the log.
pub fn mailer_from_config(config: &Config) -> Result<Arc<dyn Mailer>, String> {
    let Some(host) = config.smtp_host.clone() else {
        return Ok(Arc::new(LogMailer));
    };
    let tls = SmtpTls::parse(&config.smtp_tls)
        .ok_or_else(|| format!("smtp_tls = {:?}: expected none, starttls or tls", config.smtp_tls))?;
    let settings = SmtpSettings {
        host,
        port: config.smtp_port,
        tls,
        username: config.smtp_username.clone(),
        password: config.smtp_password.clone(),
        from: config.mail_from.clone(),
        timeout: Duration::from_secs(10),
    };
    Ok(Arc::new(SmtpMailer::new(settings)?))
}

/// How long to wait after the `attempts`-th failure.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs((1u64 << attempts.clamp(0, 10)).min(600))
}

/// Sends one batch of due mail; returns how many were sent.
pub async fn send_due(store: &dyn Store, mailer: &dyn Mailer) -> usize {
    let batch = match store.claim_mail(now_ms(), LEASE_MS, 20).await {
        Ok(batch) => batch,
        Err(e) => {
            tracing::warn!(error = %e, "outbox: could not claim mail");
            return 0;
        }
    };
    let mut sent = 0;
    for item in batch {
        let mail =
            Mail { to: item.recipient.clone(), subject: item.subject.clone(), body: item.body.clone() };
        let (ok, retry_at, error) = match mailer.send(&mail).await {
            Ok(()) => (true, None, None),
            Err(MailError::Temporary(e)) if item.attempts < MAX_ATTEMPTS => {
                let wait = i64::try_from(backoff(item.attempts).as_millis()).unwrap_or(600_000);
                (false, Some(now_ms() + wait), Some(e))
            }
            Err(MailError::Temporary(e) | MailError::Permanent(e)) => (false, None, Some(e)),
        };
        if ok {
            sent += 1;
            metrics::counter!("kifly_mail_sent_total", "mailer" => mailer.kind()).increment(1);
        } else {
            metrics::counter!("kifly_mail_failures_total", "mailer" => mailer.kind()).increment(1);
            tracing::warn!(mail_id = %item.id, attempts = item.attempts, error = error.as_deref().unwrap_or(""),
                retry = retry_at.is_some(), "outbox: mail not sent");
        }
        if let Err(e) = store.finish_mail(&item.id, ok, retry_at, error.as_deref(), now_ms()).await {
            tracing::warn!(mail_id = %item.id, error = %e, "outbox: could not record the attempt; the lease will expire");
        }
    }
    sent
}

/// Runs forever: wakes on [`OutboxSignal::wake`] or every 2 s.
pub async fn run(store: Arc<dyn Store>, mailer: Arc<dyn Mailer>, signal: OutboxSignal) {
    loop {
        while send_due(store.as_ref(), mailer.as_ref()).await > 0 {}
        tokio::select! {
            () = signal.0.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
