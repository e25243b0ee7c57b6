"""Keyed POSTs through a fault proxy that drops requests, drops responses and delays answers past
the client's timeout: clients with ``oncely.http.client.IdempotentTransport`` (sync and async)
retry with the same key, duplicates race, and still each key is applied exactly once and every
client gets the first response — on uvicorn + Starlette and on waitress + Flask.

ONCELY_HTTP_LONG=1 runs more keys."""

import asyncio
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from oncely.http import IdempotencyMiddleware
from oncely.http import wsgi as http_wsgi
from oncely.http.client import AsyncIdempotentTransport, IdempotentTransport

from http_support import AsgiServer, FaultProxy, WsgiServer

KEYS = 60 if os.environ.get("ONCELY_HTTP_LONG") else 16
RETRY = {"max_attempts": 40, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}
# A duplicate waits for the first request instead of being answered 409 (whose Retry-After is a
# whole second): the retries stay fast.
POLICY = {"wait": 5}
TIMEOUT = 0.4


class Ledger:
    """The server's effects: runs per key, and the first answer given for each."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs = {}
        self.first = {}

    def apply(self, key, amount):
        with self.lock:
            self.runs[key] = self.runs.get(key, 0) + 1
            answer = {"key": key, "amount": amount, "run": self.runs[key], "id": str(uuid.uuid4())}
            self.first.setdefault(key, answer)
            return answer


def starlette_payments(ledger):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def pay(request):
        body = await request.json()
        return JSONResponse(ledger.apply(request.headers["idempotency-key"], body["amount"]), status_code=201)

    return Starlette(routes=[Route("/pay", pay, methods=["POST"])])


def flask_payments(ledger):
    import flask

    app = flask.Flask("payments")

    @app.post("/pay")
    def pay():
        answer = ledger.apply(flask.request.headers["Idempotency-Key"], flask.request.get_json()["amount"])
        return flask.Response(json.dumps(answer), status=201, content_type="application/json")

    return app.wsgi_app


def serve(kind, ledger, store):
    if kind == "asgi":
        return AsgiServer(IdempotencyMiddleware(starlette_payments(ledger), store, POLICY))
    return WsgiServer(http_wsgi.IdempotencyMiddleware(flask_payments(ledger), store, POLICY), threads=12)


def check(ledger, answers):
    assert sorted(ledger.runs) == sorted({k for k, _ in answers}), "every key reached the handler"
    assert set(ledger.runs.values()) == {1}, {k: n for k, n in ledger.runs.items() if n != 1}
    for key, response in answers:
        assert response.status_code == 201, (key, response.status_code, response.text)
        assert response.json() == ledger.first[key], key


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_each_key_applied_once_and_every_client_gets_the_first_response(kind, tmp_path):
    ledger = Ledger()
    with serve(kind, ledger, str(tmp_path / "keys.db")) as server, FaultProxy(server.port, seed=11) as proxy:
        inner = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        transport = IdempotentTransport(inner, retry=RETRY)
        with httpx.Client(base_url=proxy.url, transport=transport, timeout=TIMEOUT) as client:

            def post(job):
                key, amount = job
                return key, client.post("/pay", json={"amount": amount}, headers={"Idempotency-Key": key})

            # every key sent twice at once: the duplicates race each other and the faults
            jobs = [(f"{kind}-{i}", i) for i in range(KEYS) for _ in range(2)]
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(post, jobs))
    check(ledger, answers)
    faults = {f: n for f, n in proxy.counts.items() if f != "pass"}
    assert all(n > 0 for n in faults.values()), proxy.counts


async def test_the_async_transport_through_the_faults(tmp_path):
    ledger = Ledger()
    with serve("asgi", ledger, str(tmp_path / "keys.db")) as server, FaultProxy(server.port, seed=5) as proxy:
        inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        transport = AsyncIdempotentTransport(inner, retry=RETRY)
        async with httpx.AsyncClient(base_url=proxy.url, transport=transport, timeout=TIMEOUT) as client:

            async def post(key, amount):
                return key, await client.post("/pay", json={"amount": amount}, headers={"Idempotency-Key": key})

            answers = await asyncio.gather(*(post(f"a-{i}", i) for i in range(KEYS) for _ in range(2)))
    check(ledger, answers)
    assert proxy.counts["pass"] < sum(proxy.counts.values()), proxy.counts
