"""The worker threads that run WSGI apps.

Owns: ``ThreadPool``, a fixed set of daemon threads fed by a ``queue.SimpleQueue``. The
event loop submits; worker threads run the jobs. Measured in the design study
(ARCHITECTURE.md): ``loop.run_in_executor`` costs about 57 µs a request, as much as the
rest of the server; a bare ``SimpleQueue.put`` costs almost nothing, and the job itself
reports back with ``call_soon_threadsafe``, so no future is needed.

Each job runs in a fresh copy of the submitter's ``contextvars`` context, so context
variables set by one request never leak into the next request on the same thread.

Threads are daemons: a thread stuck in app code cannot be killed, and must not keep the
process alive after the graceful-shutdown deadline (waitress makes the same choice).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["ThreadPool"]

log = logging.getLogger("aiogate.error")

_STOP = None


class ThreadPool:
    """A fixed pool of worker threads. ``submit`` runs on the event loop."""

    def __init__(self, size: int, name: str = "aiogate-worker") -> None:
        self.size = size
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[contextvars.Context, Callable[[], object]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = 0

    def start(self) -> None:
        for index in range(self.size):
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job``; a free thread runs it in a copy of the current context."""
        self._queue.put((contextvars.copy_context(), job))

    def statistics(self) -> dict[str, int]:
        """Threads, how many are running a job, and jobs waiting for a thread."""
        return {"threads": self.size, "busy": self._busy, "queued": self._queue.qsize()}

    def _work(self) -> None:
        """Runs in a worker thread until it takes the stop marker."""
        get = self._queue.get
        lock = self._lock
        while (entry := get()) is not None:
            context, job = entry
            with lock:
                self._busy += 1
            try:
                context.run(job)
            except BaseException:  # a job must never kill its thread
                log.exception("Unhandled error in a worker thread job")
            finally:
                with lock:
                    self._busy -= 1

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the threads after the jobs already queued. Waits at most ``timeout``
        seconds in all; returns False if some thread was still busy then."""
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            thread.join(remaining)
        alive = [thread for thread in self._threads if thread.is_alive()]
        self._threads = alive
        return not alive
