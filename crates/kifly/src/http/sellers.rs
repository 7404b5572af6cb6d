//! `GET /api/agent/sellers/{handle}`.

use axum::extract::{Path, State};

use super::Json;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::catalog::{self, SellerRecord};

/// The full seller record, with every delivery city.
#[utoipa::path(
    get, path = "/api/agent/sellers/{handle}", tag = "catalog",
    params(("handle" = String, Path, description = "Seller handle, e.g. trailhead-outfitters")),
    responses(
        (status = 200, body = SellerRecord),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient (catalog:read)", body = ErrorBody),
        (status = 404, description = "seller_not_found", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_seller(
    State(app): State<App>,
    caller: Caller,
    Path(handle): Path<String>,
) -> ApiResult<Json<SellerRecord>> {
    Ok(Json(catalog::get_seller(&app, &caller, &handle).await?))
}
