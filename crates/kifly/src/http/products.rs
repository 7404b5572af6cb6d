//! `GET /api/agent/products`: search or browse the catalog.

use axum::extract::State;
use serde_json::Value;

use super::ApiQuery;
use super::Json;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::catalog::{self, SearchParams};

/// Search (with `q`) or browse (without) the catalog the key can see. Returns a schema.org JSON-LD
/// `ItemList` whose items carry `kifly:variantId` (for add-to-cart), `kifly:relevanceScore`,
/// `kifly:seller`, offers with `kifly:purchasable`, at most 20 variants and 2 images.
#[utoipa::path(
    get, path = "/api/agent/products", tag = "catalog",
    params(SearchParams),
    responses(
        (status = 200, description = "JSON-LD ItemList", body = Object),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient (catalog:read)", body = ErrorBody),
        (status = 404, description = "seller_not_found", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_products(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> ApiResult<Json<Value>> {
    Ok(Json(catalog::search_products(&app, &caller, params).await?))
}
