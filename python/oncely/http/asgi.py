"""ASGI adapters of the ``Idempotency-Key`` gate (Starlette, FastAPI, any ASGI app).

They buffer the request, ask the core's gate (``oncely.HttpGate``) what to do and do it; no rule
is decided here."""

import asyncio
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .._native import HttpGate, Store, Transaction
from ._request import Request

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Policy = Optional[Union[Mapping[str, Any], str]]
Response = Tuple[int, List[Tuple[str, str]], bytes]


class _Disconnected(Exception):
    """The client went away before its request's body arrived."""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the buffered body, then the server's messages."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parts(
    scope: Scope, scope_of: Optional[Callable[[Scope], Optional[str]]]
) -> Tuple[str, str, str, List[Tuple[str, str]], Optional[str]]:
    """Method, path (as sent), query and headers of an ASGI request, and its tenant (by
    ``scope_of``, ``None`` without one): what the gate is asked about."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope.get("headers", [])]
    tenant = scope_of(scope) if scope_of is not None else None
    return scope["method"], path, query, headers, tenant


async def _send_response(send: Send, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
    raw = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    if not any(n == b"content-length" for n, _ in raw):
        raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Captured:
    """What an app sent: its status, headers and whole body."""

    def __init__(self) -> None:
        self.status: Optional[int] = None
        self.headers: List[Tuple[str, str]] = []
        self.chunks: List[bytes] = []
        self.complete = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class IdempotencyMiddleware:
    """ASGI middleware: a keyed request runs the app once; its retries get the first response.

    ``IdempotencyMiddleware(app, store, policy=None, scope=None)``: ``store`` is a location
    (``"memory"``, an SQLite path, a PostgreSQL URL) or an ``oncely.Store``; ``policy`` the HTTP
    options (dict, JSON text or ``None``; a bad option raises ``oncely.InvalidArgument`` here);
    ``scope`` an optional callable taking the ASGI scope and returning the tenant (``str``) whose
    key space the key lives in, or ``None``. Works as ``Starlette(middleware=[Middleware(
    IdempotencyMiddleware, store=...)])`` or wrapped around any ASGI app.

    Per request it buffers the body and asks the gate: passed through, the app runs as usual;
    answered, the gate's response (a replay or a problem) is sent and the app does not run;
    claimed, the app runs with the buffered body, its response is captured whole, handed to the
    gate (stored or the key given back, by the policy) and then sent. If the app raises, the key
    is given back and the exception propagates (a response the app completed first is sent). An
    error of the gate's own (the store failed, ``oncely.LeaseLost`` when the claim was taken
    over) propagates too: the server answers 500 and the client retries with the same key.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Union[str, Store],
        policy: Policy = None,
        scope: Optional[Callable[[Scope], Optional[str]]] = None,
    ) -> None:
        self.app = app
        self.gate = HttpGate(store, policy)
        self.scope_of = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        method, path, query, headers, tenant = _parts(scope, self.scope_of)
        # Answered without the store when it can be (a refusal, a recent replay); else the
        # asynchronous call, which may wait for the store.
        admission = self.gate.admit_now(method, path, headers=headers, body=body, query=query, scope=tenant)
        if admission is None:
            admission = await self.gate.admit_async(
                method, path, headers=headers, body=body, query=query, scope=tenant
            )
        if admission.response is not None:
            await _send_response(send, *admission.response)
            return
        claim = admission.claim
        if claim is None:
            await self.app(scope, _replay(body, receive), send)
            return
        captured = _Captured()
        try:
            await self.app(scope, _replay(body, receive), captured.send)
            if captured.status is None or not captured.complete:
                raise RuntimeError("the ASGI app returned without sending a whole response")
        except BaseException:
            # Sync on purpose: this path may run in a cancelled task, where an await would not.
            claim.abandon()
            if captured.status is not None and captured.complete:
                await _send_response(send, captured.status, captured.headers, captured.body)
            raise
        await claim.complete_async(captured.status, captured.headers, captured.body)
        await _send_response(send, captured.status, captured.headers, captured.body)


class TransactionalEndpoint:
    """An ASGI endpoint whose database writes and stored response commit together: exactly-once
    per key, for a route whose data lives in the same SQLite or PostgreSQL store as the keys.

    ``TransactionalEndpoint(handler, store, policy=None, scope=None)``; ``handler(tx, request)``
    is a plain (sync) function taking an ``oncely.Transaction`` (write with ``tx.execute``,
    ``tx.enqueue``) and an ``oncely.http.Request``, returning ``(status, headers, body)``
    (``headers`` a list of ``(name, value)``). It runs through ``HttpGate.respond_in_transaction``
    in a worker thread, on the store's writer thread with the transaction open — database work
    only. A retry gets the stored response without running it; a response the policy does not
    store (a 5xx) rolls its writes back; an exception rolls them back and propagates.

    Mount it as a route (``Route("/payments", TransactionalEndpoint(...), methods=["POST"])``).
    Do not also put :class:`IdempotencyMiddleware` with the same ``name`` option in front of it:
    both would claim the same key.
    """

    def __init__(
        self,
        handler: Callable[[Transaction, Request], Tuple[int, Any, bytes]],
        store: Union[str, Store],
        policy: Policy = None,
        scope: Optional[Callable[[Scope], Optional[str]]] = None,
    ) -> None:
        self.handler = handler
        self.gate = HttpGate(store, policy)
        self.scope_of = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        method, path, query, headers, tenant = _parts(scope, self.scope_of)
        request = Request(method, path, query, headers, body, tenant, scope)
        handler = self.handler
        status, out_headers, out_body = await asyncio.to_thread(
            self.gate.respond_in_transaction,
            method,
            path,
            lambda tx: handler(tx, request),
            headers=headers,
            body=body,
            query=query,
            scope=tenant,
        )
        await _send_response(send, status, out_headers, out_body)
