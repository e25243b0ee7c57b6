//! Every size limit oncely enforces, checked in one place with one message each, so an id, a
//! key, a payload, a header map or a result that is too large is refused the same way by every
//! call and every language — and nothing is written.

use crate::error::{Error, Result};

/// The longest id (and ordering key) accepted, in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The most bytes a message's headers may hold (names and values added up).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The default largest payload of an outbox (`max_payload_bytes`) and result of an inbox
/// (`max_result_bytes`): 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// An id: 1 to [`MAX_ID_BYTES`] bytes of UTF-8 (guaranteed by `&str`), without NUL.
pub fn id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("id", "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            "id",
            format!("is {} bytes long; the limit is {MAX_ID_BYTES} bytes", id.len()),
        ));
    }
    if id.contains('\0') {
        return Err(Error::invalid("id", "must not contain a NUL character"));
    }
    Ok(())
}

/// An ordering key: 1 to [`MAX_ID_BYTES`] bytes, without NUL.
pub fn key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_ID_BYTES || key.contains('\0') {
        return Err(Error::invalid("key", format!("must be 1 to {MAX_ID_BYTES} bytes long, without NUL")));
    }
    Ok(())
}

/// A payload of `len` bytes against the outbox's `max_payload_bytes`.
pub fn payload(len: usize, max: usize) -> Result<()> {
    bytes("payload", "max_payload_bytes", len, max)
}

/// A result (or stored failure reason) of `len` bytes against the inbox's `max_result_bytes`.
pub fn result(len: usize, max: usize) -> Result<()> {
    bytes("result", "max_result_bytes", len, max)
}

/// Headers of `total` bytes (names and values) against [`MAX_HEADER_BYTES`].
pub fn headers(total: usize) -> Result<()> {
    if total > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            "headers",
            format!("total {total} bytes; the limit is {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(())
}

fn bytes(name: &'static str, setting: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::invalid(name, format!("is {len} bytes; the limit is {max} bytes ({setting})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_limit() {
        assert_eq!(
            result(5, 4).unwrap_err().to_string(),
            "invalid argument `result`: is 5 bytes; the limit is 4 bytes (max_result_bytes)"
        );
        assert_eq!(
            payload(5, 4).unwrap_err().to_string(),
            "invalid argument `payload`: is 5 bytes; the limit is 4 bytes (max_payload_bytes)"
        );
        assert!(result(4, 4).is_ok() && payload(0, 0).is_ok());
        assert!(
            key("").is_err() && key(&"k".repeat(513)).is_err() && key("a\0").is_err() && key("k").is_ok()
        );
        assert!(headers(MAX_HEADER_BYTES).is_ok() && headers(MAX_HEADER_BYTES + 1).is_err());
    }
}
