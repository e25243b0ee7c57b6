"""oncely.http.TransactionalEndpoint (ASGI, on uvicorn) and oncely.http.wsgi.TransactionalEndpoint
(WSGI, on waitress): the route's row and its stored response commit together — a retry is
replayed without a second row, an answer that is not stored (5xx) and an exception roll the row
back and give the key back — on SQLite and (given ONCELY_POSTGRES_URL) PostgreSQL."""

import os

import httpx
import pytest

import oncely
from oncely.http import Request, TransactionalEndpoint
from oncely.http import wsgi as http_wsgi

from http_support import AsgiServer, WsgiServer, location

STORES = ["sqlite", "postgres"] if os.environ.get("ONCELY_POSTGRES_URL") else ["sqlite"]


FAIL = {}  # key -> how its next run fails ("raise" or "503"), once


def handler(tx: oncely.Transaction, request: Request):
    assert isinstance(request, Request) and request.method == "POST"
    order, key = request.json(), request.header("Idempotency-Key")
    tx.execute("INSERT INTO orders (key, item) VALUES ($1, $2)", (key, order["item"]))
    fail = FAIL.pop(key, None)
    if fail == "raise":
        raise RuntimeError("the warehouse is on fire")
    if fail == "503":
        return 503, [("retry-after", "1")], b"later"
    (n,) = tx.execute("SELECT COUNT(*) FROM orders")[0]
    return 201, [("content-type", "text/plain"), ("x-rows", str(n))], f"order {order['item']}".encode()


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_the_row_and_the_response_commit_together(kind, store_kind, tmp_path):
    store = oncely.Store(location(store_kind, tmp_path, "orders"))
    store.transaction(lambda tx: tx.execute("CREATE TABLE orders (key TEXT, item TEXT)"))
    if kind == "asgi":
        server = AsgiServer(TransactionalEndpoint(handler, store))
    else:
        server = WsgiServer(http_wsgi.TransactionalEndpoint(handler, store))

    def rows():
        return store.transaction(lambda tx: tx.execute("SELECT key, item FROM orders ORDER BY key, item"))

    limits = httpx.Limits(max_keepalive_connections=0)
    with server, httpx.Client(base_url=server.url, limits=limits, timeout=10) as c:
        def post(key, body):
            return c.post("/orders", json=body, headers={"Idempotency-Key": key})

        first = post("k1", {"item": "tea"})
        assert (first.status_code, first.text, first.headers["x-rows"]) == (201, "order tea", "1")
        again = post("k1", {"item": "tea"})
        assert (again.status_code, again.text, again.headers["idempotent-replayed"]) == (201, "order tea", "true")
        assert post("k1", {"item": "coffee"}).status_code == 422
        FAIL.update(k2="503", k3="raise")
        assert post("k2", {"item": "cake"}).status_code == 503
        assert post("k3", {"item": "jam"}).status_code == 500
        assert rows() == [("k1", "tea")], "the 503's and the exception's rows were rolled back"
        # their keys were given back: a retry runs the handler again, once
        assert post("k2", {"item": "cake"}).text == "order cake"
        assert post("k3", {"item": "jam"}).text == "order jam"
        assert post("k3", {"item": "jam"}).headers["idempotent-replayed"] == "true"
        missing = c.post("/orders", json={"item": "x"})
        assert missing.status_code == 400 and missing.json()["type"] == "urn:oncely:problem:idempotency-key-missing"
    assert rows() == [("k1", "tea"), ("k2", "cake"), ("k3", "jam")]
