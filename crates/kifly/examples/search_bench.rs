//! Search benchmark (not a test): builds the in-memory index over a generated catalog and times
//! 3-word queries. Run in release:
//!
//! ```text
//! cargo run --release -p kifly --example search_bench -- [PRODUCTS=100000] [QUERIES=2000] [off|ngram|model2vec]
//! ```
//!
//! The catalog is generated deterministically from word lists in six languages (titles of 3–5
//! words, ~40-word descriptions mixing two languages, 1–6 variants), so numbers are comparable
//! between runs. Reading the rows from the database is not included in the build time.
//!
//! The last argument turns the semantic layer on (`SEMANTIC=1` still means `ngram`). `model2vec`
//! writes a Model2Vec model over the benchmark's vocabulary into a temporary directory (256
//! dimensions like the potion models, translations of a noun sharing most of their vector) and loads
//! it through the same code as `search_model_path`, so the build time includes embedding every
//! product with it. A real multilingual model has a far larger vocabulary (a slower tokenizer, the
//! same vector work).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kifly::search::{Embedder, Index, Model2VecEmbedder, NgramEmbedder, SearchQuery};
use kifly_core::catalog::Tier;
use kifly_core::coverage::Coverage;
use kifly_store::{Product, Seller, Variant};

const ADJECTIVES: &[&str] = &[
    "lightweight",
    "waterproof",
    "organic",
    "insulated",
    "vintage",
    "classic",
    "recycled",
    "handmade",
    "ultralight",
    "heavyweight",
    "stretch",
    "merino",
    "linen",
    "leather",
    "ceramic",
    "bamboo",
    "impermeable",
    "orgánico",
    "léger",
    "wasserdicht",
    "leggero",
    "macio",
    "rústico",
    "suave",
];
const NOUNS: &[&str] = &[
    "jacket",
    "tent",
    "bottle",
    "socks",
    "shirt",
    "dress",
    "jeans",
    "tote",
    "backpack",
    "beanie",
    "scarf",
    "sunglasses",
    "belt",
    "candle",
    "skillet",
    "knife",
    "board",
    "towel",
    "napkin",
    "pillow",
    "blanket",
    "mug",
    "bowl",
    "vase",
    "planter",
    "notebook",
    "pen",
    "wallet",
    "chair",
    "headlamp",
    "stove",
    "hoodie",
    "chaqueta",
    "veste",
    "jacke",
    "giacca",
    "toalla",
    "bougie",
    "kerze",
    "tazza",
    "cuaderno",
    "carnet",
];
const FILLER: &[&str] = &[
    "made",
    "from",
    "with",
    "durable",
    "soft",
    "premium",
    "cotton",
    "wool",
    "steel",
    "glass",
    "wood",
    "hand",
    "finished",
    "everyday",
    "travel",
    "outdoor",
    "kitchen",
    "home",
    "gift",
    "comfort",
    "warm",
    "hecho",
    "mano",
    "algodón",
    "lana",
    "fait",
    "main",
    "coton",
    "laine",
    "aus",
    "baumwolle",
    "wolle",
    "feito",
    "algodão",
    "fatto",
    "cotone",
    "lino",
    "seda",
    "soie",
    "seide",
    "acero",
    "stahl",
];
const CATEGORIES: &[&str] = &[
    "outerwear",
    "camping",
    "bags",
    "kitchen",
    "bedding",
    "bath",
    "stationery",
    "fragrance",
    "decor",
    "footwear",
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[(self.next() % words.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn catalog(n: usize) -> (Vec<Product>, Vec<Seller>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sellers: Vec<Seller> = (0..20)
        .map(|i| Seller {
            id: format!("sel_{i:04}"),
            handle: format!("seller-{i}"),
            name: format!("Seller {i}"),
            description: String::new(),
            storefront_url: None,
            tier: Tier::Purchasable,
            delivery_fee_cents: 500,
            coverage: Coverage::NotConfigured,
            created_at: 0,
            updated_at: 0,
        })
        .collect();
    let products = (0..n)
        .map(|i| {
            let title_len = 3 + rng.below(3) as usize;
            let mut title: Vec<String> =
                (0..title_len - 1).map(|_| rng.pick(ADJECTIVES).to_string()).collect();
            title.push(rng.pick(NOUNS).to_string());
            title.push(format!("{}", rng.below(1000)));
            let description: Vec<&str> =
                (0..40).map(|_| if rng.below(4) == 0 { rng.pick(NOUNS) } else { rng.pick(FILLER) }).collect();
            let id = format!("prd_{i:08}");
            let variants = (0..1 + rng.below(6))
                .map(|v| Variant {
                    id: format!("var_{i:08}_{v}"),
                    product_id: id.clone(),
                    sku: format!("SKU-{i}-{v}"),
                    name: format!("Size {v}"),
                    options: BTreeMap::from([("size".to_string(), format!("{v}"))]),
                    price_cents: 1000 + rng.below(20_000) as i64,
                    inventory: None,
                })
                .collect();
            Product {
                seller_id: format!("sel_{:04}", rng.below(20)),
                handle: format!("product-{i}"),
                title: title.join(" "),
                description: description.join(" "),
                category: rng.pick(CATEGORIES).to_string(),
                brand: format!("Brand {}", rng.below(300)),
                url: None,
                images: Vec::new(),
                variants,
                id,
            }
        })
        .collect();
    (products, sellers)
}

/// The catalog service's similarity floor.
const FLOOR: f32 = kifly::service::catalog::RELEVANCE_FLOOR as f32;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Dimensions of the generated Model2Vec model.
const MODEL_DIM: usize = 256;

/// A Model2Vec model over every benchmark word: each word gets a random unit direction, and the
/// translations in `NOUNS` (jacket, chaqueta, veste, jacke, giacca) share 80 % of theirs.
fn write_model(dir: &std::path::Path) -> Result<(), String> {
    let mut words: Vec<String> = Vec::new();
    for list in [ADJECTIVES, NOUNS, FILLER, CATEGORIES] {
        for w in list {
            // The BERT normaliser strips accents; the vocabulary must hold the stripped form.
            let w = kifly::search::text::fold(w);
            if !words.contains(&w) {
                words.push(w);
            }
        }
    }
    let mut rng = Rng(7);
    let mut random_unit = || {
        let v: Vec<f32> = (0..MODEL_DIM).map(|_| (rng.below(2001) as f32 - 1000.0) / 1000.0).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let jacket = random_unit();
    let mut vectors = Vec::with_capacity(words.len() * MODEL_DIM);
    for w in &words {
        let own = random_unit();
        let shared = ["jacket", "chaqueta", "veste", "jacke", "giacca"].contains(&w.as_str());
        vectors.extend(own.iter().zip(&jacket).map(|(o, j)| if shared { 0.8 * j + 0.2 * o } else { *o }));
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    kifly::search::model2vec::write_model_dir(dir, &words, &vectors, kifly::search::model2vec::Dtype::F32)
        .map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(100_000);
    let queries = numbers.get(1).copied().unwrap_or(2_000);
    let mut embedder_name = if std::env::var("SEMANTIC").is_ok_and(|v| v == "1") { "ngram" } else { "off" };
    if let Some(name) = args.iter().find(|a| a.parse::<usize>().is_err()) {
        embedder_name = name.as_str();
    }
    let model_dir = std::env::temp_dir().join(format!("kifly-bench-model-{}", std::process::id()));
    let embedder: Option<Arc<dyn Embedder>> = match embedder_name {
        "off" => None,
        "ngram" => Some(Arc::new(NgramEmbedder::default())),
        "model2vec" => {
            write_model(&model_dir)?;
            let started = Instant::now();
            let model = Model2VecEmbedder::load(&model_dir).map_err(|e| e.to_string())?;
            println!(
                "model2vec: {} tokens × {} dimensions, loaded in {:.1} ms",
                model.vocab_size(),
                model.dim(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            let _ = std::fs::remove_dir_all(&model_dir);
            Some(Arc::new(model))
        }
        other => return Err(format!("unknown embedder {other:?}: off, ngram or model2vec")),
    };
    let (products, sellers) = catalog(n);

    let started = Instant::now();
    let index = Index::build(products, sellers, embedder.map(|e| (e, 0.3)));
    let build = started.elapsed();
    println!("index build: {n} products in {:.2} s (semantic: {embedder_name})", build.as_secs_f64());

    let mut rng = Rng(42);
    let mut times = Vec::with_capacity(queries);
    let mut hits_total = 0usize;
    for i in 0..queries {
        // Mixes clean words, a typo (dropped letter) and cross-language words.
        let mut words =
            [rng.pick(ADJECTIVES).to_string(), rng.pick(NOUNS).to_string(), rng.pick(FILLER).to_string()];
        if i % 4 == 0 {
            let w = &mut words[1];
            if w.chars().count() > 4 {
                let cut = w.char_indices().nth(2).map(|(b, _)| b).unwrap_or(0);
                w.remove(cut);
            }
        }
        let text = words.join(" ");
        let started = Instant::now();
        let ranked = index.search(&SearchQuery { text: Some(&text), ..SearchQuery::default() }, FLOOR, 10);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        hits_total += ranked.top.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "3-word queries: {queries} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (avg top-10 hits {:.1})",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1],
        hits_total as f64 / queries as f64
    );
    Ok(())
}
