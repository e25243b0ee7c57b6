//! `RetryPolicy`: when to retry and when to give up (the core's `oncely::backoff`).

use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::{AttemptHistory, JitterRng, RetryDecision as CoreDecision};

use crate::errors::{OncelyError, invalid, to_ms};
use crate::text::{HostText, count, ms, opt_ms, timestamp};

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum Backoff {
    /// The same delay every time.
    Fixed {
        /// The delay.
        delay_ms: i64,
    },
    /// `initial + step·(n−1)`, at most `max`.
    Linear {
        /// The first delay.
        initial_ms: i64,
        /// Added per attempt.
        step_ms: i64,
        /// The cap.
        max_ms: i64,
    },
    /// `initial·factor^(n−1)`, at most `max`.
    Exponential {
        /// The first delay.
        initial_ms: i64,
        /// The growth factor (≥ 1).
        factor: f64,
        /// The cap.
        max_ms: i64,
    },
    /// AWS's decorrelated jitter: a random delay between `base` and three times the last one.
    Decorrelated {
        /// The smallest delay.
        base_ms: i64,
        /// The cap.
        max_ms: i64,
    },
}

/// How a delay is randomised (ignored by `Decorrelated`).
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum Jitter {
    /// The delay as computed.
    None,
    /// Uniform in `[0, delay]`.
    Full,
    /// Uniform in `[delay/2, delay]`.
    Equal,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryIn {
        /// The delay.
        delay_ms: i64,
    },
    /// Do not try again: `"max_attempts"` or `"deadline"`.
    GiveUp {
        /// Why.
        reason: String,
    },
}

/// A retry policy: `maxAttempts`, an optional total `deadline`, a backoff and a jitter.
/// Checked when built (`InvalidArgument` when out of range). Deterministic for a given seed in
/// every language.
#[derive(uniffi::Object)]
pub struct RetryPolicy {
    pub(crate) inner: oncely::backoff::RetryPolicy,
}

#[uniffi::export]
impl RetryPolicy {
    /// A policy from its parts.
    #[uniffi::constructor(default(deadline_ms = None))]
    pub fn new(
        max_attempts: u32,
        backoff: Backoff,
        jitter: Jitter,
        deadline_ms: Option<i64>,
    ) -> Result<Arc<Self>, OncelyError> {
        let backoff = match backoff {
            Backoff::Fixed { delay_ms } => {
                oncely::backoff::Backoff::Fixed { delay: ms("delay_ms", delay_ms)? }
            }
            Backoff::Linear { initial_ms, step_ms, max_ms } => oncely::backoff::Backoff::Linear {
                initial: ms("initial_ms", initial_ms)?,
                step: ms("step_ms", step_ms)?,
                max: ms("max_ms", max_ms)?,
            },
            Backoff::Exponential { initial_ms, factor, max_ms } => oncely::backoff::Backoff::Exponential {
                initial: ms("initial_ms", initial_ms)?,
                factor,
                max: ms("max_ms", max_ms)?,
            },
            Backoff::Decorrelated { base_ms, max_ms } => oncely::backoff::Backoff::Decorrelated {
                base: ms("base_ms", base_ms)?,
                max: ms("max_ms", max_ms)?,
            },
        };
        let jitter = match jitter {
            Jitter::None => oncely::backoff::Jitter::None,
            Jitter::Full => oncely::backoff::Jitter::Full,
            Jitter::Equal => oncely::backoff::Jitter::Equal,
        };
        let inner = oncely::backoff::RetryPolicy {
            max_attempts,
            deadline: opt_ms("deadline_ms", deadline_ms)?,
            backoff,
            jitter,
        };
        inner.validate()?;
        Ok(Arc::new(RetryPolicy { inner }))
    }

    /// A policy in the core's JSON form, e.g. `{"max_attempts": 5, "backoff": {"kind":
    /// "exponential", "initial_ms": 100, "factor": 2.0, "max_ms": 10000}, "jitter": "full"}`.
    #[uniffi::constructor]
    pub fn from_json(json: HostText) -> Result<Arc<Self>, OncelyError> {
        let inner: oncely::backoff::RetryPolicy =
            serde_json::from_str(&json.decode("retry")?).map_err(|e| invalid("retry", e.to_string()))?;
        inner.validate()?;
        Ok(Arc::new(RetryPolicy { inner }))
    }

    /// The policy in the core's JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.inner).unwrap_or_default()
    }

    /// The delays before attempts 2 … n+1 from a fresh random stream seeded with `seed`; `n` at
    /// most 100,000 (the core's `MAX_SCHEDULE_LEN`), else `InvalidArgument`.
    pub fn schedule_ms(&self, seed: u64, n: u32) -> Result<Vec<i64>, OncelyError> {
        let schedule = self.inner.schedule_checked(count("seed", seed)?, u64::from(n))?;
        Ok(schedule.into_iter().map(to_ms).collect())
    }

    /// The decision after a failed attempt: `attempts` made so far (the failed one included),
    /// the first at `firstAttemptAtMs`, now `nowMs`; `lastDelayMs` the delay before the failed
    /// attempt; `retryAfterMs` a receiver's Retry-After hint, used as is.
    #[uniffi::method(default(last_delay_ms = None, retry_after_ms = None))]
    pub fn decide(
        &self,
        seed: u64,
        attempts: u32,
        first_attempt_at_ms: i64,
        now_ms: i64,
        last_delay_ms: Option<i64>,
        retry_after_ms: Option<i64>,
    ) -> Result<RetryDecision, OncelyError> {
        let seed = count("seed", seed)?;
        let history = AttemptHistory {
            attempts,
            first_attempt_at: timestamp("first_attempt_at_ms", first_attempt_at_ms)?,
            last_delay: opt_ms("last_delay_ms", last_delay_ms)?,
        };
        let now = timestamp("now_ms", now_ms)?;
        let retry_after: Option<Duration> = opt_ms("retry_after_ms", retry_after_ms)?;
        let mut rng = JitterRng::new(seed);
        Ok(match self.inner.decide(&history, now, retry_after, &mut rng) {
            CoreDecision::RetryIn(d) => RetryDecision::RetryIn { delay_ms: to_ms(d) },
            CoreDecision::GiveUp(why) => RetryDecision::GiveUp {
                reason: serde_json::to_value(why)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            },
        })
    }
}
