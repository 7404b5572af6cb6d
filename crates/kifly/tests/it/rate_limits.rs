//! Per-token rate limits (SPEC §5): headers on every response, 429 with Retry-After, separate buckets.

use axum::http::Method;

use crate::support::{TestApp, TestResponse};

fn limits(r: &TestResponse) -> (u64, u64, u64) {
    let num = |name| r.header(name).unwrap_or_else(|| panic!("missing {name}")).parse::<u64>().unwrap();
    (num("x-ratelimit-limit"), num("x-ratelimit-remaining"), num("x-ratelimit-reset"))
}

#[tokio::test]
async fn the_61st_agent_request_in_a_window_is_refused() {
    let t = TestApp::new().await;
    for i in 1..=60u64 {
        let r = t.get("/api/agent/products?limit=1", &t.network_key).await;
        r.assert_ok(200);
        let (limit, remaining, reset) = limits(&r);
        assert_eq!(limit, 60);
        assert_eq!(remaining, 60 - i, "request {i}");
        // The window refills one request per second, so it is full again i seconds from now.
        assert!(reset == i || reset == i + 1, "request {i}: reset {reset}");
    }
    let r = t.get("/api/agent/products?limit=1", &t.network_key).await;
    r.assert_error(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let (limit, remaining, reset) = limits(&r);
    assert_eq!((limit, remaining), (60, 0));
    assert!(reset >= 59);
    // Errors count too, and another token has its own bucket.
    let other = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    let r = t.get("/api/agent/products?limit=1", &other).await;
    assert_eq!(limits(&r).1, 59);
}

#[tokio::test]
async fn feedback_has_its_own_bucket_of_ten() {
    let t = TestApp::new().await;
    for i in 1..=10u64 {
        let r = t.write(Method::POST, "/api/agent/feedback", &t.network_key, serde_json::json!({})).await;
        assert_ne!(r.status.as_u16(), 429, "request {i}");
        assert_eq!(limits(&r).0, 10);
        assert_eq!(limits(&r).1, 10 - i);
    }
    let r = t.write(Method::POST, "/api/agent/feedback", &t.network_key, serde_json::json!({})).await;
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // The agent bucket was not touched.
    let r = t.get("/api/agent/products?limit=1", &t.network_key).await;
    assert_eq!(limits(&r), (60, 59, 1));
}

#[tokio::test]
async fn requests_without_a_valid_key_are_limited_per_client() {
    let t = TestApp::new().await;
    for _ in 0..60 {
        let r = t.send(Method::GET, "/api/agent/platform/limits", None, &[], None).await;
        r.assert_ok(200);
    }
    let r = t.send(Method::GET, "/api/agent/products", Some("kfa_live_nonsense"), &[], None).await;
    r.assert_error(429, "rate_limited");
    assert_eq!(limits(&r).1, 0);
}

#[tokio::test]
async fn mcp_has_a_bucket_of_120() {
    let t = TestApp::new().await;
    let r = t.send(Method::POST, "/api/mcp", Some(&t.network_key), &[], Some("{}".into())).await;
    assert_eq!(limits(&r), (120, 119, 1));
}

#[tokio::test]
async fn limits_are_configurable_and_can_be_off() {
    let t = TestApp::with_config(|c| c.rate_limit_agent = "3/60".into()).await;
    for _ in 0..3 {
        t.get("/api/agent/products?limit=1", &t.network_key).await.assert_ok(200);
    }
    let r = t.get("/api/agent/products?limit=1", &t.network_key).await;
    r.assert_error(429, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("20"));

    let off = TestApp::with_config(|c| c.rate_limit_agent = "off".into()).await;
    for _ in 0..70 {
        let r = off.get("/api/agent/products?limit=1", &off.network_key).await;
        r.assert_ok(200);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
}
