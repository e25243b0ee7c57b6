//! Arguments from Python, checked by the core's rules for caller input (`oncely::text`), so that
//! Python refuses bad input with the same error and message as every other language:
//!
//! - [`Int<P>`]: an integer parameter — any `int` (or object with `__index__`), range-checked by
//!   [`oncely::text::integer_from_i128`]; outside its range (`-1`, `2**70`, `2**200`) it is
//!   `InvalidArgument`, not Python's untyped `OverflowError`;
//! - [`Text<P>`]: a text parameter — a `str`; one holding a lone surrogate (`"\ud800"`) is
//!   [`oncely::text::lone_surrogate`]'s `InvalidArgument`, not `UnicodeEncodeError`.
//!
//! `P` is a marker naming the parameter (and giving an integer's range): every parameter is
//! one line of the [`params!`] table below, so the ranges can be read in one place.

use std::borrow::Cow;
use std::marker::PhantomData;

use oncely::text::{MAX_SAFE_INTEGER, integer_from_i128, integer_out_of_range, lone_surrogate};
use pyo3::exceptions::{PyOverflowError, PyUnicodeEncodeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString};

use crate::to_py;

/// A parameter's name and, for an integer, its range (`MIN..=MAX`, `MAX` ≤ 2^53 − 1).
pub(crate) trait Param {
    const NAME: &'static str;
    const MIN: u64 = 0;
    const MAX: u64 = MAX_SAFE_INTEGER;
}

macro_rules! params {
    ($($ty:ident = $name:literal $(, $min:expr, $max:expr)?;)*) => {$(
        pub(crate) struct $ty;
        impl Param for $ty {
            const NAME: &'static str = $name;
            $(const MIN: u64 = $min; const MAX: u64 = $max;)?
        }
    )*};
}

const MAX: u64 = MAX_SAFE_INTEGER;
const U32: u64 = u32::MAX as u64;

params! {
    // integers: counts and sizes from 0 (the core refuses the values it has rules against),
    // timestamps in ms since the Unix epoch from 0, all at most 2^53 - 1 (the type's max if less)
    StartMs = "start_ms", 0, MAX;
    Ms = "ms", 0, MAX;
    Seed = "seed", 0, MAX;
    MaxPayloadBytes = "max_payload_bytes", 0, MAX;
    RecentCapacity = "recent_capacity", 0, MAX;
    MaxResultBytes = "max_result_bytes", 0, MAX;
    LeaseMax = "max", 0, MAX;
    Token = "token", 0, MAX;
    AfterSeq = "after_seq", 0, MAX;
    Limit = "limit", 0, MAX;
    Count = "n", 0, oncely::backoff::MAX_SCHEDULE_LEN as u64; // the core's bound on a schedule
    Attempts = "attempts", 0, U32;
    FirstAttemptAtMs = "first_attempt_at_ms", 0, MAX;
    NowMs = "now_ms", 0, MAX;
    LastDelayMs = "last_delay_ms", 0, MAX;
    RetryAfterMs = "retry_after_ms", 0, MAX;
    Concurrency = "concurrency", 1, MAX;
    Status = "status", 0, u16::MAX as u64; // the core checks a response's 100-599
    // text
    Location = "location";
    Url = "url";
    Schema = "schema";
    Scope = "scope";
    Queue = "queue";
    Id = "id";
    Ids = "ids";
    Key = "key";
    ModeName = "mode";
    CachePolicyName = "cache_policy";
    OrderingName = "ordering";
    Poison = "poison";
    ErrorText = "error";
    Reason = "reason";
    Action = "action";
    Sql = "sql";
    Method = "method";
    Path = "path";
    Query = "query";
    RetryAfter = "retry_after";
}

/// An integer parameter, range-checked by the core (see the module doc).
pub(crate) struct Int<P>(pub u64, PhantomData<P>);

impl<P> Int<P> {
    /// A default value (not checked: defaults are in range).
    pub(crate) const fn new(v: u64) -> Self {
        Int(v, PhantomData)
    }
}

impl<'a, 'py, P: Param> FromPyObject<'a, 'py> for Int<P> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        integer(P::NAME, &obj, P::MIN, P::MAX).map(Int::new)
    }
}

/// A flag: a `bool`, or an `int` taken by its truth value (`permanent=1`), as Python's own flags
/// are; anything else is a `TypeError` naming its type. (pyo3's `bool` refuses every `int`.)
/// `permanent` is the only flag a call takes, so its name is in the message.
pub(crate) struct Flag(pub bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Flag {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyInt>() {
            // `bool` is a subclass of `int`: both are read by their truth value.
            return Ok(Flag(obj.is_truthy()?));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "`permanent` must be bool, not {}",
            crate::type_name(&obj)
        )))
    }
}

/// `obj` (an `int` or an object with `__index__`; anything else is a `TypeError`) as a whole
/// number from `min` to `max`, by the core's rule.
pub(crate) fn integer(name: &'static str, obj: &Bound<'_, PyAny>, min: u64, max: u64) -> PyResult<u64> {
    let index;
    let obj = if obj.is_instance_of::<PyInt>() {
        obj
    } else {
        // `operator.index`: an `int` from `__index__`, a TypeError for floats, str and the rest.
        index = obj.py().import("operator")?.call_method1("index", (obj,))?;
        &index
    };
    match obj.extract::<i128>() {
        Ok(v) => integer_from_i128(name, v, min, max).map_err(to_py),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            // Wider than 128 bits. Its decimal text may exceed Python's digit limit: then its size.
            let got = match obj.str() {
                Ok(s) => s.to_string(),
                Err(_) => format!("an integer of {} bits", obj.call_method0("bit_length")?),
            };
            Err(to_py(integer_out_of_range(name, &got, min, max)))
        }
        Err(e) => Err(e),
    }
}

/// A number parameter (seconds, a budget's rate): a `float`, an `int` or an object with
/// `__float__`, as `f64` for the core's checks. An `int` too large for a float (`10**400`, which
/// Python's own conversion refuses with an untyped `OverflowError`) is taken as the largest float
/// of its sign, which every rule of the core refuses as it refuses that float (a duration "is too
/// large" or "must not be negative").
pub(crate) struct Num(pub f64);

impl<'a, 'py> FromPyObject<'a, 'py> for Num {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<f64>() {
            Ok(v) => Ok(Num(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) && obj.is_instance_of::<PyInt>() => {
                Ok(Num(if obj.lt(0)? { f64::MIN } else { f64::MAX }))
            }
            Err(e) => Err(e),
        }
    }
}

/// A text parameter: a `str` without lone surrogates (see the module doc).
pub(crate) struct Text<P>(pub String, PhantomData<P>);

impl<P> Text<P> {
    /// A default value.
    pub(crate) fn new(s: impl Into<String>) -> Self {
        Text(s.into(), PhantomData)
    }
}

impl<P> std::ops::Deref for Text<P> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a, 'py, P: Param> FromPyObject<'a, 'py> for Text<P> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let s = obj.cast::<PyString>()?;
        Ok(Text::new(text(P::NAME, &s)?))
    }
}

/// An options value given as JSON: a `str` (read by [`text`]) or a `dict` (written by
/// `json.dumps`) gives `Some(text)`; any other type `None`, for the caller to refuse in its own
/// words. A dict json cannot write (an int past Python's digit limit, a cycle, a float NaN key)
/// is refused with `unwritable(the name of json's exception)`, never with json's own exception;
/// json's `TypeError` (a value of no JSON type) passes through.
pub(crate) fn json_text(
    py: Python<'_>,
    name: &'static str,
    v: &Bound<'_, PyAny>,
    unwritable: impl FnOnce(String) -> oncely::Error,
) -> PyResult<Option<String>> {
    if let Ok(s) = v.cast::<PyString>() {
        return text(name, s).map(Some);
    }
    if !v.is_instance_of::<PyDict>() {
        return Ok(None);
    }
    match py.import("json")?.call_method1("dumps", (v,)) {
        Ok(t) => t.extract().map(Some),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => Err(e),
        Err(e) => {
            let why = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_default();
            Err(to_py(unwritable(why)))
        }
    }
}

/// `s` as Rust text; a lone surrogate is the core's [`lone_surrogate`] error on `name`, with the
/// surrogate's character position in the Python string.
pub(crate) fn text(name: &'static str, s: &Bound<'_, PyString>) -> PyResult<String> {
    let py = s.py();
    match s.to_cow() {
        Ok(c) => Ok(Cow::into_owned(c)),
        Err(e) if e.is_instance_of::<PyUnicodeEncodeError>(py) => {
            // Encoding to UTF-8 fails only at a surrogate; `start` is its index.
            let index: usize = e.value(py).getattr("start")?.extract()?;
            let unit: u32 = py.import("builtins")?.getattr("ord")?.call1((s.get_item(index)?,))?.extract()?;
            Err(to_py(lone_surrogate(name, unit as u16, index)))
        }
        Err(e) => Err(e),
    }
}

/// `obj` as text when it is a `str` ([`text`]'s rule), else a `TypeError` naming its type.
pub(crate) fn text_of(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => text(name, s),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "`{name}` must be str, not {}",
            crate::type_name(obj)
        ))),
    }
}

/// Message headers: a dict of `str` to `str`, both by [`text`]'s rule.
pub(crate) struct Headers(pub Vec<(String, String)>);

impl<'a, 'py> FromPyObject<'a, 'py> for Headers {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let d = obj.cast::<PyDict>()?;
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            out.push((text_of("headers", &k)?, text_of("headers", &v)?));
        }
        Ok(Headers(out))
    }
}

/// The keyword arguments of one call: `WHAT` names the call in errors (the noun Node uses for
/// the same call's options; `"<name> arguments"` where Node takes only positional arguments) and
/// `KNOWN` lists every name the call takes as a keyword, in Python's spelling.
pub(crate) trait Call {
    const WHAT: &'static str;
    const KNOWN: &'static [&'static str];
}

macro_rules! calls {
    ($($ty:ident = $what:literal [$($name:literal),* $(,)?];)*) => {
        $(
            #[allow(dead_code)] // the calls written in Python are used through `CALLS` only
            pub(crate) struct $ty;
            impl Call for $ty {
                const WHAT: &'static str = $what;
                const KNOWN: &'static [&'static str] = &[$($name),*];
            }
        )*
        /// Every call's `(WHAT, KNOWN)`, for the calls written in Python (`_check_keywords`).
        pub(crate) const CALLS: &[(&str, &[&str])] = &[$(($what, &[$($name),*])),*];
    };
}

calls! {
    // module
    FingerprintKw = "fingerprint arguments" ["payload"];
    // clock and store
    ManualClockKw = "ManualClock arguments" ["start_ms"];
    AdvanceKw = "advance arguments" ["seconds"];
    AdvanceMsKw = "advance_ms arguments" ["ms"];
    SetMsKw = "set_ms arguments" ["ms"];
    StoreKw = "Store arguments" ["location"];
    TransactionKw = "transaction arguments" ["work"];
    SchemaUrlKw = "postgres_schema_url arguments" ["url", "schema"];
    // inbox
    InboxKw = "inbox options"
        ["store", "scope", "mode", "lease", "retention", "cache_policy", "recent_capacity", "max_result_bytes", "clock"];
    BeginKw = "begin options" ["id", "payload", "mode", "lease"]; // also a begin_many request dict
    BeginManyKw = "begin_many arguments" ["requests"];
    FinishManyKw = "finish_many arguments" ["items"];
    ProcessKw = "process options" ["id", "payload", "handler", "mode", "lease", "wait"];
    ProcessTxKw = "process options" ["id", "payload", "handler"];
    TicketFinishKw = "finish arguments" ["result"];
    TicketFailKw = "fail arguments" ["reason"];
    TicketSettleKw = "settle options" ["result", "error", "permanent"];
    ClaimKw = "claim arguments" ["id", "payload", "mode", "lease"];
    IdempotentKw = "idempotent options" ["key", "payload", "mode", "lease", "wait"];
    // outbox
    OutboxKw = "outbox options" [
        "store", "queue", "mode", "retry", "lease", "ordering", "poison", "park_after", "seed", "retry_budget",
        "max_payload_bytes", "dedup_window", "clock",
    ];
    RetryBudgetKw = "retry budget options" ["ratio", "min_per_second", "burst"];
    EnqueueKw = "enqueue options" ["payload", "id", "key", "headers", "delay"]; // also an enqueue_many dict
    EnqueueManyKw = "enqueue_many arguments" ["messages"];
    LeaseKw = "lease arguments" ["max"];
    SettleKw = "settle options" ["id", "token", "action", "after", "error", "reason", "lease"];
    DeadLettersKw = "dead_letters arguments" ["after_seq", "limit"];
    CancelKw = "cancel arguments" ["id"];
    GetKw = "get arguments" ["id"];
    ReplayKw = "replay arguments" ["id"];
    PurgeDeadKw = "purge_dead arguments" ["ids"];
    OnEventKw = "on_event arguments" ["callback"];
    RetryKw = "retry arguments" ["error", "after"];
    SnoozeKw = "snooze arguments" ["after"];
    FailKw = "fail arguments" ["reason"];
    ExtendKw = "extend arguments" ["lease"];
    TxExecuteKw = "execute arguments" ["sql", "params"];
    TxEnqueueKw = "enqueue options" ["outbox", "payload", "id", "key", "headers", "delay"];
    TxEnqueueManyKw = "enqueue_many arguments" ["outbox", "messages"];
    RetryPolicyKw = "RetryPolicy arguments" ["policy"];
    ScheduleKw = "schedule_ms arguments" ["seed", "n"];
    DecideKw = "decideMs arguments"
        ["seed", "attempts", "first_attempt_at_ms", "now_ms", "last_delay_ms", "retry_after_ms"];
    // worker
    WorkerKw = "worker options" ["outbox", "concurrency", "poll_interval", "shutdown_timeout"];
    RunKw = "run options" ["handler"];
    RetryExcKw = "Retry options" ["error", "after"];
    SnoozeExcKw = "Snooze arguments" ["seconds"];
    // http
    HttpGateKw = "HttpGate options" ["store", "policy", "clock"];
    AdmitKw = "admit options" ["method", "path", "headers", "body", "query", "scope"];
    RespondTxKw = "respond_in_transaction options" ["method", "path", "handler", "headers", "body", "query", "scope"];
    HttpCompleteKw = "complete arguments" ["status", "headers", "body"];
    HttpRetryKw = "HttpRetry arguments" ["key", "retry"];
    HttpNextKw = "next arguments" ["status", "retry_after"];
    HttpVerdictKw = "http_verdict arguments" ["status", "retry_after"];
    HttpRequestPayloadKw = "http_request_payload arguments" ["method", "url", "headers", "body"];
    HttpRequestOfKw = "http_request_of arguments" ["payload"];
}

/// The keyword arguments a call's signature does not name (its `**extra`, which pyo3 fills with
/// them): any is refused with the core's [`oncely::text::unknown_option`] error, so that a
/// misspelt keyword (`lease(maxx=5)`) is `InvalidArgument` with the same text as Node's, not
/// Python's `TypeError`. Declared as `extra: Option<Extra<C>>`; extracting it is the check.
pub(crate) struct Extra<C>(PhantomData<C>);

impl<'a, 'py, C: Call> FromPyObject<'a, 'py> for Extra<C> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        keywords(C::WHAT, &obj.cast::<PyDict>()?.to_owned(), C::KNOWN)?;
        Ok(Extra(PhantomData))
    }
}

/// Refuses a key of `d` that is not one of `known`, with the core's `unknown_option` error on
/// `what` (a key that is not a `str` is a `TypeError`).
pub(crate) fn keywords(what: &'static str, d: &Bound<'_, PyDict>, known: &[&str]) -> PyResult<()> {
    for key in d.keys() {
        let k = text_of(what, &key)?;
        if !known.contains(&k.as_str()) {
            return Err(to_py(oncely::text::unknown_option(what, &k, known)));
        }
    }
    Ok(())
}

/// `_check_keywords(what, extra)`: [`keywords`] for the calls written in Python (`Inbox.claim`,
/// `Inbox.idempotent`, `Retry`, `Snooze`), by their `what` in [`CALLS`].
#[pyfunction]
pub(crate) fn _check_keywords(what: &Bound<'_, PyString>, extra: &Bound<'_, PyDict>) -> PyResult<()> {
    let name = text("what", what)?;
    let (what, known) = CALLS.iter().find(|(w, _)| *w == name).ok_or_else(|| {
        to_py(oncely::Error::invalid("what", format!("no such call: {}", oncely::text::quote(&name))))
    })?;
    keywords(what, extra, known)
}

/// The field `key` of the `index`-th `item` of a batch (`"message"`, `"request"`), extracted:
/// a value of the wrong Python type is a TypeError that names the item and the field
/// (`message 1: `headers`: …`); any other error (the core's, for a bad value) is passed on.
pub(crate) fn item_field<'py, T>(
    item: &'static str,
    index: usize,
    key: &str,
    v: &Bound<'py, PyAny>,
) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py, Error = PyErr>,
{
    use pyo3::exceptions::PyTypeError;
    v.extract::<T>().map_err(|e| match e.is_instance_of::<PyTypeError>(v.py()) {
        true => PyTypeError::new_err(format!("{item} {index}: `{key}`: {}", e.value(v.py()))),
        false => e,
    })
}
