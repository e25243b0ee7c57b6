//! The fingerprint of a request: which parts, and the canonical form of a JSON body.

use super::HttpRequest;
use super::policy::Part;
use crate::fingerprint::Fingerprint;

/// A JSON body in canonical form — object keys sorted by their UTF-8 bytes, no insignificant
/// whitespace, numbers and strings as serde_json writes them — so `{"a":1,"b":2}` and
/// `{ "b": 2, "a": 1 }` are the same request. `None` when `body` is not JSON.
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    // serde_json's Map is a BTreeMap (no `preserve_order` feature here): keys come out sorted.
    serde_json::to_vec(&value).ok()
}

/// Whether a content type is JSON (`application/json`, `application/*+json`, any parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The fingerprint of the parts of `req` that `parts` names, each behind its name and length so
/// that no two different requests frame to the same bytes. A body whose content type is JSON is
/// taken in its canonical form when it parses; any other body byte for byte.
pub(crate) fn of_parts(req: &HttpRequest, parts: &[Part]) -> Fingerprint {
    let mut framed = Vec::with_capacity(64 + req.body.len());
    let mut put = |tag: &[u8], bytes: &[u8]| {
        framed.extend_from_slice(tag);
        framed.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        framed.extend_from_slice(bytes);
    };
    for part in parts {
        match part {
            Part::Method => put(b"method", req.method.to_ascii_uppercase().as_bytes()),
            Part::Path => put(b"path", req.path.as_bytes()),
            Part::Query => put(b"query", req.query.as_bytes()),
            Part::Body => {
                let json = req.header_values("content-type").next().is_some_and(is_json);
                match json.then(|| canonical_json(&req.body)).flatten() {
                    Some(canonical) => put(b"json", &canonical),
                    None => put(b"body", &req.body),
                }
            }
            Part::Header(name) => {
                let values: Vec<&str> = req.header_values(name).collect();
                put(format!("header:{name}").as_bytes(), values.join(", ").as_bytes());
            }
        }
    }
    Fingerprint::of(&framed)
}

/// The fingerprint a gate with `policy` gives `req` (lower-case hex), for logs and tests.
pub fn request_fingerprint(req: &HttpRequest, policy: &super::HttpPolicy) -> String {
    of_parts(req, &policy.fingerprint).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(content_type: &str, body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/payments".into(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn json_key_order_and_spacing_do_not_matter_but_values_do() {
        let p = super::super::HttpPolicy::default();
        let a = request_fingerprint(&req("application/json", r#"{"a":1,"b":[1,2]}"#), &p);
        let b =
            request_fingerprint(&req("application/json; charset=utf-8", "{ \"b\": [1, 2], \"a\": 1 }"), &p);
        let c = request_fingerprint(&req("application/json", r#"{"a":1,"b":[2,1]}"#), &p);
        let text = request_fingerprint(&req("text/plain", "{ \"b\": [1, 2], \"a\": 1 }"), &p);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, text, "a body that is not declared JSON is taken byte for byte");
        assert_eq!(
            canonical_json(br#"{"z":{"y":1,"x":"\u00e9"}}"#).unwrap(),
            "{\"z\":{\"x\":\"é\",\"y\":1}}".as_bytes()
        );
    }
}
