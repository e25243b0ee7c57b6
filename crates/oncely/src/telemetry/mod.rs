//! OpenTelemetry metrics and spans (the `otel` cargo feature; docs/observability.md).
//!
//! Nothing is recorded until [`init_from_env`] finds an OTLP exporter configured in the standard
//! `OTEL_*` environment and installs one; until then (and after [`Telemetry::shutdown`]) every
//! hook in the outbox, the worker and the inbox costs one relaxed atomic load.
//!
//! Names follow OpenTelemetry's messaging semantic conventions where they apply:
//! `messaging.system` = `"oncely"`, `messaging.destination.name` = the queue,
//! `messaging.operation.type` (`send`, `receive`, `process`, `settle`), `messaging.message.id`.
//! The enqueuing context's W3C trace context travels in the message header
//! [`TRACEPARENT_HEADER`] (and `tracestate` when there is one), so a worker's attempt span is a
//! child of the enqueue's span, in any process that reads the message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::outbox::{Event, EventKind};

/// The message header that carries the enqueuing context's W3C trace context
/// (`00-<trace id>-<span id>-<flags>`, as in HTTP). Set at enqueue when telemetry is on and the
/// message does not already carry one; it counts towards the headers' size limit (55 bytes of
/// value).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// `messaging.system` of everything oncely records.
pub const MESSAGING_SYSTEM: &str = "oncely";

static ON: AtomicBool = AtomicBool::new(false);
static ACTIVE: RwLock<Option<Arc<Instruments>>> = RwLock::new(None);

/// The instruments in force, or `None` (one relaxed load) when telemetry is off.
#[inline]
fn active() -> Option<Arc<Instruments>> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    ACTIVE.read().clone()
}

struct Instruments {
    tracer: SdkTracer,
    enqueued: Counter<u64>,
    leased: Counter<u64>,
    delivered: Counter<u64>,
    retried: Counter<u64>,
    snoozed: Counter<u64>,
    dead_lettered: Counter<u64>,
    dropped: Counter<u64>,
    process_duration: Histogram<f64>,
    inbox_claimed: Counter<u64>,
    inbox_duplicate: Counter<u64>,
    inbox_conflict: Counter<u64>,
    inbox_in_progress: Counter<u64>,
}

impl Instruments {
    fn new(tracer_provider: &SdkTracerProvider, meter_provider: &SdkMeterProvider) -> Instruments {
        let meter = meter_provider.meter("oncely");
        let counter = |name: &'static str, what: &'static str| {
            meter.u64_counter(name).with_unit("{message}").with_description(what).build()
        };
        let request = |name: &'static str, what: &'static str| {
            meter.u64_counter(name).with_unit("{request}").with_description(what).build()
        };
        Instruments {
            tracer: tracer_provider.tracer("oncely"),
            enqueued: counter("oncely.outbox.enqueued", "Messages added to the queue"),
            leased: counter("oncely.outbox.leased", "Deliveries handed out (attempts begun)"),
            delivered: counter("oncely.outbox.delivered", "Messages acknowledged as delivered"),
            retried: counter("oncely.outbox.retried", "Failed attempts scheduled for a retry"),
            snoozed: counter("oncely.outbox.snoozed", "Attempts put off without using up an attempt"),
            dead_lettered: counter("oncely.outbox.dead_lettered", "Messages given up on"),
            dropped: counter("oncely.outbox.dropped", "At-most-once messages whose one attempt failed"),
            process_duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Duration of one delivery attempt: the worker's handler call")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                ])
                .build(),
            inbox_claimed: request("oncely.inbox.claimed", "Ids claimed: the caller runs the effect"),
            inbox_duplicate: request(
                "oncely.inbox.duplicate",
                "Ids already done: answered with the stored outcome",
            ),
            inbox_conflict: request("oncely.inbox.conflict", "Ids seen before with another payload"),
            inbox_in_progress: request(
                "oncely.inbox.in_progress",
                "Ids another caller holds a live lease on",
            ),
        }
    }
}

/// Telemetry installed by [`init_from_env`]: holds the exporting providers. Dropping it (or
/// [`Telemetry::shutdown`]) turns recording off and flushes what was recorded to the exporter.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    done: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Stops recording, exports every span and metric recorded so far, and shuts the exporters
    /// down. Errors name what could not be exported.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(());
        }
        ON.store(false, Ordering::SeqCst);
        *ACTIVE.write() = None;
        let traces = self.tracer_provider.shutdown();
        let metrics = self.meter_provider.shutdown();
        match (traces, metrics) {
            (Ok(()), Ok(())) => Ok(()),
            (t, m) => {
                Err(Error::Storage(format!("OpenTelemetry export at shutdown: traces {t:?}, metrics {m:?}")))
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "oncely: telemetry shutdown");
        }
    }
}

/// Whether the `OTEL_*` environment asks for OTLP export: `OTEL_SDK_DISABLED` is not `true`, and
/// an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the traces or metrics one), or
/// `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` is `otlp`.
pub fn env_asks_for_export() -> bool {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|k| var(k).is_some())
        || ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"]
            .iter()
            .any(|k| var(k).is_some_and(|v| v.split(',').any(|e| e.trim() == "otlp")))
}

/// Turns telemetry on when the `OTEL_*` environment asks for OTLP export
/// ([`env_asks_for_export`]): installs an OTLP/HTTP-protobuf span exporter (batched) and metric
/// exporter (periodic, `OTEL_METRIC_EXPORT_INTERVAL`, default 60 s), configured by
/// opentelemetry-otlp from the standard variables (endpoint, headers, timeout, compression) and
/// with the resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`. `Ok(None)` (and
/// nothing recorded, ever) when the environment does not ask. Refuses a protocol other than
/// `http/protobuf`, and a second call while telemetry is on. Keep the answer alive for as long
/// as telemetry should run; dropping it flushes.
pub fn init_from_env() -> Result<Option<Telemetry>> {
    if !env_asks_for_export() {
        return Ok(None);
    }
    for k in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(k)
            && !p.trim().is_empty()
            && p.trim() != "http/protobuf"
        {
            return Err(Error::invalid(k, format!("{p:?}: oncely exports OTLP over http/protobuf only")));
        }
    }
    use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
    let failed =
        |what: &str, e: &dyn std::fmt::Display| Error::invalid("OTEL_EXPORTER_OTLP", format!("{what}: {e}"));
    let spans = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| failed("span exporter", &e))?;
    let metrics = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| failed("metric exporter", &e))?;
    let resource = opentelemetry_sdk::Resource::builder().build();
    let tracer_provider =
        SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
    let meter_provider =
        SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource).build();
    let mut slot = ACTIVE.write();
    if slot.is_some() {
        return Err(Error::invalid("telemetry", "already on in this process"));
    }
    *slot = Some(Arc::new(Instruments::new(&tracer_provider, &meter_provider)));
    ON.store(true, Ordering::SeqCst);
    Ok(Some(Telemetry { tracer_provider, meter_provider, done: false }))
}

/// Whether telemetry is recording in this process.
pub fn is_on() -> bool {
    active().is_some()
}

fn common(queue: &str, operation: &'static str) -> [KeyValue; 3] {
    common_shared(opentelemetry::StringValue::from(Arc::<str>::from(queue)), operation)
}

/// [`common`] with the queue's name already shared (cloning it is a reference count).
fn common_shared(queue: opentelemetry::StringValue, operation: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("messaging.system", MESSAGING_SYSTEM),
        KeyValue::new("messaging.destination.name", queue),
        KeyValue::new("messaging.operation.type", operation),
    ]
}

/// A message's headers as the propagator writes them.
struct Headers<'a>(&'a mut BTreeMap<String, String>);

impl opentelemetry::propagation::Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// A message's headers as the propagator reads them (names as written: `traceparent`).
struct ReadHeaders<'a>(&'a BTreeMap<String, String>);

impl opentelemetry::propagation::Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Counts one step's committed events of `queue`.
pub(crate) fn count_events(queue: &str, events: &[Event]) {
    let Some(t) = active() else { return };
    let queue = opentelemetry::StringValue::from(Arc::<str>::from(queue));
    for e in events {
        let (counter, operation) = match e.kind {
            EventKind::Enqueued => (&t.enqueued, "send"),
            EventKind::Leased { .. } => (&t.leased, "receive"),
            EventKind::Acked => (&t.delivered, "settle"),
            EventKind::Retried { .. } => (&t.retried, "settle"),
            EventKind::Snoozed { .. } => (&t.snoozed, "settle"),
            EventKind::DeadLettered { .. } => (&t.dead_lettered, "settle"),
            EventKind::Dropped => (&t.dropped, "settle"),
            _ => continue,
        };
        counter.add(1, &common_shared(queue.clone(), operation));
    }
}

/// The span of one enqueue call ("send <queue>", a producer span, child of the caller's current
/// context), and the trace context to write into each message's headers.
pub(crate) struct SendSpan {
    cx: Context,
    headers: BTreeMap<String, String>,
}

/// Starts the send span of an enqueue of `ids` (known ids; `None` for one generated later) to
/// `queue`; `None` when telemetry is off.
pub(crate) fn start_send(queue: &str, ids: &[Option<&str>]) -> Option<SendSpan> {
    let t = active()?;
    let mut attributes = common(queue, "send").to_vec();
    attributes.push(KeyValue::new("messaging.operation.name", "enqueue"));
    match ids {
        [Some(id)] => attributes.push(KeyValue::new("messaging.message.id", (*id).to_owned())),
        [_] => {}
        many => attributes.push(KeyValue::new("messaging.batch.message_count", many.len() as i64)),
    }
    let span = t
        .tracer
        .span_builder(format!("send {queue}"))
        .with_kind(SpanKind::Producer)
        .with_attributes(attributes)
        .start_with_context(&t.tracer, &Context::current());
    let cx = Context::current_with_span(span);
    let mut headers = BTreeMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut Headers(&mut headers));
    Some(SendSpan { cx, headers })
}

impl SendSpan {
    /// The trace context headers to add to a message that has none of its own.
    pub(crate) fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// Ends the span, as an error when the enqueue failed.
    pub(crate) fn end(self, error: Option<&Error>) {
        let span = self.cx.span();
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", e.code().as_str()));
            span.set_status(Status::error(e.to_string()));
        }
        span.end();
    }
}

/// The span of one delivery attempt ("process <queue>", a consumer span whose parent is the
/// trace context in the message's headers) and its start, for the duration histogram.
pub(crate) struct Attempt {
    cx: Context,
    queue: String,
    started: std::time::Instant,
}

/// Starts the attempt span of message `id` (its `attempt`-th attempt) from `queue`; `None` when
/// telemetry is off.
pub(crate) fn start_attempt(
    queue: &str,
    id: &str,
    attempt: u32,
    headers: &BTreeMap<String, String>,
) -> Option<Attempt> {
    let t = active()?;
    let parent = TraceContextPropagator::new().extract(&ReadHeaders(headers));
    let mut attributes = common(queue, "process").to_vec();
    attributes.push(KeyValue::new("messaging.operation.name", "process"));
    attributes.push(KeyValue::new("messaging.message.id", id.to_owned()));
    attributes.push(KeyValue::new("oncely.attempt", i64::from(attempt)));
    let span = t
        .tracer
        .span_builder(format!("process {queue}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes)
        .start_with_context(&t.tracer, &parent);
    Some(Attempt { cx: parent.with_span(span), queue: queue.to_owned(), started: std::time::Instant::now() })
}

impl Attempt {
    /// The context the handler runs in (its spans are children of the attempt span).
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Ends the attempt with the handler's outcome (`"success"`, `"retry"`, `"snooze"`,
    /// `"fail"`) and, for a failure, its error; records its duration.
    pub(crate) fn end(self, outcome: &'static str, error: Option<&str>) {
        let elapsed: Duration = self.started.elapsed();
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("oncely.outcome", outcome));
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", outcome));
            span.set_status(Status::error(e.to_owned()));
        }
        span.end();
        if let Some(t) = active() {
            let mut attributes = common(&self.queue, "process").to_vec();
            attributes.push(KeyValue::new("messaging.operation.name", "process"));
            attributes.push(KeyValue::new("oncely.outcome", outcome));
            if error.is_some() {
                attributes.push(KeyValue::new("error.type", outcome));
            }
            t.process_duration.record(elapsed.as_secs_f64(), &attributes);
        }
    }
}

/// What an inbox answered a begin.
pub(crate) enum InboxAnswer {
    Claimed,
    Duplicate,
    Conflict,
    InProgress,
}

/// Counts one inbox answer of `scope`.
pub(crate) fn count_inbox(scope: &str, answer: InboxAnswer) {
    let Some(t) = active() else { return };
    let counter = match answer {
        InboxAnswer::Claimed => &t.inbox_claimed,
        InboxAnswer::Duplicate => &t.inbox_duplicate,
        InboxAnswer::Conflict => &t.inbox_conflict,
        InboxAnswer::InProgress => &t.inbox_in_progress,
    };
    counter.add(
        1,
        &[
            KeyValue::new("messaging.system", MESSAGING_SYSTEM),
            KeyValue::new("oncely.inbox.scope", scope.to_owned()),
        ],
    );
}
