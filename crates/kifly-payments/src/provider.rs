//! The two human rails (Stripe Checkout, Coinbase Commerce) behind one call, so the checkout service
//! does not branch on the provider: "make a hosted payment page for this order".
//!
//! A closed enum rather than a trait object: there are exactly two providers, the match is exhaustive,
//! and no `async-trait` boxing is needed. Webhooks stay provider-specific ([`crate::stripe`],
//! [`crate::coinbase`]) because their verification and event shapes have nothing in common.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::coinbase::{CoinbaseClient, CreateCharge};
use crate::error::{Idempotent, ProviderError};
use crate::stripe::{CheckoutLineItem, CreateCheckoutSession, Shipping, StripeClient};

/// A payment rail's public name (`payment_rail` in API answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rail {
    /// Rail 1.
    StripeCheckout,
    /// Rail 2.
    CoinbaseCommerce,
    /// Rail 3.
    StripeMpp,
    /// Rail 4.
    X402,
}

impl Rail {
    /// `stripe-checkout`, `coinbase-commerce`, `stripe-mpp`, `x402`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StripeCheckout => "stripe-checkout",
            Self::CoinbaseCommerce => "coinbase-commerce",
            Self::StripeMpp => "stripe-mpp",
            Self::X402 => "x402",
        }
    }
}

/// What a hosted payment page is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedCheckoutRequest {
    /// Our order id; placed in metadata and as the client reference.
    pub order_id: String,
    /// Shown on the page (Coinbase charge name).
    pub seller_name: String,
    /// Lines, delivery fee included as its own line.
    pub lines: Vec<CheckoutLineItem>,
    /// Lower-case ISO currency.
    pub currency: String,
    /// Pre-fills the buyer's e-mail (Stripe).
    pub customer_email: Option<String>,
    /// Known shipping address (Stripe records it on the PaymentIntent).
    pub shipping: Option<Shipping>,
    /// Extra metadata (e.g. cart id); `order_id` is always added.
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds (Stripe; Coinbase charges expire on their own schedule).
    pub expires_at: i64,
    /// After payment.
    pub success_url: String,
    /// After giving up.
    pub cancel_url: Option<String>,
}

impl HostedCheckoutRequest {
    /// The total of the lines in cents.
    pub fn total_cents(&self) -> Option<i64> {
        self.lines
            .iter()
            .try_fold(0i64, |sum, line| sum.checked_add(line.unit_amount_cents.checked_mul(line.quantity)?))
    }

    fn metadata_with_order(&self) -> BTreeMap<String, String> {
        let mut metadata = self.metadata.clone();
        metadata.insert("order_id".into(), self.order_id.clone());
        metadata
    }
}

/// A created hosted payment page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedCheckout {
    /// Which rail.
    pub rail: Rail,
    /// Stripe session id (`cs_…`) or Coinbase charge code: what webhooks refer to.
    pub provider_reference: String,
    /// Where the buyer pays.
    pub payment_url: String,
    /// What the provider will charge, in cents.
    pub amount_cents: i64,
    /// Unix seconds, when the provider said.
    pub expires_at: Option<i64>,
    /// True when the provider answered from its idempotency cache.
    pub replayed: bool,
}

/// A hosted-checkout provider client.
#[derive(Debug, Clone)]
pub enum HostedCheckoutClient {
    /// Stripe Checkout.
    Stripe(StripeClient),
    /// Coinbase Commerce.
    Coinbase(CoinbaseClient),
}

impl HostedCheckoutClient {
    /// The rail this client serves.
    pub fn rail(&self) -> Rail {
        match self {
            Self::Stripe(_) => Rail::StripeCheckout,
            Self::Coinbase(_) => Rail::CoinbaseCommerce,
        }
    }

    /// Creates the hosted page. Use one idempotency key per order (e.g. `checkout:{order_id}`), so a retry
    /// after a timeout returns the same page instead of a second one.
    pub async fn create(
        &self,
        request: &HostedCheckoutRequest,
        idempotency_key: &str,
    ) -> Result<HostedCheckout, ProviderError> {
        let amount_cents =
            request.total_cents().ok_or_else(|| ProviderError::invalid(400, "order total overflows"))?;
        match self {
            Self::Stripe(client) => {
                let session = CreateCheckoutSession {
                    line_items: request.lines.clone(),
                    currency: request.currency.clone(),
                    customer_email: request.customer_email.clone(),
                    shipping: request.shipping.clone(),
                    collect_shipping_countries: Vec::new(),
                    client_reference_id: Some(request.order_id.clone()),
                    metadata: request.metadata_with_order(),
                    expires_at: request.expires_at,
                    success_url: request.success_url.clone(),
                    cancel_url: request.cancel_url.clone(),
                };
                let Idempotent { value, replayed } =
                    client.create_checkout_session(&session, idempotency_key).await?;
                let payment_url =
                    value.url.ok_or_else(|| ProviderError::unavailable("stripe: session has no url"))?;
                Ok(HostedCheckout {
                    rail: Rail::StripeCheckout,
                    provider_reference: value.id,
                    payment_url,
                    amount_cents: value.amount_total.unwrap_or(amount_cents),
                    expires_at: Some(value.expires_at),
                    replayed,
                })
            }
            Self::Coinbase(client) => {
                let names: Vec<String> =
                    request.lines.iter().map(|line| format!("{} × {}", line.quantity, line.name)).collect();
                let charge = CreateCharge {
                    name: request.seller_name.clone(),
                    description: names.join(", ").chars().take(200).collect(),
                    amount_cents,
                    currency: request.currency.clone(),
                    metadata: request.metadata_with_order(),
                    redirect_url: Some(request.success_url.clone()),
                    cancel_url: request.cancel_url.clone(),
                };
                let Idempotent { value, replayed } = client.create_charge(&charge, idempotency_key).await?;
                let expires_at = value
                    .expires_at
                    .as_deref()
                    .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
                    .map(OffsetDateTime::unix_timestamp);
                Ok(HostedCheckout {
                    rail: Rail::CoinbaseCommerce,
                    provider_reference: value.code,
                    payment_url: value.hosted_url,
                    amount_cents: value
                        .pricing
                        .and_then(|pricing| pricing.local.to_cents())
                        .unwrap_or(amount_cents),
                    expires_at,
                    replayed,
                })
            }
        }
    }
}
