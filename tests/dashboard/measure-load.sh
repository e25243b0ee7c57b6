#!/usr/bin/env bash
# The dashboard's load time on a store of N messages (default 1,000,000) in SQLite, filled in
# batches through the core's enqueue_many: tests/dashboard/measure-load.sh [N] [LOADS].
# Not part of `make test`. The store is kept in /tmp/oncely-dashboard-N.db for reuse.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-1000000}
cd "$here"
[ -d node_modules/playwright-core ] || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
(cd "$root" && cargo build -q ${RELEASE:+--release} -p oncely-cli --bin oncely --example dashboard_store)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
profile=${RELEASE:+release}
export ONCELY_BIN="$target/${profile:-debug}/oncely"
export ONCELY_STORE_HELPER="$target/${profile:-debug}/examples/dashboard_store"
db=/tmp/oncely-dashboard-$n.db
if [ ! -s "$db" ]; then
    "$ONCELY_STORE_HELPER" big "$db" "$n"
fi
node measure-load.mjs "$db" "${2:-5}"
