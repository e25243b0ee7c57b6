#!/usr/bin/env bash
# The Node peer benchmark (docs/benchmarks.md, "Node"): builds the RELEASE native module
# (`cargo build --release -p oncely-node`, loaded through NAPI_RS_NATIVE_LIBRARY_PATH so the
# debug module of the tests is left alone), installs the peers of node/bench/package.json
# (BullMQ, better-sqlite3 12), installs redis-server with apt if it is missing, starts it on
# 127.0.0.1:6399 without persistence (stopped on exit), and runs node/bench/run.js, which prints
# one table. Extra arguments go to run.js (e.g. `--jobs 50000 --concurrency 16 --seconds 2`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
port="${REDIS_PORT:-6399}"

echo "== building the release module" >&2
(cd "$root" && cargo build --release -q -p oncely-node)
work="$(mktemp -d)"
cp "$CARGO_TARGET_DIR/release/liboncely_node.so" "$work/oncely-release.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$work/oncely-release.node"

echo "== installing the peers (node/bench/package.json)" >&2
# better-sqlite3 compiles from source when no prebuilt binary can be fetched: use the local
# Node headers (/usr/include/node) rather than downloading them.
if [ -f /usr/include/node/node_api.h ]; then
    export npm_config_nodedir=/usr
fi
(cd "$here" && npm install --no-audit --no-fund --loglevel=error)

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
stop() {
    for name in redis redis-aof; do
        if [ -s "$work/$name.pid" ]; then
            local pid
            pid="$(cat "$work/$name.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
    rm -rf "$work"
}
trap stop EXIT
# Two servers: one without persistence (BullMQ's fastest), and one with the append-only file
# synced every second (`appendfsync everysec`, Redis's recommended durable setting), so that
# BullMQ is also measured at a durability closer to SQLite's.
aof_port=$((port + 1))
mkdir -p "$work/aof"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$work/redis.pid" --dir "$work" --logfile "$work/redis.log"
redis-server --port "$aof_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --daemonize yes --pidfile "$work/redis-aof.pid" --dir "$work/aof" --logfile "$work/redis-aof.log"
for p in "$port" "$aof_port"; do
    for _ in $(seq 50); do
        if redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
done

echo "== peer benchmark" >&2
node "$here/run.js" --redis-port "$port" --redis-aof-port "$aof_port" "$@"
