//! Cart endpoints. Every mutation goes through [`Idempotent::run`], which stores the outcome in the
//! same transaction as the change.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::JsonText;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::idempotency::Idempotent;
use crate::service::carts::{self, AddItemInput, CartView, CreateCartInput, UpdateItemInput};
use crate::service::{parse_body, render};

/// Creates an empty cart for one seller. Network keys must pass `seller_handle`.
#[utoipa::path(
    post, path = "/api/agent/cart", tag = "carts",
    params(("Idempotency-Key" = String, Header, description = "Unique per action; reuse it when retrying")),
    request_body = CreateCartInput,
    responses(
        (status = 201, body = CartView),
        (status = 400, description = "invalid_request / missing_idempotency_key", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient (checkout:write)", body = ErrorBody),
        (status = 404, description = "seller_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_conflict / idempotency_in_progress", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_cart(State(app): State<App>, caller: Caller, request: Idempotent) -> Response {
    let c = caller.clone();
    request
        .run(&app, &caller, move |tx, body| {
            Box::pin(async move {
                let input: CreateCartInput = parse_body(body)?;
                Ok((StatusCode::CREATED, render(&carts::create_cart(tx, &c, input).await?)?))
            })
        })
        .await
}

/// The cart with its lines, totals, address and delivery eligibility.
#[utoipa::path(
    get, path = "/api/agent/cart/{cart_id}", tag = "carts",
    params(("cart_id" = String, Path)),
    responses(
        (status = 200, body = CartView),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 404, description = "cart_not_found", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_cart(
    State(app): State<App>,
    caller: Caller,
    Path(cart_id): Path<String>,
) -> ApiResult<JsonText> {
    Ok(JsonText(carts::get_cart(&app, &caller, &cart_id).await?.0))
}

/// Adds a variant; adding one already in the cart increases its line.
#[utoipa::path(
    post, path = "/api/agent/cart/{cart_id}/items", tag = "carts",
    params(("cart_id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = AddItemInput,
    responses(
        (status = 200, body = CartView),
        (status = 400, description = "invalid_request / missing_idempotency_key / quantity_exceeds_limit", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient / seller_mismatch", body = ErrorBody),
        (status = 404, description = "cart_not_found / variant_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn add_item(
    State(app): State<App>,
    caller: Caller,
    Path(cart_id): Path<String>,
    request: Idempotent,
) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run(&app, &caller, move |tx, body| {
            Box::pin(async move {
                let input: AddItemInput = parse_body(body)?;
                Ok((StatusCode::OK, render(&carts::add_item(&a, tx, &c, &cart_id, input).await?)?))
            })
        })
        .await
}

/// Sets a line's quantity; 0 removes it.
#[utoipa::path(
    patch, path = "/api/agent/cart/{cart_id}/items/{item_id}", tag = "carts",
    params(("cart_id" = String, Path), ("item_id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = UpdateItemInput,
    responses(
        (status = 200, body = CartView),
        (status = 400, description = "invalid_request / missing_idempotency_key / quantity_exceeds_limit", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found / item_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update_item(
    State(app): State<App>,
    caller: Caller,
    Path((cart_id, item_id)): Path<(String, String)>,
    request: Idempotent,
) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run(&app, &caller, move |tx, body| {
            Box::pin(async move {
                let input: UpdateItemInput = parse_body(body)?;
                Ok((
                    StatusCode::OK,
                    render(&carts::update_item(&a, tx, &c, &cart_id, &item_id, input).await?)?,
                ))
            })
        })
        .await
}

/// Removes a line.
#[utoipa::path(
    delete, path = "/api/agent/cart/{cart_id}/items/{item_id}", tag = "carts",
    params(("cart_id" = String, Path), ("item_id" = String, Path), ("Idempotency-Key" = String, Header)),
    responses(
        (status = 200, body = CartView),
        (status = 400, description = "missing_idempotency_key", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found / item_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn remove_item(
    State(app): State<App>,
    caller: Caller,
    Path((cart_id, item_id)): Path<(String, String)>,
    request: Idempotent,
) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run(&app, &caller, move |tx, _body| {
            Box::pin(async move {
                Ok((StatusCode::OK, render(&carts::remove_item(&a, tx, &c, &cart_id, &item_id).await?)?))
            })
        })
        .await
}

/// Saves a US shipping address and reports `delivery_eligible` (with `delivery_coverage` when false).
#[utoipa::path(
    put, path = "/api/agent/cart/{cart_id}/shipping-address", tag = "carts",
    params(("cart_id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body(content = Object, description = "name, line1, line2?, city, region (US state code), postal_code (5 or 9 digits), country (US), phone?, email?"),
    responses(
        (status = 200, body = CartView),
        (status = 400, description = "invalid_request / missing_idempotency_key", body = ErrorBody),
        (status = 401, description = "invalid_api_key / api_key_revoked", body = ErrorBody),
        (status = 403, description = "scope_insufficient", body = ErrorBody),
        (status = 404, description = "cart_not_found", body = ErrorBody),
        (status = 409, description = "cart_locked / cart_already_completed / idempotency_conflict / idempotency_in_progress", body = ErrorBody),
        (status = 422, description = "validation_error", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn set_shipping_address(
    State(app): State<App>,
    caller: Caller,
    Path(cart_id): Path<String>,
    request: Idempotent,
) -> Response {
    let (a, c) = (app.clone(), caller.clone());
    request
        .run(&app, &caller, move |tx, body| {
            Box::pin(async move {
                Ok((StatusCode::OK, render(&carts::set_shipping_address(&a, tx, &c, &cart_id, body).await?)?))
            })
        })
        .await
}
