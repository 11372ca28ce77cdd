"""The worker threads that run WSGI apps.

Owns: ``ThreadPool``, a set of daemon threads fed by a ``queue.SimpleQueue``. The event
loop submits; worker threads run the jobs. Measured in the design study
(ARCHITECTURE.md): ``loop.run_in_executor`` costs about 57 µs a request, as much as the
rest of the server; a bare ``SimpleQueue.put`` costs almost nothing, and the job itself
reports back with ``call_soon_threadsafe``, so no future is needed.

Each job runs in a fresh copy of the submitter's ``contextvars`` context, so context
variables set by one request never leak into the next request on the same thread.

A thread stuck in app code cannot be killed (Python has no way to stop a thread from
outside). When the server gives up on such a request (``--timeout-request``), it calls
``replace``: a new thread takes the stuck one's place, and the stuck one exits when its
job finally returns, so the pool does not silently shrink. At most ``size`` threads can
be replaced at once; past that the pool logs that it is running short, and the thread
given up on stays counted as stuck (``short``) until its job returns; when a replaced
thread exits meanwhile, one of those is replaced in its turn.

``statistics()["serving"]`` counts the threads that can take a job now: neither
replaced nor given up on. The liveness probe fails only when it is 0, so a pool whose
stuck threads were all replaced, and whose replacements serve, is alive.

Threads are daemons: a stuck thread must not keep the process alive after the
graceful-shutdown deadline (waitress makes the same choice).
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
    """A pool of worker threads. ``submit`` and ``replace`` run on the event loop."""

    def __init__(self, size: int, name: str = "aiogate-worker") -> None:
        self.size = size
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[contextvars.Context, Callable[[], object]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Threads replaced while stuck in a job; each exits when its job returns.
        self._retired: set[threading.Thread] = set()
        #: Threads given up on but not replaced (``size`` were replaced already);
        #: each serves again when its job returns, or is replaced once one can be.
        self._short: set[threading.Thread] = set()
        self._stopping = False  # shutdown began: start no more threads
        self._lock = threading.Lock()
        self._busy = 0
        self._started = 0  # threads ever started, for their names

    def start(self) -> None:
        for _ in range(self.size):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{self._started}", daemon=True
        )
        self._started += 1
        self._threads.append(thread)
        thread.start()

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job``; a free thread runs it in a copy of the current context."""
        self._queue.put((contextvars.copy_context(), job))

    def replace(self, thread: threading.Thread) -> bool:
        """``thread`` is stuck in a job the server gave up on: start another thread in
        its place and let the stuck one exit when its job returns. Returns False (and
        logs) when ``size`` threads are stuck already: the pool then runs short."""
        with self._lock:
            if thread in self._retired or thread not in self._threads:
                return True
            if thread in self._short:
                return False  # said already
            if len(self._retired) >= self.size:
                self._short.add(thread)
                log.warning(
                    "Thread pool running short: %d of %d threads are stuck in app "
                    "code; %s is not replaced",
                    len(self._retired),
                    self.size,
                    thread.name,
                )
                return False
            self._retired.add(thread)
            self._start_thread()
            stuck = len(self._retired)
        if stuck > self.size // 2:
            log.warning(
                "%d threads are stuck in app code (replaced, up to %d)",
                stuck,
                self.size,
            )
        return True

    def statistics(self) -> dict[str, int]:
        """Threads, how many are running a job, jobs waiting for a thread, threads
        replaced while stuck in a job the server gave up on, and threads that can
        take a job (``serving``: started, neither replaced nor given up on)."""
        with self._lock:
            serving = len(self._threads) - len(self._retired) - len(self._short)
            return {
                "threads": self.size,
                "busy": self._busy,
                "queued": self._queue.qsize(),
                "stuck": len(self._retired),
                "serving": serving,
            }

    def _work(self) -> None:
        """Runs in a worker thread until it takes the stop marker or is retired."""
        get = self._queue.get
        lock = self._lock
        me = threading.current_thread()
        while (entry := get()) is not None:
            context, job = entry
            with lock:
                self._busy += 1
            try:
                context.run(job)
            except BaseException:  # a job must never kill its thread
                log.exception("Unhandled error in a worker thread job")
            with lock:
                self._busy -= 1
                self._short.discard(me)  # given up on but not replaced: serves again
                if me in self._retired:  # replaced while stuck: another took over
                    self._retired.discard(me)
                    self._threads.remove(me)
                    if self._short and not self._stopping:
                        # A replacement can be afforded again: for a thread still
                        # stuck that had to go without one.
                        self._retired.add(self._short.pop())
                        self._start_thread()
                    return

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the threads after the jobs already queued. Waits at most ``timeout``
        seconds in all; returns False if some thread was still busy then."""
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
            working = [thread for thread in threads if thread not in self._retired]
        for _ in working:
            self._queue.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            thread.join(remaining)
        with self._lock:
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            return not self._threads
