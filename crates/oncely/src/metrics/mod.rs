//! What an operator sees: the store's numbers as one snapshot, rendered in the Prometheus text
//! format (docs/observability.md). Everything comes from the store, so every process that asks —
//! any language, any host — reports the same values for the same store.

mod prometheus;
mod snapshot;

pub use crate::records::ScopeCounts;
pub use prometheus::render;
pub use snapshot::{QueueSnapshot, Snapshot, inbox_scopes, snapshot};
