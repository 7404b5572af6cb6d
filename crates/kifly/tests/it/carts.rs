//! Cart API: creation, lines, caps, sellers, ownership, addresses and coverage.

use axum::http::Method;
use serde_json::json;

use crate::support::{TestApp, address};

#[tokio::test]
async fn a_cart_goes_from_empty_to_items_to_address() {
    let t = TestApp::new().await;
    let key = &t.network_key;
    let cart =
        t.write(Method::POST, "/api/agent/cart", key, json!({"seller_handle": "trailhead-outfitters"})).await;
    let body = cart.assert_ok(201);
    assert_eq!(body["status"], "open");
    assert_eq!(body["items"], json!([]));
    assert_eq!(body["seller"]["handle"], "trailhead-outfitters");
    assert_eq!(body["kifly_purchasable"], true);
    assert_eq!(body["fulfillment"], "kifly");
    assert_eq!(body["currency"], "usd");
    assert_eq!(body["total_cents"], 0);
    assert!(body["checkout"].is_null() && body["order_id"].is_null() && body["delivery_eligible"].is_null());
    let cart_id = body["cart_id"].as_str().unwrap().to_string();
    assert!(cart_id.starts_with("cart_"));

    let variant = t.variant("TH-ADJ-M-BLK").await;
    let path = format!("/api/agent/cart/{cart_id}/items");
    let added =
        t.write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": 2})).await.assert_ok(200);
    let line = &added["items"][0];
    assert_eq!(line["variant_id"], variant.as_str());
    assert_eq!(line["quantity"], 2);
    assert_eq!(line["sku"], "TH-ADJ-M-BLK");
    let unit = line["unit_price_cents"].as_i64().unwrap();
    assert_eq!(line["line_total_cents"], unit * 2);
    assert!(line["item_id"].as_str().unwrap().starts_with("item_"));
    assert!(line["product_id"].as_str().unwrap().starts_with("prod_"));
    assert!(line["name"].as_str().is_some() && line["variant_name"].as_str().is_some());
    let fee = added["seller"]["delivery_fee_cents"].as_i64().unwrap();
    assert_eq!(added["subtotal_cents"], unit * 2);
    assert_eq!(added["delivery_fee_cents"], fee);
    assert_eq!(added["total_cents"], unit * 2 + fee);

    // The same variant again adds to its line instead of making a new one.
    let again = t.write(Method::POST, &path, key, json!({"variant_id": variant})).await.assert_ok(200);
    assert_eq!(again["items"].as_array().unwrap().len(), 1);
    assert_eq!(again["items"][0]["quantity"], 3);

    let item_id = again["items"][0]["item_id"].as_str().unwrap().to_string();
    let item_path = format!("/api/agent/cart/{cart_id}/items/{item_id}");
    let patched = t.write(Method::PATCH, &item_path, key, json!({"quantity": 5})).await.assert_ok(200);
    assert_eq!(patched["items"][0]["quantity"], 5);

    let with_address = t
        .write(
            Method::PUT,
            &format!("/api/agent/cart/{cart_id}/shipping-address"),
            key,
            address("Austin", "tx"),
        )
        .await
        .assert_ok(200);
    assert_eq!(with_address["delivery_eligible"], true);
    assert_eq!(with_address["shipping_address"]["region"], "TX");
    assert_eq!(with_address["shipping_address"]["country"], "US");
    assert!(with_address.get("delivery_coverage").is_none());

    let fetched = t.get(&format!("/api/agent/cart/{cart_id}"), key).await;
    assert_eq!(fetched.header("content-type"), Some("application/json"));
    let fetched = fetched.assert_ok(200);
    // A read (seller record from the seller cache) renders the cart as the write did (from the database).
    assert_eq!(fetched, with_address);
    assert_eq!(fetched["items"][0]["quantity"], 5);
    assert_eq!(fetched["shipping_address"]["city"], "Austin");

    let removed = t.write(Method::PATCH, &item_path, key, json!({"quantity": 0})).await.assert_ok(200);
    assert_eq!(removed["items"], json!([]));
    assert_eq!(removed["delivery_fee_cents"], 0);
    t.write(Method::PATCH, &item_path, key, json!({"quantity": 1})).await.assert_error(404, "item_not_found");
}

#[tokio::test]
async fn delete_removes_a_line() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "casa-verde-home").await;
    let variant = t.any_variant_of("casa-verde-home").await;
    let added = t
        .write(
            Method::POST,
            &format!("/api/agent/cart/{cart}/items"),
            &t.network_key,
            json!({"variant_id": variant}),
        )
        .await
        .assert_ok(200);
    let item = added["items"][0]["item_id"].as_str().unwrap();
    let path = format!("/api/agent/cart/{cart}/items/{item}");
    let after = t.write(Method::DELETE, &path, &t.network_key, serde_json::Value::Null).await.assert_ok(200);
    assert_eq!(after["items"], json!([]));
    t.write(Method::DELETE, &path, &t.network_key, serde_json::Value::Null)
        .await
        .assert_error(404, "item_not_found");
}

/// Cart reads answer JSON rendered once per copy of the cart the store serves: the same bytes while
/// nothing changed, a change at once after a write, and still only to the cart's own key.
#[tokio::test]
async fn cart_reads_reuse_their_rendering_until_the_cart_changes() {
    let t = TestApp::new().await;
    let key = &t.network_key;
    let cart = t.cart(key, "trailhead-outfitters").await;
    let path = format!("/api/agent/cart/{cart}");
    let first = t.get(&path, key).await;
    first.assert_ok(200);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(t.get(&path, key).await.bytes, first.bytes, "read again");

    let variant = t.variant("TH-ADJ-M-BLK").await;
    let added = t
        .write(Method::POST, &format!("{path}/items"), key, json!({"variant_id": variant}))
        .await
        .assert_ok(200);
    let after = t.get(&path, key).await.assert_ok(200);
    assert_eq!(after, added, "a read after a change shows it");
    assert_eq!(after["items"].as_array().map(Vec::len), Some(1));
    t.get(&path, &t.seller_key).await.assert_error(404, "cart_not_found");
    assert_eq!(t.get(&path, key).await.assert_ok(200), added, "read again after another key's miss");
}

/// Under cart changes alone (no reads refresh the seller cache), a change that finds the cache stale
/// reads its seller in its own transaction and has the cache refreshed in the background, so the
/// changes after it render the cached record again.
#[tokio::test]
async fn a_change_that_finds_the_seller_cache_stale_has_it_refreshed() {
    let t = TestApp::new().await;
    let key = &t.network_key;
    let cart = t.cart(key, "trailhead-outfitters").await;
    assert!(t.app.sellers.fresh().is_none(), "nothing has read the seller cache yet");
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let added = t
        .write(Method::POST, &format!("/api/agent/cart/{cart}/items"), key, json!({"variant_id": variant}))
        .await
        .assert_ok(200);
    assert_eq!(added["seller"]["handle"], "trailhead-outfitters");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while t.app.sellers.fresh().is_none() {
        assert!(std::time::Instant::now() < deadline, "the seller cache was not refreshed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A change answers with the cart it composed in memory (no read-back); it must be exactly what a
/// fresh read of the database renders: lines, their order, quantities, prices, totals, address,
/// `updated_at`.
#[tokio::test]
async fn every_change_answers_the_cart_a_fresh_read_renders() {
    let t = TestApp::new().await;
    let key = &t.network_key;
    let cart = t.cart(key, "trailhead-outfitters").await;
    let seller = t.store.get_seller_by_handle("trailhead-outfitters").await.unwrap().unwrap();
    let filter = kifly_store::ProductFilter { seller_id: Some(seller.id.clone()), category: None };
    let variants: Vec<String> = t
        .store
        .list_products(&filter)
        .await
        .unwrap()
        .iter()
        .flat_map(|p| p.variants.iter().map(|v| v.id.clone()))
        .take(3)
        .collect();
    assert_eq!(variants.len(), 3, "the demo seller has at least three variants");
    let items = format!("/api/agent/cart/{cart}/items");
    let fresh = || async {
        let stored = t.store.get_cart(&cart).await.unwrap().unwrap();
        serde_json::to_value(kifly::service::carts::cart_view(&stored, &seller)).unwrap()
    };
    let item_of = |body: &serde_json::Value, variant: &str| -> String {
        let line = body["items"].as_array().unwrap().iter().find(|l| l["variant_id"] == variant).unwrap();
        line["item_id"].as_str().unwrap().to_string()
    };

    let mut last = serde_json::Value::Null;
    for (i, variant) in variants.iter().enumerate() {
        last = t
            .write(Method::POST, &items, key, json!({"variant_id": variant, "quantity": i + 1}))
            .await
            .assert_ok(200);
        assert_eq!(last, fresh().await, "after adding line {i}");
    }
    assert_eq!(last["items"].as_array().unwrap().len(), 3);
    let again = t
        .write(Method::POST, &items, key, json!({"variant_id": variants[0], "quantity": 2}))
        .await
        .assert_ok(200);
    assert_eq!(again["items"][0]["quantity"], 3);
    assert_eq!(again, fresh().await, "after adding to an existing line");
    assert_ne!(again["updated_at"], serde_json::Value::Null);

    let second = format!("{items}/{}", item_of(&again, &variants[1]));
    let patched = t.write(Method::PATCH, &second, key, json!({"quantity": 4})).await.assert_ok(200);
    assert_eq!(patched, fresh().await, "after a quantity change");
    let first = format!("{items}/{}", item_of(&again, &variants[0]));
    let deleted = t.write(Method::DELETE, &first, key, serde_json::Value::Null).await.assert_ok(200);
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2);
    assert_eq!(deleted, fresh().await, "after deleting a line");

    let address_path = format!("/api/agent/cart/{cart}/shipping-address");
    let addressed = t.write(Method::PUT, &address_path, key, address("Austin", "TX")).await.assert_ok(200);
    assert_eq!(addressed, fresh().await, "after setting the address");

    // Re-added, the first variant is a new line, listed last.
    let readded = t.write(Method::POST, &items, key, json!({"variant_id": variants[0]})).await.assert_ok(200);
    assert_eq!(readded["items"][2]["variant_id"], variants[0].as_str());
    assert_eq!(readded, fresh().await, "after re-adding a removed variant");
    let third = format!("{items}/{}", item_of(&readded, &variants[2]));
    let zeroed = t.write(Method::PATCH, &third, key, json!({"quantity": 0})).await.assert_ok(200);
    assert_eq!(zeroed["items"].as_array().unwrap().len(), 2);
    assert_eq!(zeroed, fresh().await, "after setting a quantity to 0");
    assert_eq!(t.get(&format!("/api/agent/cart/{cart}"), key).await.assert_ok(200), zeroed);
}

#[tokio::test]
async fn network_keys_need_a_seller_and_seller_keys_ignore_it() {
    let t = TestApp::new().await;
    let body = t
        .write(Method::POST, "/api/agent/cart", &t.network_key, json!({}))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(body["details"]["field"], "seller_handle");
    t.write(Method::POST, "/api/agent/cart", &t.network_key, json!({"seller_handle": "no-such-seller"}))
        .await
        .assert_error(404, "seller_not_found");
    // A seller-scoped key always gets its own seller.
    let scoped = t
        .write(Method::POST, "/api/agent/cart", &t.seller_key, json!({"seller_handle": "casa-verde-home"}))
        .await
        .assert_ok(201);
    assert_eq!(scoped["seller"]["handle"], "trailhead-outfitters");
    let empty_body = t.write(Method::POST, "/api/agent/cart", &t.seller_key, serde_json::Value::Null).await;
    assert_eq!(empty_body.assert_ok(201)["seller"]["handle"], "trailhead-outfitters");
}

#[tokio::test]
async fn quantity_cap_applies_to_the_resulting_line() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let key = &t.network_key;
    t.write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": 15})).await.assert_ok(200);
    let body = t
        .write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": 6}))
        .await
        .assert_error(400, "quantity_exceeds_limit");
    assert_eq!(body["details"]["max_quantity"], 20);
    assert_eq!(body["details"]["requested_quantity"], 21);
    let ok =
        t.write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": 5})).await.assert_ok(200);
    assert_eq!(ok["items"][0]["quantity"], 20);
    let item = ok["items"][0]["item_id"].as_str().unwrap();
    let body = t
        .write(Method::PATCH, &format!("{path}/{item}"), key, json!({"quantity": 21}))
        .await
        .assert_error(400, "quantity_exceeds_limit");
    assert_eq!(body["details"]["requested_quantity"], 21);

    // The cap is read from the database at run time.
    let mut limits = t.store.get_limits().await.unwrap();
    limits.max_item_quantity = 3;
    t.store.set_limits(&limits, 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let body = t
        .write(Method::PATCH, &format!("{path}/{item}"), key, json!({"quantity": 4}))
        .await
        .assert_error(400, "quantity_exceeds_limit");
    assert_eq!(body["details"]["max_quantity"], 3);
}

#[tokio::test]
async fn bad_quantities_and_variants_are_rejected() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let path = format!("/api/agent/cart/{cart}/items");
    let key = &t.network_key;
    let variant = t.variant("TH-ADJ-M-BLK").await;
    let body = t
        .write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": 0}))
        .await
        .assert_error(422, "validation_error");
    assert_eq!(body["details"]["field"], "quantity");
    let body = t
        .write(Method::POST, &path, key, json!({"variant_id": variant, "quantity": "two"}))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(body["details"]["field"], "quantity");
    let body =
        t.write(Method::POST, &path, key, json!({"quantity": 1})).await.assert_error(400, "invalid_request");
    assert_eq!(body["details"]["field"], "variant_id");
    t.write(Method::POST, &path, key, json!({"variant_id": "var_nope"}))
        .await
        .assert_error(404, "variant_not_found");
    t.write(Method::POST, &path, key, json!({"variant_id": variant, "colour": "red"}))
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_variant_of_another_seller_is_a_seller_mismatch() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let foreign = t.any_variant_of("casa-verde-home").await;
    let body = t
        .write(
            Method::POST,
            &format!("/api/agent/cart/{cart}/items"),
            &t.network_key,
            json!({"variant_id": foreign}),
        )
        .await
        .assert_error(403, "seller_mismatch");
    assert_eq!(body["details"]["cart_seller"], "trailhead-outfitters");
    assert_eq!(body["details"]["variant_seller"], "casa-verde-home");
    // A seller-scoped key cannot see other sellers' variants at all.
    let scoped_cart = t.cart(&t.seller_key, "trailhead-outfitters").await;
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{scoped_cart}/items"),
        &t.seller_key,
        json!({"variant_id": foreign}),
    )
    .await
    .assert_error(404, "variant_not_found");
}

#[tokio::test]
async fn another_tokens_cart_does_not_exist() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let other = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    let theirs = t.get(&format!("/api/agent/cart/{cart}"), &other).await;
    let missing = t.get("/api/agent/cart/cart_01JZZZZZZZZZZZZZZZZZZZZZZZ", &other).await;
    theirs.assert_error(404, "cart_not_found");
    missing.assert_error(404, "cart_not_found");
    // Same status and same shape: the other token learns nothing.
    assert_eq!(theirs.json()["details"], missing.json()["details"]);
    let variant = t.variant("TH-ADJ-M-BLK").await;
    t.write(Method::POST, &format!("/api/agent/cart/{cart}/items"), &other, json!({"variant_id": variant}))
        .await
        .assert_error(404, "cart_not_found");
    t.write(
        Method::PUT,
        &format!("/api/agent/cart/{cart}/shipping-address"),
        &other,
        address("Austin", "TX"),
    )
    .await
    .assert_error(404, "cart_not_found");
    t.get("/api/agent/cart/not-a-cart-id", &t.network_key).await.assert_error(404, "cart_not_found");
}

#[tokio::test]
async fn addresses_are_validated_as_us_addresses() {
    let t = TestApp::new().await;
    let cart = t.cart(&t.network_key, "trailhead-outfitters").await;
    let path = format!("/api/agent/cart/{cart}/shipping-address");
    let key = &t.network_key;
    let cases = [
        (json!({"line1": "1 Main", "city": "X", "region": "CA", "postal_code": "94105"}), "name"),
        (
            json!({"name": "A", "line1": "1 Main", "city": "X", "region": "ZZ", "postal_code": "94105"}),
            "region",
        ),
        (
            json!({"name": "A", "line1": "1 Main", "city": "X", "region": "CA", "postal_code": "9410"}),
            "postal_code",
        ),
        (
            json!({"name": "A", "line1": "1 Main", "city": "X", "region": "CA", "postal_code": "94105", "country": "CA"}),
            "country",
        ),
        (
            json!({"name": "A", "line1": "1 Main", "city": "X", "region": "CA", "postal_code": "94105", "planet": "Mars"}),
            "planet",
        ),
        (
            json!({"name": "A", "line1": "1 Main", "city": "X", "region": "CA", "postal_code": "94105", "email": "nope"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let err = t.write(Method::PUT, &path, key, body).await.assert_error(422, "validation_error");
        assert_eq!(err["details"]["field"], field);
        assert!(err["details"]["reason"].as_str().is_some());
    }
    let err = t
        .write(
            Method::PUT,
            &path,
            key,
            json!({"name": 5, "line1": "1", "city": "X", "region": "CA", "postal_code": "94105"}),
        )
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(err["details"]["field"], "name");
    let ok = t
        .write(
            Method::PUT,
            &path,
            key,
            json!({"name": "A", "line1": "1 Main", "line2": "Apt 2", "city": "X", "region": "NY", "postal_code": "10001-1234", "phone": "+1 555 0100", "email": "a@example.com"}),
        )
        .await
        .assert_ok(200);
    assert_eq!(ok["shipping_address"]["postal_code"], "10001-1234");
    assert_eq!(ok["shipping_address"]["line2"], "Apt 2");
}

#[tokio::test]
async fn coverage_decides_delivery_eligibility() {
    let t = TestApp::new().await;
    let catalog = json!({"sellers": [
        {"handle": "nowhere-goods", "name": "Nowhere Goods", "tier": "purchasable", "delivery_fee_cents": 100,
         "products": [{"handle": "thing", "title": "Thing", "variants": [{"sku": "NW-1", "name": "One", "price_cents": 500}]}]},
        {"handle": "empty-states", "name": "Empty States", "tier": "purchasable", "coverage": {"states": []},
         "products": [{"handle": "thing", "title": "Thing", "variants": [{"sku": "ES-1", "name": "One", "price_cents": 500}]}]}
    ]});
    let file = kifly_core::catalog::CatalogFile::parse(&catalog.to_string()).unwrap();
    t.store.import_catalog(&file, 0).await.unwrap();
    let key = &t.network_key;
    let cases = [
        ("trailhead-outfitters", "Bangor", "ME", true),  // nationwide
        ("bay-clothing-district", "Fresno", "CA", true), // covered state
        ("bay-clothing-district", "Reno", "NV", true),   // covered city
        ("bay-clothing-district", "Carson City", "NV", false),
        ("bay-clothing-district", "Austin", "TX", false),
        ("nowhere-goods", "Austin", "TX", false), // coverage not configured
        ("empty-states", "Austin", "TX", false),  // an empty state list is not nationwide
    ];
    for (seller, city, region, eligible) in cases {
        let cart = t.cart(key, seller).await;
        let body = t
            .write(
                Method::PUT,
                &format!("/api/agent/cart/{cart}/shipping-address"),
                key,
                address(city, region),
            )
            .await
            .assert_ok(200);
        assert_eq!(body["delivery_eligible"], eligible, "{seller} → {city}, {region}");
        if eligible {
            assert!(body.get("delivery_coverage").is_none());
        } else {
            let coverage = &body["delivery_coverage"];
            assert!(coverage["states"].is_array() && coverage["cities"].is_array(), "{body}");
            assert_eq!(coverage["coverage_configured"], seller != "nowhere-goods");
        }
    }
}

#[tokio::test]
async fn directory_sellers_build_carts_marked_external() {
    let t = TestApp::new().await;
    let body = t
        .write(Method::POST, "/api/agent/cart", &t.network_key, json!({"seller_handle": "atelier-lumiere"}))
        .await
        .assert_ok(201);
    assert_eq!(body["kifly_purchasable"], false);
    assert_eq!(body["fulfillment"], "external");
    assert_eq!(body["seller"]["tier"], "directory");
}

#[tokio::test]
async fn read_only_keys_cannot_change_carts() {
    let t = TestApp::new().await;
    let reader = t.create_key(None, &[kifly_core::scope::Scope::CatalogRead]).await;
    let body = t
        .write(Method::POST, "/api/agent/cart", &reader, json!({"seller_handle": "trailhead-outfitters"}))
        .await
        .assert_error(403, "scope_insufficient");
    assert_eq!(body["details"]["required_scope"], "checkout:write");
}
