//! The in-memory front: recently completed ids, answered without a store round trip.
//!
//! Only *completed* records are cached, and a completed record cannot change until it expires,
//! so a cached answer is always one the store would give. Claims always go to the store.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::fingerprint::Fingerprint;
use crate::records::StoredOutcome;

#[derive(Clone)]
pub(crate) struct Completed {
    pub fingerprint: Option<Fingerprint>,
    pub outcome: Arc<StoredOutcome>,
    pub expires_at: Timestamp,
}

pub(crate) struct RecentCompletions {
    cache: quick_cache::sync::Cache<String, Completed>,
}

impl RecentCompletions {
    pub fn new(capacity: usize) -> Self {
        RecentCompletions { cache: quick_cache::sync::Cache::new(capacity) }
    }

    /// The cached completion of `id`, if it is still live at `now`.
    pub fn get(&self, id: &str, now: Timestamp) -> Option<Completed> {
        self.cache.get(id).filter(|c| now < c.expires_at)
    }

    pub fn insert(&self, id: &str, completed: Completed) {
        self.cache.insert(id.to_owned(), completed);
    }
}
