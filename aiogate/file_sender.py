"""A file the app returned, on its way to the client: zero-copy where it can be.

Owns: ``FileSender``, the loop side of one writer ``FILE`` item (a duplicate of the
app's file, an offset and a count; writer rules 9 and 10). Runs on the event loop,
called by the request cycle (``dispatch``) whenever the transport can take more.

Theory of operation:

1. Order. A FILE item's bytes go out in order with the rest of the response: the
   cycle holds every item behind it until the file is sent (``dispatch`` rule 4),
   and the sender starts only once all that went before has left the transport's
   buffer, since it writes past the transport.
2. Zero-copy. On a plain TCP or UNIX socket (no TLS), for a body framed by its
   Content-Length or the close (not chunked), the bytes go with ``os.sendfile``
   from the page cache to the socket, on the loop thread, on the non-blocking
   socket. Each call copies what the socket's buffer takes, at most
   ``FILE_BYTES_PER_TURN``.
3. Waiting for the socket, the same way on both loops. When the socket is full
   (EAGAIN) the sender reads a small piece of the file (``NUDGE``) and writes it
   through the transport, and the transport waits for the socket as it always does.
   For as long as the file is sent, the transport's write-buffer limits are (0, 0):
   the protocol is paused while the transport holds a byte and resumed once it
   holds none, and ``resume_writing`` calls the cycle, so the next ``os.sendfile``
   follows (and the first one waits for the head the same way). The limits are put
   back at the end.
   Why not watch the socket: asyncio's ``add_writer`` refuses a transport's own
   descriptor, and a duplicate of the socket registered with ``add_writer`` (which
   works on both loops) costs a descriptor per waiting connection, one more than the
   open-file budget counts (``listener.open_files_needed``: the socket and one file),
   and must be unregistered and closed before the connection is reset, or it holds
   the socket open and the reset waits. uvloop has no ``loop.sendfile``
   (MagicStack/uvloop#228); the stdlib's pauses reading and needs a task per file.
   None is cheaper: the server's CPU per 100 MiB to a loopback reader taking 1 MiB
   per recv (medians of 3, dev box) was 35-36 ms this way on either loop, 37-38 ms
   with a watched duplicate, 34-37 ms for a blocking ``socket.sendfile`` in a
   thread (gunicorn's way) and 36 ms for the stdlib's ``loop.sendfile``; the
   kernel's TCP work is nearly all of it.
4. Fallback: over TLS, for a chunked body (a handler that wrote before the file),
   or when the kernel refuses ``sendfile`` for this pair (EINVAL, ENOSYS, ENOTSOCK,
   EOPNOTSUPP, EOVERFLOW), the sender ``pread``s ``SPOOL_PIECE`` at a time and writes
   it through the transport while the transport is not paused, as the spool is sent.
5. Fairness: at most ``FILE_BYTES_PER_TURN`` per call, then the rest on the next
   turn of the loop (``call_soon``), so a fast client of a large file gets no more
   of the loop than a spool reader does.
6. What went out is counted where every body byte is:
   ``ServerConnection.count_data`` (the Content-Length, as ``send_data`` counts),
   ``cycle.bytes_sent`` (access log, metrics), and the writer (``file_sent``: the
   read-rate rule, writer rule 5).
7. The file's descriptor is the writer's (writer rule 10): the sender closes it
   with ``writer.close_file`` once sent; a response given up (cut, aborted, the
   connection lost) has it closed by ``writer.close``. The sender holds no
   descriptor or registration of its own, so a cut connection leaves nothing behind,
   and it never runs once its cycle has ended.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import TYPE_CHECKING, Final

import h11

if TYPE_CHECKING:
    from .dispatch import RequestCycle

__all__ = ["FILE_BYTES_PER_TURN", "NUDGE", "SPOOL_PIECE", "FileSender"]

log = logging.getLogger("aiogate.error")

#: At most this many bytes of a file per turn of the loop (rule 5), like the spool's
#: 16 x 64 KiB. One ``os.sendfile`` of 1 MiB to a loopback client takes about 350 µs
#: (the mean on the dev box, a reader draining the other end; 170 µs for 256 KiB):
#: under a millisecond of the loop, as the spool's turn.
FILE_BYTES_PER_TURN: Final = 1024 * 1024
#: Bytes written through the transport when the socket is full (rule 3): the kernel
#: reports a socket writable once a third of its buffer is free, so this fits, and
#: 16 KiB per wait is about 1 % of what ``os.sendfile`` moves in between.
NUDGE: Final = 16 * 1024
#: What the fallback reads and writes at a time (rule 4), the spool's piece.
SPOOL_PIECE: Final = 64 * 1024

# errno values with which sendfile(2) refuses this file or socket, having sent
# nothing: the bytes then go the copying way (rule 4).
_UNSUPPORTED = frozenset(
    getattr(errno, name)
    for name in ("EINVAL", "ENOSYS", "ENOTSOCK", "EOPNOTSUPP", "ENOTSUP", "EOVERFLOW")
    if hasattr(errno, name)
)


class FileSender:
    """One FILE item's bytes, sent as the transport takes them; see the module
    docstring. Made by the cycle when the item comes up; on the loop only."""

    __slots__ = ("count", "cycle", "fd", "limits", "offset", "socket_fd", "started")

    def __init__(self, cycle: RequestCycle, fd: int, offset: int, count: int) -> None:
        self.cycle = cycle
        self.fd = fd  # the writer's duplicate (rule 7)
        self.offset = offset
        self.count = count  # bytes still to send
        self.started = False
        # The socket to sendfile to, or -1: copy (rule 4).
        self.socket_fd = -1
        # The transport's write-buffer limits to put back (rule 3), while changed.
        self.limits: tuple[int, int] | None = None

    def _start(self) -> None:
        """Zero-copy or not (rules 2 and 4)."""
        self.started = True
        protocol = self.cycle.protocol
        transport = protocol.transport
        # Raises h11.LocalProtocolError if no body may be sent now (a handler that
        # sent a file before its head): the response is cut.
        as_is = protocol.conn.body_goes_as_is()
        if not as_is or transport.get_extra_info("sslcontext") is not None:
            return  # chunked (each piece needs its framing), or TLS
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        self.socket_fd = sock.fileno()
        self.limits = transport.get_write_buffer_limits()
        # The protocol is paused from here on while the transport holds a byte,
        # at once if it still holds some of what went before (rule 3).
        transport.set_write_buffer_limits(high=0, low=0)

    def send(self) -> bool:
        """Send what the transport takes now (rules 2 to 5). True once every byte has
        gone (the caller goes on with what follows); False while it waits, for
        ``resume_writing`` or for its next turn, or once it has cut the response
        because the file could not be sent (the client left, a read failed, or the
        file is shorter than announced)."""
        try:
            if not self.started:
                self._start()
            zero_copy = self.socket_fd >= 0
            done = self._send_zero_copy() if zero_copy else self._send_copies()
        except ConnectionError as exc:  # the client left: no news
            log.debug("%s left mid-file: %s", self.cycle.protocol.info.client, exc)
            self.cycle.cut()
            return False
        except (OSError, h11.LocalProtocolError) as exc:
            log.error("Response cut, closing the connection: %s", exc)
            self.cycle.cut()
            return False
        if done:
            self.close()
        return done

    def close(self) -> None:
        """The file is sent, or the cycle lets go of it: put the transport's limits
        back, and have the writer close the file (rule 7)."""
        self._restore_limits()
        self.cycle.writer.close_file(self.fd)

    def _send_zero_copy(self) -> bool:
        protocol = self.cycle.protocol
        budget = FILE_BYTES_PER_TURN
        sent_now = 0
        try:
            while self.count:
                if protocol.flow.write_paused:
                    return False  # resume_writing calls the cycle again (rule 3)
                if not budget:
                    protocol.state.loop.call_soon(self.cycle.send_spooled)
                    return False
                try:
                    sent = os.sendfile(
                        self.socket_fd, self.fd, self.offset, min(self.count, budget)
                    )
                except BlockingIOError:
                    budget -= min(budget, self._nudge())  # the transport waits
                    continue
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    self._stop_zero_copy()  # the kernel will not: copy (rule 4)
                    return self._send_copies()
                if not sent:
                    raise OSError(f"the file ended {self.count} bytes short")
                sent_now += sent
                budget -= sent
                self.offset += sent
                self.count -= sent
        finally:
            if sent_now:
                self._count(sent_now)
        return True

    def _nudge(self) -> int:
        """The socket is full: send a piece through the transport, which then waits
        for the socket and resumes the protocol once it has taken it (rule 3).
        Returns the piece's size."""
        data = self._read(NUDGE)
        cycle = self.cycle
        cycle.protocol.transport.write(cycle.protocol.conn.send_data(data))
        cycle.writer.file_sent(len(data))
        if cycle.protocol.state.observing:
            cycle.bytes_sent += len(data)
        return len(data)

    def _stop_zero_copy(self) -> None:
        self.socket_fd = -1
        self._restore_limits()

    def _restore_limits(self) -> None:
        """Put back the transport's write-buffer limits changed for zero-copy
        (rule 3), once."""
        limits, self.limits = self.limits, None
        transport = self.cycle.protocol.transport
        if limits is not None and not transport.is_closing():
            low, high = limits
            transport.set_write_buffer_limits(high=high, low=low)

    def _count(self, size: int) -> None:
        """``size`` bytes went out by sendfile: count them (rule 6)."""
        cycle = self.cycle
        cycle.protocol.conn.count_data(size)
        cycle.writer.file_sent(size)
        if cycle.protocol.state.observing:
            cycle.bytes_sent += size

    def _send_copies(self) -> bool:
        """Rule 4: a piece at a time, while the transport is not paused."""
        cycle = self.cycle
        protocol = cycle.protocol
        transport = protocol.transport
        observe = protocol.state.observing
        budget = FILE_BYTES_PER_TURN
        sent_now = 0
        try:
            while self.count:
                if protocol.flow.write_paused:
                    return False  # resume_writing calls the cycle again
                if not budget:
                    protocol.state.loop.call_soon(cycle.send_spooled)
                    return False
                data = self._read(min(SPOOL_PIECE, budget))
                budget -= len(data)
                sent_now += len(data)
                transport.write(protocol.conn.send_data(data))
        finally:
            if sent_now:
                cycle.writer.file_sent(sent_now)
                if observe:
                    cycle.bytes_sent += sent_now
        return True

    def _read(self, size: int) -> bytes:
        """The next bytes of the file, at most ``size``; raises ``OSError`` if it
        is shorter than announced."""
        data = os.pread(self.fd, min(size, self.count), self.offset)
        if not data:
            raise OSError(f"the file ended {self.count} bytes short")
        self.offset += len(data)
        self.count -= len(data)
        return data
