//! Checkout and order tools: the same service functions as `POST /api/agent/payment-link` and
//! `GET /api/agent/orders/{id}`. MCP hosts pay through hosted pages (Stripe Checkout, Coinbase), so the
//! `checkout` tool is the payment-link call; the agent-paid rails (MPP, x402 over MCP) are planned.

use serde_json::{Value, json};

use super::buyers::{buyer_token, email, nullable_string};
use super::schema::{address_out, cents, object, string};
use super::tools::{Hints, READ_ONLY, Reply, ToolDef, arg, parse, write_steps};
use crate::app::App;
use crate::auth::Caller;
use crate::service::checkout::{self as service, PaymentLinkInput};

const ORDER_STATUSES: [&str; 7] =
    ["pending_payment", "paid", "shipped", "delivered", "failed", "expired", "cancelled"];

pub(super) fn order() -> Value {
    object(
        json!({
            "order_id": string("Kifly order id (order_…)."),
            "session_id": string("The payment session id: cs_… (Stripe Checkout), a Coinbase charge code, mpp:… or x402:…."),
            "cart_id": string("The cart the order was made from."),
            "status": {"type": "string", "enum": ORDER_STATUSES},
            "payment_rail": {"type": "string", "enum": ["stripe-checkout", "coinbase-commerce", "stripe-mpp", "x402"]},
            "amount": cents("Total charged: subtotal_cents + delivery_fee_cents."),
            "subtotal_cents": cents("Sum of the lines."),
            "delivery_fee_cents": cents("Delivery fee."),
            "total_cents": cents("Same as amount."),
            "currency": {"type": "string", "const": "usd"},
            "payment_url": nullable_string("Where the buyer pays, while pending_payment on a hosted rail."),
            "payment_reference": nullable_string("PaymentIntent id or on-chain transaction, once paid."),
            "items": {"type": "array", "items": {"type": "object"}, "description": "The lines as bought: name, variant, quantity, prices."},
            "shipping_address": {"anyOf": [address_out(), {"type": "null"}]},
            "expires_at": nullable_string("RFC 3339: when an unpaid order stops being payable."),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "seller": {"type": "object", "description": "The seller record."},
            "paid_at": nullable_string("RFC 3339."),
            "shipped_at": nullable_string("RFC 3339."),
            "carrier": nullable_string("Carrier, once shipped."),
            "tracking_number": nullable_string("Tracking number, once shipped."),
            "tracking_url": nullable_string("Public tracking page, once shipped."),
            "delivered_at": nullable_string("RFC 3339.")
        }),
        &["order_id", "status"],
    )
}

/// `checkout` and `order_status`.
pub fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "checkout",
            title: "Check out",
            description: "Start paying for a cart. Preconditions: set_shipping_address first (else shipping_address_required; outside coverage: delivery_not_available), \
and the total must not exceed max_cart_total_cents (kifly://platform/limits; else cart_total_exceeds_limit). \
For a purchasable seller it returns payment_rail stripe-checkout (or coinbase-commerce), a payment_url to show the buyer, session_id (poll order_status with it every 5 seconds until paid, shipped or failed) and the amount breakdown. \
For a directory seller (kifly_purchasable false) it returns payment_rail directory-handoff and a handoff object instead: present the links as an off-platform referral and relay the disclaimer verbatim. \
Pass email (ask the buyer where the receipt should go) and buyer_token when you have one. On 503 errors (retryable: true), wait retry_after_seconds and retry once with the same idempotency_key. Needs checkout:write.",
            properties: json!({
                "cart_id": {"type": "string", "pattern": "^cart_[0-9A-Za-z]{26}$", "description": "The cart to pay for."},
                "email": email("Where the receipt goes; pre-fills the payment page. Ask the buyer."),
                "buyer_token": buyer_token(),
                "rail": {"type": "string", "enum": ["stripe-checkout", "coinbase-commerce"], "default": "stripe-checkout", "description": "Payment rail for a purchasable seller: card via Stripe Checkout (default) or crypto via Coinbase Commerce."}
            }),
            required: &["cart_id"],
            output: object(
                json!({
                    "payment_rail": {"type": "string", "enum": ["stripe-checkout", "coinbase-commerce", "directory-handoff"]},
                    "session_id": string("Pass to order_status."),
                    "payment_url": string("Show this link to the buyer to pay."),
                    "amount": cents("Total to pay: subtotal_cents + delivery_fee_cents."),
                    "subtotal_cents": cents("Sum of the lines."),
                    "delivery_fee_cents": cents("Delivery fee."),
                    "currency": {"type": "string", "const": "usd"},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                    "buyer_token_status": {"type": "string", "enum": ["resolved", "invalid", "none"], "description": "Whether buyer_token was applied; invalid is not an error."},
                    "order_id": string("The order created for this session."),
                    "handoff": object(json!({
                        "seller": object(json!({"name": {"type": "string"}, "handle": {"type": "string"}, "storefront_url": {"type": ["string", "null"]}}), &["name", "handle", "storefront_url"]),
                        "items": {"type": "array", "items": object(json!({"item_id": {"type": "string"}, "name": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}, "link": {"type": ["string", "null"]}}), &["item_id", "name", "quantity", "link"])},
                        "disclaimer": string("Relay verbatim.")
                    }), &["seller", "items", "disclaimer"])
                }),
                &["payment_rail"],
            ),
            hints: Hints { read_only: false, destructive: true, idempotent: false, open_world: true },
            mutating: true,
        },
        ToolDef {
            name: "order_status",
            title: "Order status",
            description: "Status of an order, by the session_id checkout returned (or an order_id). Poll every 5 seconds after checkout until status is paid, shipped or failed. \
Once paid it carries the order details (order_id, amount, items); once the seller ships, carrier, tracking_number, tracking_url and shipped_at. Needs orders:read.",
            properties: json!({
                "session_id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[A-Za-z0-9_:.-]+$", "description": "The session_id from checkout (cs_…), or an order_id (order_…)."}
            }),
            required: &["session_id"],
            output: order(),
            hints: READ_ONLY,
            mutating: false,
        },
    ]
}

pub async fn checkout(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    write_steps(app, caller, "checkout", args, move |body| {
        Box::pin(async move {
            let input: PaymentLinkInput = parse(body)?;
            service::payment_link(&a, &c, input).await
        })
    })
    .await
}

pub async fn order_status(app: &App, caller: &Caller, args: Value) -> Reply {
    service::get_order(app, caller, arg(&args, "session_id")).await.into()
}
