//! Catalog search: a multilingual lexical index of our own, kept in memory on every node, with an
//! optional semantic layer.
//!
//! # Why an in-memory index of our own
//!
//! Kifly runs as one process (SQLite) or as several stateless nodes over one PostgreSQL database. The
//! databases' own full-text engines rank differently (FTS5's bm25 vs `ts_rank`) and stem differently,
//! so ranking would differ between deployments; `tantivy` keeps its index on disk per node and adds a
//! large dependency tree (minutes of compile time on a 2-core builder) for a catalog that fits in
//! memory many times over. Here every node builds the same [`Index`] from the same rows in the same
//! order with the same code, so ranking is identical on SQLite and PostgreSQL, and a node needs no
//! local state. The index is a plain inverted index with BM25-style saturation; building it for
//! 100,000 products takes seconds (see `examples/search_bench.rs`).
//!
//! # Matching
//!
//! [`text`] folds case and accents (NFKD), splits on anything but letters and digits, and stems every
//! word with the English, Spanish, French, German, Portuguese and Italian Snowball stemmers (product
//! texts mix languages inside one description, so no per-field language guess is made). A query word
//! is expanded into its stems, a curated synonym/translation table (`lexicon/synonyms.txt`), typo
//! corrections (one edit from 4 characters, two from 8, SymSpell-style lookup) and prefix
//! completions; fields weigh title > category > brand > description > variants/handle/seller. Scores
//! are normalised into `[0, 1]` (1.0 = every query word found literally in the title) and the catalog
//! service drops hits under a similarity floor. A query word that reaches nothing at all is tried as
//! a compound of known words (`text::split_compound`): German writes "Regenjacke" where the catalog and
//! the lexicon have "Regen" and "Jacke", and no lexicon can list every compound.
//!
//! # Meaning
//!
//! Off by default, an [`Embedder`] (`embed`, `model2vec`) adds similarity of meaning: every product's
//! vector is computed when the index is built and kept quantised to bytes, and each query is compared
//! with all of them in one pass, blended as `(1 − w)·lexical + w·semantic`. A model is only ever read
//! from the directory the operator configured; nothing is downloaded.
//!
//! # Staying in step with the catalog
//!
//! [`SearchEngine::index`] hands out the current immutable snapshot. At most every
//! [`REFRESH_EVERY`], one request compares [`kifly_store::Store::catalog_version`] (a cheap aggregate
//! over sellers, products and variants) with the snapshot's; when it moved, a background task rebuilds
//! and swaps the snapshot while requests keep using the old one. So an import on any node reaches every
//! node's search within a few seconds, without any node-to-node messaging.

pub mod embed;
pub mod index;
pub mod model2vec;
pub mod text;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kifly_store::{CatalogVersion, ProductFilter, Store, StoreError};

pub use embed::{Embedder, NgramEmbedder};
pub use index::{Hit, Index, Ranked, SearchQuery};
pub use model2vec::Model2VecEmbedder;

use crate::config::Config;

/// How often a node checks whether the catalog changed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// An embedder with its blend weight (`search_semantic_weight`).
pub type WeightedEmbedder = (Arc<dyn Embedder>, f32);

/// The embedder and blend weight `search_embedder` / `search_semantic_weight` ask for (`Ok(None)`
/// when off). Loads the model for `model2vec`; a model that cannot be loaded is an error naming
/// `search_model_path` (config validation has already checked what is cheap to check).
pub fn load_embedder(config: &Config) -> Result<Option<WeightedEmbedder>, String> {
    let weight = config.search_semantic_weight as f32;
    match config.search_embedder.as_str() {
        "ngram" => Ok(Some((Arc::new(NgramEmbedder::default()), weight))),
        "model2vec" => {
            let Some(path) = &config.search_model_path else {
                return Err(
                    "invalid configuration: search_model_path: required with search_embedder = \"model2vec\""
                        .into(),
                );
            };
            let started = Instant::now();
            let model = Model2VecEmbedder::load(path).map_err(|e| {
                format!("invalid configuration: search_model_path = {:?}: {e}", path.display().to_string())
            })?;
            tracing::info!(
                path = %path.display(),
                dim = model.dim(),
                vocab = model.vocab_size(),
                ms = started.elapsed().as_millis() as u64,
                "search: model2vec model loaded"
            );
            Ok(Some((Arc::new(model), weight)))
        }
        _ => Ok(None),
    }
}

struct Current {
    index: Arc<Index>,
    version: CatalogVersion,
}

struct Inner {
    store: Arc<dyn Store>,
    embedder: Option<WeightedEmbedder>,
    current: RwLock<Option<Arc<Current>>>,
    checked_at: Mutex<Option<Instant>>,
    /// Held while checking the version or rebuilding: one refresh at a time per node.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

/// The node's search index handle; cheap to clone.
#[derive(Clone)]
pub struct SearchEngine(Arc<Inner>);

impl SearchEngine {
    pub fn new(store: Arc<dyn Store>, embedder: Option<WeightedEmbedder>) -> SearchEngine {
        SearchEngine(Arc::new(Inner {
            store,
            embedder,
            current: RwLock::new(None),
            checked_at: Mutex::new(None),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
        }))
    }

    fn snapshot(&self) -> Option<Arc<Current>> {
        self.0.current.read().ok().and_then(|guard| guard.clone())
    }

    fn due(&self) -> bool {
        self.0.checked_at.lock().map(|at| at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY)).unwrap_or(true)
    }

    fn mark_checked(&self) {
        if let Ok(mut at) = self.0.checked_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// The current index. The first call builds it; later calls return the snapshot and, at most every
    /// [`REFRESH_EVERY`], check the catalog version and rebuild in the background if it moved.
    pub async fn index(&self) -> Result<Arc<Index>, StoreError> {
        if let Some(current) = self.snapshot() {
            if !self.due() {
                return Ok(current.index.clone());
            }
            // One request per node checks; the others go on with the snapshot they have.
            let Ok(guard) = self.0.refresh.clone().try_lock_owned() else {
                return Ok(current.index.clone());
            };
            self.mark_checked();
            let version = match self.0.store.catalog_version().await {
                Ok(version) => version,
                Err(e) => {
                    tracing::warn!(error = %e, "search: could not read the catalog version; serving the current index");
                    return Ok(current.index.clone());
                }
            };
            if version != current.version {
                let engine = self.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = engine.rebuild(version).await {
                        tracing::warn!(error = %e, "search: rebuilding the index failed; keeping the old one");
                    }
                });
            }
            return Ok(current.index.clone());
        }
        let _guard = self.0.refresh.lock().await;
        if let Some(current) = self.snapshot() {
            return Ok(current.index.clone());
        }
        self.mark_checked();
        let version = self.0.store.catalog_version().await?;
        self.rebuild(version).await
    }

    /// Reads the whole catalog and swaps in a new index. `version` must have been read before the rows,
    /// so a write racing with the read is picked up by the next check.
    async fn rebuild(&self, version: CatalogVersion) -> Result<Arc<Index>, StoreError> {
        let started = Instant::now();
        let sellers = self.0.store.list_sellers().await?;
        let products = self.0.store.list_products(&ProductFilter::default()).await?;
        let embedder = self.0.embedder.clone();
        let index = tokio::task::spawn_blocking(move || Index::build(products, sellers, embedder))
            .await
            .map_err(|e| StoreError::Other(format!("search index build panicked: {e}")))?;
        let index = Arc::new(index);
        tracing::info!(
            products = index.len(),
            ms = started.elapsed().as_millis() as u64,
            "search index built"
        );
        if let Ok(mut current) = self.0.current.write() {
            *current = Some(Arc::new(Current { index: index.clone(), version }));
        }
        Ok(index)
    }
}
