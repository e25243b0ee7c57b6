//! The transactional inbox and outbox (later).
