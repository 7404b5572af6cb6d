//! The slice of sqlx's query API that the shared queries use (`query`, `query_scalar`, `bind`,
//! `execute`, `fetch_*`, `Row::try_get`, `QueryBuilder::push_values`), implemented over rusqlite on
//! the calling thread.
//!
//! Why not sqlx for SQLite: sqlx runs each SQLite connection on a thread of its own and passes every
//! statement and its rows over channels. A cart change is about ten statements, so under load most of
//! its CPU went to waking threads (profiled: over half the server's CPU in the scheduler), not to
//! SQLite. Here a statement runs where it is called: a point read or write on a page in SQLite's cache
//! takes a few microseconds, less than one thread wake-up, so it is not worth a trip to a blocking pool
//! either. The queries in `../queries/` compile unchanged against this module and against sqlx for
//! PostgreSQL (`postgres/sql.rs`), so there is still one copy of each query.
//!
//! Connections: one writer, held by a write transaction for its whole life behind an async mutex (so
//! writers queue without blocking threads, as they did in a one-connection pool), and the read-only
//! connections of [`DirectReads`] for everything else. The writer waits for another process's write
//! lock (a CLI command on the same file) by retrying on an async timer rather than in SQLite's
//! blocking busy handler, so it never parks an async worker thread for long.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, ToSql, Value, ValueRef};
use rusqlite::{Connection, ffi};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::direct::DirectReads;

pub(crate) type Error = rusqlite::Error;

/// How long a write waits for the writer connection (another write transaction) before giving up
/// with "busy", answered as 503.
const WRITER_WAIT: Duration = Duration::from_secs(10);
/// How long a write waits for another process's write lock on the file, in steps of [`BUSY_STEP`].
const LOCK_WAIT: Duration = Duration::from_secs(5);
const BUSY_STEP: Duration = Duration::from_millis(2);

/// SQL text built at run time; the caller vouches that no untrusted input went into it (sqlx's
/// marker of the same name).
pub(crate) struct AssertSqlSafe<T>(pub T);

/// SQL text for [`query`]: a literal, or text the caller asserted safe.
pub(crate) struct SqlText(Cow<'static, str>);

impl From<&'static str> for SqlText {
    fn from(sql: &'static str) -> SqlText {
        SqlText(Cow::Borrowed(sql))
    }
}

impl From<AssertSqlSafe<String>> for SqlText {
    fn from(sql: AssertSqlSafe<String>) -> SqlText {
        SqlText(Cow::Owned(sql.0))
    }
}

type Arg<'q> = Box<dyn ToSql + Send + Sync + 'q>;

/// A statement with its arguments; `$N` (and `?N`) placeholders take the N-th bound argument.
pub(crate) struct Query<'q> {
    sql: Cow<'static, str>,
    args: Vec<Arg<'q>>,
}

pub(crate) fn query<'q>(sql: impl Into<SqlText>) -> Query<'q> {
    Query { sql: sql.into().0, args: Vec::new() }
}

/// The outcome of [`Query::execute`].
pub(crate) struct QueryResult {
    rows_affected: u64,
}

impl QueryResult {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind<T: ToSql + Send + Sync + 'q>(mut self, value: T) -> Self {
        self.args.push(Box::new(value));
        self
    }

    pub(crate) async fn execute<'c>(self, on: impl Executor<'c>) -> Result<QueryResult, Error> {
        on.into()
            .run(|conn| {
                let mut statement = self.prepare(conn)?;
                if statement.column_count() == 0 {
                    return Ok(QueryResult { rows_affected: statement.raw_execute()? as u64 });
                }
                // A statement with results (a `SELECT`, or `RETURNING`) runs to its end, as in sqlx.
                let returning = !statement.readonly();
                let mut rows = statement.raw_query();
                while rows.next()?.is_some() {}
                Ok(QueryResult { rows_affected: if returning { conn.changes() } else { 0 } })
            })
            .await
    }

    pub(crate) async fn fetch_all<'c>(self, on: impl Executor<'c>) -> Result<Vec<SqliteRow>, Error> {
        on.into().run(|conn| self.rows(conn, usize::MAX)).await
    }

    pub(crate) async fn fetch_optional<'c>(self, on: impl Executor<'c>) -> Result<Option<SqliteRow>, Error> {
        on.into().run(|conn| Ok(self.rows(conn, 1)?.pop())).await
    }

    pub(crate) async fn fetch_one<'c>(self, on: impl Executor<'c>) -> Result<SqliteRow, Error> {
        self.fetch_optional(on).await?.ok_or(Error::QueryReturnedNoRows)
    }

    /// The cached prepared statement with every placeholder bound.
    fn prepare<'c>(&self, conn: &'c Connection) -> Result<rusqlite::CachedStatement<'c>, Error> {
        let mut statement = conn.prepare_cached(&self.sql)?;
        for index in 1..=statement.parameter_count() {
            // SQLite numbers `$N` placeholders in order of appearance; bind by the N in the name, as
            // PostgreSQL does, so a statement may use them in any order.
            let position = statement
                .parameter_name(index)
                .and_then(|name| name.get(1..))
                .and_then(|digits| digits.parse::<usize>().ok())
                .unwrap_or(index);
            let arg = self
                .args
                .get(position.wrapping_sub(1))
                .ok_or(Error::InvalidParameterCount(position, self.args.len()))?;
            statement.raw_bind_parameter(index, arg)?;
        }
        Ok(statement)
    }

    /// Up to `limit` rows, each copied out of SQLite.
    fn rows(&self, conn: &Connection, limit: usize) -> Result<Vec<SqliteRow>, Error> {
        let mut statement = self.prepare(conn)?;
        let columns: Arc<[String]> = statement.column_names().into_iter().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows.next()?
        {
            let values = (0..width).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?;
            out.push(SqliteRow { columns: Arc::clone(&columns), values });
        }
        Ok(out)
    }
}

/// `query_scalar`: the first column of each row, decoded as `T`.
pub(crate) struct QueryScalar<'q, T> {
    query: Query<'q>,
    output: PhantomData<fn() -> T>,
}

pub(crate) fn query_scalar<'q, T: FromSql>(sql: impl Into<SqlText>) -> QueryScalar<'q, T> {
    QueryScalar { query: query(sql), output: PhantomData }
}

impl<'q, T: FromSql> QueryScalar<'q, T> {
    pub(crate) fn bind<A: ToSql + Send + Sync + 'q>(self, value: A) -> Self {
        QueryScalar { query: self.query.bind(value), output: PhantomData }
    }

    pub(crate) async fn fetch_one<'c>(self, on: impl Executor<'c>) -> Result<T, Error> {
        self.query.fetch_one(on).await?.try_get(0)
    }

    pub(crate) async fn fetch_optional<'c>(self, on: impl Executor<'c>) -> Result<Option<T>, Error> {
        self.query.fetch_optional(on).await?.map(|row| row.try_get(0)).transpose()
    }

    pub(crate) async fn fetch_all<'c>(self, on: impl Executor<'c>) -> Result<Vec<T>, Error> {
        self.query.fetch_all(on).await?.iter().map(|row| row.try_get(0)).collect()
    }
}

/// One result row, copied out of SQLite.
#[derive(Debug)]
pub(crate) struct SqliteRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// A column by position or by name.
pub(crate) trait ColumnIndex {
    fn position(&self, row: &SqliteRow) -> Result<usize, Error>;
}

impl ColumnIndex for usize {
    fn position(&self, row: &SqliteRow) -> Result<usize, Error> {
        if *self < row.values.len() { Ok(*self) } else { Err(Error::InvalidColumnIndex(*self)) }
    }
}

impl ColumnIndex for &str {
    fn position(&self, row: &SqliteRow) -> Result<usize, Error> {
        row.columns.iter().position(|c| c == self).ok_or_else(|| Error::InvalidColumnName((*self).to_owned()))
    }
}

/// sqlx's `Row::try_get`, so shared code reads columns the same way on both backends.
pub(crate) trait Row {
    fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, Error>;
}

impl Row for SqliteRow {
    fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, Error> {
        let i = index.position(self)?;
        let value = ValueRef::from(&self.values[i]);
        T::column_result(value).map_err(|e| match e {
            FromSqlError::InvalidType => {
                Error::InvalidColumnType(i, self.columns[i].clone(), value.data_type())
            }
            FromSqlError::OutOfRange(n) => Error::IntegralValueOutOfRange(i, n),
            other => Error::FromSqlConversionFailure(i, value.data_type(), Box::new(other)),
        })
    }
}

/// sqlx's `QueryBuilder`, as far as a multi-row `INSERT … VALUES` needs it.
pub(crate) struct QueryBuilder<'q> {
    sql: String,
    args: Vec<Arg<'q>>,
}

impl<'q> QueryBuilder<'q> {
    pub(crate) fn new(prefix: &str) -> Self {
        QueryBuilder { sql: prefix.to_owned(), args: Vec::new() }
    }

    /// Appends `VALUES (…), (…)`: one tuple per item, filled by `push_tuple`.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut push_tuple: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'q>, I::Item),
    {
        self.sql.push_str("VALUES ");
        for (n, item) in items.into_iter().enumerate() {
            self.sql.push_str(if n == 0 { "(" } else { ", (" });
            push_tuple(Separated { builder: self, first: true }, item);
            self.sql.push(')');
        }
        self
    }

    pub(crate) fn build(&mut self) -> Query<'q> {
        Query { sql: Cow::Owned(std::mem::take(&mut self.sql)), args: std::mem::take(&mut self.args) }
    }
}

/// One tuple of [`QueryBuilder::push_values`].
pub(crate) struct Separated<'b, 'q> {
    builder: &'b mut QueryBuilder<'q>,
    first: bool,
}

impl<'q> Separated<'_, 'q> {
    pub(crate) fn push_bind<T: ToSql + Send + Sync + 'q>(&mut self, value: T) -> &mut Self {
        if !self.first {
            self.builder.sql.push_str(", ");
        }
        self.first = false;
        self.builder.args.push(Box::new(value));
        self.builder.sql.push_str(&format!("?{}", self.builder.args.len()));
        self
    }
}

/// Where a statement runs: on a connection the caller holds (a transaction's), or on one taken from
/// a pool for the statement.
pub(crate) enum Target<'c> {
    Connection(&'c mut Connection),
    Pool(&'c Pool),
}

impl<'c> From<&'c mut Connection> for Target<'c> {
    fn from(conn: &'c mut Connection) -> Self {
        Target::Connection(conn)
    }
}

impl<'c> From<&'c Pool> for Target<'c> {
    fn from(pool: &'c Pool) -> Self {
        Target::Pool(pool)
    }
}

/// Anything a statement can run on (sqlx's `Executor`).
pub(crate) trait Executor<'c>: Into<Target<'c>> + Send {}

impl<'c, T: Into<Target<'c>> + Send> Executor<'c> for T {}

impl Target<'_> {
    async fn run<R>(self, statement: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        match self {
            Target::Connection(conn) => statement(conn),
            Target::Pool(pool) => pool.run(statement).await,
        }
    }
}

/// The single writer connection; see the module docs.
pub(crate) struct Writer {
    conn: Arc<Mutex<Connection>>,
}

impl Writer {
    /// `conn` must have a busy timeout of (nearly) zero: waits for the file lock happen in
    /// [`retry_busy`].
    pub(crate) fn new(conn: Connection) -> Writer {
        Writer { conn: Arc::new(Mutex::new(conn)) }
    }

    /// The lock on the writer connection: whoever holds it keeps every write out.
    pub(crate) fn lock(&self) -> Arc<Mutex<Connection>> {
        Arc::clone(&self.conn)
    }

    /// The writer connection itself, outside any transaction of ours.
    pub(crate) async fn acquire(&self) -> Result<OwnedMutexGuard<Connection>, Error> {
        tokio::time::timeout(WRITER_WAIT, Arc::clone(&self.conn).lock_owned())
            .await
            .map_err(|_| busy("timed out waiting for the database writer"))
    }

    /// `BEGIN IMMEDIATE`: takes the database's write lock now, so the transaction never fails halfway
    /// because another connection wrote first.
    pub(crate) async fn begin(&self) -> Result<Transaction, Error> {
        let mut conn = self.acquire().await?;
        let writer: &mut Connection = &mut conn;
        retry_busy(move || writer.execute_batch("BEGIN IMMEDIATE")).await?;
        Ok(Transaction { conn: Some(conn) })
    }
}

/// A write transaction on the [`Writer`]: committed by [`Transaction::commit`], rolled back when
/// dropped without it (an error, a cancelled request or a panic).
pub(crate) struct Transaction {
    conn: Option<OwnedMutexGuard<Connection>>,
}

impl Transaction {
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.take() else { return Ok(()) };
        let committed = conn.execute_batch("COMMIT");
        if committed.is_err() && !conn.is_autocommit() {
            // Never hand the writer on with a transaction still open.
            let _ = conn.execute_batch("ROLLBACK");
        }
        committed
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "sqlite: rollback failed");
        }
    }
}

impl Deref for Transaction {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("a transaction holds its connection until it ends")
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("a transaction holds its connection until it ends")
    }
}

/// Connections for statements that run on their own (sqlx's `Pool`): the writer for writes, the
/// read-only connections for reads. An in-memory database has only its writer, which then also reads.
#[derive(Clone)]
pub(crate) enum Pool {
    Writer(Arc<Writer>),
    Readers(Arc<DirectReads>),
}

impl Pool {
    async fn run<R>(&self, statement: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        match self {
            // A transaction of its own, so waiting for the file's write lock happens in `begin`,
            // before the statement runs, and never inside SQLite's blocking busy handler.
            Pool::Writer(writer) => {
                let tx = writer.begin().await?;
                let result = statement(&tx)?;
                tx.commit().await?;
                Ok(result)
            }
            Pool::Readers(readers) => readers.with_connection(statement),
        }
    }
}

/// Runs `attempt` until it stops failing with `SQLITE_BUSY` (another process holds the write lock),
/// for at most [`LOCK_WAIT`]. Only for statements that change nothing when they fail busy.
async fn retry_busy<R>(mut attempt: impl FnMut() -> Result<R, Error>) -> Result<R, Error> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match attempt() {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(BUSY_STEP).await;
            }
            result => return result,
        }
    }
}

fn is_busy(e: &Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy))
}

/// A `SQLITE_BUSY` error with our own message (classified as "unavailable", answered 503).
fn busy(message: &str) -> Error {
    Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY), Some(message.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::super::SqliteStore;
    use super::{Error, Row, query};
    use crate::Store;

    #[tokio::test]
    async fn placeholders_take_the_argument_their_number_names_in_any_order() {
        let mut conn = Connection::open_in_memory().expect("open");
        let row = query("SELECT $2 AS two, $1 AS one, $2 AS two_again")
            .bind("first")
            .bind(2_i64)
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(row.try_get::<i64, _>("two").expect("two"), 2);
        assert_eq!(row.try_get::<String, _>("one").expect("one"), "first");
        assert_eq!(row.try_get::<i64, _>(2).expect("by position"), 2);
        assert!(matches!(row.try_get::<i64, _>("one"), Err(Error::InvalidColumnType(1, _, _))));
        assert!(matches!(row.try_get::<i64, _>("three"), Err(Error::InvalidColumnName(_))));
        let missing = query("SELECT $3").bind(1_i64).fetch_one(&mut conn).await;
        assert!(matches!(missing, Err(Error::InvalidParameterCount(3, 1))), "{missing:?}");
    }

    #[tokio::test]
    async fn execute_counts_changed_rows_and_runs_statements_with_results_to_the_end() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3);").expect("setup");
        let updated = query("UPDATE t SET n = n + 10 WHERE n >= $1").bind(2_i64).execute(&mut conn).await;
        assert_eq!(updated.expect("update").rows_affected(), 2);
        let returning = query("DELETE FROM t WHERE n > $1 RETURNING n").bind(5_i64).execute(&mut conn).await;
        assert_eq!(returning.expect("delete returning").rows_affected(), 2);
        assert_eq!(query("SELECT n FROM t").execute(&mut conn).await.expect("select").rows_affected(), 0);
        let left = query("SELECT n FROM t").fetch_all(&mut conn).await.expect("rows");
        assert_eq!(left.iter().map(|r| r.try_get::<i64, _>(0).expect("n")).collect::<Vec<_>>(), [1]);
    }

    /// Another process (here: a thread with its own connection) holds the file's write lock for a
    /// while: a write transaction waits for it on the async timer, so the runtime's only thread keeps
    /// running other tasks meanwhile, and then proceeds.
    #[tokio::test]
    async fn a_write_waits_for_another_writer_without_blocking_the_runtime() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kifly.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("open");
        store.migrate().await.expect("migrate");

        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let other = Connection::open(&path).expect("open other");
            other.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
            locked_tx.send(()).expect("signal");
            std::thread::sleep(Duration::from_millis(400));
            other.execute_batch("COMMIT").expect("release");
        });
        locked_rx.recv().expect("lock taken");

        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        let tx = store.begin_write().await.expect("begin after the other writer commits");
        let waited = started.elapsed();
        ticker.abort();
        holder.join().expect("holder thread");
        assert!(waited >= Duration::from_millis(300), "began while the lock was held ({waited:?})");
        // A blocking wait would have starved the ticker (same single-threaded runtime).
        assert!(ticks.load(Ordering::Relaxed) >= 10, "the runtime was blocked while waiting");
        tx.commit().await.expect("commit");
    }

    /// While one transaction is open, a second one waits for it rather than failing, and runs as soon
    /// as the first ends.
    #[tokio::test]
    async fn write_transactions_queue_for_the_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&format!("sqlite://{}/kifly.db", dir.path().display())).await.expect("open");
        store.migrate().await.expect("migrate");
        let first = store.begin_write().await.expect("first");
        let second = tokio::time::timeout(Duration::from_millis(100), store.begin_write()).await;
        assert!(second.is_err(), "a second transaction began while the first was open");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), store.begin_write()).await;
        assert!(matches!(second, Ok(Ok(_))), "the second transaction did not begin after the first ended");
    }
}
