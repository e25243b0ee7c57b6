//! OpenTelemetry export against a real OTLP/HTTP receiver: a loopback server in this test that
//! decodes what the exporter POSTs with the official protobuf definitions (opentelemetry-proto's
//! generated types). One test in its own binary: it sets the process's `OTEL_*` environment.
#![cfg(feature = "otel")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oncely::outbox::EventKind;
use oncely::{
    Begin, Inbox, InboxConfig, MemoryStore, Mode, NewMessage, Outbox, OutboxConfig, Outcome, Request, Worker,
    WorkerConfig,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    paths: Vec<String>,
}

/// Starts the receiver on a loopback port; answers every POST 200 with an empty protobuf body.
fn receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Received::default()));
    let shared = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let got = shared.clone();
            std::thread::spawn(move || serve(stream, &got));
        }
    });
    (endpoint, got)
}

fn serve(stream: TcpStream, got: &Mutex<Received>) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            assert!(!lower.starts_with("transfer-encoding"), "unexpected {h}");
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        {
            let mut g = got.lock().unwrap();
            match path.as_str() {
                "/v1/traces" => g.traces.push(ExportTraceServiceRequest::decode(&body[..]).unwrap()),
                "/v1/metrics" => g.metrics.push(ExportMetricsServiceRequest::decode(&body[..]).unwrap()),
                _ => {}
            }
            g.paths.push(path);
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn worker_and_inbox_export_metrics_and_linked_spans_over_otlp() {
    let (endpoint, got) = receiver();
    // SAFETY: the only test of this binary, before any other thread reads the environment.
    unsafe {
        std::env::remove_var("OTEL_SDK_DISABLED");
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SERVICE_NAME", "oncely-otel-test");
    }
    assert!(oncely::telemetry::env_asks_for_export());
    let telemetry = oncely::telemetry::init_from_env().unwrap().expect("the environment asks for OTLP");
    assert!(oncely::telemetry::is_on());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (headers, enqueued) = rt.block_on(async {
        let outbox = Outbox::open(Arc::new(MemoryStore::new()), OutboxConfig::new("emails")).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        outbox.on_event(move |e| seen.lock().unwrap().push((e.id.clone(), e.kind.name())));
        for id in ["m1", "m2", "m3", "m4"] {
            outbox.enqueue(NewMessage::new(id.as_bytes().to_vec()).id(id)).await.unwrap();
        }
        // A traceparent the sender set itself is kept.
        let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        outbox.enqueue(NewMessage::new(b"m5".to_vec()).id("m5").header("traceparent", own)).await.unwrap();
        let mut headers = BTreeMap::new();
        for id in ["m1", "m2", "m3", "m4", "m5"] {
            headers.insert(id, outbox.get(id).await.unwrap().unwrap().message.headers);
        }
        assert_eq!(headers["m5"]["traceparent"], own);

        let worker = Worker::new(outbox.clone(), WorkerConfig::default()).unwrap();
        let failed_once = Arc::new(Mutex::new(false));
        for _ in 0..50 {
            let failed_once = failed_once.clone();
            worker
                .run_until_idle(move |m| {
                    let failed_once = failed_once.clone();
                    async move {
                        match m.id.as_str() {
                            "m2" if !std::mem::replace(&mut *failed_once.lock().unwrap(), true) => {
                                Outcome::Retry { after: Some(Duration::from_millis(1)), error: "boom".into() }
                            }
                            "m4" => Outcome::Fail("bad address".into()),
                            _ => Outcome::Success,
                        }
                    }
                })
                .await
                .unwrap();
            let s = outbox.stats().await.unwrap();
            if s.counters.delivered == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = outbox.stats().await.unwrap();
        assert_eq!((s.counters.delivered, s.counters.retried, s.counters.dead_lettered), (4, 1, 1));

        let inbox =
            Inbox::open(Arc::new(MemoryStore::new()), InboxConfig::new("payments").mode(Mode::ExactlyOnce))
                .unwrap();
        let Begin::Claimed(t) = inbox.begin(Request::new("p1").payload(b"x")).await.unwrap() else {
            panic!()
        };
        t.finish(b"ok".to_vec()).await.unwrap();
        assert!(matches!(inbox.begin(Request::new("p1").payload(b"x")).await.unwrap(), Begin::Duplicate(_)));
        assert!(matches!(inbox.begin(Request::new("p1").payload(b"y")).await.unwrap(), Begin::Conflict));
        let Begin::Claimed(_held) = inbox.begin(Request::new("p2")).await.unwrap() else { panic!() };
        assert!(matches!(inbox.begin(Request::new("p2")).await.unwrap(), Begin::InProgress { .. }));
        let enqueued =
            events.lock().unwrap().iter().filter(|(_, k)| *k == EventKind::Enqueued.name()).count();
        (headers, enqueued)
    });
    drop(rt);
    assert_eq!(enqueued, 5);
    telemetry.shutdown().unwrap();
    assert!(!oncely::telemetry::is_on());

    let got = got.lock().unwrap();
    assert!(got.paths.iter().all(|p| p == "/v1/traces" || p == "/v1/metrics"), "{:?}", got.paths);

    // Spans: one send span per enqueue, one process span per attempt.
    let spans: Vec<(BTreeMap<String, String>, &Span)> = got
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .inspect(|rs| {
            let res = attrs(&rs.resource.as_ref().unwrap().attributes);
            assert_eq!(res["service.name"], "oncely-otel-test");
        })
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| (attrs(&s.attributes), s))
        .collect();
    let of = |name: &str, id: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|(a, s)| s.name == name && a.get("messaging.message.id").map(String::as_str) == Some(id))
            .map(|(_, s)| *s)
            .collect()
    };
    for id in ["m1", "m2", "m3", "m4"] {
        let send = of("send emails", id);
        assert_eq!(send.len(), 1, "{id}");
        let send = send[0];
        // The header written at enqueue is the send span's context.
        let tp = &headers[id]["traceparent"];
        assert_eq!(tp, &format!("00-{}-{}-01", hex(&send.trace_id), hex(&send.span_id)));
        let attempts = of("process emails", id);
        assert_eq!(attempts.len(), if id == "m2" { 2 } else { 1 }, "{id}");
        for a in attempts {
            assert_eq!(hex(&a.trace_id), hex(&send.trace_id), "{id}: the attempt is in the enqueue's trace");
            assert_eq!(
                hex(&a.parent_span_id),
                hex(&send.span_id),
                "{id}: the attempt's parent is the send span"
            );
        }
    }
    let m5 = of("process emails", "m5");
    assert_eq!(hex(&m5[0].trace_id), "0af7651916cd43dd8448eb211c80319c");
    let (a, s) =
        spans.iter().find(|(a, s)| s.name == "process emails" && a["oncely.outcome"] == "retry").unwrap();
    assert_eq!(a["messaging.message.id"], "m2");
    assert_eq!(a["oncely.attempt"], "1");
    assert_eq!(a["messaging.system"], "oncely");
    assert_eq!(a["messaging.destination.name"], "emails");
    assert_eq!(a["messaging.operation.type"], "process");
    assert_eq!(a["error.type"], "retry");
    assert_eq!(s.status.as_ref().unwrap().message, "boom");
    assert_eq!(s.kind, 5, "SPAN_KIND_CONSUMER");
    let (sa, send) = spans.iter().find(|(_, s)| s.name == "send emails").unwrap();
    assert_eq!(send.kind, 4, "SPAN_KIND_PRODUCER");
    assert_eq!(sa["messaging.operation.type"], "send");

    // Metrics: the last export holds the cumulative sums.
    let mut sums: BTreeMap<(String, BTreeMap<String, String>), i64> = BTreeMap::new();
    let mut histogram_count = 0;
    let mut histogram_attrs = Vec::new();
    for r in &got.metrics {
        for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
            match &m.data {
                Some(Data::Sum(sum)) => {
                    assert!(sum.is_monotonic, "{}", m.name);
                    for p in &sum.data_points {
                        let v = match p.value {
                            Some(
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i),
                            ) => i,
                            ref other => panic!("{other:?}"),
                        };
                        sums.insert((m.name.clone(), attrs(&p.attributes)), v);
                    }
                }
                Some(Data::Histogram(h)) => {
                    assert_eq!(m.name, "messaging.process.duration");
                    assert_eq!(m.unit, "s");
                    histogram_count = h.data_points.iter().map(|p| p.count).sum::<u64>();
                    histogram_attrs = h.data_points.iter().map(|p| attrs(&p.attributes)).collect();
                }
                other => panic!("{}: {other:?}", m.name),
            }
        }
    }
    let queue = |op: &str| {
        BTreeMap::from([
            ("messaging.system".to_owned(), "oncely".to_owned()),
            ("messaging.destination.name".to_owned(), "emails".to_owned()),
            ("messaging.operation.type".to_owned(), op.to_owned()),
        ])
    };
    let get = |name: &str, a: BTreeMap<String, String>| sums.get(&(name.to_owned(), a)).copied();
    assert_eq!(get("oncely.outbox.enqueued", queue("send")), Some(5), "{sums:#?}");
    assert_eq!(get("oncely.outbox.leased", queue("receive")), Some(6));
    assert_eq!(get("oncely.outbox.delivered", queue("settle")), Some(4));
    assert_eq!(get("oncely.outbox.retried", queue("settle")), Some(1));
    assert_eq!(get("oncely.outbox.dead_lettered", queue("settle")), Some(1));
    assert_eq!(get("oncely.outbox.snoozed", queue("settle")), None);
    assert_eq!(get("oncely.outbox.dropped", queue("settle")), None);
    assert_eq!(histogram_count, 6);
    assert!(histogram_attrs.iter().any(|a| a.get("oncely.outcome").map(String::as_str) == Some("fail")));
    let scope = BTreeMap::from([
        ("messaging.system".to_owned(), "oncely".to_owned()),
        ("oncely.inbox.scope".to_owned(), "payments".to_owned()),
    ]);
    assert_eq!(get("oncely.inbox.claimed", scope.clone()), Some(2));
    assert_eq!(get("oncely.inbox.duplicate", scope.clone()), Some(1));
    assert_eq!(get("oncely.inbox.conflict", scope.clone()), Some(1));
    assert_eq!(get("oncely.inbox.in_progress", scope), Some(1));
}
