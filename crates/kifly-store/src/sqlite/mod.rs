//! The embedded SQLite backend (the default).
//!
//! One writer connection and a small pool of readers, both on the same WAL file. Funnelling every
//! write through one connection with `BEGIN IMMEDIATE` means writers queue in the pool instead of
//! failing with `SQLITE_BUSY`, while readers never wait for writers. Other processes (the CLI) writing
//! the same file are covered by the busy timeout.

mod carts;
mod catalog;
mod keys;
mod ops;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use kifly_core::address::ShippingAddress;
use kifly_core::catalog::CatalogFile;
use kifly_core::limits::PlatformLimits;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::model::*;
use crate::{Store, StoreError, StoreResult, StoreTx};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://` URL.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self { writer, reader })
    }
}

/// Classifies a driver error; see [`StoreError`].
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound(e.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
            if primary == 5 || primary == 6 {
                StoreError::Unavailable(e.to_string())
            } else if db.is_foreign_key_violation() {
                StoreError::NotFound(e.to_string())
            } else if db.is_unique_violation() {
                StoreError::Conflict(e.to_string())
            } else {
                StoreError::Other(e.to_string())
            }
        }
        _ => StoreError::Other(e.to_string()),
    }
}

pub(crate) fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("corrupt JSON column: {e}"))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(map_err)?;
        Ok(())
    }

    async fn begin_write(&self) -> StoreResult<Box<dyn StoreTx>> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn import_catalog(&self, file: &CatalogFile, now: i64) -> StoreResult<ImportSummary> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let summary = catalog::import(&mut tx, file, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(summary)
    }

    async fn get_seller_by_handle(&self, handle: &str) -> StoreResult<Option<Seller>> {
        catalog::seller_by(&self.reader, "handle", handle).await
    }

    async fn get_seller(&self, id: &str) -> StoreResult<Option<Seller>> {
        catalog::seller_by(&self.reader, "id", id).await
    }

    async fn list_sellers(&self) -> StoreResult<Vec<Seller>> {
        catalog::list_sellers(&self.reader).await
    }

    async fn list_products(&self, filter: &ProductFilter) -> StoreResult<Vec<Product>> {
        catalog::list_products(&self.reader, filter).await
    }

    async fn count_products(&self, seller_id: Option<&str>) -> StoreResult<i64> {
        catalog::count_products(&self.reader, seller_id).await
    }

    async fn list_categories(&self, seller_id: Option<&str>) -> StoreResult<Vec<String>> {
        catalog::list_categories(&self.reader, seller_id).await
    }

    async fn get_variant(&self, variant_id: &str) -> StoreResult<Option<VariantRef>> {
        catalog::get_variant(&self.reader, variant_id).await
    }

    async fn create_api_key(&self, key: &NewApiKey, now: i64) -> StoreResult<ApiKey> {
        keys::create(&self.writer, &self.reader, key, now).await
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        keys::find_by_hash(&self.reader, key_hash).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        keys::list(&self.reader).await
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> StoreResult<bool> {
        keys::revoke(&self.writer, id, now).await
    }

    async fn get_limits(&self) -> StoreResult<PlatformLimits> {
        ops::get_limits(&self.reader).await
    }

    async fn set_limits(&self, limits: &PlatformLimits, now: i64) -> StoreResult<()> {
        ops::set_limits(&self.writer, limits, now).await
    }

    async fn get_cart(&self, cart_id: &str) -> StoreResult<Option<Cart>> {
        let mut conn = self.reader.acquire().await.map_err(map_err)?;
        carts::get(&mut conn, cart_id).await
    }

    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<ClaimOutcome> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let outcome = ops::claim_idempotency(&mut tx, scope, fingerprint, now, lease_ms).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> StoreResult<()> {
        ops::release_idempotency(&self.writer, claim).await
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        ops::purge_idempotency(&self.writer, before).await
    }

    async fn insert_audit_batch(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        for entry in entries {
            ops::insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn recent_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        ops::recent_audit(&self.reader, limit).await
    }
}

/// A `BEGIN IMMEDIATE` transaction on the writer connection.
struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn get_cart(&mut self, cart_id: &str) -> StoreResult<Option<Cart>> {
        carts::get(&mut self.tx, cart_id).await
    }

    async fn insert_cart(&mut self, cart: &NewCart, now: i64) -> StoreResult<()> {
        carts::insert(&mut self.tx, cart, now).await
    }

    async fn insert_cart_line(&mut self, line: &NewCartLine, now: i64) -> StoreResult<()> {
        carts::insert_line(&mut self.tx, line, now).await
    }

    async fn set_cart_line_quantity(&mut self, item_id: &str, quantity: i64, now: i64) -> StoreResult<()> {
        carts::set_line_quantity(&mut self.tx, item_id, quantity, now).await
    }

    async fn delete_cart_line(&mut self, item_id: &str) -> StoreResult<()> {
        carts::delete_line(&mut self.tx, item_id).await
    }

    async fn set_cart_shipping_address(
        &mut self,
        cart_id: &str,
        address: &ShippingAddress,
        now: i64,
    ) -> StoreResult<()> {
        carts::set_address(&mut self.tx, cart_id, address, now).await
    }

    async fn touch_cart(&mut self, cart_id: &str, now: i64) -> StoreResult<()> {
        carts::touch(&mut self.tx, cart_id, now).await
    }

    async fn insert_audit(&mut self, entry: &AuditEntry) -> StoreResult<()> {
        ops::insert_audit(&mut self.tx, entry).await
    }

    async fn complete_idempotency(
        &mut self,
        claim: &IdempotencyClaim,
        response: &StoredResponse,
        now: i64,
    ) -> StoreResult<()> {
        ops::complete_idempotency(&mut self.tx, claim, response, now).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_err)
    }
}
