//! The error envelope (SPEC §4): malformed input never yields a 500, a panic or a non-JSON body.

use axum::http::Method;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn malformed_json_is_an_invalid_request() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let path = format!("/api/agent/cart/{cart}/items");
    for (i, body) in ["{", "[1,2", "nul", "{\"variant_id\": }", "\u{0}", "\"just a string\"", "42", "[]"]
        .into_iter()
        .enumerate()
    {
        let idem = format!("malformed-{i}");
        let r = t
            .send(Method::POST, &path, Some(&t.network_key), &[("idempotency-key", &idem)], Some(body.into()))
            .await;
        let status = r.status.as_u16();
        assert!(status == 400, "{body:?} gave {status}: {}", String::from_utf8_lossy(&r.bytes));
        assert_eq!(r.json()["error"], "invalid_request", "{body:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let t = TestApp::new().await;
    let big = format!("{{\"seller_handle\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = t
        .send(Method::POST, "/api/agent/cart", Some(&t.network_key), &[("idempotency-key", "big")], Some(big))
        .await;
    r.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let t = TestApp::new().await;
    let r = t.get("/api/agent/nothing-here", &t.network_key).await;
    r.assert_error(404, "not_found");
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("x-ratelimit-limit").is_some());
    let r = t.send(Method::DELETE, "/api/agent/products", Some(&t.network_key), &[], None).await;
    r.assert_error(405, "method_not_allowed");
    let r = t.send(Method::GET, "/totally/unknown", None, &[], None).await;
    r.assert_error(404, "not_found");
}

#[tokio::test]
async fn bad_query_strings_are_rejected_cleanly() {
    let t = TestApp::new().await;
    let k = &t.network_key;
    let r = t.get("/api/agent/products?limit=abc", k).await;
    assert_eq!(r.assert_error(400, "invalid_request")["details"]["field"], "limit");
    t.get("/api/agent/products?limit=0", k).await.assert_error(422, "validation_error");
    t.get("/api/agent/products?limit=51", k).await.assert_error(422, "validation_error");
    t.get("/api/agent/products?offset=-1", k).await.assert_error(422, "validation_error");
    t.get("/api/agent/products?bogus=1", k).await.assert_error(400, "invalid_request");
    t.get("/api/agent/products?seller_handle=nobody", k).await.assert_error(404, "seller_not_found");
}

/// A crude fuzz pass: many malformed bodies on every mutating route never give a 5xx.
#[tokio::test]
async fn no_malformed_body_yields_a_server_error() {
    let t = TestApp::with_config(|c| c.rate_limit_agent = "off".into()).await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let routes = [
        (Method::POST, "/api/agent/cart".to_string()),
        (Method::POST, format!("/api/agent/cart/{cart}/items")),
        (Method::PATCH, format!("/api/agent/cart/{cart}/items/item_01JZZZZZZZZZZZZZZZZZZZZZZZ")),
        (Method::PUT, format!("/api/agent/cart/{cart}/shipping-address")),
    ];
    let bodies = [
        json!(null),
        json!(true),
        json!(1e308),
        json!(-1),
        json!("s"),
        json!([]),
        json!({}),
        json!({"quantity": 1e30}),
        json!({"quantity": -9223372036854775808i64}),
        json!({"quantity": 9223372036854775807i64}),
        json!({"variant_id": 5}),
        json!({"variant_id": ["a"]}),
        json!({"seller_handle": {"x": 1}}),
        json!({"name": "\u{202e}evil", "line1": "x", "city": "y", "region": "CA", "postal_code": "94105"}),
        json!({"region": null}),
        json!({"quantity": "1"}),
        json!({"variant_id": "x".repeat(10_000)}),
    ];
    for (method, path) in &routes {
        for (i, body) in bodies.iter().enumerate() {
            let r = t
                .write_with_key(method.clone(), path, &t.network_key, &format!("fuzz-{i}"), body.clone())
                .await;
            assert!(r.status.as_u16() < 500, "{method} {path} {body}: {}", String::from_utf8_lossy(&r.bytes));
            assert!(r.json()["error"].is_string() || r.status.is_success());
        }
    }
}
