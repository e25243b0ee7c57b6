"""oncely: at-most-once, at-least-once and exactly-once delivery.

An inbox (the receiver's processed-ID store) and an outbox (the sender's durable retry queue)
over one Rust core. This package is a thin binding: every rule lives in the core.

Durations are float seconds; timestamps are integer milliseconds since the Unix epoch (``*_ms``);
ids are ``str``; payloads and results are ``bytes``.
"""

import contextlib
import functools
import inspect
from typing import Any, Callable, ContextManager, Iterator, NoReturn, Optional, TypeVar, Union

from . import _native
from ._native import (
    Admission,
    BeginResult,
    Closed,
    Conflict,
    CorruptStore,
    Delivery,
    Event,
    HttpClaim,
    HttpGate,
    HttpRetry,
    InboxRecord,
    InProgress,
    InvalidArgument,
    LeaseLost,
    ManualClock,
    OncelyError,
    Outbox,
    OutboxRecord,
    Permanent,
    Processed,
    ReplayedFailure,
    RetryPolicy,
    Settled,
    Storage,
    Store,
    Message,
    RunSummary,
    Ticket,
    Timeout,
    Transaction,
    Worker,
    __version__,
    fingerprint,
    http_request_of,
    http_request_payload,
    http_verdict,
)

MODES = ("at_most_once", "at_least_once", "exactly_once")


class Retry(Exception):
    """Raise from a ``Worker`` handler: the attempt failed; retry by the policy, or after
    ``after`` seconds (e.g. the receiver's Retry-After). Any other exception is a retry too,
    with ``str(exc)`` as the error."""

    def __init__(self, error: str = "", *, after: Optional[float] = None, **extra: NoReturn) -> None:
        if extra:
            _native._check_keywords("Retry options", extra)
        super().__init__(error)
        self.error = error
        self.after = after


class Snooze(Exception):
    """Raise from a ``Worker`` handler: not now (rate limited); deliver again after ``seconds``
    without using up an attempt."""

    def __init__(self, seconds: float, **extra: NoReturn) -> None:
        if extra:
            _native._check_keywords("Snooze arguments", extra)
        super().__init__(seconds)
        self.seconds = seconds

F = TypeVar("F", bound=Callable[..., Any])


class Claim:
    """What ``Inbox.claim`` yields: ``begin``'s answer, and the ``result`` to store when the
    claimed effect is done."""

    def __init__(self, begun: "_native.BeginResult") -> None:
        self.begun = begun
        self.ticket: Optional[_native.Ticket] = begun.ticket
        self.result: Optional[bytes] = begun.result if begun.outcome == "duplicate" else None

    @property
    def outcome(self) -> str:
        """``"claimed"``, ``"duplicate"``, ``"in_progress"`` or ``"conflict"``."""
        return self.begun.outcome

    @property
    def claimed(self) -> bool:
        """Whether this caller holds the id and should run the effect."""
        return self.begun.outcome == "claimed"


class Inbox(_native.Inbox):
    """The receiver's processed-ID store in one ``scope`` (see ``oncely._native.Inbox``), plus
    the :meth:`idempotent` decorator. Only calls ``process``/``process_async``: no rules here."""

    def claim(
        self,
        id: str,
        payload: Optional[Union[bytes, bytearray]] = None,
        *,
        mode: Optional[str] = None,
        lease: Optional[float] = None,
        **extra: NoReturn,
    ) -> ContextManager["Claim"]:
        """A claim as a context manager, for effects that are not one function call::

            with inbox.claim("order-1", payload) as claim:
                if claim.claimed:
                    claim.result = charge_card()

        Inside, ``claim`` is ``begin``'s answer (``outcome``, ``claimed``, ``result`` of a
        duplicate...). When claimed, leaving the block settles the claim exactly as ``process``
        settles a handler (``Ticket.settle``): normally, finished with ``claim.result``; by an
        exception, released for a retry — or, for an ``oncely.Permanent``, handled by the cache
        policy — and the exception propagates. An unknown keyword is refused at the call.
        """
        if extra:
            _native._check_keywords("claim arguments", extra)
        return self._claim(id, payload, mode, lease)

    @contextlib.contextmanager
    def _claim(
        self, id: str, payload: Optional[Union[bytes, bytearray]], mode: Optional[str], lease: Optional[float]
    ) -> Iterator["Claim"]:
        claim = Claim(self.begin(id, payload, mode=mode, lease=lease))
        try:
            yield claim
        except BaseException as exc:
            if claim.ticket is not None:
                # The text rule of `process` (`str(exc)`, else the type name): a `__str__` that
                # raises must not leave the claim unsettled.
                claim.ticket.settle(error=_native._exception_text(exc), permanent=isinstance(exc, Permanent))
            raise
        if claim.ticket is not None:
            claim.ticket.settle(result=claim.result if claim.result is not None else b"")

    def idempotent(
        self,
        key: Union[str, Callable[..., str]],
        *,
        payload: Optional[Callable[..., bytes]] = None,
        mode: Optional[str] = None,
        lease: Optional[float] = None,
        wait: Optional[float] = None,
        **extra: NoReturn,
    ) -> Callable[[F], F]:
        """Runs the decorated function through :meth:`process`: once per id, by the mode.

        ``key`` names the id: a ``str.format`` template over the call's arguments
        (``"order-{order_id}"``, ``"{0}"``) or a callable taking the same arguments. ``payload``
        (optional, same arguments, returns bytes) is fingerprinted so that reusing an id with
        other data raises ``Conflict``. The function must return ``bytes``; the wrapper returns
        them — or, for a duplicate, the stored result, without calling the function. ``async
        def`` functions get an ``async`` wrapper (``process_async``).
        """
        if extra:
            _native._check_keywords("idempotent options", extra)

        def decorate(fn: F) -> F:
            if isinstance(key, str):
                signature = inspect.signature(fn)

                def key_of(*args: Any, **kwargs: Any) -> str:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    return key.format(*args, **bound.arguments)

            else:
                key_of = key

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Optional[bytes]:
                    done = await self.process_async(
                        key_of(*args, **kwargs),
                        payload(*args, **kwargs) if payload else None,
                        lambda: fn(*args, **kwargs),
                        mode=mode,
                        lease=lease,
                        wait=wait,
                    )
                    return done.result

                return run_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Optional[bytes]:
                done = self.process(
                    key_of(*args, **kwargs),
                    payload(*args, **kwargs) if payload else None,
                    lambda: fn(*args, **kwargs),
                    mode=mode,
                    lease=lease,
                    wait=wait,
                )
                return done.result

            return run  # type: ignore[return-value]

        return decorate

__all__ = [
    "Admission",
    "BeginResult",
    "Claim",
    "Closed",
    "Conflict",
    "CorruptStore",
    "Delivery",
    "Event",
    "HttpClaim",
    "HttpGate",
    "HttpRetry",
    "Inbox",
    "InboxRecord",
    "InProgress",
    "InvalidArgument",
    "LeaseLost",
    "MODES",
    "ManualClock",
    "Message",
    "OncelyError",
    "Outbox",
    "OutboxRecord",
    "Permanent",
    "Processed",
    "ReplayedFailure",
    "Retry",
    "RetryPolicy",
    "RunSummary",
    "Settled",
    "Snooze",
    "Storage",
    "Store",
    "Ticket",
    "Timeout",
    "Transaction",
    "Worker",
    "__version__",
    "fingerprint",
    "http_request_of",
    "http_request_payload",
    "http_verdict",
]
