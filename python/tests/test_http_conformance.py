"""The HTTP conformance scenarios (tests/conformance/http, format in its README.md) against real
servers on loopback: uvicorn + Starlette behind ``oncely.http.IdempotencyMiddleware`` and
waitress + Flask behind ``oncely.http.wsgi.IdempotencyMiddleware``, on memory and SQLite stores
(and PostgreSQL given ONCELY_POSTGRES_URL), with httpx as the client.

One server of each kind serves the whole module; each scenario run swaps in a middleware built
with the scenario's policy over a fresh store."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import oncely
from oncely.http import IdempotencyMiddleware as AsgiMiddleware
from oncely.http.wsgi import IdempotencyMiddleware as WsgiMiddleware

from http_support import BACKENDS, AsgiServer, WsgiServer, location, postgres_or_skip, wait_for

SCENARIOS = Path(__file__).resolve().parents[2] / "tests" / "conformance" / "http"
FILES = sorted(p for p in SCENARIOS.glob("*.json") if p.name != "http.schema.json")
DEFAULT_HANDLER = {"status": 201, "headers": [["content-type", "text/plain"]], "body": "run {run}"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class State:
    """What the scenario-driven handler does, shared by the servers' threads and the runner."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        self.handler = DEFAULT_HANDLER
        self.hold = None  # (started, release) for the next request that reaches the handler
        self.middleware = None  # the current scenario's middleware (ASGI or WSGI)

    def enter(self):
        """Counts a run; returns (run, handler spec, hold events or None)."""
        with self.lock:
            self.runs += 1
            hold, self.hold = self.hold, None
            return self.runs, self.handler, hold


def render(spec, run):
    if "raise" in spec:
        raise RuntimeError(spec["raise"])
    headers = [(n, v.replace("{run}", str(run))) for n, v in spec.get("headers", [])]
    return spec["status"], headers, spec.get("body", "").replace("{run}", str(run)).encode()


ASGI_STATE, WSGI_STATE = State(), State()


def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request):
        await request.body()
        run, spec, hold = ASGI_STATE.enter()
        if hold is not None:
            hold[0].set()
            while not hold[1].is_set():
                await asyncio.sleep(0.005)
        status, headers, body = render(spec, run)
        response = Response(body, status_code=status)
        response.raw_headers = [(b"content-length", str(len(body)).encode())] + [
            (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers
        ]
        return response

    inner = Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)])

    async def app(scope, receive, send):
        await ASGI_STATE.middleware(scope, receive, send)

    return inner, app


def flask_app():
    import flask

    inner = flask.Flask("conformance")

    @inner.route("/<path:path>", methods=METHODS)
    def endpoint(path):
        flask.request.get_data()
        run, spec, hold = WSGI_STATE.enter()
        if hold is not None:
            hold[0].set()
            hold[1].wait(10)
        status, headers, body = render(spec, run)
        response = flask.Response(body, status=status)
        response.headers.clear()
        for n, v in headers:
            response.headers.add(n, v)
        return response

    def app(environ, start_response):
        return WSGI_STATE.middleware(environ, start_response)

    return inner.wsgi_app, app


@pytest.fixture(scope="module")
def servers():
    asgi_inner, asgi_app = starlette_app()
    wsgi_inner, wsgi_app = flask_app()
    with AsgiServer(asgi_app) as a, WsgiServer(wsgi_app) as w:
        yield {
            "asgi": (a, asgi_inner, ASGI_STATE, AsgiMiddleware, lambda scope: dict(scope["headers"]).get(
                b"x-tenant", b"").decode() or None),
            "wsgi": (w, wsgi_inner, WSGI_STATE, WsgiMiddleware, lambda environ: environ.get("HTTP_X_TENANT")),
        }


def check(step_no, expect, response, state):
    where = f"step {step_no}"
    assert response.status_code == expect["status"], (where, response.status_code, response.text)
    for name, value in expect.get("headers", {}).items():
        assert response.headers.get(name) == value, (where, name, dict(response.headers))
    if "body" in expect:
        assert response.content.decode() == expect["body"], where
    if "problem" in expect:
        assert response.headers["content-type"] == "application/problem+json", where
        assert response.json()["type"] == expect["problem"], (where, response.text)
    if "runs" in expect:
        assert state.runs == expect["runs"], (where, state.runs)


def send(client, request):
    return client.request(
        request["method"],
        request["path"] + (f"?{request['query']}" if request.get("query") else ""),
        headers=[tuple(h) for h in request.get("headers", [])],
        content=request["body"].encode() if "body" in request else None,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path, kind, backend, servers, tmp_path):
    scenario = json.loads(path.read_text(encoding="utf-8"))
    server, inner, state, middleware, scope_of = servers[kind]
    store = location(backend, tmp_path, "http")
    policy = scenario.get("policy")
    if "policy_error" in scenario:
        with pytest.raises(oncely.OncelyError) as e:
            middleware(inner, store, policy, scope=scope_of)
        assert e.value.code == scenario["policy_error"]["code"]
        assert scenario["policy_error"]["message"] in str(e.value)
        assert not scenario.get("steps")
        return
    state.runs, state.hold, state.handler = 0, None, DEFAULT_HANDLER
    state.middleware = middleware(inner, store, policy, scope=scope_of)
    held = {}
    # A connection per request: a server closes the connection of an app that raised (uvicorn
    # does after the 500), which a reused connection would meet as a dropped request.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=10, limits=limits) as client, ThreadPoolExecutor(4) as pool:
        for n, step in enumerate(scenario["steps"]):
            if "release" in step:
                started, release, future, expect = held.pop(step["release"])
                release.set()
                check(step["release"], expect, future.result(timeout=10), state)
                continue
            state.handler = step.get("handler", DEFAULT_HANDLER)
            if step.get("hold"):
                started, release = threading.Event(), threading.Event()
                state.hold = (started, release)
                future = pool.submit(send, client, step["send"])
                wait_for(started.is_set, what=f"the held step {n} to reach its handler")
                held[n] = (started, release, future, step["expect"])
                continue
            check(n, step["expect"], send(client, step["send"]), state)
    assert not held, f"steps held and never released: {sorted(held)}"


def test_every_scenario_is_run():
    assert len(FILES) >= 20


def test_postgres_runs_under_ci():
    postgres_or_skip()
