"""The Python quickstart of the root README: an outbox, a worker and an exactly-once receiver.

Run it with `python python/examples/quickstart.py` (after `pip install` of the package, or with
target/py-venv/bin/python after python/run-tests.sh).
"""

import os
import tempfile

path = os.path.join(tempfile.mkdtemp(), "oncely.db")

# ANCHOR: quickstart
import time

import oncely

store = oncely.Store(path)  # one SQLite file, shared by the outbox and the inbox
outbox = oncely.Outbox(store, "payments", retry={
    "max_attempts": 5, "jitter": "full",
    "backoff": {"kind": "exponential", "initial_ms": 10, "factor": 2.0, "max_ms": 1000},
})
inbox = oncely.Inbox(store, "bank", mode="exactly_once")  # the receiver's processed ids

for n in range(1, 4):
    outbox.enqueue(f"debit {n}0 EUR".encode(), id=f"payment-{n}")


def send_to_bank(message: oncely.Message) -> None:
    def charge() -> bytes:  # the effect; runs once per message id
        print(f"  charging: {message.payload.decode()}\n", end="")  # one write per line
        return b"charged"

    inbox.process(message.id, message.payload, charge)  # the receiver deduplicates on the id
    if message.id == "payment-2" and message.attempt == 1:
        raise TimeoutError("the bank's answer was lost")  # any exception: retry with backoff
    # Return normally for success; raise oncely.Permanent(reason) to dead-letter at once,
    # oncely.Retry(after=seconds) or oncely.Snooze(seconds) to say when to try again.


def pending() -> int:
    stats = outbox.stats()  # one snapshot: a message moves from scheduled to ready
    return stats["ready"] + stats["scheduled"]


worker = oncely.Worker(outbox, concurrency=4)
while pending() > 0:
    summary = worker.run_until_idle(send_to_bank)  # `worker.run(handler)` runs until stop()
    print(f"delivered {summary.succeeded} in {summary.attempts} attempts")
    time.sleep(0.05)
# ANCHOR_END: quickstart
