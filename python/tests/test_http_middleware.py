"""The ASGI and WSGI middleware as adapters: what they hand the app and the gate (a body sent in
pieces, a response streamed in pieces, the tenant from `scope=`, non-HTTP traffic), the
Starlette `Middleware(...)` form, and the native gate's conversions."""

import asyncio
import io

import pytest

import oncely
from oncely.http import IdempotencyMiddleware
from oncely.http import wsgi as http_wsgi

KEY = [(b"idempotency-key", b"k1"), (b"content-type", b"application/json")]


def asgi_call(app, body_parts, headers=KEY, method="POST", path="/pay"):
    """Calls an ASGI app with the body in `body_parts`; returns (status, headers, body)."""
    sent = []
    parts = [{"type": "http.request", "body": p, "more_body": i < len(body_parts) - 1}
             for i, p in enumerate(body_parts)]

    async def receive():
        if parts:
            return parts.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"a=1",
             "headers": headers, "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {n.decode(): v.decode() for n, v in start["headers"]}, body


def streaming_app(seen):
    """An app that reads its body in pieces and answers in three chunks without a length."""

    async def app(scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen.append((scope["path"], scope["query_string"], body))
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        for chunk in (b"paid ", body, b" ok"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def test_a_body_in_pieces_and_a_streamed_response_are_kept_whole():
    seen = []
    app = IdempotencyMiddleware(streaming_app(seen), "memory")
    first = asgi_call(app, [b'{"amount"', b":10}"])
    again = asgi_call(app, [b'{"amount":10}'])
    assert seen == [("/pay", b"a=1", b'{"amount":10}')], "the app ran once, with the whole body"
    assert first[0] == again[0] == 201 and first[2] == again[2] == b'paid {"amount":10} ok'
    assert first[1]["content-length"] == str(len(first[2])) and "idempotent-replayed" not in first[1]
    assert again[1]["idempotent-replayed"] == "true"


def test_the_tenant_comes_from_the_scope_callable():
    seen, tenants = [], []

    def tenant(scope):
        tenants.append(scope["type"])
        return dict(scope["headers"]).get(b"x-tenant", b"").decode() or None

    app = IdempotencyMiddleware(streaming_app(seen), "memory", scope=tenant)
    asgi_call(app, [b"{}"], KEY + [(b"x-tenant", b"alice")])
    asgi_call(app, [b"{}"], KEY + [(b"x-tenant", b"bob")])
    asgi_call(app, [b"{}"], KEY + [(b"x-tenant", b"alice")])
    assert len(seen) == 2 and tenants == ["http"] * 3


def test_other_traffic_passes_untouched():
    got = []

    async def app(scope, receive, send):
        got.append(scope["type"])

    asyncio.run(IdempotencyMiddleware(app, "memory")({"type": "lifespan"}, None, None))
    assert got == ["lifespan"]


def test_the_starlette_middleware_form():
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    runs = []

    async def pay(request):
        runs.append(await request.body())
        return PlainTextResponse(f"run {len(runs)}", status_code=201)

    app = Starlette(routes=[Route("/pay", pay, methods=["POST"])],
                    middleware=[Middleware(IdempotencyMiddleware, store="memory", policy={"retention": 60})])
    assert asgi_call(app, [b"{}"])[2] == asgi_call(app, [b"{}"])[2] == b"run 1"
    status, headers, body = asgi_call(app, [b"{}"], headers=[])
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert runs == [b"{}"]


def test_wsgi_reads_a_body_without_a_length_and_hands_it_on():
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.input"].read())
        start_response("201 Created", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])

    mw = http_wsgi.IdempotencyMiddleware(app, "memory")

    def call(body, terminated):
        got = {}

        def start_response(status, headers, exc_info=None):
            got["status"], got["headers"] = status, dict(headers)

        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/pay", "QUERY_STRING": "", "HTTP_IDEMPOTENCY_KEY": "k",
                   "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": terminated}
        out = b"".join(mw(environ, start_response))
        return got["status"], got["headers"], out

    first = call(b"hello", True)
    again = call(b"hello", True)
    assert seen == [b"hello"]
    assert first[0] == again[0] == "201 Created" and first[2] == again[2] == b"ab"
    assert again[1]["idempotent-replayed"] == "true" and first[1]["Content-Length"] == "2"


def test_the_gate_converts_and_refuses_like_the_core():
    gate = oncely.HttpGate("memory", '{"methods": ["post"]}')
    a = gate.admit("POST", "/p", headers={"Idempotency-Key": "k"}, body=bytearray(b"x"))
    assert a.kind == "run" and a.response is None and a.claim.id == "0:k" and a.claim.token >= 1
    with pytest.raises(oncely.InvalidArgument, match="`status`: must be from 100 to 599"):
        a.claim.complete(99, [], b"")
    # the refused completion gave the key back: the next request runs
    assert gate.admit("POST", "/p", headers=[("Idempotency-Key", "k")], body=b"x").kind == "run"
    with pytest.raises(TypeError, match="`headers`"):
        gate.admit("POST", "/p", headers="Idempotency-Key: k")
    with pytest.raises(TypeError, match="`body` must be bytes"):
        gate.admit("POST", "/p", headers=[], body="text")
    with pytest.raises(oncely.InvalidArgument, match="`scope`"):
        gate.admit("POST", "/p", headers=[("Idempotency-Key", "k2")], scope="s" * 201)
    with pytest.raises(TypeError, match="`policy` must be dict, str or None"):
        oncely.HttpGate("memory", 5)
    with pytest.raises(oncely.InvalidArgument, match="transactions need an SQL store"):
        gate.respond_in_transaction("POST", "/p", lambda tx: (201, [], b""), headers=[("Idempotency-Key", "t")])


async def test_admit_and_complete_await():
    gate = oncely.HttpGate("memory")
    a = await gate.admit_async("POST", "/p", headers=[("Idempotency-Key", "k")], body=b"x")
    assert await a.claim.complete_async(201, [("a", "b")], b"ok") is True
    b = await gate.admit_async("POST", "/p", headers=[("Idempotency-Key", "k")], body=b"x")
    assert b.kind == "respond" and b.response == (201, [("a", "b"), ("idempotent-replayed", "true")], b"ok")
    c = await gate.admit_async("POST", "/p", headers=[("Idempotency-Key", "k2")], body=b"x")
    await c.claim.abandon_async()
    assert (await gate.admit_async("POST", "/p", headers=[("Idempotency-Key", "k2")], body=b"x")).kind == "run"


def test_admit_now_answers_refusals_and_recent_replays_without_the_store():
    from oncely import HttpGate

    gate = HttpGate("memory")
    headers = [("Content-Type", "application/json"), ("Idempotency-Key", "k")]
    assert gate.admit_now("POST", "/p", headers=[], body=b"{}").response[0] == 400
    assert gate.admit_now("GET", "/p", headers=[]).kind == "pass"
    assert gate.admit_now("POST", "/p", headers=headers, body=b"{}") is None  # only the store can say
    claim = gate.admit("POST", "/p", headers=headers, body=b"{}").claim
    assert claim.complete(201, [("content-type", "text/plain")], b"paid")
    replay = gate.admit_now("POST", "/p", headers=headers, body=b"{}")
    assert replay.kind == "respond" and replay.response[0] == 201 and replay.response[2] == b"paid"
    assert gate.admit_now("POST", "/p", headers=headers, body=b'{"x":1}').response[0] == 422
