//! Every scenario file obeys `scenario.schema.json`: the one definition of the scenario format.
//! The other languages' runners do not check the format again; they only map steps to calls.
//! And the schema refuses what a runner could misread: an unknown op or field, a missing field,
//! a value of the wrong type.

use std::path::Path;

use serde_json::{Value, json};

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenario.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("{}: not a valid schema: {e}", path.display()))
}

#[test]
fn every_scenario_obeys_the_schema() {
    let validator = schema();
    let scenarios = oncely_conformance::list_scenarios(&oncely_conformance::scenarios_dir()).unwrap();
    assert!(scenarios.len() > 100, "only {} scenarios found", scenarios.len());
    let mut bad = Vec::new();
    for (name, path) in &scenarios {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for e in validator.iter_errors(&doc) {
            bad.push(format!("{name}: {} at {}", e, e.instance_path()));
        }
    }
    assert!(bad.is_empty(), "scenarios that break the schema:\n{}", bad.join("\n"));
}

#[test]
fn the_schema_refuses_what_a_runner_could_misread() {
    let validator = schema();
    let ok = json!({"description": "d", "outbox": {"lease_ms": 5}, "steps": [
        {"op": "enqueue", "id": "a", "expect": {"enqueued": "queued"}},
        {"op": "work", "handler": {"does": "raise_retry", "message": "m", "after_ms": 5}, "expect": {}}
    ]});
    assert!(
        validator.is_valid(&ok),
        "{:?}",
        validator.iter_errors(&ok).map(|e| e.to_string()).collect::<Vec<_>>()
    );
    let broken = [
        ("an unknown op", json!({"op": "enqueu", "id": "a", "expect": {}})),
        ("an unknown field", json!({"op": "enqueue", "id": "a", "delay": 5, "expect": {}})),
        ("a missing field", json!({"op": "enqueue", "expect": {}})),
        ("a missing expect", json!({"op": "enqueue", "id": "a"})),
        ("a wrong type", json!({"op": "advance", "ms": "5"})),
        ("a mode that is not text", json!({"op": "begin", "id": "a", "mode": 2, "expect": {}})),
        ("an unknown handler kind", json!({"op": "work", "handler": {"does": "explode"}, "expect": {}})),
        (
            "a handler field of another kind",
            json!({"op": "work", "handler": {"does": "return_true", "message": "m"}, "expect": {}}),
        ),
        (
            "a misspelt message field",
            json!({"op": "enqueue_many", "messages": [{"id": "a", "dealy_ms": 1}], "expect": {}}),
        ),
    ];
    for (what, step) in broken {
        let doc = json!({"description": "d", "steps": [step]});
        assert!(!validator.is_valid(&doc), "the schema accepted {what}: {doc}");
    }
    let bad_config = json!({"description": "d", "outbox": {"lease": 5}, "steps": []});
    assert!(!validator.is_valid(&bad_config), "the schema accepted an unknown outbox field");
}
