"""Support for the HTTP tests: real servers on loopback (uvicorn for ASGI, waitress for WSGI, both
in a thread of the test process), a fault proxy, and the stores the tests run on."""

import asyncio
import itertools
import os
import random
import socket
import threading
import time
from typing import Callable, Optional

import pytest

import oncely

_schemas = itertools.count()

BACKENDS = ["memory", "sqlite"] + (["postgres"] if os.environ.get("ONCELY_POSTGRES_URL") else [])


def location(kind: str, tmp_path, name: str) -> str:
    """A fresh store of `kind`: a new memory store, an SQLite file, or a PostgreSQL schema of its own."""
    if kind == "memory":
        return "memory"
    if kind == "sqlite":
        return str(tmp_path / f"{name}.db")
    schema = f"py_http_{os.getpid()}_{next(_schemas)}"
    return oncely.Store.postgres_schema_url(os.environ["ONCELY_POSTGRES_URL"], schema)


def postgres_or_skip() -> None:
    """PostgreSQL runs only given ONCELY_POSTGRES_URL; under CI a missing server fails."""
    if os.environ.get("ONCELY_POSTGRES_URL"):
        return
    assert os.environ.get("CI") != "true", "ONCELY_POSTGRES_URL is not set under CI"
    pytest.skip("!! the postgres backend: ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AsgiServer:
    """uvicorn serving an ASGI app on a loopback port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "AsgiServer":
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class WsgiServer:
    """waitress serving a WSGI app on a loopback port, in a thread."""

    def __init__(self, app, threads: int = 8) -> None:
        import waitress

        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.port = self.server.effective_port
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # waitress's own run() loops until its socket map is empty, and closing the server from
        # another thread pulls descriptors from under its select (EBADF in that thread). Loop
        # here instead, a short step at a time, and close in this thread once asked to stop.
        server = self.server
        while not self.stopping.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        server.close()

    def __enter__(self) -> "WsgiServer":
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.server.task_dispatcher.shutdown(timeout=5)


class FaultProxy:
    """A TCP proxy on loopback in front of `upstream_port` that breaks some connections: per
    connection (the clients open one per request) it drops the request (closes before sending
    it on), drops the response (sends the request on, waits for the first bytes of the answer —
    the handler has run — and closes), delays the answer by `delay` seconds (past the client's
    timeout), or passes it. Which is drawn from a seeded stream; `counts` says how often each came.
    """

    FAULTS = ("drop_request", "drop_response", "delay", "pass")

    def __init__(self, upstream_port: int, seed: int = 7, weights=(2, 2, 1, 5), delay: float = 1.0) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.weights = weights
        self.delay = delay
        self.counts = {f: 0 for f in self.FAULTS}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.port = 0
        self._ready = threading.Event()
        self._stop: Optional[asyncio.Event] = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            # Connections still open (a delayed answer) end here, their sockets closed.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.01)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        fault = self.rng.choices(self.FAULTS, self.weights)[0]
        self.counts[fault] += 1
        try:
            if fault == "drop_request":
                await creader.read(65536)
                return
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                up = asyncio.ensure_future(self._pipe(creader, uwriter))
                if fault == "drop_response":
                    await ureader.read(1)  # the answer has begun: the request was handled
                    up.cancel()
                    return
                first = await ureader.read(65536)
                if fault == "delay":
                    await asyncio.sleep(self.delay)
                if first:
                    cwriter.write(first)
                    await cwriter.drain()
                await self._pipe(ureader, cwriter)
                up.cancel()
            finally:
                uwriter.close()
        except (ConnectionError, OSError):
            pass
        finally:
            cwriter.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies until the end, then closes the other side (so its peer sees the end too)."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()
