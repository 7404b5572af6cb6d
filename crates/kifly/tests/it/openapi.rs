//! The OpenAPI document is generated from the handlers; this snapshot makes every change to it
//! visible in review (`cargo insta review`, or `INSTA_UPDATE=always` to accept).

use crate::support::TestApp;

#[tokio::test]
async fn openapi_document_matches_the_reviewed_snapshot() {
    let t = TestApp::new().await;
    let served = t.send(axum::http::Method::GET, "/openapi.json", None, &[], None).await.assert_ok(200);
    let paths = served["paths"].as_object().unwrap();
    for path in [
        "/api/agent/products",
        "/api/agent/sellers/{handle}",
        "/api/agent/cart",
        "/api/agent/cart/{cart_id}",
        "/api/agent/cart/{cart_id}/items",
        "/api/agent/cart/{cart_id}/items/{item_id}",
        "/api/agent/cart/{cart_id}/shipping-address",
        "/api/agent/platform/limits",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    insta::assert_json_snapshot!("openapi", served);
}
