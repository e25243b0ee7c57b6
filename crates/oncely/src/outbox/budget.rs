//! The retry budget: retries may be at most a share of first attempts, so an outage does not
//! turn into a retry storm (as in Finagle's and gRPC's retry budgets).

use crate::clock::Timestamp;
use crate::error::{Error, Result};

/// Retries allowed as `ratio` of first attempts, plus `min_per_second` always, with at most
/// `burst` saved up. Per outbox and per process; time is the outbox's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries earned per first attempt (0.2: one retry per five first attempts).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: f64,
    /// The most retries that can be saved up.
    pub burst: f64,
}

impl RetryBudget {
    /// `ratio` of first attempts, 10 per second minimum, 100 saved up at most.
    pub fn new(ratio: f64) -> Self {
        RetryBudget { ratio, min_per_second: 10.0, burst: 100.0 }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("retry_budget.ratio", self.ratio),
            ("retry_budget.min_per_second", self.min_per_second),
            ("retry_budget.burst", self.burst),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::invalid(name, format!("must be a finite number >= 0, got {v}")));
            }
        }
        Ok(())
    }
}

pub(crate) struct BudgetState {
    budget: RetryBudget,
    tokens: f64,
    refilled_at: Timestamp,
}

impl BudgetState {
    pub fn new(budget: RetryBudget, now: Timestamp) -> Self {
        BudgetState { budget, tokens: budget.burst.min(budget.min_per_second), refilled_at: now }
    }

    fn refill(&mut self, now: Timestamp) {
        let secs = now.since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + secs * self.budget.min_per_second).min(self.budget.burst);
        self.refilled_at = self.refilled_at.max(now);
    }

    /// Takes every whole retry available now, for one lease; what the lease does not use comes
    /// back through [`BudgetState::settle`]. Taking (not just reading) keeps two concurrent
    /// leases from spending the same allowance.
    pub fn reserve(&mut self, now: Timestamp) -> usize {
        self.refill(now);
        let whole = self.tokens.floor().max(0.0);
        self.tokens -= whole;
        whole as usize
    }

    /// Books a lease that reserved `reserved` retries: unused ones come back, first attempts earn.
    pub fn settle(&mut self, now: Timestamp, reserved: usize, firsts: usize, retries: usize) {
        self.refill(now);
        let back = reserved.saturating_sub(retries) as f64;
        self.tokens = (self.tokens + back + firsts as f64 * self.budget.ratio).clamp(0.0, self.budget.burst);
    }
}
