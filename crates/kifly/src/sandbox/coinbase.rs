//! Coinbase-Commerce-compatible subset under `/sandbox/coinbase/…`: `POST /charges` (fixed price) and
//! `GET /charges/{code or id}`, JSON with `X-CC-Api-Key` and `X-CC-Version`, answers wrapped in
//! `{"data": …}`. Commerce documents no idempotency header; the sandbox honours `Idempotency-Key`
//! anyway (the client sends one), exactly like the Stripe subset.
//!
//! A charge starts with timeline `NEW` and expires after an hour. On the pay page, Pay appends
//! `COMPLETED` and sends `charge:confirmed`; Decline appends `CANCELED` and sends `charge:failed`, as
//! does expiry (timeline `EXPIRED`), which is what Commerce sends for a charge that ended unpaid.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kifly_payments::coinbase::{Charge, Money, Pricing, TimelineEntry};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::pages::{Outcome, PageView};
use super::webhooks::Webhook;
use super::{
    Api, Ledger, Reply, Sandbox, SandboxConfig, fingerprint, json_with, now_unix, random_id, rfc3339, uuid,
};

const LIFETIME_SECONDS: i64 = 3600;

pub(super) struct ChargeRecord {
    charge: Charge,
    name: String,
    description: String,
    redirect_url: Option<String>,
    cancel_url: Option<String>,
    amount_cents: i64,
    expires_at: i64,
}

#[derive(Deserialize)]
struct NewCharge {
    name: String,
    #[serde(default)]
    description: String,
    pricing_type: String,
    local_price: Option<Money>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    redirect_url: Option<String>,
    cancel_url: Option<String>,
}

impl ChargeRecord {
    fn to_json(&self) -> Value {
        let extra = json!({"resource": "charge", "name": self.name, "description": self.description,
                           "pricing_type": "fixed_price", "redirect_url": self.redirect_url,
                           "cancel_url": self.cancel_url});
        json_with(&self.charge, extra)
    }

    fn status(&self) -> &str {
        self.charge.latest_status().unwrap_or("NEW")
    }

    fn push(&mut self, status: &str, now: i64) {
        self.charge.timeline.push(TimelineEntry {
            status: status.into(),
            time: Some(rfc3339(now)),
            context: None,
        });
    }

    pub(super) fn expire_if_due(&mut self, now: i64) -> Option<Webhook> {
        if self.status() != "NEW" || now < self.expires_at {
            return None;
        }
        self.push("EXPIRED", now);
        Some(Webhook::Coinbase { event_type: "charge:failed", charge: self.charge.clone() })
    }

    pub(super) fn view(&self) -> PageView {
        let item = if self.description.is_empty() { &self.name } else { &self.description };
        PageView {
            provider: "Coinbase Commerce (sandbox)",
            title: self.name.clone(),
            lines: vec![(item.clone(), 1, self.amount_cents)],
            amount_cents: self.amount_cents,
            currency: self.charge.pricing.as_ref().map(|p| p.local.currency.clone()).unwrap_or_default(),
            status: self.status().to_ascii_lowercase(),
            payable: self.status() == "NEW",
        }
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    Reply { status, body: json!({"error": {"type": kind, "message": message}}) }
}

fn invalid(message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// The refusal to answer when the caller's key or `X-CC-Version` is missing or wrong.
fn refusal(config: &SandboxConfig, headers: &HeaderMap) -> Option<Response> {
    let key = headers.get("x-cc-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let refused = if key.is_empty() || !bool::from(key.as_bytes().ct_eq(config.coinbase_api_key.as_bytes())) {
        error(StatusCode::UNAUTHORIZED, "authorization_error", "No such API key.")
    } else if !headers.contains_key("x-cc-version") {
        invalid("Missing X-CC-Version header.")
    } else {
        return None;
    };
    Some(refused.into_response(false))
}

pub(super) async fn create_charge(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers) {
        return denied;
    }
    sandbox.idempotent(Api::Coinbase, &headers, fingerprint("/charges", &body), |ledger, _| {
        new_charge(ledger, &body, sandbox.config(), now_unix()).unwrap_or_else(|error| error)
    })
}

fn new_charge(ledger: &mut Ledger, body: &[u8], config: &SandboxConfig, now: i64) -> Result<Reply, Reply> {
    let request: NewCharge =
        serde_json::from_slice(body).map_err(|error| invalid(&format!("Invalid charge: {error}")))?;
    if request.pricing_type != "fixed_price" {
        return Err(invalid("The sandbox supports pricing_type fixed_price only."));
    }
    let price = request.local_price.ok_or_else(|| invalid("local_price is required."))?;
    let amount_cents = price
        .to_cents()
        .filter(|cents| *cents > 0)
        .ok_or_else(|| invalid("local_price.amount must be positive, with at most two decimals."))?;
    if price.currency.len() != 3 || !price.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid("local_price.currency must be an ISO currency code."));
    }
    if request.name.trim().is_empty() || request.name.chars().count() > 100 {
        return Err(invalid("name must be 1-100 characters."));
    }
    let code = random_id("", 8).to_ascii_uppercase();
    let id = uuid();
    let mut record = ChargeRecord {
        charge: Charge {
            hosted_url: config.pay_url(&code),
            id: id.clone(),
            code: code.clone(),
            created_at: Some(rfc3339(now)),
            expires_at: Some(rfc3339(now + LIFETIME_SECONDS)),
            pricing: Some(Pricing { local: Money::from_cents(amount_cents, &price.currency) }),
            timeline: Vec::new(),
            metadata: request.metadata,
        },
        name: request.name,
        description: request.description,
        redirect_url: request.redirect_url,
        cancel_url: request.cancel_url,
        amount_cents,
        expires_at: now + LIFETIME_SECONDS,
    };
    record.push("NEW", now);
    let reply = Reply::ok(json!({ "data": record.to_json() }));
    ledger.charge_codes.insert(id, code.clone());
    ledger.charges.insert(code, record);
    Ok(reply)
}

pub(super) async fn get_charge(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers) {
        return denied;
    }
    sandbox
        .with_ledger(|ledger, _| {
            let code = ledger.charge_codes.get(&id).unwrap_or(&id);
            match ledger.charges.get(code) {
                Some(record) => Reply::ok(json!({ "data": record.to_json() })),
                None => error(StatusCode::NOT_FOUND, "not_found", "Not found"),
            }
        })
        .into_response(false)
}

/// The buyer pressed Pay (`paid`) or Decline on the pay page of charge `code`.
pub(super) fn settle_charge(
    ledger: &mut Ledger,
    events: &mut Vec<Webhook>,
    code: &str,
    paid: bool,
    now: i64,
) -> Outcome {
    let Some(record) = ledger.charges.get_mut(code) else { return Outcome::NotFound };
    if record.status() != "NEW" {
        return Outcome::NotPayable(record.status().to_ascii_lowercase());
    }
    let (status, event_type, redirect) = if paid {
        ("COMPLETED", "charge:confirmed", record.redirect_url.clone())
    } else {
        ("CANCELED", "charge:failed", record.cancel_url.clone())
    };
    record.push(status, now);
    events.push(Webhook::Coinbase { event_type, charge: record.charge.clone() });
    Outcome::Done { paid, redirect }
}
