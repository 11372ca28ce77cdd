"""What the server says about itself: a record of each request, and the probes.

Owns: ``record`` (a request that has ended goes to the metrics and the access log),
``new_metrics`` (this process's metrics slot: the one its supervisor gave it, whose
neighbours are summed in a scrape, or one of its own) and ``Probes`` (the liveness,
readiness and metrics endpoints, answered on the event loop without a thread, so they
work while every thread is busy; a worker also publishes its gauges every
``PUBLISH_INTERVAL`` for the scrapes its siblings answer). Runs on the event loop.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import h11

from . import tally
from ._version import __version__
from .access_log import AccessRecord, pick_environ
from .http import Phase
from .metrics import Cell, Gauge, Metrics, render

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._types import ConnectionInfo
    from .access_log import Refusal
    from .server_state import ServerState
    from .thread_pool import ThreadPool


class _Owner(Protocol):
    @property
    def state(self) -> ServerState: ...
    @property
    def info(self) -> ConnectionInfo: ...


class Recorded(Protocol):
    """What ``record`` reads of a request cycle (``dispatch.RequestCycle``)."""

    @property
    def protocol(self) -> _Owner: ...
    @property
    def request(self) -> h11.Request: ...
    @property
    def arrived_at(self) -> float: ...
    @property
    def queue_wait(self) -> float: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def response_headers(self) -> list[tuple[str, str]]: ...
    @property
    def environ(self) -> Mapping[str, object] | None: ...


__all__ = ["PUBLISH_INTERVAL", "Probes", "Recorded", "new_metrics", "record"]

#: Seconds between a worker's publications of its gauges and process sample: what
#: a scrape answered by another worker shows of it is at most this old (counters
#: are written as they change, so they are never behind).
PUBLISH_INTERVAL = 1.0

#: An endpoint's answer: status, Content-Type, body.
Answer = tuple[int, str, bytes]
_TEXT = "text/plain; charset=utf-8"

PID = os.getpid()  # for the access log; updated in a forked worker process


def _reset_pid() -> None:
    global PID
    PID = os.getpid()


os.register_at_fork(after_in_child=_reset_pid)


def record(
    cycle: Recorded, now: float, status: int, *, refused: Refusal | None = None
) -> None:
    """A request is over (``status`` 0: it was cut): feed the metrics and the
    access log. Only called when one of them is on (``ServerState.observing``).
    ``refused``: aiogate answered (or cut) it itself, for that reason."""
    protocol = cycle.protocol
    state = protocol.state
    duration = now - cycle.arrived_at
    if state.metrics is not None:
        state.metrics.observe_request(
            status, duration, cycle.queue_wait, cycle.bytes_sent
        )
    if state.access_log is not None:
        request = cycle.request
        client = protocol.info.client
        environ = cycle.environ
        state.access_log(
            AccessRecord(
                client=client[0] if isinstance(client, tuple) else "-",
                method=request.method,
                target=request.target,
                http_version=request.http_version,
                status=status,
                bytes_sent=cycle.bytes_sent,
                request_headers=list(request.headers),
                response_headers=cycle.response_headers,
                started=time.time() - duration,
                duration=duration,
                queue_wait=cycle.queue_wait,
                pid=PID,
                refused=refused,
                environ=None
                if environ is None
                else pick_environ(environ, state.access_environ),
            )
        )


def new_metrics() -> Metrics:
    """The metrics of the server this process runs: in the slot the supervisor gave
    this worker (``tally.assign``), read with every other process's, or in a slot
    of its own (one process, or no slot was free)."""
    given = tally.assigned()
    if given is None:
        return Metrics()
    region, index = given
    return Metrics(region.slot(index), region.rows)


def _build_labels(loop: object) -> dict[str, str]:
    module = type(loop).__module__.partition(".")[0]
    return {
        "version": __version__,
        "python": platform.python_version(),
        "h11": str(getattr(h11, "__version__", "unknown")),
        "loop": "uvloop" if module == "uvloop" else "asyncio",
    }


class Probes:
    """The endpoints answered on the loop, for one server."""

    def __init__(
        self,
        state: ServerState,
        pool: ThreadPool,
        open_connections: Callable[[], int],
    ) -> None:
        self._state = state
        self._pool = pool
        self._open_connections = open_connections

    def install(self, liveness: str, readiness: str, metrics: str) -> None:
        """Answer these paths (empty: not served) on the loop."""
        for path, endpoint in (
            (liveness, self.liveness),
            (readiness, self.readiness),
            (metrics, self.metrics),
        ):
            if path:
                self._state.endpoints[path.encode("latin-1")] = endpoint
        counting = self._state.metrics
        if metrics and counting is not None and counting.shared:
            self._publish_now_and_then()

    def _publish_now_and_then(self) -> None:
        """Publish this worker's gauges for the scrapes other workers answer, then
        again in ``PUBLISH_INTERVAL`` (for as long as the loop runs)."""
        self._publish()
        self._state.loop.call_later(PUBLISH_INTERVAL, self._publish_now_and_then)

    def _publish(self) -> None:
        state = self._state
        assert state.metrics is not None
        stats = self._pool.statistics()
        idle = sum(
            1 for protocol in state.connections if protocol.conn.phase is Phase.IDLE
        )
        state.metrics.publish(
            {
                Gauge.REQUESTS_IN_FLIGHT: state.in_flight,
                Gauge.QUEUE_DEPTH: stats["queued"],
                Gauge.THREADS: stats["threads"],
                Gauge.THREADS_BUSY: stats["busy"],
                Gauge.THREADS_STUCK: stats["stuck"],
                Gauge.CONNECTIONS_OPEN: self._open_connections(),
                Gauge.CONNECTIONS_IDLE: idle,
                Gauge.READY: self.readiness()[0] == 200,
            },
            tally.sample_process(),
        )

    def liveness(self) -> Answer:
        """200 while the loop runs (it is answering) and some thread can run a
        request: replacements of stuck threads count (``ThreadPool``); 503 once
        every thread is stuck in a request given up on and none can replace it."""
        if self._pool.statistics()["serving"] <= 0:
            return 503, _TEXT, b"every thread is stuck\n"
        return 200, _TEXT, b"ok\n"

    def readiness(self) -> Answer:
        """200 when serving; 503 while starting or draining, and for a second after
        any request or connection was refused for overload."""
        state = self._state
        if not state.ready:
            return 503, _TEXT, b"not ready\n"
        if state.loop.time() - state.last_overload < 1.0:
            return 503, _TEXT, b"overloaded\n"
        return 200, _TEXT, b"ready\n"

    def metrics(self) -> Answer:
        """The Prometheus text exposition of the server: every process's counters
        summed, each worker's gauges (``metrics.render``)."""
        state = self._state
        metrics = state.metrics
        if metrics is None:
            return 404, _TEXT, b"metrics are off\n"
        self._publish()  # this worker's own gauges, as of now
        try:
            rows = metrics.rows()
        except tally.RetryLater as exc:
            return 503, _TEXT, f"{exc}\n".encode()
        text = render(
            rows,
            max_fds=metrics.cells[Cell.MAX_FDS],
            build=_build_labels(state.loop),
        )
        return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
