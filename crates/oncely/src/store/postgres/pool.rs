//! A fixed pool of PostgreSQL connections, each owned by a thread of its own (the synchronous
//! client must not run on an async runtime's threads). Callers hand a job to whichever thread is
//! free and await its reply. A connection found broken is replaced before the next job runs on
//! it; a transaction is (re)started on a fresh connection when the old one died before anything
//! of the job ran.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::{Client, Statement};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Prepared statements of one connection, by their SQL text.
///
/// A statement is prepared again once it is [`Statements::MAX_AGE`] old. PostgreSQL keeps a
/// prepared statement's generic plan for the session; one chosen while a queue was empty (a
/// sequential scan is cheapest then) would stay after the queue grew to a million rows. Fresh
/// plans follow the table's size.
#[derive(Default)]
pub(crate) struct Statements(HashMap<&'static str, (Statement, Instant)>);

impl Statements {
    const MAX_AGE: Duration = Duration::from_secs(5);

    /// The statement for `sql`, prepared on `client`'s connection the first time.
    pub(crate) fn get(
        &mut self,
        client: &mut impl postgres::GenericClient,
        sql: &'static str,
    ) -> Result<Statement> {
        if let Some((s, at)) = self.0.get(sql) {
            if at.elapsed() < Self::MAX_AGE {
                return Ok(s.clone());
            }
        }
        let s = client.prepare(sql).map_err(pg_error)?;
        self.0.insert(sql, (s.clone(), Instant::now()));
        Ok(s)
    }
}

/// One pooled connection.
pub(crate) struct Conn {
    client: Option<Client>,
    statements: Statements,
    config: postgres::Config,
    tls: super::tls::Tls,
    clock: std::sync::Arc<super::clock::ServerClock>,
}

/// Whether `e` means the connection is gone (closed, reset, or the server ended the session).
pub(crate) fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception) and 57P (operator intervention: terminated backend,
        // shutdown).
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
        // No SQLSTATE: an I/O error on the socket.
        None => e.as_db_error().is_none(),
    }
}

/// Whether `e` is passing weather: the connection is gone, the server is starting up
/// (57P03) or has too many connections (53300), or the transaction lost a serialization race
/// (40001) or a deadlock (40P01) — a retry of the same work may succeed. Authentication, a
/// missing database, permissions and constraint violations are not.
pub(crate) fn transient(e: &postgres::Error) -> bool {
    connection_lost(e) || e.code().is_some_and(|c| matches!(c.code(), "57P03" | "53300" | "40001" | "40P01"))
}

/// A PostgreSQL error as oncely's error: the server's message, with its SQLSTATE;
/// [`Error::StorageUnavailable`] when it is [`transient`].
pub(crate) fn pg_error(e: postgres::Error) -> Error {
    let text = format!("PostgreSQL: {}", describe(&e));
    if transient(&e) { Error::StorageUnavailable(text) } else { Error::Storage(text) }
}

/// What the server said — its message and SQLSTATE (a wrong password is `28P01`, a missing
/// database `3D000`, a server starting up `57P03`) — or, without a server's answer, the client's
/// error with its cause ("connection refused"), never just "db error".
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", crate::text::quote(db.message()), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    crate::text::store_message(&text)
}

/// Whether `e` says the role may not use oncely's tables (SQLSTATE 42501): a matter of grants,
/// not of a damaged store.
pub(crate) fn permission_denied(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "42501")
}

impl Conn {
    fn new(
        config: postgres::Config,
        tls: super::tls::Tls,
        clock: std::sync::Arc<super::clock::ServerClock>,
    ) -> Self {
        Conn { client: None, statements: Statements::default(), config, tls, clock }
    }

    fn connect(&mut self) -> Result<&mut Client> {
        let client = self.tls.connect(&self.config).map_err(|e| {
            let text = format!("cannot connect to PostgreSQL: {e}");
            if transient(&e) { Error::StorageUnavailable(text) } else { Error::Storage(text) }
        })?;
        self.statements = Statements::default();
        Ok(self.client.insert(client))
    }

    /// Starts a transaction (BEGIN), on a new connection if the current one is gone: a
    /// terminated backend shows only on the next use, and nothing of the job has run yet, so
    /// starting over on a new connection is safe. The caller must COMMIT or ROLLBACK.
    pub(crate) fn begin(&mut self) -> Result<(&mut Client, &mut Statements)> {
        let alive = self.client.as_ref().is_some_and(|c| !c.is_closed());
        let begun = match self.client.as_mut() {
            Some(c) if alive => match c.batch_execute("BEGIN") {
                Ok(()) => true,
                Err(e) if connection_lost(&e) => false,
                Err(e) => return Err(pg_error(e)),
            },
            _ => false,
        };
        if !begun {
            self.connect()?.batch_execute("BEGIN").map_err(pg_error)?;
        }
        if self.clock.due() {
            if let Some(c) = self.client.as_mut() {
                self.clock.measure(c)?;
            }
        }
        let Conn { client, statements, .. } = self;
        Ok((client.as_mut().ok_or(Error::Closed("PostgreSQL connection"))?, statements))
    }

    /// Forgets the connection if it broke, so the next job opens a new one.
    fn check(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The pool: `size` connection threads sharing one job queue.
pub(crate) struct Pool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub(crate) fn start(
        config: postgres::Config,
        tls: super::tls::Tls,
        size: usize,
        clock: std::sync::Arc<super::clock::ServerClock>,
    ) -> Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(size);
        for i in 0..size {
            let rx = rx.clone();
            let mut conn = Conn::new(config.clone(), tls.clone(), clock.clone());
            let t = std::thread::Builder::new()
                .name(format!("oncely-pg-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().recv();
                        let Ok(job) = job else { break };
                        job(&mut conn);
                        conn.check();
                    }
                })
                .map_err(|e| Error::Storage(format!("cannot start a PostgreSQL connection thread: {e}")))?;
            threads.push(t);
        }
        Ok(Pool { jobs: Mutex::new(Some(tx)), threads: Mutex::new(threads) })
    }

    /// Runs `work` on a pooled connection and returns its answer. A panic in `work` becomes
    /// [`Error::Storage`] (its transaction is rolled back with the connection's state).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
                conn.client = None; // its state is unknown: the server rolls it back
                Err(Error::Storage("a PostgreSQL job panicked; its transaction was rolled back".into()))
            });
            let _ = reply.send(r);
        });
        {
            let jobs = self.jobs.lock();
            let sender = jobs.as_ref().ok_or(Error::Closed("PostgreSQL store"))?;
            sender.send(job).map_err(|_| Error::Closed("PostgreSQL store"))?;
        }
        answer.await.map_err(|_| Error::Closed("PostgreSQL store"))?
    }

    /// Runs `work` in one transaction on a pooled connection: committed when it returns `Ok`,
    /// rolled back otherwise. (A COMMIT after a failed statement would silently roll back:
    /// every statement's error is propagated, so `work` never returns `Ok` after one.)
    pub(crate) async fn transaction<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Client, &mut Statements) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.run(move |conn| {
            let (client, statements) = conn.begin()?;
            match work(client, statements) {
                Ok(out) => {
                    client.batch_execute("COMMIT").map_err(pg_error)?;
                    Ok(out)
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.lock().take(); // the threads finish the queue, then exit
        for t in self.threads.lock().drain(..) {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
