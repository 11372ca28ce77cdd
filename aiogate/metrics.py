"""Server metrics in the Prometheus text format, with no dependency.

Owns: the layout of a metrics *slot* (one process's row of float cells: its counters,
the gauges it last published and a sample of its process), ``Metrics`` (the writer
of one slot), ``Refusal`` (why a request or connection was turned away), and
``render`` (the exposition text, format 0.0.4, of the rows of every process). Sans-IO
and pure: the event loop of each server process writes its own slot as requests end
(``observe_request``); ``tally.Region`` keeps the slots of all the processes of a
server, so that one scrape can sum them.

Every counter is one cell, so that a reader sums rows cell by cell: a histogram is
one cell per bucket (not cumulative) plus one for values above the last bound, and a
cell for the sum; its count is the sum of its buckets, so it never disagrees with
them. Requests answered by the health and metrics endpoints themselves are not
counted: a probe every few seconds would drown the app's own traffic in small
deployments.
"""

from __future__ import annotations

import bisect
import enum
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from .access_log import Refusal

__all__ = [
    "CELLS",
    "COUNTERS",
    "DURATION_BUCKETS",
    "GAUGES",
    "Cell",
    "Gauge",
    "Kind",
    "Metrics",
    "Refusal",
    "local_cells",
    "render",
    "write_process",
]

#: Seconds; Prometheus client libraries' defaults, which fit web requests.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKETS = len(DURATION_BUCKETS) + 1  # and one above the last bound (+Inf)
#: Status codes have a cell each (0: cut before a status was sent), the status
#: being its own index: an app may send any three digits (``response.parse_status``
#: takes 100-999), so 1000 cells (8 KB a slot; only the pages touched use memory).
_STATUSES = 1000


class Kind(enum.IntEnum):
    """What process a slot belongs to (``Cell.KIND``)."""

    WORKER = 0  # serves requests: counters, gauges, process sample
    SUPERVISOR = 1  # only its process sample


class Gauge(enum.IntEnum):
    """The states each worker publishes (labelled by worker when rendered)."""

    REQUESTS_IN_FLIGHT = 0
    QUEUE_DEPTH = 1
    THREADS = 2
    THREADS_BUSY = 3
    THREADS_STUCK = 4
    CONNECTIONS_OPEN = 5
    CONNECTIONS_IDLE = 6
    READY = 7


#: name (after ``aiogate_``) and help of each gauge, in ``Gauge`` order.
GAUGES: tuple[tuple[str, str], ...] = (
    ("requests_in_flight", "Requests running or waiting for a thread."),
    ("queue_depth", "Complete requests waiting for a thread."),
    ("threads", "Threads that run the app."),
    ("threads_busy", "Threads running the app now."),
    ("threads_stuck", "Threads replaced after the request timeout."),
    (
        "connections_open",
        "Open client connections (in the TLS handshake or closing too).",
    ),
    ("connections_idle", "Open connections between requests (keep-alive)."),
    ("ready", "1 when the readiness endpoint would say ready."),
)


class Cell(enum.IntEnum):
    """Indexes into a slot. Cells before ``CPU`` describe the slot and are zeroed
    when it is freed; from ``CPU`` on they are counters, folded into the retired
    slot when the process is gone (``COUNTERS``)."""

    PID = 0  # 0: the slot is free
    KIND = 1
    NUMBER = 2  # the worker label
    STARTED = 3  # process start, Unix time
    MAX_FDS = 4
    OPEN_FDS = 5
    VIRTUAL_MEMORY = 6
    RESIDENT_MEMORY = 7  # summed, and per worker
    GAUGES = 8  # len(Gauge) cells
    CPU = GAUGES + len(Gauge)  # seconds, user + system: the first counter
    RECEIVED = CPU + 1
    SENT = RECEIVED + 1
    ACCEPTED = SENT + 1
    REJECTED = ACCEPTED + 1  # len(Refusal) cells, in declaration order
    DURATION_SUM = REJECTED + len(Refusal)
    QUEUE_WAIT_SUM = DURATION_SUM + 1
    DURATION = QUEUE_WAIT_SUM + 1  # _BUCKETS cells
    QUEUE_WAIT = DURATION + _BUCKETS  # _BUCKETS cells
    STATUS = QUEUE_WAIT + _BUCKETS  # _STATUSES cells


CELLS = Cell.STATUS + _STATUSES
COUNTERS = range(Cell.CPU, CELLS)
_REJECTION_CELL = {reason: Cell.REJECTED + i for i, reason in enumerate(Refusal)}
# The hot path's indexes as plain ints (an IntEnum member's arithmetic goes through
# int's, but reading one is a slower lookup than a module global's).
_STATUS, _DURATION, _DURATION_SUM = (
    int(Cell.STATUS),
    int(Cell.DURATION),
    int(Cell.DURATION_SUM),
)
_QUEUE_WAIT, _QUEUE_WAIT_SUM = int(Cell.QUEUE_WAIT), int(Cell.QUEUE_WAIT_SUM)
_SENT, _RECEIVED, _ACCEPTED = int(Cell.SENT), int(Cell.RECEIVED), int(Cell.ACCEPTED)
_bisect = bisect.bisect_left


def local_cells() -> memoryview[float]:
    """Cells of a slot of this process alone (no supervisor: one server)."""
    return memoryview(bytearray(CELLS * 8)).cast("d")


class Metrics:
    """The writer of one process's slot. Updated on the event loop only (the slot's
    single writer; app threads never write it); ``rows`` gives the slots of every
    process of the server, for rendering."""

    __slots__ = ("cells", "rows", "shared")

    def __init__(
        self,
        cells: memoryview[float] | None = None,
        rows: Callable[[], list[list[float]]] | None = None,
    ) -> None:
        #: True when other processes' slots are summed in (a worker under the
        #: supervisor): its gauges must then be published now and then.
        self.shared = rows is not None
        if cells is None:
            cells = local_cells()
            cells[Cell.PID] = os.getpid()  # in use
        own = cells
        self.cells = cells
        self.rows = rows if rows is not None else lambda: [own.tolist()]

    # -- the hot path: once per request, on the loop ------------------------------
    # Six cell updates a request, where the former Counter and two Histogram objects
    # did as many dict, list and attribute operations: measured with valgrind
    # (callgrind), ``observe_request`` runs 8,230 instructions, as the one it
    # replaces did (8,210); ``received``, once per read, 1,900 against 870 for the
    # attribute it replaces, a memoryview cell costing twice an attribute. In all,
    # about 0.8 us a request before and after (timeit, on the same machine).
    # ``status`` is 0 or 100-999 (``response.parse_status``), an index in the slot.

    def observe_request(
        self, status: int, duration: float, queue_wait: float, bytes_sent: int
    ) -> None:
        cells = self.cells
        cells[_STATUS + status] += 1
        cells[_DURATION + _bisect(DURATION_BUCKETS, duration)] += 1
        cells[_DURATION_SUM] += duration
        cells[_QUEUE_WAIT + _bisect(DURATION_BUCKETS, queue_wait)] += 1
        cells[_QUEUE_WAIT_SUM] += queue_wait
        cells[_SENT] += bytes_sent

    def received(self, size: int) -> None:
        self.cells[_RECEIVED] += size

    def accepted(self) -> None:
        self.cells[_ACCEPTED] += 1

    def rejected(self, reason: Refusal) -> None:
        self.cells[_REJECTION_CELL[reason]] += 1

    def publish(
        self, gauges: Mapping[Gauge, float], process: Mapping[str, float]
    ) -> None:
        """Write this worker's gauges and its process sample (``tally``)."""
        cells = self.cells
        for gauge, value in gauges.items():
            cells[Cell.GAUGES + gauge] = value
        write_process(cells, process)


#: ``tally.sample_process``'s keys and their cells.
_PROCESS = {
    "cpu": Cell.CPU,
    "max_fds": Cell.MAX_FDS,
    "fds": Cell.OPEN_FDS,
    "virtual": Cell.VIRTUAL_MEMORY,
    "resident": Cell.RESIDENT_MEMORY,
    "started": Cell.STARTED,
}


def write_process(cells: memoryview[float], sample: Mapping[str, float]) -> None:
    """Write a process sample (``tally.sample_process``) into a slot."""
    for key, value in sample.items():
        cell = _PROCESS.get(key)
        if cell is not None:
            cells[cell] = value


def _metric(
    lines: list[str], name: str, kind: str, help_text: str, samples: Iterable[str]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(samples)


def _histogram(
    name: str, totals: Sequence[float], first: int, sum_cell: int
) -> list[str]:
    samples, running = [], 0.0
    for index, bound in enumerate(DURATION_BUCKETS):
        running += totals[first + index]
        samples.append(f'{name}_bucket{{le="{bound:g}"}} {running:.0f}')
    running += totals[first + len(DURATION_BUCKETS)]
    samples.append(f'{name}_bucket{{le="+Inf"}} {running:.0f}')
    samples.append(f"{name}_sum {totals[sum_cell]:.6f}")
    samples.append(f"{name}_count {running:.0f}")
    return samples


def _labels(values: Mapping[str, str]) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{name}="{escape(value)}"' for name, value in values.items())


def render(
    rows: Sequence[Sequence[float]],
    *,
    max_fds: float,
    build: Mapping[str, str],
) -> str:
    """The Prometheus text exposition of ``rows`` (the retired slot and the slots in
    use: ``tally.Region.rows``): counters and histograms summed over every row,
    gauges per worker row, ``process_*`` summed over the live processes (CPU over
    every process that ever ran), ``max_fds`` being the answering process's limit."""
    totals = [sum(column) for column in zip(*rows, strict=True)] if rows else []
    if not totals:
        totals = [0.0] * CELLS
    live = [row for row in rows if row[Cell.PID] != 0]
    workers = sorted(
        (row for row in live if row[Cell.KIND] == Kind.WORKER),
        key=lambda row: row[Cell.NUMBER],
    )
    lines: list[str] = []

    def counter(name: str, help_text: str, cell: int) -> None:
        _metric(lines, name, "counter", help_text, [f"{name} {totals[cell]:.0f}"])

    _metric(
        lines,
        "aiogate_requests_total",
        "counter",
        "Requests answered, by status code (0: aborted before a status was sent).",
        (
            f'aiogate_requests_total{{status="{status}"}} {count:.0f}'
            for status, count in enumerate(
                totals[Cell.STATUS : Cell.STATUS + _STATUSES]
            )
            if count
        ),
    )
    _metric(
        lines,
        "aiogate_request_duration_seconds",
        "histogram",
        "Time from the request head to the end of the response.",
        _histogram(
            "aiogate_request_duration_seconds",
            totals,
            Cell.DURATION,
            Cell.DURATION_SUM,
        ),
    )
    _metric(
        lines,
        "aiogate_queue_wait_seconds",
        "histogram",
        "Time a complete request waited for a free thread.",
        _histogram(
            "aiogate_queue_wait_seconds", totals, Cell.QUEUE_WAIT, Cell.QUEUE_WAIT_SUM
        ),
    )
    _metric(
        lines,
        "aiogate_rejections_total",
        "counter",
        "Requests and connections turned away, by reason.",
        (
            f'aiogate_rejections_total{{reason="{reason}"}} '
            f"{totals[_REJECTION_CELL[reason]]:.0f}"
            for reason in Refusal
        ),
    )
    counter(
        "aiogate_received_bytes_total", "Bytes received from clients.", Cell.RECEIVED
    )
    counter(
        "aiogate_sent_bytes_total", "Response body bytes sent to clients.", Cell.SENT
    )
    counter(
        "aiogate_connections_accepted_total", "Connections accepted.", Cell.ACCEPTED
    )
    for gauge, (name, help_text) in zip(Gauge, GAUGES, strict=True):
        _metric(
            lines,
            f"aiogate_{name}",
            "gauge",
            help_text + " Per worker.",
            (
                f'aiogate_{name}{{worker="{row[Cell.NUMBER]:.0f}"}} '
                f"{row[Cell.GAUGES + gauge]:g}"
                for row in workers
            ),
        )
    _metric(
        lines,
        "aiogate_worker_pid",
        "gauge",
        "The process id of each worker.",
        (
            f'aiogate_worker_pid{{worker="{row[Cell.NUMBER]:.0f}"}} {row[Cell.PID]:.0f}'
            for row in workers
        ),
    )
    _metric(
        lines,
        "aiogate_worker_resident_memory_bytes",
        "gauge",
        "Resident memory of each worker process.",
        (
            f'aiogate_worker_resident_memory_bytes{{worker="{row[Cell.NUMBER]:.0f}"}} '
            f"{row[Cell.RESIDENT_MEMORY]:.0f}"
            for row in workers
        ),
    )
    _metric(
        lines,
        "aiogate_build_info",
        "gauge",
        "The versions this server runs on (value 1).",
        [f"aiogate_build_info{{{_labels(build)}}} 1"],
    )

    def process(name: str, kind: str, help_text: str, value: float) -> None:
        _metric(lines, name, kind, help_text, [f"{name} {value:.15g}"])

    process(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the server's processes, including the workers "
        "that have exited, in seconds.",
        totals[Cell.CPU],
    )
    process(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the server's live processes, summed.",
        sum(row[Cell.RESIDENT_MEMORY] for row in live),
    )
    process(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory of the server's live processes, summed.",
        sum(row[Cell.VIRTUAL_MEMORY] for row in live),
    )
    process(
        "process_open_fds",
        "gauge",
        "Open file descriptors of the server's live processes, summed.",
        sum(row[Cell.OPEN_FDS] for row in live),
    )
    process(
        "process_max_fds",
        "gauge",
        "The open file limit of one process (each worker has its own).",
        max_fds,
    )
    started = [row[Cell.STARTED] for row in live if row[Cell.STARTED]]
    process(
        "process_start_time_seconds",
        "gauge",
        "When the server's first process (the supervisor) started, Unix time.",
        min(started) if started else 0.0,
    )
    return "\n".join(lines) + "\n"
