//! The embedded SQLite backend (the default).
//!
//! One writer connection and a small pool of readers, both on the same WAL file. Funnelling every
//! write through one connection with `BEGIN IMMEDIATE` means writers queue in the pool instead of
//! failing with `SQLITE_BUSY`, while readers never wait for writers. Other processes (the CLI) writing
//! the same file are covered by the busy timeout.
//!
//! The queries and the `Store` implementation are shared with PostgreSQL (`../queries/`); this module
//! supplies the SQLite types, pools and error classification.

#[path = "../queries/buyers.rs"]
mod buyers;
#[path = "../queries/carts.rs"]
mod carts;
#[path = "../queries/catalog.rs"]
mod catalog;
#[path = "../queries/keys.rs"]
mod keys;
#[path = "../queries/ops.rs"]
mod ops;
#[path = "../queries/orders.rs"]
mod orders;
#[path = "../queries/store.rs"]
mod store;

mod checkpoint;
mod direct;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::{StoreError, StoreResult, json_err};

type Db = Sqlite;
type DbPool = sqlx::SqlitePool;
type Conn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;
type QueryResult = sqlx::sqlite::SqliteQueryResult;
type BackendStore = SqliteStore;
use direct::DirectReads;

const BACKEND_NAME: &str = "sqlite";
/// SQLite has no row locks; the writer transaction is exclusive already.
const CART_FOR_UPDATE_SQL: Option<&str> = None;

/// One writer at a time anyway, so a plain delete.
const PURGE_IDEMPOTENCY_SQL: &str =
    "DELETE FROM idempotency_records WHERE created_at < $1 AND (state = 'done' OR lease_expires_at < $1)";

/// The single writer serialises claims; no row locks needed.
const OUTBOX_CLAIM_SQL: &str = "UPDATE outbox SET locked_until = $2, attempts = attempts + 1
WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1)
             ORDER BY next_attempt_at LIMIT $3)
RETURNING id, recipient, subject, body, attempts, status, last_error";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite implementation of [`crate::Store`].
pub struct SqliteStore {
    writer: DbPool,
    reader: DbPool,
    /// `None` for in-memory databases, which other connections cannot open by path.
    direct: Option<Arc<DirectReads>>,
    /// Checkpoints the WAL in the background (file databases only).
    _checkpointer: Option<checkpoint::Checkpointer>,
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
            .foreign_keys(true)
            // Reads come from memory-mapped pages and a larger page cache; temp tables stay in memory.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let path = options.get_filename().to_path_buf();
        let direct = (!in_memory).then(|| Arc::new(DirectReads::new(path.clone())));
        // Checkpoints run on their own thread (see [`checkpoint`]), not inside the writer's commits.
        let writer_options =
            if in_memory { options.clone() } else { options.clone().pragma("wal_autocheckpoint", "0") };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(writer_options)
            .await
            .map_err(map_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        let checkpointer = if in_memory {
            None
        } else {
            Some(checkpoint::Checkpointer::start(path).map_err(|e| StoreError::Other(e.to_string()))?)
        };
        Ok(Self { writer, reader, direct, _checkpointer: checkpointer })
    }

    fn writer(&self) -> &DbPool {
        &self.writer
    }

    fn reader(&self) -> &DbPool {
        &self.reader
    }

    /// The hot reads that bypass sqlx (see [`direct`]).
    fn direct_reads(&self) -> Option<&Arc<DirectReads>> {
        self.direct.as_ref()
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Db>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)
    }
}

/// Classifies a driver error; see [`StoreError`].
fn map_err(e: sqlx::Error) -> StoreError {
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
