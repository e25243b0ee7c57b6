"""WSGI adapters of the ``Idempotency-Key`` gate (Flask, Django, any WSGI app).

They buffer the request, ask the core's gate (``oncely.HttpGate``) what to do and do it; no rule
is decided here."""

import http
import io
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .._native import HttpGate, Store, Transaction
from ._request import Request

Environ = Dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Policy = Optional[Union[Mapping[str, Any], str]]


def _read_body(environ: Environ) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.strip().isdigit():
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def _parts(
    environ: Environ, scope_of: Optional[Callable[[Environ], Optional[str]]]
) -> Tuple[str, str, str, List[Tuple[str, str]], Optional[str]]:
    """Method, path (as sent when the server says), query and headers of a WSGI request, and
    its tenant (by ``scope_of``, ``None`` without one): what the gate is asked about."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    path = raw.split("?", 1)[0] if raw else environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    headers = []
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            headers.append((name[5:].replace("_", "-").lower(), value))
        elif name in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((name.replace("_", "-").lower(), value))
    tenant = scope_of(environ) if scope_of is not None else None
    return environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), headers, tenant


def _with_body(environ: Environ, body: bytes) -> Environ:
    """The environ with the buffered body to read again."""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def _respond(
    start_response: StartResponse, status: int, headers: List[Tuple[str, str]], body: bytes
) -> List[bytes]:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    out = list(headers)
    if not any(n.lower() == "content-length" for n, _ in out):
        out.append(("Content-Length", str(len(body))))
    start_response(f"{status} {phrase}".rstrip(), out)
    return [body]


def _run(app: WSGIApp, environ: Environ) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """Runs a WSGI app and captures its whole response."""
    started: Dict[str, Any] = {}
    chunks: List[bytes] = []

    def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(None, 1)[0])
        started["headers"] = list(headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if "status" not in started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    return started["status"], started["headers"], b"".join(chunks)


class IdempotencyMiddleware:
    """WSGI middleware: a keyed request runs the app once; its retries get the first response.

    ``IdempotencyMiddleware(app, store, policy=None, scope=None)``, e.g.
    ``flask_app.wsgi_app = IdempotencyMiddleware(flask_app.wsgi_app, "payments.db")``: ``store``
    is a location or an ``oncely.Store``; ``policy`` the HTTP options (dict, JSON text or
    ``None``; a bad option raises ``oncely.InvalidArgument`` here); ``scope`` an optional
    callable taking the WSGI environ and returning the tenant (``str``) or ``None``.

    Per request it buffers the body and asks the gate: passed through, the app runs as usual;
    answered, the gate's response (a replay or a problem) is sent and the app does not run;
    claimed, the app runs with the buffered body, its response is collected whole, handed to the
    gate (stored or the key given back, by the policy) and then sent. If the app raises, the key
    is given back and the exception propagates. An error of the gate's own (the store failed,
    ``oncely.LeaseLost`` when the claim was taken over) propagates too: the server answers 500
    and the client retries with the same key.
    """

    def __init__(
        self,
        app: WSGIApp,
        store: Union[str, Store],
        policy: Policy = None,
        scope: Optional[Callable[[Environ], Optional[str]]] = None,
    ) -> None:
        self.app = app
        self.gate = HttpGate(store, policy)
        self.scope_of = scope

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        method, path, query, headers, tenant = _parts(environ, self.scope_of)
        admission = self.gate.admit(method, path, headers=headers, body=body, query=query, scope=tenant)
        if admission.response is not None:
            return _respond(start_response, *admission.response)
        claim = admission.claim
        if claim is None:
            return self.app(_with_body(environ, body), start_response)
        try:
            status, out_headers, out_body = _run(self.app, _with_body(environ, body))
        except BaseException:
            claim.abandon()
            raise
        claim.complete(status, out_headers, out_body)
        return _respond(start_response, status, out_headers, out_body)


class TransactionalEndpoint:
    """A WSGI app whose database writes and stored response commit together: exactly-once per
    key, for a route whose data lives in the same SQLite or PostgreSQL store as the keys.

    ``TransactionalEndpoint(handler, store, policy=None, scope=None)``; ``handler(tx, request)``
    takes an ``oncely.Transaction`` and an ``oncely.http.Request`` and returns ``(status,
    headers, body)``. It runs through ``HttpGate.respond_in_transaction`` on the store's writer
    thread with the transaction open — database work only. A retry gets the stored response
    without running it; a response the policy does not store (a 5xx) rolls its writes back; an
    exception rolls them back and propagates. Mount it under a path (e.g. with werkzeug's
    ``DispatcherMiddleware``), and do not also put :class:`IdempotencyMiddleware` with the same
    ``name`` option in front of it: both would claim the same key.
    """

    def __init__(
        self,
        handler: Callable[[Transaction, Request], Tuple[int, Any, bytes]],
        store: Union[str, Store],
        policy: Policy = None,
        scope: Optional[Callable[[Environ], Optional[str]]] = None,
    ) -> None:
        self.handler = handler
        self.gate = HttpGate(store, policy)
        self.scope_of = scope

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        method, path, query, headers, tenant = _parts(environ, self.scope_of)
        request = Request(method, path, query, headers, body, tenant, environ)
        handler = self.handler
        status, out_headers, out_body = self.gate.respond_in_transaction(
            method, path, lambda tx: handler(tx, request), headers=headers, body=body, query=query, scope=tenant
        )
        return _respond(start_response, status, out_headers, out_body)
