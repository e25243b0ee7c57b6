"""The Python runner of oncely's conformance scenarios (tests/conformance/README.md).

Every ``tests/conformance/scenarios/**/*.json`` runs unchanged on the "memory" store and on an
SQLite temp file, one pytest case per scenario and backend, with the same canonical rendering and
the same extra checks (growing fencing tokens, documented delay bounds) as the Rust runner.
``ONCELY_CONFORMANCE_FILTER=substring`` restricts the run, as there.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest

import oncely
from oncely import Inbox, ManualClock, OncelyError, Outbox, Permanent, Retry, RetryPolicy, Snooze, Store, Worker

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "conformance" / "scenarios"
CLOCK_START_MS = 1_700_000_000_000
DEFAULT_SCOPE = "default"
DEFAULT_QUEUE = "default"
DEFAULT_RETRY = {
    "max_attempts": 10,
    "backoff": {"kind": "exponential", "initial_ms": 100, "factor": 2.0, "max_ms": 60000},
    "jitter": "full",
}
MODES = ("at_most_once", "at_least_once", "exactly_once")


class Malformed(Exception):
    """The scenario itself is wrong (a typo, a missing field, an unknown name)."""


class HandlerFailed(Exception):
    """What a scenario's failing handler raises when the failure is retryable."""


class HandlerFailedPermanently(Permanent):
    """What a scenario's failing handler raises when the failure is permanent."""


# What this runner's language can express (a handler may return any value, hints any number).
# The scenario format itself is checked once, by the Rust runner against
# tests/conformance/scenario.schema.json: this runner only maps steps to calls.
CAPABILITIES = {"dynamic_handlers"}


class HandlerFailure(Exception):
    """The exception a `work` step's `raise` handler raises (tests/conformance/README.md)."""


def _raise(exc):
    raise exc


# A `work` step's handler, by `does`.
WORK_HANDLERS = {
    "return_nothing": lambda h: lambda m: None,
    "return_true": lambda h: lambda m: True,
    "return": lambda h: lambda m: h["value"],
    "raise_retry": lambda h: lambda m: _raise(
        Retry(h["message"], after=None if "after_ms" not in h else h["after_ms"] / 1000)),
    "raise_snooze": lambda h: lambda m: _raise(Snooze(h["after_ms"] / 1000)),
    "raise_permanent": lambda h: lambda m: _raise(Permanent(h["message"])),
    "raise": lambda h: lambda m: _raise(HandlerFailure(h["message"])),
}


def work_handler(h):
    return WORK_HANDLERS[h["does"]](h)


def json_eq(a, b):
    """JSON equality: 1 is not 1.0, true is not 1, null is not absent."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b))
    return a == b


def text(b):
    return None if b is None else b.decode("utf-8", "replace")


def secs(ms):
    return None if ms is None else ms / 1000


def off(t_ms):
    return t_ms - CLOCK_START_MS


def err(e: OncelyError):
    return {"error": e.code}


# ------------------------------------------------------------------------------------------------
# Documented delay bounds (README "Checks beyond expect"), computed independently of the core.
# ------------------------------------------------------------------------------------------------


def delay_bounds(policy, n, prev, prev_known=True):
    b = policy["backoff"]
    n = max(n, 1)
    if b["kind"] == "decorrelated":
        base = float(b["base_ms"])
        if prev_known:
            top = min(max((base if prev is None else float(prev)) * 3.0, base), float(b["max_ms"]))
        else:
            top = float(b["max_ms"])
        return math.floor(base), math.floor(top)
    if b["kind"] == "fixed":
        base = float(b["delay_ms"])
    elif b["kind"] == "linear":
        base = min(float(b["initial_ms"]) + float(b["step_ms"]) * (n - 1), float(b["max_ms"]))
    else:
        try:
            grown = float(b["initial_ms"]) * float(b["factor"]) ** (n - 1)
        except OverflowError:
            grown = math.inf
        base = min(grown, float(b["max_ms"]))
    jitter = policy.get("jitter", "full")
    if jitter == "none":
        return math.floor(base), math.floor(base)
    if jitter == "equal":
        return math.floor(base / 2), math.floor(base)
    return 0, math.floor(base)


def check_schedule_bounds(policy, delays):
    prev = None
    for i, d in enumerate(delays):
        lo, hi = delay_bounds(policy, i + 1, prev)
        if not lo <= d <= hi:
            return f"invariant: delay {i + 1} of the schedule is {d} ms, outside the documented [{lo}, {hi}] ms"
        prev = d
    return None


# ------------------------------------------------------------------------------------------------
# Backends
# ------------------------------------------------------------------------------------------------


class MemoryBackend:
    name = "memory"

    def __init__(self, tmp):
        self.store = Store("memory")

    def get(self):
        return self.store

    def restart(self):
        pass  # the store stands in for a shared durable one: it survives


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp):
        self.path = str(tmp / "oncely.db")
        self.store = None

    def get(self):
        if self.store is None:
            self.store = Store(self.path)
        return self.store

    def restart(self):
        self.store = None  # the last handle: the file is closed


class PostgresBackend:
    """A fresh schema of its own on the server in ONCELY_POSTGRES_URL for each scenario."""

    name = "postgres"
    _count = 0

    def __init__(self, tmp):
        PostgresBackend._count += 1
        schema = f"py_conformance_{os.getpid()}_{PostgresBackend._count}"
        self.url = Store.postgres_schema_url(os.environ["ONCELY_POSTGRES_URL"], schema)
        self.store = None

    def get(self):
        if self.store is None:
            self.store = Store(self.url)
        return self.store

    def restart(self):
        self.store = None  # the last handle: the pool's connections close


BACKENDS = {"memory": MemoryBackend, "sqlite": SqliteBackend}
if os.environ.get("ONCELY_POSTGRES_URL"):
    BACKENDS["postgres"] = PostgresBackend


def test_postgres_runs_under_ci():
    """Under CI the PostgreSQL runs must not skip; elsewhere a missing server is said loudly."""
    if os.environ.get("ONCELY_POSTGRES_URL"):
        return
    assert os.environ.get("CI") != "true", "ONCELY_POSTGRES_URL is not set under CI"
    pytest.skip("!! the postgres backend: ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)")


# ------------------------------------------------------------------------------------------------
# One run
# ------------------------------------------------------------------------------------------------


class Held:
    def __init__(self, queue, delivery):
        self.queue = queue
        self.id = delivery.id
        self.token = delivery.token
        self.attempt = delivery.attempt
        self.payload = delivery.payload
        self.key = delivery.key
        self.headers = dict(delivery.headers)
        self.last_error = delivery.last_error
        self.live = delivery


def outbox_kwargs(spec):
    kw = {}
    mode = spec.get("mode")
    if mode is not None:
        if mode not in MODES:
            raise Malformed(f"outbox.mode: unknown mode {mode!r}")
        kw["mode"] = mode
    if spec.get("lease_ms") is not None:
        kw["lease"] = secs(spec["lease_ms"])
    if spec.get("retry") is not None:
        kw["retry"] = spec["retry"]
    ordering = spec.get("ordering")
    if ordering is not None:
        bad = Malformed(f"outbox.ordering: expected \"unordered\" or {{\"fifo_per_key\": ...}}, got {ordering!r}")
        if ordering == "unordered":
            kw["ordering"] = "unordered"
        elif isinstance(ordering, dict) and list(ordering) == ["fifo_per_key"]:
            p = ordering["fifo_per_key"]
            kw["ordering"] = "fifo_per_key"
            if p in ("block", "dead_letter"):
                kw["poison"] = p
            elif isinstance(p, dict) and list(p) == ["park_ms"] and isinstance(p["park_ms"], int):
                kw["poison"] = "park"
                kw["park_after"] = secs(p["park_ms"])
            else:
                raise bad
        else:
            raise bad
    if spec.get("seed") is not None:
        kw["seed"] = spec["seed"]
    if spec.get("retry_budget") is not None:
        b = spec["retry_budget"]
        kw["retry_budget"] = {k: float(v) for k, v in b.items() if v is not None}
    if spec.get("max_payload_bytes") is not None:
        kw["max_payload_bytes"] = spec["max_payload_bytes"]
    if spec.get("dedup_window_ms") is not None:
        kw["dedup_window"] = secs(spec["dedup_window_ms"])
    return kw


def render_settled(s):
    if s.kind in ("acked", "gave_up", "dropped"):
        return {"settled": s.kind}
    key = {"retrying": "retrying_at_ms", "returned": "returned_at_ms", "extended": "extended_until_ms"}[s.kind]
    return {"settled": {key: off(s.at_ms)}}


def render_event(e):
    out = {"kind": e.kind, "id": e.id}
    if e.kind == "leased":
        out["attempt"] = e.attempt
    elif e.kind == "retried":
        out["retry_at_ms"] = off(e.retry_at_ms)
        out["error"] = e.error
    elif e.kind in ("snoozed", "parked"):
        out["until_ms"] = off(e.until_ms)
    elif e.kind == "dead_lettered":
        out["reason"] = e.reason
    return out


class Run:
    def __init__(self, scenario, backend, use_async=False):
        self.backend = backend
        self.use_async = use_async
        self.clock = ManualClock(CLOCK_START_MS)
        ispec = scenario.get("inbox") or {}
        self.scope = ispec.get("scope") or DEFAULT_SCOPE
        self.inbox_kw = {}
        if ispec.get("mode") is not None:
            if ispec["mode"] not in MODES:
                raise Malformed(f"inbox.mode: unknown mode {ispec['mode']!r}")
            self.inbox_kw["mode"] = ispec["mode"]
        if ispec.get("lease_ms") is not None:
            self.inbox_kw["lease"] = secs(ispec["lease_ms"])
        if ispec.get("retention_ms") is not None:
            self.inbox_kw["retention"] = secs(ispec["retention_ms"])
        if ispec.get("cache_policy") is not None:
            if ispec["cache_policy"] not in ("success_only", "success_and_failure"):
                raise Malformed(f"inbox.cache_policy: unknown policy {ispec['cache_policy']!r}")
            self.inbox_kw["cache_policy"] = ispec["cache_policy"]
        ospec = scenario.get("outbox") or {}
        self.queue = ospec.get("queue") or DEFAULT_QUEUE
        self.outbox_kw = outbox_kwargs(ospec)
        self.retry_policy = ospec.get("retry") or DEFAULT_RETRY
        self.inboxes = {}
        self.tickets = {}  # name -> (scope, Ticket)
        self.token_names = {}
        self.max_token = {}
        self.effects = {}
        self.outboxes = {}
        self.held = {}
        self.events = []
        self.out_tokens = {}
        self.delays = {}
        self.violation = None

    def call(self, obj, name, *args, **kwargs):
        """`obj.name(...)`, or, in an async run, `await obj.name_async(...)` where that exists."""
        if self.use_async and hasattr(obj, name + "_async"):

            async def go():
                return await getattr(obj, name + "_async")(*args, **kwargs)

            return asyncio.run(go())
        return getattr(obj, name)(*args, **kwargs)

    # -- inbox side -------------------------------------------------------------------------

    def inbox(self, scope):
        if scope not in self.inboxes:
            self.inboxes[scope] = Inbox(self.backend.get(), scope, clock=self.clock, **self.inbox_kw)
        return self.inboxes[scope]

    def ticket(self, name):
        if name not in self.tickets:
            raise Malformed(f"no ticket named `{name}` is held")
        return self.tickets[name][1]

    def begin_outcome(self, scope, name, r):
        if r.outcome == "claimed":
            t = r.ticket
            if t.token > 0:
                key = (scope, t.id)
                earlier = self.max_token.get(key, 0)
                if t.token <= earlier and self.violation is None:
                    self.violation = (
                        f"invariant: the claim of `{t.id}` got fencing token {t.token}, not larger than "
                        f"the earlier token {earlier} of that id"
                    )
                self.max_token[key] = max(earlier, t.token)
                if name is not None:
                    self.token_names[t.token] = name
            if name is not None:
                self.tickets[name] = (scope, t)
            return {"outcome": "claimed", "fenced": t.token > 0}
        if r.outcome == "duplicate":
            return {"outcome": "duplicate", "status": r.status, "result": text(r.result)}
        return {"outcome": r.outcome}

    @staticmethod
    def enc(s):
        return None if s is None else s.encode()

    def ok_or_error(self, fn):
        try:
            fn()
            return {"ok": True}
        except OncelyError as e:
            return err(e)

    # -- outbox side ------------------------------------------------------------------------

    def outbox(self, queue):
        if queue not in self.outboxes:
            o = Outbox(self.backend.get(), queue, clock=self.clock, **self.outbox_kw)
            o.on_event(self.events.append)
            self.outboxes[queue] = o
        return self.outboxes[queue]

    def held_named(self, name):
        if name not in self.held:
            raise Malformed(f"no delivery named `{name}` is held")
        return self.held[name]

    def settle(self, name, action, **kw):
        h = self.held_named(name)
        if h.live is not None:
            d = h.live
            call = {
                "ack": lambda: self.call(d, "ack"),
                "retry": lambda: self.call(d, "retry", kw.get("error", ""), after=kw.get("after")),
                "snooze": lambda: self.call(d, "snooze", kw["after"]),
                "fail": lambda: self.call(d, "fail", kw["reason"]),
                "extend": lambda: self.call(d, "extend", kw["lease"]),
                "release": lambda: self.call(d, "release"),
            }[action]
        else:
            def call():
                return self.outbox(h.queue).settle(h.id, h.token, action, **kw)
        try:
            s = call()
        except OncelyError as e:
            return err(e)
        if action == "retry" and s.kind == "retrying":
            delay = max(s.at_ms - self.clock.now_ms(), 0)
            if kw.get("after") is None and self._policy_ok():
                n = h.attempt
                if n <= 1:
                    prev, known = None, True
                elif (h.queue, h.id, n - 1) in self.delays:
                    prev, known = self.delays[(h.queue, h.id, n - 1)], True
                else:
                    prev, known = None, False
                lo, hi = delay_bounds(self.retry_policy, n, prev, known)
                if not lo <= delay <= hi and self.violation is None:
                    self.violation = (
                        f"invariant: the retry of `{h.id}` after attempt {n} is scheduled {delay} ms later, "
                        f"outside the documented [{lo}, {hi}] ms of the policy"
                    )
            self.delays[(h.queue, h.id, h.attempt)] = delay
        return render_settled(s)

    def _policy_ok(self):
        try:
            RetryPolicy(self.retry_policy)
            return True
        except OncelyError:
            return False

    def dead_letters(self, o):
        ids, after = [], None
        while True:
            page = o.dead_letters(after, 2)
            ids.extend(r.id for r in page)
            if page:
                after = page[-1].seq
            if len(page) < 2:
                return ids

    # -- steps --------------------------------------------------------------------------------

    def step(self, s):
        op = s["op"]
        try:
            return self._step(op, s)
        except OncelyError as e:
            return err(e)

    def _step(self, op, s):
        g = s.get
        if op == "begin":
            scope = g("scope") or self.scope
            inbox = self.inbox(scope)
            r = self.call(inbox, "begin", s["id"], self.enc(g("payload")), mode=g("mode"), lease=secs(g("lease_ms")))
            return self.begin_outcome(scope, g("ticket"), r)
        if op == "finish":
            t = self.ticket(s["ticket"])
            return self.ok_or_error(lambda: self.call(t, "finish", s["result"].encode()))
        if op in ("fail", "release"):
            if (g("ticket") is None) == (g("delivery") is None):
                raise Malformed(f"`{op}` needs exactly one of `ticket` (inbox) and `delivery` (outbox)")
            if g("ticket") is not None:
                t = self.ticket(s["ticket"])
                if op == "fail":
                    return self.ok_or_error(lambda: self.call(t, "fail", s["reason"].encode()))
                return self.ok_or_error(lambda: self.call(t, "release"))
            if op == "fail":
                return self.settle(s["delivery"], "fail", reason=s["reason"])
            return self.settle(s["delivery"], "release")
        if op == "process":
            h = s["handler"]
            if (h.get("returns") is None) == (h.get("fails") is None):
                raise Malformed("a handler needs exactly one of `returns` and `fails`")
            scope = g("scope") or self.scope
            inbox = self.inbox(scope)
            id_ = s["id"]

            def handler():
                self.effects[id_] = self.effects.get(id_, 0) + 1
                if h.get("returns") is not None:
                    return h["returns"].encode()
                if h.get("permanent"):
                    raise HandlerFailedPermanently(h["fails"])
                raise HandlerFailed(h["fails"])

            try:
                p = self.call(
                    inbox, "process", id_, self.enc(g("payload")), handler, mode=g("mode"), lease=secs(g("lease_ms")),
                    wait=secs(g("wait_ms")),
                )
            except (HandlerFailed, HandlerFailedPermanently) as e:
                return {"handler_error": str(e)}
            except oncely.ReplayedFailure as e:
                return {"replayed_failure": text(e.reason)}
            return {"result": text(p.result), "replayed": p.replayed}
        if op == "effects":
            return {k: self.effects.get(k, 0) for k in s["expect"]}
        if op == "advance":
            self.clock.advance_ms(s["ms"])
            return None
        if op == "restart":
            self.tickets.clear()
            self.inboxes.clear()
            self.outboxes.clear()
            for h in self.held.values():
                h.live = None
            self.backend.restart()
            return None
        if op == "get":
            rec = self.call(self.inbox(g("scope") or self.scope), "get", s["id"])
            if rec is None:
                return {"record": None}
            token = None if rec.token == 0 else self.token_names.get(rec.token, "other")
            return {"record": {"state": rec.state, "result": text(rec.result), "token": token}}
        if op == "purge_expired":
            return {"purged": self.call(self.inbox(self.scope), "purge_expired")}
        if op == "begin_many":
            scope = g("scope") or self.scope
            inbox = self.inbox(scope)
            reqs = []
            for r in s["requests"]:
                d = {"id": r["id"]}
                if r.get("payload") is not None:
                    d["payload"] = r["payload"].encode()
                if r.get("mode") is not None:
                    d["mode"] = r["mode"]
                if r.get("lease_ms") is not None:
                    d["lease"] = secs(r["lease_ms"])
                reqs.append(d)
            answers = inbox.begin_many(reqs)
            return {"results": [self.begin_outcome(scope, r.get("ticket"), a) for r, a in zip(s["requests"], answers)]}
        if op == "finish_many":
            scopes, batch = set(), []
            for item in s["items"]:
                if item["ticket"] not in self.tickets:
                    raise Malformed(f"no ticket named `{item['ticket']}` is held")
                scope, t = self.tickets[item["ticket"]]
                scopes.add(scope)
                batch.append((t, item["result"].encode()))
            if len(scopes) != 1:
                raise Malformed("finish_many needs at least one item, all from one scope")
            inbox = self.inboxes[scopes.pop()]
            results = inbox.finish_many(batch)
            return {"results": [{"ok": True} if e is None else err(e) for e in results]}
        if op == "schedule":
            policy = RetryPolicy(s["policy"])
            delays = policy.schedule_ms(s["seed"], s["n"])
            v = check_schedule_bounds(s["policy"], delays)
            if v and self.violation is None:
                self.violation = v
            return {"delays_ms": delays}
        if op == "decide":
            policy = RetryPolicy(s["policy"])
            kind, value = policy.decide_ms(
                seed=s["seed"], attempts=s["attempts"], first_attempt_at_ms=s["first_attempt_at_ms"],
                now_ms=s["now_ms"], last_delay_ms=g("last_delay_ms"), retry_after_ms=g("retry_after_ms"),
            )
            return {kind: value}
        return self.outbox_step(op, s)

    def outbox_step(self, op, s):
        g = s.get
        if op == "enqueue":
            o = self.outbox(g("queue") or self.queue)
            r = self.call(
                o, "enqueue", (g("payload") or "").encode(), id=s["id"], key=g("key"), headers=g("headers"),
                delay=secs(g("delay_ms")),
            )
            return {"enqueued": r}
        if op == "enqueue_many":
            o = self.outbox(g("queue") or self.queue)
            msgs = [
                {"payload": (m.get("payload") or "").encode(), "id": m["id"], "key": m.get("key"),
                 "headers": m.get("headers"), "delay": secs(m.get("delay_ms"))}
                for m in s["messages"]
            ]
            return {"enqueued": o.enqueue_many(msgs)}
        if op == "lease":
            q = g("queue") or self.queue
            o = self.outbox(q)
            names = g("as") or []
            leased = []
            for i, d in enumerate(self.call(o, "lease", s["max"])):
                if d.token > 0:
                    earlier = self.out_tokens.get((q, d.id), 0)
                    self.out_tokens[(q, d.id)] = max(earlier, d.token)
                    if d.token <= earlier and self.violation is None:
                        self.violation = (
                            f"invariant: the lease of `{d.id}` got fencing token {d.token}, not larger than "
                            f"the earlier token {earlier} of that id"
                        )
                name = names[i] if i < len(names) else d.id
                leased.append({"id": d.id, "attempt": d.attempt, "fenced": d.token > 0})
                self.held[name] = Held(q, d)
            return {"leased": leased}
        if op == "ack":
            return self.settle(s["delivery"], "ack")
        if op == "retry":
            return self.settle(s["delivery"], "retry", after=secs(g("after_ms")), error=g("error") or "")
        if op == "snooze":
            return self.settle(s["delivery"], "snooze", after=secs(s["after_ms"]))
        if op == "extend":
            return self.settle(s["delivery"], "extend", lease=secs(s["lease_ms"]))
        if op == "inspect":
            h = self.held_named(s["delivery"])
            return {"id": h.id, "attempt": h.attempt, "payload": text(h.payload), "key": h.key,
                    "headers": h.headers, "last_error": h.last_error}
        if op == "work":
            worker = Worker(self.outbox(g("queue") or self.queue))
            summary = self.call(worker, "run_until_idle", work_handler(s["handler"]))
            return {"attempts": summary.attempts, "succeeded": summary.succeeded, "failed": summary.failed}
        if op == "cancel":
            return {"cancel": self.outbox(g("queue") or self.queue).cancel(s["id"])}
        if op == "get_message":
            r = self.outbox(g("queue") or self.queue).get(s["id"])
            if r is None:
                return {"message": None}
            return {"message": {"state": r.state, "attempts": r.attempts, "available_at_ms": off(r.available_at_ms),
                                "last_error": r.last_error, "reason": r.reason}}
        if op == "dead_letters":
            return {"dead": self.dead_letters(self.outbox(g("queue") or self.queue))}
        if op == "replay":
            return {"replayed": self.outbox(g("queue") or self.queue).replay(s["id"])}
        if op == "purge_dead":
            return {"purged": self.outbox(g("queue") or self.queue).purge_dead(g("ids"))}
        if op == "stats":
            st = self.outbox(g("queue") or self.queue).stats()
            return {k: st[k] for k in ("ready", "scheduled", "leased", "dead", "oldest_age_ms")}
        if op == "counters":
            st = self.outbox(g("queue") or self.queue).stats()
            return {k: st[k] for k in ("enqueued", "delivered", "retried", "dead_lettered", "dropped")}
        if op == "events":
            out = [render_event(e) for e in self.events]
            self.events.clear()
            return out
        raise Malformed(f"unknown op `{op}`")


def run_scenario(scenario, backend, use_async=False):
    try:
        run = Run(scenario, backend, use_async)
    except Malformed as e:
        pytest.fail(f"malformed scenario: {e}")
    for i, step in enumerate(scenario["steps"]):
        try:
            actual = run.step(step)
        except Malformed as e:
            pytest.fail(f"step {i} ({step['op']}): scenario error: {e}")
        if run.violation:
            pytest.fail(f"step {i} ({step['op']}): {run.violation}")
        if "expect" in step and not json_eq(step["expect"], actual):
            pytest.fail(
                f"step {i} ({step['op']}): expected {json.dumps(step['expect'], sort_keys=True)}, "
                f"actual {json.dumps(actual, sort_keys=True)}"
            )


def scenario_names():
    names = sorted(str(p.relative_to(SCENARIOS).with_suffix("")).replace(os.sep, "/") for p in SCENARIOS.rglob("*.json"))
    f = os.environ.get("ONCELY_CONFORMANCE_FILTER")
    return [n for n in names if not f or f in n]


# "-async" runs make every call that has an `*_async` twin through it, each awaited in its own loop.
RUNS = [*BACKENDS, *(f"{b}-async" for b in BACKENDS if b != "postgres")]
CASES = [(b, n) for n in scenario_names() for b in RUNS]


def test_scenarios_exist():
    assert SCENARIOS.is_dir(), f"no scenarios under {SCENARIOS}"
    assert CASES or os.environ.get("ONCELY_CONFORMANCE_FILTER")


@pytest.mark.parametrize(("backend", "name"), CASES, ids=[f"{b}-{n}" for b, n in CASES])
def test_conformance(backend, name, tmp_path):
    with open(SCENARIOS / f"{name}.json", encoding="utf-8") as f:
        try:
            scenario = json.load(f)
        except ValueError as e:
            pytest.fail(f"cannot load the scenario: {e}")
    missing = set(scenario.get("requires") or []) - CAPABILITIES
    assert not missing, f"this runner cannot express {sorted(missing)}"
    use_async = backend.endswith("-async")
    run_scenario(scenario, BACKENDS[backend.removesuffix("-async")](tmp_path), use_async)
