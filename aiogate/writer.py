"""The response channel from the app's worker thread to the event loop.

Owns: ``ResponseWriter``, the real ``ResponseSink``. The handler calls ``start``,
``write``, ``finish`` or ``abort`` in a worker thread; the writer queues each as an item
and the event loop turns items into h11 events and socket writes.

Theory of operation:

1. Thread side appends an item under a lock. If no drain is scheduled, it schedules one
   with ``loop.call_soon_threadsafe``; items appended before the drain runs ride along,
   so a small response (start, one body chunk, finish) usually costs one wakeup.
2. The loop side, ``_drain``, takes every queued item and hands the list to ``deliver``
   (the request cycle), which writes them to the transport.
3. Backpressure: ``write`` counts bytes queued but not yet delivered, and the loop sets
   ``write_paused`` while the transport's own buffer is above its high-water mark. A
   ``write`` blocks while either holds (queued above ``high_water`` or transport paused)
   until both clear, for at most ``timeout`` seconds; then it raises ``WriteTimeout``
   and the connection is dropped. So a slow reader stalls the app's thread, not memory.
4. ``close(exc)`` (loop side, connection lost) wakes any blocked write and makes every
   later call raise ``ClientDisconnected``.
5. Exactly one of ``finish``/``abort`` ends a response; ``ensure_ended`` (thread side,
   after the app call returns) aborts one that neither ended, so no connection waits
   forever on a handler that forgot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from ._types import LoopLike
from .errors import ClientDisconnected, WriteTimeout

__all__ = ["ABORT", "DATA", "END", "START", "Item", "ResponseWriter"]

#: Item kinds. Items are tuples: ``(START, status, headers)``, ``(DATA, bytes)``,
#: ``(END,)``, ``(ABORT,)``.
START: Final = 0
DATA: Final = 1
END: Final = 2
ABORT: Final = 3

Item = tuple[object, ...]

# Queue at most 64 KiB of body between thread and loop before the thread waits; the
# transport buffers more on its own (its high-water mark, set by the protocol).
DEFAULT_HIGH_WATER = 64 * 1024


class ResponseWriter:
    """One response's channel; see the module docstring."""

    __slots__ = (
        "_closed_reason",
        "_cond",
        "_deliver",
        "_ended",
        "_high_water",
        "_items",
        "_loop",
        "_queued_bytes",
        "_scheduled",
        "_timeout",
        "write_paused",
    )

    def __init__(
        self,
        loop: LoopLike,
        deliver: Callable[[list[Item]], None],
        *,
        timeout: float,
        high_water: int = DEFAULT_HIGH_WATER,
        cond: threading.Condition | None = None,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._timeout = timeout
        self._high_water = high_water
        # May be shared with the request body (see RequestBody): only the thread
        # running this request ever waits on it, and waits re-check their condition.
        self._cond = cond if cond is not None else threading.Condition(threading.Lock())
        self._items: list[Item] = []
        self._queued_bytes = 0
        self._scheduled = False
        self._ended = False
        self._closed_reason: str | None = None
        #: Set by the loop while the transport's buffer is above its high water.
        self.write_paused = False

    # -- thread side -------------------------------------------------------------

    def _post(self, item: Item) -> None:
        """Runs in a worker thread, holding the lock."""
        if self._closed_reason is not None:
            raise ClientDisconnected(self._closed_reason)
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def start(self, status: str, headers: list[tuple[str, str]]) -> None:
        """Runs in a worker thread."""
        with self._cond:
            self._post((START, status, headers))

    def write(self, data: bytes) -> None:
        """Runs in a worker thread. Blocks while the client is not keeping up."""
        if not data:
            return
        with self._cond:
            if self.write_paused or self._queued_bytes > self._high_water:
                self._wait_writable()
            self._queued_bytes += len(data)
            self._post((DATA, data))

    def _wait_writable(self) -> None:
        """Runs in a worker thread, holding the lock."""
        while self._closed_reason is None and (
            self.write_paused or self._queued_bytes > self._high_water
        ):
            if not self._cond.wait(self._timeout):
                reason = f"client read nothing for {self._timeout:g} seconds"
                self._closed_reason = reason
                self._items.append((ABORT,))
                if not self._scheduled:
                    self._scheduled = True
                    self._loop.call_soon_threadsafe(self._drain)
                raise WriteTimeout(reason)
        if self._closed_reason is not None:
            raise ClientDisconnected(self._closed_reason)

    def finish(self) -> None:
        """Runs in a worker thread: the response is complete."""
        with self._cond:
            if not self._ended:
                self._ended = True
                self._post((END,))

    def abort(self) -> None:
        """Runs in a worker thread: end the response by closing the connection."""
        with self._cond:
            if not self._ended:
                self._ended = True
                if self._closed_reason is None:
                    self._post((ABORT,))

    def ensure_ended(self) -> bool:
        """Runs in a worker thread after the app call: abort a response that was
        neither finished nor aborted. Returns True if it had to."""
        with self._cond:
            if self._ended:
                return False
        self.abort()
        return True

    # -- loop side ---------------------------------------------------------------

    def _drain(self) -> None:
        """Runs on the event loop: deliver what the thread queued."""
        with self._cond:
            items, self._items = self._items, []
            self._scheduled = False
            if self._queued_bytes:
                self._queued_bytes = 0
                self._cond.notify_all()
        if items:
            self._deliver(items)

    def set_write_paused(self, paused: bool) -> None:
        """Runs on the event loop, from the transport's pause/resume_writing."""
        with self._cond:
            self.write_paused = paused
            if not paused:
                self._cond.notify_all()

    def close(self, reason: str = "client disconnected") -> None:
        """Runs on the event loop: the connection is gone; wake and fail the thread."""
        with self._cond:
            if self._closed_reason is None:
                self._closed_reason = reason
            self._items.clear()
            self._cond.notify_all()
