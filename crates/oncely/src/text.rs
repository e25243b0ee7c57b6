//! Rules for text that crosses from a caller into oncely, shared by every binding so that each
//! language refuses the same input with the same error and the same message:
//!
//! - text must be valid Unicode: a lone UTF-16 surrogate (which JavaScript and Python strings can
//!   hold) is refused, never replaced by U+FFFD — replacing it would merge two distinct ids into
//!   one, so the second message would be answered as a duplicate of the first;
//! - integers from hosts whose numbers are wider or looser than Rust's (JavaScript doubles,
//!   Python's unbounded ints) are range-checked into an exact Rust integer or refused;
//! - an error message quotes at most [`QUOTE_LIMIT`] characters of any caller input, so a
//!   20 MB id produces a short error, not a 20 MB one.

use crate::error::{Error, Result};

/// The most characters of a caller's input that an error message quotes.
pub const QUOTE_LIMIT: usize = 64;

/// `s` for an error message: whole when it is at most [`QUOTE_LIMIT`] characters, otherwise its
/// first [`QUOTE_LIMIT`] characters followed by `…` and the full length in bytes. Control
/// characters are escaped, so a quote never breaks a log line.
pub fn quote(s: &str) -> String {
    quote_up_to(s, QUOTE_LIMIT)
}

/// The most characters of a store's own error message that oncely passes on: a database may
/// repeat caller input in its messages (SQLite's `near "…": syntax error` quotes the token,
/// `no such table: …` the name), so its text is bounded like a quote, only more generously.
pub const MESSAGE_LIMIT: usize = 256;

/// A store's error text bounded by [`MESSAGE_LIMIT`], as [`quote`] bounds caller input.
pub fn store_message(s: &str) -> String {
    quote_up_to(s, MESSAGE_LIMIT)
}

fn quote_up_to(s: &str, limit: usize) -> String {
    let mut out = String::with_capacity(s.len().min(limit * 4) + 24);
    let mut chars = s.chars();
    for c in chars.by_ref().take(limit) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
}

/// Decodes UTF-16 code units (a JavaScript string, a JVM string) into a Rust string, refusing a
/// lone surrogate with [`Error::InvalidArgument`] on `name`. The message is the one
/// [`lone_surrogate`] builds, in every language.
pub fn from_utf16(name: &'static str, units: &[u16]) -> Result<String> {
    let mut out = String::with_capacity(units.len());
    for (index, unit) in char::decode_utf16(units.iter().copied()).enumerate() {
        match unit {
            Ok(c) => out.push(c),
            Err(e) => return Err(lone_surrogate(name, e.unpaired_surrogate(), index)),
        }
    }
    Ok(out)
}

/// The error for text holding a lone surrogate `unit` at character position `index`: the one
/// error every binding raises for it (Python detects it while encoding a `str`, Node while
/// decoding a string's UTF-16).
pub fn lone_surrogate(name: &'static str, unit: u16, index: usize) -> Error {
    Error::invalid(
        name,
        format!("holds a lone surrogate U+{unit:04X} at character {index}; text must be valid Unicode"),
    )
}

/// The largest integer a JavaScript number holds exactly (2^53 − 1): the upper bound of every
/// integer parameter, so a value means the same in every language.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A host number that must be a whole number from `min` to `max` (both at most
/// [`MAX_SAFE_INTEGER`]): NaN, infinities, fractions and values outside the range are refused
/// with one message in every language.
pub fn integer_in(name: &'static str, v: f64, min: u64, max: u64) -> Result<u64> {
    if v.is_finite() && v.fract() == 0.0 && v >= min as f64 && v <= max as f64 {
        return Ok(v as u64);
    }
    Err(integer_out_of_range(name, &format_number(v), min, max))
}

/// The same rule for a host integer that arrives as a wide integer (Python's `int`).
pub fn integer_from_i128(name: &'static str, v: i128, min: u64, max: u64) -> Result<u64> {
    if v >= min as i128 && v <= max as i128 {
        return Ok(v as u64);
    }
    Err(integer_out_of_range(name, &v.to_string(), min, max))
}

/// The error for an integer parameter outside `min..=max`; `got` is the caller's value as text.
pub fn integer_out_of_range(name: &'static str, got: &str, min: u64, max: u64) -> Error {
    Error::invalid(name, format!("must be a whole number from {min} to {max}, got {}", quote(got)))
}

/// A number as JavaScript and Python print it where it matters here: whole numbers without a
/// fractional part, the rest as Rust prints an `f64`.
fn format_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e21 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

/// The error for an option a caller named that `what` (e.g. `"outbox options"`) does not have.
/// `known` lists the options it does have, in the caller's spelling.
pub fn unknown_option(what: &'static str, name: &str, known: &[&str]) -> Error {
    Error::invalid(what, format!("has no option `{}` (known: {})", quote(name), known.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keeps_short_text_and_bounds_long_text() {
        assert_eq!(quote("payment-1"), "payment-1");
        assert_eq!(quote("a\nb"), "a\\nb");
        assert_eq!(quote("'x' \"y\" é"), "'x' \"y\" é");
        let long = "x".repeat(20 << 20);
        let q = quote(&long);
        assert!(q.len() < 100, "{q}");
        assert!(q.ends_with(&format!("… ({} bytes)", 20 << 20)));
    }

    #[test]
    fn lone_surrogates_are_refused_and_pairs_kept() {
        let high = from_utf16("id", &[0xD800]).unwrap_err();
        let low = from_utf16("id", &[0x61, 0xDFFF]).unwrap_err();
        assert_eq!(
            high.to_string(),
            "invalid argument `id`: holds a lone surrogate U+D800 at character 0; text must be valid Unicode"
        );
        assert!(low.to_string().contains("U+DFFF at character 1"), "{low}");
        assert_eq!(from_utf16("id", &[0xD83D, 0xDE00]).unwrap(), "😀");
        assert_eq!(from_utf16("id", &[]).unwrap(), "");
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(integer_in("n", 5.0, 0, 10).unwrap(), 5);
        for bad in [-1.0, 11.0, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2f64.powi(70)] {
            assert!(integer_in("n", bad, 0, 10).is_err(), "{bad}");
        }
        assert_eq!(
            integer_in("n", -1.0, 0, 10).unwrap_err().to_string(),
            "invalid argument `n`: must be a whole number from 0 to 10, got -1"
        );
        assert_eq!(
            integer_from_i128("n", -1, 0, 10).unwrap_err().to_string(),
            integer_in("n", -1.0, 0, 10).unwrap_err().to_string()
        );
        assert!(integer_from_i128("n", 1 << 70, 0, MAX_SAFE_INTEGER).is_err());
        assert_eq!(
            integer_in("n", f64::NAN, 0, 1).unwrap_err().to_string(),
            "invalid argument `n`: must be a whole number from 0 to 1, got NaN"
        );
    }

    #[test]
    fn unknown_options_name_the_known_ones() {
        let e = unknown_option("worker options", "concurency", &["concurrency", "pollInterval"]);
        assert_eq!(
            e.to_string(),
            "invalid argument `worker options`: has no option `concurency` (known: concurrency, pollInterval)"
        );
    }
}
