//! Tools whose service is still being built (checkout and orders, buyer profiles, feedback). They
//! are published with their final schemas and descriptions, check the caller's scope, and then
//! answer a clear `not_implemented` error (`isError: true`) until their service lands; then each one
//! moves to its family file and calls that service like the others.

use axum::http::StatusCode;
use kifly_core::scope::Scope;
use serde_json::{Value, json};

use super::schema::{ADDRESS_REQUIRED, address_out, cents, object, string};
use super::tools::{Hints, READ_ONLY, Reply, ToolDef};
use crate::auth::Caller;
use crate::error::ApiError;

/// Appended to the description of every tool in this file.
macro_rules! pending {
    ($text:expr) => {
        concat!(
            $text,
            " Status: not available on this server yet; calling it returns the error not_implemented."
        )
    };
}

const FEEDBACK_CATEGORIES: [&str; 7] = [
    "discoverability",
    "response_shape",
    "tool_description",
    "latency",
    "error_handling",
    "missing_capability",
    "other",
];
const SEVERITIES: [&str; 3] = ["blocker", "friction", "nice_to_have"];

/// The scope each pending tool will need.
fn required_scope(tool: &str) -> Scope {
    match tool {
        "checkout" => Scope::CheckoutWrite,
        "order_status" | "list_orders" => Scope::OrdersRead,
        "submit_feedback" | "request_feature" => Scope::FeedbackWrite,
        _ => Scope::BuyerWrite,
    }
}

/// `not_implemented`: the tool exists in the contract but not on this server yet.
pub fn not_implemented(tool: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("{tool} is not available on this server yet"),
    )
}

/// The answer of every pending tool: the scope check it will have, then `not_implemented`.
pub fn not_available(caller: &Caller, tool: &str) -> Reply {
    match caller.require(required_scope(tool)) {
        Err(e) => Reply::error(&e),
        Ok(()) => Reply::error(&not_implemented(tool)),
    }
}

fn buyer_token() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^kfb_live_[0-9A-Za-z]+$",
           "description": "The buyer's kfb_live_… token from verify_buyer. Keep it for this buyer; never ask the buyer to paste it."})
}

fn email(description: &str) -> Value {
    json!({"type": "string", "format": "email", "maxLength": 254, "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

const ORDER_STATUSES: [&str; 7] =
    ["pending_payment", "paid", "shipped", "delivered", "failed", "expired", "cancelled"];

fn order() -> Value {
    object(
        json!({
            "order_id": string("Kifly order id (order_…)."),
            "session_id": nullable_string("The checkout session id (cs_…)."),
            "status": {"type": "string", "enum": ORDER_STATUSES},
            "payment_rail": {"type": "string", "enum": ["stripe-checkout", "coinbase-commerce", "stripe-mpp", "x402"]},
            "amount": cents("Total charged: subtotal_cents + delivery_fee_cents."),
            "subtotal_cents": cents("Sum of the lines."),
            "delivery_fee_cents": cents("Delivery fee."),
            "currency": {"type": "string", "const": "usd"},
            "items": {"type": "array", "items": {"type": "object"}, "description": "The lines as bought: name, variant, quantity, prices."},
            "shipping_address": {"anyOf": [address_out(), {"type": "null"}]},
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

/// `checkout`, `order_status`, `list_orders` (the checkout issue).
pub fn checkout_tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "checkout",
            title: "Check out",
            description: pending!(
                "Start paying for a cart. Preconditions: set_shipping_address first (else shipping_address_required; outside coverage: delivery_not_available), \
and the total must not exceed max_cart_total_cents (kifly://platform/limits; else cart_total_exceeds_limit). \
For a purchasable seller it returns payment_rail stripe-checkout (or coinbase-commerce), a payment_url to show the buyer, session_id (poll order_status with it every 5 seconds until paid, shipped or failed) and the amount breakdown. \
For a directory seller (kifly_purchasable false) it returns payment_rail directory-handoff and a handoff object instead: present the links as an off-platform referral and relay the disclaimer verbatim. \
Pass email (ask the buyer where the receipt should go) and buyer_token when you have one. On 503 errors (retryable: true), wait retry_after_seconds and retry once with the same idempotency_key. Needs checkout:write."
            ),
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
                    "expires_at": {"type": "string", "format": "date-time"},
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
            description: pending!(
                "Status of an order, by the session_id checkout returned (or an order_id). Poll every 5 seconds after checkout until status is paid, shipped or failed. \
Once paid it carries the order details (order_id, amount, items); once the seller ships, carrier, tracking_number, tracking_url and shipped_at. Needs orders:read."
            ),
            properties: json!({
                "session_id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[A-Za-z0-9_]+$", "description": "The session_id from checkout (cs_…), or an order_id (order_…)."}
            }),
            required: &["session_id"],
            output: order(),
            hints: READ_ONLY,
            mutating: false,
        },
        ToolDef {
            name: "list_orders",
            title: "List orders",
            description: pending!(
                "A returning buyer's recent orders, newest first, with fulfilment status: for a new conversation with no session_id at hand (\"did my order ship?\"). \
Needs the buyer's buyer_token (recover one with request_buyer_code + verify_buyer). Pass since (the time of your last check) to get only orders that changed after it. Needs orders:read."
            ),
            properties: json!({
                "buyer_token": buyer_token(),
                "since": {"type": "string", "format": "date-time", "description": "RFC 3339 time; only orders updated after it."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20, "description": "Most orders to return."}
            }),
            required: &["buyer_token"],
            output: object(
                json!({
                    "orders": {"type": "array", "items": order()},
                    "count": {"type": "integer", "minimum": 0}
                }),
                &["orders", "count"],
            ),
            hints: READ_ONLY,
            mutating: false,
        },
    ]
}

fn accepted(id_field: &str) -> Value {
    let mut props = serde_json::Map::new();
    props.insert("accepted".into(), json!({"type": "boolean", "const": true}));
    props.insert(id_field.into(), string("Reference of the stored record."));
    object(Value::Object(props), &["accepted", id_field])
}

/// Feedback and buyer-profile tools (the buyers issue).
pub fn buyer_tools() -> Vec<ToolDef> {
    let mut address = serde_json::Map::new();
    address.insert("buyer_token".into(), buyer_token());
    address.insert("address".into(), {
        let mut a = object(Value::Object(super::schema::address_in()), &ADDRESS_REQUIRED);
        a["description"] = json!("The shipping address to save: the same fields as set_shipping_address.");
        a
    });
    let context = json!({"type": "object", "description": "Reproducible signal, filled in from what just happened: e.g. {tool, query, response_snippet, expected}."});
    vec![
        ToolDef {
            name: "submit_feedback",
            title: "Submit feedback",
            description: pending!(
                "Tell the Kifly team about a problem with this agent interface: a confusing response, a dead end, a workaround you had to invent. \
Fire-and-forget: accepted at once, never blocks; skip it when latency matters. Fill context automatically from what just happened; suggested_fix only for a concrete idea. \
A human reviews everything. Limit: 10 per minute per key. Needs feedback:write."
            ),
            properties: json!({
                "category": {"type": "string", "enum": FEEDBACK_CATEGORIES},
                "severity": {"type": "string", "enum": SEVERITIES, "description": "blocker = can't complete the task. friction = degraded experience. nice_to_have = improvement idea."},
                "message": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "What happened."},
                "context": context,
                "suggested_fix": {"type": "string", "minLength": 1, "maxLength": 4000}
            }),
            required: &["category", "severity", "message"],
            output: accepted("feedback_id"),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "request_feature",
            title: "Request a feature",
            description: pending!(
                "Record a registered buyer's request about Kifly itself: a missing capability, a clumsy flow, an idea (submit_feedback is for broken or confusing API responses instead). \
Ask open, non-leading questions; keep the problem (the pain, in the buyer's words) apart from any proposed_solution; pre-fill from the conversation. Name and email come from the buyer profile: do not ask for them. \
Accepted for review: never promise that anything will be built. Needs the buyer's buyer_token and feedback:write."
            ),
            properties: json!({
                "buyer_token": buyer_token(),
                "problem": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "The pain in the buyer's own terms, NOT the fix."},
                "impact": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "Why it matters: who it affects, how often, what it costs them today."},
                "category": {"type": "string", "enum": FEEDBACK_CATEGORIES},
                "severity": {"type": "string", "enum": SEVERITIES},
                "proposed_solution": {"type": "string", "minLength": 1, "maxLength": 4000},
                "context": {"type": "object", "description": "Optional signal about the conversation: {goal, seller, last_tool}."}
            }),
            required: &["buyer_token", "problem", "impact", "category", "severity"],
            output: accepted("feature_request_id"),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "register_buyer",
            title: "Register buyer",
            description: pending!(
                "Start a buyer account from email and name. Always e-mails a 6-digit code and always answers {verification_required: true, buyer_profile_id}, whether or not the e-mail already has an account (so it never reveals which). \
Next: ask the buyer for the code and call verify_buyer with the same email to get their buyer_token. Safe for an existing buyer. Needs buyer:write."
            ),
            properties: json!({
                "email": email("The buyer's e-mail address."),
                "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The buyer's full name."}
            }),
            required: &["email", "name"],
            output: object(
                json!({"verification_required": {"type": "boolean", "const": true}, "buyer_profile_id": {"type": "string"}}),
                &["verification_required", "buyer_profile_id"],
            ),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: true },
            mutating: true,
        },
        ToolDef {
            name: "request_buyer_code",
            title: "Request buyer code",
            description: pending!(
                "E-mail a 6-digit code to a RETURNING buyer, to prove it is them and recover their saved name and address without pasting a token. \
Always answers {sent: true} (a code goes out only if the account exists), so it reveals nothing. Next: ask for the code and call verify_buyer. \
If no code arrives the buyer probably has no account: call register_buyer, which always sends one. Needs buyer:write."
            ),
            properties: json!({ "email": email("The returning buyer's e-mail address.") }),
            required: &["email"],
            output: object(json!({"sent": {"type": "boolean", "const": true}}), &["sent"]),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: true },
            mutating: true,
        },
        ToolDef {
            name: "verify_buyer",
            title: "Verify buyer",
            description: pending!(
                "Check the 6-digit code the buyer received; on success returns {buyer_token, buyer_profile_id}. Keep the buyer_token: pass it to get_buyer_profile (saved name and address) and to checkout (pre-fills the e-mail). \
A wrong or expired code is invalid_otp: ask the buyer to re-check, or call request_buyer_code again (codes last 10 minutes, 5 attempts). Needs buyer:write."
            ),
            properties: json!({
                "email": email("The same e-mail as in register_buyer / request_buyer_code."),
                "code": {"type": "string", "pattern": "^[0-9]{6}$", "description": "The 6-digit code from the e-mail."}
            }),
            required: &["email", "code"],
            output: object(
                json!({"buyer_token": {"type": "string", "pattern": "^kfb_live_"}, "buyer_profile_id": {"type": "string"}}),
                &["buyer_token", "buyer_profile_id"],
            ),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: false },
            mutating: true,
        },
        ToolDef {
            name: "get_buyer_profile",
            title: "Get buyer profile",
            description: pending!(
                "The buyer's saved profile: name, e-mail and default_shipping_address (null when none is saved). Use it to fill in set_shipping_address after confirming the address with the buyer. \
Needs the buyer_token from verify_buyer and buyer:write."
            ),
            properties: json!({ "buyer_token": buyer_token() }),
            required: &["buyer_token"],
            output: object(
                json!({
                    "buyer_profile_id": {"type": "string"},
                    "email": {"type": "string"},
                    "name": {"type": "string"},
                    "default_shipping_address": {"anyOf": [address_out(), {"type": "null"}]}
                }),
                &["buyer_profile_id", "email", "name", "default_shipping_address"],
            ),
            hints: READ_ONLY,
            mutating: false,
        },
        ToolDef {
            name: "save_buyer_address",
            title: "Save buyer address",
            description: pending!(
                "Save a shipping address on the buyer's profile so later purchases fill it in. Intended after a successful checkout when get_buyer_profile had default_shipping_address null, \
with the address given to set_shipping_address; ask the buyer first. Replaces any saved address. Needs the buyer_token and buyer:write."
            ),
            properties: Value::Object(address),
            required: &["buyer_token", "address"],
            output: object(
                json!({"buyer_profile_id": {"type": "string"}, "default_shipping_address": address_out()}),
                &["buyer_profile_id", "default_shipping_address"],
            ),
            hints: Hints { read_only: false, destructive: true, idempotent: true, open_world: false },
            mutating: true,
        },
    ]
}
