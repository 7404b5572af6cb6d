//! One error type for every outbound provider call, shaped by what the caller must answer:
//!
//! - [`ProviderError::Declined`]: the provider said no to this payment (Stripe 402 `card_error`). The
//!   caller answers 402 `payment_failed` with a fresh challenge; retrying the same payment is pointless.
//! - [`ProviderError::InvalidRequest`]: the provider rejected the request itself (4xx other than 402/429).
//!   This is a bug or a misconfiguration on our side; it is not retried.
//! - [`ProviderError::Unavailable`]: timeouts, connection failures, 5xx, 429, or an unreadable answer. The
//!   outcome is unknown, so the caller answers 503 `checkout_engine_unavailable` and a retry *with the same
//!   idempotency key* is safe and is the way to learn the outcome.

use std::fmt;

/// Why an outbound provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The payment was declined (e.g. Stripe `card_declined`).
    #[error("payment declined ({code}): {message}")]
    Declined {
        /// Provider error code, e.g. `card_declined`.
        code: String,
        /// Finer reason when the provider gives one, e.g. `insufficient_funds`.
        decline_code: Option<String>,
        /// Provider message, safe to show to a buyer.
        message: String,
        /// The PaymentIntent the decline belongs to, when Stripe reports it.
        payment_intent_id: Option<String>,
    },
    /// The provider rejected the request as invalid (our bug or configuration).
    #[error("provider rejected the request (HTTP {status}, {code:?}): {message}")]
    InvalidRequest {
        /// HTTP status from the provider.
        status: u16,
        /// Provider error code, when given.
        code: Option<String>,
        /// Provider message.
        message: String,
        /// The offending parameter, when given.
        param: Option<String>,
    },
    /// The provider could not be reached or did not give a usable answer; the outcome is unknown.
    #[error("provider unavailable: {reason}")]
    Unavailable {
        /// What went wrong (no secrets, no tokens).
        reason: String,
        /// The provider's `Retry-After`, when it sent one.
        retry_after_seconds: Option<u64>,
    },
}

impl ProviderError {
    pub(crate) fn unavailable(reason: impl fmt::Display) -> Self {
        Self::Unavailable { reason: reason.to_string(), retry_after_seconds: None }
    }

    pub(crate) fn invalid(status: u16, message: impl Into<String>) -> Self {
        Self::InvalidRequest { status, code: None, message: message.into(), param: None }
    }

    /// True for [`ProviderError::Unavailable`]: the same request may be retried with the same key.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A client could not be built from its configuration (bad base URL, TLS setup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider configuration: {0}")]
pub struct ConfigError(pub String);

/// A provider answer to an idempotent POST, with whether the provider replayed a stored answer
/// (Stripe's `Idempotent-Replayed: true`). A replay is normal after our own retry with the same key;
/// callers that key on something else may treat it as suspicious.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotent<T> {
    /// The provider object.
    pub value: T,
    /// True when the provider answered from its idempotency cache.
    pub replayed: bool,
}
