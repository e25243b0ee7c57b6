"""Many threads / asyncio tasks processing the same ids through one SQLite inbox: each effect
happens exactly once per id, and every caller gets its result."""

import asyncio
import random
import threading
from collections import Counter

import pytest

import oncely

IDS = [f"order-{i}" for i in range(40)]


@pytest.mark.parametrize("shared", [True, False], ids=["one_inbox", "inbox_per_thread"])
def test_threads_process_each_id_once(tmp_path, shared):
    path = str(tmp_path / "inbox.db")
    store = oncely.Store(path)
    common = oncely.Inbox(store, "pay", mode="exactly_once")
    effects = Counter()
    lock = threading.Lock()
    results = []
    errors = []
    start = threading.Barrier(8)

    def worker(n):
        inbox = common if shared else oncely.Inbox(path, "pay", mode="exactly_once")
        ids = IDS[:]
        random.Random(n).shuffle(ids)
        start.wait()
        for id_ in ids:
            def effect(id_=id_):
                with lock:
                    effects[id_] += 1
                return f"done {id_}".encode()

            try:
                r = inbox.process(id_, b"{}", effect, wait=30)
                results.append((id_, r.result))
            except Exception as e:        # pragma: no cover - reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert effects == Counter({i: 1 for i in IDS})
    assert len(results) == 8 * len(IDS)
    assert all(res == f"done {i}".encode() for i, res in results)


async def test_asyncio_tasks_process_each_id_once(tmp_path):
    inbox = oncely.Inbox(str(tmp_path / "inbox.db"), "pay", mode="exactly_once")
    effects = Counter()

    async def task(n):
        ids = IDS[:]
        random.Random(n).shuffle(ids)
        out = []
        for id_ in ids:
            async def effect(id_=id_):
                effects[id_] += 1
                await asyncio.sleep(0.001)
                return f"done {id_}".encode()

            r = await inbox.process_async(id_, b"{}", effect, wait=30)
            out.append((id_, r.result))
        return out

    results = [r for rs in await asyncio.gather(*(task(n) for n in range(50))) for r in rs]
    assert effects == Counter({i: 1 for i in IDS})
    assert len(results) == 50 * len(IDS)
    assert all(res == f"done {i}".encode() for i, res in results)
