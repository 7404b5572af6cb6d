//! Kifly's payment rails, as a library: provider HTTP clients and protocol codecs, no storage.
//!
//! | module | what it speaks | used for |
//! |---|---|---|
//! | [`stripe`] | Stripe REST API (form-encoded), `Stripe-Signature` webhooks | rail 1 (Checkout) and rail 3 settlement (PaymentIntent with a shared payment token) |
//! | [`coinbase`] | Coinbase Commerce API, `X-CC-Webhook-Signature` webhooks | rail 2 |
//! | [`mpp`] | the `Payment` HTTP authentication scheme (`WWW-Authenticate` / `Authorization` / `Payment-Receipt`) | rail 3 challenge and credential |
//! | [`x402`] | x402 v2 (and v1) headers, EIP-712 `TransferWithAuthorization`, facilitator API | rail 4 |
//! | [`provider`] | one small trait over the two hosted-checkout providers | rails 1 and 2 |
//!
//! Why a separate crate: the provider clients are the part of checkout that talks to the outside world, and
//! they are tested against loopback fakes without a database. The built-in sandbox (served by the `kifly`
//! binary) reuses the same types, signers and verifiers, so the production code path runs in every demo.
//!
//! What this crate deliberately does not do: remember anything. Single use of MPP challenge ids, x402
//! nonces and webhook event ids is the caller's job (the store), and so is the mapping of errors to HTTP
//! answers. Every verifier returns the identifier the caller must record.
//!
//! Money is integer cents (`i64`) everywhere; x402 amounts are atomic-unit decimal strings. Secrets are
//! wrapped in [`Secret`] so they never reach a log through `Debug`.

pub mod coinbase;
mod encoding;
mod error;
mod http;
pub mod mpp;
pub mod provider;
pub mod stripe;
pub mod x402;

pub use error::{ConfigError, Idempotent, ProviderError};
pub use http::Timeouts;

use std::fmt;

/// A secret string (API key, webhook secret, HMAC key). `Debug` shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (a header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Shortens a token for logs and error messages: `spt_1234…` (the first 8 characters at most).
pub fn redact(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    if head.len() < token.len() { format!("{head}…") } else { head }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_debug_print() {
        let secret = Secret::new("sk_live_abcdef");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "sk_live_abcdef");
    }

    #[test]
    fn redact_keeps_a_short_prefix() {
        assert_eq!(redact("spt_1234567890"), "spt_1234…");
        assert_eq!(redact("abc"), "abc");
    }
}
