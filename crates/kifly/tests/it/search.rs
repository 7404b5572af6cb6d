//! Search quality and behaviour through the real endpoint: the relevance set (recall@3), suggestions,
//! hostile input, determinism, the semantic layer, and the index following catalog imports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::TestApp;

fn items(list: &Value) -> &Vec<Value> {
    list["itemListElement"].as_array().expect("itemListElement")
}

fn encode(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

async fn quiet_app() -> TestApp {
    TestApp::with_config(|c| c.rate_limit_agent = "off".into()).await
}

/// Product id → handle, from the store.
async fn handles(t: &TestApp) -> HashMap<String, String> {
    t.store.list_products(&Default::default()).await.unwrap().into_iter().map(|p| (p.id, p.handle)).collect()
}

async fn top_scored(t: &TestApp, by_id: &HashMap<String, String>, q: &str, n: usize) -> Vec<(String, f64)> {
    let list =
        t.get(&format!("/api/agent/products?q={}&limit={n}", encode(q)), &t.network_key).await.assert_ok(200);
    items(&list)
        .iter()
        .map(|i| {
            (by_id[i["productID"].as_str().unwrap()].clone(), i["kifly:relevanceScore"].as_f64().unwrap())
        })
        .collect()
}

async fn top_handles(t: &TestApp, by_id: &HashMap<String, String>, q: &str, n: usize) -> Vec<String> {
    top_scored(t, by_id, q, n).await.into_iter().map(|(h, _)| h).collect()
}

#[tokio::test]
async fn relevance_set_recall_at_3_is_at_least_90_percent() {
    let t = quiet_app().await;
    let by_id = handles(&t).await;
    let set: Value = serde_json::from_str(include_str!("search_relevance.json")).unwrap();
    let queries = set["queries"].as_array().unwrap();
    assert!(queries.len() >= 40);
    let known: Vec<&String> = by_id.values().collect();
    let (mut total, mut misses) = (0.0, Vec::new());
    for case in queries {
        let q = case["q"].as_str().unwrap();
        let expect: Vec<&str> =
            case["expect"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        for h in &expect {
            assert!(known.iter().any(|k| k == h), "relevance set names unknown handle {h}");
        }
        let top = top_scored(&t, &by_id, q, 3).await;
        let found = expect.iter().filter(|h| top.iter().any(|(t, _)| t == *h)).count();
        let recall = found as f64 / expect.len().min(3) as f64;
        total += recall;
        if recall < 1.0 {
            misses.push(format!("  {q:?}: expected {expect:?}, got {top:?}"));
        }
    }
    let recall = total / queries.len() as f64;
    println!("search relevance: recall@3 = {:.1}% over {} queries", recall * 100.0, queries.len());
    if !misses.is_empty() {
        println!("misses:\n{}", misses.join("\n"));
    }
    assert!(recall >= 0.90, "recall@3 {:.1}% is under 90%:\n{}", recall * 100.0, misses.join("\n"));
}

#[tokio::test]
async fn scores_are_in_range_ordered_and_above_the_floor() {
    let t = quiet_app().await;
    let list = t.get("/api/agent/products?q=merino%20wool&limit=50", &t.network_key).await.assert_ok(200);
    let scores: Vec<f64> = items(&list).iter().map(|i| i["kifly:relevanceScore"].as_f64().unwrap()).collect();
    assert!(scores.len() >= 3);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    assert!(scores.iter().all(|s| (0.2..=1.0).contains(s)), "{scores:?}");
    assert_eq!(list["kifly:totalMatches"], scores.len());
    assert_eq!(list["kifly:query"], "merino wool");
    // An exact title match scores 1.
    let list =
        t.get("/api/agent/products?q=Merino%20Hiking%20Socks&limit=1", &t.network_key).await.assert_ok(200);
    assert_eq!(items(&list)[0]["kifly:relevanceScore"], 1.0);
}

#[tokio::test]
async fn paging_through_results_is_deterministic() {
    let t = quiet_app().await;
    let k = &t.network_key;
    let ids =
        |v: &Value| items(v).iter().map(|i| i["productID"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let all = t.get("/api/agent/products?q=cotton&limit=12", k).await.assert_ok(200);
    assert!(items(&all).len() >= 6, "cotton is in many products");
    let mut paged = Vec::new();
    for offset in [0, 3] {
        let page =
            t.get(&format!("/api/agent/products?q=cotton&limit=3&offset={offset}"), k).await.assert_ok(200);
        paged.extend(ids(&page));
    }
    assert_eq!(paged, ids(&all)[..6].to_vec());
    let again = t.get("/api/agent/products?q=cotton&limit=12", k).await.assert_ok(200);
    assert_eq!(ids(&again), ids(&all));
    let past_end = t.get("/api/agent/products?q=cotton&limit=5&offset=500", k).await.assert_ok(200);
    assert!(items(&past_end).is_empty());
    assert!(past_end.get("kifly:emptyReason").is_none(), "matches exist; the page is just past the end");
}

#[tokio::test]
async fn filters_apply_to_search() {
    let t = quiet_app().await;
    let k = &t.network_key;
    let list =
        t.get("/api/agent/products?q=linen&seller_handle=casa-verde-home&limit=50", k).await.assert_ok(200);
    assert!(!items(&list).is_empty());
    assert!(items(&list).iter().all(|i| i["kifly:seller"] == "casa-verde-home"));
    assert_eq!(list["kifly:sellers"].as_object().unwrap().keys().collect::<Vec<_>>(), ["casa-verde-home"]);
    let list = t.get("/api/agent/products?q=linen&category=Bedding&limit=50", k).await.assert_ok(200);
    assert!(!items(&list).is_empty());
    assert!(items(&list).iter().all(|i| i["category"] == "bedding"));
    // Seller-scoped keys search only their own catalog.
    let list = t.get("/api/agent/products?q=linen", &t.seller_key).await.assert_ok(200);
    assert!(items(&list).iter().all(|i| i["kifly:seller"] == "trailhead-outfitters"));
    assert_eq!(list["kifly:seller"]["handle"], "trailhead-outfitters");
}

#[tokio::test]
async fn suggestions_are_related_but_not_presented_as_matches() {
    let t = quiet_app().await;
    let by_id = handles(&t).await;
    // Tents exist, but not in the kitchen: no match, and the tents are the suggestions.
    let list = t.get("/api/agent/products?q=tent&category=kitchen", &t.network_key).await.assert_ok(200);
    assert!(items(&list).is_empty());
    assert_eq!(list["kifly:emptyReason"], "no_matches_for_query");
    let suggestions = list["kifly:suggestions"].as_array().unwrap();
    assert!(!suggestions.is_empty() && suggestions.len() <= 3);
    let handles: Vec<&str> =
        suggestions.iter().map(|s| by_id[s["productID"].as_str().unwrap()].as_str()).collect();
    assert!(handles.iter().any(|h| h.contains("tent")), "{handles:?}");
    for s in suggestions {
        assert!(s["kifly:relevanceScore"].as_f64().unwrap() < 0.2, "a suggestion is never scored as a match");
        assert!(s["kifly:variantId"].is_string());
    }
    assert!(list["kifly:availableCategories"].as_array().unwrap().iter().any(|c| c == "camping"));
    // Nonsense gets suggestions too (one per category), all scored 0.
    let list = t.get("/api/agent/products?q=zzqxv%20plutonium", &t.network_key).await.assert_ok(200);
    let suggestions = list["kifly:suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 3);
    assert!(suggestions.iter().all(|s| s["kifly:relevanceScore"] == 0.0));
    let categories: std::collections::HashSet<&str> =
        suggestions.iter().map(|s| s["category"].as_str().unwrap()).collect();
    assert_eq!(categories.len(), 3, "varied suggestions");
}

#[tokio::test]
async fn hostile_queries_never_fail() {
    let t = quiet_app().await;
    let k = &t.network_key;
    let long_emoji = "🧥".repeat(500);
    let control: String = (0u8..32).map(char::from).collect::<String>() + "jacket";
    let cases = [
        "!!!???...",
        "🙂",
        long_emoji.as_str(),
        control.as_str(),
        "%%%",
        "' OR 1=1 --",
        "日本 чашка",
        "ß",
        "a",
        "\u{202e}tekcaj",
        "\u{0301}\u{0301}\u{0301}",
    ];
    for q in cases {
        let r = t.get(&format!("/api/agent/products?q={}", encode(q)), k).await;
        let body = r.assert_ok(200);
        assert_eq!(body["@type"], "ItemList", "{q:?}");
    }
    let many_words = (0..120).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    t.get(&format!("/api/agent/products?q={}", encode(&many_words[..500.min(many_words.len())])), k)
        .await
        .assert_ok(200);
    let too_long = "x".repeat(501);
    t.get(&format!("/api/agent/products?q={too_long}"), k).await.assert_error(422, "validation_error");
}

#[tokio::test]
async fn the_optional_semantic_layer_blends_in_when_configured() {
    let t = TestApp::with_config(|c| {
        c.rate_limit_agent = "off".into();
        c.search_embedder = "ngram".into();
    })
    .await;
    let by_id = handles(&t).await;
    assert_eq!(top_handles(&t, &by_id, "sleeping bag", 1).await, ["cascade-15-sleeping-bag"]);
    let list = t.get("/api/agent/products?q=zzqxv%20plutonium", &t.network_key).await.assert_ok(200);
    assert_eq!(list["kifly:emptyReason"], "no_matches_for_query", "the floor still applies");
}

/// A Model2Vec model directory as an operator would provide one, written for the test: eight
/// dimensions, "cagoule" (a word no product uses) pointing between "rain", "shell" and "waterproof",
/// and "espresso", "cups", "coffee" elsewhere. Every other word is unknown to it.
fn write_test_model(dir: &std::path::Path) {
    let words = ["rain", "shell", "waterproof", "cagoule", "espresso", "cups", "coffee"];
    let third = 1.0 / 3f32.sqrt();
    #[rustfmt::skip]
    let vectors = [
        1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        third, third, third, 0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0,
    ];
    kifly::search::model2vec::write_model_dir(dir, &words, &vectors, kifly::search::model2vec::Dtype::F16)
        .expect("write model");
}

#[tokio::test]
async fn a_model2vec_model_from_disk_brings_in_products_by_meaning() {
    let model = tempfile::tempdir().unwrap();
    write_test_model(model.path());
    let plain = quiet_app().await;
    let semantic = TestApp::with_config(|c| {
        c.rate_limit_agent = "off".into();
        c.search_embedder = "model2vec".into();
        c.search_model_path = Some(model.path().to_path_buf());
    })
    .await;
    // Each app seeded its own store: product ids differ, handles do not.
    let (plain_ids, by_id) = (handles(&plain).await, handles(&semantic).await);

    // No product says "cagoule": lexically nothing matches.
    let list = plain.get("/api/agent/products?q=cagoule", &plain.network_key).await.assert_ok(200);
    assert_eq!(list["kifly:emptyReason"], "no_matches_for_query");
    // The model puts it next to the rain shell's words (rain ×2, shell, waterproof): cosine 0.94, so
    // 0.3 × (0.94 − 0.3) / 0.7 ≈ 0.27 blended, above the floor. Products with just one of those
    // words (cosine 0.58, ≈ 0.12) stay under it.
    let list = semantic.get("/api/agent/products?q=cagoule", &semantic.network_key).await.assert_ok(200);
    assert_eq!(list["kifly:totalMatches"], 1, "{list}");
    let top = top_scored(&semantic, &by_id, "cagoule", 3).await;
    assert_eq!(top[0].0, "stormline-rain-shell");
    assert!((0.2..0.3).contains(&top[0].1), "meaning alone weighs at most search_semantic_weight: {top:?}");

    // Where the model knows none of the query's words, ranking is exactly the lexical one.
    for q in ["down jacket", "sleeping bag", "chaqueta de plumas", "Regenjacke", "merino wool"] {
        assert_eq!(
            top_scored(&semantic, &by_id, q, 5).await,
            top_scored(&plain, &plain_ids, q, 5).await,
            "{q}"
        );
    }
    // Both layers agree on the espresso cups; the blend keeps them first.
    assert_eq!(top_handles(&semantic, &by_id, "espresso cups", 1).await, ["tazzine-espresso-gres"]);
    let list =
        semantic.get("/api/agent/products?q=zzqxv%20plutonium", &semantic.network_key).await.assert_ok(200);
    assert_eq!(list["kifly:emptyReason"], "no_matches_for_query", "the floor still applies");
}

#[test]
fn model2vec_without_a_usable_model_stops_the_server_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&[("KIFLY_SEARCH_EMBEDDER", "model2vec")], "search_model_path: required"),
        (
            &[("KIFLY_SEARCH_EMBEDDER", "model2vec"), ("KIFLY_SEARCH_MODEL_PATH", missing.to_str().unwrap())],
            "not a directory",
        ),
    ];
    for (env, message) in cases {
        for args in [&["config"][..], &["serve", "--bind", "127.0.0.1:0"][..]] {
            let run = crate::process::kifly_with_env(dir.path(), args, env);
            assert_eq!(run.status.code(), Some(2), "{args:?} {env:?}: {}", run.all_output());
            assert!(run.stderr.contains("search_model_path"), "{}", run.stderr);
            assert!(run.stderr.contains(message), "{}", run.stderr);
        }
    }
    // A directory without the files, then one with them.
    std::fs::create_dir(&missing).unwrap();
    let env =
        [("KIFLY_SEARCH_EMBEDDER", "model2vec"), ("KIFLY_SEARCH_MODEL_PATH", missing.to_str().unwrap())];
    let run = crate::process::kifly_with_env(dir.path(), &["config"], &env);
    assert_eq!(run.status.code(), Some(2), "{}", run.all_output());
    assert!(
        run.stderr.contains("search_model_path") && run.stderr.contains("model.safetensors"),
        "{}",
        run.stderr
    );
    write_test_model(&missing);
    let run = crate::process::kifly_with_env(dir.path(), &["config"], &env);
    assert!(run.status.success(), "{}", run.all_output());
    assert!(run.stdout.contains("search_embedder = \"model2vec\""), "{}", run.stdout);
}

#[tokio::test]
async fn the_index_follows_catalog_imports_within_five_seconds() {
    let t = quiet_app().await;
    let k = &t.network_key;
    let before = t.get("/api/agent/products?q=zephyrine", k).await.assert_ok(200);
    assert_eq!(before["kifly:emptyReason"], "no_matches_for_query");
    let file = kifly_core::catalog::CatalogFile::parse(
        &json!({"sellers": [{"handle": "trailhead-outfitters", "name": "Trailhead Outfitters", "tier": "purchasable",
            "coverage": {"nationwide": true},
            "products": [{"handle": "alpine-down-jacket", "title": "Zephyrine Down Parka", "category": "outerwear",
                "variants": [{"sku": "TH-ADJ-M-BLK", "name": "M / Black", "price_cents": 25900}]}]}]})
        .to_string(),
    )
    .unwrap();
    // As another node (or the CLI) would: straight into the database.
    t.store.import_catalog(&file, kifly::app::now_ms()).await.unwrap();
    let started = Instant::now();
    loop {
        let list = t.get("/api/agent/products?q=zephyrine", k).await.assert_ok(200);
        if let Some(first) = items(&list).first() {
            assert_eq!(first["name"], "Zephyrine Down Parka");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the import did not reach search within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("import reached search after {} ms", started.elapsed().as_millis());
    // The old title no longer matches that product.
    let list = t.get("/api/agent/products?q=alpine%20800-fill&limit=3", k).await.assert_ok(200);
    assert!(items(&list).iter().all(|i| i["name"] != "Alpine 800-Fill Down Jacket"));
}
