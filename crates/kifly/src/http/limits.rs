//! `GET /api/agent/platform/limits` (no key needed).

use axum::extract::State;
use kifly_core::limits::PlatformLimits;
use kifly_core::money::cents_to_decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::Json;
use crate::app::App;
use crate::error::{ApiResult, ErrorBody};

/// The caps carts are held to, as the operator set them.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// Most units one cart line may hold.
    pub max_item_quantity: i64,
    /// Largest checkout total (subtotal + delivery), in cents.
    pub max_cart_total_cents: i64,
    /// The same, in dollars, e.g. "1000.00".
    pub max_cart_total_usd: String,
}

impl From<PlatformLimits> for LimitsView {
    fn from(l: PlatformLimits) -> Self {
        LimitsView {
            max_item_quantity: l.max_item_quantity,
            max_cart_total_cents: l.max_cart_total_cents,
            max_cart_total_usd: cents_to_decimal(l.max_cart_total_cents),
        }
    }
}

/// The public JSON form of the limits (also printed by `kifly limits`).
pub fn limits_view(limits: PlatformLimits) -> LimitsView {
    limits.into()
}

/// Read these once per conversation; they can change at run time.
#[utoipa::path(
    get, path = "/api/agent/platform/limits", tag = "platform",
    responses((status = 200, body = LimitsView), (status = 429, description = "rate_limited", body = ErrorBody))
)]
pub async fn get_platform_limits(State(app): State<App>) -> ApiResult<Json<LimitsView>> {
    Ok(Json(app.platform_limits().await?.into()))
}
