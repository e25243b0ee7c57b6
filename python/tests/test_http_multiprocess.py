"""Several server processes, one store: ``uvicorn --workers 3`` (a real subprocess) serves the
payments example (python/examples/http_payments.py), whose ``POST /payments`` inserts a row in
the same store as the keys (``oncely.http.TransactionalEndpoint``). Many clients send keyed
POSTs, every key several times at once, so duplicates race across the processes. Then the rows
are counted: each key applied exactly once, and every duplicate answered with the first response.

On SQLite, and on PostgreSQL given ONCELY_POSTGRES_URL (under CI it must be given).
ONCELY_HTTP_LONG=1 sends more keys."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import oncely
from oncely.http.client import IdempotentTransport

from http_support import free_port, location, postgres_or_skip

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEYS = 150 if os.environ.get("ONCELY_HTTP_LONG") else 40
COPIES = 3
RETRY = {"max_attempts": 30, "backoff": {"kind": "fixed", "delay_ms": 20}, "jitter": "none"}


class Uvicorn:
    """`uvicorn http_payments:app --workers 3` over the store at `store`, in its own session."""

    def __init__(self, store: str, workers: int = 3) -> None:
        self.port = free_port()
        env = dict(os.environ, ONCELY_PAYMENTS_STORE=store)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "http_payments:app", "--app-dir", str(EXAMPLES),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--log-level", "warning", "--no-access-log"],
            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Uvicorn":
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited: {self.proc.stdout.read().decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/payments", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc.stdout.close()


def run_payments(store: str) -> None:
    with Uvicorn(store) as server:
        transport = IdempotentTransport(retry=RETRY)
        with httpx.Client(base_url=server.url, transport=transport, timeout=10) as client:

            def pay(i):
                key = f"pay-{i}"
                r = client.post("/payments", json={"amount": i, "to": f"payee-{i}"}, headers={"Idempotency-Key": key})
                return key, r

            jobs = [i for i in range(KEYS) for _ in range(COPIES)]
            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(pay, jobs))
    rows = oncely.Store(store).transaction(lambda tx: tx.execute("SELECT key, amount FROM payments"))
    assert sorted(k for k, _ in rows) == sorted(f"pay-{i}" for i in range(KEYS)), "each key applied exactly once"
    by_key = {}
    for key, r in answers:
        assert r.status_code == 201, (key, r.status_code, r.text)
        by_key.setdefault(key, []).append(r)
    for key, rs in by_key.items():
        assert len({r.content for r in rs}) == 1, f"{key}: duplicates answered differently"
        first = [r for r in rs if r.headers.get("idempotent-replayed") is None]
        assert len(first) == 1, f"{key}: {len(first)} first answers"
        assert first[0].headers["location"] == f"/payments/{key}"


def test_three_processes_on_sqlite_apply_each_key_once(tmp_path):
    run_payments(str(tmp_path / "payments.db"))


def test_three_processes_on_postgres_apply_each_key_once(tmp_path):
    postgres_or_skip()
    run_payments(location("postgres", tmp_path, "payments"))
