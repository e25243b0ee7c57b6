//! The handler contract: one rule, used by every binding, that turns what a host-language
//! handler did into an [`Outcome`] and the failure text stored with the message — so a Python
//! handler, a JavaScript one and a Kotlin one that do the same thing settle the same way and
//! leave the same text.
//!
//! A binding only observes what its handler did and describes it with a [`HandlerResult`]:
//!
//! | the handler | outcome | stored text |
//! |---|---|---|
//! | returned nothing (`None`, `undefined`, `Unit`) or `true` | success | — |
//! | returned anything else | retryable failure | `the handler returned <value> (expected nothing or true)` |
//! | raised `Retry(error, after)` | retry after `after` (or by the policy without it) | the retry's `error` |
//! | raised `Snooze(seconds)` | snooze, no attempt used | — |
//! | raised `Permanent(reason)` | permanent failure (dead letter) | the reason |
//! | raised anything else | retryable failure | the exception's message |
//!
//! A message that is missing, empty or that could not be read (a `__str__` that raises) falls
//! back to the exception's type name, so a stored failure text is never empty. A hint that is not
//! a usable number of seconds (missing, negative, NaN, infinite, zero for a snooze) is a bad hint:
//! the attempt is a retryable failure whose text says so (`bad Retry.after: …`,
//! `bad Snooze.seconds: …`), never a zero delay — a zero snooze would return the message at once,
//! forever. Texts quote caller values by a bounded prefix ([`crate::text::quote`]).

use std::time::Duration;

use crate::clock::{duration_from_secs_f64, require_positive};
use crate::text::quote;
use crate::worker::Outcome;

/// What a handler did, as the binding that called it observed it.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerResult {
    /// It returned normally.
    Returned(Returned),
    /// It raised, threw or rejected.
    Raised {
        /// Which of oncely's outcome exceptions it was, if any.
        kind: Raised,
        /// The exception's message as the host prints it (`str(exc)`, `error.message`,
        /// `Throwable.message`); `None` when it has none or it could not be read.
        message: Option<String>,
        /// The exception's type name (`ValueError`, `TypeError`, `IOException`).
        type_name: String,
    },
}

/// What a handler returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Returned {
    /// Nothing: `None`, `undefined`, `Unit`.
    Nothing,
    /// The boolean `true`.
    True,
    /// Any other value, as the host language represents it for people (`repr(v)` in Python,
    /// `JSON.stringify`-like in JavaScript).
    Value(String),
}

/// Which outcome exception a handler raised.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// `Retry(error, after)`: this attempt failed; retry after `after`, or by the policy.
    Retry {
        /// The retry's own error text (`None`: none given).
        error: Option<String>,
        /// The delay hint.
        after: Hint,
    },
    /// `Snooze(seconds)`: not now; try again after `seconds` without using up an attempt.
    Snooze {
        /// How long to wait.
        seconds: Hint,
    },
    /// `Permanent(reason)`: failed for good; the message is the reason.
    Permanent,
    /// Any other exception: a retryable failure.
    Other,
}

/// A delay hint as the handler gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Hint {
    /// Not given (`None`, `undefined`, `null`).
    Absent,
    /// A number of seconds (bindings whose hints are in milliseconds divide by 1000).
    Seconds(f64),
    /// Something that is not a number, as the host prints it (`''`, `"soon"`, `[]`).
    NotANumber(String),
}

/// The failure text of an exception: its message when there is one, otherwise its type name,
/// so a stored failure is never an empty string.
pub fn failure_text(message: Option<&str>, type_name: &str) -> String {
    match message {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ if type_name.is_empty() => "the handler failed".to_owned(),
        _ => type_name.to_owned(),
    }
}

impl Hint {
    /// The hint as a duration; `field` names it in the error (`"after"`, `"seconds"`).
    fn duration(&self, field: &'static str) -> Result<Option<Duration>, String> {
        match self {
            Hint::Absent => Ok(None),
            Hint::Seconds(s) => duration_from_secs_f64(field, *s).map(Some).map_err(|e| e.to_string()),
            Hint::NotANumber(shown) => {
                Err(format!("invalid argument `{field}`: must be a number of seconds, got {}", quote(shown)))
            }
        }
    }
}

impl HandlerResult {
    /// The outcome this handler result settles its delivery with (see the module docs).
    pub fn outcome(&self) -> Outcome {
        match self {
            HandlerResult::Returned(Returned::Nothing | Returned::True) => Outcome::Success,
            HandlerResult::Returned(Returned::Value(shown)) => {
                Outcome::retry(format!("the handler returned {} (expected nothing or true)", quote(shown)))
            }
            HandlerResult::Raised { kind, message, type_name } => {
                let text = || failure_text(message.as_deref(), type_name);
                match kind {
                    Raised::Retry { error, after } => {
                        let error = failure_text(error.as_deref(), type_name);
                        match after.duration("after") {
                            Ok(after) => Outcome::Retry { after, error },
                            Err(bad) => Outcome::retry(format!("{error} (bad Retry.after: {bad})")),
                        }
                    }
                    Raised::Snooze { seconds } => {
                        let d = seconds
                            .duration("seconds")
                            .and_then(|d| d.ok_or_else(|| "a snooze needs a number of seconds".to_owned()))
                            .and_then(|d| require_positive("seconds", d).map_err(|e| e.to_string()));
                        match d {
                            Ok(d) => Outcome::Snooze(d),
                            Err(bad) => Outcome::retry(format!("bad Snooze.seconds: {bad}")),
                        }
                    }
                    Raised::Permanent => Outcome::Fail(text()),
                    Raised::Other => Outcome::retry(text()),
                }
            }
        }
    }

    /// The failure text an inbox `process` call reports and stores for this result (a handler
    /// there returns its result, so only a raised exception has one).
    pub fn failure(&self) -> Option<String> {
        match self {
            HandlerResult::Returned(_) => None,
            HandlerResult::Raised { message, type_name, .. } => {
                Some(failure_text(message.as_deref(), type_name))
            }
        }
    }

    /// The inbox failure this result stands for (`None` for a return): permanent when the
    /// handler raised `Permanent`, retryable otherwise, with [`HandlerResult::failure`]'s text.
    pub fn inbox_failure(&self) -> Option<crate::inbox::Failure<String>> {
        let text = self.failure()?;
        Some(match self {
            HandlerResult::Raised { kind: Raised::Permanent, .. } => crate::inbox::Failure::permanent(text),
            _ => crate::inbox::Failure::retryable(text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised(kind: Raised, message: Option<&str>) -> HandlerResult {
        HandlerResult::Raised { kind, message: message.map(str::to_owned), type_name: "ValueError".into() }
    }

    #[test]
    fn returns() {
        assert_eq!(HandlerResult::Returned(Returned::Nothing).outcome(), Outcome::Success);
        assert_eq!(HandlerResult::Returned(Returned::True).outcome(), Outcome::Success);
        assert_eq!(
            HandlerResult::Returned(Returned::Value("'nope'".into())).outcome(),
            Outcome::retry("the handler returned 'nope' (expected nothing or true)")
        );
    }

    #[test]
    fn texts_fall_back_to_the_type_name() {
        assert_eq!(raised(Raised::Other, Some("boom")).outcome(), Outcome::retry("boom"));
        assert_eq!(raised(Raised::Other, Some("")).outcome(), Outcome::retry("ValueError"));
        assert_eq!(raised(Raised::Other, None).outcome(), Outcome::retry("ValueError"));
        assert_eq!(raised(Raised::Permanent, None).outcome(), Outcome::Fail("ValueError".into()));
        assert_eq!(raised(Raised::Other, None).failure().as_deref(), Some("ValueError"));
    }

    #[test]
    fn hints() {
        let retry = |after| raised(Raised::Retry { error: Some("busy".into()), after }, None).outcome();
        assert_eq!(retry(Hint::Absent), Outcome::Retry { after: None, error: "busy".into() });
        assert_eq!(
            retry(Hint::Seconds(1.5)),
            Outcome::Retry { after: Some(Duration::from_millis(1500)), error: "busy".into() }
        );
        assert_eq!(
            retry(Hint::Seconds(-1.0)),
            Outcome::retry("busy (bad Retry.after: invalid argument `after`: must not be negative, got -1)")
        );
        assert_eq!(
            retry(Hint::NotANumber("''".into())),
            Outcome::retry(
                "busy (bad Retry.after: invalid argument `after`: must be a number of seconds, got '')"
            )
        );
        let snooze = |seconds| raised(Raised::Snooze { seconds }, None).outcome();
        assert_eq!(snooze(Hint::Seconds(2.0)), Outcome::Snooze(Duration::from_secs(2)));
        for bad in
            [Hint::Seconds(0.0), Hint::Absent, Hint::Seconds(f64::NAN), Hint::NotANumber("null".into())]
        {
            let Outcome::Retry { after: None, error } = snooze(bad.clone()) else { panic!("{bad:?}") };
            assert!(error.starts_with("bad Snooze.seconds: "), "{error}");
        }
        assert_eq!(
            snooze(Hint::Seconds(0.0)),
            Outcome::retry("bad Snooze.seconds: invalid argument `seconds`: must be greater than zero")
        );
    }
}
