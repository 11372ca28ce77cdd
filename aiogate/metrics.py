"""Server metrics in the Prometheus text format, with no dependency.

Owns: ``Histogram``, ``Metrics`` (the counters and histograms one server keeps) and
``render`` (the exposition text, format 0.0.4). Sans-IO and pure: the event loop
updates a ``Metrics`` as requests end (``observe_request``) and renders it when the
metrics endpoint is asked; gauges that are states, not counts (connections, threads,
queue depth), are read at that moment and passed in.

Requests answered by the health and metrics endpoints themselves are not counted: a
probe every few seconds would drown the app's own traffic in small deployments.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DURATION_BUCKETS", "Histogram", "Metrics", "render"]

#: Seconds; Prometheus client libraries' defaults, which fit web requests.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Histogram:
    """Counts of observations at or below each bucket bound, their sum and count."""

    bounds: Sequence[float] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1  # made cumulative when rendered
        self.total += value
        self.count += 1

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for count in self.counts:
            running += count
            out.append(running)
        return out


@dataclass(slots=True)
class Metrics:
    """What one server counts. Updated on the event loop only."""

    requests: Counter[int] = field(default_factory=Counter)  # by status code
    duration: Histogram = field(default_factory=Histogram)
    queue_wait: Histogram = field(default_factory=Histogram)
    bytes_received: int = 0
    bytes_sent: int = 0
    connections_accepted: int = 0

    def observe_request(
        self, status: int, duration: float, queue_wait: float, bytes_sent: int
    ) -> None:
        self.requests[status] += 1
        self.duration.observe(duration)
        self.queue_wait.observe(queue_wait)
        self.bytes_sent += bytes_sent


def _metric(
    lines: list[str], name: str, kind: str, help_text: str, samples: Iterable[str]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(samples)


def _histogram(name: str, histogram: Histogram) -> list[str]:
    samples = [
        f'{name}_bucket{{le="{bound:g}"}} {count}'
        for bound, count in zip(histogram.bounds, histogram.cumulative(), strict=True)
    ]
    samples.append(f'{name}_bucket{{le="+Inf"}} {histogram.count}')
    samples.append(f"{name}_sum {histogram.total:.6f}")
    samples.append(f"{name}_count {histogram.count}")
    return samples


def render(
    metrics: Metrics,
    *,
    rejections: Mapping[str, int],
    gauges: Mapping[str, tuple[str, float]],
) -> str:
    """The Prometheus text exposition of ``metrics``, the rejection counts by reason,
    and ``gauges`` (name -> (help, value)), every name prefixed ``aiogate_``."""
    lines: list[str] = []
    _metric(
        lines,
        "aiogate_requests_total",
        "counter",
        "Requests answered, by status code (0: aborted before a status was sent).",
        (
            f'aiogate_requests_total{{status="{status}"}} {count}'
            for status, count in sorted(metrics.requests.items())
        ),
    )
    _metric(
        lines,
        "aiogate_request_duration_seconds",
        "histogram",
        "Time from the request head to the end of the response.",
        _histogram("aiogate_request_duration_seconds", metrics.duration),
    )
    _metric(
        lines,
        "aiogate_queue_wait_seconds",
        "histogram",
        "Time a complete request waited for a free thread.",
        _histogram("aiogate_queue_wait_seconds", metrics.queue_wait),
    )
    _metric(
        lines,
        "aiogate_rejections_total",
        "counter",
        "Requests and connections turned away, by reason.",
        (
            f'aiogate_rejections_total{{reason="{reason}"}} {rejections.get(reason, 0)}'
            for reason in ("bad_request", "limit", "timeout", "shed")
        ),
    )
    _metric(
        lines,
        "aiogate_received_bytes_total",
        "counter",
        "Bytes received from clients.",
        [f"aiogate_received_bytes_total {metrics.bytes_received}"],
    )
    _metric(
        lines,
        "aiogate_sent_bytes_total",
        "counter",
        "Response body bytes sent to clients.",
        [f"aiogate_sent_bytes_total {metrics.bytes_sent}"],
    )
    _metric(
        lines,
        "aiogate_connections_accepted_total",
        "counter",
        "Connections accepted.",
        [f"aiogate_connections_accepted_total {metrics.connections_accepted}"],
    )
    for name, (help_text, value) in gauges.items():
        _metric(
            lines, f"aiogate_{name}", "gauge", help_text, [f"aiogate_{name} {value:g}"]
        )
    return "\n".join(lines) + "\n"
