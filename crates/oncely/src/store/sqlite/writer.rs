//! Group commit: one writer thread owns the connection and runs the jobs of all concurrent
//! callers in one transaction, each inside its own savepoint, so one job's failure never rolls
//! back another's, and every caller is answered only after the shared COMMIT returned.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::store::sqlite::counters::Counters;

/// What a job returns on success, downcast by the caller.
pub(crate) type Reply = Box<dyn Any + Send>;

/// The state a job works with inside the shared transaction.
pub(crate) struct Batch<'c> {
    pub conn: &'c mut Connection,
    /// This transaction's cached counters (see `counters.rs`).
    pub counters: Counters,
}

impl Batch<'_> {
    /// A fencing token larger than every one handed out before, in this file, by any process.
    pub fn next_token(&mut self) -> Result<u64> {
        self.counters.next_token(self.conn)
    }
}

type Work = Box<dyn FnOnce(&mut Batch<'_>) -> Result<Reply> + Send>;

pub(crate) struct Job {
    work: Work,
    /// Whether the work needs its own savepoint. Work that makes at most one write statement is
    /// atomic by itself (SQLite undoes a failed statement), so it runs without one.
    savepoint: bool,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The sending end: cheap to clone, shared by every caller.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// The writer thread: a call from it (a transactional handler calling its own store) would
    /// wait for itself forever, and is refused instead.
    thread: std::thread::ThreadId,
}

impl Writer {
    /// Starts the writer thread on `conn`. It stops when every `Writer` clone is dropped.
    pub fn start(conn: Connection, max_batch: usize) -> Result<(Writer, std::thread::JoinHandle<()>)> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("oncely-sqlite-writer".into())
            .spawn(move || run(conn, rx, max_batch))
            .map_err(|e| Error::Storage(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok((Writer { jobs, thread: handle.thread().id() }, handle))
    }

    /// Runs `work` in the next group commit, inside its own savepoint, and returns its reply
    /// once the commit is durable.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work, true).await
    }

    /// Like [`Writer::run`] for work that makes at most one write statement (no savepoint).
    pub async fn run_single_write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work, false).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
        savepoint: bool,
    ) -> Result<T> {
        if std::thread::current().id() == self.thread {
            return Err(Error::invalid(
                "store",
                "was called from inside a handler of its own transaction, which holds its writer (the call would wait for itself forever): use the transaction the handler was given",
            ));
        }
        let (reply, rx) = oneshot::channel();
        let work: Work = Box::new(move |b| work(b).map(|t| Box::new(t) as Reply));
        self.jobs.send(Job { work, savepoint, reply }).map_err(|_| Error::Closed("SQLite store"))?;
        let reply = rx.await.map_err(|_| Error::Closed("SQLite store"))??;
        reply
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| Error::Storage("SQLite writer returned a reply of the wrong type".into()))
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, jobs);
    }
}

fn run_batch(conn: &mut Connection, jobs: Vec<Job>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        for job in jobs {
            let _ = job.reply.send(Err(clone_error(&e)));
        }
        return;
    }
    let mut batch = Batch { conn, counters: Counters::default() };
    let mut answered: Vec<(oneshot::Sender<Result<Reply>>, Result<Reply>)> = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let result =
            if job.savepoint { run_job(&mut batch, job.work) } else { run_bare(&mut batch, job.work) };
        if !batch.conn.is_autocommit() {
            answered.push((job.reply, result));
            continue;
        }
        // The shared transaction ended under the job (a statement or an error rolled it back):
        // nobody can say what became of the jobs before it, so none of them is told "done".
        for (_, earlier) in answered.iter_mut() {
            *earlier = Err(Error::Storage(
                "the shared transaction was ended by another job in the same commit; retry".into(),
            ));
        }
        answered.push((
            job.reply,
            Err(Error::invalid(
                "transaction",
                "a transactional handler must not end the transaction it was given",
            )),
        ));
        // What the cache held belonged to the transaction that ended; others may have moved on.
        batch.counters.mark_stale();
        if let Err(e) = exec(batch.conn, "BEGIN IMMEDIATE") {
            // Without a transaction the rest would run in autocommit: do not run them at all.
            for job in jobs {
                let _ = job.reply.send(Err(clone_error(&e)));
            }
            for (reply, result) in answered {
                let _ = reply.send(result);
            }
            return;
        }
    }
    let conn = &*batch.conn;
    let committed = batch.counters.save(conn).and_then(|()| exec(conn, "COMMIT"));
    match committed {
        Ok(()) => {
            for (reply, result) in answered {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            for (reply, _) in answered {
                let _ = reply.send(Err(clone_error(&e)));
            }
        }
    }
}

fn run_bare(batch: &mut Batch<'_>, work: Work) -> Result<Reply> {
    catch_unwind(AssertUnwindSafe(|| work(batch)))
        .unwrap_or_else(|_| Err(Error::Storage("a store operation panicked; it was not applied".into())))
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn run_job(batch: &mut Batch<'_>, work: Work) -> Result<Reply> {
    exec(batch.conn, "SAVEPOINT oncely_job")?;
    let result = catch_unwind(AssertUnwindSafe(|| work(batch))).unwrap_or_else(|_| {
        Err(Error::Storage("a transactional handler panicked; its writes were rolled back".into()))
    });
    if batch.conn.is_autocommit() {
        return result; // the caller reports it; there is no savepoint left to release
    }
    match result {
        Ok(reply) => {
            exec(batch.conn, "RELEASE oncely_job")?;
            Ok(reply)
        }
        Err(e) => {
            // Tokens taken inside the rolled-back job stay used: still monotonic.
            if exec(batch.conn, "ROLLBACK TO oncely_job")
                .and_then(|()| exec(batch.conn, "RELEASE oncely_job"))
                .is_err()
            {
                // The job's savepoint is gone: its writes cannot be undone alone. Roll back the
                // whole transaction; the batch fails every job in it.
                let _ = batch.conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// Errors are not `Clone` (they may carry foreign sources); a failed commit is reported to every
/// caller of the batch with the same code and message.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::CorruptStore(m) => Error::CorruptStore(m.clone()),
        Error::StorageUnavailable(m) => Error::StorageUnavailable(m.clone()),
        Error::Storage(m) => Error::Storage(m.clone()),
        other => Error::Storage(other.to_string()),
    }
}
