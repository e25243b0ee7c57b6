#!/usr/bin/env bash
# The Python peer benchmark (docs/benchmarks.md): builds a RELEASE wheel of the package into its
# own venv, target/py-bench-venv (never the test venv target/py-venv), installs the peers
# (aws-lambda-powertools with Redis, redis-py), installs redis-server with apt if it is missing,
# starts it on 127.0.0.1 on a free port (stopped on exit), measures the Rust memory cell of
# `cargo bench -p oncely --bench inbox` for the binding's overhead, then runs
# python/bench/peer_benchmark.py. Extra arguments go to the script (e.g. `--seconds 3`).
# BENCH_SKIP_RUST=1 skips the Rust cell. Takes about a minute once the wheel is built.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="$(cd "$here/.." && pwd)"
root="$(cd "$pkg/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="$root/target/py-bench-venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import maturin, redis, boto3, aws_lambda_powertools' 2>/dev/null; then
    # The idempotency utility imports boto3 even when it persists to Redis: hence `aws-sdk`.
    "$venv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.16,<2' \
        'aws-lambda-powertools[redis,aws-sdk]' redis
fi

echo "== building the release wheel" >&2
wheels="$CARGO_TARGET_DIR/py-bench-wheels"
rm -rf "$wheels"
(cd "$pkg" && "$venv/bin/maturin" build --release --quiet --manifest-path "$pkg/Cargo.toml" \
    --interpreter "$venv/bin/python" --out "$wheels")
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/oncely-*.whl

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

work="$(mktemp -d)"
stop_redis() {
    if [ -s "$work/redis.pid" ]; then
        kill "$(cat "$work/redis.pid")" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_redis EXIT
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --pidfile "$work/redis.pid" --dir "$work" --logfile "$work/redis.log"
for _ in $(seq 50); do
    if [ -s "$work/redis.pid" ] && redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done

rust=()
if [ "${BENCH_SKIP_RUST:-0}" != 1 ]; then
    echo "== Rust cell: cargo bench -p oncely --bench inbox (memory begin+finish, concurrency 1)" >&2
    cell="memory begin+finish, concurrency 1"
    ops="$(cd "$root" && cargo bench -q -p oncely --bench inbox -- --only "$cell" | awk -v c="$cell" 'index($0, c) == 1 { print $(NF - 1) }')"
    if [ -n "$ops" ]; then
        rust=(--rust-memory-ops "$ops")
    fi
fi

echo "== peer benchmark" >&2
"$venv/bin/python" "$here/peer_benchmark.py" --redis-port "$port" "${rust[@]}" "$@"
