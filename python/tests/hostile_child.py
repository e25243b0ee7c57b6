"""The child side of test_hostile_isolated.py: runs ONE hostile case in its own process and says
what happened. A case is plain data (picklable): the call's name, its arguments (values, or the
markers below, expanded here), the store kind and the handler's behaviour. The parent generates
cases (hypothesis), runs each here in a forkserver child with a timeout, and classifies exits.

    run_case(case, conn, workdir)   # the Process target; sends ("before", rows) then ("outcome", ...)
"""

import asyncio
import inspect
import os
import sqlite3
import threading
import time

import oncely
from oncely import Inbox, ManualClock, Outbox, RetryPolicy, Store, Worker

POLICY = {"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}

# --- values the parent cannot (or should not) send: expanded in the child ------------------


class Huge:
    """A huge value, made here: `kind` is "str", "bytes", "ids" (a list of n ids) or "int"
    (10**n)."""

    def __init__(self, kind, n):
        self.kind, self.n = kind, n

    def make(self):
        if self.kind == "str":
            return "x" * self.n
        if self.kind == "bytes":
            return b"x" * self.n
        if self.kind == "ids":
            return [f"id-{i}" for i in range(self.n)]
        return 10 ** self.n

    def __repr__(self):
        return f"Huge({self.kind!r}, {self.n})"


class Ref:
    """One of the case's fixtures (an object the parent cannot pickle): "inbox", "outbox",
    "clock", "store", "ticket", "delivery", "worker"."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Ref({self.name!r})"


class HostileError(Exception):
    """What the hostile objects below raise: the caller's own exception, which a call may let
    through (a documented result, like any exception from the caller's own code)."""


class BadIndex:
    def __index__(self):
        raise HostileError("__index__")

    def __repr__(self):
        return "BadIndex()"


class IndexHuge:
    def __index__(self):
        return 2**100

    def __repr__(self):
        return "IndexHuge()"


class BadStr:
    def __str__(self):
        raise HostileError("__str__")

    def __repr__(self):
        return "BadStr()"

    def __float__(self):
        raise HostileError("__float__")


class StrSub(str):
    def __str__(self):
        raise HostileError("__str__")


class BytesSub(bytes):
    pass


class BadIter(list):
    def __iter__(self):
        raise HostileError("__iter__")

    def __reduce__(self):
        return (BadIter, (list.copy(self),))


class BadKeys(dict):
    def keys(self):
        raise HostileError("keys")

    def items(self):
        raise HostileError("items")

    def __reduce__(self):
        return (BadKeys, (dict.copy(self),))


class CustomBase(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


class BadStrExc(Exception):
    def __str__(self):
        raise RuntimeError("no text")


class BadStrPermanent(oncely.Permanent):
    def __str__(self):
        raise ValueError("no text")


# Exceptions a handler may raise, by name (an argument the parent picked).
EXCEPTIONS = {
    "Exception": lambda a: Exception(a),
    "ValueError": lambda a: ValueError(a),
    "Permanent": lambda a: oncely.Permanent(a),
    "BadStrExc": lambda a: BadStrExc(),
    "BadStrPermanent": lambda a: BadStrPermanent(),
    "KeyboardInterrupt": lambda a: KeyboardInterrupt(a),
    "SystemExit": lambda a: SystemExit(a),
    "GeneratorExit": lambda a: GeneratorExit(a),
    "CustomBase": lambda a: CustomBase(a),
    "CancelledError": lambda a: asyncio.CancelledError(a),
    "MemoryError": lambda a: MemoryError(a),
    "StopIteration": lambda a: StopIteration(a),
    "RecursionError": lambda a: RecursionError(a),
    "InProgress": lambda a: oncely.InProgress(a),
    "Retry": lambda a: oncely.Retry(str(a), after=a if not isinstance(a, str) else None),
    "Snooze": lambda a: oncely.Snooze(a),
}


def build(v, fx):
    if isinstance(v, Huge):
        return v.make()
    if isinstance(v, Ref):
        return fx[v.name]
    if type(v) is list:
        return [build(x, fx) for x in v]
    if type(v) is tuple:
        return tuple(build(x, fx) for x in v)
    if type(v) is dict:
        return {build(k, fx): build(x, fx) for k, x in v.items()}
    return v


# --- handlers -------------------------------------------------------------------------------


class Handlers:
    """Makes the case's handler from its spec: ("return", value), ("raise", name, arg),
    ("hang",), ("exit", code), ("reenter",). `raised` keeps what it raised; `calls` counts."""

    def __init__(self, spec, fx, reenter):
        self.spec, self.fx, self.reenter = spec, fx, reenter
        self.calls, self.raised = 0, []

    def _act(self):
        self.calls += 1
        kind = self.spec[0]
        if kind == "return":
            return build(self.spec[1], self.fx)
        if kind == "raise":
            exc = EXCEPTIONS[self.spec[1]](build(self.spec[2], self.fx))
            self.raised.append(exc)
            raise exc
        if kind == "hang":
            time.sleep(3600)
        if kind == "exit":
            os._exit(self.spec[1])
        if kind == "reenter":
            if self.calls > 3:      # bounded: a re-entered handler re-enters at most 3 deep
                return b"inner"
            return self.reenter()
        raise AssertionError(kind)

    def sync(self):
        return lambda *a: self._act()

    def coro(self):
        async def handler(*a):
            if self.spec[0] == "hang":
                await asyncio.sleep(3600)
            return self._act()
        return handler


# --- fixtures -------------------------------------------------------------------------------


def fixtures(case, workdir):
    location = os.path.join(workdir, "store.db") if case["store"] == "sqlite" else "memory"
    clock = ManualClock()
    store = Store(location)
    inbox = Inbox(store, "s", clock=clock, cache_policy="success_and_failure", lease=30)
    outbox = Outbox(store, "q", clock=clock, retry=POLICY, lease=30)
    outbox.enqueue(b"p1", id="m1", key="k")
    outbox.enqueue(b"p2", id="m2")
    (delivery,) = outbox.lease(1)
    ticket = inbox.begin("t1", b"x").ticket
    inbox.process("done", b"x", lambda: b"r")
    fx = {"clock": clock, "store": store, "inbox": inbox, "outbox": outbox, "delivery": delivery,
          "ticket": ticket, "worker": Worker(outbox, concurrency=2, poll_interval=0.01, shutdown_timeout=0.5),
          "policy": RetryPolicy(POLICY), "location": location}
    return fx


def rows(path):
    """Every row of every table of the SQLite file at `path`, sorted (None: no file)."""
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        conn.close()


# --- the calls ------------------------------------------------------------------------------
# name -> (async?, function(fx, handler, *args, **kwargs)). `handler` is the case's handler
# (None when the call takes none); the parent's table says which parameters each call has.

def _claim(fx, h, *a, **k):
    with fx["inbox"].claim(*a, **k) as c:
        if c.claimed:
            c.result = h.sync()()
    return c.outcome


def _idempotent(fx, h, *a, **k):
    return fx["inbox"].idempotent(*a, **k)(h.sync())()


def _on_event(fx, h, *a, **k):
    fx["outbox"].on_event(*a, **k)
    return fx["outbox"].enqueue(b"e", id="ev")


def _run(fx, h, *a, **k):
    w = fx["worker"]
    threading.Timer(0.3, w.stop).start()
    return w.run(*a, **k)


async def _run_async(fx, h, *a, **k):
    w = fx["worker"]
    asyncio.get_running_loop().call_later(0.3, w.stop)
    return await w.run_async(*a, **k)


def _tx(method):
    def call(fx, h, *a, **k):
        def work(tx):
            getattr(tx, method)(*a, **k)
            return b"ok"
        return fx["inbox"].process_transactional("txcase", None, work)
    return call


CALLS = {
    "fingerprint": (False, lambda fx, h, *a, **k: oncely.fingerprint(*a, **k)),
    "ManualClock": (False, lambda fx, h, *a, **k: ManualClock(*a, **k)),
    "clock.advance": (False, lambda fx, h, *a, **k: fx["clock"].advance(*a, **k)),
    "clock.advance_ms": (False, lambda fx, h, *a, **k: fx["clock"].advance_ms(*a, **k)),
    "clock.set_ms": (False, lambda fx, h, *a, **k: fx["clock"].set_ms(*a, **k)),
    "Store": (False, lambda fx, h, *a, **k: Store(*a, **k)),
    "store.transaction": (False, lambda fx, h, *a, **k: fx["store"].transaction(*a, **k)),
    "Inbox": (False, lambda fx, h, *a, **k: Inbox(*a, **k)),
    "inbox.begin": (False, lambda fx, h, *a, **k: fx["inbox"].begin(*a, **k)),
    "inbox.begin_async": (True, lambda fx, h, *a, **k: fx["inbox"].begin_async(*a, **k)),
    "inbox.begin_many": (False, lambda fx, h, *a, **k: fx["inbox"].begin_many(*a, **k)),
    "inbox.begin_many_async": (True, lambda fx, h, *a, **k: fx["inbox"].begin_many_async(*a, **k)),
    "inbox.finish_many": (False, lambda fx, h, *a, **k: fx["inbox"].finish_many(*a, **k)),
    "inbox.finish_many_async": (True, lambda fx, h, *a, **k: fx["inbox"].finish_many_async(*a, **k)),
    "inbox.process": (False, lambda fx, h, *a, **k: fx["inbox"].process(*a, **k)),
    "inbox.process_async": (True, lambda fx, h, *a, **k: fx["inbox"].process_async(*a, **k)),
    "inbox.process_transactional": (False, lambda fx, h, *a, **k: fx["inbox"].process_transactional(*a, **k)),
    "inbox.get": (False, lambda fx, h, *a, **k: fx["inbox"].get(*a, **k)),
    "inbox.get_async": (True, lambda fx, h, *a, **k: fx["inbox"].get_async(*a, **k)),
    "inbox.purge_expired": (False, lambda fx, h, *a, **k: fx["inbox"].purge_expired(*a, **k)),
    "inbox.claim": (False, _claim),
    "inbox.idempotent": (False, _idempotent),
    "ticket.finish": (False, lambda fx, h, *a, **k: fx["ticket"].finish(*a, **k)),
    "ticket.fail": (False, lambda fx, h, *a, **k: fx["ticket"].fail(*a, **k)),
    "ticket.release": (False, lambda fx, h, *a, **k: fx["ticket"].release(*a, **k)),
    "ticket.settle": (False, lambda fx, h, *a, **k: fx["ticket"].settle(*a, **k)),
    "ticket.finish_async": (True, lambda fx, h, *a, **k: fx["ticket"].finish_async(*a, **k)),
    "Outbox": (False, lambda fx, h, *a, **k: Outbox(*a, **k)),
    "outbox.enqueue": (False, lambda fx, h, *a, **k: fx["outbox"].enqueue(*a, **k)),
    "outbox.enqueue_async": (True, lambda fx, h, *a, **k: fx["outbox"].enqueue_async(*a, **k)),
    "outbox.enqueue_many": (False, lambda fx, h, *a, **k: fx["outbox"].enqueue_many(*a, **k)),
    "outbox.enqueue_many_async": (True, lambda fx, h, *a, **k: fx["outbox"].enqueue_many_async(*a, **k)),
    "outbox.lease": (False, lambda fx, h, *a, **k: fx["outbox"].lease(*a, **k)),
    "outbox.lease_async": (True, lambda fx, h, *a, **k: fx["outbox"].lease_async(*a, **k)),
    "outbox.settle": (False, lambda fx, h, *a, **k: fx["outbox"].settle(*a, **k)),
    "outbox.settle_async": (True, lambda fx, h, *a, **k: fx["outbox"].settle_async(*a, **k)),
    "outbox.cancel": (False, lambda fx, h, *a, **k: fx["outbox"].cancel(*a, **k)),
    "outbox.get": (False, lambda fx, h, *a, **k: fx["outbox"].get(*a, **k)),
    "outbox.replay": (False, lambda fx, h, *a, **k: fx["outbox"].replay(*a, **k)),
    "outbox.replay_async": (True, lambda fx, h, *a, **k: fx["outbox"].replay_async(*a, **k)),
    "outbox.dead_letters": (False, lambda fx, h, *a, **k: fx["outbox"].dead_letters(*a, **k)),
    "outbox.dead_letters_async": (True, lambda fx, h, *a, **k: fx["outbox"].dead_letters_async(*a, **k)),
    "outbox.purge_dead": (False, lambda fx, h, *a, **k: fx["outbox"].purge_dead(*a, **k)),
    "outbox.stats": (False, lambda fx, h, *a, **k: fx["outbox"].stats(*a, **k)),
    "outbox.on_event": (False, _on_event),
    "delivery.ack": (False, lambda fx, h, *a, **k: fx["delivery"].ack(*a, **k)),
    "delivery.retry": (False, lambda fx, h, *a, **k: fx["delivery"].retry(*a, **k)),
    "delivery.retry_async": (True, lambda fx, h, *a, **k: fx["delivery"].retry_async(*a, **k)),
    "delivery.snooze": (False, lambda fx, h, *a, **k: fx["delivery"].snooze(*a, **k)),
    "delivery.fail": (False, lambda fx, h, *a, **k: fx["delivery"].fail(*a, **k)),
    "delivery.extend": (False, lambda fx, h, *a, **k: fx["delivery"].extend(*a, **k)),
    "delivery.extend_async": (True, lambda fx, h, *a, **k: fx["delivery"].extend_async(*a, **k)),
    "delivery.release": (False, lambda fx, h, *a, **k: fx["delivery"].release(*a, **k)),
    "tx.execute": (False, _tx("execute")),
    "tx.enqueue": (False, _tx("enqueue")),
    "tx.enqueue_many": (False, _tx("enqueue_many")),
    "RetryPolicy": (False, lambda fx, h, *a, **k: RetryPolicy(*a, **k)),
    "policy.schedule_ms": (False, lambda fx, h, *a, **k: fx["policy"].schedule_ms(*a, **k)),
    "policy.decide_ms": (False, lambda fx, h, *a, **k: fx["policy"].decide_ms(*a, **k)),
    "Worker": (False, lambda fx, h, *a, **k: Worker(*a, **k)),
    "worker.run_until_idle": (False, lambda fx, h, *a, **k: fx["worker"].run_until_idle(*a, **k)),
    "worker.run_until_idle_async": (True, lambda fx, h, *a, **k: fx["worker"].run_until_idle_async(*a, **k)),
    "worker.run": (False, _run),
    "worker.run_async": (True, _run_async),
    "Retry": (False, lambda fx, h, *a, **k: oncely.Retry(*a, **k)),
    "Snooze": (False, lambda fx, h, *a, **k: oncely.Snooze(*a, **k)),
}

class Handler:
    """The marker for "the case's handler" in an argument list."""

    def __repr__(self):
        return "HANDLER"


HANDLER = Handler()


def run_case(case, conn, workdir):
    """The child: sets up fixtures, sends the store's rows, makes the call, sends its outcome
    ("result" | "raised", type name, module, is-OncelyError, the handler's part, text)."""
    os.chdir(workdir)      # a location the case names (`Store("x")`) lands in the case's folder
    fx = fixtures(case, workdir)
    is_async, fn = CALLS[case["call"]]

    def reenter():
        name = case["call"]
        same = args[0] if args and isinstance(args[0], str) else "reenter"     # the case's own id
        if "process" in name or "idempotent" in name:
            return fx["inbox"].process(same, None, handlers.sync())
        if "claim" in name:
            _claim(fx, handlers, same)     # the same id's claim, nested
            return b"outer"
        if "worker" in name:
            return fx["outbox"].enqueue(b"p2", id="m2")  # the same id and payload: already queued
        if "transaction" in name:
            return b""       # a nested store call would wait for the writer thread (documented)
        return b""

    handlers = Handlers(case["handler"] or ("return", b"ok"), fx, reenter)
    use_async_handler = case.get("async_handler", False)
    h = handlers.coro() if use_async_handler else handlers.sync()
    args = [h if isinstance(a, Handler) else build(a, fx) for a in case["args"]]
    kwargs = {k: (h if isinstance(v, Handler) else build(v, fx)) for k, v in case["kwargs"].items()}
    conn.send(("before", rows(os.path.join(workdir, "store.db")) if case["store"] == "sqlite" else None))
    try:
        if is_async:
            async def go():
                r = fn(fx, handlers, *args, **kwargs)
                return await r if inspect.isawaitable(r) else r
            r = asyncio.run(go())
        else:
            r = fn(fx, handlers, *args, **kwargs)
        outcome = ("result", type(r).__name__, type(r).__module__, False, handlers.calls, "")
    except BaseException as e:  # noqa: BLE001 - the point: everything is classified
        own = any(e is x for x in handlers.raised) or isinstance(e, HostileError)
        outcome = ("raised", type(e).__name__, type(e).__module__,
                   isinstance(e, (oncely.OncelyError, oncely.ReplayedFailure)),
                   handlers.calls, ("own" if own else "") + "|" + safe_text(e))
    conn.send(("outcome",) + outcome)
    conn.close()
    # Leave at once: the worker's or a handler's threads must not keep the child alive.
    os._exit(0)


def safe_text(e):
    try:
        return str(e)[:300]
    except BaseException:  # noqa: BLE001
        return f"<{type(e).__name__} with a failing __str__>"
