//! Agent keys on the wire (SPEC §3).

use axum::http::Method;

use crate::support::TestApp;

#[tokio::test]
async fn missing_unknown_and_malformed_keys_are_401() {
    let t = TestApp::new().await;
    t.send(Method::GET, "/api/agent/products", None, &[], None).await.assert_error(401, "invalid_api_key");
    t.get("/api/agent/products", "kfa_live_doesnotexist000000000000000000000")
        .await
        .assert_error(401, "invalid_api_key");
    t.get("/api/agent/products", "sk_test_123").await.assert_error(401, "invalid_api_key");
    t.send(Method::GET, "/api/agent/products", None, &[("authorization", "Basic Zm9vOmJhcg==")], None)
        .await
        .assert_error(401, "invalid_api_key");
}

#[tokio::test]
async fn the_key_may_come_as_x_api_key() {
    let t = TestApp::new().await;
    let r = t
        .send(Method::GET, "/api/agent/products?limit=1", None, &[("x-api-key", &t.network_key)], None)
        .await;
    r.assert_ok(200);
    // Real MPP clients put a Payment credential in Authorization and the key in X-Api-Key.
    let r = t
        .send(
            Method::GET,
            "/api/agent/products?limit=1",
            None,
            &[("authorization", "Payment eyJmb28iOiJiYXIifQ"), ("x-api-key", &t.network_key)],
            None,
        )
        .await;
    r.assert_ok(200);
}

#[tokio::test]
async fn a_revoked_key_is_refused_as_revoked() {
    let t = TestApp::new().await;
    let key = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    t.get("/api/agent/products?limit=1", &key).await.assert_ok(200);
    let hash = kifly::auth::hash_key(t.app.secret.as_bytes(), &key);
    let id = t.store.find_api_key_by_hash(&hash).await.unwrap().unwrap().id;
    assert!(t.store.revoke_api_key(&id, kifly::app::now_ms()).await.unwrap());
    // Lookups are cached for at most 2 s; the contract allows 5 s.
    let started = std::time::Instant::now();
    loop {
        let r = t.get("/api/agent/products?limit=1", &key).await;
        if r.status.as_u16() == 401 {
            r.assert_error(401, "api_key_revoked");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "revocation not seen within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn scopes_are_enforced_with_the_required_scope_named() {
    let t = TestApp::new().await;
    let writer = t.create_key(None, &[kifly_core::scope::Scope::CheckoutWrite]).await;
    let body = t.get("/api/agent/products", &writer).await.assert_error(403, "scope_insufficient");
    assert_eq!(body["details"]["required_scope"], "catalog:read");
    t.get("/api/agent/sellers/trailhead-outfitters", &writer).await.assert_error(403, "scope_insufficient");
}

#[tokio::test]
async fn keys_are_stored_only_as_keyed_hashes() {
    let t = TestApp::new().await;
    // On SQLite, the database file itself must not contain the plaintext.
    let db = std::fs::read(t.dir.path().join("kifly.db")).unwrap_or_default();
    let wal = std::fs::read(t.dir.path().join("kifly.db-wal")).unwrap_or_default();
    assert!(t.store.backend() != "sqlite" || !db.is_empty(), "the SQLite file was not found");
    for haystack in [&db, &wal] {
        let found = haystack.windows(t.network_key.len()).any(|w| w == t.network_key.as_bytes());
        assert!(!found, "the plaintext key must not be stored");
    }
    let plain_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(t.network_key.as_bytes()))
    };
    assert!(t.store.find_api_key_by_hash(&plain_sha).await.unwrap().is_none(), "hash must be keyed");
}
