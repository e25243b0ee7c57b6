//! Messages and their ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::Result;

/// The longest id accepted, in UTF-8 bytes (see [`crate::limits`]).
pub const MAX_ID_BYTES: usize = crate::limits::MAX_ID_BYTES;

/// Checks an id against the rules every store relies on ([`crate::limits::id`]).
pub fn validate_id(id: &str) -> Result<()> {
    crate::limits::id(id)
}

/// A fresh id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A message as the outbox stores and delivers it. `id` doubles as the idempotency key the
/// receiver deduplicates on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique within its outbox; 1–512 bytes of UTF-8.
    pub id: String,
    /// Optional ordering key: messages with the same key can be delivered in FIFO order.
    pub key: Option<String>,
    /// The opaque body.
    #[serde(with = "serde_bytes_as_vec")]
    pub payload: Vec<u8>,
    /// Free-form string headers.
    pub headers: BTreeMap<String, String>,
    /// When the message was first enqueued.
    pub created_at: Timestamp,
    /// Not delivered before this time.
    pub available_at: Timestamp,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

impl Message {
    /// A message with the given id (or a fresh UUIDv7 when `None`) and payload, available now.
    pub fn new(id: Option<String>, payload: Vec<u8>, now: Timestamp) -> Result<Message> {
        let id = match id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => new_id(),
        };
        Ok(Message {
            id,
            key: None,
            payload,
            headers: BTreeMap::new(),
            created_at: now,
            available_at: now,
            attempts: 0,
        })
    }
}

mod serde_bytes_as_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules() {
        assert_eq!(validate_id("").unwrap_err().code(), crate::ErrorCode::InvalidArgument);
        assert!(validate_id(&"x".repeat(512)).is_ok());
        let long = validate_id(&"x".repeat(513)).unwrap_err();
        assert!(long.to_string().contains("513 bytes"), "{long}");
        assert!(validate_id("a\0b").is_err());
        // 128 four-byte characters are 512 bytes: allowed; one more is not.
        assert!(validate_id(&"😀".repeat(128)).is_ok());
        assert!(validate_id(&"😀".repeat(129)).is_err());
    }

    #[test]
    fn generated_ids_are_uuid_v7_and_sorted() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
        assert!(a < b);
        let m = Message::new(None, vec![1], Timestamp(5)).unwrap();
        assert_eq!(m.id.len(), 36);
        assert!(Message::new(Some(String::new()), vec![], Timestamp(0)).is_err());
    }
}
