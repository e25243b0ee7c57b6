//! The HTTP gate (`oncely::http`) over every store: a keyed request runs its handler once, its
//! retries get the first response byte for byte, and every refusal is the documented problem.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oncely::http::{Admission, HttpGate, HttpPolicy, HttpRequest, HttpResponse};
use oncely::sql::{SqlTx, SqlValue};
use oncely::{AnyStore, Error, ProcessError};

fn post(key: Option<&str>, body: &str) -> HttpRequest {
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if let Some(k) = key {
        headers.push(("Idempotency-Key".to_owned(), k.to_owned()));
    }
    HttpRequest {
        method: "POST".into(),
        path: "/payments".into(),
        headers,
        body: body.as_bytes().to_vec(),
        ..HttpRequest::default()
    }
}

fn created(n: usize) -> HttpResponse {
    HttpResponse {
        status: 201,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Set-Cookie".into(), "s=1".into()),
            ("Location".into(), format!("/payments/{n}")),
        ],
        body: format!("{{\"payment\":{n}}}").into_bytes(),
    }
}

fn problem_type(r: &HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Runs one request through the gate with a handler that counts its runs.
async fn call(
    gate: &HttpGate<AnyStore>,
    req: &HttpRequest,
    runs: &AtomicUsize,
    answer: HttpResponse,
) -> HttpResponse {
    match gate.admit(req).await.unwrap() {
        Admission::Pass => {
            runs.fetch_add(1, Ordering::SeqCst);
            answer
        }
        Admission::Run(claim) => {
            runs.fetch_add(1, Ordering::SeqCst);
            claim.complete(&answer).await.unwrap();
            answer
        }
        Admission::Respond(r) => r,
    }
}

mod suite {
    use super::*;

    pub async fn a_retry_gets_the_first_response_byte_for_byte(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::default()).unwrap();
        let runs = AtomicUsize::new(0);
        let first = call(&gate, &post(Some("k1"), r#"{"amount":10,"to":"bob"}"#), &runs, created(1)).await;
        assert_eq!(first, created(1));
        // The same request, its JSON keys in another order: a retry, answered from the store.
        let again =
            call(&gate, &post(Some("\"k1\""), r#"{ "to": "bob", "amount": 10 }"#), &runs, created(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(again.status, 201);
        assert_eq!(again.body, first.body);
        assert_eq!(header(&again, "location"), Some("/payments/1"));
        assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
        assert_eq!(header(&again, "set-cookie"), None, "a cookie is never replayed");
        // The same answers without the store: this process completed `k1`, so its retry is
        // replayed from memory; a fresh key needs the store.
        let Some(Admission::Respond(now)) =
            gate.admit_now(&post(Some("k1"), r#"{"amount":10,"to":"bob"}"#)).unwrap()
        else {
            panic!("not answered at once")
        };
        assert_eq!((now.status, now.body.clone()), (201, first.body.clone()));
        let Some(Admission::Respond(reused)) = gate.admit_now(&post(Some("k1"), r#"{"amount":11}"#)).unwrap()
        else {
            panic!("reuse not answered at once")
        };
        assert_eq!(reused.status, 422);
        assert!(gate.admit_now(&post(Some("k-new"), "{}")).unwrap().is_none());
        assert!(
            matches!(gate.admit_now(&post(None, "{}")).unwrap(), Some(Admission::Respond(r)) if r.status == 400)
        );
    }

    pub async fn refusals_are_problems_with_stable_types(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::default()).unwrap();
        let runs = AtomicUsize::new(0);
        let missing = call(&gate, &post(None, "{}"), &runs, created(0)).await;
        assert_eq!(
            (missing.status, problem_type(&missing).as_str()),
            (400, "urn:oncely:problem:idempotency-key-missing")
        );
        assert_eq!(header(&missing, "content-type"), Some("application/problem+json"));
        let bad = call(&gate, &post(Some("\"open"), "{}"), &runs, created(0)).await;
        assert_eq!(
            (bad.status, problem_type(&bad).as_str()),
            (400, "urn:oncely:problem:idempotency-key-malformed")
        );
        call(&gate, &post(Some("k2"), r#"{"amount":10}"#), &runs, created(1)).await;
        let reused = call(&gate, &post(Some("k2"), r#"{"amount":11}"#), &runs, created(2)).await;
        assert_eq!(
            (reused.status, problem_type(&reused).as_str()),
            (422, "urn:oncely:problem:idempotency-key-reused")
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1, "no refusal ran the handler");
        // A GET takes no key; an optional key left out lets the request through.
        let get = HttpRequest { method: "GET".into(), ..post(None, "") };
        call(&gate, &get, &runs, created(3)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    pub async fn in_flight_is_409_with_retry_after_then_the_replay(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::from_json(r#"{"lease": 30}"#).unwrap()).unwrap();
        let Admission::Run(claim) = gate.admit(&post(Some("k3"), "{}")).await.unwrap() else {
            panic!("first")
        };
        let Admission::Respond(busy) = gate.admit(&post(Some("k3"), "{}")).await.unwrap() else {
            panic!("second")
        };
        assert_eq!(
            (busy.status, problem_type(&busy).as_str()),
            (409, "urn:oncely:problem:request-in-progress")
        );
        let after: u64 = header(&busy, "retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&after), "{after}");
        assert!(claim.complete(&created(1)).await.unwrap());
        let Admission::Respond(replay) = gate.admit(&post(Some("k3"), "{}")).await.unwrap() else {
            panic!("third")
        };
        assert_eq!(replay.body, created(1).body);
    }

    pub async fn a_waiting_duplicate_gets_the_replay(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::from_json(r#"{"wait": 5}"#).unwrap()).unwrap();
        let Admission::Run(claim) = gate.admit(&post(Some("k4"), "{}")).await.unwrap() else {
            panic!("first")
        };
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.admit(&post(Some("k4"), "{}")).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        claim.complete(&created(7)).await.unwrap();
        let Admission::Respond(replay) = waiter.await.unwrap() else { panic!("waiter ran") };
        assert_eq!((replay.status, replay.body.clone()), (201, created(7).body));
    }

    pub async fn server_errors_and_try_again_give_the_key_back(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::default()).unwrap();
        let runs = AtomicUsize::new(0);
        for (status, stored) in [(500, false), (503, false), (429, false), (404, true)] {
            let key = format!("s{status}");
            let r = HttpResponse { status, headers: vec![], body: b"x".to_vec() };
            let before = runs.load(Ordering::SeqCst);
            call(&gate, &post(Some(&key), "{}"), &runs, r.clone()).await;
            call(&gate, &post(Some(&key), "{}"), &runs, r).await;
            let ran = runs.load(Ordering::SeqCst) - before;
            assert_eq!(ran, if stored { 1 } else { 2 }, "status {status}");
        }
        // A response that is not one (status 600) is refused, and the key is given back.
        let Admission::Run(claim) = gate.admit(&post(Some("s600"), "{}")).await.unwrap() else { panic!() };
        let bad = HttpResponse { status: 600, headers: vec![], body: vec![] };
        assert_eq!(claim.complete(&bad).await.unwrap_err().code(), oncely::ErrorCode::InvalidArgument);
        assert!(matches!(gate.admit(&post(Some("s600"), "{}")).await.unwrap(), Admission::Run(_)));
        // A handler that raised gives the key back at once.
        let Admission::Run(claim) = gate.admit(&post(Some("boom"), "{}")).await.unwrap() else { panic!() };
        claim.abandon().await.unwrap();
        assert!(matches!(gate.admit(&post(Some("boom"), "{}")).await.unwrap(), Admission::Run(_)));
    }

    pub async fn scopes_never_share_a_key(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::default()).unwrap();
        let runs = AtomicUsize::new(0);
        for tenant in ["alice", "bob"] {
            let req = HttpRequest { scope: Some(tenant.into()), ..post(Some("same"), "{}") };
            call(&gate, &req, &runs, created(1)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_ne!(
            HttpGate::<AnyStore>::record_id(Some("a:"), "b").unwrap(),
            HttpGate::<AnyStore>::record_id(Some("a"), ":b").unwrap()
        );
    }

    /// 16 identical requests race: the handler runs once, every other one is a 409 or the
    /// replay of the one response.
    pub async fn racing_duplicates_run_the_handler_once(store: AnyStore) {
        let gate = HttpGate::open(store, HttpPolicy::default()).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (gate, runs) = (gate.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                call(&gate, &post(Some("race"), r#"{"a":1}"#), &runs, created(9)).await.status
            }));
        }
        for t in tasks {
            let status = t.await.unwrap();
            assert!(status == 201 || status == 409, "{status}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    fn ledger(tx: &mut dyn SqlTx) -> oncely::Result<i64> {
        match tx.execute("SELECT count(*) FROM http_ledger", &[])?.as_slice() {
            [row] => match row.as_slice() {
                [SqlValue::Integer(n)] => Ok(*n),
                other => Err(Error::Storage(format!("{other:?}"))),
            },
            other => Err(Error::Storage(format!("{other:?}"))),
        }
    }

    /// The transactional handler: its row and the stored response commit together; a 5xx
    /// answer rolls its row back; a raised error too, and reaches the caller as raised.
    pub async fn transactional_rows_and_response_commit_together(store: AnyStore) {
        store
            .in_transaction(|tx| {
                tx.execute("CREATE TABLE IF NOT EXISTS http_ledger (id TEXT PRIMARY KEY)", &[])?;
                tx.execute("DELETE FROM http_ledger", &[])
            })
            .await
            .unwrap();
        let gate = HttpGate::open(store.clone(), HttpPolicy::default()).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let pay = |key: &'static str, status: u16, raise: bool| {
            let runs = runs.clone();
            move |tx: &mut dyn SqlTx| -> Result<HttpResponse, String> {
                runs.fetch_add(1, Ordering::SeqCst);
                tx.execute("INSERT INTO http_ledger (id) VALUES ($1)", &[SqlValue::Text(key.into())])
                    .map_err(|e| e.to_string())?;
                if raise {
                    return Err("card declined by the bank".into());
                }
                Ok(HttpResponse { status, headers: vec![], body: key.as_bytes().to_vec() })
            }
        };
        for _ in 0..3 {
            let r =
                gate.respond_in_transaction(&post(Some("t1"), "{}"), pay("t1", 201, false)).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (201, &b"t1"[..]));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let r = gate.respond_in_transaction(&post(Some("t2"), "{}"), pay("t2", 503, false)).await.unwrap();
        assert_eq!(r.status, 503);
        let e = gate.respond_in_transaction(&post(Some("t3"), "{}"), pay("t3", 201, true)).await.unwrap_err();
        assert!(matches!(e, ProcessError::Handler(ref t) if t == "card declined by the bank"), "{e:?}");
        let rows = store.in_transaction(ledger).await.unwrap();
        assert_eq!(rows, 1, "only the stored response's row is kept");
        let reused = gate
            .respond_in_transaction(&post(Some("t1"), r#"{"x":1}"#), pay("t1", 201, false))
            .await
            .unwrap();
        assert_eq!(reused.status, 422);
    }
}

suite_tests!(any_memory, support::any_memory();
    a_retry_gets_the_first_response_byte_for_byte, refusals_are_problems_with_stable_types,
    in_flight_is_409_with_retry_after_then_the_replay, a_waiting_duplicate_gets_the_replay,
    server_errors_and_try_again_give_the_key_back, scopes_never_share_a_key,
    racing_duplicates_run_the_handler_once);

suite_tests!(any_sqlite, support::any_sqlite();
    a_retry_gets_the_first_response_byte_for_byte, refusals_are_problems_with_stable_types,
    in_flight_is_409_with_retry_after_then_the_replay, a_waiting_duplicate_gets_the_replay,
    server_errors_and_try_again_give_the_key_back, scopes_never_share_a_key,
    racing_duplicates_run_the_handler_once, transactional_rows_and_response_commit_together);

pg_suite_tests!(any_postgres, support::any_postgres();
    a_retry_gets_the_first_response_byte_for_byte, refusals_are_problems_with_stable_types,
    in_flight_is_409_with_retry_after_then_the_replay, a_waiting_duplicate_gets_the_replay,
    server_errors_and_try_again_give_the_key_back, scopes_never_share_a_key,
    racing_duplicates_run_the_handler_once, transactional_rows_and_response_commit_together);
