"""The core logs through Python's ``logging``."""

import logging

import oncely


def test_a_dead_letter_is_logged(caplog):
    caplog.set_level(logging.INFO)
    outbox = oncely.Outbox("memory", "logged", retry={"max_attempts": 1, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"})
    outbox.enqueue(b"p", id="m-1")
    (delivery,) = outbox.lease(1)
    delivery.retry("boom")
    records = [r for r in caplog.records if r.name.startswith("oncely")]
    assert any("dead-lettered" in r.getMessage() and r.levelno == logging.WARNING for r in records), records
