//! Passing store trouble inside the inbox's own calls: a transient store error (a lost or
//! refused connection, a server restarting, SQLite busy past its timeout) is retried here, with a
//! short backoff, wherever a retry cannot change an outcome — so a handler's `begin`, `finish`,
//! `release` or lease extension rides out a blip instead of failing the delivery.
//!
//! Why every inbox operation may be retried:
//! - a retry runs the same operation again through [`crate::records::decide`] against the
//!   record as committed, so it can never write what a first try would not have written;
//! - when the first try was applied but its answer was lost (an *ambiguous commit*), the second
//!   try sees its own write: a `begin` then answers `InProgress` (exactly-once: its own claim,
//!   held until the lease runs out) or `Duplicate` (at-most-once: its own mark) — both answers the
//!   mode already allows for a delivery whose caller vanished; an `extend` simply extends again;
//!   a `finish` or `release` sees a record it already completed or removed and would answer
//!   `LeaseLost`, so that answer is checked against the record ([`confirm`]) before it is given.
//!
//! What is not retried here: the transactional inbox (its handler's writes are in the failed
//! transaction; the caller sees a transient [`crate::Error::StorageUnavailable`], whose
//! [`crate::Error::is_transient`] says a retry of the whole delivery is safe).

use std::time::{Duration, Instant};

use crate::clock::Timestamp;
use crate::error::Result;
use crate::records::{InboxOp, OpAnswer, RecordState};
use crate::store::InboxStore;

use super::Inbox;

/// The first pause after a transient error; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// How long an operation keeps trying, from its first transient error, before that error is
/// given to the caller. (Counted from the first error rather than the first try, so that a try
/// that works — nearly every one — costs no reading of the clock.)
const PATIENCE: Duration = Duration::from_secs(3);

/// The answers to `ops`, applied in one commit, and the time they were applied at: `now` (the
/// caller's reading of the inbox's clock) on the first try, the clock's time on a retry.
pub(super) async fn apply<S: InboxStore>(
    inbox: &Inbox<S>,
    ops: Vec<InboxOp>,
    now: Timestamp,
) -> Result<(Vec<OpAnswer>, Timestamp)> {
    let scope = &inbox.inner.config.scope;
    let (answers, now, ambiguous) =
        retrying(inbox, now, |now| inbox.store().apply(scope, now, ops.clone())).await?;
    if !ambiguous {
        return Ok((answers, now));
    }
    let mut confirmed = Vec::with_capacity(answers.len());
    for (op, answer) in ops.iter().zip(answers) {
        confirmed.push(confirm(inbox, op, answer).await?);
    }
    Ok((confirmed, now))
}

/// One operation, as [`apply`] does it (through the store's single-operation path, which
/// borrows the operation: a retry needs no copy of it).
pub(super) async fn apply_one<S: InboxStore>(
    inbox: &Inbox<S>,
    op: &InboxOp,
    now: Timestamp,
) -> Result<(OpAnswer, Timestamp)> {
    let scope = &inbox.inner.config.scope;
    let (answer, now, ambiguous) =
        retrying(inbox, now, |now| inbox.store().apply_ref(scope, now, op)).await?;
    let answer = if ambiguous { confirm(inbox, op, answer).await? } else { answer };
    Ok((answer, now))
}

/// Runs `attempt` until it succeeds, fails for good, or runs out of patience — first at `now`,
/// then at the inbox's current time for each retry; says whether an earlier try failed
/// transiently (its write may have been applied).
async fn retrying<S: InboxStore, T, F: std::future::Future<Output = Result<T>>>(
    inbox: &Inbox<S>,
    mut now: Timestamp,
    mut attempt: impl FnMut(Timestamp) -> F,
) -> Result<(T, Timestamp, bool)> {
    let mut started = None;
    let mut pause = FIRST_PAUSE;
    let mut ambiguous = false;
    loop {
        match attempt(now).await {
            Ok(answer) => return Ok((answer, now, ambiguous)),
            Err(e)
                if e.is_transient()
                    && started.get_or_insert_with(Instant::now).elapsed() + pause <= PATIENCE =>
            {
                tracing::info!(scope = %inbox.inner.config.scope, error = %e, "oncely: store unavailable; the inbox retries");
                crate::clock::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                ambiguous = true;
                now = inbox.now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// The answer a retried operation would have had on its first try: a `LeaseLost` to a `finish`
/// (or a failure stored as one) whose own completion is the one stored, or to a `release` whose
/// claim is gone, was that first try's success.
async fn confirm<S: InboxStore>(inbox: &Inbox<S>, op: &InboxOp, answer: OpAnswer) -> Result<OpAnswer> {
    if answer != OpAnswer::LeaseLost {
        return Ok(answer);
    }
    let (id, token, finishing) = match op {
        InboxOp::Finish { id, token, .. } | InboxOp::Fail { id, token, .. } => (id, *token, true),
        InboxOp::Release { id, token, .. } => (id, *token, false),
        _ => return Ok(answer),
    };
    let stored = inbox.store().get(&inbox.inner.config.scope, id).await?;
    Ok(match stored {
        Some(rec) if finishing && rec.token == token && matches!(rec.state, RecordState::Completed(_)) => {
            OpAnswer::Finished
        }
        // The claim is gone: the first try's release (or a failure that the success-only policy
        // turned into one) removed it.
        None if !finishing || matches!(op, InboxOp::Fail { .. }) => OpAnswer::Released,
        _ => answer,
    })
}
