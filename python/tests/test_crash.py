"""SIGKILL a Python worker process at random moments, restart it, drain; count the effects.

at_least_once: no message lost (duplicates expected). at_most_once: no effect repeated (losses
expected). exactly_once (receiver-side `Inbox.process`, non-transactional: "effectively once"):
no message lost; a duplicate is possible only when a kill lands between the effect's commit and
the inbox's finish, so duplicates are counted and printed, and bounded by kills x concurrency.
"""

import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest

import oncely

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "crash_worker.py")
N = 1000
KILLS = 20
BUDGET = 15.0        # seconds of kill-and-restart per mode, at most
CONCURRENCY = 4


def spawn(*args):
    return subprocess.Popen([sys.executable, SCRIPT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("mode", ["at_least_once", "at_most_once", "exactly_once"])
def test_kill_9_worker(tmp_path, mode):
    rng = random.Random(os.environ.get("ONCELY_CRASH_SEED", mode))
    box = str(tmp_path / "outbox.db")
    ledger = str(tmp_path / "ledger.db")
    inbox = [str(tmp_path / "inbox.db")] if mode == "exactly_once" else []
    outbox_mode = "at_least_once" if mode == "exactly_once" else mode
    with sqlite3.connect(ledger) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE effects (id TEXT NOT NULL)")
    assert spawn("enqueue", box, outbox_mode, str(N)).wait(60) == 0

    kills = 0
    t0 = time.monotonic()
    while kills < KILLS and time.monotonic() - t0 < BUDGET:
        p = spawn("work", box, outbox_mode, ledger, *inbox)
        time.sleep(rng.uniform(0.03, 0.2))
        if p.poll() is not None:          # finished on its own: all delivered
            assert p.returncode == 0, p.stderr.read().decode()
            break
        p.kill()                          # SIGKILL
        p.wait()
        kills += 1
    p = spawn("work", box, outbox_mode, ledger, *inbox)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()

    with sqlite3.connect(ledger) as c:
        counts = dict(c.execute("SELECT id, COUNT(*) FROM effects GROUP BY id"))
    ids = [f"m{i:05d}" for i in range(N)]
    lost = [i for i in ids if i not in counts]
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    print(f"\n{mode}: {N} messages, {kills} kills in {time.monotonic() - t0:.1f}s: "
          f"{len(lost)} lost, {duplicated} duplicated effects")
    stats = oncely.Outbox(box, "crash").stats()
    assert stats["ready"] + stats["scheduled"] + stats["leased"] + stats["dead"] == 0
    assert kills >= KILLS, f"only {kills} kills: the worker finished too soon"
    if mode == "at_least_once":
        assert lost == []
    elif mode == "at_most_once":
        assert duplicated == 0
    else:
        assert lost == []
        assert duplicated <= kills * CONCURRENCY
