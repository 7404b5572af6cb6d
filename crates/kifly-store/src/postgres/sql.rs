//! The query API the shared queries (`../queries/`) are written against: for PostgreSQL, sqlx
//! itself. The SQLite backend implements the same names over rusqlite (`sqlite/sql.rs`).

pub(crate) use sqlx::{AssertSqlSafe, Row, query, query_scalar};

pub(crate) type QueryBuilder = sqlx::QueryBuilder<sqlx::Postgres>;

/// Anything a statement can run on: the pool, a connection or a transaction.
pub(crate) trait Executor<'c>: sqlx::Executor<'c, Database = sqlx::Postgres> {}

impl<'c, T: sqlx::Executor<'c, Database = sqlx::Postgres>> Executor<'c> for T {}
