//! Buyer accounts (SPEC §11): an e-mail address proven by a one-time code becomes a `kfb_live_`
//! token that carries the buyer's name, saved address and orders into a new conversation.
//!
//! Why it is shaped like this:
//! - **No account probing.** `register_buyer` and `request_buyer_code` answer the same whatever the
//!   address: register always mails a code (creating the account when new), request-code mails one
//!   only to existing accounts but says `sent: true` either way. Both are also limited per address.
//! - **Codes**: 6 digits, 10 minutes, 5 attempts, stored as a keyed hash, compared in constant time.
//!   Each attempt is committed before the code is compared, so a failed attempt always counts, even
//!   when the request's own outcome is rolled back.
//! - **Tokens** are stored as keyed hashes (like API keys) and travel in the body or `X-Buyer-Token`,
//!   never in a URL.
//! - **Mail** is queued in the same transaction as the code and sent after commit by the outbox worker
//!   ([`crate::outbox`]), so a slow or dead mail server never slows or fails a request.

use axum::http::StatusCode;
use kifly_core::address::{AddressInput, ShippingAddress};
use kifly_core::ids::{IdKind, new_id};
use kifly_core::scope::Scope;
use kifly_store::{Buyer, FeedbackEntry, NewMail, StoreTx};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::app::{App, now_ms};
use crate::auth::{Caller, hash_key};
use crate::config::RateSetting;
use crate::error::{ApiError, ApiResult};

const CODE_TTL_MS: i64 = 10 * 60 * 1000;
const MAX_ATTEMPTS: i64 = 5;
const TOKEN_PREFIX: &str = "kfb_live_";
/// Codes mailed per address: 5 per 15 minutes.
const MAIL_PER_ADDRESS: RateSetting = RateSetting { limit: 5, period_secs: 900 };

/// What a buyer write hands back: the open transaction holding its final write, and the answer.
pub type BuyerWrite = ApiResult<(Box<dyn StoreTx>, StatusCode, Value)>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub email: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailInput {
    pub email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    pub email: String,
    pub code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveAddressInput {
    #[serde(default)]
    pub buyer_token: Option<String>,
    pub address: AddressInput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    pub category: String,
    pub severity: String,
    pub message: String,
    #[serde(default)]
    pub context: Option<Value>,
    #[serde(default)]
    pub suggested_fix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureRequestInput {
    #[serde(default)]
    pub buyer_token: Option<String>,
    pub problem: String,
    pub impact: String,
    pub category: String,
    pub severity: String,
    #[serde(default)]
    pub proposed_solution: Option<String>,
    #[serde(default)]
    pub context: Option<Value>,
}

pub const FEEDBACK_CATEGORIES: [&str; 7] = [
    "discoverability",
    "response_shape",
    "tool_description",
    "latency",
    "error_handling",
    "missing_capability",
    "other",
];
pub const SEVERITIES: [&str; 3] = ["blocker", "friction", "nice_to_have"];

/// Trimmed, lower-cased, and shaped like an address (one `@`, a dot in the domain, no spaces).
pub fn normalize_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && email.matches('@').count() == 1;
    if valid { Ok(email) } else { Err(ApiError::validation("email", "must be an e-mail address")) }
}

fn code_hash(app: &App, email: &str, code: &str) -> String {
    hash_key(app.secret.as_bytes(), &format!("otp|{email}|{code}"))
}

fn token_hash(app: &App, token: &str) -> String {
    hash_key(app.secret.as_bytes(), &format!("buyer|{token}"))
}

fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

fn new_token() -> String {
    let random: String =
        rand::rng().sample_iter(&rand::distr::Alphanumeric).take(40).map(char::from).collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// Refuses a 6th code mail to one address within 15 minutes (whatever key asks).
async fn limit_mail_to(app: &App, email: &str) -> ApiResult<()> {
    let key = format!("mail:{}", &hash_key(app.secret.as_bytes(), email)[..24]);
    let decision = app.limiter.check(&key, MAIL_PER_ADDRESS).await;
    if decision.allowed { Ok(()) } else { Err(ApiError::rate_limited(decision.retry_after_secs.max(1))) }
}

/// Issues a fresh code for `email` and queues the mail, in `tx`.
async fn send_code(tx: &mut dyn StoreTx, app: &App, email: &str, name: &str) -> ApiResult<()> {
    let code = new_code();
    let now = now_ms();
    tx.set_buyer_code(email, &code_hash(app, email, &code), now + CODE_TTL_MS, now).await?;
    tx.enqueue_mail(
        &NewMail {
            id: new_id(IdKind::Mail),
            recipient: email.to_string(),
            subject: format!("Your Kifly code: {code}"),
            body: format!(
                "Hello {name},\n\nYour Kifly verification code is {code}.\nIt expires in 10 minutes. \
If you did not ask for it, ignore this e-mail.\n"
            ),
        },
        now,
    )
    .await?;
    Ok(())
}

/// `register_buyer`: always `{verification_required: true, buyer_profile_id}` and a code by mail.
pub async fn register(app: &App, caller: &Caller, input: RegisterInput) -> BuyerWrite {
    caller.require(Scope::BuyerWrite)?;
    let email = normalize_email(&input.email)?;
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation("name", "must be 1 to 200 characters"));
    }
    limit_mail_to(app, &email).await?;
    let mut tx = app.store.begin_write().await?;
    // An existing account keeps its name: registering again only sends a new code.
    tx.insert_buyer(&new_id(IdKind::Buyer), &email, &name, now_ms()).await?;
    let buyer = tx.get_buyer_by_email(&email).await?.ok_or_else(|| ApiError::internal(None))?;
    send_code(tx.as_mut(), app, &email, &buyer.name).await?;
    tx.insert_audit(&super::audit(caller, "buyer.register", Some(&buyer.id))).await?;
    Ok((tx, StatusCode::OK, json!({"verification_required": true, "buyer_profile_id": buyer.id})))
}

/// `request_buyer_code`: always `{sent: true}`; a code goes out only to an existing account.
pub async fn request_code(app: &App, caller: &Caller, input: EmailInput) -> BuyerWrite {
    caller.require(Scope::BuyerWrite)?;
    let email = normalize_email(&input.email)?;
    limit_mail_to(app, &email).await?;
    let mut tx = app.store.begin_write().await?;
    if let Some(buyer) = tx.get_buyer_by_email(&email).await? {
        send_code(tx.as_mut(), app, &email, &buyer.name).await?;
    }
    Ok((tx, StatusCode::OK, json!({"sent": true})))
}

/// `verify_buyer`: a valid code becomes a buyer token.
pub async fn verify(app: &App, caller: &Caller, input: VerifyInput) -> BuyerWrite {
    caller.require(Scope::BuyerWrite)?;
    let email = normalize_email(&input.email)?;
    if input.code.len() != 6 || !input.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation("code", "must be the 6 digits from the e-mail"));
    }
    // The attempt is committed first: it counts whatever happens next.
    let mut tx = app.store.begin_write().await?;
    let code = tx.attempt_buyer_code(&email).await?;
    tx.commit().await?;
    let Some(code) = code else {
        return Err(invalid_otp("no code is pending for this e-mail; request a new one", 0));
    };
    let now = now_ms();
    let expired = code.expires_at <= now;
    let exhausted = code.attempts > MAX_ATTEMPTS;
    let matches = bool::from(code_hash(app, &email, &input.code).as_bytes().ct_eq(code.code_hash.as_bytes()));
    if expired || exhausted {
        let mut tx = app.store.begin_write().await?;
        tx.delete_buyer_code(&email).await?;
        tx.commit().await?;
        let why = if expired { "the code expired" } else { "too many attempts" };
        return Err(invalid_otp(&format!("{why}; request a new code"), 0));
    }
    if !matches {
        return Err(invalid_otp("the code is wrong", MAX_ATTEMPTS - code.attempts));
    }
    let mut tx = app.store.begin_write().await?;
    let buyer = tx.get_buyer_by_email(&email).await?.ok_or_else(|| invalid_otp("no such account", 0))?;
    tx.delete_buyer_code(&email).await?;
    tx.mark_buyer_verified(&buyer.id, now).await?;
    let token = new_token();
    tx.insert_buyer_token(&new_id(IdKind::BuyerToken), &token_hash(app, &token), &buyer.id, caller.id(), now)
        .await?;
    tx.insert_audit(&super::audit(caller, "buyer.verify", Some(&buyer.id))).await?;
    Ok((tx, StatusCode::OK, json!({"buyer_token": token, "buyer_profile_id": buyer.id})))
}

fn invalid_otp(why: &str, attempts_remaining: i64) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_otp", format!("Invalid code: {why}."))
        .with_details(json!({"attempts_remaining": attempts_remaining.max(0)}))
}

/// The buyer a token names; `invalid_buyer_token` when it names none (or was revoked).
pub async fn resolve_token(app: &App, token: Option<&str>) -> ApiResult<Buyer> {
    let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::invalid_request("buyer_token", "buyer_token is required (in the body or X-Buyer-Token)")
    })?;
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
        return Err(invalid_buyer_token());
    }
    app.store.get_buyer_by_token(&token_hash(app, token)).await?.ok_or_else(invalid_buyer_token)
}

/// For checkout: `(buyer, buyer_token_status)`; an unknown token is not an error there.
pub async fn resolve_for_checkout(
    app: &App,
    token: Option<&str>,
) -> ApiResult<(Option<Buyer>, &'static str)> {
    match token.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok((None, "none")),
        Some(token) => match resolve_token(app, Some(token)).await {
            Ok(buyer) => Ok((Some(buyer), "resolved")),
            Err(e) if e.code == "invalid_buyer_token" => Ok((None, "invalid")),
            Err(e) => Err(e),
        },
    }
}

fn invalid_buyer_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_buyer_token",
        "The buyer token is not recognised; verify the buyer again (request_buyer_code + verify_buyer).",
    )
}

fn profile_view(buyer: &Buyer) -> Value {
    json!({
        "buyer_profile_id": buyer.id,
        "email": buyer.email,
        "name": buyer.name,
        "default_shipping_address": buyer.default_address,
    })
}

/// `get_buyer_profile`.
pub async fn profile(app: &App, caller: &Caller, token: Option<&str>) -> ApiResult<Value> {
    caller.require(Scope::BuyerWrite)?;
    Ok(profile_view(&resolve_token(app, token).await?))
}

/// `save_buyer_address`.
pub async fn save_address(
    app: &App,
    caller: &Caller,
    token: Option<&str>,
    input: SaveAddressInput,
) -> BuyerWrite {
    caller.require(Scope::BuyerWrite)?;
    let buyer = resolve_token(app, input.buyer_token.as_deref().or(token)).await?;
    let address: ShippingAddress = input.address.validate().map_err(|e| {
        let field = format!("address.{}", e.field);
        ApiError::validation(&field, e.reason)
    })?;
    let mut tx = app.store.begin_write().await?;
    tx.set_buyer_address(&buyer.id, &address, now_ms()).await?;
    Ok((tx, StatusCode::OK, json!({"buyer_profile_id": buyer.id, "default_shipping_address": address})))
}

/// `list_orders`: the buyer's orders, newest change first.
pub async fn list_orders(
    app: &App,
    caller: &Caller,
    token: Option<&str>,
    since: Option<&str>,
    limit: Option<i64>,
) -> ApiResult<Value> {
    caller.require(Scope::OrdersRead)?;
    let buyer = resolve_token(app, token).await?;
    let since = match since {
        None => 0,
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| ApiError::validation("since", "must be an RFC 3339 time"))?,
    };
    let limit = limit.unwrap_or(20);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::validation("limit", "must be 1 to 50"));
    }
    let orders = app.store.list_buyer_orders(&buyer, since, limit).await?;
    let mut views = Vec::with_capacity(orders.len());
    for order in &orders {
        let seller = app.seller(&order.seller_id).await?.ok_or_else(|| ApiError::internal(None))?;
        views.push(json!(super::checkout::order_view(order, &seller)));
    }
    Ok(json!({"count": views.len(), "orders": views}))
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::validation(field, format!("must be one of {}", allowed.join(", "))))
    }
}

fn text(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.trim().is_empty() || value.chars().count() > max {
        Err(ApiError::validation(field, format!("must be 1 to {max} characters")))
    } else {
        Ok(())
    }
}

/// `submit_feedback` (agents): stored for operators, answered 202.
pub async fn submit_feedback(app: &App, caller: &Caller, input: FeedbackInput) -> BuyerWrite {
    caller.require(Scope::FeedbackWrite)?;
    one_of("category", &input.category, &FEEDBACK_CATEGORIES)?;
    one_of("severity", &input.severity, &SEVERITIES)?;
    text("message", &input.message, 4000)?;
    if let Some(fix) = &input.suggested_fix {
        text("suggested_fix", fix, 4000)?;
    }
    let id = new_id(IdKind::Feedback);
    let content =
        json!({"message": input.message, "context": input.context, "suggested_fix": input.suggested_fix});
    let mut tx = app.store.begin_write().await?;
    tx.insert_feedback(&FeedbackEntry {
        id: id.clone(),
        kind: "feedback".into(),
        api_key_id: caller.id().to_string(),
        buyer_id: None,
        category: input.category,
        severity: input.severity,
        content: content.to_string(),
        created_at: now_ms(),
    })
    .await?;
    Ok((tx, StatusCode::ACCEPTED, json!({"accepted": true, "feedback_id": id})))
}

/// `request_feature` (buyers): stored for operators, answered 202.
pub async fn request_feature(
    app: &App,
    caller: &Caller,
    token: Option<&str>,
    input: FeatureRequestInput,
) -> BuyerWrite {
    caller.require(Scope::FeedbackWrite)?;
    let buyer = resolve_token(app, input.buyer_token.as_deref().or(token)).await?;
    one_of("category", &input.category, &FEEDBACK_CATEGORIES)?;
    one_of("severity", &input.severity, &SEVERITIES)?;
    text("problem", &input.problem, 4000)?;
    text("impact", &input.impact, 4000)?;
    if let Some(solution) = &input.proposed_solution {
        text("proposed_solution", solution, 4000)?;
    }
    let id = new_id(IdKind::FeatureRequest);
    let content = json!({
        "problem": input.problem, "impact": input.impact,
        "proposed_solution": input.proposed_solution, "context": input.context,
        "buyer_email": buyer.email, "buyer_name": buyer.name,
    });
    let mut tx = app.store.begin_write().await?;
    tx.insert_feedback(&FeedbackEntry {
        id: id.clone(),
        kind: "feature_request".into(),
        api_key_id: caller.id().to_string(),
        buyer_id: Some(buyer.id),
        category: input.category,
        severity: input.severity,
        content: content.to_string(),
        created_at: now_ms(),
    })
    .await?;
    Ok((tx, StatusCode::ACCEPTED, json!({"accepted": true, "feature_request_id": id})))
}
