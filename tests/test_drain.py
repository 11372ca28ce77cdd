"""The drain loses nothing (issue 12, item 5), over real loopback sockets.

A keep-alive connection is never closed by the server while its client may be sending
a request on it: a response in flight when the drain starts says ``Connection:
close``; a response whose head went out before (without it) leaves the connection
open, and so does an idle connection, for ``DRAIN_GRACE``, in which the next request
is served with ``Connection: close``; after the grace an idle connection is closed
with a FIN, not a reset. The same drain runs on SIGTERM, SIGHUP, ``--max-requests``
and after ``--shutdown-delay`` (the process-level tests under load are in
``test_workers.py``).

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aiogate.protocol import DRAIN_GRACE, H11Protocol
from tests.client import Client
from tests.test_server import hello, serving

Environ = dict[str, Any]
WAIT = 10.0
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


def drain_reached(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once the drain has reached a connection (``H11Protocol.shutdown`` ran):
    the moment a request sent by the client is most at risk."""
    reached = asyncio.Event()
    original = H11Protocol.shutdown

    def shutdown(self: H11Protocol) -> None:
        original(self)
        reached.set()

    monkeypatch.setattr(H11Protocol, "shutdown", shutdown)
    return reached


@pytest.mark.parametrize(
    ("delay", "think_time"),
    [(0.0, 0.0), (0.0, 0.005), (0.2, 0.0)],
    ids=["at-once", "a-few-ms-later", "after-shutdown-delay"],
)
async def test_a_request_sent_as_the_drain_starts_is_served_with_close(
    monkeypatch: pytest.MonkeyPatch, delay: float, think_time: float
) -> None:
    reached = drain_reached(monkeypatch)
    async with serving(hello) as (server, port):
        client = await Client.connect(port)
        await client.send(GET)
        response = await client.response()
        assert response.status == 200
        shutdown = asyncio.create_task(server.shutdown(timeout=WAIT, delay=delay))
        async with asyncio.timeout(WAIT):
            await reached.wait()
        if think_time:
            # The client's own pause between requests, not a synchronisation.
            await asyncio.sleep(think_time)
        await client.send(NEXT)
        response = await client.response()
        assert (response.status, response.body) == (200, b"Hello, /next")
        assert response.header(b"connection") == b"close"
        assert await client.closed_by_server()
        async with asyncio.timeout(WAIT):
            await shutdown


@pytest.mark.parametrize("timeout_keep_alive", [5.0, 0.3])
async def test_an_idle_connection_is_closed_after_the_grace_with_a_fin(
    timeout_keep_alive: float,
) -> None:
    async with serving(hello, timeout_keep_alive=timeout_keep_alive) as (server, port):
        client = await Client.connect(port)
        await client.send(GET)
        assert (await client.response()).status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        shutdown = asyncio.create_task(server.shutdown(timeout=WAIT))
        # EOF, not ConnectionResetError: our FIN, with nothing unread on our side.
        assert await client.closed_by_server()
        waited = loop.time() - started
        if timeout_keep_alive > DRAIN_GRACE:
            assert waited >= DRAIN_GRACE
        else:  # never held open past the keep-alive timeout it would have had
            assert waited < DRAIN_GRACE
        async with asyncio.timeout(WAIT):
            await shutdown


async def test_a_response_begun_before_the_drain_does_not_close_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its head went out without ``Connection: close``, so its client will send the
    next request as soon as it has the body: the connection stays open for it."""
    release = threading.Event()

    def two_parts(environ: Environ, start_response: Any) -> Iterator[bytes]:
        if environ["PATH_INFO"] != "/slow":
            yield from hello(environ, start_response)
            return
        start_response("200 OK", [("Content-Length", "10")])
        yield b"first"
        release.wait(WAIT)
        yield b"-last"

    reached = drain_reached(monkeypatch)
    async with serving(two_parts) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = Client(reader, writer)
        await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"connection:" not in head.lower()
        shutdown = asyncio.create_task(server.shutdown(timeout=WAIT))
        async with asyncio.timeout(WAIT):
            await reached.wait()
        release.set()
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(10) == b"first-last"
        await client.send(NEXT)
        response = await client.response()
        assert (response.status, response.body) == (200, b"Hello, /next")
        assert response.header(b"connection") == b"close"
        assert await client.closed_by_server()
        async with asyncio.timeout(WAIT):
            await shutdown
