//! Prints how queries are understood and ranked over the demo catalog:
//! `cargo run -p kifly --example search_explain -- "chaqueta de plumas" "headlmap"`.

use kifly::search::{Index, SearchQuery};

#[tokio::main]
async fn main() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("kifly-explain-{}", std::process::id()));
    let config = kifly::config::Config { data_dir: dir.clone(), ..Default::default() };
    let store = kifly::app::open_store(&config).await?;
    let secret = "x".repeat(32);
    kifly::demo::seed(store.as_ref(), &secret).await?;
    let products = store.list_products(&Default::default()).await.map_err(|e| e.to_string())?;
    let sellers = store.list_sellers().await.map_err(|e| e.to_string())?;
    let index = Index::build(products, sellers, None);
    for q in std::env::args().skip(1) {
        println!("== {q}");
        for (word, terms) in index.explain(&q) {
            let mut terms = terms;
            terms.sort_by(|a, b| b.1.total_cmp(&a.1));
            let shown: Vec<String> =
                terms.iter().take(12).map(|(t, q, n)| format!("{t}:{q:.2}/{n}")).collect();
            println!("  {word}: {}", shown.join(" "));
        }
        for hit in index.search(&SearchQuery { text: Some(&q), ..SearchQuery::default() }, 0.0, 5).top {
            println!("  {:.3} {}", hit.score, index.products[hit.doc].handle);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
