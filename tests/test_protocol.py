"""H11Protocol on a fake transport, with a fake loop and a pool whose jobs the test
runs by hand: every interleaving of loop and thread is chosen by the test, so these
are deterministic (the real-socket versions are in test_server.py)."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import h11
import pytest

from aiogate.body import EMPTY_BODY
from aiogate.config import Config, option_fields
from aiogate.dispatch import JobState
from aiogate.handlers import ServerHandler
from aiogate.http import Phase
from aiogate.listener import Listener, Slot
from aiogate.protocol import DRAIN_GRACE, LINGER_TIMEOUT, H11Protocol
from aiogate.server_state import ServerState

SETTINGS = {field.name for field in option_fields()}

Environ = dict[str, Any]


class FakeLoop:
    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.delays: list[float] = []  # of call_later
        self.now = 1000.0

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.callbacks.append((callback, args))

    call_soon = call_soon_threadsafe

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> None:
        self.delays.append(delay)
        self.callbacks.append((callback, args))

    def time(self) -> float:
        return self.now

    def run_callbacks(self) -> None:
        while self.callbacks:
            callback, args = self.callbacks.pop(0)
            callback(*args)


class FakePool:
    def __init__(self) -> None:
        self.jobs: list[Callable[[], object]] = []
        self.replaced: list[threading.Thread] = []

    def submit(self, job: Callable[[], object]) -> None:
        self.jobs.append(job)

    def replace(self, thread: threading.Thread) -> bool:
        self.replaced.append(thread)
        return True


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.buffered = 0  # what get_write_buffer_size reports
        self.handed_over: list[bytes] = []  # the pieces given to writelines

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written += data

    def writelines(self, pieces: list[bytes]) -> None:
        assert not self.closed
        self.handed_over.extend(pieces)
        for data in pieces:
            self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("10.0.0.1", 4321)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


class CheckedProtocol(H11Protocol):
    """Checks that whoever arms a deadline names the phase the connection is in."""

    def arm(
        self, phase: Phase, delay: float | None = None, *, held_by_client: bool = False
    ) -> None:
        assert phase is self.conn.phase, (phase, self.conn.phase)
        super().arm(phase, delay, held_by_client=held_by_client)


class Harness:
    def __init__(self, app: Callable[..., Any], **overrides: Any) -> None:
        self.loop = FakeLoop()
        self.pool = FakePool()
        # Settings go to the Config record, anything else to ServerState.
        settings: dict[str, Any] = {
            "timeout_keep_alive": 5.0,
            "timeout_request_body": 5.0,
            "timeout_write": 5.0,
        }
        settings.update(
            (name, overrides.pop(name)) for name in list(overrides) if name in SETTINGS
        )
        self.state = ServerState(
            loop=self.loop,
            app=app,
            pool=self.pool,
            make_handler=partial(ServerHandler, root_path=""),
            config=Config(**settings),
            clock=lambda: self.loop.now,
            **overrides,
        )
        self.protocol = CheckedProtocol(self.state)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def receive(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def tick(self, seconds: float) -> None:
        """Let ``seconds`` pass and run the deadline check, as the server's sweep."""
        self.loop.now += seconds
        self.protocol.check_deadline(self.loop.now)

    def run_jobs(self) -> int:
        """Run queued app calls (as worker threads would), then the loop callbacks."""
        count = 0
        while self.pool.jobs:
            self.pool.jobs.pop(0)()
            self.loop.run_callbacks()
            count += 1
        return count

    def responses(self, method: bytes = b"GET") -> list[tuple[int, bytes]]:
        """Parse everything written so far as responses: (status, body) pairs."""
        out: list[tuple[int, bytes]] = []
        data = bytes(self.transport.written)
        while data:
            client = h11.Connection(h11.CLIENT)
            client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            client.receive_data(data)
            if self.transport.closed or self.transport.eof_written:
                client.receive_data(b"")
            status, body = 0, b""
            while True:
                event = client.next_event()
                if type(event) is h11.Response:
                    status = event.status_code
                elif type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    break
                elif event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                    raise AssertionError(f"incomplete response in {data!r}")
            out.append((status, body))
            data = client.trailing_data[0]
        return out


def hello(environ: Environ, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"hi"]


def echo(environ: Environ, start_response: Any) -> list[bytes]:
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [data]


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_request_runs_in_a_job_and_response_is_one_write() -> None:
    h = Harness(hello)
    h.receive(GET)
    assert h.transport.written == b""  # nothing happens on the loop until the job ran
    writes: list[bytes] = []
    h.transport.write = writes.append  # type: ignore[method-assign]
    assert h.run_jobs() == 1
    assert len(writes) == 1  # head, body and end coalesced
    h.transport.written += writes[0]
    assert h.responses() == [(200, b"hi")]


def test_bodyless_request_gets_the_shared_empty_body() -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"])
        return hello(environ, start_response)

    h = Harness(app)
    h.receive(GET + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    h.run_jobs()
    assert seen[0] is EMPTY_BODY
    assert isinstance(seen[1], io.BytesIO)


def test_pipelined_requests_wait_and_pause_reading() -> None:
    h = Harness(hello)
    h.receive(GET * 3)
    assert len(h.pool.jobs) == 1  # one cycle at a time
    assert not h.transport.reading  # the rest waits, and so does the socket
    assert h.run_jobs() == 3
    assert h.responses() == [(200, b"hi")] * 3
    assert h.transport.reading


def test_body_is_buffered_and_the_app_runs_only_once_it_is_complete() -> None:
    h = Harness(echo)
    size = 200_000
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    h.receive(b"a" * 100_000)
    assert h.pool.jobs == []  # no thread is taken while the body arrives
    assert h.transport.reading  # and reading never pauses for it
    h.receive(b"b" * 100_000)
    assert len(h.pool.jobs) == 1
    h.run_jobs()
    assert h.responses() == [(200, b"a" * 100_000 + b"b" * 100_000)]


def test_large_body_spills_to_a_temporary_file_closed_after_the_app() -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append(stream)
        start_response("200 OK", [])
        return [str(len(stream.read())).encode(), str(stream.fileno() >= 0).encode()]

    h = Harness(app, body_buffer_size=1000)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    for _ in range(5):
        h.receive(b"z" * 1000)
    h.run_jobs()
    assert h.responses() == [(200, b"5000True")]
    assert not isinstance(seen[0], io.BytesIO)  # a real file
    assert seen[0].closed  # closed once the app call was over


def test_chunked_body_is_buffered_whole() -> None:
    h = Harness(echo)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.receive(b"3\r\nabc\r\n")
    assert h.pool.jobs == []
    h.receive(b"2\r\nde\r\n0\r\n\r\n")
    h.run_jobs()
    assert h.responses() == [(200, b"abcde")]


def test_chunked_body_is_given_its_decoded_length() -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(environ)
        return echo(environ, start_response)

    h = Harness(app, body_buffer_size=3)  # in a file: its length comes from fstat
    h.receive(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    h.run_jobs()
    assert h.responses() == [(200, b"abcde"), (200, b"")]
    assert [env["CONTENT_LENGTH"] for env in seen] == ["5", "0"]
    assert all("HTTP_TRANSFER_ENCODING" not in env for env in seen)


def test_100_continue_is_sent_as_soon_as_the_head_passes() -> None:
    h = Harness(echo)
    h.receive(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 3\r\n\r\n"
    )
    assert h.transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    del h.transport.written[:]
    h.receive(b"abc")
    h.run_jobs()
    assert h.responses() == [(200, b"abc")]


def test_declared_body_over_the_limit_is_413_without_100_continue() -> None:
    h = Harness(echo, limit_request_body=10)
    h.receive(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 11\r\n\r\n"
    )
    assert h.transport.written.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in h.transport.written
    assert h.transport.eof_written
    assert h.pool.jobs == []
    assert h.state.rejections["body_too_large"] == 1


def test_chunked_body_over_the_limit_is_413_midway() -> None:
    h = Harness(echo, limit_request_body=10, body_buffer_size=4)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.receive(b"8\r\n12345678\r\n")
    cycle = h.protocol.cycle
    assert cycle is not None
    assert cycle.buffer is not None
    assert cycle.buffer.spilled
    h.receive(b"8\r\n12345678\r\n")
    assert h.transport.written.startswith(b"HTTP/1.1 413 ")
    assert cycle.buffer is None  # discarded: the temporary file is closed
    assert h.pool.jobs == []


def test_write_pause_reaches_the_writer() -> None:
    h = Harness(hello)
    h.receive(GET)
    h.protocol.pause_writing()
    writer = h.protocol.cycle.writer  # type: ignore[union-attr]
    assert writer.write_paused
    h.protocol.resume_writing()
    assert not writer.write_paused


def test_no_new_request_starts_while_the_client_is_not_reading() -> None:
    # Rule 10: the transport's buffer is full, so the next request waits (reading
    # paused) until the client reads, whatever filled the buffer.
    h = Harness(hello)
    h.protocol.pause_writing()
    h.receive(GET)
    assert h.protocol.cycle is None
    assert not h.transport.reading
    h.protocol.resume_writing()
    assert h.protocol.cycle is None  # not inside the transport's callback
    h.loop.run_callbacks()
    assert h.protocol.cycle is not None
    assert h.run_jobs() == 1
    assert h.responses() == [(200, b"hi")]
    assert h.transport.reading


def test_pipelined_probes_stop_when_the_write_buffer_fills() -> None:
    # Answered on the loop, without a thread: before rule 10 a client that never
    # read got every one of them queued in the transport's buffer.
    h = Harness(hello)
    h.state.endpoints[b"/livez"] = lambda: (200, "text/plain", b"ok\n")
    probe = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    written = []

    def write(data: bytes) -> None:
        written.append(data)
        if len(written) == 3:
            h.protocol.pause_writing()  # as a transport above its high water

    h.transport.write = write  # type: ignore[method-assign]
    h.receive(probe * 50)
    h.loop.run_callbacks()
    assert len(written) == 3
    assert not h.transport.reading
    # The client reads nothing for timeout_write: it is dropped.
    h.tick(4.9)
    assert not h.transport.aborted
    h.tick(0.2)
    assert h.transport.aborted


def test_one_connection_yields_the_loop_between_turns() -> None:
    # Rule 9: a burst of pipelined probes is answered a few per turn of the loop,
    # reading paused in between, so other connections are served meanwhile.
    h = Harness(hello)
    h.state.endpoints[b"/livez"] = lambda: (200, "text/plain", b"ok\n")
    probe = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    h.receive(probe * 20)
    first_turn = h.transport.written.count(b"HTTP/1.1 200")
    assert 0 < first_turn < 20
    assert not h.transport.reading
    turns = 1
    while h.loop.callbacks:
        callback, args = h.loop.callbacks.pop(0)
        callback(*args)
        turns += 1
    assert h.transport.written.count(b"HTTP/1.1 200") == 20
    assert turns > 2
    assert h.loop.delays
    assert all(delay > 0 for delay in h.loop.delays)
    assert h.transport.reading


def test_a_held_turn_does_nothing_once_the_connection_is_gone() -> None:
    h = Harness(hello)
    h.state.endpoints[b"/livez"] = lambda: (200, "text/plain", b"ok\n")
    h.receive(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
    assert h.loop.callbacks  # the rest is held for the next turn
    written = len(h.transport.written)
    h.transport.abort()
    h.protocol.connection_lost(None)
    h.loop.run_callbacks()
    assert len(h.transport.written) == written


def test_bad_request_gets_error_response_and_close() -> None:
    h = Harness(hello)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + GET)
    assert h.pool.jobs == []
    assert h.transport.written.startswith(b"HTTP/1.1 400 ")
    assert h.transport.eof_written  # graceful: FIN after the response
    h.receive(GET)  # lingering: ignored
    assert h.pool.jobs == []


def test_bad_chunk_is_rejected_before_the_app_runs() -> None:
    h = Harness(echo)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.receive(b"zz\r\n")
    assert h.transport.written.startswith(b"HTTP/1.1 400 ")
    assert h.pool.jobs == []
    assert h.state.rejections["bad_request"] == 1


def test_connection_lost_mid_body_never_takes_a_thread() -> None:
    h = Harness(echo, body_buffer_size=2)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    cycle = h.protocol.cycle
    assert cycle is not None
    assert cycle.buffer is not None
    assert cycle.buffer.spilled
    h.protocol.connection_lost(None)
    assert h.pool.jobs == []
    assert cycle.buffer is None
    assert h.protocol not in h.state.connections


def test_connection_lost_while_queued_cancels_the_job() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    h = Harness(app)
    h.receive(GET)
    h.protocol.connection_lost(None)
    h.run_jobs()
    assert called == []
    assert h.state.in_flight == 0


def test_connection_lost_while_running_closes_iterable() -> None:
    closed: list[bool] = []
    h = Harness(hello)

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        h.protocol.connection_lost(None)  # the client goes while the app runs
        try:
            start_response("200 OK", [])
            yield b"x"
            yield b"y"
        finally:
            closed.append(True)

    h.state.app = app
    h.receive(GET)
    h.run_jobs()
    assert closed == [True]
    assert h.transport.written == b""
    assert h.state.in_flight == 0


def test_app_that_ignores_the_body_keeps_the_connection() -> None:
    h = Harness(hello)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    h.receive(b"def" + GET)
    h.run_jobs()
    assert h.responses() == [(200, b"hi"), (200, b"hi")]
    assert not h.transport.eof_written


# -- deadlines ---------------------------------------------------------------------


def test_keep_alive_deadline_closes_idle_connection() -> None:
    h = Harness(hello, timeout_keep_alive=5.0)
    h.receive(GET)
    h.run_jobs()
    h.loop.now += 4.9
    h.protocol.check_deadline(h.loop.now)
    assert not h.transport.eof_written
    h.loop.now += 0.2
    h.protocol.check_deadline(h.loop.now)
    assert h.transport.eof_written


def test_idle_connection_is_closed_without_a_408() -> None:
    h = Harness(hello, timeout_keep_alive=5.0, timeout_request_header=2.0)
    h.tick(5.1)
    assert h.transport.eof_written
    assert h.transport.written == b""


def test_head_must_arrive_within_the_header_timeout_however_it_trickles() -> None:
    h = Harness(hello, timeout_keep_alive=5.0, timeout_request_header=2.0)
    h.tick(4.0)  # idle, within keep-alive
    for byte in b"GET / HTTP/1.1\r\nHo":
        h.receive(bytes([byte]))
        h.tick(0.1)  # a byte every 100 ms does not restart the clock
    assert h.transport.written == b""  # 1.8 s so far
    h.tick(0.3)
    assert h.transport.written.startswith(b"HTTP/1.1 408 ")
    assert h.transport.eof_written
    assert h.state.rejections["timeout"] == 1
    assert h.pool.jobs == []


def test_header_timeout_restarts_for_each_request() -> None:
    h = Harness(hello, timeout_request_header=2.0)
    h.receive(b"GET / HTTP/1.1\r\n")
    h.tick(1.5)
    h.receive(b"Host: x\r\n\r\n")
    h.run_jobs()
    h.receive(b"GET / HTTP/1.1\r\n")
    h.tick(1.5)
    h.receive(b"Host: x\r\n\r\n")
    h.run_jobs()
    assert h.responses() == [(200, b"hi"), (200, b"hi")]


def test_body_must_keep_arriving() -> None:
    h = Harness(echo, timeout_request_body=3.0)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    for _ in range(5):
        h.tick(2.0)
        h.receive(b"a")  # slow, but progressing
    assert h.transport.written == b""
    h.tick(3.1)
    assert h.transport.written.startswith(b"HTTP/1.1 408 ")
    assert h.pool.jobs == []


def test_concurrency_limit_answers_503_with_retry_after() -> None:
    h = Harness(hello, limit_concurrency=1)
    other = CheckedProtocol(h.state)
    other_transport = FakeTransport()
    other.connection_made(other_transport)  # type: ignore[arg-type]
    h.receive(GET)
    other.data_received(GET)
    assert other_transport.written.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in other_transport.written
    assert len(h.pool.jobs) == 1
    h.run_jobs()
    assert h.state.in_flight == 0
    other2 = CheckedProtocol(h.state)
    other2_transport = FakeTransport()
    other2.connection_made(other2_transport)  # type: ignore[arg-type]
    other2.data_received(GET)
    assert h.pool.jobs  # admitted once the first finished


def test_a_connection_refused_at_accept_gets_503_and_is_closed() -> None:
    h = Harness(hello)
    extra = H11Protocol(h.state, Slot(None, refused=True))  # over the limit
    transport = FakeTransport()
    extra.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in transport.written
    assert transport.eof_written
    extra.data_received(GET)  # ignored while lingering
    assert h.pool.jobs == []
    h.receive(GET)  # the first connection is served
    h.run_jobs()
    assert h.responses() == [(200, b"hi")]


def test_request_waiting_too_long_for_a_thread_is_shed_by_the_loop() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    h = Harness(app, max_queue_wait=0.5)
    h.receive(GET)
    h.tick(0.4)
    assert h.transport.written == b""
    h.tick(0.2)
    assert h.transport.written.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in h.transport.written
    assert h.state.rejections["queue_wait"] == 1
    h.run_jobs()  # a thread finally takes the job: the app is not called
    assert called == []
    assert h.state.in_flight == 0


def test_request_waiting_too_long_is_shed_by_the_thread_that_takes_it() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    h = Harness(app, max_queue_wait=0.5)
    h.receive(GET)
    h.loop.now += 0.6  # the ticker has not run yet, but a thread is free
    h.run_jobs()
    assert called == []
    assert h.transport.written.startswith(b"HTTP/1.1 503 ")
    assert h.state.rejections["queue_wait"] == 1


def test_queue_wait_is_recorded() -> None:
    h = Harness(hello, max_queue_wait=5.0)
    h.receive(GET)
    cycle = h.protocol.cycle
    h.loop.now += 0.25
    h.run_jobs()
    assert cycle is not None
    assert cycle.queue_wait == pytest.approx(0.25)
    assert h.responses() == [(200, b"hi")]


def test_stuck_app_gets_503_its_stack_logged_and_a_replacement_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(hello, timeout_request=2.0)
    checks: list[Any] = []

    def stuck(environ: Environ, start_response: Any) -> list[bytes]:
        # Runs "in the thread": the loop's deadline passes meanwhile.
        h.tick(1.0)
        checks.append(h.transport.written == b"")
        h.tick(1.5)
        checks.append(bytes(h.transport.written))
        start_response("200 OK", [])
        return [b"too late"]

    h.state.app = stuck
    h.receive(GET)
    with caplog.at_level(logging.ERROR, "aiogate.error"):
        h.run_jobs()
    assert checks[0] is True
    assert checks[1].startswith(b"HTTP/1.1 503 ")
    assert b"too late" not in h.transport.written
    assert h.pool.replaced == [threading.current_thread()]
    assert h.state.rejections["app_timeout"] == 1
    assert h.state.in_flight == 0
    [record] = [r for r in caplog.records if "request timeout" in r.getMessage()]
    assert "in stuck" in record.getMessage()  # the stuck frame is in the stack


def test_app_overrunning_after_headers_gets_its_connection_aborted() -> None:
    h = Harness(hello, timeout_request=2.0)

    def slow_stream(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        h.loop.run_callbacks()  # the first chunk goes out
        h.tick(2.5)
        yield b"second"

    h.state.app = slow_stream
    h.receive(GET)
    h.run_jobs()
    assert h.transport.aborted
    assert b"first" in h.transport.written
    assert b"second" not in h.transport.written


def test_linger_waits_for_a_reading_client_and_cuts_a_stalled_one() -> None:
    # min_write_rate 50 B/s over timeout_write 5 s: 250 bytes a window.
    h = Harness(hello, timeout_write=5.0, min_write_rate=50)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    h.transport.buffered = 1000  # the response is still in the write buffer
    h.run_jobs()
    assert h.transport.eof_written
    h.tick(LINGER_TIMEOUT)
    assert not h.transport.closed
    h.transport.buffered = 500  # the client reads 500 bytes in the window
    h.tick(5.0)
    assert not h.transport.closed
    h.tick(5.0)  # then reads nothing for timeout_write
    assert h.transport.aborted


def test_linger_holds_a_slow_reader_to_the_minimum_rate() -> None:
    # A client that takes a little now and then used to hold its slot and buffer
    # for as long as it liked: each window had to show only some progress.
    h = Harness(hello, timeout_write=5.0, min_write_rate=50)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    h.transport.buffered = 100_000
    h.run_jobs()
    h.tick(LINGER_TIMEOUT)
    h.transport.buffered -= 100  # under 250 bytes in a window
    h.tick(5.0)
    assert h.transport.aborted


def test_a_half_closed_client_that_reads_nothing_is_cut_off() -> None:
    # The client sent its request and its FIN: we have no FIN to send first, and
    # the transport's close waits for a buffer nobody reads. The linger's
    # deadline used to be armed only on the other path.
    h = Harness(hello, timeout_write=5.0)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.protocol.eof_received()
    h.transport.buffered = 1_000_000
    h.run_jobs()
    assert h.transport.closed  # close() asked for, the buffer not sent yet
    h.tick(LINGER_TIMEOUT)
    assert not h.transport.aborted
    h.tick(5.0)
    assert h.transport.aborted


def test_linger_closes_once_the_buffer_is_empty() -> None:
    h = Harness(hello)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    h.run_jobs()
    h.tick(LINGER_TIMEOUT)
    assert h.transport.closed
    assert not h.transport.aborted


def test_shutdown_gives_idle_a_grace_and_closes_busy_after_response() -> None:
    idle = Harness(hello)  # between keep-alive requests: the next may be on its way
    idle.receive(GET)
    idle.run_jobs()
    idle.protocol.shutdown()
    assert not idle.transport.eof_written
    idle.tick(DRAIN_GRACE)  # (the drain grace; see tests/test_drain.py)
    assert idle.transport.eof_written

    fresh = Harness(hello)  # accepted, first request not here yet: a moment for it
    fresh.protocol.shutdown()
    assert not fresh.transport.eof_written
    fresh.tick(DRAIN_GRACE)
    assert fresh.transport.eof_written

    arriving = Harness(hello)
    arriving.receive(b"GET / HTTP/1.1\r\n")  # part of a head: served, not cut
    arriving.state.shutting_down = True
    arriving.protocol.shutdown()
    assert not arriving.transport.eof_written
    arriving.receive(b"Host: x\r\n\r\n")
    arriving.run_jobs()
    assert arriving.responses() == [(200, b"hi")]
    assert b"Connection: close\r\n" in arriving.transport.written
    assert arriving.transport.eof_written

    busy = Harness(hello)
    busy.receive(GET)
    busy.state.shutting_down = True
    busy.protocol.shutdown()
    assert not busy.transport.eof_written
    busy.run_jobs()
    assert busy.responses() == [(200, b"hi")]
    assert b"Connection: close\r\n" in busy.transport.written
    assert busy.transport.eof_written


@pytest.mark.parametrize(
    ("app_status", "method", "expected_body"),
    [
        ("200 OK", b"HEAD", b""),
        ("204 No Content", b"GET", b""),
        ("304 Not Modified", b"GET", b""),
    ],
)
def test_no_body_for_head_204_304(
    app_status: str, method: bytes, expected_body: bytes
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response(app_status, [("Content-Type", "text/plain")])
        return [b"must not be sent"]

    h = Harness(app)
    h.receive(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run_jobs()
    assert b"must not be sent" not in h.transport.written
    assert h.responses(method) == [(int(app_status[:3]), expected_body)]
    assert not h.transport.eof_written  # and the connection stays usable


def test_a_slow_app_does_not_hold_the_loop() -> None:
    """The loop only queues the job: even an app that would block is not called."""
    calls: list[float] = []

    def slow(environ: Environ, start_response: Any) -> list[bytes]:
        calls.append(time.monotonic())
        return hello(environ, start_response)

    h = Harness(slow)
    h.receive(GET)
    assert calls == []
    h.run_jobs()
    assert len(calls) == 1


def test_a_lingering_connection_keeps_its_slot_until_it_is_closed() -> None:
    h = Harness(hello)
    listener = Listener(h.loop, [], partial(H11Protocol, h.state))  # type: ignore[arg-type]
    listener.open = 1  # as if accepted
    protocol = H11Protocol(h.state, Slot(listener))
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    h.loop.now += 5.0  # keep-alive timeout: our FIN, then a linger
    protocol.check_deadline(h.loop.now)
    assert transport.eof_written
    assert listener.open == 1  # a socket still open counts, lingering or not
    protocol.connection_lost(None)
    assert listener.open == 0
    assert protocol.slot is not None
    protocol.slot.release()  # released once only
    assert listener.open == 0


def test_a_large_body_is_handed_to_the_transport_without_a_copy() -> None:
    body = b"x" * (256 * 1024)

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    h = Harness(app)
    h.receive(GET)
    h.run_jobs()
    assert h.responses() == [(200, body)]
    # The app's own bytes object, not a joined copy of head and body.
    assert any(piece is body for piece in h.transport.handed_over)


def test_a_small_response_is_one_write() -> None:
    h = Harness(hello)
    h.receive(GET)
    h.run_jobs()
    assert h.responses() == [(200, b"hi")]
    assert h.transport.handed_over == []


# -- a slow reader's response goes through the spool (writer rules 3 to 7) ----------


def streamed(pieces: list[bytes]) -> Callable[..., Any]:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        yield from pieces

    return app


def pause_after_each_write(h: Harness) -> list[int]:
    """The transport goes above its high water with every write (a client reading
    one piece at a time): the sizes written, in order."""
    sizes: list[int] = []
    write = h.transport.write

    def write_then_pause(data: bytes) -> None:
        write(data)
        sizes.append(len(data))
        h.protocol.pause_writing()

    h.transport.write = write_then_pause  # type: ignore[method-assign]
    return sizes


def test_a_slow_readers_response_is_spooled_and_its_thread_released() -> None:
    pieces = [bytes([65 + i]) * 50_000 for i in range(6)]
    h = Harness(streamed(pieces))
    h.receive(GET)
    h.protocol.pause_writing()  # the client reads nothing for now
    h.run_jobs()  # the app runs to its end: no write waits past SPOOL_GRACE
    cycle = h.protocol.cycle
    assert cycle is not None
    assert cycle.job_state is JobState.DONE
    assert not cycle.ended  # the response is not sent yet
    assert cycle.writer.spooled
    assert h.transport.written.endswith(b"\r\n\r\n")  # only the head so far
    sizes = pause_after_each_write(h)
    for _ in range(100):  # the client reads a piece, the loop sends the next one
        if cycle.ended:
            break
        h.protocol.resume_writing()
        h.loop.run_callbacks()
    assert h.responses() == [(200, b"".join(pieces))]  # every byte, in order
    assert max(sizes) <= 64 * 1024 + 16  # a piece at a time, with its chunk framing
    assert not cycle.writer.spooled  # the file is closed
    assert h.state.in_flight == 0
    assert h.protocol.cycle is None  # and the connection is ready for more


def test_a_fast_readers_spool_goes_out_a_bounded_share_per_turn() -> None:
    from aiogate.dispatch import SPOOL_PIECE, SPOOL_PIECES_PER_TURN

    body = b"z" * (SPOOL_PIECE * SPOOL_PIECES_PER_TURN * 2)
    h = Harness(streamed([body[i : i + 65536] for i in range(0, len(body), 65536)]))
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    h.protocol.resume_writing()  # and it never pauses again
    callback, args = h.loop.callbacks.pop(0)
    callback(*args)  # one turn of the loop
    sent = len(h.transport.written) + len(h.transport.handed_over)
    assert sent < len(body) * 3 // 4
    assert h.loop.callbacks  # the rest at the next turn
    h.loop.run_callbacks()
    assert h.responses() == [(200, body)]


def test_the_spool_comes_before_what_the_app_writes_after_it() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a" * 1000  # the client is behind: spooled
        h.loop.run_callbacks()  # the loop holds it: the transport is paused
        assert b"aaa" not in h.transport.written
        h.protocol.resume_writing()
        h.loop.run_callbacks()  # the client catches up: the spool is sent
        assert h.transport.written.endswith(b"a" * 1000 + b"\r\n")
        yield b"b" * 1000  # no backpressure now: queued as usual
        yield b"c" * 1000

    h = Harness(app)
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    assert h.responses() == [(200, b"a" * 1000 + b"b" * 1000 + b"c" * 1000)]


def test_after_the_app_the_loop_holds_the_client_to_the_min_rate() -> None:
    pieces = [b"x" * 65536] * 8
    h = Harness(streamed(pieces), timeout_write=5.0, min_write_rate=10_000)
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    cycle = h.protocol.cycle
    assert cycle is not None
    pause_after_each_write(h)
    h.tick(4.9)
    h.protocol.resume_writing()  # the client reads a 64 KiB piece: over 50,000 B
    h.loop.run_callbacks()
    h.tick(0.2)  # the first window is over, and was fast enough
    assert not h.transport.aborted
    h.tick(4.9)
    assert not h.transport.aborted
    h.tick(0.2)  # a window in which the client read nothing
    assert h.transport.aborted
    assert cycle.ended
    assert not cycle.writer.spooled
    assert h.state.in_flight == 0


def test_an_abort_behind_the_spool_acts_at_once() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"x" * 1000
        raise RuntimeError("the app failed after its headers")

    h = Harness(app)
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    cycle = h.protocol.cycle
    assert cycle is not None
    assert cycle.ended
    assert h.transport.aborted  # no wait for the client to read the spool first
    assert not cycle.writer.spooled


def test_a_client_gone_mid_spool_leaves_no_file() -> None:
    h = Harness(streamed([b"x" * 65536] * 4))
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    cycle = h.protocol.cycle
    assert cycle is not None
    assert cycle.writer.spooled
    h.protocol.connection_lost(ConnectionResetError())
    assert not cycle.writer.spooled
    h.protocol.resume_writing()  # a late callback finds nothing to do
    h.loop.run_callbacks()


def test_an_end_that_comes_later_still_waits_behind_the_spool() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a" * 1000  # spooled
        h.loop.run_callbacks()  # delivered and held: the transport is paused
        # ... and the END comes in a drain of its own.

    h = Harness(app)
    h.receive(GET)
    h.protocol.pause_writing()
    h.run_jobs()
    cycle = h.protocol.cycle
    assert cycle is not None
    assert not cycle.ended
    assert not h.transport.written.endswith(b"0\r\n\r\n")  # not ended before its body
    h.protocol.resume_writing()
    h.loop.run_callbacks()
    assert h.responses() == [(200, b"a" * 1000)]


def test_a_request_without_a_body_is_whole_before_anything_answers_it() -> None:
    # Its EndOfMessage used to be taken on a later turn: after a pause (here the
    # write buffer filled by a probe's answer), an app that answered first ended the
    # cycle with the client's side unfinished, and the connection closed with the
    # pipelined requests behind it unanswered.
    h = Harness(hello)
    h.state.endpoints[b"/livez"] = lambda: (200, "text/plain", b"ok\n")
    written = h.transport.write
    paused: list[bool] = []

    def write(data: bytes) -> None:
        written(data)
        if not paused:  # the first probe's answer crosses the high-water mark
            paused.append(True)
            h.protocol.pause_writing()

    h.transport.write = write  # type: ignore[method-assign]
    probe = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    h.receive(probe * 2 + b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    h.protocol.resume_writing()
    callback, args = h.loop.callbacks.pop(0)  # the next turn, and nothing else
    callback(*args)
    h.pool.jobs.pop(0)()  # the app answers before any later turn
    callback, args = h.loop.callbacks.pop()  # the writer's drain
    callback(*args)
    assert not h.transport.eof_written
    h.loop.run_callbacks()
    h.run_jobs()
    assert [status for status, _ in h.responses()] == [200, 200, 200, 200]
    assert not h.transport.eof_written
