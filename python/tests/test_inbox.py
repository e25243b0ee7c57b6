import pytest

import oncely
from oncely import Inbox, ManualClock, Permanent


def make(mode="exactly_once", **kw):
    return Inbox("memory", "tests", mode=mode, clock=ManualClock(), **kw)


def test_begin_finish_duplicate():
    inbox = make()
    r = inbox.begin("m1", b"p")
    assert r.outcome == "claimed" and r.claimed
    assert r.ticket.id == "m1" and r.ticket.token > 0 and r.ticket.mode == "exactly_once"
    r.ticket.finish(b"done")
    d = inbox.begin("m1", b"p")
    assert (d.outcome, d.status, d.result, d.ticket) == ("duplicate", "succeeded", b"done", None)
    assert inbox.begin("m1", b"other").outcome == "conflict"


def test_in_progress_and_lease_expiry():
    clock = ManualClock()
    inbox = Inbox("memory", "s", lease=1.0, clock=clock)
    a = inbox.begin("x").ticket
    r = inbox.begin("x")
    assert r.outcome == "in_progress" and r.lease_until_ms == clock.now_ms() + 1000
    clock.advance(1.0)
    b = inbox.begin("x").ticket
    assert b.token > a.token
    with pytest.raises(oncely.LeaseLost) as e:
        a.finish(b"late")
    assert e.value.code == "lease_lost"
    assert str(e.value) == f"lease on id `x` was lost (fencing token {a.token} is stale)"
    b.finish(b"ok")
    rec = inbox.get("x")
    assert (rec.state, rec.result, rec.token) == ("succeeded", b"ok", b.token)


def test_process_success_and_replay():
    inbox = make()
    calls = []
    def handler():
        calls.append(1)
        return b"r"
    p = inbox.process("id", b"pay", handler)
    assert (p.result, p.replayed) == (b"r", False)
    p = inbox.process("id", b"pay", handler)
    assert (p.result, p.replayed) == (b"r", True)
    assert len(calls) == 1


def test_process_retryable_failure_is_reraised_and_released():
    inbox = make()
    class Boom(Exception):
        pass
    def bad():
        raise Boom("nope")
    with pytest.raises(Boom, match="nope"):
        inbox.process("id", None, bad)
    assert inbox.get("id") is None or inbox.get("id").state != "succeeded"
    assert inbox.process("id", None, lambda: b"ok").result == b"ok"


def test_process_permanent_failure_stored_and_replayed():
    inbox = make(cache_policy="success_and_failure")
    def bad():
        raise Permanent("card declined")
    with pytest.raises(Permanent):
        inbox.process("id", None, bad)
    with pytest.raises(oncely.ReplayedFailure) as e:
        inbox.process("id", None, lambda: b"never")
    assert e.value.reason == b"card declined"


def test_purge_expired():
    clock = ManualClock()
    inbox = Inbox("memory", "s", retention=10, clock=clock)
    inbox.begin("a").ticket.finish(b"")
    clock.advance(10)
    assert inbox.purge_expired() == 1
    assert inbox.get("a") is None


def test_sqlite_file_persists(tmp_path):
    path = str(tmp_path / "inbox.db")
    inbox = Inbox(path, "s", mode="at_most_once")
    r = inbox.begin("a")
    assert r.outcome == "claimed"
    del r, inbox
    inbox = Inbox(path, "s", mode="at_most_once")
    assert inbox.begin("a").outcome == "duplicate"


def test_handler_may_make_sync_oncely_calls():
    """A handler that enqueues a follow-up message (inbox + outbox on one store)."""
    store = oncely.Store("memory")
    inbox = Inbox(store, "s")
    out = oncely.Outbox(store, "q")

    def handler():
        out.enqueue(b"follow-up", id="f1")
        assert inbox.begin("a").outcome == "in_progress"
        return b"ok"

    assert inbox.process("a", None, handler).result == b"ok"
    assert out.stats()["ready"] == 1
