//! Platform limits, as the tool `get_platform_limits` and the resource `kifly://platform/limits`
//! (the same JSON as `GET /api/agent/platform/limits`).

use serde_json::{Value, json};

use super::schema::{cents, object};
use super::tools::{READ_ONLY, Reply, ToolDef};
use crate::app::App;
use crate::error::ApiResult;
use crate::http::limits_view;

pub const LIMITS_URI: &str = "kifly://platform/limits";

pub fn tools() -> Vec<ToolDef> {
    vec![ToolDef {
        name: "get_platform_limits",
        title: "Get platform limits",
        description: "The limits Kifly enforces on carts: max_item_quantity (most units per cart line; more is quantity_exceeds_limit at add_to_cart / update_cart_item) \
and max_cart_total_cents / max_cart_total_usd (largest total, subtotal + delivery, that checkout accepts; more is cart_total_exceeds_limit). \
Call it once at the start of a conversation so you can state the limits up front; the operator can change them at any time, so never hard-code them. \
Also readable as the resource kifly://platform/limits.",
        properties: json!({}),
        required: &[],
        output: limits(),
        hints: READ_ONLY,
        mutating: false,
    }]
}

pub fn limits() -> Value {
    object(
        json!({
            "max_item_quantity": {"type": "integer", "minimum": 1, "description": "Most units one cart line may hold."},
            "max_cart_total_cents": cents("Largest checkout total (subtotal + delivery), in US cents."),
            "max_cart_total_usd": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "description": "The same in dollars, e.g. 1000.00."}
        }),
        &["max_item_quantity", "max_cart_total_cents", "max_cart_total_usd"],
    )
}

/// The limits as JSON.
pub async fn limits_json(app: &App) -> ApiResult<Value> {
    Ok(json!(limits_view(app.platform_limits().await?)))
}

pub async fn get_platform_limits(app: &App) -> Reply {
    limits_json(app).await.into()
}
