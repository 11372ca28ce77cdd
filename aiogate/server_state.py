"""What the connections of one server share.

Owns: ``ServerState`` (the settings record, the counters every connection updates,
and the seams to the app, the thread pool and observability), ``HandlerFactory``
and ``Connection`` (what each side expects of the other), and how a refusal is
counted (``ServerState.count_rejection``). Lives on the event loop: only ``clock`` and the
read-only fields are used from worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import h11

from ._types import ConnectionInfo
from .access_log import AccessRecord, Refusal
from .body import EmptyBody
from .config import Config
from .hooks import Hooks, Worker
from .http import Deadline, ServerConnection, server_field
from .metrics import Metrics
from .response import SERVER_SOFTWARE
from .wsgi_errors import ErrorLog

if TYPE_CHECKING:
    from ._types import WSGIApplication
    from .thread_pool import ThreadPool
    from .writer import ResponseWriter

__all__ = [
    "LINGER_TIMEOUT",
    "RETRY_AFTER",
    "Connection",
    "HandlerFactory",
    "ServerState",
]

# Retry-After on a 503 for overload (limits and shedding): one second spreads
# retries without making clients wait long once the burst has passed.
RETRY_AFTER = 1
# After our FIN, wait this long for the client to close before closing ourselves
# (Apache's lingering close waits up to 2 s for the same reason).
LINGER_TIMEOUT = 2.0


class HandlerFactory(Protocol):
    """Makes the per-request handler; ``partial(ServerHandler, **per-server options)``."""

    def __call__(
        self,
        stdin: BinaryIO | EmptyBody,
        sink: ResponseWriter,
        stderr: Any,
        request: h11.Request,
        conn: ConnectionInfo,
    ) -> Any: ...


class Connection(Protocol):
    """What the server and the deadline sweep ask of a connection
    (``protocol.H11Protocol``)."""

    conn: ServerConnection

    def check_deadline(self, now: float) -> bool: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...


@dataclass(slots=True, eq=False)
class ServerState:
    """What every connection of one server shares. Lives on the event loop."""

    loop: asyncio.AbstractEventLoop
    app: WSGIApplication
    pool: ThreadPool
    make_handler: HandlerFactory
    #: The settings, as given: limits and timeouts are read from here, not copied.
    config: Config
    #: Every connected protocol, until ``connection_lost`` (the budget of open
    #: sockets, which counts from accept, is the listener's).
    connections: set[Connection] = field(default_factory=set)
    #: Requests dispatched to the pool whose app call is not over (running, or
    #: waiting for a thread); a response left to a slow reader no longer counts.
    in_flight: int = 0
    #: Requests dispatched to the pool since the start (for --max-requests).
    dispatched: int = 0
    #: When ``dispatched`` reaches this (0: never), ``on_max_requests`` is called.
    max_requests: int = 0
    on_max_requests: Callable[[], object] = lambda: None
    #: Requests and connections this server turned away, by reason (the metrics
    #: count them too, summed over the workers: ``count_rejection``).
    rejections: Counter[Refusal] = field(default_factory=Counter)
    shutting_down: bool = False
    #: Listening and not draining: what the readiness endpoint reports (with load).
    ready: bool = False
    #: ``loop.time()`` of the last request or connection refused for overload.
    last_overload: float = float("-inf")
    #: Counters and histograms, when the metrics endpoint is on (else None).
    metrics: Metrics | None = None
    #: Takes one ``AccessRecord`` per finished request, when the access log is on.
    access_log: Callable[[AccessRecord], None] | None = None
    #: The WSGI environ keys the access log format reads (``%({VAR}e)s``): when
    #: there are any, each request keeps its environ for its record.
    access_environ: frozenset[str] = frozenset()
    #: Paths answered on the loop (health, metrics): path -> (status, type, body).
    endpoints: dict[bytes, Callable[[], tuple[int, str, bytes]]] = field(
        default_factory=dict
    )
    #: The clock of ``loop.time()``, readable from any thread (uvloop's ``time()``
    #: updates the loop's cached clock, so threads must not call it).
    clock: Callable[[], float] = time.monotonic
    #: Seconds of each connection deadline (``http`` rule 8) from the settings;
    #: None: that clock is off (an app's call with neither limit).
    deadline_seconds: dict[Deadline, float | None] = field(init=False)
    #: The Server header of every response (``--server-header``, else the handler's
    #: ``server_software``); "" or None for none. The loop's own responses (errors,
    #: probes) send it as the handler does.
    server_software: str | None = SERVER_SOFTWARE
    #: Its field line for ``ServerConnection`` (``http.server_field``).
    server_field: bytes = field(init=False)
    #: Every request's ``wsgi.errors``: lines written to it are logged.
    errors: ErrorLog = field(default_factory=ErrorLog)
    #: The server hooks, only when ``pre_request`` or ``post_request`` is given
    #: (the app's thread calls them around the app), with the ``worker`` they get.
    hooks: Hooks | None = None
    worker: Worker | None = None

    def __post_init__(self) -> None:
        config = self.config
        self.deadline_seconds = {
            Deadline.KEEP_ALIVE: config.timeout_keep_alive,
            Deadline.HEAD: config.timeout_request_header,
            Deadline.BODY: config.timeout_request_body,
            Deadline.APP: config.max_queue_wait or config.timeout_request or None,
            Deadline.WRITE: config.timeout_write,
            Deadline.LINGER: LINGER_TIMEOUT,
        }
        self.server_field = server_field(self.server_software)

    @property
    def observing(self) -> bool:
        """Metrics or the access log are on: requests are recorded when they end."""
        return self.metrics is not None or self.access_log is not None

    def count_rejection(self, reason: Refusal) -> None:
        """A request or connection was turned away for ``reason``."""
        self.rejections[reason] += 1
        if self.metrics is not None:
            self.metrics.rejected(reason)
