#!/usr/bin/env bash
# Builds the oncely Python package (debug, abi3 wheel via maturin), installs it into a venv at
# target/py-venv (created once, then reused) and runs the pytest suite. Exits non-zero on failure.
# Extra arguments go to pytest (e.g. `python/run-tests.sh -k conformance -x`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="$root/target/py-venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import maturin, pytest, pytest_asyncio, mypy, hypothesis, starlette, uvicorn, flask, waitress, httpx, requests, prometheus_client' 2>/dev/null; then
    # The HTTP tests (test_http_*.py) serve real apps: Starlette on uvicorn, Flask on waitress.
    # test_serve_metrics.py reads `oncely serve`'s /metrics with the official client's parser.
    "$venv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.16,<2' pytest pytest-asyncio mypy hypothesis \
        'starlette>=0.37' 'uvicorn>=0.29' 'flask>=3' 'waitress>=3' 'httpx>=0.27' 'requests>=2.31' 'prometheus-client>=0.20'
fi

wheels="$CARGO_TARGET_DIR/py-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --quiet --manifest-path "$here/Cargo.toml" --interpreter "$venv/bin/python" \
    --out "$wheels"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/oncely-*.whl

cd "$root"
exec "$venv/bin/python" -m pytest -c "$here/pyproject.toml" --rootdir "$here" -q "$here/tests" "$@"
