"""The sweep that fires connection deadlines, a few at a time. Runs on the event loop.

Every connection has at most one deadline (idle keep-alive, request head, body
progress, queue wait, app call, linger; see ``protocol``). A periodic sweep, rather
than one ``call_later`` handle per connection, keeps the cost of a deadline that is
re-armed on every request to two attribute stores.

The sweep must not become the stall it protects against. Deadlines that were armed
together come due together: a thousand idle connections opened in one burst reach
their keep-alive timeout in the same tick, and closing them all in one callback held
the loop for tens of milliseconds while normal clients waited. So a sweep fires at
most ``fire_batch`` deadlines, and checks at most ``scan_batch`` connections, per
callback, and continues with ``call_soon``: the loop polls for I/O between batches,
so a request that arrives in the middle of a wave is served in the middle of it.
A deadline fires a little later than it is due under such a wave (a batch is about a
millisecond); timeouts are housekeeping, serving is the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Protocol


class HasDeadline(Protocol):
    def check_deadline(self, now: float) -> bool:
        """Run the pending action if it is due; True if one ran."""


class DeadlineSweeper:
    """Every ``interval`` seconds, check ``connections()`` for due deadlines."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connections: Callable[[], Collection[HasDeadline]],
        interval: float,
        *,
        fire_batch: int = 16,
        scan_batch: int = 2048,
    ) -> None:
        self._loop = loop
        self._connections = connections
        self.interval = interval
        self.fire_batch = fire_batch
        self.scan_batch = scan_batch
        self._timer: asyncio.TimerHandle | None = None
        #: The next batch of a sweep spread over several callbacks.
        self._batch: asyncio.Handle | None = None

    @property
    def sweeping(self) -> bool:
        """A sweep is spread over several callbacks and not finished yet."""
        return self._batch is not None

    def start(self) -> None:
        self._timer = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        for handle in (self._timer, self._batch):
            if handle is not None:
                handle.cancel()
        self._timer = self._batch = None

    def _tick(self) -> None:
        self._timer = self._loop.call_later(self.interval, self._tick)
        # A sweep still spread over batches when the next tick comes (a wave of tens
        # of thousands) is left to finish: starting another would only repeat it.
        if not self.sweeping:
            self._sweep(list(self._connections()), 0)

    def _sweep(self, pending: list[HasDeadline], start: int) -> None:
        self._batch = None
        now = self._loop.time()
        fired = 0
        end = min(len(pending), start + self.scan_batch)
        index = start
        while index < end:
            connection = pending[index]
            index += 1
            # A connection closed by an earlier batch has no deadline left, and one
            # that became busy has re-armed it: check_deadline sees both.
            if connection.check_deadline(now):
                fired += 1
                if fired >= self.fire_batch:
                    break
        if index < len(pending):
            self._batch = self._loop.call_soon(self._sweep, pending, index)
