//! Deliberately broken rules, for the deterministic simulator (`tests/sim`) to prove it catches
//! each one. Only the off-by-default cargo feature `sim-broken` can switch one on; without it
//! [`is`] is a constant `false` and every rule is the real one.

/// A rule the simulator may break on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Broken {
    /// Every rule as written.
    Nothing = 0,
    /// At-least-once writes its mark when the id is claimed, before the effect.
    AtLeastOnceMarksBefore = 1,
    /// At-most-once writes its mark when the claim finishes, after the effect (and the outbox
    /// redelivers an at-most-once message whose lease ran out).
    AtMostOnceMarksAfter = 2,
    /// Settling (inbox finish/release, outbox settle) does not compare fencing tokens.
    SkipFencing = 3,
    /// The transactional inbox completes the claim in a second commit after the handler's.
    CompleteOutsideTransaction = 4,
}

#[cfg(feature = "sim-broken")]
static BROKEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Breaks `rule` (or, with [`Broken::Nothing`], restores every rule) for the whole process.
#[cfg(feature = "sim-broken")]
pub fn set(rule: Broken) {
    BROKEN.store(rule as u8, std::sync::atomic::Ordering::SeqCst);
}

/// Whether `rule` is broken now.
#[inline]
pub(crate) fn is(rule: Broken) -> bool {
    #[cfg(feature = "sim-broken")]
    return BROKEN.load(std::sync::atomic::Ordering::SeqCst) == rule as u8;
    #[cfg(not(feature = "sim-broken"))]
    {
        let _ = rule;
        false
    }
}

/// Whether a settle's `given` token is the claim's `stored` one: the fencing check, which only
/// [`Broken::SkipFencing`] skips.
#[inline]
pub(crate) fn fenced(stored: u64, given: u64) -> bool {
    stored == given || is(Broken::SkipFencing)
}
