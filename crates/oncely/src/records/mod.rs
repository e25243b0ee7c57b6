//! The records and operations that the inbox, the outbox and every store share: what is stored
//! for an inbox id and an outbox message, the inbox's operations with the one rule that decides
//! them ([`decide`]), and the answers a store gives. A leaf: it depends on no facade and no
//! store, so the stores (`crate::store`) depend on it and never on `crate::inbox` or
//! `crate::outbox`.

mod decide;
mod durability;
pub mod inbox;
pub mod outbox;

pub(crate) use decide::decide_with;
pub use decide::{InboxOp, OpAnswer, Write, decide};
pub use durability::Durability;
pub use inbox::{CachePolicy, InboxRecord, RecordState, ScopeCounts, Status, StoredOutcome};
pub use outbox::{
    MessageState, OutboxRecord, QueueCounts, QueueStats, limit_columns, limits_from_columns, mode_column,
    mode_from_column,
};
