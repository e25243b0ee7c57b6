//! What an operator sees: the store's numbers as one snapshot, rendered in the Prometheus text
//! format (docs/observability.md). Everything comes from the store, so every process that asks —
//! any language, any host — reports the same values for the same store.

mod prometheus;
mod snapshot;

pub use crate::records::ScopeCounts;
pub use prometheus::render;
pub use snapshot::{QueueSnapshot, Snapshot, inbox_scopes, snapshot};

// The store reads the metrics are made of, on every store. Here rather than in `store/`: they
// drive the stores through the facades, which the stores themselves must not name
// (tests/layering.rs).
#[cfg(test)]
mod outbox_reads_tests;
#[cfg(test)]
mod scope_counts_tests;
#[cfg(test)]
mod test_stores;
