"""The calls added to close the API parity table's Python gaps (tests/parity/README.md): each one
only calls the core, so it behaves as its sync twin or as the other languages' call."""

import hashlib

import pytest

import oncely


@pytest.fixture
def outbox():
    return oncely.Outbox("memory", "parity")


async def test_outbox_async_twins(outbox):
    assert await outbox.enqueue_many_async([b"a", {"payload": b"b", "id": "m-b"}, {"payload": b"c", "id": "m-c"}]) == [
        "queued",
        "queued",
        "queued",
    ]
    assert await outbox.enqueue_many_async([{"payload": b"b", "id": "m-b"}]) == ["already_queued"]
    stats = await outbox.stats_async()
    assert stats.keys() == outbox.stats().keys()
    assert stats["ready"] == 3
    assert await outbox.cancel_async("m-c") == "cancelled"
    assert await outbox.cancel_async("m-c") == "not_found"
    rec = await outbox.get_async("m-b")
    assert rec is not None and rec.payload == b"b" and rec.state == "ready"
    assert await outbox.get_async("nope") is None
    [d, d2] = outbox.lease(2)
    other = d2 if d.id == "m-b" else d
    mb = d if d.id == "m-b" else d2
    assert (await outbox.settle_async(mb.id, mb.token, "fail", reason="bad")).kind == "gave_up"
    assert (await outbox.settle_async(other.id, other.token, "ack")).kind == "acked"
    dead = await outbox.dead_letters_async()
    assert [r.id for r in dead] == ["m-b"] and "bad" in dead[0].reason
    assert await outbox.replay_async("m-b") is True
    assert await outbox.replay_async("m-b") is False
    [again] = outbox.lease(1)
    again.fail("bad again")
    assert await outbox.purge_dead_async(["m-b"]) == 1
    assert await outbox.purge_dead_async() == 0


async def test_inbox_many_async_twins():
    inbox = oncely.Inbox("memory", "parity")
    begun = await inbox.begin_many_async(["a", {"id": "b", "payload": b"x"}])
    assert [b.outcome for b in begun] == ["claimed", "claimed"]
    done = await inbox.finish_many_async([(begun[0].ticket, b"ra"), (begun[1].ticket, b"rb")])
    assert done == [None, None]
    again = await inbox.begin_many_async(["a"])
    assert again[0].outcome == "duplicate" and again[0].result == b"ra"


def test_delivery_available_at_ms_and_message_fields():
    clock = oncely.ManualClock(1_000_000)
    outbox = oncely.Outbox("memory", "q", clock=clock)
    outbox.enqueue(b"p", id="m1", delay=2.0)
    clock.advance(3)
    [d] = outbox.lease()
    assert d.available_at_ms == 1_002_000 and d.created_at_ms == 1_000_000


def test_fingerprint_is_the_inbox_fingerprint():
    inbox = oncely.Inbox("memory", "fp")
    inbox.process("x", b"payload", lambda: b"r")
    assert oncely.fingerprint(b"payload") == inbox.get("x").fingerprint
    assert oncely.fingerprint(b"payload") == hashlib.sha256(b"payload").hexdigest()[:32]


def test_store_transaction_commits_or_rolls_back(tmp_path):
    store = oncely.Store(str(tmp_path / "tx.db"))
    outbox = oncely.Outbox(store, "q")

    def setup(tx):
        assert tx.open
        tx.execute("CREATE TABLE t (v INTEGER)")
        tx.execute("INSERT INTO t VALUES (?)", [1])
        assert tx.enqueue_many(outbox, [b"a", {"payload": b"b", "id": "b"}]) == ["queued", "queued"]
        return "done"

    assert store.transaction(setup) == "done"
    assert outbox.get("b") is not None
    kept = []

    def boom(tx):
        kept.append(tx)
        tx.execute("INSERT INTO t VALUES (?)", [2])
        tx.enqueue(outbox, b"c", id="c")
        raise KeyError("nope")

    with pytest.raises(KeyError):
        store.transaction(boom)
    assert not kept[0].open
    with pytest.raises(oncely.Closed):
        kept[0].execute("SELECT 1")
    assert outbox.get("c") is None
    assert store.transaction(lambda tx: tx.execute("SELECT v FROM t")) == [(1,)]


def test_store_transaction_refused_on_memory():
    with pytest.raises(oncely.InvalidArgument):
        oncely.Store("memory").transaction(lambda tx: None)
