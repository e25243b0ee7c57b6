"""The endpoint of the HTTP peer benchmark (http_peers.py): one Starlette app, POST /pay, behind
the middleware named by ONCELY_BENCH_MW. Run by uvicorn as `http_app:app`.

- ``none``: no middleware (the baseline: a no-op handler's request time);
- ``oncely``: oncely's ASGI middleware over SQLite at ONCELY_BENCH_DB (``?synchronous=normal``
  unless ONCELY_BENCH_SYNC says ``full``);
- ``fik-sqlite``: fastapi-idempotency-key with its SQLite backend at the same kind of file;
- ``aih-redis`` / ``aih-memory``: asgi-idempotency-header with its Redis / in-process backend.

The handler sleeps ONCELY_BENCH_HANDLER_MS (default 0) and, when ONCELY_BENCH_RUNS names a file,
appends one line per run to it (O_APPEND: one write per run, whole lines across processes), so
the race cell can count how often each key's handler ran.
"""

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HANDLER_MS = float(os.environ.get("ONCELY_BENCH_HANDLER_MS", "0"))
RUNS = os.environ.get("ONCELY_BENCH_RUNS")


async def pay(request: Request) -> JSONResponse:
    if HANDLER_MS:
        await asyncio.sleep(HANDLER_MS / 1000)
    if RUNS:
        key = request.headers.get("idempotency-key", "-")
        fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (key + "\n").encode())
        finally:
            os.close(fd)
    return JSONResponse({"paid": True}, status_code=201)


app = Starlette(routes=[Route("/pay", pay, methods=["POST"])])

match os.environ.get("ONCELY_BENCH_MW", "none"):
    case "none":
        pass
    case "oncely":
        from oncely.http import IdempotencyMiddleware

        sync = os.environ.get("ONCELY_BENCH_SYNC", "normal")
        app = IdempotencyMiddleware(app, f"sqlite:{os.environ['ONCELY_BENCH_DB']}?synchronous={sync}")
    case "fik-sqlite":
        from fastapi_idempotency_key import IdempotencyMiddleware as FikMiddleware
        from fastapi_idempotency_key.backends.sqlite import SQLiteBackend

        app = FikMiddleware(app, backend=SQLiteBackend(os.environ["ONCELY_BENCH_DB"]), enforce_methods=("POST",))
    case "aih-redis":
        from idempotency_header_middleware import IdempotencyHeaderMiddleware
        from idempotency_header_middleware.backends.redis import RedisBackend
        from redis.asyncio import Redis

        redis = Redis(host="127.0.0.1", port=int(os.environ["ONCELY_BENCH_REDIS_PORT"]))
        app = IdempotencyHeaderMiddleware(app, backend=RedisBackend(redis=redis))
    case "aih-memory":
        from idempotency_header_middleware import IdempotencyHeaderMiddleware
        from idempotency_header_middleware.backends.memory import MemoryBackend

        app = IdempotencyHeaderMiddleware(app, backend=MemoryBackend())
    case other:
        raise SystemExit(f"unknown ONCELY_BENCH_MW {other!r}")
