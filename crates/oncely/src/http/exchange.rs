//! Requests and responses as a gate sees them, and a response's stored form.

use crate::error::{Error, Result};

/// The header a replayed response carries, so a client can tell a replay from a first answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// One request, as the server received it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// The method (any case).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string without its `?` (empty for none).
    pub query: String,
    /// The headers in the order received (names in any case); the key and the content type are
    /// read from here.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Whose key space the key lives in (a tenant, a user, an API key's owner), so two clients
    /// never share keys; `None` is one shared space.
    pub scope: Option<String>,
}

impl HttpRequest {
    /// The values of a header (name matched without regard to case).
    pub fn header_values<'a>(&'a self, lower_name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(lower_name)).map(|(_, v)| v.as_str())
    }
}

/// A response: what a handler answered, what is replayed, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (100–599).
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The stored form's first byte, so a later layout can be told apart.
const LAYOUT: u8 = 1;

impl HttpResponse {
    /// Checks a handler's response: a status from 100 to 599.
    pub fn check(&self) -> Result<()> {
        if !(100..=599).contains(&self.status) {
            return Err(Error::invalid("status", format!("must be from 100 to 599, got {}", self.status)));
        }
        Ok(())
    }

    /// The stored form: layout, status, header count, then each name and value and the body,
    /// each behind its length (u32, big-endian).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let size =
            7 + self.headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>() + 4 + self.body.len();
        let mut out = Vec::with_capacity(size);
        out.push(LAYOUT);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            put(&mut out, name.as_bytes());
            put(&mut out, value.as_bytes());
        }
        put(&mut out, &self.body);
        out
    }

    /// Reads the stored form back; anything else is a damaged store.
    pub(crate) fn decode(bytes: &[u8]) -> Result<HttpResponse> {
        let corrupt = || Error::CorruptStore("a stored HTTP response is damaged".into());
        let mut r = Reader(bytes);
        if r.take(1).ok_or_else(corrupt)? != [LAYOUT] {
            return Err(corrupt());
        }
        let status = u16::from_be_bytes(r.take(2).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
        let count = r.u32().ok_or_else(corrupt)?;
        let mut headers = Vec::with_capacity(count.min(256) as usize);
        for _ in 0..count {
            let name = r.text().ok_or_else(corrupt)?;
            let value = r.text().ok_or_else(corrupt)?;
            headers.push((name, value));
        }
        let body = r.bytes().ok_or_else(corrupt)?.to_vec();
        if !r.0.is_empty() {
            return Err(corrupt());
        }
        Ok(HttpResponse { status, headers, body })
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        self.bytes().and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_comes_back_byte_for_byte() {
        let r = HttpResponse {
            status: 201,
            headers: vec![("Content-Type".into(), "application/json".into()), ("X-A".into(), "".into())],
            body: b"{\"id\":1}\x00\xff".to_vec(),
        };
        assert_eq!(HttpResponse::decode(&r.encode()).unwrap(), r);
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(HttpResponse::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
