//! The outbox's rules, written once against [`OutboxTx`]: every store runs exactly this code
//! inside its own atomic step, so no backend can deliver differently.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::backoff::{AttemptHistory, GiveUp, JitterRng, RetryDecision, RetryPolicy};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::message::Message;
use crate::mode::Mode;
use crate::outbox::{Event, EventKind};
use crate::records::{Durability, MessageState, OutboxRecord};
use crate::store::OutboxTx;

/// What happens to a message whose retries are exhausted (or that failed permanently) when the
/// outbox delivers in FIFO order per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonPolicy {
    /// Dead-letter it and hold back the rest of its key until the dead letter is replayed or
    /// purged: order is never broken.
    Block,
    /// Dead-letter it and go on with the rest of its key.
    DeadLetter,
    /// Set it aside: it goes to the back of its key's line with fresh attempts, deliverable again
    /// `after` from now; the rest of the key goes on meanwhile.
    Park {
        /// How long it stays aside.
        after: Duration,
    },
}

/// In what order messages are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Any order (by due time); many messages of one key may be in flight at once.
    #[default]
    Unordered,
    /// At most one message per `key` in flight, in enqueue order; messages without a key are
    /// unordered. A poison message is handled by the policy.
    FifoPerKey(PoisonPolicy),
}

impl Ordering {
    /// The ordering named as the bindings name it: `"unordered"` (also when no name is given),
    /// or `"fifo_per_key"` with a poison policy `"block"` (default), `"dead_letter"` or `"park"`
    /// (which needs `park_after`).
    pub fn from_names(
        ordering: Option<&str>,
        poison: Option<&str>,
        park_after: Option<Duration>,
    ) -> Result<Ordering> {
        match ordering.unwrap_or("unordered") {
            "unordered" => {
                if poison.is_some() || park_after.is_some() {
                    return Err(Error::invalid("poison", "applies only to ordering=\"fifo_per_key\""));
                }
                Ok(Ordering::Unordered)
            }
            "fifo_per_key" => Ok(Ordering::FifoPerKey(match poison.unwrap_or("block") {
                "block" => PoisonPolicy::Block,
                "dead_letter" => PoisonPolicy::DeadLetter,
                "park" => PoisonPolicy::Park {
                    after: park_after
                        .ok_or_else(|| Error::invalid("park_after", "is required with poison=\"park\""))?,
                },
                other => {
                    return Err(Error::invalid(
                        "poison",
                        format!(
                            "unknown poison policy `{}` (expected block, dead_letter or park)",
                            crate::text::quote(other)
                        ),
                    ));
                }
            })),
            other => Err(Error::invalid(
                "ordering",
                format!(
                    "unknown ordering `{}` (expected unordered or fifo_per_key)",
                    crate::text::quote(other)
                ),
            )),
        }
    }
}

/// The settings the rules need, copied from the outbox's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub mode: Mode,
    pub retry: RetryPolicy,
    pub ordering: Ordering,
    pub seed: u64,
    pub dedup_window: Duration,
}

/// How a worker settles a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Delivered: the message is done.
    Ack,
    /// The attempt failed; retry by the policy (or after the handler's hint).
    Retry {
        /// A delay hint (e.g. HTTP Retry-After) that replaces the backoff.
        after: Option<Duration>,
        /// What went wrong, kept with the message.
        error: String,
    },
    /// Not now (rate limited): deliver again after `after` without using up an attempt.
    Snooze {
        /// How long to wait.
        after: Duration,
    },
    /// A permanent failure: no retry helps.
    Fail {
        /// Why.
        reason: String,
    },
    /// Keep the lease for `lease` more from now.
    Extend {
        /// The new lease length.
        lease: Duration,
    },
    /// Give the message back unattempted (graceful shutdown).
    Release,
}

/// What a settle names, as the bindings receive it: an action and its fields.
#[derive(Debug, Clone, Default)]
pub struct SettleFields {
    /// `retry`'s hint, and `snooze`'s delay (required there).
    pub after: Option<Duration>,
    /// `retry`'s error text (default: empty).
    pub error: Option<String>,
    /// `fail`'s reason (default: empty).
    pub reason: Option<String>,
    /// `extend`'s new lease (required there).
    pub lease: Option<Duration>,
}

impl Settle {
    /// How far this settle's commit must reach (see [`Durability`]): extending or releasing a
    /// lease needs only to be visible — lost in a power cut, the lease simply runs out, as it
    /// may anyway; every other settle ends or reschedules an attempt and is durable.
    pub fn durability(&self) -> Durability {
        match self {
            Settle::Extend { .. } | Settle::Release => Durability::Visible,
            Settle::Ack | Settle::Retry { .. } | Settle::Snooze { .. } | Settle::Fail { .. } => {
                Durability::Durable
            }
        }
    }

    /// The stable names of the settle actions, as every binding spells them.
    pub const ACTIONS: [&'static str; 6] = ["ack", "retry", "snooze", "fail", "extend", "release"];

    /// The settle an action name and its fields describe (what a binding's
    /// `settle(id, token, action, ...)` passes). An unknown action, or one whose required field
    /// is missing (`snooze` without `after`, `extend` without `lease`), is `invalid_argument`.
    pub fn from_action(action: &str, fields: SettleFields) -> Result<Settle> {
        let need = |name: &'static str, v: Option<Duration>| {
            v.ok_or_else(|| Error::invalid(name, format!("is required for `{action}`")))
        };
        Ok(match action {
            "ack" => Settle::Ack,
            "retry" => Settle::Retry { after: fields.after, error: fields.error.unwrap_or_default() },
            "snooze" => Settle::Snooze { after: need("after", fields.after)? },
            "fail" => Settle::Fail { reason: fields.reason.unwrap_or_default() },
            "extend" => Settle::Extend { lease: need("lease", fields.lease)? },
            "release" => Settle::Release,
            other => {
                return Err(Error::invalid(
                    "action",
                    format!(
                        "unknown action `{}` (expected {})",
                        crate::text::quote(other),
                        "ack, retry, snooze, fail, extend or release"
                    ),
                ));
            }
        })
    }
}

/// The result of an enqueue. (The same id with a different payload is not an answer but
/// [`Error::Conflict`], as in the inbox.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The message was added.
    Queued,
    /// A message with this id and payload is already in the queue (pending, in flight, or a
    /// dead letter, which a replay brings back), or earlier in the same batch: no second copy.
    AlreadyQueued,
    /// A message with this id and payload left the queue within the dedup window — acknowledged,
    /// or attempted once under at-most-once: it is not queued again.
    AlreadyDelivered,
}

impl Enqueued {
    /// The stable snake_case name: `"queued"`, `"already_queued"` or `"already_delivered"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Enqueued::Queued => "queued",
            Enqueued::AlreadyQueued => "already_queued",
            Enqueued::AlreadyDelivered => "already_delivered",
        }
    }
}

/// The result of a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The queued message was removed before delivery.
    Cancelled,
    /// It is being delivered right now; it was not cancelled.
    InFlight,
    /// No pending message has that id (never queued, delivered, or dead).
    NotFound,
}

impl Cancelled {
    /// The stable snake_case name: `"cancelled"`, `"in_flight"` or `"not_found"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Cancelled::Cancelled => "cancelled",
            Cancelled::InFlight => "in_flight",
            Cancelled::NotFound => "not_found",
        }
    }
}

fn event(events: &mut Vec<Event>, id: &str, at: Timestamp, kind: EventKind) {
    events.push(Event { id: id.to_owned(), at, kind });
}

pub(crate) fn enqueue(
    tx: &mut dyn OutboxTx,
    messages: Vec<Message>,
    rules: &Rules,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<Vec<Enqueued>> {
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let stored = tx.get_many(&ids)?;
    // Ids not in the queue may have left it within the dedup window (of whichever handle
    // delivered them: the mark carries its own end).
    let absent: Vec<&str> = ids.iter().zip(&stored).filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
    let marks = if absent.is_empty() { Vec::new() } else { tx.sent_marks(&absent, now)? };
    let mut sent: HashMap<&str, Fingerprint> =
        absent.iter().zip(marks).filter_map(|(id, m)| m.map(|fp| (*id, fp))).collect();
    // What each id stands for so far: the stored message, an earlier one of this batch, or a
    // sent mark. The same id with another payload is a conflict wherever it was seen.
    let mut known: HashMap<&str, (&[u8], Enqueued)> = HashMap::with_capacity(ids.len());
    let mut answers = Vec::with_capacity(messages.len());
    for ((message, id), rec) in messages.iter().zip(&ids).zip(&stored) {
        let answer = if let Some((payload, answer)) = known.get(id) {
            same_payload(id, payload, &message.payload)?;
            *answer
        } else if let Some(rec) = rec {
            same_payload(id, &rec.message.payload, &message.payload)?;
            Enqueued::AlreadyQueued
        } else if let Some(fp) = sent.remove(id) {
            if fp != Fingerprint::of(&message.payload) {
                return Err(Error::Conflict { id: (*id).to_owned() });
            }
            Enqueued::AlreadyDelivered
        } else {
            Enqueued::Queued
        };
        let again = if answer == Enqueued::Queued { Enqueued::AlreadyQueued } else { answer };
        known.entry(id).or_insert((&message.payload, again));
        answers.push(answer);
    }
    let fresh = answers.iter().filter(|a| **a == Enqueued::Queued).count();
    let mut seqs = tx.next_seqs(fresh)?.into_iter();
    for (message, answer) in messages.into_iter().zip(&answers) {
        if *answer != Enqueued::Queued {
            continue;
        }
        let seq =
            seqs.next().ok_or_else(|| Error::Storage("the store gave too few queue positions".into()))?;
        let rec = OutboxRecord {
            seq,
            state: MessageState::Ready,
            first_attempt_at: None,
            last_delay: None,
            last_error: None,
            mode: Some(rules.mode),
            max_attempts: Some(rules.retry.max_attempts),
            dedup_window: Some(rules.dedup_window),
            message,
        };
        tx.insert(&rec)?;
        event(events, &rec.message.id, now, EventKind::Enqueued);
    }
    Ok(answers)
}

/// An id seen again must come with the payload it was first seen with.
fn same_payload(id: &str, first: &[u8], again: &[u8]) -> Result<()> {
    if first == again { Ok(()) } else { Err(Error::Conflict { id: id.to_owned() }) }
}

/// Removes a message that left the queue for good (acknowledged, or dropped under
/// at-most-once), remembering its id for the dedup window so that an enqueue of it is answered
/// from the mark instead of queueing it again.
fn remove_sent(tx: &mut dyn OutboxTx, rec: &OutboxRecord, rules: &Rules, now: Timestamp) -> Result<()> {
    tx.delete(&rec.message.id)?;
    let window = rec.dedup_window_or(rules.dedup_window);
    if !window.is_zero() {
        tx.remember_sent(&rec.message.id, Fingerprint::of(&rec.message.payload), now.after(window))?;
    }
    Ok(())
}

fn exhausted(rec: &OutboxRecord, policy: &RetryPolicy, now: Timestamp) -> Option<GiveUp> {
    if rec.message.attempts >= rec.max_attempts_or(policy.max_attempts) {
        return Some(GiveUp::MaxAttempts);
    }
    match (policy.deadline, rec.first_attempt_at) {
        // As in `RetryPolicy::decide`: an attempt may start exactly at the deadline.
        (Some(deadline), Some(first)) if now > first.after(deadline) => Some(GiveUp::Deadline),
        _ => None,
    }
}

fn give_up(
    tx: &mut dyn OutboxTx,
    mut rec: OutboxRecord,
    reason: String,
    rules: &Rules,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<()> {
    match rules.ordering {
        // Parking keeps a key's line moving; a message without a key has no line: dead-letter it.
        Ordering::FifoPerKey(PoisonPolicy::Park { after }) if rec.message.key.is_some() => {
            rec.seq = tx.next_seq()?;
            rec.message.attempts = 0;
            rec.first_attempt_at = None;
            rec.last_delay = None;
            rec.last_error = Some(reason);
            rec.message.available_at = now.after(after);
            rec.state = MessageState::Ready;
            event(events, &rec.message.id, now, EventKind::Parked { until: rec.message.available_at });
        }
        _ => {
            event(events, &rec.message.id, now, EventKind::DeadLettered { reason: reason.clone() });
            rec.state = MessageState::Dead { reason };
        }
    }
    tx.update(&rec)
}

/// Leases up to `max` due messages. At-most-once removes each leased message from the queue
/// before it is handed out (it is never delivered again); the other modes lease it with a fresh
/// fencing token until `now + lease`. Leases that ran out first become deliverable again, or
/// dead letters when they ran out on the last attempt. Retries (messages attempted before) are
/// leased only while `retries_allowed` lasts. Messages whose id `skip` holds are passed over (a
/// worker's `run_until_idle` uses it for what it snoozed itself, so a run always ends).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lease(
    tx: &mut dyn OutboxTx,
    max: usize,
    lease: Duration,
    retries_allowed: usize,
    skip: &HashSet<String>,
    rules: &Rules,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<(Vec<OutboxRecord>, usize)> {
    for mut rec in tx.expired_leases(now, 1024)? {
        let MessageState::Leased { lease_until, .. } = rec.state else { continue };
        event(events, &rec.message.id, now, EventKind::LeaseExpired);
        if rec.mode_or(rules.mode) == Mode::AtMostOnce && !marks_after() {
            // Marked done when leased: never delivered again. Its attempt is lost.
            remove_sent(tx, &rec, rules, now)?;
            event(events, &rec.message.id, now, EventKind::Dropped);
        } else if let Some(why) = exhausted(&rec, &rules.retry, now) {
            let reason = match why {
                GiveUp::MaxAttempts => "the lease of the last attempt ran out",
                GiveUp::Deadline => "the lease ran out past the deadline",
            };
            give_up(tx, rec, reason.to_owned(), rules, now, events)?;
        } else {
            rec.state = MessageState::Ready;
            rec.message.available_at = lease_until;
            tx.update(&rec)?;
        }
    }
    let mut chosen = Vec::new();
    let mut retries_used = 0;
    if max == 0 {
        return Ok((chosen, retries_used));
    }
    // Without FIFO or a budget every due message is eligible: fetch just what is wanted.
    let may_skip = matches!(rules.ordering, Ordering::FifoPerKey(_))
        || retries_allowed != usize::MAX
        || !skip.is_empty();
    let page = if may_skip { max.saturating_mul(4).clamp(64, 4096) } else { max.min(4096) };
    let mut after = None;
    'pages: for _ in 0..16 {
        let candidates = tx.due(now, after, page)?;
        let exhausted_page = candidates.len() < page;
        for rec in candidates {
            after = Some((rec.message.available_at, rec.seq));
            if skip.contains(&rec.message.id) {
                continue;
            }
            if let (Ordering::FifoPerKey(poison), Some(key)) = (rules.ordering, rec.message.key.as_deref()) {
                // Choosing a message does not change its key's head (a leased message still
                // holds its key), so the heads read here are those after the chosen leases.
                if tx.key_head(key, poison == PoisonPolicy::Block)? != Some(rec.seq) {
                    continue; // a predecessor of its key is pending, in flight or blocking
                }
            }
            let is_retry = rec.message.attempts > 0;
            if is_retry && retries_used >= retries_allowed {
                continue; // the retry budget is spent: first attempts go first
            }
            retries_used += usize::from(is_retry);
            chosen.push(rec);
            if chosen.len() == max {
                break 'pages;
            }
        }
        if exhausted_page {
            break;
        }
    }
    if chosen.len() < max {
        // The queue has room to spare: collect sent marks whose window ended (a queue that is
        // always full collects them at its next lull; an ended mark is ignored meanwhile).
        tx.forget_sent(now, 256)?;
    }
    let tokens = tx.next_tokens(chosen.len())?;
    if tokens.len() != chosen.len() {
        return Err(Error::Storage("the store gave too few fencing tokens".into()));
    }
    for (rec, token) in chosen.iter_mut().zip(tokens) {
        rec.message.attempts = rec.message.attempts.saturating_add(1);
        rec.first_attempt_at.get_or_insert(now);
        // In at-most-once this lease is the "done" mark, written before the attempt: whatever
        // happens next (failure, crash, lease running out), the message is never delivered
        // again. It still holds its key (FIFO) until it is settled or its lease runs out.
        rec.state = MessageState::Leased { token, lease_until: now.after(lease) };
        if Durability::of_attempt(rec.mode_or(rules.mode)) == Durability::Durable {
            tx.require_durable(); // the at-most-once mark must be on disk before the attempt
        }
        tx.update(rec)?;
        event(events, &rec.message.id, now, EventKind::Leased { attempt: rec.message.attempts });
    }
    Ok((chosen, retries_used))
}

/// What a settle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Done and removed.
    Acked,
    /// Scheduled again at `at`.
    Retrying {
        /// When it is deliverable again.
        at: Timestamp,
    },
    /// Given up: dead-lettered, or parked under a FIFO park policy.
    GaveUp,
    /// Snoozed or released: deliverable again at `at`, attempt not counted.
    Returned {
        /// When it is deliverable again.
        at: Timestamp,
    },
    /// The lease now runs until `until`.
    Extended {
        /// The new end of the lease.
        until: Timestamp,
    },
    /// At-most-once: the message had already left the queue; a failure means it is lost.
    Dropped,
}

impl Settled {
    /// The stable snake_case name of this kind of settle, as every binding reports it:
    /// `"acked"`, `"retrying"`, `"gave_up"`, `"returned"`, `"extended"` or `"dropped"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Settled::Acked => "acked",
            Settled::Retrying { .. } => "retrying",
            Settled::GaveUp => "gave_up",
            Settled::Returned { .. } => "returned",
            Settled::Extended { .. } => "extended",
            Settled::Dropped => "dropped",
        }
    }

    /// The time this settle names, if any: when a retried or returned message is deliverable
    /// again, or when an extended lease ends.
    pub const fn at(&self) -> Option<Timestamp> {
        match self {
            Settled::Retrying { at } | Settled::Returned { at } => Some(*at),
            Settled::Extended { until } => Some(*until),
            _ => None,
        }
    }
}

pub(crate) fn settle(
    tx: &mut dyn OutboxTx,
    id: &str,
    token: u64,
    how: Settle,
    rules: &Rules,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<Settled> {
    let mut rec = match tx.get(id)? {
        Some(rec) if matches!(rec.state, MessageState::Leased { token: t, .. } if crate::sim_broken::fenced(t, token)) => {
            rec
        }
        _ => return Err(Error::LeaseLost { id: id.to_owned(), token }),
    };
    let attempts = rec.message.attempts;
    if rec.mode_or(rules.mode) == Mode::AtMostOnce && !marks_after() {
        // Never retried: an ack completes it, any other outcome loses it (by design).
        return Ok(match how {
            Settle::Extend { lease } => {
                let until = now.after(lease);
                rec.state = MessageState::Leased { token, lease_until: until };
                tx.update(&rec)?;
                Settled::Extended { until }
            }
            Settle::Ack => {
                remove_sent(tx, &rec, rules, now)?;
                event(events, id, now, EventKind::Acked);
                Settled::Acked
            }
            _ => {
                remove_sent(tx, &rec, rules, now)?;
                event(events, id, now, EventKind::Dropped);
                Settled::Dropped
            }
        });
    }
    match how {
        Settle::Ack => {
            remove_sent(tx, &rec, rules, now)?;
            event(events, id, now, EventKind::Acked);
            Ok(Settled::Acked)
        }
        Settle::Retry { after, error } => {
            let history = AttemptHistory {
                attempts,
                first_attempt_at: rec.first_attempt_at.unwrap_or(now),
                last_delay: rec.last_delay,
            };
            let mut rng = JitterRng::for_key(rules.seed, &format!("{id}#{attempts}"));
            rec.last_error = Some(error.clone());
            // The message's own attempt limit, whatever this handle's policy says.
            let policy =
                RetryPolicy { max_attempts: rec.max_attempts_or(rules.retry.max_attempts), ..rules.retry };
            match policy.decide(&history, now, after, &mut rng) {
                RetryDecision::RetryIn(delay) => {
                    // A hint can be anything; every store keeps delays up to 2^53 - 1 ms exactly.
                    let delay = delay.min(Duration::from_millis(crate::backoff::MAX_BACKOFF_MS));
                    rec.state = MessageState::Ready;
                    rec.message.available_at = now.after(delay);
                    rec.last_delay = Some(delay);
                    let at = rec.message.available_at;
                    tx.update(&rec)?;
                    event(events, id, now, EventKind::Retried { at, error });
                    Ok(Settled::Retrying { at })
                }
                RetryDecision::GiveUp(why) => {
                    let reason = match why {
                        GiveUp::MaxAttempts => format!("gave up after {attempts} attempts: {error}"),
                        GiveUp::Deadline => format!("gave up at the deadline: {error}"),
                    };
                    give_up(tx, rec, reason, rules, now, events)?;
                    Ok(Settled::GaveUp)
                }
            }
        }
        Settle::Fail { reason } => {
            rec.last_error = Some(reason.clone());
            give_up(tx, rec, format!("failed permanently: {reason}"), rules, now, events)?;
            Ok(Settled::GaveUp)
        }
        Settle::Snooze { after } => {
            rec.state = MessageState::Ready;
            rec.message.attempts = attempts.saturating_sub(1);
            if rec.message.attempts == 0 {
                rec.first_attempt_at = None; // not attempted yet: the deadline has not started
            }
            rec.message.available_at = now.after(after);
            let at = rec.message.available_at;
            tx.update(&rec)?;
            event(events, id, now, EventKind::Snoozed { until: at });
            Ok(Settled::Returned { at })
        }
        Settle::Release => {
            rec.state = MessageState::Ready;
            rec.message.attempts = attempts.saturating_sub(1);
            if rec.message.attempts == 0 {
                rec.first_attempt_at = None; // not attempted yet: the deadline has not started
            }
            rec.message.available_at = now;
            tx.update(&rec)?;
            event(events, id, now, EventKind::Released);
            Ok(Settled::Returned { at: now })
        }
        Settle::Extend { lease } => {
            let until = now.after(lease);
            rec.state = MessageState::Leased { token, lease_until: until };
            tx.update(&rec)?;
            Ok(Settled::Extended { until })
        }
    }
}

pub(crate) fn cancel(
    tx: &mut dyn OutboxTx,
    id: &str,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<Cancelled> {
    let expired =
        |s: &MessageState| matches!(s, MessageState::Leased { lease_until, .. } if *lease_until <= now);
    Ok(match tx.get(id)?.map(|r| r.state) {
        // A lease that ran out holds nothing: the message is queued again.
        Some(state) if state == MessageState::Ready || expired(&state) => {
            tx.delete(id)?;
            event(events, id, now, EventKind::Cancelled);
            Cancelled::Cancelled
        }
        Some(MessageState::Leased { .. }) => Cancelled::InFlight,
        Some(MessageState::Dead { .. } | MessageState::Ready) | None => Cancelled::NotFound,
    })
}

/// Puts a dead letter back in the queue with its attempts reset, deliverable now: at the back of
/// its key's line, or (under [`PoisonPolicy::Block`]) at its old place at the head. Says whether
/// `id` was a dead letter.
pub(crate) fn replay(
    tx: &mut dyn OutboxTx,
    id: &str,
    rules: &Rules,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<bool> {
    let Some(mut rec) = tx.get(id)?.filter(|r| matches!(r.state, MessageState::Dead { .. })) else {
        return Ok(false);
    };
    if !matches!(rules.ordering, Ordering::FifoPerKey(PoisonPolicy::Block)) {
        // Its key has moved on meanwhile: it joins the back of the line. (Under `Block` nothing
        // of its key moved, so it keeps its place at the head.)
        rec.seq = tx.next_seq()?;
    }
    rec.state = MessageState::Ready;
    rec.message.attempts = 0;
    rec.message.available_at = now;
    rec.first_attempt_at = None;
    rec.last_delay = None;
    tx.update(&rec)?;
    event(events, id, now, EventKind::Replayed);
    Ok(true)
}

/// Deletes the dead letters named (all of them when `ids` is `None`); says how many went.
pub(crate) fn purge_dead(
    tx: &mut dyn OutboxTx,
    ids: Option<Vec<String>>,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Result<u64> {
    let ids = match ids {
        Some(ids) => ids,
        None => {
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = tx.dead_letters(after, 1024)?;
                after = page.last().map(|r| r.seq);
                let done = page.len() < 1024;
                all.extend(page.into_iter().map(|r| r.message.id));
                if done {
                    break all;
                }
            }
        }
    };
    let mut purged = 0;
    for id in ids {
        if tx.get(&id)?.is_some_and(|r| matches!(r.state, MessageState::Dead { .. })) {
            tx.delete(&id)?;
            event(events, &id, now, EventKind::Purged);
            purged += 1;
        }
    }
    Ok(purged)
}

/// The simulator's broken at-most-once (`crate::sim_broken`): treated as at-least-once.
fn marks_after() -> bool {
    crate::sim_broken::is(crate::sim_broken::Broken::AtMostOnceMarksAfter)
}
