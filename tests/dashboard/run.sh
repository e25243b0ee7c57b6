#!/usr/bin/env bash
# The dashboard of `oncely serve` in a real browser: headless Chromium from the system (Debian's
# `chromium`, installed with apt when missing), driven by playwright-core (which never downloads
# a browser), with node's test runner. On SQLite, and on PostgreSQL when ONCELY_POSTGRES_URL is
# set (scripts/with-postgres.sh sets it; under CI=true the PostgreSQL run must not skip).
#
#   tests/dashboard/run.sh                      # SQLite
#   scripts/with-postgres.sh tests/dashboard/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "== installing chromium (apt)"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
fi

cargo=${CARGO:-cargo}
(cd "$root" && "$cargo" build -q -p oncely-cli --bin oncely --example dashboard_store)
target=$(cd "$root" && "$cargo" metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
export ONCELY_BIN="$target/debug/oncely"
export ONCELY_STORE_HELPER="$target/debug/examples/dashboard_store"
exec node --test --test-concurrency=1 "${@:-dashboard.test.mjs}"
