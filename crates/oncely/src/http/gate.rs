//! The server side: a gate in front of a handler, over the inbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exchange::REPLAYED_HEADER;
use super::key::{KEY_HEADER, parse_key};
use super::request_fingerprint::of_parts;
use super::{HttpPolicy, HttpRequest, HttpResponse, Problem};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::inbox::{Begin, Heartbeat, Inbox, InboxConfig, Request, Status, Ticket};
use crate::mode::Mode;
use crate::store::InboxStore;

/// The `Retry-After` of a 409 for a request still in flight.
pub(crate) const IN_PROGRESS_RETRY: Duration = Duration::from_secs(1);

/// Decides, for each request, whether its handler runs; stores what the handler answered.
///
/// Keys are claimed exactly-once in an inbox named by [`HttpPolicy::name`], per scope: a key is
/// handled by one request at a time, its response (when [`HttpPolicy::stores`] its status) is
/// replayed to every retry until the retention ends, and a retry with a different request is
/// refused. Cheap to clone; every clone is the same gate.
pub struct HttpGate<S: InboxStore> {
    pub(crate) inbox: Inbox<S>,
    pub(crate) policy: Arc<HttpPolicy>,
}

impl<S: InboxStore> Clone for HttpGate<S> {
    fn clone(&self) -> Self {
        HttpGate { inbox: self.inbox.clone(), policy: self.policy.clone() }
    }
}

/// What to do with a request.
pub enum Admission<S: InboxStore> {
    /// Not ours (a method without keys, or an optional key left out): run the handler as if
    /// there were no gate.
    Pass,
    /// Run the handler, then [`HttpClaim::complete`] with its response (or
    /// [`HttpClaim::abandon`] if it failed to answer).
    Run(HttpClaim<S>),
    /// Answer with this response and do not run the handler: a replay of the stored first
    /// response (with `Idempotent-Replayed: true`) or a refusal ([`Problem`]).
    Respond(HttpResponse),
}

impl<S: InboxStore> std::fmt::Debug for Admission<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Pass => f.write_str("Pass"),
            Admission::Run(c) => f.debug_tuple("Run").field(&c.ticket).finish(),
            Admission::Respond(r) => f.debug_tuple("Respond").field(&r.status).finish(),
        }
    }
}

impl<S: InboxStore> Admission<S> {
    /// `"pass"`, `"run"` or `"respond"`: the name every binding uses.
    pub fn kind(&self) -> &'static str {
        match self {
            Admission::Pass => "pass",
            Admission::Run(_) => "run",
            Admission::Respond(_) => "respond",
        }
    }
}

/// A claim on one key while its handler runs. It is kept alive (extended every third of the
/// lease) until it is completed, abandoned or dropped; dropped without either, the key is given
/// back only when the lease runs out.
pub struct HttpClaim<S: InboxStore> {
    ticket: Ticket<S>,
    policy: Arc<HttpPolicy>,
    alive: parking_lot::Mutex<Option<Heartbeat>>,
}

impl<S: InboxStore> HttpGate<S> {
    /// A gate over `store` with `policy`, on the system clock.
    pub fn open(store: S, policy: HttpPolicy) -> Result<Self> {
        Self::with_clock(store, policy, Arc::new(SystemClock))
    }

    /// [`HttpGate::open`] with a given clock (tests).
    pub fn with_clock(store: S, policy: HttpPolicy, clock: SharedClock) -> Result<Self> {
        let mut config = InboxConfig::new(policy.name.clone())
            .mode(Mode::ExactlyOnce)
            .lease(policy.lease)
            .retention(policy.retention);
        config.max_result_bytes = policy.max_response_bytes + 4096;
        let inbox = Inbox::with_clock(store, config, clock)?;
        Ok(HttpGate { inbox, policy: Arc::new(policy) })
    }

    /// The policy.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// The inbox the keys live in (to inspect a key's record: see [`HttpGate::record_id`]).
    pub fn inbox(&self) -> &Inbox<S> {
        &self.inbox
    }

    /// The inbox id a key is kept under in `scope`: the scope's length, a colon, the scope and
    /// the key, so no two (scope, key) pairs share an id.
    pub fn record_id(scope: Option<&str>, key: &str) -> Result<String> {
        let scope = scope.unwrap_or("");
        if scope.len() > 200 {
            return Err(Error::invalid(
                "scope",
                format!("is {} bytes long; the limit is 200 bytes", scope.len()),
            ));
        }
        Ok(format!("{}:{scope}{key}", scope.len()))
    }

    /// The key a request carries: `Ok(None)` when it carries none, a [`Problem`] when the header
    /// is there but is not one key.
    fn key_of(req: &HttpRequest) -> std::result::Result<Option<String>, Problem> {
        let mut values = req.header_values(KEY_HEADER);
        let Some(first) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(Problem::KeyMalformed("is sent more than once".into()));
        }
        parse_key(first).map(Some).map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => Problem::KeyMalformed(reason),
            other => Problem::KeyMalformed(other.to_string()),
        })
    }

    /// Checks `req` up to its claim: let through, answered at once, or to be claimed with
    /// this inbox request.
    pub(crate) fn screen(&self, req: &HttpRequest) -> Result<Screened> {
        if !self.policy.covers(&req.method) {
            return Ok(Screened::Pass);
        }
        let key = match Self::key_of(req) {
            Ok(Some(key)) => key,
            Ok(None) if self.policy.required => return Ok(Screened::Respond(Problem::KeyMissing.response())),
            Ok(None) => return Ok(Screened::Pass),
            Err(problem) => return Ok(Screened::Respond(problem.response())),
        };
        let id = Self::record_id(req.scope.as_deref(), &key)?;
        Ok(Screened::Claim(
            Request::new(id).fingerprint(of_parts(req, &self.policy.fingerprint)).mode(Mode::ExactlyOnce),
        ))
    }

    /// [`HttpGate::admit`]'s answer when it needs no store access — a request let through or
    /// refused, or a retry this process answered recently (replayed from the inbox's in-memory
    /// front) — else `Ok(None)`: then ask [`HttpGate::admit`]. Never blocks: a binding may call
    /// it on an event loop's thread and take the asynchronous path only when it must.
    pub fn admit_now(&self, req: &HttpRequest) -> Result<Option<Admission<S>>> {
        let request = match self.screen(req)? {
            Screened::Pass => return Ok(Some(Admission::Pass)),
            Screened::Respond(response) => return Ok(Some(Admission::Respond(response))),
            Screened::Claim(request) => request,
        };
        Ok(match self.inbox.answer_from_memory(&request)? {
            Some(Begin::Duplicate(replay)) => {
                Some(Admission::Respond(replayed(replay.status, replay.result)?))
            }
            Some(Begin::Conflict) => Some(Admission::Respond(Problem::KeyReused.response())),
            _ => None,
        })
    }

    /// Decides what to do with `req` (see [`Admission`]). A store out of reach is answered 503
    /// with `Retry-After` rather than an error, so a client retries with the same key; a bad
    /// argument from the server's own code (a scope over 200 bytes, a NUL in it) is an error.
    pub async fn admit(&self, req: &HttpRequest) -> Result<Admission<S>> {
        let request = match self.screen(req)? {
            Screened::Pass => return Ok(Admission::Pass),
            Screened::Respond(response) => return Ok(Admission::Respond(response)),
            Screened::Claim(request) => request,
        };
        let started = Instant::now();
        let mut poll = Duration::from_millis(5);
        loop {
            let begun = match self.inbox.begin(request.clone()).await {
                Ok(begun) => begun,
                Err(e) if e.is_transient() => {
                    return Ok(Admission::Respond(Problem::StoreUnavailable.response()));
                }
                Err(e) => return Err(e),
            };
            return Ok(match begun {
                Begin::Claimed(ticket) => {
                    let alive = ticket.heartbeat();
                    Admission::Run(HttpClaim {
                        ticket,
                        policy: self.policy.clone(),
                        alive: parking_lot::Mutex::new(alive),
                    })
                }
                Begin::Duplicate(replay) => Admission::Respond(replayed(replay.status, replay.result)?),
                Begin::Conflict => Admission::Respond(Problem::KeyReused.response()),
                Begin::InProgress { .. } => {
                    let waited = started.elapsed();
                    match self.policy.wait {
                        Some(wait) if waited < wait => {
                            crate::clock::sleep(poll.min(wait - waited)).await;
                            poll = (poll * 2).min(Duration::from_millis(100));
                            continue;
                        }
                        _ => {
                            // Look again soon: the first request usually ends well within its
                            // lease, which only bounds how long a stalled one holds the key.
                            Admission::Respond(
                                Problem::InProgress { retry_after: IN_PROGRESS_RETRY }.response(),
                            )
                        }
                    }
                }
            });
        }
    }
}

/// A request checked up to its claim.
pub(crate) enum Screened {
    Pass,
    Respond(HttpResponse),
    Claim(Request),
}

/// The stored first response, marked as a replay.
pub(crate) fn replayed(status: Status, result: Option<Vec<u8>>) -> Result<HttpResponse> {
    let stored = match (status, result) {
        (Status::Succeeded, Some(bytes)) => HttpResponse::decode(&bytes)?,
        (status, _) => {
            return Err(Error::CorruptStore(format!(
                "an HTTP key's record is {} without a stored response",
                status.as_str()
            )));
        }
    };
    let mut response = stored;
    response.headers.push((REPLAYED_HEADER.to_owned(), "true".to_owned()));
    Ok(response)
}

impl<S: InboxStore> HttpClaim<S> {
    /// The key's inbox id ([`HttpGate::record_id`]).
    pub fn id(&self) -> &str {
        self.ticket.id()
    }

    /// The claim's fencing token: larger than every token handed out for this key before. A
    /// handler may pass it on to a downstream that refuses writes with a smaller one.
    pub fn token(&self) -> u64 {
        self.ticket.token()
    }

    /// Settles the claim by the handler's `response`, which the caller then sends as it is: when
    /// the policy stores its status, the status, the kept headers and the body are stored for
    /// replay (`Ok(true)`); otherwise — a 5xx, a "try again" status, a body over
    /// `max_response_bytes` — the key is given back so a retry runs the handler again
    /// (`Ok(false)`). [`Error::LeaseLost`] when the claim was taken over meanwhile (the lease ran
    /// out unextended), so the handler may have run twice. A status outside 100–599 is an
    /// [`Error::InvalidArgument`], and the key is given back.
    pub async fn complete(&self, response: &HttpResponse) -> Result<bool> {
        drop(self.alive.lock().take());
        if let Err(e) = response.check() {
            // Not a response: the key is given back (a retry runs the handler again) and the
            // server's code hears why.
            self.ticket.release().await?;
            return Err(e);
        }
        if !self.policy.stores(response.status) || response.body.len() > self.policy.max_response_bytes {
            self.ticket.release().await?;
            return Ok(false);
        }
        self.ticket.finish(self.policy.kept(response).encode()).await?;
        Ok(true)
    }

    /// Gives the key back at once: the handler failed without a response (it raised), so a
    /// retry may run it again.
    pub async fn abandon(&self) -> Result<()> {
        drop(self.alive.lock().take());
        self.ticket.release().await
    }
}
