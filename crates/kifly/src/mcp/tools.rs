//! The tool registry (definitions, schemas, annotations) and `tools/call`: validate the arguments
//! against the published input schema, run the tool through the service layer, and render the
//! outcome as a tool result whose `structuredContent` matches the published output schema.

use std::collections::HashMap;
use std::sync::OnceLock;

use kifly_store::IdempotencyScope;
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject, Tool};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::schema::{self, Violation};
use super::{buyers, carts, catalog, checkout, platform};
use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::{self, Outcome, TxFuture};

/// `_meta` key set on a result that replays an earlier call with the same `idempotency_key`.
pub const REPLAYED_META: &str = "kifly.dev/idempotentReplayed";

/// The behaviour hints of MCP tool annotations.
#[derive(Debug, Clone, Copy)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// Reads Kifly's own data only.
pub const READ_ONLY: Hints =
    Hints { read_only: true, destructive: false, idempotent: true, open_world: false };

/// One tool as published by `tools/list`.
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    /// What it does and what the agent should do next.
    pub description: &'static str,
    /// The argument properties (without `idempotency_key`, which [`Self::mutating`] adds).
    pub properties: Value,
    pub required: &'static [&'static str],
    /// The shape of a successful result.
    pub output: Value,
    pub hints: Hints,
    /// Changes state: takes the optional `idempotency_key`.
    pub mutating: bool,
}

impl ToolDef {
    pub fn input_schema(&self) -> Value {
        let mut properties = self.properties.as_object().cloned().unwrap_or_default();
        if self.mutating {
            properties.insert("idempotency_key".into(), schema::idempotency_key());
        }
        schema::object(Value::Object(properties), self.required)
    }

    /// Success or error: every `structuredContent` this tool returns matches it, `isError` or not.
    /// Field descriptions are left out (the tool description explains the result; hosts show models
    /// the input schema, and the output schemas would otherwise be most of `tools/list`).
    pub fn output_schema(&self) -> Value {
        let mut output = json!({"type": "object", "anyOf": [self.output, schema::error_object()]});
        schema::strip_descriptions(&mut output);
        output
    }

    fn to_tool(&self) -> Result<Tool, serde_json::Error> {
        serde_json::from_value(json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema(),
            "outputSchema": self.output_schema(),
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.hints.read_only,
                "destructiveHint": self.hints.destructive,
                "idempotentHint": self.hints.idempotent,
                "openWorldHint": self.hints.open_world,
            },
        }))
    }
}

/// Every tool, in the order `tools/list` gives them (a stable order helps prompt caching).
pub struct Registry {
    pub defs: Vec<ToolDef>,
    pub tools: Vec<Tool>,
    inputs: Vec<Value>,
    index: HashMap<&'static str, usize>,
}

impl Registry {
    fn build() -> Registry {
        let mut defs = Vec::new();
        defs.extend(catalog::tools());
        defs.extend(carts::tools());
        defs.extend(checkout::tools());
        defs.extend(buyers::order_tools());
        defs.extend(platform::tools());
        defs.extend(buyers::buyer_tools());
        let tools = defs
            .iter()
            .map(|d| d.to_tool().unwrap_or_else(|e| panic!("tool {} has an invalid definition: {e}", d.name))) // ok: static data, covered by tests
            .collect();
        let inputs = defs.iter().map(ToolDef::input_schema).collect();
        let index = defs.iter().enumerate().map(|(i, d)| (d.name, i)).collect();
        Registry { defs, tools, inputs, index }
    }

    pub fn get(&self, name: &str) -> Option<(&ToolDef, &Tool)> {
        self.index.get(name).map(|&i| (&self.defs[i], &self.tools[i]))
    }
}

pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}

/// What a tool call produced, before it is rendered as an MCP result.
#[derive(Debug)]
pub struct Reply {
    pub ok: bool,
    /// The result on success, the `{error, message, details}` object on failure.
    pub body: Value,
    pub replayed: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply { ok: true, body, replayed: false }
    }

    pub fn error(e: &ApiError) -> Reply {
        let body = serde_json::from_slice(&e.body_bytes()).unwrap_or_else(|_| json!({}));
        Reply { ok: false, body, replayed: false }
    }

    /// The code of a failed call.
    pub fn code(&self) -> &str {
        if self.ok { "" } else { self.body["error"].as_str().unwrap_or("") }
    }

    fn into_result(mut self, request_id: Option<&str>) -> CallToolResult {
        if self.code() == "internal_error" {
            self.body["details"] = json!({ "request_id": request_id });
        }
        let text = self.body.to_string();
        let mut result = if self.ok {
            CallToolResult::success(vec![ContentBlock::text(text)])
        } else {
            CallToolResult::error(vec![ContentBlock::text(text)])
        };
        result.structured_content = Some(self.body);
        if self.replayed {
            let mut meta = JsonObject::new();
            meta.insert(REPLAYED_META.into(), Value::Bool(true));
            result.meta = Some(MetaObject(meta));
        }
        result
    }
}

impl<T: serde::Serialize> From<Result<T, ApiError>> for Reply {
    fn from(result: Result<T, ApiError>) -> Reply {
        match result.and_then(|v| serde_json::to_value(v).map_err(|_| ApiError::internal(None))) {
            Ok(body) => Reply::ok(body),
            Err(e) => Reply::error(&e),
        }
    }
}

/// Maps a schema violation to the REST codes: shape problems are `invalid_request`, bad values
/// `validation_error`; both name the field.
fn violation_error(v: Violation) -> ApiError {
    let field = if v.path.is_empty() { "arguments".to_string() } else { v.path };
    if v.shape {
        ApiError::invalid_request(&field, format!("{field} {}", v.reason))
    } else {
        ApiError::validation(&field, v.reason)
    }
}

/// Deserialises validated arguments into a service input.
pub fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ApiError> {
    crate::service::parse_body(args)
}

/// A string argument the schema made required.
pub fn arg<'a>(args: &'a Value, name: &str) -> &'a str {
    args.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Removes `names` from an arguments object and returns the rest (the service body).
pub fn without(args: &Value, names: &[&str]) -> Value {
    let mut rest: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
    for name in names {
        rest.remove(*name);
    }
    Value::Object(rest)
}

/// Runs a mutating tool: exactly once per `idempotency_key` when one is given (scope: key id,
/// `MCP`, tool name; fingerprint: the other arguments), otherwise in one plain transaction. `op`
/// gets the arguments without `idempotency_key`.
pub async fn write<F>(app: &App, caller: &Caller, tool: &str, args: Value, op: F) -> Reply
where
    F: for<'a> FnOnce(&'a mut dyn kifly_store::StoreTx, Value) -> TxFuture<'a> + Send + 'static,
{
    let key = args.get("idempotency_key").and_then(Value::as_str).map(str::to_string);
    let body = without(&args, &["idempotency_key"]);
    let Some(key) = key else {
        return match idempotency::run_in_tx(app, body, op).await {
            Ok((_, rendered)) => match serde_json::from_str(rendered.get()) {
                Ok(value) => Reply::ok(value),
                Err(_) => Reply::error(&ApiError::internal(None)),
            },
            Err(e) => Reply::error(&e),
        };
    };
    let fingerprint = idempotency::fingerprint(&body);
    outcome_reply(idempotency::run_once(app, mcp_scope(caller, tool, key), &fingerprint, body, op).await)
}

/// The idempotency scope of an MCP tool call: key id, `MCP`, tool name, `idempotency_key`.
fn mcp_scope(caller: &Caller, tool: &str, key: String) -> IdempotencyScope {
    IdempotencyScope { principal: caller.id().to_string(), method: "MCP".into(), path: tool.to_string(), key }
}

/// A tool result from an idempotent run's (stored or fresh) outcome.
fn outcome_reply(outcome: Result<Outcome, ApiError>) -> Reply {
    match outcome {
        Ok(Outcome { status, body, replayed, .. }) => match serde_json::from_slice::<Value>(&body) {
            Ok(value) => Reply { ok: status.is_success(), body: value, replayed },
            Err(_) => Reply::error(&ApiError::internal(None)),
        },
        Err(e) => Reply::error(&e),
    }
}

/// Runs a multi-step mutating tool (its own transactions: checkout, buyer accounts): exactly once per
/// `idempotency_key` when one is given (scope: key id, `MCP`, tool name), otherwise once, committing
/// its final transaction. `op` gets the arguments without `idempotency_key`.
pub async fn write_steps<F>(app: &App, caller: &Caller, tool: &str, args: Value, op: F) -> Reply
where
    F: FnOnce(Value) -> idempotency::StepsFuture,
{
    let key = args.get("idempotency_key").and_then(Value::as_str).map(str::to_string);
    let body = without(&args, &["idempotency_key"]);
    let Some(key) = key else {
        return match op(body).await {
            Ok((tx, _, value)) => match tx.commit().await {
                Ok(()) => Reply::ok(value),
                Err(e) => Reply::error(&ApiError::from(e)),
            },
            Err(e) => Reply::error(&e),
        };
    };
    let fingerprint = idempotency::fingerprint(&body);
    let scope = mcp_scope(caller, tool, key);
    outcome_reply(idempotency::run_once_leased_steps(app, scope, &fingerprint, move || op(body)).await)
}

/// `tools/call`: unknown tools are a protocol error (`-32602`); everything else is a tool result.
pub async fn call(
    app: &App,
    caller: &Caller,
    request_id: Option<&str>,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<CallToolResult, ErrorData> {
    Ok(call_reply(app, caller, name, arguments).await?.into_result(request_id))
}

/// Validates and runs a tool call; the [`Reply`] before it is rendered.
pub async fn call_reply(
    app: &App,
    caller: &Caller,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<Reply, ErrorData> {
    let registry = registry();
    let Some(&index) = registry.index.get(name) else {
        let known: Vec<&str> = registry.defs.iter().map(|d| d.name).collect();
        return Err(ErrorData::invalid_params(
            format!("Unknown tool: {name}"),
            Some(json!({ "tool": name, "known_tools": known })),
        ));
    };
    let args = Value::Object(arguments.unwrap_or_default());
    let reply = match schema::validate(&registry.inputs[index], &args) {
        Err(v) => Reply::error(&violation_error(v)),
        Ok(()) => dispatch(app, caller, registry.defs[index].name, args).await,
    };
    let outcome = if reply.ok { "ok" } else { reply.code() };
    metrics::counter!("kifly_mcp_tool_calls_total", "tool" => registry.defs[index].name, "outcome" => outcome.to_string())
        .increment(1);
    tracing::debug!(mcp.tool = name, error.code = reply.code(), replayed = reply.replayed, "mcp tool call");
    Ok(reply)
}

/// The JSON-RPC response of a tool call, written from one serialisation of its body: the text copy
/// is that JSON as a string and `structuredContent` is the same JSON verbatim (what rmcp would
/// produce from [`Reply::into_result`], without building the typed result).
pub fn render_jsonrpc(id: &Value, mut reply: Reply, request_id: Option<&str>) -> Vec<u8> {
    if reply.code() == "internal_error" {
        reply.body["details"] = json!({ "request_id": request_id });
    }
    let json = reply.body.to_string();
    // A string always serialises; the fallback only keeps this function total.
    let text = serde_json::to_string(&json).unwrap_or_else(|_| "\"\"".into());
    let mut out = Vec::with_capacity(json.len() + text.len() + 128);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(br#"}],"structuredContent":"#);
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(br#","isError":"#);
    out.extend_from_slice(if reply.ok { b"false" } else { b"true" });
    if reply.replayed {
        out.extend_from_slice(format!(r#","_meta":{{"{REPLAYED_META}":true}}"#).as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

async fn dispatch(app: &App, caller: &Caller, name: &'static str, args: Value) -> Reply {
    match name {
        "search_products" => catalog::search_products(app, caller, args).await,
        "get_seller" => catalog::get_seller(app, caller, args).await,
        "create_cart" => carts::create_cart(app, caller, args).await,
        "add_to_cart" => carts::add_to_cart(app, caller, args).await,
        "update_cart_item" => carts::update_cart_item(app, caller, args).await,
        "get_cart" => carts::get_cart(app, caller, args).await,
        "set_shipping_address" => carts::set_shipping_address(app, caller, args).await,
        "get_platform_limits" => platform::get_platform_limits(app).await,
        "checkout" => checkout::checkout(app, caller, args).await,
        "order_status" => checkout::order_status(app, caller, args).await,
        "list_orders" => buyers::list_orders(app, caller, args).await,
        "register_buyer" => buyers::register_buyer(app, caller, args).await,
        "request_buyer_code" => buyers::request_buyer_code(app, caller, args).await,
        "verify_buyer" => buyers::verify_buyer(app, caller, args).await,
        "get_buyer_profile" => buyers::get_buyer_profile(app, caller, args).await,
        "save_buyer_address" => buyers::save_buyer_address(app, caller, args).await,
        "submit_feedback" => buyers::submit_feedback(app, caller, args).await,
        "request_feature" => buyers::request_feature(app, caller, args).await,
        other => Reply::error(&ApiError::not_found("not_found", format!("no tool {other}"))),
    }
}
