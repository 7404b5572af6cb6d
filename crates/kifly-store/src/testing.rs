//! Helpers for tests that need a real database of their own (the conformance suite and the server's
//! integration tests): a throw-away PostgreSQL database per test, dropped when the guard goes.

use sqlx::Connection;

use crate::{StoreError, StoreResult};

/// A database created for one test on the server named by a base URL, dropped (with its open
/// connections) when this guard is dropped.
pub struct TempPostgres {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

/// Replaces the database name (the last path segment) of a `postgres://` URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl TempPostgres {
    /// Creates `kifly_test_<random>` on the server of `base_url` (e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`).
    pub async fn create(base_url: &str) -> StoreResult<TempPostgres> {
        let name = format!("kifly_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut admin = sqlx::PgConnection::connect(base_url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach PostgreSQL for tests: {e}")))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| StoreError::Other(format!("cannot create test database: {e}")))?;
        let _ = admin.close().await;
        Ok(TempPostgres { url: with_database(base_url, &name), admin_url: base_url.to_string(), name })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async code; use a private runtime on its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
