//! `Idempotency-Key` for HTTP: what a server middleware and a retrying client decide, in one
//! place for every language (docs/http.md).
//!
//! A server asks an [`HttpGate`] about each request ([`HttpGate::admit`]) and gets one of three
//! answers: let it through untouched, run the handler under a claim on the key, or answer at
//! once (the stored first response, replayed byte for byte, or a refusal as an RFC 9457
//! problem). After the handler ran, [`HttpClaim::complete`] stores its response or gives the
//! key back, by the [`HttpPolicy`]. A client asks [`verdict`] what an answer means: done, again
//! later, or never. Bindings only carry requests and responses across; every rule is here.

mod client;
mod exchange;
mod gate;
mod key;
mod policy;
mod problem;
mod queued;
mod request_fingerprint;
mod transactional;

pub use client::{HttpRetry, Step, Verdict, verdict};
pub use exchange::{HttpRequest, HttpResponse, REPLAYED_HEADER};
pub use gate::{Admission, HttpClaim, HttpGate};
pub use key::{KEY_HEADER, MAX_KEY_CHARS, parse_key};
pub use policy::{HttpPolicy, StatusRule};
pub use problem::Problem;
pub use queued::QueuedRequest;
pub use request_fingerprint::{canonical_json, request_fingerprint};
