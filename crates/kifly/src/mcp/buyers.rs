//! Buyer accounts, order history and feedback tools: the same service functions as their REST twins
//! under `/api/agent/buyers…`, `/api/agent/feature-requests` and `/api/agent/feedback`.

use serde_json::{Value, json};

use super::schema::{ADDRESS_REQUIRED, address_out, object, string};
use super::tools::{Hints, READ_ONLY, Reply, ToolDef, arg, parse, write_steps};
use crate::app::App;
use crate::auth::Caller;
use crate::service::buyers::{self as service, FEEDBACK_CATEGORIES, SEVERITIES};

pub(super) fn buyer_token() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^kfb_live_[0-9A-Za-z]+$",
           "description": "The buyer's kfb_live_… token from verify_buyer. Keep it for this buyer; never ask the buyer to paste it."})
}

pub(super) fn email(description: &str) -> Value {
    json!({"type": "string", "format": "email", "maxLength": 254, "description": description})
}

pub(super) fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

/// `list_orders` (needs buyer accounts).
pub fn order_tools() -> Vec<ToolDef> {
    vec![ToolDef {
        name: "list_orders",
        title: "List orders",
        description: "A returning buyer's recent orders, newest first, with fulfilment status: for a new conversation with no session_id at hand (\"did my order ship?\"). \
Needs the buyer's buyer_token (recover one with request_buyer_code + verify_buyer). Pass since (the time of your last check) to get only orders that changed after it. Needs orders:read.",
        properties: json!({
            "buyer_token": buyer_token(),
            "since": {"type": "string", "format": "date-time", "description": "RFC 3339 time; only orders updated after it."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20, "description": "Most orders to return."}
        }),
        required: &["buyer_token"],
        output: object(
            json!({
                "orders": {"type": "array", "items": super::checkout::order()},
                "count": {"type": "integer", "minimum": 0}
            }),
            &["orders", "count"],
        ),
        hints: READ_ONLY,
        mutating: false,
    }]
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
            description: "Tell the Kifly team about a problem with this agent interface: a confusing response, a dead end, a workaround you had to invent. \
Fire-and-forget: accepted at once, never blocks; skip it when latency matters. Fill context automatically from what just happened; suggested_fix only for a concrete idea. \
A human reviews everything. Limit: 10 per minute per key. Needs feedback:write.",
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
            description: "Record a registered buyer's request about Kifly itself: a missing capability, a clumsy flow, an idea (submit_feedback is for broken or confusing API responses instead). \
Ask open, non-leading questions; keep the problem (the pain, in the buyer's words) apart from any proposed_solution; pre-fill from the conversation. Name and email come from the buyer profile: do not ask for them. \
Accepted for review: never promise that anything will be built. Needs the buyer's buyer_token and feedback:write.",
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
            description: "Start a buyer account from email and name. Always e-mails a 6-digit code and always answers {verification_required: true, buyer_profile_id}, whether or not the e-mail already has an account (so it never reveals which). \
Next: ask the buyer for the code and call verify_buyer with the same email to get their buyer_token. Safe for an existing buyer. Needs buyer:write.",
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
            description: "E-mail a 6-digit code to a RETURNING buyer, to prove it is them and recover their saved name and address without pasting a token. \
Always answers {sent: true} (a code goes out only if the account exists), so it reveals nothing. Next: ask for the code and call verify_buyer. \
If no code arrives the buyer probably has no account: call register_buyer, which always sends one. Needs buyer:write.",
            properties: json!({ "email": email("The returning buyer's e-mail address.") }),
            required: &["email"],
            output: object(json!({"sent": {"type": "boolean", "const": true}}), &["sent"]),
            hints: Hints { read_only: false, destructive: false, idempotent: false, open_world: true },
            mutating: true,
        },
        ToolDef {
            name: "verify_buyer",
            title: "Verify buyer",
            description: "Check the 6-digit code the buyer received; on success returns {buyer_token, buyer_profile_id}. Keep the buyer_token: pass it to get_buyer_profile (saved name and address) and to checkout (pre-fills the e-mail). \
A wrong or expired code is invalid_otp: ask the buyer to re-check, or call request_buyer_code again (codes last 10 minutes, 5 attempts). Needs buyer:write.",
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
            description: "The buyer's saved profile: name, e-mail and default_shipping_address (null when none is saved). Use it to fill in set_shipping_address after confirming the address with the buyer. \
Needs the buyer_token from verify_buyer and buyer:write.",
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
            description: "Save a shipping address on the buyer's profile so later purchases fill it in. Intended after a successful checkout when get_buyer_profile had default_shipping_address null, \
with the address given to set_shipping_address; ask the buyer first. Replaces any saved address. Needs the buyer_token and buyer:write.",
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

fn token(args: &Value) -> Option<&str> {
    args.get("buyer_token").and_then(Value::as_str)
}

pub async fn register_buyer(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    let reply = write_steps(app, caller, "register_buyer", args, move |body| {
        Box::pin(async move { service::register(&a, &c, parse(body)?).await })
    })
    .await;
    app.outbox.wake();
    reply
}

pub async fn request_buyer_code(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    let reply = write_steps(app, caller, "request_buyer_code", args, move |body| {
        Box::pin(async move { service::request_code(&a, &c, parse(body)?).await })
    })
    .await;
    app.outbox.wake();
    reply
}

pub async fn verify_buyer(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    write_steps(app, caller, "verify_buyer", args, move |body| {
        Box::pin(async move { service::verify(&a, &c, parse(body)?).await })
    })
    .await
}

pub async fn get_buyer_profile(app: &App, caller: &Caller, args: Value) -> Reply {
    service::profile(app, caller, token(&args)).await.into()
}

pub async fn save_buyer_address(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    write_steps(app, caller, "save_buyer_address", args, move |body| {
        Box::pin(async move { service::save_address(&a, &c, None, parse(body)?).await })
    })
    .await
}

pub async fn list_orders(app: &App, caller: &Caller, args: Value) -> Reply {
    let since = args.get("since").and_then(Value::as_str);
    let limit = args.get("limit").and_then(Value::as_i64);
    service::list_orders(app, caller, Some(arg(&args, "buyer_token")), since, limit).await.into()
}

pub async fn submit_feedback(app: &App, caller: &Caller, args: Value) -> Reply {
    // The same 10 / 60 s bucket as `POST /api/agent/feedback` (the MCP call also counts as an MCP request).
    if let Some(rate) = app.rates.feedback {
        let decision = app.limiter.check(&format!("feedback:{}", caller.id()), rate).await;
        if !decision.allowed {
            return Reply::error(&crate::error::ApiError::rate_limited(decision.retry_after_secs.max(1)));
        }
    }
    let (a, c) = (app.clone(), caller.clone());
    write_steps(app, caller, "submit_feedback", args, move |body| {
        Box::pin(async move { service::submit_feedback(&a, &c, parse(body)?).await })
    })
    .await
}

pub async fn request_feature(app: &App, caller: &Caller, args: Value) -> Reply {
    let (a, c) = (app.clone(), caller.clone());
    write_steps(app, caller, "request_feature", args, move |body| {
        Box::pin(async move { service::request_feature(&a, &c, None, parse(body)?).await })
    })
    .await
}
