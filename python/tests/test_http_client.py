"""oncely.http.client: the retrying httpx transport (against scripted answers, and the native
HttpRetry/http_verdict it asks), and durable requests (send + deliver) through a fault proxy to
a real server."""

import json
import threading
import time
import uuid

import httpx
import pytest

import oncely
from oncely import HttpRetry, Outbox, Worker, http_verdict
from oncely.http import IdempotencyMiddleware
from oncely.http import client as http_client
from oncely.http.client import AsyncIdempotentTransport, IdempotentTransport, deliver, send

from http_support import AsgiServer, FaultProxy, wait_for

FAST = {"max_attempts": 5, "backoff": {"kind": "fixed", "delay_ms": 1}, "jitter": "none"}


# ------------------------------------------------------------------------------------------------
# the core's answers, through the binding
# ------------------------------------------------------------------------------------------------


def test_http_verdict_sorts_answers():
    assert http_verdict(201) == ("done", None)
    assert http_verdict(302, None) == ("done", None)
    assert http_verdict(422) == ("final", None)
    assert http_verdict(501) == ("final", None)
    assert http_verdict(None) == ("again", None)
    assert http_verdict(409, "3") == ("again", 3.0)
    assert http_verdict(503, "soon") == ("again", None)
    assert http_verdict(429, "Wed, 21 Oct 2015 07:28:00 GMT") == ("again", 0.0)  # a date in the past


def test_http_retry_follows_the_policy_and_retry_after():
    r = HttpRetry("k", {"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 250}, "jitter": "none"})
    assert r.next(503) == 0.25
    assert r.next(409, "2") == 2.0
    assert r.next(503) is None  # the third attempt was the last
    assert HttpRetry("k").next(201) is None
    assert HttpRetry("k").next(400) is None
    with pytest.raises(oncely.InvalidArgument):
        HttpRetry("k", {"max_attempts": 3})
    with pytest.raises(oncely.InvalidArgument, match="`status`"):
        HttpRetry("k").next(70000)


# ------------------------------------------------------------------------------------------------
# the transport, against scripted answers
# ------------------------------------------------------------------------------------------------


class Script:
    """An inner transport answering from a list: a status, (status, headers), or an exception."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.headers.get("idempotency-key"), request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, content=f"answer {len(self.seen)}".encode())


@pytest.fixture
def waits(monkeypatch):
    """The transport's sleeps, recorded instead of slept."""
    got = []
    monkeypatch.setattr(http_client.time, "sleep", got.append)
    return got


def client_for(script, retry=FAST):
    return httpx.Client(transport=IdempotentTransport(httpx.MockTransport(script), retry=retry), base_url="http://x")


def test_a_fresh_key_is_kept_across_attempts_with_the_same_body(waits):
    script = Script(503, (409, {"retry-after": "2"}), httpx.ReadTimeout("slow"), 201)
    r = client_for(script).post("/pay", content=b"10 EUR")
    assert r.status_code == 201 and r.text == "answer 4"
    keys = {k for k, _ in script.seen}
    assert len(keys) == 1 and uuid.UUID(keys.pop())
    assert {body for _, body in script.seen} == {b"10 EUR"}
    assert waits == [0.001, 2.0, 0.001]  # the policy's backoff, and Retry-After when given


def test_the_callers_key_is_used(waits):
    script = Script(500, 200)
    client_for(script).post("/pay", content=b"x", headers={"Idempotency-Key": "mine"})
    assert [k for k, _ in script.seen] == ["mine", "mine"]


def test_a_final_answer_is_returned_at_once(waits):
    script = Script(422, 201)
    r = client_for(script).post("/pay", content=b"x")
    assert r.status_code == 422 and len(script.seen) == 1 and waits == []


def test_giving_up_returns_the_last_answer_or_raises_the_last_error(waits):
    script = Script(503, 503, 503, 503, 503)
    r = client_for(script).post("/pay", content=b"x")
    assert r.status_code == 503 and r.text == "answer 5" and len(waits) == 4
    script = Script(*[httpx.ConnectError("refused")] * 5)
    with pytest.raises(httpx.ConnectError):
        client_for(script).post("/pay", content=b"x")
    assert len(script.seen) == 5


async def test_the_async_transport_retries_alike(monkeypatch):
    import anyio

    got = []

    async def sleep(s):
        got.append(s)

    monkeypatch.setattr(anyio, "sleep", sleep)
    script = Script(httpx.ConnectTimeout("t"), (429, {"retry-after": "1"}), 201)
    transport = AsyncIdempotentTransport(httpx.MockTransport(script), retry=FAST)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
        r = await c.post("/pay", content=b"y")
    assert r.status_code == 201 and len({k for k, _ in script.seen}) == 1 and got == [0.001, 1.0]


# ------------------------------------------------------------------------------------------------
# durable requests
# ------------------------------------------------------------------------------------------------


def test_send_queues_the_request_under_its_key():
    outbox = Outbox("memory", "http")
    given = send(outbox, "POST", "http://x/pay", headers={"Idempotency-Key": "k1", "X-A": "b"}, body=b"\x00\x01")
    made = send(outbox, "PUT", "http://x/pay", body=b"")
    assert given == "k1" and made and made != given
    p = json.loads(outbox.get("k1").payload)
    assert p["method"] == "POST" and p["url"] == "http://x/pay" and ["X-A", "b"] in p["headers"]


def test_deliver_maps_the_verdict_to_the_worker():
    answers = {"/ok": (201, {}), "/bad": (422, {}), "/busy": (503, {"retry-after": "3"})}
    seen = []

    def app(request):
        seen.append(request.headers["idempotency-key"])
        status, headers = answers[request.url.path]
        return httpx.Response(status, headers=headers)

    handle = deliver(httpx.Client(transport=httpx.MockTransport(app)))
    outbox = Outbox("memory", "http", retry=FAST)
    results = {}
    ids = {path: send(outbox, "POST", f"http://x{path}", body=b"{}") for path in answers}
    for path, id in ids.items():
        try:
            results[path] = handle(FakeMessage(outbox.get(id)))
        except oncely.Permanent as e:
            results[path] = ("permanent", str(e))
        except oncely.Retry as e:
            results[path] = ("retry", e.after)
    assert results == {"/ok": None, "/bad": ("permanent", "HTTP 422"), "/busy": ("retry", 3.0)}
    assert sorted(seen) == sorted(ids.values())


class FakeMessage:
    """The fields `deliver` reads, from an outbox record."""

    def __init__(self, record):
        self.id = record.id
        self.payload = record.payload


def payments_app(runs, first):
    """A Starlette app behind the middleware over SQLite: counts runs per key, keeps first answers."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = threading.Lock()

    async def pay(request):
        key = request.headers["idempotency-key"]
        body = await request.json()
        with lock:
            runs[key] = runs.get(key, 0) + 1
            answer = {"key": key, "amount": body["amount"], "run": runs[key], "id": str(uuid.uuid4())}
            first.setdefault(key, answer)
        return JSONResponse(answer, status_code=201)

    return Starlette(routes=[Route("/pay", pay, methods=["POST"])])


def test_durable_requests_reach_the_server_once_through_faults(tmp_path):
    runs, first = {}, {}
    app = IdempotencyMiddleware(payments_app(runs, first), str(tmp_path / "server.db"))
    outbox = Outbox(str(tmp_path / "client.db"), "payments", retry={
        "max_attempts": 40, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}, lease=5)
    n = 12
    with AsgiServer(app) as server, FaultProxy(server.port, seed=3, delay=0.6) as proxy:
        ids = [send(outbox, "POST", f"{proxy.url}/pay", headers={"content-type": "application/json"},
                    body=json.dumps({"amount": i}).encode()) for i in range(n)]
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=0.3, limits=limits) as client:
            worker = Worker(outbox, concurrency=4)
            handler = deliver(client)
            deadline = time.monotonic() + 40
            while outbox.stats()["delivered"] < n:
                assert time.monotonic() < deadline, outbox.stats()
                worker.run_until_idle(handler)
                time.sleep(0.01)
    assert outbox.stats()["dead"] == 0
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}, runs
    assert sum(proxy.counts[f] for f in ("drop_request", "drop_response", "delay")) > 0, proxy.counts


def test_a_queued_request_has_one_payload_form_and_its_key_is_the_id():
    from oncely import InvalidArgument, http_request_of, http_request_payload

    key, payload = http_request_payload(
        "POST", "http://127.0.0.1:1/pay", [("Content-Type", "application/json"), ("Idempotency-Key", "k-1")], b"{}\x00"
    )
    assert key == "k-1"
    assert http_request_of(payload) == ("POST", "http://127.0.0.1:1/pay", [("Content-Type", "application/json")], b"{}\x00")
    fresh, _ = http_request_payload("POST", "http://h/", [])
    assert len(fresh) == 36
    with pytest.raises(InvalidArgument, match="is not a queued HTTP request"):
        http_request_of(b'{"method": "POST"}')
