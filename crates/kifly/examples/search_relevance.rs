//! Runs the relevance set (`tests/it/search_relevance.json`) straight against the index over the demo
//! catalog and prints recall@3 and the misses, without the HTTP layer (the CI test goes through the
//! endpoint; this is the quick loop for tuning the lexicon):
//!
//! ```text
//! cargo run --release -p kifly --example search_relevance
//! ```

use kifly::search::{Index, SearchQuery};

#[tokio::main]
async fn main() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("kifly-relevance-{}", std::process::id()));
    let config = kifly::config::Config { data_dir: dir.clone(), ..Default::default() };
    let store = kifly::app::open_store(&config).await?;
    kifly::demo::seed(store.as_ref(), &"x".repeat(32)).await?;
    let products = store.list_products(&Default::default()).await.map_err(|e| e.to_string())?;
    let sellers = store.list_sellers().await.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let index = Index::build(products, sellers, None);

    let set: serde_json::Value =
        serde_json::from_str(include_str!("../tests/it/search_relevance.json")).map_err(|e| e.to_string())?;
    let queries = set["queries"].as_array().ok_or("no queries")?;
    let floor = kifly::service::catalog::RELEVANCE_FLOOR as f32;
    let (mut total, mut misses) = (0.0, Vec::new());
    for case in queries {
        let q = case["q"].as_str().unwrap_or_default();
        let expect: Vec<&str> =
            case["expect"].as_array().into_iter().flatten().filter_map(|h| h.as_str()).collect();
        let top: Vec<(String, f32)> = index
            .search(&SearchQuery { text: Some(q), ..SearchQuery::default() }, floor, 3)
            .top
            .iter()
            .map(|h| (index.products[h.doc].handle.clone(), h.score))
            .collect();
        let found = expect.iter().filter(|h| top.iter().any(|(t, _)| t == *h)).count();
        let recall = found as f64 / expect.len().clamp(1, 3) as f64;
        total += recall;
        if recall < 1.0 {
            misses.push(format!("  {q:?}: expected {expect:?}, got {top:?}"));
        }
    }
    println!("recall@3 = {:.1}% over {} queries", total / queries.len() as f64 * 100.0, queries.len());
    for miss in misses {
        println!("{miss}");
    }
    Ok(())
}
