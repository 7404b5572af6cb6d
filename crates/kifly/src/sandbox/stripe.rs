//! Stripe-compatible subset under `/sandbox/stripe/v1/…`: form-encoded requests, JSON answers in
//! Stripe's shapes, Stripe's error envelope, `livemode: false` everywhere.
//!
//! Outcomes follow Stripe's test payment methods, carried by the shared payment token: `pm_card_visa`
//! (and any method not listed in [`decline_for`]) succeeds, `pm_card_chargeDeclined` and its siblings
//! decline with Stripe's codes. Checkout Sessions are paid or declined by the buyer on the pay page.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use kifly_payments::stripe::{
    CheckoutPaymentStatus, CheckoutSession, CheckoutSessionStatus, Form, GrantTestToken, PaymentError,
    PaymentIntent, PaymentIntentStatus, SharedPaymentGrantedToken, SptParameter, UsageLimits,
};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::pages::{Outcome, PageView};
use super::webhooks::Webhook;
use super::{Api, Ledger, Reply, Sandbox, SandboxConfig, fingerprint, json_with, now_unix, random_id};

/// Stripe accepts `expires_at` 30 minutes to 24 hours ahead; a minute of slack absorbs clock skew.
const MIN_LIFETIME: i64 = 30 * 60 - 60;
const MAX_LIFETIME: i64 = 24 * 3600 + 60;
const MAX_LINE_ITEMS: usize = 100;

pub(super) struct SessionRecord {
    pub(super) session: CheckoutSession,
    /// `(name, quantity, unit amount)`.
    lines: Vec<(String, i64, i64)>,
    success_url: Option<String>,
    cancel_url: Option<String>,
    /// `payment_intent_data[metadata]`, given to the PaymentIntent created when the buyer pays.
    intent_metadata: BTreeMap<String, String>,
}

pub(super) struct TokenRecord {
    limits: UsageLimits,
    payment_method: String,
    /// The PaymentIntent that spent the token: a token pays once.
    spent_by: Option<String>,
}

impl SessionRecord {
    fn to_json(&self) -> Value {
        let extra = json!({"object": "checkout.session", "mode": "payment",
                           "success_url": self.success_url, "cancel_url": self.cancel_url});
        json_with(&self.session, extra)
    }

    fn status(&self) -> &'static str {
        match self.session.status {
            Some(CheckoutSessionStatus::Open) => "open",
            Some(CheckoutSessionStatus::Complete) => "complete",
            Some(CheckoutSessionStatus::Expired) => "expired",
            _ => "unknown",
        }
    }

    fn is_open(&self) -> bool {
        self.session.status == Some(CheckoutSessionStatus::Open)
    }

    fn expire(&mut self) -> Webhook {
        self.session.status = Some(CheckoutSessionStatus::Expired);
        self.session.url = None;
        Webhook::Stripe { event_type: "checkout.session.expired", object: self.to_json() }
    }

    pub(super) fn expire_if_due(&mut self, now: i64) -> Option<Webhook> {
        (self.is_open() && now >= self.session.expires_at).then(|| self.expire())
    }

    pub(super) fn view(&self) -> PageView {
        PageView {
            provider: "Stripe Checkout (sandbox)",
            title: "Checkout".into(),
            lines: self.lines.clone(),
            amount_cents: self.session.amount_total.unwrap_or_default(),
            currency: self.session.currency.clone().unwrap_or_default(),
            status: self.status().into(),
            payable: self.is_open(),
        }
    }
}

fn intent_json(intent: &PaymentIntent) -> Value {
    json_with(intent, json!({"object": "payment_intent"}))
}

/// A PaymentIntent confirmed now: succeeded, or declined as `decline` says.
fn confirmed_intent(
    amount: i64,
    currency: String,
    metadata: BTreeMap<String, String>,
    decline: Option<Decline>,
    now: i64,
) -> PaymentIntent {
    let (status, last_payment_error, latest_charge) = match decline {
        None => (PaymentIntentStatus::Succeeded, None, Some(random_id("ch_test_", 24))),
        Some((code, decline_code, message)) => {
            let error = PaymentError {
                code: Some(code.into()),
                decline_code: decline_code.map(Into::into),
                message: Some(message.into()),
            };
            (PaymentIntentStatus::RequiresPaymentMethod, Some(error), None)
        }
    };
    PaymentIntent {
        id: random_id("pi_test_", 24),
        amount,
        currency,
        status,
        metadata,
        livemode: false,
        created: now,
        last_payment_error,
        latest_charge,
    }
}

// ---------------------------------------------------------------------------------------------------
// Errors and form fields.

/// Stripe's error envelope.
pub(super) fn error_body(kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json!({ "error": error })
}

fn invalid(code: Option<&str>, param: Option<&str>, message: impl AsRef<str>) -> Reply {
    Reply {
        status: StatusCode::BAD_REQUEST,
        body: error_body("invalid_request_error", code, message.as_ref(), param),
    }
}

fn missing(param: &str) -> Reply {
    invalid(Some("parameter_missing"), Some(param), format!("Missing required param: {param}."))
}

fn not_found(object: &str, id: &str) -> Reply {
    Reply {
        status: StatusCode::NOT_FOUND,
        body: error_body(
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {object}: '{id}'"),
            Some("id"),
        ),
    }
}

fn merge(result: Result<Reply, Reply>) -> Reply {
    result.unwrap_or_else(|error| error)
}

fn required<'a>(form: &'a Form, key: &str) -> Result<&'a str, Reply> {
    form.get(key).filter(|value| !value.is_empty()).ok_or_else(|| missing(key))
}

fn integer(form: &Form, key: &str) -> Result<Option<i64>, Reply> {
    form.get(key)
        .map(|value| {
            value.parse().map_err(|_| {
                invalid(Some("parameter_invalid_integer"), Some(key), format!("Invalid integer: {value}"))
            })
        })
        .transpose()
}

fn currency(form: &Form, key: &str) -> Result<String, Reply> {
    let value = required(form, key)?.to_ascii_lowercase();
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(value)
    } else {
        Err(invalid(None, Some(key), format!("Invalid currency: {value}")))
    }
}

/// `prefix[key]=value` fields, with Stripe's limits (50 keys, 40-character keys, 500-character values).
fn metadata(form: &Form, prefix: &str) -> Result<BTreeMap<String, String>, Reply> {
    let open = format!("{prefix}[");
    let map: BTreeMap<String, String> = form
        .fields()
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(&open)?.strip_suffix(']')?;
            (!key.contains('[')).then(|| (key.to_string(), v.clone()))
        })
        .collect();
    if map.len() > 50 || map.iter().any(|(k, v)| k.is_empty() || k.len() > 40 || v.len() > 500) {
        return Err(invalid(None, Some(prefix), "Metadata allows 50 keys of 40 characters, values of 500."));
    }
    Ok(map)
}

/// The parameters, sorted, so field order does not make two equal requests differ.
fn form_fingerprint(path: &str, form: &Form) -> [u8; 32] {
    let mut fields = form.fields().to_vec();
    fields.sort();
    let mut canonical = Form::new();
    for (key, value) in fields {
        canonical.push(key, value);
    }
    fingerprint(path, canonical.encode().as_bytes())
}

// ---------------------------------------------------------------------------------------------------
// Authentication.

/// The key from `Authorization: Basic base64(key:)` (Stripe's SDKs, mppx) or `Bearer key`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(credentials).ok()?).ok()?;
    Some(decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user).to_string())
}

/// The 401 to answer unless the caller presents our key. `any_test_key` is for the SPT test helper
/// only: it is called by the *buyer's* agent (the mppx CLI with its own `MPPX_STRIPE_SECRET_KEY`, which must be a test key),
/// not by us, just as on Stripe where the agent mints tokens on its own account. So any `sk_test_…`
/// or `rk_test_…` key is accepted there, besides ours; a call without a key is still refused.
fn refusal(config: &SandboxConfig, headers: &HeaderMap, any_test_key: bool) -> Option<Response> {
    let accepted = presented_key(headers).is_some_and(|key| {
        let ours = !key.is_empty() && bool::from(key.as_bytes().ct_eq(config.stripe_secret_key.as_bytes()));
        ours || (any_test_key && (key.starts_with("sk_test_") || key.starts_with("rk_test_")))
    });
    if accepted {
        return None;
    }
    let mut response = Reply {
        status: StatusCode::UNAUTHORIZED,
        body: error_body("invalid_request_error", None, "Invalid API Key provided", None),
    }
    .into_response(false);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Stripe\""));
    Some(response)
}

// ---------------------------------------------------------------------------------------------------
// Checkout Sessions.

pub(super) async fn create_session(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, false) {
        return denied;
    }
    let form = Form::decode(&body);
    sandbox.idempotent(
        Api::Stripe,
        &headers,
        form_fingerprint("/v1/checkout/sessions", &form),
        |ledger, _| {
            merge(new_session(&form, sandbox.config(), now_unix()).map(|record| {
                let body = record.to_json();
                ledger.sessions.insert(record.session.id.clone(), record);
                Reply::ok(body)
            }))
        },
    )
}

fn new_session(form: &Form, config: &SandboxConfig, now: i64) -> Result<SessionRecord, Reply> {
    if form.get("mode").is_some_and(|mode| mode != "payment") {
        return Err(invalid(None, Some("mode"), "The sandbox supports mode=payment only."));
    }
    let mut currency_seen = form.get("currency").map(str::to_ascii_lowercase);
    let mut lines = Vec::new();
    for index in 0.. {
        let prefix = format!("line_items[{index}]");
        if !form.fields().iter().any(|(key, _)| key.starts_with(&format!("{prefix}["))) {
            break;
        }
        if index >= MAX_LINE_ITEMS {
            return Err(invalid(None, Some("line_items"), "At most 100 line items."));
        }
        if form.get(&format!("{prefix}[price]")).is_some() {
            return Err(invalid(
                None,
                Some(&format!("{prefix}[price]")),
                "The sandbox supports price_data only.",
            ));
        }
        let line_currency = currency(form, &format!("{prefix}[price_data][currency]"))?;
        if currency_seen.get_or_insert_with(|| line_currency.clone()) != &line_currency {
            return Err(invalid(None, Some(&prefix), "All line items must use the session's currency."));
        }
        let unit_key = format!("{prefix}[price_data][unit_amount]");
        let unit_amount = integer(form, &unit_key)?.ok_or_else(|| missing(&unit_key))?;
        let quantity_key = format!("{prefix}[quantity]");
        let quantity = integer(form, &quantity_key)?.ok_or_else(|| missing(&quantity_key))?;
        if unit_amount < 0 || quantity < 1 {
            return Err(invalid(None, Some(&prefix), "unit_amount must be ≥ 0 and quantity ≥ 1."));
        }
        let name = required(form, &format!("{prefix}[price_data][product_data][name]"))?.to_string();
        lines.push((name, quantity, unit_amount));
    }
    let (Some(currency), false) = (currency_seen, lines.is_empty()) else {
        return Err(missing("line_items"));
    };
    let amount_total = lines
        .iter()
        .try_fold(0i64, |sum, (_, quantity, unit)| sum.checked_add(unit.checked_mul(*quantity)?))
        .ok_or_else(|| invalid(None, Some("line_items"), "The total is too large."))?;
    let expires_at = integer(form, "expires_at")?.unwrap_or(now + 24 * 3600);
    if !(now + MIN_LIFETIME..=now + MAX_LIFETIME).contains(&expires_at) {
        return Err(invalid(
            None,
            Some("expires_at"),
            "expires_at must be between 30 minutes and 24 hours after the session is created.",
        ));
    }
    let id = random_id("cs_test_", 24);
    Ok(SessionRecord {
        session: CheckoutSession {
            url: Some(config.pay_url(&id)),
            id,
            status: Some(CheckoutSessionStatus::Open),
            payment_status: CheckoutPaymentStatus::Unpaid,
            amount_total: Some(amount_total),
            amount_subtotal: Some(amount_total),
            currency: Some(currency),
            customer_email: form.get("customer_email").map(str::to_string),
            client_reference_id: form.get("client_reference_id").map(str::to_string),
            metadata: metadata(form, "metadata")?,
            expires_at,
            created: now,
            payment_intent: None,
            livemode: false,
        },
        lines,
        success_url: form.get("success_url").map(str::to_string),
        cancel_url: form.get("cancel_url").map(str::to_string),
        intent_metadata: metadata(form, "payment_intent_data[metadata]")?,
    })
}

pub(super) async fn get_session(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, false) {
        return denied;
    }
    sandbox
        .with_ledger(|ledger, _| match ledger.sessions.get(&id) {
            Some(record) => Reply::ok(record.to_json()),
            None => not_found("checkout.session", &id),
        })
        .into_response(false)
}

pub(super) async fn expire_session(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, false) {
        return denied;
    }
    let path = format!("/v1/checkout/sessions/{id}/expire");
    sandbox.idempotent(Api::Stripe, &headers, form_fingerprint(&path, &Form::decode(&body)), |ledger, events| {
        let Some(record) = ledger.sessions.get_mut(&id) else { return not_found("checkout.session", &id) };
        if !record.is_open() {
            return invalid(
                None,
                None,
                format!(
                    "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                    record.status()
                ),
            );
        }
        events.push(record.expire());
        Reply::ok(record.to_json())
    })
}

/// The buyer pressed Pay (`paid`) or Decline on the pay page. Either way the session completes and a
/// PaymentIntent records the attempt; the webhook is `checkout.session.completed` (paid) or
/// `checkout.session.async_payment_failed` (still unpaid), as Stripe sends for a failed payment.
pub(super) fn settle_session(
    ledger: &mut Ledger,
    events: &mut Vec<Webhook>,
    id: &str,
    paid: bool,
    now: i64,
) -> Outcome {
    let Some(record) = ledger.sessions.get_mut(id) else { return Outcome::NotFound };
    if !record.is_open() {
        return Outcome::NotPayable(record.status().into());
    }
    let intent = confirmed_intent(
        record.session.amount_total.unwrap_or_default(),
        record.session.currency.clone().unwrap_or_default(),
        record.intent_metadata.clone(),
        (!paid).then_some(DECLINE),
        now,
    );
    record.session.status = Some(CheckoutSessionStatus::Complete);
    record.session.url = None;
    record.session.payment_intent = Some(intent.id.clone());
    let redirect = if paid {
        record.session.payment_status = CheckoutPaymentStatus::Paid;
        events.push(Webhook::Stripe { event_type: "checkout.session.completed", object: record.to_json() });
        record.success_url.as_ref().map(|url| url.replace("{CHECKOUT_SESSION_ID}", id))
    } else {
        events.push(Webhook::Stripe {
            event_type: "checkout.session.async_payment_failed",
            object: record.to_json(),
        });
        record.cancel_url.clone()
    };
    ledger.intents.insert(intent.id.clone(), intent);
    Outcome::Done { paid, redirect }
}

// ---------------------------------------------------------------------------------------------------
// PaymentIntents paid with a shared payment token.

type Decline = (&'static str, Option<&'static str>, &'static str);

const DECLINE: Decline = ("card_declined", Some("generic_decline"), "Your card was declined.");

/// Stripe's declining test payment methods (`pm_card_chargeDeclined…`, also as `pm_card_visa_…`):
/// `(code, decline_code, message)`. Every other payment method succeeds.
fn decline_for(payment_method: &str) -> Option<Decline> {
    let name =
        payment_method.strip_prefix("pm_card_visa_").or_else(|| payment_method.strip_prefix("pm_card_"))?;
    Some(match name {
        "chargeDeclined" => DECLINE,
        "chargeDeclinedInsufficientFunds" => {
            ("card_declined", Some("insufficient_funds"), "Your card has insufficient funds.")
        }
        "chargeDeclinedFraudulent" => ("card_declined", Some("fraudulent"), "Your card was declined."),
        "chargeDeclinedLostCard" => ("card_declined", Some("lost_card"), "Your card was declined."),
        "chargeDeclinedStolenCard" => ("card_declined", Some("stolen_card"), "Your card was declined."),
        "chargeDeclinedExpiredCard" => ("expired_card", None, "Your card has expired."),
        "chargeDeclinedIncorrectCvc" => ("incorrect_cvc", None, "Your card's security code is incorrect."),
        "chargeDeclinedProcessingError" => (
            "processing_error",
            None,
            "An error occurred while processing your card. Try again in a little bit.",
        ),
        _ => return None,
    })
}

pub(super) async fn create_intent(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, false) {
        return denied;
    }
    let form = Form::decode(&body);
    sandbox.idempotent(Api::Stripe, &headers, form_fingerprint("/v1/payment_intents", &form), |ledger, _| {
        merge(new_intent(ledger, &form, now_unix()))
    })
}

fn new_intent(ledger: &mut Ledger, form: &Form, now: i64) -> Result<Reply, Reply> {
    let amount = integer(form, "amount")?.ok_or_else(|| missing("amount"))?;
    if amount < 1 {
        return Err(invalid(Some("amount_too_small"), Some("amount"), "Amount must be at least 1."));
    }
    let currency = currency(form, "currency")?;
    if form.get("confirm") != Some("true") {
        return Err(invalid(
            None,
            Some("confirm"),
            "The sandbox creates PaymentIntents with confirm=true only.",
        ));
    }
    let metadata = metadata(form, "metadata")?;
    // Both documented placements of the token are accepted.
    let (param, token_id) = [SptParameter::TopLevel, SptParameter::PaymentMethodData]
        .into_iter()
        .find_map(|placement| Some((placement.form_key(), form.get(placement.form_key())?)))
        .ok_or_else(|| missing(SptParameter::TopLevel.form_key()))?;
    let token_error = |code: &str, message: String| Err(invalid(Some(code), Some(param), message));
    let Some(token) = ledger.tokens.get(token_id) else {
        return token_error(
            "resource_missing",
            format!("No such shared payment granted token: '{token_id}'"),
        );
    };
    let limits = &token.limits;
    if let Some(spender) = &token.spent_by {
        return token_error(
            "shared_payment_granted_token_used",
            format!("This shared payment granted token was already used by {spender}."),
        );
    }
    if now > limits.expires_at {
        return token_error(
            "shared_payment_granted_token_expired",
            "This shared payment granted token has expired.".into(),
        );
    }
    if currency != limits.currency {
        return token_error(
            "shared_payment_granted_token_currency_mismatch",
            format!("This shared payment granted token is limited to {}.", limits.currency),
        );
    }
    if amount > limits.max_amount {
        return token_error(
            "shared_payment_granted_token_max_amount_exceeded",
            format!("Amount {amount} exceeds the token's usage limit of {}.", limits.max_amount),
        );
    }
    let decline = decline_for(&token.payment_method);
    let intent = confirmed_intent(amount, currency, metadata, decline, now);
    let reply = if let Some((code, decline_code, message)) = decline {
        // Declined: the PaymentIntent is kept (as Stripe does) and the token stays unspent.
        let mut body = error_body("card_error", Some(code), message, None);
        body["error"]["decline_code"] = json!(decline_code);
        body["error"]["payment_intent"] = intent_json(&intent);
        Reply { status: StatusCode::PAYMENT_REQUIRED, body }
    } else {
        if let Some(token) = ledger.tokens.get_mut(token_id) {
            token.spent_by = Some(intent.id.clone());
        }
        Reply::ok(intent_json(&intent))
    };
    ledger.intents.insert(intent.id.clone(), intent);
    Ok(reply)
}

pub(super) async fn get_intent(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, false) {
        return denied;
    }
    sandbox
        .with_ledger(|ledger, _| match ledger.intents.get(&id) {
            Some(intent) => Reply::ok(intent_json(intent)),
            None => not_found("payment_intent", &id),
        })
        .into_response(false)
}

// ---------------------------------------------------------------------------------------------------
// The shared payment token test helper (what mppx calls through MPPX_STRIPE_SPT_URL).

/// `POST /v1/test_helpers/shared_payment/granted_tokens`. mppx 0.11.0 (`dist/cli/plugins/stripe.js`)
/// sends `Authorization: Basic base64(MPPX_STRIPE_SECRET_KEY:)`, `Stripe-Version: 2026-07-29.preview`
/// and a form of `payment_method`, `usage_limits[currency|max_amount|expires_at]`, optionally
/// `seller_details[network_id]` (`[network_business_profile]` with a non-test key) and
/// `metadata[…]`; it reads `id` from the answer and `error.message` from a failure.
pub(super) async fn grant_token(State(sandbox): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(denied) = refusal(sandbox.config(), &headers, true) {
        return denied;
    }
    let form = Form::decode(&body);
    let path = "/v1/test_helpers/shared_payment/granted_tokens";
    sandbox.idempotent(Api::Stripe, &headers, form_fingerprint(path, &form), |ledger, _| {
        merge(new_token(ledger, &form, now_unix()))
    })
}

fn new_token(ledger: &mut Ledger, form: &Form, now: i64) -> Result<Reply, Reply> {
    // Field-by-field first, so the error names the offending parameter.
    let payment_method = required(form, "payment_method")?;
    currency(form, "usage_limits[currency]")?;
    let max_amount =
        integer(form, "usage_limits[max_amount]")?.ok_or_else(|| missing("usage_limits[max_amount]"))?;
    let expires_at =
        integer(form, "usage_limits[expires_at]")?.ok_or_else(|| missing("usage_limits[expires_at]"))?;
    let request = GrantTestToken::from_form(form).ok_or_else(|| missing("usage_limits"))?;
    if !payment_method.starts_with("pm_") {
        return Err(invalid(
            Some("resource_missing"),
            Some("payment_method"),
            format!("No such PaymentMethod: '{payment_method}'"),
        ));
    }
    if max_amount < 1 {
        return Err(invalid(None, Some("usage_limits[max_amount]"), "max_amount must be at least 1."));
    }
    if expires_at <= now {
        return Err(invalid(None, Some("usage_limits[expires_at]"), "expires_at must be in the future."));
    }
    let limits = UsageLimits { currency: request.currency, max_amount, expires_at };
    let token = SharedPaymentGrantedToken {
        id: random_id("spt_test_", 24),
        object: "shared_payment.granted_token".into(),
        created: now,
        livemode: false,
        usage_limits: Some(limits.clone()),
    };
    let extra = json!({"payment_method": request.payment_method, "metadata": metadata(form, "metadata")?,
                       "seller_details": {"network_id": request.network_id}});
    let body = json_with(&token, extra);
    ledger
        .tokens
        .insert(token.id, TokenRecord { limits, payment_method: request.payment_method, spent_by: None });
    Ok(Reply::ok(body))
}
