"""A process that used `*_async` methods exits cleanly: no completion of oncely's runtime threads
may enter Python while the interpreter finalises (it crashed 3-12 times in 20 before)."""

import subprocess
import sys

SCRIPT = r"""
import asyncio, oncely
outbox = oncely.Outbox("memory", "q")
inbox = oncely.Inbox("memory", "s")

async def main():
    await outbox.lease_async(1)
    await outbox.enqueue_async(b"x")
    (d,) = await outbox.lease_async(1)
    await d.ack_async()
    await inbox.begin_async("a")
    await inbox.process_async("b", None, lambda: b"r")

asyncio.run(main())
"""

RUNS = 24


def test_exit_after_async_calls_is_clean():
    codes = []
    for batch in range(RUNS // 4):
        procs = [
            subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        for p in procs:
            out, err = p.communicate(timeout=60)
            codes.append((p.returncode, err.decode(errors="replace")[-300:]))
    bad = [c for c in codes if c[0] != 0]
    assert not bad, f"{len(bad)} of {RUNS} runs failed at exit: {bad[:3]}"
