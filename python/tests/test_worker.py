import asyncio
import threading
import time
from collections import Counter

import pytest

import oncely
from oncely import Outbox, Worker

FAST = {"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}


def drain(worker, outbox, handler, rounds=200):
    total = Counter()
    for _ in range(rounds):
        s = worker.run_until_idle(handler)
        total.update(attempts=s.attempts, succeeded=s.succeeded, failed=s.failed)
        st = outbox.stats()
        if st["ready"] + st["scheduled"] + st["leased"] == 0:
            return total
        time.sleep(0.005)
    raise AssertionError("not drained")


async def drain_async(worker, outbox, handler, rounds=200):
    total = Counter()
    for _ in range(rounds):
        s = await worker.run_until_idle_async(handler)
        total.update(attempts=s.attempts, succeeded=s.succeeded, failed=s.failed)
        st = outbox.stats()
        if st["ready"] + st["scheduled"] + st["leased"] == 0:
            return total
        await asyncio.sleep(0.005)
    raise AssertionError("not drained")


def enqueue(outbox, n):
    outbox.enqueue_many([{"payload": str(i).encode(), "id": f"m{i}", "headers": {"n": str(i)}} for i in range(n)])


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_sync_handler_delivers_all_with_retries(tmp_path, store):
    loc = "memory" if store == "memory" else str(tmp_path / "w.db")
    o = Outbox(loc, "q", retry=FAST)
    enqueue(o, 50)
    seen = Counter()
    lock = threading.Lock()

    def handler(m):
        assert isinstance(m, oncely.Message) and m.payload == m.id[1:].encode()
        assert m.headers == {"n": m.id[1:]} and m.idempotency_key == m.id
        with lock:
            seen[m.id] += 1
        if m.attempt == 1 and int(m.id[1:]) % 3 == 0:
            raise RuntimeError("flaky")     # retried
        return None if m.attempt % 2 else True

    w = Worker(o, concurrency=4, poll_interval=0.005)
    total = drain(w, o, handler)
    assert len(seen) == 50
    assert sum(seen.values()) == 50 + 17 == total["attempts"]
    assert total["succeeded"] == 50 and total["failed"] == 17
    assert o.stats()["delivered"] == 50 and o.stats()["dead"] == 0


async def test_async_handler_delivers_all_with_retries():
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 40)
    seen = Counter()
    loop = asyncio.get_running_loop()

    async def handler(m):
        assert asyncio.get_running_loop() is loop      # runs on the caller's event loop
        seen[m.id] += 1
        await asyncio.sleep(0.001)
        if m.attempt == 1 and int(m.id[1:]) % 4 == 0:
            raise oncely.Retry("busy", after=0.001)

    w = Worker(o, concurrency=8, poll_interval=0.005)
    total = await drain_async(w, o, handler)
    assert len(seen) == 40 and sum(seen.values()) == 50
    assert total["succeeded"] == 40 and o.stats()["dead"] == 0


async def test_sync_handler_in_async_run():
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 10)
    seen = []
    total = await drain_async(Worker(o, poll_interval=0.005), o, seen.append)
    assert sorted(m.id for m in seen) == sorted(f"m{i}" for i in range(10))
    assert total["succeeded"] == 10


def test_coroutine_handler_in_sync_run():
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 5)
    seen = []

    async def handler(m):
        await asyncio.sleep(0)
        seen.append(m.id)

    assert drain(Worker(o), o, handler)["succeeded"] == 5
    assert len(seen) == 5


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_raising_handler_retries_then_dead_letters(kind):
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 3)
    attempts = Counter()

    def sync_handler(m):
        attempts[m.id] += 1
        raise ValueError(f"boom {m.attempt}")

    async def async_handler(m):
        sync_handler(m)

    w = Worker(o, poll_interval=0.005)
    if kind == "sync":
        total = drain(w, o, sync_handler)
    else:
        total = asyncio.run(drain_async(w, o, async_handler))
    assert attempts == {"m0": 3, "m1": 3, "m2": 3}
    assert total["failed"] == 9 and total["succeeded"] == 0
    dead = o.dead_letters()
    assert sorted(r.id for r in dead) == ["m0", "m1", "m2"]
    assert all(r.last_error == "boom 3" for r in dead)


def test_permanent_snooze_and_bad_return():
    o = Outbox("memory", "q", retry=FAST)
    o.enqueue(b"", id="perm")
    o.enqueue(b"", id="snooze")
    o.enqueue(b"", id="bad")
    calls = Counter()

    def handler(m):
        calls[m.id] += 1
        if m.id == "perm":
            raise oncely.Permanent("no such user")
        if m.id == "snooze" and calls[m.id] < 4:
            raise oncely.Snooze(0.001)     # does not use up attempts
        if m.id == "bad":
            return "nope"                  # not None/True: a retryable failure

    drain(Worker(o, poll_interval=0.005), o, handler)
    assert calls["perm"] == 1 and o.get("perm").state == "dead" and "no such user" in o.get("perm").reason
    assert calls["snooze"] == 4            # 4 calls > max_attempts=3, yet delivered
    assert o.get("snooze") is None or o.get("snooze").state != "dead"
    assert calls["bad"] == 3 and o.get("bad").state == "dead"
    assert "nope" in o.get("bad").last_error


def test_handler_may_make_sync_oncely_calls():
    o = Outbox("memory", "q", retry=FAST)
    follow = Outbox("memory", "follow")
    inbox = oncely.Inbox("memory", "rx")
    enqueue(o, 5)

    def handler(m):
        inbox.process(m.id, m.payload, lambda: b"done")
        follow.enqueue(m.payload, id="f-" + m.id)

    drain(Worker(o), o, handler)
    assert follow.stats()["ready"] == 5


def test_run_until_stop_from_a_handler_and_from_a_thread():
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 20)
    w = Worker(o, poll_interval=0.005)
    done = []

    def handler(m):
        done.append(m.id)
        if len(done) == 20:
            w.stop()

    s = w.run(handler)
    assert s.succeeded == 20 and w.stopped
    assert w.run(handler).attempts == 0          # stays stopped

    w2 = Worker(o, poll_interval=0.005, shutdown_timeout=0.05)
    o.enqueue(b"", id="slow")
    release = threading.Event()

    def slow(m):
        release.wait(2)

    t = threading.Timer(0.2, w2.stop)
    t.start()
    t0 = time.monotonic()
    s = w2.run(slow)
    release.set()
    assert time.monotonic() - t0 < 1.5
    assert s.released == 1 and o.get("slow").state == "ready" and o.get("slow").attempts == 1


async def test_run_async_until_stop():
    o = Outbox("memory", "q", retry=FAST)
    enqueue(o, 10)
    w = Worker(o, poll_interval=0.005)
    seen = set()

    async def handler(m):
        seen.add(m.id)
        if len(seen) == 10:
            w.stop()

    s = await w.run_async(handler)
    assert s.succeeded == 10


def test_bad_arguments():
    o = Outbox("memory", "q")
    with pytest.raises(oncely.InvalidArgument):
        Worker(o, concurrency=0)
    with pytest.raises(oncely.InvalidArgument):
        Worker(o, poll_interval=-1)
    with pytest.raises(TypeError):
        Worker(o).run_until_idle(42)


def test_ctrl_c_stops_run_gracefully(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "w.py"
    script.write_text(
        "import signal, sys, oncely\n"
        # A process started in the background by a non-interactive shell inherits SIGINT as
        # ignored, and Python then installs no KeyboardInterrupt handler: restore Python's own.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "o = oncely.Outbox(sys.argv[1], 'q')\n"
        "o.enqueue(b'x', id='m')\n"
        "w = oncely.Worker(o, poll_interval=0.01, shutdown_timeout=5)\n"
        "def h(m):\n"
        "    print('handled', m.id, flush=True)\n"
        "try:\n"
        "    w.run(h)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', o.stats()['delivered'], w.stopped, flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "q.db")], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "handled m"
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=10)
    assert out.strip() == "interrupted 1 True"
