"""The client side of ``Idempotency-Key``, for httpx (``pip install oncely[client]``).

- :class:`IdempotentTransport` / :class:`AsyncIdempotentTransport`: an httpx transport that
  gives every request an ``Idempotency-Key`` (a fresh UUID unless it has one) and sends it again,
  same key and body, while the core's ``oncely.HttpRetry`` says so: no answer (a timeout, a
  dropped connection), 409 in flight, 408/425/429, 5xx — after ``Retry-After`` when the server
  gives one, else the retry policy's backoff.
- :func:`send` and :func:`deliver`: durable requests. ``send`` puts a request in an
  ``oncely.Outbox`` (it survives a restart); a ``Worker`` running ``deliver(client)`` sends it with
  the message id as its key until the core's ``oncely.http_verdict`` says it is settled.
"""

import time
import uuid
from typing import Any, Awaitable, Callable, List, Mapping, Optional, Tuple, Union

import httpx

from .. import Retry
from .._native import HttpRetry, Message, Outbox, Permanent, http_request_of, http_request_payload, http_verdict

KEY_HEADER = "Idempotency-Key"
RetryPolicy = Optional[Union[Mapping[str, Any], str]]


def _keyed(request: httpx.Request) -> str:
    """The request's key, given one when it has none."""
    key = request.headers.get(KEY_HEADER)
    if key is None:
        key = str(uuid.uuid4())
        request.headers[KEY_HEADER] = key
    return key


class IdempotentTransport(httpx.BaseTransport):
    """An httpx transport that keys requests and retries them by ``oncely.HttpRetry``.

    ``IdempotentTransport(inner=None, retry=None)``: ``inner`` sends each attempt (default
    ``httpx.HTTPTransport()``); ``retry`` is a retry-policy dict or JSON text (the form
    ``Outbox(retry=...)`` takes; ``None``: the core's default). A transport error (timeouts
    included) counts as no answer; when the policy gives up, the last answer is returned or the
    last error raised. Use it as ``httpx.Client(transport=IdempotentTransport())``.
    """

    def __init__(self, inner: Optional[httpx.BaseTransport] = None, retry: RetryPolicy = None) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self.retry = retry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        retries = HttpRetry(_keyed(request), self.retry)
        request.read()
        while True:
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError:
                wait = retries.next(None, None)
                if wait is None:
                    raise
                time.sleep(wait)
                continue
            wait = retries.next(response.status_code, response.headers.get("retry-after"))
            if wait is None:
                return response
            response.read()
            response.close()
            time.sleep(wait)

    def close(self) -> None:
        self.inner.close()


class AsyncIdempotentTransport(httpx.AsyncBaseTransport):
    """:class:`IdempotentTransport` for ``httpx.AsyncClient``; ``inner`` defaults to
    ``httpx.AsyncHTTPTransport()``."""

    def __init__(self, inner: Optional[httpx.AsyncBaseTransport] = None, retry: RetryPolicy = None) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.retry = retry

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio

        retries = HttpRetry(_keyed(request), self.retry)
        await request.aread()
        while True:
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TransportError:
                wait = retries.next(None, None)
                if wait is None:
                    raise
                await anyio.sleep(wait)
                continue
            wait = retries.next(response.status_code, response.headers.get("retry-after"))
            if wait is None:
                return response
            await response.aread()
            await response.aclose()
            await anyio.sleep(wait)

    async def aclose(self) -> None:
        await self.inner.aclose()


def send(
    outbox: Outbox,
    method: str,
    url: str,
    *,
    headers: Optional[Union[Mapping[str, str], List[Tuple[str, str]]]] = None,
    body: bytes = b"",
) -> str:
    """Puts a request in ``outbox`` for a worker running :func:`deliver` to send; returns the
    message id, which is the request's ``Idempotency-Key`` on every attempt (an
    ``Idempotency-Key`` in ``headers`` becomes the message id; without one it is a fresh id).
    The payload is the core's one form of a queued request (``oncely.http_request_payload``), so
    a worker in any language can deliver it. The outbox's retry policy, dead-lettering and
    ordering apply."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    key, payload = http_request_payload(method, url, pairs, body)
    outbox.enqueue(payload, id=key)
    return key


def _request_of(message: Message) -> Tuple[str, str, List[Tuple[str, str]], bytes]:
    method, url, headers, body = http_request_of(message.payload)
    headers.append((KEY_HEADER, message.id))
    return method, url, headers, body


def _settle(status: Optional[int], retry_after: Optional[str], error: str) -> None:
    """Acks (returns), or raises what the worker needs, by the core's verdict."""
    verdict, after = http_verdict(status, retry_after)
    if verdict == "final":
        raise Permanent(error)
    if verdict == "again":
        raise Retry(error, after=after)


def deliver(
    client: Union[httpx.Client, httpx.AsyncClient],
) -> Callable[[Message], Union[None, Awaitable[None]]]:
    """A ``Worker`` handler that sends the requests :func:`send` queued, through ``client`` (a
    plain ``httpx.Client``, or an ``httpx.AsyncClient`` for ``run_async``), with the message id
    as ``Idempotency-Key``. By ``oncely.http_verdict``: done — the message is acked; final — it
    fails for good (``oncely.Permanent``, dead-lettered); again — ``oncely.Retry``, after the
    server's ``Retry-After`` when it gave one. No answer at all counts as again."""
    if isinstance(client, httpx.AsyncClient):
        aclient = client

        async def handle_async(message: Message) -> None:
            method, url, headers, body = _request_of(message)
            try:
                r = await aclient.request(method, url, headers=headers, content=body)
            except httpx.TransportError as exc:
                _settle(None, None, f"no answer: {type(exc).__name__}: {exc}")
                return
            _settle(r.status_code, r.headers.get("retry-after"), f"HTTP {r.status_code}")

        return handle_async

    sclient = client

    def handle(message: Message) -> None:
        method, url, headers, body = _request_of(message)
        try:
            r = sclient.request(method, url, headers=headers, content=body)
        except httpx.TransportError as exc:
            _settle(None, None, f"no answer: {type(exc).__name__}: {exc}")
            return
        _settle(r.status_code, r.headers.get("retry-after"), f"HTTP {r.status_code}")

    return handle


__all__ = ["AsyncIdempotentTransport", "IdempotentTransport", "deliver", "send"]
