"""Access log, metrics and health endpoints over real sockets: the JSON access line of
a hostile client parses back intact, health and metrics answer from the event loop
while every thread is blocked, and every refusal is counted under its own reason.
(Several workers: ``test_metrics_workers``; the shared region: ``test_tally``.)"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aiogate import Server
from tests.client import Client
from tests.test_access_log import HOSTILE_AGENT
from tests.test_limits import Gate
from tests.test_server import hello, serving

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
ENDPOINTS = {
    "liveness_path": "/livez",
    "readiness_path": "/readyz",
    "metrics_path": "/metrics",
}


class Lines(logging.Handler):
    """Collects access lines; ``wait(n)`` returns once n lines arrived (bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.arrived = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.arrived.release()

    def wait(self, count: int) -> list[str]:
        for _ in range(count):
            assert self.arrived.acquire(timeout=10)
        return self.lines


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    logger = logging.getLogger("aiogate.access")
    handler = Lines()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


async def get(port: int, path: str, **headers: str) -> Any:
    client = await Client.connect(port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    await client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    response = await client.response()
    await client.close()
    return response


async def test_json_access_log_keeps_a_hostile_user_agent_intact(
    access_lines: Lines,
) -> None:
    async with serving(hello, access_log=True, access_log_format="json") as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"GET /who?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: "
            + HOSTILE_AGENT.replace(b"\r\n", b" ").replace(b"\x00", b"")
            + b"\r\n\r\n"
        )
        assert (await client.response()).status == 200
        await client.close()
        [line] = access_lines.wait(1)
    assert "\n" not in line
    data = json.loads(line)
    assert data["user_agent"].encode("latin-1") == (
        HOSTILE_AGENT.replace(b"\r\n", b" ").replace(b"\x00", b"")
    )
    assert (data["method"], data["path"], data["query"], data["status"]) == (
        "GET",
        "/who",
        "q=1",
        200,
    )
    assert data["bytes"] == len(b"Hello, /who")
    assert data["client"] == "127.0.0.1"
    assert data["duration_s"] >= 0
    assert data["queue_wait_s"] >= 0


async def test_default_access_line_and_rejected_requests_are_logged(
    access_lines: Lines,
) -> None:
    async with serving(hello, access_log=True, limit_request_body=10) as (_, port):
        assert (await get(port, "/a", Referer="https://r/")).status == 200
        client = await Client.connect(port)
        await client.send(
            b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
        )
        assert (await client.response(b"POST")).status == 413
        await client.close()
        lines = access_lines.wait(2)
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[[^]]+\] "GET /a HTTP/1\.1" 200 9 "https://r/" "-"',
        lines[0],
    )
    assert '"POST /big HTTP/1.1" 413' in lines[1]


async def test_health_and_metrics_answer_while_every_thread_is_blocked() -> None:
    gate = Gate()
    async with serving(gate, threads=2, **ENDPOINTS) as (_, port):
        busy = [await Client.connect(port) for _ in range(3)]
        for client in busy:
            await client.send(GET)
        await gate.wait_entered()
        await gate.wait_entered()  # both threads blocked, one request queued
        live = await get(port, "/livez")
        ready = await get(port, "/readyz")
        metrics = await get(port, "/metrics")
        assert (live.status, live.body) == (200, b"ok\n")
        assert (ready.status, ready.body) == (200, b"ready\n")
        assert metrics.status == 200
        assert metrics.header(b"content-type").startswith(b"text/plain; version=0.0.4")
        text = metrics.body.decode()
        assert 'aiogate_threads_busy{worker="0"} 2\n' in text
        assert 'aiogate_queue_depth{worker="0"} 1\n' in text
        assert 'aiogate_requests_in_flight{worker="0"} 3\n' in text
        gate.release.set()
        for client in busy:
            assert (await client.response()).status == 200
            # A Content-Length response can be whole on our side a moment before the
            # server has seen its end; the next request on the connection is only
            # read after that, and a probe is not counted itself.
            await client.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await client.response()).status == 200
            await client.close()
        after = (await get(port, "/metrics")).body.decode()
    assert 'aiogate_requests_total{status="200"} 3\n' in after
    assert "aiogate_request_duration_seconds_count 3\n" in after
    assert 'aiogate_request_duration_seconds_bucket{le="+Inf"} 3\n' in after
    assert "aiogate_sent_bytes_total 12\n" in after  # 3 x "done"
    # Probes themselves are not counted as requests.
    assert 'aiogate_requests_total{status="200"} 3\n' in after


async def test_readiness_follows_overload_and_the_drain() -> None:
    gate = Gate()
    server = Server(gate, port=0, threads=1, limit_concurrency=1, **ENDPOINTS)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    first = await Client.connect(port)
    await first.send(GET)
    await gate.wait_entered()
    second = await Client.connect(port)
    await second.send(GET)
    assert (await second.response()).status == 503  # over the concurrency limit
    assert await second.closed_by_server()
    overloaded = await get(port, "/readyz")
    assert (overloaded.status, overloaded.body) == (503, b"overloaded\n")
    metrics = (await get(port, "/metrics")).body.decode()
    assert 'aiogate_rejections_total{reason="concurrency_limit"} 1\n' in metrics
    assert 'aiogate_ready{worker="0"} 0\n' in metrics
    gate.release.set()
    assert (await first.response()).status == 200
    await first.close()
    shutdown = asyncio.create_task(server.shutdown(timeout=5, delay=0.5))
    await asyncio.sleep(0)
    draining = await get(port, "/readyz")  # still served during the delay
    assert (draining.status, draining.body) == (503, b"not ready\n")
    assert (await get(port, "/livez")).status == 200
    async with asyncio.timeout(10):
        await shutdown


async def test_endpoints_are_off_by_default_and_go_to_the_app() -> None:
    async with serving(hello) as (_, port):
        assert (await get(port, "/metrics")).body == b"Hello, /metrics"


async def test_probes_keep_the_connection_alive_and_pipeline() -> None:
    async with serving(hello, **ENDPOINTS) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 200
            + b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        for _ in range(200):
            assert (await client.response()).body == b"ok\n"
        assert (await client.response()).body == b"ready\n"
        assert (await client.response()).body == b"Hello, /app"
        head = await client.response(b"HEAD")
        assert (head.status, head.body, head.header(b"content-length")) == (
            200,
            b"",
            b"3",
        )
        await client.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # still open
        assert (await client.response()).status == 200
        await client.close()


def rejections(text: str) -> dict[str, int]:
    return {
        match[1]: int(match[2])
        for match in re.finditer(
            r'aiogate_rejections_total\{reason="(\w+)"\} (\d+)', text
        )
    }


def nonzero(text: str) -> dict[str, int]:
    return {reason: count for reason, count in rejections(text).items() if count}


async def refused(port: int, request: bytes, method: bytes = b"GET") -> int:
    """Send ``request`` on a connection of its own; the status, once it is closed."""
    client = await Client.connect(port)
    await client.send(request)
    response = await client.response(method)
    assert await client.closed_by_server()
    return response.status


async def test_each_refusal_of_a_request_is_counted_under_its_reason() -> None:
    async with serving(
        hello,
        limit_request_line=100,
        limit_request_field_size=100,
        limit_request_body=10,
        timeout_request_header=0.3,
        **ENDPOINTS,
    ) as (_, port):
        sent = {
            "bad_request": (b"NOT HTTP\r\n\r\n", 400),
            "method_not_allowed": (b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n", 405),
            "not_implemented": (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
            "version_not_supported": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            "body_too_large": (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
                413,
            ),
            "uri_too_long": (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n", 414),
            "headers_too_large": (
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200 + b"\r\n\r\n",
                431,
            ),
            "timeout": (b"GET / HTTP/1.1\r\n", 408),  # the rest never comes
        }
        for reason, (request, status) in sent.items():
            method = b"POST" if request.startswith(b"POST") else b"GET"
            assert await refused(port, request, method) == status, reason
        counted = rejections((await get(port, "/metrics")).body.decode())
    assert counted == {reason: int(reason in sent) for reason in counted}
    assert set(sent) <= set(counted)


async def test_overload_refusals_are_counted_under_their_reasons(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    counted: dict[str, int] = {}
    async with serving(hello, limit_connections=1, **ENDPOINTS) as (_, port):
        first = await Client.connect(port)
        assert await refused(port, GET) == 503  # one connection too many
        await first.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        counted.update(nonzero((await first.response()).body.decode()))
        await first.close()
    gate = Gate()
    async with serving(gate, threads=1, max_queue_wait=0.2, **ENDPOINTS) as (_, port):
        running = await Client.connect(port)
        await running.send(GET)
        await gate.wait_entered()
        assert await refused(port, GET) == 503  # waited for the thread too long
        counted.update(nonzero((await get(port, "/metrics")).body.decode()))
        gate.release.set()
        assert (await running.response()).status == 200
        await running.close()
    gate = Gate()
    async with serving(gate, threads=1, timeout_request=0.2, **ENDPOINTS) as (_, port):
        assert await refused(port, GET) == 503  # the app overran its time
        counted.update(nonzero((await get(port, "/metrics")).body.decode()))
        gate.release.set()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    async with serving(hello, body_buffer_size=16, **ENDPOINTS) as (_, port):
        post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        assert await refused(port, post, b"POST") == 503  # no temporary file
        counted.update(nonzero((await get(port, "/metrics")).body.decode()))
    assert counted == {
        "connection_limit": 1,
        "queue_wait": 1,
        "app_timeout": 1,
        "body_storage": 1,
    }
