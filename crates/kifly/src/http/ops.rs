//! Operator endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;

pub fn router(openapi_json: Arc<String>) -> Router<App> {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { super::prometheus().render() }))
        .route(
            "/openapi.json",
            get(move || {
                let doc = openapi_json.clone();
                async move {
                    let mut response = doc.as_str().to_string().into_response();
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    response
                }
            }),
        )
}

async fn readyz(State(app): State<App>) -> Response {
    match app.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready", "database": app.store.backend()})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::upstream_unavailable(5).into_response()
        }
    }
}
