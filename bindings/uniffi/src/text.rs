//! What the host passes in, read by the core's rules for caller input (`oncely::text`), so that
//! Kotlin refuses what Python and Node refuse, with the same error and the same message:
//!
//! - [`HostText`]: every string the host hands to oncely crosses as its UTF-16 code units and is
//!   decoded by [`oncely::text::from_utf16`], which refuses a lone surrogate. A Kotlin `String`
//!   is UTF-16 and can hold one (`"\uD800"`); uniffi's own `String` conversion encodes to UTF-8
//!   first and throws an untyped `MalformedInputException` there (or, with a replacing encoder,
//!   merges two distinct ids into one). In the generated sources `HostText` is a `String`
//!   (`uniffi.toml`: the Kotlin `HostText.kt` and Swift `HostText.swift` helpers convert it).
//!   Swift strings cannot hold a lone surrogate (a `String` is always valid Unicode), so Swift
//!   never meets the error; it sends its UTF-16 the same way.
//! - integers: every `i64`/`u64` parameter (durations and timestamps in ms, seeds, tokens, sizes)
//!   is a whole number from 0 to 2^53 − 1 by [`oncely::text::integer_from_i128`], as in Python
//!   and Node: never wrapped, never an overflow further in.

use std::time::Duration;

use oncely::Timestamp;
use oncely::text::{MAX_SAFE_INTEGER, from_utf16, integer_from_i128};

use crate::errors::OncelyError;

/// A string from (or for) the host as its UTF-16 code units; on the wire their little-endian
/// bytes (`ByteArray` in Kotlin, `Data` in Swift), shown to the host as `String`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HostText(Vec<u16>);

uniffi::custom_type!(HostText, Vec<u8>, {
    lower: |t| t.0.iter().flat_map(|u| u.to_le_bytes()).collect(),
    try_lift: |b| {
        if b.len() % 2 != 0 {
            uniffi::deps::anyhow::bail!("a HostText of {} bytes (UTF-16 needs an even number)", b.len());
        }
        Ok(HostText(b.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect()))
    },
});

impl HostText {
    /// The text, or the core's `InvalidArgument` on `name` when it holds a lone surrogate.
    pub fn decode(&self, name: &'static str) -> Result<String, OncelyError> {
        Ok(from_utf16(name, &self.0)?)
    }

    /// The text with a lone surrogate replaced by U+FFFD: only for a handler's failure text,
    /// which is stored lossily rather than refused (refusing it would lose the failure itself;
    /// docs/semantics.md, "Input from a host language").
    pub fn lossy(&self) -> String {
        String::from_utf16_lossy(&self.0)
    }
}

impl From<&str> for HostText {
    fn from(s: &str) -> Self {
        HostText(s.encode_utf16().collect())
    }
}

impl From<String> for HostText {
    fn from(s: String) -> Self {
        HostText::from(s.as_str())
    }
}

/// An optional text parameter.
pub(crate) fn opt_text(name: &'static str, t: Option<HostText>) -> Result<Option<String>, OncelyError> {
    t.map(|t| t.decode(name)).transpose()
}

/// A list of texts, each decoded as `name`.
pub(crate) fn texts(name: &'static str, ts: Vec<HostText>) -> Result<Vec<String>, OncelyError> {
    ts.iter().map(|t| t.decode(name)).collect()
}

/// A host integer as a whole number from 0 to 2^53 − 1, by the core's rule.
pub(crate) fn count(name: &'static str, v: impl Into<i128>) -> Result<u64, OncelyError> {
    Ok(integer_from_i128(name, v.into(), 0, MAX_SAFE_INTEGER)?)
}

/// A duration in milliseconds (0 to 2^53 − 1).
pub(crate) fn ms(name: &'static str, v: i64) -> Result<Duration, OncelyError> {
    count(name, v).map(Duration::from_millis)
}

pub(crate) fn opt_ms(name: &'static str, v: Option<i64>) -> Result<Option<Duration>, OncelyError> {
    v.map(|v| ms(name, v)).transpose()
}

/// A timestamp in milliseconds since the Unix epoch (0 to 2^53 − 1).
pub(crate) fn timestamp(name: &'static str, v: i64) -> Result<Timestamp, OncelyError> {
    count(name, v).map(|v| Timestamp(v as i64))
}

/// A size in bytes or items (0 to 2^53 − 1).
pub(crate) fn size(name: &'static str, v: u64) -> Result<usize, OncelyError> {
    let v = count(name, v)?;
    usize::try_from(v)
        .map_err(|_| oncely::text::integer_out_of_range(name, &v.to_string(), 0, usize::MAX as u64).into())
}

#[cfg(test)]
mod tests {
    use uniffi::{Lift, Lower};

    use super::*;

    fn wire(units: &[u16]) -> Vec<u8> {
        units.iter().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn text_crosses_as_utf16_and_lone_surrogates_are_the_core_error() {
        let lift =
            |b: Vec<u8>| <HostText as Lift<crate::UniFfiTag>>::try_lift(Lower::<crate::UniFfiTag>::lower(b));
        let t = lift(wire(&[0x61, 0xD83D, 0xDE00])).unwrap();
        assert_eq!(t.decode("id").unwrap(), "a😀");
        let high = lift(wire(&[0xD800])).unwrap().decode("id").unwrap_err();
        assert_eq!(
            high.to_string(),
            "invalid argument `id`: holds a lone surrogate U+D800 at character 0; text must be valid Unicode"
        );
        assert!(matches!(high, OncelyError::InvalidArgument(_)));
        // Two distinct lone surrogates stay distinct (never both U+FFFD).
        assert_ne!(lift(wire(&[0xD800])).unwrap(), lift(wire(&[0xDFFF])).unwrap());
        assert_eq!(lift(wire(&[0x62, 0xDFFF])).unwrap().lossy(), "b\u{FFFD}");
        assert!(lift(vec![1, 2, 3]).is_err());
        assert_eq!(HostText::from("é"), lift(wire(&[0xE9])).unwrap());
    }

    #[test]
    fn integers_are_whole_numbers_from_0_to_2_pow_53_minus_1() {
        assert_eq!(ms("lease_ms", 1500).unwrap(), Duration::from_millis(1500));
        assert_eq!(
            ms("lease_ms", -1).unwrap_err().to_string(),
            "invalid argument `lease_ms`: must be a whole number from 0 to 9007199254740991, got -1"
        );
        assert!(ms("lease_ms", i64::MAX).is_err());
        assert!(count("seed", u64::MAX).is_err());
        assert_eq!(count("seed", MAX_SAFE_INTEGER).unwrap(), MAX_SAFE_INTEGER);
        assert!(timestamp("now_ms", i64::MIN).is_err());
    }
}
