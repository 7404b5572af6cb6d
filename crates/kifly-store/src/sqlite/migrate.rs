//! Applies the SQLite migrations on the writer connection.
//!
//! The migration files are embedded by sqlx's `migrate!` (as for PostgreSQL), but the SQLite backend
//! does not use sqlx's driver (see `sql.rs`), so they are applied here, with sqlx's bookkeeping: the
//! same `_sqlx_migrations` table, checksums and checks, so databases migrated by earlier versions
//! (through sqlx) carry on unchanged. Each migration runs in one `BEGIN IMMEDIATE` transaction that
//! first re-checks whether it is applied, so two processes migrating one file at once apply it once.

use std::collections::BTreeMap;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sqlx::migrate::Migrator;

use crate::{StoreError, StoreResult};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

pub(super) fn run(conn: &mut Connection, migrator: &Migrator) -> StoreResult<()> {
    conn.execute_batch(CREATE_TABLE).map_err(failed)?;
    let applied = applied(conn).map_err(failed)?;
    if let Some((version, _)) = applied.iter().find(|(_, success)| !**success) {
        return Err(StoreError::Other(format!(
            "migration failed: migration {version} is partially applied; fix and remove it from _sqlx_migrations"
        )));
    }
    if let Some(version) = applied.keys().find(|v| !migrator.iter().any(|m| m.version == **v)) {
        return Err(StoreError::Other(format!(
            "migration failed: the database has migration {version}, which this kifly does not know (a newer version migrated it)"
        )));
    }
    for migration in migrator.iter().filter(|m| !m.migration_type.is_down_migration()) {
        if migration.no_tx {
            // Each migration is applied and recorded in one transaction; see the module docs.
            return Err(StoreError::Other(format!(
                "migration failed: migration {} asks to run outside a transaction, which Kifly's SQLite migrations do not support",
                migration.version
            )));
        }
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
        let checksum: Option<Vec<u8>> = tx
            .query_row("SELECT checksum FROM _sqlx_migrations WHERE version = ?1", [migration.version], |r| {
                r.get(0)
            })
            .optional()
            .map_err(failed)?;
        match checksum {
            Some(checksum) if checksum == *migration.checksum => continue,
            Some(_) => {
                return Err(StoreError::Other(format!(
                    "migration failed: migration {} was applied but has been modified since",
                    migration.version
                )));
            }
            None => {}
        }
        tx.execute_batch(migration.sql.as_str()).map_err(failed)?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![
                migration.version,
                migration.description.as_ref(),
                migration.checksum.as_ref(),
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// Applied versions with their success flag.
fn applied(conn: &Connection) -> rusqlite::Result<BTreeMap<i64, bool>> {
    let mut statement = conn.prepare("SELECT version, success FROM _sqlx_migrations ORDER BY version")?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Other(format!("migration failed: {e}"))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use sqlx::migrate::Migrator;

    use super::super::tests::migrated_file_store;
    use super::super::{MIGRATOR, SqliteStore};
    use crate::{AuditEntry, Store, StoreError};

    async fn migrated() -> (tempfile::TempDir, SqliteStore, Connection) {
        let (dir, path, store) = migrated_file_store().await;
        let conn = Connection::open(&path).expect("open raw");
        (dir, store, conn)
    }

    fn migration_error(result: Result<(), StoreError>) -> String {
        match result {
            Err(StoreError::Other(message)) => message,
            other => panic!("expected a migration error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stores_opening_one_file_at_once_apply_each_migration_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/kifly.db", dir.path().display());
        let (a, b) = tokio::join!(SqliteStore::open(&url), SqliteStore::open(&url));
        let (a, b) = (a.expect("open a"), b.expect("open b"));
        let (ran_a, ran_b) = tokio::join!(a.migrate(), b.migrate());
        ran_a.expect("migrate a");
        ran_b.expect("migrate b");
        let conn = Connection::open(dir.path().join("kifly.db")).expect("open raw");
        let applied: i64 = conn
            .query_row("SELECT COUNT(*) FROM _sqlx_migrations WHERE success", [], |r| r.get(0))
            .expect("count");
        assert_eq!(applied, MIGRATOR.iter().count() as i64);
    }

    #[tokio::test]
    async fn a_changed_applied_migration_is_refused() {
        let (_dir, store, conn) = migrated().await;
        conn.execute("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1", []).expect("tamper");
        let message = migration_error(store.migrate().await);
        assert!(message.contains("migration 1 was applied but has been modified"), "{message}");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_kifly_or_a_failed_migration_is_refused() {
        let (_dir, store, conn) = migrated().await;
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', TRUE, x'00', 0)",
            [],
        )
        .expect("future migration");
        let message = migration_error(store.migrate().await);
        assert!(message.contains("migration 9999") && message.contains("newer"), "{message}");

        conn.execute("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 9999", []).expect("dirty");
        let message = migration_error(store.migrate().await);
        assert!(message.contains("9999 is partially applied"), "{message}");
    }

    #[tokio::test]
    async fn an_older_database_keeps_its_audit_rows_in_order_through_both_relayouts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kifly.db");
        let mut conn = Connection::open(&path).expect("open raw");
        let before_clustering =
            Migrator::with_migrations(MIGRATOR.iter().filter(|m| m.version < 4).cloned().collect());
        super::run(&mut conn, &before_clustering).expect("migrate to 3");
        // Inserted out of time order: the clustered layout (0004) sorts them, and the appended one
        // (0007) keeps that order.
        conn.execute_batch(
            "INSERT INTO audit_log (id, api_key_id, action, resource_id, metadata, created_at) VALUES
                ('aud_b', 'key_1', 'cart.item_add', 'cart_1', '{\"q\":1}', 20),
                ('aud_a', 'key_1', 'cart.get', 'cart_1', NULL, 10);",
        )
        .expect("older rows");

        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("open");
        store.migrate().await.expect("migrate");
        let entry = |id: &str, action: &str, metadata: Option<&str>, created_at| AuditEntry {
            id: id.into(),
            api_key_id: "key_1".into(),
            action: action.into(),
            resource_id: Some("cart_1".into()),
            metadata: metadata.map(Into::into),
            created_at,
        };
        assert_eq!(
            store.recent_audit(10).await.expect("read"),
            [entry("aud_b", "cart.item_add", Some("{\"q\":1}"), 20), entry("aud_a", "cart.get", None, 10)]
        );
        // Rows written after the migration come first.
        store.insert_audit_batch(&[entry("aud_c", "cart.get", None, 5)]).await.expect("append");
        let ids: Vec<String> =
            store.recent_audit(10).await.expect("read").into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["aud_c", "aud_b", "aud_a"]);
        // One B-tree, keyed by the insertion sequence: no secondary index.
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'",
                [],
                |r| r.get(0),
            )
            .expect("indexes");
        assert_eq!(indexes, 0);
        let seq: Vec<i64> = conn
            .prepare("SELECT seq FROM audit_log ORDER BY seq")
            .expect("seq")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(seq, [1, 2, 3]);
    }
}
