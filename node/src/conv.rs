//! Conversions of what JS passes in. Every string, number, byte and options argument of the
//! binding is read here, by the core's rules for text that crosses into oncely
//! (`oncely::text`), so that Node refuses what every other language refuses, with the same
//! error:
//!
//! - a JS value's type is checked before anything is read or formatted, and an error names only
//!   the type (`got a Buffer`), never the value: napi's own conversions format a wrong value
//!   into their message (`JSON.stringify` of a 20 MB Buffer is an 84 M character message);
//! - strings are read as UTF-16 and decoded by [`oncely::text::from_utf16`], which refuses a
//!   lone surrogate: napi's UTF-8 conversion would replace it by U+FFFD and so merge two
//!   distinct ids into one;
//! - integers arrive as JS numbers (`f64`) and are checked by [`oncely::text::integer_in`]:
//!   napi's `u32`/`i64` conversions wrap or truncate (−1 becomes 2^32 − 1, NaN becomes 0);
//! - an options object's own keys must all be options it has ([`oncely::text::unknown_option`]),
//!   so `{ leese: 5 }` is refused instead of ignored.

use std::time::Duration;

use napi::bindgen_prelude::JsObjectValue;
use napi::bindgen_prelude::*;
use napi::{JsValue, check_status, sys};
use oncely::text::MAX_SAFE_INTEGER;

use crate::errors::{Error, Napi, Result, err, invalid};

/// What a JS value is, for an error message (never its content).
pub(crate) fn kind(v: &Unknown<'_>) -> Result<&'static str> {
    Ok(match v.get_type().napi()? {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::BigInt => "a BigInt",
        ValueType::Function => "a function",
        ValueType::Object if v.is_buffer().napi()? => "a Buffer",
        ValueType::Object if v.is_typedarray().napi()? => "a typed array",
        ValueType::Object if v.is_arraybuffer().napi()? => "an ArrayBuffer",
        ValueType::Object if v.is_array().napi()? => "an array",
        ValueType::Object => "an object",
        _ => "an unsupported value",
    })
}

/// Whether `v` is undefined or null: an optional argument or option left out.
pub(crate) fn absent(v: &Unknown<'_>) -> Result<bool> {
    Ok(matches!(v.get_type().napi()?, ValueType::Undefined | ValueType::Null))
}

/// `v` unless it is missing, undefined or null.
pub(crate) fn present<'e>(v: Option<Unknown<'e>>) -> Result<Option<Unknown<'e>>> {
    match v {
        Some(v) if !absent(&v)? => Ok(Some(v)),
        _ => Ok(None),
    }
}

/// The UTF-16 code units of a JS string (type already checked).
fn utf16(v: &Unknown<'_>) -> Result<Utf16String> {
    unsafe { Utf16String::from_napi_value(v.value().env, v.raw()) }.napi()
}

/// A string argument `name`: read as UTF-16 and decoded by the core's rule, a lone surrogate
/// refused with `InvalidArgumentError`.
pub(crate) fn text(name: &'static str, v: Unknown<'_>) -> Result<String> {
    if v.get_type().napi()? != ValueType::String {
        return Err(invalid(name, format!("must be a string, got {}", kind(&v)?)));
    }
    oncely::text::from_utf16(name, &utf16(&v)?).map_err(err)
}

/// An optional string argument (undefined or null: none).
pub(crate) fn opt_text(name: &'static str, v: Option<Unknown<'_>>) -> Result<Option<String>> {
    present(v)?.map(|v| text(name, v)).transpose()
}

/// A payload or result argument: a Buffer (any `Uint8Array`) or a string (sent as UTF-8).
pub(crate) fn bytes(name: &'static str, v: Unknown<'_>) -> Result<Vec<u8>> {
    let bad = |v: &Unknown<'_>| -> Result<Error> {
        Ok(invalid(name, format!("must be a Buffer or a string, got {}", kind(v)?)))
    };
    match v.get_type().napi()? {
        ValueType::String => Ok(text(name, v)?.into_bytes()),
        ValueType::Object if v.is_typedarray().napi()? => {
            match unsafe { Uint8Array::from_napi_value(v.value().env, v.raw()) } {
                Ok(b) => Ok(b.to_vec()),
                Err(_) => Err(bad(&v)?),
            }
        }
        _ => Err(bad(&v)?),
    }
}

/// An optional payload or result (undefined or null: none).
pub(crate) fn opt_bytes(name: &'static str, v: Option<Unknown<'_>>) -> Result<Option<Vec<u8>>> {
    present(v)?.map(|v| bytes(name, v)).transpose()
}

/// A number argument (any number: the caller checks its range).
pub(crate) fn number(name: &'static str, v: Unknown<'_>) -> Result<f64> {
    if v.get_type().napi()? != ValueType::Number {
        return Err(invalid(name, format!("must be a number, got {}", kind(&v)?)));
    }
    unsafe { f64::from_napi_value(v.value().env, v.raw()) }.napi()
}

/// An integer argument: a JS number that is a whole number from `min` to `max`, by the core's
/// one range check ([`oncely::text::integer_in`]).
pub(crate) fn integer(name: &'static str, v: f64, min: u64, max: u64) -> Result<u64> {
    oncely::text::integer_in(name, v, min, max).map_err(err)
}

/// [`integer`] from 0 to [`MAX_SAFE_INTEGER`] (a count, a timestamp, a seed, a token).
pub(crate) fn count(name: &'static str, v: f64) -> Result<u64> {
    integer(name, v, 0, MAX_SAFE_INTEGER)
}

/// [`integer`] from 0 to `usize::MAX` (or [`MAX_SAFE_INTEGER`], whichever is smaller).
pub(crate) fn size(name: &'static str, v: f64) -> Result<usize> {
    let max = MAX_SAFE_INTEGER.min(u64::try_from(usize::MAX).unwrap_or(u64::MAX));
    Ok(integer(name, v, 0, max)? as usize)
}

/// [`integer`] from 0 to `u32::MAX`.
pub(crate) fn u32_of(name: &'static str, v: f64) -> Result<u32> {
    Ok(integer(name, v, 0, u64::from(u32::MAX))? as u32)
}

/// A duration argument in seconds (checked by the core).
pub(crate) fn secs(name: &'static str, v: f64) -> Result<Duration> {
    oncely::clock::duration_from_secs_f64(name, v).map_err(err)
}

pub(crate) fn opt_secs(name: &'static str, v: Option<f64>) -> Result<Option<Duration>> {
    v.map(|v| secs(name, v)).transpose()
}

/// Whether `v` is an object that can hold options or a record: not an array, typed array or
/// ArrayBuffer (which napi would read key by key — a 20 MB Buffer as 20 M keys).
fn plain_object(v: &Unknown<'_>) -> Result<bool> {
    Ok(v.get_type().napi()? == ValueType::Object
        && !v.is_array().napi()?
        && !v.is_typedarray().napi()?
        && !v.is_arraybuffer().napi()?)
}

/// The own enumerable string keys of an object, as JS strings (`Object.keys`).
fn own_keys<'e>(o: &Object<'e>) -> Result<Vec<Unknown<'e>>> {
    let env = o.value().env;
    let mut names = std::ptr::null_mut();
    check_status!(unsafe {
        sys::napi_get_all_property_names(
            env,
            o.raw(),
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut names,
        )
    })
    .napi()?;
    let names = unsafe { Array::from_napi_value(env, names).napi()? };
    let mut out = Vec::with_capacity(names.len() as usize);
    for i in 0..names.len() {
        if let Some(k) = names.get::<Unknown>(i).napi()? {
            out.push(k);
        }
    }
    Ok(out)
}

/// An options argument: missing, undefined, null or an object whose own keys are all in
/// `known` (in the caller's spelling); `what` names it in errors (e.g. `"outbox options"`).
pub(crate) struct Options<'e> {
    obj: Option<Object<'e>>,
}

impl<'e> Options<'e> {
    pub(crate) fn of(what: &'static str, v: Option<Unknown<'e>>, known: &[&str]) -> Result<Self> {
        let Some(v) = present(v)? else { return Ok(Options { obj: None }) };
        if !plain_object(&v)? {
            return Err(invalid(what, format!("must be an object, got {}", kind(&v)?)));
        }
        let obj = unsafe { Object::from_napi_value(v.value().env, v.raw()).napi()? };
        for key in own_keys(&obj)? {
            let name = String::from_utf16_lossy(&utf16(&key)?);
            if !known.contains(&name.as_str()) {
                return Err(err(oncely::text::unknown_option(what, &name, known)));
            }
        }
        Ok(Options { obj: Some(obj) })
    }

    /// Whether an options object was given (not missing, undefined or null).
    pub(crate) fn given(&self) -> bool {
        self.obj.is_some()
    }

    /// The option `name` unless it is missing, undefined or null.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Unknown<'e>>> {
        let Some(o) = &self.obj else { return Ok(None) };
        present(o.get::<Unknown>(name).napi()?)
    }

    pub(crate) fn text(&self, name: &'static str) -> Result<Option<String>> {
        self.get(name)?.map(|v| text(name, v)).transpose()
    }

    pub(crate) fn number(&self, name: &'static str) -> Result<Option<f64>> {
        self.get(name)?.map(|v| number(name, v)).transpose()
    }

    pub(crate) fn secs(&self, name: &'static str) -> Result<Option<Duration>> {
        opt_secs(name, self.number(name)?)
    }

    pub(crate) fn count(&self, name: &'static str) -> Result<Option<u64>> {
        self.number(name)?.map(|v| count(name, v)).transpose()
    }

    pub(crate) fn size(&self, name: &'static str) -> Result<Option<usize>> {
        self.number(name)?.map(|v| size(name, v)).transpose()
    }

    pub(crate) fn bytes(&self, name: &'static str) -> Result<Option<Vec<u8>>> {
        opt_bytes(name, self.get(name)?)
    }

    /// A nested options object (e.g. `retryBudget`).
    pub(crate) fn options(&self, what: &'static str, name: &str, known: &[&str]) -> Result<Options<'e>> {
        Options::of(what, self.get(name)?, known)
    }

    /// A record of strings (e.g. `headers`): an object whose own keys and values are strings.
    pub(crate) fn strings(&self, name: &'static str) -> Result<Vec<(String, String)>> {
        self.get(name)?.map(|v| strings(name, v)).transpose().map(Option::unwrap_or_default)
    }
}

/// A record of strings: an object whose own keys and values are strings, each decoded as
/// [`text`] is.
pub(crate) fn strings(name: &'static str, v: Unknown<'_>) -> Result<Vec<(String, String)>> {
    if !plain_object(&v)? {
        return Err(invalid(name, format!("must be an object of strings, got {}", kind(&v)?)));
    }
    let obj = unsafe { Object::from_napi_value(v.value().env, v.raw()).napi()? };
    let mut out = Vec::new();
    for key in own_keys(&obj)? {
        let value: Unknown = obj.get_property_unchecked(key).napi()?;
        let k = text(name, key)?;
        if value.get_type().napi()? != ValueType::String {
            return Err(invalid(
                name,
                format!(
                    "must be an object of strings, but `{}` is {}",
                    oncely::text::quote(&k),
                    kind(&value)?
                ),
            ));
        }
        out.push((k, text(name, value)?));
    }
    Ok(out)
}

/// An array argument's elements. An array with a hole is refused at its first hole: its length
/// says nothing about how many values it holds (`new Array(2 ** 32 - 1)` holds none), so it is
/// never taken as a list of that many `undefined`s.
pub(crate) fn list<'e>(name: &'static str, v: Unknown<'e>) -> Result<Vec<Unknown<'e>>> {
    if v.get_type().napi()? != ValueType::Object || !v.is_array().napi()? {
        return Err(invalid(name, format!("must be an array, got {}", kind(&v)?)));
    }
    let a = unsafe { Array::from_napi_value(v.value().env, v.raw()).napi()? };
    let mut out = Vec::new();
    for i in 0..a.len() {
        if !a.has_element(i).napi()? {
            return Err(invalid(name, format!("must be an array without holes, but index {i} is a hole")));
        }
        out.push(a.get::<Unknown>(i).napi()?.ok_or_else(|| invalid(name, "changed while being read"))?);
    }
    Ok(out)
}
