//! The PostgreSQL backend, for cluster mode: many stateless nodes on one database.
//!
//! Same queries and `Store` implementation as SQLite (`../queries/`). What differs: one pool for
//! reads and writes (PostgreSQL has real concurrency), `READ COMMITTED` transactions with a
//! `FOR UPDATE` row lock on the cart every cart change starts from (so concurrent changes to one cart
//! serialise on that row while other carts proceed), statements that race (idempotency claims) written
//! as conditional inserts/updates, and short timeouts so an unreachable database answers 503 quickly
//! instead of hanging. Migrations take sqlx's advisory lock, so nodes starting together are safe.

#[path = "../queries/buyers.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod buyers;
#[path = "../queries/carts.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod carts;
#[path = "../queries/catalog.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod catalog;
#[path = "../queries/keys.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod keys;
#[path = "../queries/ops.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod ops;
#[path = "../queries/orders.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod orders;
#[path = "../queries/store.rs"]
#[expect(clippy::duplicate_mod, reason = "compiled once per backend on purpose")]
mod store;

mod sql;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::{StoreError, StoreResult, json_err};

type DbPool = sqlx::PgPool;
type Conn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;
type QueryResult = sqlx::postgres::PgQueryResult;
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;
type BackendStore = PostgresStore;

const BACKEND_NAME: &str = "postgres";
const CART_FOR_UPDATE_SQL: Option<&str> = Some(
    "SELECT id, api_key_id, seller_id, status, shipping_address, version, order_id, created_at, updated_at FROM carts WHERE id = $1 FOR UPDATE",
);

/// Nodes purge concurrently: each takes a batch of rows no other node holds (`SKIP LOCKED`), so no
/// two nodes delete (or wait on) the same rows.
const PURGE_IDEMPOTENCY_SQL: &str =
    "DELETE FROM idempotency_records WHERE (principal, method, path, idem_key) IN (
    SELECT principal, method, path, idem_key FROM idempotency_records
    WHERE created_at < $1 AND (state = 'done' OR lease_expires_at < $1)
    LIMIT 10000 FOR UPDATE SKIP LOCKED)";

/// Newest first, by time (nodes insert concurrently, so there is no one insertion order).
const RECENT_AUDIT_SQL: &str = "SELECT id, api_key_id, action, resource_id, metadata, created_at FROM audit_log ORDER BY created_at DESC, id DESC LIMIT $1";

/// Skips rows another node is claiming, so concurrent workers never wait on or double-send a mail.
const OUTBOX_CLAIM_SQL: &str = "UPDATE outbox SET locked_until = $2, attempts = attempts + 1
WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1)
             ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING id, recipient, subject, body, attempts, status, last_error";

/// Audit rows per `INSERT` in a batch: one round trip per 100 rows; 100 rows × 6 columns stays far
/// under the bind-parameter limit.
const AUDIT_ROWS_PER_INSERT: usize = 100;
/// The rows after the last full chunk go in one more statement: each statement is a round trip.
const AUDIT_REST_ROW_BY_ROW: bool = false;

/// Concurrent transactions claim the same scope through the unique index: the claim's in-flight
/// record is what makes a second one wait, so it is written at once.
const CLAIMS_WAIT_FOR_OUTCOME: bool = false;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Stands in for SQLite's direct reads: it has no values, so its methods can never run.
enum DirectReads {}

impl DirectReads {
    fn get_cart(&self, _cart_id: &str) -> StoreResult<Option<crate::model::Cart>> {
        match *self {}
    }

    fn get_cart_cached(&self, _cart_id: &str) -> StoreResult<Option<std::sync::Arc<crate::model::Cart>>> {
        match *self {}
    }

    fn get_seller(
        &self,
        _key: catalog::SellerKey,
        _value: &str,
    ) -> StoreResult<Option<crate::model::Seller>> {
        match *self {}
    }

    fn get_limits(&self) -> StoreResult<kifly_core::limits::PlatformLimits> {
        match *self {}
    }
}

/// A cart without a row lock (unused: carts are read for a change with [`CART_FOR_UPDATE_SQL`]).
async fn read_cart_unlocked(conn: &mut Conn, cart_id: &str) -> StoreResult<Option<crate::model::Cart>> {
    carts::get(conn, cart_id).await
}

/// PostgreSQL has no direct reads to choose between (see [`DirectReads`]).
fn sees_only_committed_state(_tx: &Tx) -> bool {
    false
}

/// The PostgreSQL implementation of [`crate::Store`].
pub struct PostgresStore {
    pool: DbPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL. The pool connects lazily, so a node starts (and answers 503)
    /// while the database is down, and recovers by itself when it returns.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad postgres URL: {e}")))?
            .options([("statement_timeout", "10s"), ("lock_timeout", "5s")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    fn writer(&self) -> &DbPool {
        &self.pool
    }

    fn reader(&self) -> &DbPool {
        &self.pool
    }

    /// Every PostgreSQL read goes through the pool (compare the SQLite backend's direct reads).
    fn direct_reads(&self) -> Option<&std::sync::Arc<DirectReads>> {
        None
    }

    async fn begin(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(map_err)
    }

    /// A write job in a transaction of its own: PostgreSQL has many writers, so nothing is gained
    /// by running jobs on one task.
    async fn run_write_job(&self, job: crate::WriteJob) -> StoreResult<()> {
        let mut tx = crate::Store::begin_write(self).await?;
        match job(tx.as_mut()).await {
            crate::WriteEnd::Commit => tx.commit().await,
            crate::WriteEnd::RollBack => Ok(()),
        }
    }

    /// sqlx's migrator, under its advisory lock.
    async fn run_migrations(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }
}

/// Classifies a driver error by SQLSTATE; see [`StoreError`].
fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound(e.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "23505" => StoreError::Conflict(e.to_string()),
                "23503" => StoreError::NotFound(e.to_string()),
                // serialization failure, deadlock, lock timeout, statement timeout, admin shutdown,
                // cannot connect now, too many connections: all transient.
                "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P03" | "53300" => {
                    StoreError::Unavailable(e.to_string())
                }
                c if c.starts_with("08") => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Other(e.to_string()),
            }
        }
        _ => StoreError::Other(e.to_string()),
    }
}
