//! The Rust runner of the HTTP scenarios (`tests/conformance/http/`, format in its README and
//! `http.schema.json`): each scenario against the core gate itself, on memory and SQLite —
//! what the Python and Node runners check through real servers. Also checks every file against
//! the schema, and that the schema refuses what a runner could misread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oncely::AnyStore;
use oncely::http::{Admission, HttpClaim, HttpGate, HttpPolicy, HttpRequest, HttpResponse};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("http")
}

fn scenarios() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().ends_with(".schema.json")
        })
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("http.schema.json")).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter().map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned())).collect()
        })
        .unwrap_or_default()
}

fn request(send: &Value) -> HttpRequest {
    let headers = pairs(&send["headers"]);
    let scope = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-tenant")).map(|(_, v)| v.clone());
    HttpRequest {
        method: send["method"].as_str().unwrap().to_owned(),
        path: send["path"].as_str().unwrap().to_owned(),
        query: send["query"].as_str().unwrap_or("").to_owned(),
        headers,
        body: send["body"].as_str().unwrap_or("").as_bytes().to_vec(),
        scope,
    }
}

/// The handler's answer for its `run`th run, or `None` when it raises.
fn handler_answer(handler: &Value, run: usize) -> Option<HttpResponse> {
    let default = json!({"status": 201, "headers": [["content-type", "text/plain"]], "body": "run {run}"});
    let h = if handler.is_null() { &default } else { handler };
    if h.get("raise").is_some() {
        return None;
    }
    let fill = |s: &str| s.replace("{run}", &run.to_string());
    Some(HttpResponse {
        status: h["status"].as_u64().unwrap() as u16,
        headers: pairs(&h["headers"]).into_iter().map(|(n, v)| (n, fill(&v))).collect(),
        body: fill(h["body"].as_str().unwrap_or("")).into_bytes(),
    })
}

/// What a server sends when the handler raised.
fn raised() -> HttpResponse {
    HttpResponse { status: 500, headers: vec![], body: b"Internal Server Error".to_vec() }
}

fn check(expect: &Value, got: &HttpResponse, runs: usize) -> Result<(), String> {
    let mut wrong = Vec::new();
    if got.status as u64 != expect["status"].as_u64().unwrap() {
        wrong.push(format!("status {} (expected {})", got.status, expect["status"]));
    }
    if let Some(headers) = expect["headers"].as_object() {
        for (name, want) in headers {
            let have =
                got.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
            if have != want.as_str() {
                wrong.push(format!("header {name}: {have:?} (expected {want})"));
            }
        }
    }
    let body = String::from_utf8_lossy(&got.body);
    if let Some(want) = expect["body"].as_str() {
        if body != want {
            wrong.push(format!("body {body:?} (expected {want:?})"));
        }
    }
    if let Some(want) = expect["problem"].as_str() {
        let ty = serde_json::from_slice::<Value>(&got.body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned));
        if ty.as_deref() != Some(want) {
            wrong.push(format!("problem {ty:?} (expected {want})"));
        }
    }
    if let Some(want) = expect["runs"].as_u64() {
        if runs as u64 != want {
            wrong.push(format!("runs {runs} (expected {want})"));
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
}

fn run(scenario: &Value, store: AnyStore) -> Result<(), String> {
    let policy_text = scenario.get("policy").map_or("{}".to_owned(), Value::to_string);
    let policy = HttpPolicy::from_json(&policy_text);
    if let Some(want) = scenario.get("policy_error") {
        return match policy {
            Ok(_) => Err("the policy was accepted".into()),
            Err(e)
                if e.code().as_str() == want["code"].as_str().unwrap()
                    && e.to_string().contains(want["message"].as_str().unwrap()) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("error {}: {e}", e.code().as_str())),
        };
    }
    let gate = HttpGate::open(store, policy.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let mut runs = 0;
    let mut held: HashMap<u64, (HttpClaim<AnyStore>, Value, Value)> = HashMap::new();
    for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
        let fail = |e: String| format!("step {i}: {e}");
        if let Some(n) = step.get("release") {
            let (claim, handler, expect) =
                held.remove(&n.as_u64().unwrap()).ok_or_else(|| fail("nothing held".into()))?;
            let got = match handler_answer(&handler, runs) {
                Some(r) => {
                    pollster::block_on(claim.complete(&r)).map_err(|e| fail(e.to_string()))?;
                    r
                }
                None => {
                    pollster::block_on(claim.abandon()).map_err(|e| fail(e.to_string()))?;
                    raised()
                }
            };
            check(&expect, &got, runs).map_err(fail)?;
            continue;
        }
        let req = request(&step["send"]);
        let got = match pollster::block_on(gate.admit(&req)).map_err(|e| fail(e.to_string()))? {
            Admission::Respond(r) => r,
            Admission::Pass => {
                runs += 1;
                handler_answer(&step["handler"], runs).unwrap_or_else(raised)
            }
            Admission::Run(claim) => {
                runs += 1;
                if step["hold"].as_bool() == Some(true) {
                    held.insert(i as u64, (claim, step["handler"].clone(), step["expect"].clone()));
                    continue;
                }
                match handler_answer(&step["handler"], runs) {
                    Some(r) => {
                        pollster::block_on(claim.complete(&r)).map_err(|e| fail(e.to_string()))?;
                        r
                    }
                    None => {
                        pollster::block_on(claim.abandon()).map_err(|e| fail(e.to_string()))?;
                        raised()
                    }
                }
            }
        };
        check(&step["expect"], &got, runs).map_err(fail)?;
    }
    if !held.is_empty() {
        return Err(format!("steps {:?} were held and never released", held.keys().collect::<Vec<_>>()));
    }
    Ok(())
}

#[test]
fn every_http_scenario_passes_on_every_store() {
    let all = scenarios();
    assert!(all.len() >= 20, "only {} HTTP scenarios", all.len());
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, scenario) in &all {
        for backend in ["memory", "sqlite"] {
            let dir = tempfile::tempdir().unwrap();
            let location = match backend {
                "memory" => "memory".to_owned(),
                _ => format!("sqlite:{}", dir.path().join("http.db").display()),
            };
            let store = AnyStore::open(&location, oncely::SqliteConfig::default()).unwrap();
            match run(scenario, store) {
                Ok(()) => {
                    println!("ok   {backend:<6}  http/{name}");
                    passed += 1;
                }
                Err(e) => {
                    println!("FAIL {backend:<6}  http/{name}  {e}");
                    failed.push(format!("{backend} http/{name}: {e}"));
                }
            }
        }
    }
    println!("{passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_http_scenario_obeys_the_schema() {
    let v = validator();
    let mut bad = Vec::new();
    for (name, doc) in scenarios() {
        for e in v.iter_errors(&doc) {
            bad.push(format!("{name}: {e} at {}", e.instance_path()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_http_schema_refuses_what_a_runner_could_misread() {
    let v = validator();
    let ok = json!({"description": "d", "steps": [
        {"send": {"method": "POST", "path": "/"}, "hold": true, "expect": {"status": 201}},
        {"release": 0}
    ]});
    assert!(v.is_valid(&ok));
    for (what, step) in [
        ("an unknown step field", json!({"send": {"method": "POST", "path": "/"}, "expcet": {"status": 1}})),
        ("a missing expect", json!({"send": {"method": "POST", "path": "/"}})),
        (
            "a handler of two kinds",
            json!({"send": {"method": "POST", "path": "/"}, "handler": {"status": 201, "raise": "x"}, "expect": {"status": 201}}),
        ),
        (
            "a header that is not a pair",
            json!({"send": {"method": "POST", "path": "/", "headers": [["a"]]}, "expect": {"status": 201}}),
        ),
        ("a status as text", json!({"send": {"method": "POST", "path": "/"}, "expect": {"status": "201"}})),
    ] {
        let doc = json!({"description": "d", "steps": [step]});
        assert!(!v.is_valid(&doc), "the schema accepted {what}");
    }
}
