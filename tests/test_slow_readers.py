"""Slow readers over real sockets (issue 12 item 4): a client that reads slower than
the app writes costs a spool file, never a thread; one that reads slower than
``--min-write-rate`` where that would hold a thread is dropped; no spool file outlives
its connection.

The clients are blocking sockets in threads of their own (the server's event loop is
the test's), with a small receive buffer, reading at a pace; every wait is bounded.
Note that Linux lets a loopback connection queue about 3.5 MiB in the server's send
buffer whatever the client's receive buffer, so the responses here are larger than
that. Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import h11

from tests.test_server import serving

Environ = dict[str, Any]

WAIT = 10.0  # the bound of every socket operation and thread join
PIECE_SIZE = 64 * 1024


def piece(index: int) -> bytes:
    """64 KiB that say where they belong, so a byte out of order shows."""
    return (b"%07d\n" % index) * (PIECE_SIZE // 8)


class Streamer:
    """``/`` streams ``pieces`` 64 KiB pieces (chunked, no Content-Length); ``/hello``
    is a small response. ``returned`` is released once per streamed response when
    its app call is over (the iterable closed): the thread is free again."""

    def __init__(self, pieces: int) -> None:
        self.pieces = pieces
        self.expected = b"".join(piece(i) for i in range(pieces))
        self.returned = threading.Semaphore(0)

    def __call__(self, environ: Environ, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/hello":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"hello"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Stream(self)

    def wait_returned(self, count: int, timeout: float) -> bool:
        """Runs in a helper thread: True once ``count`` app calls have returned."""
        deadline = time.monotonic() + timeout
        return all(
            self.returned.acquire(timeout=max(0.0, deadline - time.monotonic()))
            for _ in range(count)
        )


class _Stream:
    def __init__(self, owner: Streamer) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.owner.pieces):
            yield piece(index)

    def close(self) -> None:
        self.owner.returned.release()


class PacedReader(threading.Thread):
    """GET ``/`` and read the response at ``rate`` bytes a second (the pacing is the
    attack) until ``hurry`` is set, then as fast as it comes. ``outcome`` ends as
    "complete" (``body`` is the whole body) or "cut off" (the server closed or reset
    the connection first)."""

    def __init__(self, port: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rate = rate
        self.body = bytearray()
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.head = threading.Event()  # the response head has arrived
        self.hurry = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.settimeout(WAIT)

    def run(self) -> None:
        try:
            with self.sock:
                self.sock.connect(("127.0.0.1", self.port))
                self.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                self.outcome = self._read()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.head.set()  # no waiter hangs on a reader that failed early

    def _read(self) -> str:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        began = 0.0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:  # EOF in the middle of the body
                return "cut off"
            if event is h11.NEED_DATA:
                paced = began and not self.hurry.is_set()
                if paced:
                    ahead = len(self.body) / self.rate - (time.monotonic() - began)
                    if ahead > 0:
                        self.hurry.wait(min(ahead, 0.05))
                        continue
                try:
                    data = self.sock.recv(4096 if paced else 65536)
                except ConnectionError:
                    return "cut off"
                conn.receive_data(data)
            elif type(event) is h11.Response:
                assert event.status_code == 200
                began = time.monotonic()
                self.head.set()
            elif type(event) is h11.Data:
                self.body += event.data
            elif type(event) is h11.EndOfMessage:
                return "complete"
            elif type(event) is h11.ConnectionClosed:
                return "cut off"

    def wait_done(self) -> bool:
        """Runs in a helper thread."""
        self.join(WAIT)
        return not self.is_alive()


def timed_get(port: int, timeout: float) -> float | None:
    """Runs in a helper thread: seconds until ``GET /hello`` on a new connection is
    answered, or None if not within ``timeout``."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except TimeoutError:
        return None
    assert data.endswith(b"\r\n\r\nhello")
    return time.monotonic() - started


def _fd_targets() -> list[str]:
    """What this process's descriptors point to (the server runs in it)."""
    targets = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (listdir's own one)
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
    return targets


def spool_files() -> int:
    """Open anonymous temporary files."""
    tmp = tempfile.gettempdir()
    return sum(
        target.startswith(tmp) and target.endswith(" (deleted)")
        for target in _fd_targets()
    )


def open_fds() -> int:
    """Open sockets and temporary files: what a connection and its spool hold. (Not
    every descriptor: libuv opens /dev/null once, on its first listen, for good.)"""
    return spool_files() + sum(target.startswith("socket:") for target in _fd_targets())


async def test_two_slow_readers_hold_no_thread_and_get_every_byte() -> None:
    """Two threads, two clients reading 8 MiB streamed responses at 100 KB/s: both
    app calls return at once (their rest waits in spool files), a third client is
    answered within a second, and the slow clients still get every byte in order."""
    app = Streamer(pieces=128)  # 8 MiB
    async with serving(app, threads=2) as (_, port):
        readers = [PacedReader(port, rate=100_000) for _ in range(2)]
        for reader in readers:
            reader.start()
        for reader in readers:
            assert await asyncio.to_thread(reader.head.wait, WAIT)
            assert reader.error is None
        latency = await asyncio.to_thread(timed_get, port, 1.0)
        assert latency is not None, "a bystander waited over 1 s for a thread"
        # Both app calls are over while their clients have read a fraction.
        assert await asyncio.to_thread(app.wait_returned, 2, 5.0)
        assert all(len(reader.body) < len(app.expected) // 2 for reader in readers)
        for reader in readers:
            reader.hurry.set()
        for reader in readers:
            assert await asyncio.to_thread(reader.wait_done)
            assert reader.error is None
            assert reader.outcome == "complete"
            assert bytes(reader.body) == app.expected


async def test_reader_below_min_rate_past_the_spool_is_dropped_within_a_window() -> (
    None
):
    """With a small spool, a response larger than it: the thread waits, and a client
    reading at 2 MB/s, below a 16 MiB/s minimum, is dropped after about one 2 s
    window, although it reads often enough for an idle timeout never to fire."""
    app = Streamer(pieces=1024)  # 64 MiB: 32 s at 2 MB/s
    before = spool_files()
    async with serving(
        app,
        response_spool_size=256 * 1024,
        timeout_write=2.0,
        min_write_rate=16 * 1024 * 1024,
    ) as (_, port):
        reader = PacedReader(port, rate=2_000_000)
        reader.start()
        assert await asyncio.to_thread(reader.head.wait, WAIT)
        started = time.monotonic()
        # The thread gives up after one window of waiting (the send buffer and the
        # spool fill at once), and the app's call is over.
        assert await asyncio.to_thread(app.wait_returned, 1, 5.0)
        assert time.monotonic() - started < 3.5
        # The client gets what the kernel had queued, then the end: cut off.
        assert await asyncio.to_thread(reader.wait_done)
        assert reader.error is None
        assert reader.outcome == "cut off"
    assert spool_files() == before


async def test_client_gone_mid_spool_leaves_no_open_file() -> None:
    """The app call returns with the rest of its response in a spool file; the client
    disconnects without reading it: the file is closed, no descriptor is left."""
    app = Streamer(pieces=128)  # 8 MiB, 3.5 of them in the kernel's buffers
    fds = open_fds()
    before = spool_files()
    async with serving(app) as (_, port):
        reader = PacedReader(port, rate=1_000)
        reader.start()
        assert await asyncio.to_thread(reader.head.wait, WAIT)
        assert await asyncio.to_thread(app.wait_returned, 1, 5.0)
        assert spool_files() == before + 1  # the rest of the response waits there
        reader.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        reader.sock.shutdown(socket.SHUT_RDWR)
        reader.hurry.set()  # so that it sees at once that its socket is shut
        assert await asyncio.to_thread(reader.wait_done)
    # The server has shut down, so every connection_lost has run.
    assert spool_files() == before
    assert open_fds() == fds


async def test_a_response_left_to_a_slow_reader_is_no_longer_in_flight() -> None:
    """--limit-concurrency counts requests running in a thread or waiting for one:
    once the app's call is over and the rest of its response waits in the spool for
    a slow reader, another client is served, not refused with a 503."""
    app = Streamer(pieces=128)  # 8 MiB
    async with serving(app, threads=2, limit_concurrency=1) as (_, port):
        reader = PacedReader(port, rate=100_000)
        reader.start()
        try:
            assert await asyncio.to_thread(reader.head.wait, WAIT)
            assert await asyncio.to_thread(app.wait_returned, 1, 5.0)
            latency = await asyncio.to_thread(timed_get, port, 2.0)  # 200 "hello"
            assert latency is not None
            assert len(reader.body) < len(app.expected) // 2  # still reading
        finally:
            reader.hurry.set()
            assert await asyncio.to_thread(reader.wait_done)
        assert reader.outcome == "complete"
        assert bytes(reader.body) == app.expected
