"""H11Protocol on a fake transport, with a fake loop and a pool whose jobs the test
runs by hand: every interleaving of loop and thread is chosen by the test, so these
are deterministic (the real-socket versions are in test_server.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import h11
import pytest

from aiogate.body import EMPTY_BODY, RequestBody
from aiogate.handlers import ServerHandler
from aiogate.protocol import MAX_DISCARD_BYTES, H11Protocol, ServerState

Environ = dict[str, Any]


class FakeLoop:
    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.now = 1000.0

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
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

    def submit(self, job: Callable[[], object]) -> None:
        self.jobs.append(job)


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False
        self.eof_written = False

    def write(self, data: bytes) -> None:
        assert not self.closed
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


class Harness:
    def __init__(self, app: Callable[..., Any], **overrides: Any) -> None:
        self.loop = FakeLoop()
        self.pool = FakePool()
        options: dict[str, Any] = {
            "loop": self.loop,
            "app": app,
            "pool": self.pool,
            "make_handler": partial(ServerHandler, root_path=""),
            "limit_request_line": 8190,
            "limit_request_fields": 100,
            "limit_request_field_size": 8190,
            "timeout_keep_alive": 5.0,
            "timeout_request_body": 5.0,
            "timeout_write": 5.0,
        }
        options.update(overrides)
        self.state = ServerState(**options)
        self.protocol = H11Protocol(self.state)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def receive(self, data: bytes) -> None:
        self.protocol.data_received(data)

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
    assert isinstance(seen[1], RequestBody)


def test_pipelined_requests_wait_and_pause_reading() -> None:
    h = Harness(hello)
    h.receive(GET * 3)
    assert len(h.pool.jobs) == 1  # one cycle at a time
    assert not h.transport.reading  # the rest waits, and so does the socket
    assert h.run_jobs() == 3
    assert h.responses() == [(200, b"hi")] * 3
    assert h.transport.reading


def test_body_high_water_pauses_reading_until_the_app_reads() -> None:
    h = Harness(echo)
    size = 200_000
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    h.receive(b"a" * 100_000)
    assert not h.transport.reading  # above the body buffer's high water
    # The app reads (in its thread): the buffer drains and reading resumes.
    job = h.pool.jobs.pop()
    body = h.protocol.cycle.body  # type: ignore[union-attr]
    assert isinstance(body, RequestBody)
    assert len(body.read(90_000)) == 90_000
    h.loop.run_callbacks()
    assert h.transport.reading
    h.receive(b"a" * 100_000)
    h.pool.jobs.append(job)
    h.run_jobs()
    assert h.responses() == [(200, b"a" * 110_000)]


def test_write_pause_reaches_the_writer() -> None:
    h = Harness(hello)
    h.receive(GET)
    h.protocol.pause_writing()
    writer = h.protocol.cycle.writer  # type: ignore[union-attr]
    assert writer.write_paused
    h.protocol.resume_writing()
    assert not writer.write_paused


def test_a_new_cycle_starts_paused_if_the_transport_is() -> None:
    h = Harness(hello)
    h.protocol.pause_writing()
    h.receive(GET)
    assert h.protocol.cycle.writer.write_paused  # type: ignore[union-attr]


def test_bad_request_gets_error_response_and_close() -> None:
    h = Harness(hello)
    h.receive(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + GET)
    assert h.pool.jobs == []
    assert h.transport.written.startswith(b"HTTP/1.1 400 ")
    assert h.transport.eof_written  # graceful: FIN after the response
    h.receive(GET)  # lingering: ignored
    assert h.pool.jobs == []


def test_bad_chunk_during_the_app_fails_its_read_and_closes() -> None:
    h = Harness(echo)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.receive(b"zz\r\n")
    assert h.transport.written.startswith(b"HTTP/1.1 400 ")
    h.run_jobs()  # the app's read raises ClientDisconnected; nothing more is written
    assert h.transport.written.count(b"HTTP/1.1") == 1


def test_connection_lost_fails_body_and_writer() -> None:
    h = Harness(echo)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    h.protocol.connection_lost(None)
    closed: list[bool] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        try:
            environ["wsgi.input"].read()
        finally:
            closed.append(True)
        yield b""

    h.state.app = app
    h.run_jobs()
    assert closed == [True]
    assert h.transport.written == b""
    assert h.protocol not in h.state.connections


def test_unread_body_is_discarded_and_connection_reused() -> None:
    h = Harness(hello)
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    h.run_jobs()
    h.receive(b"def" + GET)
    h.run_jobs()
    assert h.responses() == [(200, b"hi"), (200, b"hi")]
    assert not h.transport.eof_written


def test_too_much_unread_body_closes() -> None:
    h = Harness(hello)
    size = MAX_DISCARD_BYTES * 2
    h.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    h.run_jobs()
    h.receive(b"x" * (MAX_DISCARD_BYTES + 1))
    assert h.transport.eof_written


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


def test_shutdown_closes_idle_now_and_busy_after_response() -> None:
    idle = Harness(hello)
    idle.protocol.shutdown()
    assert idle.transport.eof_written

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
