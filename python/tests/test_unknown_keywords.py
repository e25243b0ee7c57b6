"""Unknown keyword arguments: every public call that takes arguments refuses a keyword it does not
have with ``InvalidArgument`` and the core's text (``oncely::text::unknown_option``), as Node
refuses an unknown option: ``invalid argument `<what>`: has no option `<name>` (known: ...)``.
``what`` is Node's noun for the same call (``outbox options``; ``<name> arguments`` where Node
takes only positional arguments), ``known`` the call's parameters in Python's spelling — checked
here against each call's real signature, so the list cannot drift from it."""

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oncely
from oncely import Inbox, ManualClock, Outbox, RetryPolicy, Store, Worker

POLICY = {"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}


def objects():
    inbox = Inbox("memory", "s")
    outbox = Outbox("memory", "q", lease=3600)
    outbox.enqueue(b"", id="d")
    (delivery,) = outbox.lease(1)
    ticket = inbox.begin("t").ticket
    txs = []
    sqlite_inbox = Inbox("sqlite::memory:", "s")
    sqlite_inbox.process_transactional("tx", None, lambda tx: txs.append(tx) or b"")
    worker = Worker(outbox)
    worker.stop()       # a stopped worker's run returns at once (were a keyword let through)
    return {
        "inbox": inbox, "outbox": outbox, "delivery": delivery, "ticket": ticket, "tx": txs[0],
        "policy": RetryPolicy(POLICY), "worker": worker, "clock": ManualClock(),
        "store": Store("memory"),
        "gate": oncely.HttpGate("memory"),
        "claim": oncely.HttpGate("memory").admit("POST", "/p", headers=[("Idempotency-Key", "k")]).claim,
        "retry": oncely.HttpRetry("k"),
    }


O = objects()
H = lambda: b""  # noqa: E731
DECIDE = dict(seed=0, attempts=1, first_attempt_at_ms=0, now_ms=0)

# (what, the function whose signature gives `known`, a call with every required argument
# given, taking the extra keywords): every public call that has parameters.
CALLS = [
    ("fingerprint arguments", oncely.fingerprint, lambda **k: oncely.fingerprint(b"", **k)),
    ("ManualClock arguments", ManualClock, lambda **k: ManualClock(**k)),
    ("advance arguments", ManualClock.advance, lambda **k: O["clock"].advance(0, **k)),
    ("advance_ms arguments", ManualClock.advance_ms, lambda **k: O["clock"].advance_ms(0, **k)),
    ("set_ms arguments", ManualClock.set_ms, lambda **k: O["clock"].set_ms(0, **k)),
    ("Store arguments", Store, lambda **k: Store("memory", **k)),
    ("transaction arguments", Store.transaction, lambda **k: O["store"].transaction(H, **k)),
    ("postgres_schema_url arguments", Store.postgres_schema_url, lambda **k: Store.postgres_schema_url("u", "s", **k)),
    # inbox
    ("inbox options", Inbox, lambda **k: Inbox("memory", "s", **k)),
    ("begin options", Inbox.begin, lambda **k: O["inbox"].begin("a", **k)),
    ("begin options", Inbox.begin_async, lambda **k: O["inbox"].begin_async("a", **k)),
    ("begin_many arguments", Inbox.begin_many, lambda **k: O["inbox"].begin_many([], **k)),
    ("begin_many arguments", Inbox.begin_many_async, lambda **k: O["inbox"].begin_many_async([], **k)),
    ("finish_many arguments", Inbox.finish_many, lambda **k: O["inbox"].finish_many([], **k)),
    ("finish_many arguments", Inbox.finish_many_async, lambda **k: O["inbox"].finish_many_async([], **k)),
    ("process options", Inbox.process, lambda **k: O["inbox"].process("p", None, H, **k)),
    ("process options", Inbox.process_async, lambda **k: O["inbox"].process_async("p", None, H, **k)),
    ("process options", Inbox.process_transactional, lambda **k: O["inbox"].process_transactional("p", None, H, **k)),
    ("get arguments", Inbox.get, lambda **k: O["inbox"].get("a", **k)),
    ("get arguments", Inbox.get_async, lambda **k: O["inbox"].get_async("a", **k)),
    ("claim arguments", Inbox.claim, lambda **k: O["inbox"].claim("c", **k)),
    ("idempotent options", Inbox.idempotent, lambda **k: O["inbox"].idempotent("k", **k)),
    ("finish arguments", oncely.Ticket.finish, lambda **k: O["ticket"].finish(b"", **k)),
    ("finish arguments", oncely.Ticket.finish_async, lambda **k: O["ticket"].finish_async(b"", **k)),
    ("fail arguments", oncely.Ticket.fail, lambda **k: O["ticket"].fail(b"", **k)),
    ("fail arguments", oncely.Ticket.fail_async, lambda **k: O["ticket"].fail_async(b"", **k)),
    ("settle options", oncely.Ticket.settle, lambda **k: O["ticket"].settle(**k)),
    # outbox
    ("outbox options", Outbox, lambda **k: Outbox("memory", "q", **k)),
    ("enqueue options", Outbox.enqueue, lambda **k: O["outbox"].enqueue(b"", **k)),
    ("enqueue options", Outbox.enqueue_async, lambda **k: O["outbox"].enqueue_async(b"", **k)),
    ("enqueue_many arguments", Outbox.enqueue_many, lambda **k: O["outbox"].enqueue_many([], **k)),
    ("enqueue_many arguments", Outbox.enqueue_many_async, lambda **k: O["outbox"].enqueue_many_async([], **k)),
    ("lease arguments", Outbox.lease, lambda **k: O["outbox"].lease(**k)),
    ("lease arguments", Outbox.lease_async, lambda **k: O["outbox"].lease_async(**k)),
    ("settle options", Outbox.settle, lambda **k: O["outbox"].settle("d", 1, "ack", **k)),
    ("settle options", Outbox.settle_async, lambda **k: O["outbox"].settle_async("d", 1, "ack", **k)),
    ("cancel arguments", Outbox.cancel, lambda **k: O["outbox"].cancel("x", **k)),
    ("cancel arguments", Outbox.cancel_async, lambda **k: O["outbox"].cancel_async("x", **k)),
    ("get arguments", Outbox.get, lambda **k: O["outbox"].get("x", **k)),
    ("get arguments", Outbox.get_async, lambda **k: O["outbox"].get_async("x", **k)),
    ("replay arguments", Outbox.replay, lambda **k: O["outbox"].replay("x", **k)),
    ("replay arguments", Outbox.replay_async, lambda **k: O["outbox"].replay_async("x", **k)),
    ("dead_letters arguments", Outbox.dead_letters, lambda **k: O["outbox"].dead_letters(**k)),
    ("dead_letters arguments", Outbox.dead_letters_async, lambda **k: O["outbox"].dead_letters_async(**k)),
    ("purge_dead arguments", Outbox.purge_dead, lambda **k: O["outbox"].purge_dead(**k)),
    ("purge_dead arguments", Outbox.purge_dead_async, lambda **k: O["outbox"].purge_dead_async(**k)),
    ("on_event arguments", Outbox.on_event, lambda **k: O["outbox"].on_event(print, **k)),
    ("retry arguments", oncely.Delivery.retry, lambda **k: O["delivery"].retry(**k)),
    ("retry arguments", oncely.Delivery.retry_async, lambda **k: O["delivery"].retry_async(**k)),
    ("snooze arguments", oncely.Delivery.snooze, lambda **k: O["delivery"].snooze(1, **k)),
    ("snooze arguments", oncely.Delivery.snooze_async, lambda **k: O["delivery"].snooze_async(1, **k)),
    ("fail arguments", oncely.Delivery.fail, lambda **k: O["delivery"].fail("r", **k)),
    ("fail arguments", oncely.Delivery.fail_async, lambda **k: O["delivery"].fail_async("r", **k)),
    ("extend arguments", oncely.Delivery.extend, lambda **k: O["delivery"].extend(1, **k)),
    ("extend arguments", oncely.Delivery.extend_async, lambda **k: O["delivery"].extend_async(1, **k)),
    ("execute arguments", oncely.Transaction.execute, lambda **k: O["tx"].execute("SELECT 1", **k)),
    ("enqueue options", oncely.Transaction.enqueue, lambda **k: O["tx"].enqueue(O["outbox"], b"", **k)),
    ("enqueue_many arguments", oncely.Transaction.enqueue_many, lambda **k: O["tx"].enqueue_many(O["outbox"], [], **k)),
    ("RetryPolicy arguments", RetryPolicy, lambda **k: RetryPolicy(POLICY, **k)),
    ("schedule_ms arguments", RetryPolicy.schedule_ms, lambda **k: O["policy"].schedule_ms(0, 1, **k)),
    ("decideMs arguments", RetryPolicy.decide_ms, lambda **k: O["policy"].decide_ms(**DECIDE, **k)),
    # worker
    ("worker options", Worker, lambda **k: Worker(O["outbox"], **k)),
    ("run options", Worker.run, lambda **k: O["worker"].run(H, **k)),
    ("run options", Worker.run_async, lambda **k: O["worker"].run_async(H, **k)),
    ("run options", Worker.run_until_idle, lambda **k: O["worker"].run_until_idle(H, **k)),
    ("run options", Worker.run_until_idle_async, lambda **k: O["worker"].run_until_idle_async(H, **k)),
    ("Retry options", oncely.Retry, lambda **k: oncely.Retry("e", **k)),
    ("Snooze arguments", oncely.Snooze, lambda **k: oncely.Snooze(1, **k)),
    # http
    ("HttpGate options", oncely.HttpGate, lambda **k: oncely.HttpGate("memory", **k)),
    ("admit options", oncely.HttpGate.admit, lambda **k: O["gate"].admit("GET", "/", headers=[], **k)),
    ("admit options", oncely.HttpGate.admit_async, lambda **k: O["gate"].admit_async("GET", "/", headers=[], **k)),
    ("admit options", oncely.HttpGate.admit_now, lambda **k: O["gate"].admit_now("GET", "/", headers=[], **k)),
    ("respond_in_transaction options", oncely.HttpGate.respond_in_transaction,
     lambda **k: O["gate"].respond_in_transaction("GET", "/", H, headers=[], **k)),
    ("complete arguments", oncely.HttpClaim.complete, lambda **k: O["claim"].complete(200, [], b"", **k)),
    ("complete arguments", oncely.HttpClaim.complete_async,
     lambda **k: O["claim"].complete_async(200, [], b"", **k)),
    ("HttpRetry arguments", oncely.HttpRetry, lambda **k: oncely.HttpRetry("k", **k)),
    ("next arguments", oncely.HttpRetry.next, lambda **k: O["retry"].next(None, **k)),
    ("http_verdict arguments", oncely.http_verdict, lambda **k: oncely.http_verdict(None, **k)),
    ("http_request_payload arguments", oncely.http_request_payload,
     lambda **k: oncely.http_request_payload("POST", "http://h/", [], **k)),
    ("http_request_of arguments", oncely.http_request_of,
     lambda **k: oncely.http_request_of(oncely.http_request_payload("POST", "http://h/", [])[1], **k)),
]
IDS = [f"{i}-{getattr(c[1], '__qualname__', c[0])}" for i, c in enumerate(CALLS)]


def known(fn):
    """The names a call takes as keywords, in its signature's order."""
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params
            if p.name not in ("self", "cls") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def message(what, name, names):
    return f"invalid argument `{what}`: has no option `{name}` (known: {', '.join(names)})"


def misspellings(names):
    """A name the call does not have: an edit of one of its names, or any text."""
    letters = st.characters(blacklist_categories=("Cc", "Cs"))
    edits = st.sampled_from(names).flatmap(lambda n: st.one_of(
        st.just(n.upper()),
        st.just(n + "s"),
        st.just(n[:-1]),
        st.integers(0, len(n) - 1).map(lambda i: n[:i] + n[i + 1:]),
        st.integers(0, len(n) - 1).map(lambda i: n[:i] + n[i] + n[i:]),
        st.tuples(st.integers(0, len(n)), letters).map(lambda t: n[:t[0]] + t[1] + n[t[0]:]),
    )) if names else st.nothing()
    return st.one_of(edits, st.text(letters, min_size=1, max_size=64)).filter(lambda s: s and s not in names)


@pytest.mark.parametrize("what,fn,call", CALLS, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_misspelt_keyword_is_invalid_argument_with_the_core_text(what, fn, call, data):
    names = known(fn)
    name = data.draw(misspellings(names), label="name")
    with pytest.raises(oncely.InvalidArgument) as e:
        call(**{name: 1})
    assert e.value.code == "invalid_argument"
    assert str(e.value) == message(what, name, names)


def test_every_public_call_with_parameters_is_checked():
    """A new call (or parameter) without the check fails here: every class and method of
    ``oncely.__all__`` with parameters is in CALLS (not: the error classes, and ``Claim``, which
    only ``Inbox.claim`` makes)."""
    covered = {id(fn) for _, fn, _ in CALLS}
    missing = []
    for name in oncely.__all__:
        obj = getattr(oncely, name)
        if obj is oncely.Claim or (inspect.isclass(obj) and issubclass(obj, BaseException)
                                   and obj not in (oncely.Retry, oncely.Snooze)):
            continue
        if not callable(obj):
            continue
        members = [(name, obj)]
        if inspect.isclass(obj):
            members += [(f"{name}.{m}", getattr(obj, m)) for m in dir(obj)
                        if not m.startswith("_") and not isinstance(inspect.getattr_static(obj, m), property)
                        and type(inspect.getattr_static(obj, m)).__name__ != "getset_descriptor"]
        for label, fn in members:
            if not callable(fn):
                continue
            try:
                names = known(fn)
            except ValueError:      # a native class without a constructor (BeginResult, ...)
                continue
            if names and id(fn) not in covered:
                # a method Inbox inherits from the native class is covered through either
                native = getattr(oncely._native.Inbox, fn.__name__, None) if obj is Inbox else None
                if native is None or id(native) not in covered:
                    missing.append(label)
    assert not missing, missing


def test_a_refused_call_writes_nothing():
    outbox, inbox = Outbox("memory", "q"), Inbox("memory", "s")
    with pytest.raises(oncely.InvalidArgument):
        outbox.enqueue(b"x", id="m", idd="m2")
    assert outbox.get("m") is None and outbox.stats()["ready"] == 0
    with pytest.raises(oncely.InvalidArgument):
        inbox.process("p", None, lambda: b"ran", leese=5)
    assert inbox.get("p") is None
    with pytest.raises(oncely.InvalidArgument):
        with inbox.claim("c", leese=5):
            pass
    assert inbox.get("c") is None


def test_the_issue_example_and_long_or_odd_names():
    with pytest.raises(oncely.InvalidArgument) as e:
        Outbox("memory", "q", leese=5)
    assert str(e.value) == message("outbox options", "leese", known(Outbox))
    # a long name is quoted by a bounded prefix, a control character escaped, a lone surrogate
    # refused as text (the core's rules for quoting caller input)
    with pytest.raises(oncely.InvalidArgument) as e:
        O["outbox"].lease(**{"x" * 100_000: 1})
    assert str(e.value).startswith("invalid argument `lease arguments`: has no option `" + "x" * 64 + "… (100000 bytes)`")
    with pytest.raises(oncely.InvalidArgument, match=r"has no option `a\\nb`"):
        O["outbox"].lease(**{"a\nb": 1})
    with pytest.raises(oncely.InvalidArgument, match="^invalid argument `lease arguments`: holds a lone surrogate"):
        O["outbox"].lease(**{"\ud800": 1})


def test_known_keywords_still_pass_and_defaults_come_from_the_core():
    outbox = Outbox("memory", "q", seed=None, lease=None)
    assert outbox.lease(max=None) == [] and outbox.lease() == []
    assert outbox.dead_letters(after_seq=None, limit=None) == []
    assert ManualClock().now_ms() == ManualClock(start_ms=None).now_ms() == 1_700_000_000_000
    outbox.enqueue(b"a", id="a")
    outbox.enqueue(b"b", id="b")
    assert len(outbox.lease()) == 1      # the core's LEASE_MAX
