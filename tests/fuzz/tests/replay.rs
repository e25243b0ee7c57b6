//! Every committed fuzz input — the corpus seeds (`fuzz/corpus/<target>/`) and every input that
//! once made a target fail (`fuzz/regressions/<target>/`) — run through its target on stable
//! Rust, so a bug that fuzzing found stays fixed.

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_runs_clean() {
    let mut ran = 0;
    for (target, run) in oncely_fuzz::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} holds no seeds");
        for path in seeds.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(path).unwrap();
            run(&data);
            ran += 1;
        }
    }
    println!("replayed {ran} fuzz inputs");
}
