//! Checkout: from an open cart to an order, over four payment rails (SPEC §9).
//!
//! Every rail follows the same three steps, so money moves at most once whatever fails in between:
//!
//! 1. **Reserve** (one transaction): run the checks in the contract's order, create the order
//!    `pending_payment` under a unique session id, hold the stock, lock the cart.
//! 2. **Call the provider** outside any transaction, with an idempotency key derived from the order
//!    (hosted pages: `checkout:{order_id}`) or from the single-use proof (MPP: the challenge id).
//! 3. **Settle** (one transaction): paid → cart completed; declined → order failed, stock back, cart
//!    open. A provider that cannot be reached leaves the order pending: the retry (or the expiry
//!    sweep) resumes it with the same idempotency key, so the provider answers with the first result
//!    instead of charging twice.
//!
//! The single-use proofs are the orders' unique `session_id`: `mpp:{challenge id}` and
//! `x402:{payer}:{nonce}` can each make one order only, ever. Hosted pages (Stripe Checkout, Coinbase)
//! become paid only through a verified webhook ([`crate::service::webhooks`]).
//!
//! Directory-tier sellers never reach step 1: every checkout path answers with a handoff to the
//! seller's own site, with tracked links and no charge.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use kifly_core::catalog::Tier;
use kifly_core::ids::{IdKind, is_valid, new_id};
use kifly_core::limits::PlatformLimits;
use kifly_core::money::CURRENCY;
use kifly_core::scope::Scope;
use kifly_payments::ProviderError;
use kifly_payments::mpp::{
    self, CartBinding, ChallengeParams, PaymentCredential, Receipt, StripeMethodDetails,
};
use kifly_payments::provider::{HostedCheckoutClient, HostedCheckoutRequest, Rail};
use kifly_payments::stripe::{self, CheckoutLineItem, CreateSptPaymentIntent, PaymentIntentStatus};
use kifly_payments::x402::{self, ExactOffer, IncomingPayment, PaymentRequired, ResourceInfo};
use kifly_store::{
    Cart, CartStatus, NewOrder, Order, OrderLine, OrderStatus, OrderTransition, Seller, Shipment, StoreTx,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::carts::CartItemView;
use super::catalog::{SellerRecord, seller_record};
use crate::app::{App, now_ms, rfc3339};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Prefix of a hosted order's session id until the provider has made the page.
const UNSET_SESSION_PREFIX: &str = "unset:";
/// How long an agent-paid order (MPP, x402) may stay pending before the sweep settles it.
const AGENT_PAYMENT_GRACE_MS: i64 = 10 * 60 * 1000;
/// Seconds a client should wait after `checkout_engine_unavailable`.
const PROVIDER_RETRY_AFTER: u64 = 5;

/// `POST /api/agent/payment-link` (and the MCP `checkout` tool).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentLinkInput {
    pub cart_id: String,
    /// Pre-fills the buyer's e-mail on the payment page (where the receipt goes).
    pub email: Option<String>,
    /// A buyer token (`kfb_live_…`); never ask the buyer to paste one.
    pub buyer_token: Option<String>,
    /// `stripe-checkout` (default) or `coinbase-commerce`.
    pub rail: Option<String>,
}

/// `GET /api/agent/orders/{order_id or session_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub session_id: String,
    pub cart_id: String,
    /// `pending_payment`, `paid`, `shipped`, `delivered`, `failed`, `expired` or `cancelled`.
    pub status: &'static str,
    pub payment_rail: String,
    /// Where the buyer pays (hosted rails, while pending).
    pub payment_url: Option<String>,
    /// PaymentIntent id or on-chain transaction, once paid.
    pub payment_reference: Option<String>,
    /// Total in cents (subtotal + delivery fee).
    pub amount: i64,
    pub subtotal_cents: i64,
    pub delivery_fee_cents: i64,
    pub total_cents: i64,
    pub currency: String,
    /// The lines as bought (same shape as cart lines; prices fixed at checkout).
    pub items: Vec<CartItemView>,
    #[schema(value_type = Object)]
    pub shipping_address: kifly_core::address::ShippingAddress,
    pub seller: SellerRecord,
    pub expires_at: Option<String>,
    pub paid_at: Option<String>,
    pub shipped_at: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub fn order_view(order: &Order, seller: &Seller) -> OrderView {
    let ts = |ms: Option<i64>| ms.map(rfc3339);
    OrderView {
        order_id: order.id.clone(),
        session_id: order.session_id.clone(),
        cart_id: order.cart_id.clone(),
        status: order.status.as_str(),
        payment_rail: order.payment_rail.clone(),
        payment_url: order.payment_url.clone().filter(|_| order.status == OrderStatus::PendingPayment),
        payment_reference: order.payment_reference.clone(),
        amount: order.total_cents,
        subtotal_cents: order.subtotal_cents,
        delivery_fee_cents: order.delivery_fee_cents,
        total_cents: order.total_cents,
        currency: order.currency.clone(),
        items: order
            .lines
            .iter()
            .map(|l| CartItemView {
                item_id: l.item_id.clone(),
                variant_id: l.variant_id.clone(),
                product_id: l.product_id.clone(),
                name: l.name.clone(),
                variant_name: l.variant_name.clone(),
                sku: l.sku.clone(),
                unit_price_cents: l.unit_price_cents,
                quantity: l.quantity,
                line_total_cents: l.unit_price_cents * l.quantity,
            })
            .collect(),
        shipping_address: order.shipping_address.clone(),
        seller: seller_record(seller, super::catalog::CITY_CAP_IN_RESULTS),
        expires_at: ts(order.expires_at),
        paid_at: ts(order.paid_at),
        shipped_at: ts(order.shipped_at),
        carrier: order.carrier.clone(),
        tracking_number: order.tracking_number.clone(),
        tracking_url: order.tracking_url.clone(),
        delivered_at: ts(order.delivered_at),
        created_at: rfc3339(order.created_at),
        updated_at: rfc3339(order.updated_at),
    }
}

/// The `checkout` object of a locked cart: the open session.
pub fn open_session_view(order: &Order) -> Value {
    json!({
        "order_id": order.id,
        "session_id": order.session_id,
        "payment_rail": order.payment_rail,
        "payment_url": order.payment_url,
        "expires_at": order.expires_at.map(rfc3339),
    })
}

/// What the cart costs now, with the order lines it would make.
#[derive(Debug, Clone)]
pub struct Quote {
    pub lines: Vec<OrderLine>,
    pub subtotal_cents: i64,
    pub delivery_fee_cents: i64,
    pub total_cents: i64,
}

/// The first checks, in the contract's order: not completed → not locked → not empty.
fn check_open(cart: &Cart) -> ApiResult<()> {
    match cart.status {
        CartStatus::Completed => return Err(ApiError::cart_already_completed()),
        CartStatus::CheckoutPending => return Err(ApiError::cart_locked()),
        CartStatus::Open => {}
    }
    if cart.lines.is_empty() {
        return Err(ApiError::cart_empty());
    }
    Ok(())
}

/// The remaining checks: address set → covered → total within the cap → stock on hand (the
/// reservation re-checks stock atomically; this catches the common case without a write).
fn quote(cart: &Cart, seller: &Seller, limits: &PlatformLimits) -> ApiResult<Quote> {
    let address = cart.shipping_address.as_ref().ok_or_else(ApiError::shipping_address_required)?;
    if !seller.coverage.covers(address) {
        return Err(ApiError::delivery_not_available(
            serde_json::to_value(seller.coverage.record(usize::MAX)).unwrap_or(Value::Null),
            serde_json::to_value(address).unwrap_or(Value::Null),
        ));
    }
    let subtotal: i64 = cart.lines.iter().map(|l| l.unit_price_cents * l.quantity).sum();
    let fee = seller.delivery_fee_cents;
    let total = subtotal + fee;
    if total > limits.max_cart_total_cents {
        return Err(ApiError::cart_total_exceeds_limit(limits.max_cart_total_cents, total));
    }
    if let Some(short) = cart.lines.iter().find(|l| l.inventory.is_some_and(|stock| stock < l.quantity)) {
        return Err(ApiError::out_of_stock(&short.variant_id, short.quantity, short.inventory.unwrap_or(0)));
    }
    let lines = cart
        .lines
        .iter()
        .map(|l| OrderLine {
            item_id: l.item_id.clone(),
            variant_id: l.variant_id.clone(),
            product_id: l.product_id.clone(),
            name: l.product_title.clone(),
            variant_name: l.variant_name.clone(),
            sku: l.sku.clone(),
            unit_price_cents: l.unit_price_cents,
            quantity: l.quantity,
        })
        .collect();
    Ok(Quote { lines, subtotal_cents: subtotal, delivery_fee_cents: fee, total_cents: total })
}

fn owned_cart(cart: Option<Cart>, caller: &Caller, cart_id: &str) -> ApiResult<Cart> {
    cart.filter(|c| c.api_key_id == caller.id()).ok_or_else(|| ApiError::cart_not_found(cart_id))
}

async fn seller_of(tx: &mut dyn StoreTx, cart: &Cart) -> ApiResult<Seller> {
    tx.get_seller(&cart.seller_id)
        .await?
        .ok_or_else(|| kifly_store::StoreError::Other(format!("cart {} has no seller", cart.id)).into())
}

/// How an order is to be paid: what [`reserve`] records besides the cart and the quote.
struct PaymentTerms {
    rail: Rail,
    session_id: String,
    expires_at: Option<i64>,
    email: Option<String>,
    settlement_credential: Option<kifly_store::Credential>,
    /// The buyer account, when a valid buyer token came with the checkout.
    buyer_id: Option<String>,
}

/// Step 1: creates the order and holds stock and cart, inside `tx`.
async fn reserve(tx: &mut dyn StoreTx, cart: &Cart, quote: &Quote, terms: PaymentTerms) -> ApiResult<Order> {
    let PaymentTerms { rail, session_id, expires_at, email, settlement_credential, buyer_id } = terms;
    let order_id = new_id(IdKind::Order);
    let address = cart.shipping_address.clone().ok_or_else(ApiError::shipping_address_required)?;
    let now = now_ms();
    tx.insert_order(
        &NewOrder {
            id: order_id.clone(),
            cart_id: cart.id.clone(),
            api_key_id: cart.api_key_id.clone(),
            seller_id: cart.seller_id.clone(),
            payment_rail: rail.as_str().to_string(),
            session_id,
            payment_url: None,
            lines: quote.lines.clone(),
            subtotal_cents: quote.subtotal_cents,
            delivery_fee_cents: quote.delivery_fee_cents,
            total_cents: quote.total_cents,
            currency: CURRENCY.to_string(),
            email: email.or_else(|| address.email.clone()),
            shipping_address: address,
            expires_at,
            settlement_credential,
            buyer_id,
        },
        now,
    )
    .await
    .map_err(|e| match e {
        kifly_store::StoreError::Conflict(_) => ApiError::cart_locked(),
        other => other.into(),
    })?;
    if let Err(short) = tx.reserve_stock(&quote.lines).await? {
        return Err(ApiError::out_of_stock(&short.variant_id, short.requested, short.available));
    }
    tx.lock_cart_for_checkout(&cart.id, &order_id, now).await.map_err(|e| match e {
        kifly_store::StoreError::Conflict(_) => ApiError::cart_locked(),
        other => other.into(),
    })?;
    tx.get_order(&order_id).await?.ok_or_else(|| ApiError::internal(None))
}

/// Closes an unpaid order in a fresh transaction (stock back, cart open) and returns that transaction
/// uncommitted, for the caller to store its outcome in.
async fn close_order(app: &App, order_id: &str, to: OrderStatus) -> ApiResult<Box<dyn StoreTx>> {
    let mut tx = app.store.begin_write().await?;
    tx.close_unpaid_order(order_id, to, now_ms()).await?;
    Ok(tx)
}

// ---------------------------------------------------------------------------------------------
// Directory handoff

/// A short, stable code for a tracked link (same cart line → same code, so retries add no rows).
fn link_code(secret: &str, cart_id: &str, item_id: &str) -> String {
    crate::auth::hash_key(secret.as_bytes(), &format!("link|{cart_id}|{item_id}"))[..18].to_string()
}

const HANDOFF_DISCLAIMER: &str = "This seller is listed in the Kifly directory but does not sell through Kifly. \
The purchase, its price, availability, delivery and returns are between the buyer and the seller on the seller's own website; \
Kifly takes no payment and gives no purchase protection for it.";

/// The directory-tier answer of every checkout path: the seller, the items with tracked links to
/// the seller's product pages, and the disclaimer. No charge; the cart stays open.
async fn directory_handoff(app: &App, cart: &Cart, seller: &Seller) -> ApiResult<Value> {
    let products = app
        .store
        .list_products(&kifly_store::ProductFilter { seller_id: Some(seller.id.clone()), category: None })
        .await?;
    let mut tx = app.store.begin_write().await?;
    let mut items = Vec::with_capacity(cart.lines.len());
    for line in &cart.lines {
        let url = products.iter().find(|p| p.id == line.product_id).and_then(|p| p.url.clone());
        let link = match url {
            Some(url) => {
                let code = link_code(&app.secret, &cart.id, &line.item_id);
                tx.insert_link(&code, &url, Some(&cart.id), now_ms()).await?;
                Some(format!("{}/r/{code}", app.payments.public_url))
            }
            None => None,
        };
        items.push(json!({
            "item_id": line.item_id,
            "name": format!("{} ({})", line.product_title, line.variant_name),
            "quantity": line.quantity,
            "link": link,
        }));
    }
    tx.commit().await?;
    Ok(json!({
        "payment_rail": "directory-handoff",
        "handoff": {
            "seller": {"name": seller.name, "handle": seller.handle, "storefront_url": seller.storefront_url},
            "items": items,
            "disclaimer": HANDOFF_DISCLAIMER,
        },
    }))
}

/// `GET /r/{code}`: counts the click and says where to go.
pub async fn follow_link(app: &App, code: &str) -> ApiResult<String> {
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::not_found("not_found", "No such link."));
    }
    app.store
        .follow_link(code)
        .await?
        .map(|(url, _)| url)
        .ok_or_else(|| ApiError::not_found("not_found", "No such link."))
}

// ---------------------------------------------------------------------------------------------
// Rails 1 and 2: hosted payment pages

fn hosted_rail(rail: Option<&str>) -> ApiResult<Rail> {
    match rail.unwrap_or("stripe-checkout") {
        "stripe-checkout" => Ok(Rail::StripeCheckout),
        "coinbase-commerce" => Ok(Rail::CoinbaseCommerce),
        other => Err(ApiError::validation(
            "rail",
            format!(
                "must be stripe-checkout or coinbase-commerce (got {other:?}); agent-paid rails use POST /api/agent/cart/{{cart_id}}/checkout"
            ),
        )),
    }
}

fn hosted_client(app: &App, rail: Rail) -> HostedCheckoutClient {
    match rail {
        Rail::CoinbaseCommerce => HostedCheckoutClient::Coinbase(app.payments.coinbase.clone()),
        _ => HostedCheckoutClient::Stripe(app.payments.stripe.clone()),
    }
}

/// The answer of the payment-link call for an order with a page.
fn payment_link_view(order: &Order, buyer_token_status: &str) -> Value {
    json!({
        "payment_rail": order.payment_rail,
        "order_id": order.id,
        "session_id": order.session_id,
        "payment_url": order.payment_url,
        "amount": order.total_cents,
        "subtotal_cents": order.subtotal_cents,
        "delivery_fee_cents": order.delivery_fee_cents,
        "currency": order.currency,
        "expires_at": order.expires_at.map(rfc3339),
        "buyer_token_status": buyer_token_status,
    })
}

/// Rails 1 and 2: makes (or returns the pending) hosted payment page for a cart. Runs its own
/// transactions; the returned transaction holds the final write for the idempotency record.
pub async fn payment_link(
    app: &App,
    caller: &Caller,
    input: PaymentLinkInput,
) -> ApiResult<(Box<dyn StoreTx>, StatusCode, Value)> {
    caller.require(Scope::CheckoutWrite)?;
    let rail = hosted_rail(input.rail.as_deref())?;
    if let Some(email) = &input.email
        && (email.len() > 254 || !email.contains('@') || email.chars().any(char::is_whitespace))
    {
        return Err(ApiError::validation("email", "must be an e-mail address"));
    }
    // A buyer token pre-fills the e-mail and files the order under the buyer; an unknown one is not an error.
    let (buyer, token_status) =
        super::buyers::resolve_for_checkout(app, input.buyer_token.as_deref()).await?;
    let email = input.email.clone().or_else(|| buyer.as_ref().map(|b| b.email.clone()));
    let buyer_id = buyer.map(|b| b.id);
    if !is_valid(IdKind::Cart, &input.cart_id) {
        return Err(ApiError::cart_not_found(&input.cart_id));
    }

    // Step 1, or find the order a previous call made.
    let mut tx = app.store.begin_write().await?;
    let cart = owned_cart(tx.get_cart(&input.cart_id).await?, caller, &input.cart_id)?;
    let seller = seller_of(tx.as_mut(), &cart).await?;
    let order = match (cart.status, &cart.order_id) {
        (CartStatus::CheckoutPending, Some(order_id)) => {
            let order = tx.get_order(order_id).await?.ok_or_else(ApiError::cart_locked)?;
            if order.payment_rail != rail.as_str() {
                return Err(ApiError::cart_locked().with_details(json!({
                    "order_id": order.id, "payment_rail": order.payment_rail,
                    "hint": "a checkout on another rail is open; DELETE /api/agent/cart/{cart_id}/checkout cancels it",
                })));
            }
            if !order.session_id.starts_with(UNSET_SESSION_PREFIX) {
                // Asking again while pending returns the same session.
                return Ok((tx, StatusCode::OK, payment_link_view(&order, token_status)));
            }
            order
        }
        _ => {
            check_open(&cart)?;
            if seller.tier == Tier::Directory {
                drop(tx);
                let handoff = directory_handoff(app, &cart, &seller).await?;
                return Ok((app.store.begin_write().await?, StatusCode::OK, handoff));
            }
            let limits = tx.get_limits().await?;
            let quote = quote(&cart, &seller, &limits)?;
            let expires_at = now_ms() + i64::from(app.config.checkout_expiry_minutes) * 60_000;
            let placeholder = format!("{UNSET_SESSION_PREFIX}{}", new_id(IdKind::Request));
            let terms = PaymentTerms {
                rail,
                session_id: placeholder,
                expires_at: Some(expires_at),
                email,
                settlement_credential: None,
                buyer_id,
            };
            let order = reserve(tx.as_mut(), &cart, &quote, terms).await?;
            tx.insert_audit(&super::audit(caller, "checkout.start", Some(&order.id))).await?;
            tx.commit().await?;
            order
        }
    };

    // Step 2: the provider makes the page; the key is the order's, so a resumed call gets the same page.
    let lifetime = stripe::clamp_checkout_lifetime(Duration::from_secs(
        u64::try_from(order.expires_at.unwrap_or(0) - now_ms()).unwrap_or(0) / 1000,
    ));
    let request = HostedCheckoutRequest {
        order_id: order.id.clone(),
        seller_name: seller.name.clone(),
        lines: hosted_lines(&order),
        currency: order.currency.clone(),
        customer_email: order.email.clone(),
        shipping: Some(shipping_of(&order)),
        metadata: BTreeMap::from([("cart_id".to_string(), order.cart_id.clone())]),
        expires_at: OffsetDateTime::now_utc().unix_timestamp() + lifetime.as_secs() as i64,
        success_url: format!("{}/checkout/return?order_id={}", app.payments.public_url, order.id),
        cancel_url: None,
    };
    let page = match hosted_client(app, rail).create(&request, &format!("checkout:{}", order.id)).await {
        Ok(page) => page,
        // The page may or may not exist: keep the order pending; a retry resumes with the same key.
        Err(e) if e.is_retryable() => {
            tracing::warn!(order_id = %order.id, error = %e, "hosted checkout provider unavailable");
            return Err(ApiError::checkout_engine_unavailable(PROVIDER_RETRY_AFTER));
        }
        Err(e) => {
            tracing::error!(order_id = %order.id, error = %e, "hosted checkout refused");
            close_order(app, &order.id, OrderStatus::Failed).await?.commit().await?;
            return Err(ApiError::checkout_engine_unavailable(PROVIDER_RETRY_AFTER));
        }
    };

    // Step 3: record where the page is.
    let mut tx = app.store.begin_write().await?;
    let expires_at = page.expires_at.map(|s| s * 1000);
    let order = tx
        .set_order_session(&order.id, &page.provider_reference, &page.payment_url, expires_at, now_ms())
        .await?;
    Ok((tx, StatusCode::OK, payment_link_view(&order, token_status)))
}

fn hosted_lines(order: &Order) -> Vec<CheckoutLineItem> {
    let mut lines: Vec<CheckoutLineItem> = order
        .lines
        .iter()
        .map(|l| CheckoutLineItem {
            name: format!("{} ({})", l.name, l.variant_name),
            unit_amount_cents: l.unit_price_cents,
            quantity: l.quantity,
        })
        .collect();
    if order.delivery_fee_cents > 0 {
        lines.push(CheckoutLineItem {
            name: "Delivery".into(),
            unit_amount_cents: order.delivery_fee_cents,
            quantity: 1,
        });
    }
    lines
}

fn shipping_of(order: &Order) -> stripe::Shipping {
    let a = &order.shipping_address;
    stripe::Shipping {
        name: a.name.clone(),
        phone: a.phone.clone(),
        address: stripe::Address {
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            state: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        },
    }
}

/// `DELETE /api/agent/cart/{cart_id}/checkout`: cancels a pending hosted checkout; the cart reopens.
pub async fn cancel_checkout(
    tx: &mut dyn StoreTx,
    app: &App,
    caller: &Caller,
    cart_id: &str,
) -> ApiResult<Value> {
    caller.require(Scope::CheckoutWrite)?;
    if !is_valid(IdKind::Cart, cart_id) {
        return Err(ApiError::cart_not_found(cart_id));
    }
    let cart = owned_cart(tx.get_cart(cart_id).await?, caller, cart_id)?;
    let order_id = match (cart.status, &cart.order_id) {
        (CartStatus::Completed, _) => return Err(ApiError::cart_already_completed()),
        (CartStatus::CheckoutPending, Some(order_id)) => order_id.clone(),
        _ => {
            // Nothing to cancel: the cart is open already.
            let seller = seller_of(tx, &cart).await?;
            return Ok(json!(super::carts::cart_view(&cart, &seller)));
        }
    };
    let order = tx.get_order(&order_id).await?.ok_or_else(ApiError::cart_locked)?;
    if matches!(order.payment_rail.as_str(), "stripe-mpp" | "x402") {
        // An agent payment is being settled right now (or is being recovered): it cannot be recalled.
        return Err(ApiError::cart_locked());
    }
    tx.close_unpaid_order(&order_id, OrderStatus::Cancelled, now_ms()).await?;
    tx.insert_audit(&super::audit(caller, "checkout.cancel", Some(&order_id))).await?;
    // The provider page is expired after commit (best effort; a late payment is still honoured).
    if order.payment_rail == "stripe-checkout" && !order.session_id.starts_with(UNSET_SESSION_PREFIX) {
        let stripe = app.payments.stripe.clone();
        let session = order.session_id.clone();
        tokio::spawn(async move {
            if let Err(e) = stripe.expire_checkout_session(&session, &format!("expire:{session}")).await {
                tracing::info!(session = %session, error = %e, "could not expire the Stripe session");
            }
        });
    }
    let cart = owned_cart(tx.get_cart(cart_id).await?, caller, cart_id)?;
    let seller = seller_of(tx, &cart).await?;
    Ok(json!(super::carts::cart_view(&cart, &seller)))
}

// ---------------------------------------------------------------------------------------------
// Orders

pub async fn get_order(app: &App, caller: &Caller, id: &str) -> ApiResult<OrderView> {
    caller.require(Scope::OrdersRead)?;
    if id.is_empty() || id.len() > 300 {
        return Err(ApiError::order_not_found(id));
    }
    let order = app
        .store
        .get_order(id)
        .await?
        .filter(|o| o.api_key_id == caller.id())
        .ok_or_else(|| ApiError::order_not_found(id))?;
    let seller = app.seller(&order.seller_id).await?.ok_or_else(|| ApiError::internal(None))?;
    Ok(order_view(&order, &seller))
}

/// `kifly orders ship`: `paid → shipped` with tracking.
pub async fn ship_order(
    store: &dyn kifly_store::Store,
    order_id: &str,
    shipment: Shipment,
) -> Result<Order, String> {
    let mut tx = store.begin_write().await.map_err(|e| e.to_string())?;
    match tx.ship_order(order_id, &shipment, now_ms()).await {
        Ok(OrderTransition::Applied(order)) => {
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(order)
        }
        Ok(OrderTransition::Refused(order)) => Err(format!(
            "order {order_id} is {}; only paid or shipped orders can ship",
            order.status.as_str()
        )),
        Err(kifly_store::StoreError::NotFound(_)) => Err(format!("no order {order_id}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `kifly orders deliver`: `paid | shipped → delivered`.
pub async fn deliver_order(store: &dyn kifly_store::Store, order_id: &str) -> Result<Order, String> {
    let mut tx = store.begin_write().await.map_err(|e| e.to_string())?;
    match tx.deliver_order(order_id, now_ms()).await {
        Ok(OrderTransition::Applied(order)) => {
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(order)
        }
        Ok(OrderTransition::Refused(order)) => Err(format!(
            "order {order_id} is {}; only paid or shipped orders can be delivered",
            order.status.as_str()
        )),
        Err(kifly_store::StoreError::NotFound(_)) => Err(format!("no order {order_id}")),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Rails 3 and 4: agent-paid checkout (`POST /api/agent/cart/{cart_id}/checkout`)

/// The payment an agent attached to its checkout request.
pub enum AgentPayment {
    /// No payment yet: answer the 402 challenge.
    None,
    /// `Authorization: Payment …`.
    Mpp(Box<PaymentCredential>),
    /// `PAYMENT-SIGNATURE` / `X-PAYMENT`.
    X402(Box<IncomingPayment>),
}

/// Reads the payment headers; `payment_authorization` is the `Authorization` field that carries
/// the `Payment` scheme, if any. A malformed credential is answered later with a fresh challenge.
pub fn read_agent_payment(
    payment_authorization: Option<&str>,
    payment_signature: Option<&str>,
    x_payment: Option<&str>,
) -> Result<AgentPayment, String> {
    if let Some(value) = payment_authorization {
        return mpp::parse_authorization(value)
            .map(|c| AgentPayment::Mpp(Box::new(c)))
            .map_err(|e| e.to_string());
    }
    match x402::parse_payment_headers(payment_signature, x_payment) {
        Ok(Some(payment)) => Ok(AgentPayment::X402(Box::new(payment))),
        Ok(None) => Ok(AgentPayment::None),
        Err(e) => Err(e.reason_code().to_string()),
    }
}

fn offer_of(app: &App, amount_cents: i64) -> Option<ExactOffer> {
    app.payments.x402.as_ref().map(|rail| ExactOffer {
        network: rail.network,
        pay_to: rail.pay_to,
        amount_cents,
        max_timeout_seconds: u64::from(app.config.payment_challenge_seconds),
    })
}

/// The 402 answer: a fresh MPP challenge bound to the cart as it is now, plus the x402 offer.
fn challenge(app: &App, key_id: &str, cart: &Cart, total: i64, failure: Option<ApiError>) -> ApiError {
    let signer = &app.payments.mpp;
    let issued = signer.issue(&ChallengeParams {
        binding: CartBinding {
            key_id: key_id.to_string(),
            cart_id: cart.id.clone(),
            cart_version: cart.version,
            amount_cents: total,
            currency: CURRENCY.to_string(),
        },
        stripe: StripeMethodDetails {
            network_id: app.payments.stripe_network_id.clone(),
            payment_method_types: vec!["card".into()],
            metadata: BTreeMap::new(),
        },
        expires_at: OffsetDateTime::now_utc()
            + Duration::from_secs(u64::from(app.config.payment_challenge_seconds)),
        description: Some(format!("Kifly order, cart {}", cart.id)),
        external_id: Some(cart.id.clone()),
        body_digest: None,
    });
    let offer = offer_of(app, total);
    let mut rails = vec!["stripe-mpp"];
    if offer.is_some() {
        rails.push("x402");
    }
    let mut error = match failure {
        Some(e) => e,
        None => ApiError::payment_required(total, &cart.id, &rails),
    };
    if let Value::Object(details) = &mut error.details {
        details.entry("amount_cents").or_insert(json!(total));
        details.entry("currency").or_insert(json!(CURRENCY));
        details.entry("cart_id").or_insert(json!(cart.id));
        details.entry("rails").or_insert(json!(rails));
    }
    error = error
        .with_header("www-authenticate", issued.to_header_value())
        .with_header("cache-control", "no-store");
    if let Some(offer) = offer {
        let resource = format!("{}/api/agent/cart/{}/checkout", app.payments.public_url, cart.id);
        if let Some(requirements) = offer.requirements() {
            let required = PaymentRequired {
                x402_version: 2,
                error: Some("payment required".into()),
                resource: ResourceInfo {
                    url: resource.clone(),
                    description: Some(format!("Kifly order for cart {}", cart.id)),
                    mime_type: Some("application/json".into()),
                },
                accepts: vec![requirements],
                extensions: None,
            };
            error = error.with_header("payment-required", x402::encode_header(&required));
        }
        // x402 v1 clients read the requirements from the body.
        if let Some(v1) = offer.requirements_v1(&resource, "Kifly order") {
            let mut extra = error.extra.take().unwrap_or_else(|| json!({}));
            extra["x402Version"] = json!(1);
            extra["accepts"] = json!([v1]);
            error.extra = Some(extra);
        }
    }
    error
}

/// Loads the caller's cart and runs the checks for an agent payment (read-only).
async fn load_for_agent(app: &App, caller: &Caller, cart_id: &str) -> ApiResult<(Cart, Seller)> {
    if !is_valid(IdKind::Cart, cart_id) {
        return Err(ApiError::cart_not_found(cart_id));
    }
    let cart = owned_cart(app.store.get_cart(cart_id).await?, caller, cart_id)?;
    let seller = app.seller(&cart.seller_id).await?.ok_or_else(|| ApiError::internal(None))?;
    Ok((cart, seller))
}

/// What an agent-paid checkout answers: status, body, and whether it is final.
pub type AgentCheckoutResult = ApiResult<(Box<dyn StoreTx>, StatusCode, Value)>;

/// Rails 3 and 4 and the directory handoff: `POST /api/agent/cart/{cart_id}/checkout`.
pub async fn agent_checkout(
    app: &App,
    caller: &Caller,
    cart_id: &str,
    payment: AgentPayment,
    malformed: Option<String>,
    buyer_token: Option<&str>,
) -> AgentCheckoutResult {
    caller.require(Scope::CheckoutWrite)?;
    let (cart, seller) = load_for_agent(app, caller, cart_id).await?;

    // A retry of a payment already under way resumes it (the cart is locked by it).
    if let (CartStatus::CheckoutPending | CartStatus::Completed, Some(order_id)) =
        (cart.status, &cart.order_id)
    {
        let order = app.store.get_order(order_id).await?;
        if let Some(order) = order.filter(|o| payment_matches(o, &payment)) {
            return resume(app, order, &seller).await;
        }
    }
    check_open(&cart)?;
    if seller.tier == Tier::Directory {
        let handoff = directory_handoff(app, &cart, &seller).await?;
        return Ok((app.store.begin_write().await?, StatusCode::OK, handoff));
    }
    let limits = app.platform_limits().await?;
    let quote = quote(&cart, &seller, &limits)?;
    if let Some(reason) = malformed {
        return Err(challenge(
            app,
            caller.id(),
            &cart,
            quote.total_cents,
            Some(ApiError::payment_failed(reason)),
        ));
    }
    // Only a paid request files the order under a buyer.
    match payment {
        AgentPayment::None => Err(challenge(app, caller.id(), &cart, quote.total_cents, None)),
        AgentPayment::Mpp(credential) => {
            let buyer_id = buyer_id_for(app, buyer_token).await?;
            pay_mpp(app, caller, &cart, &seller, &quote, &credential, buyer_id.as_deref()).await
        }
        AgentPayment::X402(payment) => {
            let buyer_id = buyer_id_for(app, buyer_token).await?;
            pay_x402(app, caller, &cart, &seller, &quote, &payment, buyer_id.as_deref()).await
        }
    }
}

/// The buyer a checkout's token names (an unknown token is not an error at checkout).
async fn buyer_id_for(app: &App, buyer_token: Option<&str>) -> ApiResult<Option<String>> {
    Ok(super::buyers::resolve_for_checkout(app, buyer_token).await?.0.map(|b| b.id))
}

/// Whether `payment` is the one that made `order` (so a retry resumes it).
fn payment_matches(order: &Order, payment: &AgentPayment) -> bool {
    match payment {
        AgentPayment::Mpp(credential) => order.session_id == mpp_session(&credential.challenge.id),
        AgentPayment::X402(payment) => {
            let auth = &payment.exact_payload().authorization;
            order.session_id == x402_session(&auth.from, &auth.nonce)
        }
        AgentPayment::None => false,
    }
}

fn mpp_session(challenge_id: &str) -> String {
    format!("mpp:{challenge_id}")
}

fn x402_session(payer: &str, nonce: &str) -> String {
    format!("x402:{}:{}", payer.to_ascii_lowercase(), nonce.to_ascii_lowercase())
}

/// A retried agent payment whose order is still pending (after a provider failure) settles again
/// with its stored credential and the same provider idempotency key. Once the order is paid the
/// challenge is spent: only the request's own Idempotency-Key replays the 200 (handled before this).
async fn resume(app: &App, order: Order, seller: &Seller) -> AgentCheckoutResult {
    if order.status != OrderStatus::PendingPayment {
        return Err(ApiError::cart_already_completed());
    }
    settle_pending(app, order, seller).await
}

/// Step 2 and 3 for an agent-paid order that is pending (fresh, retried or swept).
async fn settle_pending(app: &App, order: Order, seller: &Seller) -> AgentCheckoutResult {
    let credential = order.settlement_credential.clone().map(|c| c.0).unwrap_or_default();
    match order.payment_rail.as_str() {
        "stripe-mpp" => settle_mpp(app, order, seller, &credential).await,
        _ => settle_x402(app, order, seller, &credential).await,
    }
}

/// The 200 body of a paid agent checkout. `receipt` is the header value to send with it (kept in
/// the body so an idempotent replay can send it again).
fn paid_view(order: &Order, seller: &Seller, receipt: Option<(&str, String)>) -> Value {
    let mut body = json!({
        "payment_rail": order.payment_rail,
        "order_id": order.id,
        "session_id": order.session_id,
        "status": "paid",
        "order_status": order.status.as_str(),
        "amount": order.total_cents,
        "subtotal_cents": order.subtotal_cents,
        "delivery_fee_cents": order.delivery_fee_cents,
        "currency": order.currency,
        "seller": {"name": seller.name, "handle": seller.handle},
    });
    match order.payment_rail.as_str() {
        "stripe-mpp" => body["payment_intent_id"] = json!(order.payment_reference),
        _ => body["transaction"] = json!(order.payment_reference),
    }
    if let Some((name, value)) = receipt {
        body[name] = json!(value);
    }
    body
}

// --- Rail 3: MPP ---

async fn pay_mpp(
    app: &App,
    caller: &Caller,
    cart: &Cart,
    seller: &Seller,
    quote: &Quote,
    credential: &PaymentCredential,
    buyer_id: Option<&str>,
) -> AgentCheckoutResult {
    let expected = CartBinding {
        key_id: caller.id().to_string(),
        cart_id: cart.id.clone(),
        cart_version: cart.version,
        amount_cents: quote.total_cents,
        currency: CURRENCY.to_string(),
    };
    let verified = match app.payments.mpp.verify(credential, &expected, None, OffsetDateTime::now_utc()) {
        Ok(verified) => verified,
        Err(e) => {
            return Err(challenge(
                app,
                caller.id(),
                cart,
                quote.total_cents,
                Some(ApiError::payment_failed(e.to_string())),
            ));
        }
    };
    // Step 1. The session id is the challenge id: a challenge makes one order, ever.
    let mut tx = app.store.begin_write().await?;
    let locked = owned_cart(tx.get_cart(&cart.id).await?, caller, &cart.id)?;
    if locked.version != cart.version {
        return Err(ApiError::cart_locked());
    }
    check_open(&locked)?;
    let expires_at = verified.expires_at.unix_timestamp() * 1000 + AGENT_PAYMENT_GRACE_MS;
    let terms = PaymentTerms {
        rail: Rail::StripeMpp,
        session_id: mpp_session(&verified.challenge_id),
        expires_at: Some(expires_at),
        email: None,
        settlement_credential: Some(kifly_store::Credential(verified.shared_payment_token.clone())),
        buyer_id: buyer_id.map(str::to_string),
    };
    let order = reserve(tx.as_mut(), &locked, quote, terms).await?;
    tx.insert_audit(&super::audit(caller, "checkout.mpp", Some(&order.id))).await?;
    tx.commit().await?;
    settle_mpp(app, order, seller, &verified.shared_payment_token).await
}

async fn settle_mpp(app: &App, order: Order, seller: &Seller, spt: &str) -> AgentCheckoutResult {
    let challenge_id = order.session_id.trim_start_matches("mpp:").to_string();
    let request = CreateSptPaymentIntent {
        amount_cents: order.total_cents,
        currency: order.currency.clone(),
        shared_payment_token: spt.to_string(),
        description: Some(format!("Kifly order {} ({})", order.id, seller.name)),
        metadata: BTreeMap::from([
            ("order_id".to_string(), order.id.clone()),
            ("cart_id".to_string(), order.cart_id.clone()),
        ]),
        shipping: Some(shipping_of(&order)),
    };
    // The Stripe idempotency key is the challenge id alone: a retry, even with a re-minted token,
    // cannot make a second PaymentIntent.
    let result = app.payments.stripe.create_payment_intent_with_spt(&request, &challenge_id).await;
    match result {
        Ok(intent) if intent.value.status == PaymentIntentStatus::Succeeded => {
            let mut tx = app.store.begin_write().await?;
            let order = match tx.mark_order_paid(&order.id, Some(&intent.value.id), now_ms()).await? {
                OrderTransition::Applied(order) | OrderTransition::Refused(order) => order,
            };
            let receipt = Receipt {
                status: "success".into(),
                method: mpp::METHOD_STRIPE.into(),
                timestamp: mpp::format_rfc3339(OffsetDateTime::now_utc()),
                reference: intent.value.id.clone(),
                challenge_id,
                external_id: Some(order.cart_id.clone()),
            };
            metrics::counter!("kifly_orders_paid_total", "rail" => "stripe-mpp").increment(1);
            Ok((
                tx,
                StatusCode::OK,
                paid_view(&order, seller, Some(("payment_receipt", receipt.to_header_value()))),
            ))
        }
        Ok(intent) => {
            let reason = format!("payment intent {}", status_name(intent.value.status));
            fail_agent_payment(app, &order, &reason).await
        }
        Err(ProviderError::Declined { code, decline_code, .. }) => {
            fail_agent_payment(app, &order, decline_code.as_deref().unwrap_or(&code)).await
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(order_id = %order.id, error = %e, "stripe unavailable while settling MPP payment");
            Err(ApiError::checkout_engine_unavailable(PROVIDER_RETRY_AFTER))
        }
        Err(e) => fail_agent_payment(app, &order, &e.to_string()).await,
    }
}

fn status_name(status: PaymentIntentStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A declined agent payment: the order fails, stock and cart are released, and the answer is 402
/// `payment_failed` with a fresh challenge for the reopened cart.
async fn fail_agent_payment(app: &App, order: &Order, reason: &str) -> AgentCheckoutResult {
    close_order(app, &order.id, OrderStatus::Failed).await?.commit().await?;
    metrics::counter!("kifly_payments_failed_total", "rail" => order.payment_rail.clone()).increment(1);
    let cart = app.store.get_cart(&order.cart_id).await?.ok_or_else(|| ApiError::internal(None))?;
    Err(challenge(app, &order.api_key_id, &cart, order.total_cents, Some(ApiError::payment_failed(reason))))
}

// --- Rail 4: x402 ---

async fn pay_x402(
    app: &App,
    caller: &Caller,
    cart: &Cart,
    seller: &Seller,
    quote: &Quote,
    payment: &IncomingPayment,
    buyer_id: Option<&str>,
) -> AgentCheckoutResult {
    let Some(offer) = offer_of(app, quote.total_cents) else {
        return Err(ApiError::x402_not_configured());
    };
    let reject = |reason: &str| {
        challenge(app, caller.id(), cart, quote.total_cents, Some(ApiError::payment_failed(reason)))
    };
    let Some(offered) = offer.requirements() else {
        return Err(reject("amount out of range"));
    };
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let verified = payment.verify(&offered, now).map_err(|e| reject(e.reason_code()))?;
    let request = payment.facilitator_request(&offered).map_err(|e| reject(e.reason_code()))?;
    let rail = app.payments.x402.as_ref().ok_or_else(ApiError::x402_not_configured)?;
    match rail.facilitator.verify(&request).await {
        Ok(answer) if answer.is_valid => {}
        Ok(answer) => return Err(reject(answer.invalid_reason.as_deref().unwrap_or("invalid payment"))),
        Err(e) if e.is_retryable() => {
            return Err(ApiError::checkout_engine_unavailable(PROVIDER_RETRY_AFTER));
        }
        Err(e) => return Err(reject(&e.to_string())),
    }
    // Step 1. The session id is payer + nonce: an authorization pays one order, ever.
    let credential = serde_json::to_string(&request).map_err(|_| ApiError::internal(None))?;
    let mut tx = app.store.begin_write().await?;
    let locked = owned_cart(tx.get_cart(&cart.id).await?, caller, &cart.id)?;
    check_open(&locked)?;
    if locked.version != cart.version {
        return Err(ApiError::cart_locked());
    }
    let expires_at =
        i64::try_from(verified.valid_before).unwrap_or(i64::MAX / 2_000) * 1000 + AGENT_PAYMENT_GRACE_MS;
    let terms = PaymentTerms {
        rail: Rail::X402,
        session_id: x402_session(&verified.payer.to_lower_hex(), &verified.nonce_hex()),
        expires_at: Some(expires_at),
        email: None,
        settlement_credential: Some(kifly_store::Credential(credential.clone())),
        buyer_id: buyer_id.map(str::to_string),
    };
    let order = reserve(tx.as_mut(), &locked, quote, terms).await?;
    tx.insert_audit(&super::audit(caller, "checkout.x402", Some(&order.id))).await?;
    tx.commit().await?;
    settle_x402(app, order, seller, &credential).await
}

async fn settle_x402(app: &App, order: Order, seller: &Seller, credential: &str) -> AgentCheckoutResult {
    let Some(rail) = app.payments.x402.as_ref() else {
        return Err(ApiError::x402_not_configured());
    };
    let request: x402::FacilitatorRequest =
        serde_json::from_str(credential).map_err(|_| ApiError::internal(None))?;
    match rail.facilitator.settle(&request).await {
        Ok(settled) if settled.success && !settled.transaction.is_empty() => {
            let mut tx = app.store.begin_write().await?;
            let order = match tx.mark_order_paid(&order.id, Some(&settled.transaction), now_ms()).await? {
                OrderTransition::Applied(order) | OrderTransition::Refused(order) => order,
            };
            metrics::counter!("kifly_orders_paid_total", "rail" => "x402").increment(1);
            let mut body =
                paid_view(&order, seller, Some(("payment_response", x402::encode_header(&settled))));
            body["network"] = json!(settled.network);
            body["payer"] = json!(settled.payer);
            Ok((tx, StatusCode::OK, body))
        }
        Ok(settled) => {
            fail_agent_payment(app, &order, settled.error_reason.as_deref().unwrap_or("settlement failed"))
                .await
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(order_id = %order.id, error = %e, "facilitator unavailable while settling x402 payment");
            Err(ApiError::checkout_engine_unavailable(PROVIDER_RETRY_AFTER))
        }
        Err(e) => fail_agent_payment(app, &order, &e.to_string()).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry sweep

/// Settles or expires unpaid orders whose payment window has closed: hosted pages are asked for
/// their state (a lost webhook must not lose a payment), agent payments are settled with their
/// stored credential and the same idempotency key (the provider answers with the first outcome).
pub async fn sweep_overdue(app: &App) -> ApiResult<usize> {
    let overdue = app.store.list_overdue_orders(now_ms(), 50).await?;
    let count = overdue.len();
    for order in overdue {
        let Some(seller) = app.seller(&order.seller_id).await? else { continue };
        let id = order.id.clone();
        let outcome = match order.payment_rail.as_str() {
            "stripe-mpp" | "x402" => match settle_pending(app, order, &seller).await {
                Ok((tx, _, _)) => tx.commit().await.map_err(ApiError::from),
                Err(e) => Err(e),
            },
            _ => super::webhooks::reconcile_hosted(app, &order).await,
        };
        if let Err(e) = outcome
            && e.status.is_server_error()
        {
            tracing::warn!(order_id = %id, code = e.code, "could not settle an overdue order; will retry");
        }
    }
    Ok(count)
}
