"""Zero-copy file responses (issue 13 item 3) over real loopback sockets: a
``wsgi.file_wrapper`` response of a regular file arrives byte-exact with its
Content-Length, goes out with a few ``os.sendfile`` calls (copies over TLS, or where
the kernel refuses), keeps the connection's order and keep-alive, frees the app's
thread at once, holds a slow reader to ``--min-write-rate``, and leaves no
descriptor behind however the connection ends.

The server runs in this process, on the test's loop (the stdlib's and uvloop, see
conftest.py), so ``os.sendfile`` is counted by wrapping it and descriptors by
reading /proc/self/fd. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aiogate import Server
from aiogate.file_sender import FILE_BYTES_PER_TURN, NUDGE
from tests.client import Client
from tests.test_observability import (
    Lines,
    access_lines,  # noqa: F401 - a fixture
)
from tests.test_server import serving
from tests.test_slow_readers import WAIT, PacedReader, timed_get
from tests.test_tls import Certs, certs  # noqa: F401 - a fixture

Environ = dict[str, Any]
MiB = 1024 * 1024


def make_file(directory: Path, size: int) -> tuple[Path, bytes]:
    """A file of ``size`` random bytes (so that a byte out of place shows)."""
    data = os.urandom(size)
    path = directory / f"file-{size}.bin"
    path.write_bytes(data)
    return path, data


class TrackedFile(io.FileIO):
    """The app's file; ``closed_files`` is released when the server closes it (the
    app's call is over: the thread is free)."""

    closed_files = threading.Semaphore(0)

    def close(self) -> None:
        if not self.closed:
            super().close()
            TrackedFile.closed_files.release()


class FileApp:
    """``/hello``: a small response. Anything else: ``path`` through
    ``wsgi.file_wrapper``, from ``offset``, with ``length`` as its Content-Length
    (None: none; the server declares the file's), after ``prefix`` written with
    ``write()`` if given."""

    def __init__(
        self,
        path: Path,
        *,
        offset: int = 0,
        length: int | None = None,
        prefix: bytes = b"",
    ) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.prefix = prefix
        TrackedFile.closed_files = threading.Semaphore(0)

    def __call__(self, environ: Environ, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/hello":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"hello"]
        file = TrackedFile(self.path, "rb")
        file.seek(self.offset)
        headers = [("Content-Type", "application/octet-stream")]
        if self.length is not None:
            headers.append(("Content-Length", str(self.length)))
        write = start_response("200 OK", headers)
        if self.prefix:
            write(self.prefix)
        return environ["wsgi.file_wrapper"](file, 64 * 1024)

    @staticmethod
    def wait_closed(count: int = 1, timeout: float = WAIT) -> bool:
        """Runs in a helper thread: True once ``count`` app files were closed."""
        deadline = time.monotonic() + timeout
        return all(
            TrackedFile.closed_files.acquire(
                timeout=max(0.0, deadline - time.monotonic())
            )
            for _ in range(count)
        )


class SendfileCalls:
    """``os.sendfile`` wrapped: each call's requested count and what it returned
    (None for EAGAIN)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int | None]] = []
        real = os.sendfile

        def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
            try:
                sent = real(out_fd, in_fd, offset, count)
            except BlockingIOError:
                self.calls.append((count, None))
                raise
            self.calls.append((count, sent))
            return sent

        monkeypatch.setattr(os, "sendfile", counting)

    @property
    def sent(self) -> int:
        return sum(sent or 0 for _, sent in self.calls)


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> SendfileCalls:
    return SendfileCalls(monkeypatch)


def descriptors_of(path: Path) -> int:
    """This process's open descriptors on ``path`` (the server's: it runs here)."""
    target = str(path)
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (listdir's own one)
            count += os.readlink(f"/proc/self/fd/{name}") == target
    return count


async def no_descriptors_of(path: Path) -> None:
    """Until nothing holds ``path`` open (the loop closes it on a turn of its own)."""
    async with asyncio.timeout(WAIT):
        while True:  # (polled, as test_listener polls the listener's count)
            if not descriptors_of(path):
                return
            await asyncio.sleep(0.01)


def get(path: bytes = b"/", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 1, 5 * MiB])
async def test_a_file_arrives_byte_exact_with_its_length(
    tmp_path: Path, sendfile_calls: SendfileCalls, size: int
) -> None:
    path, data = make_file(tmp_path, size)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        for _ in range(2):  # and again on the same connection: keep-alive
            await client.send(get())
            response = await client.response()
            assert response.status == 200
            assert response.header(b"content-length") == str(size).encode()
            assert response.header(b"transfer-encoding") is None
            assert response.body == data
        await client.send(get(b"/hello"))
        assert (await client.response()).body == b"hello"
        await client.close()
    # Zero-copy, but for a piece written through the transport each time the
    # socket was full (file_sender rule 3).
    waits = sum(sent is None for _, sent in sendfile_calls.calls)
    assert 0 <= 2 * size - sendfile_calls.sent <= waits * NUDGE
    assert all(count <= FILE_BYTES_PER_TURN for count, _ in sendfile_calls.calls)
    assert descriptors_of(path) == 0


async def test_a_1_mib_file_to_a_fast_reader_takes_a_few_sendfile_calls(
    tmp_path: Path, sendfile_calls: SendfileCalls
) -> None:
    path, data = make_file(tmp_path, MiB)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        await client.send(get())
        response = await client.response()
        await client.close()
    assert response.body == data
    assert response.header(b"content-length") == b"1048576"
    assert len(sendfile_calls.calls) <= 4, sendfile_calls.calls
    waits = sum(sent is None for _, sent in sendfile_calls.calls)
    assert MiB - sendfile_calls.sent <= waits * NUDGE


async def test_over_tls_the_file_is_copied_byte_exact(
    certs: Certs,  # noqa: F811 - the fixture
    tmp_path: Path,
    sendfile_calls: SendfileCalls,
) -> None:
    path, data = make_file(tmp_path, 3 * MiB + 7)
    context = ssl.create_default_context(cafile=str(certs.ca))
    app = FileApp(path)
    options = {
        "ssl_certfile": str(certs.server_cert),
        "ssl_keyfile": str(certs.server_key),
    }
    async with serving(app, **options) as (_, port):
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
            writer.write(get() + get(b"/hello"))
            client = Client(reader, writer)
            response = await client.response()
            assert (await client.response()).body == b"hello"
            await client.close()
    assert response.header(b"content-length") == str(len(data)).encode()
    assert response.body == data
    assert sendfile_calls.calls == []


async def test_where_the_kernel_refuses_sendfile_the_file_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def refused(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refused)
    path, data = make_file(tmp_path, 2 * MiB + 3)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        await client.send(get() + get(b"/hello"))
        assert (await client.response()).body == data
        assert (await client.response()).body == b"hello"
        await client.close()
    assert len(calls) == 1  # tried once, then copied


async def test_after_a_write_the_file_goes_chunked(
    tmp_path: Path, sendfile_calls: SendfileCalls
) -> None:
    # The head went out with the first write, without a length: the file's bytes
    # need the chunked framing, so they are copied, each piece framed.
    path, data = make_file(tmp_path, 300 * 1024)
    async with serving(FileApp(path, prefix=b"prefix:")) as (_, port):
        client = await Client.connect(port)
        await client.send(get() + get(b"/hello"))
        response = await client.response()
        assert (await client.response()).body == b"hello"
        await client.close()
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.body == b"prefix:" + data
    assert sendfile_calls.calls == []


async def test_head_gets_the_length_and_no_body(
    tmp_path: Path, sendfile_calls: SendfileCalls
) -> None:
    path, _ = make_file(tmp_path, 100_000)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        await client.send(get(method=b"HEAD") + get(b"/hello"))
        head = await client.response(b"HEAD")
        assert (await client.response()).body == b"hello"
        await client.close()
    assert head.header(b"content-length") == b"100000"
    assert head.body == b""
    assert sendfile_calls.calls == []
    assert descriptors_of(path) == 0


async def test_a_range_the_app_chose_by_seek_and_content_length(
    tmp_path: Path, sendfile_calls: SendfileCalls
) -> None:
    path, data = make_file(tmp_path, 2 * MiB)
    app = FileApp(path, offset=1000, length=MiB + 5)
    async with serving(app) as (_, port):
        client = await Client.connect(port)
        await client.send(get() + get(b"/hello"))
        response = await client.response()
        assert (await client.response()).body == b"hello"
        await client.close()
    assert response.header(b"content-length") == str(MiB + 5).encode()
    assert response.body == data[1000 : 1000 + MiB + 5]
    waits = sum(sent is None for _, sent in sendfile_calls.calls)
    assert MiB + 5 - sendfile_calls.sent <= waits * NUDGE


async def test_over_a_unix_socket_too(
    tmp_path: Path, sendfile_calls: SendfileCalls
) -> None:
    path, data = make_file(tmp_path, 3 * MiB)
    uds = str(tmp_path / "s")
    server = Server(FileApp(path), uds=uds)
    await server.start()
    try:
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_unix_connection(uds)
        client = Client(reader, writer)
        await client.send(get() + get(b"/hello"))
        assert (await client.response()).body == data
        assert (await client.response()).body == b"hello"
        await client.close()
    finally:
        await server.shutdown(timeout=5)
    waits = sum(sent is None for _, sent in sendfile_calls.calls)
    assert 3 * MiB - sendfile_calls.sent <= waits * NUDGE


async def test_a_file_found_shorter_than_announced_cuts_the_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the file were truncated after the app returned: sendfile meets its end.
    path, _ = make_file(tmp_path, MiB)
    monkeypatch.setattr(os, "sendfile", lambda *args: 0)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        await client.send(get())
        data, reset = await client.read_until_reset()
        await no_descriptors_of(path)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert len(data.partition(b"\r\n\r\n")[2]) < MiB
    assert reset  # a cut, never a FIN that could pass for the end


async def test_pipelined_requests_behind_a_file_come_out_in_order(
    tmp_path: Path,
) -> None:
    path, data = make_file(tmp_path, 4 * MiB)
    async with serving(FileApp(path)) as (_, port):
        client = await Client.connect(port)
        await client.send(get() + get(b"/hello") + get() + get(b"/hello"))
        bodies = [(await client.response()).body for _ in range(4)]
        await client.close()
    assert bodies == [data, b"hello", data, b"hello"]


async def test_the_access_log_counts_the_file_bytes(
    tmp_path: Path,
    access_lines: Lines,  # noqa: F811 - the fixture
) -> None:
    path, data = make_file(tmp_path, MiB + 1)
    options = {"access_log": True, "access_log_format": "json"}
    async with serving(FileApp(path), **options) as (_, port):
        client = await Client.connect(port)
        await client.send(get())
        assert (await client.response()).body == data
        await client.close()
        [line] = await asyncio.to_thread(access_lines.wait, 1)
    assert json.loads(line)["bytes"] == MiB + 1


async def test_a_slow_reader_frees_the_thread_and_is_cut_below_the_min_rate(
    tmp_path: Path,
) -> None:
    """One thread: the app's call is over as soon as the head is out (its file
    closed), so a second client is served at once while the first reads at 100
    KB/s, below a 4 MiB/s minimum: cut off after about one 1 s window. The
    duplicate the loop was sending from is closed with the connection."""
    path, _ = make_file(tmp_path, 48 * MiB)  # more than the kernel buffers
    options = {"threads": 1, "timeout_write": 1.0, "min_write_rate": 4 * MiB}
    async with serving(FileApp(path), **options) as (_, port):
        reader = PacedReader(port, rate=100_000)
        reader.start()
        assert await asyncio.to_thread(reader.head.wait, WAIT)
        assert await asyncio.to_thread(FileApp.wait_closed)  # the thread is free
        started = time.monotonic()
        assert descriptors_of(path) == 1  # the loop's duplicate, nothing else
        latency = await asyncio.to_thread(timed_get, port, 1.0)
        assert latency is not None, "the only thread was not free"
        assert await asyncio.to_thread(reader.wait_done)
        assert reader.error is None
        assert reader.outcome == "cut off"
        assert time.monotonic() - started < 4.0
        await no_descriptors_of(path)


async def test_a_client_gone_mid_file_leaves_no_descriptor(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 64 * MiB)
    async with serving(FileApp(path)) as (_, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(get())
            head = await asyncio.to_thread(sock.recv, 65536)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert await asyncio.to_thread(FileApp.wait_closed)
            assert descriptors_of(path) == 1  # the loop's duplicate
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        # Reset: the server's next sendfile fails, or its transport sees the reset.
        await no_descriptors_of(path)
        # The server goes on serving.
        client = await Client.connect(port)
        await client.send(get(b"/hello"))
        assert (await client.response()).body == b"hello"
        await client.close()


async def test_a_drain_lets_a_file_being_sent_finish(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, 16 * MiB)
    async with serving(FileApp(path)) as (server, port):
        reader = PacedReader(port, rate=1_000_000)
        reader.start()
        assert await asyncio.to_thread(reader.head.wait, WAIT)
        assert await asyncio.to_thread(FileApp.wait_closed)
        shutdown = asyncio.create_task(server.shutdown(timeout=WAIT))
        await asyncio.sleep(0)  # the task's first step: the drain begins
        assert not server.ready
        reader.hurry.set()
        assert await asyncio.to_thread(reader.wait_done)
        async with asyncio.timeout(WAIT):
            await shutdown
    assert reader.error is None
    assert reader.outcome == "complete"
    assert bytes(reader.body) == data
    assert descriptors_of(path) == 0
