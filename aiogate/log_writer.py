"""The access log's own thread: formatting and writing happen off the event loop.

Owns: ``AccessLogWriter``. The event loop calls ``submit`` with an ``AccessRecord``
when a response ends (a ``SimpleQueue.put``, well under a microsecond); a daemon thread
formats each record with the compiled ``--access-log-format`` and logs it on the
``aiogate.access`` logger, whose handlers may block on a slow stdout or disk without
stalling any connection. If that thread falls more than ``MAX_BACKLOG`` records behind,
new records are dropped and counted (and the count logged), so a stuck log consumer
costs bounded memory, not the server.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from .access_log import AccessRecord

__all__ = ["MAX_BACKLOG", "AccessLogWriter"]

#: Records waiting to be written before new ones are dropped (a few MiB at most).
MAX_BACKLOG = 10_000

log = logging.getLogger("aiogate.error")


class AccessLogWriter:
    """Writes access lines from a thread of its own. ``submit`` runs on the loop."""

    def __init__(
        self,
        line: Callable[[AccessRecord], str],
        logger: logging.Logger | None = None,
    ) -> None:
        self._line = line
        self._logger = logger or logging.getLogger("aiogate.access")
        self._queue: queue.SimpleQueue[AccessRecord | None] = queue.SimpleQueue()
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, name="aiogate-access-log", daemon=True
        )
        self._thread.start()

    def submit(self, record: AccessRecord) -> None:
        """Runs on the event loop: queue one record (or drop it, if far behind)."""
        if self._queue.qsize() >= MAX_BACKLOG:
            self.dropped += 1
            return
        self._queue.put(record)

    def _run(self) -> None:
        """Runs in the writer thread until ``close``."""
        reported = 0
        logger = self._logger
        while (record := self._queue.get()) is not None:
            try:
                logger.info(self._line(record))
            except Exception:  # a bad custom format or handler must not kill the log
                log.exception("Could not write an access log line")
            if self.dropped != reported:
                log.warning(
                    "Access log fell behind: %d lines dropped", self.dropped - reported
                )
                reported = self.dropped

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread (at most ``timeout`` s)."""
        self._queue.put(None)
        self._thread.join(timeout)
