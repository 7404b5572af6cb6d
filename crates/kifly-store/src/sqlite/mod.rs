//! The embedded SQLite backend (the default).
//!
//! One writer connection and read-only connections, all on the same WAL file, driven through rusqlite
//! on the calling thread (`sql.rs` says why not sqlx). Funnelling every write through one connection
//! with `BEGIN IMMEDIATE` means writers queue for it instead of failing with `SQLITE_BUSY`, while
//! readers never wait for writers. Other processes (the CLI) writing the same file are waited for.
//!
//! The queries and the `Store` implementation are shared with PostgreSQL (`../queries/`); this module
//! supplies the SQLite connections, transaction start, migrations and error classification.

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

mod cart_cache;
mod checkpoint;
mod combiner;
mod direct;
mod migrate;
mod sql;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult, json_err};

type DbPool = sql::Pool;
type Conn = Connection;
type DbRow = sql::SqliteRow;
type QueryResult = sql::QueryResult;
type Tx = writer::Transaction;
type BackendStore = SqliteStore;
use direct::DirectReads;

const BACKEND_NAME: &str = "sqlite";
/// SQLite has no row locks; the writer transaction is exclusive already.
const CART_FOR_UPDATE_SQL: Option<&str> = None;

/// A claim inside a write transaction writes its record only with the outcome
/// (`ops::PendingClaim`): the transaction is SQLite's only writer, so nobody else can claim the same
/// scope meanwhile.
const CLAIMS_WAIT_FOR_OUTCOME: bool = true;

/// One writer at a time anyway, so a plain delete, of the oldest rows only. Records are appended in
/// time order (rowids grow), so the expired ones are a prefix of the table in rowid order: the
/// subquery walks it from the oldest record to the first one created at or after `$1`, and the delete
/// takes the rowid range before that one. No index on `created_at` needed (migration 0006), and a
/// purge never reads the newer rows. A record created "before" an older one (the clock stepped back)
/// waits until the records ahead of it are old enough. The `IFNULL` bound is for a table whose records
/// are all old enough.
const PURGE_IDEMPOTENCY_SQL: &str = "DELETE FROM idempotency_records
WHERE rowid < IFNULL((SELECT rowid FROM idempotency_records WHERE created_at >= $1 ORDER BY rowid LIMIT 1), 9223372036854775807)
  AND created_at < $1 AND (state = 'done' OR lease_expires_at < $1)";

/// Newest first: the log is appended in insertion order (migration 0007), so this is a walk back from
/// its end, with no index or sort.
const RECENT_AUDIT_SQL: &str = "SELECT id, api_key_id, action, resource_id, metadata, created_at FROM audit_log ORDER BY seq DESC LIMIT $1";

/// The single writer serialises claims; no row locks needed.
const OUTBOX_CLAIM_SQL: &str = "UPDATE outbox SET locked_until = $2, attempts = attempts + 1
WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1)
             ORDER BY next_attempt_at LIMIT $3)
RETURNING id, recipient, subject, body, attempts, status, last_error";

/// Audit rows per `INSERT` in a batch: full chunks share one cached statement, fewer statements
/// to run than one per row.
const AUDIT_ROWS_PER_INSERT: usize = 16;
/// The rows after the last full chunk go one by one through the cached single-row statement:
/// statements run in-process, and parsing a statement of another size would cost more.
const AUDIT_REST_ROW_BY_ROW: bool = true;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite's own (thread-blocking) wait for a lock on the writer connection: none, so it never
/// blocks an async worker; waiting for another process's write lock happens in `writer.rs`, on an
/// async timer. (Inside a `BEGIN IMMEDIATE` transaction a WAL writer never waits for a lock.)
const WRITER_BUSY_TIMEOUT: Duration = Duration::ZERO;

/// Prepared statements kept per connection: enough for every query in `../queries/`.
const STATEMENT_CACHE: usize = 128;

/// The SQLite implementation of [`crate::Store`].
pub struct SqliteStore {
    writer: writer::Writer,
    /// Runs write jobs back to back on the writer ([`crate::Store::run_write`]).
    jobs: Arc<combiner::Combiner<crate::WriteJob>>,
    /// The writer, for statements that run on their own.
    writes: DbPool,
    /// The read-only connections; the writer for an in-memory database, which other connections
    /// cannot open by path.
    reads: DbPool,
    /// Checkpoints the WAL in the background (file databases only).
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://` URL.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let path = database_path(url)?;
        // Counts the writer's commits, for the cart cache of the direct reads.
        let commits = cart_cache::Generation::default();
        let writer = writer::Writer::new(open_writer(path.as_ref()).map_err(map_err)?, commits.clone());
        let writes = DbPool::Writer(writer.clone());
        let Some(path) = path else {
            let jobs = write_jobs(&writer, None);
            return Ok(Self { writer, jobs, reads: writes.clone(), writes, _checkpointer: None });
        };
        let direct = Arc::new(DirectReads::new(path.clone(), commits));
        let jobs = write_jobs(&writer, Some(Arc::clone(&direct)));
        let reads = DbPool::Readers(direct);
        // Checkpoints run on their own thread (see [`checkpoint`]), not inside the writer's commits.
        let checkpointer = checkpoint::Checkpointer::start(path, writer.lock())
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(Self { writer, jobs, writes, reads, _checkpointer: Some(checkpointer) })
    }

    fn writer(&self) -> &DbPool {
        &self.writes
    }

    fn reader(&self) -> &DbPool {
        &self.reads
    }

    /// The hot reads parsed by column position (see [`direct`]).
    fn direct_reads(&self) -> Option<&Arc<DirectReads>> {
        match &self.reads {
            DbPool::Readers(readers) => Some(readers),
            DbPool::Writer(_) => None,
        }
    }

    async fn begin(&self) -> StoreResult<Tx> {
        self.writer.begin().await.map_err(map_err)
    }

    async fn run_write_job(&self, job: crate::WriteJob) -> StoreResult<()> {
        self.jobs.submit(job).await.map_err(map_err)
    }

    async fn run_migrations(&self) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(map_err)?;
        // Another process may be migrating the same file: wait for it as long as any write would.
        conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
        let outcome = migrate::run(&mut conn, &MIGRATOR);
        conn.busy_timeout(WRITER_BUSY_TIMEOUT).map_err(map_err)?;
        outcome
    }
}

/// The combiner of write jobs: each job runs on a [`store::BackendTx`] around the transaction the
/// combiner started for it.
fn write_jobs(
    writer: &writer::Writer,
    direct: Option<Arc<DirectReads>>,
) -> Arc<combiner::Combiner<crate::WriteJob>> {
    combiner::Combiner::new(
        writer.clone(),
        Box::new(move |job: crate::WriteJob, tx| {
            let direct = direct.clone();
            Box::pin(async move {
                let mut backend = store::BackendTx { tx, direct, pending_claim: None };
                let end = job(&mut backend).await;
                (backend.tx, end == crate::WriteEnd::Commit)
            })
        }),
    )
}

/// A cart inside a write transaction, parsed by column position as the direct reads do.
async fn read_cart_unlocked(conn: &mut Conn, cart_id: &str) -> StoreResult<Option<crate::model::Cart>> {
    direct::read_cart(conn, cart_id)
}

/// See `writer::Transaction::sees_only_committed_state`.
fn sees_only_committed_state(tx: &Tx) -> bool {
    tx.sees_only_committed_state()
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
fn database_path(url: &str) -> StoreResult<Option<PathBuf>> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Other(format!("bad sqlite URL {url:?}: must start with sqlite://")))?;
    let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" || options.split('&').any(|option| option == "mode=memory") {
        return Ok(None);
    }
    if path.is_empty() {
        return Err(StoreError::Other(format!("bad sqlite URL {url:?}: no file path")));
    }
    Ok(Some(PathBuf::from(path)))
}

/// The writer connection, creating the file if missing.
fn open_writer(path: Option<&PathBuf>) -> rusqlite::Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match path {
        Some(path) => Connection::open_with_flags(path, flags)?,
        None => Connection::open_in_memory_with_flags(flags)?,
    };
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Long enough for switching to WAL while another process has the file open; afterwards a wait
    // for the write lock happens in `BEGIN IMMEDIATE`, retried on an async timer (`writer.rs`).
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY;",
    )?;
    if path.is_some() {
        // Checkpoints run on their own thread (see [`checkpoint`]), not inside the writer's commits,
        // and the WAL file is cut back to a bounded size when it starts over; reads come from
        // memory-mapped pages.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA mmap_size = 268435456; PRAGMA journal_size_limit = {};",
            checkpoint::WAL_SIZE_LIMIT
        ))?;
    }
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Classifies a driver error; see [`StoreError`].
fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(e.to_string()),
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure => StoreError::Unavailable(e.to_string()),
            ErrorCode::ConstraintViolation => match failure.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound(e.to_string()),
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Conflict(e.to_string())
                }
                _ => StoreError::Other(e.to_string()),
            },
            _ => StoreError::Other(e.to_string()),
        },
        _ => StoreError::Other(e.to_string()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use kifly_core::limits::PlatformLimits;

    use super::{SqliteStore, database_path};
    use crate::Store;

    /// A migrated store on a file in a fresh directory, with the file's path; the directory lives
    /// as long as the returned guard.
    pub(in crate::sqlite) async fn migrated_file_store() -> (tempfile::TempDir, PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kifly.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("open");
        store.migrate().await.expect("migrate");
        (dir, path, store)
    }

    #[test]
    fn urls_name_a_file_or_memory() {
        assert_eq!(database_path("sqlite:///tmp/k.db").expect("path"), Some("/tmp/k.db".into()));
        assert_eq!(database_path("sqlite://data/k.db?mode=rwc").expect("path"), Some("data/k.db".into()));
        assert_eq!(database_path("sqlite::memory:").expect("memory"), None);
        assert_eq!(database_path("sqlite://k.db?mode=memory").expect("memory"), None);
        assert!(database_path("sqlite://").is_err());
        assert!(database_path("postgres://x").is_err());
    }

    /// The joined cart read (first statement of every cart change) walks an index in line order
    /// rather than sorting the lines (migration 0005).
    #[tokio::test]
    async fn the_cart_read_needs_no_sort() {
        let (_dir, path, _store) = migrated_file_store().await;
        let conn = rusqlite::Connection::open(&path).expect("open");
        let mut plan =
            conn.prepare(&format!("EXPLAIN QUERY PLAN {}", super::carts::CART_WITH_LINES_SQL)).expect("plan");
        let steps: Vec<String> = plan
            .query_map(["cart_x"], |row| row.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(steps.iter().any(|s| s.contains("cart_items_cart_order")), "{steps:?}");
        assert!(!steps.iter().any(|s| s.contains("TEMP B-TREE")), "{steps:?}");
    }

    /// The purge takes expired idempotency records from the oldest on and stops at the first newer
    /// one (migration 0006 dropped the `created_at` index): the delete is a rowid range, and a record
    /// out of time order waits for the records ahead of it.
    #[tokio::test]
    async fn the_idempotency_purge_takes_the_oldest_records_in_insertion_order() {
        let (_dir, path, store) = migrated_file_store().await;
        let conn = rusqlite::Connection::open(&path).expect("open");
        // (key, state, lease_expires_at, created_at), in insertion order.
        let records = [
            ("old-done", "done", 1_500, 1_000),
            ("old-running", "in_flight", 900_000, 1_100),
            ("old-abandoned", "in_flight", 1_500, 1_200),
            ("new-done", "done", 5_500, 5_000),
            ("behind-new", "done", 2_500, 2_000),
        ];
        for (key, state, lease, created) in records {
            conn.execute(
                "INSERT INTO idempotency_records (principal, method, path, idem_key, fingerprint, state, claim_token, lease_expires_at, status, response_body, created_at)
                 VALUES ('key_1', 'POST', '/p', ?1, 'fp', ?2, 'claim', ?3, 200, x'7b7d', ?4)",
                rusqlite::params![key, state, lease, created],
            )
            .expect("insert");
        }
        let left = || -> Vec<String> {
            let mut keys =
                conn.prepare("SELECT idem_key FROM idempotency_records ORDER BY rowid").expect("keys");
            keys.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
        };

        assert_eq!(store.purge_idempotency(3_000).await.expect("purge"), 2);
        assert_eq!(left(), ["old-running", "new-done", "behind-new"]);
        assert_eq!(store.purge_idempotency(6_000).await.expect("purge"), 2);
        assert_eq!(left(), ["old-running"]);

        let mut plan =
            conn.prepare(&format!("EXPLAIN QUERY PLAN {}", super::PURGE_IDEMPOTENCY_SQL)).expect("plan");
        let steps: Vec<String> =
            plan.query_map([0], |row| row.get(3)).expect("query").collect::<Result<_, _>>().expect("rows");
        assert!(steps.iter().any(|s| s.contains("USING INTEGER PRIMARY KEY (rowid<?)")), "{steps:?}");
        let indexes: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'idempotency_created'", [], |r| {
                r.get(0)
            })
            .expect("indexes");
        assert_eq!(indexes, 0);
    }

    /// An in-memory database has only its writer, which then also serves reads.
    #[tokio::test]
    async fn an_in_memory_database_reads_and_writes_on_its_one_connection() {
        let store = SqliteStore::open("sqlite::memory:").await.expect("open");
        store.migrate().await.expect("migrate");
        let limits = PlatformLimits { max_item_quantity: 7, max_cart_total_cents: 7_000 };
        store.set_limits(&limits, 1).await.expect("write");
        assert_eq!(store.get_limits().await.expect("read").max_item_quantity, 7);
        let tx = store.begin_write().await.expect("begin");
        tx.commit().await.expect("commit");
        store.ping().await.expect("ping");
    }
}
