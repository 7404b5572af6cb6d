//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside whichever commit pushes the WAL past 1,000 pages: that commit
//! copies pages into the database file and fsyncs it, and every write queued behind the single writer
//! connection waits meanwhile (it showed as the tail of the write latency under load). The writer
//! therefore runs with `wal_autocheckpoint = 0`, and a thread of the store's own checkpoints every
//! [`EVERY`] while writes come in ([`IDLE_EVERY`] otherwise) on a separate connection, in two passes:
//!
//! 1. `PASSIVE`, while writes go on: it copies every committed page into the database file without
//!    blocking readers or the writer. This is the bulk of the work.
//! 2. If the WAL then holds more than [`RESTART_AT`] frames not all copied, `RESTART` while holding
//!    the writer connection's lock, so no write runs meanwhile: it copies the few pages committed
//!    since pass 1 and has the next write start over at the beginning of the WAL. It waits at most
//!    [`READER_WAIT`] for readers still in the WAL, and after such a wait pass 2 rests for
//!    [`AFTER_BUSY`].
//!
//! Pass 2 is what keeps the WAL bounded under sustained writes: a passive checkpoint alone never
//! catches up with a writer that commits continuously, and SQLite only reuses the WAL from its start
//! once everything in it is checkpointed, so it grew without limit (3 GB in a 10 s write benchmark),
//! and every page lookup got slower with it. A short-lived process (a CLI command) may exit before its
//! thread runs; SQLite then checkpoints when the process's last connection closes, as it always does.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Mutex;

use super::writer::WriterState;

/// While writes come in. Short, so pass 2 has little to copy while it holds the writer (measured:
/// 20 ms instead of 100 ms gave 10 % more cart writes per second and a lower p99).
const EVERY: Duration = Duration::from_millis(20);
/// While the WAL holds nothing left to checkpoint.
const IDLE_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages) above which pass 2 runs: 16 MiB of 4 KiB pages.
const RESTART_AT: i64 = 4096;
/// The WAL file's size limit (SQLite's `journal_size_limit`, set on the writer): when the writer
/// starts the WAL over after pass 2, SQLite cuts the file back to this. A cycle normally ends at
/// [`RESTART_AT`] frames plus what comes in while pass 1 runs (about 1.5 times that under a
/// saturating write load); a longer one (a slow disk, a large import) leaves the file longer, and
/// without the limit that tail stays, unused for long stretches.
/// Writes into it are partial writes of 4 KiB blocks (a frame is 24 bytes plus a page), so a block
/// the kernel evicted meanwhile must be read back before the write, in the middle of a commit (one
/// such read held the writer 73 ms on a busy disk; `docs/decisions.md`). Past the cut, the file
/// grows again with fresh blocks, which need no read.
pub(super) const WAL_SIZE_LIMIT: i64 = 2 * RESTART_AT * WAL_FRAME_BYTES;
/// One WAL frame: a 24-byte header and a 4 KiB page.
const WAL_FRAME_BYTES: i64 = 24 + 4096;
/// How long pass 2 waits for readers still reading from the WAL (they take microseconds).
const READER_WAIT: Duration = Duration::from_millis(5);
/// How long pass 2 is skipped after a reader kept it from finishing (a long read: a backup, a
/// shell), so the writer is not held up again and again meanwhile.
const AFTER_BUSY: Duration = Duration::from_secs(1);

/// Keeps the checkpoint thread running; when it is dropped (with its store) the thread ends within
/// [`IDLE_EVERY`].
pub(super) struct Checkpointer {
    _alive: Arc<()>,
}

impl Checkpointer {
    /// `writer` is the writer connection's lock: holding it keeps every write out.
    pub(super) fn start(path: PathBuf, writer: Arc<Mutex<WriterState>>) -> std::io::Result<Checkpointer> {
        let alive = Arc::new(());
        let watch = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("kifly-sqlite-checkpoint".into())
            .spawn(move || run(&path, &writer, &watch))?;
        Ok(Checkpointer { _alive: alive })
    }
}

fn run(path: &PathBuf, writer: &Mutex<WriterState>, alive: &Weak<()>) {
    let mut conn: Option<Connection> = None;
    let mut pause = EVERY;
    let mut skip_pass_two_until = Instant::now();
    let mut last_frames = 0;
    loop {
        std::thread::sleep(pause);
        if alive.upgrade().is_none() {
            return;
        }
        if conn.is_none() {
            match open(path) {
                Ok(opened) => conn = Some(opened),
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite: cannot open a connection for WAL checkpoints");
                    continue;
                }
            }
        }
        let Some(c) = &conn else { continue };
        match checkpoint(c, writer, &mut last_frames, Instant::now() >= skip_pass_two_until) {
            Ok(Pass { pending, readers_in_the_way }) => {
                pause = if pending { EVERY } else { IDLE_EVERY };
                if readers_in_the_way {
                    skip_pass_two_until = Instant::now() + AFTER_BUSY;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sqlite: WAL checkpoint failed; retrying on a new connection");
                conn = None;
            }
        }
    }
}

/// What a checkpoint found.
struct Pass {
    /// The WAL held frames not yet copied into the database file.
    pending: bool,
    /// Pass 2 could not finish because of readers.
    readers_in_the_way: bool,
}

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(READER_WAIT)?;
    Ok(conn)
}

/// `last_frames`: the WAL's size at the previous pass, to tell whether anything was written since.
fn checkpoint(
    conn: &Connection,
    writer: &Mutex<WriterState>,
    last_frames: &mut i64,
    pass_two: bool,
) -> rusqlite::Result<Pass> {
    let first = wal_checkpoint(conn, "PASSIVE")?;
    // Pass 1 copies what was committed when it started; a writer that kept committing meanwhile
    // left more behind it. Nothing new and all copied: the next write starts the WAL over by itself.
    let written = first.frames != *last_frames;
    *last_frames = first.frames;
    let mut pass = Pass { pending: written || first.checkpointed < first.frames, readers_in_the_way: false };
    if pass_two && pass.pending && first.frames > RESTART_AT {
        // A plain thread, not an async worker: waiting here for the current write to finish is fine.
        let mut no_writes = writer.blocking_lock();
        if let Err(e) = no_writes.commit_batch() {
            tracing::warn!(error = %e, "sqlite: committing a batch before a checkpoint failed");
        }
        pass.readers_in_the_way = wal_checkpoint(conn, "RESTART")?.busy;
    }
    Ok(pass)
}

/// What `PRAGMA wal_checkpoint` reports.
struct Checkpoint {
    /// Readers (or a writer) kept it from finishing; not an error.
    busy: bool,
    /// Frames in the WAL, before any restart.
    frames: i64,
    /// Frames copied into the database file.
    checkpointed: i64,
}

fn wal_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Checkpoint> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Checkpoint { busy: row.get(0)?, frames: row.get(1)?, checkpointed: row.get(2)? })
    })
}

#[cfg(test)]
mod tests {
    use kifly_core::limits::PlatformLimits;

    use super::super::tests::migrated_file_store;
    use super::{EVERY, IDLE_EVERY, RESTART_AT, WAL_FRAME_BYTES, WAL_SIZE_LIMIT};
    use crate::Store;

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_and_then_reused_from_its_start() {
        let (_dir, path, store) = migrated_file_store().await;
        let wal = path.with_extension("db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let write_fifty = || async {
            for i in 0..50 {
                let limits = PlatformLimits { max_item_quantity: 10 + i, max_cart_total_cents: 100_000 };
                store.set_limits(&limits, i).await.expect("write");
            }
        };

        write_fifty().await;
        // The writer never checkpoints itself (wal_autocheckpoint = 0): only the background thread can.
        tokio::time::sleep(IDLE_EVERY * 2 + EVERY).await;
        let after_first = wal_len();
        assert!(after_first > 0);
        write_fifty().await;
        // Fully checkpointed, so the writer started over at the beginning of the WAL instead of growing
        // it; without the background checkpoint the file would have grown by another fifty commits.
        assert_eq!(wal_len(), after_first);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sustained_writes_keep_the_wal_bounded() {
        let (_dir, path, store) = migrated_file_store().await;
        let wal = path.with_extension("db-wal");
        // Each commit appends at least one 4 KiB page to the WAL, back to back, so a passive checkpoint
        // alone never finds the WAL idle: without pass 2 the WAL ends up 16 times the threshold.
        let commits = 16 * RESTART_AT;
        let mut largest = 0;
        for i in 0..commits {
            let limits = PlatformLimits { max_item_quantity: 10 + i, max_cart_total_cents: 100_000 };
            store.set_limits(&limits, i).await.expect("write");
            if i % 256 == 0 {
                largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            }
        }
        // The threshold plus what the writer appends between two checkpoints, with room to spare
        // for a fast machine.
        assert!(
            largest < (6 * RESTART_AT * WAL_FRAME_BYTES) as u64,
            "the WAL grew to {largest} bytes over {commits} commits"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_grown_past_its_limit_is_cut_back_when_it_starts_over() {
        let (_dir, path, store) = migrated_file_store().await;
        let wal = path.with_extension("db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let limit = u64::try_from(WAL_SIZE_LIMIT).expect("positive");
        // One transaction larger than the limit: the WAL file has to grow past it.
        let tx = store.writer.begin().await.expect("begin");
        tx.execute_batch(
            "CREATE TABLE bulk (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
             INSERT INTO bulk SELECT zeroblob(1000000) FROM n;",
        )
        .expect("bulk insert");
        tx.commit().await.expect("commit");
        assert!(wal_len() > limit, "the WAL holds {} bytes", wal_len());

        // Pass 2 restarts the WAL; the next commit starts it over and cuts the file back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut i = 0;
        while wal_len() > limit {
            assert!(std::time::Instant::now() < deadline, "the WAL stayed at {} bytes", wal_len());
            let limits = PlatformLimits { max_item_quantity: 10 + i, max_cart_total_cents: 100_000 };
            store.set_limits(&limits, i).await.expect("write");
            i += 1;
            tokio::time::sleep(EVERY).await;
        }
        assert!(wal_len() > 0);
    }
}
