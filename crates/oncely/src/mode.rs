//! The three delivery guarantees.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Which guarantee a delivery gets. The only difference between the modes is when the "done"
/// mark is written relative to the effect (see the README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The mark is written before the effect: a failure can lose the effect, never repeat it.
    AtMostOnce,
    /// The mark is written after the effect: a failure can repeat the effect, never lose it.
    AtLeastOnce,
    /// A fenced lease is taken before the effect and completed after it; duplicates get the
    /// stored result. Exactly once when the effect commits with the mark (transactional inbox),
    /// effectively once otherwise.
    ExactlyOnce,
}

impl Mode {
    /// The stable snake_case name (`"at_most_once"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::AtMostOnce => "at_most_once",
            Mode::AtLeastOnce => "at_least_once",
            Mode::ExactlyOnce => "exactly_once",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.replace('-', "_").as_str() {
            "at_most_once" => Ok(Mode::AtMostOnce),
            "at_least_once" => Ok(Mode::AtLeastOnce),
            "exactly_once" => Ok(Mode::ExactlyOnce),
            _ => Err(Error::invalid(
                "mode",
                format!(
                    "unknown mode `{}` (expected at_most_once, at_least_once or exactly_once)",
                    crate::text::quote(s)
                ),
            )),
        }
    }
}
