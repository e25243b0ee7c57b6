//! The core's layering, checked: the shared records (`src/records`) depend on no facade and no
//! store, and the stores (`src/store`) depend on the records, never on the inbox or outbox
//! facades — so a store can be added or changed without touching the rules, and the other way
//! round.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// Lines of code (not comments) under `dir` that name one of `forbidden` modules.
fn uses_of(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir), &mut files);
    let mut found = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for m in forbidden {
                if code.contains(&format!("crate::{m}::"))
                    || code.contains(&format!("crate::{m}}}"))
                    || code.contains(&format!("crate::{m};"))
                {
                    found.push(format!("{path}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn stores_depend_on_the_records_not_on_the_facades() {
    let found = uses_of("store", &["inbox", "outbox", "worker", "sql::Transaction"]);
    assert!(found.is_empty(), "the stores import a facade:\n{}", found.join("\n"));
}

#[test]
fn the_records_are_a_leaf() {
    let found = uses_of("records", &["inbox", "outbox", "worker", "store", "sql"]);
    assert!(found.is_empty(), "the records import a facade or a store:\n{}", found.join("\n"));
}
