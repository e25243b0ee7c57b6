"""The HTTP peer benchmark (docs/benchmarks.md, "Idempotency-Key middleware"): the same Starlette
endpoint behind oncely's middleware and behind the PyPI peers, on the same uvicorn server, in one
run, repeated and interleaved.

Cells, per middleware (http_app.py lists them):
- first calls: requests/s of keyed POSTs, each with a new key (wrk, one connection per slot);
- replays: requests/s of keyed POSTs whose key was answered before;
- race: rounds of 8 identical concurrent requests (same key, same body) against 2 uvicorn worker
  processes, the handler taking 50 ms; counts how often each key's handler ran.

Prints one table and the targets: oncely's overhead on a first call at most 10 % of the no-op
endpoint's request time; replays at least 2x the fastest peer's; no double effect in the race.
Run through run-http.sh, which builds the release wheel and installs the peers, wrk and Redis.
"""

import argparse
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_APP = HERE.parent.parent / "node" / "bench" / "http_app.js"
STACKS = {
    # The same endpoint in each language: Starlette on uvicorn, Express on Node.
    "python": {
        "variants": ["none", "oncely", "fik-sqlite", "aih-redis", "aih-memory"],
        "peers": ["fik-sqlite", "aih-redis", "aih-memory"],
        "server": "uvicorn (httptools, uvloop) + Starlette",
    },
    "node": {
        "variants": ["none", "oncely", "express-idempotency"],
        "peers": ["express-idempotency"],
        "server": "Node http + Express 5",
    },
}
NAMES = {
    "none": "no middleware (no-op handler)",
    "oncely": "oncely (SQLite NORMAL)",
    "fik-sqlite": "fastapi-idempotency-key (SQLite)",
    "aih-redis": "asgi-idempotency-header (Redis)",
    "aih-memory": "asgi-idempotency-header (memory)",
    "express-idempotency": "express-idempotency (memory)",
}
PEERS = []
BODY = b'{"amount":10,"to":"bob"}'

FIRST_LUA = """
local n = 0
local run = os.getenv("ONCELY_BENCH_RUN_ID") or "0"
local tid = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  return wrk.format("POST", "/pay", {["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "f-" .. run .. "-" .. tid .. "-" .. n}, '%s')
end
""" % BODY.decode()

REPLAY_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/pay", {["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "r-" .. (n %% 64)}, '%s')
end
""" % BODY.decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, key, timeout=10.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/pay", BODY, {"Content-Type": "application/json", "Idempotency-Key": key})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class Server:
    def __init__(self, stack, variant, workers, env_extra, redis_port):
        self.dir = tempfile.TemporaryDirectory(prefix="oncely-http-bench-")
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            ONCELY_BENCH_MW=variant,
            ONCELY_BENCH_DB=os.path.join(self.dir.name, "keys.db"),
            ONCELY_BENCH_REDIS_PORT=str(redis_port),
            PYTHONPATH=str(HERE),
            ONCELY_BENCH_PORT=str(self.port),
            ONCELY_BENCH_WORKERS=str(workers),
        )
        env.update(env_extra)
        if variant == "aih-redis":
            subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], check=True, stdout=subprocess.DEVNULL)
        if stack == "python":
            cmd = [sys.executable, "-m", "uvicorn", "http_app:app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--http", "httptools",
                   "--loop", "uvloop"]
        else:
            cmd = ["node", str(NODE_APP)]
        # The servers' own logs (a peer's refusals print stack traces) are not part of the table.
        self.proc = subprocess.Popen(cmd, cwd=HERE, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                post(self.port, "warm-up", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{variant}: the server did not start")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.dir.cleanup()


def wrk(port, script, seconds, connections, run_id):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", f.name, f"http://127.0.0.1:{port}/pay"],
            capture_output=True, text=True, check=True, env=dict(os.environ, ONCELY_BENCH_RUN_ID=str(run_id)),
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rps, int(bad.group(1)) if bad else 0, errors.group(1) if errors else ""


def throughput(stack, variant, seconds, connections, redis_port, run_id):
    server = Server(stack, variant, 1, {}, redis_port)
    try:
        first, first_bad, first_err = wrk(server.port, FIRST_LUA, seconds, connections, run_id)
        for i in range(64):
            post(server.port, f"r-{i}")
        replay, replay_bad, replay_err = wrk(server.port, REPLAY_LUA, seconds, connections, run_id)
    finally:
        server.stop()
    return first, replay, first_bad + replay_bad, (first_err + " " + replay_err).strip()


def race(stack, variant, rounds, width, redis_port):
    runs_dir = tempfile.TemporaryDirectory()
    runs = os.path.join(runs_dir.name, "runs.log")
    server = Server(stack, variant, 2, {"ONCELY_BENCH_HANDLER_MS": "50", "ONCELY_BENCH_RUNS": runs}, redis_port)
    statuses = Counter()
    try:
        for r in range(rounds):
            key = f"race-{r}"
            barrier = threading.Barrier(width)

            def one():
                barrier.wait()
                try:
                    statuses[post(server.port, key)] += 1
                except OSError:
                    statuses["error"] += 1

            threads = [threading.Thread(target=one) for _ in range(width)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(0.2)
    finally:
        server.stop()
    counts = Counter(Path(runs).read_text().split()) if os.path.exists(runs) else Counter()
    counts.pop("warm-up", None)
    runs_dir.cleanup()
    doubles = sum(n - 1 for n in counts.values() if n > 1)
    return sum(counts.values()), doubles, dict(statuses)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--race-rounds", type=int, default=40)
    ap.add_argument("--redis-port", type=int, default=0)
    ap.add_argument("--stack", choices=sorted(STACKS), default="python")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    stack = STACKS[args.stack]
    PEERS[:] = stack["peers"]
    variants = [v for v in stack["variants"] if not args.only or v in args.only.split(",") or v == "none"]

    first = {v: [] for v in variants}
    replay = {v: [] for v in variants}
    problems = {v: [] for v in variants}
    for rep in range(args.repeat):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]  # interleaved
        for v in order:
            f, r, bad, err = throughput(args.stack, v, args.seconds, args.connections, args.redis_port, rep)
            first[v].append(f)
            replay[v].append(r)
            if bad or err:
                problems[v].append(f"{bad} non-2xx {err}".strip())
            print(f"  round {rep + 1} {v:<11} first {f:>8.0f}/s  replay {r:>8.0f}/s  {bad} non-2xx {err}",
                  file=sys.stderr, flush=True)
    races = {}
    for v in variants:
        if v != "none":
            races[v] = race(args.stack, v, args.race_rounds, 8, args.redis_port)

    med = lambda xs: statistics.median(xs)  # noqa: E731
    base = med(first["none"])
    print()
    print(f"HTTP Idempotency-Key middleware, {stack['server']}, 1 process (race: 2), wrk -c{args.connections}, "
          f"{args.seconds} s per cell, median of {args.repeat} interleaved rounds")
    print()
    print("| middleware | first calls (req/s) | request time vs no middleware | replays (req/s) | "
          f"race: handler runs for {args.race_rounds} keys × 8 | double effects | answers |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        f, r = med(first[v]), med(replay[v])
        if v == "none":
            print(f"| {NAMES[v]} | {f:,.0f} | 1.00× | — | — | — | — |")
            continue
        runs, doubles, statuses = races[v]
        answers = ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items(), key=str))
        print(f"| {NAMES[v]} | {f:,.0f} | {base / f:.2f}× | {r:,.0f} | {runs} | {doubles} | {answers} |")
    print()
    if "oncely" in first:
        overhead = base / med(first["oncely"]) - 1
        peers = [v for v in PEERS if v in replay]
        best = max(peers, key=lambda v: med(replay[v])) if peers else None
        print(f"target: overhead on a first call <= 10 % of a no-op request: {overhead * 100:.0f} % -> "
              f"{'met' if overhead <= 0.10 else 'missed'}")
        if best:
            ratio = med(replay["oncely"]) / med(replay[best])
            print(f"target: replays >= 2x the fastest peer ({NAMES[best]}): {ratio:.2f}x -> "
                  f"{'met' if ratio >= 2 else 'missed'}")
        peer_doubles = {v: races[v][1] for v in races if v != "oncely"}
        print(f"target: no double effect where a peer shows any: oncely {races['oncely'][1]}, peers {peer_doubles} -> "
              f"{'met' if races['oncely'][1] == 0 else 'missed'}")
    for v, p in problems.items():
        if p:
            print(f"note: {NAMES[v]} answered with errors in some rounds: {'; '.join(p)}")


if __name__ == "__main__":
    main()
