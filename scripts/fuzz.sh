#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer, nightly Rust) for FUZZ_SECONDS each
# (default 10) and prints the executions per target. A target that crashes leaves its input in
# fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ and commit it: `cargo test`
# replays it from then on (tests/fuzz/tests/replay.rs).
#   scripts/fuzz.sh                   every target, 10 s each, debug build (what make test runs)
#   FUZZ_SECONDS=300 FUZZ_RELEASE=1 scripts/fuzz.sh records     one target, 5 minutes, release
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${FUZZ_SECONDS:-10}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(options scenario store_file records)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly Rust toolchain (rustup toolchain install nightly); libFuzzer needs it" >&2
    exit 1
fi
tools="$root/target/tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "fuzz: installing cargo-fuzz into target/tools (once)"
    cargo install -q --locked --root "$tools" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"
profile=(--dev)
[ -n "${FUZZ_RELEASE:-}" ] && profile=()
echo "fuzz: building the targets (${profile[*]:-release})"
cargo +nightly fuzz build --fuzz-dir fuzz "${profile[@]}"

status=0
started=$(date +%s)
printf '%-12s %12s %8s  %s\n' target executions seconds result
for t in "${targets[@]}"; do
    work="fuzz/corpus-run/$t"
    mkdir -p "$work"
    log=$(mktemp)
    rc=0
    cargo +nightly fuzz run --fuzz-dir fuzz "${profile[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        printf '%-12s %12s %8s  %s\n' "$t" "${runs:-?}" "$seconds" "no crash"
    else
        printf '%-12s %12s %8s  %s\n' "$t" "${runs:-?}" "$seconds" "FAILED (exit $rc)"
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -10 >&2
        status=1
    fi
    rm -f "$log"
done
echo "fuzz: ${#targets[@]} targets in $(( $(date +%s) - started )) s"
exit "$status"
