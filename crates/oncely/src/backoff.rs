//! Retry policies: when to try a failed message again, and when to give up.
//!
//! A [`RetryPolicy`] combines a stop rule (`max_attempts`, an optional total `deadline`) with a
//! [`Backoff`] curve and a [`Jitter`] mode. Every random choice comes from a [`JitterRng`], a
//! seeded ChaCha8 stream, so a given seed (or seed and message id, see [`JitterRng::for_key`])
//! always yields the same delays, in every language binding.
//!
//! # Exact arithmetic
//!
//! The delays are pinned by cross-language test vectors, so the computation is specified exactly.
//! With `n` the number of attempts already made (`n >= 1`; `0` is treated as `1`), every duration
//! taken as its whole number of milliseconds (sub-millisecond parts are dropped), and all
//! arithmetic done in `f64` milliseconds:
//!
//! | backoff | base |
//! |---|---|
//! | `Fixed { delay }` | `delay` |
//! | `Linear { initial, step, max }` | `min(initial + step * (n - 1), max)` |
//! | `Exponential { initial, factor, max }` | `min(initial * factor.powf(n - 1), max)` (an overflow to infinity saturates at `max`) |
//!
//! then, with `u = rng.next_unit()` drawn only when needed:
//!
//! | jitter | delay | draws |
//! |---|---|---|
//! | `None` | `base` | 0 |
//! | `Full` | `u * base` | 1 |
//! | `Equal` | `base / 2 + u * (base / 2)` | 1 |
//!
//! `Decorrelated { base, max }` ("decorrelated jitter") ignores the [`Jitter`] setting:
//! `prev = last_delay.unwrap_or(base)`, `hi = max(prev * 3, base)`,
//! `delay = min(max, base + u * (hi - base))`, with exactly one draw.
//!
//! The result is floored to whole milliseconds (negative or NaN results, possible only for a
//! policy that fails [`RetryPolicy::validate`], become zero; results beyond `u64::MAX` ms saturate).

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::error::{Error, Result};

/// The largest number of milliseconds a [`Backoff`] duration may have: `2^53 - 1`.
///
/// Every integer up to this bound is exactly representable as an `f64` (and as a JavaScript
/// number), so the delay arithmetic is exact on the inputs in every binding, and a capped delay
/// can never round above its cap. [`Backoff::validate`] rejects anything longer (about 285,000
/// years).
pub const MAX_BACKOFF_MS: u64 = (1 << 53) - 1;

/// The shape of the delays between attempts, before jitter.
///
/// Durations are used as whole milliseconds. A valid backoff (see [`Backoff::validate`]) never
/// yields a delay above its cap (`delay` for `Fixed`, `max` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BackoffWire", into = "BackoffWire")]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed {
        /// The delay (at least 1 ms).
        delay: Duration,
    },
    /// `initial`, `initial + step`, `initial + 2 * step`, ... capped at `max`.
    Linear {
        /// The delay before the second attempt (at least 1 ms).
        initial: Duration,
        /// How much each further retry adds (at least 1 ms).
        step: Duration,
        /// The cap (at least `initial`).
        max: Duration,
    },
    /// `initial`, `initial * factor`, `initial * factor^2`, ... capped at `max`.
    Exponential {
        /// The delay before the second attempt (at least 1 ms).
        initial: Duration,
        /// The growth factor per retry (finite, at least 1.0).
        factor: f64,
        /// The cap (at least `initial`).
        max: Duration,
    },
    /// AWS-style "decorrelated jitter": each delay is drawn uniformly between `base` and three
    /// times the previous delay, capped at `max`. The result always lies in `[base, max]`.
    ///
    /// This backoff is random by construction, so the policy's [`Jitter`] setting is ignored.
    Decorrelated {
        /// The smallest delay (at least 1 ms).
        base: Duration,
        /// The cap (at least `base`).
        max: Duration,
    },
}

/// How randomness is applied on top of a non-decorrelated [`Backoff`]'s base delay.
///
/// Ignored for [`Backoff::Decorrelated`], which is random by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// The base delay exactly; no random draw.
    None,
    /// Uniform in `[0, base]` (one draw).
    Full,
    /// Uniform in `[base / 2, base]` (one draw).
    Equal,
}

/// The longest schedule [`RetryPolicy::schedule_checked`] computes.
pub const MAX_SCHEDULE_LEN: u32 = 100_000;

/// When to retry a failed attempt and when to give up.
///
/// Deserializing (JSON form below) validates the policy, so a deserialized policy always passes
/// [`RetryPolicy::validate`]; a policy built in code should be validated by its consumer.
///
/// ```json
/// {"max_attempts": 5, "deadline_ms": 60000,
///  "backoff": {"kind": "exponential", "initial_ms": 100, "factor": 2.0, "max_ms": 10000},
///  "jitter": "full"}
/// ```
///
/// Backoff kinds: `"fixed"` `{delay_ms}`, `"linear"` `{initial_ms, step_ms, max_ms}`,
/// `"exponential"` `{initial_ms, factor, max_ms}`, `"decorrelated"` `{base_ms, max_ms}`; jitter
/// `"none"`, `"full"` or `"equal"`; `deadline_ms` may be absent or `null`. Unknown fields are
/// rejected. Durations are serialized as whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RetryPolicyWire", into = "RetryPolicyWire")]
pub struct RetryPolicy {
    /// The total number of attempts allowed, the first one included (at least 1). Once this
    /// many attempts were made, [`RetryPolicy::decide`] always gives up.
    pub max_attempts: u32,
    /// The total time budget measured from the first attempt (at least 1 ms), if any: a retry
    /// that would start after `first_attempt_at + deadline` is not scheduled.
    pub deadline: Option<Duration>,
    /// The shape of the delays.
    pub backoff: Backoff,
    /// The randomness applied to the backoff (ignored for [`Backoff::Decorrelated`]).
    pub jitter: Jitter,
}

/// Why a policy stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUp {
    /// `max_attempts` attempts were already made.
    MaxAttempts,
    /// The next attempt would start after the deadline.
    Deadline,
}

/// The outcome of [`RetryPolicy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryDecision {
    /// Try again after this delay (measured from the `now` passed to `decide`).
    RetryIn(Duration),
    /// Do not try again.
    GiveUp(GiveUp),
}

/// What is known about a message's attempts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptHistory {
    /// The number of attempts already made, the one that just failed included (at least 1).
    pub attempts: u32,
    /// When the first attempt was made; the deadline is measured from here.
    pub first_attempt_at: Timestamp,
    /// The delay that preceded the attempt that just failed, if any (used by
    /// [`Backoff::Decorrelated`]).
    pub last_delay: Option<Duration>,
}

/// The deterministic random stream behind jitter: a ChaCha8 generator.
///
/// The stream is part of the cross-language contract: for a given seed (and key) every binding
/// produces the same [`JitterRng::next_unit`] values, hence the same delays.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterRng {
    inner: ChaCha8Rng,
}

impl JitterRng {
    /// A stream seeded with `seed`, i.e. `ChaCha8Rng::seed_from_u64(seed)` (rand_core 0.10's
    /// PCG32-based seed expansion). Equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        JitterRng { inner: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// An independent deterministic stream per key (e.g. a message id), so that a message's
    /// delays do not depend on which other messages were retried before it.
    ///
    /// Exactly `JitterRng::new(s)` where `s` is the first 8 bytes, read little-endian, of
    /// `SHA-256(seed.to_le_bytes() || key as UTF-8)`.
    pub fn for_key(seed: u64, key: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(seed.to_le_bytes());
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        JitterRng::new(u64::from_le_bytes(first))
    }

    /// The next value, uniform in `[0, 1)`: the top 53 bits of the next `u64` of the stream,
    /// divided by `2^53` (exactly this, so the stream is stable across languages).
    pub fn next_unit(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.inner.next_u64() >> 11) as f64 * SCALE
    }
}

/// A duration as `f64` whole milliseconds (sub-millisecond parts dropped).
fn ms_f64(d: Duration) -> f64 {
    d.as_millis() as f64
}

/// A duration as whole milliseconds, saturating at `u64::MAX`.
fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `ms` floored to whole milliseconds; NaN and negatives give zero, huge values saturate.
fn floor_ms(ms: f64) -> Duration {
    // `as` saturates and maps NaN to 0, which is what we want for out-of-range input.
    Duration::from_millis(ms.floor() as u64)
}

/// Checks a backoff duration: at least 1 ms, at most [`MAX_BACKOFF_MS`].
fn check_backoff_ms(name: &'static str, d: Duration) -> Result<()> {
    crate::clock::require_positive(name, d)?;
    if ms_u64(d) > MAX_BACKOFF_MS {
        return Err(Error::invalid(
            name,
            format!("must be at most {MAX_BACKOFF_MS} ms (2^53 - 1), got {} ms", d.as_millis()),
        ));
    }
    Ok(())
}

/// Checks that a cap is at least the starting delay.
fn check_cap(name: &'static str, max: Duration, lower_name: &str, lower: Duration) -> Result<()> {
    if max.as_millis() < lower.as_millis() {
        return Err(Error::invalid(
            name,
            format!("must be at least {lower_name} ({} ms), got {} ms", lower.as_millis(), max.as_millis()),
        ));
    }
    Ok(())
}

impl Backoff {
    /// Checks every field: each duration at least 1 ms and at most [`MAX_BACKOFF_MS`], each `max`
    /// at least `initial` (or `base`), `factor` finite and at least 1.0. Errors are
    /// [`Error::InvalidArgument`] named `backoff.<field>` (e.g. `"backoff.factor"`).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Backoff::Fixed { delay } => check_backoff_ms("backoff.delay", delay),
            Backoff::Linear { initial, step, max } => {
                check_backoff_ms("backoff.initial", initial)?;
                check_backoff_ms("backoff.step", step)?;
                check_backoff_ms("backoff.max", max)?;
                check_cap("backoff.max", max, "backoff.initial", initial)
            }
            Backoff::Exponential { initial, factor, max } => {
                check_backoff_ms("backoff.initial", initial)?;
                if !factor.is_finite() {
                    return Err(Error::invalid(
                        "backoff.factor",
                        format!("must be a finite number, got {factor}"),
                    ));
                }
                if factor < 1.0 {
                    return Err(Error::invalid(
                        "backoff.factor",
                        format!("must be at least 1.0, got {factor}"),
                    ));
                }
                check_backoff_ms("backoff.max", max)?;
                check_cap("backoff.max", max, "backoff.initial", initial)
            }
            Backoff::Decorrelated { base, max } => {
                check_backoff_ms("backoff.base", base)?;
                check_backoff_ms("backoff.max", max)?;
                check_cap("backoff.max", max, "backoff.base", base)
            }
        }
    }

    /// The base delay in `f64` milliseconds after `n` attempts, for the non-decorrelated kinds.
    fn base_ms(&self, n: u32) -> f64 {
        let k = f64::from(n.max(1) - 1);
        match *self {
            Backoff::Fixed { delay } => ms_f64(delay),
            Backoff::Linear { initial, step, max } => (ms_f64(initial) + ms_f64(step) * k).min(ms_f64(max)),
            Backoff::Exponential { initial, factor, max } => {
                // Overflow gives +inf, which `min` turns into `max`.
                (ms_f64(initial) * factor.powf(k)).min(ms_f64(max))
            }
            Backoff::Decorrelated { base, .. } => ms_f64(base),
        }
    }
}

impl Default for RetryPolicy {
    /// 10 attempts, no deadline, exponential backoff from 100 ms doubling up to 60 s, full
    /// jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            deadline: None,
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(100),
                factor: 2.0,
                max: Duration::from_secs(60),
            },
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy: `max_attempts >= 1`, the backoff valid (see [`Backoff::validate`]),
    /// `deadline`, if present, at least 1 ms. Errors are [`Error::InvalidArgument`] named after
    /// the field (`"max_attempts"`, `"deadline"`, `"backoff.initial"`, ...).
    pub fn validate(&self) -> Result<()> {
        if self.max_attempts < 1 {
            return Err(Error::invalid("max_attempts", "must be at least 1"));
        }
        self.backoff.validate()?;
        if let Some(deadline) = self.deadline {
            crate::clock::require_positive("deadline", deadline)?;
        }
        Ok(())
    }

    /// The decision after a failed attempt, taken at `now`.
    ///
    /// - If `history.attempts >= max_attempts`: `GiveUp(MaxAttempts)`, with no random draw.
    /// - Otherwise the delay is `retry_after` when given (a hint from the handler, e.g. HTTP
    ///   `Retry-After`; used as is, not capped by the backoff's max, no random draw), else
    ///   [`RetryPolicy::delay`]`(history.attempts, history.last_delay, rng)`.
    /// - If a deadline is set and `now + delay > first_attempt_at + deadline` (whole
    ///   milliseconds, saturating): `GiveUp(Deadline)`.
    /// - Otherwise `RetryIn(delay)`; so a `RetryIn` never schedules past the deadline.
    pub fn decide(
        &self,
        history: &AttemptHistory,
        now: Timestamp,
        retry_after: Option<Duration>,
        rng: &mut JitterRng,
    ) -> RetryDecision {
        if history.attempts >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUp::MaxAttempts);
        }
        let delay = match retry_after {
            Some(hint) => hint,
            None => self.delay(history.attempts, history.last_delay, rng),
        };
        if let Some(deadline) = self.deadline {
            if now.after(delay) > history.first_attempt_at.after(deadline) {
                return RetryDecision::GiveUp(GiveUp::Deadline);
            }
        }
        RetryDecision::RetryIn(delay)
    }

    /// The delay before attempt `attempts + 1`, ignoring `max_attempts` and `deadline`, computed
    /// exactly as in the [module documentation](self) (`attempts == 0` is treated as 1).
    ///
    /// Draws nothing from `rng` for `Jitter::None` on a non-decorrelated backoff, exactly one
    /// value otherwise. For a valid policy the result never exceeds the backoff's cap, and lies
    /// in `[base, max]` for [`Backoff::Decorrelated`].
    pub fn delay(&self, attempts: u32, last_delay: Option<Duration>, rng: &mut JitterRng) -> Duration {
        if let Backoff::Decorrelated { base, max } = self.backoff {
            let base = ms_f64(base);
            let prev = last_delay.map_or(base, ms_f64);
            let u = rng.next_unit();
            let hi = (prev * 3.0).max(base);
            return floor_ms((base + u * (hi - base)).min(ms_f64(max)));
        }
        let base = self.backoff.base_ms(attempts);
        let ms = match self.jitter {
            Jitter::None => base,
            Jitter::Full => rng.next_unit() * base,
            Jitter::Equal => {
                let half = base / 2.0;
                half + rng.next_unit() * half
            }
        };
        floor_ms(ms)
    }

    /// [`RetryPolicy::schedule`] for a length a caller chose: at most [`MAX_SCHEDULE_LEN`]
    /// delays, refused past that (and below 0) with the core's integer-range error, so one bad
    /// number cannot ask for unbounded work.
    pub fn schedule_checked(&self, seed: u64, n: u64) -> crate::Result<Vec<Duration>> {
        let n = crate::text::integer_from_i128("n", i128::from(n), 0, u64::from(MAX_SCHEDULE_LEN))?;
        Ok(self.schedule(seed, n as u32))
    }

    /// The delays before attempts `2..=n + 1` drawn from a fresh [`JitterRng::new`]`(seed)`,
    /// each computed with the previous one as `last_delay` (the first with none); the stop rules
    /// are ignored. Deterministic: equal inputs give equal schedules.
    pub fn schedule(&self, seed: u64, n: u32) -> Vec<Duration> {
        let mut rng = JitterRng::new(seed);
        let mut out = Vec::with_capacity(n.min(1024) as usize);
        let mut last = None;
        for attempts in 1..=n {
            let d = self.delay(attempts, last, &mut rng);
            out.push(d);
            last = Some(d);
        }
        out
    }
}

/// The serialized form of a [`Backoff`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum BackoffWire {
    Fixed { delay_ms: u64 },
    Linear { initial_ms: u64, step_ms: u64, max_ms: u64 },
    Exponential { initial_ms: u64, factor: f64, max_ms: u64 },
    Decorrelated { base_ms: u64, max_ms: u64 },
}

impl TryFrom<BackoffWire> for Backoff {
    type Error = Error;

    fn try_from(w: BackoffWire) -> Result<Self> {
        let ms = Duration::from_millis;
        let b = match w {
            BackoffWire::Fixed { delay_ms } => Backoff::Fixed { delay: ms(delay_ms) },
            BackoffWire::Linear { initial_ms, step_ms, max_ms } => {
                Backoff::Linear { initial: ms(initial_ms), step: ms(step_ms), max: ms(max_ms) }
            }
            BackoffWire::Exponential { initial_ms, factor, max_ms } => {
                Backoff::Exponential { initial: ms(initial_ms), factor, max: ms(max_ms) }
            }
            BackoffWire::Decorrelated { base_ms, max_ms } => {
                Backoff::Decorrelated { base: ms(base_ms), max: ms(max_ms) }
            }
        };
        b.validate()?;
        Ok(b)
    }
}

impl From<Backoff> for BackoffWire {
    fn from(b: Backoff) -> Self {
        match b {
            Backoff::Fixed { delay } => BackoffWire::Fixed { delay_ms: ms_u64(delay) },
            Backoff::Linear { initial, step, max } => BackoffWire::Linear {
                initial_ms: ms_u64(initial),
                step_ms: ms_u64(step),
                max_ms: ms_u64(max),
            },
            Backoff::Exponential { initial, factor, max } => {
                BackoffWire::Exponential { initial_ms: ms_u64(initial), factor, max_ms: ms_u64(max) }
            }
            Backoff::Decorrelated { base, max } => {
                BackoffWire::Decorrelated { base_ms: ms_u64(base), max_ms: ms_u64(max) }
            }
        }
    }
}

/// The serialized form of a [`RetryPolicy`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryPolicyWire {
    max_attempts: u32,
    #[serde(default)]
    deadline_ms: Option<u64>,
    backoff: Backoff,
    jitter: Jitter,
}

impl TryFrom<RetryPolicyWire> for RetryPolicy {
    type Error = Error;

    fn try_from(w: RetryPolicyWire) -> Result<Self> {
        let p = RetryPolicy {
            max_attempts: w.max_attempts,
            deadline: w.deadline_ms.map(Duration::from_millis),
            backoff: w.backoff,
            jitter: w.jitter,
        };
        p.validate()?;
        Ok(p)
    }
}

impl From<RetryPolicy> for RetryPolicyWire {
    fn from(p: RetryPolicy) -> Self {
        RetryPolicyWire {
            max_attempts: p.max_attempts,
            deadline_ms: p.deadline.map(ms_u64),
            backoff: p.backoff,
            jitter: p.jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn policy(backoff: Backoff, jitter: Jitter) -> RetryPolicy {
        RetryPolicy { max_attempts: 100, deadline: None, backoff, jitter }
    }

    fn millis(v: &[Duration]) -> Vec<u128> {
        v.iter().map(Duration::as_millis).collect()
    }

    fn invalid_name(r: Result<()>) -> &'static str {
        match r {
            Err(Error::InvalidArgument { name, .. }) => name,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn exponential_schedule_without_jitter() {
        let p = policy(Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(1000) }, Jitter::None);
        assert_eq!(millis(&p.schedule(7, 6)), [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn exponential_fractional_factor_floors_only_at_the_end() {
        // 100, 150, 225, 337.5, 506.25, 759.375 -> floored.
        let p = policy(Backoff::Exponential { initial: ms(100), factor: 1.5, max: ms(700) }, Jitter::None);
        assert_eq!(millis(&p.schedule(0, 6)), [100, 150, 225, 337, 506, 700]);
    }

    #[test]
    fn exponential_saturates_for_huge_attempt_counts() {
        let p = policy(Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(60_000) }, Jitter::None);
        let mut rng = JitterRng::new(0);
        assert_eq!(p.delay(u32::MAX, None, &mut rng), ms(60_000));
        assert_eq!(p.delay(2000, None, &mut rng), ms(60_000));
        let p = policy(
            Backoff::Exponential { initial: ms(MAX_BACKOFF_MS), factor: 1e300, max: ms(MAX_BACKOFF_MS) },
            Jitter::Full,
        );
        assert!(p.delay(u32::MAX, None, &mut rng) <= ms(MAX_BACKOFF_MS));
    }

    #[test]
    fn linear_schedule_without_jitter() {
        let p = policy(Backoff::Linear { initial: ms(100), step: ms(50), max: ms(260) }, Jitter::None);
        assert_eq!(millis(&p.schedule(1, 6)), [100, 150, 200, 250, 260, 260]);
        let mut rng = JitterRng::new(0);
        assert_eq!(p.delay(u32::MAX, None, &mut rng), ms(260));
    }

    #[test]
    fn fixed_schedule_without_jitter() {
        let p = policy(Backoff::Fixed { delay: ms(250) }, Jitter::None);
        assert_eq!(millis(&p.schedule(1, 4)), [250, 250, 250, 250]);
    }

    #[test]
    fn zero_attempts_is_treated_as_one() {
        let p = policy(Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(1000) }, Jitter::None);
        let mut rng = JitterRng::new(0);
        assert_eq!(p.delay(0, None, &mut rng), ms(100));
    }

    #[test]
    fn sub_millisecond_parts_are_dropped() {
        let p = policy(Backoff::Fixed { delay: Duration::from_micros(1_999) }, Jitter::None);
        assert_eq!(p.delay(1, None, &mut JitterRng::new(0)), ms(1));
    }

    #[test]
    fn next_unit_is_top_53_bits_of_the_chacha8_stream() {
        let mut a = JitterRng::new(42);
        let mut raw = ChaCha8Rng::seed_from_u64(42);
        for _ in 0..100 {
            let x = raw.next_u64();
            let u = a.next_unit();
            assert_eq!(u, (x >> 11) as f64 / 9_007_199_254_740_992.0);
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn for_key_uses_sha256_of_seed_and_key() {
        let mut h = Sha256::new();
        h.update(5u64.to_le_bytes());
        h.update(b"msg-1");
        let d = h.finalize();
        let derived = u64::from_le_bytes(d[..8].try_into().unwrap());
        assert_eq!(JitterRng::for_key(5, "msg-1"), JitterRng::new(derived));
        assert_ne!(JitterRng::for_key(5, "msg-1"), JitterRng::for_key(5, "msg-2"));
        assert_ne!(JitterRng::for_key(5, "msg-1"), JitterRng::for_key(6, "msg-1"));
    }

    #[test]
    fn jitter_formulas_match_the_draw() {
        let backoff = Backoff::Fixed { delay: ms(1000) };
        for seed in 0..20 {
            let u = JitterRng::new(seed).next_unit();

            let mut rng = JitterRng::new(seed);
            let d = policy(backoff, Jitter::Full).delay(1, None, &mut rng);
            assert_eq!(d, ms((u * 1000.0).floor() as u64));

            let mut rng = JitterRng::new(seed);
            let d = policy(backoff, Jitter::Equal).delay(1, None, &mut rng);
            assert_eq!(d, ms((500.0 + u * 500.0).floor() as u64));

            let mut rng = JitterRng::new(seed);
            let before = rng.clone();
            let d = policy(backoff, Jitter::None).delay(1, None, &mut rng);
            assert_eq!(d, ms(1000));
            assert_eq!(rng, before, "Jitter::None must not draw");
        }
    }

    #[test]
    fn decorrelated_formula_and_jitter_is_ignored() {
        let backoff = Backoff::Decorrelated { base: ms(100), max: ms(10_000) };
        for seed in 0..20 {
            let u = JitterRng::new(seed).next_unit();
            // No previous delay: prev = base, so the range is [100, 300).
            let expect = ms((100.0 + u * 200.0).floor() as u64);
            for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
                let mut rng = JitterRng::new(seed);
                assert_eq!(policy(backoff, jitter).delay(1, None, &mut rng), expect);
                let mut once = JitterRng::new(seed);
                once.next_unit();
                assert_eq!(rng, once, "exactly one draw");
            }
            // prev = 2000: range [100, 6000).
            let mut rng = JitterRng::new(seed);
            let d = policy(backoff, Jitter::None).delay(3, Some(ms(2000)), &mut rng);
            assert_eq!(d, ms((100.0 + u * 5900.0).floor() as u64));
            // prev * 3 < base: base.
            let mut rng = JitterRng::new(seed);
            assert_eq!(policy(backoff, Jitter::None).delay(3, Some(ms(10)), &mut rng), ms(100));
            // prev huge: capped at max.
            let mut rng = JitterRng::new(seed);
            let d = policy(backoff, Jitter::None).delay(3, Some(ms(u64::MAX)), &mut rng);
            assert!(d <= ms(10_000) && d >= ms(100));
        }
    }

    #[test]
    fn decorrelated_schedule_chains_last_delay() {
        let p = policy(Backoff::Decorrelated { base: ms(100), max: ms(5_000) }, Jitter::None);
        let sched = p.schedule(9, 8);
        let mut rng = JitterRng::new(9);
        let mut last = None;
        for d in &sched {
            let u = rng.next_unit();
            let prev = last.map_or(100.0, |l: Duration| l.as_millis() as f64);
            let expect = (100.0 + u * ((prev * 3.0f64).max(100.0) - 100.0)).min(5000.0).floor();
            assert_eq!(d.as_millis() as f64, expect);
            last = Some(*d);
        }
    }

    #[test]
    fn schedule_is_deterministic_per_seed() {
        let p = RetryPolicy::default();
        assert_eq!(p.schedule(3, 20), p.schedule(3, 20));
        assert_ne!(p.schedule(3, 20), p.schedule(4, 20));
        assert!(p.schedule(3, 0).is_empty());
    }

    #[test]
    fn default_policy() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts, 10);
        assert_eq!(p.deadline, None);
        assert_eq!(p.backoff, Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(60_000) });
        assert_eq!(p.jitter, Jitter::Full);
        p.validate().unwrap();
    }

    fn history(attempts: u32) -> AttemptHistory {
        AttemptHistory { attempts, first_attempt_at: Timestamp(1_000), last_delay: None }
    }

    #[test]
    fn decide_gives_up_after_max_attempts_without_drawing() {
        let p = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let mut rng = JitterRng::new(1);
        let before = rng.clone();
        for attempts in [3, 4, u32::MAX] {
            for hint in [None, Some(ms(1))] {
                assert_eq!(
                    p.decide(&history(attempts), Timestamp(2_000), hint, &mut rng),
                    RetryDecision::GiveUp(GiveUp::MaxAttempts)
                );
            }
        }
        assert_eq!(rng, before);
        assert!(matches!(p.decide(&history(2), Timestamp(2_000), None, &mut rng), RetryDecision::RetryIn(_)));
    }

    #[test]
    fn decide_uses_the_backoff_delay() {
        let p = RetryPolicy {
            max_attempts: 5,
            deadline: None,
            backoff: Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(1000) },
            jitter: Jitter::None,
        };
        let mut rng = JitterRng::new(1);
        assert_eq!(p.decide(&history(3), Timestamp(2_000), None, &mut rng), RetryDecision::RetryIn(ms(400)));
    }

    #[test]
    fn decide_gives_up_at_the_deadline() {
        let p = RetryPolicy {
            max_attempts: 100,
            deadline: Some(ms(10_000)),
            backoff: Backoff::Fixed { delay: ms(1_000) },
            jitter: Jitter::None,
        };
        let mut rng = JitterRng::new(1);
        // Deadline at t = 11_000. now + 1000 == 11_000 is still allowed.
        assert_eq!(
            p.decide(&history(2), Timestamp(10_000), None, &mut rng),
            RetryDecision::RetryIn(ms(1_000))
        );
        assert_eq!(
            p.decide(&history(2), Timestamp(10_001), None, &mut rng),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        // Already past the deadline.
        assert_eq!(
            p.decide(&history(2), Timestamp(50_000), None, &mut rng),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        // max_attempts wins over the deadline.
        let q = RetryPolicy { max_attempts: 2, ..p };
        assert_eq!(
            q.decide(&history(2), Timestamp(50_000), None, &mut rng),
            RetryDecision::GiveUp(GiveUp::MaxAttempts)
        );
    }

    #[test]
    fn decide_honours_retry_after_as_is() {
        let p = RetryPolicy {
            max_attempts: 10,
            deadline: Some(ms(100_000)),
            backoff: Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(1000) },
            jitter: Jitter::Full,
        };
        let mut rng = JitterRng::new(1);
        let before = rng.clone();
        // Above the backoff's max and not floored: used as is.
        let hint = Duration::from_micros(5_000_500);
        assert_eq!(
            p.decide(&history(1), Timestamp(1_000), Some(hint), &mut rng),
            RetryDecision::RetryIn(hint)
        );
        assert_eq!(rng, before, "a retry_after hint draws nothing");
        // ...but still bounded by the deadline (t = 101_000).
        assert_eq!(
            p.decide(&history(1), Timestamp(1_000), Some(ms(100_001)), &mut rng),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        assert_eq!(
            p.decide(&history(1), Timestamp(1_000), Some(Duration::MAX), &mut rng),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        let no_deadline = RetryPolicy { deadline: None, ..p };
        assert_eq!(
            no_deadline.decide(&history(1), Timestamp(1_000), Some(Duration::MAX), &mut rng),
            RetryDecision::RetryIn(Duration::MAX)
        );
    }

    #[test]
    fn validate_accepts_good_policies() {
        for backoff in [
            Backoff::Fixed { delay: ms(1) },
            Backoff::Linear { initial: ms(1), step: ms(1), max: ms(1) },
            Backoff::Exponential { initial: ms(5), factor: 1.0, max: ms(5) },
            Backoff::Decorrelated { base: ms(1), max: ms(MAX_BACKOFF_MS) },
        ] {
            let p = RetryPolicy { max_attempts: 1, deadline: Some(ms(1)), backoff, jitter: Jitter::Equal };
            p.validate().unwrap();
        }
    }

    #[test]
    fn validate_rejects_each_bad_field() {
        let good = RetryPolicy::default();
        let exp = |initial, factor, max| RetryPolicy {
            backoff: Backoff::Exponential { initial, factor, max },
            ..good
        };
        let cases: Vec<(RetryPolicy, &str)> = vec![
            (RetryPolicy { max_attempts: 0, ..good }, "max_attempts"),
            (RetryPolicy { deadline: Some(Duration::ZERO), ..good }, "deadline"),
            (RetryPolicy { deadline: Some(Duration::from_micros(999)), ..good }, "deadline"),
            (RetryPolicy { backoff: Backoff::Fixed { delay: Duration::ZERO }, ..good }, "backoff.delay"),
            (
                RetryPolicy { backoff: Backoff::Fixed { delay: ms(MAX_BACKOFF_MS + 1) }, ..good },
                "backoff.delay",
            ),
            (
                RetryPolicy {
                    backoff: Backoff::Linear { initial: Duration::ZERO, step: ms(1), max: ms(10) },
                    ..good
                },
                "backoff.initial",
            ),
            (
                RetryPolicy {
                    backoff: Backoff::Linear { initial: ms(1), step: Duration::ZERO, max: ms(10) },
                    ..good
                },
                "backoff.step",
            ),
            (
                RetryPolicy {
                    backoff: Backoff::Linear { initial: ms(20), step: ms(1), max: ms(10) },
                    ..good
                },
                "backoff.max",
            ),
            (exp(Duration::ZERO, 2.0, ms(10)), "backoff.initial"),
            (exp(ms(1), f64::NAN, ms(10)), "backoff.factor"),
            (exp(ms(1), f64::INFINITY, ms(10)), "backoff.factor"),
            (exp(ms(1), 0.5, ms(10)), "backoff.factor"),
            (exp(ms(1), -2.0, ms(10)), "backoff.factor"),
            (exp(ms(100), 2.0, ms(99)), "backoff.max"),
            (exp(ms(100), 2.0, Duration::ZERO), "backoff.max"),
            (exp(ms(100), 2.0, ms(MAX_BACKOFF_MS + 1)), "backoff.max"),
            (
                RetryPolicy { backoff: Backoff::Decorrelated { base: Duration::ZERO, max: ms(10) }, ..good },
                "backoff.base",
            ),
            (
                RetryPolicy { backoff: Backoff::Decorrelated { base: ms(11), max: ms(10) }, ..good },
                "backoff.max",
            ),
        ];
        for (p, field) in cases {
            let err = p.validate().unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
            assert_eq!(invalid_name(Err(err)), field, "{p:?}");
        }
    }

    #[test]
    fn serde_matches_the_documented_form() {
        let json = r#"{"max_attempts": 5, "deadline_ms": 60000,
            "backoff": {"kind": "exponential", "initial_ms": 100, "factor": 2.0, "max_ms": 10000},
            "jitter": "full"}"#;
        let p: RetryPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                max_attempts: 5,
                deadline: Some(ms(60_000)),
                backoff: Backoff::Exponential { initial: ms(100), factor: 2.0, max: ms(10_000) },
                jitter: Jitter::Full,
            }
        );
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v, serde_json::from_str::<serde_json::Value>(json).unwrap());
    }

    #[test]
    fn serde_round_trips_every_kind() {
        for (backoff, jitter, deadline) in [
            (Backoff::Fixed { delay: ms(7) }, Jitter::None, None),
            (Backoff::Linear { initial: ms(1), step: ms(2), max: ms(3) }, Jitter::Equal, Some(ms(9))),
            (Backoff::Exponential { initial: ms(10), factor: 1.25, max: ms(100) }, Jitter::Full, None),
            (Backoff::Decorrelated { base: ms(5), max: ms(MAX_BACKOFF_MS) }, Jitter::None, Some(ms(1))),
        ] {
            let p = RetryPolicy { max_attempts: 3, deadline, backoff, jitter };
            let s = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<RetryPolicy>(&s).unwrap(), p, "{s}");
        }
        let p: RetryPolicy = serde_json::from_str(
            r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none"}"#,
        )
        .unwrap();
        assert_eq!(p.deadline, None);
        let p: RetryPolicy = serde_json::from_str(
            r#"{"max_attempts":1,"deadline_ms":null,"backoff":{"kind":"linear","initial_ms":1,"step_ms":1,"max_ms":2},"jitter":"equal"}"#,
        )
        .unwrap();
        assert_eq!(p.deadline, None);
        let p: RetryPolicy = serde_json::from_str(
            r#"{"max_attempts":1,"backoff":{"kind":"decorrelated","base_ms":1,"max_ms":2},"jitter":"full"}"#,
        )
        .unwrap();
        assert_eq!(p.backoff, Backoff::Decorrelated { base: ms(1), max: ms(2) });
    }

    #[test]
    fn serde_rejects_bad_json() {
        let bad = [
            // invalid values
            (r#"{"max_attempts":0,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none"}"#, "max_attempts"),
            (
                r#"{"max_attempts":1,"deadline_ms":0,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none"}"#,
                "deadline",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":0},"jitter":"none"}"#,
                "backoff.delay",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"exponential","initial_ms":10,"factor":0.5,"max_ms":100},"jitter":"none"}"#,
                "backoff.factor",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"exponential","initial_ms":10,"factor":2,"max_ms":5},"jitter":"none"}"#,
                "backoff.max",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"decorrelated","base_ms":10,"max_ms":5},"jitter":"none"}"#,
                "backoff.max",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"linear","initial_ms":1,"step_ms":0,"max_ms":5},"jitter":"none"}"#,
                "backoff.step",
            ),
            // structural errors
            (
                r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none","extra":1}"#,
                "extra",
            ),
            (
                r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":5,"max_ms":9},"jitter":"none"}"#,
                "max_ms",
            ),
            (r#"{"max_attempts":1,"backoff":{"kind":"cubic","delay_ms":5},"jitter":"none"}"#, "cubic"),
            (r#"{"max_attempts":1,"backoff":{"delay_ms":5},"jitter":"none"}"#, "kind"),
            (r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"some"}"#, "some"),
            (r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":5}}"#, "jitter"),
            (r#"{"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none"}"#, "max_attempts"),
            (r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":-5},"jitter":"none"}"#, "-5"),
            (r#"{"max_attempts":1,"backoff":{"kind":"fixed","delay_ms":1.5},"jitter":"none"}"#, "1.5"),
            (r#"{"max_attempts":1,"backoff":{"kind":"fixed"},"jitter":"none"}"#, "delay_ms"),
            (r#"{"max_attempts":-1,"backoff":{"kind":"fixed","delay_ms":5},"jitter":"none"}"#, "-1"),
        ];
        for (json, mentions) in bad {
            let err = serde_json::from_str::<RetryPolicy>(json).unwrap_err().to_string();
            assert!(err.contains(mentions), "{json}: error {err:?} should mention {mentions:?}");
        }
    }
}
