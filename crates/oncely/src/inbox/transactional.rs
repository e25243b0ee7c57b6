//! The transactional inbox: the handler's own writes, the processed mark and the stored result
//! commit together or not at all, in one transaction of an SQL store. This is exactly-once
//! without conditions.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::inbox::{
    Failure, Inbox, InboxOp, OpAnswer, ProcessError, Processed, Request, Status, StoredOutcome, replay_result,
};
use crate::mode::Mode;
use crate::sql::{SqlTx, TransactionalStore};
use crate::store::SqliteStore;

enum Done {
    Finished(StoredOutcome),
    /// The simulator's broken rule (`crate::sim_broken`): the claim is still to be completed.
    Outside(InboxOp, StoredOutcome),
    Answered(OpAnswer),
}

impl<S: TransactionalStore> Inbox<S> {
    /// Runs `handler` exactly once per id, inside one transaction of the store.
    ///
    /// The handler gets the open transaction ([`SqlTx`]); everything it writes there (rows,
    /// enqueued messages), the id's processed mark and the stored result are committed in one
    /// commit, or on a retryable failure, a panic or a crash, none of them is. A duplicate gets
    /// the stored result without running the handler. Always exactly-once: a request that names
    /// another mode is refused. The memory store refuses with [`Error::InvalidArgument`].
    ///
    /// The handler runs while the store's transaction is open (on SQLite, on its writer thread),
    /// so it should do only its database work there (no network calls): other callers' commits
    /// wait for it. It cannot end the transaction it is given.
    pub async fn process_in_transaction<F, E>(
        &self,
        req: Request,
        handler: F,
    ) -> Result<Processed, ProcessError<E>>
    where
        F: FnOnce(&mut dyn SqlTx) -> std::result::Result<Vec<u8>, Failure<E>> + Send + 'static,
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
        let job = move |tx: &mut dyn crate::sql::StoreTx| -> Result<Done> {
            let token = match tx.apply_inbox(&scope, now, &begin)? {
                OpAnswer::Claimed { token } => token,
                other => return Ok(Done::Answered(other)),
            };
            let mut handler = Some(handler);
            let mut handled = None;
            tx.run_handler(&mut |sql| {
                let r = handler.take().map(|h| h(sql));
                let keep = matches!(r, Some(Ok(_)));
                handled = r;
                keep
            })?;
            let handled =
                handled.ok_or_else(|| Error::Storage("the transactional handler did not run".into()))?;
            let outcome = match handled {
                Ok(result) => {
                    crate::limits::result(result.len(), config.max_result_bytes)?;
                    StoredOutcome { status: Status::Succeeded, result: Some(result) }
                }
                Err(Failure { error, permanent }) => {
                    let reason = error.to_string().into_bytes();
                    *slot.lock() = Some(error);
                    // Roll back the whole job, the claim included: the id stays claimable.
                    let rolled_back =
                        || Error::Storage("the handler failed; its transaction was rolled back".into());
                    if !permanent {
                        return Err(rolled_back());
                    }
                    // A permanent failure: stored or given back, as the cache policy decides.
                    let policy = config.cache_policy;
                    if policy.stores_failures() {
                        crate::limits::result(reason.len(), config.max_result_bytes)?;
                    }
                    let stored = StoredOutcome { status: Status::Failed, result: Some(reason.clone()) };
                    let fail = InboxOp::Fail {
                        id: id.clone(),
                        token,
                        fingerprint,
                        mode: Mode::ExactlyOnce,
                        reason,
                        policy,
                        retention: config.retention,
                    };
                    return match tx.apply_inbox(&scope, now, &fail)? {
                        OpAnswer::Finished => Ok(Done::Finished(stored)),
                        OpAnswer::Released => Err(rolled_back()),
                        other => Err(Error::Storage(format!("store gave an unexpected answer: {other:?}"))),
                    };
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
            if crate::sim_broken::is(crate::sim_broken::Broken::CompleteOutsideTransaction) {
                return Ok(Done::Outside(finish, outcome));
            }
            match tx.apply_inbox(&scope, now, &finish)? {
                OpAnswer::Finished => Ok(Done::Finished(outcome)),
                other => Err(Error::Storage(format!("store gave an unexpected answer: {other:?}"))),
            }
        };
        let done = match self.store().transaction(job).await {
            Ok(done) => done,
            Err(e) => {
                return Err(match retryable.lock().take() {
                    Some(handler_error) => ProcessError::Handler(handler_error),
                    None => ProcessError::Oncely(e),
                });
            }
        };
        let done = match done {
            Done::Outside(finish, outcome) => {
                self.store().apply_one(&self.config().scope, now, finish).await?;
                Done::Finished(outcome)
            }
            done => done,
        };
        match done {
            Done::Outside(..) => unreachable!("completed above"),
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

impl Inbox<SqliteStore> {
    /// [`Inbox::process_in_transaction`] with the SQLite connection itself: the handler gets the
    /// connection with the transaction open, and must not COMMIT or ROLLBACK it (SQLite refuses
    /// such statements while it runs).
    pub async fn process_transactional<F, E>(
        &self,
        req: Request,
        handler: F,
    ) -> Result<Processed, ProcessError<E>>
    where
        F: FnOnce(&rusqlite::Connection) -> std::result::Result<Vec<u8>, Failure<E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.process_in_transaction(req, move |tx| match tx.sqlite() {
            Some(conn) => handler(conn),
            // An SQLite store always lends an SQLite transaction.
            None => unreachable!("an SQLite store lent a transaction without its connection"),
        })
        .await
    }
}
