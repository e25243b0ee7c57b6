//! The dashboard of `oncely serve`: one page (`/`, with its script and style, embedded in the
//! binary) and the JSON endpoints it polls and posts to (`/api/...`).
//!
//! Every number and every change comes from the core: the snapshot of `oncely::metrics`, the
//! outbox's `dead_letters`, `get`, `replay` and `purge_dead`, the inbox store's `get`. This
//! module only turns them into JSON and checks who may ask:
//!
//! - the page itself holds no data, so it is served without the token; every `/api/...` call
//!   needs it (the `authorize` layer of `serve.rs`) when the server has one;
//! - a POST must carry the CSRF token of this server start (`X-Oncely-CSRF`, written into the
//!   page) and, when the browser sends them, an `Origin` equal to the server's own and a
//!   `Sec-Fetch-Site` of `same-origin`; otherwise it is refused with 403 before it runs;
//! - without a token (loopback only) the page and the API answer only requests whose `Host`
//!   names the loopback interface, so a web page that rebinds its own name to 127.0.0.1 cannot
//!   read the page or its CSRF token (DNS rebinding);
//! - payloads and stored results are shown only when the server was started with
//!   `--show-payloads` (they may hold personal data); otherwise only their size.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oncely::outbox::{MessageState, OutboxRecord};
use oncely::{AnyStore, Clock, InboxStore, Outbox, OutboxConfig, OutboxStore, SystemClock, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::serve::Served;

const PAGE: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// The header that carries the CSRF token on every POST.
pub const CSRF_HEADER: &str = "x-oncely-csrf";

/// The most ids one replay or purge request may name.
const MAX_IDS: usize = 1000;

/// The most dead letters one page of the list holds.
const MAX_PAGE: usize = 500;

/// A fresh CSRF token: 32 random bytes from the operating system, in hex.
pub fn new_csrf_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The headers every dashboard answer carries: no framing, no sniffing, no referrer (the page
/// may have been opened with `?token=`), nothing loaded from anywhere but this server.
fn harden(mut response: Response, cache: bool) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `GET /`: the page, with this server start's CSRF token and whether payloads are shown.
pub async fn page(State(served): State<Arc<Served>>) -> Response {
    let html = PAGE
        .replace("{{CSRF}}", &served.csrf)
        .replace("{{SHOW_PAYLOADS}}", if served.show_payloads { "true" } else { "false" })
        .replace("{{TOKEN_REQUIRED}}", if served.token.is_some() { "true" } else { "false" });
    harden(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(), false)
}

/// `GET /dashboard.js`.
pub async fn script() -> Response {
    harden(([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response(), true)
}

/// `GET /dashboard.css`.
pub async fn style() -> Response {
    harden(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response(), true)
}

fn refuse(status: StatusCode, why: &str) -> Response {
    harden((status, Json(json!({ "error": why }))).into_response(), false)
}

/// Whether `host` (a `Host` header: name or address, with an optional port) names the
/// loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(addr, _)| addr)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The dashboard's guard, around the page and the API: the loopback `Host` rule when the server
/// has no token, and the CSRF rules on every POST.
pub async fn guard(State(served): State<Arc<Served>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if served.token.is_none() && !loopback_host(host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this server has no token, so it answers only requests addressed to localhost or a loopback address",
        );
    }
    if request.method() == axum::http::Method::POST {
        if let Err(why) = same_origin_post(headers, host, &served.csrf) {
            return refuse(StatusCode::FORBIDDEN, why);
        }
    }
    let response = next.run(request).await;
    harden(response, false)
}

/// The CSRF rules of a POST: the token in [`CSRF_HEADER`], an `Origin` (when sent) equal to
/// this server's, a `Sec-Fetch-Site` (when sent) of `same-origin`.
fn same_origin_post(headers: &HeaderMap, host: &str, csrf: &str) -> Result<(), &'static str> {
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crate::serve::same(given.as_bytes(), csrf.as_bytes()) {
        return Err("a POST needs this server's CSRF token in the X-Oncely-CSRF header (reload the page)");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let ours = ["http://", "https://"].iter().any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if !ours {
            return Err("the request comes from another origin");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return Err("the request comes from another site (Sec-Fetch-Site)");
        }
    }
    Ok(())
}

/// An oncely error as a JSON answer: 400 for a refused argument, 503 otherwise.
fn failed(e: oncely::Error) -> Response {
    let status = if e.code() == oncely::ErrorCode::InvalidArgument {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "error": e.to_string(), "code": e.code().as_str() }))).into_response()
}

fn outbox(served: &Served, queue: &str) -> Result<Outbox<AnyStore>, Response> {
    Outbox::open(served.store.clone(), OutboxConfig::new(queue.to_owned())).map_err(failed)
}

/// The store's time: the database server's clock for PostgreSQL, the host's otherwise.
fn store_now(store: &AnyStore) -> Timestamp {
    InboxStore::deadline_clock(store).map_or_else(|| SystemClock.now(), |c| c.now())
}

/// `GET /api/overview`: every queue (by state, oldest age, totals) and every inbox scope (by
/// state), as `oncely::metrics::snapshot` reads them, with the store's time of the reading.
pub async fn overview(State(served): State<Arc<Served>>) -> Response {
    let snapshot = match oncely::metrics::snapshot(&served.store).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let queues: Vec<Value> = snapshot
        .queues
        .iter()
        .map(|q| {
            let s = &q.stats;
            json!({
                "queue": q.queue,
                "ready": s.ready,
                "scheduled": s.scheduled,
                "leased": s.leased,
                "dead": s.dead,
                "depth": s.depth(),
                "oldest_age_ms": q.oldest_age.map(|a| a.as_millis() as u64),
                "counts": {
                    "enqueued": s.counts.enqueued,
                    "delivered": s.counts.delivered,
                    "retried": s.counts.retried,
                    "dead_lettered": s.counts.dead_lettered,
                    "dropped": s.counts.dropped,
                },
            })
        })
        .collect();
    let scopes: Vec<Value> = snapshot
        .scopes
        .iter()
        .map(|c| {
            json!({
                "scope": c.scope,
                "in_progress": c.in_progress,
                "seen": c.seen,
                "succeeded": c.succeeded,
                "failed": c.failed,
                "completed": c.completed(),
                "expired": c.expired,
            })
        })
        .collect();
    Json(json!({
        "now_ms": store_now(&served.store).0,
        "store": served.shown,
        "show_payloads": served.show_payloads,
        "queues": queues,
        "scopes": scopes,
    }))
    .into_response()
}

/// A payload or stored result: its size always, its bytes only with `--show-payloads` (as text
/// when it is UTF-8, else as hex).
fn bytes_json(served: &Served, bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else { return Value::Null };
    if !served.show_payloads {
        return json!({ "size": bytes.len() });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "size": bytes.len(), "text": text }),
        Err(_) => json!({
            "size": bytes.len(),
            "hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
        }),
    }
}

fn record_json(served: &Served, queue: &str, rec: &OutboxRecord, now: Timestamp) -> Value {
    let m = &rec.message;
    let (state, reason, lease_until) = match &rec.state {
        MessageState::Ready if m.available_at > now => ("scheduled", None, None),
        MessageState::Ready => ("ready", None, None),
        MessageState::Leased { lease_until, .. } => ("leased", None, Some(lease_until.0)),
        MessageState::Dead { reason } => ("dead", Some(reason.as_str()), None),
    };
    json!({
        "queue": queue,
        "id": m.id,
        "seq": rec.seq,
        "key": m.key,
        "state": state,
        "reason": reason,
        "last_error": rec.last_error,
        "attempts": m.attempts,
        "max_attempts": rec.max_attempts,
        "mode": rec.mode.map(|mode| mode.as_str()),
        "created_at_ms": m.created_at.0,
        "available_at_ms": m.available_at.0,
        "first_attempt_at_ms": rec.first_attempt_at.map(|t| t.0),
        "lease_until_ms": lease_until,
        "headers": m.headers,
        "payload": bytes_json(served, Some(&m.payload)),
    })
}

/// The query of `GET /api/dead`.
#[derive(Deserialize)]
pub struct DeadQuery {
    queue: String,
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/dead?queue=Q[&after=SEQ][&limit=N]`: a page of the queue's dead letters, oldest
/// first (`Outbox::dead_letters`), and the `after` of the next page when there may be one.
pub async fn dead(State(served): State<Arc<Served>>, Query(q): Query<DeadQuery>) -> Response {
    let outbox = match outbox(&served, &q.queue) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match outbox.dead_letters(q.after, limit).await {
        Ok(page) => {
            let now = store_now(&served.store);
            let next = if page.len() == limit { page.last().map(|r| r.seq) } else { None };
            let items: Vec<Value> = page.iter().map(|r| record_json(&served, &q.queue, r, now)).collect();
            Json(json!({ "queue": q.queue, "items": items, "next_after": next })).into_response()
        }
        Err(e) => failed(e),
    }
}

/// The query of `GET /api/message`.
#[derive(Deserialize)]
pub struct MessageQuery {
    id: String,
    queue: Option<String>,
}

/// `GET /api/message?id=ID[&queue=Q]`: the message `id` in that queue, or in every queue that
/// holds it (`Outbox::get`); `found` is empty when none does.
pub async fn message(State(served): State<Arc<Served>>, Query(q): Query<MessageQuery>) -> Response {
    let queues = match q.queue.filter(|s| !s.is_empty()) {
        Some(queue) => vec![queue],
        None => match served.store.queue_names().await {
            Ok(names) => names,
            Err(e) => return failed(e),
        },
    };
    let now = store_now(&served.store);
    let mut found = Vec::new();
    for queue in queues {
        let outbox = match outbox(&served, &queue) {
            Ok(o) => o,
            Err(r) => return r,
        };
        match outbox.get(&q.id).await {
            Ok(Some(rec)) => found.push(record_json(&served, &queue, &rec, now)),
            Ok(None) => {}
            Err(e) => return failed(e),
        }
    }
    Json(json!({ "id": q.id, "found": found })).into_response()
}

/// The query of `GET /api/inbox`.
#[derive(Deserialize)]
pub struct InboxQuery {
    scope: String,
    id: String,
}

/// `GET /api/inbox?scope=S&id=ID`: the inbox record as stored (`InboxStore::get`), whether it
/// still counts, and its outcome (result bytes only with `--show-payloads`).
pub async fn inbox(State(served): State<Arc<Served>>, Query(q): Query<InboxQuery>) -> Response {
    let record = match InboxStore::get(&served.store, &q.scope, &q.id).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let now = store_now(&served.store);
    let record = record.map(|rec| {
        let (lease_until, result) = match &rec.state {
            oncely::inbox::RecordState::InProgress { lease_until } => (Some(lease_until.0), None),
            oncely::inbox::RecordState::Completed(o) => (None, o.result.as_deref()),
        };
        json!({
            "state": rec.state.as_str(),
            "live": rec.is_live(now),
            "expires_at_ms": rec.expires_at.0,
            "lease_until_ms": lease_until,
            "token": rec.token,
            "fingerprint": rec.fingerprint.is_some(),
            "result": bytes_json(&served, result),
        })
    });
    Json(json!({ "scope": q.scope, "id": q.id, "now_ms": now.0, "record": record })).into_response()
}

/// The body of `POST /api/replay` and `POST /api/purge`: a queue and the dead letters chosen.
#[derive(Deserialize)]
pub struct Selection {
    queue: String,
    #[serde(default)]
    ids: Vec<String>,
    /// Purge only: every dead letter of the queue (then `ids` must be empty).
    #[serde(default)]
    all: bool,
}

fn check_selection(s: &Selection, allow_all: bool) -> Result<(), Response> {
    let bad = |why: &str| Err(refuse(StatusCode::BAD_REQUEST, why));
    if s.all && !allow_all {
        return bad("`all` is for purge only; replay names its ids");
    }
    if s.all && !s.ids.is_empty() {
        return bad("give either `ids` or `all`, not both");
    }
    if !s.all && s.ids.is_empty() {
        return bad("no ids given");
    }
    if s.ids.len() > MAX_IDS {
        return bad("at most 1000 ids per request");
    }
    Ok(())
}

/// `POST /api/replay {"queue": Q, "ids": [...]}`: puts each dead letter back in its queue,
/// attempts reset, deliverable now (`Outbox::replay`); says which were replayed and which were
/// no longer dead letters.
pub async fn replay(State(served): State<Arc<Served>>, Json(s): Json<Selection>) -> Response {
    if let Err(r) = check_selection(&s, false) {
        return r;
    }
    let outbox = match outbox(&served, &s.queue) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (mut replayed, mut missing) = (Vec::new(), Vec::new());
    for id in s.ids {
        match outbox.replay(&id).await {
            Ok(true) => replayed.push(id),
            Ok(false) => missing.push(id),
            Err(e) => return failed(e),
        }
    }
    Json(json!({ "queue": s.queue, "replayed": replayed, "missing": missing })).into_response()
}

/// `POST /api/purge {"queue": Q, "ids": [...]}` or `{"queue": Q, "all": true}`: deletes those
/// dead letters, or all of the queue's (`Outbox::purge_dead`); says how many went.
pub async fn purge(State(served): State<Arc<Served>>, Json(s): Json<Selection>) -> Response {
    if let Err(r) = check_selection(&s, true) {
        return r;
    }
    let outbox = match outbox(&served, &s.queue) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let ids = if s.all { None } else { Some(s.ids) };
    match outbox.purge_dead(ids).await {
        Ok(n) => Json(json!({ "queue": s.queue, "purged": n })).into_response(),
        Err(e) => failed(e),
    }
}

/// The JSON body of every refusal of the API (unknown endpoint).
pub async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in
            ["localhost", "localhost:9464", "127.0.0.1:80", "127.1.2.3", "[::1]:9464", "[::1]", "LOCALHOST"]
        {
            assert!(loopback_host(h), "{h}");
        }
        for h in
            ["", "evil.example", "evil.example:9464", "localhost.evil.example", "10.0.0.1:9464", "[::2]:1"]
        {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn csrf_rules() {
        let mut h = HeaderMap::new();
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_err(), "no token");
        h.insert(CSRF_HEADER, HeaderValue::from_static("t"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_ok(), "a non-browser client sends no Origin");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:1"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_err());
        h.remove(header::ORIGIN);
        h.insert(CSRF_HEADER, HeaderValue::from_static("u"));
        assert!(same_origin_post(&h, "127.0.0.1:1", "t").is_err(), "wrong token");
    }

    #[test]
    fn tokens_are_fresh() {
        let (a, b) = (new_csrf_token().unwrap(), new_csrf_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
