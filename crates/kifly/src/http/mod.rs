//! The HTTP layer: one file per resource, each handler thin (extract → service → render), and the
//! cross-cutting middleware every response goes through.
//!
//! Layers, outermost first: the edge middleware (`edge`), then the body limit, then the routes.
//! The edge does, in order: request id (and the id in `internal_error` bodies) → panic catcher →
//! access log and metrics → key resolution → rate limit (these two for the agent API only,
//! [`is_agent_api`]). It is one middleware rather than one each because every `from_fn` layer
//! clones the service chain below it and boxes a future per request (docs/decisions.md,
//! Operations). So even a 404, a 405 or a 429 answers in the error envelope with `x-request-id` and
//! the `x-ratelimit-*` headers; a panic answers `internal_error` with `x-request-id` only, as it
//! unwinds past the rate limit and the metrics.

mod buyers;
mod carts;
mod checkout;
mod limits;
pub use limits::limits_view;
mod ops;
mod products;
mod request_metrics;
mod sellers;

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::error::{ApiError, ErrorCode};

/// Largest request body accepted (1 MiB); larger ones get `413 payload_too_large`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Kifly agent API", description = "Agentic commerce: search a multi-seller catalog, build a cart, set a US shipping address. Errors are `{error, message, details}`; see docs/errors.md."),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("kfa_live_…").build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

fn api_routes() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(products::list_products))
        .routes(routes!(sellers::get_seller))
        .routes(routes!(carts::create_cart))
        .routes(routes!(carts::get_cart))
        .routes(routes!(carts::add_item))
        .routes(routes!(carts::update_item, carts::remove_item))
        .routes(routes!(carts::set_shipping_address))
        .routes(routes!(limits::get_platform_limits))
        .routes(routes!(checkout::payment_link))
        .routes(routes!(checkout::agent_checkout, checkout::cancel_checkout))
        .routes(routes!(checkout::get_order))
        .routes(routes!(buyers::register))
        .routes(routes!(buyers::request_code))
        .routes(routes!(buyers::verify))
        .routes(routes!(buyers::profile))
        .routes(routes!(buyers::save_address))
        .routes(routes!(buyers::orders))
        .routes(routes!(buyers::feature_request))
        .routes(routes!(buyers::feedback))
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole application router.
pub fn router(app: App) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc_json = std::sync::Arc::new(doc.to_pretty_json().unwrap_or_default());
    let routes = api
        .merge(crate::mcp::router(&app))
        .merge(ops::router(doc_json))
        .merge(checkout::router(&app))
        .fallback(|| async { ApiError::not_found("not_found", "No such endpoint.") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() });
    with_edge(routes, app)
}

/// `routes` behind the edge middleware and the body limit.
fn with_edge(routes: Router<App>, app: App) -> Router {
    routes
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(app.clone(), edge))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(app)
}

/// Whether key auth and rate limits apply to `path`: every `/api` path except the provider webhooks,
/// which are authenticated by their signatures (health, metrics, docs and the sandbox skip both).
pub fn is_agent_api(path: &str) -> bool {
    (path == "/api" || path.starts_with("/api/")) && !path.starts_with("/api/webhooks/")
}

/// The request's id, from a valid inbound `x-request-id` or a fresh `req_…`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The middleware every request goes through (the module doc lists what it does, in order).
async fn edge(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let (id, id_header) = request_id(&request);
    request.extensions_mut().insert(RequestId(id));
    // The id for the response and the log, read back from the header value (the same text; the
    // request's copy goes to the handler).
    let id = id_header.as_ref().and_then(|v| v.to_str().ok());
    // A panic below answers `internal_error` like a returned one. It unwinds past the access log,
    // the metrics and the rate-limit headers (as it did when those were middlewares of their own
    // inside a panic-catching layer).
    let mut response = AssertUnwindSafe(observe(&app, request, next, id.unwrap_or("")))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| ApiError::internal(None).into_response());
    if matches!(response.extensions().get::<ErrorCode>(), Some(ErrorCode("internal_error"))) {
        let handler_response = std::mem::replace(&mut response, ApiError::internal(id).into_response());
        for (name, value) in
            handler_response.headers().iter().filter(|(n, _)| n.as_str().starts_with("x-ratelimit"))
        {
            response.headers_mut().insert(name, value.clone());
        }
    }
    if let Some(value) = id_header {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The request's id, from a valid inbound `x-request-id` or a fresh `req_…`, as text and as the
/// response header's value (`None` only if a fresh id were no valid header value).
fn request_id(request: &Request) -> (String, Option<HeaderValue>) {
    let inbound = request.headers().get("x-request-id").and_then(|value| {
        let id = value.to_str().ok()?;
        ((1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| (id.to_string(), Some(value.clone())))
    });
    inbound.unwrap_or_else(|| {
        let id = kifly_core::ids::new_id(kifly_core::ids::IdKind::Request);
        let value = HeaderValue::from_str(&id).ok();
        (id, value)
    })
}

/// The Prometheus recorder, installed once per process.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then our metrics go there instead.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Access log line and request metrics, labelled by route template (bounded cardinality), around
/// the agent API's checks and the routes.
async fn observe(app: &App, request: Request, next: Next, request_id: &str) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = agent_checks(app, request, next).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    request_metrics::record(route, &method, status, elapsed);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0).unwrap_or("");
    tracing::info!(
        http.method = %method, http.route = %route, http.status = status, error.code = code,
        duration_ms = elapsed.as_secs_f64() * 1000.0, request_id = request_id,
        "request"
    );
    response
}

/// For the agent API ([`is_agent_api`]): key resolution ([`crate::auth::resolve`]) and the rate limit
/// ([`crate::rate_limit::check`]), whose `x-ratelimit-*` headers go on whatever answers; then the
/// routes.
async fn agent_checks(app: &App, mut request: Request, next: Next) -> Response {
    if !is_agent_api(request.uri().path()) {
        return next.run(request).await;
    }
    if let Err(e) = crate::auth::resolve(app, &mut request).await {
        return e.into_response();
    }
    let Some(decision) = crate::rate_limit::check(app, request.uri().path(), request.extensions()).await
    else {
        return next.run(request).await;
    };
    let mut response = if decision.allowed { next.run(request).await } else { decision.refusal() };
    decision.set_headers(response.headers_mut());
    response
}

/// A JSON response, as axum's `Json` but rendered into a buffer sized for this API's objects: axum
/// starts at 128 bytes, and a cart (about 1.5 KiB) regrew the buffer four times on every read.
pub struct Json<T>(pub T);

/// Initial size of a JSON response buffer.
const JSON_BUFFER: usize = 2048;

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(JSON_BUFFER);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => JsonText(Bytes::from(body)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not serialise a response");
                ApiError::internal(None).into_response()
            }
        }
    }
}

/// A response body that is JSON text already.
pub struct JsonText(pub Bytes);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.0).into_response()
    }
}

/// Maps body-reading failures to the envelope (413 for oversize bodies).
pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large()
    } else {
        ApiError::invalid_request("body", format!("Could not read the request body: {rejection}"))
    }
}

/// Parses a JSON body; empty means `null`. Malformed JSON is `400 invalid_request`.
pub fn read_json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid_request(
            "body",
            format!("Malformed JSON at line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

/// Query-string extractor whose failures answer `400 invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            let field =
                if path != "." { path } else { message.split('`').nth(1).unwrap_or("query").to_string() };
            ApiError::invalid_request(&field, format!("Invalid query string: {message}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn send(router: &Router, path: &str) -> (Response, Value) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.expect("body");
        (Response::from_parts(parts, Body::empty()), serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn internal_errors_and_panics_answer_the_envelope_with_the_request_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let store = crate::app::open_store(&config).await.expect("store");
        let secret = crate::app::load_or_create_secret(&config).expect("secret");
        let app = App::new(store, config, secret).expect("app");
        async fn boom() -> &'static str {
            panic!("a handler panics")
        }
        let routes = Router::new()
            .route("/api/agent/edge-test/fail", get(|| async { ApiError::internal(None) }))
            .route("/api/agent/edge-test/panic", get(boom))
            .route("/edge-test/panic", get(boom));
        let router = with_edge(routes, app);
        let _ = prometheus();

        // A returned internal error gets the request id in its body and keeps the rate-limit headers.
        let (response, body) = send(&router, "/api/agent/edge-test/fail").await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal_error");
        let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id");
        assert!(id.starts_with("req_"));
        assert_eq!(body["details"]["request_id"], id);
        assert_eq!(response.headers().get("x-ratelimit-limit").map(|v| v.to_str().ok()), Some(Some("60")));

        // A panic answers the same envelope with the request id; it unwinds past the rate limit and
        // the request metrics.
        for path in ["/api/agent/edge-test/panic", "/edge-test/panic"] {
            let (response, body) = send(&router, path).await;
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(body["error"], "internal_error", "{path}");
            let id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok());
            assert!(id.is_some_and(|id| body["details"]["request_id"] == id), "{path}: {body}");
            assert!(response.headers().get("x-ratelimit-limit").is_none(), "{path}");
        }
        let metrics = prometheus().render();
        assert!(metrics.contains(r#"route="/api/agent/edge-test/fail",method="GET",status="500""#));
        assert!(!metrics.contains("edge-test/panic"));
    }
}
