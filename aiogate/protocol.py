"""One HTTP/1.1 connection on the event loop, and the request cycles on it.

Owns: ``H11Protocol`` (an ``asyncio.Protocol``, one per connection) and ``RequestCycle``
(one per request). This is the only module where the transport, the h11 policy layer
(``ServerConnection``), flow control, the request body, the response writer and the
thread pool meet. Everything here runs on the event loop, except the ``job`` closure a
``RequestCycle`` submits, which runs in a worker thread and touches only the handler,
the body and the writer.

Theory of operation:

1. Bytes from the transport go to ``ServerConnection``, which checks them before h11
   sees them and yields h11 events. A bad request gets ``error_response`` and a close;
   nothing after it is ever parsed.
2. A ``Request`` starts a ``RequestCycle``: the handler is created and run in a worker
   thread at once, while the body keeps arriving (``RequestBody`` buffers it, and pauses
   reading when full). At most one cycle is active per connection; a pipelined request
   behind it stays buffered and reading pauses (reason ``"pipeline"``) until the cycle
   ends, so responses go out in order.
3. The thread's response items come back through ``ResponseWriter`` and are turned into
   h11 events here; one drain makes one ``transport.write``.
4. A cycle ends when its response has ended (``END`` or ``ABORT``). Then: if the client
   is still sending a body the app did not read, it is read and discarded (up to
   ``MAX_DISCARD_BYTES``) so the connection can be reused; if h11 says the connection
   must close, or the server is shutting down, it is closed gracefully (FIN after the
   response, then a short linger that discards what the client still sends, so a
   client that has not finished sending sees our response rather than a reset);
   otherwise the next cycle starts and any buffered request is handled.
5. ``connection_lost`` fails the body and the writer, so a thread blocked on either wakes
   with ``ClientDisconnected`` and the app's iterable is closed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

import h11

from ._types import ConnectionInfo
from .body import EMPTY_BODY, EmptyBody, RequestBody
from .errors import ClientDisconnected, ProtocolError
from .flow_control import FlowControl
from .http11 import ServerConnection
from .writer import ABORT, DATA, END, START, Item, ResponseWriter

if TYPE_CHECKING:
    from ._types import Address, WSGIApplication
    from .thread_pool import ThreadPool

__all__ = ["H11Protocol", "RequestCycle", "ServerState"]

log = logging.getLogger("aiogate.error")

# Read and drop up to 1 MiB of a body the app did not read before giving up on reusing
# the connection (gunicorn and aiohttp drain a bounded amount for the same reason).
MAX_DISCARD_BYTES = 1024 * 1024
# After our FIN, wait this long for the client to close before closing ourselves
# (Apache's lingering close waits up to 2 s for the same reason).
LINGER_TIMEOUT = 2.0


class HandlerFactory(Protocol):
    """Makes the per-request handler; ``partial(ServerHandler, **per-server options)``."""

    def __call__(
        self,
        stdin: RequestBody | EmptyBody,
        sink: ResponseWriter,
        stderr: Any,
        request: h11.Request,
        conn: ConnectionInfo,
    ) -> Any: ...


@dataclass(slots=True, eq=False)
class ServerState:
    """What every connection of one server shares. Lives on the event loop."""

    loop: asyncio.AbstractEventLoop
    app: WSGIApplication
    pool: ThreadPool
    make_handler: HandlerFactory
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    timeout_keep_alive: float
    timeout_request_body: float
    timeout_write: float
    connections: set[H11Protocol] = field(default_factory=set)
    shutting_down: bool = False
    #: Called on the loop each time a connection is gone (the server waits on it).
    on_connection_lost: Callable[[], None] = lambda: None


def _address(value: Any) -> Address | None:
    """Normalise ``get_extra_info`` addresses: IPv6 4-tuples become (host, port)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bytes) and value:  # abstract UNIX socket names
        return value.decode("latin-1")
    return None


class RequestCycle:
    """One request and its response. Loop-side, except ``job`` (worker thread)."""

    __slots__ = (
        "body",
        "discarded",
        "ended",
        "protocol",
        "request",
        "started",
        "writer",
    )

    def __init__(self, protocol: H11Protocol, request: h11.Request) -> None:
        state = protocol.state
        loop = state.loop
        self.protocol = protocol
        self.request = request
        self.started = False  # response head sent
        self.ended = False  # response ended (END or ABORT seen)
        self.discarded = 0
        cond = protocol.cond
        conn = protocol.conn
        self.body: RequestBody | EmptyBody = (
            RequestBody(
                timeout=state.timeout_request_body,
                on_first_read=(
                    protocol.send_100_continue_threadsafe
                    if conn.they_are_waiting_for_100_continue
                    else None
                ),
                on_resume=protocol.resume_body_threadsafe,
                cond=cond,
            )
            if conn.request_has_body
            else EMPTY_BODY
        )
        self.writer = ResponseWriter(
            loop, self.deliver, timeout=state.timeout_write, cond=cond
        )
        if protocol.flow.write_paused:
            self.writer.set_write_paused(True)

    def job(self) -> None:
        """Runs in a worker thread: build the handler and run the app."""
        state = self.protocol.state
        writer = self.writer
        try:
            handler = state.make_handler(
                self.body, writer, sys.stderr, self.request, self.protocol.info
            )
            handler.run(state.app)
        finally:
            if writer.ensure_ended():
                log.debug("Handler returned without ending the response; aborted it")

    # -- loop side ---------------------------------------------------------------

    def deliver(self, items: list[Item]) -> None:
        """Runs on the event loop: turn the thread's items into bytes on the wire."""
        protocol = self.protocol
        if self.ended or protocol.transport.is_closing():
            return
        conn = protocol.conn
        out: list[bytes] = []
        end: object = None
        try:
            for item in items:
                kind = item[0]
                if kind is DATA:
                    out.append(conn.send_data(item[1]))  # type: ignore[arg-type]
                elif kind is START:
                    # Still waiting for 100 means the app answers without reading
                    # the body: the client may or may not send it now, so the
                    # connection cannot be reused (RFC 9110 §10.1.1 asks us to say
                    # which; we close). Shutting down closes after this response too.
                    close = (
                        protocol.state.shutting_down
                        or conn.they_are_waiting_for_100_continue
                    )
                    out.append(conn.start_response(item[1], item[2], close=close))  # type: ignore[arg-type]
                    self.started = True
                elif kind is END:
                    out.append(conn.end_response())
                    end = END
                    break
                elif kind is ABORT:
                    end = ABORT
                    break
        except h11.LocalProtocolError as exc:
            # The handler validates headers and framing; reaching this is a bug in a
            # custom handler. The client gets a closed connection, never a bad message.
            log.error("Response refused, closing the connection: %s", exc)
            end = ABORT
        if out:
            protocol.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if end is not None:
            self.ended = True
            protocol.cycle_ended(self, aborted=end is ABORT)


class H11Protocol(asyncio.Protocol):
    """One client connection. Every method runs on the event loop."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.conn = ServerConnection(
            limit_request_line=state.limit_request_line,
            limit_request_fields=state.limit_request_fields,
            limit_request_field_size=state.limit_request_field_size,
        )
        self.cycle: RequestCycle | None = None
        # One deadline at a time, checked by the server's ticker (``check_deadline``):
        # a call_later per request cost about 3 µs; setting two attributes costs ~0.
        self._closing = False  # FIN sent or close() called: ignore further requests
        self._client_eof = False  # the client has closed its sending side

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        transport = self.transport
        self.info = ConnectionInfo(
            server=_address(transport.get_extra_info("sockname")),
            client=_address(transport.get_extra_info("peername")),
            url_scheme="https" if transport.get_extra_info("sslcontext") else "http",
        )
        self._deadline = 0.0
        self._on_deadline: Callable[[], object] | None = None
        # Shared by the body and the writer of each request (see RequestBody).
        self.cond = threading.Condition(threading.Lock())
        call_soon_threadsafe = self.state.loop.call_soon_threadsafe
        self.send_100_continue_threadsafe = partial(
            call_soon_threadsafe, self.send_100_continue
        )
        self.resume_body_threadsafe = partial(
            call_soon_threadsafe, self.flow.resume_reading, "body"
        )
        self.state.connections.add(self)
        if self.state.shutting_down:
            self._close()
            return
        self._arm_timer(self.state.timeout_keep_alive, self._on_idle)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering: discard what the client still sends
        if self.cycle is None:
            # Between requests: the idle clock restarts with every byte. (A deadline
            # for the whole head belongs to the slow-client limits.)
            self._arm_timer(self.state.timeout_keep_alive, self._on_idle)
        self.conn.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool:
        if self._closing:
            return False  # the client closed after our FIN: let the transport close
        self._client_eof = True
        self.conn.receive_data(b"")
        self._handle_events()
        # Keep the transport open for writing unless we are done: a client may
        # half-close after its request and still wait for the response.
        return not self._closing

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        cycle = self.cycle
        if cycle is not None:
            cycle.body.set_exception(ClientDisconnected("client disconnected"))
            cycle.writer.close()
        self.state.connections.discard(self)
        self.state.on_connection_lost()

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        if self.cycle is not None:
            self.cycle.writer.set_write_paused(True)

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        if self.cycle is not None:
            self.cycle.writer.set_write_paused(False)

    # -- events --------------------------------------------------------------------

    def _handle_events(self) -> None:
        conn = self.conn
        while not self._closing:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self._reject(exc.status_hint, str(exc))
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                # The next request is buffered while this one runs: stop reading
                # until the cycle ends, so pipelining cannot grow memory.
                self.flow.pause_reading("pipeline")
                return
            event_type = type(event)
            if event_type is h11.Request:
                self._start_cycle(event)  # type: ignore[arg-type]
            elif event_type is h11.Data:
                self._body_data(event.data)  # type: ignore[union-attr]
            elif event_type is h11.EndOfMessage:
                self._body_end()
            elif event_type is h11.ConnectionClosed:
                self._client_closed()
                return

    def _start_cycle(self, request: h11.Request) -> None:
        self._cancel_timer()
        cycle = self.cycle = RequestCycle(self, request)
        self.state.pool.submit(cycle.job)

    def _body_data(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        if cycle.ended:  # the response is out; this is a body the app did not read
            cycle.discarded += len(data)
            if cycle.discarded > MAX_DISCARD_BYTES:
                self._close()
            return
        body = cycle.body
        assert isinstance(body, RequestBody)  # only requests with a body get Data
        if body.feed_data(data):
            self.flow.pause_reading("body")

    def _body_end(self) -> None:
        cycle = self.cycle
        assert cycle is not None
        cycle.body.feed_eof()
        if cycle.ended:  # finished discarding an unread body
            self._next_cycle()

    def _client_closed(self) -> None:
        """The client sent EOF. If we still owe a response, finish it first."""
        cycle = self.cycle
        if cycle is None:
            self._close()
        elif not cycle.ended:
            # EOF before the body ended is a truncated request: the app's read fails.
            cycle.body.set_exception(ClientDisconnected("client closed mid-request"))

    def send_100_continue(self) -> None:
        """The app is about to read the body: say ``100 Continue`` if still due.
        (Callbacks from the thread run in order, so ``self.cycle`` is still the cycle
        whose body is being read.)"""
        cycle = self.cycle
        if (
            cycle is not None
            and not cycle.started
            and not self._closing
            and self.conn.they_are_waiting_for_100_continue
        ):
            self.transport.write(self.conn.send_100_continue())

    def cycle_ended(self, cycle: RequestCycle, *, aborted: bool) -> None:
        """The response of ``cycle`` has ended, well or not."""
        if aborted:
            self.conn.send_failed()
            self.transport.close()
            return
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or self.state.shutting_down:
            self._close()
        elif conn.their_state is h11.SEND_BODY:
            # Read and discard the rest of the body, then reuse the connection.
            self.flow.resume_reading("body")
            self._arm_timer(self.state.timeout_keep_alive, self._close)
        elif conn.their_state is h11.DONE:
            self._next_cycle()
        else:  # the client closed its side: nothing more will come
            self._close()

    def _next_cycle(self) -> None:
        self.conn.start_next_cycle()
        self.cycle = None
        if self.state.shutting_down:
            self._close()
            return
        self.flow.resume_reading("body")
        self.flow.resume_reading("pipeline")
        self._arm_timer(self.state.timeout_keep_alive, self._on_idle)
        self._handle_events()

    # -- closing -------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        """A bad request: answer it if we still can, then close."""
        log.debug("Bad request from %s: %d %s", self.info.client, status, reason)
        cycle = self.cycle
        if cycle is not None:
            cycle.body.set_exception(ClientDisconnected(f"bad request body: {reason}"))
            cycle.writer.close("connection closed after a bad request")
            cycle.ended = True
        data = self.conn.error_response(status, reason)
        if data:
            self.transport.write(data)
            self._close()
        else:
            self.transport.close()

    def _close(self) -> None:
        """Close gracefully: our FIN after what is buffered, then linger briefly."""
        if self._closing:
            return
        self._closing = True
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof() and not self._client_eof:
            transport.write_eof()
            self.flow.resume_reading("body")
            self.flow.resume_reading("pipeline")
            self._arm_timer(LINGER_TIMEOUT, transport.close)
        else:
            transport.close()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else after this response."""
        if self.cycle is None or self.cycle.ended:
            self._close()

    def abort(self) -> None:
        """The graceful-shutdown deadline passed: drop the connection."""
        self.transport.abort()

    def _on_idle(self) -> None:
        if self.cycle is None:
            self._close()

    # -- deadline ------------------------------------------------------------------

    def _arm_timer(self, delay: float, callback: Callable[[], object]) -> None:
        self._deadline = self.state.loop.time() + delay
        self._on_deadline = callback

    def _cancel_timer(self) -> None:
        self._on_deadline = None

    def check_deadline(self, now: float) -> None:
        """Called by the server's ticker: run the pending action if it is due."""
        callback = self._on_deadline
        if callback is not None and now >= self._deadline:
            self._on_deadline = None
            callback()
