//! The application context shared by every front end (REST, MCP, CLI): the store, the server secret,
//! caches, the rate limiter and the audit sink. Service functions take `&App`.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use kifly_core::limits::PlatformLimits;
use kifly_store::{AuditEntry, Cart, Seller, Store};
use tokio::sync::mpsc;

use crate::auth::KeyCache;
use crate::config::Config;
use crate::error::ApiError;
use crate::rate_limit::{InProcessLimiter, RateLimiter, Rates};
use crate::rate_limit_redis::RedisLimiter;
use crate::service::catalog::RenderedSellerRecord;

/// How long platform limits are cached; changes made by `kifly limits set` (or another node) are
/// seen within this time. The contract allows 5 s.
const LIMITS_TTL: Duration = Duration::from_secs(2);

/// Cheaply cloneable handle to the application context.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    pub store: Arc<dyn Store>,
    /// Server secret for keyed hashes.
    pub secret: String,
    /// Hashes presented API keys with the secret ([`crate::auth::hash_key`]).
    pub key_hasher: crate::auth::KeyHasher,
    pub keys: KeyCache,
    pub limits: LimitsCache,
    pub sellers: SellerCache,
    pub rendered_carts: RenderedCarts,
    pub limiter: Arc<dyn RateLimiter>,
    pub rates: Rates,
    pub audit: AuditSink,
    /// This node's in-memory catalog search index.
    pub search: crate::search::SearchEngine,
    /// Payment provider clients (real or sandbox) and the MPP challenge signer.
    pub payments: crate::payments::Payments,
    /// Sends what the mail outbox holds (SMTP, or the log).
    pub mailer: Arc<dyn crate::mail::Mailer>,
    /// Wakes this node's outbox worker after a request queued mail.
    pub outbox: crate::outbox::OutboxSignal,
    pub config: Config,
}

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    /// Builds the context around an open, migrated store. Spawns the audit writer, so it must run
    /// inside a Tokio runtime. `config.bind` must be the address actually listened on (the payment
    /// clients reach the built-in sandbox there). Fails only on an unusable payment configuration.
    pub fn new(store: Arc<dyn Store>, config: Config, secret: String) -> Result<App, String> {
        let payments = crate::payments::Payments::from_config(&config, &secret)?;
        let mailer = crate::outbox::mailer_from_config(&config)?;
        let embedder = crate::search::load_embedder(&config)?;
        let rates = Rates {
            agent: config.rate("rate_limit_agent"),
            mcp: config.rate("rate_limit_mcp"),
            feedback: config.rate("rate_limit_feedback"),
            anon: config.rate("rate_limit_anon"),
        };
        let limiter: Arc<dyn RateLimiter> = match config.redis_url.as_deref().map(RedisLimiter::new) {
            Some(Ok(redis)) => Arc::new(redis),
            Some(Err(e)) => {
                // Config validation checks the URL first; this is a last line of defence.
                tracing::error!(error = %e, "bad redis_url; rate limits are per node");
                Arc::new(InProcessLimiter::default())
            }
            None => Arc::new(InProcessLimiter::default()),
        };
        Ok(App(Arc::new(AppInner {
            audit: AuditSink::spawn(store.clone()),
            payments,
            mailer,
            outbox: crate::outbox::OutboxSignal::default(),
            search: crate::search::SearchEngine::new(store.clone(), embedder),
            store,
            key_hasher: crate::auth::KeyHasher::new(secret.as_bytes()),
            secret,
            keys: KeyCache::default(),
            limits: LimitsCache::default(),
            sellers: SellerCache::default(),
            rendered_carts: RenderedCarts::default(),
            limiter,
            rates,
            config,
        })))
    }

    /// The platform limits, from a short-lived cache.
    pub async fn platform_limits(&self) -> Result<PlatformLimits, ApiError> {
        self.limits.get(&self.store).await
    }

    /// A seller by id, from a short-lived cache of all sellers (catalog imports reach it within 2 s).
    pub async fn seller(&self, id: &str) -> Result<Option<Seller>, ApiError> {
        Ok(self.cached_seller(id).await?.map(|cached| cached.seller.clone()))
    }

    /// Seller `id` from a fresh seller cache, without asking the store: for code holding a write
    /// transaction, which must read through it instead (a pooled read could wait for the very
    /// connection the transaction holds). A stale cache is refreshed by a task of its own, so under
    /// a stream of writes and no reads the next changes find it fresh again.
    pub fn fresh_cached_seller(&self, id: &str) -> Option<Arc<CachedSeller>> {
        let Some(sellers) = self.sellers.fresh() else {
            self.refresh_sellers_in_background();
            return None;
        };
        sellers.get(id).cloned()
    }

    /// Starts refreshing the seller cache through the pool, unless a refresh is already running.
    fn refresh_sellers_in_background(&self) {
        if self.sellers.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(e) = app.sellers.all(&app.store).await {
                tracing::warn!(error = %e.message, "could not refresh the seller cache");
            }
            app.sellers.refreshing.store(false, Ordering::Release);
        });
    }

    /// A seller by id with its rendered cart record, shared from the seller cache.
    pub async fn cached_seller(&self, id: &str) -> Result<Option<Arc<CachedSeller>>, ApiError> {
        if let Some(cached) = self.sellers.all(&self.store).await?.get(id) {
            return Ok(Some(Arc::clone(cached)));
        }
        // Not cached yet (imported within the last 2 s): ask the database.
        Ok(self.store.get_seller(id).await?.map(|seller| Arc::new(CachedSeller::new(seller))))
    }
}

/// Opens the configured store and applies migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    }
    let store = kifly_store::connect(&url).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

/// The server secret: `secret_key` from config, or (embedded mode) `secret.key` in the data dir,
/// generated with 256 random bits on first use and readable only by its owner.
pub fn load_or_create_secret(config: &Config) -> Result<String, String> {
    if let Some(secret) = &config.secret_key {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join("secret.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if existing.len() >= 32 {
            return Ok(existing);
        }
        return Err(format!(
            "{} is shorter than 32 characters; delete it or set KIFLY_SECRET_KEY",
            path.display()
        ));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// Platform limits with a short TTL (see [`LIMITS_TTL`]).
#[derive(Default)]
pub struct LimitsCache {
    cached: Fresh<PlatformLimits>,
}

/// A value read from the store, served for [`LIMITS_TTL`] after it was read.
struct Fresh<T>(Mutex<Option<(Instant, T)>>);

impl<T> Default for Fresh<T> {
    fn default() -> Self {
        Fresh(Mutex::new(None))
    }
}

impl<T: Clone> Fresh<T> {
    /// The value, if it was read less than the TTL ago.
    fn get(&self) -> Option<T> {
        let guard = self.0.lock().ok()?;
        let (at, value) = guard.as_ref()?;
        (at.elapsed() < LIMITS_TTL).then(|| value.clone())
    }

    /// Keeps `value`, read just now.
    fn set(&self, value: T) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((Instant::now(), value));
        }
    }
}

impl LimitsCache {
    pub async fn get(&self, store: &Arc<dyn Store>) -> Result<PlatformLimits, ApiError> {
        if let Some(limits) = self.fresh() {
            return Ok(limits);
        }
        let limits = store.get_limits().await?;
        self.remember(limits);
        Ok(limits)
    }

    /// The cached limits, if younger than [`LIMITS_TTL`]; never asks the store.
    pub fn fresh(&self) -> Option<PlatformLimits> {
        self.cached.get()
    }

    /// Caches `limits`, read just now.
    pub fn remember(&self, limits: PlatformLimits) {
        self.cached.set(limits);
    }
}

/// Every seller, cached for [`LIMITS_TTL`]: carts render their seller on every read, and sellers are
/// few and change only through catalog imports.
#[derive(Default)]
pub struct SellerCache {
    cached: Fresh<Sellers>,
    /// A background refresh is on its way ([`App::fresh_cached_seller`]).
    refreshing: AtomicBool,
}

/// Every seller by id, shared by the cache's readers.
pub type Sellers = Arc<HashMap<String, Arc<CachedSeller>>>;

/// A cached seller with its record as every cart view shows it, rendered once per cache refresh.
pub struct CachedSeller {
    pub seller: Seller,
    pub cart_record: RenderedSellerRecord,
}

impl CachedSeller {
    fn new(seller: Seller) -> CachedSeller {
        CachedSeller { cart_record: RenderedSellerRecord::for_carts(&seller), seller }
    }
}

impl SellerCache {
    pub async fn all(&self, store: &Arc<dyn Store>) -> Result<Sellers, ApiError> {
        if let Some(sellers) = self.fresh() {
            return Ok(sellers);
        }
        let sellers: Sellers = Arc::new(
            store
                .list_sellers()
                .await?
                .into_iter()
                .map(|s| (s.id.clone(), Arc::new(CachedSeller::new(s))))
                .collect(),
        );
        self.cached.set(sellers.clone());
        Ok(sellers)
    }

    /// The cached sellers, if younger than the TTL; never asks the store.
    pub fn fresh(&self) -> Option<Sellers> {
        self.cached.get()
    }
}

/// Carts whose rendering is kept at most; when full, the cache starts over.
const RENDERED_CARTS: usize = 4096;

/// Cart reads' JSON, rendered once per copy of the cart the store serves from memory
/// ([`Store::get_cart_cached`] returns the same `Arc` while it serves one copy) and per seller-cache
/// refresh. Rendering and serialising the cart was about a tenth of a cart read's CPU. An entry
/// holds the cart and seller it was rendered from, so neither can be freed and its address reused
/// while the entry could still match.
#[derive(Default)]
pub struct RenderedCarts {
    entries: Mutex<HashMap<String, RenderedCart>>,
}

struct RenderedCart {
    cart: Arc<Cart>,
    seller: Arc<CachedSeller>,
    json: Bytes,
}

impl RenderedCarts {
    /// The JSON rendered from exactly this cart and seller, if it is still kept.
    pub fn get(&self, cart: &Arc<Cart>, seller: &Arc<CachedSeller>) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&cart.id)?;
        (Arc::ptr_eq(&entry.cart, cart) && Arc::ptr_eq(&entry.seller, seller)).then(|| entry.json.clone())
    }

    /// Keeps `json`, rendered from `cart` and `seller`.
    pub fn remember(&self, cart: &Arc<Cart>, seller: &Arc<CachedSeller>, json: Bytes) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= RENDERED_CARTS && !entries.contains_key(&cart.id) {
            entries.clear();
        }
        let entry = RenderedCart { cart: Arc::clone(cart), seller: Arc::clone(seller), json };
        entries.insert(cart.id.clone(), entry);
    }
}

const AUDIT_BATCH: usize = 256;
const AUDIT_LINGER: Duration = Duration::from_millis(20);

/// Audit rows for read actions, written in batches off the request path. (Mutations write their
/// audit row inside their own transaction instead.)
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
}

impl AuditSink {
    fn spawn(store: Arc<dyn Store>) -> AuditSink {
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(10_000);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(AUDIT_BATCH);
            while rx.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
                // Under load, let a batch fill for a moment: one commit per ~256 reads instead of one per
                // few, which keeps the single SQLite writer free for real writes.
                if batch.len() < AUDIT_BATCH {
                    tokio::time::sleep(AUDIT_LINGER).await;
                    while batch.len() < AUDIT_BATCH {
                        let Ok(entry) = rx.try_recv() else { break };
                        batch.push(entry);
                    }
                }
                if let Err(e) = store.insert_audit_batch(&batch).await {
                    tracing::warn!(error = %e, rows = batch.len(), "could not write audit rows");
                }
                batch.clear();
            }
        });
        AuditSink { tx }
    }

    /// Queues a row; never blocks a request. If the queue is full the row is dropped and counted.
    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(entry).is_err() {
            metrics::counter!("kifly_audit_dropped_total").increment(1);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// RFC 3339 (UTC, millisecond precision) for a Unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t.replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
