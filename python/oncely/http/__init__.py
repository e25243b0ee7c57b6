"""``Idempotency-Key`` for HTTP servers and clients, over oncely's core (``oncely.HttpGate``).

Thin adapters only: they read a request, ask the core's gate what to do, and send what it says
(run the handler and store its response, or answer with the stored first response, or with an
RFC 9457 problem). Every rule — which methods take a key, what is stored, what a refusal says —
is the core's, set by the HTTP options (``policy``: a dict, JSON text or ``None``).

- :class:`IdempotencyMiddleware` (this module): ASGI middleware (Starlette, FastAPI, any ASGI
  app); :class:`TransactionalEndpoint`: an ASGI endpoint whose writes commit with the stored
  response, exactly-once, on SQLite or PostgreSQL.
- ``oncely.http.wsgi``: the same two for WSGI (Flask, Django, any WSGI app).
- ``oncely.http.client``: an httpx transport that keys and retries requests, and durable
  requests through an outbox (``send``/``deliver``); needs ``httpx`` (``oncely[client]``).

None of these import a web framework: the base package has no dependencies.
"""

from ._request import Request
from .asgi import IdempotencyMiddleware, TransactionalEndpoint

__all__ = ["IdempotencyMiddleware", "Request", "TransactionalEndpoint"]
