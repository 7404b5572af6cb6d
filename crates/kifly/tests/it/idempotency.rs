//! The Idempotency-Key contract (SPEC §6) over HTTP.

use std::sync::Arc;

use axum::http::Method;
use kifly_store::{ClaimOutcome, IdempotencyScope};
use serde_json::json;

use crate::support::TestApp;

async fn key_id(t: &TestApp, key: &str) -> String {
    let hash = kifly::auth::hash_key(t.app.secret.as_bytes(), key);
    t.store.find_api_key_by_hash(&hash).await.unwrap().unwrap().id
}

#[tokio::test]
async fn a_retry_replays_the_stored_response_byte_for_byte() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let body = json!({"variant_id": variant, "quantity": 2});
    let first = t.write_with_key(Method::POST, &path, &t.network_key, "retry-1", body.clone()).await;
    first.assert_ok(200);
    assert!(first.header("idempotent-replayed").is_none());
    // Same body with other key order and whitespace: same fingerprint.
    let reordered = format!("{{ \"quantity\": 2,\n \"variant_id\": \"{variant}\" }}");
    let second = t
        .send(Method::POST, &path, Some(&t.network_key), &[("idempotency-key", "retry-1")], Some(reordered))
        .await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.bytes, first.bytes, "replay must be byte-identical");
    // No second side effect.
    let cart_now = t.get(&format!("/api/agent/cart/{cart}"), &t.network_key).await.assert_ok(200);
    assert_eq!(cart_now["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_conflicts() {
    let t = TestApp::new().await;
    let path = "/api/agent/cart";
    let k = &t.network_key;
    t.write_with_key(Method::POST, path, k, "k1", json!({"seller_handle": "trailhead-outfitters"}))
        .await
        .assert_ok(201);
    t.write_with_key(Method::POST, path, k, "k1", json!({"seller_handle": "casa-verde-home"}))
        .await
        .assert_error(409, "idempotency_conflict");
    // null and absent are different bodies.
    t.write_with_key(
        Method::POST,
        path,
        k,
        "k2",
        json!({"seller_handle": "trailhead-outfitters", "x": null}),
    )
    .await
    .assert_error(400, "invalid_request");
    t.write_with_key(Method::POST, path, k, "k2", json!({"seller_handle": "trailhead-outfitters"}))
        .await
        .assert_error(409, "idempotency_conflict");
}

#[tokio::test]
async fn keys_are_scoped_by_token_and_path() {
    let t = TestApp::new().await;
    let other = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    let body = json!({"seller_handle": "trailhead-outfitters"});
    let a = t
        .write_with_key(Method::POST, "/api/agent/cart", &t.network_key, "shared", body.clone())
        .await
        .assert_ok(201);
    let b = t.write_with_key(Method::POST, "/api/agent/cart", &other, "shared", body).await.assert_ok(201);
    assert_ne!(a["cart_id"], b["cart_id"], "another token's key is a different key");
    let cart = a["cart_id"].as_str().unwrap();
    let variant = t.variant("TH-ADJ-M-BLK").await;
    // The same key on another path is independent too.
    t.write_with_key(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        &t.network_key,
        "shared",
        json!({"variant_id": variant}),
    )
    .await
    .assert_ok(200);
}

#[tokio::test]
async fn mutating_requests_need_a_valid_key() {
    let t = TestApp::new().await;
    let body = Some(json!({"seller_handle": "trailhead-outfitters"}).to_string());
    t.send(Method::POST, "/api/agent/cart", Some(&t.network_key), &[], body.clone())
        .await
        .assert_error(400, "missing_idempotency_key");
    let long = "x".repeat(256);
    let r = t
        .send(Method::POST, "/api/agent/cart", Some(&t.network_key), &[("idempotency-key", &long)], body)
        .await;
    assert_eq!(r.assert_error(400, "invalid_request")["details"]["field"], "Idempotency-Key");
}

#[tokio::test]
async fn deterministic_errors_are_stored_and_replayed() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let body = json!({"variant_id": "var_01JZZZZZZZZZZZZZZZZZZZZZZZ"});
    let first = t.write_with_key(Method::POST, &path, &t.network_key, "err-1", body.clone()).await;
    first.assert_error(404, "variant_not_found");
    let second = t.write_with_key(Method::POST, &path, &t.network_key, "err-1", body).await;
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.bytes, first.bytes);
}

#[tokio::test]
async fn a_request_still_in_flight_answers_in_progress() {
    let t = TestApp::new().await;
    // Simulate a request that claimed the key and has not finished (or crashed within its lease).
    let scope = IdempotencyScope {
        principal: key_id(&t, &t.network_key).await,
        method: "POST".into(),
        path: "/api/agent/cart".into(),
        key: "inflight".into(),
    };
    let body = json!({"seller_handle": "trailhead-outfitters"});
    let fp = kifly::idempotency::fingerprint(&body);
    let now = kifly::app::now_ms();
    assert!(matches!(
        t.store.claim_idempotency(&scope, &fp, now, 60_000).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    let r = t.write_with_key(Method::POST, "/api/agent/cart", &t.network_key, "inflight", body.clone()).await;
    r.assert_error(409, "idempotency_in_progress");
    assert_eq!(r.header("retry-after"), Some("1"));

    // A crashed request's lease expires and the retry then runs.
    let scope2 = IdempotencyScope { key: "crashed".into(), ..scope };
    assert!(matches!(
        t.store.claim_idempotency(&scope2, &fp, now - 120_000, 60_000).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    t.write_with_key(Method::POST, "/api/agent/cart", &t.network_key, "crashed", body).await.assert_ok(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_have_one_effect() {
    let t = Arc::new(TestApp::with_config(|c| c.rate_limit_agent = "off".into()).await);
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (t, path, variant) = (t.clone(), path.clone(), variant.clone());
        tasks.push(tokio::spawn(async move {
            t.write_with_key(Method::POST, &path, &t.network_key, "same-key", json!({"variant_id": variant}))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            409 => assert_eq!(r.json()["error"], "idempotency_in_progress"),
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&r.bytes)),
        }
    }
    assert!(ok >= 1);
    let now = t.get(&format!("/api/agent/cart/{cart}"), &t.network_key).await.assert_ok(200);
    assert_eq!(now["items"][0]["quantity"], 1, "exactly one add happened");
    let audit = t.store.recent_audit(200).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "cart.add_item").count(), 1);
}

/// A client that gives up on a cart change (the request future is dropped after its first poll) and
/// retries with the same key gets exactly one change: on SQLite the queued write job still runs and
/// the retry replays it; on PostgreSQL the abandoned transaction rolls back and the retry runs it.
#[tokio::test]
async fn a_change_abandoned_by_its_client_happens_once_with_its_retry() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let body = json!({"variant_id": variant, "quantity": 2});
    let abandoned = t.write_with_key(Method::POST, &path, &t.network_key, "given-up", body.clone());
    let _ = tokio::time::timeout(std::time::Duration::ZERO, abandoned).await;

    let retry = t.write_with_key(Method::POST, &path, &t.network_key, "given-up", body).await;
    assert_eq!(retry.json()["items"][0]["quantity"], 2, "{}", String::from_utf8_lossy(&retry.bytes));
    if t.store.backend() == "sqlite" {
        assert_eq!(retry.header("idempotent-replayed"), Some("true"), "the abandoned job ran first");
    }
    let now = t.get(&format!("/api/agent/cart/{cart}"), &t.network_key).await.assert_ok(200);
    assert_eq!(now["items"][0]["quantity"], 2, "exactly one add happened");
    let audit = t.store.recent_audit(50).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "cart.add_item").count(), 1);
}
