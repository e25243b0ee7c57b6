"""`oncely serve`'s /metrics, read by an independent parser: the official Prometheus Python
client's (``prometheus_client.parser``), which implements the text format's escaping and
types. The store is filled through the Python binding; every sample must equal ``stats()``."""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import oncely

ROOT = Path(__file__).resolve().parents[2]
parser = pytest.importorskip("prometheus_client.parser")


@pytest.fixture(scope="module")
def oncely_bin():
    """The `oncely` binary (built here when the Rust suite has not built it already)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(["cargo", "build", "-q", "-p", "oncely-cli"], cwd=ROOT, check=True)
    path = target / "debug" / "oncely"
    assert path.exists(), path
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_parse_and_equal_stats(tmp_path, oncely_bin):
    db = tmp_path / "store.db"
    store = oncely.Store(str(db))
    tricky = 'payments "eu"\\west\nline'
    payments = oncely.Outbox(store, tricky)
    for i in range(4):
        payments.enqueue(b"p", id=f"p{i}")
    deliveries = payments.lease(3)
    deliveries[0].ack()
    deliveries[1].fail("card declined")
    inbox = oncely.Inbox(store, "orders")
    inbox.process("o-1", b"x", lambda: b"done")
    expected = payments.stats()
    del payments, deliveries, inbox, store

    port = _free_port()
    proc = subprocess.Popen(
        [str(oncely_bin), "serve", "--db", str(db), "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "ONCELY_SERVE_TOKEN"},
    )
    try:
        assert proc.stdout.readline().decode().startswith("listening on http://")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)

    samples = {}
    types = {}
    for family in parser.text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    for state in ("ready", "scheduled", "leased", "dead"):
        assert value("oncely_queue_messages", queue=tricky, state=state) == expected[state], state
    for name in ("enqueued", "delivered", "retried", "dead_lettered", "dropped"):
        assert value(f"oncely_messages_{name}_total", queue=tricky) == expected[name], name
    assert types["oncely_queue_messages"] == "gauge"
    assert types["oncely_messages_enqueued"] == "counter"  # the parser names a counter family without _total
    assert any(n == "oncely_inbox_records" and dict(l).get("scope") == "orders" for n, l in samples)
