"""One HTTP/1.1 connection on the event loop: asyncio's callbacks, adapted to the
sans-IO core and to the request cycles.

Owns: ``H11Protocol`` (an ``asyncio.Protocol``, one per connection). This is the
only module where the transport, the connection's state (``http.ServerConnection``),
flow control and the request cycles (``dispatch``) meet; every method runs on the
event loop.

Theory of operation:

1. Bytes from the transport go to ``ServerConnection``, which checks them and
   yields h11 events. A bad request gets ``error_response`` and a close; nothing
   after it is ever parsed.
2. A ``Request`` starts a ``RequestCycle`` (``dispatch``), which collects the body on
   the loop and submits the app's call once the request is complete.
   ``Expect: 100-continue`` is answered as soon as the head passes the limits, since
   the app cannot be asked before its body is here. Paths of the probes are answered
   here, without a thread (``observe.Probes``).
3. At most one cycle is active per connection; a pipelined request behind it stays
   buffered and reading pauses (reason ``"pipeline"``) until the cycle ends, so
   responses go out in order and pipelining cannot grow memory.
4. A cycle ends when its response has ended (``cycle_ended``). Then, if the
   connection must close or the server is draining, it is closed gracefully (FIN
   after the response, then a linger: ``closing``); otherwise the next cycle starts
   and any buffered request is handled. An aborted response fails the cycle's
   writer (the app's thread stops writing into it) and resets the connection.
5. Each connection is on one deadline at a time, the one of its phase; how they
   are armed and what each does is ``closing``'s (its rule 1), as are refusals,
   the linger and the drain.
6. ``connection_lost`` fails the writer, so a thread blocked writing wakes with
   ``ClientDisconnected`` and the app's iterable is closed.
7. One connection gets a bounded share of the loop: at most ``EVENTS_PER_TURN``
   events per callback (a chunked body's ``Data`` event is at most 128 chunks),
   then reading pauses (reason ``"busy"``) and the rest is handled
   ``BUSY_PAUSE`` later, after the loop has served every other socket. So tiny
   chunks or a burst of pipelined probes cannot hold the loop.
8. While the transport's buffer is above its high-water mark (``pause_writing``),
   reading pauses (reason ``"write"``) and no new request starts, whatever filled
   the buffer: an app's body, responses without a body, probes or errors. A client
   that sends requests but reads nothing therefore holds at most one buffer of our
   output and one read of its input; if it reads nothing for ``timeout_write``
   seconds while requests wait, it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, cast

import h11

from ._types import ConnectionInfo
from .access_log import Refusal
from .closing import DRAIN_GRACE, WRITE, Closing
from .dispatch import RECEIVING, RequestCycle
from .errors import ProtocolError
from .flow_control import FlowControl
from .http import DEADLINES, DONE, MUST_CLOSE, Deadline, Phase, ServerConnection
from .observe import record
from .server_state import LINGER_TIMEOUT, RETRY_AFTER, ServerState
from .tls import tls_environ

if TYPE_CHECKING:
    from ._types import Address
    from .listener import Slot

__all__ = ["DRAIN_GRACE", "LINGER_TIMEOUT", "H11Protocol", "socket_address"]

log = logging.getLogger("aiogate.error")

#: Events one connection may handle in one turn of the loop before it yields (rule
#: 7). A request without a body is one event (its end is taken with it) and a
#: chunked body's Data event is at most ``http.CHUNK_LINES_PER_CALL`` (128) chunks,
#: about a microsecond each, so a turn is well under a millisecond of work.
EVENTS_PER_TURN = 4
#: How long a connection that used up its turn waits for the next (rule 7). Only
#: tiny chunks or bursts of pipelined probes use up a turn (a 256 KiB read of 1 KiB
#: chunks does not), so this caps abuse, not uploads. Measured with a client sending
#: 1-byte chunks as fast as it can: a bystander's GET p99 was 32-36 ms when the next
#: turn came at once (call_soon: the loop thread never slept, so the app's threads
#: waited for the GIL), 3.4-3.9 ms with this pause.
BUSY_PAUSE = 0.001
# The phases armed on every request, as module names for the hot path (a global
# costs a fifth of an enum lookup; see http/_state.py).
_IDLE, _HEAD = Phase.IDLE, Phase.HEAD


def socket_address(value: Any) -> Address | None:
    """Normalise ``get_extra_info`` addresses: IPv6 4-tuples become (host, port). A
    UNIX socket's unnamed peer stays ``""`` (not None): it is how the trust list's
    ``unix`` entry knows the peer (``TrustedProxies.is_trusted``)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    if isinstance(value, str):
        return value
    if isinstance(value, bytes) and value:  # abstract UNIX socket names
        return value.decode("latin-1")
    return None


class H11Protocol(Closing, asyncio.Protocol):
    """One client connection. Every method runs on the event loop; how it ends is
    ``Closing``'s."""

    def __init__(self, state: ServerState, slot: Slot | None = None) -> None:
        self.state = state
        #: This socket's place in the listener's budget, released when it is closed.
        self.slot = slot
        self.conn = ServerConnection(
            limit_request_line=state.config.limit_request_line,
            limit_request_fields=state.config.limit_request_fields,
            limit_request_field_size=state.config.limit_request_field_size,
            server_field=state.server_field,
        )
        self.cycle: RequestCycle | None = None
        self._closing = False  # FIN sent or close() called: ignore further requests
        self._client_eof = False  # the client has closed its sending side
        # One deadline at a time, checked by the server's sweep (``check_deadline``):
        # a call_later per request cost about 3 µs; setting two attributes costs ~0.
        self._clock: Deadline | None = None  # which one (rule 5); None: none
        self._deadline = 0.0  # when, in loop.time()
        self._linger_buffered = -1  # write buffer size at the last linger check

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        transport = self.transport
        state = self.state
        tls = (
            tls_environ(transport.get_extra_info("ssl_object"))
            if transport.get_extra_info("sslcontext")
            else None
        )
        self.info = ConnectionInfo(
            server=socket_address(transport.get_extra_info("sockname")),
            client=socket_address(transport.get_extra_info("peername")),
            url_scheme="http" if tls is None else "https",
            tls=tls,
        )
        # Shared by the writer of each request and the job state (dispatch rule 2).
        self.cond = threading.Condition(threading.Lock())
        # Every connection is tracked, even one refused below: its linger is ended
        # by the server's sweep, and a draining server waits for it.
        state.connections.add(self)
        if state.metrics is not None:
            state.metrics.accepted()
        if self.slot is not None and self.slot.refused:
            # Over limit_connections (the listener decided, and logged, at accept):
            # answered rather than left in the backlog, so the client learns at once,
            # and Retry-After tells it when to come back (uvicorn answers 503 too).
            # (reject counts it, and logs it as the other refusals.)
            self.reject(
                503,
                "too many connections",
                retry_after=RETRY_AFTER,
                refusal=Refusal.CONNECTION_LIMIT,
            )
            return
        if state.shutting_down:
            # Accepted just before the listener closed: its client has sent, or is
            # sending, a request; serve it (with Connection: close) rather than cut
            # it, which would reset a request the kernel had already accepted.
            self.arm(Phase.IDLE, min(DRAIN_GRACE, state.config.timeout_keep_alive))
            return
        self.arm(Phase.IDLE)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering: discard what the client still sends
        metrics = self.state.metrics
        if metrics is not None:
            metrics.received(len(data))
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
        self.disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.ended:
            dispatched = cycle.job_state is not RECEIVING
            self._drop_cycle(cycle, "client disconnected")
            state = self.state
            if dispatched and state.observing:
                record(cycle, state.loop.time(), 0)  # the client left before the end
        self.state.connections.discard(self)
        if self.slot is not None:
            self.slot.release()  # the listener tells the server (it waits on it)

    def pause_writing(self) -> None:
        # Rule 8: whatever filled the buffer (an app's body, bodyless responses to
        # pipelined requests, probes), nothing more is read until the client reads.
        self.flow.write_paused = True
        self.flow.pause_reading("write")
        if self.cycle is not None:
            self.cycle.writer.set_write_paused(True)

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        cycle = self.cycle
        if cycle is not None:
            cycle.writer.set_write_paused(False)
            if cycle.held is not None:
                # The client read some: more of the spool, on a turn of its own.
                self.state.loop.call_soon(cycle.send_spooled)
        elif not self._closing:
            # Requests may have been held back while the client was not reading (and
            # the write-stall deadline armed): go on on a turn of their own, not
            # inside the transport's callback.
            self.flow.pause_reading("busy")
            self.state.loop.call_soon(self._next_turn)
        self.flow.resume_reading("write")

    # -- events --------------------------------------------------------------------

    def _handle_events(self) -> None:
        conn = self.conn
        budget = EVENTS_PER_TURN
        while not self._closing:
            if self.cycle is None and self.flow.write_paused:
                # Rule 8: the client is not reading our responses; start no new
                # request until it does, or until ``timeout_write`` gives up on it.
                if self._clock is not WRITE:
                    self.arm(self.conn.phase, held_by_client=True)
                return
            if not budget:
                # Rule 7: this connection has had its share of the loop; the rest
                # of what it sent waits (reading paused) a moment, in which the loop
                # serves the others and the app's threads get the GIL.
                self.flow.pause_reading("busy")
                self.state.loop.call_later(BUSY_PAUSE, self._next_turn)
                return
            budget -= 1
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self.reject(exc.status_hint, str(exc))
                return
            if event is h11.NEED_DATA:
                if self.cycle is None:
                    self._waiting_for_head()
                return
            if event is h11.PAUSED:
                # The next request is buffered while this one runs: stop reading
                # until the cycle ends, so pipelining cannot grow memory.
                self.flow.pause_reading("pipeline")
                return
            # (type() is, not isinstance: h11's events are final, and this is the
            # hottest branch of the server; mypy narrows both.)
            if type(event) is h11.Request:
                self._start_cycle(event)
            elif type(event) is h11.Data:
                self._body_data(event.data)
            elif type(event) is h11.EndOfMessage:
                self._body_end()
            elif type(event) is h11.ConnectionClosed:
                self._client_closed()
                return

    def _next_turn(self) -> None:
        """Go on with the events held back by rule 7 or 8."""
        if self.flow.is_paused_for("busy"):
            self.flow.resume_reading("busy")
            if not self._closing and not self.transport.is_closing():
                self._handle_events()

    def _waiting_for_head(self) -> None:
        """No request yet: the keep-alive clock runs while nothing has arrived, and
        once the first byte of a head is here, the whole head is due within
        ``timeout_request_header`` (a trickle of bytes does not restart it)."""
        phase = _HEAD if self.conn.has_unparsed_data else _IDLE
        if self._clock is not DEADLINES[phase]:
            self.arm(phase)

    def _start_cycle(self, request: h11.Request) -> None:
        state = self.state
        conn = self.conn
        if not conn.request_has_body:
            # Its end is here already: take it now, so that the request is whole
            # before anything answers it. (Taken on a later turn, the app could answer
            # first and the cycle would end with the client's side unfinished.)
            conn.next_event()  # EndOfMessage
            if state.endpoints and request.method in (b"GET", b"HEAD"):
                endpoint = state.endpoints.get(request.target.partition(b"?")[0])
                if endpoint is not None:
                    self._answer_on_loop(*endpoint())
                    return
        cycle = self.cycle = RequestCycle(self, request)
        if state.observing:
            cycle.arrived_at = state.loop.time()
        if cycle.buffer is None:
            cycle.submit()
            return
        expected = conn.body_bytes_expected
        if expected is not None and expected > state.config.limit_request_body:
            # Refused before a byte of it is read; with 100-continue, never sent.
            self.reject(
                413, f"request body larger than {state.config.limit_request_body} bytes"
            )
            return
        if conn.they_are_waiting_for_100_continue:
            # The app only runs once the body is here, so it cannot be asked first:
            # the head passed every check, so tell the client to go on (nginx does the
            # same when it buffers bodies). RFC 9110 §10.1.1.
            self.transport.write(conn.send_100_continue())
        self.arm(Phase.BODY)

    def _answer_on_loop(self, status: int, content_type: str, body: bytes) -> None:
        """Answer a health or metrics request here, without a thread: it works while
        every thread is busy. Not counted in the metrics or the access log."""
        self.disarm()
        conn = self.conn
        close = self.state.shutting_down
        phrase = "OK" if status == 200 else "Service Unavailable"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if self.state.server_software:
            headers.append(("Server", self.state.server_software))
        self.transport.write(
            conn.start_response(f"{status} {phrase}", headers, close=close)
            + conn.send_data(body)
            + conn.end_response()
        )
        if conn.our_state is MUST_CLOSE or close:
            self._close()
        else:
            conn.start_next_cycle()  # and _handle_events reads on

    def _body_data(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        assert cycle.buffer is not None
        try:
            cycle.buffer.feed_data(data)
        except ProtocolError as exc:
            self.reject(exc.status_hint, str(exc))
            return
        except OSError as exc:
            self._body_file_failed(exc)
            return
        # Body progress pushes the deadline on (an idle rule, like nginx's).
        self._deadline = self.state.loop.time() + self.state.config.timeout_request_body

    def _body_end(self) -> None:
        cycle = self.cycle
        assert cycle is not None  # a request without a body ended in _start_cycle
        buffer = cycle.buffer
        if buffer is not None:
            cycle.buffer = None
            try:
                cycle.body = buffer.finish()
            except OSError as exc:
                buffer.discard()
                self._body_file_failed(exc)
                return
            cycle.submit()

    def _body_file_failed(self, exc: OSError) -> None:
        """A request body's temporary file could not be made or written (no space,
        no descriptors, a read-only TMPDIR): the operator must hear of it, the
        client gets a 503, never a reset with nothing said. The error names the file
        or the directories tried (not ``tempfile.gettempdir()``, which itself raises
        when no directory is usable, as on a read-only root without a tmpfs)."""
        log.error(
            "Cannot keep a request body in a temporary file: %s; 503 for %s",
            exc,
            self.info.client,
        )
        self.reject(
            503,
            "cannot store the request body",
            retry_after=RETRY_AFTER,
            refusal=Refusal.BODY_STORAGE,
        )

    def _client_closed(self) -> None:
        """The client sent EOF after a complete request (or none). If we still owe a
        response, it goes out first; ``cycle_ended`` closes after it."""
        if self.cycle is None:
            self._close()

    def cycle_ended(
        self, cycle: RequestCycle, *, aborted: bool, refused: Refusal | None = None
    ) -> None:
        """The response of ``cycle`` has ended, well or not (``refused``: the server
        cut it, for that reason)."""
        cycle.uncount()
        state = self.state
        if state.observing:
            status = 0 if aborted else cycle.status
            record(cycle, state.loop.time(), status, refused=refused)
        if aborted:
            # Whatever cut the response (the app, a refused header, the thread gone),
            # the thread must stop writing into it, and the client must see a reset,
            # not a FIN: for a close-delimited (HTTP/1.0) body, a FIN would read as
            # a complete response.
            cycle.writer.close("response aborted")
            self.conn.send_failed()
            self.reset()
            return
        conn = self.conn
        if conn.our_state is MUST_CLOSE:  # (so is every response of a drain)
            self._close()
        elif conn.their_state is DONE:
            self._next_cycle()
        else:  # the client closed its side: nothing more will come
            self._close()

    def _next_cycle(self) -> None:
        self.conn.start_next_cycle()
        self.cycle = None
        self.flow.resume_reading("pipeline")
        self._handle_events()
        if self.state.shutting_down:
            # A drain began after this response's head had gone out without
            # Connection: close, so its client may send the next request at once:
            # the connection gets the grace of an idle one, not a close now.
            self.shutdown()
