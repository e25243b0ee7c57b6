//! Refusals, as RFC 9457 problem documents with one stable `type` per case.

use std::time::Duration;

use super::HttpResponse;

/// Why a gate answers a request itself instead of running its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// 400: the method takes a key and none was sent.
    KeyMissing,
    /// 400: the key header is not a key (the reason says why).
    KeyMalformed(String),
    /// 422: the key was used before with a different request.
    KeyReused,
    /// 409: a request with this key is still being handled; try again after the hint.
    InProgress {
        /// When to try again.
        retry_after: Duration,
    },
    /// 503: the store could not be reached; try again after the hint.
    StoreUnavailable,
}

impl Problem {
    /// The status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Problem::KeyMissing | Problem::KeyMalformed(_) => 400,
            Problem::KeyReused => 422,
            Problem::InProgress { .. } => 409,
            Problem::StoreUnavailable => 503,
        }
    }

    /// Its stable problem type (a URN, so it names the case without pointing at a host).
    pub fn type_uri(&self) -> &'static str {
        match self {
            Problem::KeyMissing => "urn:oncely:problem:idempotency-key-missing",
            Problem::KeyMalformed(_) => "urn:oncely:problem:idempotency-key-malformed",
            Problem::KeyReused => "urn:oncely:problem:idempotency-key-reused",
            Problem::InProgress { .. } => "urn:oncely:problem:request-in-progress",
            Problem::StoreUnavailable => "urn:oncely:problem:store-unavailable",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Problem::KeyMissing => "An Idempotency-Key header is required",
            Problem::KeyMalformed(_) => "The Idempotency-Key header is malformed",
            Problem::KeyReused => "The Idempotency-Key was used with a different request",
            Problem::InProgress { .. } => "A request with this Idempotency-Key is in progress",
            Problem::StoreUnavailable => "The idempotency store is unavailable",
        }
    }

    fn detail(&self) -> String {
        match self {
            Problem::KeyMissing => {
                "This method needs an Idempotency-Key header; send one and keep it for every retry.".into()
            }
            Problem::KeyMalformed(reason) => format!("Idempotency-Key {reason}."),
            Problem::KeyReused => {
                "Use a new key for a new request; a retry must repeat the first request exactly.".into()
            }
            Problem::InProgress { .. } => {
                "Retry after the time in Retry-After to get the first request's response.".into()
            }
            Problem::StoreUnavailable => "Retry after the time in Retry-After with the same key.".into(),
        }
    }

    /// The response: `application/problem+json` with `type`, `title`, `status` and `detail`,
    /// and `Retry-After` (whole seconds, at least 1) where trying again can help.
    pub fn response(&self) -> HttpResponse {
        let body = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": self.status(),
            "detail": self.detail(),
        });
        let mut headers = vec![("content-type".to_owned(), "application/problem+json".to_owned())];
        let retry_after = match self {
            Problem::InProgress { retry_after } => Some(*retry_after),
            Problem::StoreUnavailable => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(after) = retry_after {
            let secs = after.as_millis().div_ceil(1000).max(1);
            headers.push(("retry-after".to_owned(), secs.to_string()));
        }
        HttpResponse { status: self.status(), headers, body: serde_json::to_vec(&body).unwrap_or_default() }
    }
}
