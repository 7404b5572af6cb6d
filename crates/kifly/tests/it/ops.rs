//! Operator endpoints and cross-cutting operability: health, readiness, Prometheus metrics, request
//! ids on every response, and the audit trail of agent actions.

use std::time::{Duration, Instant};

use axum::http::Method;
use kifly_store::AuditEntry;
use serde_json::json;

use crate::support::{TestApp, TestResponse};

#[tokio::test]
async fn healthz_is_ok_without_a_key() {
    let app = TestApp::new().await;
    let r = app.send(Method::GET, "/healthz", None, &[], None).await;
    assert_eq!(r.assert_ok(200), json!({"status": "ok"}));
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{:?}", r.headers);
}

#[tokio::test]
async fn readyz_reports_the_database() {
    let app = TestApp::new().await;
    let r = app.send(Method::GET, "/readyz", None, &[], None).await;
    let body = r.assert_ok(200);
    let expected = if std::env::var("KIFLY_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body["database"], expected, "{body}");
}

#[tokio::test]
async fn ops_endpoints_skip_auth_and_rate_limits() {
    // Even with a bad key, health checks answer (load balancers send no key).
    let app = TestApp::with_config(|c| c.rate_limit_anon = "1/60".into()).await;
    for _ in 0..3 {
        let r = app.send(Method::GET, "/healthz", Some("kfa_live_nope"), &[], None).await;
        r.assert_ok(200);
        let r = app.send(Method::GET, "/readyz", None, &[], None).await;
        r.assert_ok(200);
    }
}

fn metrics_text(r: &TestResponse) -> String {
    assert_eq!(r.status.as_u16(), 200, "metrics: {}", String::from_utf8_lossy(&r.bytes));
    String::from_utf8(r.bytes.clone()).expect("metrics are UTF-8")
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_record_latency() {
    let app = TestApp::new().await;
    app.get("/api/agent/products?q=jacket", &app.network_key).await.assert_ok(200);
    app.get("/api/agent/products?limit=2", &app.network_key).await.assert_ok(200);
    let missing = app.get("/api/agent/sellers/no-such-seller", &app.network_key).await;
    assert_eq!(missing.status.as_u16(), 404);

    let r = app.send(Method::GET, "/metrics", None, &[], None).await;
    let text = metrics_text(&r);
    let counter_lines: Vec<&str> =
        text.lines().filter(|l| l.starts_with("kifly_http_requests_total{")).collect();
    assert!(
        counter_lines
            .iter()
            .any(|l| l.contains(r#"route="/api/agent/products""#) && l.contains(r#"status="200""#)),
        "no request counter for /api/agent/products with status 200:\n{text}"
    );
    // Routes are labelled by template, not by the concrete path (bounded cardinality).
    assert!(
        counter_lines
            .iter()
            .any(|l| l.contains(r#"route="/api/agent/sellers/{handle}""#) && l.contains(r#"status="404""#)),
        "no counter for the seller route template with status 404:\n{text}"
    );
    assert!(!text.contains("no-such-seller"), "a concrete path leaked into metric labels:\n{text}");
    assert!(!text.contains("q=jacket"), "a query string leaked into metric labels:\n{text}");
    // The counter value is a number ≥ 2 for the products route (both requests above), summed over methods/statuses.
    let products_total: f64 = counter_lines
        .iter()
        .filter(|l| l.contains(r#"route="/api/agent/products""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        products_total >= 2.0,
        "expected at least 2 product requests counted, got {products_total}:\n{text}"
    );

    assert!(text.contains("kifly_http_request_duration_seconds_bucket"), "no latency histogram:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("kifly_http_request_duration_seconds_bucket{")
            && l.contains(r#"route="/api/agent/products""#)
            && l.contains(r#"le="+Inf""#)),
        "no +Inf bucket for the products route:\n{text}"
    );
    assert!(text.contains("kifly_http_request_duration_seconds_count"), "{text}");
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let app = TestApp::new().await;
    let cases: Vec<(&str, TestResponse)> = vec![
        ("healthz", app.send(Method::GET, "/healthz", None, &[], None).await),
        ("metrics", app.send(Method::GET, "/metrics", None, &[], None).await),
        ("unknown path", app.send(Method::GET, "/no/such/path", None, &[], None).await),
        ("unknown api path", app.get("/api/agent/nope", &app.network_key).await),
        ("missing key", app.send(Method::GET, "/api/agent/products", None, &[], None).await),
        ("bad key", app.get("/api/agent/products", "kfa_live_00000000000000000000000000000000").await),
        ("wrong method", app.send(Method::DELETE, "/api/agent/platform/limits", None, &[], None).await),
        ("ok api", app.get("/api/agent/products?limit=1", &app.network_key).await),
    ];
    let mut seen = std::collections::HashSet::new();
    for (what, r) in &cases {
        let id =
            r.header("x-request-id").unwrap_or_else(|| panic!("{what}: no x-request-id: {:?}", r.headers));
        assert!(id.starts_with("req_") && id.len() > 4, "{what}: generated ids look like req_…: {id}");
        assert!(seen.insert(id.to_string()), "{what}: request id {id} reused");
    }
    let (_, not_found) = &cases[2];
    not_found.assert_error(404, "not_found");
    let (_, missing) = &cases[4];
    missing.assert_error(401, "invalid_api_key");
    let (_, wrong) = &cases[6];
    wrong.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn a_valid_client_request_id_is_echoed() {
    let app = TestApp::new().await;
    let id = "client-trace-0123456789abcdef";
    let r = app.send(Method::GET, "/healthz", None, &[("x-request-id", id)], None).await;
    assert_eq!(r.header("x-request-id"), Some(id));
    // Also on errors, from /api and from the fallback.
    let r = app.send(Method::GET, "/api/agent/products", None, &[("x-request-id", id)], None).await;
    r.assert_error(401, "invalid_api_key");
    assert_eq!(r.header("x-request-id"), Some(id));
    let r = app.send(Method::GET, "/nowhere", None, &[("x-request-id", id)], None).await;
    r.assert_error(404, "not_found");
    assert_eq!(r.header("x-request-id"), Some(id));
    let r = app
        .send(
            Method::GET,
            "/api/agent/products?limit=1",
            Some(&app.network_key),
            &[("x-request-id", id)],
            None,
        )
        .await;
    r.assert_ok(200);
    assert_eq!(r.header("x-request-id"), Some(id));

    // An invalid inbound id (too long, or with spaces) is replaced by a fresh one.
    let long = "a".repeat(300);
    for bad in [long.as_str(), "has spaces in it"] {
        let r = app.send(Method::GET, "/healthz", None, &[("x-request-id", bad)], None).await;
        let got = r.header("x-request-id").expect("x-request-id");
        assert_ne!(got, bad);
        assert!(got.starts_with("req_"), "{got}");
    }
}

/// The id of the demo network key.
async fn network_key_id(app: &TestApp) -> String {
    let keys = app.store.list_api_keys().await.expect("keys");
    keys.iter().find(|k| k.seller_handle.is_none()).expect("network key").id.clone()
}

async fn audit(app: &TestApp) -> Vec<AuditEntry> {
    app.store.recent_audit(50).await.expect("audit")
}

#[tokio::test]
async fn cart_creation_writes_an_audit_row() {
    let app = TestApp::new().await;
    let idem = "audit-cart-create-1";
    let body = json!({"seller_handle": "trailhead-outfitters"});
    let r = app.write_with_key(Method::POST, "/api/agent/cart", &app.network_key, idem, body.clone()).await;
    let cart_id = r.assert_ok(201)["cart_id"].as_str().expect("cart_id").to_string();

    // Written in the cart's own transaction: visible at once, no polling.
    let entries = app.store.recent_audit(10).await.expect("audit");
    let row = entries
        .iter()
        .find(|e| e.action == "cart.create" && e.resource_id.as_deref() == Some(cart_id.as_str()))
        .unwrap_or_else(|| panic!("no cart.create audit row for {cart_id}: {entries:?}"));
    assert_eq!(row.api_key_id, network_key_id(&app).await, "audit row names the wrong token");
    assert!(row.created_at > 0);
    let serialized = format!("{entries:?}");
    assert!(!serialized.contains(&app.network_key), "the audit log holds a plaintext key");

    // An idempotent replay has no side effect: no second audit row.
    let r = app.write_with_key(Method::POST, "/api/agent/cart", &app.network_key, idem, body).await;
    assert_eq!(r.assert_ok(201)["cart_id"], cart_id.as_str());
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    let creates = audit(&app).await.iter().filter(|e| e.action == "cart.create").count();
    assert_eq!(creates, 1, "a replay wrote another cart.create audit row");

    // A failed creation (unknown seller) writes no cart.create row.
    let r = app
        .write(Method::POST, "/api/agent/cart", &app.network_key, json!({"seller_handle": "no-such-seller"}))
        .await;
    r.assert_error(404, "seller_not_found");
    let creates = audit(&app).await.iter().filter(|e| e.action == "cart.create").count();
    assert_eq!(creates, 1, "a failed creation wrote a cart.create audit row");
}

#[tokio::test]
async fn reads_are_audited_asynchronously() {
    let app = TestApp::new().await;
    let seller_key_id = {
        let keys = app.store.list_api_keys().await.expect("keys");
        keys.iter().find(|k| k.seller_handle.is_some()).expect("seller key").id.clone()
    };
    app.get("/api/agent/products?q=tent", &app.seller_key).await.assert_ok(200);
    let cart = app.cart(&app.seller_key, "trailhead-outfitters").await;
    app.get(&format!("/api/agent/cart/{cart}"), &app.seller_key).await.assert_ok(200);

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let entries = audit(&app).await;
        let search = entries.iter().any(|e| e.action == "catalog.search" && e.api_key_id == seller_key_id);
        let get = entries.iter().any(|e| {
            e.action == "cart.get"
                && e.resource_id.as_deref() == Some(cart.as_str())
                && e.api_key_id == seller_key_id
        });
        if search && get {
            break;
        }
        assert!(Instant::now() < deadline, "read audit rows not written within 2 s: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Unauthenticated requests are not agent actions: no rows for them.
    let before = audit(&app).await.len();
    app.send(Method::GET, "/api/agent/products", None, &[], None).await.assert_error(401, "invalid_api_key");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(audit(&app).await.len(), before, "an unauthenticated request was audited");
}
