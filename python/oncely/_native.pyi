"""Type stubs of the native module ``oncely._native`` (hand-written; checked by the tests).

Every call with parameters also takes ``**extra`` at run time, only to refuse it: an unknown
keyword is ``InvalidArgument`` with the core's text (``invalid argument `lease arguments`: has no
option `maxx` (known: max)``). The stubs leave ``**extra`` out, so a type checker flags the
misspelling before it runs. Left out (or ``None``), an optional argument takes the core's default
(``oncely::defaults``, the configurations' ``Default``s)."""

from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, final

from typing_extensions import disjoint_base

_T = TypeVar("_T")

__version__: str
__all__ = [
    "Admission",
    "BeginResult",
    "Closed",
    "Conflict",
    "CorruptStore",
    "Delivery",
    "Event",
    "HttpClaim",
    "HttpGate",
    "HttpRetry",
    "InProgress",
    "Inbox",
    "InboxRecord",
    "InvalidArgument",
    "LeaseLost",
    "ManualClock",
    "Message",
    "OncelyError",
    "Outbox",
    "OutboxRecord",
    "Permanent",
    "Processed",
    "ReplayedFailure",
    "RetryPolicy",
    "RunSummary",
    "Settled",
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

# --- errors ------------------------------------------------------------------------------------

class OncelyError(Exception):
    """Every error oncely reports. ``code`` is the stable code string."""

    code: Optional[str]

class InvalidArgument(OncelyError):
    code: str

class Conflict(OncelyError):
    code: str

class InProgress(OncelyError):
    code: str

class LeaseLost(OncelyError):
    code: str

class Storage(OncelyError):
    code: str

class CorruptStore(OncelyError):
    code: str

class Closed(OncelyError):
    code: str

class Timeout(OncelyError):
    code: str

class ReplayedFailure(Exception):
    """``Inbox.process``: the stored permanent failure of the id's first delivery, replayed."""

    reason: Optional[bytes]

class Permanent(Exception):
    """Raise from a handler to mark its failure as permanent."""

# --- clock and store ---------------------------------------------------------------------------

@final
class ManualClock:
    def __new__(cls, start_ms: Optional[int] = None) -> ManualClock: ...
    def advance(self, seconds: float) -> None: ...
    def advance_ms(self, ms: int) -> None: ...
    def set_ms(self, ms: int) -> None: ...
    def now_ms(self) -> int: ...

@final
class Store:
    def __new__(cls, location: str) -> Store: ...
    @property
    def location(self) -> str: ...
    def transaction(self, work: Callable[[Transaction], _T]) -> _T: ...
    @staticmethod
    def postgres_schema_url(url: str, schema: str) -> str: ...

def fingerprint(payload: Union[bytes, bytearray]) -> str: ...

_StoreLike = Union[str, Store]
_BytesLike = Union[bytes, bytearray]

# --- inbox -------------------------------------------------------------------------------------

@final
class Ticket:
    @property
    def id(self) -> str: ...
    @property
    def token(self) -> int: ...
    @property
    def mode(self) -> str: ...
    def finish(self, result: _BytesLike) -> None: ...
    def fail(self, reason: _BytesLike) -> None: ...
    def release(self) -> None: ...
    def settle(
        self, result: Optional[_BytesLike] = None, error: Optional[str] = None, permanent: bool = False
    ) -> None: ...
    def finish_async(self, result: _BytesLike) -> Awaitable[None]: ...
    def fail_async(self, reason: _BytesLike) -> Awaitable[None]: ...
    def release_async(self) -> Awaitable[None]: ...

@final
class BeginResult:
    @property
    def outcome(self) -> str:
        """``"claimed"``, ``"duplicate"``, ``"in_progress"`` or ``"conflict"``."""
    @property
    def claimed(self) -> bool: ...
    @property
    def ticket(self) -> Optional[Ticket]: ...
    @property
    def status(self) -> Optional[str]:
        """For a duplicate: ``"seen"``, ``"succeeded"`` or ``"failed"``."""
    @property
    def result(self) -> Optional[bytes]: ...
    @property
    def lease_until_ms(self) -> Optional[int]: ...

@final
class Processed:
    @property
    def result(self) -> Optional[bytes]: ...
    @property
    def replayed(self) -> bool: ...

@final
class InboxRecord:
    @property
    def state(self) -> str: ...
    @property
    def result(self) -> Optional[bytes]: ...
    @property
    def token(self) -> int: ...
    @property
    def fingerprint(self) -> Optional[str]: ...
    @property
    def expires_at_ms(self) -> int: ...
    @property
    def lease_until_ms(self) -> Optional[int]: ...

_Handler = Callable[[], Union[_BytesLike, Awaitable[_BytesLike]]]
_SqlValue = Union[None, int, float, str, bytes]

@final
class Transaction:
    def execute(self, sql: str, params: Optional[Sequence[Union[_SqlValue, bytearray]]] = None) -> List[Tuple[_SqlValue, ...]]: ...
    def enqueue(
        self,
        outbox: Outbox,
        payload: _BytesLike,
        *,
        id: Optional[str] = None,
        key: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        delay: Optional[float] = None,
    ) -> str: ...
    def enqueue_many(self, outbox: Outbox, messages: List[Union[_BytesLike, Dict[str, Any]]]) -> List[str]: ...
    @property
    def open(self) -> bool: ...

@disjoint_base
class Inbox:
    def __new__(
        cls,
        store: _StoreLike,
        scope: str,
        *,
        mode: Optional[str] = None,
        lease: Optional[float] = None,
        retention: Optional[float] = None,
        cache_policy: Optional[str] = None,
        recent_capacity: Optional[int] = None,
        max_result_bytes: Optional[int] = None,
        clock: Optional[ManualClock] = None,
    ) -> Inbox: ...
    @property
    def scope(self) -> str: ...
    @property
    def mode(self) -> str: ...
    def begin(
        self, id: str, payload: Optional[_BytesLike] = None, *, mode: Optional[str] = None, lease: Optional[float] = None
    ) -> BeginResult: ...
    def begin_many(self, requests: List[Union[str, Dict[str, Any]]]) -> List[BeginResult]: ...
    def finish_many(self, items: Sequence[Tuple[Ticket, _BytesLike]]) -> List[Optional[OncelyError]]: ...
    def begin_many_async(self, requests: List[Union[str, Dict[str, Any]]]) -> Awaitable[List[BeginResult]]: ...
    def finish_many_async(
        self, items: Sequence[Tuple[Ticket, _BytesLike]]
    ) -> Awaitable[List[Optional[OncelyError]]]: ...
    def process(
        self,
        id: str,
        payload: Optional[_BytesLike],
        handler: Callable[[], _BytesLike],
        *,
        mode: Optional[str] = None,
        lease: Optional[float] = None,
        wait: Optional[float] = None,
    ) -> Processed: ...
    def process_transactional(
        self, id: str, payload: Optional[_BytesLike], handler: Callable[[Transaction], _BytesLike]
    ) -> Processed: ...
    def get(self, id: str) -> Optional[InboxRecord]: ...
    def purge_expired(self) -> int: ...
    def begin_async(
        self, id: str, payload: Optional[_BytesLike] = None, *, mode: Optional[str] = None, lease: Optional[float] = None
    ) -> Awaitable[BeginResult]: ...
    def process_async(
        self,
        id: str,
        payload: Optional[_BytesLike],
        handler: _Handler,
        *,
        mode: Optional[str] = None,
        lease: Optional[float] = None,
        wait: Optional[float] = None,
    ) -> Awaitable[Processed]: ...
    def get_async(self, id: str) -> Awaitable[Optional[InboxRecord]]: ...
    def purge_expired_async(self) -> Awaitable[int]: ...

# --- outbox ------------------------------------------------------------------------------------

@final
class Settled:
    @property
    def kind(self) -> str:
        """``acked``, ``retrying``, ``gave_up``, ``returned``, ``extended`` or ``dropped``."""
    @property
    def at_ms(self) -> Optional[int]: ...

@final
class Delivery:
    @property
    def id(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def key(self) -> Optional[str]: ...
    @property
    def headers(self) -> Dict[str, str]: ...
    @property
    def attempt(self) -> int: ...
    @property
    def token(self) -> int: ...
    @property
    def last_error(self) -> Optional[str]: ...
    @property
    def created_at_ms(self) -> int: ...
    @property
    def available_at_ms(self) -> int: ...
    def ack(self) -> Settled: ...
    def retry(self, error: str = ..., *, after: Optional[float] = None) -> Settled: ...
    def snooze(self, after: float) -> Settled: ...
    def fail(self, reason: str) -> Settled: ...
    def extend(self, lease: float) -> Settled: ...
    def release(self) -> Settled: ...
    def ack_async(self) -> Awaitable[Settled]: ...
    def retry_async(self, error: str = ..., *, after: Optional[float] = None) -> Awaitable[Settled]: ...
    def snooze_async(self, after: float) -> Awaitable[Settled]: ...
    def fail_async(self, reason: str) -> Awaitable[Settled]: ...
    def extend_async(self, lease: float) -> Awaitable[Settled]: ...
    def release_async(self) -> Awaitable[Settled]: ...

@final
class OutboxRecord:
    @property
    def id(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def key(self) -> Optional[str]: ...
    @property
    def headers(self) -> Dict[str, str]: ...
    @property
    def state(self) -> str:
        """``"ready"``, ``"leased"`` or ``"dead"``."""
    @property
    def attempts(self) -> int: ...
    @property
    def available_at_ms(self) -> int: ...
    @property
    def created_at_ms(self) -> int: ...
    @property
    def last_error(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def seq(self) -> int: ...
    @property
    def lease_until_ms(self) -> Optional[int]: ...

@final
class Event:
    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def attempt(self) -> Optional[int]: ...
    @property
    def retry_at_ms(self) -> Optional[int]: ...
    @property
    def until_ms(self) -> Optional[int]: ...
    @property
    def error(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...

@disjoint_base
class Outbox:
    def __new__(
        cls,
        store: _StoreLike,
        queue: str,
        *,
        mode: Optional[str] = None,
        retry: Union[Mapping[str, Any], str, None] = None,
        lease: Optional[float] = None,
        ordering: Optional[str] = None,
        poison: Optional[str] = None,
        park_after: Optional[float] = None,
        seed: Optional[int] = None,
        retry_budget: Optional[Dict[str, float]] = None,
        max_payload_bytes: Optional[int] = None,
        dedup_window: Optional[float] = None,
        clock: Optional[ManualClock] = None,
    ) -> Outbox: ...
    @property
    def queue(self) -> str: ...
    def now_ms(self) -> int: ...
    def enqueue(
        self,
        payload: _BytesLike,
        *,
        id: Optional[str] = None,
        key: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        delay: Optional[float] = None,
    ) -> str: ...
    def enqueue_many(self, messages: List[Union[_BytesLike, Dict[str, Any]]]) -> List[str]: ...
    def lease(self, max: Optional[int] = None) -> List[Delivery]: ...
    def settle(
        self,
        id: str,
        token: int,
        action: str,
        *,
        after: Optional[float] = None,
        error: Optional[str] = None,
        reason: Optional[str] = None,
        lease: Optional[float] = None,
    ) -> Settled: ...
    def cancel(self, id: str) -> str: ...
    def get(self, id: str) -> Optional[OutboxRecord]: ...
    def dead_letters(self, after_seq: Optional[int] = None, limit: Optional[int] = None) -> List[OutboxRecord]: ...
    def replay(self, id: str) -> bool: ...
    def purge_dead(self, ids: Optional[List[str]] = None) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def on_event(self, callback: Callable[[Event], object]) -> None:
        """A non-callable ``callback`` is a ``TypeError``."""
    def enqueue_async(
        self,
        payload: _BytesLike,
        *,
        id: Optional[str] = None,
        key: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        delay: Optional[float] = None,
    ) -> Awaitable[str]: ...
    def lease_async(self, max: Optional[int] = None) -> Awaitable[List[Delivery]]: ...
    def enqueue_many_async(self, messages: List[Union[_BytesLike, Dict[str, Any]]]) -> Awaitable[List[str]]: ...
    def settle_async(
        self,
        id: str,
        token: int,
        action: str,
        *,
        after: Optional[float] = None,
        error: Optional[str] = None,
        reason: Optional[str] = None,
        lease: Optional[float] = None,
    ) -> Awaitable[Settled]: ...
    def cancel_async(self, id: str) -> Awaitable[str]: ...
    def get_async(self, id: str) -> Awaitable[Optional[OutboxRecord]]: ...
    def dead_letters_async(
        self, after_seq: Optional[int] = None, limit: Optional[int] = None
    ) -> Awaitable[List[OutboxRecord]]: ...
    def replay_async(self, id: str) -> Awaitable[bool]: ...
    def purge_dead_async(self, ids: Optional[List[str]] = None) -> Awaitable[int]: ...
    def stats_async(self) -> Awaitable[Dict[str, Any]]: ...

@final
class RetryPolicy:
    def __new__(cls, policy: Union[Mapping[str, Any], str]) -> RetryPolicy: ...
    def schedule_ms(self, seed: int, n: int) -> List[int]: ...
    def decide_ms(
        self,
        *,
        seed: int,
        attempts: int,
        first_attempt_at_ms: int,
        now_ms: int,
        last_delay_ms: Optional[int] = None,
        retry_after_ms: Optional[int] = None,
    ) -> Tuple[str, Union[int, str]]: ...

# --- worker ------------------------------------------------------------------------------------

@final
class Message:
    @property
    def id(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def key(self) -> Optional[str]: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def headers(self) -> Dict[str, str]: ...
    @property
    def attempt(self) -> int: ...
    @property
    def created_at_ms(self) -> int: ...
    @property
    def available_at_ms(self) -> int: ...

@final
class RunSummary:
    @property
    def attempts(self) -> int: ...
    @property
    def succeeded(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def released(self) -> int: ...

_WorkerHandler = Callable[[Message], Union[Optional[bool], Awaitable[Optional[bool]]]]

@final
class Worker:
    def __new__(
        cls,
        outbox: Outbox,
        *,
        concurrency: Optional[int] = None,
        poll_interval: Optional[float] = None,
        shutdown_timeout: Optional[float] = None,
    ) -> Worker: ...
    def run_until_idle(self, handler: _WorkerHandler) -> RunSummary: ...
    def run_until_idle_async(self, handler: _WorkerHandler) -> Awaitable[RunSummary]: ...
    def run(self, handler: _WorkerHandler) -> RunSummary: ...
    def run_async(self, handler: _WorkerHandler) -> Awaitable[RunSummary]: ...
    def stop(self) -> None: ...
    @property
    def stopped(self) -> bool: ...

# --- http --------------------------------------------------------------------------------------

_Headers = Union[Sequence[Tuple[str, str]], Mapping[str, str]]
_Response = Tuple[int, List[Tuple[str, str]], bytes]

@final
class HttpClaim:
    """A claim on one key while its handler runs: settle it with ``complete`` or ``abandon``."""
    @property
    def id(self) -> str: ...
    @property
    def token(self) -> int: ...
    def complete(self, status: int, headers: _Headers, body: _BytesLike) -> bool: ...
    def complete_async(self, status: int, headers: _Headers, body: _BytesLike) -> Awaitable[bool]: ...
    def abandon(self) -> None: ...
    def abandon_async(self) -> Awaitable[None]: ...

@final
class Admission:
    """What to do with a request: ``kind`` is ``"pass"``, ``"run"`` (see ``claim``) or
    ``"respond"`` (see ``response``)."""
    @property
    def kind(self) -> str: ...
    @property
    def response(self) -> Optional[_Response]: ...
    @property
    def claim(self) -> Optional[HttpClaim]: ...

@final
class HttpGate:
    """The ``Idempotency-Key`` gate over a store, by the HTTP options (``policy``)."""
    def __new__(
        cls,
        store: _StoreLike,
        policy: Optional[Union[Mapping[str, Any], str]] = None,
        *,
        clock: Optional[ManualClock] = None,
    ) -> HttpGate: ...
    def admit(
        self,
        method: str,
        path: str,
        *,
        headers: _Headers,
        body: _BytesLike = b"",
        query: str = "",
        scope: Optional[str] = None,
    ) -> Admission: ...
    def admit_now(
        self,
        method: str,
        path: str,
        *,
        headers: _Headers,
        body: _BytesLike = b"",
        query: str = "",
        scope: Optional[str] = None,
    ) -> Optional[Admission]: ...
    def admit_async(
        self,
        method: str,
        path: str,
        *,
        headers: _Headers,
        body: _BytesLike = b"",
        query: str = "",
        scope: Optional[str] = None,
    ) -> Awaitable[Admission]: ...
    def respond_in_transaction(
        self,
        method: str,
        path: str,
        handler: Callable[[Transaction], Tuple[int, _Headers, _BytesLike]],
        *,
        headers: _Headers,
        body: _BytesLike = b"",
        query: str = "",
        scope: Optional[str] = None,
    ) -> _Response: ...

@final
class HttpRetry:
    """One keyed request's retries by a retry policy (``Outbox(retry=...)``'s form)."""
    def __new__(cls, key: str, retry: Optional[Union[Mapping[str, Any], str]] = None) -> HttpRetry: ...
    def next(self, status: Optional[int], retry_after: Optional[str] = None) -> Optional[float]: ...

def http_verdict(status: Optional[int], retry_after: Optional[str] = None) -> Tuple[str, Optional[float]]: ...
def http_request_payload(
    method: str, url: str, headers: _Headers, body: Optional[_BytesLike] = None
) -> Tuple[str, bytes]: ...
def http_request_of(payload: _BytesLike) -> Tuple[str, str, List[Tuple[str, str]], bytes]: ...
