import asyncio

import pytest

import oncely
from oncely import Inbox, ManualClock, Outbox, Permanent


async def test_begin_finish_async():
    inbox = Inbox("memory", "s", clock=ManualClock())
    r = await inbox.begin_async("a", b"p")
    assert r.outcome == "claimed"
    await r.ticket.finish_async(b"done")
    d = await inbox.begin_async("a", b"p")
    assert (d.outcome, d.result) == ("duplicate", b"done")
    rec = await inbox.get_async("a")
    assert rec.state == "succeeded"
    assert await inbox.purge_expired_async() == 0


async def test_process_async_with_async_and_sync_handlers():
    inbox = Inbox("memory", "s")
    calls = []

    async def handler():
        await asyncio.sleep(0.01)
        calls.append(1)
        return b"async result"

    p = await inbox.process_async("a", None, handler)
    assert (p.result, p.replayed) == (b"async result", False)
    p = await inbox.process_async("a", None, handler)
    assert (p.result, p.replayed) == (b"async result", True)
    assert len(calls) == 1
    p = await inbox.process_async("b", None, lambda: b"sync")
    assert p.result == b"sync"


async def test_process_async_errors():
    inbox = Inbox("memory", "s", cache_policy="success_and_failure")

    async def boom():
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await inbox.process_async("a", None, boom)

    async def perm():
        raise Permanent("declined")

    with pytest.raises(Permanent):
        await inbox.process_async("b", None, perm)
    with pytest.raises(oncely.ReplayedFailure) as e:
        await inbox.process_async("b", None, perm)
    assert e.value.reason == b"declined"
    with pytest.raises(oncely.InvalidArgument):
        await inbox.begin_async("")


async def test_concurrent_process_async_runs_the_handler_once():
    inbox = Inbox("memory", "s")
    calls = []

    async def slow():
        calls.append(1)
        await asyncio.sleep(0.05)
        return b"r"

    results = await asyncio.gather(
        *(inbox.process_async("same", None, slow, wait=5) for _ in range(5)), return_exceptions=True
    )
    assert len(calls) == 1
    assert all(r.result == b"r" for r in results), results
    assert sum(not r.replayed for r in results) == 1


async def test_outbox_async():
    o = Outbox("memory", "q")
    assert await o.enqueue_async(b"x", id="m") == "queued"
    (d,) = await o.lease_async(5)
    s = await d.retry_async("e", after=0.001)
    assert s.kind == "retrying"
    await asyncio.sleep(0.01)
    (d,) = await o.lease_async(5)
    assert (await d.extend_async(5)).kind == "extended"
    assert (await d.ack_async()).kind == "acked"
    with pytest.raises(oncely.LeaseLost):
        await d.release_async()


def test_idempotent_decorator_sync():
    inbox = Inbox("memory", "s")
    calls = []

    @inbox.idempotent(key="order-{order_id}", payload=lambda order_id, amount: str(amount).encode())
    def charge(order_id, amount):
        calls.append(order_id)
        return f"charged {amount}".encode()

    assert charge(1, 10) == b"charged 10"
    assert charge(order_id=1, amount=10) == b"charged 10"
    assert calls == [1]
    with pytest.raises(oncely.Conflict):
        charge(1, 11)
    assert charge.__name__ == "charge"


async def test_idempotent_decorator_async():
    inbox = Inbox("memory", "s")
    calls = []

    @inbox.idempotent(key=lambda x: f"k{x}")
    async def work(x):
        calls.append(x)
        return b"%d" % x

    assert await work(3) == b"3"
    assert await work(3) == b"3"
    assert calls == [3]


def test_async_call_without_running_loop_is_an_error():
    inbox = Inbox("memory", "s")
    with pytest.raises(RuntimeError):
        inbox.begin_async("a")
