"""The request a transactional handler gets: what the gate saw, with the body buffered."""

import json
from typing import Any, List, Optional, Tuple


class Request:
    """One HTTP request as the gate saw it (``TransactionalEndpoint`` handlers get it):
    ``method``, ``path``, ``query`` (without ``?``), ``headers`` (``(name, value)`` pairs in the
    order received), ``body`` (bytes) and ``scope`` (the tenant, or ``None``); ``environ`` is the
    ASGI scope or WSGI environ it came from."""

    __slots__ = ("method", "path", "query", "headers", "body", "scope", "environ")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: List[Tuple[str, str]],
        body: bytes,
        scope: Optional[str],
        environ: Any,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.scope = scope
        self.environ = environ

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (any case), or ``None``."""
        lower = name.lower()
        return next((v for n, v in self.headers if n.lower() == lower), None)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path!r}, {len(self.body)} bytes)"
