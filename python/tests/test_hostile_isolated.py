"""Hostile calls, one per child process: hypothesis generates calls over every public call and
option — wrong types, out-of-range and huge integers, NaN/inf floats, lone surrogates, huge
strings and bytes, unknown keywords, a str where a sequence is expected, and hostile handlers
(raise anything, BaseException subclasses included; return anything; never return; os._exit;
re-enter the same id) — and runs each case in its own child (hostile_child.run_case, forked from
a forkserver that has oncely preloaded), so that a crash or a hang is caught and counted instead
of taking the test run down.

Each case's outcome is one of (documented, pass):
  typed       an oncely.OncelyError subclass (or ReplayedFailure) was raised
  type_error  a TypeError for an argument of the wrong Python type (or a handler's non-bytes
              result), and the case had one
  result      the call returned
  own         the caller's own exception came back: what the hostile handler raised (the
              documented re-raise), or what a hostile object's __index__/__str__ raised
  exit        the handler's os._exit(code) ended the child with that code
  cut         a handler that never returns, cut by the timeout HANG_TIMEOUT (documented: oncely
              never abandons a running handler; the caller's timeout is the only way out)
or (failures): crash (a signal, or an exit code nobody asked for), hang (no answer within
TIMEOUT), untyped (any other exception, e.g. ValueError, OverflowError, pyo3's PanicException),
changed (a call refused before any handler ran changed a row of its SQLite store).

Default: DEFAULT_CASES cases (about a minute on 2 cores); ONCELY_HOSTILE_CASES=N runs N;
ONCELY_HOSTILE_SEED=S fixes hypothesis's seed. The summary line is printed either way.
"""

import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import hostile_child as hc  # noqa: E402
from hostile_child import HANDLER, BadIndex, BadIter, BadKeys, BadStr, BytesSub, Huge, IndexHuge, Ref, StrSub  # noqa: E402

DEFAULT_CASES = 500
CASES = int(os.environ.get("ONCELY_HOSTILE_CASES", DEFAULT_CASES))
TIMEOUT = 30.0          # seconds for one case (debug build, 20 MB inputs, a slow shared machine)
HANG_TIMEOUT = 2.0      # seconds for a case whose handler never returns
PARALLEL = 3            # children at once (most of a case's time is waiting)

# --- what each call takes -------------------------------------------------------------------
# (name, kind, how, valid): how is "pos" (required), "opt" (optional positional-or-keyword),
# "kw" (optional keyword-only) or "kwreq" (required keyword-only).

P = lambda name, kind, how, valid: (name, kind, how, valid)  # noqa: E731
H = P("handler", "handler", "pos", HANDLER)
CALL_OPTS = [P("mode", "mode", "kw", "exactly_once"), P("lease", "secs", "kw", 10.0)]
DECIDE = [P("seed", "int", "kwreq", 0), P("attempts", "int", "kwreq", 1), P("first_attempt_at_ms", "int", "kwreq", 0),
          P("now_ms", "int", "kwreq", 0), P("last_delay_ms", "int", "kw", 1), P("retry_after_ms", "int", "kw", 1)]
ENQ = [P("id", "text", "kw", "n1"), P("key", "text", "kw", "k"), P("headers", "headers", "kw", {"h": "v"}),
       P("delay", "secs", "kw", 0.0)]
MESSAGES = P("messages", "messages", "pos", [b"a", {"payload": b"b", "id": "n2"}])

SPECS = {
    "fingerprint": [P("payload", "bytes", "pos", b"x")],
    "ManualClock": [P("start_ms", "int", "opt", 0)],
    "clock.advance": [P("seconds", "secs", "pos", 1.0)],
    "clock.advance_ms": [P("ms", "int", "pos", 1)],
    "clock.set_ms": [P("ms", "int", "pos", 1)],
    "Store": [P("location", "location", "pos", "memory")],
    "store.transaction": [P("work", "handler", "pos", HANDLER)],
    "Inbox": [P("store", "store", "pos", Ref("store")), P("scope", "text", "pos", "s2"), P("mode", "mode", "kw", None),
              P("lease", "secs", "kw", 5.0), P("retention", "secs", "kw", 60.0),
              P("cache_policy", "cache_policy", "kw", "success_only"), P("recent_capacity", "int", "kw", 10),
              P("max_result_bytes", "int", "kw", 100), P("clock", "clock", "kw", Ref("clock"))],
    "inbox.begin": [P("id", "text", "pos", "b1"), P("payload", "opt_bytes", "opt", b"x")] + CALL_OPTS,
    "inbox.begin_async": [P("id", "text", "pos", "b1"), P("payload", "opt_bytes", "opt", b"x")] + CALL_OPTS,
    "inbox.begin_many": [P("requests", "requests", "pos", ["r1", {"id": "r2", "payload": b"x"}])],
    "inbox.begin_many_async": [P("requests", "requests", "pos", ["r1"])],
    "inbox.finish_many": [P("items", "items", "pos", [(Ref("ticket"), b"r")])],
    "inbox.finish_many_async": [P("items", "items", "pos", [(Ref("ticket"), b"r")])],
    "inbox.process": [P("id", "text", "pos", "p1"), P("payload", "opt_bytes", "pos", None), H]
    + CALL_OPTS + [P("wait", "secs", "kw", 0.1)],
    "inbox.process_async": [P("id", "text", "pos", "p1"), P("payload", "opt_bytes", "pos", None), H]
    + CALL_OPTS + [P("wait", "secs", "kw", 0.1)],
    "inbox.process_transactional": [P("id", "text", "pos", "p1"), P("payload", "opt_bytes", "pos", None), H],
    "inbox.get": [P("id", "text", "pos", "done")],
    "inbox.get_async": [P("id", "text", "pos", "done")],
    "inbox.purge_expired": [],
    "inbox.claim": [P("id", "text", "pos", "c1"), P("payload", "opt_bytes", "opt", None)] + CALL_OPTS,
    "inbox.idempotent": [P("key", "text", "pos", "i1"), P("mode", "mode", "kw", None), P("lease", "secs", "kw", 5.0),
                         P("wait", "secs", "kw", 0.1)],
    "ticket.finish": [P("result", "bytes", "pos", b"r")],
    "ticket.fail": [P("reason", "bytes", "pos", b"r")],
    "ticket.release": [],
    "ticket.settle": [P("result", "opt_bytes", "opt", b"r"), P("error", "text", "opt", None),
                      P("permanent", "bool", "opt", False)],
    "ticket.finish_async": [P("result", "bytes", "pos", b"r")],
    "Outbox": [P("store", "store", "pos", Ref("store")), P("queue", "text", "pos", "q2"), P("mode", "mode", "kw", None),
               P("retry", "policy", "kw", hc.POLICY), P("lease", "secs", "kw", 5.0),
               P("ordering", "ordering", "kw", "fifo_per_key"), P("poison", "poison", "kw", "park"),
               P("park_after", "secs", "kw", 1.0), P("seed", "int", "kw", 1),
               P("retry_budget", "budget", "kw", {"ratio": 0.1}), P("max_payload_bytes", "int", "kw", 100),
               P("clock", "clock", "kw", Ref("clock"))],
    "outbox.enqueue": [P("payload", "bytes", "pos", b"x")] + ENQ,
    "outbox.enqueue_async": [P("payload", "bytes", "pos", b"x")] + ENQ,
    "outbox.enqueue_many": [MESSAGES],
    "outbox.enqueue_many_async": [MESSAGES],
    "outbox.lease": [P("max", "int", "opt", 2)],
    "outbox.lease_async": [P("max", "int", "opt", 2)],
    "outbox.settle": [P("id", "text", "pos", "m1"), P("token", "int", "pos", 1), P("action", "action", "pos", "retry"),
                      P("after", "secs", "kw", 1.0), P("error", "text", "kw", "e"), P("reason", "text", "kw", "r"),
                      P("lease", "secs", "kw", 1.0)],
    "outbox.settle_async": [P("id", "text", "pos", "m1"), P("token", "int", "pos", 1),
                            P("action", "action", "pos", "extend"), P("lease", "secs", "kw", 1.0)],
    "outbox.cancel": [P("id", "text", "pos", "m2")],
    "outbox.get": [P("id", "text", "pos", "m1")],
    "outbox.replay": [P("id", "text", "pos", "m1")],
    "outbox.replay_async": [P("id", "text", "pos", "m1")],
    "outbox.dead_letters": [P("after_seq", "int", "opt", 0), P("limit", "int", "opt", 10)],
    "outbox.dead_letters_async": [P("after_seq", "int", "opt", 0), P("limit", "int", "opt", 10)],
    "outbox.purge_dead": [P("ids", "ids", "opt", ["m1"])],
    "outbox.stats": [],
    "outbox.on_event": [P("callback", "handler", "pos", HANDLER)],
    "delivery.ack": [],
    "delivery.retry": [P("error", "text", "opt", "e"), P("after", "secs", "kw", 1.0)],
    "delivery.retry_async": [P("error", "text", "opt", "e"), P("after", "secs", "kw", 1.0)],
    "delivery.snooze": [P("after", "secs", "pos", 1.0)],
    "delivery.fail": [P("reason", "text", "pos", "r")],
    "delivery.extend": [P("lease", "secs", "pos", 1.0)],
    "delivery.extend_async": [P("lease", "secs", "pos", 1.0)],
    "delivery.release": [],
    "tx.execute": [P("sql", "sql", "pos", "SELECT ?1"), P("params", "params", "opt", [1])],
    "tx.enqueue": [P("outbox", "outbox", "pos", Ref("outbox")), P("payload", "bytes", "pos", b"x")] + ENQ,
    "tx.enqueue_many": [P("outbox", "outbox", "pos", Ref("outbox")), MESSAGES],
    "RetryPolicy": [P("policy", "policy", "pos", hc.POLICY)],
    "policy.schedule_ms": [P("seed", "int", "pos", 1), P("n", "int", "pos", 3)],
    "policy.decide_ms": DECIDE,
    "Worker": [P("outbox", "outbox", "pos", Ref("outbox")), P("concurrency", "int", "kw", 2),
               P("poll_interval", "secs", "kw", 0.01), P("shutdown_timeout", "secs", "kw", 0.5)],
    "worker.run_until_idle": [H],
    "worker.run_until_idle_async": [H],
    "worker.run": [H],
    "worker.run_async": [H],
    "Retry": [P("error", "text", "opt", "e"), P("after", "secs", "kw", 1.0)],
    "Snooze": [P("seconds", "secs", "pos", 1.0)],
}
assert set(SPECS) == set(hc.CALLS), set(SPECS) ^ set(hc.CALLS)

# The Python types a parameter of each kind takes (a value of another type is a "wrong type").
TYPES = {
    "int": (int,), "secs": (int, float), "bool": (bool, int), "bytes": (bytes, bytearray),
    "opt_bytes": (bytes, bytearray, type(None)), "handler": (), "headers": (dict,), "budget": (dict,),
    "policy": (dict, str), "store": (str, Ref), "clock": (Ref,), "outbox": (Ref,), "messages": (list,),
    "requests": (list,), "items": (list,), "ids": (list, type(None)), "params": (list, tuple, type(None)),
}
TEXT_KINDS = {"text", "mode", "cache_policy", "ordering", "poison", "action", "location", "sql"}

# Calls that take a handler come up three times as often: their handlers are half the hostility.
WEIGHTED = sorted(SPECS) + 2 * sorted(c for c, ps in SPECS.items()
                                     if any(p[1] == "handler" for p in ps) or c in ("inbox.claim", "inbox.idempotent"))

# --- hostile values ------------------------------------------------------------------------

surrogate_text = st.builds(lambda a, s, b: a + s + b, st.text(max_size=5),
                           st.sampled_from(["\ud800", "\udfff", "\udc00"]), st.text(max_size=5))
odd_text = st.one_of(
    surrogate_text, st.text(max_size=30), st.just(""), st.just("a\x00b"), st.just("\n\t\x1b"),
    st.sampled_from(["EXACTLY_ONCE", "at-most-once", "fifo", "nope", "ack ", "DROP TABLE x"]),
    st.builds(lambda n: Huge("str", n), st.sampled_from([70_000, 1 << 20, 20 << 20])),
)
odd_int = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([-1, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63) - 1, 2**200]),
    st.just(Huge("int", 5000)), st.just(True),
)
odd_float = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1.0, 1e308, 5e-324, 1e19, 2.0**64, -1e-9]),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_bytes = st.one_of(
    st.binary(max_size=20), st.builds(lambda n: Huge("bytes", n), st.sampled_from([1 << 20, 20 << 20])),
    st.just(bytearray(b"xy")), st.just(BytesSub(b"sub")),
)
# Values of any type: every parameter gets these too ("wrong types").
anything = st.one_of(
    st.none(), st.booleans(), odd_int, odd_float, odd_text, odd_bytes,
    st.sampled_from([BadIndex(), IndexHuge(), BadStr(), StrSub("s"), BadIter(["a"]), BadKeys({"a": 1}),
                     Ref("inbox"), Ref("outbox"), Ref("clock"), Ref("ticket"), Ref("delivery"), Ref("worker"),
                     (), [], {}, frozenset(), 1j, Ellipsis, print]),
    st.lists(st.one_of(st.none(), odd_int, odd_text), max_size=3),
    st.dictionaries(st.one_of(odd_text, odd_int), st.one_of(st.none(), odd_int, odd_text), max_size=3),
)


def same_type(kind, valid):
    """Hostile values of the parameter's own type."""
    if kind in TEXT_KINDS:
        return odd_text
    if kind == "int":
        return odd_int
    if kind == "secs":
        return st.one_of(odd_float, odd_int)
    if kind in ("bytes", "opt_bytes"):
        return odd_bytes
    if kind == "headers":
        return st.dictionaries(odd_text, odd_text, max_size=3)
    if kind == "budget":
        return st.dictionaries(st.sampled_from(["ratio", "min_per_second", "burst", "rate"]),
                               st.one_of(odd_float, odd_text), max_size=3)
    if kind == "policy":
        return st.one_of(odd_text, st.fixed_dictionaries({"max_attempts": odd_int}), st.builds(
            lambda d, n: {"max_attempts": n, "backoff": {"kind": "fixed", "delay_ms": d}, "jitter": "none"},
            odd_int, odd_int))
    if kind in ("messages", "requests", "ids"):
        item = st.one_of(odd_text, odd_bytes, st.dictionaries(
            st.sampled_from(["payload", "id", "key", "headers", "delay", "mode", "lease", "paylod"]),
            st.one_of(odd_text, odd_bytes, odd_float), max_size=3))
        return st.one_of(st.lists(item, max_size=3), st.just(Huge("ids", 100_000)))
    if kind == "items":
        return st.lists(st.tuples(st.sampled_from([Ref("ticket"), Ref("inbox")]), odd_bytes), max_size=3)
    if kind == "params":
        return st.one_of(st.lists(st.one_of(odd_int, odd_float, odd_text, odd_bytes), max_size=3))
    if kind == "bool":
        return st.booleans()
    if kind == "store":
        return st.one_of(odd_text.filter(lambda s: not isinstance(s, str) or "postgres" not in s.lower()),
                         st.sampled_from(["sqlite::memory:", "memory", "sub/dir/x.db", "sqlite:", "."]))
    return st.nothing()


def wrong(value, kind):
    """Whether `value` (or something inside it) is of another type than `kind` takes."""
    if kind in TEXT_KINDS:
        return not isinstance(value, str) or isinstance(value, StrSub)
    if kind == "handler":
        return False
    ok = TYPES.get(kind, ())
    if isinstance(value, Ref) and kind in ("outbox", "clock", "store"):
        # A fixture of another class (an Inbox where an Outbox goes) is a wrong type too.
        return value.name != kind
    if isinstance(value, Huge):
        if value.kind == "ids":     # a list of str
            return list not in ok or kind not in ("requests", "ids")
        return {"str": str, "bytes": bytes, "int": int}[value.kind] not in ok
    if not isinstance(value, ok) or isinstance(value, (BadIter, BadKeys)):
        return True
    if isinstance(value, (list, tuple)):
        return any(wrong_element(v, kind) for v in value)
    if isinstance(value, dict):
        return any(not isinstance(k, str) or isinstance(k, StrSub)
                   or not isinstance(v, (str, float, int, bytes, bytearray, dict, type(None), Huge))
                   or isinstance(v, (BadKeys, StrSub)) for k, v in value.items())
    return False


# What the elements of each kind of list may be.
ELEMENTS = {"messages": (bytes, bytearray, dict), "requests": (str, dict), "ids": (str,), "items": (tuple,),
            "params": (type(None), int, float, str, bytes, bytearray)}


# The fields of a dict element, by list kind, and the types each takes (None stands for absent).
ELEMENT_FIELDS = {
    "messages": {"payload": (bytes, bytearray), "id": (str,), "key": (str,), "headers": (dict,), "delay": (int, float)},
    "requests": {"id": (str,), "payload": (bytes, bytearray), "mode": (str,), "lease": (int, float)},
}


def wrong_element(v, kind):
    if isinstance(v, Huge):
        v = {"str": "", "bytes": b"", "ids": [], "int": 0}[v.kind]
    if not isinstance(v, ELEMENTS.get(kind, (object,))) or isinstance(v, (StrSub, BadKeys, BadIter)):
        return True
    if isinstance(v, dict):
        fields = ELEMENT_FIELDS.get(kind, {})
        return wrong(v, "headers") or any(
            k in fields and f is not None and not isinstance(f, (*fields[k], Huge))
            or k == "headers" and isinstance(f, dict) and wrong(f, "headers")
            for k, f in v.items())
    if isinstance(v, tuple):
        return len(v) != 2 or not isinstance(v[0], Ref) or v[0].name != "ticket" or wrong(v[1], "bytes")
    return False


# Handler behaviours: ("return", v), ("raise", exception name, argument), ("hang",),
# ("exit", code), ("reenter",).
handler_specs = st.one_of(
    st.tuples(st.just("return"), st.one_of(st.just(b"ok"), st.just(None), st.just(True), odd_bytes, anything)),
    st.tuples(st.just("raise"), st.sampled_from(sorted(hc.EXCEPTIONS)), st.one_of(odd_text, odd_float, odd_int)),
    st.just(("hang",)),
    st.tuples(st.just("exit"), st.integers(0, 120)),
    st.just(("reenter",)),
)


@st.composite
def cases(draw):
    call = draw(st.sampled_from(WEIGHTED))
    args, kwargs, wrong_type, hostile, positional = [], {}, False, False, True
    for name, kind, how, valid in SPECS[call]:
        choice = draw(st.sampled_from(["valid"] * 3 + ["omit", "same", "any"]))
        if choice == "omit" and how in ("opt", "kw"):
            positional = positional and how != "opt"
            continue
        if kind == "handler" or choice in ("valid", "omit"):
            value = valid
        elif choice == "same":
            value, hostile = draw(same_type(kind, valid) | st.just(valid)), True
        else:
            value, hostile = draw(anything), True
        wrong_type = wrong_type or (value is not valid and wrong(value, kind))
        if how == "pos" or (how == "opt" and positional and draw(st.booleans())):
            if kwargs:      # a positional after a keyword: give the rest by keyword
                kwargs[name] = value
            else:
                args.append(value)
        else:
            kwargs[name] = value
            positional = positional and how not in ("opt",)
    unknown = draw(st.lists(st.one_of(st.sampled_from(["leese", "idd", "modes", "Mode", "timeout", "max_"]),
                                      st.text(min_size=1, max_size=12)), max_size=2))
    known_names = {p[0] for p in SPECS[call]}
    unknown = [u for u in unknown if u not in known_names]
    for u in unknown:
        kwargs[u] = draw(st.one_of(st.just(1), anything))
    needs_handler = any(p[1] == "handler" for p in SPECS[call]) or call in ("inbox.claim", "inbox.idempotent")
    handler = draw(handler_specs) if needs_handler else None
    if handler and handler[0] == "return" and call.startswith(("inbox.", "store.")):
        wrong_type = wrong_type or not isinstance(handler[1], (bytes, bytearray))   # a non-bytes result
    return {
        "call": call, "args": args, "kwargs": kwargs, "handler": handler,
        "store": draw(st.sampled_from(["sqlite", "memory"])),
        "async_handler": draw(st.booleans()) and call.endswith("_async"),
        "wrong_type": wrong_type or (bool(unknown) and not SPECS[call]),
        "only_unknown": bool(unknown) and not hostile and not handler,
        "unknown": unknown,
    }


def collect(n):
    out = []
    decorators = [settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
                           suppress_health_check=list(HealthCheck))]
    if os.environ.get("ONCELY_HOSTILE_SEED"):
        decorators.append(seed(int(os.environ["ONCELY_HOSTILE_SEED"])))

    @given(cases())
    def gather(case):
        out.append(case)

    for d in decorators:
        gather = d(gather)
    gather()
    return out


# --- running and classifying ----------------------------------------------------------------

FAILURES = ("crash", "hang", "untyped", "changed")
KINDS = ("typed", "type_error", "result", "own", "exit", "cut") + FAILURES


def expected_hang(case):
    """A handler that never returns; or one that re-enters the store from inside its SQLite
    transaction (process_transactional runs it on the store's writer thread, and its docs say a
    call on the same store there waits for that thread: a deadlock, reported to the core)."""
    h = case["handler"] or ()
    return h[:1] == ("hang",) or (h[:1] == ("reenter",) and case["call"] == "inbox.process_transactional"
                                  and case["store"] == "sqlite")


def classify(case, exitcode, timed_out, outcome, before, after):
    h = case["handler"] or ()
    if timed_out:
        return "cut" if expected_hang(case) else "hang"
    if h[:1] == ("exit",) and exitcode == h[1] and (outcome is None or exitcode != 0):
        return "exit"
    if exitcode != 0 or outcome is None:
        return "crash"
    kind, type_name, module, is_oncely, handler_calls, text = outcome
    if kind == "result":
        verdict = "result"
    elif is_oncely:
        verdict = "typed"
    elif text.startswith("own|"):
        verdict = "own"
    elif type_name == "TypeError" and case["wrong_type"]:
        verdict = "type_error"
    else:
        return "untyped"
    if case["only_unknown"] and SPECS[case["call"]] and not (kind == "raised" and type_name == "InvalidArgument"):
        return "untyped"    # an unknown keyword alone must be the core's InvalidArgument
    refused = kind == "raised" and handler_calls == 0
    # Ticket.settle settles by the result's outcome as process does: a result that is not bytes,
    # or too big, fails the claim (released) and then raises
    documented_settle = case["call"] == "ticket.settle" and (type_name == "TypeError" or "`result`" in text)
    if case["call"].startswith("tx.") and before is not None:
        # the refused step runs inside process_transactional, whose claim of its own id has
        # taken a fencing token (oncely_meta.last_token) by then; everything else rolls back
        before, after = ({t: r for t, r in d.items() if t != "oncely_meta"} for d in (before, after or {}))
    if refused and not documented_settle and before is not None and after != before:
        return "changed"
    return verdict


def run_all(cases_):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["oncely", "hostile_child"])
    results, running, pending = [], [], list(enumerate(cases_))
    root = tempfile.mkdtemp(prefix="oncely-hostile-")
    try:
        while pending or running:
            while pending and len(running) < PARALLEL:
                i, case = pending.pop(0)
                workdir = os.path.join(root, str(i))
                os.mkdir(workdir)
                parent, child = ctx.Pipe(duplex=False)
                p = ctx.Process(target=hc.run_case, args=(case, child, workdir), daemon=True)
                p.start()
                child.close()
                limit = HANG_TIMEOUT if expected_hang(case) else TIMEOUT
                running.append((i, case, p, parent, workdir, time.monotonic() + limit, {}))
            time.sleep(0.002)
            still = []
            for item in running:
                i, case, p, conn, workdir, deadline, got = item
                try:
                    while conn.poll():
                        msg = conn.recv()
                        got[msg[0]] = msg[1:]
                except (EOFError, OSError):
                    pass
                if p.exitcode is None and time.monotonic() < deadline:
                    still.append(item)
                    continue
                timed_out = p.exitcode is None
                if timed_out:
                    p.kill()
                p.join()
                try:
                    while conn.poll():
                        msg = conn.recv()
                        got[msg[0]] = msg[1:]
                except (EOFError, OSError):
                    pass
                conn.close()
                before = got.get("before", (None,))[0]
                after = hc.rows(os.path.join(workdir, "store.db")) if before is not None else None
                verdict = classify(case, p.exitcode, timed_out, got.get("outcome"), before, after)
                results.append((verdict, case, p.exitcode, got.get("outcome")))
                shutil.rmtree(workdir, ignore_errors=True)
            running = still
    finally:
        for item in running:
            item[2].kill()
        shutil.rmtree(root, ignore_errors=True)
    return results


def short(case):
    text = repr({k: case[k] for k in ("call", "args", "kwargs", "handler", "store", "async_handler")})
    return text if len(text) < 400 else text[:400] + "…"


def test_hostile_calls_each_in_its_own_process(capsys):
    start = time.monotonic()
    cases_ = collect(CASES)
    results = run_all(cases_)
    counts = Counter(v for v, *_ in results)
    took = time.monotonic() - start
    line = (f"hostile isolated: {len(results)} cases over {len({c['call'] for c in cases_})} calls in {took:.1f} s: "
            + ", ".join(f"{k} {counts.get(k, 0)}" for k in KINDS))
    with capsys.disabled():
        print("\n" + line)
    bad = [(v, short(c), code, o) for v, c, code, o in results if v in FAILURES]
    assert not bad, line + "\n" + "\n".join(map(repr, bad[:20]))
