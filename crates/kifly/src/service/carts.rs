//! Carts: one seller per cart, lines of variants, a US shipping address checked against the seller's
//! coverage. Mutations run inside the caller's [`StoreTx`] so the idempotency record commits with them.

use std::borrow::Borrow;
use std::sync::Arc;

use axum::body::Bytes;
use kifly_core::address::{ADDRESS_FIELDS, AddressInput, ShippingAddress};
use kifly_core::coverage::CoverageRecord;
use kifly_core::ids::{IdKind, is_valid, new_id};
use kifly_core::limits::PlatformLimits;
use kifly_core::money::CURRENCY;
use kifly_core::scope::Scope;
use kifly_store::{Cart, CartLine, CartStatus, NewCart, NewCartLine, Seller, StoreTx, VariantRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::catalog::{RenderedSellerRecord, SellerRecord};
use crate::app::{App, now_ms, rfc3339};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// `POST /api/agent/cart`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCartInput {
    /// Required for network keys; ignored for seller-scoped keys.
    pub seller_handle: Option<String>,
}

/// `POST /api/agent/cart/{cart_id}/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemInput {
    /// A `kifly:variantId` from search results.
    pub variant_id: String,
    /// Units to add (default 1); added to the line if the variant is already in the cart.
    #[serde(default = "one")]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

/// `PATCH /api/agent/cart/{cart_id}/items/{item_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateItemInput {
    /// New quantity; 0 removes the line.
    pub quantity: i64,
}

/// One cart line.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartItemView {
    pub item_id: String,
    pub variant_id: String,
    pub product_id: String,
    /// Product title.
    pub name: String,
    pub variant_name: String,
    pub sku: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
    pub line_total_cents: i64,
}

/// The cart as every cart endpoint returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartView {
    pub cart_id: String,
    /// `open`, `checkout_pending` or `completed`.
    pub status: &'static str,
    #[schema(value_type = SellerRecord)]
    pub seller: RenderedSellerRecord,
    pub kifly_purchasable: bool,
    pub fulfillment: &'static str,
    pub items: Vec<CartItemView>,
    pub subtotal_cents: i64,
    /// The seller's flat fee per order; 0 while the cart is empty.
    pub delivery_fee_cents: i64,
    pub total_cents: i64,
    pub currency: &'static str,
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<ShippingAddress>,
    /// Whether the seller delivers to the shipping address; null until an address is set.
    pub delivery_eligible: Option<bool>,
    /// The seller's coverage, present when `delivery_eligible` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub delivery_coverage: Option<CoverageRecord>,
    /// The open checkout session, if any.
    #[schema(value_type = Option<Object>)]
    pub checkout: Option<Value>,
    pub order_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Renders a cart with its seller.
pub fn cart_view(cart: &Cart, seller: &Seller) -> CartView {
    cart_view_with(cart, seller, RenderedSellerRecord::for_carts(seller))
}

/// Renders a cart with its seller, whose record is already rendered (see [`RenderedSellerRecord`]).
pub fn cart_view_with(cart: &Cart, seller: &Seller, record: RenderedSellerRecord) -> CartView {
    let items: Vec<CartItemView> = cart
        .lines
        .iter()
        .map(|l| CartItemView {
            item_id: l.item_id.clone(),
            variant_id: l.variant_id.clone(),
            product_id: l.product_id.clone(),
            name: l.product_title.clone(),
            variant_name: l.variant_name.clone(),
            sku: l.sku.clone(),
            unit_price_cents: l.unit_price_cents,
            quantity: l.quantity,
            line_total_cents: l.unit_price_cents * l.quantity,
        })
        .collect();
    let subtotal: i64 = items.iter().map(|i| i.line_total_cents).sum();
    let fee = if items.is_empty() { 0 } else { seller.delivery_fee_cents };
    let eligible = cart.shipping_address.as_ref().map(|a| seller.coverage.covers(a));
    CartView {
        cart_id: cart.id.clone(),
        status: cart.status.as_str(),
        kifly_purchasable: seller.tier.is_purchasable(),
        fulfillment: seller.tier.fulfillment(),
        delivery_coverage: (eligible == Some(false)).then(|| seller.coverage.record(usize::MAX)),
        seller: record,
        items,
        subtotal_cents: subtotal,
        delivery_fee_cents: fee,
        total_cents: subtotal + fee,
        currency: CURRENCY,
        shipping_address: cart.shipping_address.clone(),
        delivery_eligible: eligible,
        checkout: None,
        order_id: cart.order_id.clone(),
        created_at: rfc3339(cart.created_at),
        updated_at: rfc3339(cart.updated_at),
    }
}

fn sellerless(cart: &Cart) -> ApiError {
    kifly_store::StoreError::Other(format!("cart {} has no seller", cart.id)).into()
}

/// The cart's seller, read inside the transaction (see [`StoreTx`] on why writes never use the pool).
async fn seller_in_tx(tx: &mut dyn StoreTx, cart: &Cart) -> ApiResult<Seller> {
    tx.get_seller(&cart.seller_id).await?.ok_or_else(|| sellerless(cart))
}

/// A cart that exists *and belongs to the caller*; anything else is `cart_not_found`.
fn owned<C: Borrow<Cart>>(cart: Option<C>, caller: &Caller, cart_id: &str) -> ApiResult<C> {
    cart.filter(|c| c.borrow().api_key_id == caller.id()).ok_or_else(|| ApiError::cart_not_found(cart_id))
}

/// Loads an owned cart for a change, refusing completed and locked carts.
async fn open_cart(tx: &mut dyn StoreTx, caller: &Caller, cart_id: &str) -> ApiResult<Cart> {
    if !is_valid(IdKind::Cart, cart_id) {
        return Err(ApiError::cart_not_found(cart_id));
    }
    let cart = owned(tx.get_cart(cart_id).await?, caller, cart_id)?;
    match cart.status {
        CartStatus::Open => Ok(cart),
        CartStatus::CheckoutPending => Err(ApiError::cart_locked()),
        CartStatus::Completed => Err(ApiError::cart_already_completed()),
    }
}

/// Records a change already made to `cart` in memory: bumps the stored version, writes the audit row
/// and renders `cart` as the change left it.
///
/// The cart is not read back: inside the write transaction the copy read at the start plus the change
/// is exactly what a read would return (lines in the same order, prices from the same rows), and a
/// second joined read was the largest single cost of a cart change. The seller record comes from the
/// app's seller cache while it is fresh, as for `GET`, otherwise from `tx`.
async fn finish_change(
    app: &App,
    tx: &mut dyn StoreTx,
    caller: &Caller,
    mut cart: Cart,
    now: i64,
    action: &str,
) -> ApiResult<CartView> {
    tx.touch_cart(&cart.id, now).await?;
    tx.insert_audit(&super::audit(caller, action, Some(&cart.id))).await?;
    cart.version += 1;
    cart.updated_at = now;
    // The order of the joined read: `ORDER BY i.created_at, i.id`.
    cart.lines.sort_by(|a, b| (a.created_at, &a.item_id).cmp(&(b.created_at, &b.item_id)));
    match app.fresh_cached_seller(&cart.seller_id) {
        Some(seller) => Ok(cart_view_with(&cart, &seller.seller, seller.cart_record.clone())),
        None => Ok(cart_view(&cart, &seller_in_tx(tx, &cart).await?)),
    }
}

/// The platform limits for a change: from the limits cache while it is fresh, otherwise read in `tx`
/// (never through the pool while holding a transaction: on PostgreSQL, requests queued on one
/// idempotency key can hold every pooled connection; an in-memory SQLite database has one).
async fn limits_for_change(app: &App, tx: &mut dyn StoreTx) -> ApiResult<PlatformLimits> {
    if let Some(limits) = app.limits.fresh() {
        return Ok(limits);
    }
    let limits = tx.get_limits().await?;
    app.limits.remember(limits);
    Ok(limits)
}

pub async fn create_cart(
    tx: &mut dyn StoreTx,
    caller: &Caller,
    input: CreateCartInput,
) -> ApiResult<CartView> {
    caller.require(Scope::CheckoutWrite)?;
    let seller = match caller.seller_id() {
        Some(own) => tx.get_seller(own).await?.ok_or_else(|| ApiError::seller_not_found(own))?,
        None => {
            let handle = input.seller_handle.as_deref().map(str::trim).filter(|h| !h.is_empty()).ok_or_else(|| {
                ApiError::invalid_request(
                    "seller_handle",
                    "seller_handle is required for network API keys (take it from kifly:seller in search results)",
                )
            })?;
            // A network key sees every seller.
            tx.get_seller_by_handle(handle).await?.ok_or_else(|| ApiError::seller_not_found(handle))?
        }
    };
    let id = new_id(IdKind::Cart);
    tx.insert_cart(
        &NewCart { id: id.clone(), api_key_id: caller.id().to_string(), seller_id: seller.id.clone() },
        now_ms(),
    )
    .await?;
    tx.insert_audit(&super::audit(caller, "cart.create", Some(&id))).await?;
    let cart = owned(tx.get_cart(&id).await?, caller, &id)?;
    Ok(cart_view(&cart, &seller))
}

/// A [`CartView`] already serialised: what a cart read answers.
#[derive(Debug, Clone)]
pub struct CartJson(pub Bytes);

impl CartJson {
    /// The cart as a JSON value (MCP tool results carry values).
    pub fn to_value(&self) -> ApiResult<Value> {
        serde_json::from_slice(&self.0).map_err(|_| ApiError::internal(None))
    }
}

/// The cart for showing it (`GET` and the MCP `get_cart` tool), from the store's in-memory copy when
/// it has one, and rendered once per copy ([`crate::app::RenderedCarts`]). A cart in checkout also
/// shows its open session, read each time.
pub async fn get_cart(app: &App, caller: &Caller, cart_id: &str) -> ApiResult<CartJson> {
    if !is_valid(IdKind::Cart, cart_id) {
        return Err(ApiError::cart_not_found(cart_id));
    }
    let cart = owned(app.store.get_cart_cached(cart_id).await?, caller, cart_id)?;
    let seller = app.cached_seller(&cart.seller_id).await?.ok_or_else(|| sellerless(&cart))?;
    app.audit.record(super::audit(caller, "cart.get", Some(cart_id)));
    let in_checkout = cart.status == CartStatus::CheckoutPending;
    if !in_checkout && let Some(json) = app.rendered_carts.get(&cart, &seller) {
        return Ok(CartJson(json));
    }
    let mut view = cart_view_with(&cart, &seller.seller, seller.cart_record.clone());
    if in_checkout && let Some(order_id) = &cart.order_id {
        view.checkout = app.store.get_order(order_id).await?.map(|o| super::checkout::open_session_view(&o));
    }
    let json = Bytes::from(serde_json::to_vec(&view).map_err(|_| ApiError::internal(None))?);
    // A copy only this read holds (the store keeps none, as on PostgreSQL) is never served again.
    if !in_checkout && Arc::strong_count(&cart) > 1 {
        app.rendered_carts.remember(&cart, &seller, json.clone());
    }
    Ok(CartJson(json))
}

pub async fn add_item(
    app: &App,
    tx: &mut dyn StoreTx,
    caller: &Caller,
    cart_id: &str,
    input: AddItemInput,
) -> ApiResult<CartView> {
    caller.require(Scope::CheckoutWrite)?;
    if input.quantity < 1 {
        return Err(ApiError::validation("quantity", "must be at least 1"));
    }
    let mut cart = open_cart(tx, caller, cart_id).await?;
    // A variant that already has a line was checked when the line was added (it exists, and it is
    // the cart seller's), and the cart read just joined its current row: only a new line needs the
    // catalog.
    let target = match cart.lines.iter().position(|l| l.variant_id == input.variant_id) {
        Some(index) => AddTo::Line(index),
        None => AddTo::NewLine(variant_for_new_line(tx, caller, &cart, &input.variant_id).await?),
    };
    let limits = limits_for_change(app, tx).await?;
    let held = match target {
        AddTo::Line(index) => cart.lines[index].quantity,
        AddTo::NewLine(_) => 0,
    };
    let resulting = held.saturating_add(input.quantity);
    if resulting > limits.max_item_quantity {
        return Err(ApiError::quantity_exceeds_limit(limits.max_item_quantity, resulting));
    }
    let now = now_ms();
    match target {
        AddTo::Line(index) => {
            let line = &mut cart.lines[index];
            tx.set_cart_line_quantity(&line.item_id, resulting, now).await?;
            line.quantity = resulting;
        }
        AddTo::NewLine(found) => {
            let line = NewCartLine {
                item_id: new_id(IdKind::CartItem),
                cart_id: cart.id.clone(),
                variant_id: input.variant_id,
                quantity: resulting,
            };
            tx.insert_cart_line(&line, now).await?;
            let variant = found.variant;
            cart.lines.push(CartLine {
                item_id: line.item_id,
                variant_id: line.variant_id,
                product_id: variant.product_id,
                product_title: found.product_title,
                variant_name: variant.name,
                sku: variant.sku,
                unit_price_cents: variant.price_cents,
                quantity: resulting,
                inventory: variant.inventory,
                created_at: now,
            });
        }
    }
    finish_change(app, tx, caller, cart, now, "cart.add_item").await
}

/// Where [`add_item`] adds: to the line at this index, or to a new line for this variant.
enum AddTo {
    Line(usize),
    NewLine(VariantRef),
}

/// The variant a new cart line is for: it must exist and be sold by the cart's seller.
async fn variant_for_new_line(
    tx: &mut dyn StoreTx,
    caller: &Caller,
    cart: &Cart,
    variant_id: &str,
) -> ApiResult<VariantRef> {
    let found = tx.get_variant(variant_id).await?.ok_or_else(|| ApiError::variant_not_found(variant_id))?;
    if found.seller_id != cart.seller_id {
        if caller.seller_id().is_some() {
            return Err(ApiError::variant_not_found(variant_id));
        }
        let cart_seller = seller_in_tx(tx, cart).await?;
        let variant_seller = tx.get_seller(&found.seller_id).await?.map(|s| s.handle).unwrap_or_default();
        return Err(ApiError::seller_mismatch(&cart_seller.handle, &variant_seller));
    }
    Ok(found)
}

pub async fn update_item(
    app: &App,
    tx: &mut dyn StoreTx,
    caller: &Caller,
    cart_id: &str,
    item_id: &str,
    input: UpdateItemInput,
) -> ApiResult<CartView> {
    caller.require(Scope::CheckoutWrite)?;
    if input.quantity < 0 {
        return Err(ApiError::validation("quantity", "must be 0 or more (0 removes the line)"));
    }
    let mut cart = open_cart(tx, caller, cart_id).await?;
    let index = line_index(&cart, item_id)?;
    let now = now_ms();
    if input.quantity == 0 {
        tx.delete_cart_line(item_id).await?;
        cart.lines.remove(index);
    } else {
        let limits = limits_for_change(app, tx).await?;
        if input.quantity > limits.max_item_quantity {
            return Err(ApiError::quantity_exceeds_limit(limits.max_item_quantity, input.quantity));
        }
        tx.set_cart_line_quantity(item_id, input.quantity, now).await?;
        cart.lines[index].quantity = input.quantity;
    }
    finish_change(app, tx, caller, cart, now, "cart.update_item").await
}

pub async fn remove_item(
    app: &App,
    tx: &mut dyn StoreTx,
    caller: &Caller,
    cart_id: &str,
    item_id: &str,
) -> ApiResult<CartView> {
    caller.require(Scope::CheckoutWrite)?;
    let mut cart = open_cart(tx, caller, cart_id).await?;
    let index = line_index(&cart, item_id)?;
    tx.delete_cart_line(item_id).await?;
    cart.lines.remove(index);
    finish_change(app, tx, caller, cart, now_ms(), "cart.remove_item").await
}

/// The position of line `item_id` in `cart`; `item_not_found` if it has none.
fn line_index(cart: &Cart, item_id: &str) -> ApiResult<usize> {
    cart.lines.iter().position(|l| l.item_id == item_id).ok_or_else(|| ApiError::item_not_found(item_id))
}

/// Validates an address body: unknown fields and invalid values are `422 validation_error`; fields of
/// the wrong JSON type are `400 invalid_request`.
pub fn parse_address(body: Value) -> ApiResult<ShippingAddress> {
    let Value::Object(map) = &body else {
        return Err(ApiError::invalid_request(
            "body",
            "The body must be a JSON object with the address fields",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !ADDRESS_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::validation(
            unknown,
            format!("is not an address field (allowed: {})", ADDRESS_FIELDS.join(", ")),
        ));
    }
    let input: AddressInput = super::parse_body(body)?;
    Ok(input.validate()?)
}

pub async fn set_shipping_address(
    app: &App,
    tx: &mut dyn StoreTx,
    caller: &Caller,
    cart_id: &str,
    body: Value,
) -> ApiResult<CartView> {
    caller.require(Scope::CheckoutWrite)?;
    let mut cart = open_cart(tx, caller, cart_id).await?;
    let address = parse_address(body)?;
    let now = now_ms();
    tx.set_cart_shipping_address(&cart.id, &address, now).await?;
    cart.shipping_address = Some(address);
    finish_change(app, tx, caller, cart, now, "cart.set_shipping_address").await
}
