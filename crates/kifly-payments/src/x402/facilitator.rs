//! HTTP client for an x402 facilitator: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! Facilitators answer a refused payment either with 200 and `isValid: false` / `success: false`, or with
//! a 4xx whose body is the same document; both come back as `Ok` with the refusal inside. Only transport
//! failures, 5xx, 429 and unreadable answers are errors ([`ProviderError::Unavailable`]); for `/settle`
//! that means "outcome unknown": retry the same payload (the token contract rejects a second use of the
//! nonce, so a retry cannot pay twice) or check the chain before giving up.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::types::{FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse};
use crate::Secret;
use crate::error::{ConfigError, ProviderError};
use crate::http::{self, Timeouts};

/// Facilitator client settings.
#[derive(Debug, Clone)]
pub struct FacilitatorConfig {
    /// Base URL; `/verify`, `/settle` and `/supported` are appended (e.g. `http://127.0.0.1:8080/sandbox/x402`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when the facilitator needs one.
    pub bearer_token: Option<Secret>,
    /// Per-request timeouts. Settlement waits for a block, so allow more than for card calls.
    pub timeouts: Timeouts,
}

impl FacilitatorConfig {
    /// Settings for `base_url` with default timeouts and no token.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), bearer_token: None, timeouts: Timeouts::default() }
    }
}

/// The facilitator client.
#[derive(Debug, Clone)]
pub struct FacilitatorClient {
    http: reqwest::Client,
    base_url: String,
    bearer_token: Option<Secret>,
}

impl FacilitatorClient {
    /// Builds a client; fails only on a malformed base URL or TLS setup.
    pub fn new(config: FacilitatorConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            http: http::build_client(config.timeouts)?,
            base_url: http::normalize_base_url(&config.base_url)?,
            bearer_token: config.bearer_token,
        })
    }

    /// `POST /verify`.
    pub async fn verify(&self, request: &FacilitatorRequest) -> Result<VerifyResponse, ProviderError> {
        self.send(self.http.post(format!("{}/verify", self.base_url)).json(request)).await
    }

    /// `POST /settle`.
    pub async fn settle(&self, request: &FacilitatorRequest) -> Result<SettleResponse, ProviderError> {
        self.send(self.http.post(format!("{}/settle", self.base_url)).json(request)).await
    }

    /// `GET /supported`.
    pub async fn supported(&self) -> Result<SupportedResponse, ProviderError> {
        self.send(self.http.get(format!("{}/supported", self.base_url))).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut builder: reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        if let Some(token) = &self.bearer_token {
            builder = builder.bearer_auth(token.expose());
        }
        let response =
            builder.send().await.map_err(|error| http::transport_error("x402 facilitator", &error))?;
        let status = response.status();
        let retry_after_seconds = http::retry_after_seconds(response.headers());
        let body =
            response.bytes().await.map_err(|error| http::transport_error("x402 facilitator", &error))?;
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ProviderError::Unavailable {
                reason: format!("x402 facilitator: HTTP {}", status.as_u16()),
                retry_after_seconds,
            });
        }
        match serde_json::from_slice::<T>(&body) {
            Ok(document) => Ok(document),
            Err(_) if status.is_success() => {
                Err(ProviderError::unavailable(format!("x402 facilitator: unreadable {status} response")))
            }
            Err(_) => Err(ProviderError::invalid(
                status.as_u16(),
                String::from_utf8_lossy(&body).chars().take(200).collect::<String>(),
            )),
        }
    }
}
