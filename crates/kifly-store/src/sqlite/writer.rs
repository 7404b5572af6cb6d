//! The single writer connection, and group commit.
//!
//! SQLite has one writer at a time, so every write transaction takes the writer connection for its
//! whole life, behind an async mutex (writers queue without blocking threads). A commit's cost is
//! mostly the pages it appends to the WAL, and consecutive cart changes touch mostly the same pages
//! (the end of the idempotency and audit tables and their indexes, the cart): committed one by one,
//! each of them rewrote all of those pages (about eleven 4 KiB frames per cart change, the largest
//! cost of a write under load).
//!
//! So transactions that queue up are committed together. Each runs inside a `SAVEPOINT` of a shared
//! SQLite transaction (a *batch*). When one finishes while others are queued, it releases its
//! savepoint into the batch and hands the connection to the next, then waits until the batch
//! commits; the last one of a batch (nobody queued, or [`MAX_BATCH`] reached) commits it and tells
//! the others. Nobody's caller continues before its work is committed, and if the `COMMIT` fails,
//! every transaction of the batch gets the error, as it would have alone. A transaction that rolls
//! back undoes only its own savepoint and then commits the batch at once: it may have read the
//! earlier transactions' work, so that work must not stay uncommitted while its caller acts on what
//! it read. Under no load a batch is one transaction, committed at once, exactly as before.
//!
//! If the transaction a batch was handed to goes away without taking the connection (its request was
//! cancelled while queued), a task started at the batch's first hand-over commits it after
//! [`FLUSH_AFTER`]. Anyone else taking the connection (checkpoints, migrations) commits an open batch
//! first ([`WriterState::commit_batch`]). A transaction that is first in its batch sees only
//! committed state ([`Transaction::sees_only_committed_state`]); a later one may see uncommitted
//! work of the batch, so it must read through its own connection.
//!
//! Write jobs (`combiner.rs`) use the same batches: one task takes the lock once and runs queued jobs
//! back to back, each started with [`Writer::start`] and ended with [`Transaction::end_in_batch`].
//!
//! The writer waits for another process's write lock (a CLI command on the same file) by retrying
//! `BEGIN IMMEDIATE` on an async timer rather than in SQLite's blocking busy handler, so it never
//! parks an async worker thread for long.

use std::ffi::c_int;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ffi};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::cart_cache::Generation;
use super::sql::Error;

/// How long a write waits for the writer connection before giving up with "busy" (answered 503).
const WRITER_WAIT: Duration = Duration::from_secs(10);
/// How long a write waits for another process's write lock on the file, in steps of [`BUSY_STEP`].
const LOCK_WAIT: Duration = Duration::from_secs(5);
const BUSY_STEP: Duration = Duration::from_millis(2);
/// Transactions committed together at most: bounds how long the first of a batch waits (32 cart
/// changes take about 2 ms). Measured with 32 clients adding items: 32 rather than 16 gave about 10 %
/// more writes per second for 10 to 15 % less CPU per write, and a lower p99.
pub(crate) const MAX_BATCH: usize = 32;
/// How long a batch may wait for the transaction it was handed to before it is committed without it.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// The writer connection with its batch, shared by clones of [`Writer`].
#[derive(Clone)]
pub(crate) struct Writer {
    state: Arc<Mutex<WriterState>>,
    /// Write transactions waiting for the connection; while there are any, a finished transaction
    /// leaves the batch open for them.
    queued: Arc<AtomicUsize>,
}

/// What the holder of the writer's lock owns.
pub(crate) struct WriterState {
    conn: Connection,
    /// The open batch: a SQLite transaction holding the work of transactions released into it.
    batch: Option<Batch>,
    /// Counts the batches committed (each one SQLite `COMMIT`); bumped before the batch's
    /// transactions learn the outcome (see `cart_cache.rs`).
    pub(crate) generation: Generation,
}

struct Batch {
    /// Transactions released into the batch so far.
    released: usize,
    /// `None` until the batch ends; then its outcome, for the transactions waiting on it.
    outcome: Arc<watch::Sender<Option<Outcome>>>,
}

/// A batch's outcome, shareable with every transaction of it (`rusqlite::Error` is not `Clone`).
pub(crate) type Outcome = Result<(), (c_int, String)>;

impl Writer {
    /// `conn` must have a short busy timeout: waits for the file lock happen in [`retry_busy`].
    /// `generation` is bumped after each commit.
    pub(crate) fn new(conn: Connection, generation: Generation) -> Writer {
        Writer {
            state: Arc::new(Mutex::new(WriterState { conn, batch: None, generation })),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The lock on the writer connection, for a thread that is not async (checkpoints).
    pub(crate) fn lock(&self) -> Arc<Mutex<WriterState>> {
        Arc::clone(&self.state)
    }

    /// The writer connection outside any transaction (an open batch is committed first).
    pub(crate) async fn acquire(&self) -> Result<OwnedMutexGuard<WriterState>, Error> {
        let mut state = self.lock_state().await?;
        state.commit_batch()?;
        Ok(state)
    }

    async fn lock_state(&self) -> Result<OwnedMutexGuard<WriterState>, Error> {
        tokio::time::timeout(WRITER_WAIT, Arc::clone(&self.state).lock_owned())
            .await
            .map_err(|_| busy("timed out waiting for the database writer"))
    }

    /// Starts a write transaction: joins the open batch, or starts one with `BEGIN IMMEDIATE`, which
    /// takes the database's write lock now, so the transaction never fails halfway because another
    /// connection wrote first.
    pub(crate) async fn begin(&self) -> Result<Transaction, Error> {
        let state = self.lock_queued().await?;
        self.start(state).await.map_err(|(_, e)| e)
    }

    /// The writer's lock, counted as queued while waiting for it (so a finishing transaction leaves
    /// its batch open for whoever takes the lock next).
    pub(crate) async fn lock_queued(&self) -> Result<OwnedMutexGuard<WriterState>, Error> {
        let _queued = Queued::enter(&self.queued);
        self.lock_state().await
    }

    /// Starts a transaction on the locked writer (see [`Writer::begin`]); on failure, hands the lock
    /// back with the error.
    pub(crate) async fn start(
        &self,
        mut state: OwnedMutexGuard<WriterState>,
    ) -> Result<Transaction, (OwnedMutexGuard<WriterState>, Error)> {
        if state.batch.is_none() {
            if !state.conn.is_autocommit() {
                // Left open by a failed rollback: nothing of it was promised to anyone.
                if let Err(e) = run(&state.conn, "ROLLBACK") {
                    return Err((state, e));
                }
            }
            let conn = &mut state.conn;
            if let Err(e) = retry_busy(move || run(conn, "BEGIN IMMEDIATE")).await {
                return Err((state, e));
            }
            state.batch = Some(Batch { released: 0, outcome: Arc::new(watch::channel(None).0) });
        }
        if let Err(e) = run(&state.conn, "SAVEPOINT kifly_tx") {
            let _ = state.commit_batch();
            return Err((state, e));
        }
        Ok(Transaction { state: Some(state), writer: self.clone() })
    }

    /// Commits `batch` if it is still open after [`FLUSH_AFTER`] and nobody has taken it on (the
    /// transaction it was handed to went away while queued, and so did everyone waiting on it).
    /// Runs as a task of its own, so it happens even if every request involved was cancelled.
    async fn flush_abandoned(self, batch: Arc<watch::Sender<Option<Outcome>>>) {
        let mut outcome = batch.subscribe();
        if tokio::time::timeout(FLUSH_AFTER, outcome.wait_for(Option::is_some)).await.is_ok() {
            return;
        }
        // Whichever comes first: the batch ends anyway, or the writer is free and the batch open.
        tokio::select! {
            _ = outcome.wait_for(Option::is_some) => {}
            mut state = Arc::clone(&self.state).lock_owned() => {
                if state.batch.as_ref().is_some_and(|open| Arc::ptr_eq(&open.outcome, &batch))
                    && let Err(e) = state.commit_batch()
                {
                    tracing::warn!(error = %e, "sqlite: committing an abandoned batch failed");
                }
            }
        }
    }
}

/// Waits for the outcome of a batch a transaction was released into.
async fn outcome_of(mut outcome: watch::Receiver<Option<Outcome>>) -> Result<(), Error> {
    match outcome.wait_for(Option::is_some).await.as_deref() {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err((code, message)))) => Err(failure(*code, message)),
        // The batch was dropped uncommitted (the store shut down): its work is lost.
        Ok(None) | Err(_) => Err(busy("the batch ended without committing")),
    }
}

impl WriterState {
    /// Commits the open batch, if any, and tells its transactions the outcome.
    pub(crate) fn commit_batch(&mut self) -> Result<(), Error> {
        let Some(batch) = self.batch.take() else { return Ok(()) };
        let committed = run(&self.conn, if batch.released == 0 { "ROLLBACK" } else { "COMMIT" });
        if committed.is_ok() && batch.released > 0 {
            self.generation.bump();
        }
        if committed.is_err() && !self.conn.is_autocommit() {
            // Never hand the writer on with a transaction still open.
            let _ = run(&self.conn, "ROLLBACK");
        }
        batch.outcome.send_replace(Some(committed.as_ref().map(|_| ()).map_err(shareable)));
        committed
    }

    /// Releases the current transaction's savepoint into its batch, which it then counts; undoes
    /// the transaction if the release fails.
    fn release_savepoint(&mut self) -> Result<&mut Batch, Error> {
        if let Err(e) = run(&self.conn, "RELEASE kifly_tx") {
            self.roll_back_savepoint();
            return Err(e);
        }
        let batch = self.batch.as_mut().ok_or_else(|| busy("the batch ended early"))?;
        batch.released += 1;
        Ok(batch)
    }

    /// Undoes the current transaction's savepoint, keeping the rest of the batch.
    fn roll_back_savepoint(&mut self) {
        if let Err(e) =
            run(&self.conn, "ROLLBACK TO kifly_tx").and_then(|()| run(&self.conn, "RELEASE kifly_tx"))
        {
            // SQLite rolled the whole transaction back itself (after an I/O error or a full disk), or
            // the batch's state is unknown: give it all up, and tell its transactions to try again.
            tracing::warn!(error = %e, "sqlite: rollback to savepoint failed; rolling back the batch");
            if let Some(batch) = self.batch.take() {
                if !self.conn.is_autocommit() {
                    let _ = run(&self.conn, "ROLLBACK");
                }
                let lost = (ffi::SQLITE_BUSY, format!("the transaction batch was rolled back: {e}"));
                batch.outcome.send_replace(Some(Err(lost)));
            }
        }
    }
}

impl Deref for WriterState {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for WriterState {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Counts a transaction as queued for the writer while it waits, even if its wait is cancelled.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize) -> Queued<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Queued(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A write transaction: committed by [`Transaction::commit`] (perhaps with others, see the module
/// docs), rolled back when dropped without it (an error, a cancelled request or a panic).
pub(crate) struct Transaction {
    state: Option<OwnedMutexGuard<WriterState>>,
    writer: Writer,
}

impl Transaction {
    /// True while no other transaction's uncommitted work is in this one's batch, so another
    /// connection reads the same state this one does (apart from this one's own writes).
    pub(crate) fn sees_only_committed_state(&self) -> bool {
        self.state.as_ref().and_then(|state| state.batch.as_ref()).is_some_and(|batch| batch.released == 0)
    }

    /// Returns once the transaction's work is committed (or failed to commit).
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        let Some(mut state) = self.state.take() else { return Ok(()) };
        let batch = match state.release_savepoint() {
            Ok(batch) => batch,
            Err(e) => {
                let _ = state.commit_batch();
                return Err(e);
            }
        };
        if self.writer.queued.load(Ordering::SeqCst) > 0 && batch.released < MAX_BATCH {
            let outcome = batch.outcome.subscribe();
            if batch.released == 1 {
                tokio::spawn(self.writer.clone().flush_abandoned(Arc::clone(&batch.outcome)));
            }
            drop(state); // the next queued transaction carries on with the batch
            return outcome_of(outcome).await;
        }
        state.commit_batch()
    }
}

/// Where a transaction ended by [`Transaction::end_in_batch`] stands.
pub(crate) enum Ended {
    /// Its work is in the batch and commits with it: the receiver learns the batch's outcome.
    Released(watch::Receiver<Option<Outcome>>),
    /// Its work was undone.
    RolledBack,
}

impl Ended {
    /// The outcome for the transaction's caller, once its batch has ended: the batch's commit for
    /// released work, success for work it undid itself.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Ended::Released(outcome) => outcome
                .borrow()
                .clone()
                .unwrap_or_else(|| Err((ffi::SQLITE_BUSY, "the batch is still open".into()))),
            Ended::RolledBack => Ok(()),
        }
    }
}

impl Transaction {
    /// Ends the transaction without committing its batch: `keep` releases its work into the batch,
    /// otherwise it is undone. Returns the writer, still locked (the batch open, unless undoing
    /// failed and took the whole batch with it), for the next transaction of a run (`combiner.rs`).
    pub(crate) fn end_in_batch(mut self, keep: bool) -> (OwnedMutexGuard<WriterState>, Result<Ended, Error>) {
        let mut state = self.state.take().expect("a transaction holds the writer until it ends");
        if !keep {
            state.roll_back_savepoint();
            return (state, Ok(Ended::RolledBack));
        }
        let ended = state.release_savepoint().map(|batch| Ended::Released(batch.outcome.subscribe()));
        (state, ended)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.roll_back_savepoint();
            if let Err(e) = state.commit_batch() {
                tracing::warn!(error = %e, "sqlite: committing the batch after a rollback failed");
            }
        }
    }
}

impl Deref for Transaction {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.state.as_ref().expect("a transaction holds the writer until it ends").conn
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.state.as_mut().expect("a transaction holds the writer until it ends").conn
    }
}

/// Runs a transaction-control statement, prepared once per connection (they run several times per
/// transaction, and parsing each time showed in profiles).
fn run(conn: &Connection, sql: &str) -> Result<(), Error> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
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
    failure(ffi::SQLITE_BUSY, message)
}

pub(crate) fn failure(code: c_int, message: &str) -> Error {
    Error::SqliteFailure(ffi::Error::new(code), Some(message.to_owned()))
}

pub(crate) fn shareable(e: &Error) -> (c_int, String) {
    let code = match e {
        Error::SqliteFailure(failure, _) => failure.extended_code,
        _ => ffi::SQLITE_ERROR,
    };
    (code, e.to_string())
}

#[cfg(test)]
pub(super) mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::super::open_writer;
    use super::super::tests::migrated_file_store;
    use super::{Error, Writer};
    use crate::Store;

    /// A writer on a scratch file with two tables; the directory must outlive it.
    pub(in crate::sqlite) fn scratch() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_writer(Some(&dir.path().join("scratch.db"))).expect("open");
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (n INTEGER NOT NULL, parent_id INTEGER REFERENCES parent (id));",
        )
        .expect("schema");
        (dir, Writer::new(conn, super::Generation::default()))
    }

    /// The committed `child.n` values, read on a connection of their own.
    pub(in crate::sqlite) fn committed(dir: &tempfile::TempDir) -> Vec<i64> {
        let conn = Connection::open(dir.path().join("scratch.db")).expect("open reader");
        let mut statement = conn.prepare("SELECT n FROM child ORDER BY n").expect("prepare");
        statement.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    }

    /// Starts `count` transactions that each insert their number (from 1), then do `finish`; returns
    /// once all of them are queued for the writer.
    async fn queue(
        writer: &Writer,
        count: i64,
        finish: fn(i64) -> bool,
    ) -> Vec<tokio::task::JoinHandle<Result<(), Error>>> {
        let tasks = (1..=count)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let tx = writer.begin().await?;
                    tx.execute("INSERT INTO child (n) VALUES (?1)", [n])?;
                    if finish(n) { tx.commit().await } else { Err(Error::QueryReturnedNoRows) }
                })
            })
            .collect();
        until_queued(writer, count as usize).await;
        tasks
    }

    async fn until_queued(writer: &Writer, count: usize) {
        while writer.queued.load(Ordering::SeqCst) < count {
            tokio::task::yield_now().await;
        }
    }

    /// A transaction holding the writer, with `child.n = 0` written.
    pub(in crate::sqlite) async fn holding(writer: &Writer) -> super::Transaction {
        let first = writer.begin().await.expect("begin");
        first.execute("INSERT INTO child (n) VALUES (0)", []).expect("insert");
        first
    }

    pub(in crate::sqlite) async fn commits(writer: &Writer) -> u64 {
        writer.acquire().await.expect("writer").generation.current()
    }

    #[tokio::test]
    async fn transactions_that_queue_up_commit_together() {
        let (dir, writer) = scratch();
        let first = holding(&writer).await;
        let queued = queue(&writer, 5, |_| true).await;
        first.commit().await.expect("first commits with the batch");
        for task in queued {
            task.await.expect("task").expect("queued transaction commits");
        }
        assert_eq!(committed(&dir), [0, 1, 2, 3, 4, 5]);
        assert_eq!(commits(&writer).await, 1, "six transactions, one COMMIT");

        // Alone, a transaction commits at once.
        let alone = writer.begin().await.expect("begin");
        alone.execute("INSERT INTO child (n) VALUES (6)", []).expect("insert");
        alone.commit().await.expect("commit");
        assert_eq!(committed(&dir).len(), 7);
        assert_eq!(commits(&writer).await, 2);
    }

    #[tokio::test]
    async fn a_transaction_that_rolls_back_undoes_only_its_own_work() {
        let (dir, writer) = scratch();
        let first = holding(&writer).await;
        // Numbers 1 and 3 commit, 2 drops its transaction.
        let queued = queue(&writer, 3, |n| n != 2).await;
        first.commit().await.expect("first commits");
        let outcomes: Vec<bool> = futures_outcomes(queued).await;
        assert_eq!(outcomes, [true, false, true]);
        assert_eq!(committed(&dir), [0, 1, 3]);
    }

    #[tokio::test]
    async fn when_the_commit_fails_every_transaction_of_the_batch_fails() {
        let (dir, writer) = scratch();
        let first = holding(&writer).await;
        let spoiler = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let tx = writer.begin().await?;
                // Checked at COMMIT, so the batch's COMMIT fails.
                tx.execute_batch(
                    "PRAGMA defer_foreign_keys = ON; INSERT INTO child (n, parent_id) VALUES (1, 42);",
                )?;
                tx.commit().await
            })
        };
        until_queued(&writer, 1).await;
        let first_outcome = first.commit().await;
        let spoiler_outcome = spoiler.await.expect("task");
        assert!(spoiler_outcome.is_err(), "the failing transaction succeeded");
        let Err(Error::SqliteFailure(failure, _)) = first_outcome else {
            panic!("the first transaction did not get the batch's error: {first_outcome:?}")
        };
        assert_eq!(failure.extended_code, rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY);
        assert!(committed(&dir).is_empty());
        // The writer is usable afterwards.
        let after = writer.begin().await.expect("begin");
        after.execute("INSERT INTO child (n) VALUES (7)", []).expect("insert");
        after.commit().await.expect("commit");
        assert_eq!(committed(&dir), [7]);
    }

    type Commit = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

    /// A transaction with `child.n = 0` hands its batch to a queued transaction whose request is
    /// then cancelled before it runs. Returns the first transaction's commit, still waiting.
    async fn hand_over_to_a_cancelled_transaction(writer: &Writer) -> Commit {
        let first = holding(writer).await;
        let cancelled = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.begin().await.map(drop) })
        };
        until_queued(writer, 1).await;
        let mut commit: Commit = Box::pin(first.commit());
        // One step: the first transaction releases its work into the batch and hands it over.
        let step = std::future::poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await;
        assert!(step.is_pending(), "committed alone although a transaction was queued");
        cancelled.abort();
        assert!(cancelled.await.expect_err("cancelled").is_cancelled());
        commit
    }

    #[tokio::test]
    async fn a_batch_handed_to_a_cancelled_transaction_still_commits() {
        let (dir, writer) = scratch();
        let commit = hand_over_to_a_cancelled_transaction(&writer).await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), commit).await;
        assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
        assert_eq!(committed(&dir), [0]);
    }

    /// As above, and the request of the transaction that handed the batch over is cancelled too:
    /// nobody is left waiting, and the batch still commits.
    #[tokio::test]
    async fn a_batch_everyone_involved_gave_up_on_still_commits() {
        let (dir, writer) = scratch();
        drop(hand_over_to_a_cancelled_transaction(&writer).await);
        let deadline = Instant::now() + Duration::from_secs(5);
        while committed(&dir).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(committed(&dir), [0], "the abandoned batch was never committed");
    }

    /// The first transaction of a batch reads what any connection reads; a later one may see work
    /// the batch has not committed yet.
    #[tokio::test]
    async fn only_the_first_transaction_of_a_batch_sees_only_committed_state() {
        let (_dir, writer) = scratch();
        let first = holding(&writer).await;
        assert!(first.sees_only_committed_state());
        let second = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let tx = writer.begin().await?;
                let sees = tx.sees_only_committed_state();
                tx.commit().await.map(|()| sees)
            })
        };
        until_queued(&writer, 1).await;
        first.commit().await.expect("commit");
        assert!(!second.await.expect("task").expect("second commits"), "a later transaction of the batch");
    }

    async fn futures_outcomes(tasks: Vec<tokio::task::JoinHandle<Result<(), Error>>>) -> Vec<bool> {
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task").is_ok());
        }
        outcomes
    }

    /// Another process (here: a thread with its own connection) holds the file's write lock for a
    /// while: a write transaction waits for it on the async timer, so the runtime's only thread keeps
    /// running other tasks meanwhile, and then proceeds.
    #[tokio::test]
    async fn a_write_waits_for_another_writer_without_blocking_the_runtime() {
        let (_dir, path, store) = migrated_file_store().await;

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
        let (_dir, _path, store) = migrated_file_store().await;
        let first = store.begin_write().await.expect("first");
        let second = tokio::time::timeout(Duration::from_millis(100), store.begin_write()).await;
        assert!(second.is_err(), "a second transaction began while the first was open");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), store.begin_write()).await;
        assert!(matches!(second, Ok(Ok(_))), "the second transaction did not begin after the first ended");
    }
}
