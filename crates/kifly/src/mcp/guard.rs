//! The HTTP edge of `/api/mcp`: everything checked before rmcp sees a request (see the module docs
//! of [`super`] for the order), and the mapping of rmcp's plain-text refusals to the error envelope.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, InitializeRequestParams,
    ReadResourceRequestParams,
};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use serde_json::{Value, json};

use super::{KiflyMcp, PROTOCOL_VERSIONS, tools};
use crate::app::App;
use crate::auth::AuthState;
use crate::error::ApiError;
use crate::http::{MAX_BODY_BYTES, RequestId};

/// JSON-RPC error codes used here.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// The requests of the MCP revisions we speak (anything else is "method not found").
const STANDARD_METHODS: [&str; 13] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

pub struct Endpoint {
    app: App,
    service: StreamableHttpService<KiflyMcp, NeverSessionManager>,
    hosts: AllowedHosts,
}

impl Endpoint {
    pub fn new(app: &App) -> Endpoint {
        Endpoint {
            app: app.clone(),
            service: super::service(app),
            hosts: AllowedHosts::new(&app.config.mcp_hosts()),
        }
    }

    pub async fn handle(&self, request: Request) -> Response {
        match self.check(request).await {
            Ok(Checked::Rmcp(request)) => from_rmcp(self.service.handle(request).await.into_response()).await,
            Ok(Checked::ToolCall { parts, id, params }) => self.call_tool(parts, id, params).await,
            Err(response) => response,
        }
    }

    /// Everything that may refuse a request, in order; `Ok` is what to do with it.
    async fn check(&self, request: Request) -> Result<Checked, Response> {
        let (mut parts, body) = request.into_parts();
        self.hosts.check(&parts.headers, parts.uri.authority()).map_err(IntoResponse::into_response)?;
        match parts.extensions.get::<AuthState>() {
            Some(AuthState::Authenticated(_)) => {}
            Some(AuthState::Revoked) => return Err(unauthorized(ApiError::api_key_revoked(), true)),
            Some(AuthState::Invalid) => return Err(unauthorized(ApiError::invalid_api_key(), true)),
            _ => return Err(unauthorized(ApiError::invalid_api_key(), false)),
        }
        if parts.method != Method::POST {
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This MCP server is stateless: send JSON-RPC messages with POST (there is no GET stream and no session to DELETE).",
            )
            .into_response();
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Err(response);
        }
        if !accepts_json(&parts.headers) {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                "Accept must allow application/json (MCP clients send: application/json, text/event-stream).",
            )
            .into_response());
        }
        // Responses are always JSON here; rmcp wants both types listed, so say so on the client's behalf.
        parts.headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if !is_json(&parts.headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json.",
            )
            .into_response());
        }
        // The only read failure a client can still hear about is a body over the limit (a broken
        // connection has no one left to answer).
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::payload_too_large().into_response())?;
        let envelope = check_envelope(&bytes).map_err(IntoResponse::into_response)?;
        if !matches!(envelope, Envelope::Initialize)
            && let Some(version) = parts.headers.get("mcp-protocol-version")
        {
            let version = version.to_str().unwrap_or("");
            if !PROTOCOL_VERSIONS.iter().any(|v| v.as_str() == version) {
                let supported: Vec<&str> = PROTOCOL_VERSIONS.iter().map(|v| v.as_str()).collect();
                return Err(jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    INVALID_REQUEST,
                    format!(
                        "Unsupported MCP-Protocol-Version {version:?}; this server speaks {}",
                        supported.join(", ")
                    ),
                    Some(json!({ "requested": version, "supported": supported })),
                ));
            }
        }
        Ok(match envelope {
            Envelope::ToolCall { id, params } => Checked::ToolCall { parts, id, params },
            _ => Checked::Rmcp(Request::from_parts(parts, Body::from(bytes))),
        })
    }

    /// `tools/call`, answered at the edge: the same [`tools::call_reply`] rmcp's handler uses, but the
    /// JSON-RPC response is written from one serialisation of the result (the text copy and
    /// `structuredContent` are the same JSON), skipping rmcp's typed round trip. This is the hot path
    /// of every agent; everything else (initialize, lists, resources, notifications) stays with rmcp.
    async fn call_tool(&self, parts: Parts, id: Value, params: CallToolRequestParams) -> Response {
        let caller = match parts.extensions.get::<AuthState>() {
            Some(AuthState::Authenticated(caller)) => caller.clone(),
            _ => return unauthorized(ApiError::invalid_api_key(), false),
        };
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        match tools::call_reply(&self.app, &caller, &params.name, params.arguments).await {
            Ok(reply) => {
                let body = tools::render_jsonrpc(&id, reply, request_id.as_deref());
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
            }
            Err(e) => jsonrpc_error(StatusCode::OK, id, i64::from(e.code.0), e.message.to_string(), e.data),
        }
    }
}

/// What the edge decided about a request that passed every check.
#[expect(clippy::large_enum_variant, reason = "one short-lived value per request; boxing buys nothing")]
enum Checked {
    Rmcp(Request),
    ToolCall { parts: Parts, id: Value, params: CallToolRequestParams },
}

fn unauthorized(error: ApiError, presented: bool) -> Response {
    let mut response = error.into_response();
    let challenge =
        if presented { "Bearer realm=\"kifly\", error=\"invalid_token\"" } else { "Bearer realm=\"kifly\"" };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// True unless `Accept` lists only media types that exclude JSON.
fn accepts_json(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() {
        return true;
    }
    values.iter().flat_map(|v| v.split(',')).any(|range| {
        let mut params = range.split(';');
        let essence = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = params.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        !refused && matches!(essence.as_str(), "application/json" | "application/*" | "*/*")
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON-RPC error response (`id` null when the request's id could not be read).
fn jsonrpc_error(status: StatusCode, id: Value, code: i64, message: String, data: Option<Value>) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A malformed message, answered with HTTP 400 and a JSON-RPC error.
#[derive(Debug)]
struct RpcError {
    id: Value,
    code: i64,
    message: String,
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        jsonrpc_error(StatusCode::BAD_REQUEST, self.id, self.code, self.message, None)
    }
}

/// Checks the JSON-RPC envelope so that malformed messages get JSON-RPC errors (rmcp would answer
/// them with plain text). Returns whether the message is an `initialize` request.
/// What a well-formed message is, as far as the edge cares.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one short-lived value per request; boxing buys nothing")]
enum Envelope {
    /// `initialize` (exempt from the protocol-version header check).
    Initialize,
    /// A `tools/call` request: answered here, without rmcp (see [`Endpoint::call_tool`]).
    ToolCall { id: Value, params: CallToolRequestParams },
    /// Anything else: rmcp's.
    Other,
}

fn check_envelope(bytes: &Bytes) -> Result<Envelope, RpcError> {
    let bad = |id: Value, code: i64, message: String| Err(RpcError { id, code, message });
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => return bad(Value::Null, PARSE_ERROR, format!("Parse error: {e}")),
    };
    let message = match &value {
        Value::Object(map) => map,
        Value::Array(_) => {
            return bad(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: batches are not supported (removed in MCP 2025-06-18); send one message per POST".into(),
            );
        }
        _ => return bad(Value::Null, INVALID_REQUEST, "Invalid Request: expected a JSON-RPC object".into()),
    };
    let id = message.get("id").cloned();
    let usable_id = match &id {
        Some(Value::String(_)) => id.clone().unwrap_or(Value::Null),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => id.clone().unwrap_or(Value::Null),
        None => Value::Null,
        Some(_) => {
            return bad(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: id must be a string or an integer".into(),
            );
        }
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return bad(usable_id, INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"".into());
    }
    let Some(method) = message.get("method") else {
        // A response or error from the client: rmcp refuses those (stateless: nothing to answer).
        return Ok(Envelope::Other);
    };
    let Some(method) = method.as_str() else {
        return bad(usable_id, INVALID_REQUEST, "Invalid Request: method must be a string".into());
    };
    if message.get("params").is_some_and(|p| !p.is_object()) {
        return bad(
            usable_id,
            INVALID_PARAMS,
            format!("Invalid params: params of {method} must be an object"),
        );
    }
    // rmcp reads a standard method whose params do not fit as an unknown custom method ("method
    // not found"); the truth is bad params. The hot methods are checked on their params alone (a
    // struct parse), the rest through rmcp's whole message type (an untagged enum, much slower).
    let params = || message.get("params").cloned().unwrap_or(Value::Null);
    let reason = match method {
        "tools/call" => match serde_json::from_value::<CallToolRequestParams>(params()) {
            Ok(params) if id.is_some() => return Ok(Envelope::ToolCall { id: usable_id, params }),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        },
        "resources/read" => {
            serde_json::from_value::<ReadResourceRequestParams>(params()).err().map(|e| e.to_string())
        }
        "initialize" => {
            serde_json::from_value::<InitializeRequestParams>(params()).err().map(|e| e.to_string())
        }
        "ping" | "tools/list" | "resources/list" => None,
        _ => match serde_json::from_slice::<ClientJsonRpcMessage>(bytes) {
            Err(e) => Some(e.to_string()),
            Ok(ClientJsonRpcMessage::Request(request))
                if matches!(request.request, ClientRequest::CustomRequest(_))
                    && STANDARD_METHODS.contains(&method) =>
            {
                Some("missing or mistyped fields".to_string())
            }
            Ok(_) => None,
        },
    };
    if let Some(reason) = reason {
        return bad(usable_id, INVALID_PARAMS, format!("Invalid params for {method}: {reason}"));
    }
    Ok(if method == "initialize" && id.is_some() { Envelope::Initialize } else { Envelope::Other })
}

/// rmcp answers some refusals with plain text; give them the error envelope instead.
async fn from_rmcp(response: Response) -> Response {
    let status = response.status();
    let is_json = is_json(response.headers());
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::method_not_allowed(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        StatusCode::NOT_ACCEPTABLE => ApiError::new(status, "not_acceptable", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported_media_type", text),
        s if s.is_server_error() => {
            tracing::error!(status = s.as_u16(), error = %text, "MCP transport error");
            ApiError::internal(None)
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", text)
            .with_details(json!({ "field": "body" })),
    };
    error.into_response()
}

/// The `Host` / `Origin` allow-list (DNS-rebinding protection).
struct AllowedHosts {
    any: bool,
    /// (lower-case host without brackets, port if the entry named one)
    entries: Vec<(String, Option<u16>)>,
}

fn bare(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

impl AllowedHosts {
    fn new(list: &[String]) -> AllowedHosts {
        let entries = list
            .iter()
            .filter(|h| h.as_str() != "*")
            .map(|h| {
                if bare(h).parse::<std::net::IpAddr>().is_ok() {
                    return (bare(h), None);
                }
                match h.parse::<axum::http::uri::Authority>() {
                    Ok(a) => (bare(a.host()), a.port_u16()),
                    Err(_) => (bare(h), None),
                }
            })
            .collect();
        AllowedHosts { any: list.iter().any(|h| h == "*"), entries }
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.any || self.entries.iter().any(|(h, p)| *h == bare(host) && (p.is_none() || *p == port))
    }

    fn check(
        &self,
        headers: &HeaderMap,
        authority: Option<&axum::http::uri::Authority>,
    ) -> Result<(), ApiError> {
        if self.any {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<axum::http::uri::Authority>().ok())
            .or_else(|| authority.cloned());
        let host_ok = host.as_ref().is_some_and(|a| self.allows(a.host(), a.port_u16()));
        if !host_ok {
            let shown = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!("Host {shown:?} is not allowed on /api/mcp (DNS-rebinding protection); the operator can add it to mcp_allowed_hosts (KIFLY_MCP_ALLOWED_HOSTS)."),
            )
            .with_details(json!({ "host": shown })));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let text = origin.to_str().unwrap_or("");
            let parsed = text.parse::<axum::http::Uri>().ok();
            let ok = parsed.as_ref().is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri
                        .host()
                        .is_some_and(|h| self.allows(h, uri.port_u16().or(default_port(uri.scheme_str()))))
            });
            if !ok {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    format!("Origin {text:?} is not allowed on /api/mcp (DNS-rebinding protection); the operator can add its host to mcp_allowed_hosts (KIFLY_MCP_ALLOWED_HOSTS)."),
                )
                .with_details(json!({ "origin": text })));
            }
        }
        Ok(())
    }
}

fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        let hosts = AllowedHosts::new(&[
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "shop.example:8443".into(),
        ]);
        for ok in ["127.0.0.1:8080", "localhost", "[::1]:9", "LOCALHOST:1", "shop.example:8443"] {
            let h: &'static str = Box::leak(ok.to_string().into_boxed_str());
            assert!(hosts.check(&headers(&[("host", h)]), None).is_ok(), "{ok}");
        }
        for bad in ["evil.example.com", "shop.example:8444", "127.0.0.2:80", "localhost.evil.com"] {
            let h: &'static str = Box::leak(bad.to_string().into_boxed_str());
            let err = hosts.check(&headers(&[("host", h)]), None).unwrap_err();
            assert_eq!(err.code, "host_not_allowed", "{bad}");
        }
        assert!(hosts.check(&headers(&[]), None).is_err(), "a missing Host is refused");
        let origin = |o: &'static str| hosts.check(&headers(&[("host", "localhost:1"), ("origin", o)]), None);
        assert!(origin("http://localhost:6274").is_ok());
        assert!(origin("https://shop.example:8443").is_ok());
        assert_eq!(origin("http://evil.example.com").unwrap_err().code, "origin_not_allowed");
        assert_eq!(origin("null").unwrap_err().code, "origin_not_allowed");
        assert_eq!(
            origin("https://shop.example").unwrap_err().code,
            "origin_not_allowed",
            "port 443 is not 8443"
        );
        let any = AllowedHosts::new(&["*".into()]);
        assert!(any.check(&headers(&[("host", "evil.example.com")]), None).is_ok());
    }

    #[test]
    fn accept_must_allow_json() {
        assert!(accepts_json(&headers(&[])));
        assert!(accepts_json(&headers(&[("accept", "application/json, text/event-stream")])));
        assert!(accepts_json(&headers(&[("accept", "*/*")])));
        assert!(!accepts_json(&headers(&[("accept", "text/event-stream")])));
        assert!(!accepts_json(&headers(&[("accept", "application/json;q=0, text/html")])));
    }

    #[test]
    fn envelopes_are_checked() {
        let code = |body: &str| {
            let error = check_envelope(&Bytes::from(body.to_string())).unwrap_err();
            assert!(matches!(error.code, PARSE_ERROR | INVALID_REQUEST | INVALID_PARAMS), "{body}");
            error
        };
        code("{not json");
        code("[]");
        code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#);
        code(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#);
        code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#);
        code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#);
        code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_cart","arguments":[]}}"#);
        code(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#);
        let kind = |body: &str| check_envelope(&Bytes::from(body.to_string())).expect("well formed");
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Envelope::Other));
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Envelope::Other));
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert!(matches!(kind(init), Envelope::Initialize));
        let call =
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_cart","arguments":{}}}"#;
        assert!(matches!(kind(call), Envelope::ToolCall { id: Value::String(_), .. }));
        // A tools/call notification (no id) has no answer: rmcp's.
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#),
            Envelope::Other
        ));
    }
}
