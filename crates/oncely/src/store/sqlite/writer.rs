//! Group commit: the caller that finds the connection free runs its job at once on its own
//! thread; jobs that arrive while it is busy queue for the writer thread, which runs all of them
//! in one transaction, each inside its own savepoint, so one job's failure never rolls back
//! another's. Every caller is answered only after the shared COMMIT returned — and, where a job
//! needs it, after that commit reached the disk (see `records::Durability`).
//!
//! **Who leads a commit.** A lone caller on a thread of its own (a blocking call from Python,
//! Kotlin or Rust) would pay two thread switches per call to hand its job to the writer thread
//! and be woken again — more than a commit without fsync costs. So when nothing is queued and
//! the connection is free, such a caller leads the commit itself, on its own thread. A caller
//! running as a task of an async runtime never does (it would block the runtime's worker while
//! SQLite works): its job goes to the writer thread, as does every job that finds the
//! connection busy, so overlapping callers still share one commit.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::records::Durability;
use crate::store::sqlite::Synchronous;
use crate::store::sqlite::counters::Counters;

/// What a job returns on success, downcast by the caller.
pub(crate) type Reply = Box<dyn Any + Send>;

/// The state a job works with inside the shared transaction.
pub(crate) struct Batch<'c> {
    pub conn: &'c mut Connection,
    /// This transaction's cached counters (see `counters.rs`).
    pub counters: Counters,
    /// Raised by a job that wrote something that must be on disk before anyone is answered,
    /// whatever it declared up front.
    must_sync: bool,
}

impl Batch<'_> {
    /// A fencing token larger than every one handed out before, in this file, by any process.
    pub fn next_token(&mut self) -> Result<u64> {
        self.counters.next_token(self.conn)
    }

    /// The connection, the counters and the durability flag, borrowed apart (for a step that
    /// holds all three).
    pub fn parts(&mut self) -> (&Connection, &mut Counters, &mut bool) {
        (&*self.conn, &mut self.counters, &mut self.must_sync)
    }
}

type Work = Box<dyn FnOnce(&mut Batch<'_>) -> Result<Reply> + Send>;

pub(crate) struct Job {
    work: Work,
    /// Whether the work needs its own savepoint. Work that makes at most one write statement is
    /// atomic by itself (SQLite undoes a failed statement), so it runs without one.
    savepoint: bool,
    durability: Durability,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The connection and what the writer remembers about it between commits.
struct Leader {
    conn: Connection,
    /// The store's level: at `Normal` no commit waits for the disk, so nothing is switched.
    level: Synchronous,
    /// Whether the connection's `synchronous` pragma is `FULL` right now.
    syncing: bool,
    /// Whether this store has handed out a token since it was opened (see `counters.rs`).
    resumed: bool,
    /// The machine's boot, read once when the store opened (see `boot.rs`).
    boot: Option<i64>,
}

struct Core {
    leader: Mutex<Leader>,
    /// Jobs sent to the writer thread that it has not taken yet.
    queued: AtomicUsize,
}

/// The sending end: cheap to clone, shared by every caller.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    core: Arc<Core>,
}

thread_local! {
    /// The store (its `Core`'s address) whose commit this thread is running, if any: a call
    /// into the same store from inside it — a transactional handler calling its own store —
    /// would wait for itself forever, and is refused instead.
    static LEADING: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as leading `core`'s commit until dropped.
struct Leading(usize);

impl Leading {
    fn enter(core: &Arc<Core>) -> Leading {
        Leading(LEADING.with(|l| l.replace(Arc::as_ptr(core) as usize)))
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        LEADING.with(|l| l.set(self.0));
    }
}

/// Whether the current thread may wait for SQLite itself: it is not a task of an async
/// runtime (whose worker it would block), but a thread of its own — a plain thread, or one
/// blocked in a runtime's `block_on`.
fn may_block() -> bool {
    tokio::runtime::Handle::try_current().is_err() || tokio::task::try_id().is_none()
}

impl Writer {
    /// Starts the writer thread on `conn`, which the store opened at `level`. It stops when
    /// every `Writer` clone is dropped.
    pub fn start(
        conn: Connection,
        level: Synchronous,
        max_batch: usize,
    ) -> Result<(Writer, std::thread::JoinHandle<()>)> {
        let core = Arc::new(Core {
            leader: Mutex::new(Leader {
                conn,
                level,
                syncing: level == Synchronous::Full,
                resumed: false,
                boot: crate::store::sqlite::boot::boot_id(),
            }),
            queued: AtomicUsize::new(0),
        });
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread_core = core.clone();
        let handle = std::thread::Builder::new()
            .name("oncely-sqlite-writer".into())
            .spawn(move || run(&thread_core, rx, max_batch))
            .map_err(|e| Error::Storage(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok((Writer { jobs, core }, handle))
    }

    /// Runs `work` in the next group commit, inside its own savepoint, and returns its reply
    /// once the commit has reached `durability`.
    pub async fn run<T: Send + 'static>(
        &self,
        durability: Durability,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work, true, durability).await
    }

    /// Like [`Writer::run`] for work that makes at most one write statement (no savepoint).
    pub async fn run_single_write<T: Send + 'static>(
        &self,
        durability: Durability,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work, false, durability).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T> + Send + 'static,
        savepoint: bool,
        durability: Durability,
    ) -> Result<T> {
        if LEADING.with(|l| l.get()) == Arc::as_ptr(&self.core) as usize {
            return Err(Error::invalid(
                "store",
                "was called from inside a handler of its own transaction, which holds its writer (the call would wait for itself forever): use the transaction the handler was given",
            ));
        }
        let (reply, rx) = oneshot::channel();
        let work: Work = Box::new(move |b| work(b).map(|t| Box::new(t) as Reply));
        self.dispatch(Job { work, savepoint, durability, reply })?;
        let reply = rx.await.map_err(|_| Error::Closed("SQLite store"))??;
        reply
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| Error::Storage("SQLite writer returned a reply of the wrong type".into()))
    }
}

impl Writer {
    /// Runs `job` at once on this thread if it may lead (see the module docs), else queues it
    /// for the writer thread. Either way its answer arrives through its reply channel.
    fn dispatch(&self, job: Job) -> Result<()> {
        let free = if may_block() && self.core.queued.load(Ordering::Acquire) == 0 {
            self.core.leader.try_lock()
        } else {
            None
        };
        if let Some(mut leader) = free {
            let _leading = Leading::enter(&self.core);
            leader.run_batch(vec![job]);
            return Ok(());
        }
        self.core.queued.fetch_add(1, Ordering::AcqRel);
        self.jobs.send(job).map_err(|_| {
            self.core.queued.fetch_sub(1, Ordering::AcqRel);
            Error::Closed("SQLite store")
        })
    }
}

fn run(core: &Arc<Core>, rx: mpsc::Receiver<Job>, max_batch: usize) {
    let _leading = Leading::enter(core);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        core.queued.fetch_sub(jobs.len(), Ordering::AcqRel);
        core.leader.lock().run_batch(jobs);
    }
}

impl Leader {
    /// Sets the connection's `synchronous` pragma for the next commit (only at a store level
    /// of `Full`; SQLite takes the pragma outside a transaction only).
    fn sync_commits(&mut self, durability: Durability) -> Result<()> {
        let want = self.level == Synchronous::Full && durability == Durability::Durable;
        if self.level == Synchronous::Full && want != self.syncing {
            exec(&self.conn, if want { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" })?;
            self.syncing = want;
        }
        Ok(())
    }

    fn run_batch(&mut self, jobs: Vec<Job>) {
        let durability = jobs.iter().fold(Durability::Visible, |d, j| d.and(j.durability));
        if let Err(e) = self.sync_commits(durability).and_then(|()| exec(&self.conn, "BEGIN IMMEDIATE")) {
            for job in jobs {
                let _ = job.reply.send(Err(clone_error(&e)));
            }
            return;
        }
        let counters = if self.resumed { Counters::default() } else { Counters::resuming(self.boot) };
        let mut batch = Batch { conn: &mut self.conn, counters, must_sync: false };
        let mut answered: Vec<(oneshot::Sender<Result<Reply>>, Result<Reply>)> =
            Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            let result =
                if job.savepoint { run_job(&mut batch, job.work) } else { run_bare(&mut batch, job.work) };
            if !batch.conn.is_autocommit() {
                answered.push((job.reply, result));
                continue;
            }
            // The shared transaction ended under the job (a statement or an error rolled it
            // back): nobody can say what became of the jobs before it, so none of them is told
            // "done".
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
        let must_sync = batch.must_sync || batch.counters.reservation_moved();
        let took_token = batch.counters.took_token();
        let conn = &*batch.conn;
        let mut committed = batch.counters.save(conn).and_then(|()| exec(conn, "COMMIT"));
        if committed.is_ok() && must_sync && !self.syncing && self.level == Synchronous::Full {
            committed = self.sync_now();
        }
        match committed {
            Ok(()) => {
                self.resumed |= took_token;
                for (reply, result) in answered {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                for (reply, _) in answered {
                    let _ = reply.send(Err(clone_error(&e)));
                }
            }
        }
    }

    /// Brings every commit so far to disk: a small durable commit, whose fsync of the log
    /// covers the log's earlier frames too.
    fn sync_now(&mut self) -> Result<()> {
        self.sync_commits(Durability::Durable)?;
        exec(&self.conn, "BEGIN IMMEDIATE")?;
        let synced = self
            .conn
            .prepare_cached(
                "INSERT INTO oncely_meta (key, value) VALUES ('syncs', 1)
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
            )
            .and_then(|mut s| s.execute([]))
            .map_err(Error::from)
            .and_then(|_| exec(&self.conn, "COMMIT"));
        if synced.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        synced
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
