//! The built-in payment sandbox: provider-compatible fakes of Stripe, Coinbase Commerce and an x402
//! facilitator, served by Kifly itself under `/sandbox/…`.
//!
//! Why it exists: with no provider credentials (and always in `--demo`) the checkout service keeps
//! using the real clients from `kifly-payments`, only pointed here. Every demo and test therefore runs
//! the production code path: form encoding, idempotency keys, error classification, webhook signatures,
//! EIP-712 recovery. The sandbox answers with the very types those clients parse and reuses the
//! crate's signers and verifiers, so it cannot drift from what the clients expect. "Paid" is reached
//! only as in production: through a signed webhook (rails 1 and 2) or a provider answer (rails 3, 4).
//!
//! | module | serves |
//! |---|---|
//! | [`stripe`] | `/sandbox/stripe/v1/…`: Checkout Sessions, PaymentIntents paid with a shared payment token, the SPT test helper |
//! | [`coinbase`] | `/sandbox/coinbase/charges…` |
//! | [`x402`] | `/sandbox/x402/{verify,settle,supported}` |
//! | [`pages`] | `/sandbox/pay/{id}`: hosted pay pages with "Pay" and "Decline" |
//! | [`webhooks`] | signed, retried delivery to `{webhook_base_url}/api/webhooks/{stripe,coinbase}` |
//!
//! State lives in memory, **per process**: nothing survives a restart, and in cluster mode a pay page
//! must be opened on the node that created the session or charge (other nodes answer 404). One mutex
//! guards everything. Each create runs entirely under it, so concurrent requests with one
//! `Idempotency-Key` create exactly one object; nothing awaits while it is held, and webhooks are sent
//! from spawned tasks once it is released.
//!
//! Expiry is lazy: every request first expires the sessions and charges whose time has passed (and
//! queues their webhooks), so there is no background timer to own or to stop. Objects are kept for
//! the life of the process; idempotency keys for 24 hours, as on Stripe.

mod coinbase;
mod pages;
mod stripe;
#[cfg(test)]
mod tests;
mod webhooks;
mod x402;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kifly_payments::stripe::PaymentIntent;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use webhooks::Webhook;

/// Settings of the sandbox.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Secret key the Stripe clients present (HTTP basic user); anything else → Stripe-style 401.
    pub stripe_secret_key: String,
    /// whsec_… used to sign webhooks to {webhook_base_url}/api/webhooks/stripe (Stripe-Signature).
    pub stripe_webhook_secret: String,
    /// Value the Coinbase clients send in X-CC-Api-Key.
    pub coinbase_api_key: String,
    /// Shared secret for X-CC-Webhook-Signature to {webhook_base_url}/api/webhooks/coinbase.
    pub coinbase_webhook_secret: String,
    /// Where webhooks are POSTed, e.g. "http://127.0.0.1:8080" (no trailing slash). Empty: none sent.
    pub webhook_base_url: String,
    /// Base of hosted pay page URLs handed to buyers: "{public_base_url}/sandbox/pay/{id}".
    pub public_base_url: String,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("webhook_base_url", &self.webhook_base_url)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

impl SandboxConfig {
    /// The hosted pay page of a session id or charge code.
    fn pay_url(&self, id: &str) -> String {
        format!("{}/sandbox/pay/{id}", self.public_base_url.trim_end_matches('/'))
    }
}

/// The sandbox: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    ledger: Mutex<Ledger>,
    /// `None` only if the HTTP client could not be built; webhooks are then skipped (and logged).
    http: Option<reqwest::Client>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox with empty state.
    pub fn new(config: SandboxConfig) -> Sandbox {
        let http = webhooks::client()
            .map_err(|error| tracing::error!(%error, "sandbox: no HTTP client, webhooks disabled"))
            .ok();
        Sandbox { inner: Arc::new(Inner { config, ledger: Mutex::new(Ledger::default()), http }) }
    }

    /// All routes, with full paths starting at /sandbox/…, state already applied.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sandbox/stripe/v1/checkout/sessions", post(stripe::create_session))
            .route("/sandbox/stripe/v1/checkout/sessions/{id}", get(stripe::get_session))
            .route("/sandbox/stripe/v1/checkout/sessions/{id}/expire", post(stripe::expire_session))
            .route("/sandbox/stripe/v1/payment_intents", post(stripe::create_intent))
            .route("/sandbox/stripe/v1/payment_intents/{id}", get(stripe::get_intent))
            .route("/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens", post(stripe::grant_token))
            .route("/sandbox/coinbase/charges", post(coinbase::create_charge))
            .route("/sandbox/coinbase/charges/{id}", get(coinbase::get_charge))
            .route("/sandbox/x402/verify", post(x402::verify))
            .route("/sandbox/x402/settle", post(x402::settle))
            .route("/sandbox/x402/supported", get(x402::supported))
            .route("/sandbox/pay/{id}", get(pages::show))
            .route("/sandbox/pay/{id}/pay", post(pages::pay))
            .route("/sandbox/pay/{id}/decline", post(pages::decline))
            .with_state(self.clone())
    }

    fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Runs `f` on the ledger after expiring what is due; webhooks queued by either are sent once the
    /// lock is released.
    fn with_ledger<R>(&self, f: impl FnOnce(&mut Ledger, &mut Vec<Webhook>) -> R) -> R {
        let mut events = Vec::new();
        let result = {
            let mut ledger = self.inner.ledger.lock().unwrap_or_else(PoisonError::into_inner);
            ledger.sweep(now_unix(), &mut events);
            f(&mut ledger, &mut events)
        };
        for event in events {
            webhooks::dispatch(self.inner.http.as_ref(), &self.inner.config, event);
        }
        result
    }

    /// An idempotent POST, Stripe style: a known key with the same parameters replays the stored
    /// answer (`Idempotent-Replayed: true`); with other parameters it is refused; an unknown key runs
    /// `create` under the ledger lock and stores its answer, errors included, so a retry never changes
    /// the outcome. Without a key, `create` simply runs.
    fn idempotent(
        &self,
        api: Api,
        headers: &HeaderMap,
        fingerprint: [u8; 32],
        create: impl FnOnce(&mut Ledger, &mut Vec<Webhook>) -> Reply,
    ) -> Response {
        let key = match idempotency_key(headers) {
            Ok(key) => key,
            Err(message) => return api.error(StatusCode::BAD_REQUEST, "invalid_request_error", &message),
        };
        let outcome = self.with_ledger(|ledger, events| {
            let Some(key) = key else { return Ok((create(ledger, events), false)) };
            let slot = (api, key);
            if let Some(stored) = ledger.idempotency.get(&slot) {
                if stored.fingerprint != fingerprint {
                    return Err(());
                }
                return Ok((stored.reply.clone(), true));
            }
            let reply = create(ledger, events);
            ledger
                .idempotency
                .insert(slot, Stored { fingerprint, reply: reply.clone(), created: now_unix() });
            Ok((reply, false))
        });
        match outcome {
            Ok((reply, replayed)) => reply.into_response(replayed),
            Err(()) => api.error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ),
        }
    }
}

/// Which provider API a request belongs to: idempotency keys are scoped per API, and errors take
/// that provider's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Api {
    Stripe,
    Coinbase,
}

impl Api {
    fn error(self, status: StatusCode, kind: &str, message: &str) -> Response {
        let body = match self {
            Api::Stripe => stripe::error_body(kind, None, message, None),
            Api::Coinbase => json!({"error": {"type": kind, "message": message}}),
        };
        Reply { status, body }.into_response(false)
    }
}

/// A provider answer: status plus JSON body.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body }
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if replayed {
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

struct Stored {
    fingerprint: [u8; 32],
    reply: Reply,
    created: i64,
}

/// Stripe keeps idempotency keys for 24 hours; so does the sandbox.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;

/// Everything the sandbox remembers.
#[derive(Default)]
struct Ledger {
    sessions: HashMap<String, stripe::SessionRecord>,
    intents: HashMap<String, PaymentIntent>,
    tokens: HashMap<String, stripe::TokenRecord>,
    /// By charge code; `charge_codes` maps the UUID id to the code.
    charges: HashMap<String, coinbase::ChargeRecord>,
    charge_codes: HashMap<String, String>,
    /// x402 `payer:nonce` pairs already settled.
    settled_nonces: HashSet<String>,
    idempotency: HashMap<(Api, String), Stored>,
}

impl Ledger {
    fn sweep(&mut self, now: i64, events: &mut Vec<Webhook>) {
        for record in self.sessions.values_mut() {
            events.extend(record.expire_if_due(now));
        }
        for record in self.charges.values_mut() {
            events.extend(record.expire_if_due(now));
        }
        self.idempotency.retain(|_, stored| now - stored.created < IDEMPOTENCY_TTL_SECONDS);
    }
}

/// The `Idempotency-Key` header: `Ok(None)` when absent, an error message when unusable.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("Idempotency-Key must be 1-255 printable ASCII characters.".into());
    }
    Ok(Some(key.to_string()))
}

/// What identifies "the same request" for idempotency: the path and the canonical parameters.
fn fingerprint(path: &str, canonical_body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(canonical_body);
    hasher.finalize().into()
}

/// `object` serialized, plus the fields of `extra`: provider fields the client types leave out.
fn json_with(object: &impl Serialize, extra: Value) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or_else(|_| json!({}));
    if let (Some(map), Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    value
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `prefix` followed by `len` random alphanumerics (`cs_test_…`, `pi_test_…`).
fn random_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{tail}")
}

/// A random UUID v4 (Coinbase charge and event ids).
fn uuid() -> String {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}
