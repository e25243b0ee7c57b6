//! `oncely serve` as a real process: `/metrics` is Prometheus text that an independent parser
//! reads, with the values the core's `stats()` gives for the same store; bound beyond loopback it
//! needs a token, and then refuses requests without it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oncely::{AnyStore, Begin, Inbox, InboxConfig, NewMessage, Outbox, OutboxConfig, Request, SqliteConfig};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &std::path::Path, bind: &str, token: Option<&str>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oncely"));
        cmd.args(["serve", "--db"])
            .arg(db)
            .args(["--bind", bind])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.env_remove("ONCELY_SERVE_TOKEN");
        if let Some(t) = token {
            cmd.env("ONCELY_SERVE_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Server { child, addr }
    }

    /// One GET; the status and the body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let (_, body) = raw.split_once("\r\n\r\n").unwrap();
        (status, body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `metric{labels}` (labels written as the text format writes them, in
/// order). The format itself is checked by an independent parser in the Python suite
/// (`python/tests/test_serve_metrics.py`, the official client's parser).
fn value(body: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    let head = format!("{metric}{{{}}} ", labels.join(","));
    let line =
        body.lines().find(|l| l.starts_with(&head)).unwrap_or_else(|| panic!("no sample {head}in\n{body}"));
    line[head.len()..].parse().unwrap()
}

#[test]
fn metrics_are_the_stores_numbers_in_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = AnyStore::open(db.to_str().unwrap(), SqliteConfig::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (payments, emails) = rt.block_on(async {
        let payments = Outbox::open(store.clone(), OutboxConfig::new("payments")).unwrap();
        for i in 0..5 {
            payments.enqueue(NewMessage::new(format!("p{i}")).id(format!("p{i}"))).await.unwrap();
        }
        let leased = payments.lease(3).await.unwrap();
        leased[0].ack().await.unwrap();
        leased[1].fail("card declined").await.unwrap();
        let emails = Outbox::open(store.clone(), OutboxConfig::new("emails \"weekly\"")).unwrap();
        for i in 0..2 {
            emails
                .enqueue(NewMessage::new("e").id(format!("e{i}")).delay(Duration::from_secs(3600)))
                .await
                .unwrap();
        }
        let orders = Inbox::open(store.clone(), InboxConfig::new("orders")).unwrap();
        for id in ["o1", "o2"] {
            let Begin::Claimed(t) = orders.begin(Request::new(id)).await.unwrap() else { panic!() };
            t.finish(b"ok".to_vec()).await.unwrap();
        }
        let Begin::Claimed(held) = orders.begin(Request::new("o3")).await.unwrap() else { panic!() };
        std::mem::forget(held);
        (payments.stats().await.unwrap(), emails.stats().await.unwrap())
    });
    drop(store);

    let server = Server::start(&db, "127.0.0.1:0", None);
    let (status, body) = server.get("/metrics", None);
    assert_eq!(status, 200, "{body}");
    let s = body.as_str();
    assert!(s.contains("# TYPE oncely_messages_enqueued_total counter\n"));
    for (queue, stats) in [("payments", payments), ("emails \"weekly\"", emails)] {
        let q = &stats.queue;
        for (state, n) in
            [("ready", q.ready), ("scheduled", q.scheduled), ("leased", q.leased), ("dead", q.dead)]
        {
            assert_eq!(
                value(s, "oncely_queue_messages", &[("queue", queue), ("state", state)]),
                n as f64,
                "{queue} {state}"
            );
        }
        let c = &q.counts;
        for (name, n) in [
            ("oncely_messages_enqueued_total", c.enqueued),
            ("oncely_messages_delivered_total", c.delivered),
            ("oncely_messages_retried_total", c.retried),
            ("oncely_messages_dead_lettered_total", c.dead_lettered),
            ("oncely_messages_dropped_total", c.dropped),
        ] {
            assert_eq!(value(s, name, &[("queue", queue)]), n as f64, "{queue} {name}");
        }
        assert!(value(s, "oncely_queue_oldest_age_seconds", &[("queue", queue)]) >= 0.0);
    }
    assert_eq!((payments.queue.leased, payments.queue.dead, payments.queue.counts.delivered), (1, 1, 1));
    assert_eq!(emails.queue.scheduled, 2);
    for (state, n) in
        [("in_progress", 1.0), ("succeeded", 2.0), ("failed", 0.0), ("seen", 0.0), ("expired", 0.0)]
    {
        assert_eq!(value(s, "oncely_inbox_records", &[("scope", "orders"), ("state", state)]), n, "{state}");
    }
    let (status, _) = server.get("/nothing", None);
    assert_eq!(status, 404);
}

#[test]
fn beyond_loopback_a_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    drop(AnyStore::open(db.to_str().unwrap(), SqliteConfig::default()).unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_oncely"))
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--bind", "0.0.0.0:0"])
        .env_remove("ONCELY_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a loopback address: give a token"));

    // With a token (bound to loopback here, so the test never listens beyond this machine).
    let server = Server::start(&db, "127.0.0.1:0", Some("s3cret"));
    assert_eq!(server.get("/metrics", None).0, 401);
    assert_eq!(server.get("/metrics", Some("wrong")).0, 401);
    assert_eq!(server.get("/metrics", Some("s3cret")).0, 200);
}
