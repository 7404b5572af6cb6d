//! The MCP server at `/api/mcp`: streamable HTTP, stateless, on the official Rust SDK (`rmcp`).
//!
//! Every tool calls the same `crate::service` functions as its REST twin, so scopes, ownership,
//! limits and idempotency are the REST rules. This module adds only what MCP needs on top:
//!
//! - [`guard`]: the HTTP edge in front of rmcp. It runs after the router's request-id,
//!   key-resolution and rate-limit layers (group `mcp`) and checks, in order: `Host` and `Origin`
//!   against `mcp_allowed_hosts` (403, DNS-rebinding protection) → the API key (401 with
//!   `WWW-Authenticate: Bearer`) → POST only (405) → `Accept` / `Content-Type` (406 / 415) → body size
//!   (413) → the JSON-RPC envelope (400 with a JSON-RPC error: parse error, batch, bad `id`, bad
//!   params) → `MCP-Protocol-Version` (400 when it is not a version we speak). Only then does rmcp
//!   see the request. Every refusal uses the usual `{error, message, details}` envelope except the
//!   envelope errors, which are JSON-RPC errors as MCP clients expect.
//! - [`KiflyMcp`]: the rmcp `ServerHandler`: `initialize` (versions 2025-11-25 and 2025-06-18),
//!   `ping`, `tools/list`, `tools/call`, `resources/list`, `resources/read`.
//! - [`tools`]: the registry and `tools/call`; one file per tool family ([`catalog`], [`carts`],
//!   [`platform`], [`checkout`], [`buyers`]).
//!
//! `tools/call` requests (the hot path) are answered by the guard itself through the same
//! [`tools::call_reply`], writing the JSON-RPC response from one serialisation of the result; rmcp
//! handles every other message. rmcp runs in stateless JSON mode: no `Mcp-Session-Id`, one JSON response per POST, 202 for
//! notifications, 405 for GET and DELETE. Its own Host check is turned off because the guard does it
//! with the project's error envelope and configuration.

mod buyers;
mod carts;
mod catalog;
mod checkout;
mod guard;
mod platform;
pub mod schema;
pub mod tools;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::request::Parts;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CustomRequest, CustomResult, ErrorCode, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use crate::app::App;
use crate::auth::{AuthState, Caller};
use crate::http::RequestId;

pub use platform::LIMITS_URI;

/// The protocol revisions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: [ProtocolVersion; 2] =
    [ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18];

const INSTRUCTIONS: &str = "Kifly lets you shop a multi-seller US catalog for a buyer. Typical flow: read kifly://platform/limits (or get_platform_limits) once; \
search_products (leave out q to browse) and pick a kifly:variantId, noting its seller handle and that seller's delivery coverage; create_cart with that seller_handle; \
add_to_cart / update_cart_item / get_cart; set_shipping_address (check delivery_eligible); checkout; order_status. Money is integer US cents. \
Failures come back as tool results with isError: true and {error, message, details}: read details, fix the call and try again. \
Changes take an optional idempotency_key: when retrying the same action, reuse its key so nothing happens twice.";

/// The `/api/mcp` route; mount it inside the router's `/api` layers.
pub fn router(app: &App) -> Router<App> {
    let endpoint = Arc::new(guard::Endpoint::new(app));
    Router::new().route(
        "/api/mcp",
        axum::routing::any(move |request: axum::extract::Request| {
            let endpoint = endpoint.clone();
            async move { endpoint.handle(request).await }
        }),
    )
}

/// The rmcp service for one request (stateless: built per request by the factory).
fn service(app: &App) -> StreamableHttpService<KiflyMcp, NeverSessionManager> {
    let app = app.clone();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(crate::http::MAX_BODY_BYTES);
    StreamableHttpService::new(
        move || Ok(KiflyMcp { app: app.clone() }),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// Kifly's MCP handler.
#[derive(Clone)]
pub struct KiflyMcp {
    app: App,
}

fn server_config() -> &'static ServerConfig {
    static CONFIG: OnceLock<ServerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        serde_json::from_value(json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": {
                "tools": {"listChanged": false},
                "resources": {"subscribe": false, "listChanged": false}
            },
            "serverInfo": {
                "name": "kifly",
                "title": "Kifly agentic commerce",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": INSTRUCTIONS,
        }))
        .expect("the server info is valid") // ok: static data, covered by tests
    })
}

/// The request's caller and id, from the HTTP request parts rmcp hands to handlers.
fn caller_of(context: &RequestContext<RoleServer>) -> Result<(Caller, Option<String>), ErrorData> {
    let parts = context.extensions.get::<Parts>();
    let caller = parts.and_then(|p| match p.extensions.get::<AuthState>() {
        Some(AuthState::Authenticated(caller)) => Some(caller.clone()),
        _ => None,
    });
    let request_id = parts.and_then(|p| p.extensions.get::<RequestId>()).map(|r| r.0.clone());
    // The guard refuses unauthenticated requests before rmcp runs, so this is a bug if it happens.
    let caller =
        caller.ok_or_else(|| ErrorData::internal_error("request reached MCP without a caller", None))?;
    Ok((caller, request_id))
}

impl ServerHandler for KiflyMcp {
    fn get_info(&self) -> ServerConfig {
        server_config().clone()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&PROTOCOL_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::registry().tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::registry().get(name).map(|(_, tool)| tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (caller, request_id) = caller_of(&context)?;
        tools::call(&self.app, &caller, request_id.as_deref(), &request.name, request.arguments)
            .await
            .map(CallToolResponse::from)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("Method not found: {}", request.method),
            Some(json!({ "method": request.method })),
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        static RESOURCES: OnceLock<ListResourcesResult> = OnceLock::new();
        Ok(RESOURCES
            .get_or_init(|| {
                serde_json::from_value(json!({"resources": [{
                    "uri": LIMITS_URI,
                    "name": "platform-limits",
                    "title": "Platform limits",
                    "description": "The cart limits Kifly enforces (max_item_quantity, max_cart_total_cents, max_cart_total_usd); the same JSON as get_platform_limits. Read it once per conversation: the operator can change it at any time.",
                    "mimeType": "application/json"
                }]}))
                .expect("the resource list is valid") // ok: static data, covered by tests
            })
            .clone())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != LIMITS_URI {
            return Err(ErrorData::resource_not_found(
                format!("Resource not found: {}", request.uri),
                Some(json!({ "uri": request.uri, "known": [LIMITS_URI] })),
            ));
        }
        let limits = platform::limits_json(&self.app).await.map_err(|e| {
            ErrorData::internal_error(format!("{}: {}", e.code, e.message), Some(json!({ "error": e.code })))
        })?;
        let result: ReadResourceResult = serde_json::from_value(json!({"contents": [{
            "uri": LIMITS_URI,
            "mimeType": "application/json",
            "text": limits.to_string(),
        }]}))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(result.into())
    }
}
