//! A request kept in an outbox until a worker delivers it: its one payload form, the same in
//! every language, so a message queued from Python can be delivered by a Node worker.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::KEY_HEADER;
use crate::error::{Error, Result};

/// A durable request: what a worker sends, with the message id as its `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRequest {
    /// The method.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// The headers, without `Idempotency-Key` (the message id is sent as the key).
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Form {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// Base64 (standard alphabet, padded); absent for an empty body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

impl QueuedRequest {
    /// The request's key — the `Idempotency-Key` among `headers` when there is one, else a fresh
    /// id (a UUIDv7) — and the request without that header. The key becomes the message id.
    pub fn keyed(
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> (String, QueuedRequest) {
        let mut key = None;
        let headers = headers
            .into_iter()
            .filter(|(n, v)| {
                let is_key = n.eq_ignore_ascii_case(KEY_HEADER);
                if is_key && key.is_none() {
                    key = Some(v.clone());
                }
                !is_key
            })
            .collect();
        (key.unwrap_or_else(crate::message::new_id), QueuedRequest { method, url, headers, body })
    }

    /// The message payload: JSON with `method`, `url`, `headers` (pairs) and `body` (base64,
    /// absent when empty), readable by an operator looking at a dead letter.
    pub fn to_payload(&self) -> Vec<u8> {
        let form = Form {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: (!self.body.is_empty()).then(|| STANDARD.encode(&self.body)),
        };
        serde_json::to_vec(&form).unwrap_or_default()
    }

    /// Reads a payload [`QueuedRequest::to_payload`] wrote; anything else is an
    /// [`Error::InvalidArgument`] naming `payload` (a message that is not a queued request).
    pub fn from_payload(payload: &[u8]) -> Result<QueuedRequest> {
        let bad = |why: String| Error::invalid("payload", format!("is not a queued HTTP request: {why}"));
        let form: Form = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
        let body = match form.body {
            Some(b) => STANDARD.decode(b).map_err(|e| bad(format!("its body is not base64 ({e})")))?,
            None => Vec::new(),
        };
        Ok(QueuedRequest { method: form.method, url: form.url, headers: form.headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_its_key_becomes_the_id() {
        let (key, req) = QueuedRequest::keyed(
            "POST".into(),
            "http://127.0.0.1:1/pay".into(),
            vec![
                ("Content-Type".into(), "application/json".into()),
                ("idempotency-key".into(), "k-1".into()),
            ],
            b"{\"a\":1}\x00".to_vec(),
        );
        assert_eq!(key, "k-1");
        assert_eq!(req.headers, vec![("Content-Type".to_owned(), "application/json".to_owned())]);
        assert_eq!(QueuedRequest::from_payload(&req.to_payload()).unwrap(), req);
        let (fresh, _) = QueuedRequest::keyed("POST".into(), "u".into(), vec![], vec![]);
        assert_eq!(fresh.len(), 36);
        let e = QueuedRequest::from_payload(b"{\"method\":\"POST\"}").unwrap_err();
        assert!(e.to_string().contains("is not a queued HTTP request"), "{e}");
    }
}
