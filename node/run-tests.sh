#!/usr/bin/env bash
# Builds the oncely Node.js package (debug, `napi build --platform`) once and runs its whole
# `node --test` suite (see Makefile.inc). `npm ci --ignore-scripts`: the package's own install
# script (a release build for `npm install ./node`) is not wanted here.
# Exits non-zero on failure. Extra arguments go to `node --test` (e.g. a test file).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$here"

# ci-style install from the registry (package-lock.json pins @napi-rs/cli).
if [ -f package-lock.json ]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
else
    npm install --ignore-scripts --no-audit --no-fund --loglevel=error
fi

npx napi build --platform --js native.js --dts index.d.ts --dts-header "$(cat dts-header.d.ts)"

# The committed typings and loader must be what this build generates.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    && ! git -C "$root" diff --quiet -- node/index.d.ts node/native.js; then
    echo "node/index.d.ts or node/native.js differ from what the build generates; commit the new ones:" >&2
    git -C "$root" --no-pager diff --stat -- node/index.d.ts node/native.js >&2
    exit 1
fi

if [ "$#" -gt 0 ]; then
    exec node --test "$@"
fi
exec node --test test/
