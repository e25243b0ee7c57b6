//! Defaults that every language's binding offers for an argument a caller leaves out, in one
//! place. A binding that takes an optional argument fills it from here, never from a copy.
//!
//! (Defaults that belong to a configuration — a worker's concurrency, an outbox's lease, a retry
//! policy — live with that configuration's `Default`.)

use crate::clock::Timestamp;

/// How many deliveries `Outbox::lease` hands out when the caller does not say: one.
pub const LEASE_MAX: usize = 1;

/// How many dead letters `Outbox::dead_letters` returns when the caller does not say: 100.
pub const DEAD_LETTERS_LIMIT: usize = 100;

/// What a `ManualClock` shows when the caller gives no start: 2023-11-14T22:13:20Z
/// (1,700,000,000,000 ms after the Unix epoch) — a fixed, recent time, so test output is stable.
pub const MANUAL_CLOCK_START: Timestamp = Timestamp(1_700_000_000_000);
