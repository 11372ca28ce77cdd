"""How a connection ends, and the one deadline that ends it: the closing half of
``protocol.H11Protocol``. Every method runs on the event loop.

Owns: ``Closing``, which ``H11Protocol`` inherits (one object per connection: the
split is of the source, by what it owns, not of the state), ``DRAIN_GRACE``, and
what follows.

1. Each connection is on one deadline at a time, the one of its phase (``http``
   rule 8: keep-alive, head, body, app, write, linger), checked by the server's
   sweep (``deadlines``, a few at a time so a wave of timeouts does not stall the
   loop). Whoever moves the connection to a new phase ``arm``s its deadline, from
   the table; ``_expire`` says what each one does when it comes up.
2. A refusal (``reject``) answers with an error response if no response has
   begun, and closes; a cycle that will get no (further) response is dropped, which
   frees its body and wakes its thread. Every error response aiogate sends itself
   goes through ``reject``, which accounts for it in the access log, with its
   ``Refusal``: through the cycle's record when a request was taken, else
   (a bad or late head, the connection limit) with a line of its own.
3. A graceful close sends our FIN after what is buffered, then lingers: what the
   client still sends is read and dropped, so a client that has not finished
   sending sees our response rather than a reset. The linger lasts
   ``LINGER_TIMEOUT``, then until our output is read, at ``min_write_rate``.
4. A response cut short resets the connection (``reset``): never a FIN that could
   pass for the end of a close-delimited body.
5. A drain never closes a keep-alive connection whose client may be sending on it
   (``shutdown``): a request arriving or running is served with
   ``Connection: close``, and an idle connection gets ``DRAIN_GRACE`` for its next
   request.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING

from . import observe
from .access_log import AccessRecord, Refusal, request_parts
from .dispatch import CANCELLED, QUEUED, RECEIVING
from .http import DEADLINES, Deadline, Phase, deadline
from .observe import record

if TYPE_CHECKING:
    import asyncio
    import threading

    from ._types import ConnectionInfo
    from .dispatch import RequestCycle
    from .flow_control import FlowControl
    from .http import ServerConnection
    from .server_state import ServerState

__all__ = ["DRAIN_GRACE", "Closing"]

log = logging.getLogger("aiogate.error")

# On a drain, how long an idle connection (just accepted, or between keep-alive
# requests) may take to send its next request, which is then served with
# Connection: close; capped by timeout_keep_alive. A client under load sends its next
# request as soon as it has read a response (microseconds to a few ms, even on a
# loaded host), so 1 s covers it with a wide margin, while a connection left idle
# that long is not about to be used.
DRAIN_GRACE = 1.0
# struct linger {l_onoff = 1, l_linger = 0}: close() resets the connection.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
# The deadlines as module names (a global costs a fifth of an enum lookup).
KEEP_ALIVE, HEAD, BODY, APP, WRITE, LINGER = Deadline


class Closing:
    """The closing half of a connection (``protocol.H11Protocol``), on the loop."""

    # Set by H11Protocol (__init__ and connection_made).
    state: ServerState
    conn: ServerConnection
    transport: asyncio.Transport
    flow: FlowControl
    info: ConnectionInfo
    cond: threading.Condition
    cycle: RequestCycle | None
    _closing: bool  # FIN sent or close() called: ignore further requests
    _client_eof: bool  # the client has closed its sending side
    _clock: Deadline | None  # the deadline the connection is on (rule 1)
    _deadline: float  # when, in loop.time()
    _linger_buffered: int  # write buffer size at the last linger check

    def _drop_cycle(self, cycle: RequestCycle, reason: str) -> None:
        """The cycle will get no (further) response: free what it holds and wake its
        thread if one is writing."""
        with self.cond:
            if cycle.job_state is QUEUED or cycle.job_state is RECEIVING:
                cycle.job_state = CANCELLED
                cancelled = True
            else:
                cancelled = False
        if cycle.buffer is not None:
            cycle.buffer.discard()
            cycle.buffer = None
        if cancelled:
            cycle.body.close()  # the thread will never see it
        cycle.writer.close(reason)
        cycle.ended = True
        cycle.uncount()

    def reject(
        self,
        status: int,
        reason: str,
        *,
        retry_after: int | None = None,
        count: bool = True,
        refusal: Refusal | None = None,
        waited: float = 0.0,
    ) -> None:
        """Answer with an error if we still can, then close (rule 2). ``refusal``
        is the reason, counted (unless ``count`` is false: the caller has counted
        it) and given in the access log; by default the one ``status`` stands for.
        ``waited``: the seconds a head took before it was refused."""
        log.debug("%d for %s: %s", status, self.info.client, reason)
        if refusal is None:
            refusal = Refusal.of_status(status)
        if count:
            self.state.count_rejection(refusal)
            if status == 503:
                self.state.last_overload = self.state.loop.time()
        cycle = self.cycle
        state = self.state
        if cycle is not None and not cycle.ended:
            self._drop_cycle(cycle, f"connection closed: {reason}")
            if state.observing:
                # A request refused or given up on still shows in logs and metrics.
                status_sent = 0 if cycle.started else status
                record(cycle, state.loop.time(), status_sent, refused=refusal)
        elif cycle is None and state.access_log is not None:
            self._log_refusal(status, refusal, waited)
        data = self.conn.error_response(status, reason, retry_after=retry_after)
        if data:
            self.transport.write(data)
            self._close()
        else:  # a response had begun: it is cut (rule 4)
            self.reset()

    def _log_refusal(self, status: int, refusal: Refusal, waited: float) -> None:
        """The access line of a refusal that no request cycle records: a head that
        was malformed, too large or too late, or a connection over the limit. Its
        request line, if it could be parsed, is all that is known of the request."""
        state = self.state
        assert state.access_log is not None  # (checked by the caller)
        method, target, version = request_parts(self.conn.request_line)
        client = self.info.client
        state.access_log(
            AccessRecord(
                client=client[0] if isinstance(client, tuple) else "-",
                method=method,
                target=target,
                http_version=version,
                status=status,
                bytes_sent=0,
                request_headers=[],
                response_headers=[],
                started=time.time() - waited,
                duration=waited,
                queue_wait=0.0,
                pid=observe.PID,
                refused=refusal,
            )
        )

    def _close(self) -> None:
        """Close gracefully: our FIN after what is buffered, then linger briefly."""
        if self._closing:
            return
        self._closing = True
        self.conn.closing()
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof() and not self._client_eof:
            transport.write_eof()
            # Read (and drop) what the client still sends, whatever held reading.
            self.flow.resume_all()
        else:
            # No FIN of ours to send first (the client has sent its own, or TLS). The
            # transport closes once its buffer is sent, which a client that reads
            # nothing would put off forever: the linger's deadline holds here too.
            transport.close()
        self.arm(Phase.LINGER)

    def _end_linger(self) -> None:
        """The linger is over: close once what we wrote has gone out. Until then the
        client must take ``min_write_rate`` bytes a second of it over each
        ``timeout_write`` window (at least a byte), as while the app wrote, or it is
        cut off: a closing connection holds its slot and its buffer."""
        transport = self.transport
        buffered = transport.get_write_buffer_size()
        if buffered == 0:
            transport.close()
            return
        config = self.state.config
        if self._linger_buffered >= 0:  # a window has passed since the last check
            needed = max(1, int(config.min_write_rate * config.timeout_write))
            if self._linger_buffered - buffered < needed:
                transport.abort()
                return
        self._linger_buffered = buffered
        self.arm(Phase.LINGER, config.timeout_write)

    def shutdown(self) -> None:
        """The server is draining (called once per connection, and again by
        ``_next_cycle``). A request that is arriving or running is served first, and
        its response, which says ``Connection: close``, ends the connection.

        An idle connection, just accepted or between keep-alive requests, is not
        closed at once: its client may be sending a request on it this very moment,
        and a client that does not retry would count that request as failed. It
        gets ``DRAIN_GRACE`` (no longer than its keep-alive deadline) for the next
        request, which is then served with ``Connection: close``; ``_on_idle``
        closes it gracefully once the grace is over. Reading goes on meanwhile."""
        if self._closing:
            return  # closing already: its linger deadline stands
        cycle = self.cycle
        if cycle is None:
            if self.conn.has_unparsed_data:
                return  # a head is arriving: served, under its own deadline
            now = self.state.loop.time()
            due = now + min(DRAIN_GRACE, self.state.config.timeout_keep_alive)
            if self._clock is KEEP_ALIVE:
                due = min(due, self._deadline)  # what keep-alive would have given
            self.arm(Phase.IDLE, due - now)
        elif cycle.ended:
            self._close()

    def abort(self) -> None:
        """The graceful-shutdown deadline passed: drop the connection."""
        self.transport.abort()

    def reset(self) -> None:
        """Drop the connection with a reset, for a response cut short. A plain
        ``transport.abort()`` lets the kernel send what it has queued and then a
        FIN, which for a close-delimited (HTTP/1.0) body reads as the complete
        response; with SO_LINGER set to zero the close sends RST at once."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # the socket may be gone already
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()

    def _on_idle(self) -> None:
        """No request came within the keep-alive timeout, or the drain's grace:
        close gracefully (our FIN, then a linger that reads and discards, so a
        request crossing the FIN gets EOF rather than a reset)."""
        if self.cycle is None:
            self._close()

    def _on_head_timeout(self) -> None:
        if self.cycle is None:
            seconds = self.state.config.timeout_request_header
            self.reject(
                408,
                f"request head not received within {seconds:g} seconds",
                waited=seconds,
            )

    def _on_write_stalled(self) -> None:
        """Requests are waiting, but the client has read nothing of our responses
        for ``timeout_write`` seconds: give up on it."""
        if self.cycle is None and self.flow.write_paused:
            log.debug(
                "%s read nothing for %gs; dropping the connection",
                self.info.client,
                self.state.config.timeout_write,
            )
            self.transport.abort()

    def _on_body_timeout(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.job_state is RECEIVING:
            self.reject(
                408,
                f"no request body data for {self.state.config.timeout_request_body:g} seconds",
            )

    # -- deadline ------------------------------------------------------------------

    def arm(
        self, phase: Phase, delay: float | None = None, *, held_by_client: bool = False
    ) -> None:
        """Put the connection on the deadline of ``phase`` (rule 5), which it has just
        entered, due in ``delay`` seconds or in its setting's; ``held_by_client``:
        only the client's reading holds us up (``http`` rule 8). The caller names
        the phase because it knows it for free, where ``conn.phase`` would work it
        out again on every request; the protocol tests check the two agree."""
        clock = (
            deadline(phase, held_by_client=True) if held_by_client else DEADLINES[phase]
        )
        if delay is None and clock is not None:
            delay = self.state.deadline_seconds[clock]
        if delay is None:  # CLOSED, or an app's call with no time limit
            self._clock = None
            return
        self._clock = clock
        self._deadline = self.state.loop.time() + delay

    def disarm(self) -> None:
        self._clock = None

    def check_deadline(self, now: float) -> bool:
        """Called by the server's deadline sweep: act on the deadline if it is due,
        and say whether it was."""
        clock = self._clock
        if clock is not None and now >= self._deadline:
            self._clock = None
            self._expire(clock)
            return True
        return False

    def _expire(self, clock: Deadline) -> None:
        """What each deadline does when it comes up (rule 5)."""
        cycle = self.cycle
        if clock is KEEP_ALIVE:
            self._on_idle()
        elif clock is HEAD:
            self._on_head_timeout()
        elif clock is BODY:
            self._on_body_timeout()
        elif clock is LINGER:
            self._end_linger()
        elif cycle is None:  # WRITE: requests wait behind responses nobody reads
            self._on_write_stalled()
        elif clock is APP:
            cycle.on_deadline()
        else:  # WRITE: the app is done, its spool waits on the client
            cycle.check_read_rate()
