//! The `Idempotency-Key` header's value.

use crate::error::{Error, Result};

/// The request header that carries the key (matched without regard to case).
pub const KEY_HEADER: &str = "idempotency-key";

/// The longest key accepted, in characters (Stripe's bound).
pub const MAX_KEY_CHARS: usize = 255;

/// The key in a header value.
///
/// The IETF draft makes the value a structured-field string (RFC 8941: `"…"`, printable ASCII,
/// with `\"` and `\\` as the only escapes); that form is read as such. Many clients (Stripe's
/// among them) send the bare key instead, so a value without quotes is taken whole when it is
/// printable ASCII without spaces at its ends and without a comma (two headers joined into one
/// line read `a, b`). Either way the key is 1 to [`MAX_KEY_CHARS`]
/// printable ASCII characters; anything else is refused with [`Error::InvalidArgument`] naming
/// `Idempotency-Key`.
pub fn parse_key(value: &str) -> Result<String> {
    let value = value.trim_matches([' ', '\t']);
    let key = if let Some(rest) = value.strip_prefix('"') {
        unquote(rest)?
    } else if value.contains(',') {
        // Two key headers joined into one line by a client or a server (`a, b`): not one key.
        return Err(Error::invalid("Idempotency-Key", "holds a comma: a bare key is one value, sent once"));
    } else {
        value.to_owned()
    };
    if key.is_empty() {
        return Err(Error::invalid("Idempotency-Key", "must not be empty"));
    }
    if let Some(c) = key.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Error::invalid(
            "Idempotency-Key",
            format!("holds the character U+{:04X}; a key is printable ASCII", u32::from(c)),
        ));
    }
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(Error::invalid(
            "Idempotency-Key",
            format!("is {chars} characters long; the limit is {MAX_KEY_CHARS}"),
        ));
    }
    Ok(key)
}

/// The inside of an sf-string whose opening quote is gone.
fn unquote(rest: &str) -> Result<String> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err(Error::invalid("Idempotency-Key", "has text after its closing quote"))
                };
            }
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => {
                    return Err(Error::invalid(
                        "Idempotency-Key",
                        "has a backslash that escapes neither a quote nor a backslash",
                    ));
                }
            },
            c => out.push(c),
        }
    }
    Err(Error::invalid("Idempotency-Key", "has no closing quote"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_give_the_same_key() {
        assert_eq!(parse_key("\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        assert_eq!(parse_key("8e03978e-40d5").unwrap(), "8e03978e-40d5");
        assert_eq!(parse_key(" \"a\\\"b\\\\c\" ").unwrap(), "a\"b\\c");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        for (value, reason) in [
            ("", "must not be empty"),
            ("\"\"", "must not be empty"),
            ("\"abc", "has no closing quote"),
            ("\"a\"b", "has text after its closing quote"),
            ("\"a\\nb\"", "has a backslash"),
            ("caf\u{e9}", "a key is printable ASCII"),
            ("a, b", "holds a comma"),
            ("\"a\", \"b\"", "has text after its closing quote"),
        ] {
            let e = parse_key(value).unwrap_err().to_string();
            assert!(e.contains(reason), "{value:?}: {e}");
        }
        assert!(parse_key(&"k".repeat(255)).is_ok());
        assert!(parse_key(&"k".repeat(256)).unwrap_err().to_string().contains("the limit is 255"));
    }
}
