//! The README's examples are cut from files that the tests run: this keeps them in step.

fn region<'a>(text: &'a str, name: &str) -> &'a str {
    let start = format!("// ANCHOR: {name}\n");
    let end = format!("// ANCHOR_END: {name}");
    let from = text.find(&start).expect("start anchor") + start.len();
    let to = text[from..].find(&end).expect("end anchor") + from;
    &text[from..to]
}

fn dedent(block: &str) -> String {
    let indent = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .lines()
        .map(|l| if l.len() >= indent { &l[indent..] } else { l.trim() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_readme_has(example: &str, anchor: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let source = std::fs::read_to_string(format!("{root}/crates/oncely/examples/{example}")).unwrap();
    let snippet = dedent(region(&source, anchor));
    assert!(
        readme.contains(&format!("```rust\n{}\n```", snippet.trim_end())),
        "README.md's `{anchor}` example differs from examples/{example}; paste this:\n{snippet}"
    );
}

#[test]
fn readme_inbox_quickstart_is_the_tested_example() {
    assert_readme_has("quickstart.rs", "quickstart");
}

#[test]
fn readme_outbox_example_is_the_tested_example() {
    assert_readme_has("outbox_quickstart.rs", "outbox");
}
