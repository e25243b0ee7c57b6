"""Garbage in every argument of the main calls: a typed error, never a crash or a panic."""

import itertools
import math

import pytest

import oncely
from oncely import Inbox, ManualClock, Outbox

GARBAGE = [None, 0, -1, 2**64, -(2**63) - 1, 1e308, math.nan, -math.inf, "", "x" * 600, "\ud800", b"",
           b"\xff" * 2_000_000, bytearray(b"ba"), object(), [], {}, True, 0.0001]
ALLOWED = (TypeError, ValueError, OverflowError, oncely.OncelyError)


def calls(inbox, outbox, ticket, delivery):
    yield "Inbox", lambda v: Inbox(v, "s")
    yield "Inbox.scope", lambda v: Inbox("memory", v)
    yield "Inbox.mode", lambda v: Inbox("memory", "s", mode=v)
    yield "Inbox.lease", lambda v: Inbox("memory", "s", lease=v)
    yield "Inbox.retention", lambda v: Inbox("memory", "s", retention=v)
    yield "Inbox.cache_policy", lambda v: Inbox("memory", "s", cache_policy=v)
    yield "Inbox.max_result_bytes", lambda v: Inbox("memory", "s", max_result_bytes=v)
    yield "Inbox.clock", lambda v: Inbox("memory", "s", clock=v)
    yield "begin.id", lambda v: inbox.begin(v)
    yield "begin.payload", lambda v: inbox.begin("p", v)
    yield "begin.mode", lambda v: inbox.begin("m", mode=v)
    yield "begin.lease", lambda v: inbox.begin("l", lease=v)
    yield "begin_many", lambda v: inbox.begin_many(v)
    yield "begin_many.item", lambda v: inbox.begin_many([{"id": v}])
    yield "finish_many", lambda v: inbox.finish_many(v)
    yield "process.handler-returns", lambda v: inbox.process("h", None, lambda: v)
    yield "process.wait", lambda v: inbox.process("w", None, lambda: b"", wait=v)
    yield "get", lambda v: inbox.get(v)
    yield "ticket.finish", lambda v: ticket.finish(v)
    yield "ticket.fail", lambda v: ticket.fail(v)
    yield "Outbox.retry", lambda v: Outbox("memory", "q", retry=v)
    yield "Outbox.ordering", lambda v: Outbox("memory", "q", ordering=v)
    yield "Outbox.poison", lambda v: Outbox("memory", "q", ordering="fifo_per_key", poison=v)
    yield "Outbox.park_after", lambda v: Outbox("memory", "q", ordering="fifo_per_key", poison="park", park_after=v)
    yield "Outbox.seed", lambda v: Outbox("memory", "q", seed=v)
    yield "Outbox.retry_budget", lambda v: Outbox("memory", "q", retry_budget=v)
    yield "Outbox.budget.ratio", lambda v: Outbox("memory", "q", retry_budget={"ratio": v})
    yield "enqueue.payload", lambda v: outbox.enqueue(v)
    yield "enqueue.id", lambda v: outbox.enqueue(b"", id=v)
    yield "enqueue.key", lambda v: outbox.enqueue(b"", key=v)
    yield "enqueue.headers", lambda v: outbox.enqueue(b"", headers=v)
    yield "enqueue.header-value", lambda v: outbox.enqueue(b"", headers={"h": v})
    yield "enqueue.delay", lambda v: outbox.enqueue(b"", delay=v)
    yield "enqueue_many", lambda v: outbox.enqueue_many(v)
    yield "enqueue_many.item", lambda v: outbox.enqueue_many([v])
    yield "lease", lambda v: outbox.lease(v)
    yield "settle.token", lambda v: outbox.settle("m", v, "ack")
    yield "settle.action", lambda v: outbox.settle("m", 1, v)
    yield "dead_letters", lambda v: outbox.dead_letters(v)
    yield "purge_dead", lambda v: outbox.purge_dead(v)
    yield "retry_policy", lambda v: oncely.RetryPolicy(v)
    yield "delivery.retry.after", lambda v: delivery.retry("e", after=v)
    yield "delivery.snooze", lambda v: delivery.snooze(v)
    yield "delivery.extend", lambda v: delivery.extend(v)
    yield "delivery.fail", lambda v: delivery.fail(v)
    yield "clock.advance", lambda v: ManualClock().advance(v)
    yield "clock", lambda v: ManualClock(v)


def test_garbage_gives_typed_errors():
    inbox = Inbox("memory", "s", max_result_bytes=1 << 20)
    outbox = Outbox("memory", "q", lease=3600)
    ticket = inbox.begin("t").ticket
    outbox.enqueue(b"", id="d")
    (delivery,) = outbox.lease(1)
    unexpected = []
    for (name, call), value in itertools.product(list(calls(inbox, outbox, ticket, delivery)), GARBAGE):
        try:
            call(value)
        except ALLOWED:
            pass
        except BaseException as e:  # noqa: BLE001 - anything else is a bug
            unexpected.append((name, repr(value)[:40], type(e).__name__, str(e)[:80]))
    assert not unexpected, unexpected


def test_a_wrong_typed_field_of_a_batch_item_is_a_type_error_naming_it():
    outbox = Outbox("memory", "q")
    with pytest.raises(TypeError, match=r"^message 1: `headers`: "):
        outbox.enqueue_many([{"payload": b"a", "id": "m0"}, {"payload": b"b", "headers": "h: v"}])
    with pytest.raises(TypeError, match=r"^message 0: `delay`: "):
        outbox.enqueue_many([{"payload": b"a", "delay": "soon"}])
    # A field of the right type but a bad value stays the core's typed error.
    with pytest.raises(oncely.InvalidArgument):
        outbox.enqueue_many([{"payload": b"a", "id": "\ud800"}])
    assert outbox.stats()["ready"] == 0, "a refused batch writes nothing"
    inbox = Inbox("memory", "s")
    with pytest.raises(TypeError, match=r"^request 1: `lease`: "):
        inbox.begin_many(["a", {"id": "b", "lease": "long"}])
