//! What an [`super::HttpGate`] does, as one options form every binding passes through as JSON.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Which response statuses a rule names: a class (`"2xx"`) or one status (`"429"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRule {
    /// Every status from `n`00 to `n`99.
    Class(u16),
    /// Exactly this status.
    Exact(u16),
}

impl StatusRule {
    /// Reads `"2xx"` or `"404"`; other text is an [`Error::InvalidArgument`] naming `option`.
    pub fn parse(option: &'static str, text: &str) -> Result<StatusRule> {
        let bad = || {
            Error::invalid(
                option,
                format!("has `{}`; a status is like \"2xx\" or \"404\"", crate::text::quote(text)),
            )
        };
        let lower = text.to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            return match class.parse::<u16>() {
                Ok(c @ 1..=5) if class.len() == 1 => Ok(StatusRule::Class(c)),
                _ => Err(bad()),
            };
        }
        match lower.parse::<u16>() {
            Ok(s @ 100..=599) if lower.len() == 3 => Ok(StatusRule::Exact(s)),
            _ => Err(bad()),
        }
    }

    /// Whether `status` is one of these.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusRule::Class(c) => status / 100 == c,
            StatusRule::Exact(s) => status == s,
        }
    }
}

/// One part of a request that its fingerprint covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Method,
    Path,
    Query,
    Body,
    /// A request header, by its lower-case name.
    Header(String),
}

/// How a gate treats requests and responses. Every field has a default; the JSON form
/// ([`HttpPolicy::from_json`]) is what every binding passes, so the defaults live only here.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// The inbox scope the keys live in, so several APIs can share one store. Default `"http"`.
    pub name: String,
    /// The methods that take a key (upper case). Default POST and PATCH.
    pub methods: Vec<String>,
    /// Whether a request of those methods without a key is refused (400) rather than let
    /// through. Default true.
    pub required: bool,
    pub(crate) fingerprint: Vec<Part>,
    /// The statuses whose responses are stored and replayed. Default 2xx and 4xx.
    pub store: Vec<StatusRule>,
    /// Statuses never stored even when `store` names their class: the key is given back and a
    /// retry runs the handler again. Default 408, 425 and 429 (they say "try again").
    pub release: Vec<StatusRule>,
    /// The response headers kept for replay (lower case), or `None` for every header but the
    /// ones that describe one connection or one moment (see [`HttpPolicy::keeps_header`]).
    pub stored_headers: Option<Vec<String>>,
    /// How long a key and its stored response are kept: the expiry policy. Default 24 h.
    pub retention: Duration,
    /// How long a claim holds a key before another request may take it over; kept alive while
    /// the handler runs. Default 60 s.
    pub lease: Duration,
    /// How long a request whose key is in flight waits for the first one to finish before it is
    /// answered 409. Default: no wait.
    pub wait: Option<Duration>,
    /// The largest response body stored; a larger one is answered but not kept. Default 1 MiB.
    pub max_response_bytes: usize,
}

/// Headers that belong to one connection or one moment and are never replayed.
const NEVER_STORED: [&str; 10] = [
    "connection",
    "content-length",
    "date",
    "keep-alive",
    "proxy-connection",
    "server",
    "set-cookie",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            name: "http".into(),
            methods: vec!["POST".into(), "PATCH".into()],
            required: true,
            fingerprint: vec![Part::Method, Part::Path, Part::Body],
            store: vec![StatusRule::Class(2), StatusRule::Class(4)],
            release: vec![StatusRule::Exact(408), StatusRule::Exact(425), StatusRule::Exact(429)],
            stored_headers: None,
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            wait: None,
            max_response_bytes: crate::limits::DEFAULT_MAX_BYTES,
        }
    }
}

/// The JSON form: durations in seconds, as the Python and Node APIs take them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyForm {
    name: Option<String>,
    methods: Option<Vec<String>>,
    required: Option<bool>,
    fingerprint: Option<Vec<String>>,
    store: Option<Vec<String>>,
    release: Option<Vec<String>>,
    stored_headers: Option<Vec<String>>,
    retention: Option<f64>,
    lease: Option<f64>,
    wait: Option<f64>,
    max_response_bytes: Option<u64>,
}

const KNOWN: [&str; 11] = [
    "name",
    "methods",
    "required",
    "fingerprint",
    "store",
    "release",
    "stored_headers",
    "retention",
    "lease",
    "wait",
    "max_response_bytes",
];

impl HttpPolicy {
    /// Reads the JSON form: an object with any of `name`, `methods`, `required`, `fingerprint`
    /// (of `"method"`, `"path"`, `"query"`, `"body"`, `"header:NAME"`), `store` and `release`
    /// (status rules), `stored_headers`, `retention`, `lease` and `wait` (seconds) and
    /// `max_response_bytes`; `null` or `{}` is the defaults. An unknown option, a value of the
    /// wrong type or a bad value is an [`Error::InvalidArgument`] with the same text in every
    /// language.
    pub fn from_json(text: &str) -> Result<HttpPolicy> {
        const WHAT: &str = "http options";
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(WHAT, format!("are not JSON: {e}")))?;
        let value = match value {
            serde_json::Value::Null => return Ok(HttpPolicy::default()),
            serde_json::Value::Object(map) => {
                if let Some(unknown) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                    return Err(crate::text::unknown_option(WHAT, unknown, &KNOWN));
                }
                serde_json::Value::Object(map)
            }
            _ => return Err(Error::invalid(WHAT, "must be an object")),
        };
        let form: PolicyForm =
            serde_json::from_value(value).map_err(|e| Error::invalid(WHAT, e.to_string()))?;
        let d = HttpPolicy::default();
        let policy = HttpPolicy {
            name: form.name.unwrap_or(d.name),
            methods: match form.methods {
                Some(m) => m.iter().map(|m| method(m)).collect::<Result<_>>()?,
                None => d.methods,
            },
            required: form.required.unwrap_or(d.required),
            fingerprint: match form.fingerprint {
                Some(parts) => parts.iter().map(|p| part(p)).collect::<Result<_>>()?,
                None => d.fingerprint,
            },
            store: rules("store", form.store, d.store)?,
            release: rules("release", form.release, d.release)?,
            stored_headers: form.stored_headers.map(|h| h.iter().map(|h| h.to_ascii_lowercase()).collect()),
            retention: seconds("retention", form.retention)?.unwrap_or(d.retention),
            lease: seconds("lease", form.lease)?.unwrap_or(d.lease),
            wait: seconds("wait", form.wait)?.or(d.wait),
            max_response_bytes: match form.max_response_bytes {
                Some(n) => usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=crate::limits::DEFAULT_MAX_BYTES * 64).contains(n))
                    .ok_or_else(|| {
                        Error::invalid("max_response_bytes", format!("must be from 1 to 67108864, got {n}"))
                    })?,
                None => d.max_response_bytes,
            },
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<()> {
        if self.methods.is_empty() {
            return Err(Error::invalid("methods", "must name at least one method"));
        }
        if self.fingerprint.is_empty() {
            return Err(Error::invalid("fingerprint", "must name at least one part of the request"));
        }
        Ok(())
    }

    /// Whether requests with this method take a key.
    pub fn covers(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether a response with this status is stored and replayed (else the key is given back).
    pub fn stores(&self, status: u16) -> bool {
        self.store.iter().any(|r| r.matches(status)) && !self.release.iter().any(|r| r.matches(status))
    }

    /// What is stored of `response`: its status, the headers kept, its body.
    pub fn kept(&self, response: &super::HttpResponse) -> super::HttpResponse {
        super::HttpResponse {
            status: response.status,
            headers: response
                .headers
                .iter()
                .filter(|(n, _)| self.keeps_header(&n.to_ascii_lowercase()))
                .cloned()
                .collect(),
            body: response.body.clone(),
        }
    }

    /// Whether a response header (by its lower-case name) is kept for replay.
    pub fn keeps_header(&self, lower_name: &str) -> bool {
        match &self.stored_headers {
            Some(names) => names.iter().any(|n| n == lower_name),
            None => !NEVER_STORED.contains(&lower_name),
        }
    }
}

fn method(m: &str) -> Result<String> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Error::invalid(
            "methods",
            format!("has `{}`, which is not an HTTP method", crate::text::quote(m)),
        ));
    }
    Ok(m.to_ascii_uppercase())
}

fn part(p: &str) -> Result<Part> {
    Ok(match p {
        "method" => Part::Method,
        "path" => Part::Path,
        "query" => Part::Query,
        "body" => Part::Body,
        _ => match p.strip_prefix("header:") {
            Some(name) if !name.is_empty() => Part::Header(name.to_ascii_lowercase()),
            _ => {
                return Err(Error::invalid(
                    "fingerprint",
                    format!(
                        "has `{}` (known: method, path, query, body, header:NAME)",
                        crate::text::quote(p)
                    ),
                ));
            }
        },
    })
}

fn rules(
    option: &'static str,
    given: Option<Vec<String>>,
    default: Vec<StatusRule>,
) -> Result<Vec<StatusRule>> {
    match given {
        Some(texts) => texts.iter().map(|t| StatusRule::parse(option, t)).collect(),
        None => Ok(default),
    }
}

fn seconds(option: &'static str, v: Option<f64>) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= 366.0 * 86400.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(Error::invalid(
            option,
            format!("must be a number of seconds above 0 and at most a year, got {s}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_store_success_and_client_errors_but_not_try_again_answers() {
        let p = HttpPolicy::from_json("{}").unwrap();
        assert!(p.covers("post") && p.covers("PATCH") && !p.covers("GET") && !p.covers("PUT"));
        for (status, stored) in [
            (200, true),
            (201, true),
            (404, true),
            (422, true),
            (429, false),
            (408, false),
            (500, false),
            (503, false),
            (302, false),
        ] {
            assert_eq!(p.stores(status), stored, "{status}");
        }
        assert!(p.keeps_header("content-type") && p.keeps_header("location"));
        assert!(!p.keeps_header("set-cookie") && !p.keeps_header("date"));
        assert_eq!(p.retention, Duration::from_secs(86400));
    }

    #[test]
    fn bad_options_name_what_is_wrong() {
        for (json, text) in [
            (r#"{"retension": 5}"#, "`http options`: has no option `retension` (known: name, methods"),
            (r#"{"retention": -1}"#, "`retention`: must be a number of seconds above 0"),
            (r#"{"retention": "1d"}"#, "invalid type: string"),
            (r#"{"store": ["2xy"]}"#, "`store`: has `2xy`"),
            (r#"{"fingerprint": ["cookie"]}"#, "`fingerprint`: has `cookie`"),
            (r#"{"methods": []}"#, "`methods`: must name at least one method"),
            (r#"[1]"#, "`http options`: must be an object"),
        ] {
            let e = HttpPolicy::from_json(json).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
            assert!(e.to_string().contains(text), "{json}: {e}");
        }
    }
}
