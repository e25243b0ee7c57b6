//! Property tests for `oncely::backoff`: bounds, monotonicity, determinism and the stop rules.
//!
//! Each property compares the code against an independent statement of the spec (a reference
//! formula, a bound, or a count of random draws), so a wrong formula, a missing cap, an extra
//! draw or a stop rule applied in the wrong order makes it fail.

use std::time::Duration;

use oncely::backoff::{
    AttemptHistory, Backoff, GiveUp, Jitter, JitterRng, MAX_BACKOFF_MS, RetryDecision, RetryPolicy,
};
use oncely::clock::Timestamp;
use proptest::prelude::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn msf(d: Duration) -> f64 {
    d.as_millis() as f64
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A valid backoff duration in ms: mostly realistic, sometimes at the extremes.
fn dur_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1u64..=1_000,
        4 => 1u64..=10_000_000,
        1 => 1u64..=MAX_BACKOFF_MS,
        1 => Just(1u64),
        1 => Just(MAX_BACKOFF_MS),
    ]
}

/// `(lower, cap)` with `1 <= lower <= cap <= MAX_BACKOFF_MS`.
fn lower_and_cap() -> impl Strategy<Value = (u64, u64)> {
    (dur_ms(), prop_oneof![Just(0u64), 0u64..=1_000, 0u64..=100_000_000, 0u64..=MAX_BACKOFF_MS])
        .prop_map(|(lo, extra)| (lo, lo.saturating_add(extra).min(MAX_BACKOFF_MS)))
}

fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1.0), Just(2.0), 1.0f64..4.0, 1.0f64..1e6, Just(1e300), Just(f64::MAX)]
}

fn valid_backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        dur_ms().prop_map(|d| Backoff::Fixed { delay: ms(d) }),
        (lower_and_cap(), dur_ms()).prop_map(|((i, m), s)| Backoff::Linear {
            initial: ms(i),
            step: ms(s),
            max: ms(m)
        }),
        (lower_and_cap(), factor()).prop_map(|((i, m), f)| Backoff::Exponential {
            initial: ms(i),
            factor: f,
            max: ms(m)
        }),
        lower_and_cap().prop_map(|(b, m)| Backoff::Decorrelated { base: ms(b), max: ms(m) }),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

fn attempts() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..=64, 1 => 1u32..=u32::MAX, 1 => Just(u32::MAX)]
}

/// Any previous delay, including zero and absurdly large ones (a `retry_after` hint can be).
fn last_delay() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        (0u64..=100_000).prop_map(|v| Some(ms(v))),
        any::<u64>().prop_map(|v| Some(ms(v))),
        Just(Some(Duration::MAX)),
    ]
}

fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
    (1u32..=20, prop::option::of(1u64..=MAX_BACKOFF_MS), valid_backoff(), jitter()).prop_map(
        |(max_attempts, deadline, backoff, jitter)| RetryPolicy {
            max_attempts,
            deadline: deadline.map(ms),
            backoff,
            jitter,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Reference model (written from the spec, independently of the implementation)
// ---------------------------------------------------------------------------------------------

/// The pre-jitter base delay in f64 ms after `n >= 1` attempts (non-decorrelated kinds).
fn reference_base(b: &Backoff, n: u32) -> f64 {
    let k = (n - 1) as f64;
    match *b {
        Backoff::Fixed { delay } => msf(delay),
        Backoff::Linear { initial, step, max } => f64::min(msf(initial) + msf(step) * k, msf(max)),
        Backoff::Exponential { initial, factor, max } => f64::min(msf(initial) * factor.powf(k), msf(max)),
        Backoff::Decorrelated { .. } => unreachable!(),
    }
}

/// The most a valid backoff may ever yield: `delay` for Fixed, `max` otherwise.
fn cap_ms(b: &Backoff) -> u128 {
    match *b {
        Backoff::Fixed { delay } => delay.as_millis(),
        Backoff::Linear { max, .. }
        | Backoff::Exponential { max, .. }
        | Backoff::Decorrelated { max, .. } => max.as_millis(),
    }
}

/// The delay the spec prescribes, given the unit value `u` of the next draw.
fn reference_delay(p: &RetryPolicy, n: u32, last: Option<Duration>, u: f64) -> u128 {
    let x = match p.backoff {
        Backoff::Decorrelated { base, max } => {
            let base = msf(base);
            let prev = last.map_or(base, msf);
            let hi = if prev * 3.0 < base { base } else { prev * 3.0 };
            f64::min(msf(max), base + u * (hi - base))
        }
        ref b => {
            let base = reference_base(b, n);
            match p.jitter {
                Jitter::None => base,
                Jitter::Full => u * base,
                Jitter::Equal => base / 2.0 + u * base / 2.0,
            }
        }
    };
    x.floor() as u128
}

/// `x` rounded to 6 decimals when that keeps it under 15 significant digits (NaN and infinities
/// are kept as they are).
///
/// serde_json parses floats exactly only with its `float_roundtrip` feature, which oncely does
/// not enable (yet): without it a 17-digit float such as `3.9999999999999996` may come back one
/// ulp off. Realistic factors (`2.0`, `1.5`) have short decimal forms and are exact either way.
fn short_decimal(x: f64) -> f64 {
    if x.is_finite() && x.abs() < 1e9 { (x * 1e6).round() / 1e6 } else { x }
}

fn json_exact(mut p: RetryPolicy) -> RetryPolicy {
    if let Backoff::Exponential { factor, .. } = &mut p.backoff {
        *factor = short_decimal(*factor);
    }
    p
}

fn draws_once(p: &RetryPolicy) -> bool {
    matches!(p.backoff, Backoff::Decorrelated { .. }) || p.jitter != Jitter::None
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every valid policy validates (guards the strategies themselves).
    #[test]
    fn generated_policies_are_valid(p in valid_policy()) {
        prop_assert!(p.validate().is_ok(), "{:?}", p.validate());
    }

    /// Per backoff x jitter: Full in [0, base], Equal in [base/2, base], None == base, all
    /// <= the cap; Decorrelated in [base, max]; the exact formula; the number of draws.
    #[test]
    fn delay_within_bounds_for_every_backoff_and_jitter(
        p in valid_policy(),
        n in attempts(),
        last in last_delay(),
        seed in any::<u64>(),
    ) {
        let mut rng = JitterRng::new(seed);
        let mut peek = rng.clone();
        let u = peek.next_unit();
        let d = p.delay(n, last, &mut rng).as_millis();

        prop_assert!(d <= cap_ms(&p.backoff), "{d} > cap {}", cap_ms(&p.backoff));
        match p.backoff {
            Backoff::Decorrelated { base, max } => {
                prop_assert!(d >= base.as_millis() && d <= max.as_millis(), "{d} not in [{base:?}, {max:?}]");
            }
            ref b => {
                let base = reference_base(b, n);
                match p.jitter {
                    Jitter::None => prop_assert_eq!(d, base.floor() as u128),
                    Jitter::Full => prop_assert!(d <= base.floor() as u128, "{d} > base {base}"),
                    Jitter::Equal => prop_assert!(
                        d >= (base / 2.0).floor() as u128 && d <= base.floor() as u128,
                        "{d} not in [{}, {}]", base / 2.0, base
                    ),
                }
            }
        }
        prop_assert_eq!(d, reference_delay(&p, n, last, u));

        // Random draws: none for Jitter::None on a non-decorrelated backoff, exactly one otherwise.
        if draws_once(&p) {
            prop_assert_eq!(&rng, &peek, "expected exactly one draw");
        } else {
            prop_assert_eq!(&rng, &JitterRng::new(seed), "expected no draw");
        }
    }

    /// A whole schedule never exceeds the cap, has n entries, and chains `last_delay`.
    #[test]
    fn schedule_never_exceeds_max(p in valid_policy(), seed in any::<u64>(), n in 0u32..100) {
        let sched = p.schedule(seed, n);
        prop_assert_eq!(sched.len(), n as usize);
        let mut rng = JitterRng::new(seed);
        let mut last = None;
        for (i, d) in sched.iter().enumerate() {
            prop_assert!(d.as_millis() <= cap_ms(&p.backoff), "entry {i}: {d:?}");
            prop_assert_eq!(*d, p.delay(i as u32 + 1, last, &mut rng));
            last = Some(*d);
        }
    }

    /// Without jitter, linear and exponential delays never decrease as attempts grow, both over
    /// a schedule and between arbitrary attempt counts; a fixed backoff is constant.
    #[test]
    fn no_jitter_is_non_decreasing(
        b in valid_backoff().prop_filter("not decorrelated", |b| !matches!(b, Backoff::Decorrelated { .. })),
        n1 in attempts(),
        n2 in attempts(),
        len in 1u32..80,
    ) {
        let p = RetryPolicy { max_attempts: 10, deadline: None, backoff: b, jitter: Jitter::None };
        let sched = p.schedule(0, len);
        for w in sched.windows(2) {
            prop_assert!(w[0] <= w[1], "{:?} then {:?}", w[0], w[1]);
            if let Backoff::Fixed { delay } = b {
                prop_assert_eq!(w[1], delay);
            }
        }
        let (lo, hi) = (n1.min(n2), n1.max(n2));
        let mut rng = JitterRng::new(0);
        prop_assert!(p.delay(lo, None, &mut rng) <= p.delay(hi, None, &mut rng));
    }

    /// Decorrelated delays stay in [base, max] whatever the previous delay and jitter setting.
    #[test]
    fn decorrelated_within_base_and_max(
        (b, m) in lower_and_cap(),
        j in jitter(),
        n in attempts(),
        last in last_delay(),
        seed in any::<u64>(),
        len in 1u32..50,
    ) {
        let p = RetryPolicy {
            max_attempts: 10,
            deadline: None,
            backoff: Backoff::Decorrelated { base: ms(b), max: ms(m) },
            jitter: j,
        };
        let d = p.delay(n, last, &mut JitterRng::new(seed));
        prop_assert!(d >= ms(b) && d <= ms(m), "{d:?} not in [{b}, {m}]");
        // The jitter setting is ignored.
        for other in [Jitter::None, Jitter::Full, Jitter::Equal] {
            let q = RetryPolicy { jitter: other, ..p };
            prop_assert_eq!(q.delay(n, last, &mut JitterRng::new(seed)), d);
        }
        for d in p.schedule(seed, len) {
            prop_assert!(d >= ms(b) && d <= ms(m), "{d:?} not in [{b}, {m}]");
        }
    }

    /// Same seed, same schedule; `schedule` uses `JitterRng::new(seed)`.
    #[test]
    fn same_seed_same_schedule(p in valid_policy(), seed in any::<u64>(), n in 0u32..60) {
        let a = p.schedule(seed, n);
        prop_assert_eq!(&a, &p.schedule(seed, n));
        let mut rng = JitterRng::new(seed);
        let mut last = None;
        let manual: Vec<Duration> = (1..=n)
            .map(|i| {
                let d = p.delay(i, last, &mut rng);
                last = Some(d);
                d
            })
            .collect();
        prop_assert_eq!(a, manual);
    }

    /// `for_key` is deterministic, and distinct keys (or seeds) give distinct streams.
    #[test]
    fn for_key_streams_are_deterministic_and_independent(
        seed in any::<u64>(),
        other_seed in any::<u64>(),
        k1 in ".{0,40}",
        k2 in ".{0,40}",
    ) {
        fn take(mut r: JitterRng) -> Vec<f64> {
            (0..4).map(|_| r.next_unit()).collect()
        }
        let s1 = take(JitterRng::for_key(seed, &k1));
        prop_assert_eq!(&s1, &take(JitterRng::for_key(seed, &k1)));
        for u in &s1 {
            prop_assert!((0.0..1.0).contains(u), "{u} not in [0, 1)");
        }
        if k1 != k2 {
            prop_assert_ne!(&s1, &take(JitterRng::for_key(seed, &k2)));
        }
        if seed != other_seed {
            prop_assert_ne!(&s1, &take(JitterRng::for_key(other_seed, &k1)));
        }
        // A keyed stream is not simply the unkeyed one.
        prop_assert_ne!(&s1, &take(JitterRng::new(seed)));
    }

    /// Once `attempts >= max_attempts`, `decide` gives up with MaxAttempts, whatever the hint,
    /// deadline or time, and draws nothing.
    #[test]
    fn decide_never_retries_at_max_attempts(
        p in valid_policy(),
        extra in prop_oneof![0u32..5, any::<u32>()],
        first in 0i64..=1i64 << 50,
        elapsed in 0i64..=1i64 << 40,
        hint in prop::option::of(any::<u64>().prop_map(ms)),
        last in last_delay(),
        seed in any::<u64>(),
    ) {
        let h = AttemptHistory {
            attempts: p.max_attempts.saturating_add(extra),
            first_attempt_at: Timestamp(first),
            last_delay: last,
        };
        let mut rng = JitterRng::new(seed);
        let decision = p.decide(&h, Timestamp(first + elapsed), hint, &mut rng);
        prop_assert_eq!(decision, RetryDecision::GiveUp(GiveUp::MaxAttempts));
        prop_assert_eq!(rng, JitterRng::new(seed));
    }

    /// Below `max_attempts`: the delay is the hint (as is) or `delay(...)`; a RetryIn never
    /// starts after `first_attempt_at + deadline`, and giving up on the deadline happens only
    /// when the retry really would. Without a hint the delay never exceeds the backoff's cap.
    #[test]
    fn retry_in_never_goes_past_the_deadline(
        p in valid_policy(),
        attempts_back in 1u32..=20,
        first in 0i64..=1i64 << 50,
        elapsed in prop_oneof![0i64..=100_000, 0i64..=1i64 << 45],
        hint in prop_oneof![
            3 => Just(None),
            1 => (0u64..=1_000_000).prop_map(|v| Some(ms(v))),
            1 => any::<u64>().prop_map(|v| Some(ms(v))),
            1 => (0u64..=1u64 << 40).prop_map(|v| Some(Duration::from_micros(v))),
        ],
        last in last_delay(),
        seed in any::<u64>(),
    ) {
        let attempts = p.max_attempts.saturating_sub(attempts_back).max(1);
        prop_assume!(attempts < p.max_attempts);
        let h = AttemptHistory { attempts, first_attempt_at: Timestamp(first), last_delay: last };
        let now = Timestamp(first + elapsed);

        let mut rng = JitterRng::new(seed);
        let expected = match hint {
            Some(d) => d,
            None => p.delay(attempts, last, &mut rng.clone()),
        };
        let decision = p.decide(&h, now, hint, &mut rng);

        // Whole-millisecond arithmetic in i128: nothing here can overflow or saturate.
        let start = now.0 as i128 + expected.as_millis() as i128;
        let past = p.deadline.is_some_and(|dl| start > first as i128 + dl.as_millis() as i128);
        match decision {
            RetryDecision::RetryIn(d) => {
                prop_assert_eq!(d, expected);
                prop_assert!(!past, "RetryIn({d:?}) at {now:?} goes past the deadline {:?}", p.deadline);
                if let Some(dl) = p.deadline {
                    prop_assert!(now.after(d) <= Timestamp(first).after(dl));
                }
                if hint.is_none() {
                    prop_assert!(d.as_millis() <= cap_ms(&p.backoff));
                }
            }
            RetryDecision::GiveUp(GiveUp::Deadline) => {
                prop_assert!(past, "gave up although {expected:?} fits in the deadline {:?}", p.deadline);
            }
            RetryDecision::GiveUp(GiveUp::MaxAttempts) => {
                prop_assert!(false, "MaxAttempts with {attempts} < {}", p.max_attempts);
            }
        }
    }

    /// The deadline boundary is exact: a retry starting exactly at `first_attempt_at + deadline`
    /// is allowed, one millisecond later is not.
    #[test]
    fn deadline_boundary_is_exact(
        p in valid_policy(),
        dl in 1u64..=1u64 << 40,
        first in 0i64..=1i64 << 50,
        off in -2i64..=2,
        hint in prop::option::of(prop_oneof![0u64..=100_000, 0u64..=1u64 << 40].prop_map(ms)),
        seed in any::<u64>(),
    ) {
        let p = RetryPolicy { max_attempts: 2, deadline: Some(ms(dl)), ..p };
        let h = AttemptHistory { attempts: 1, first_attempt_at: Timestamp(first), last_delay: None };
        let mut rng = JitterRng::new(seed);
        let d = hint.unwrap_or_else(|| p.delay(1, None, &mut rng.clone()));
        // now + d == first + dl + off
        let now = Timestamp(first + dl as i64 - d.as_millis() as i64 + off);
        let decision = p.decide(&h, now, hint, &mut rng);
        if off <= 0 {
            prop_assert_eq!(decision, RetryDecision::RetryIn(d));
        } else {
            prop_assert_eq!(decision, RetryDecision::GiveUp(GiveUp::Deadline));
        }
    }

    /// JSON round trip of any valid policy, and JSON deserialization accepts exactly the
    /// policies that validate.
    #[test]
    fn json_round_trip_and_validation(
        p in valid_policy(),
        max_attempts in prop_oneof![Just(0u32), 0u32..3],
        deadline in prop::option::of(prop_oneof![Just(0u64), 0u64..3]),
        lo in prop_oneof![Just(0u64), 0u64..5, Just(MAX_BACKOFF_MS + 1)],
        hi in prop_oneof![Just(0u64), 0u64..5, Just(MAX_BACKOFF_MS + 1)],
        f in prop_oneof![Just(0.5), Just(0.999), Just(1.0), Just(-1.0), Just(f64::NAN), Just(f64::INFINITY), 0.0f64..3.0],
        kind in 0u8..4,
    ) {
        let p = json_exact(p);
        let f = short_decimal(f);
        let s = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<RetryPolicy>(&s).unwrap(), p);

        let backoff = match kind {
            0 => Backoff::Fixed { delay: ms(lo) },
            1 => Backoff::Linear { initial: ms(lo), step: ms(hi), max: ms(hi) },
            2 => Backoff::Exponential { initial: ms(lo), factor: f, max: ms(hi) },
            _ => Backoff::Decorrelated { base: ms(lo), max: ms(hi) },
        };
        let q = RetryPolicy { max_attempts, deadline: deadline.map(ms), backoff, jitter: p.jitter };
        let s = serde_json::to_string(&q).unwrap();
        let parsed = serde_json::from_str::<RetryPolicy>(&s);
        prop_assert_eq!(parsed.is_ok(), q.validate().is_ok(), "{} -> {:?}", s, parsed);
        if let Ok(back) = parsed {
            prop_assert_eq!(back, q);
        }
    }
}
