//! The Stripe objects Kifly reads and the requests it sends, reduced to the fields it uses.
//!
//! Objects derive both `Serialize` and `Deserialize` so the built-in sandbox can answer with the very
//! shapes this client parses. Unknown enum values deserialize to an `Unknown` variant instead of failing:
//! Stripe adds values without a version bump.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::form::Form;

/// `status` of a PaymentIntent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    /// Needs a (new) payment method; after a failed confirmation this is the declined state.
    RequiresPaymentMethod,
    /// Created but not confirmed.
    RequiresConfirmation,
    /// Needs customer action (3-D Secure); an agent cannot complete it.
    RequiresAction,
    /// Confirmed, outcome pending (some payment methods).
    Processing,
    /// Authorised, waiting for capture.
    RequiresCapture,
    /// Cancelled.
    Canceled,
    /// Paid.
    Succeeded,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// The last error Stripe recorded on a PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PaymentError {
    /// e.g. `card_declined`.
    #[serde(default)]
    pub code: Option<String>,
    /// e.g. `insufficient_funds`.
    #[serde(default)]
    pub decline_code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A Stripe PaymentIntent (the fields Kifly uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// Amount in cents.
    pub amount: i64,
    /// Lower-case ISO currency.
    pub currency: String,
    /// Lifecycle status.
    pub status: PaymentIntentStatus,
    /// Metadata we attached.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// False in test mode and in the sandbox.
    #[serde(default)]
    pub livemode: bool,
    /// Creation time (unix seconds).
    #[serde(default)]
    pub created: i64,
    /// Why the last confirmation failed, if it did.
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
    /// The charge created by the confirmation, when Stripe returns its id.
    #[serde(default, deserialize_with = "expandable_id")]
    pub latest_charge: Option<String>,
}

/// `status` of a Checkout Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutSessionStatus {
    /// Waiting for the buyer.
    Open,
    /// The buyer completed the page (payment may still be async, see `payment_status`).
    Complete,
    /// Expired or expired by us.
    Expired,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// `payment_status` of a Checkout Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutPaymentStatus {
    /// Funds are captured (or authorised for delayed capture).
    Paid,
    /// Not paid (yet).
    Unpaid,
    /// Nothing to pay.
    NoPaymentRequired,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// A Stripe Checkout Session (the fields Kifly uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: String,
    /// The hosted payment page; null once the session is complete or expired.
    #[serde(default)]
    pub url: Option<String>,
    /// Session status.
    #[serde(default)]
    pub status: Option<CheckoutSessionStatus>,
    /// Payment status.
    pub payment_status: CheckoutPaymentStatus,
    /// Total in cents.
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// Subtotal in cents.
    #[serde(default)]
    pub amount_subtotal: Option<i64>,
    /// Lower-case ISO currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Pre-filled or collected e-mail.
    #[serde(default)]
    pub customer_email: Option<String>,
    /// Our own reference (the order id).
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// Metadata we attached (links the session back to the order).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Expiry (unix seconds).
    #[serde(default)]
    pub expires_at: i64,
    /// Creation time (unix seconds).
    #[serde(default)]
    pub created: i64,
    /// The PaymentIntent behind the session (an id, also when Stripe expanded it).
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    /// False in test mode and in the sandbox.
    #[serde(default)]
    pub livemode: bool,
}

/// Stripe returns related objects either as an id string or, when expanded, as the object itself.
fn expandable_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Expandable {
        Id(String),
        Object { id: String },
    }
    Ok(Option::<Expandable>::deserialize(deserializer)?.map(|value| match value {
        Expandable::Id(id) | Expandable::Object { id } => id,
    }))
}

/// A postal address in Stripe's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    /// Street line 1.
    pub line1: String,
    /// Street line 2.
    #[serde(default)]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State / region code (`CA`).
    pub state: String,
    /// ZIP code.
    pub postal_code: String,
    /// ISO country (`US`).
    pub country: String,
}

/// Where the order ships; recorded on the PaymentIntent (`payment_intent_data[shipping]`), so the buyer
/// does not type the address the agent already gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Shipping {
    /// Recipient name.
    pub name: String,
    /// Recipient phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Address.
    pub address: Address,
}

/// One line of a Checkout Session, priced inline (`price_data`), so no Stripe catalog is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutLineItem {
    /// Shown on the payment page.
    pub name: String,
    /// Unit price in cents.
    pub unit_amount_cents: i64,
    /// Quantity (≥ 1).
    pub quantity: i64,
}

/// Parameters of `POST /v1/checkout/sessions` (mode `payment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCheckoutSession {
    /// Lines, including the delivery fee as its own line when there is one.
    pub line_items: Vec<CheckoutLineItem>,
    /// Lower-case ISO currency (`usd`).
    pub currency: String,
    /// Pre-fills the e-mail field.
    pub customer_email: Option<String>,
    /// Known shipping address, recorded on the PaymentIntent.
    pub shipping: Option<Shipping>,
    /// When non-empty, the page also collects a shipping address restricted to these countries
    /// (`shipping_address_collection`); leave empty when `shipping` is known.
    pub collect_shipping_countries: Vec<String>,
    /// Our reference (order id); also returned in webhooks.
    pub client_reference_id: Option<String>,
    /// Metadata on the session *and* on its PaymentIntent, linking both back to the order.
    pub metadata: BTreeMap<String, String>,
    /// Expiry, unix seconds (Stripe accepts 30 minutes to 24 hours ahead).
    pub expires_at: i64,
    /// Where the buyer lands after paying.
    pub success_url: String,
    /// Where the buyer lands after giving up.
    pub cancel_url: Option<String>,
}

impl CreateCheckoutSession {
    /// Sum of the lines in cents (what Stripe will charge); `None` on overflow.
    pub fn total_cents(&self) -> Option<i64> {
        self.line_items
            .iter()
            .try_fold(0i64, |sum, line| sum.checked_add(line.unit_amount_cents.checked_mul(line.quantity)?))
    }

    /// The form body Stripe receives.
    pub fn to_form(&self) -> Form {
        let mut form = Form::new();
        form.push("mode", "payment")
            .push("success_url", self.success_url.clone())
            .push_opt("cancel_url", self.cancel_url.clone());
        for (index, line) in self.line_items.iter().enumerate() {
            let prefix = format!("line_items[{index}]");
            form.push(format!("{prefix}[price_data][currency]"), self.currency.clone())
                .push(format!("{prefix}[price_data][unit_amount]"), line.unit_amount_cents.to_string())
                .push(format!("{prefix}[price_data][product_data][name]"), line.name.clone())
                .push(format!("{prefix}[quantity]"), line.quantity.to_string());
        }
        form.push_opt("customer_email", self.customer_email.clone())
            .push_opt("client_reference_id", self.client_reference_id.clone())
            .push("expires_at", self.expires_at.to_string())
            .push_map("metadata", &self.metadata)
            .push_map("payment_intent_data[metadata]", &self.metadata);
        if let Some(shipping) = &self.shipping {
            push_shipping(&mut form, "payment_intent_data[shipping]", shipping);
        }
        for (index, country) in self.collect_shipping_countries.iter().enumerate() {
            form.push(format!("shipping_address_collection[allowed_countries][{index}]"), country.clone());
        }
        form
    }
}

fn push_shipping(form: &mut Form, prefix: &str, shipping: &Shipping) {
    let address = &shipping.address;
    form.push(format!("{prefix}[name]"), shipping.name.clone())
        .push_opt(format!("{prefix}[phone]"), shipping.phone.clone())
        .push(format!("{prefix}[address][line1]"), address.line1.clone())
        .push_opt(format!("{prefix}[address][line2]"), address.line2.clone())
        .push(format!("{prefix}[address][city]"), address.city.clone())
        .push(format!("{prefix}[address][state]"), address.state.clone())
        .push(format!("{prefix}[address][postal_code]"), address.postal_code.clone())
        .push(format!("{prefix}[address][country]"), address.country.clone());
}

/// Where the shared payment token goes in `POST /v1/payment_intents`. Stripe has documented two forms
/// while SPTs are in preview; which one an account accepts depends on its API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SptParameter {
    /// `shared_payment_granted_token=spt_…` — what mppx's and pympp's stripe servers send, and what
    /// Stripe's agentic-commerce testing guide shows.
    #[default]
    TopLevel,
    /// `payment_method_data[shared_payment_granted_token]=spt_…` — the form in the API reference from
    /// `2026-04-22.preview` on.
    PaymentMethodData,
}

impl SptParameter {
    /// The form key for this placement.
    pub fn form_key(self) -> &'static str {
        match self {
            Self::TopLevel => "shared_payment_granted_token",
            Self::PaymentMethodData => "payment_method_data[shared_payment_granted_token]",
        }
    }
}

/// Parameters of a confirmed `POST /v1/payment_intents` paid with a shared payment token (MPP rail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSptPaymentIntent {
    /// Amount in cents.
    pub amount_cents: i64,
    /// Lower-case ISO currency.
    pub currency: String,
    /// The `spt_…` from the MPP credential.
    pub shared_payment_token: String,
    /// Statement/Dashboard description.
    pub description: Option<String>,
    /// Links the payment back to the order and the challenge.
    pub metadata: BTreeMap<String, String>,
    /// Known shipping address.
    pub shipping: Option<Shipping>,
}

impl CreateSptPaymentIntent {
    /// The form body Stripe receives: confirmed at once, no redirects (an agent cannot follow them).
    pub fn to_form(&self, placement: SptParameter) -> Form {
        let mut form = Form::new();
        form.push("amount", self.amount_cents.to_string())
            .push("currency", self.currency.clone())
            .push(placement.form_key(), self.shared_payment_token.clone())
            .push("confirm", "true")
            .push("automatic_payment_methods[enabled]", "true")
            .push("automatic_payment_methods[allow_redirects]", "never")
            .push_opt("description", self.description.clone())
            .push_map("metadata", &self.metadata);
        if let Some(shipping) = &self.shipping {
            push_shipping(&mut form, "shipping", shipping);
        }
        form
    }
}

/// Stripe's error envelope: `{"error": {"type", "code", "decline_code", "message", "param", "payment_intent"}}`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct StripeErrorBody {
    /// The error.
    pub error: StripeErrorDetail,
}

/// The inside of Stripe's error envelope.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct StripeErrorDetail {
    /// `card_error`, `invalid_request_error`, `api_error`, `idempotency_error`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// e.g. `card_declined`.
    #[serde(default)]
    pub code: Option<String>,
    /// e.g. `generic_decline`.
    #[serde(default)]
    pub decline_code: Option<String>,
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
    /// Offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// The PaymentIntent a card error belongs to.
    #[serde(default, deserialize_with = "expandable_id", skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
}

/// `POST /v1/test_helpers/shared_payment/granted_tokens`: grants the caller a test shared payment token.
/// This is what the mppx CLI posts to `MPPX_STRIPE_SPT_URL` (form fields `payment_method`,
/// `usage_limits[currency|max_amount|expires_at]`, `seller_details[network_id]`), so the sandbox parses
/// it with [`GrantTestToken::from_form`] and answers a [`SharedPaymentGrantedToken`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTestToken {
    /// Test payment method, e.g. `pm_card_visa` or `pm_card_chargeDeclined`.
    pub payment_method: String,
    /// Lower-case ISO currency.
    pub currency: String,
    /// Spending cap in cents.
    pub max_amount_cents: i64,
    /// Unix seconds after which the token is dead.
    pub expires_at: i64,
    /// Seller's business network profile id (test keys) or business profile (live keys).
    pub network_id: Option<String>,
}

impl GrantTestToken {
    /// Reads the request form; `None` when a required field is missing or not a number.
    pub fn from_form(form: &Form) -> Option<Self> {
        Some(Self {
            payment_method: form.get("payment_method")?.to_string(),
            currency: form.get("usage_limits[currency]")?.to_ascii_lowercase(),
            max_amount_cents: form.get("usage_limits[max_amount]")?.parse().ok()?,
            expires_at: form.get("usage_limits[expires_at]")?.parse().ok()?,
            network_id: form
                .get("seller_details[network_id]")
                .or_else(|| form.get("seller_details[network_business_profile]"))
                .map(str::to_string),
        })
    }

    /// The request form.
    pub fn to_form(&self) -> Form {
        let mut form = Form::new();
        form.push("payment_method", self.payment_method.clone())
            .push("usage_limits[currency]", self.currency.clone())
            .push("usage_limits[max_amount]", self.max_amount_cents.to_string())
            .push("usage_limits[expires_at]", self.expires_at.to_string())
            .push_opt("seller_details[network_id]", self.network_id.clone());
        form
    }
}

/// Limits a shared payment token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLimits {
    /// Lower-case ISO currency.
    pub currency: String,
    /// Cap in cents.
    pub max_amount: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A granted shared payment token (`spt_…`); clients only read `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPaymentGrantedToken {
    /// `spt_…`.
    pub id: String,
    /// `shared_payment.granted_token`.
    #[serde(default = "granted_token_object")]
    pub object: String,
    /// Creation time (unix seconds).
    #[serde(default)]
    pub created: i64,
    /// False in test mode and in the sandbox.
    #[serde(default)]
    pub livemode: bool,
    /// The limits.
    #[serde(default)]
    pub usage_limits: Option<UsageLimits>,
}

fn granted_token_object() -> String {
    "shared_payment.granted_token".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checkout_form_carries_lines_metadata_shipping_and_expiry() {
        let request = CreateCheckoutSession {
            line_items: vec![
                CheckoutLineItem { name: "Mug".into(), unit_amount_cents: 1250, quantity: 2 },
                CheckoutLineItem { name: "Delivery".into(), unit_amount_cents: 500, quantity: 1 },
            ],
            currency: "usd".into(),
            customer_email: Some("ada@example.com".into()),
            shipping: Some(Shipping {
                name: "Ada".into(),
                phone: None,
                address: Address {
                    line1: "1 Main St".into(),
                    line2: None,
                    city: "Austin".into(),
                    state: "TX".into(),
                    postal_code: "78701".into(),
                    country: "US".into(),
                },
            }),
            collect_shipping_countries: vec![],
            client_reference_id: Some("ord_1".into()),
            metadata: BTreeMap::from([("order_id".into(), "ord_1".into())]),
            expires_at: 1_800_000_000,
            success_url: "https://shop.example/ok".into(),
            cancel_url: None,
        };
        assert_eq!(request.total_cents(), Some(3000));
        let form = request.to_form();
        assert_eq!(form.get("mode"), Some("payment"));
        assert_eq!(form.get("line_items[0][price_data][unit_amount]"), Some("1250"));
        assert_eq!(form.get("line_items[0][quantity]"), Some("2"));
        assert_eq!(form.get("line_items[1][price_data][product_data][name]"), Some("Delivery"));
        assert_eq!(form.get("metadata[order_id]"), Some("ord_1"));
        assert_eq!(form.get("payment_intent_data[metadata][order_id]"), Some("ord_1"));
        assert_eq!(form.get("payment_intent_data[shipping][address][state]"), Some("TX"));
        assert_eq!(form.get("expires_at"), Some("1800000000"));
        assert_eq!(form.get("cancel_url"), None);
    }

    #[test]
    fn spt_payment_intent_form_matches_mppx() {
        let request = CreateSptPaymentIntent {
            amount_cents: 4200,
            currency: "usd".into(),
            shared_payment_token: "spt_123".into(),
            description: None,
            metadata: BTreeMap::from([("mpp_challenge_id".into(), "abc".into())]),
            shipping: None,
        };
        let form = request.to_form(SptParameter::TopLevel);
        assert_eq!(form.get("shared_payment_granted_token"), Some("spt_123"));
        assert_eq!(form.get("confirm"), Some("true"));
        assert_eq!(form.get("automatic_payment_methods[allow_redirects]"), Some("never"));
        let form = request.to_form(SptParameter::PaymentMethodData);
        assert_eq!(form.get("payment_method_data[shared_payment_granted_token]"), Some("spt_123"));
    }

    #[test]
    fn spt_test_helper_request_is_read_as_mppx_sends_it() {
        // Fields per protocols.md §10.1 (what the mppx CLI posts to MPPX_STRIPE_SPT_URL).
        let body = "payment_method=pm_card_visa&usage_limits%5Bcurrency%5D=usd&usage_limits%5Bmax_amount%5D=4199\
                    &usage_limits%5Bexpires_at%5D=1767229200&seller_details%5Bnetwork_id%5D=profile_test";
        let request = GrantTestToken::from_form(&Form::decode(body.replace(' ', "").as_bytes())).unwrap();
        assert_eq!(request.max_amount_cents, 4199);
        assert_eq!(request.network_id.as_deref(), Some("profile_test"));
        assert_eq!(GrantTestToken::from_form(&request.to_form()), Some(request));
        assert_eq!(GrantTestToken::from_form(&Form::decode(b"payment_method=pm_card_visa")), None);
        let token: SharedPaymentGrantedToken = serde_json::from_value(json!({"id": "spt_1"})).unwrap();
        assert_eq!(token.object, "shared_payment.granted_token");
    }

    #[test]
    fn objects_parse_expanded_ids_and_unknown_statuses() {
        let session: CheckoutSession = serde_json::from_value(json!({
            "id": "cs_test_1", "object": "checkout.session", "url": null, "status": "complete",
            "payment_status": "paid", "amount_total": 3000, "currency": "usd",
            "payment_intent": {"id": "pi_1", "object": "payment_intent"}, "metadata": {"order_id": "ord_1"},
            "expires_at": 1, "livemode": false, "brand_new_field": true
        }))
        .unwrap();
        assert_eq!(session.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(session.status, Some(CheckoutSessionStatus::Complete));
        let intent: PaymentIntent =
            serde_json::from_value(json!({"id": "pi_1", "amount": 5, "currency": "usd", "status": "something_new", "latest_charge": "ch_1"}))
                .unwrap();
        assert_eq!(intent.status, PaymentIntentStatus::Unknown);
        assert_eq!(intent.latest_charge.as_deref(), Some("ch_1"));
    }
}
