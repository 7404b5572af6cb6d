//! The MCP server at `/api/mcp`, over a real socket: transport rules, auth, rate limits,
//! DNS-rebinding protection, the JSON-RPC envelope, and every tool (success and error paths).
//! Every tool result is checked against the tool's published `outputSchema`, and its text copy
//! against its `structuredContent`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::Method;
use kifly::mcp::schema;
use kifly_core::scope::Scope;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::{TestApp, address};

const TOOLS: [&str; 18] = [
    "search_products",
    "get_seller",
    "create_cart",
    "add_to_cart",
    "update_cart_item",
    "get_cart",
    "set_shipping_address",
    "checkout",
    "order_status",
    "list_orders",
    "get_platform_limits",
    "submit_feedback",
    "request_feature",
    "register_buyer",
    "request_buyer_code",
    "verify_buyer",
    "get_buyer_profile",
    "save_buyer_address",
];

/// A Kifly server on 127.0.0.1:0 and an HTTP client for it.
struct Server {
    t: TestApp,
    url: String,
    origin: String,
    http: reqwest::Client,
    output_schemas: HashMap<String, Value>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error envelope with this status and code; returns the body.
    #[track_caller]
    fn envelope(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        assert_eq!(body["error"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        assert!(body["details"].is_object(), "{body}");
        assert!(self.header("x-request-id").is_some());
        body
    }

    /// Asserts a JSON-RPC error with this HTTP status and code; returns the error object.
    #[track_caller]
    fn rpc_error(&self, status: u16, code: i64) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body["error"].clone()
    }
}

impl Server {
    async fn start() -> Server {
        Self::with_config(|_| {}).await
    }

    /// A server whose payment clients reach the built-in sandbox (for checkout).
    async fn serving() -> Server {
        let t = TestApp::serving().await;
        let base = t.base_url();
        Server::around(t, base)
    }

    fn around(t: TestApp, origin: String) -> Server {
        let output_schemas = kifly::mcp::tools::registry()
            .defs
            .iter()
            .map(|d| (d.name.to_string(), d.output_schema()))
            .collect();
        Server { t, url: format!("{origin}/api/mcp"), origin, http: reqwest::Client::new(), output_schemas }
    }

    async fn with_config(tweak: impl FnOnce(&mut kifly::config::Config)) -> Server {
        let t = TestApp::with_config(tweak).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = t.router.clone();
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.ok();
        });
        Server::around(t, format!("http://{addr}"))
    }

    /// POSTs `body` with `key` (Bearer) and the standard MCP headers plus `extra`.
    async fn post(&self, key: Option<&str>, body: &str, extra: &[(&str, &str)]) -> Reply {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Reply { status, headers, text }
    }

    /// A JSON-RPC request with the network key; returns the whole response.
    async fn rpc_as(&self, key: &str, method: &str, params: Value) -> Reply {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        self.post(Some(key), &body.to_string(), &[("mcp-protocol-version", "2025-11-25")]).await
    }

    /// The `result` of a successful JSON-RPC request.
    async fn result(&self, method: &str, params: Value) -> Value {
        let reply = self.rpc_as(&self.t.network_key, method, params).await;
        let body = reply.json();
        assert_eq!(reply.status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], 7, "{body}");
        assert!(body.get("error").is_none(), "{body}");
        body["result"].clone()
    }

    /// Calls a tool with `key` and checks the result's shape: the text copy equals
    /// `structuredContent`, which matches the tool's output schema. Returns the result.
    async fn call_as(&self, key: &str, tool: &str, args: Value) -> Value {
        let reply = self.rpc_as(key, "tools/call", json!({"name": tool, "arguments": args})).await;
        let body = reply.json();
        assert_eq!(reply.status, StatusCode::OK, "{body}");
        let result = body["result"].clone();
        assert!(result.is_object(), "{tool}: {body}");
        let structured = &result["structuredContent"];
        assert!(structured.is_object(), "{tool}: no structuredContent: {body}");
        let text = result["content"][0]["text"].as_str().expect("a text copy");
        assert_eq!(result["content"][0]["type"], "text");
        assert_eq!(
            &serde_json::from_str::<Value>(text).expect("text is JSON"),
            structured,
            "text copy differs"
        );
        let schema = &self.output_schemas[tool];
        if let Err(v) = schema::validate(schema, structured) {
            panic!(
                "{tool}: structuredContent does not match outputSchema at {}: {}\n{structured}",
                v.path, v.reason
            );
        }
        assert!(result["isError"].is_boolean(), "{result}");
        result
    }

    /// A successful tool call with the network key; returns `structuredContent`.
    async fn ok(&self, tool: &str, args: Value) -> Value {
        self.ok_as(&self.t.network_key.clone(), tool, args).await
    }

    async fn ok_as(&self, key: &str, tool: &str, args: Value) -> Value {
        let result = self.call_as(key, tool, args).await;
        assert_eq!(result["isError"], false, "{tool}: {result}");
        result["structuredContent"].clone()
    }

    /// A failed tool call (`isError: true`) with the network key; asserts the code, returns the
    /// error object.
    async fn fails(&self, tool: &str, args: Value, code: &str) -> Value {
        self.fails_as(&self.t.network_key.clone(), tool, args, code).await
    }

    async fn fails_as(&self, key: &str, tool: &str, args: Value, code: &str) -> Value {
        let result = self.call_as(key, tool, args).await;
        assert_eq!(result["isError"], true, "{tool}: {result}");
        let error = result["structuredContent"].clone();
        assert_eq!(error["error"], code, "{tool}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        error
    }

    async fn cart(&self, seller: &str) -> String {
        self.ok("create_cart", json!({"seller_handle": seller})).await["cart_id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn init_body(version: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}})
    .to_string()
}

// --- Transport -------------------------------------------------------------------------------

#[tokio::test]
async fn initialize_negotiates_the_two_supported_versions_without_a_session() {
    let s = Server::start().await;
    let key = s.t.network_key.clone();
    for (asked, answered) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let reply = s.post(Some(&key), &init_body(asked), &[]).await;
        let body = reply.json();
        assert_eq!(reply.status, StatusCode::OK, "{body}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.header("mcp-session-id").is_none(), "stateless: no session id");
        let result = &body["result"];
        assert_eq!(result["protocolVersion"], answered, "asked {asked}");
        assert_eq!(result["serverInfo"]["name"], "kifly");
        assert!(result["capabilities"]["tools"].is_object());
        assert!(result["capabilities"]["resources"].is_object());
        assert!(result["instructions"].as_str().unwrap().contains("search_products"));
    }
    // The header, when sent with initialize, must agree with the body.
    let reply = s.post(Some(&key), &init_body("2025-06-18"), &[("mcp-protocol-version", "2025-11-25")]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
}

#[tokio::test]
async fn notifications_are_accepted_and_ping_answers_an_empty_object() {
    let s = Server::start().await;
    let key = s.t.network_key.clone();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let reply = s.post(Some(&key), &note, &[("mcp-protocol-version", "2025-06-18")]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.text, "");
    assert_eq!(s.result("ping", json!({})).await, json!({}));
    // Without params and with a string id, as the conformance suite sends it.
    let reply = s.post(Some(&key), r#"{"jsonrpc":"2.0","id":"123","method":"ping"}"#, &[]).await;
    assert_eq!(reply.json(), json!({"jsonrpc": "2.0", "id": "123", "result": {}}));
}

#[tokio::test]
async fn get_and_delete_are_not_allowed_on_a_stateless_server() {
    let s = Server::start().await;
    for method in [Method::GET, Method::DELETE, Method::PUT] {
        let request = s
            .http
            .request(method.clone(), &s.url)
            .header("authorization", format!("Bearer {}", s.t.network_key))
            .header("accept", "text/event-stream");
        let reply = s.send(request).await;
        reply.envelope(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("POST"), "{method}");
    }
}

#[tokio::test]
async fn the_protocol_version_header_is_honoured() {
    let s = Server::start().await;
    let key = s.t.network_key.clone();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for ok in ["2025-06-18", "2025-11-25"] {
        let reply = s.post(Some(&key), ping, &[("mcp-protocol-version", ok)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{ok}: {}", reply.text);
    }
    // Without the header the server assumes a version it speaks (lenient, as the spec allows).
    assert_eq!(s.post(Some(&key), ping, &[]).await.status, StatusCode::OK);
    for bad in ["2025-03-26", "2026-07-28", "banana"] {
        let reply = s.post(Some(&key), ping, &[("mcp-protocol-version", bad)]).await;
        let error = reply.rpc_error(400, -32600);
        assert_eq!(error["data"]["supported"], json!(["2025-11-25", "2025-06-18"]), "{bad}");
    }
}

#[tokio::test]
async fn malformed_messages_get_json_rpc_errors() {
    let s = Server::start().await;
    let key = s.t.network_key.clone();
    s.post(Some(&key), "{not json", &[]).await.rpc_error(400, -32700);
    s.post(Some(&key), r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, &[]).await.rpc_error(400, -32600);
    s.post(Some(&key), r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, &[]).await.rpc_error(400, -32600);
    s.post(Some(&key), r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, &[]).await.rpc_error(400, -32600);
    let e = s.post(Some(&key), r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{}}"#, &[]).await;
    e.rpc_error(400, -32602);
    assert_eq!(e.json()["id"], 9, "the id is echoed when it could be read");
    s.post(
        Some(&key),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get_cart","arguments":"x"}}"#,
        &[],
    )
    .await
    .rpc_error(400, -32602);
    // An unknown method and an unknown tool are protocol errors too.
    let error = s.rpc_as(&key, "shop/everything", json!({})).await.rpc_error(200, -32601);
    assert!(error["message"].as_str().unwrap().contains("shop/everything"));
    let error = s
        .rpc_as(&key, "tools/call", json!({"name": "buy_everything", "arguments": {}}))
        .await
        .rpc_error(200, -32602);
    assert_eq!(error["data"]["known_tools"].as_array().unwrap().len(), 18);
    // Transport refusals use the error envelope.
    let plain = s.http.post(&s.url).bearer_auth(&key).header("content-type", "text/plain").body("{}");
    s.send(plain).await.envelope(415, "unsupported_media_type");
    let sse_only = s
        .http
        .post(&s.url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    s.send(sse_only).await.envelope(406, "not_acceptable");
    let huge =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#, "a".repeat(1_100_000));
    s.post(Some(&key), &huge, &[]).await.envelope(413, "payload_too_large");
}

// --- Auth, rate limits, DNS rebinding --------------------------------------------------------

#[tokio::test]
async fn missing_bad_and_revoked_keys_get_401_with_a_bearer_challenge() {
    let s = Server::start().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let reply = s.post(None, ping, &[]).await;
    reply.envelope(401, "invalid_api_key");
    assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer"));
    for bad in ["kfa_live_nope", "sk_test_123"] {
        let reply = s.post(Some(bad), ping, &[]).await;
        reply.envelope(401, "invalid_api_key");
        assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"));
    }
    let key = s.t.create_key(None, &Scope::ALL).await;
    let id = {
        let hash = kifly::auth::hash_key(s.t.app.secret.as_bytes(), &key);
        s.t.store.find_api_key_by_hash(&hash).await.unwrap().unwrap().id
    };
    assert!(s.t.store.revoke_api_key(&id, kifly::app::now_ms()).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let reply = s.post(Some(&key), ping, &[]).await;
    reply.envelope(401, "api_key_revoked");
    assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer"));
    // X-Api-Key works as well as Authorization: Bearer.
    let reply = s.post(None, ping, &[("x-api-key", &s.t.network_key)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn the_mcp_bucket_is_per_token_and_separate_from_rest() {
    let s = Server::with_config(|c| c.rate_limit_mcp = "3/60".into()).await;
    let key = s.t.network_key.clone();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for remaining in ["2", "1", "0"] {
        let reply = s.post(Some(&key), ping, &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
        assert!(reply.header("x-ratelimit-reset").is_some());
    }
    let reply = s.post(Some(&key), ping, &[]).await;
    reply.envelope(429, "rate_limited");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    // Another token has its own bucket; REST has its own group.
    let other = s.t.create_key(None, &Scope::ALL).await;
    assert_eq!(s.post(Some(&other), ping, &[]).await.status, StatusCode::OK);
    s.t.get("/api/agent/sellers/trailhead-outfitters", &key).await.assert_ok(200);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let s = Server::start().await;
    let key = s.t.network_key.clone();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let reply = s
        .post(Some(&key), ping, &[("host", "evil.example.com"), ("origin", "http://evil.example.com")])
        .await;
    reply.envelope(403, "host_not_allowed");
    let reply = s.post(Some(&key), ping, &[("origin", "http://evil.example.com")]).await;
    reply.envelope(403, "origin_not_allowed");
    s.post(Some(&key), ping, &[("origin", "null")]).await.envelope(403, "origin_not_allowed");
    // The refusal comes before authentication: a page on a rebound domain learns nothing.
    s.post(None, ping, &[("host", "evil.example.com")]).await.envelope(403, "host_not_allowed");
    for origin in [s.origin.as_str(), "http://localhost:6274", "http://[::1]:3000"] {
        let reply = s.post(Some(&key), ping, &[("origin", origin)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin}: {}", reply.text);
    }
    let reply = s.post(Some(&key), ping, &[("host", "localhost:8080")]).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Configured hosts (and the public URL's host) are allowed; loopback is then no longer implied.
    let s = Server::with_config(|c| {
        c.mcp_allowed_hosts = vec!["shop.example.com".into(), "127.0.0.1".into()];
        c.public_url = Some("https://kifly.example.org".into());
    })
    .await;
    let key = s.t.network_key.clone();
    for host in ["shop.example.com", "kifly.example.org"] {
        let origin = format!("https://{host}");
        let reply = s.post(Some(&key), ping, &[("host", host), ("origin", &origin)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text);
    }
    s.post(Some(&key), ping, &[("host", "localhost")]).await.envelope(403, "host_not_allowed");
}

// --- Listing ---------------------------------------------------------------------------------

#[tokio::test]
async fn tools_list_publishes_18_tools_with_strict_schemas_and_hints() {
    let s = Server::start().await;
    let tools = s.result("tools/list", json!({})).await["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, TOOLS);
    let name_rule = regex_lite::Regex::new("^[A-Za-z0-9_.-]{1,128}$").unwrap();
    for tool in &tools {
        let name = tool["name"].as_str().unwrap();
        assert!(name_rule.is_match(name));
        assert!(tool["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        let description = tool["description"].as_str().unwrap();
        assert!(description.len() > 80, "{name}: say what to do next");
        let input = &tool["inputSchema"];
        assert_eq!(input["type"], "object", "{name}");
        assert_eq!(input["additionalProperties"], false, "{name}");
        assert!(schema::unknown_keywords(input).is_empty(), "{name}: {:?}", schema::unknown_keywords(input));
        for required in input["required"].as_array().unwrap() {
            assert!(input["properties"].get(required.as_str().unwrap()).is_some(), "{name}: {required}");
        }
        let output = &tool["outputSchema"];
        assert_eq!(output["type"], "object", "{name}");
        assert!(
            schema::unknown_keywords(output).is_empty(),
            "{name}: {:?}",
            schema::unknown_keywords(output)
        );
        let hints = &tool["annotations"];
        for hint in ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] {
            assert!(hints[hint].is_boolean(), "{name}: {hint}");
        }
        let mutating = hints["readOnlyHint"] == false;
        assert_eq!(input["properties"].get("idempotency_key").is_some(), mutating, "{name}");
        assert!(!description.contains("not available on this server yet"), "{name}: every tool works now");
    }
    let by_name: HashMap<&str, &Value> = tools.iter().map(|t| (t["name"].as_str().unwrap(), t)).collect();
    assert_eq!(by_name["search_products"]["annotations"]["readOnlyHint"], true);
    assert_eq!(by_name["update_cart_item"]["annotations"]["destructiveHint"], true);
    assert_eq!(by_name["checkout"]["annotations"]["openWorldHint"], true);
    let add = &by_name["add_to_cart"]["inputSchema"];
    assert_eq!(add["required"], json!(["cart_id", "variant_id"]));
    assert_eq!(add["properties"]["quantity"]["minimum"], 1);
    assert_eq!(by_name["verify_buyer"]["inputSchema"]["properties"]["code"]["pattern"], "^[0-9]{6}$");
    assert_eq!(by_name["search_products"]["inputSchema"]["properties"]["limit"]["maximum"], 50);
}

#[tokio::test]
async fn the_limits_resource_reads_like_the_rest_endpoint() {
    let s = Server::start().await;
    let resources = s.result("resources/list", json!({})).await["resources"].clone();
    assert_eq!(resources[0]["uri"], "kifly://platform/limits");
    assert_eq!(resources[0]["mimeType"], "application/json");
    assert!(resources[0]["description"].as_str().is_some());
    let read = s.result("resources/read", json!({"uri": "kifly://platform/limits"})).await;
    let content = &read["contents"][0];
    assert_eq!(content["uri"], "kifly://platform/limits");
    let limits: Value = serde_json::from_str(content["text"].as_str().unwrap()).unwrap();
    let rest = s.t.send(Method::GET, "/api/agent/platform/limits", None, &[], None).await.assert_ok(200);
    assert_eq!(limits, rest);
    assert_eq!(limits["max_item_quantity"], 20);
    let error = s
        .rpc_as(&s.t.network_key, "resources/read", json!({"uri": "kifly://nope"}))
        .await
        .rpc_error(200, -32002);
    assert_eq!(error["data"]["uri"], "kifly://nope");
    assert_eq!(s.result("resources/templates/list", json!({})).await["resourceTemplates"], json!([]));
}

// --- Catalog tools ---------------------------------------------------------------------------

#[tokio::test]
async fn search_products_matches_rest_and_validates_its_arguments() {
    let s = Server::start().await;
    let list = s.ok("search_products", json!({"q": "down jacket", "limit": 3})).await;
    assert_eq!(list["@type"], "ItemList");
    let first = &list["itemListElement"][0];
    assert!(first["kifly:variantId"].as_str().unwrap().starts_with("var_"));
    assert!(list["kifly:sellers"][first["kifly:seller"].as_str().unwrap()].is_object());
    let rest = s.t.get("/api/agent/products?q=down%20jacket&limit=3", &s.t.network_key).await.assert_ok(200);
    assert_eq!(list, rest, "the same service, the same answer");

    let browse = s.ok("search_products", json!({})).await;
    assert_eq!(browse["kifly:totalCatalogSize"], 74);
    assert_eq!(browse["numberOfItems"], 10);
    let page2 = s.ok("search_products", json!({"limit": 50, "offset": 50})).await;
    assert_eq!(page2["numberOfItems"], 24);
    let none = s.ok("search_products", json!({"q": "zzqqxx unobtainium"})).await;
    assert_eq!(none["kifly:emptyReason"], "no_matches_for_query");
    assert!(!none["kifly:availableCategories"].as_array().unwrap().is_empty());
    let scoped = s.ok_as(&s.t.seller_key.clone(), "search_products", json!({"q": "jacket"})).await;
    assert_eq!(scoped["kifly:seller"]["handle"], "trailhead-outfitters");

    let e = s.fails("search_products", json!({"limit": 0}), "validation_error").await;
    assert_eq!(e["details"]["field"], "limit");
    let e = s.fails("search_products", json!({"limit": "ten"}), "invalid_request").await;
    assert_eq!(e["details"]["field"], "limit");
    let e = s.fails("search_products", json!({"query": "jacket"}), "invalid_request").await;
    assert_eq!(e["details"]["field"], "query");
    s.fails("search_products", json!({"q": "x".repeat(501)}), "validation_error").await;
    s.fails("search_products", json!({"seller_handle": "Not A Handle"}), "validation_error").await;
    s.fails("search_products", json!({"seller_handle": "no-such-seller"}), "seller_not_found").await;
    let reader = s.t.create_key(None, &[Scope::CheckoutWrite]).await;
    let e = s.fails_as(&reader, "search_products", json!({}), "scope_insufficient").await;
    assert_eq!(e["details"]["required_scope"], "catalog:read");
}

#[tokio::test]
async fn get_seller_returns_the_full_record() {
    let s = Server::start().await;
    let seller = s.ok("get_seller", json!({"handle": "bay-clothing-district"})).await;
    assert_eq!(seller["delivery_coverage"]["states"], json!(["CA", "OR", "WA"]));
    assert_eq!(seller["delivery_fee_cents"], 1550);
    let directory = s.ok("get_seller", json!({"handle": "atelier-lumiere"})).await;
    assert_eq!(
        (directory["kifly_purchasable"].clone(), directory["fulfillment"].clone()),
        (json!(false), json!("external"))
    );
    s.fails("get_seller", json!({"handle": "nobody-here"}), "seller_not_found").await;
    s.fails("get_seller", json!({}), "invalid_request").await;
    s.fails("get_seller", json!({"handle": "UPPER"}), "validation_error").await;
    // A seller-scoped key sees only its own seller.
    let scoped = s.t.seller_key.clone();
    s.fails_as(&scoped, "get_seller", json!({"handle": "casa-verde-home"}), "seller_not_found").await;
}

// --- Cart tools ------------------------------------------------------------------------------

#[tokio::test]
async fn an_agent_builds_a_cart_through_the_tools() {
    let s = Server::start().await;
    let jacket = s.t.variant("TH-ADJ-M-BLK").await;
    let cart = s.ok("create_cart", json!({"seller_handle": "trailhead-outfitters"})).await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_string();
    assert_eq!((cart["status"].clone(), cart["items"].clone()), (json!("open"), json!([])));

    let after_add =
        s.ok("add_to_cart", json!({"cart_id": cart_id, "variant_id": jacket, "quantity": 2})).await;
    let after_again = s.ok("add_to_cart", json!({"cart_id": cart_id, "variant_id": jacket})).await;
    assert_eq!(after_add["items"][0]["quantity"], 2);
    assert_eq!(after_again["items"][0]["quantity"], 3, "the same variant adds to its line");
    let item_id = after_again["items"][0]["item_id"].as_str().unwrap().to_string();

    let updated =
        s.ok("update_cart_item", json!({"cart_id": cart_id, "item_id": item_id, "quantity": 1})).await;
    assert_eq!(updated["items"][0]["quantity"], 1);
    assert_eq!(updated["total_cents"], updated["subtotal_cents"].as_i64().unwrap() + 599);

    let addressed = s
        .ok("set_shipping_address", json!({"cart_id": cart_id, "name": "Ada Lovelace", "line1": "1 Main St",
                                            "city": "Austin", "region": "tx", "postal_code": "78701", "line2": null}))
        .await;
    assert_eq!(addressed["delivery_eligible"], true);
    assert_eq!(addressed["shipping_address"]["region"], "TX");

    let mcp_cart = s.ok("get_cart", json!({"cart_id": cart_id})).await;
    let rest_cart = s.t.get(&format!("/api/agent/cart/{cart_id}"), &s.t.network_key).await.assert_ok(200);
    assert_eq!(mcp_cart, rest_cart, "the same service, the same answer");

    let emptied =
        s.ok("update_cart_item", json!({"cart_id": cart_id, "item_id": item_id, "quantity": 0})).await;
    assert_eq!(emptied["items"], json!([]));
    assert_eq!(emptied["delivery_fee_cents"], 0);
    s.fails(
        "update_cart_item",
        json!({"cart_id": cart_id, "item_id": item_id, "quantity": 1}),
        "item_not_found",
    )
    .await;
}

#[tokio::test]
async fn cart_tools_report_business_errors_as_tool_results() {
    let s = Server::start().await;
    let e = s.fails("create_cart", json!({}), "invalid_request").await;
    assert_eq!(e["details"]["field"], "seller_handle");
    s.fails("create_cart", json!({"seller_handle": "no-such-seller"}), "seller_not_found").await;
    let scoped = s.ok_as(&s.t.seller_key.clone(), "create_cart", json!({})).await;
    assert_eq!(scoped["seller"]["handle"], "trailhead-outfitters");
    let directory = s.ok("create_cart", json!({"seller_handle": "atelier-lumiere"})).await;
    assert_eq!(directory["fulfillment"], "external");

    let cart = s.cart("trailhead-outfitters").await;
    let jacket = s.t.variant("TH-ADJ-M-BLK").await;
    let e = s
        .fails(
            "add_to_cart",
            json!({"cart_id": cart, "variant_id": jacket, "quantity": 21}),
            "quantity_exceeds_limit",
        )
        .await;
    assert_eq!(
        (e["details"]["max_quantity"].clone(), e["details"]["requested_quantity"].clone()),
        (json!(20), json!(21))
    );
    s.fails("add_to_cart", json!({"cart_id": cart, "variant_id": jacket, "quantity": 0}), "validation_error")
        .await;
    s.fails(
        "add_to_cart",
        json!({"cart_id": cart, "variant_id": jacket, "quantity": 1.5}),
        "invalid_request",
    )
    .await;
    s.fails("add_to_cart", json!({"cart_id": cart}), "invalid_request").await;
    let other_seller = s.t.any_variant_of("casa-verde-home").await;
    let e =
        s.fails("add_to_cart", json!({"cart_id": cart, "variant_id": other_seller}), "seller_mismatch").await;
    assert_eq!(e["details"]["cart_seller"], "trailhead-outfitters");
    let missing_variant = kifly_core::ids::new_id(kifly_core::ids::IdKind::Variant);
    s.fails("add_to_cart", json!({"cart_id": cart, "variant_id": missing_variant}), "variant_not_found")
        .await;
    s.fails("add_to_cart", json!({"cart_id": "cart_42", "variant_id": jacket}), "validation_error").await;

    // Another token's cart does not exist for this one.
    let stranger = s.t.create_key(None, &Scope::ALL).await;
    s.fails_as(&stranger, "get_cart", json!({"cart_id": cart}), "cart_not_found").await;
    s.fails_as(&stranger, "add_to_cart", json!({"cart_id": cart, "variant_id": jacket}), "cart_not_found")
        .await;
    let missing_cart = kifly_core::ids::new_id(kifly_core::ids::IdKind::Cart);
    s.fails("get_cart", json!({"cart_id": missing_cart}), "cart_not_found").await;
    let missing_item = kifly_core::ids::new_id(kifly_core::ids::IdKind::CartItem);
    s.fails(
        "update_cart_item",
        json!({"cart_id": cart, "item_id": missing_item, "quantity": 2}),
        "item_not_found",
    )
    .await;
    s.fails(
        "update_cart_item",
        json!({"cart_id": cart, "item_id": missing_item, "quantity": -1}),
        "validation_error",
    )
    .await;

    // Scopes: a read-only key may read its carts but not change them.
    let reader = s.t.create_key(None, &[Scope::CatalogRead]).await;
    let e = s
        .fails_as(
            &reader,
            "create_cart",
            json!({"seller_handle": "trailhead-outfitters"}),
            "scope_insufficient",
        )
        .await;
    assert_eq!(e["details"]["required_scope"], "checkout:write");
}

#[tokio::test]
async fn shipping_addresses_are_checked_against_coverage() {
    let s = Server::start().await;
    let cart = s.cart("bay-clothing-district").await;
    let shirt = s.t.any_variant_of("bay-clothing-district").await;
    s.ok("add_to_cart", json!({"cart_id": cart, "variant_id": shirt})).await;
    let mut args = address("Austin", "TX");
    args["cart_id"] = json!(cart);
    let outside = s.ok("set_shipping_address", args.clone()).await;
    assert_eq!(outside["delivery_eligible"], false);
    assert_eq!(outside["delivery_coverage"]["states"], json!(["CA", "OR", "WA"]));
    args["city"] = json!("Reno");
    args["region"] = json!("NV");
    assert_eq!(s.ok("set_shipping_address", args.clone()).await["delivery_eligible"], true);

    let mut bad = args.clone();
    bad["region"] = json!("ZZ");
    let e = s.fails("set_shipping_address", bad, "validation_error").await;
    assert_eq!(e["details"]["field"], "region");
    let mut bad = args.clone();
    bad["postal_code"] = json!("ABCDE");
    assert_eq!(
        s.fails("set_shipping_address", bad, "validation_error").await["details"]["field"],
        "postal_code"
    );
    let mut bad = args.clone();
    bad["country"] = json!("FR");
    assert_eq!(s.fails("set_shipping_address", bad, "validation_error").await["details"]["field"], "country");
    let mut bad = args.clone();
    bad["name"] = json!("");
    assert_eq!(s.fails("set_shipping_address", bad, "validation_error").await["details"]["field"], "name");
    let mut bad = args.clone();
    bad["state"] = json!("NV");
    assert_eq!(s.fails("set_shipping_address", bad, "invalid_request").await["details"]["field"], "state");
    let mut bad = args;
    bad.as_object_mut().unwrap().remove("city");
    assert_eq!(s.fails("set_shipping_address", bad, "invalid_request").await["details"]["field"], "city");
}

#[tokio::test]
async fn get_platform_limits_follows_the_operator() {
    let s = Server::start().await;
    let limits = s.ok("get_platform_limits", json!({})).await;
    assert_eq!(
        limits,
        json!({"max_item_quantity": 20, "max_cart_total_cents": 100000, "max_cart_total_usd": "1000.00"})
    );
    s.fails("get_platform_limits", json!({"verbose": true}), "invalid_request").await;
}

// --- Checkout ---------------------------------------------------------------------------------

#[tokio::test]
async fn checkout_tool_opens_one_session_per_idempotency_key_and_order_status_follows_it() {
    let s = Server::serving().await;
    let cart = s.cart("trailhead-outfitters").await;
    let variant = s.t.variant("TH-IB32-SAG").await;
    s.ok("add_to_cart", json!({"cart_id": cart, "variant_id": variant, "quantity": 2})).await;
    // Checks come first: no address yet.
    s.fails("checkout", json!({"cart_id": cart}), "shipping_address_required").await;
    let address = json!({"cart_id": cart, "name": "Ada", "line1": "1 Main St", "city": "Austin", "region": "TX", "postal_code": "78701"});
    s.ok("set_shipping_address", address).await;
    let args = json!({"cart_id": cart, "email": "ada@example.com", "idempotency_key": "mcp-checkout-1"});
    let key = s.t.network_key.clone();
    let first = s.call_as(&key, "checkout", args.clone()).await;
    let again = s.call_as(&key, "checkout", args).await;
    assert_eq!(first["structuredContent"], again["structuredContent"]);
    assert_eq!(again["_meta"]["kifly.dev/idempotentReplayed"], true);
    let session = first["structuredContent"]["session_id"].as_str().unwrap().to_string();
    assert_eq!(first["structuredContent"]["amount"], 2 * 3_499 + 599);
    // Without a key, asking again while pending returns the same session.
    assert_eq!(s.ok("checkout", json!({"cart_id": cart})).await["session_id"], session);
    let order = s.ok("order_status", json!({"session_id": session})).await;
    assert_eq!(order["status"], "pending_payment");
    s.fails("add_to_cart", json!({"cart_id": cart, "variant_id": variant}), "cart_locked").await;
    s.fails("order_status", json!({"session_id": "cs_test_unknown"}), "order_not_found").await;
}

// --- Idempotency -----------------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_replay_the_first_result() {
    let s = Server::start().await;
    let args = json!({"seller_handle": "trailhead-outfitters", "idempotency_key": "mcp-retry-1"});
    let first = s.call_as(&s.t.network_key.clone(), "create_cart", args.clone()).await;
    let second = s.call_as(&s.t.network_key.clone(), "create_cart", args.clone()).await;
    assert_eq!(first["structuredContent"], second["structuredContent"], "same cart, created once");
    assert!(first.get("_meta").is_none());
    assert_eq!(second["_meta"]["kifly.dev/idempotentReplayed"], true);
    // Without a key every call is a new action.
    let a = s.cart("trailhead-outfitters").await;
    let b = s.cart("trailhead-outfitters").await;
    assert_ne!(a, b);

    // Same key, other arguments: conflict. Same key, other tool or other token: independent.
    let conflict = json!({"seller_handle": "casa-verde-home", "idempotency_key": "mcp-retry-1"});
    s.fails("create_cart", conflict, "idempotency_conflict").await;
    let cart = first["structuredContent"]["cart_id"].as_str().unwrap().to_string();
    let jacket = s.t.variant("TH-ADJ-M-BLK").await;
    let add = json!({"cart_id": cart, "variant_id": jacket, "idempotency_key": "mcp-retry-1"});
    assert_eq!(s.ok("add_to_cart", add.clone()).await["items"][0]["quantity"], 1);
    assert_eq!(s.ok("add_to_cart", add).await["items"][0]["quantity"], 1, "replayed, not added twice");
    let cart_now = s.ok("get_cart", json!({"cart_id": cart})).await;
    assert_eq!(cart_now["items"][0]["quantity"], 1);
    let other = s.t.create_key(None, &Scope::ALL).await;
    let theirs = s.ok_as(&other, "create_cart", args).await;
    assert_ne!(theirs["cart_id"], json!(cart));

    // The REST scope (method + path) and the MCP scope (tool name) never collide.
    let rest =
        s.t.write_with_key(
            Method::POST,
            "/api/agent/cart",
            &s.t.network_key,
            "mcp-retry-1",
            json!({"seller_handle": "trailhead-outfitters"}),
        )
        .await
        .assert_ok(201);
    assert_ne!(rest["cart_id"], json!(cart));

    // Deterministic failures are stored and replayed too.
    let over = json!({"cart_id": cart, "variant_id": jacket, "quantity": 20, "idempotency_key": "over-1"});
    let first = s.call_as(&s.t.network_key.clone(), "add_to_cart", over.clone()).await;
    assert_eq!(first["structuredContent"]["error"], "quantity_exceeds_limit");
    let again = s.call_as(&s.t.network_key.clone(), "add_to_cart", over).await;
    assert_eq!(again["isError"], true);
    assert_eq!(again["structuredContent"], first["structuredContent"]);
    assert_eq!(again["_meta"]["kifly.dev/idempotentReplayed"], true);

    s.fails(
        "create_cart",
        json!({"seller_handle": "trailhead-outfitters", "idempotency_key": ""}),
        "validation_error",
    )
    .await;
    s.fails(
        "create_cart",
        json!({"seller_handle": "trailhead-outfitters", "idempotency_key": "tab\there"}),
        "validation_error",
    )
    .await;
    s.fails("get_cart", json!({"cart_id": cart, "idempotency_key": "x"}), "invalid_request").await;
}

#[tokio::test]
async fn a_call_still_running_with_the_key_answers_in_progress() {
    let s = Server::start().await;
    let hash = kifly::auth::hash_key(s.t.app.secret.as_bytes(), &s.t.network_key);
    let key_id = s.t.store.find_api_key_by_hash(&hash).await.unwrap().unwrap().id;
    // Another call with this key claimed the scope (key id, MCP, tool name) and has not finished.
    let scope = kifly_store::IdempotencyScope {
        principal: key_id,
        method: "MCP".into(),
        path: "create_cart".into(),
        key: "held".into(),
    };
    let fingerprint = kifly::idempotency::fingerprint(&json!({"seller_handle": "trailhead-outfitters"}));
    let claim =
        s.t.store.claim_idempotency(&scope, &fingerprint, kifly::app::now_ms(), 60_000).await.unwrap();
    assert!(matches!(claim, kifly_store::ClaimOutcome::Claimed(_)));
    let args = json!({"seller_handle": "trailhead-outfitters", "idempotency_key": "held"});
    s.fails("create_cart", args, "idempotency_in_progress").await;
    // The REST route with the same key is another scope and runs.
    s.t.write_with_key(
        Method::POST,
        "/api/agent/cart",
        &s.t.network_key,
        "held",
        json!({"seller_handle": "trailhead-outfitters"}),
    )
    .await
    .assert_ok(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_create_one_cart() {
    let s = std::sync::Arc::new(Server::with_config(|c| c.rate_limit_mcp = "off".into()).await);
    let args = json!({"seller_handle": "casa-verde-home", "idempotency_key": "burst"});
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, args) = (s.clone(), args.clone());
        tasks.push(tokio::spawn(async move { s.call_as(&s.t.network_key, "create_cart", args).await }));
    }
    let mut carts = std::collections::HashSet::new();
    for task in tasks {
        let result = task.await.unwrap();
        let content = &result["structuredContent"];
        if result["isError"] == true {
            assert_eq!(content["error"], "idempotency_in_progress", "{content}");
        } else {
            carts.insert(content["cart_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(carts.len(), 1, "every successful call saw the same single cart: {carts:?}");
}

// --- Buyer accounts and feedback --------------------------------------------------------------

/// The one-time code in the newest queued mail to `email`.
async fn mailed_code(t: &TestApp, email: &str) -> String {
    let mails = t.store.list_mail(50).await.expect("outbox");
    let mail = mails.iter().find(|m| m.recipient == email).unwrap_or_else(|| panic!("no mail to {email}"));
    mail.subject.rsplit(' ').next().expect("code in subject").to_string()
}

#[tokio::test]
async fn buyer_tools_verify_by_code_and_keep_profile_orders_and_feedback() {
    let s = Server::start().await;
    let email = "Ada@Example.com";
    let registered = s.ok("register_buyer", json!({"email": email, "name": "Ada Lovelace"})).await;
    assert_eq!(registered["verification_required"], true);
    let id = registered["buyer_profile_id"].as_str().unwrap().to_string();
    // Registering again, or asking for a code, says the same and reveals nothing.
    let again = s.ok("register_buyer", json!({"email": "ada@example.com", "name": "Someone Else"})).await;
    assert_eq!(again, registered);
    assert_eq!(
        s.ok("request_buyer_code", json!({"email": "nobody@example.com"})).await,
        json!({"sent": true})
    );
    assert_eq!(s.ok("request_buyer_code", json!({"email": email})).await, json!({"sent": true}));
    assert!(s.t.store.list_mail(50).await.unwrap().iter().all(|m| m.recipient != "nobody@example.com"));

    let code = mailed_code(&s.t, "ada@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let e = s.fails("verify_buyer", json!({"email": email, "code": wrong}), "invalid_otp").await;
    assert_eq!(e["details"]["attempts_remaining"], 4);
    let verified = s.ok("verify_buyer", json!({"email": email, "code": code})).await;
    let token = verified["buyer_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kfb_live_"));
    assert_eq!(verified["buyer_profile_id"], id);
    // A code is single use.
    s.fails("verify_buyer", json!({"email": email, "code": code}), "invalid_otp").await;

    let profile = s.ok("get_buyer_profile", json!({"buyer_token": token})).await;
    assert_eq!(
        profile,
        json!({"buyer_profile_id": id, "email": "ada@example.com", "name": "Ada Lovelace", "default_shipping_address": null})
    );
    let address = json!({"name": "Ada Lovelace", "line1": "1 Main St", "city": "Austin", "region": "tx", "postal_code": "78701"});
    let saved = s.ok("save_buyer_address", json!({"buyer_token": token, "address": address})).await;
    assert_eq!(saved["default_shipping_address"]["region"], "TX");
    let profile = s.ok("get_buyer_profile", json!({"buyer_token": token})).await;
    assert_eq!(profile["default_shipping_address"]["city"], "Austin");
    let orders = s.ok("list_orders", json!({"buyer_token": token})).await;
    assert_eq!(orders, json!({"orders": [], "count": 0}));
    s.fails("get_buyer_profile", json!({"buyer_token": "kfb_live_unknown0000"}), "invalid_buyer_token").await;

    let fb = s
        .ok(
            "submit_feedback",
            json!({"category": "latency", "severity": "friction", "message": "search felt slow"}),
        )
        .await;
    assert_eq!(fb["accepted"], true);
    let fr = s
        .ok("request_feature", json!({"buyer_token": token, "problem": "I reorder the same coffee", "impact": "weekly", "category": "missing_capability", "severity": "nice_to_have"}))
        .await;
    assert!(fr["feature_request_id"].as_str().unwrap().starts_with("fr_"));
    let stored = s.t.store.list_feedback(10).await.unwrap();
    assert_eq!(stored.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), ["feature_request", "feedback"]);
    // Scopes still apply.
    let catalog_only = s.t.create_key(None, &[Scope::CatalogRead]).await;
    let e = s
        .fails_as(
            &catalog_only,
            "register_buyer",
            json!({"email": email, "name": "Ada"}),
            "scope_insufficient",
        )
        .await;
    assert_eq!(e["details"]["required_scope"], "buyer:write");
    let e =
        s.fails_as(&catalog_only, "order_status", json!({"session_id": "cs_1"}), "scope_insufficient").await;
    assert_eq!(e["details"]["required_scope"], "orders:read");
}
