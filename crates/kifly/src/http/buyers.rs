//! Buyer accounts, order history and feedback (SPEC §11). The buyer token travels in the body or in
//! `X-Buyer-Token`, never in a URL. Writes run exactly once per `Idempotency-Key`; those that queue
//! mail wake the outbox worker once their transaction has committed.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::Json;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::http::ApiQuery;
use crate::idempotency::Idempotent;
use crate::service::buyers;
use crate::service::parse_body;

fn buyer_token(headers: &HeaderMap) -> Option<String> {
    headers.get("x-buyer-token").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Starts (or re-verifies) a buyer account: always `{verification_required: true, buyer_profile_id}`
/// and a 6-digit code by e-mail, whether or not the address already had an account.
#[utoipa::path(
    post, path = "/api/agent/buyers", tag = "buyers",
    params(("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "{email, name}"),
    responses(
        (status = 200, description = "{verification_required: true, buyer_profile_id}", body = Object),
        (status = 400, description = "invalid_request / missing_idempotency_key", body = ErrorBody),
        (status = 403, description = "scope_insufficient (buyer:write)", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
        (status = 429, description = "rate_limited (also per e-mail address)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn register(State(app): State<App>, caller: Caller, request: Idempotent) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    let response = request
        .run_steps(&app, &caller, move |body| {
            Box::pin(async move { buyers::register(&a, &c, parse_body(body)?).await })
        })
        .await;
    // The code mail committed with the outcome: send it now rather than at the next poll.
    app.outbox.wake();
    response
}

/// E-mails a code to a returning buyer; always `{sent: true}`.
#[utoipa::path(
    post, path = "/api/agent/buyers/code", tag = "buyers",
    params(("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "{email}"),
    responses(
        (status = 200, description = "{sent: true}", body = Object),
        (status = 403, description = "scope_insufficient (buyer:write)", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
        (status = 429, description = "rate_limited (also per e-mail address)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn request_code(State(app): State<App>, caller: Caller, request: Idempotent) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    let response = request
        .run_steps(&app, &caller, move |body| {
            Box::pin(async move { buyers::request_code(&a, &c, parse_body(body)?).await })
        })
        .await;
    app.outbox.wake();
    response
}

/// Exchanges the e-mailed code for a buyer token.
#[utoipa::path(
    post, path = "/api/agent/buyers/verify", tag = "buyers",
    params(("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "{email, code}"),
    responses(
        (status = 200, description = "{buyer_token, buyer_profile_id}", body = Object),
        (status = 400, description = "invalid_otp (wrong, expired, or too many attempts)", body = ErrorBody),
        (status = 403, description = "scope_insufficient (buyer:write)", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn verify(State(app): State<App>, caller: Caller, request: Idempotent) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run_steps(&app, &caller, move |body| {
            Box::pin(async move { buyers::verify(&a, &c, parse_body(body)?).await })
        })
        .await
}

/// The buyer's saved profile (buyer token in `X-Buyer-Token`).
#[utoipa::path(
    get, path = "/api/agent/buyers/me", tag = "buyers",
    params(("X-Buyer-Token" = String, Header)),
    responses(
        (status = 200, description = "{buyer_profile_id, email, name, default_shipping_address}", body = Object),
        (status = 401, description = "invalid_buyer_token", body = ErrorBody),
        (status = 403, description = "scope_insufficient (buyer:write)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn profile(State(app): State<App>, caller: Caller, headers: HeaderMap) -> ApiResult<Json<Value>> {
    Ok(Json(buyers::profile(&app, &caller, buyer_token(&headers).as_deref()).await?))
}

/// Saves the buyer's default shipping address: `{address: {…}}` (token in the body or header).
#[utoipa::path(
    put, path = "/api/agent/buyers/me/address", tag = "buyers",
    params(("Idempotency-Key" = String, Header), ("X-Buyer-Token" = String, Header)),
    request_body(content = Object, description = "{address: {name, line1, line2?, city, region, postal_code, country?, phone?, email?}, buyer_token?}"),
    responses(
        (status = 200, description = "{buyer_profile_id, default_shipping_address}", body = Object),
        (status = 401, description = "invalid_buyer_token", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn save_address(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    request: Idempotent,
) -> Response {
    let (a, c, token) = (app.clone(), caller.clone(), buyer_token(&headers));
    request
        .run_steps(&app, &caller, move |body| {
            Box::pin(async move { buyers::save_address(&a, &c, token.as_deref(), parse_body(body)?).await })
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// RFC 3339: only orders changed after it.
    since: Option<String>,
    /// 1 to 50 (default 20).
    limit: Option<i64>,
}

/// The buyer's orders, newest change first.
#[utoipa::path(
    get, path = "/api/agent/buyers/me/orders", tag = "buyers",
    params(("X-Buyer-Token" = String, Header), ("since" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses(
        (status = 200, description = "{orders: [order], count}", body = Object),
        (status = 401, description = "invalid_buyer_token", body = ErrorBody),
        (status = 403, description = "scope_insufficient (orders:read)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn orders(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<OrdersQuery>,
) -> ApiResult<Json<Value>> {
    let token = buyer_token(&headers);
    Ok(Json(buyers::list_orders(&app, &caller, token.as_deref(), query.since.as_deref(), query.limit).await?))
}

/// A buyer's request about Kifly itself; accepted for review (202).
#[utoipa::path(
    post, path = "/api/agent/feature-requests", tag = "feedback",
    params(("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "{buyer_token?, problem, impact, category, severity, proposed_solution?, context?}"),
    responses(
        (status = 202, description = "{accepted: true, feature_request_id}", body = Object),
        (status = 401, description = "invalid_buyer_token", body = ErrorBody),
        (status = 403, description = "scope_insufficient (feedback:write)", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn feature_request(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    request: Idempotent,
) -> Response {
    let (a, c, token) = (app.clone(), caller.clone(), buyer_token(&headers));
    request
        .run_steps(&app, &caller, move |body| {
            Box::pin(
                async move { buyers::request_feature(&a, &c, token.as_deref(), parse_body(body)?).await },
            )
        })
        .await
}

/// An agent's report of a problem with this interface; accepted at once (202). Its own rate-limit
/// bucket: 10 per minute per key.
#[utoipa::path(
    post, path = "/api/agent/feedback", tag = "feedback",
    params(("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "{category, severity, message, context?, suggested_fix?}"),
    responses(
        (status = 202, description = "{accepted: true, feedback_id}", body = Object),
        (status = 403, description = "scope_insufficient (feedback:write)", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
        (status = 429, description = "rate_limited (10 / 60 s)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn feedback(State(app): State<App>, caller: Caller, request: Idempotent) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run_steps(&app, &caller, move |body| {
            Box::pin(async move { buyers::submit_feedback(&a, &c, parse_body(body)?).await })
        })
        .await
}
