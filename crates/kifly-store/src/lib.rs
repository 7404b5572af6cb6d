//! Kifly's persistence layer.
//!
//! One operation-shaped [`Store`] trait, one module per backend (SQLite, PostgreSQL), each with its
//! own migrations, and one conformance suite (`tests/conformance.rs`) that
//! every backend must pass. The service layer only ever sees `Arc<dyn Store>`, so no SQL dialect leaks
//! above this crate.
//!
//! Writes that must be atomic with other writes go through a [`StoreTx`] unit of work obtained from
//! [`Store::begin_write`]: the service layer performs the business write, the HTTP layer then stores
//! the idempotency record *in the same transaction* and commits. That is what makes a crash between
//! commit and response replayable, and a crash before commit leave nothing behind.
//!
//! Times are Unix milliseconds (`i64`) in every table and every type here: portable across backends
//! and trivially ordered. The server formats them as RFC 3339 at the edge.

pub mod model;
pub mod postgres;
pub mod sqlite;
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use kifly_core::catalog::CatalogFile;
use kifly_core::limits::PlatformLimits;

pub use model::*;

/// Errors a store can return, classified by each backend so that no driver error code leaks upward.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or state precondition failed (e.g. a lost idempotency claim).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database could not be reached or is overloaded; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data.
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A JSON column that does not parse: the data is corrupt, whatever the backend.
pub(crate) fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("corrupt JSON column: {e}"))
}

/// How a [`WriteJob`] ends its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEnd {
    Commit,
    RollBack,
}

/// The future of a [`WriteJob`]; it borrows the transaction.
pub type WriteJobFuture<'a> = Pin<Box<dyn Future<Output = WriteEnd> + Send + 'a>>;

/// A whole write transaction as one closure, for [`Store::run_write`]: it may run on another task
/// than its caller's, so it owns what it needs and hands any result back through what it captured.
pub type WriteJob = Box<dyn for<'a> FnOnce(&'a mut dyn StoreTx) -> WriteJobFuture<'a> + Send>;

/// The persistence operations Kifly needs. Each method owns its own transaction unless it takes a
/// [`StoreTx`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Starts a write transaction (on SQLite: `BEGIN IMMEDIATE` on the single writer connection).
    async fn begin_write(&self) -> StoreResult<Box<dyn StoreTx>>;
    /// Runs `job` in a write transaction of its own and commits it, unless the job ends with
    /// [`WriteEnd::RollBack`]; returns once that is durable (an error if the commit failed).
    ///
    /// Prefer this to [`Store::begin_write`] for a transaction that needs nothing from outside while
    /// it runs: SQLite runs queued jobs back to back on one task and commits them together
    /// (`sqlite/combiner.rs`), without handing its single writer from request to request.
    async fn run_write(&self, job: WriteJob) -> StoreResult<()>;

    // --- catalog ---
    /// Upserts every seller, product and variant of a validated file in one transaction: sellers by
    /// handle, products by (seller, handle), variants by sku.
    async fn import_catalog(&self, file: &CatalogFile, now: i64) -> StoreResult<ImportSummary>;
    async fn get_seller_by_handle(&self, handle: &str) -> StoreResult<Option<Seller>>;
    async fn get_seller(&self, id: &str) -> StoreResult<Option<Seller>>;
    async fn list_sellers(&self) -> StoreResult<Vec<Seller>>;
    /// Products (with variants, in catalog order) matching the filter.
    async fn list_products(&self, filter: &ProductFilter) -> StoreResult<Vec<Product>>;
    /// How many products the catalog (or one seller's catalog) has.
    async fn count_products(&self, seller_id: Option<&str>) -> StoreResult<i64>;
    /// Distinct non-empty categories, sorted.
    async fn list_categories(&self, seller_id: Option<&str>) -> StoreResult<Vec<String>>;
    async fn get_variant(&self, variant_id: &str) -> StoreResult<Option<VariantRef>>;
    /// A cheap fingerprint of the whole catalog (row counts and `updated_at` aggregates of sellers,
    /// products and variants). Any import or edit changes it, so each node's in-memory search index
    /// can poll it and rebuild when it moves.
    async fn catalog_version(&self) -> StoreResult<CatalogVersion>;

    // --- agent keys ---
    async fn create_api_key(&self, key: &NewApiKey, now: i64) -> StoreResult<ApiKey>;
    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked. `Ok(false)` when no key has that id; revoking again keeps the first
    /// revocation time and returns `Ok(true)`.
    async fn revoke_api_key(&self, id: &str, now: i64) -> StoreResult<bool>;

    // --- platform limits ---
    async fn get_limits(&self) -> StoreResult<PlatformLimits>;
    async fn set_limits(&self, limits: &PlatformLimits, now: i64) -> StoreResult<()>;

    // --- carts (reads) ---
    async fn get_cart(&self, cart_id: &str) -> StoreResult<Option<Cart>>;
    /// The cart for showing it: never older than this process's last write, but a backend may
    /// serve it from memory, so another process's catalog change may take up to a second to show
    /// (SQLite, see `sqlite/cart_cache.rs`; PostgreSQL reads it like [`Store::get_cart`]). Decisions
    /// about money read with `get_cart`. While a backend serves one cached copy it returns the same
    /// `Arc`, so a caller may keep what it derives from the cart (its rendering) by pointer.
    async fn get_cart_cached(&self, cart_id: &str) -> StoreResult<Option<Arc<Cart>>>;

    // --- idempotency ---
    /// Claims `scope` for a new request with this body fingerprint, or reports what already holds it.
    /// An in-flight claim whose lease has expired (its request crashed) is taken over.
    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<ClaimOutcome>;
    /// Drops an in-flight claim whose outcome is not to be stored (so a retry runs again).
    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> StoreResult<()>;
    /// Deletes records created before `before` that are finished, or in flight with a lease that
    /// also ran out before then (abandoned by a crashed request). Returns how many went. SQLite takes
    /// them in insertion order and stops at the first record created at or after `before`, so one
    /// created out of time order (the clock stepped back) may go at a later purge.
    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64>;

    // --- audit ---
    /// Appends audit rows outside any business transaction (used for reads, batched).
    async fn insert_audit_batch(&self, entries: &[AuditEntry]) -> StoreResult<()>;
    /// The newest audit rows, newest first (operators and tests).
    async fn recent_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>>;

    // Orders.
    /// An order by its id or by its provider session id.
    async fn get_order(&self, id_or_session: &str) -> StoreResult<Option<Order>>;
    /// Unpaid orders whose payment window closed before `now` (for the expiry sweep).
    async fn list_overdue_orders(&self, now: i64, limit: i64) -> StoreResult<Vec<Order>>;
    /// Counts a click on a tracked link and returns its target and the click count so far.
    async fn follow_link(&self, code: &str) -> StoreResult<Option<(String, i64)>>;

    // Buyers, mail, feedback.
    /// The buyer behind a live buyer token (by its keyed hash).
    async fn get_buyer_by_token(&self, token_hash: &str) -> StoreResult<Option<Buyer>>;
    /// A buyer's orders changed after `since`, newest first.
    async fn list_buyer_orders(&self, buyer: &Buyer, since: i64, limit: i64) -> StoreResult<Vec<Order>>;
    /// Revokes every token of the buyer with this e-mail; returns how many were live.
    async fn revoke_buyer_tokens(&self, email: &str, now: i64) -> StoreResult<u64>;
    /// Claims up to `limit` due mails for `lease_ms` (several workers never get the same mail).
    async fn claim_mail(&self, now: i64, lease_ms: i64, limit: i64) -> StoreResult<Vec<OutboxMail>>;
    /// Records an attempt: sent; or not sent, to retry at `retry_at` (`None`: failed for good).
    async fn finish_mail(
        &self,
        id: &str,
        sent: bool,
        retry_at: Option<i64>,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    /// The newest mails, any status.
    async fn list_mail(&self, limit: i64) -> StoreResult<Vec<OutboxMail>>;
    async fn list_feedback(&self, limit: i64) -> StoreResult<Vec<FeedbackEntry>>;
}

/// One write transaction. Dropping it without [`StoreTx::commit`] rolls everything back.
#[async_trait]
pub trait StoreTx: Send {
    /// Reads a cart inside the transaction (PostgreSQL: `FOR UPDATE`).
    async fn get_cart(&mut self, cart_id: &str) -> StoreResult<Option<Cart>>;
    async fn insert_cart(&mut self, cart: &NewCart, now: i64) -> StoreResult<()>;
    async fn insert_cart_line(&mut self, line: &NewCartLine, now: i64) -> StoreResult<()>;
    async fn set_cart_line_quantity(&mut self, item_id: &str, quantity: i64, now: i64) -> StoreResult<()>;
    async fn delete_cart_line(&mut self, item_id: &str) -> StoreResult<()>;
    async fn set_cart_shipping_address(
        &mut self,
        cart_id: &str,
        address: &kifly_core::address::ShippingAddress,
        now: i64,
    ) -> StoreResult<()>;
    /// Bumps the cart's version and `updated_at` after any change to it.
    async fn touch_cart(&mut self, cart_id: &str, now: i64) -> StoreResult<()>;
    async fn insert_audit(&mut self, entry: &AuditEntry) -> StoreResult<()>;
    // Reads inside the transaction. A write operation must read through its transaction, never
    // through the store: on PostgreSQL, taking a second pooled connection while this one holds locks
    // that other pooled connections wait on can starve the pool.
    async fn get_seller(&mut self, id: &str) -> StoreResult<Option<Seller>>;
    async fn get_seller_by_handle(&mut self, handle: &str) -> StoreResult<Option<Seller>>;
    async fn get_variant(&mut self, variant_id: &str) -> StoreResult<Option<VariantRef>>;
    async fn get_limits(&mut self) -> StoreResult<PlatformLimits>;
    /// Claims an idempotency scope inside this transaction, so the claim commits (or vanishes) with
    /// the business write. Concurrent claims of the same scope wait for this transaction and then see
    /// its outcome. Same outcomes as [`Store::claim_idempotency`].
    async fn claim_idempotency(
        &mut self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<ClaimOutcome>;
    /// Stores the final response for a claim. Fails with [`StoreError::Conflict`] if the claim was lost
    /// (its lease expired and another request took it over), so the caller must not commit.
    async fn complete_idempotency(
        &mut self,
        claim: &IdempotencyClaim,
        response: &StoredResponse,
        now: i64,
    ) -> StoreResult<()>;
    // Checkout and orders (see `queries/orders.rs` for the state rules).
    async fn get_order(&mut self, id_or_session: &str) -> StoreResult<Option<Order>>;
    /// Inserts an order `pending_payment`; a session id used before is [`StoreError::Conflict`].
    async fn insert_order(&mut self, order: &NewOrder, now: i64) -> StoreResult<()>;
    /// Reserves stock for every line or reports the first that does not fit (then roll back).
    async fn reserve_stock(&mut self, lines: &[OrderLine]) -> StoreResult<Result<(), OutOfStock>>;
    /// `open → checkout_pending`, linked to the order; [`StoreError::Conflict`] if not open.
    async fn lock_cart_for_checkout(&mut self, cart_id: &str, order_id: &str, now: i64) -> StoreResult<()>;
    async fn set_order_session(
        &mut self,
        order_id: &str,
        session_id: &str,
        payment_url: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<Order>;
    /// `pending_payment → paid`; the cart completes and the reservation becomes a sale.
    async fn mark_order_paid(
        &mut self,
        order_id: &str,
        payment_reference: Option<&str>,
        now: i64,
    ) -> StoreResult<OrderTransition>;
    /// `pending_payment → failed | expired | cancelled`; the cart reopens and the stock comes back.
    async fn close_unpaid_order(
        &mut self,
        order_id: &str,
        to: OrderStatus,
        now: i64,
    ) -> StoreResult<OrderTransition>;
    async fn ship_order(
        &mut self,
        order_id: &str,
        shipment: &Shipment,
        now: i64,
    ) -> StoreResult<OrderTransition>;
    async fn deliver_order(&mut self, order_id: &str, now: i64) -> StoreResult<OrderTransition>;
    /// Records a provider event id; `false` if it was seen before.
    async fn record_payment_event(
        &mut self,
        source: &str,
        event_id: &str,
        order_id: Option<&str>,
        now: i64,
    ) -> StoreResult<bool>;
    async fn insert_link(
        &mut self,
        code: &str,
        url: &str,
        cart_id: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    // Buyers, mail, feedback.
    async fn get_buyer_by_email(&mut self, email: &str) -> StoreResult<Option<Buyer>>;
    /// Creates the buyer unless the e-mail address has one; `false` then.
    async fn insert_buyer(&mut self, id: &str, email: &str, name: &str, now: i64) -> StoreResult<bool>;
    async fn mark_buyer_verified(&mut self, buyer_id: &str, now: i64) -> StoreResult<()>;
    async fn set_buyer_address(
        &mut self,
        buyer_id: &str,
        address: &kifly_core::address::ShippingAddress,
        now: i64,
    ) -> StoreResult<()>;
    /// Replaces the address's one-time code (attempts start again at 0).
    async fn set_buyer_code(
        &mut self,
        email: &str,
        code_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    /// Counts an attempt on the address's code and returns it after counting.
    async fn attempt_buyer_code(&mut self, email: &str) -> StoreResult<Option<BuyerCode>>;
    async fn delete_buyer_code(&mut self, email: &str) -> StoreResult<()>;
    async fn insert_buyer_token(
        &mut self,
        id: &str,
        token_hash: &str,
        buyer_id: &str,
        api_key_id: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Queues a mail; the outbox worker sends it after commit.
    async fn enqueue_mail(&mut self, mail: &NewMail, now: i64) -> StoreResult<()>;
    async fn insert_feedback(&mut self, entry: &FeedbackEntry) -> StoreResult<()>;
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Opens the store named by a database URL (`sqlite://path/to/kifly.db`).
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Other(format!(
            "unsupported database URL scheme in {:?}: expected sqlite:// or postgres://",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
