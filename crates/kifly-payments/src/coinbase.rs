//! Coinbase Commerce (rail 2): create a hosted charge, read it back, and verify `X-CC-Webhook-Signature`.
//!
//! The API is JSON with an API key header (`X-CC-Api-Key`) and a pinned `X-CC-Version`. Prices are sent
//! as a decimal string in the local currency (`"12.34"` `USD`), converted from cents exactly.
//!
//! Commerce documents no idempotency header; this client still sends `Idempotency-Key` (ignored by
//! Commerce, honoured by the sandbox and fakes), and the caller must store the charge code before it
//! answers, so a retry finds the existing charge instead of creating a second one.
//!
//! Webhooks carry `X-CC-Webhook-Signature` = hex HMAC-SHA256 of the raw body under the endpoint's shared
//! secret. There is no timestamp, so replays are stopped only by de-duplicating on the event id, which
//! [`CoinbaseEvent::id`] is for. Commerce retries deliveries for days, so duplicates are normal.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::encoding::{constant_time_eq, hmac_sha256};
use crate::error::{ConfigError, Idempotent, ProviderError};
use crate::http::{self, Timeouts};

/// Production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.commerce.coinbase.com";

/// The pinned `X-CC-Version`.
pub const API_VERSION: &str = "2018-03-22";

/// The webhook signature header.
pub const SIGNATURE_HEADER: &str = "X-CC-Webhook-Signature";

/// Coinbase Commerce client settings.
#[derive(Debug, Clone)]
pub struct CoinbaseConfig {
    /// `https://api.commerce.coinbase.com`, the sandbox (`…/sandbox/coinbase`) or a fake.
    pub base_url: String,
    /// The API key (`X-CC-Api-Key`).
    pub api_key: Secret,
    /// Per-request timeouts.
    pub timeouts: Timeouts,
}

impl CoinbaseConfig {
    /// Production defaults for `api_key`.
    pub fn new(api_key: impl Into<Secret>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: api_key.into(),
            timeouts: Timeouts::default(),
        }
    }

    /// Same settings against another base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Same settings with other timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// A price in Commerce's shape: decimal string plus upper-case currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// `"12.34"`.
    pub amount: String,
    /// `"USD"`.
    pub currency: String,
}

impl Money {
    /// Converts cents to Commerce's decimal string exactly (`1234` → `"12.34"`).
    pub fn from_cents(cents: i64, currency: &str) -> Self {
        Self { amount: kifly_core::money::cents_to_decimal(cents), currency: currency.to_ascii_uppercase() }
    }

    /// Back to cents, when the amount has at most two decimals.
    pub fn to_cents(&self) -> Option<i64> {
        let (negative, digits) = match self.amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.amount.as_str()),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || fraction.len() > 2
            || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let cents = whole
            .parse::<i64>()
            .ok()?
            .checked_mul(100)?
            .checked_add(format!("{fraction:0<2}").parse::<i64>().ok()?)?;
        Some(if negative { -cents } else { cents })
    }
}

/// Parameters of `POST /charges` (fixed price).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCharge {
    /// Shown on the hosted page (e.g. the seller name).
    pub name: String,
    /// Shown on the hosted page (e.g. the items).
    pub description: String,
    /// Total in cents.
    pub amount_cents: i64,
    /// ISO currency (`usd`).
    pub currency: String,
    /// Links the charge back to the order.
    pub metadata: BTreeMap<String, String>,
    /// Where the buyer goes after paying.
    pub redirect_url: Option<String>,
    /// Where the buyer goes after cancelling.
    pub cancel_url: Option<String>,
}

#[derive(Serialize)]
struct CreateChargeBody<'a> {
    name: &'a str,
    description: &'a str,
    pricing_type: &'static str,
    local_price: Money,
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_url: Option<&'a str>,
}

/// One entry of a charge's status history (`NEW`, `SIGNED`, `PENDING`, `COMPLETED`, `EXPIRED`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Upper-case status.
    pub status: String,
    /// RFC 3339 time.
    #[serde(default)]
    pub time: Option<String>,
    /// Extra context (`UNDERPAID`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// The local price block of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    /// The price in the merchant's currency.
    pub local: Money,
}

/// A Commerce charge (the fields Kifly uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// UUID.
    pub id: String,
    /// Short code used in the hosted URL.
    pub code: String,
    /// The hosted payment page.
    pub hosted_url: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Local price.
    #[serde(default)]
    pub pricing: Option<Pricing>,
    /// Status history, oldest first.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// Metadata we attached.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Charge {
    /// The latest timeline status, if any.
    pub fn latest_status(&self) -> Option<&str> {
        self.timeline.last().map(|entry| entry.status.as_str())
    }
}

#[derive(Deserialize, Serialize)]
struct DataEnvelope<T> {
    data: T,
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The Coinbase Commerce API client.
#[derive(Debug, Clone)]
pub struct CoinbaseClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
}

impl CoinbaseClient {
    /// Builds a client; fails only on a malformed base URL or TLS setup.
    pub fn new(config: CoinbaseConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            http: http::build_client(config.timeouts)?,
            base_url: http::normalize_base_url(&config.base_url)?,
            api_key: config.api_key,
        })
    }

    /// `POST /charges`: a hosted crypto payment page for an order.
    pub async fn create_charge(
        &self,
        request: &CreateCharge,
        idempotency_key: &str,
    ) -> Result<Idempotent<Charge>, ProviderError> {
        let key = http::check_idempotency_key(idempotency_key)?;
        let body = CreateChargeBody {
            name: &request.name,
            description: &request.description,
            pricing_type: "fixed_price",
            local_price: Money::from_cents(request.amount_cents, &request.currency),
            metadata: &request.metadata,
            redirect_url: request.redirect_url.as_deref(),
            cancel_url: request.cancel_url.as_deref(),
        };
        let builder =
            self.request(reqwest::Method::POST, "/charges").header("Idempotency-Key", key).json(&body);
        self.send(builder).await
    }

    /// `GET /charges/{code or id}`: the current state, to recover after a lost webhook.
    pub async fn retrieve_charge(&self, code_or_id: &str) -> Result<Charge, ProviderError> {
        let path = format!("/charges/{}", http::check_path_id(code_or_id)?);
        Ok(self.send(self.request(reqwest::Method::GET, &path)).await?.value)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header("X-CC-Api-Key", self.api_key.expose())
            .header("X-CC-Version", API_VERSION)
            .header(reqwest::header::ACCEPT, "application/json")
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Idempotent<Charge>, ProviderError> {
        let response = builder.send().await.map_err(|error| http::transport_error("coinbase", &error))?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let retry_after_seconds = http::retry_after_seconds(response.headers());
        let body = response.bytes().await.map_err(|error| http::transport_error("coinbase", &error))?;
        if status.is_success() {
            return serde_json::from_slice::<DataEnvelope<Charge>>(&body)
                .map(|envelope| Idempotent { value: envelope.data, replayed })
                .map_err(|_| ProviderError::unavailable(format!("coinbase: unreadable {status} response")));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ProviderError::Unavailable {
                reason: format!("coinbase: HTTP {}", status.as_u16()),
                retry_after_seconds,
            });
        }
        let detail = serde_json::from_slice::<ErrorEnvelope>(&body).unwrap_or_default().error;
        Err(ProviderError::InvalidRequest {
            status: status.as_u16(),
            code: detail.kind,
            message: detail.message.unwrap_or_else(|| format!("HTTP {status}")),
            param: None,
        })
    }
}

/// Why a Commerce webhook was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinbaseWebhookError {
    /// The signature header is not hex, or does not match the body.
    #[error("webhook signature does not match the payload")]
    SignatureMismatch,
    /// The body is not a Commerce webhook.
    #[error("payload is not a Coinbase Commerce event: {0}")]
    InvalidPayload(String),
}

/// Verifies `X-CC-Webhook-Signature` (hex HMAC-SHA256 of the raw body) in constant time.
pub fn verify_signature(
    payload: &[u8],
    signature_header: &str,
    shared_secret: &str,
) -> Result<(), CoinbaseWebhookError> {
    let given = hex::decode(signature_header.trim()).map_err(|_| CoinbaseWebhookError::SignatureMismatch)?;
    if constant_time_eq(&given, &hmac_sha256(shared_secret.as_bytes(), payload)) {
        Ok(())
    } else {
        Err(CoinbaseWebhookError::SignatureMismatch)
    }
}

/// The `X-CC-Webhook-Signature` value for `payload` (used by the sandbox and tests).
pub fn sign_webhook(payload: &[u8], shared_secret: &str) -> String {
    hex::encode(hmac_sha256(shared_secret.as_bytes(), payload))
}

/// The event types checkout reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoinbaseEventKind {
    /// `charge:created`.
    Created,
    /// `charge:pending`: seen on chain, not yet confirmed.
    Pending,
    /// `charge:confirmed`: paid.
    Confirmed,
    /// `charge:failed`: expired unpaid or underpaid.
    Failed,
    /// `charge:delayed`: paid after expiry.
    Delayed,
    /// `charge:resolved`: a problem charge the merchant marked as paid.
    Resolved,
    /// `charge:expired` (sent by older accounts and by the sandbox).
    Expired,
    /// Anything else.
    Other(String),
}

impl CoinbaseEventKind {
    fn from_type(event_type: &str) -> Self {
        match event_type {
            "charge:created" => Self::Created,
            "charge:pending" => Self::Pending,
            "charge:confirmed" => Self::Confirmed,
            "charge:failed" => Self::Failed,
            "charge:delayed" => Self::Delayed,
            "charge:resolved" => Self::Resolved,
            "charge:expired" => Self::Expired,
            other => Self::Other(other.to_string()),
        }
    }

    /// True when the event means the order is paid (`confirmed` or `resolved`).
    pub fn is_paid(&self) -> bool {
        matches!(self, Self::Confirmed | Self::Resolved)
    }
}

/// A verified Commerce webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseEvent {
    /// The event id: the de-duplication key.
    pub id: String,
    /// e.g. `charge:confirmed`.
    pub event_type: String,
    /// Typed `event_type`.
    pub kind: CoinbaseEventKind,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// The charge the event is about.
    pub charge: Charge,
}

#[derive(Deserialize, Serialize)]
struct WebhookBody {
    #[serde(default)]
    id: Option<String>,
    event: WebhookEvent,
}

#[derive(Deserialize, Serialize)]
struct WebhookEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    data: Charge,
}

/// Parses a webhook body (verify it first, or use [`construct_event`]).
pub fn parse_event(payload: &[u8]) -> Result<CoinbaseEvent, CoinbaseWebhookError> {
    let body: WebhookBody = serde_json::from_slice(payload)
        .map_err(|error| CoinbaseWebhookError::InvalidPayload(error.to_string()))?;
    let event = body.event;
    Ok(CoinbaseEvent {
        kind: CoinbaseEventKind::from_type(&event.event_type),
        id: event.id,
        event_type: event.event_type,
        created_at: event.created_at,
        charge: event.data,
    })
}

/// Verifies the signature, then parses the event.
pub fn construct_event(
    payload: &[u8],
    signature_header: &str,
    shared_secret: &str,
) -> Result<CoinbaseEvent, CoinbaseWebhookError> {
    verify_signature(payload, signature_header, shared_secret)?;
    parse_event(payload)
}

/// Builds a webhook body in Commerce's shape (for the sandbox and tests).
pub fn event_body(
    delivery_id: &str,
    event_id: &str,
    event_type: &str,
    created_at: &str,
    charge: &Charge,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&WebhookBody {
        id: Some(delivery_id.to_string()),
        event: WebhookEvent {
            id: event_id.to_string(),
            event_type: event_type.to_string(),
            created_at: Some(created_at.to_string()),
            api_version: Some(API_VERSION.to_string()),
            data: charge.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_converts_cents_exactly() {
        assert_eq!(Money::from_cents(1234, "usd"), Money { amount: "12.34".into(), currency: "USD".into() });
        assert_eq!(Money::from_cents(5, "usd").amount, "0.05");
        assert_eq!(Money::from_cents(100_000, "usd").amount, "1000.00");
        assert_eq!(Money { amount: "12.3".into(), currency: "USD".into() }.to_cents(), Some(1230));
        assert_eq!(Money { amount: "12".into(), currency: "USD".into() }.to_cents(), Some(1200));
        assert_eq!(Money { amount: "1.234".into(), currency: "USD".into() }.to_cents(), None);
        assert_eq!(Money { amount: "x".into(), currency: "USD".into() }.to_cents(), None);
    }

    #[test]
    fn webhook_signature_matches_an_openssl_vector() {
        // printf '{"event":1}' | openssl dgst -sha256 -hmac 'cc_secret'
        assert_eq!(
            sign_webhook(br#"{"event":1}"#, "cc_secret"),
            "e9f52e76378ddafe42996572b8d08ddc167eb1e1039f9bd0463290f76d85db2a"
        );
    }

    #[test]
    fn webhooks_verify_and_parse() {
        let charge = Charge {
            id: "b7e1".into(),
            code: "ABCD1234".into(),
            hosted_url: "https://commerce.coinbase.com/pay/ABCD1234".into(),
            created_at: None,
            expires_at: None,
            pricing: Some(Pricing { local: Money::from_cents(2500, "usd") }),
            timeline: vec![TimelineEntry { status: "COMPLETED".into(), time: None, context: None }],
            metadata: BTreeMap::from([("order_id".into(), "ord_7".into())]),
        };
        let body = event_body("d1", "evt_1", "charge:confirmed", "2026-01-01T00:00:00Z", &charge).unwrap();
        let signature = sign_webhook(&body, "secret");
        let event = construct_event(&body, &signature, "secret").unwrap();
        assert_eq!(event.id, "evt_1");
        assert!(event.kind.is_paid());
        assert_eq!(event.charge, charge);
        assert_eq!(event.charge.latest_status(), Some("COMPLETED"));
        assert_eq!(construct_event(&body, &signature, "other"), Err(CoinbaseWebhookError::SignatureMismatch));
        assert_eq!(construct_event(&body, "zz", "secret"), Err(CoinbaseWebhookError::SignatureMismatch));
        let mut tampered = body.clone();
        let at = tampered.iter().position(|&b| b == b'7').unwrap();
        tampered[at] = b'8';
        assert_eq!(
            construct_event(&tampered, &signature, "secret"),
            Err(CoinbaseWebhookError::SignatureMismatch)
        );
    }
}
