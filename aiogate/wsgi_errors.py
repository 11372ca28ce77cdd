"""The server's ``wsgi.errors``: a text stream whose lines become log records.

Owns ``ErrorLog``, the stream every request's ``wsgi.errors`` is (PEP 3333: "an output
stream to which error output can be written"), and ``log_exception``, which logs an
app's error with its traceback cut to a handler's ``traceback_limit``. Both run in
the worker threads, any number at once; records go to the ``aiogate.error`` logger,
whose handlers (``--log-config``) decide where they end up, as for every other
record of the server.

1. Text written to the stream is logged a line at a time at ERROR, each complete
   line as it arrives; several lines in one ``write`` make one record, so a
   traceback printed in one call stays together. A line without its newline waits
   for the rest, for ``flush``, or for the end of the request (the handler
   flushes then).
2. Each thread has its own unfinished line: requests running at once never mix
   their text.
3. ``log_exception`` keeps the exception on the record (``exc_info``: error trackers
   and structured formatters read it) and puts the traceback text, limited to
   ``limit`` frames, where formatters look for it first (``exc_text``).
"""

from __future__ import annotations

import logging
import traceback
from threading import get_ident
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed import OptExcInfo

__all__ = ["ErrorLog"]


class ErrorLog:
    """``wsgi.errors``: writes become records of ``logger`` at ERROR (rule 1)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = (
            logger if logger is not None else logging.getLogger("aiogate.error")
        )
        #: Each thread's unfinished line, by thread id (rule 2). Not a threading.local:
        # reading a missing attribute of one raises inside, and the check at the end
        # of every request cost 3.7k instructions that way; a dict lookup costs ~0.
        self.pending: dict[int, str] = {}

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        ident = get_ident()
        done, newline, rest = (self.pending.pop(ident, "") + text).rpartition("\n")
        if rest:
            self.pending[ident] = rest
        if newline:
            self._emit(done)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        self.write("".join(lines))

    def flush(self) -> None:
        pending = self.pending.pop(get_ident(), None)
        if pending:
            self._emit(pending)

    def log_exception(
        self, message: str, exc_info: OptExcInfo, limit: int | None
    ) -> None:
        """One ERROR record of ``message`` with ``exc_info``, its traceback cut to
        ``limit`` frames (None: all), as ``traceback.print_exception`` would (rule 3)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.ERROR):
            return
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 0, message, (), exc_info
        )
        if limit is not None:
            record.exc_text = "".join(
                traceback.format_exception(exc_info[0], exc_info[1], exc_info[2], limit)
            ).rstrip("\n")
        logger.handle(record)

    def _emit(self, text: str) -> None:
        if text:
            self.logger.error("%s", text)
