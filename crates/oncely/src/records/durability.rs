//! How far a store must take a commit before its caller is answered, decided per operation by
//! what losing the commit in a power cut would do.
//!
//! A write whose loss only recreates a state that the running system already creates by itself
//! — a claim or a lease that vanishes is, to everyone after the cut, a claim or lease that ran
//! out — needs to be **visible** (to every other caller and process, and kept through a process
//! crash) but not on disk. A write whose loss would undo something a caller was told, or lift a
//! promise, must be **durable**: an outcome, a completion, an enqueued message, and an
//! at-most-once mark (which must be on disk before the effect it guards may run).
//!
//! Only a store that can tell the two apart uses this (SQLite at `synchronous = FULL` lets a
//! visible-only commit skip its fsync); every other store makes every commit as durable as it
//! is configured to.

use crate::mode::Mode;

/// How far one commit must reach before its caller is told it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Durability {
    /// Seen by every other caller and process and kept through a crash of the process; it may
    /// be lost in a power cut, which leaves the state as if a lease had run out.
    Visible,
    /// On disk (at the store's configured level) before the caller is answered.
    #[default]
    Durable,
}

impl Durability {
    /// What an attempt mark of `mode` needs: an at-most-once mark is the promise itself and must
    /// be durable before the effect runs; an at-least-once or exactly-once claim or lease lost
    /// in a power cut is a claim whose lease ran out, which both modes already survive.
    pub fn of_attempt(mode: Mode) -> Durability {
        match mode {
            Mode::AtMostOnce => Durability::Durable,
            Mode::AtLeastOnce | Mode::ExactlyOnce => Durability::Visible,
        }
    }

    /// The stronger of the two: what a commit carrying both needs.
    pub fn and(self, other: Durability) -> Durability {
        self.max(other)
    }
}
