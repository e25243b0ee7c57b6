//! Time as oncely sees it: an injectable [`Clock`] and millisecond [`Timestamp`]s.
//!
//! Every decision (lease expiry, retention, backoff deadlines) is taken against the clock the
//! caller injected, so tests drive time with a [`ManualClock`] and replay identically.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch (UTC). Plain data, identical in every language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp `d` later, saturating instead of overflowing.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_ms(d)))
    }

    /// Milliseconds from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// A duration as whole milliseconds, saturating at `i64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A source of "now". Implementations must be cheap and thread-safe.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Whether this clock stands for "real time" ([`SystemClock`]) rather than a time the
    /// caller drives: an inbox or outbox opened on it judges deadlines by its store's clock
    /// instead — on PostgreSQL the database server's — and never by the host's.
    fn is_real_time(&self) -> bool {
        false
    }
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(duration_ms(since))
    }

    fn is_real_time(&self) -> bool {
        true
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A manual clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    /// Moves the clock forward by `d`, stopping at the latest time a timestamp can show (it
    /// never wraps around into the past).
    pub fn advance(&self, d: Duration) {
        let by = duration_ms(d);
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(by)));
    }

    /// Sets the clock to `t` (which may be earlier: tests use this to model a clock jump).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// A manual clock showing [`crate::defaults::MANUAL_CLOCK_START`].
    fn default() -> Self {
        ManualClock::new(crate::defaults::MANUAL_CLOCK_START)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A shared, type-erased clock.
pub type SharedClock = Arc<dyn Clock>;

/// Converts a caller-supplied number of seconds into a [`Duration`], refusing NaN, infinities,
/// negatives and values too large to represent. Bindings use this so every language rejects the
/// same inputs with the same message.
pub fn duration_from_secs_f64(name: &'static str, secs: f64) -> Result<Duration> {
    if !secs.is_finite() {
        return Err(Error::invalid(name, format!("must be a finite number of seconds, got {secs}")));
    }
    if secs < 0.0 {
        return Err(Error::invalid(name, format!("must not be negative, got {secs}")));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::invalid(name, format!("is too large: {secs} seconds")))
}

/// Refuses a zero duration for a parameter that must be positive.
pub(crate) fn require_positive(name: &'static str, d: Duration) -> Result<Duration> {
    if d.is_zero() {
        Err(Error::invalid(name, "must be greater than zero"))
    } else if d.as_millis() == 0 {
        Err(Error::invalid(name, "must be at least one millisecond"))
    } else {
        Ok(d)
    }
}

/// Sleeps for `d` in real time without needing any particular executor (see [`crate::timer`]),
/// so waiting works under tokio, napi, pyo3 or a plain `block_on`.
pub(crate) async fn sleep(d: Duration) {
    crate::timer::sleep(d).await
}
