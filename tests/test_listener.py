"""The connection budget, enforced at accept, over real loopback sockets: floods of idle
connections, clients that never read a large response, TLS handshakes that stall,
running out of descriptors, and the open-file limit.

Every accepted socket counts until it is closed, the refused ones too (in a fixed
overflow allowance), so a flood can never hold more than ``limit_connections +
OVERFLOW`` sockets on the server. Each test runs on the stdlib loop and on uvloop (see
conftest.py); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
from typing import Any

import pytest

from aiogate import Server, listener
from aiogate.listener import OVERFLOW
from tests.client import Client
from tests.test_server import hello, serving
from tests.test_tls import Certs, certs, client_context, serve_tls  # noqa: F401

Environ = dict[str, Any]
WAIT = 10.0
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def open_sockets() -> int:
    """Descriptors of this process that are sockets (the server's and the test's)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except FileNotFoundError:  # closed since the listing (the listing's own)
            pass
    return count


def stats(server: Server) -> dict[str, int]:
    """The listener's counts: ``open`` (client sockets accepted and not yet closed)
    and ``peak`` (the most ever open at once)."""
    assert server._listener is not None
    return server._listener.statistics()


async def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()
    for _, writer in connections:
        try:
            async with asyncio.timeout(WAIT):
                await writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass


async def served_again(port: int) -> None:
    """A bystander is served once the server has seen the flood go (bounded retry:
    the closes reach the server a moment after the test makes them)."""
    async with asyncio.timeout(WAIT):
        while True:
            client = await Client.connect(port)
            await client.send(GET)
            try:
                status = (await client.response()).status
            except ConnectionError:
                status = 0
            await client.close()
            if status == 200:
                return
            await asyncio.sleep(0.05)


async def test_a_flood_of_idle_connections_stays_within_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit, flood_size = 20, 200
    caplog.set_level(logging.WARNING, "aiogate.error")
    async with serving(hello, limit_connections=limit, timeout_keep_alive=30) as (
        server,
        port,
    ):
        baseline = open_sockets()  # the listener, the loop's own, earlier leftovers
        flood: list[Connection] = []
        try:
            for _ in range(flood_size):
                flood.append(await asyncio.open_connection("127.0.0.1", port))
                # The test holds len(flood) sockets; the server at most the budget.
                assert open_sockets() <= baseline + len(flood) + limit + OVERFLOW
            # The first `limit` are served (idle here); the next OVERFLOW get a 503 at
            # once; the rest wait in the backlog until a refused one is closed.
            reads = {
                asyncio.ensure_future(reader.read(4096)): writer
                for reader, writer in flood
            }
            answered: list[bytes] = []
            async with asyncio.timeout(WAIT):
                pending = set(reads)
                while len(answered) < OVERFLOW:
                    done, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    answered.extend(task.result() for task in done)
                    assert open_sockets() <= baseline + flood_size + limit + OVERFLOW
            for task in pending:
                task.cancel()
            for data in answered:
                assert data.startswith(b"HTTP/1.1 503 "), data
                assert b"\r\nRetry-After: 1\r\n" in data
            assert stats(server)["open"] <= limit + OVERFLOW
            assert stats(server)["peak"] <= limit + OVERFLOW
        finally:
            await close_all(flood)
        await served_again(port)
    warnings = [
        r for r in caplog.records if "Connection limit (20) reached" in r.getMessage()
    ]
    assert 1 <= len(warnings) <= 2  # rate-limited, not one per refusal


async def test_clients_that_never_read_a_large_response_stay_within_the_limit() -> None:
    big = b"x" * (4 * 1024 * 1024)
    calls: list[None] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        calls.append(None)
        start_response("200 OK", [("Content-Length", str(len(big)))])
        return [big]

    limit, count = 5, 40
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with serving(
        app, limit_connections=limit, timeout_write=30, timeout_keep_alive=30
    ) as (server, port):
        clients: list[Connection] = []
        try:
            for _ in range(count):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                clients.append((reader, writer))
            # Only the status line is read; the rest of a 200 is never read, so the
            # served connections stay open (lingering for a slow reader).
            async with asyncio.timeout(WAIT):
                statuses = [await reader.readexactly(12) for reader, _ in clients]
            assert statuses.count(b"HTTP/1.1 200") == limit
            assert statuses.count(b"HTTP/1.1 503") == count - limit
            assert len(calls) == limit
            assert stats(server)["peak"] <= limit + OVERFLOW
        finally:
            await close_all(clients)


async def https_get(port: int, context: ssl.SSLContext) -> bytes:
    """The response head to a GET over TLS (``b""`` if the connection failed)."""
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.write(GET_CLOSE)
        try:
            raw = await reader.read()
        except (ssl.SSLError, ConnectionError):
            raw = b""
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    return raw.partition(b"\r\n\r\n")[0]


async def served_over_tls(port: int, context: ssl.SSLContext) -> None:
    """Until a GET is served: refused (503) until the server has seen a place freed."""
    async with asyncio.timeout(WAIT):
        while True:
            head = await https_get(port, context)
            if head.startswith(b"HTTP/1.1 200 "):
                return
            assert head.startswith(b"HTTP/1.1 503 "), head
            await asyncio.sleep(0.05)


async def test_connections_in_the_tls_handshake_count(certs: Certs) -> None:  # noqa: F811
    context = client_context(certs, with_cert=False)
    async with serve_tls(certs, limit_connections=2, timeout_request_header=30) as (
        server
    ):
        port = server.sockets[0].getsockname()[1]
        # Two clients that connect and never send a ClientHello: accepted (before the
        # third, from the same backlog) and stalled in the handshake.
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        try:
            head = await https_get(port, context)
            assert head.startswith(b"HTTP/1.1 503 "), head
            assert b"\r\nRetry-After: 1" in head
            assert stats(server)["open"] == 3
        finally:
            await close_all(stalled)
        # A failed handshake (the client left) gives its place back.
        await served_over_tls(port, context)
        assert stats(server)["open"] <= 1


async def test_a_stalled_handshake_times_out_and_frees_its_place(
    certs: Certs,  # noqa: F811
) -> None:
    context = client_context(certs, with_cert=False)
    async with serve_tls(certs, limit_connections=1, timeout_request_header=0.3) as (
        server
    ):
        port = server.sockets[0].getsockname()[1]
        stalled = await asyncio.open_connection("127.0.0.1", port)
        try:
            # Refused until the stalled client is cut off at the handshake deadline.
            await served_over_tls(port, context)
            async with asyncio.timeout(WAIT):
                assert await stalled[0].read() == b""  # the server closed it
        finally:
            await close_all([stalled])
        assert stats(server)["open"] <= 1


async def accepted(server: Server, count: int) -> None:
    """Until the server has accepted ``count`` sockets (a bounded poll: nothing
    signals an accept to the test)."""
    async with asyncio.timeout(WAIT):
        while True:
            if stats(server)["open"] >= count:
                return
            await asyncio.sleep(0.01)


async def test_shutdown_waits_for_a_tls_handshake_in_progress(
    certs: Certs,  # noqa: F811
) -> None:
    server = serve_tls(certs, timeout_request_header=30)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await accepted(server, 1)
        stopping = asyncio.ensure_future(server.shutdown(timeout=WAIT))
        await asyncio.sleep(0)  # the drain has begun: nothing is accepted any more
        assert server.sockets == []
        # The handshake was under way (accepted, no ClientHello yet): it completes,
        # and its request is served with Connection: close.
        async with asyncio.timeout(WAIT):
            await writer.start_tls(
                client_context(certs, with_cert=False), server_hostname="localhost"
            )
            writer.write(GET)
            client = Client(reader, writer)
            response = await client.response()
            await stopping
        assert response.status == 200
        assert response.header(b"connection") == b"close"
    finally:
        await close_all([(reader, writer)])
    assert stats(server)["open"] == 0


async def test_shutdown_aborts_a_stalled_handshake_at_its_deadline(
    certs: Certs,  # noqa: F811
) -> None:
    server = serve_tls(certs, timeout_request_header=30)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    stalled = await asyncio.open_connection("127.0.0.1", port)
    try:
        await accepted(server, 1)
        async with asyncio.timeout(WAIT):
            await server.shutdown(timeout=0.3)
            with contextlib.suppress(ConnectionError):
                assert await stalled[0].read() == b""
        assert stats(server) == {"open": 0, "peak": 1, "connecting": 0, "accepting": 0}
    finally:
        await close_all([stalled])


async def test_out_of_descriptors_logs_once_and_backs_off_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(listener, "ACCEPT_RETRY_DELAY", 0.05)
    real_accept = socket.socket.accept
    loop = asyncio.get_running_loop()
    failing_until = loop.time() + 0.5
    calls: list[None] = []

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        calls.append(None)
        if loop.time() < failing_until:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    caplog.set_level(logging.DEBUG, "aiogate.error")
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        await client.send(GET)
        assert (await client.response()).status == 200
        await client.close()
    errors = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "open-file limit" in r.getMessage()
    ]
    assert len(errors) == 1
    # A retry every 0.05 s for 0.5 s, not a busy loop (that makes thousands).
    assert len(calls) < 30


async def test_servers_sharing_a_listening_socket_lose_the_accept_race_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Worker processes share one listening socket; two servers in this process on
    # duplicates of it are woken for the same connections in the same way.
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    caplog.set_level(logging.WARNING, "aiogate.error")
    first, second = Server(hello), Server(hello)
    await first.start([sock])
    await second.start([sock.dup()])
    try:
        clients = [await Client.connect(port) for _ in range(20)]
        for client in clients:
            await client.send(GET)
            assert (await client.response()).status == 200
            await client.close()
    finally:
        await first.shutdown(timeout=5)
        await second.shutdown(timeout=5)
    assert not caplog.records


@pytest.mark.parametrize(
    ("hard", "expected", "warned"),
    [
        # 2 x 2048 (a socket and a spilled body per connection) + 64 refused + 8
        # threads + 256 spare
        (1_000_000, 4424, False),
        (4096, 4096, True),
    ],
)
async def test_the_open_file_limit_is_raised_at_start(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hard: int,
    expected: int,
    warned: bool,
) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, hard))
    monkeypatch.setattr(
        resource, "setrlimit", lambda which, limits: set_to.append(limits)
    )
    caplog.set_level(logging.WARNING, "aiogate.error")
    async with serving(hello, limit_connections=2048, threads=8):
        pass
    assert set_to == [(expected, hard)]
    messages = [
        r.getMessage() for r in caplog.records if "open-file" in r.getMessage().lower()
    ]
    if warned:
        [message] = messages
        assert "4096" in message
        assert "4424" in message
    else:
        assert messages == []


async def test_a_tls_client_that_never_closes_gives_its_place_back(
    certs: Certs,  # noqa: F811
) -> None:
    # It reads the whole response and our close_notify, and never answers: the
    # loop waited 30 s (its ssl_shutdown_timeout) for that answer, slot held.
    context = client_context(certs, with_cert=False)
    async with serve_tls(certs, limit_connections=4) as server:
        port = server.sockets[0].getsockname()[1]

        def read_and_keep() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(GET_CLOSE)
            while tls.recv(65536):  # until our close_notify: b""
                pass
            return tls  # open, no close_notify of its own

        kept = await asyncio.to_thread(read_and_keep)
        try:
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(WAIT):
                while True:  # (as served_over_tls: the listener's count, polled)
                    if not stats(server)["open"]:
                        break
                    await asyncio.sleep(0.05)
            assert asyncio.get_running_loop().time() - started < 5.0
        finally:
            kept.close()
