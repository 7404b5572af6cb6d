//! Webhook delivery to our own endpoints, signed as the providers sign them:
//! `{webhook_base_url}/api/webhooks/stripe` with `Stripe-Signature` (a fresh timestamp on every
//! attempt, as Stripe does, so a retry is not refused as stale) and `/api/webhooks/coinbase` with
//! `X-CC-Webhook-Signature`. The body, and so the event id, is fixed across retries: the receiver
//! de-duplicates on it.
//!
//! Each event is sent from its own task: at most [`ATTEMPTS`] tries, [`TIMEOUT`] each, backing off
//! between them, on transport errors and non-2xx answers. Delivery is at least once and unordered
//! between events, as with the real providers. Giving up is logged, never surfaced to the caller of
//! the sandbox API.

use std::time::Duration;

use kifly_payments::{coinbase, stripe};
use serde_json::Value;

use super::{SandboxConfig, now_unix, random_id, rfc3339, uuid};

const ATTEMPTS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_secs(2)];

/// An event to send.
pub(super) enum Webhook {
    /// `object` is the Stripe object (`data.object`).
    Stripe {
        event_type: &'static str,
        object: Value,
    },
    Coinbase {
        event_type: &'static str,
        charge: coinbase::Charge,
    },
}

pub(super) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("kifly-sandbox/", env!("CARGO_PKG_VERSION")))
        .build()
}

struct Delivery {
    url: String,
    event_id: String,
    event_type: &'static str,
    body: Vec<u8>,
    signature: Signature,
}

enum Signature {
    /// Signed per attempt with this secret.
    Stripe(String),
    /// Coinbase signs the body only, so once is enough.
    Coinbase(String),
}

impl Delivery {
    fn signature_header(&self) -> (&'static str, String) {
        match &self.signature {
            Signature::Stripe(secret) => {
                (stripe::SIGNATURE_HEADER, stripe::sign_webhook(&self.body, secret, now_unix()))
            }
            Signature::Coinbase(signature) => (coinbase::SIGNATURE_HEADER, signature.clone()),
        }
    }

    async fn run(self, http: reqwest::Client) {
        for attempt in 1..=ATTEMPTS {
            let (name, value) = self.signature_header();
            let sent = http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(name, value)
                .body(self.body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(event_id = %self.event_id, event_type = self.event_type, "sandbox webhook delivered");
                    return;
                }
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(error) => error.to_string(),
            };
            tracing::warn!(event_id = %self.event_id, event_type = self.event_type, attempt, %failure, url = %self.url,
                "sandbox webhook not accepted");
            if let Some(delay) = BACKOFF.get(attempt - 1) {
                tokio::time::sleep(*delay).await;
            }
        }
        tracing::error!(event_id = %self.event_id, event_type = self.event_type, "sandbox webhook given up");
    }
}

/// Builds, signs and sends `webhook` in the background. A no-op when `webhook_base_url` is empty.
pub(super) fn dispatch(http: Option<&reqwest::Client>, config: &SandboxConfig, webhook: Webhook) {
    let base = config.webhook_base_url.trim_end_matches('/');
    let Some(http) = http.filter(|_| !base.is_empty()) else { return };
    let now = now_unix();
    let built = match webhook {
        Webhook::Stripe { event_type, object } => {
            let event_id = random_id("evt_test_", 24);
            stripe::event_body(&event_id, event_type, now, &object).map(|body| Delivery {
                url: format!("{base}/api/webhooks/stripe"),
                event_id,
                event_type,
                body,
                signature: Signature::Stripe(config.stripe_webhook_secret.clone()),
            })
        }
        Webhook::Coinbase { event_type, charge } => {
            let event_id = uuid();
            coinbase::event_body(&uuid(), &event_id, event_type, &rfc3339(now), &charge).map(|body| {
                Delivery {
                    url: format!("{base}/api/webhooks/coinbase"),
                    signature: Signature::Coinbase(coinbase::sign_webhook(
                        &body,
                        &config.coinbase_webhook_secret,
                    )),
                    event_id,
                    event_type,
                    body,
                }
            })
        }
    };
    let delivery = match built {
        Ok(delivery) => delivery,
        Err(error) => return tracing::error!(%error, "sandbox webhook body not serializable"),
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(delivery.run(http.clone()))),
        Err(_) => tracing::error!(event_id = %delivery.event_id, "sandbox webhook dropped: no async runtime"),
    }
}
