import threading
import time

import pytest

import oncely
from oncely import ManualClock, Outbox, Store

RETRY = {"max_attempts": 2, "backoff": {"kind": "fixed", "delay_ms": 1000}, "jitter": "none"}


def test_enqueue_lease_ack_and_events():
    clock = ManualClock()
    o = Outbox("memory", "q", clock=clock)
    events = []
    o.on_event(events.append)
    assert o.enqueue(b"hello", id="m1", key="k", headers={"h": "v"}) == "queued"
    assert o.enqueue(b"hello", id="m1") == "already_queued"
    (d,) = o.lease(10)
    assert (d.id, d.idempotency_key, d.payload, d.key, d.headers, d.attempt) == ("m1", "m1", b"hello", "k", {"h": "v"}, 1)
    assert d.token > 0 and d.last_error is None
    assert d.created_at_ms == clock.now_ms()
    s = d.ack()
    assert s.kind == "acked" and s.at_ms is None
    assert [e.kind for e in events] == ["enqueued", "leased", "acked"]
    assert events[1].attempt == 1 and events[0].id == "m1"
    st = o.stats()
    assert st["enqueued"] == 1 and st["delivered"] == 1 and st["ready"] == 0


def test_retry_dead_letter_replay_purge():
    clock = ManualClock()
    o = Outbox("memory", "q", retry=RETRY, clock=clock)
    o.enqueue(b"", id="m")
    (d,) = o.lease(1)
    s = d.retry("e1")
    assert s.kind == "retrying" and s.at_ms == clock.now_ms() + 1000
    assert o.lease(1) == []
    clock.advance(1)
    (d,) = o.lease(1)
    assert d.attempt == 2 and d.last_error == "e1"
    assert d.retry("e2").kind == "gave_up"
    (dead,) = o.dead_letters()
    assert dead.id == "m" and dead.state == "dead" and dead.reason == "gave up after 2 attempts: e2"
    assert o.get("m").state == "dead"
    assert o.replay("m") is True
    assert o.get("m").attempts == 0
    (d,) = o.lease(1)
    assert d.fail("bad").kind == "gave_up"
    assert o.purge_dead() == 1
    assert o.get("m") is None


def test_snooze_extend_release_cancel():
    clock = ManualClock()
    o = Outbox("memory", "q", lease=10, clock=clock)
    o.enqueue_many([{"payload": b"a", "id": "a"}, {"payload": b"b", "id": "b", "delay": 5}, b"c"])
    ds = o.lease(5)
    assert sorted(d.id for d in ds if d.id in ("a", "b")) == ["a"]
    a = next(d for d in ds if d.id == "a")
    assert a.extend(20).at_ms == clock.now_ms() + 20_000
    assert a.snooze(3).kind == "returned"
    assert o.cancel("b") == "cancelled"
    assert o.cancel("nope") == "not_found"
    (c,) = [d for d in ds if d.id not in ("a", "b")]
    assert c.release().kind == "returned"
    with pytest.raises(oncely.LeaseLost):
        c.ack()


def test_settle_by_token_after_restart(tmp_path):
    path = str(tmp_path / "o.db")
    clock = ManualClock()
    o = Outbox(path, "q", lease=1, clock=clock)
    o.enqueue(b"x", id="m")
    (d,) = o.lease(1)
    token = d.token
    del d, o
    clock.advance(2)
    o = Outbox(path, "q", lease=1, clock=clock)
    (d2,) = o.lease(1)
    assert d2.token > token
    with pytest.raises(oncely.LeaseLost):
        o.settle("m", token, "ack")
    assert o.settle("m", d2.token, "ack").kind == "acked"
    with pytest.raises(oncely.InvalidArgument):
        o.settle("m", d2.token, "teleport")


def test_shared_store_between_inbox_and_outbox():
    store = Store("memory")
    o = Outbox(store, "q")
    inbox = oncely.Inbox(store, "s")
    o.enqueue(b"p", id="m")
    (d,) = o.lease(1)
    r = inbox.process(d.idempotency_key, d.payload, lambda: b"done")
    assert r.result == b"done"
    d.ack()
    assert store.location == "memory"


def test_retry_policy_helpers():
    p = oncely.RetryPolicy(RETRY)
    assert p.schedule_ms(0, 3) == [1000, 1000, 1000]
    assert p.decide_ms(seed=0, attempts=1, first_attempt_at_ms=0, now_ms=0) == ("retry_in_ms", 1000)
    assert p.decide_ms(seed=0, attempts=2, first_attempt_at_ms=0, now_ms=0) == ("give_up", "max_attempts")


def test_sync_calls_release_the_gil():
    """While one thread waits inside a sync call (process waiting for a concurrent first
    delivery), other Python threads keep running: the GIL is released."""
    inbox = oncely.Inbox("memory", "s")
    held = inbox.begin("x")  # someone else holds "x"
    assert held.claimed
    errors = []

    def waiter():
        try:
            inbox.process("x", None, lambda: b"", wait=0.4)
        except oncely.Timeout as e:
            errors.append(e)

    t = threading.Thread(target=waiter)
    spins = 0
    t.start()
    time.sleep(0.05)  # the waiter is inside the call now
    start = time.monotonic()
    while t.is_alive() and time.monotonic() - start < 0.2:
        spins += 1
    t.join(5)
    assert len(errors) == 1
    assert spins > 10_000, spins


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_event_callback_exceptions_do_not_break_the_outbox():
    o = Outbox("memory", "q")
    o.on_event(lambda e: 1 / 0)
    assert o.enqueue(b"", id="m") == "queued"
