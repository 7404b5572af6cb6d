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
//! Connections: the single [`Writer`] (`writer.rs`: transactions, group commit) and the read-only
//! connections of [`DirectReads`] for everything else.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::{FromSql, FromSqlError, ToSql, Value, ValueRef};

use super::direct::DirectReads;
use super::writer::Writer;

pub(crate) type Error = rusqlite::Error;

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
    /// Built by [`QueryBuilder`]: `?N` placeholders only, bound in order.
    built: bool,
    /// Kept in the connection's statement cache (sqlx's `persistent`): literal statements are, built
    /// ones only when asked (one shape per batch size would push the hot statements out).
    persistent: bool,
}

pub(crate) fn query<'q>(sql: impl Into<SqlText>) -> Query<'q> {
    Query { sql: sql.into().0, args: Vec::new(), built: false, persistent: true }
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

    /// Whether the prepared statement is cached for the next run of the same text (as in sqlx).
    pub(crate) fn persistent(mut self, value: bool) -> Self {
        self.persistent = value;
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

    /// The prepared statement with every placeholder bound.
    fn prepare<'c>(&self, conn: &'c Connection) -> Result<Prepared<'c>, Error> {
        let mut statement = if self.persistent {
            Prepared::Cached(conn.prepare_cached(&self.sql)?)
        } else {
            Prepared::Fresh(conn.prepare(&self.sql)?)
        };
        for index in 1..=statement.parameter_count() {
            // SQLite numbers `$N` placeholders in order of appearance; bind by the N in the name, as
            // PostgreSQL does, so a statement may use them in any order. `?N` is numbered N by
            // SQLite itself, and looking names up costs time linear in the placeholder count, which
            // adds up for a batch insert's hundreds.
            let position = if self.built {
                index
            } else {
                statement
                    .parameter_name(index)
                    .and_then(|name| name.get(1..))
                    .and_then(|digits| digits.parse::<usize>().ok())
                    .unwrap_or(index)
            };
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
        let literal = match self.sql {
            Cow::Borrowed(text) => Some(text),
            Cow::Owned(_) => None,
        };
        let columns = column_names(literal, &statement);
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

/// Column names by the address and length of a statement's literal text.
type ColumnNamesByText = HashMap<(usize, usize), Arc<[String]>>;

thread_local! {
    /// The column names of literal statements, by the address and length of their text. Reading
    /// them from SQLite costs an allocation and a UTF-8 check per column on every run, and a
    /// literal's names are fixed by its text: no query selects `*`.
    static COLUMN_NAMES: RefCell<ColumnNamesByText> = RefCell::new(HashMap::new());
}

/// The names of `statement`'s result columns, in order; `literal` is its text if that is a literal.
fn column_names(literal: Option<&'static str>, statement: &rusqlite::Statement<'_>) -> Arc<[String]> {
    let read = || statement.column_names().into_iter().map(str::to_owned).collect::<Arc<[String]>>();
    let Some(text) = literal else { return read() };
    let key = (text.as_ptr() as usize, text.len());
    COLUMN_NAMES.with_borrow_mut(|names| {
        let columns = names.entry(key).or_insert_with(read);
        if columns.len() != statement.column_count() {
            // Cannot happen for a literal without `*`; if one ever selects `*`, stay right.
            *columns = read();
        }
        Arc::clone(columns)
    })
}

/// A statement from the cache, or prepared for one use.
enum Prepared<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Fresh(rusqlite::Statement<'c>),
}

impl<'c> Deref for Prepared<'c> {
    type Target = rusqlite::Statement<'c>;

    fn deref(&self) -> &Self::Target {
        match self {
            Prepared::Cached(statement) => statement,
            Prepared::Fresh(statement) => statement,
        }
    }
}

impl DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Prepared::Cached(statement) => statement,
            Prepared::Fresh(statement) => statement,
        }
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
        Query {
            sql: Cow::Owned(std::mem::take(&mut self.sql)),
            args: std::mem::take(&mut self.args),
            built: true,
            persistent: false,
        }
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
        let position = self.builder.args.len();
        // Writing to a `String` cannot fail.
        let _ = write!(self.builder.sql, "?{position}");
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

/// Connections for statements that run on their own (sqlx's `Pool`): the writer for writes, the
/// read-only connections for reads. An in-memory database has only its writer, which then also reads.
#[derive(Clone)]
pub(crate) enum Pool {
    Writer(Writer),
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

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{Error, Row, query};

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
}
