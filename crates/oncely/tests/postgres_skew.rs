//! Whose clock decides on PostgreSQL: the database server's. Processes whose host clocks are ten
//! minutes fast or slow (libfaketime, Debian's `faketime`) share one store with a process on the
//! right time, and none of them takes over a live lease, shortens a retention, purges a live
//! record or delivers a delayed message early. Needs `ONCELY_POSTGRES_URL` and libfaketime;
//! skips loudly without them, fails under CI.

mod support;

use std::process::Command;
use std::time::Duration;

use oncely::*;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const CHILD: &str = "ONCELY_SKEW_DO";
const TEST: &str = "deadlines_are_judged_by_the_servers_clock";

fn libfaketime() -> Option<&'static str> {
    if std::path::Path::new(LIBFAKETIME).exists() {
        return Some(LIBFAKETIME);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("libfaketime is missing under CI (apt-get install faketime): the skew test must not skip");
    }
    eprintln!("!! SKIPPED: clock-skew test (apt-get install faketime)");
    None
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(url, PostgresConfig { pool_size: 1, ..PostgresConfig::default() }).unwrap()
}

fn inbox(url: &str) -> Inbox<PostgresStore> {
    Inbox::open(
        open(url),
        InboxConfig::new("s").lease(Duration::from_secs(60)).retention(Duration::from_secs(300)),
    )
    .unwrap()
}

fn outbox(url: &str) -> Outbox<PostgresStore> {
    Outbox::open(open(url), OutboxConfig::new("q").mode(Mode::AtLeastOnce).lease(Duration::from_secs(60)))
        .unwrap()
}

fn begin_outcome(b: Begin<PostgresStore>) -> &'static str {
    match b {
        Begin::Claimed(_) => "claimed",
        Begin::Duplicate(_) => "duplicate",
        Begin::InProgress { .. } => "in_progress",
        Begin::Conflict => "conflict",
    }
}

/// One step, in a process whose host clock is skewed: prints its answer.
fn child(what: &str, url: &str) -> ! {
    let answer = oncely::runtime::block_on(async {
        match what {
            "host_time" => SystemClock.now().0.to_string(),
            "lease" => outbox(url).lease(10).await.unwrap().len().to_string(),
            "enqueue_delayed" => {
                outbox(url)
                    .enqueue(NewMessage::new(b"p".to_vec()).id("later").delay(Duration::from_secs(120)))
                    .await
                    .unwrap();
                "ok".into()
            }
            "begin_done" => begin_outcome(inbox(url).begin(Request::new("done")).await.unwrap()).into(),
            "begin_held" => begin_outcome(inbox(url).begin(Request::new("held")).await.unwrap()).into(),
            "purge" => inbox(url).purge_expired().await.unwrap().to_string(),
            other => panic!("unknown step {other}"),
        }
    })
    .unwrap();
    println!("\nSKEW-ANSWER {answer}");
    std::process::exit(0)
}

/// Runs `what` in a child process whose host clock is `offset` (libfaketime syntax: `+10m`).
fn skewed(lib: &str, offset: &str, what: &str, url: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, what)
        .env("ONCELY_SKEW_URL", url)
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SKEW-ANSWER "))
        .unwrap_or_else(|| {
            panic!("{what} under {offset}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
        })
        .to_owned()
}

#[test]
fn deadlines_are_judged_by_the_servers_clock() {
    if let Ok(what) = std::env::var(CHILD) {
        child(&what, &std::env::var("ONCELY_SKEW_URL").unwrap());
    }
    let Some(url) = support::postgres_schema_url() else { return };
    let Some(lib) = libfaketime() else { return };
    // The fault is really there: the children's host clocks are ten minutes off.
    for (offset, want) in [("+10m", 600_000), ("-10m", -600_000)] {
        let theirs: i64 = skewed(lib, offset, "host_time", &url).parse().unwrap();
        let skew = theirs - SystemClock.now().0;
        assert!(
            (skew - want).abs() < 60_000,
            "libfaketime did not skew the child's clock ({offset}: {skew} ms)"
        );
    }
    oncely::runtime::block_on(async {
        // A lease held for 60 s by a process on the right time.
        let (ob, ib) = (outbox(&url), inbox(&url));
        ob.enqueue(NewMessage::new(b"p".to_vec()).id("m1")).await.unwrap();
        let held = ob.lease(1).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(skewed(lib, "+10m", "lease", &url), "0", "a fast host took over a live lease");

        // A message delayed by 120 s by a slow producer is not due now.
        assert_eq!(skewed(lib, "-10m", "enqueue_delayed", &url), "ok");
        assert!(ob.lease(10).await.unwrap().is_empty(), "a slow producer's delayed message was due at once");

        // A completed id inside its 300 s retention, and a claim held for 60 s.
        let done = ib.process(Request::new("done"), || async { Ok::<_, Failure<String>>(b"r".to_vec()) });
        done.await.unwrap();
        assert!(matches!(ib.begin(Request::new("held")).await.unwrap(), Begin::Claimed(_)));
        assert_eq!(
            skewed(lib, "+10m", "begin_done", &url),
            "duplicate",
            "a fast host's retention ran out early"
        );
        assert_eq!(
            skewed(lib, "+10m", "begin_held", &url),
            "in_progress",
            "a fast host took over a live claim"
        );
        assert_eq!(skewed(lib, "+10m", "purge", &url), "0", "a fast host purged live records");
        assert!(ib.get("done").await.unwrap().is_some());
    })
    .unwrap();
}
