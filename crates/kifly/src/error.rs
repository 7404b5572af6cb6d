//! The one error type of the API and its `{"error", "message", "details"}` envelope.
//!
//! Every failure a client can see is an [`ApiError`] with a stable snake_case code from the error
//! reference (`docs/errors.md`). Constructors below are the only way codes are spelled, so a code is
//! never mistyped at a call site. Internal failures are logged once here, with the request id, and the
//! client gets `internal_error` with nothing but that id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kifly_core::FieldError;
use kifly_store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// The wire shape of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `cart_not_found`.
    #[schema(example = "cart_not_found")]
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Context for the error (limits exceeded, the field at fault, coverage, …).
    #[schema(value_type = Object)]
    pub details: Value,
    /// On 503 only: seconds to wait before retrying with the same Idempotency-Key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// On 503 only: always true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

/// An error response. See the module docs. Boxed, so `Result<T, ApiError>` stays one pointer wide.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorParts>);

/// The parts of an [`ApiError`].
#[derive(Debug, Clone)]
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Sets `Retry-After` (and, on 503, `retry_after_seconds`).
    pub retry_after: Option<u64>,
    /// Top-level fields merged into the body (e.g. `max_cents` beside `details.max_cents`).
    pub extra: Option<Value>,
    /// Extra response headers (payment challenges on 402).
    pub headers: Vec<(&'static str, String)>,
}

/// Marker put in a response's extensions so middleware (idempotency, metrics) can see the code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorParts {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
            extra: None,
            headers: Vec::new(),
        }))
    }

    /// Adds a response header (values that are not valid header text are dropped).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    // --- 400 ---
    pub fn invalid_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_details(json!({ "field": field }))
    }
    pub fn missing_idempotency_key() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "The Idempotency-Key header is required on mutating endpoints; send a unique value (e.g. a UUID) and reuse it when retrying.",
        )
    }
    pub fn quantity_exceeds_limit(max: i64, requested: i64) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "quantity_exceeds_limit",
            format!("A cart line may hold at most {max} units; this request would make it {requested}."),
        )
        .with_details(json!({ "max_quantity": max, "requested_quantity": requested }))
    }
    // --- 401 / 403 ---
    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Missing or unrecognised API key. Send Authorization: Bearer kfa_live_… (or X-Api-Key).",
        )
    }
    pub fn api_key_revoked() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "api_key_revoked", "This API key has been revoked.")
    }
    pub fn scope_insufficient(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "scope_insufficient",
            format!("This API key lacks the {scope} scope."),
        )
        .with_details(json!({ "required_scope": scope }))
    }
    pub fn seller_mismatch(cart_seller: &str, variant_seller: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "seller_mismatch",
            "The variant belongs to a different seller than the cart; create a separate cart for that seller.",
        )
        .with_details(json!({ "cart_seller": cart_seller, "variant_seller": variant_seller }))
    }
    // --- 404 ---
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn cart_not_found(id: &str) -> Self {
        Self::not_found("cart_not_found", format!("No cart {id:?} under this API key."))
    }
    pub fn item_not_found(id: &str) -> Self {
        Self::not_found("item_not_found", format!("No line item {id:?} in this cart."))
    }
    pub fn seller_not_found(handle: &str) -> Self {
        Self::not_found("seller_not_found", format!("No seller with handle {handle:?}."))
    }
    pub fn variant_not_found(id: &str) -> Self {
        Self::not_found(
            "variant_not_found",
            format!("No product variant {id:?}; use a kifly:variantId from search_products."),
        )
    }
    pub fn order_not_found(id: &str) -> Self {
        Self::not_found("order_not_found", format!("No order {id:?} under this API key."))
    }
    // --- checkout (400 / 402 / 409 / 503) ---
    pub fn cart_empty() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "cart_empty", "The cart has no items; add_to_cart first.")
    }
    pub fn shipping_address_required() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "shipping_address_required",
            "Set a shipping address (set_shipping_address) before checkout.",
        )
    }
    pub fn delivery_not_available(coverage: Value, address: Value) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "delivery_not_available",
            "The seller does not deliver to this address; see details.coverage.",
        )
        .with_details(json!({ "coverage": coverage, "address": address }))
    }
    pub fn cart_total_exceeds_limit(max_cents: i64, total_cents: i64) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "cart_total_exceeds_limit",
            format!("The cart total ({total_cents} cents) exceeds the platform cap of {max_cents} cents."),
        )
        .with_details(json!({ "max_cents": max_cents, "total_cents": total_cents }));
        e.extra = Some(json!({ "max_cents": max_cents }));
        e
    }
    pub fn out_of_stock(variant_id: &str, requested: i64, available: i64) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "out_of_stock",
            format!(
                "Only {available} unit(s) of {variant_id} are available; lower the quantity or remove it."
            ),
        )
        .with_details(json!({ "variant_id": variant_id, "requested": requested, "available": available }))
    }
    /// The 402 of the MPP / x402 flow: not a failure, the first step of paying.
    pub fn payment_required(amount_cents: i64, cart_id: &str, rails: &[&str]) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_required",
            "Payment required: answer the WWW-Authenticate Payment challenge (MPP) or PAYMENT-REQUIRED (x402), then retry.",
        )
        .with_details(json!({
            "amount_cents": amount_cents,
            "currency": kifly_core::money::CURRENCY,
            "cart_id": cart_id,
            "rails": rails,
        }))
    }
    pub fn payment_failed(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_failed",
            format!(
                "The payment did not go through ({reason}); the cart is open, retry with another payment."
            ),
        )
        .with_details(json!({ "reason": reason }))
    }
    pub fn x402_not_configured() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "x402_not_configured",
            "An x402 payment was sent but x402 is not activated on this server; pay with MPP instead.",
        )
    }
    pub fn checkout_engine_unavailable(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "checkout_engine_unavailable",
            "The payment provider is unreachable; the cart is safe. Retry with the same Idempotency-Key.",
        )
        .with_retry_after(retry_after)
    }
    // --- 409 ---
    pub fn cart_locked() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "cart_locked",
            "Checkout is in progress for this cart; wait and retry.",
        )
    }
    pub fn cart_already_completed() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "cart_already_completed",
            "This cart was already purchased; create a new cart.",
        )
    }
    pub fn idempotency_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "This Idempotency-Key was already used with a different request body; use a new key.",
        )
    }
    pub fn idempotency_in_progress() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still running; retry shortly with the same key.",
        )
        .with_retry_after(1)
    }
    // --- 422 ---
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", format!("{field} {reason}"))
            .with_details(json!({ "field": field, "reason": reason }))
    }
    // --- others ---
    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request bodies may be at most 1 MiB.")
            .with_details(json!({ "max_bytes": crate::http::MAX_BODY_BYTES }))
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This method is not allowed on this path.",
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Rate limit exceeded; wait for Retry-After seconds.",
        )
        .with_retry_after(retry_after)
    }
    pub fn upstream_unavailable(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            "A required upstream service is temporarily unavailable; retry with the same Idempotency-Key.",
        )
        .with_retry_after(retry_after)
    }
    pub fn internal(request_id: Option<&str>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error; quote the request id if you report it.",
        )
        .with_details(json!({ "request_id": request_id }))
    }

    /// The response body, exactly as sent (and as stored for idempotent replay).
    pub fn body(&self) -> ErrorBody {
        let is_503 = self.status == StatusCode::SERVICE_UNAVAILABLE;
        ErrorBody {
            error: self.code.to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
            retry_after_seconds: if is_503 { self.retry_after } else { None },
            retryable: is_503.then_some(true),
        }
    }

    pub fn body_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self.body()).unwrap_or_else(|_| json!({}));
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra, &mut value) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorParts;
    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorParts {
        &mut self.0
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::validation(&e.field, e.reason)
    }
}

impl From<StoreError> for ApiError {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "database unavailable");
                ApiError::upstream_unavailable(2)
            }
            other => {
                let at = std::panic::Location::caller();
                tracing::error!(error = %other, location = %at, "store error");
                ApiError::internal(None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body_bytes()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(*name, value);
            }
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}
