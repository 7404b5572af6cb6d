//! The cart tools: the same service calls as the `/api/agent/cart` routes, and, for changes, the
//! same exactly-once machinery (keyed by the optional `idempotency_key`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::schema::{self, address_out, cents, coverage, id, object, seller};
use super::tools::{Hints, READ_ONLY, Reply, ToolDef, arg, parse, without, write};
use crate::app::App;
use crate::auth::Caller;
use crate::service::carts::{self as service, AddItemInput, CreateCartInput, UpdateItemInput};
use crate::service::render;

/// The hard bound of the schema; the real per-line cap is the run-time `max_item_quantity`.
const QUANTITY_BOUND: i64 = 1_000_000;

fn cart_id() -> Value {
    id("cart", "The cart_id returned by create_cart.")
}

pub fn tools() -> Vec<ToolDef> {
    let mut address = serde_json::Map::new();
    address.insert("cart_id".into(), cart_id());
    address.extend(schema::address_in());
    vec![
        ToolDef {
            name: "create_cart",
            title: "Create cart",
            description: "Create an empty cart with ONE seller (a cart holds one seller's items; use one cart per seller). \
Network keys must pass seller_handle (kifly:seller in search_products results, or get_seller); seller-scoped keys may leave it out. \
Returns the cart: keep its cart_id. seller.kifly_purchasable false (fulfillment external) means a directory seller: checkout will be a hand-off to the seller's site, not a Kifly order. \
Next: add_to_cart with this cart_id and a kifly:variantId. Needs the checkout:write scope.",
            properties: json!({
                "seller_handle": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$", "description": "Seller handle, e.g. trailhead-outfitters. Required for network keys; ignored for seller-scoped keys."}
            }),
            required: &[],
            output: cart(),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "add_to_cart",
            title: "Add to cart",
            description: "Add a product variant to a cart, by a kifly:variantId from search_products (the item's own, or one from kifly:hasVariant). \
Adding a variant that is already in the cart increases its line. Returns the whole cart, with the item_id of each line (for update_cart_item). \
The variant must belong to the cart's seller (else seller_mismatch: create another cart). A line may hold at most max_item_quantity units (get_platform_limits; default 20): more is quantity_exceeds_limit. \
The cart-total cap applies at checkout, not here: call get_platform_limits before building a large cart. \
Next: add more, or set_shipping_address. Needs checkout:write.",
            properties: json!({
                "cart_id": cart_id(),
                "variant_id": id("var", "A kifly:variantId from search_products."),
                "quantity": {"type": "integer", "minimum": 1, "maximum": QUANTITY_BOUND, "default": 1, "description": "Units to add (default 1)."}
            }),
            required: &["cart_id", "variant_id"],
            output: cart(),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "update_cart_item",
            title: "Update cart item",
            description: "Set the quantity of one cart line; quantity 0 removes the line. item_id comes from get_cart or from the cart that add_to_cart returned. \
Returns the updated cart. More than max_item_quantity (get_platform_limits) is quantity_exceeds_limit. Next: get_cart to review, or set_shipping_address. Needs checkout:write.",
            properties: json!({
                "cart_id": cart_id(),
                "item_id": id("item", "The line's item_id, from get_cart or the add_to_cart result."),
                "quantity": {"type": "integer", "minimum": 0, "maximum": QUANTITY_BOUND, "description": "New quantity of the line; 0 removes it."}
            }),
            required: &["cart_id", "item_id", "quantity"],
            output: cart(),
            hints: Hints { read_only: false, destructive: true, idempotent: true, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "get_cart",
            title: "Get cart",
            description: "The current cart: lines (each with item_id, name, variant, unit price, quantity and line total), subtotal, delivery fee, total (US cents), shipping address and delivery_eligible. \
Use it to review the cart with the buyer before checkout, or when they ask what is in it. Next: update_cart_item to change a line, set_shipping_address, or checkout.",
            properties: json!({ "cart_id": cart_id() }),
            required: &["cart_id"],
            output: cart(),
            hints: READ_ONLY,
            mutating: false,
        },
        ToolDef {
            name: "set_shipping_address",
            title: "Set shipping address",
            description: "Save the buyer's US shipping address on the cart and check whether the seller delivers there. Returns the cart with delivery_eligible: \
when false, delivery_coverage lists exactly the states and cities the seller covers: tell the buyer and do not check out (it would fail with delivery_not_available). \
Call it before checkout; calling it again replaces the address. A field the rules reject is validation_error with details.field. \
Ask the buyer for the address; never invent one. Next: checkout. Needs checkout:write.",
            properties: serde_json::Value::Object(address),
            required: &["cart_id", "name", "line1", "city", "region", "postal_code"],
            output: cart(),
            hints: Hints { read_only: false, destructive: true, idempotent: true, open_world: false },
            mutating: true,
        },
    ]
}

pub async fn create_cart(app: &App, caller: &Caller, args: Value) -> Reply {
    let c = caller.clone();
    write(app, caller, "create_cart", args, move |tx, body| {
        Box::pin(async move {
            let input: CreateCartInput = parse(body)?;
            Ok((StatusCode::OK, render(&service::create_cart(tx, &c, input).await?)?))
        })
    })
    .await
}

pub async fn add_to_cart(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    let cart = arg(&args, "cart_id").to_string();
    write(app, caller, "add_to_cart", args, move |tx, body| {
        Box::pin(async move {
            let input: AddItemInput = parse(without(&body, &["cart_id"]))?;
            Ok((StatusCode::OK, render(&service::add_item(&a, tx, &c, &cart, input).await?)?))
        })
    })
    .await
}

pub async fn update_cart_item(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    let (cart, item) = (arg(&args, "cart_id").to_string(), arg(&args, "item_id").to_string());
    write(app, caller, "update_cart_item", args, move |tx, body| {
        Box::pin(async move {
            let input: UpdateItemInput = parse(without(&body, &["cart_id", "item_id"]))?;
            Ok((StatusCode::OK, render(&service::update_item(&a, tx, &c, &cart, &item, input).await?)?))
        })
    })
    .await
}

pub async fn get_cart(app: &App, caller: &Caller, args: Value) -> Reply {
    service::get_cart(app, caller, arg(&args, "cart_id")).await.and_then(|cart| cart.to_value()).into()
}

pub async fn set_shipping_address(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    let cart = arg(&args, "cart_id").to_string();
    write(app, caller, "set_shipping_address", args, move |tx, body| {
        Box::pin(async move {
            let address = without(&body, &["cart_id"]);
            Ok((StatusCode::OK, render(&service::set_shipping_address(&a, tx, &c, &cart, address).await?)?))
        })
    })
    .await
}

/// The cart every cart tool returns (`CartView`).
pub fn cart() -> Value {
    let item = object(
        json!({
            "item_id": {"type": "string", "description": "Pass to update_cart_item."},
            "variant_id": {"type": "string"},
            "product_id": {"type": "string"},
            "name": {"type": "string", "description": "Product title."},
            "variant_name": {"type": "string"},
            "sku": {"type": "string"},
            "unit_price_cents": cents("Current price of one unit."),
            "quantity": {"type": "integer", "minimum": 1},
            "line_total_cents": cents("unit_price_cents × quantity.")
        }),
        &[
            "item_id",
            "variant_id",
            "product_id",
            "name",
            "variant_name",
            "sku",
            "unit_price_cents",
            "quantity",
            "line_total_cents",
        ],
    );
    object(
        json!({
            "cart_id": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "checkout_pending", "completed"], "description": "checkout_pending: payment in progress, changes are cart_locked. completed: purchased, create a new cart."},
            "seller": seller(),
            "kifly_purchasable": {"type": "boolean", "description": "false: directory seller, checkout is a hand-off referral."},
            "fulfillment": {"type": "string", "enum": ["kifly", "external"]},
            "items": {"type": "array", "items": item},
            "subtotal_cents": cents("Sum of the lines."),
            "delivery_fee_cents": cents("The seller's flat fee per order (0 while the cart is empty)."),
            "total_cents": cents("subtotal_cents + delivery_fee_cents."),
            "currency": {"type": "string", "const": "usd"},
            "shipping_address": {"anyOf": [address_out(), {"type": "null"}]},
            "delivery_eligible": {"type": ["boolean", "null"], "description": "Whether the seller delivers to shipping_address; null until one is set."},
            "delivery_coverage": coverage(),
            "checkout": {"type": ["object", "null"], "description": "The open checkout session, if any."},
            "order_id": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        }),
        &[
            "cart_id",
            "status",
            "seller",
            "kifly_purchasable",
            "fulfillment",
            "items",
            "subtotal_cents",
            "delivery_fee_cents",
            "total_cents",
            "currency",
            "shipping_address",
            "delivery_eligible",
            "checkout",
            "order_id",
            "created_at",
            "updated_at",
        ],
    )
}
