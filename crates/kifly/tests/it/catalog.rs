//! The product listing's JSON-LD contract and seller records.

use serde_json::Value;

use crate::support::TestApp;

fn items(list: &Value) -> &Vec<Value> {
    list["itemListElement"].as_array().expect("itemListElement")
}

#[tokio::test]
async fn browse_returns_a_json_ld_item_list_with_kifly_fields() {
    let t = TestApp::new().await;
    let list = t.get("/api/agent/products?limit=50", &t.network_key).await.assert_ok(200);
    assert_eq!(list["@type"], "ItemList");
    assert_eq!(list["kifly:totalCatalogSize"], 74);
    assert_eq!(items(&list).len(), 50);
    assert!(list.get("kifly:emptyReason").is_none());
    let sellers = list["kifly:sellers"].as_object().expect("network keys get a sellers map");
    for item in items(&list) {
        assert_eq!(item["@type"], "Product");
        assert!(item["kifly:variantId"].as_str().unwrap().starts_with("var_"));
        let score = item["kifly:relevanceScore"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        let handle = item["kifly:seller"].as_str().unwrap();
        assert!(sellers.contains_key(handle), "{handle} missing from kifly:sellers");
        assert!(item["image"].as_array().unwrap().len() <= 2);
        assert!(item["offers"]["kifly:purchasable"].is_boolean());
        assert_eq!(item["offers"]["priceCurrency"], "USD");
    }
    let record = &sellers["bay-clothing-district"];
    assert_eq!(record["delivery_coverage"]["coverage_configured"], true);
    assert_eq!(record["fulfillment"], "kifly");
}

#[tokio::test]
async fn variant_and_image_caps_are_signalled() {
    let t = TestApp::new().await;
    let list = t
        .get("/api/agent/products?q=ridgeline%20trail%20runner&limit=5", &t.network_key)
        .await
        .assert_ok(200);
    let runner = items(&list)
        .iter()
        .find(|i| i["name"].as_str().unwrap().to_lowercase().contains("ridgeline"))
        .expect("runner");
    assert_eq!(runner["kifly:hasVariant"].as_array().unwrap().len(), 20);
    assert_eq!(runner["kifly:variantCount"], 24);
    let browse = t.get("/api/agent/products?limit=50", &t.network_key).await.assert_ok(200);
    let many_images = items(&browse)
        .iter()
        .find(|i| i.get("kifly:imageCount").is_some())
        .expect("a product with > 2 images");
    assert!(many_images["kifly:imageCount"].as_u64().unwrap() > 2);
    assert_eq!(many_images["image"].as_array().unwrap().len(), 2);
    let single =
        items(&browse).iter().find(|i| i.get("kifly:hasVariant").is_none()).expect("a one-variant product");
    assert!(single["kifly:variantId"].is_string());
}

#[tokio::test]
async fn seller_scoped_keys_see_only_their_seller() {
    let t = TestApp::new().await;
    let list = t.get("/api/agent/products?limit=50", &t.seller_key).await.assert_ok(200);
    assert_eq!(list["kifly:seller"]["handle"], "trailhead-outfitters");
    assert!(list.get("kifly:sellers").is_none());
    assert!(items(&list).iter().all(|i| i["kifly:seller"] == "trailhead-outfitters"));
    assert_eq!(list["kifly:totalCatalogSize"].as_u64().unwrap() as usize, items(&list).len());
    t.get("/api/agent/sellers/casa-verde-home", &t.seller_key).await.assert_error(404, "seller_not_found");
    t.get("/api/agent/sellers/trailhead-outfitters", &t.seller_key).await.assert_ok(200);
}

#[tokio::test]
async fn no_match_says_why_and_offers_alternatives() {
    let t = TestApp::new().await;
    let list = t.get("/api/agent/products?q=zzqxv%20plutonium", &t.network_key).await.assert_ok(200);
    assert_eq!(items(&list).len(), 0);
    assert_eq!(list["kifly:emptyReason"], "no_matches_for_query");
    assert!(!list["kifly:suggestions"].as_array().unwrap().is_empty());
    let categories = list["kifly:availableCategories"].as_array().unwrap();
    assert!(categories.iter().any(|c| c == "outerwear"));
}

#[tokio::test]
async fn an_empty_catalog_says_so() {
    let t = TestApp::new().await;
    let file = kifly_core::catalog::CatalogFile::parse(
        r#"{"sellers":[{"handle":"empty-shop","name":"Empty","tier":"purchasable"}]}"#,
    )
    .unwrap();
    t.store.import_catalog(&file, 0).await.unwrap();
    let key = t.create_key(Some("empty-shop"), &kifly_core::scope::Scope::ALL).await;
    let list = t.get("/api/agent/products", &key).await.assert_ok(200);
    assert_eq!(list["kifly:totalCatalogSize"], 0);
    assert_eq!(list["kifly:emptyReason"], "empty_catalog");
}

#[tokio::test]
async fn filters_and_paging_are_stable() {
    let t = TestApp::new().await;
    let k = &t.network_key;
    let all = t.get("/api/agent/products?seller_handle=casa-verde-home&limit=50", k).await.assert_ok(200);
    assert!(items(&all).iter().all(|i| i["kifly:seller"] == "casa-verde-home"));
    let first =
        t.get("/api/agent/products?seller_handle=casa-verde-home&limit=5&offset=0", k).await.assert_ok(200);
    let second =
        t.get("/api/agent/products?seller_handle=casa-verde-home&limit=5&offset=5", k).await.assert_ok(200);
    let ids =
        |v: &Value| items(v).iter().map(|i| i["productID"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, ids(&all)[..10].to_vec());
    let outerwear = t.get("/api/agent/products?category=OUTERWEAR&limit=50", k).await.assert_ok(200);
    assert!(!items(&outerwear).is_empty());
    assert!(items(&outerwear).iter().all(|i| i["category"] == "outerwear"));
}

#[tokio::test]
async fn the_seller_record_lists_full_coverage() {
    let t = TestApp::new().await;
    let s = t.get("/api/agent/sellers/bay-clothing-district", &t.network_key).await.assert_ok(200);
    assert_eq!(s["handle"], "bay-clothing-district");
    assert_eq!(s["delivery_fee_cents"], 1550);
    assert_eq!(s["delivery_coverage"]["states"], serde_json::json!(["CA", "OR", "WA"]));
    assert_eq!(s["delivery_coverage"]["city_count"], 3);
    assert_eq!(s["kifly_purchasable"], true);
    let d = t.get("/api/agent/sellers/atelier-lumiere", &t.network_key).await.assert_ok(200);
    assert_eq!((d["kifly_purchasable"].clone(), d["fulfillment"].clone()), (false.into(), "external".into()));
    t.get("/api/agent/sellers/nope", &t.network_key).await.assert_error(404, "seller_not_found");
}
