//! The payment providers as this server is configured: each real provider client pointed either at
//! the provider's API (credentials set) or at the built-in sandbox served by this same process (no
//! credentials, or `payments_sandbox` / `serve --demo`).
//!
//! Why the sandbox is reached over HTTP rather than called in-process: the production client code —
//! form encoding, idempotency keys, error classification, webhook signatures — then runs in every demo
//! and every test. Sandbox credentials are derived from the server secret, so they differ per
//! installation and never need configuring.

use kifly_payments::Secret;
use kifly_payments::coinbase::{CoinbaseClient, CoinbaseConfig};
use kifly_payments::mpp::ChallengeSigner;
use kifly_payments::stripe::{StripeClient, StripeConfig};
use kifly_payments::x402::{Address, EvmNetwork, FacilitatorClient, FacilitatorConfig};

use crate::config::Config;
use crate::sandbox::{Sandbox, SandboxConfig};

/// Rail 4 settings; absent when x402 is off.
#[derive(Debug, Clone)]
pub struct X402Rail {
    pub network: EvmNetwork,
    pub pay_to: Address,
    pub facilitator: FacilitatorClient,
}

/// Every provider client the checkout needs, plus the sandbox when any provider uses it.
#[derive(Clone)]
pub struct Payments {
    pub stripe: StripeClient,
    pub stripe_webhook_secret: Secret,
    pub coinbase: CoinbaseClient,
    pub coinbase_webhook_secret: Secret,
    /// Issues and verifies MPP challenges (key derived from the server secret).
    pub mpp: ChallengeSigner,
    /// Stripe business network profile id placed in MPP challenges.
    pub stripe_network_id: String,
    pub x402: Option<X402Rail>,
    /// Base of links handed to buyers (pay pages, tracked handoff links).
    pub public_url: String,
    /// Served under `/sandbox` when set.
    pub sandbox: Option<Sandbox>,
    /// Whether Stripe is the sandbox (answers say `livemode: false`).
    pub stripe_is_sandbox: bool,
}

/// A secret derived from the server secret for one purpose (64 hex characters).
fn derive(secret: &str, purpose: &str) -> String {
    crate::auth::hash_key(secret.as_bytes(), purpose)
}

/// `http://127.0.0.1:PORT` for a bind address: how this process reaches itself (wildcard binds are
/// reached on loopback).
pub fn loopback_url(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let ip = if addr.is_ipv4() { "127.0.0.1".to_string() } else { "[::1]".to_string() };
            format!("http://{ip}:{}", addr.port())
        }
        Ok(addr) => format!("http://{addr}"),
        Err(_) => format!("http://{bind}"),
    }
}

/// The built-in sandbox's settings for this server: credentials derived from the server secret,
/// webhooks sent to this process on loopback, pay pages under the public URL.
pub fn sandbox_config(config: &Config, server_secret: &str) -> SandboxConfig {
    let own_url = loopback_url(&config.bind);
    let public_url =
        config.public_url.clone().unwrap_or_else(|| own_url.clone()).trim_end_matches('/').to_string();
    SandboxConfig {
        stripe_secret_key: format!("sk_test_kifly_{}", &derive(server_secret, "sandbox stripe key")[..32]),
        stripe_webhook_secret: format!("whsec_{}", &derive(server_secret, "sandbox stripe webhook")[..32]),
        coinbase_api_key: derive(server_secret, "sandbox coinbase key")[..32].to_string(),
        coinbase_webhook_secret: derive(server_secret, "sandbox coinbase webhook")[..32].to_string(),
        webhook_base_url: own_url,
        public_base_url: public_url,
    }
}

impl Payments {
    /// Builds the clients. Fails only on malformed URLs in the configuration.
    pub fn from_config(config: &Config, server_secret: &str) -> Result<Payments, String> {
        let force = config.payments_sandbox;
        let sandbox_config = sandbox_config(config, server_secret);
        // This process on loopback (where the sandbox is), and the base of links handed to buyers.
        let own_url = sandbox_config.webhook_base_url.clone();
        let public_url = sandbox_config.public_base_url.clone();
        let err = |e: kifly_payments::ConfigError| e.0;

        let stripe_real = config.stripe_secret_key.clone().filter(|_| !force);
        let stripe_is_sandbox = stripe_real.is_none();
        let (stripe, stripe_webhook_secret) = match stripe_real {
            Some(key) => (
                StripeClient::new(StripeConfig::new(key).with_base_url(&config.stripe_base_url))
                    .map_err(err)?,
                Secret::new(config.stripe_webhook_secret.clone().unwrap_or_default()),
            ),
            None => (
                StripeClient::new(
                    StripeConfig::new(sandbox_config.stripe_secret_key.clone())
                        .with_base_url(format!("{own_url}/sandbox/stripe")),
                )
                .map_err(err)?,
                Secret::new(sandbox_config.stripe_webhook_secret.clone()),
            ),
        };

        let coinbase_real = config.coinbase_api_key.clone().filter(|_| !force);
        let coinbase_is_sandbox = coinbase_real.is_none();
        let (coinbase, coinbase_webhook_secret) = match coinbase_real {
            Some(key) => (
                CoinbaseClient::new(CoinbaseConfig::new(key).with_base_url(&config.coinbase_base_url))
                    .map_err(err)?,
                Secret::new(config.coinbase_webhook_secret.clone().unwrap_or_default()),
            ),
            None => (
                CoinbaseClient::new(
                    CoinbaseConfig::new(sandbox_config.coinbase_api_key.clone())
                        .with_base_url(format!("{own_url}/sandbox/coinbase")),
                )
                .map_err(err)?,
                Secret::new(sandbox_config.coinbase_webhook_secret.clone()),
            ),
        };

        // x402 is on when a payee is configured, and always in the sandbox (with a derived payee).
        let facilitator_real = config.x402_facilitator_url.clone().filter(|_| !force);
        let x402_is_sandbox = facilitator_real.is_none();
        let x402 = match (&config.x402_pay_to, force) {
            (Some(pay_to), _) => Some(pay_to.parse::<Address>().map_err(|e| e.0.to_string())?),
            (None, true) => Some(Address(
                hex::decode(&derive(server_secret, "sandbox x402 payee")[..40])
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .unwrap_or([0x4b; 20]),
            )),
            (None, false) => None,
        };
        let x402 = match x402 {
            Some(pay_to) => {
                let url = facilitator_real.unwrap_or_else(|| format!("{own_url}/sandbox/x402"));
                Some(X402Rail {
                    network: EvmNetwork::find(&config.x402_network)
                        .ok_or_else(|| format!("x402_network {:?} is not supported", config.x402_network))?,
                    pay_to,
                    facilitator: FacilitatorClient::new(FacilitatorConfig::new(url)).map_err(err)?,
                })
            }
            None => None,
        };

        let realm = url_host(&public_url);
        let mpp = ChallengeSigner::new(realm, derive(server_secret, "mpp challenge"));
        let sandbox = (stripe_is_sandbox || coinbase_is_sandbox || (x402.is_some() && x402_is_sandbox))
            .then(|| Sandbox::new(sandbox_config));
        if sandbox.is_some() && !force {
            // No credentials is a legitimate setup (a trial), but on a real shop it means orders are
            // "paid" with test money: say so loudly, once, at start.
            let sandboxed: Vec<&str> = [
                (stripe_is_sandbox, "stripe"),
                (coinbase_is_sandbox, "coinbase"),
                (x402.is_some() && x402_is_sandbox, "x402"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            tracing::warn!(
                providers = sandboxed.join(","),
                "payment providers without credentials use the built-in sandbox: payments are test payments (livemode false)"
            );
        }
        Ok(Payments {
            stripe,
            stripe_webhook_secret,
            coinbase,
            coinbase_webhook_secret,
            mpp,
            stripe_network_id: config.stripe_network_id.clone(),
            x402,
            public_url,
            sandbox,
            stripe_is_sandbox,
        })
    }
}

/// The host of an http(s) URL (no port): the MPP realm.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.parse::<axum::http::uri::Authority>() {
        Ok(a) => a.host().trim_start_matches('[').trim_end_matches(']').to_string(),
        Err(_) => authority.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_realm() {
        assert_eq!(loopback_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(loopback_url("127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(url_host("https://shop.example.com:8443/x"), "shop.example.com");
        assert_eq!(url_host("http://127.0.0.1:8080"), "127.0.0.1");
    }
}
