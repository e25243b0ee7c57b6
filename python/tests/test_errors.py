import math
import pickle

import pytest

import oncely
from oncely import Inbox, ManualClock, OncelyError, Outbox

CODES = {
    "InvalidArgument": "invalid_argument",
    "Conflict": "conflict",
    "InProgress": "in_progress",
    "LeaseLost": "lease_lost",
    "Storage": "storage",
    "CorruptStore": "corrupt_store",
    "Closed": "closed",
    "Timeout": "timeout",
}


@pytest.mark.parametrize("name,code", CODES.items())
def test_one_class_per_code(name, code):
    cls = getattr(oncely, name)
    assert issubclass(cls, OncelyError) and issubclass(cls, Exception)
    assert cls.code == code
    assert cls.__module__ == "oncely._native"
    e = cls("some message")
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is cls and str(again) == "some message" and again.code == code


def test_error_text_is_the_core_display():
    inbox = Inbox("memory", "s")
    with pytest.raises(oncely.InvalidArgument) as e:
        inbox.begin("")
    assert e.value.code == "invalid_argument"
    assert str(e.value).startswith("invalid argument `id`: ")
    with pytest.raises(oncely.InvalidArgument, match=r"^invalid argument `lease`: must be a finite number of seconds, got NaN$"):
        inbox.begin("a", lease=math.nan)


def test_conflict_and_in_progress_from_process():
    inbox = Inbox("memory", "s", lease=5)
    inbox.process("a", b"1", lambda: b"x")
    with pytest.raises(oncely.Conflict) as e:
        inbox.process("a", b"2", lambda: b"y")
    assert str(e.value) == "id `a` was already used with a different payload (fingerprint mismatch)"
    inbox.begin("b")
    with pytest.raises(oncely.InProgress, match="id `b` is being processed by another caller"):
        inbox.process("b", None, lambda: b"")
    with pytest.raises(oncely.Timeout) as t:
        inbox.process("b", None, lambda: b"", wait=0.05)
    assert t.value.code == "timeout"


def test_corrupt_store(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite at all, just some bytes" * 100)
    with pytest.raises((oncely.CorruptStore, oncely.Storage)):
        Inbox(str(bad), "s")


BAD_DURATIONS = [math.nan, math.inf, -math.inf, -1.0, -0.001, 1e300]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_bad_durations_are_invalid_argument(value):
    clock = ManualClock()
    with pytest.raises(oncely.InvalidArgument):
        Inbox("memory", "s", lease=value)
    with pytest.raises(oncely.InvalidArgument):
        Inbox("memory", "s", retention=value)
    inbox = Inbox("memory", "s", clock=clock)
    with pytest.raises(oncely.InvalidArgument):
        inbox.begin("a", lease=value)
    with pytest.raises(oncely.InvalidArgument):
        inbox.process("a", None, lambda: b"", wait=value)
    with pytest.raises(oncely.InvalidArgument):
        Outbox("memory", "q", lease=value)
    o = Outbox("memory", "q", clock=clock)
    with pytest.raises(oncely.InvalidArgument):
        o.enqueue(b"", delay=value)
    o.enqueue(b"x", id="m")
    (d,) = o.lease(1)
    for call in (d.snooze, d.extend):
        with pytest.raises(oncely.InvalidArgument):
            call(value)
    with pytest.raises(oncely.InvalidArgument):
        d.retry("e", after=value)
    with pytest.raises(oncely.InvalidArgument):
        clock.advance(value)
    d.ack()


def test_zero_durations():
    with pytest.raises(oncely.InvalidArgument, match="must be greater than zero"):
        Inbox("memory", "s", lease=0)
    with pytest.raises(oncely.InvalidArgument):
        Outbox("memory", "q", lease=0)


@pytest.mark.parametrize("bad_id", ["", "x" * 513, "é" * 257, "a\0b"])
def test_bad_ids(bad_id):
    inbox = Inbox("memory", "s")
    with pytest.raises(oncely.InvalidArgument):
        inbox.begin(bad_id)
    with pytest.raises(oncely.InvalidArgument):
        inbox.get(bad_id)
    o = Outbox("memory", "q")
    with pytest.raises(oncely.InvalidArgument):
        o.enqueue(b"", id=bad_id)
    with pytest.raises(oncely.InvalidArgument):
        o.cancel(bad_id)
    assert o.stats()["ready"] == 0


def test_huge_id_is_refused_not_crashed():
    inbox = Inbox("memory", "s")
    with pytest.raises(oncely.InvalidArgument):
        inbox.begin("x" * 10_000_000)


@pytest.mark.parametrize(
    "call",
    [
        lambda i, o: i.begin(None),
        lambda i, o: i.begin(123),
        lambda i, o: i.begin("a", "text payload"),
        lambda i, o: i.begin("a", mode=5),
        lambda i, o: i.begin("a", lease="1"),
        lambda i, o: i.begin("\ud800"),
        lambda i, o: i.process("a", None, None),
        lambda i, o: o.enqueue("text"),
        lambda i, o: o.enqueue(None),
        lambda i, o: o.enqueue(b"", headers={"a": 1}),
        lambda i, o: o.lease(-1),
        lambda i, o: o.lease("1"),      # (None is no longer wrong: it takes the core's default)
        lambda i, o: Inbox(None, "s"),
        lambda i, o: Inbox("memory", None),
        lambda i, o: i.begin_many([1]),
        lambda i, o: o.enqueue_many([{"payload": b"", "nope": 1}]),
    ],
)
def test_wrong_types_raise_type_errors_or_invalid_argument(call):
    inbox, outbox = Inbox("memory", "s"), Outbox("memory", "q")
    with pytest.raises((TypeError, OverflowError, ValueError, oncely.InvalidArgument)):
        r = call(inbox, outbox)
        # a handler of None is called: its TypeError is the handler's failure, re-raised
        print(r)


def test_none_takes_the_cores_default():
    outbox = Outbox("memory", "q")
    for i in range(3):
        outbox.enqueue(b"", id=f"m{i}")
    assert len(outbox.lease(None)) == 1         # oncely::defaults::LEASE_MAX


def test_bad_names():
    with pytest.raises(oncely.InvalidArgument, match="unknown mode"):
        Inbox("memory", "s", mode="twice")
    with pytest.raises(oncely.InvalidArgument):
        Inbox("memory", "s", cache_policy="sometimes")
    with pytest.raises(oncely.InvalidArgument):
        Inbox("memory", "")
    with pytest.raises(oncely.InvalidArgument):
        Inbox("", "s")
    with pytest.raises(oncely.InvalidArgument):
        Outbox("memory", "q", ordering="random")
    with pytest.raises(oncely.InvalidArgument):
        Outbox("memory", "q", retry={"max_attempts": 0, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"})
    with pytest.raises(oncely.InvalidArgument):
        Outbox("memory", "q", retry={"nonsense": True})


def test_handler_returning_non_bytes_fails_and_releases():
    inbox = Inbox("memory", "s")
    with pytest.raises(TypeError, match="must be bytes"):
        inbox.process("a", None, lambda: "a str")
    assert inbox.process("a", None, lambda: b"ok").result == b"ok"


def test_oversized_result_and_payload():
    inbox = Inbox("memory", "s", max_result_bytes=10)
    t = inbox.begin("a").ticket
    with pytest.raises(oncely.InvalidArgument, match="result"):
        t.finish(b"x" * 11)
    o = Outbox("memory", "q", max_payload_bytes=10)
    with pytest.raises(oncely.InvalidArgument, match="payload"):
        o.enqueue(b"x" * 11)
