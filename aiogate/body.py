"""The request body as the app sees it: ``wsgi.input``.

Owns: ``RequestBody``, a bounded buffer between the event loop, which feeds it what the
client sends, and the worker thread running the app, which reads it.

Theory of operation:

1. Loop side (``feed_data``, ``feed_eof``, ``set_exception``) appends under a lock and
   wakes a waiting reader. ``feed_data`` returns True once the buffer holds at least
   ``high_water`` bytes; the protocol then pauses reading from the socket.
2. Thread side (``read``, ``readline``, ``readlines``, iteration) waits on a
   ``threading.Condition`` for data, end of body or an error, at most ``timeout`` seconds
   without progress; then it raises ``ClientDisconnected`` (a ``ConnectionAbortedError``,
   which the handler treats as the client having gone).
3. When a read leaves fewer than ``low_water`` bytes after the loop paused, the reader asks
   the loop to resume reading, once, through ``loop.call_soon_threadsafe``.
4. The first read that needs bytes not yet here calls ``on_first_read`` once: that is how
   ``Expect: 100-continue`` is answered only when the app wants the body (RFC 9110 §10.1.1).
5. ``wsgi.input_terminated`` is true: ``read()`` with no size returns at the end of the
   body, framed by Content-Length or chunked encoding, never waiting for more (PEP 3333).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from .errors import ClientDisconnected

__all__ = ["EMPTY_BODY", "EmptyBody", "RequestBody"]

# Buffer 64 KiB of body before pausing the socket, and resume under 16 KiB: large
# enough that a streaming upload is read in big slices, small enough per connection.
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = 16 * 1024


class RequestBody:
    """``wsgi.input`` for one request. See the module docstring for the protocol."""

    __slots__ = (
        "_buffer",
        "_cond",
        "_eof",
        "_exc",
        "_high_water",
        "_low_water",
        "_on_first_read",
        "_on_resume",
        "_paused",
        "_timeout",
        "bytes_received",
    )

    def __init__(
        self,
        *,
        timeout: float,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int = DEFAULT_LOW_WATER,
        on_first_read: Callable[[], object] | None = None,
        on_resume: Callable[[], object] | None = None,
        cond: threading.Condition | None = None,
    ) -> None:
        self._buffer = bytearray()
        # The server passes one condition per connection, shared with the response
        # writer: both are waited on only by the one thread running the request, and
        # making a Condition costs about 2 µs a request (measured in the inline
        # profile, benchmarks/profile_inline.py).
        self._cond = cond if cond is not None else threading.Condition(threading.Lock())
        self._eof = False
        self._exc: BaseException | None = None
        self._timeout = timeout
        self._high_water = high_water
        self._low_water = low_water
        self._on_first_read = on_first_read
        self._on_resume = on_resume
        self._paused = False
        self.bytes_received = 0

    # -- loop side ---------------------------------------------------------------

    def feed_data(self, data: bytes) -> bool:
        """Runs on the event loop. Returns True when reading should pause."""
        with self._cond:
            self._buffer += data
            self.bytes_received += len(data)
            self._cond.notify_all()
            if len(self._buffer) >= self._high_water:
                self._paused = True
            return self._paused

    def feed_eof(self) -> None:
        """Runs on the event loop: the whole body has arrived."""
        with self._cond:
            self._eof = True
            self._on_first_read = None
            self._cond.notify_all()

    def set_exception(self, exc: BaseException) -> None:
        """Runs on the event loop: the body will never complete (client gone)."""
        with self._cond:
            if not self._eof:
                self._exc = exc
            self._cond.notify_all()

    # -- thread side -------------------------------------------------------------

    def _wait(self, satisfied: Callable[[], bool]) -> None:
        """Runs in a worker thread, holding the lock: wait until ``satisfied()``, the
        end of the body, or an error, with ``timeout`` seconds at most between wakeups
        that bring data."""
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()
        while not satisfied() and not self._eof:
            if self._exc is not None:
                raise ClientDisconnected(str(self._exc) or "client disconnected")
            if self._paused and self._on_resume is not None:
                # A full buffer the reader is waiting on more than can never happen
                # (reads take what is there); this covers a readline longer than
                # high water, which must let the socket fill the buffer further.
                self._paused = False
                self._on_resume()
            size = len(self._buffer)
            if not self._cond.wait(self._timeout) and len(self._buffer) == size:
                raise ClientDisconnected(
                    f"no request body data for {self._timeout:g} seconds"
                )

    def _take(self, size: int) -> bytes:
        """Runs in a worker thread, holding the lock: remove and return ``size`` bytes."""
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._paused and len(self._buffer) < self._low_water:
            self._paused = False
            if self._on_resume is not None:
                self._on_resume()
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Runs in a worker thread. ``read()`` or ``read(-1)``: the rest of the body;
        ``read(n)``: up to ``n`` bytes, fewer only at the end of the body."""
        with self._cond:
            if size is None or size < 0:
                self._wait(lambda: False)
                return self._take(len(self._buffer))
            if size == 0:
                return b""
            self._wait(lambda: len(self._buffer) >= size)
            return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """Runs in a worker thread. One line including its ``\\n``, at most ``size``
        bytes when ``size`` is given and not negative."""
        limit = -1 if size is None else size
        if limit == 0:
            return b""
        with self._cond:

            def line_ready() -> bool:
                return b"\n" in self._buffer or 0 <= limit <= len(self._buffer)

            self._wait(line_ready)
            end = self._buffer.find(b"\n") + 1 or len(self._buffer)
            if 0 <= limit < end:
                end = limit
            return self._take(end)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Runs in a worker thread. Lines until the end, or until ``hint`` bytes."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class EmptyBody:
    """``wsgi.input`` for a request without a body (no Content-Length, or 0, and not
    chunked): every read is at the end. One shared, stateless instance,
    ``EMPTY_BODY``, serves every such request; most requests are like this, and it
    saves building a ``RequestBody`` for each."""

    __slots__ = ()

    bytes_received = 0

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    # Loop side: the end of an empty body changes nothing.
    def feed_eof(self) -> None:
        pass

    def set_exception(self, exc: BaseException) -> None:
        pass


EMPTY_BODY = EmptyBody()
