"""oncely from Python against its peers: one claim + complete of a fresh id, per call, one run.

Run it through ``python/bench/run.sh`` (release wheel, local redis-server, the Rust cell for the
binding's overhead). Alone: ``python peer_benchmark.py [--seconds S] [--redis-port P]
[--rust-memory-ops OPS]``; the powertools cell needs ``--redis-port``.

Every cell claims and completes fresh ids ("<cell>-<n>", made before the timed loop), with the
same 64-byte payload (fingerprinted) and a 2-byte result, for at least ``--seconds`` of timed
calls. oncely runs in exactly-once mode with a 30 s lease and no recent-ids front
(``recent_capacity=0``), as the Rust inbox benchmark's cells do. SQLite cells are at
``synchronous=FULL`` in WAL mode (oncely's default and the only level the Python API opens).
"""

import argparse
import hashlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
import warnings
from time import perf_counter
from typing import Callable, List, Optional, Tuple

import oncely

PAYLOAD = bytes(range(64))  # 64 bytes for every cell
PAYLOAD_TEXT = "p" * 64  # the same size as text, for powertools (its events are JSON)
RESULT = b"ok"
LEASE_S = 30.0


# --- timing ------------------------------------------------------------------------------------


def timed_single(name: str, seconds: float, call: Callable[[str], None], batch: int = 512) -> float:
    """Calls ``call(id)`` on fresh ids for at least ``seconds`` of timed calls; returns calls/s.

    Ids are made per batch outside the timed part, so formatting them is not measured."""
    warm = [f"{name}-warm-{i}" for i in range(min(batch, 64))]
    for i in warm:
        call(i)
    done, spent, base = 0, 0.0, 0
    while spent < seconds:
        ids = [f"{name}-{n}" for n in range(base, base + batch)]
        base += batch
        t0 = perf_counter()
        for i in ids:
            call(i)
        spent += perf_counter() - t0
        done += batch
    return done / spent


def timed_threads(name: str, seconds: float, threads: int, make_call: Callable[[], Callable[[str], None]]) -> float:
    """``threads`` OS threads, each calling its own ``make_call()`` on fresh ids; returns the
    total calls/s over the wall-clock time of the cell."""
    stop = threading.Event()
    counts = [0] * threads
    ready = threading.Barrier(threads + 1)
    errors: List[BaseException] = []

    def worker(t: int) -> None:
        try:
            call = make_call()
            ready.wait()
            n = 0
            while not stop.is_set():
                ids = [f"{name}-{t}-{k}" for k in range(n, n + 16)]
                for i in ids:
                    call(i)
                n += 16
            counts[t] = n
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            try:
                ready.abort()
            except threading.BrokenBarrierError:
                pass

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    ready.wait()
    t0 = perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    elapsed = perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


# --- oncely ------------------------------------------------------------------------------------


def oncely_inbox(store: "oncely.Store | str") -> oncely.Inbox:
    return oncely.Inbox(store, "bench", mode="exactly_once", lease=LEASE_S, recent_capacity=0)


def oncely_begin_finish(inbox: oncely.Inbox) -> Callable[[str], None]:
    begin = inbox.begin

    def call(i: str) -> None:
        # .ticket is None unless claimed: a wrong outcome fails loudly here.
        begin(i, PAYLOAD).ticket.finish(RESULT)  # type: ignore[union-attr]

    return call


def oncely_process(inbox: oncely.Inbox) -> Callable[[str], None]:
    process = inbox.process

    def handler() -> bytes:
        return RESULT

    def call(i: str) -> None:
        process(i, PAYLOAD, handler)

    return call


# --- (a) pure Python: dict + threading.Lock -----------------------------------------------------


class DictInbox:
    """The same claim/complete in pure Python: an in-progress record with a lease expiry and a
    fencing token, then completed with its result; SHA-256 fingerprint of the payload checked on
    every claim; an expired lease may be claimed again."""

    IN_PROGRESS, DONE = 0, 1

    def __init__(self, lease_s: float = LEASE_S) -> None:
        self._lock = threading.Lock()
        self._records: dict = {}
        self._lease_ms = int(lease_s * 1000)

    def claim(self, id: str, payload: bytes):
        fp = hashlib.sha256(payload).digest()
        now = time.time_ns() // 1_000_000
        with self._lock:
            rec = self._records.get(id)
            if rec is None:
                self._records[id] = [self.IN_PROGRESS, fp, 1, now + self._lease_ms, None]
                return ("claimed", 1)
            if rec[1] != fp:
                return ("conflict", None)
            if rec[0] == self.DONE:
                return ("duplicate", rec[4])
            if rec[3] > now:
                return ("in_progress", None)
            rec[2] += 1
            rec[3] = now + self._lease_ms
            return ("claimed", rec[2])

    def complete(self, id: str, token: int, result: bytes) -> None:
        with self._lock:
            rec = self._records.get(id)
            if rec is None or rec[0] != self.IN_PROGRESS or rec[2] != token:
                raise RuntimeError("lease lost")
            rec[0], rec[3], rec[4] = self.DONE, None, result


def dict_call(inbox: DictInbox) -> Callable[[str], None]:
    def call(i: str) -> None:
        outcome, token = inbox.claim(i, PAYLOAD)
        if outcome != "claimed":
            raise RuntimeError(outcome)
        inbox.complete(i, token, RESULT)

    return call


# --- (b) pure Python: sqlite3 --------------------------------------------------------------------


class Sqlite3Inbox:
    """The same claim/complete over the standard library's sqlite3: WAL, synchronous=FULL, one
    ``BEGIN IMMEDIATE`` transaction per claim and one per complete."""

    def __init__(self, path: str, synchronous: str = "FULL", lease_s: float = LEASE_S) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY, state INTEGER NOT NULL, fp BLOB NOT NULL,"
            " token INTEGER NOT NULL, lease_until INTEGER, result BLOB) WITHOUT ROWID"
        )
        self._lease_ms = int(lease_s * 1000)

    def claim(self, id: str, payload: bytes):
        fp = hashlib.sha256(payload).digest()
        now = time.time_ns() // 1_000_000
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT state, fp, token, lease_until, result FROM inbox WHERE id = ?", (id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO inbox (id, state, fp, token, lease_until) VALUES (?, 0, ?, 1, ?)",
                    (id, fp, now + self._lease_ms),
                )
                answer = ("claimed", 1)
            elif row[1] != fp:
                answer = ("conflict", None)
            elif row[0] == 1:
                answer = ("duplicate", row[4])
            elif row[3] > now:
                answer = ("in_progress", None)
            else:
                db.execute(
                    "UPDATE inbox SET token = token + 1, lease_until = ? WHERE id = ?", (now + self._lease_ms, id)
                )
                answer = ("claimed", row[2] + 1)
            db.execute("COMMIT")
            return answer
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def complete(self, id: str, token: int, result: bytes) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "UPDATE inbox SET state = 1, lease_until = NULL, result = ? WHERE id = ? AND token = ? AND state = 0",
                (result, id, token),
            )
            if cur.rowcount != 1:
                raise RuntimeError("lease lost")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def sqlite3_call(inbox: Sqlite3Inbox) -> Callable[[str], None]:
    def call(i: str) -> None:
        outcome, token = inbox.claim(i, PAYLOAD)
        if outcome != "claimed":
            raise RuntimeError(outcome)
        inbox.complete(i, token, RESULT)

    return call


# --- (c) aws-lambda-powertools idempotency over Redis -------------------------------------------


class _FakeLambdaContext:
    """Gives powertools a remaining time, so its in-progress records carry a lease expiry too."""

    def get_remaining_time_in_millis(self) -> int:
        return int(LEASE_S * 1000)


def powertools_call(port: int) -> Tuple[Callable[[str], None], str]:
    """The timed call, and a note on how a duplicate was answered (checked before timing)."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError
    from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer

    # CachePersistenceLayer is the current name; in this version it is an alias of the deprecated
    # RedisCachePersistenceLayer class, which warns on every construction: silenced here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layer = CachePersistenceLayer(host="127.0.0.1", port=port, ssl=False)
    config = IdempotencyConfig(
        event_key_jmespath="id",
        payload_validation_jmespath="payload",  # the fingerprint check (hash stored with the claim)
        expires_after_seconds=3600,
    )
    config.register_lambda_context(_FakeLambdaContext())  # type: ignore[arg-type]
    runs = [0]

    @idempotent_function(data_keyword_argument="event", persistence_store=layer, config=config)
    def handle(event: dict) -> str:
        runs[0] += 1
        return RESULT.decode()

    def call(i: str) -> None:
        if handle(event={"id": i, "payload": PAYLOAD_TEXT}) != "ok":
            raise RuntimeError("unexpected result")

    # Before timing: a fresh id runs the function once; its duplicate must not run it again.
    call("powertools-probe")
    note = ""
    try:
        call("powertools-probe")
    except IdempotencyValidationError:
        # Its Redis layer rewrites the completed record without the validation hash, so an
        # identical duplicate fails validation (fresh ids, as timed here, never read it back).
        note = "(its duplicate of a completed id raised IdempotencyValidationError)"
    if runs[0] != 1:
        raise RuntimeError(f"the function ran {runs[0]} times for one id")
    return call, note


def redis_floor_call(port: int) -> Callable[[str], None]:
    """The floor under (c): the two Redis writes it makes per fresh id (SET NX EX of the
    in-progress record, then SET EX of the completed one), straight through redis-py."""
    import json

    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    expiry = 3600

    def call(i: str) -> None:
        if not client.set(i, json.dumps({"status": "INPROGRESS", "validation": PAYLOAD_TEXT}), ex=expiry, nx=True):
            raise RuntimeError("not claimed")
        client.set(i, json.dumps({"status": "COMPLETED", "data": "ok"}), ex=expiry)

    return call


# --- main --------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per cell (default 2.0)")
    ap.add_argument("--threads", type=int, default=8, help="threads of the concurrent SQLite cells (default 8)")
    ap.add_argument("--redis-port", type=int, default=None, help="local redis-server for powertools")
    ap.add_argument(
        "--rust-memory-ops",
        type=float,
        default=None,
        help="ops/s of `cargo bench -p oncely --bench inbox` 'memory begin+finish, concurrency 1'",
    )
    args = ap.parse_args(argv)
    secs, threads = args.seconds, args.threads

    rows: List[tuple] = []
    rates: dict = {}

    def row(key: str, label: str, rate: Optional[float], note: str = "") -> None:
        rates[key] = rate
        rows.append((label, rate, note))
        # Progress on stderr, so that stdout is only the table.
        shown = "-" if rate is None else f"{1e6 / rate:.2f} us, {rate:,.0f}/s"
        print(f"  {label}: {shown} {note}", file=sys.stderr, flush=True)

    print(f"oncely {oncely.__version__} peer benchmark, {secs:.1f} s per cell, Python {sys.version.split()[0]}", file=sys.stderr)
    tmp = tempfile.TemporaryDirectory(prefix="oncely-bench-")
    try:
        # (1) oncely memory
        row("mem_bf", "(1) oncely memory, begin + finish", timed_single("mb", secs, oncely_begin_finish(oncely_inbox("memory"))))
        row("mem_proc", "(1) oncely memory, process", timed_single("mp", secs, oncely_process(oncely_inbox("memory"))))

        # (2) oncely SQLite (FULL), one thread and `threads` threads on one store
        s1 = oncely.Store(os.path.join(tmp.name, "oncely-1.db"))
        row("sq_bf", "(2) oncely SQLite FULL, begin + finish", timed_single("sb", secs, oncely_begin_finish(oncely_inbox(s1)), batch=64))
        row("sq_proc", "(2) oncely SQLite FULL, process", timed_single("sp", secs, oncely_process(oncely_inbox(s1)), batch=64))
        s8 = oncely.Store(os.path.join(tmp.name, "oncely-8.db"))
        inbox8 = oncely_inbox(s8)
        row(
            "sq_bf_t",
            f"(2) oncely SQLite FULL, begin + finish, {threads} threads",
            timed_threads("st", secs, threads, lambda: oncely_begin_finish(inbox8)),
        )

        # (a) dict + Lock
        row("dict", "(a) pure Python dict + Lock", timed_single("d", secs, dict_call(DictInbox())))

        # (b) sqlite3, FULL
        b1 = Sqlite3Inbox(os.path.join(tmp.name, "sqlite3-1.db"))
        row("py_sq", "(b) pure Python sqlite3 FULL, 2 txns", timed_single("b", secs, sqlite3_call(b1), batch=64))
        path8 = os.path.join(tmp.name, "sqlite3-8.db")
        Sqlite3Inbox(path8)  # creates the table once
        row(
            "py_sq_t",
            f"(b) pure Python sqlite3 FULL, 2 txns, {threads} threads",
            timed_threads("bt", secs, threads, lambda: sqlite3_call(Sqlite3Inbox(path8))),
        )

        # (c) powertools + redis
        if args.redis_port is None:
            row("pt", "(c) powertools idempotent_function + Redis", None, "(skipped: no --redis-port)")
        else:
            try:
                call, note = powertools_call(args.redis_port)
            except Exception as e:  # noqa: BLE001 - reported in the table
                row("pt", "(c) powertools idempotent_function + Redis", None, f"(failed: {type(e).__name__}: {e})")
            else:
                row("pt", "(c) powertools idempotent_function + Redis", timed_single("c", secs, call, batch=128), note)
            row(
                "redis_floor",
                "(c) floor: redis-py SET NX + SET, no powertools",
                timed_single("r", secs, redis_floor_call(args.redis_port), batch=128),
            )

        # (3) the binding's own cost
        clock = oncely.ManualClock()
        mem = oncely_inbox("memory")

        def noop() -> None:
            return None

        now_ms, get, short = clock.now_ms, mem.get, max(secs / 3, 0.3)
        row("py_call", "(3) plain Python no-op function call", timed_single("n", short, lambda i: noop(), batch=4096))
        row("native_trivial", "(3) native ManualClock.now_ms()", timed_single("t", short, lambda i: now_ms(), batch=4096))
        row("native_get", "(3) native Inbox.get(absent id), memory", timed_single("g", short, get, batch=4096))
    finally:
        tmp.cleanup()

    # --- the table (stdout) ---
    def us(key: str) -> Optional[float]:
        r = rates.get(key)
        return None if not r else 1e6 / r

    width = max(len(r[0]) for r in rows) + 2
    print(f"oncely {oncely.__version__} vs peers from Python {sys.version.split()[0]}: one claim + complete of a fresh id")
    print(f"64-byte payload, {secs:.1f} s per cell; SQLite at synchronous=FULL, WAL; threads cells: µs = 1/throughput")
    print(f"{'case':<{width}} {'µs/call':>10} {'calls/s':>12}")
    for label, rate, note in rows:
        if rate is None:
            print(f"{label:<{width}} {'-':>10} {'-':>12}  {note}")
        else:
            print(f"{label:<{width}} {1e6 / rate:>10.2f} {rate:>12,.0f}  {note}".rstrip())
    if args.rust_memory_ops:
        print(f"{'(3) Rust, same memory begin + finish (cargo bench)':<{width}} {1e6 / args.rust_memory_ops:>10.2f} {args.rust_memory_ops:>12,.0f}")

    print()
    print("ratios (throughput; target in brackets)")

    def ratio(label: str, a: str, b: str, target: str) -> None:
        ra, rb = rates.get(a), rates.get(b)
        if ra and rb:
            print(f"  {label:<64} {ra / rb:>7.2f}x  [{target}]")
        else:
            print(f"  {label:<64} {'n/a':>7}   [{target}]")

    ratio("oncely SQLite begin+finish vs (b) sqlite3, 1 thread", "sq_bf", "py_sq", ">= 3x")
    ratio(f"oncely SQLite begin+finish vs (b) sqlite3, both {threads} threads", "sq_bf_t", "py_sq_t", ">= 3x")
    rates["py_sq_best"] = max(rates.get("py_sq") or 0, rates.get("py_sq_t") or 0) or None
    ratio(f"oncely SQLite, {threads} threads vs (b) at its best (1 or {threads} threads)", "sq_bf_t", "py_sq_best", ">= 3x")
    ratio("oncely memory begin+finish vs (c) powertools+Redis", "mem_bf", "pt", ">= 10x")
    ratio("oncely SQLite FULL begin+finish vs (c) powertools+Redis", "sq_bf", "pt", ">= 10x")
    ratio("oncely memory begin+finish vs (a) dict + Lock", "mem_bf", "dict", "-")

    print()
    print("binding overhead (target <= 1 µs per native call)")
    pc, nt, ng = us("py_call"), us("native_trivial"), us("native_get")
    if pc and nt and ng:
        print(f"  trivial native method call: {nt:.3f} µs ({nt - pc:+.3f} µs vs a Python no-op call)")
        print(f"  Inbox.get of an absent id (GIL released, core runtime, memory lookup): {ng:.3f} µs")
    mb = us("mem_bf")
    if args.rust_memory_ops and mb:
        rust = 1e6 / args.rust_memory_ops
        print(
            f"  memory begin + finish: {mb:.3f} µs from Python vs {rust:.3f} µs in Rust ="
            f" {mb - rust:.3f} µs over 2 native calls, {(mb - rust) / 2:.3f} µs per call"
        )
    else:
        print("  memory begin + finish from Rust: not measured (pass --rust-memory-ops; run.sh does)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
