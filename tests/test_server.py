"""The whole server over real loopback sockets: keep-alive, pipelining, bodies,
100-continue, framing, backpressure, disconnects, errors and shutdown.

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import aiogate
from aiogate import Server
from tests.client import Client

Environ = dict[str, Any]


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[tuple[Server, int]]:
    options.setdefault("port", 0)
    server = Server(app, **options)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        await server.shutdown(timeout=5)


def hello(environ: Environ, start_response: Any) -> list[bytes]:
    body = b"Hello, " + environ["PATH_INFO"].encode("latin-1")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def echo(environ: Environ, start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def streaming(environ: Environ, start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b""
    yield b"two"


async def test_get_keep_alive_and_default_headers() -> None:
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        for path in (b"/a", b"/b", b"/c"):
            await client.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await client.response()
            assert response.status == 200
            assert response.body == b"Hello, " + path
            assert len(response.all(b"date")) == 1
            assert (
                response.header(
                    b"server",
                )
                is not None
            )
            assert response.header(b"connection") is None
        await client.close()


async def test_pipelined_requests_answered_in_order() -> None:
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
        )
        bodies = [(await client.response()).body for _ in range(5)]
        assert bodies == [b"Hello, /%d" % i for i in range(5)]
        await client.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_request_bodies(request_bytes: bytes) -> None:
    async with serving(echo) as (_, port):
        client = await Client.connect(port)
        await client.send(request_bytes + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response(b"POST")).body == b"hello world"
        assert (await client.response()).body == b""  # the next request still works
        await client.close()


async def test_large_upload_intact() -> None:
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB
    async with serving(echo) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)
        )
        await client.send(payload)
        response = await client.response(b"POST")
        assert response.body == payload
        await client.close()


async def test_expect_100_continue_sent_before_the_body() -> None:
    async with serving(echo) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await client.response(b"POST", stop_after_head=True)
        assert interim.status == 100
        await client.send(b"body")
        response = await client.response(b"POST")
        assert (response.status, response.body) == (200, b"body")
        await client.close()


async def test_expect_100_continue_and_app_ignoring_the_body_keeps_connection() -> None:
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert (await client.response(b"POST", stop_after_head=True)).status == 100
        await client.send(b"body" + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await client.response(b"POST")
        assert response.status == 200
        assert response.header(b"connection") is None
        assert (await client.response()).body == b"Hello, /next"
        await client.close()


async def test_expect_100_continue_over_the_body_limit_gets_413_at_once() -> None:
    async with serving(echo, limit_request_body=1000) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = await client.response(b"POST")
        assert response.status == 413
        assert response.informational == []
        assert await client.closed_by_server()


async def test_no_100_continue_for_http10() -> None:
    async with serving(echo) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbody"
        )
        raw = await client.read_until_eof()
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert b"100 Continue" not in raw
        assert raw.endswith(b"\r\n\r\nbody")


async def test_head_has_no_body() -> None:
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        head = await client.response(b"HEAD")
        assert (head.status, head.body, head.header(b"content-length")) == (
            200,
            b"",
            b"9",
        )
        assert (await client.response()).body == b"Hello, /y"
        await client.close()


async def test_streamed_response_is_chunked_on_11_and_close_delimited_on_10() -> None:
    async with serving(streaming) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await client.response()
        assert response.header(b"transfer-encoding") == b"chunked"
        assert response.body == b"one,two"
        await client.close()

        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        raw = await client.read_until_eof()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert b"content-length" not in head.lower()
        assert body == b"one,two"


async def test_bad_request_gets_400_and_close() -> None:
    async with serving(hello) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
            b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        raw = await client.read_until_eof()
        assert raw.startswith(b"HTTP/1.1 400 ")
        assert b"smuggled" not in raw
        assert raw.count(b"HTTP/1.1") == 1


async def test_app_error_before_body_is_500_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(environ: Environ, start_response: Any) -> list[bytes]:
        raise RuntimeError("boom-secret")

    caplog.set_level(logging.ERROR, logger="aiogate.error")
    async with serving(broken) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await client.response()
        assert response.status == 500
        assert b"boom-secret" not in response.body
        await client.close()
    records = [
        r for r in caplog.records if r.exc_info and "boom-secret" in str(r.exc_info[1])
    ]
    assert len(records) == 1


async def test_app_error_after_headers_aborts_connection() -> None:
    def fails_midway(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("mid-body")

    async with serving(fails_midway) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # The cut response ends with a reset, never a clean chunked ending (and the
        # reset may discard what the client had not read yet).
        raw, reset = await client.read_until_reset()
        assert reset
        assert not raw.endswith(b"0\r\n\r\n")


class ClosingBody:
    """An iterable whose ``close()`` sets an event; yields ``count`` chunks."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.chunk = b"x" * size
        self.yielded = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.yielded += 1
            yield self.chunk

    def close(self) -> None:
        self.closed.set()


async def test_slow_reader_pauses_the_app_thread_then_gets_every_byte() -> None:
    body = ClosingBody(count=2000, size=16 * 1024)  # 32 MiB

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response(
            "200 OK", [("Content-Length", str(body.count * len(body.chunk)))]
        )
        return body

    # Without the response spool (tests/test_slow_readers.py has it), backpressure
    # reaches the app's thread.
    async with serving(app, response_spool_size=0) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # Not reading: the app must stall long before it has produced everything.
        await asyncio.to_thread(body.closed.wait, 0.5)
        assert not body.closed.is_set()
        assert body.yielded < body.count // 2
        response = await client.response()
        assert len(response.body) == body.count * len(body.chunk)
        assert await asyncio.to_thread(body.closed.wait, 5)
        await client.close()


async def test_client_gone_mid_response_closes_iterable() -> None:
    body = ClosingBody(count=100_000, size=16 * 1024)

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    async with serving(app) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await client.response(stop_after_head=True)
        client.writer.transport.abort()
        assert await asyncio.to_thread(body.closed.wait, 5)
        assert body.yielded < body.count


async def test_slow_uploader_does_not_hold_a_thread() -> None:
    """One thread, a client trickling its body: others are served meanwhile, and the
    slow one is answered once its body is complete."""
    async with serving(echo, threads=1) as (_, port):
        slow = await Client.connect(port)
        await slow.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        for _ in range(3):
            other = await Client.connect(port)
            await other.send(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
            )
            assert (await other.response(b"POST")).body == b"ok"
            await other.close()
        await slow.send(b"def")
        assert (await slow.response(b"POST")).body == b"abcdef"
        await slow.close()


async def test_large_upload_is_spooled_to_a_file_and_arrives_intact() -> None:
    seen: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append(hasattr(stream, "fileno") and stream.fileno() >= 0)
        digest = hashlib.sha256()
        while chunk := stream.read(65536):
            digest.update(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [digest.hexdigest().encode()]

    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
    async with serving(app, body_buffer_size=64 * 1024) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)
        )
        await client.send(payload)
        response = await client.response(b"POST")
        assert response.body == hashlib.sha256(payload).hexdigest().encode()
        assert seen == [True]
        await client.close()


async def test_chunked_upload_over_the_limit_gets_413() -> None:
    async with serving(echo, limit_request_body=10_000) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1000\r\n"
            + b"x" * 4096
            + b"\r\n"
        )
        await client.send(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        await client.send(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        response = await client.response(b"POST")
        assert response.status == 413
        assert await client.closed_by_server()


async def test_shutdown_finishes_in_flight_request_and_closes_idle() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(environ: Environ, start_response: Any) -> list[bytes]:
        started.set()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    server = Server(slow, port=0)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    idle = await Client.connect(port)
    busy = await Client.connect(port)
    await busy.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.to_thread(started.wait, 5)
    shutdown = asyncio.create_task(server.shutdown(timeout=10))
    assert await idle.closed_by_server()
    release.set()
    response = await busy.response()
    assert (response.status, response.body) == (200, b"done")
    assert response.header(b"connection") == b"close"
    assert await busy.closed_by_server()
    async with asyncio.timeout(10):
        await shutdown
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(port)


async def test_async_with_and_serve_forever() -> None:
    async with Server(hello, port=0) as server:
        port = server.sockets[0].getsockname()[1]
        task = asyncio.create_task(server.serve_forever())
        client = await Client.connect(port)
        await client.send(b"GET /z HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).body == b"Hello, /z"
        await client.close()
    async with asyncio.timeout(5):
        await task


async def test_a_failing_shutdown_still_ends_serve_forever(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A step of the drain that raises (here the pool's, as a lazy import failed once
    # after --user) must not leave serve_forever waiting for ever.
    from aiogate.thread_pool import ThreadPool

    def broken(self: ThreadPool, timeout: float | None = None) -> bool:
        raise ImportError("no module named 'concurrent.futures.thread'")

    monkeypatch.setattr(ThreadPool, "shutdown", broken)
    async with asyncio.timeout(5), Server(hello, port=0) as server:
        task = asyncio.create_task(server.serve_forever())
        await server.shutdown()
        await task
    assert "Shutdown failed" in caplog.text
    assert "concurrent.futures.thread" in caplog.text


async def test_idle_keep_alive_connection_is_closed_after_timeout() -> None:
    async with serving(hello, timeout_keep_alive=0.2) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await client.closed_by_server()
        # Closed by the keep-alive deadline (armed just before the response reached
        # us; checked a quarter-timeout at a time), not at once.
        assert 0.1 <= loop.time() - started < 2.0


# -- the request corpus over real sockets ---------------------------------------------

CORPUS = Path(__file__).resolve().parent / "requests"


def body_size(environ: Environ, start_response: Any) -> list[bytes]:
    body = str(len(environ["wsgi.input"].read())).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def test_invalid_corpus_gets_its_status_and_a_close() -> None:
    async with serving(body_size) as (_, port):
        for path in sorted((CORPUS / "invalid").glob("*.http")):
            expected = int(path.name[:3])
            client = await Client.connect(port)
            # Whatever follows a bad request must never be answered; the *-eof-*
            # cases are only bad once the client's EOF ends them early.
            follow = (
                b"" if "-eof-" in path.name else b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            await client.send(path.read_bytes() + follow)
            client.writer.write_eof()
            raw = await client.read_until_eof()
            assert raw.startswith(b"HTTP/1.1 %d " % expected), (path.name, raw[:80])
            assert b"HTTP/1.1 200 " not in raw, (
                path.name
            )  # the follow-up is never served


async def test_valid_corpus_is_answered_and_connection_kept() -> None:
    async with serving(body_size) as (_, port):
        for path in sorted((CORPUS / "valid").glob("*.http")):
            expected = json.loads(path.with_suffix(".json").read_text())
            method = expected["method"].encode()
            client = await Client.connect(port)
            await client.send(path.read_bytes())
            response = await client.response(method)
            assert response.status == 200, path.name
            if method != b"HEAD":
                body = expected["body"].encode("latin-1")
                assert response.body == str(len(body)).encode(), path.name
            await client.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": "x"}, "threads must be an integer, not 'x'"),
        ({"port": True}, "port must be an integer, not True"),
        ({"timeout_write": "1"}, "timeout_write must be a number, not '1'"),
    ],
)
def test_an_embedding_programs_wrong_types_are_config_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(aiogate.ConfigError, match=message):
        Server(hello, **options)


COMMAND_LINE_ONLY = {
    "workers": 2,
    "preload": True,
    "reload": True,
    "pid": "/tmp/x.pid",
    "user": "nobody",
    "group": "nogroup",
    "umask": "0027",
    "env_file": ".env",
}


def test_the_command_line_only_settings_are_these() -> None:
    assert set(COMMAND_LINE_ONLY) == set(aiogate.config.COMMAND_LINE_ONLY)


@pytest.mark.parametrize(("name", "value"), COMMAND_LINE_ONLY.items())
def test_embedding_refuses_what_only_the_command_line_does(
    name: str, value: object
) -> None:
    flag = "--" + name.replace("_", "-")
    said = rf"serves one server in this process: {name} is for the command line "
    with pytest.raises(aiogate.ConfigError, match=said + rf"\(aiogate serve {flag}\)"):
        aiogate.run(hello, port=0, **{name: value})
    with pytest.raises(aiogate.ConfigError, match="aiogate.run " + said):
        aiogate.run(hello, aiogate.Config(**{name: value}))
    with pytest.raises(aiogate.ConfigError, match="Server " + said):
        Server(hello, port=0, **{name: value})
    # At their defaults they are no trouble.
    Server(hello, port=0, **{name: getattr(aiogate.Config(), name)})


def test_embedding_names_every_command_line_only_setting_at_once() -> None:
    with pytest.raises(aiogate.ConfigError, match="workers, pid are for the command"):
        Server(hello, workers=3, pid="p")
