"""Hostile handlers: exceptions whose `str()` fails, KeyboardInterrupt/SystemExit from handlers,
and non-callables. A claim is always settled; a handler's exception text is `str(exc)` when that
works and is not empty, else the exception's type name (in `process`, `claim` and the worker)."""

import asyncio

import pytest

import oncely
from oncely import Inbox, Outbox, Worker

POLICY = {"max_attempts": 5, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class EmptyStr(Exception):
    def __str__(self):
        return ""


class BadPermanent(oncely.Permanent):
    def __str__(self):
        raise ValueError("nope")


# --- (a) the text of an exception whose str() fails -----------------------------------------

@pytest.mark.parametrize("exc", [BadStr, EmptyStr])
def test_claim_is_settled_when_str_of_the_exception_fails(exc):
    inbox = Inbox("memory", "c")
    with pytest.raises(exc):
        with inbox.claim("a") as claim:
            assert claim.claimed
            raise exc()
    assert inbox.begin("a").outcome == "claimed", "the claim was released"


def test_claim_stores_the_type_name_of_a_permanent_failure_without_text():
    inbox = Inbox("memory", "c", cache_policy="success_and_failure")
    with pytest.raises(BadPermanent):
        with inbox.claim("p"):
            raise BadPermanent()
    with pytest.raises(oncely.ReplayedFailure) as e:
        inbox.process("p", None, lambda: b"")
    assert e.value.reason == b"BadPermanent"


def test_process_stores_the_type_name_when_str_fails():
    inbox = Inbox("memory", "s", cache_policy="success_and_failure")

    def handler():
        raise BadPermanent()

    with pytest.raises(BadPermanent):
        inbox.process("x", None, handler)
    with pytest.raises(oncely.ReplayedFailure) as e:
        inbox.process("x", None, handler)
    assert e.value.reason == b"BadPermanent"


@pytest.mark.parametrize("exc", [BadStr, EmptyStr])
def test_worker_error_is_the_type_name_when_str_fails(exc):
    outbox = Outbox("memory", "q", retry=POLICY)
    outbox.enqueue(b"", id="m")

    def handler(m):
        raise exc()

    Worker(outbox, concurrency=1).run_until_idle(handler)
    assert outbox.get("m").last_error == exc.__name__


def test_ticket_settle_with_a_result_that_is_not_bytes_releases():
    inbox = Inbox("memory", "s")
    t = inbox.begin("r").ticket
    with pytest.raises(TypeError, match="must be bytes"):
        t.settle(result="text")
    assert inbox.begin("r").outcome == "claimed"


def test_ticket_settle_permanent_takes_a_bool_or_an_int_by_its_truth():
    inbox = Inbox("memory", "s", cache_policy="success_and_failure")
    inbox.begin("a").ticket.settle(error="boom", permanent=2**63)  # an int: true
    assert inbox.begin("a").outcome == "duplicate"  # the permanent failure is stored
    inbox.begin("b").ticket.settle(error="boom", permanent=0)  # false: retryable, released
    assert inbox.begin("b").outcome == "claimed"
    t = inbox.begin("c").ticket
    with pytest.raises(TypeError, match="`permanent` must be bool, not str"):
        t.settle(error="boom", permanent="yes")
    assert inbox.begin("c").outcome == "in_progress"  # refused before anything was settled


# --- (b) KeyboardInterrupt in an async handler: released before it propagates ----------------

def test_keyboard_interrupt_in_an_async_handler_releases_first():
    inbox = Inbox("memory", "s")

    async def handler():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    for i in range(5):
        async def main():
            await inbox.process_async(f"k{i}", None, handler)

        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
        rec = inbox.get(f"k{i}")
        assert rec is None or rec.state != "in_progress", (i, rec)
        assert inbox.begin(f"k{i}").outcome == "claimed"


# --- (c) a worker handler raising KeyboardInterrupt or SystemExit stops the worker -------------

def queued():
    # A retry waits 1 s: the retried message is not leased again before the run has stopped.
    slow = dict(POLICY, backoff={"kind": "fixed", "delay_ms": 1000})
    outbox = Outbox("memory", "q", retry=slow)
    outbox.enqueue_many([{"payload": b"", "id": f"m{i}"} for i in range(5)])
    return outbox


def check_stopped(outbox, worker, calls, exc):
    assert len(calls) == 1, calls
    rec = outbox.get(calls[0])
    assert rec.state == "ready" and rec.attempts == 1, rec     # settled as a retry
    assert rec.last_error == exc.__name__
    assert worker.stopped


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("how", ["run_until_idle", "run"])
def test_worker_stops_and_reraises_sync(exc, how):
    outbox = queued()
    worker = Worker(outbox, concurrency=1, poll_interval=0.005, shutdown_timeout=5)
    calls = []

    def handler(m):
        calls.append(m.id)
        raise exc()

    with pytest.raises(exc):
        getattr(worker, how)(handler)
    check_stopped(outbox, worker, calls, exc)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("how", ["run_until_idle_async", "run_async"])
def test_worker_stops_and_reraises_async(exc, how):
    outbox = queued()
    worker = Worker(outbox, concurrency=1, poll_interval=0.005, shutdown_timeout=5)
    calls = []

    async def handler(m):
        calls.append(m.id)
        await asyncio.sleep(0)
        raise exc()

    async def main():
        await getattr(worker, how)(handler)

    with pytest.raises(exc):
        asyncio.run(main())
    check_stopped(outbox, worker, calls, exc)


# --- (d) non-callables are refused up front ----------------------------------------------------

def test_on_event_refuses_a_non_callable():
    outbox = Outbox("memory", "q")
    with pytest.raises(TypeError, match="must be callable, not int"):
        outbox.on_event(42)
    with pytest.raises(TypeError, match="must be callable"):
        Worker(outbox).run_until_idle(42)
    seen = []
    outbox.on_event(seen.append)
    outbox.enqueue(b"", id="e")
    assert [e.kind for e in seen] == ["enqueued"]


def test_a_slow_sync_process_handler_keeps_its_claim(tmp_path):
    # The claim is kept alive while a synchronous handler blocks its thread, so a duplicate
    # arriving after several leases' time is still "in progress", never a second run.
    import threading
    import time

    inbox = Inbox(oncely.Store(str(tmp_path / "s.db")), "s", lease=0.15)
    runs = []
    first = {}

    def slow():
        runs.append("first")
        time.sleep(0.7)
        return b"first"

    t = threading.Thread(target=lambda: first.setdefault("r", inbox.process("m", None, slow)))
    t.start()
    try:
        for _ in range(6):
            time.sleep(0.1)
            with pytest.raises(oncely.InProgress):
                inbox.process("m", None, lambda: runs.append("second") or b"second")
    finally:
        t.join()
    assert runs == ["first"]
    assert first["r"] == b"first" or getattr(first["r"], "result", None) == b"first"
