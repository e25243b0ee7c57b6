#!/usr/bin/env bash
# The Node half of the HTTP peer benchmark (docs/benchmarks.md, "Idempotency-Key middleware"):
# builds the RELEASE native module (loaded through NAPI_RS_NATIVE_LIBRARY_PATH, so the tests'
# debug module is left alone), installs node/bench/package.json (Express, express-idempotency),
# installs wrk with apt if it is missing, and runs the shared driver python/bench/http_peers.py
# (standard library only) with `--stack node`. Extra arguments go to the driver.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

echo "== building the release module" >&2
(cd "$root" && cargo build --release -q -p oncely-node)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$CARGO_TARGET_DIR/release/liboncely_node.so" "$work/oncely-release.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$work/oncely-release.node"

echo "== installing the peers (node/bench/package.json)" >&2
if [ -f /usr/include/node/node_api.h ]; then
    export npm_config_nodedir=/usr
fi
(cd "$here" && npm install --no-audit --no-fund --loglevel=error)
if ! command -v wrk >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

python3 "$root/python/bench/http_peers.py" --stack node "$@"
