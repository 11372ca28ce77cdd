"""Accepting connections, and the one budget every client socket counts against.

Owns: ``Listener`` (our accept loop on the listening sockets) and ``Slot`` (one
accepted socket's place in the budget). Runs on the event loop.

Why not ``loop.create_server``: asyncio calls ``connection_made`` only after the TLS
handshake and offers no hook at accept, so a server built on it cannot count a socket
before then; and it accepts whatever the backlog holds, so a limit can only be
enforced by answering, never by not accepting. A flood then grows the open
descriptors without bound. Here:

1. Every accepted socket holds a ``Slot`` from ``accept()`` until it is closed:
   through the TLS handshake (a failed one too), the requests, and the linger after
   our FIN. ``open`` counts them all, and it alone decides admission.
2. With fewer than ``limit_connections`` open, a new socket is served. At the limit it
   is refused (``slot.refused``): the protocol answers 503 with ``Retry-After`` and
   closes gracefully, so the client learns at once. Refused sockets count too, in
   ``OVERFLOW`` places beyond the limit.
3. With ``limit_connections + OVERFLOW`` open, the listener stops accepting (its
   readers are removed) until a slot is released; newcomers wait in the kernel's
   backlog (``--backlog``), as with waitress. So no more than ``limit_connections +
   OVERFLOW`` client sockets are ever open. ``limit_connections`` 0 means no limit.
4. Out of descriptors (EMFILE, ENFILE) or socket memory: log at ERROR (at most once a
   minute), stop accepting for ``ACCEPT_RETRY_DELAY``, then try again. Linux keeps
   reporting the listening socket readable, so retrying at once would spin.
5. Several worker processes may share the listening sockets, and all are woken for a
   connection: ``accept()`` failing with EAGAIN means another one took it. Normal.
6. A ``Slot`` is released exactly once, by whoever sees the socket closed: the
   protocol's ``connection_lost``, or ``_connect`` when the loop gave up on the socket
   before the protocol was connected (handshake failed or timed out, or aborted at
   shutdown). Releasing again does nothing, so the two may both try.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

__all__ = ["OVERFLOW", "Listener", "Slot", "open_files_needed"]

log = logging.getLogger("aiogate.error")

#: Refused sockets open at once, beyond ``limit_connections``. Each holds a
#: descriptor and a protocol object (about 6.5 KiB) until its client has read the 503
#: and closed: milliseconds for a normal client, at most the 2 s linger for one that
#: never reads (the 503 fits in the socket buffer, so nothing extends the linger).
#: 64 is small next to any useful limit (3 % of the default 2048, under 0.5 MiB) and
#: large enough that a burst overshooting the limit is answered at once; even against
#: clients that hold on, 64 places every 2 s answer 32 refusals a second, while the
#: rest wait in the backlog.
OVERFLOW = 64
#: Connections accepted per wake-up of one listening socket, so that a burst cannot
#: hold the loop and, with several workers, one process does not take all of it
#: (asyncio accepts up to the whole backlog per wake-up). An accept and its task
#: cost a few microseconds, so a batch stays well under a millisecond.
ACCEPT_BATCH = 16
#: How long to stop accepting when out of descriptors or memory (asyncio's
#: ``ACCEPT_RETRY_DELAY`` is 1 s; a shorter pause notices freed descriptors sooner).
ACCEPT_RETRY_DELAY = 0.5
#: At most one warning about the connection limit, and one about running out of
#: descriptors, per this many seconds: a flood must not flood the log too.
LOG_INTERVAL = 60.0
#: Descriptors beyond the connections: listeners, logs, the event loop's own (epoll,
#: self-pipe), the thread pool, and what the app opens at startup (a database pool,
#: imported modules' files).
SPARE_FILES = 256

# Errors of the connection being accepted, not of the listening socket: the client
# gave up (ECONNABORTED) or its network failed. accept(2) on Linux: "treat them like
# EAGAIN by retrying". EPERM there means a firewall rule refused that connection.
_CLIENT_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPERM",
        "EPROTO",
        "ENETDOWN",
        "ENETUNREACH",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENONET",
        "EOPNOTSUPP",
    )
    if hasattr(errno, name)
)
# Errors that mean the process or the system is short of a resource.
_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def open_files_needed(limit_connections: int, threads: int) -> int:
    """Descriptors the server may need with ``limit_connections`` (not 0): per served
    connection its socket and one temporary file (a large request body arriving, or
    anything else spooled to disk for it); the refused sockets (``OVERFLOW``); per
    thread one more, for the app call, when a connection's files overlap or the app
    opens one (``wsgi.file_wrapper``); ``SPARE_FILES``."""
    return 2 * limit_connections + OVERFLOW + threads + SPARE_FILES


class Slot:
    """One accepted socket's place in the budget, from accept until it is closed."""

    __slots__ = ("_listener", "refused")

    def __init__(self, listener: Listener | None, *, refused: bool = False) -> None:
        self._listener = listener
        #: Over the limit: the protocol answers 503 and closes, serving nothing.
        self.refused = refused

    def release(self) -> None:
        """The socket is closed: give its place back. The protocol calls this from
        ``connection_lost``; calls after the first do nothing."""
        listener = self._listener
        if listener is not None:
            self._listener = None
            listener._released()


#: Makes the protocol of an accepted socket; its ``connection_lost`` must call
#: ``slot.release()``.
ProtocolFactory = Callable[[Slot], asyncio.BaseProtocol]


class Listener:
    """Accepts on ``sockets`` for ``protocol_factory``, within the budget (see the
    module docstring). ``start`` begins, ``close`` stops and closes the sockets."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: Iterable[socket.socket],
        protocol_factory: ProtocolFactory,
        *,
        limit_connections: int = 0,
        backlog: int = 2048,
        ssl: ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        on_release: Callable[[], object] = lambda: None,
    ) -> None:
        self._loop = loop
        self.sockets = list(sockets)
        self._protocol_factory = protocol_factory
        self._limit = limit_connections
        self._backlog = backlog
        # The loops refuse the ssl_* timeouts without ssl.
        self._tls: dict[str, Any] = (
            {}
            if ssl is None
            else {
                "ssl": ssl,
                "ssl_handshake_timeout": ssl_handshake_timeout,
                "ssl_shutdown_timeout": ssl_shutdown_timeout,
            }
        )
        #: Called after each release (the server waits for the last one to drain).
        self._on_release = on_release
        #: Client sockets accepted and not yet closed (rule 1).
        self.open = 0
        self._peak = 0
        #: Sockets handed to the loop whose protocol is not connected yet (one loop
        #: turn for plain TCP; the handshake for TLS). Referenced here so that the
        #: tasks are not collected, and cancelled by ``abort_connecting``.
        self._connecting: set[asyncio.Task[None]] = set()
        self._reading = False  # our readers are on the listening sockets
        self._closed = False
        self._backoff: asyncio.TimerHandle | None = None
        self._limit_warned_at = float("-inf")
        self._refused_unlogged = 0  # refusals since the last warning
        self._full_warned_at = float("-inf")
        self._resource_logged_at = float("-inf")

    def start(self) -> None:
        for sock in self.sockets:
            sock.setblocking(False)
            sock.listen(self._backlog)  # inherited sockets get our backlog too
        self._update_reading()

    def close(self) -> None:
        """Stop accepting and close the listening sockets. Connections already
        accepted, in the TLS handshake too, go on (see ``abort_connecting``)."""
        if self._closed:
            return
        self._closed = True
        self._update_reading()
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def abort_connecting(self) -> None:
        """Drop the sockets whose protocol is not connected yet (TLS handshakes in
        progress): the graceful shutdown's deadline has passed."""
        for task in list(self._connecting):
            task.cancel()

    def statistics(self) -> dict[str, int]:
        """``open`` (rule 1), ``peak`` (the most open at once), ``connecting`` (of
        ``open``, not connected yet: TLS handshakes) and ``accepting`` (0 or 1)."""
        return {
            "open": self.open,
            "peak": self._peak,
            "connecting": len(self._connecting),
            "accepting": int(self._reading),
        }

    # -- accepting -------------------------------------------------------------------

    def _full(self) -> bool:
        return bool(self._limit) and self.open >= self._limit + OVERFLOW

    def _update_reading(self) -> None:
        """Accept while open, not backing off and within the budget (rules 3, 4)."""
        reading = not self._closed and self._backoff is None and not self._full()
        if reading == self._reading:
            return
        self._reading = reading
        for sock in self.sockets:
            if reading:
                self._loop.add_reader(sock.fileno(), self._accept, sock)
            else:
                self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        """The listening socket is readable: accept a batch."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return  # none left, or another worker process took it (rule 5)
            except OSError as exc:
                if exc.errno in _CLIENT_ERRORS:
                    log.debug("accept() failed for one connection: %s", exc)
                    continue
                self._accept_failed(exc)
                return
            self.open += 1
            self._peak = max(self._peak, self.open)
            refused = bool(self._limit) and self.open > self._limit
            if refused:
                self._warn_refused(address)
            task = self._loop.create_task(
                self._connect(conn, Slot(self, refused=refused))
            )
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            if self._full():
                self._warn_full()
                self._update_reading()
                return

    async def _connect(self, conn: socket.socket, slot: Slot) -> None:
        """Hand ``conn`` to the loop, which makes its transport and protocol (after
        the TLS handshake, with ``ssl``)."""
        try:
            await self._loop.connect_accepted_socket(
                partial(self._protocol_factory, slot), conn, **self._tls
            )
        except (OSError, asyncio.CancelledError) as exc:
            # The handshake failed or timed out (SSLError, ConnectionResetError,
            # ConnectionAbortedError), or was aborted at shutdown: the loop has
            # closed the socket, and the protocol was never connected (rule 6).
            log.debug("Connection dropped before it was set up: %r", exc)
        except Exception:
            # A bug (in the protocol factory, say): the loop may not own the socket.
            log.exception("Could not set up an accepted connection")
            conn.close()
        else:
            return
        slot.release()

    def _released(self) -> None:
        self.open -= 1
        if not self._reading:
            self._update_reading()
        self._on_release()

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors or memory, or an error of the listening socket itself:
        pause accepting rather than spin on a socket that stays readable (rule 4)."""
        now = self._loop.time()
        if now - self._resource_logged_at >= LOG_INTERVAL:
            self._resource_logged_at = now
            log.error(
                "%s; not accepting connections for %gs (%d open)",
                _describe_accept_error(exc),
                ACCEPT_RETRY_DELAY,
                self.open,
            )
        else:
            log.debug("accept() failed again: %s", exc)
        self._backoff = self._loop.call_later(ACCEPT_RETRY_DELAY, self._end_backoff)
        self._update_reading()

    def _end_backoff(self) -> None:
        self._backoff = None
        self._update_reading()

    # -- logging -----------------------------------------------------------------------

    def _warn_refused(self, address: Any) -> None:
        now = self._loop.time()
        if now - self._limit_warned_at < LOG_INTERVAL:
            self._refused_unlogged += 1
            return
        more = self._refused_unlogged
        self._limit_warned_at, self._refused_unlogged = now, 0
        log.warning(
            "Connection limit (%d) reached; refusing %s%s",
            self._limit,
            _client(address),
            f" (and {more} more since the last warning)" if more else "",
        )

    def _warn_full(self) -> None:
        now = self._loop.time()
        if now - self._full_warned_at >= LOG_INTERVAL:
            self._full_warned_at = now
            log.warning(
                "%d connections open (limit %d, and %d being refused): not accepting "
                "until one closes; new ones wait in the listen backlog",
                self.open,
                self._limit,
                OVERFLOW,
            )


def _client(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{address}" if address else "a unix socket client"


def _describe_accept_error(exc: OSError) -> str:
    if exc.errno == errno.EMFILE:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
            soft = -1
        return (
            f"The open-file limit ({soft} descriptors, ulimit -n) was hit: accept() "
            f"failed with EMFILE. Raise the limit (systemd LimitNOFILE=, docker "
            f"--ulimit nofile=) or lower --limit-connections"
        )
    if exc.errno == errno.ENFILE:
        return "The system-wide open-file limit (fs.file-max) was hit: ENFILE"
    if exc.errno in _RESOURCE_ERRORS:
        return f"Out of memory for sockets at accept(): {exc.strerror}"
    return f"accept() failed: {exc}"
