//! The one place that builds `reqwest` clients and classifies transport failures.
//!
//! TLS is reqwest's `rustls` feature, which brings its own crypto provider (aws-lc-rs). The lighter
//! `rustls-no-provider` + ring was rejected: cargo unifies reqwest's features across the workspace, and
//! with `rustls-no-provider` every *other* `reqwest::Client::builder().build()` in the same build (the
//! server's integration tests, for one) panics unless it installs a process-wide provider first. Plain
//! `http://` base URLs work too, which is how the loopback fakes and the built-in sandbox are reached.

use std::time::Duration;

use crate::error::{ConfigError, ProviderError};

/// Timeouts applied to every outbound call of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed to open the TCP (and TLS) connection.
    pub connect: Duration,
    /// Time allowed for the whole request, connect included, until the body is read.
    pub total: Duration,
}

impl Default for Timeouts {
    /// 3 s to connect, 15 s in total: long enough for a card authorisation, short enough that an agent's
    /// request does not hang.
    fn default() -> Self {
        Self { connect: Duration::from_secs(3), total: Duration::from_secs(15) }
    }
}

pub(crate) fn build_client(timeouts: Timeouts) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(concat!("kifly-payments/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| ConfigError(format!("http client: {error}")))
}

/// Checks a configured base URL and removes a trailing slash so paths can be appended.
pub(crate) fn normalize_base_url(base_url: &str) -> Result<String, ConfigError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    if !(trimmed.starts_with("https://") || trimmed.starts_with("http://")) {
        return Err(ConfigError(format!("base URL must start with http:// or https://, got {trimmed:?}")));
    }
    Ok(trimmed.to_string())
}

/// Maps a transport-level failure (no HTTP status) to [`ProviderError::Unavailable`].
pub(crate) fn transport_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body unreadable"
    } else {
        "request failed"
    };
    ProviderError::unavailable(format!("{provider}: {kind}"))
}

/// `Retry-After` in whole seconds, when present and numeric.
pub(crate) fn retry_after_seconds(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// Path segments we put into URLs come from provider ids (`cs_…`, `pi_…`); anything else is refused so
/// an id can never change the path.
pub(crate) fn check_path_id(id: &str) -> Result<&str, ProviderError> {
    let valid = !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(id)
    } else {
        Err(ProviderError::invalid(400, "identifier contains characters not allowed in a path"))
    }
}

/// Idempotency keys: 1–255 printable ASCII characters (Stripe's limit).
pub(crate) fn check_idempotency_key(key: &str) -> Result<&str, ProviderError> {
    let valid = !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        Ok(key)
    } else {
        Err(ProviderError::invalid(400, "idempotency key must be 1-255 printable ASCII characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(normalize_base_url("https://api.stripe.com/").as_deref(), Ok("https://api.stripe.com"));
        assert_eq!(
            normalize_base_url("http://127.0.0.1:9/sandbox/stripe").as_deref(),
            Ok("http://127.0.0.1:9/sandbox/stripe")
        );
        assert!(normalize_base_url("ftp://x").is_err());
    }

    #[test]
    fn path_ids_and_keys_are_restricted() {
        assert!(check_path_id("cs_test_a1B2").is_ok());
        assert!(check_path_id("../v1/charges").is_err());
        assert!(check_path_id("").is_err());
        assert!(check_idempotency_key("mpp:abc-123").is_ok());
        assert!(check_idempotency_key("has space").is_err());
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }
}
