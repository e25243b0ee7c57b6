//! The client side: what an answer to a keyed request means, and when to try again.

use std::time::{Duration, SystemTime};

use crate::backoff::{AttemptHistory, JitterRng, RetryDecision, RetryPolicy};
use crate::clock::Timestamp;

/// What a client does with one attempt's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Settled for good: a success (2xx, 3xx), or a replay of one.
    Done,
    /// Settled, but not as hoped: a client error the server will answer the same way every
    /// time (a stored 4xx, a malformed or reused key, 501, 505). Trying again cannot help.
    Final,
    /// Not settled: no answer at all (a timeout, a dropped connection), the first request still
    /// in flight (409), a "try again" status (408, 425, 429) or a server error (5xx). Try again
    /// with the same key — after `after` when the server said when (`Retry-After`).
    Again {
        /// The server's hint, if it gave a usable one.
        after: Option<Duration>,
    },
}

impl Verdict {
    /// `"done"`, `"final"` or `"again"`: the name every binding uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Final => "final",
            Verdict::Again { .. } => "again",
        }
    }
}

/// The verdict on an answer: its status (`None` when no answer came) and its `Retry-After`
/// header (delta-seconds or an HTTP-date, read at `now`; anything else is no hint).
pub fn verdict(status: Option<u16>, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    let again = || Verdict::Again { after: retry_after.and_then(|v| parse_retry_after(v, now)) };
    match status {
        None => Verdict::Again { after: None },
        Some(408 | 409 | 425 | 429) => again(),
        Some(501 | 505) => Verdict::Final,
        Some(500..=599) => again(),
        Some(400..=499) => Verdict::Final,
        Some(_) => Verdict::Done,
    }
}

/// `Retry-After` as a delay: whole seconds, or an HTTP-date (a date in the past is no delay).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(366 * 86400)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// One keyed request's retries, by a [`RetryPolicy`]: after each attempt, [`HttpRetry::next`]
/// says whether to hand the answer to the caller or to wait and send it again (same key, same
/// body). The server's `Retry-After` is used as the delay when it gives one; otherwise the
/// policy's backoff, with jitter drawn from a stream seeded by the key (so every language waits
/// alike).
#[derive(Debug, Clone)]
pub struct HttpRetry {
    policy: RetryPolicy,
    rng: JitterRng,
    history: Option<AttemptHistory>,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Hand this answer (or this error, when none came) to the caller.
    Return(Verdict),
    /// Send the request again after this delay.
    Wait(Duration),
}

impl HttpRetry {
    /// Retries for the request with `key`, by `policy` (checked).
    pub fn new(policy: RetryPolicy, key: &str) -> crate::Result<HttpRetry> {
        policy.validate()?;
        Ok(HttpRetry { policy, rng: JitterRng::for_key(0, key), history: None })
    }

    /// After an attempt that ended at `now` with `status` (`None`: no answer) and `retry_after`.
    pub fn next(&mut self, status: Option<u16>, retry_after: Option<&str>, now: Timestamp) -> Step {
        let verdict =
            verdict(status, retry_after, SystemTime::UNIX_EPOCH + Duration::from_millis(now.0.max(0) as u64));
        let Verdict::Again { after } = verdict else { return Step::Return(verdict) };
        let history = match self.history {
            Some(h) => AttemptHistory { attempts: h.attempts + 1, ..h },
            None => AttemptHistory { attempts: 1, first_attempt_at: now, last_delay: None },
        };
        match self.policy.decide(&history, now, after, &mut self.rng) {
            RetryDecision::RetryIn(delay) => {
                self.history = Some(AttemptHistory { last_delay: Some(delay), ..history });
                Step::Wait(delay)
            }
            RetryDecision::GiveUp(_) => Step::Return(verdict),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_into_done_final_and_again() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(verdict(Some(201), None, now), Verdict::Done);
        assert_eq!(verdict(Some(422), None, now), Verdict::Final);
        assert_eq!(verdict(Some(400), None, now), Verdict::Final);
        assert_eq!(verdict(Some(501), None, now), Verdict::Final);
        assert_eq!(verdict(None, None, now), Verdict::Again { after: None });
        assert_eq!(
            verdict(Some(409), Some("3"), now),
            Verdict::Again { after: Some(Duration::from_secs(3)) }
        );
        assert_eq!(verdict(Some(503), Some("soon"), now), Verdict::Again { after: None });
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            verdict(Some(429), Some(&date), now),
            Verdict::Again { after: Some(Duration::from_secs(7)) }
        );
    }

    #[test]
    fn retries_stop_at_the_policy_limit_and_keep_the_last_answer() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let mut r = HttpRetry::new(policy, "k").unwrap();
        let t = Timestamp(0);
        assert!(matches!(r.next(Some(503), None, t), Step::Wait(_)));
        assert_eq!(r.next(Some(409), Some("2"), t), Step::Wait(Duration::from_secs(2)));
        assert_eq!(r.next(Some(503), None, t), Step::Return(Verdict::Again { after: None }));
        let mut r = HttpRetry::new(RetryPolicy::default(), "k").unwrap();
        assert_eq!(r.next(Some(200), None, t), Step::Return(Verdict::Done));
    }
}
