//! A minimal Stripe API client: Checkout Sessions (rail 1), PaymentIntents paid with a shared payment
//! token (rail 3), and `Stripe-Signature` webhooks.
//!
//! Why hand-written: the surface is six calls, and `async-stripe` 1.0 is a release candidate with its own
//! HTTP stack. This client is ~300 lines over `reqwest`, and its base URL is configurable so the same code
//! talks to `https://api.stripe.com`, to the built-in sandbox (`…/sandbox/stripe`) and to test fakes.
//!
//! Exactly-once: every POST carries an `Idempotency-Key` chosen by the caller (derive it from the MPP
//! challenge id or the order id, never from something that changes between retries). Stripe answers a
//! retry with the stored response and `Idempotent-Replayed: true`, which [`Idempotent::replayed`]
//! exposes. `Stripe-Version` is pinned so a dashboard upgrade cannot change the shapes we parse.

mod form;
mod types;
mod webhook;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub use form::Form;
pub use types::{
    Address, CheckoutLineItem, CheckoutPaymentStatus, CheckoutSession, CheckoutSessionStatus,
    CreateCheckoutSession, CreateSptPaymentIntent, GrantTestToken, PaymentError, PaymentIntent,
    PaymentIntentStatus, SharedPaymentGrantedToken, Shipping, SptParameter, StripeErrorBody,
    StripeErrorDetail, UsageLimits,
};
pub use webhook::{
    SIGNATURE_HEADER, StripeEvent, StripeEventKind, StripeWebhookError, WEBHOOK_TOLERANCE, construct_event,
    event_body, parse_event, sign_webhook, verify_signature,
};

use crate::Secret;
use crate::error::{ConfigError, Idempotent, ProviderError};
use crate::http::{self, Timeouts};

/// Production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The pinned `Stripe-Version`. The same preview version the mppx CLI sends when it mints shared payment
/// tokens, so the token and the PaymentIntent that spends it speak one API version.
pub const DEFAULT_API_VERSION: &str = "2026-07-29.preview";

/// Stripe client settings.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, the sandbox (`http://127.0.0.1:…/sandbox/stripe`) or a fake.
    pub base_url: String,
    /// `sk_live_…` / `sk_test_…` (sent as HTTP basic user, as Stripe's SDKs do).
    pub secret_key: Secret,
    /// Sent as `Stripe-Version` on every request.
    pub api_version: String,
    /// Per-request timeouts.
    pub timeouts: Timeouts,
    /// Where the shared payment token goes when creating a PaymentIntent.
    pub spt_parameter: SptParameter,
}

impl StripeConfig {
    /// Production defaults for `secret_key`.
    pub fn new(secret_key: impl Into<Secret>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            secret_key: secret_key.into(),
            api_version: DEFAULT_API_VERSION.to_string(),
            timeouts: Timeouts::default(),
            spt_parameter: SptParameter::default(),
        }
    }

    /// Same settings against another base URL (sandbox, fake).
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

/// The Stripe API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base_url: String,
    secret_key: Secret,
    api_version: String,
    spt_parameter: SptParameter,
}

impl StripeClient {
    /// Builds a client; fails only on a malformed base URL or TLS setup.
    pub fn new(config: StripeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            http: http::build_client(config.timeouts)?,
            base_url: http::normalize_base_url(&config.base_url)?,
            secret_key: config.secret_key,
            api_version: config.api_version,
            spt_parameter: config.spt_parameter,
        })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /v1/checkout/sessions`: a hosted payment page for an order.
    pub async fn create_checkout_session(
        &self,
        request: &CreateCheckoutSession,
        idempotency_key: &str,
    ) -> Result<Idempotent<CheckoutSession>, ProviderError> {
        self.post("/v1/checkout/sessions", &request.to_form(), idempotency_key).await
    }

    /// `GET /v1/checkout/sessions/{id}`: used to recover the outcome after a lost webhook or a crash.
    pub async fn retrieve_checkout_session(
        &self,
        session_id: &str,
    ) -> Result<CheckoutSession, ProviderError> {
        let path = format!("/v1/checkout/sessions/{}", http::check_path_id(session_id)?);
        Ok(self.send(Method::GET, &path, None, None).await?.value)
    }

    /// `POST /v1/checkout/sessions/{id}/expire`: cancels an open session (cart checkout cancelled).
    pub async fn expire_checkout_session(
        &self,
        session_id: &str,
        idempotency_key: &str,
    ) -> Result<Idempotent<CheckoutSession>, ProviderError> {
        let path = format!("/v1/checkout/sessions/{}/expire", http::check_path_id(session_id)?);
        self.post(&path, &Form::new(), idempotency_key).await
    }

    /// `POST /v1/payment_intents` with `confirm=true` and a shared payment token (the MPP rail).
    ///
    /// A decline is [`ProviderError::Declined`]; a PaymentIntent that comes back in any status other than
    /// `succeeded` is returned as is, for the caller to treat as not paid.
    pub async fn create_payment_intent_with_spt(
        &self,
        request: &CreateSptPaymentIntent,
        idempotency_key: &str,
    ) -> Result<Idempotent<PaymentIntent>, ProviderError> {
        self.post("/v1/payment_intents", &request.to_form(self.spt_parameter), idempotency_key).await
    }

    /// `POST /v1/test_helpers/shared_payment/granted_tokens` (test mode only): mints a shared payment token
    /// the way an agent's wallet would, for end-to-end tests against Stripe test mode or the sandbox.
    pub async fn create_test_granted_token(
        &self,
        request: &GrantTestToken,
        idempotency_key: &str,
    ) -> Result<Idempotent<SharedPaymentGrantedToken>, ProviderError> {
        self.post("/v1/test_helpers/shared_payment/granted_tokens", &request.to_form(), idempotency_key).await
    }

    /// `GET /v1/payment_intents/{id}`.
    pub async fn retrieve_payment_intent(
        &self,
        payment_intent_id: &str,
    ) -> Result<PaymentIntent, ProviderError> {
        let path = format!("/v1/payment_intents/{}", http::check_path_id(payment_intent_id)?);
        Ok(self.send(Method::GET, &path, None, None).await?.value)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<Idempotent<T>, ProviderError> {
        let key = http::check_idempotency_key(idempotency_key)?;
        self.send(Method::POST, path, Some(form), Some(key)).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Idempotent<T>, ProviderError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(self.secret_key.expose(), None::<&str>)
            .header("Stripe-Version", &self.api_version);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(form) = form {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.encode());
        }
        let response = request.send().await.map_err(|error| http::transport_error("stripe", &error))?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let retry_after = http::retry_after_seconds(response.headers());
        let body = response.bytes().await.map_err(|error| http::transport_error("stripe", &error))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(|value| Idempotent { value, replayed })
                .map_err(|_| ProviderError::unavailable(format!("stripe: unreadable {status} response")));
        }
        Err(classify_error(status, &body, retry_after))
    }
}

/// Maps a Stripe error response to a [`ProviderError`].
fn classify_error(status: StatusCode, body: &[u8], retry_after_seconds: Option<u64>) -> ProviderError {
    let detail = serde_json::from_slice::<StripeErrorBody>(body).map(|body| body.error).unwrap_or_default();
    let message = detail.message.clone().unwrap_or_else(|| format!("HTTP {status}"));
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::Unavailable {
            reason: format!("stripe: HTTP {}", status.as_u16()),
            retry_after_seconds,
        };
    }
    if status == StatusCode::PAYMENT_REQUIRED || detail.kind.as_deref() == Some("card_error") {
        return ProviderError::Declined {
            code: detail.code.unwrap_or_else(|| "card_declined".to_string()),
            decline_code: detail.decline_code,
            message,
            payment_intent_id: detail.payment_intent,
        };
    }
    ProviderError::InvalidRequest {
        status: status.as_u16(),
        code: detail.code.or(detail.kind),
        message,
        param: detail.param,
    }
}

/// Checkout Sessions may expire 30 minutes to 24 hours after creation; clamps a wanted lifetime to that.
pub fn clamp_checkout_lifetime(wanted: Duration) -> Duration {
    wanted.clamp(Duration::from_secs(30 * 60), Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_the_caller() {
        let declined = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined.","payment_intent":{"id":"pi_9"}}}"#;
        assert_eq!(
            classify_error(StatusCode::PAYMENT_REQUIRED, declined, None),
            ProviderError::Declined {
                code: "card_declined".into(),
                decline_code: Some("generic_decline".into()),
                message: "Your card was declined.".into(),
                payment_intent_id: Some("pi_9".into()),
            }
        );
        let invalid = br#"{"error":{"type":"invalid_request_error","message":"No such token","param":"shared_payment_granted_token"}}"#;
        assert!(matches!(
            classify_error(StatusCode::BAD_REQUEST, invalid, None),
            ProviderError::InvalidRequest { status: 400, param: Some(_), .. }
        ));
        assert_eq!(
            classify_error(StatusCode::TOO_MANY_REQUESTS, b"", Some(2)),
            ProviderError::Unavailable { reason: "stripe: HTTP 429".into(), retry_after_seconds: Some(2) }
        );
        assert!(classify_error(StatusCode::BAD_GATEWAY, b"<html>", None).is_retryable());
    }

    #[test]
    fn checkout_lifetime_is_clamped() {
        assert_eq!(clamp_checkout_lifetime(Duration::from_secs(60)), Duration::from_secs(1800));
        assert_eq!(clamp_checkout_lifetime(Duration::from_secs(100_000)), Duration::from_secs(86_400));
    }
}
