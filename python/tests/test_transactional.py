"""Inbox.process_transactional: the handler's writes, the processed mark and the result commit
together, or not at all — on SQLite and (given ONCELY_POSTGRES_URL) PostgreSQL. The SQL is
written so both run it (`$1` placeholders, types both know)."""

import itertools
import os

import pytest

import oncely


def count(inbox, n=[0]):
    """The effects table's rows, read through a transaction of the same store."""
    n[0] += 1
    got = inbox.process_transactional(f"read-{n[0]}", None, lambda tx: str(
        tx.execute("SELECT COUNT(*) FROM effects")[0][0]).encode())
    return int(got.result)


_schemas = itertools.count()
STORES = ["sqlite", "postgres"] if os.environ.get("ONCELY_POSTGRES_URL") else ["sqlite"]


def location(kind, tmp_path, name):
    """A fresh store: an SQLite file, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        return str(tmp_path / f"{name}.db")
    schema = f"py_tx_{os.getpid()}_{next(_schemas)}"
    return oncely.Store.postgres_schema_url(os.environ["ONCELY_POSTGRES_URL"], schema)


@pytest.fixture(params=STORES)
def kind(request):
    return request.param


@pytest.fixture
def inbox(kind, tmp_path):
    i = oncely.Inbox(location(kind, tmp_path, "rx"), "pay")
    i.process_transactional("setup", None, lambda tx: tx.execute(
        "CREATE TABLE effects (id TEXT PRIMARY KEY, amount INTEGER, note TEXT, raw BYTEA, f DOUBLE PRECISION)") or b"")
    return i


def test_effect_commits_once_with_the_mark(inbox):
    def charge(tx):
        assert isinstance(tx, oncely.Transaction)
        tx.execute("INSERT INTO effects VALUES ($1, $2, $3, $4, $5)", ("p1", 10, "ten", b"\x00\x01", 1.5))
        (row,) = tx.execute("SELECT id, amount, note, raw, f, NULL FROM effects WHERE id = $1", ["p1"])
        assert row == ("p1", 10, "ten", b"\x00\x01", 1.5, None)
        return b"charged"

    first = inbox.process_transactional("p1", b"10 EUR", charge)
    again = inbox.process_transactional("p1", b"10 EUR", charge)
    assert (first.result, first.replayed) == (b"charged", False)
    assert (again.result, again.replayed) == (b"charged", True)
    assert count(inbox) == 1
    with pytest.raises(oncely.Conflict):
        inbox.process_transactional("p1", b"99 EUR", charge)


def test_exception_rolls_back_the_effect_and_the_claim(inbox):
    def fails(tx):
        tx.execute("INSERT INTO effects (id) VALUES ('p2')")
        raise RuntimeError("network down")

    with pytest.raises(RuntimeError, match="network down"):
        inbox.process_transactional("p2", None, fails)
    assert count(inbox) == 0
    ok = inbox.process_transactional("p2", None, lambda tx: tx.execute("INSERT INTO effects (id) VALUES ('p2')") or b"ok")
    assert ok.result == b"ok" and count(inbox) == 1


def test_sql_errors_and_misuse(inbox):
    with pytest.raises(oncely.Storage):
        inbox.process_transactional("bad", None, lambda tx: tx.execute("INSERT INTO nope VALUES (1)") or b"")
    with pytest.raises(oncely.OncelyError):
        inbox.process_transactional("commit", None, lambda tx: tx.execute("COMMIT") or b"")
    with pytest.raises(TypeError):
        inbox.process_transactional("param", None, lambda tx: tx.execute("SELECT $1", [object()]) or b"")
    kept = []
    inbox.process_transactional("keep", None, lambda tx: kept.append(tx) or b"")
    with pytest.raises(oncely.Closed):
        kept[0].execute("SELECT 1")
    assert count(inbox) == 0


def test_needs_sqlite():
    with pytest.raises(oncely.InvalidArgument):
        oncely.Inbox("memory", "s").process_transactional("x", None, lambda tx: b"")


def test_transactional_outbox_inside_the_inbox(kind, tmp_path):
    svc = location(kind, tmp_path, "svc")
    store = oncely.Store(svc)
    inbox = oncely.Inbox(store, "orders")
    outbox = oncely.Outbox(svc, "emails")     # same store, opened apart
    events = []
    outbox.on_event(lambda e: events.append((e.kind, e.id)))

    def handle(tx):
        assert tx.enqueue(outbox, b"receipt", id="mail-1", headers={"to": "a@b"}) == "queued"
        assert tx.enqueue(outbox, b"receipt", id="mail-1") == "already_queued"
        return b"ok"

    inbox.process_transactional("order-1", None, handle)
    inbox.process_transactional("order-1", None, handle)            # duplicate: not run again
    (d,) = outbox.lease(10)
    assert (d.id, d.payload, d.headers) == ("mail-1", b"receipt", {"to": "a@b"})
    assert ("enqueued", "mail-1") in events

    def fails(tx):
        tx.enqueue(outbox, b"never", id="mail-2")
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        inbox.process_transactional("order-2", None, fails)
    assert outbox.get("mail-2") is None

    other = oncely.Outbox(str(tmp_path / "other.db"), "emails")
    with pytest.raises(oncely.InvalidArgument):
        inbox.process_transactional("order-3", None, lambda tx: tx.enqueue(other, b"x") and b"")
    with pytest.raises(oncely.InvalidArgument):
        inbox.process_transactional("order-4", None, lambda tx: tx.enqueue(oncely.Outbox("memory", "m"), b"x") and b"")
