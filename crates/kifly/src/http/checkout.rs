//! Checkout, orders, provider webhooks and tracked links. Payment calls run through
//! [`run_once_leased_steps`]: the idempotency claim commits first, the provider is called outside any
//! transaction, and the final write stores the outcome (see `service::checkout` for the steps).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::Json;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::idempotency::{Idempotent, outcome_response, run_once_leased_steps};
use crate::service::checkout::{self, AgentPayment, OrderView, PaymentLinkInput};
use crate::service::{parse_body, render, webhooks};

/// Routes outside the OpenAPI document: webhooks, tracked links, the post-payment page and the
/// sandbox (when a provider uses it).
pub fn router(app: &App) -> Router<App> {
    let mut router = Router::new()
        .route("/api/webhooks/stripe", post(stripe_webhook))
        .route("/api/webhooks/coinbase", post(coinbase_webhook))
        .route("/r/{code}", get(follow_link))
        .route("/checkout/return", get(checkout_return));
    if let Some(sandbox) = &app.payments.sandbox {
        router = router.merge(sandbox.router().with_state(()));
    }
    router
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Copies the payment headers kept in a paid body (`payment_receipt`, `payment_response`) onto the
/// response, on the first answer and on replays alike.
fn with_payment_headers(mut response: Response, body: &[u8]) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return response };
    let headers = response.headers_mut();
    for (field, names) in [
        ("payment_receipt", &["payment-receipt"][..]),
        ("payment_response", &["payment-response", "x-payment-response"][..]),
    ] {
        if let Some(v) = value.get(field).and_then(Value::as_str).and_then(|v| HeaderValue::from_str(v).ok())
        {
            for name in names {
                headers.insert(*name, v.clone());
            }
        }
    }
    response
}

/// Rails 1 and 2: a hosted payment page (Stripe Checkout by default, or `rail: "coinbase-commerce"`).
/// Directory-tier sellers answer with a `directory-handoff` instead.
#[utoipa::path(
    post, path = "/api/agent/payment-link", tag = "checkout",
    params(("Idempotency-Key" = String, Header)),
    request_body = PaymentLinkInput,
    responses(
        (status = 200, description = "payment_rail stripe-checkout / coinbase-commerce: session_id, payment_url, amount, subtotal_cents, delivery_fee_cents, currency, expires_at, buyer_token_status; or directory-handoff", body = Object),
        (status = 400, description = "invalid_request / missing_idempotency_key / cart_empty / shipping_address_required / delivery_not_available / cart_total_exceeds_limit", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / out_of_stock / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
        (status = 503, description = "checkout_engine_unavailable (cart safe; retry with the same Idempotency-Key)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn payment_link(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    request: Idempotent,
) -> Response {
    let scope = request.scope(&caller);
    let header_token = header_str(&headers, "x-buyer-token").map(str::to_string);
    let outcome = run_once_leased_steps(&app, scope, &request.fingerprint, {
        let app = app.clone();
        move || {
            Box::pin(async move {
                let mut input: PaymentLinkInput = parse_body(request.body)?;
                input.buyer_token = input.buyer_token.or(header_token);
                checkout::payment_link(&app, &caller, input).await
            })
        }
    })
    .await;
    outcome_response(outcome)
}

/// Rails 3 (MPP) and 4 (x402). Without a payment: 402 with `WWW-Authenticate: Payment …` and
/// `PAYMENT-REQUIRED`, no side effect. With `Authorization: Payment …` (API key then in `X-Api-Key`),
/// `PAYMENT-SIGNATURE` or `X-PAYMENT`: verify, settle, 200 with `Payment-Receipt` / `PAYMENT-RESPONSE`.
#[utoipa::path(
    post, path = "/api/agent/cart/{cart_id}/checkout", tag = "checkout",
    params(("cart_id" = String, Path), ("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, description = "paid: payment_rail, order_id, payment_intent_id or transaction, amount, subtotal_cents, delivery_fee_cents, currency, status; or directory-handoff", body = Object),
        (status = 400, description = "missing_idempotency_key / cart_empty / shipping_address_required / delivery_not_available / cart_total_exceeds_limit / x402_not_configured", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 402, description = "payment_required (challenge) / payment_failed (with a fresh challenge)", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / out_of_stock / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
        (status = 503, description = "checkout_engine_unavailable (cart safe; retry with the same Idempotency-Key)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn agent_checkout(
    State(app): State<App>,
    caller: Caller,
    Path(cart_id): Path<String>,
    headers: HeaderMap,
    request: Idempotent,
) -> Response {
    let x402_sent = headers.contains_key("payment-signature") || headers.contains_key("x-payment");
    if x402_sent && app.payments.x402.is_none() {
        return crate::error::ApiError::x402_not_configured().into_response();
    }
    // `Authorization` may carry the API key (Bearer) and the credential (Payment) in separate fields.
    let credential = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("payment ")));
    let parsed = checkout::read_agent_payment(
        credential,
        header_str(&headers, "payment-signature"),
        header_str(&headers, "x-payment"),
    );
    let (payment, malformed) = match parsed {
        Ok(payment) => (payment, None),
        Err(reason) => (AgentPayment::None, Some(reason)),
    };
    if matches!(payment, AgentPayment::None) && malformed.is_none() {
        // The common first call: a challenge (or a handoff) has no side effect, so it needs no
        // idempotency record. Any other answer (e.g. the cart was paid under this very key) goes
        // through the idempotent path below, which replays a stored outcome.
        match checkout::agent_checkout(&app, &caller, &cart_id, AgentPayment::None, None, None).await {
            Ok((_, status, value)) => return (status, Json(value)).into_response(),
            Err(e) if e.status == StatusCode::PAYMENT_REQUIRED => return e.into_response(),
            Err(_) => {}
        }
    }
    let scope = request.scope(&caller);
    let buyer_token = header_str(&headers, "x-buyer-token").map(str::to_string);
    let outcome = run_once_leased_steps(&app, scope, &request.fingerprint, {
        let app = app.clone();
        move || {
            Box::pin(async move {
                let token = buyer_token.as_deref();
                checkout::agent_checkout(&app, &caller, &cart_id, payment, malformed, token).await
            })
        }
    })
    .await;
    let paid_body = outcome.as_ref().ok().map(|o| o.body.clone()).unwrap_or_default();
    with_payment_headers(outcome_response(outcome), &paid_body)
}

/// Cancels a pending hosted checkout (Stripe Checkout, Coinbase); the cart reopens and its stock is
/// released. A cart without an open checkout is returned as is.
#[utoipa::path(
    delete, path = "/api/agent/cart/{cart_id}/checkout", tag = "checkout",
    params(("cart_id" = String, Path), ("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, description = "the cart, open again", body = crate::service::carts::CartView),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found", body = ErrorBody),
        (status = 409, description = "cart_already_completed / cart_locked (an agent payment is settling)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn cancel_checkout(
    State(app): State<App>,
    caller: Caller,
    Path(cart_id): Path<String>,
    request: Idempotent,
) -> Response {
    let c = caller.clone();
    let a = app.clone();
    request
        .run(&app, &caller, move |tx, _body| {
            Box::pin(async move {
                Ok((StatusCode::OK, render(&checkout::cancel_checkout(tx, &a, &c, &cart_id).await?)?))
            })
        })
        .await
}

/// An order by its id or by its payment session id.
#[utoipa::path(
    get, path = "/api/agent/orders/{order_id}", tag = "checkout",
    params(("order_id" = String, Path, description = "order_… or the session_id a checkout returned")),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient (orders:read)", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_order(
    State(app): State<App>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(checkout::get_order(&app, &caller, &order_id).await?))
}

async fn stripe_webhook(State(app): State<App>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    Ok(Json(webhooks::stripe_webhook(&app, &body, header_str(&headers, "stripe-signature")).await?))
}

async fn coinbase_webhook(State(app): State<App>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    Ok(Json(webhooks::coinbase_webhook(&app, &body, header_str(&headers, "x-cc-webhook-signature")).await?))
}

/// `302 Found` to the seller's product page; the click is counted.
async fn follow_link(State(app): State<App>, Path(code): Path<String>) -> ApiResult<Response> {
    let target = checkout::follow_link(&app, &code).await?;
    let location = HeaderValue::from_str(&target).map_err(|_| crate::error::ApiError::internal(None))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// Where hosted payment pages send the buyer afterwards.
async fn checkout_return() -> Response {
    let mut response = Html(
        "<!doctype html><meta charset=utf-8><title>Kifly</title>\
         <p>Thank you. Your payment is being confirmed; the agent that placed the order will tell you when it is paid.</p>",
    )
    .into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
