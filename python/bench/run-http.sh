#!/usr/bin/env bash
# The HTTP peer benchmark (docs/benchmarks.md, "Idempotency-Key middleware"): builds a RELEASE
# wheel into its own venv (target/py-http-bench-venv), installs the peers from PyPI
# (fastapi-idempotency-key with its SQLite backend, asgi-idempotency-header with Redis and
# memory backends), uvicorn, and with apt wrk and redis-server when missing; starts Redis on a
# free loopback port (stopped on exit) and runs http_peers.py. Extra arguments go to the script
# (e.g. `--seconds 2 --repeat 1`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="$(cd "$here/.." && pwd)"
root="$(cd "$pkg/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="$root/target/py-http-bench-venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import maturin, uvicorn, httptools, uvloop, starlette, fastapi, redis, fastapi_idempotency_key, idempotency_header_middleware, aiosqlite' 2>/dev/null; then
    # asgi-idempotency-header's Redis backend imports fastapi's JSONResponse: hence fastapi.
    "$venv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.16,<2' uvicorn httptools uvloop \
        starlette fastapi redis 'fastapi-idempotency-key[sqlite]==0.1.1' 'asgi-idempotency-header==0.2.0'
fi
for tool in wrk redis-server; do
    if ! command -v "$tool" >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server >/dev/null
    fi
done

echo "== building the release wheel" >&2
wheels="$CARGO_TARGET_DIR/py-http-bench-wheels"
rm -rf "$wheels"
(cd "$pkg" && "$venv/bin/maturin" build --release --quiet --manifest-path "$pkg/Cargo.toml" \
    --interpreter "$venv/bin/python" --out "$wheels")
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/oncely-*.whl

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

"$venv/bin/python" "$here/http_peers.py" --redis-port "$port" "$@"
