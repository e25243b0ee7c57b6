//! Payload fingerprints: the same payload gives the same fingerprint in every language.

use std::fmt;

use sha2::{Digest, Sha256};

/// The first 128 bits of the SHA-256 of a payload.
///
/// Computed only by the core, so Python, Node, Kotlin and Swift agree byte for byte. An id reused
/// with a payload whose fingerprint differs is answered with [`crate::Error::Conflict`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The fingerprint of raw payload bytes.
    pub fn of(payload: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(payload);
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }

    /// The fingerprint of a JSON value in canonical form (object keys sorted, no insignificant
    /// whitespace), so that `{"a":1,"b":2}` and `{"b":2,"a":1}` fingerprint alike.
    pub fn of_json(value: &serde_json::Value) -> Fingerprint {
        // serde_json's Map is a BTreeMap unless `preserve_order` is enabled (it is not here), so
        // serializing gives sorted keys and compact separators.
        Fingerprint::of(&serde_json::to_vec(value).unwrap_or_default())
    }

    /// A fingerprint as a store keeps it (16 bytes); other bytes are a damaged store,
    /// [`crate::Error::CorruptStore`] naming `owner` (`record \`a\``, `the sent mark of \`a\``).
    pub fn from_column(owner: impl FnOnce() -> String, bytes: &[u8]) -> crate::Result<Fingerprint> {
        bytes.try_into().map(Fingerprint).map_err(|_| {
            crate::Error::CorruptStore(format!("{} has a fingerprint of {} bytes", owner(), bytes.len()))
        })
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(Fingerprint::of(b"abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn json_key_order_does_not_matter() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "b": [1,2], "a": 1 }"#).unwrap();
        assert_eq!(Fingerprint::of_json(&a), Fingerprint::of_json(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":[1,2]}"#).unwrap();
        assert_ne!(Fingerprint::of_json(&a), Fingerprint::of_json(&c));
    }
}
