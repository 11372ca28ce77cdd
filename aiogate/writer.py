"""The response channel from the app's worker thread to the event loop.

Owns: ``ResponseWriter``, the real ``ResponseSink``. The handler calls ``start``,
``write``, ``sendfile``, ``finish`` or ``abort`` in a worker thread; the writer queues
each as an item and the event loop turns items into h11 events and socket writes.
When the client reads slower than the app writes, the body goes to the response's
spool, a temporary file, and the loop sends it from there as the client reads
(waitress's outbuf overflow). A file the app returned (``wsgi.file_wrapper``) is not
read here at all: the loop sends it from the file (``file_sender``).

Theory of operation:

1. Thread side appends an item under a lock. If no drain is scheduled, it schedules one
   with ``loop.call_soon_threadsafe``; items appended before the drain runs ride along,
   so a small response (start, one body chunk, finish) usually costs one wakeup.
2. The loop side, ``_drain``, takes every queued item and hands the list to ``deliver``
   (the request cycle), which writes them to the transport.
3. Backpressure: ``write`` counts bytes queued but not yet delivered, and the loop sets
   ``write_paused`` while the transport's own buffer is above its high-water mark.
   While either holds (queued above ``high_water``, or transport paused) the client is
   behind. A ``write`` then waits ``SPOOL_GRACE`` for it to catch up (a client that
   does keeps the old path: no file), and then puts the bytes into the spool and
   returns, so the app's call ends and its thread is free while the client reads.
4. The spool is one anonymous temporary file per response that needs it, created on
   first use, used as a ring of ``spool_size`` bytes: the thread writes at
   ``_Behind.end`` with ``os.pwrite``, the loop reads at ``_Behind.pos`` with
   ``os.pread``, both offsets modulo ``spool_size``, so no file position is shared and
   the file never grows past ``spool_size``. The thread reserves its bytes under the
   lock, writes them without it, then posts ``(SPOOL, length)`` (merged into a
   ``SPOOL`` item not yet drained); the loop reads only bytes so announced
   (``read_spool``). Once the spool holds unread bytes, every later ``write`` goes to
   it too, and the loop holds every later item behind it, the ``END`` included: the
   client gets the bytes in the app's order.
5. With the spool full, or no spool (``spool_size`` 0), ``write`` waits as before, but
   against a minimum rate, not only an idle timeout: for each ``timeout`` seconds the
   thread spends waiting, the loop must have taken ``min_rate x timeout`` bytes (at
   least one; so a ``min_rate`` of 0 is an idle timeout) of this response, counted
   from the window's first wait; else ``WriteTimeout``, an ``ABORT`` that the loop
   acts on at once (ahead of the spool), and the connection is dropped. Once the app
   has returned, the request cycle holds the client to the same rule while it sends
   the rest of the spool, or a file (``taken`` counts both).
6. ``close(exc)`` (loop side, connection lost or response aborted) wakes any blocked
   write and makes every later call raise ``ClientDisconnected``.
7. The spool file is closed once nobody needs it (``_release_spool``): when the loop
   has called ``close``, or when the response has ended and every spooled byte has
   been read. Never while the thread is writing to it: then the thread closes it when
   its write is done. So it is closed on every path, and never while in use.
8. Exactly one of ``finish``/``abort`` ends a response; ``ensure_ended`` (thread side,
   after the app call returns) aborts one that neither ended, so no connection waits
   forever on a handler that forgot.
9. ``sendfile(fd, offset, count)`` duplicates ``fd`` and posts ``(FILE, dup, offset,
   count)``, then returns at once: the app's call ends (its iterable closes the
   app's file) and its thread is free while the loop sends the file, in order with
   the other items. Like the spool, a slow reader costs a descriptor, not a thread.
   Out of descriptors for the duplicate, the thread reads the file and ``write``s
   it instead: slower, never wrong.
10. The writer owns every duplicate it posted (``_files``) until one of two things
    closes it, under the lock, so exactly once: ``close_file`` (loop side, the file
    is sent) or ``close`` (the response is given up: aborted, cut, connection lost;
    this also covers items never delivered). A duplicate that could not be posted
    (the connection was gone, or the response over) is closed by the thread before
    ``sendfile`` returns. The loop uses a duplicate only while the writer owns it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Final, cast

from ._types import LoopLike
from .errors import ClientDisconnected, WriteTimeout

__all__ = ["ABORT", "DATA", "END", "FILE", "SPOOL", "START", "Item", "ResponseWriter"]

#: Item kinds. Items are tuples: ``(START, status, headers, version)``, ``(DATA, bytes)``,
#: ``(END,)``, ``(ABORT,)``, ``(SPOOL, length)`` (the next ``length`` body bytes are
#: in the spool: ``read_spool``), ``(FILE, fd, offset, count)`` (the next ``count``
#: body bytes are those of the regular file ``fd`` from ``offset``; rules 9, 10).
START: Final = 0
DATA: Final = 1
END: Final = 2
ABORT: Final = 3
SPOOL: Final = 4
FILE: Final = 5

# An item's fields depend on its kind (the first field), which a tuple type cannot
# say; the loop side reads them by kind.
Item = tuple[Any, ...]

# Queue at most 64 KiB of body between thread and loop before the thread waits; the
# transport buffers more on its own (its high-water mark, set by the protocol).
DEFAULT_HIGH_WATER = 64 * 1024
# How long a write waits for a client that is behind before it spools (rule 3). A
# client that drains the transport's 48 KiB between its marks within 20 ms reads at
# 2.4 MB/s or more: it is keeping up, and a thread waits about as long on a database
# query; slower ones get the file. Spooling costs a temporary file (33 µs to create
# and close) and a pwrite and a pread of 4.3 µs per 64 KiB (measured on the dev box,
# ext4 TMPDIR); waiting costs a thread.
SPOOL_GRACE = 0.02
# What the thread reads at a time when it must send a file itself (rule 9).
_FILE_READ = 64 * 1024


def _open_spool() -> BinaryIO:
    """Runs in a worker thread: a new anonymous temporary file (in TMPDIR, unlinked at
    once, so nothing is left behind even if the process dies)."""
    import tempfile  # here, as in body.py: with shutil, bz2 and lzma, 0.9 MiB of RSS

    # Unbuffered: only pwrite/pread touch it, and a buffer would be 8 KiB for nothing.
    # Not a with-block: the file outlives this call (closed by rule 7).
    return tempfile.TemporaryFile(buffering=0)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Runs in a worker thread: write all of ``data`` at ``offset``."""
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


class _Behind:
    """What a response whose client fell behind needs: its spool and the minimum-rate
    window (rules 4, 5 and 7). Created by the thread, under the lock, the first time
    a write finds the client behind, so a response that never does costs nothing."""

    __slots__ = ("busy", "end", "file", "loop_done", "pos", "waited", "window_mark")

    def __init__(self) -> None:
        self.file: BinaryIO | None = None
        self.end = 0  # bytes ever reserved in the spool (thread side)
        self.pos = 0  # bytes ever read from it (loop side)
        self.busy = False  # the thread is writing to the file
        self.loop_done = False  # close() ran: the loop reads no more of it
        self.waited = 0.0  # seconds waited in the current window
        self.window_mark = 0  # ResponseWriter._taken when the window began


class ResponseWriter:
    """One response's channel; see the module docstring."""

    __slots__ = (
        "_behind",
        "_closed_reason",
        "_cond",
        "_deliver",
        "_ended",
        "_files",
        "_high_water",
        "_items",
        "_loop",
        "_min_rate",
        "_queued_bytes",
        "_scheduled",
        "_spool_size",
        "_spool_unread",
        "_taken",
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
        spool_size: int = 0,
        min_rate: int = 0,
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
        self._spool_size = spool_size  # 0: no spool, a write waits instead
        self._min_rate = min_rate
        # Spooled bytes not yet read (_Behind.end - _Behind.pos): here, not in
        # _behind, because every write reads it.
        self._spool_unread = 0
        self._taken = 0  # bytes the loop took from this response (rule 5)
        self._behind: _Behind | None = None  # created when the client falls behind
        # The FILE items' duplicates this writer owns (rule 10); None until the first.
        self._files: list[int] | None = None

    # -- thread side -------------------------------------------------------------

    def _post(self, item: Item) -> None:
        """Runs in a worker thread, holding the lock."""
        if self._closed_reason is not None:
            raise ClientDisconnected(self._closed_reason)
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def start(
        self, status: str, headers: list[tuple[str, str]], version: str = "1.1"
    ) -> None:
        """Runs in a worker thread. ``version``: the response's HTTP version (the
        handler's ``http_version``)."""
        with self._cond:
            self._post((START, status, headers, version))

    def write(self, data: bytes) -> None:
        """Runs in a worker thread. When the client is behind, the bytes go to the
        spool; waits only when that is full (or off) too (rules 3 to 5)."""
        if not data:
            return
        with self._cond:
            if not (
                self.write_paused
                or self._queued_bytes > self._high_water
                or self._spool_unread
            ):
                self._queued_bytes += len(data)
                self._post((DATA, data))
                return
        self._write_behind(data)

    def _write_behind(self, data: bytes) -> None:
        """Runs in a worker thread, without the lock: the client is behind. Spools
        ``data``, in pieces as room allows, or queues what is left as usual once the
        client has caught up."""
        view = memoryview(data)
        done = 0
        while True:
            with self._cond:
                behind = self._behind
                if behind is None:
                    behind = self._behind = _Behind()
                size = self._wait_room(behind, len(data) - done)
                if not size:
                    rest = data[done:] if done else data
                    self._queued_bytes += len(rest)
                    self._post((DATA, rest))
                    return
                spool_size = self._spool_size
                offset = behind.end % spool_size
                size = min(size, spool_size - offset)  # the rest wraps around next
                behind.end += size
                self._spool_unread += size
                behind.busy = True
                spool = behind.file
            try:
                if spool is None:
                    spool = _open_spool()
                _pwrite_all(spool.fileno(), view[done : done + size], offset)
            except BaseException as exc:
                # The spool failed (ENOSPC, EMFILE): the response can no longer be
                # whole, whatever the app does next (it may catch the error and
                # write on, and the bytes it reserved would be read as data). End it
                # here: later writes fail, and the loop resets the connection, whose
                # close() closes the file.
                with self._cond:
                    behind.busy = False
                    if behind.file is None:
                        behind.file = spool
                    if self._closed_reason is None:
                        self._closed_reason = f"response spool failed: {exc!r}"
                        self._ended = True
                        self._items.append((ABORT,))
                        if not self._scheduled:
                            self._scheduled = True
                            self._loop.call_soon_threadsafe(self._drain)
                    self._release_spool()
                raise
            with self._cond:
                behind.busy = False
                behind.file = spool
                if self._closed_reason is not None:
                    self._release_spool()  # if close() ran meanwhile, it is ours
                    raise ClientDisconnected(self._closed_reason)
                items = self._items
                if items and items[-1][0] is SPOOL:  # not drained yet: extend it
                    items[-1] = (SPOOL, cast(int, items[-1][1]) + size)
                else:
                    self._post((SPOOL, size))
            done += size
            if done == len(data):
                return

    def _wait_room(self, behind: _Behind, want: int) -> int:
        """Runs in a worker thread, holding the lock: 0 once the client keeps up (the
        bytes may be queued as usual), else how many of ``want`` bytes go to the
        spool now; waits until one or the other (rules 3 to 5)."""
        grace = 0.0
        while True:
            if self._closed_reason is not None:
                raise ClientDisconnected(self._closed_reason)
            unread = self._spool_unread
            if not (
                unread or self.write_paused or self._queued_bytes > self._high_water
            ):
                return 0
            room = self._spool_size - unread
            if room <= 0:  # full, or no spool
                self._wait_step(behind, self._timeout)
                continue
            if unread:  # spooling already: what follows goes behind it
                return min(room, want)
            now = time.monotonic()
            if not grace:
                grace = now + SPOOL_GRACE
            elif now >= grace:
                return min(room, want)
            self._wait_step(behind, grace - now)

    def _wait_step(self, behind: _Behind, limit: float) -> None:
        """Runs in a worker thread, holding the lock: wait for the loop, at most
        ``limit`` seconds, and hold the client to the minimum rate (rule 5)."""
        if not behind.waited:  # this wait opens a window
            behind.window_mark = self._taken
        began = time.monotonic()
        self._cond.wait(min(limit, self._timeout - behind.waited))
        behind.waited += time.monotonic() - began
        if behind.waited < self._timeout:
            return
        taken = self._taken - behind.window_mark
        if taken >= max(1, int(self._min_rate * self._timeout)):
            behind.waited = 0.0  # the next wait opens the next window
            return
        if taken:
            reason = (
                f"client read {taken} bytes in {self._timeout:g} seconds, under "
                f"the minimum of {self._min_rate} bytes/s"
            )
        else:
            reason = f"client read nothing for {self._timeout:g} seconds"
        self._closed_reason = reason
        self._items.append((ABORT,))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)
        raise WriteTimeout(reason)

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Runs in a worker thread: the next ``count`` body bytes are those of the
        regular file ``fd`` from ``offset``. Returns at once; the loop sends them
        from a duplicate of ``fd`` (rules 9, 10), so the caller may close ``fd``."""
        if count <= 0:
            return
        try:
            dup = os.dup(fd)
        except OSError:  # out of descriptors: send it the slow way
            self._write_file(fd, offset, count)
            return
        with self._cond:
            if self._closed_reason is None and not self._ended:
                if self._files is None:
                    self._files = []
                self._files.append(dup)
                self._post((FILE, dup, offset, count))
                return
            reason = self._closed_reason
        os.close(dup)  # never posted: ours to close (rule 10)
        if reason is not None:
            raise ClientDisconnected(reason)

    def _write_file(self, fd: int, offset: int, count: int) -> None:
        """Runs in a worker thread: read ``count`` bytes of ``fd`` from ``offset`` and
        ``write`` them. Raises ``OSError`` if the file is shorter."""
        while count:
            data = os.pread(fd, min(count, _FILE_READ), offset)
            if not data:
                raise OSError(f"the file ended {count} bytes short of its length")
            self.write(data)
            offset += len(data)
            count -= len(data)

    def finish(self) -> None:
        """Runs in a worker thread: the response is complete."""
        with self._cond:
            if not self._ended:
                self._ended = True
                if self._behind is not None:
                    self._release_spool()
                self._post((END,))

    def abort(self) -> None:
        """Runs in a worker thread: end the response by closing the connection."""
        with self._cond:
            if not self._ended:
                self._ended = True
                if self._behind is not None:
                    self._release_spool()
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

    # -- either side -------------------------------------------------------------

    def _release_spool(self) -> None:
        """Holding the lock: close the spool file if nobody needs it (rule 7)."""
        behind = self._behind
        if behind is None:
            return
        spool = behind.file
        if (
            spool is not None
            and not behind.busy
            and (behind.loop_done or (self._ended and not self._spool_unread))
        ):
            behind.file = None
            spool.close()

    @property
    def spooled(self) -> bool:
        """A spool file is open (for tests and statistics)."""
        behind = self._behind
        return behind is not None and behind.file is not None

    @property
    def taken(self) -> int:
        """Bytes the loop took from this response so far: queued ones as it drained
        them, spooled ones as it read them, a file's as it sent them (rule 5)."""
        return self._taken

    @property
    def spool_pos(self) -> int:
        """Bytes read from the spool so far (loop side)."""
        behind = self._behind
        return 0 if behind is None else behind.pos

    # -- loop side ---------------------------------------------------------------

    def _drain(self) -> None:
        """Runs on the event loop: deliver what the thread queued."""
        with self._cond:
            items, self._items = self._items, []
            self._scheduled = False
            if self._queued_bytes:
                self._taken += self._queued_bytes
                self._queued_bytes = 0
                self._cond.notify_all()
        if items:
            self._deliver(items)

    def read_spool(self, size: int) -> bytes:
        """Runs on the event loop: the next spooled bytes, at most ``size`` (fewer at
        the end of the ring). Only bytes that ``SPOOL`` items announced may be read.
        Raises ``OSError`` if the file lost them."""
        behind = self._behind
        spool = None if behind is None else behind.file
        if behind is None or spool is None:
            raise OSError("the response's spool file is closed")
        offset = behind.pos % self._spool_size
        data = os.pread(spool.fileno(), min(size, self._spool_size - offset), offset)
        if not data:
            raise OSError("the response's spool file is shorter than announced")
        with self._cond:
            behind.pos += len(data)
            self._spool_unread -= len(data)
            self._taken += len(data)
            if self._ended and not self._spool_unread:
                self._release_spool()  # the last of it: the response is over
            self._cond.notify_all()
        return data

    def file_sent(self, size: int) -> None:
        """Runs on the event loop: ``size`` bytes of a FILE item went out. They count
        as taken from the response (rule 5), for a thread that writes behind it."""
        with self._cond:
            self._taken += size
            self._cond.notify_all()

    def close_file(self, fd: int) -> None:
        """Runs on the event loop: the loop is done with the FILE item of ``fd``;
        close the duplicate if the writer still owns it (rule 10)."""
        with self._cond:
            files = self._files
            if files is not None and fd in files:
                files.remove(fd)
                os.close(fd)

    def set_write_paused(self, paused: bool) -> None:
        """Runs on the event loop, from the transport's pause/resume_writing."""
        with self._cond:
            self.write_paused = paused
            if not paused:
                self._cond.notify_all()

    def close(self, reason: str = "client disconnected") -> None:
        """Runs on the event loop: the connection is gone or the response aborted;
        wake and fail the thread, and close the spool (rule 7)."""
        with self._cond:
            if self._closed_reason is None:
                self._closed_reason = reason
            self._items.clear()
            behind = self._behind
            if behind is not None:
                behind.loop_done = True
                self._release_spool()
            files, self._files = self._files, None
            if files:
                for fd in files:  # sent or not, the loop is done with them (rule 10)
                    os.close(fd)
            self._cond.notify_all()
