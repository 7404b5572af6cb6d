//! Write jobs run back to back by one task (flat combining), for [`crate::Store::run_write`].
//!
//! With [`Writer::begin`], every write transaction takes the writer's async lock in turn: each
//! hand-over wakes the next request's task, often on the other worker thread, and the writer sits
//! idle until that task runs (about a quarter of the time under a stream of cart changes, while
//! requests queued for it); then every transaction of the batch is woken again when it commits.
//!
//! A write job is a whole transaction as one closure, so it does not have to run on its caller's
//! task. Callers queue their jobs here; one *combiner* task (spawned when the queue finds none
//! running, so no request's cancellation can stop it) takes the writer once, runs up to
//! [`MAX_BATCH`] queued jobs one after another, each in its own savepoint of one batch
//! (`writer.rs`), commits the batch, and only then answers each job's caller with the outcome, a
//! single wake-up per request. It exits when the queue is empty. The writer's lock is fair, so
//! transactions started with [`Writer::begin`] (checkout steps, imports, checkpoints) still get their
//! turn between batches, and a batch they left open is joined and committed here.
//!
//! A job that ends with a rollback undoes only its own savepoint. A job that panics is answered
//! with an error, its transaction dropped (which undoes it and commits the batch), and the run goes
//! on with a fresh lock. A job must not wait for another write (a job or [`Writer::begin`]): the
//! writer is its own until it ends.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use rusqlite::ffi;
use tokio::sync::{OwnedMutexGuard, oneshot};

use super::sql::Error;
use super::writer::{Ended, MAX_BATCH, Outcome, Transaction, Writer, WriterState, failure, shareable};

/// Runs one job in the transaction it is given and hands the transaction back, with whether to
/// keep (release into the batch) or undo its work.
pub(crate) type RunJob<J> =
    Box<dyn Fn(J, Transaction) -> Pin<Box<dyn Future<Output = (Transaction, bool)> + Send>> + Send + Sync>;

/// The queue of write jobs and the combiner that runs them.
pub(crate) struct Combiner<J> {
    writer: Writer,
    run: RunJob<J>,
    queue: Mutex<Queue<J>>,
}

struct Queue<J> {
    jobs: VecDeque<(J, oneshot::Sender<Outcome>)>,
    /// A combiner task is running and will see every job queued before it exits.
    running: bool,
}

/// Marks the combiner stopped if its task is dropped midway (the runtime shut down), so the next
/// job starts another.
struct Running<'a, J>(Option<&'a Mutex<Queue<J>>>);

impl<J> Drop for Running<'_, J> {
    fn drop(&mut self) {
        if let Some(queue) = self.0 {
            queue.lock().unwrap_or_else(PoisonError::into_inner).running = false;
        }
    }
}

impl<J: Send + 'static> Combiner<J> {
    pub(crate) fn new(writer: Writer, run: RunJob<J>) -> Arc<Combiner<J>> {
        Arc::new(Combiner { writer, run, queue: Mutex::new(Queue { jobs: VecDeque::new(), running: false }) })
    }

    /// Queues `job` and returns once its transaction is committed (or undone, if the job asked).
    pub(crate) async fn submit(self: &Arc<Self>, job: J) -> Result<(), Error> {
        let (reply, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.lock_queue();
            queue.jobs.push_back((job, reply));
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).combine());
        }
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((code, message))) => Err(failure(code, &message)),
            Err(_) => Err(failure(ffi::SQLITE_BUSY, "the write was dropped before it committed")),
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue<J>> {
        // The queue is only pushed to and popped from; a panic elsewhere cannot leave it half-changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_job(&self) -> Option<(J, oneshot::Sender<Outcome>)> {
        self.lock_queue().jobs.pop_front()
    }

    /// The combiner task: batches until the queue is empty.
    async fn combine(self: Arc<Self>) {
        let mut running = Running(Some(&self.queue));
        loop {
            self.run_batch().await;
            let mut queue = self.lock_queue();
            if queue.jobs.is_empty() {
                queue.running = false;
                running.0 = None;
                return;
            }
        }
    }

    /// Runs up to [`MAX_BATCH`] queued jobs in one batch, commits it, then answers their callers.
    async fn run_batch(&self) {
        let mut answered: Vec<(oneshot::Sender<Outcome>, Ended)> = Vec::with_capacity(MAX_BATCH);
        let mut state: Option<OwnedMutexGuard<WriterState>> = None;
        for _ in 0..MAX_BATCH {
            // Jobs stay queued while the writer is being taken.
            let locked = match state.take() {
                Some(locked) => locked,
                None => match self.writer.lock_queued().await {
                    Ok(locked) => locked,
                    Err(e) => {
                        // Timed out: fail this batch's jobs rather than have each wait as long again.
                        let failed = Err(shareable(&e));
                        for _ in 0..MAX_BATCH {
                            let Some((_, reply)) = self.next_job() else { break };
                            let _ = reply.send(failed.clone());
                        }
                        break;
                    }
                },
            };
            let Some((job, reply)) = self.next_job() else {
                state = Some(locked);
                break;
            };
            let tx = match self.writer.start(locked).await {
                Ok(tx) => tx,
                Err((locked, e)) => {
                    state = Some(locked);
                    let _ = reply.send(Err(shareable(&e)));
                    continue;
                }
            };
            match AssertUnwindSafe((self.run)(job, tx)).catch_unwind().await {
                Ok((tx, keep)) => {
                    let (locked, ended) = tx.end_in_batch(keep);
                    state = Some(locked);
                    match ended {
                        Ok(ended) => answered.push((reply, ended)),
                        Err(e) => {
                            let _ = reply.send(Err(shareable(&e)));
                        }
                    }
                }
                Err(_) => {
                    // The transaction was dropped while unwinding: undone, and the batch committed.
                    tracing::error!("a write job panicked; its transaction was rolled back");
                    let _ = reply.send(Err((ffi::SQLITE_ERROR, "the write job panicked".into())));
                }
            }
        }
        if let Some(mut locked) = state
            && let Err(e) = locked.commit_batch()
        {
            tracing::warn!(error = %e, "sqlite: committing a batch of write jobs failed");
        }
        for (reply, ended) in answered {
            let _ = reply.send(ended.outcome());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::Connection;

    use super::super::writer::tests::{commits, committed, holding, scratch};
    use super::{Combiner, Error};

    /// A test job: runs on the transaction's connection and says whether to keep its work.
    type Job = Box<dyn FnOnce(&Connection) -> bool + Send>;

    fn combiner(writer: &super::Writer) -> Arc<Combiner<Job>> {
        Combiner::new(
            writer.clone(),
            Box::new(|job: Job, tx| {
                Box::pin(async move {
                    let keep = job(&tx);
                    (tx, keep)
                })
            }),
        )
    }

    fn insert(n: i64) -> Job {
        Box::new(move |conn| {
            conn.execute("INSERT INTO child (n) VALUES (?1)", [n]).expect("insert");
            true
        })
    }

    /// Waits (at most 10 s) until `count` jobs are queued.
    async fn until_queued(combiner: &Combiner<Job>, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while combiner.lock_queue().jobs.len() < count {
            assert!(std::time::Instant::now() < deadline, "the jobs were never queued");
            tokio::task::yield_now().await;
        }
    }

    /// Submits `jobs` from tasks of their own while a transaction holds the writer, then lets it go;
    /// returns each submitter's result.
    async fn submit_while_held(
        writer: &super::Writer,
        combiner: &Arc<Combiner<Job>>,
        jobs: Vec<Job>,
    ) -> Vec<Result<(), Error>> {
        let first = holding(writer).await;
        let count = jobs.len();
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let combiner = Arc::clone(combiner);
                tokio::spawn(async move { combiner.submit(job).await })
            })
            .collect();
        until_queued(combiner, count).await;
        first.commit().await.expect("the holder commits");
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        results
    }

    #[tokio::test]
    async fn queued_jobs_run_back_to_back_and_commit_together() {
        let (dir, writer) = scratch();
        let combiner = combiner(&writer);
        let results = submit_while_held(&writer, &combiner, (1..=5).map(insert).collect()).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(committed(&dir), [0, 1, 2, 3, 4, 5]);
        // The holder saw the combiner waiting, so it left its batch open for the jobs to join.
        assert_eq!(commits(&writer).await, 1, "one COMMIT for the holder and the five jobs");

        // The combiner exited with the queue empty; a later job starts it again.
        combiner.submit(insert(6)).await.expect("a later job");
        assert_eq!(committed(&dir).last(), Some(&6));
    }

    #[tokio::test]
    async fn a_job_that_rolls_back_or_panics_undoes_only_its_own_work() {
        let (dir, writer) = scratch();
        let combiner = combiner(&writer);
        let undone: Job = Box::new(|conn| {
            conn.execute("INSERT INTO child (n) VALUES (20)", []).expect("insert");
            false
        });
        let panics: Job = Box::new(|conn| {
            conn.execute("INSERT INTO child (n) VALUES (30)", []).expect("insert");
            panic!("a bug in a job");
        });
        let jobs = vec![insert(1), undone, insert(2), panics, insert(3)];
        let results = submit_while_held(&writer, &combiner, jobs).await;
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, true, false, true], "{results:?}");
        assert_eq!(committed(&dir), [0, 1, 2, 3]);

        // Still running jobs afterwards.
        combiner.submit(insert(4)).await.expect("a later job");
        assert_eq!(committed(&dir), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_job_whose_caller_went_away_still_runs() {
        let (dir, writer) = scratch();
        let combiner = combiner(&writer);
        let first = holding(&writer).await;
        let gone = tokio::spawn({
            let combiner = Arc::clone(&combiner);
            async move { combiner.submit(insert(1)).await }
        });
        until_queued(&combiner, 1).await;
        gone.abort();
        first.commit().await.expect("commit");
        combiner.submit(insert(2)).await.expect("a later job");
        assert_eq!(committed(&dir), [0, 1, 2]);
    }
}
