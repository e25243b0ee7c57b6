"""A payments service with Idempotency-Key (Starlette + uvicorn), and a client that retries.

- ``POST /payments`` (JSON ``{"amount": int, "to": str}``) is an
  ``oncely.http.TransactionalEndpoint``: the payment's row and the stored response commit in one
  transaction of the store, so a key is applied exactly once even when retries race, and every
  retry gets the first response (``Idempotent-Replayed: true``).
- ``POST /receipts`` lives behind ``oncely.http.IdempotencyMiddleware``: its effect is outside
  the database (here: a line in a list), run once per key; retries get the first response.
- ``GET /payments`` lists the rows.

Serve it with several processes (the store is shared through the SQLite file or PostgreSQL)::

    ONCELY_PAYMENTS_STORE=payments.db uvicorn http_payments:app --workers 3

Run as a script, it starts the service on a loopback port and sends keyed requests through
``oncely.http.client.IdempotentTransport`` — a retry, racing duplicates and a key reused with
another body — and prints what each got.
"""

import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import oncely
from oncely.http import IdempotencyMiddleware, Request, TransactionalEndpoint

# ANCHOR: readme
SCHEMA = "CREATE TABLE IF NOT EXISTS payments (key TEXT PRIMARY KEY, amount INTEGER NOT NULL, payee TEXT NOT NULL)"


def create_payment(tx: oncely.Transaction, request: Request):
    """Inserts the payment inside the key's transaction; its row and this response commit together."""
    order = request.json()
    key = request.header("idempotency-key")
    tx.execute("INSERT INTO payments (key, amount, payee) VALUES ($1, $2, $3)", (key, order["amount"], order["to"]))
    (n,) = tx.execute("SELECT COUNT(*) FROM payments")[0]
    body = json.dumps({"payment": key, "amount": order["amount"], "to": order["to"], "number": n}).encode()
    return 201, [("content-type", "application/json"), ("location", f"/payments/{key}")], body


def build_app(location: str) -> Starlette:
    """The service over the store at ``location`` (an SQLite path or a PostgreSQL URL)."""
    store = oncely.Store(location)
    store.transaction(lambda tx: tx.execute(SCHEMA))
    sent = []

    async def receipts(request: StarletteRequest) -> JSONResponse:
        order = await request.json()
        sent.append(order["to"])  # the effect outside the database: once per key
        return JSONResponse({"receipt": len(sent), "to": order["to"]}, status_code=201)

    async def list_payments(request: StarletteRequest) -> JSONResponse:
        rows = store.transaction(lambda tx: tx.execute("SELECT key, amount, payee FROM payments ORDER BY key"))
        return JSONResponse([{"key": k, "amount": a, "to": p} for k, a, p in rows])

    receipts_app = IdempotencyMiddleware(Starlette(routes=[Route("/receipts", receipts, methods=["POST"])]), store)
    return Starlette(
        routes=[
            Route("/payments", TransactionalEndpoint(create_payment, store), methods=["POST"]),
            Route("/payments", list_payments, methods=["GET"]),
            Mount("/", receipts_app),
        ]
    )
# ANCHOR_END: readme


app = build_app(os.environ["ONCELY_PAYMENTS_STORE"]) if os.environ.get("ONCELY_PAYMENTS_STORE") else None


def main() -> None:
    import httpx
    import uvicorn

    from oncely.http.client import IdempotentTransport

    with tempfile.TemporaryDirectory() as tmp:
        service = build_app(os.path.join(tmp, "payments.db"))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(service, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        retry = {"max_attempts": 10, "backoff": {"kind": "fixed", "delay_ms": 50}, "jitter": "none"}
        try:
            with httpx.Client(base_url=base, transport=IdempotentTransport(retry=retry)) as client:
                pay = {"amount": 10, "to": "bob"}
                first = client.post("/payments", json=pay, headers={"Idempotency-Key": "pay-1"})
                print("first:", first.status_code, first.text)
                again = client.post("/payments", json=pay, headers={"Idempotency-Key": "pay-1"})
                print("retry:", again.status_code, again.text, "replayed:", again.headers.get("idempotent-replayed"))
                # Five duplicates racing: the loser sees 409 (in flight) and retries until it
                # gets the first response; one row either way.
                with ThreadPoolExecutor(5) as pool:
                    race = list(pool.map(lambda _: client.post(
                        "/payments", json={"amount": 20, "to": "ann"}, headers={"Idempotency-Key": "pay-2"}), range(5)))
                print("race:", sorted({r.text for r in race}))
                reused = client.post("/payments", json={"amount": 99, "to": "bob"}, headers={"Idempotency-Key": "pay-1"})
                print("reused key:", reused.status_code, reused.json()["type"])
                # A key is added when the request has none.
                receipt = client.post("/receipts", json={"to": "bob"})
                print("receipt:", receipt.status_code, receipt.text)
                rows = client.get("/payments").json()
                print("rows:", rows)
                assert len(rows) == 2 and len({r.text for r in race}) == 1 and again.content == first.content
        finally:
            server.should_exit = True
            thread.join(10)
    print("done")


if __name__ == "__main__":
    sys.exit(main())
