"""A worker process for test_crash.py, killed with SIGKILL at random moments.

    crash_worker.py enqueue OUTBOX_DB MODE N
    crash_worker.py work OUTBOX_DB MODE LEDGER_DB [INBOX_DB]

`work` delivers until the queue is empty, then exits 0. Its effect is one row per call in the
ledger (plain `sqlite3`, a separate file). With INBOX_DB, the effect runs inside the receiver's
`Inbox.process` (exactly-once, keyed by the message id, in its own file).
"""

import random
import sqlite3
import sys
import time

import oncely

RETRY = {"max_attempts": 100000, "backoff": {"kind": "fixed", "delay_ms": 20}, "jitter": "none"}


def outbox(path, mode):
    return oncely.Outbox(path, "crash", mode=mode, lease=0.5, retry=RETRY)


def ledger_write(path, msg_id):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("INSERT INTO effects (id) VALUES (?)", (msg_id,))
    finally:
        conn.close()


def main():
    cmd, path, mode = sys.argv[1:4]
    o = outbox(path, mode)
    if cmd == "enqueue":
        n = int(sys.argv[4])
        o.enqueue_many([{"payload": b"x", "id": f"m{i:05d}"} for i in range(n)])
        return
    ledger = sys.argv[4]
    inbox = None
    if len(sys.argv) > 5:
        inbox = oncely.Inbox(sys.argv[5], "crash-rx", mode="exactly_once", lease=0.5)

    def effect(msg_id):
        time.sleep(random.uniform(0, 0.01))
        ledger_write(ledger, msg_id)

    def handler(m):
        if inbox is None:
            effect(m.id)
        else:
            def run():
                effect(m.id)
                return b"ok"

            inbox.process(m.id, None, run, wait=5)

    w = oncely.Worker(o, concurrency=4, poll_interval=0.01)
    while True:
        w.run_until_idle(handler)
        s = o.stats()
        if s["ready"] + s["scheduled"] + s["leased"] == 0:
            return
        time.sleep(0.02)


if __name__ == "__main__":
    main()
