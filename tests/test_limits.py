"""Limits, timeouts, load shedding, the drain and proxy headers, over real loopback
sockets: what a hostile, slow, spoofing or overloading client sees, and that the
server keeps serving others.

Each test runs on the stdlib loop and on uvloop (see conftest.py). Timeouts are set
short here; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import h11
import pytest

from aiogate import Server
from aiogate.errors import ConfigError
from tests.client import Client
from tests.test_server import hello, serving

Environ = dict[str, Any]
WAIT = 10.0
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Gate:
    """An app that blocks until released, and tells the test when it has started."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, environ: Environ, start_response: Any) -> list[bytes]:
        self.calls += 1
        self.entered.release()
        self.release.wait(WAIT)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, timeout=WAIT)


async def test_slowloris_head_gets_408_and_others_are_served() -> None:
    async with serving(hello, timeout_request_header=0.3) as (_, port):
        slow = await Client.connect(port)
        await slow.send(b"GET / HTTP/1.1\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        fast = await Client.connect(port)
        await fast.send(GET)
        assert (await fast.response()).status == 200
        for _ in range(3):  # trickling does not restart the clock
            await slow.send(b"X-A: b\r\n")
            await asyncio.sleep(0.05)
        response = await slow.response()
        assert response.status == 408
        assert response.header(b"connection") == b"close"
        assert loop.time() - started < 5.0
        assert await slow.closed_by_server()
        await fast.close()


async def test_stalled_body_gets_408() -> None:
    async with serving(hello, timeout_request_body=0.3) as (_, port):
        client = await Client.connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        response = await client.response(b"POST")
        assert response.status == 408
        assert await client.closed_by_server()


async def test_stuck_app_is_answered_by_the_deadline_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/stuck":
            return gate(environ, start_response)
        return hello(environ, start_response)

    with caplog.at_level(logging.ERROR, "aiogate.error"):
        async with serving(app, threads=1, timeout_request=0.3) as (server, port):
            stuck = await Client.connect(port)
            await stuck.send(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await stuck.response()
            assert response.status == 503
            assert await stuck.closed_by_server()
            # The only thread is stuck, yet the next request is served: a new
            # thread took its place.
            other = await Client.connect(port)
            await other.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await other.response()).body == b"Hello, /ok"
            await other.close()
            assert server._pool is not None
            assert server._pool.statistics()["stuck"] == 1
            gate.release.set()
    [record] = [r for r in caplog.records if "request timeout" in r.getMessage()]
    assert "GET /stuck" in record.getMessage()
    assert "in __call__" in record.getMessage()  # the stuck frame, from the stack
    assert "self.release.wait(WAIT)" in record.getMessage()


async def test_overrun_after_the_response_began_aborts_the_connection() -> None:
    release = threading.Event()

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        release.wait(WAIT)
        yield b"rest"

    async with serving(app, timeout_request=0.3) as (_, port):
        client = await Client.connect(port)
        await client.send(GET)
        # An abort: a reset, or an EOF inside the chunked body; never a clean end.
        with pytest.raises((ConnectionError, h11.RemoteProtocolError)):
            await client.response()
        release.set()
        await client.close()


async def test_requests_waiting_too_long_for_a_thread_are_shed() -> None:
    gate = Gate()
    async with serving(gate, threads=1, max_queue_wait=0.2) as (_, port):
        busy = await Client.connect(port)
        await busy.send(GET)
        await gate.wait_entered()
        queued = await Client.connect(port)
        await queued.send(GET)
        response = await queued.response()
        assert response.status == 503
        assert response.header(b"retry-after") == b"1"
        assert await queued.closed_by_server()
        gate.release.set()
        assert (await busy.response()).body == b"done"
        assert gate.calls == 1  # the shed request never reached the app
        await busy.close()


async def test_concurrency_limit() -> None:
    gate = Gate()
    async with serving(gate, threads=4, limit_concurrency=1) as (_, port):
        first = await Client.connect(port)
        await first.send(GET)
        await gate.wait_entered()
        second = await Client.connect(port)
        await second.send(GET)
        response = await second.response()
        assert (response.status, response.header(b"retry-after")) == (503, b"1")
        assert await second.closed_by_server()
        gate.release.set()
        assert (await first.response()).status == 200
        await first.close()


async def test_connection_limit_answers_503_and_frees_up() -> None:
    async with serving(hello, limit_connections=2) as (_, port):
        clients = [await Client.connect(port) for _ in range(2)]
        for client in clients:  # both are accepted and served
            await client.send(GET)
            assert (await client.response()).status == 200
        extra = await Client.connect(port)
        response = await extra.response()
        assert (response.status, response.header(b"retry-after")) == (503, b"1")
        assert await extra.closed_by_server()
        await clients[0].close()
        # Once a slot is free again, new connections are served (bounded retry: the
        # server sees the close a moment after we make it).
        async with asyncio.timeout(WAIT):
            while True:
                again = await Client.connect(port)
                await again.send(GET)
                response = await again.response()
                await again.close()
                if response.status == 200:
                    break
        await clients[1].close()


async def test_upload_over_the_limit_by_content_length_is_refused_unread() -> None:
    async with serving(hello, limit_request_body=100) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + b"x" * 101
        )
        assert (await client.response(b"POST")).status == 413
        assert await client.closed_by_server()


async def test_shutdown_delay_keeps_serving_while_not_ready() -> None:
    server = Server(hello, port=0)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    assert server.ready
    shutdown = asyncio.create_task(server.shutdown(timeout=5, delay=0.5))
    await asyncio.sleep(0)
    assert not server.ready
    client = await Client.connect(port)  # still accepted during the delay
    await client.send(GET)
    response = await client.response()
    assert response.status == 200
    assert response.header(b"connection") is None  # not draining yet
    async with asyncio.timeout(WAIT):
        await shutdown
    assert await client.closed_by_server()


async def test_drain_serves_a_request_already_in_the_socket_buffer() -> None:
    server = Server(hello, port=0)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    client = await Client.connect(port)
    await client.send(GET)
    assert (await client.response()).status == 200
    # The next request is on its way as the drain starts: it is served, not cut.
    await client.send(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
    shutdown = asyncio.create_task(server.shutdown(timeout=5))
    response = await client.response()
    assert (response.status, response.body) == (200, b"Hello, /last")
    assert response.header(b"connection") == b"close"
    assert await client.closed_by_server()
    async with asyncio.timeout(WAIT):
        await shutdown


# -- proxy headers ----------------------------------------------------------------------


def environ_json(environ: Environ, start_response: Any) -> list[bytes]:
    keys = (
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_PORT",
        "wsgi.url_scheme",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
        "SCRIPT_NAME",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_FORWARDED",
    )
    body = json.dumps({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


SPOOFED = (
    b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 6.6.6.6\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n"
    b"Forwarded: for=7.7.7.7;proto=https\r\n\r\n"
)


async def test_spoofed_proxy_headers_from_an_untrusted_peer_change_nothing() -> None:
    async with serving(environ_json, forwarded_allow_ips="10.0.0.1") as (_, port):
        client = await Client.connect(port)
        await client.send(SPOOFED)
        seen = json.loads((await client.response()).body)
        await client.close()
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["wsgi.url_scheme"] == "http"
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"]) == ("example.com", "example.com")
    # Removed, so an app or middleware cannot be fooled by them either.
    assert seen["HTTP_X_FORWARDED_FOR"] is None
    assert seen["HTTP_FORWARDED"] is None


async def test_a_trusted_proxy_sets_client_scheme_and_host() -> None:
    async with serving(environ_json, root_path="/app") as (_, port):  # loopback trusted
        client = await Client.connect(port)
        await client.send(
            b"GET / HTTP/1.1\r\nHost: internal:8000\r\n"
            b"X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Host: shop.example\r\nX-Forwarded-Prefix: /store\r\n\r\n"
        )
        seen = json.loads((await client.response()).body)
        await client.close()
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["REMOTE_HOST"] == "203.0.113.7"  # follows it (RFC 3875 §4.1.9)
    assert seen["REMOTE_PORT"] is None  # the proxy's own port would mislead
    assert seen["wsgi.url_scheme"] == "https"
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == (
        "shop.example",
        "shop.example",
        "443",
    )
    assert seen["SCRIPT_NAME"] == "/store/app"
    assert seen["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1"  # kept, as uvicorn


async def test_rfc7239_forwarded_mode() -> None:
    async with serving(environ_json, proxy_headers="forwarded") as (_, port):
        client = await Client.connect(port)
        await client.send(SPOOFED)  # from a trusted peer this time
        seen = json.loads((await client.response()).body)
        await client.close()
    assert seen["REMOTE_ADDR"] == "7.7.7.7"  # Forwarded, not X-Forwarded-For
    assert seen["wsgi.url_scheme"] == "https"
    assert seen["HTTP_HOST"] == "example.com"


async def test_proxy_headers_off_removes_them() -> None:
    async with serving(environ_json, proxy_headers="off") as (_, port):
        client = await Client.connect(port)
        await client.send(SPOOFED)
        seen = json.loads((await client.response()).body)
        await client.close()
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_FOR"] is None
    assert seen["HTTP_FORWARDED"] is None


def test_a_bad_trust_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not-an-ip"):
        Server(hello, forwarded_allow_ips="127.0.0.1,not-an-ip")


async def body_refused_for_want_of_a_file(caplog: pytest.LogCaptureFixture) -> str:
    """POST a body over --body-buffer-size while no temporary file can be made:
    the client gets a 503 with Retry-After and a close, and the operator one ERROR
    line, whose text is returned."""
    async with serving(hello, body_buffer_size=16) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        )
        response = await client.response(b"POST")
        assert response.status == 503
        assert response.header(b"retry-after") == b"1"
        assert await client.closed_by_server()
    [line] = [
        r
        for r in caplog.records
        if "temporary file" in r.getMessage() and r.levelname == "ERROR"
    ]  # (and the startup warning, which says so too)
    return line.getMessage()


async def test_a_body_that_cannot_be_stored_gets_a_503_and_a_log_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A read-only or full TMPDIR, or no descriptors left: the client used to get a
    # reset with nothing said, and the operator nothing in the log.
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert str(tmp_path / "missing") in await body_refused_for_want_of_a_file(caplog)


async def test_a_body_with_no_usable_temporary_directory_gets_a_503_and_a_log_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A read-only root and no tmpfs: tempfile finds no usable directory at all, and
    # gettempdir() itself raises (the client got an empty reply, nothing logged).
    import tempfile

    def no_directory() -> str:
        raise FileNotFoundError("No usable temporary directory found in ['/tmp']")

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_get_default_tempdir", no_directory)
    message = await body_refused_for_want_of_a_file(caplog)
    assert "No usable temporary directory" in message
