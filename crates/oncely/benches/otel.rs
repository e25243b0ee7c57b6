//! What telemetry costs (docs/observability.md): the same loop — enqueue N messages one call
//! each, then a worker (concurrency 16, no-op handler) delivers them — with telemetry off and on
//! (exporting OTLP/HTTP to a loopback receiver started here, which reads and discards), rounds
//! interleaved in one run; the median of each.
//!
//! `cargo bench -p oncely --features otel --bench otel` (`-- --quick`: a smoke run).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use oncely::{
    MemoryStore, NewMessage, Outbox, OutboxConfig, OutboxStore, Outcome, SqliteConfig, SqliteStore,
    Synchronous, Worker, WorkerConfig,
};

/// A loopback OTLP/HTTP endpoint that answers 200 to every request and keeps nothing.
fn sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    endpoint
}

async fn round<S: OutboxStore>(store: S, n: usize) -> f64 {
    let outbox = Outbox::open(store, OutboxConfig::new("bench")).unwrap();
    let started = Instant::now();
    for i in 0..n {
        outbox.enqueue(NewMessage::new(vec![0u8; 64]).id(format!("m{i}"))).await.unwrap();
    }
    let worker = Worker::new(outbox.clone(), WorkerConfig::default()).unwrap();
    let summary = worker.run_until_idle(|_m| async { Outcome::Success }).await.unwrap();
    assert_eq!(summary.succeeded as usize, n);
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds) = if quick { (2_000, 3) } else { (20_000, 9) };
    let endpoint = sink();
    // SAFETY: set before any thread of ours reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SERVICE_NAME", "oncely-bench");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = 0;
    let mut sqlite = || {
        files += 1;
        let config = SqliteConfig { synchronous: Synchronous::Normal, ..Default::default() };
        SqliteStore::open(dir.path().join(format!("b{files}.db")), config).unwrap()
    };
    rt.block_on(round(Arc::new(MemoryStore::new()), n / 10)); // warm-up
    println!(
        "oncely telemetry cost: enqueue (one call each) + deliver {n} messages, worker concurrency 16, {rounds} rounds interleaved"
    );
    for store in ["memory", "sqlite NORMAL"] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            assert!(!oncely::telemetry::is_on());
            off.push(match store {
                "memory" => rt.block_on(round(Arc::new(MemoryStore::new()), n)),
                _ => rt.block_on(round(sqlite(), n)),
            });
            let telemetry = oncely::telemetry::init_from_env().unwrap().unwrap();
            on.push(match store {
                "memory" => rt.block_on(round(Arc::new(MemoryStore::new()), n)),
                _ => rt.block_on(round(sqlite(), n)),
            });
            telemetry.shutdown().unwrap(); // the export of what is left, outside the timing
        }
        let (off_m, on_m) = (median(off.clone()), median(on.clone()));
        println!("{store}: telemetry off {off_m:.0} msgs/s (median; rounds {off:.0?})");
        println!(
            "{store}: telemetry on  {on_m:.0} msgs/s (median; rounds {on:.0?}), exporting to a loopback receiver"
        );
        println!("{store}: on / off = {:.2}", on_m / off_m);
    }
}
