//! Plain data that crosses the store boundary.

use std::collections::BTreeMap;

use kifly_core::address::ShippingAddress;
use kifly_core::catalog::Tier;
use kifly_core::coverage::Coverage;
use kifly_core::scope::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seller {
    pub id: String,
    pub handle: String,
    pub name: String,
    pub description: String,
    pub storefront_url: Option<String>,
    pub tier: Tier,
    pub delivery_fee_cents: i64,
    pub coverage: Coverage,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub seller_id: String,
    pub handle: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub brand: String,
    pub url: Option<String>,
    pub images: Vec<String>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub id: String,
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub options: BTreeMap<String, String>,
    pub price_cents: i64,
    /// `None` when the seller does not track stock.
    pub inventory: Option<i64>,
}

/// A variant with what a cart needs to know about its product and seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRef {
    pub variant: Variant,
    pub product_title: String,
    pub seller_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub seller_id: Option<String>,
    pub category: Option<String>,
}

/// A fingerprint of the catalog's rows (see [`crate::Store::catalog_version`]). Equal values mean
/// "nothing a search index reads has changed"; the fields themselves carry no meaning beyond that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatalogVersion {
    /// Number of sellers, products and variants.
    pub rows: [i64; 3],
    /// Newest `updated_at` of sellers, products and variants.
    pub max_updated_at: [i64; 3],
    /// Sum of `updated_at` modulo a prime, per table: moves even when an edit carries an older clock.
    pub checksum: [i64; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub sellers: u64,
    pub products: u64,
    pub variants: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    /// Keyed hash of the plaintext key (the plaintext is never stored).
    pub key_hash: String,
    /// The first characters of the key, for people to recognise it in lists.
    pub display_prefix: String,
    pub seller_id: Option<String>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub display_prefix: String,
    pub seller_id: Option<String>,
    pub seller_handle: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Cart lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartStatus {
    Open,
    CheckoutPending,
    Completed,
}

impl CartStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CartStatus::Open => "open",
            CartStatus::CheckoutPending => "checkout_pending",
            CartStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(CartStatus::Open),
            "checkout_pending" => Some(CartStatus::CheckoutPending),
            "completed" => Some(CartStatus::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub id: String,
    /// The agent key that owns the cart; any other key is told it does not exist.
    pub api_key_id: String,
    pub seller_id: String,
    pub status: CartStatus,
    pub shipping_address: Option<ShippingAddress>,
    /// Bumped on every change; payment challenges bind to it.
    pub version: i64,
    pub order_id: Option<String>,
    pub lines: Vec<CartLine>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One cart line, joined with the live variant and product data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub item_id: String,
    pub variant_id: String,
    pub product_id: String,
    pub product_title: String,
    pub variant_name: String,
    pub sku: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
    pub inventory: Option<i64>,
    /// When the line was added: lines are listed by it (then by id).
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCart {
    pub id: String,
    pub api_key_id: String,
    pub seller_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCartLine {
    pub item_id: String,
    pub cart_id: String,
    pub variant_id: String,
    pub quantity: i64,
}

/// What an idempotency key is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    /// The agent key id (or another principal id).
    pub principal: String,
    pub method: String,
    pub path: String,
    pub key: String,
}

/// Proof that this request holds the scope; needed to store or release its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub scope: IdempotencyScope,
    pub claim_token: String,
}

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This request may run; finish with `complete_idempotency` or `release_idempotency`.
    Claimed(IdempotencyClaim),
    /// Same key and same body, finished: replay this.
    Replay(StoredResponse),
    /// Same key, different body.
    Conflict,
    /// Same key, still running (lease not expired).
    InProgress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub api_key_id: String,
    pub action: String,
    pub resource_id: Option<String>,
    pub metadata: Option<String>,
    pub created_at: i64,
}

/// Order lifecycle: `pending_payment → paid → shipped → delivered`, or `pending_payment →
/// failed | expired | cancelled` (the cart reopens and the reserved stock comes back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Delivered,
    Failed,
    Expired,
    Cancelled,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Failed => "failed",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Failed,
            OrderStatus::Expired,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// The end states of an unpaid order (its reservation is released on the way there).
    pub const fn is_unpaid_end(self) -> bool {
        matches!(self, OrderStatus::Failed | OrderStatus::Expired | OrderStatus::Cancelled)
    }
}

/// One order line: a snapshot of the cart line at checkout (later price edits do not change it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    pub item_id: String,
    pub variant_id: String,
    pub product_id: String,
    pub name: String,
    pub variant_name: String,
    pub sku: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub id: String,
    pub cart_id: String,
    pub api_key_id: String,
    pub seller_id: String,
    pub payment_rail: String,
    /// The provider's handle for this payment (see the `orders` table); unique, so a single-use proof
    /// (MPP challenge id, x402 nonce) used as the session id can only ever make one order.
    pub session_id: String,
    pub payment_url: Option<String>,
    pub lines: Vec<OrderLine>,
    pub subtotal_cents: i64,
    pub delivery_fee_cents: i64,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: ShippingAddress,
    pub email: Option<String>,
    pub expires_at: Option<i64>,
    /// See the `orders.settlement_credential` column.
    pub settlement_credential: Option<Credential>,
    /// The buyer account the order belongs to (a buyer token was given at checkout).
    pub buyer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub cart_id: String,
    pub api_key_id: String,
    pub seller_id: String,
    pub status: OrderStatus,
    pub payment_rail: String,
    pub session_id: String,
    pub payment_url: Option<String>,
    pub payment_reference: Option<String>,
    pub lines: Vec<OrderLine>,
    pub subtotal_cents: i64,
    pub delivery_fee_cents: i64,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: ShippingAddress,
    pub email: Option<String>,
    pub expires_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub shipped_at: Option<i64>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub delivered_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub settlement_credential: Option<Credential>,
    pub buyer_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a shipped order is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shipment {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
}

/// Why an order did not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderTransition {
    /// The order moved to the new status.
    Applied(Order),
    /// The order was not in a status that allows the move; nothing changed.
    Refused(Order),
}

/// A stock reservation that could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfStock {
    pub variant_id: String,
    pub requested: i64,
    pub available: i64,
}

/// A buyer account: created by `register_buyer`, verified by a one-time code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    pub id: String,
    /// Normalised (trimmed, lower-case).
    pub email: String,
    pub name: String,
    pub default_address: Option<ShippingAddress>,
    pub verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The live one-time code of an e-mail address (hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerCode {
    pub email: String,
    pub code_hash: String,
    pub attempts: i64,
    pub expires_at: i64,
}

/// A mail to send, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// A queued mail claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Including this one.
    pub attempts: i64,
    pub status: String,
    pub last_error: Option<String>,
}

/// Agent feedback or a buyer's feature request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEntry {
    pub id: String,
    /// `feedback` or `feature_request`.
    pub kind: String,
    pub api_key_id: String,
    pub buyer_id: Option<String>,
    pub category: String,
    pub severity: String,
    /// JSON of the submitted fields.
    pub content: String,
    pub created_at: i64,
}

/// A payment credential kept while an order is pending (a shared payment token, a signed x402
/// payload). `Debug` never shows it, so an order can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub String);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}
