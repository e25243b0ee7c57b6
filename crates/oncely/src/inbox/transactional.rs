//! The transactional inbox on SQLite: the handler's own writes, the processed mark and the
//! stored result commit together or not at all. This is exactly-once without conditions.

use std::sync::Arc;

use std::panic::{AssertUnwindSafe, catch_unwind};

use parking_lot::Mutex;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::error::{Error, Result};
use crate::inbox::{
    Failure, Inbox, InboxOp, OpAnswer, ProcessError, Processed, Request, Status, StoredOutcome, replay_result,
};
use crate::mode::Mode;
use crate::store::SqliteStore;
use crate::store::sqlite::apply_op;

/// Denies BEGIN / COMMIT / ROLLBACK and any touch of oncely's own savepoints.
fn forbid_transaction_control(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Transaction { .. } => Authorization::Deny,
        // SQLite's savepoint names are case-insensitive.
        AuthAction::Savepoint { savepoint_name, .. }
            if savepoint_name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("oncely_")) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

enum Done {
    Finished(StoredOutcome),
    Answered(OpAnswer),
}

impl Inbox<SqliteStore> {
    /// Runs `handler` exactly once per id, inside the store's own transaction.
    ///
    /// The handler gets the SQLite connection with a transaction open; everything it writes
    /// there, the id's processed mark and the stored result are committed in one commit, or on
    /// a retryable failure, a panic or a crash, none of them is. A duplicate gets the stored
    /// result without running the handler. Always exactly-once: a request that names another
    /// mode is refused.
    ///
    /// The handler runs on the store's writer thread, so it should do only its database work
    /// there (no network calls): other callers' commits wait for it. It must not COMMIT or
    /// ROLLBACK the transaction it is given.
    pub async fn process_transactional<F, E>(
        &self,
        req: Request,
        handler: F,
    ) -> Result<Processed, ProcessError<E>>
    where
        F: FnOnce(&rusqlite::Connection) -> std::result::Result<Vec<u8>, Failure<E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        if req.mode.is_some_and(|m| m != Mode::ExactlyOnce) {
            return Err(Error::invalid("mode", "the transactional inbox is always exactly_once").into());
        }
        let req = req.mode(Mode::ExactlyOnce);
        let now = self.now();
        let begin = match self.prepare(&req, now)? {
            Ok(op) => op,
            Err(crate::inbox::Begin::Duplicate(replay)) => return replay_result(replay),
            Err(_) => return Err(Error::Conflict { id: req.id.clone() }.into()),
        };
        self.collect_garbage_if_due(now).await;
        let config = self.config().clone();
        let scope = config.scope.clone();
        let retryable: Arc<Mutex<Option<E>>> = Arc::new(Mutex::new(None));
        let slot = retryable.clone();
        let (id, fingerprint) = (req.id.clone(), req.fingerprint);
        let job = move |batch: &mut crate::store::sqlite::Batch<'_>| -> Result<Done> {
            let token = match apply_op(batch, &scope, now, &begin)? {
                OpAnswer::Claimed { token } => token,
                other => return Ok(Done::Answered(other)),
            };
            // The handler may bump the counters through this connection (`enqueue_in`): let it
            // see, and leave us, their true values.
            batch.counters.save(batch.conn)?;
            batch.conn.execute_batch("SAVEPOINT oncely_handler")?;
            // While the handler runs, statements that would end or unwind oncely's transaction
            // are refused by SQLite itself.
            batch.conn.authorizer(Some(forbid_transaction_control))?;
            // If a statement still ends the transaction (INSERT OR ROLLBACK, RAISE(ROLLBACK), an
            // I/O error), every later write would autocommit: turn each such commit into a
            // rollback, so nothing the handler writes outside the transaction survives.
            batch.conn.commit_hook(Some(|| true))?;
            let handled = catch_unwind(AssertUnwindSafe(|| handler(&*batch.conn)));
            batch.conn.commit_hook(None::<fn() -> bool>)?;
            batch.conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
            let handled = handled.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            batch.counters.mark_stale();
            if batch.conn.is_autocommit() {
                return Err(Error::invalid(
                    "transaction",
                    "the handler's transaction was ended by one of its statements",
                ));
            }
            let outcome = match handled {
                Ok(result) => {
                    batch.conn.execute_batch("RELEASE oncely_handler")?;
                    if result.len() > config.max_result_bytes {
                        return Err(Error::invalid(
                            "result",
                            format!(
                                "is {} bytes; the limit is {} bytes",
                                result.len(),
                                config.max_result_bytes
                            ),
                        ));
                    }
                    StoredOutcome { status: Status::Succeeded, result: Some(result) }
                }
                Err(Failure { error, permanent }) => {
                    batch.conn.execute_batch("ROLLBACK TO oncely_handler; RELEASE oncely_handler")?;
                    let reason = error.to_string();
                    *slot.lock() = Some(error);
                    if !(permanent && config.cache_policy == crate::inbox::CachePolicy::SuccessAndFailure) {
                        // Roll back the whole job, the claim included: the id stays claimable.
                        return Err(Error::Storage(
                            "the handler failed; its transaction was rolled back".into(),
                        ));
                    }
                    StoredOutcome { status: Status::Failed, result: Some(reason.into_bytes()) }
                }
            };
            let finish = InboxOp::Finish {
                id: id.clone(),
                token,
                fingerprint,
                mode: Mode::ExactlyOnce,
                outcome: outcome.clone(),
                retention: config.retention,
            };
            match apply_op(batch, &scope, now, &finish)? {
                OpAnswer::Finished => Ok(Done::Finished(outcome)),
                other => Err(Error::Storage(format!("store gave an unexpected answer: {other:?}"))),
            }
        };
        let done = match self.store().writer()?.run(job).await {
            Ok(done) => done,
            Err(e) => {
                return Err(match retryable.lock().take() {
                    Some(handler_error) => ProcessError::Handler(handler_error),
                    None => ProcessError::Oncely(e),
                });
            }
        };
        match done {
            Done::Finished(outcome) => {
                self.remember(&req.id, req.fingerprint, outcome.clone(), now.after(self.config().retention));
                match retryable.lock().take() {
                    Some(handler_error) => Err(ProcessError::Handler(handler_error)),
                    None => Ok(Processed { result: outcome.result, replayed: false }),
                }
            }
            Done::Answered(answer) => match self.answer(&req, answer)? {
                crate::inbox::Begin::Duplicate(replay) => replay_result(replay),
                crate::inbox::Begin::InProgress { .. } => {
                    Err(Error::InProgress { id: req.id.clone() }.into())
                }
                crate::inbox::Begin::Conflict => Err(Error::Conflict { id: req.id.clone() }.into()),
                crate::inbox::Begin::Claimed(_) => Err(Error::Storage("claimed twice".into()).into()),
            },
        }
    }
}
