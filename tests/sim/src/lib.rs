//! oncely's deterministic simulator: the real outbox, inbox and stores driven by one seeded
//! scheduler with a virtual clock, with faults injected into the network, the handlers, the
//! stores, the processes, the power and the clocks. See docs/simulation.md.

pub mod chaos;
pub mod oracle;
pub mod rng;
pub mod vfs;
pub mod world;

pub use world::{RunReport, run};

/// The guarantee under test, end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimMode {
    /// Outbox and inbox at-most-once.
    AtMostOnce,
    /// Outbox and inbox at-least-once.
    AtLeastOnce,
    /// Outbox exactly-once, the plain inbox (effect outside the store).
    ExactlyOnce,
    /// Outbox exactly-once, the transactional inbox (effect in the store's transaction).
    Transactional,
}

/// Where the nodes keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreKind {
    /// `MemoryStore` (a crash keeps it: it stands for a store that outlives the process).
    Memory,
    /// SQLite with `synchronous = FULL` (the default).
    SqliteFull,
    /// SQLite with `synchronous = NORMAL`.
    SqliteNormal,
}

impl SimMode {
    /// A short name for tables and replay commands.
    pub fn name(self) -> &'static str {
        match self {
            SimMode::AtMostOnce => "at_most_once",
            SimMode::AtLeastOnce => "at_least_once",
            SimMode::ExactlyOnce => "exactly_once",
            SimMode::Transactional => "transactional",
        }
    }
}

impl StoreKind {
    /// A short name for tables and replay commands.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::SqliteFull => "sqlite_full",
            StoreKind::SqliteNormal => "sqlite_normal",
        }
    }
}

/// Every (mode, store) pair the simulator runs; a seed picks one.
pub const CONFIGS: [(SimMode, StoreKind); 11] = [
    (SimMode::AtMostOnce, StoreKind::Memory),
    (SimMode::AtLeastOnce, StoreKind::Memory),
    (SimMode::ExactlyOnce, StoreKind::Memory),
    (SimMode::AtMostOnce, StoreKind::SqliteFull),
    (SimMode::AtLeastOnce, StoreKind::SqliteFull),
    (SimMode::ExactlyOnce, StoreKind::SqliteFull),
    (SimMode::Transactional, StoreKind::SqliteFull),
    (SimMode::AtMostOnce, StoreKind::SqliteNormal),
    (SimMode::AtLeastOnce, StoreKind::SqliteNormal),
    (SimMode::ExactlyOnce, StoreKind::SqliteNormal),
    (SimMode::Transactional, StoreKind::SqliteNormal),
];
