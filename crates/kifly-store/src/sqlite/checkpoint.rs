//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside whichever commit pushes the WAL past 1,000 pages: that commit
//! copies pages into the database file and fsyncs it, and every write queued behind the single writer
//! connection waits meanwhile (it showed as the tail of the write latency under load). The writer
//! therefore runs with `wal_autocheckpoint = 0`, and a thread of the store's own runs a `PASSIVE`
//! checkpoint every [`EVERY`] on a separate connection: passive checkpoints never block readers or the
//! writer, they copy what they can. A short-lived process (a CLI command) may exit before its thread
//! runs; SQLite then checkpoints when the process's last connection closes, as it always does.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

const EVERY: Duration = Duration::from_secs(1);

/// Keeps the checkpoint thread running; when it is dropped (with its store) the thread ends within
/// [`EVERY`].
pub(super) struct Checkpointer {
    _alive: Arc<()>,
}

impl Checkpointer {
    pub(super) fn start(path: PathBuf) -> std::io::Result<Checkpointer> {
        let alive = Arc::new(());
        let watch = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("kifly-sqlite-checkpoint".into())
            .spawn(move || run(&path, &watch))?;
        Ok(Checkpointer { _alive: alive })
    }
}

fn run(path: &PathBuf, alive: &Weak<()>) {
    let mut conn: Option<Connection> = None;
    loop {
        std::thread::sleep(EVERY);
        if alive.upgrade().is_none() {
            return;
        }
        if conn.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            match Connection::open_with_flags(path, flags) {
                Ok(opened) => conn = Some(opened),
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite: cannot open a connection for WAL checkpoints");
                    continue;
                }
            }
        }
        if let Some(c) = &conn
            && let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "sqlite: WAL checkpoint failed; retrying on a new connection");
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use kifly_core::limits::PlatformLimits;

    use super::super::SqliteStore;
    use super::EVERY;
    use crate::Store;

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_and_then_reused_from_its_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&format!("sqlite://{}/kifly.db", dir.path().display())).await.expect("open");
        store.migrate().await.expect("migrate");
        let wal = dir.path().join("kifly.db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let write_fifty = || async {
            for i in 0..50 {
                let limits = PlatformLimits { max_item_quantity: 10 + i, max_cart_total_cents: 100_000 };
                store.set_limits(&limits, i).await.expect("write");
            }
        };

        write_fifty().await;
        // The writer never checkpoints itself (wal_autocheckpoint = 0): only the background thread can.
        tokio::time::sleep(EVERY * 5 / 2).await;
        let after_first = wal_len();
        assert!(after_first > 0);
        write_fifty().await;
        // Fully checkpointed, so the writer started over at the beginning of the WAL instead of growing
        // it; without the background checkpoint the file would have grown by another fifty commits.
        assert_eq!(wal_len(), after_first);
    }
}
