"""Hostile input: every integer parameter is range-checked and every text parameter refuses lone
surrogates with the core's own error and message text (`oncely::text`, the same in every
language); huge input is refused at once, and error messages quote only a bounded prefix of it."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oncely
from oncely import Inbox, ManualClock, Outbox, RetryPolicy, Store, Worker

MAX_SAFE = 2**53 - 1
U32 = 2**32 - 1
POLICY = {"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}


def fixtures():
    outbox = Outbox("memory", "q")
    policy = RetryPolicy(POLICY)

    def decide(**kw):
        args = dict(seed=0, attempts=1, first_attempt_at_ms=0, now_ms=0)
        args.update(kw)
        return policy.decide_ms(**args)

    return outbox, policy, decide


OUTBOX, POLICY_OBJ, DECIDE = fixtures()

# (parameter name, min, max, call): every integer parameter of the binding.
INTEGERS = [
    ("start_ms", 0, MAX_SAFE, lambda v: ManualClock(v)),
    ("ms", 0, MAX_SAFE, lambda v: ManualClock().advance_ms(v)),
    ("ms", 0, MAX_SAFE, lambda v: ManualClock().set_ms(v)),
    ("seed", 0, MAX_SAFE, lambda v: Outbox("memory", "q", seed=v)),
    ("max_payload_bytes", 0, MAX_SAFE, lambda v: Outbox("memory", "q", max_payload_bytes=v)),
    ("recent_capacity", 0, MAX_SAFE, lambda v: Inbox("memory", "s", recent_capacity=v)),
    ("max_result_bytes", 0, MAX_SAFE, lambda v: Inbox("memory", "s", max_result_bytes=v)),
    ("max", 0, MAX_SAFE, lambda v: OUTBOX.lease(v)),
    ("max", 0, MAX_SAFE, lambda v: OUTBOX.lease_async(v)),
    ("token", 0, MAX_SAFE, lambda v: OUTBOX.settle("m", v, "ack")),
    ("after_seq", 0, MAX_SAFE, lambda v: OUTBOX.dead_letters(v)),
    ("limit", 0, MAX_SAFE, lambda v: OUTBOX.dead_letters(None, v)),
    ("seed", 0, MAX_SAFE, lambda v: POLICY_OBJ.schedule_ms(v, 1)),
    ("n", 0, 100_000, lambda v: POLICY_OBJ.schedule_ms(0, v)),
    ("seed", 0, MAX_SAFE, lambda v: DECIDE(seed=v)),
    ("attempts", 0, U32, lambda v: DECIDE(attempts=v)),
    ("first_attempt_at_ms", 0, MAX_SAFE, lambda v: DECIDE(first_attempt_at_ms=v)),
    ("now_ms", 0, MAX_SAFE, lambda v: DECIDE(now_ms=v)),
    ("last_delay_ms", 0, MAX_SAFE, lambda v: DECIDE(last_delay_ms=v)),
    ("retry_after_ms", 0, MAX_SAFE, lambda v: DECIDE(retry_after_ms=v)),
    ("concurrency", 1, MAX_SAFE, lambda v: Worker(OUTBOX, concurrency=v)),
]


def range_message(name, lo, hi, v):
    return f"invalid argument `{name}`: must be a whole number from {lo} to {hi}, got {v}"


@pytest.mark.parametrize("name,lo,hi,call", INTEGERS, ids=[f"{i}-{p[0]}" for i, p in enumerate(INTEGERS)])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_integers_out_of_range_are_invalid_argument(name, lo, hi, call, data):
    v = data.draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1)))
    with pytest.raises(oncely.InvalidArgument) as e:
        call(v)
    assert e.value.code == "invalid_argument"
    if len(str(v)) <= 64:
        assert str(e.value) == range_message(name, lo, hi, v)
    else:   # quoted by a bounded prefix
        assert str(e.value).startswith(range_message(name, lo, hi, str(v)[:64]) + "…")
        assert len(str(e.value)) < 250


@pytest.mark.parametrize("name,lo,hi,call", INTEGERS, ids=[f"{i}-{p[0]}" for i, p in enumerate(INTEGERS)])
def test_integer_bounds_and_kinds(name, lo, hi, call):
    for bad in (lo - 1, hi + 1, 2**70, -(2**70), 2**200, 10**5000):
        with pytest.raises(oncely.InvalidArgument, match=f"^invalid argument `{name}`: must be a whole number"):
            call(bad)
    # the lower bound passes the range check (whatever the call then says about it)
    try:
        r = call(lo)
        if hasattr(r, "close"):
            r.close()
    except oncely.OncelyError as e:    # e.g. LeaseLost for a token of nothing leased
        assert "must be a whole number" not in str(e)
    except RuntimeError:    # an *_async call without a running event loop
        pass
    # not an int: a TypeError, as before
    with pytest.raises(TypeError):
        call(1.5)
    with pytest.raises(TypeError):
        call("1")


def test_the_issue_examples():
    with pytest.raises(oncely.InvalidArgument, match=r"^invalid argument `ms`: must be a whole number from 0 to 9007199254740991, got -1"):
        ManualClock().advance_ms(-1)
    with pytest.raises(oncely.InvalidArgument, match="`max`"):
        Outbox("memory", "q").lease(-1)
    with pytest.raises(oncely.InvalidArgument, match="`seed`"):
        Outbox("memory", "q", seed=-1)
    with pytest.raises(oncely.InvalidArgument, match=r"`concurrency`: .* got 1180591620717411303424"):
        Worker(Outbox("memory", "q"), concurrency=2**70)
    assert ManualClock(True).now_ms() == 1     # bool is an int, and objects with __index__ are too

    class Index:
        def __index__(self):
            return 7

    assert ManualClock(Index()).now_ms() == 7


# --- lone surrogates ---------------------------------------------------------------------------

def surrogate_message(name, unit, index):
    return (f"invalid argument `{name}`: holds a lone surrogate U+{unit:04X} at character {index}; "
            "text must be valid Unicode")


def text_calls():
    inbox = Inbox("memory", "s")
    outbox = Outbox("memory", "q", lease=3600)
    ticket = inbox.begin("t").ticket
    outbox.enqueue(b"", id="d")
    (delivery,) = outbox.lease(1)
    h = lambda: b""  # noqa: E731
    return [
        ("location", lambda v: Store(v)),
        ("store", lambda v: Inbox(v, "s")),
        ("store", lambda v: Outbox(v, "q")),
        ("url", lambda v: Store.postgres_schema_url(v, "s")),
        ("schema", lambda v: Store.postgres_schema_url("postgres://nowhere.invalid/db", v)),
        ("scope", lambda v: Inbox("memory", v)),
        ("mode", lambda v: Inbox("memory", "s", mode=v)),
        ("cache_policy", lambda v: Inbox("memory", "s", cache_policy=v)),
        ("id", lambda v: inbox.begin(v)),
        ("mode", lambda v: inbox.begin("a", mode=v)),
        ("id", lambda v: inbox.begin_many([v])),
        ("id", lambda v: inbox.begin_many([{"id": v}])),
        ("mode", lambda v: inbox.begin_many([{"id": "a", "mode": v}])),
        ("begin options", lambda v: inbox.begin_many([{v: 1}])),     # Node's noun for a request
        ("id", lambda v: inbox.process(v, None, h)),
        ("id", lambda v: inbox.get(v)),
        ("id", lambda v: inbox.begin_async(v)),
        ("id", lambda v: inbox.get_async(v)),
        ("id", lambda v: inbox.process_async(v, None, h)),
        ("error", lambda v: ticket.settle(error=v)),
        ("queue", lambda v: Outbox("memory", v)),
        ("mode", lambda v: Outbox("memory", "q", mode=v)),
        ("ordering", lambda v: Outbox("memory", "q", ordering=v)),
        ("poison", lambda v: Outbox("memory", "q", ordering="fifo_per_key", poison=v)),
        ("retry", lambda v: Outbox("memory", "q", retry=v)),
        ("retry", lambda v: RetryPolicy(v)),
        ("retry budget options", lambda v: Outbox("memory", "q", retry_budget={v: 1.0})),
        ("id", lambda v: outbox.enqueue(b"", id=v)),
        ("key", lambda v: outbox.enqueue(b"", key=v)),
        ("headers", lambda v: outbox.enqueue(b"", headers={v: "x"})),
        ("headers", lambda v: outbox.enqueue(b"", headers={"h": v})),
        ("id", lambda v: outbox.enqueue_async(b"", id=v)),
        ("id", lambda v: outbox.enqueue_many([{"payload": b"", "id": v}])),
        ("key", lambda v: outbox.enqueue_many([{"payload": b"", "key": v}])),
        ("headers", lambda v: outbox.enqueue_many([{"payload": b"", "headers": {"h": v}}])),
        ("enqueue options", lambda v: outbox.enqueue_many([{v: 1}])),    # Node's noun for a message
        ("id", lambda v: outbox.settle(v, 1, "ack")),
        ("action", lambda v: outbox.settle("m", 1, v)),
        ("error", lambda v: outbox.settle("m", 1, "retry", error=v)),
        ("reason", lambda v: outbox.settle("m", 1, "fail", reason=v)),
        ("id", lambda v: outbox.cancel(v)),
        ("id", lambda v: outbox.get(v)),
        ("id", lambda v: outbox.replay(v)),
        ("ids", lambda v: outbox.purge_dead([v])),
        ("error", lambda v: delivery.retry(v)),
        ("reason", lambda v: delivery.fail(v)),
        ("error", lambda v: delivery.retry_async(v)),
        ("reason", lambda v: delivery.fail_async(v)),
    ]


TEXTS = [("\ud800", 0xD800, 0), ("ab\udfffc", 0xDFFF, 2), ("😀x\udc00", 0xDC00, 2), ("\ud83d\ude00", 0xD83D, 0)]


@pytest.mark.parametrize("value,unit,index", TEXTS)
def test_lone_surrogates_are_invalid_argument(value, unit, index):
    wrong = []
    for name, call in text_calls():
        try:
            call(value)
            wrong.append((name, "accepted"))
        except oncely.InvalidArgument as e:
            if str(e) != surrogate_message(name, unit, index):
                wrong.append((name, str(e)))
        except BaseException as e:  # noqa: BLE001
            wrong.append((name, f"{type(e).__name__}: {e}"))
    assert not wrong, wrong


def test_lone_surrogates_in_a_transaction(tmp_path):
    path = str(tmp_path / "t.db")
    inbox = Inbox(path, "s")
    outbox = Outbox(path, "q")
    seen = {}

    def handler(tx):
        for name, call in [
            ("sql", lambda: tx.execute("SELECT 1 \ud800")),
            ("params", lambda: tx.execute("SELECT ?1", ["\ud800"])),
            ("id", lambda: tx.enqueue(outbox, b"", id="\ud800")),
        ]:
            with pytest.raises(oncely.InvalidArgument) as e:
                call()
            seen[name] = str(e.value)
        return b""

    inbox.process_transactional("t", None, handler)
    assert seen == {
        "sql": surrogate_message("sql", 0xD800, 9),
        "params": surrogate_message("params", 0xD800, 0),
        "id": surrogate_message("id", 0xD800, 0),
    }


def test_valid_unicode_still_passes():
    inbox = Inbox("memory", "s")
    assert inbox.process("😀-é-\u4e2d", None, lambda: b"ok").result == b"ok"
    assert inbox.get("😀-é-\u4e2d").state == "succeeded"


# --- huge input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params", ["x" * (20 << 20), b"x" * (20 << 20), bytearray(b"xy")])
def test_text_or_bytes_as_sql_params_is_refused_at_once(tmp_path, params):
    inbox = Inbox(str(tmp_path / "h.db"), "s")
    took = {}

    def handler(tx):
        start = time.monotonic()
        with pytest.raises(oncely.InvalidArgument) as e:
            tx.execute("SELECT ?1", params)
        took["s"] = time.monotonic() - start
        took["msg"] = str(e.value)
        assert tx.execute("SELECT ?1", ("ok",)) == [("ok",)]
        return b""

    inbox.process_transactional("t", None, handler)
    assert took["s"] < 1.0, took
    assert took["msg"].startswith("invalid argument `params`: must be a sequence of values")
    assert len(took["msg"]) < 200


HUGE = "y" * (5 << 20)


def test_error_messages_quote_a_bounded_prefix():
    inbox, outbox = Inbox("memory", "s"), Outbox("memory", "q")
    big_type = type("T" * 100_000, (), {})()
    calls = [
        lambda: Inbox("memory", "s", cache_policy=HUGE),
        lambda: outbox.settle("m", 1, HUGE),
        lambda: inbox.begin_many([{HUGE: 1}]),
        lambda: outbox.enqueue_many([{HUGE: 1}]),
        lambda: Outbox("memory", "q", retry_budget={"ratio": 0.1, HUGE: 1}),
        lambda: outbox.enqueue(big_type),
        lambda: Inbox(big_type, "s"),
        lambda: outbox.on_event(big_type),
        lambda: ManualClock(10**5000),
    ]
    for call in calls:
        with pytest.raises((oncely.InvalidArgument, TypeError)) as e:
            call()
        assert len(str(e.value)) < 300, str(e.value)[:300]
    with pytest.raises(oncely.InvalidArgument, match="has no option `y{64}… \\(5242880 bytes\\)`"):
        outbox.enqueue_many([{HUGE: 1}])


def test_worker_error_for_a_huge_return_value_is_bounded():
    outbox = Outbox("memory", "q", retry=POLICY)
    outbox.enqueue(b"x", id="m")
    Worker(outbox, concurrency=1).run_until_idle(lambda m: HUGE)
    rec = outbox.get("m")
    assert rec.last_error.startswith("the handler returned 'yyy")     # quoted (repr), bounded
    assert len(rec.last_error) < 200


def test_schedule_length_is_bounded_and_never_wraps():
    policy = oncely.RetryPolicy({"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"})
    assert policy.schedule_ms(1, 3) == [10, 10, 10]
    for n in (100_001, 2**32, 2**32 + 3, 2**53 - 1):
        with pytest.raises(oncely.InvalidArgument) as e:
            policy.schedule_ms(1, n)
        assert e.value.code == "invalid_argument"
        assert str(e.value) == f"invalid argument `n`: must be a whole number from 0 to 100000, got {n}"
