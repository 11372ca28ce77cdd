"""One request's way to the app's thread and its response's way back.

Owns: ``RequestCycle`` (one per request: its body while it arrives, the job a
worker thread runs, and the loop side of the response: the writer's items turned
into bytes, the spool sent as the client reads) and ``JobState``. ``job`` runs in a
worker thread and touches only the handler, the body stream and the writer; every
other method runs on the event loop.

Theory of operation:

1. A cycle starts when a request head is accepted. Its body, if any, collects in
   a ``BodyBuffer`` on the loop; the job is submitted only once the request is
   complete, so a slow uploader never holds a thread.
2. A job moves RECEIVING -> QUEUED -> RUNNING -> DONE, or to CANCELLED when the
   loop sheds or drops it before a thread takes it. Both sides change the state
   under the connection's lock, so a shed request's app is never called and a
   running one is never shed.
3. The thread's response comes back as writer items; ``deliver`` frames them
   (``ServerConnection``) and makes one transport write per batch.
4. Once the writer spools (the client reads slower than the app writes), or the
   app's response is a file (a ``FILE`` item), the items behind those bytes wait
   (``held``) and ``send_spooled`` sends the spool a piece at a time, and the file
   (``file_sender``), while the transport takes them. Behind the response's end the
   thread is gone, and the cycle holds the client to the minimum read rate.
5. The cycle ends when its response ends (END sent, or ABORT): the owner's
   ``cycle_ended`` decides what comes next.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import h11

from .access_log import Refusal
from .body import EMPTY_BODY, BodyBuffer, EmptyBody
from .file_sender import SPOOL_PIECE, FileSender
from .http import Phase
from .server_state import RETRY_AFTER
from .writer import ABORT, DATA, END, FILE, SPOOL, START, Item, ResponseWriter

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._types import ConnectionInfo, StartResponse, WSGIEnvironment
    from .flow_control import FlowControl
    from .http import ServerConnection
    from .server_state import ServerState

__all__ = [
    "CANCELLED",
    "DONE",
    "QUEUED",
    "RECEIVING",
    "RUNNING",
    "CycleOwner",
    "JobState",
    "RequestCycle",
]

log = logging.getLogger("aiogate.error")

#: A response's pieces (head, body chunks) are joined into one write below this
#: size, and handed to ``transport.writelines`` as they are above it.
WRITELINES_THRESHOLD = 64 * 1024
#: A response's spool is sent a piece of ``SPOOL_PIECE`` (64 KiB) at a time (one
#: pread, one write: the transport's high-water mark), and at most this many pieces
#: per turn of the loop for a client that reads fast (1 MiB: a 64 KiB pread takes
#: 4.3 µs, a send about as long again, so well under a millisecond).
SPOOL_PIECES_PER_TURN = 16


class JobState(enum.Enum):
    """Where a request's app call is (rule 2)."""

    RECEIVING = "receiving"  # the body is still arriving; not submitted
    QUEUED = "queued"  # submitted, waiting for a thread
    RUNNING = "running"  # a thread is running the app
    DONE = "done"  # the app call is over
    CANCELLED = "cancelled"  # shed or dropped before a thread took it


# The members as module names (a lookup through the enum's metaclass costs about
# 95 ns on CPython 3.11, a global 20 ns; see http/_state.py).
RECEIVING, QUEUED, RUNNING, DONE, CANCELLED = JobState
_DISPATCHED = Phase.DISPATCHED  # (armed on every request)


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def writelines(self, data: list[bytes]) -> None: ...
    def is_closing(self) -> bool: ...
    def get_extra_info(self, name: str, default: object = None) -> Any: ...
    def get_write_buffer_limits(self) -> tuple[int, int]: ...
    def set_write_buffer_limits(self, high: int = ..., low: int = ...) -> None: ...


class CycleOwner(Protocol):
    """The connection a cycle belongs to (``protocol.H11Protocol``)."""

    state: ServerState
    conn: ServerConnection
    flow: FlowControl
    info: ConnectionInfo
    cond: threading.Condition
    cycle: RequestCycle | None

    @property
    def transport(self) -> _Transport: ...
    def cycle_ended(
        self, cycle: RequestCycle, *, aborted: bool, refused: Refusal | None = None
    ) -> None: ...
    def arm(
        self, phase: Phase, delay: float | None = None, *, held_by_client: bool = False
    ) -> None: ...
    def reject(
        self,
        status: int,
        reason: str,
        *,
        retry_after: int | None = None,
        count: bool = True,
        refusal: Refusal | None = None,
        waited: float = 0.0,
    ) -> None: ...
    def reset(self) -> None: ...


class RequestCycle:
    """One request and its response. Loop-side, except ``job`` (worker thread)."""

    __slots__ = (
        "arrived_at",
        "body",
        "buffer",
        "bytes_sent",
        "counted",
        "ended",
        "environ",
        "file",
        "held",
        "job_state",
        "protocol",
        "queue_wait",
        "queued_at",
        "request",
        "response_headers",
        "spool_left",
        "started",
        "started_at",
        "status",
        "taken_mark",
        "thread",
        "writer",
    )

    def __init__(self, protocol: CycleOwner, request: h11.Request) -> None:
        state = protocol.state
        config = state.config
        self.protocol = protocol
        self.request = request
        self.started = False  # response head sent
        self.ended = False  # response ended (END or ABORT seen, or rejected)
        self.counted = False  # counted in ServerState.in_flight
        self.job_state = RECEIVING
        self.queued_at = 0.0  # loop.time() at dispatch
        self.started_at = 0.0  # state.clock() when a thread took the job
        #: Seconds the complete request waited for a thread (for the access log).
        self.queue_wait = 0.0
        self.thread: threading.Thread | None = None
        # What the access log and metrics record (only filled when either is on).
        self.arrived_at = 0.0  # loop.time() when the head was parsed
        self.status = 0
        self.response_headers: list[tuple[str, str]] = []
        self.bytes_sent = 0
        #: The app's environ, kept only when the access log reads it (``%({VAR}e)s``).
        self.environ: WSGIEnvironment | None = None
        self.buffer: BodyBuffer | None = (
            BodyBuffer(
                spill_size=config.body_buffer_size, limit=config.limit_request_body
            )
            if protocol.conn.request_has_body
            else None
        )
        self.body: BinaryIO | EmptyBody = EMPTY_BODY
        self.writer = ResponseWriter(
            state.loop,
            self.deliver,
            timeout=config.timeout_write,
            spool_size=config.response_spool_size,
            min_rate=config.min_write_rate,
            cond=protocol.cond,
        )
        # Sending from the writer's spool or a file (``send_spooled``): the items
        # waiting behind them (None when there are none), the announced spool bytes
        # not yet sent, the file being sent, and ``writer.taken`` when the current
        # read-rate window began.
        self.held: list[Item] | None = None
        self.spool_left = self.taken_mark = 0
        self.file: FileSender | None = None
        if protocol.flow.write_paused:
            self.writer.set_write_paused(True)

    def job(self) -> None:
        """Runs in a worker thread: build the handler and run the app."""
        protocol = self.protocol
        state = protocol.state
        with protocol.cond:
            if self.job_state is not QUEUED:
                return  # shed or dropped on the loop before a thread was free
            now = state.clock()
            self.queue_wait = now - self.queued_at
            max_queue_wait = state.config.max_queue_wait
            if max_queue_wait and self.queue_wait > max_queue_wait:
                self.job_state = CANCELLED
            else:
                self.job_state = RUNNING
                self.started_at = now
                self.thread = threading.current_thread()
        if self.job_state is CANCELLED:
            # Closed here, since the loop may drop the cycle before shed runs.
            self.body.close()
            state.loop.call_soon_threadsafe(self.shed)
            return
        writer = self.writer
        try:
            handler = state.make_handler(
                self.body, writer, state.errors, self.request, protocol.info
            )
            app = self._app_keeping_environ if state.access_environ else state.app
            if state.hooks is None:
                handler.run(app)
            else:  # pre_request and post_request, here in the app's thread
                assert state.worker is not None
                state.hooks.run_request(state.worker, handler, app, self.request)
        finally:
            self.body.close()
            with protocol.cond:
                self.job_state = DONE
            if writer.ensure_ended():
                log.debug("Handler returned without ending the response; aborted it")

    def _app_keeping_environ(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Runs in a worker thread: the app, its environ kept for the access log
        (read on the loop when the response ends, so what the app set shows too)."""
        self.environ = environ
        return self.protocol.state.app(environ, start_response)

    # -- admission and the job's deadlines (loop side) ----------------------------

    def submit(self) -> None:
        """The request is complete: admit it and hand its job to the thread pool."""
        protocol = self.protocol
        state = protocol.state
        config = state.config
        if config.limit_concurrency and state.in_flight >= config.limit_concurrency:
            log.warning(
                "Concurrency limit (%d) reached; 503 for %s",
                config.limit_concurrency,
                self.describe(),
            )
            state.last_overload = state.loop.time()
            protocol.reject(
                503,
                "server busy",
                retry_after=RETRY_AFTER,
                refusal=Refusal.CONCURRENCY_LIMIT,
            )
            return
        state.in_flight += 1
        state.dispatched += 1
        if state.dispatched == state.max_requests:
            state.on_max_requests()
        self.counted = True
        self.queued_at = state.loop.time()
        self.job_state = QUEUED
        state.pool.submit(self.job)
        protocol.arm(_DISPATCHED)  # the app's deadline, if it has one

    def uncount(self) -> None:
        """The response has ended or been given up: out of ``ServerState.in_flight``."""
        if self.counted:
            self.counted = False
            self.protocol.state.in_flight -= 1

    def shed(self) -> None:
        """The request waited longer than ``max_queue_wait`` for a thread (found by the
        thread that finally took it, or by the deadline): 503, app not called."""
        protocol = self.protocol
        if self is not protocol.cycle or self.ended:
            return
        state = protocol.state
        state.count_rejection(Refusal.QUEUE_WAIT)
        state.last_overload = now = state.loop.time()
        # What it waited, for its access-log line too (%(w)s, queue_wait_s).
        self.queue_wait = now - self.queued_at
        log.warning(
            "Shed %s: waited %.3fs for a thread (max-queue-wait %gs)",
            self.describe(),
            self.queue_wait,
            state.config.max_queue_wait,
        )
        self.body.close()
        protocol.reject(
            503,
            "server busy, try again",
            retry_after=RETRY_AFTER,
            count=False,
            refusal=Refusal.QUEUE_WAIT,
        )

    def on_deadline(self) -> None:
        """The queue-wait or app-call deadline of this cycle came up."""
        protocol = self.protocol
        if self is not protocol.cycle or self.ended:
            return
        state = protocol.state
        config = state.config
        now = state.loop.time()
        with protocol.cond:
            job_state = self.job_state
            if (
                job_state is QUEUED
                and config.max_queue_wait
                and now - self.queued_at >= config.max_queue_wait
            ):
                job_state = self.job_state = CANCELLED
        if job_state is CANCELLED:
            self.shed()
        elif job_state is QUEUED:  # waiting, not yet overdue
            due = now + config.timeout_request
            if config.max_queue_wait:
                due = self.queued_at + config.max_queue_wait
            protocol.arm(protocol.conn.phase, due - now)
        elif job_state is RUNNING and config.timeout_request:
            due = self.started_at + config.timeout_request
            if now >= due:
                self._timed_out()
            else:
                protocol.arm(protocol.conn.phase, due - now)

    def _timed_out(self) -> None:
        """The app call overran ``timeout_request``: answer for it, log where it is
        stuck, and give the pool a thread in its place."""
        protocol = self.protocol
        state = protocol.state
        state.count_rejection(Refusal.APP_TIMEOUT)
        thread = self.thread
        if thread is None:  # pragma: no cover - RUNNING always has its thread
            return
        frame = sys._current_frames().get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame else "  (finished)\n"
        log.error(
            "Request %s exceeded the %gs request timeout; stack of %s:\n%s",
            self.describe(),
            state.config.timeout_request,
            thread.name,
            stack.rstrip("\n"),
        )
        state.pool.replace(thread)
        if self.started:
            # Part of the response is out: only a cut connection says it failed.
            self.writer.close("request timed out")  # (the thread's reason)
            self.cut(Refusal.APP_TIMEOUT)
        else:
            protocol.reject(
                503, "request timed out", count=False, refusal=Refusal.APP_TIMEOUT
            )

    # -- loop side ---------------------------------------------------------------

    def deliver(self, items: list[Item]) -> None:
        """Runs on the event loop: turn the thread's items into bytes on the wire."""
        protocol = self.protocol
        if self.ended or protocol.transport.is_closing():
            return
        if self.held is not None:  # behind spooled bytes not sent yet: wait there
            self._hold(items)
            return
        conn = protocol.conn
        state = protocol.state
        observe = state.observing
        out: list[bytes] = []
        end: object = None
        spooled: list[Item] | None = None
        try:
            for item in items:
                kind = item[0]
                if kind is DATA:
                    out.append(conn.send_data(item[1]))
                    if observe:
                        self.bytes_sent += len(item[1])
                elif kind is START:
                    # Draining: this response says Connection: close, and is the last.
                    close = state.shutting_down
                    out.append(
                        conn.start_response(
                            item[1], item[2], close=close, version=item[3]
                        )
                    )
                    self.started = True
                    if observe:
                        status = item[1]
                        self.status = int(status[:3])
                        self.response_headers = item[2]
                elif kind is END:
                    out.append(conn.end_response())
                    end = END
                    break
                elif kind is ABORT:
                    end = ABORT
                    break
                else:  # SPOOL or FILE: the body goes on from the spool or a file
                    spooled = items[items.index(item) :]
                    break
        except h11.LocalProtocolError as exc:
            # The handler validates headers and framing; reaching this is a bug in a
            # custom handler. The client gets a closed connection, never a bad message.
            log.error("Response refused, closing the connection: %s", exc)
            end = ABORT
        if out:
            transport = protocol.transport
            if len(out) == 1:
                transport.write(out[0])
            elif sum(map(len, out)) < WRITELINES_THRESHOLD:
                transport.write(b"".join(out))  # one small send beats several
            else:
                # Large body pieces are handed over as they are: joining would copy
                # every byte once more on the loop thread (uvloop sends the list
                # with one writev, the stdlib loop joins it itself).
                transport.writelines(out)
        if end is not None:
            self.ended = True
            protocol.cycle_ended(self, aborted=end is ABORT)
        elif spooled is not None:
            self._hold(spooled)

    def _hold(self, items: list[Item]) -> None:
        """Runs on the event loop: ``items`` wait behind the spooled bytes (writer rule
        4) or a file, which go out as the client reads (``send_spooled``). An
        ``ABORT`` acts at once. Behind an ``END`` the app's call is over: from then on
        this cycle, not the thread, holds the client to the minimum read rate (writer
        rule 5), on the connection's deadline, which nothing else needs then."""
        protocol = self.protocol
        held = self.held
        for item in items:
            kind = item[0]
            if kind is ABORT:
                self.cut()
                return
            if kind is END:
                # The app's call is over: no longer in flight (--limit-concurrency
                # counts requests in a thread or waiting for one), though its
                # response still waits on the client.
                self.uncount()
                self.taken_mark = self.writer.taken
                protocol.arm(Phase.RESPONDING, held_by_client=True)
        if held is None:
            self.held = items
        else:
            held.extend(items)
        self.send_spooled()

    def send_spooled(self) -> None:
        """Runs on the event loop, from ``_hold`` and, once the client has read some,
        ``resume_writing``: send spooled bytes, a piece at a time, and files, while
        the transport is not paused, then the items that waited behind them."""
        held = self.held
        protocol = self.protocol
        transport = protocol.transport
        if held is None or self.ended or transport.is_closing():
            return
        conn = protocol.conn
        writer = self.writer
        state = protocol.state
        observe = state.observing
        budget = SPOOL_PIECES_PER_TURN
        while True:
            sender = self.file
            if sender is not None:
                if not sender.send():
                    return  # it waits for the transport or its next turn, or cut
                self.file = None
            if not self.spool_left:
                count = 0
                for item in held:  # the next spooled bytes, if they come next
                    if item[0] is not SPOOL:
                        break
                    self.spool_left += item[1]
                    count += 1
                del held[:count]
                if not self.spool_left:
                    if held and held[0][0] is FILE:
                        _, fd, offset, size = held.pop(0)
                        self.file = FileSender(self, fd, offset, size)
                        continue
                    # All sent: what followed goes the usual way (and may spool again).
                    self.held = None
                    if held:
                        self.deliver(held)
                    return
            if protocol.flow.write_paused:
                return  # resume_writing calls again
            if not budget:  # the other connections' turn; go on at the next one
                state.loop.call_soon(self.send_spooled)
                return
            budget -= 1
            try:
                data = writer.read_spool(min(self.spool_left, SPOOL_PIECE))
                framed = conn.send_data(data)
            except (OSError, h11.LocalProtocolError) as exc:
                log.error("Response cut, closing the connection: %s", exc)
                self.cut()
                return
            self.spool_left -= len(data)
            if observe:
                self.bytes_sent += len(data)
            transport.write(framed)

    def check_read_rate(self) -> None:
        """The deadline while the app is done and the spool is sent: over each
        ``timeout_write`` the client must have read ``min_write_rate`` bytes a second
        of it (at least one byte), as the thread asked before (writer rule 5)."""
        protocol = self.protocol
        if self.ended or protocol.cycle is not self or self.held is None:
            return
        config = protocol.state.config
        sent = self.writer.taken - self.taken_mark
        if sent >= max(1, int(config.min_write_rate * config.timeout_write)):
            self.taken_mark += sent
            protocol.arm(Phase.RESPONDING, held_by_client=True)
            return
        log.debug(
            "%s read %d bytes in %gs, under --min-write-rate; dropping the connection",
            protocol.info.client,
            sent,
            config.timeout_write,
        )
        self.cut()

    def cut(self, refused: Refusal | None = None) -> None:
        """Runs on the event loop: the response ends unfinished; the connection
        fails the writer (which closes a file being sent), records it (with the
        reason, when the server cut it: ``refused``) and resets (``cycle_ended``)."""
        self.held = None
        self.file = None
        self.ended = True
        self.protocol.cycle_ended(self, aborted=True, refused=refused)

    def describe(self) -> str:
        """``GET /path`` (the target without its query), for log messages."""
        request = self.request
        path = request.target.partition(b"?")[0][:200]
        return f"{request.method.decode('latin-1')} {path.decode('latin-1')}"
