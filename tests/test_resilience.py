"""The server as a real process under stress: SIGTERM under steady load loses no
request, a 200 MB upload is received with bounded memory, and thousands of clients
that reset mid-upload or mid-download leak no file descriptor, thread or temporary
file. Each starts ``python -m aiogate serve`` in a subprocess and watches it through
/proc (Linux)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import struct
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest

from tests.client import Client
from tests.test_end_to_end import SERVE, ServerProcess

WAIT = 20.0

APP = textwrap.dedent(
    """
    import hashlib
    import time

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/work":
            time.sleep(0.005)  # a little work, so requests are in flight at a signal
            body = b"ok"
        elif path == "/upload":
            stream = environ["wsgi.input"]
            digest = hashlib.sha256()
            while chunk := stream.read(65536):
                digest.update(chunk)
            body = digest.hexdigest().encode()
        elif path == "/download":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return (b"d" * 65536 for _ in range(64))
        else:
            body = b"hello"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "stressapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """The server's TMPDIR, where request bodies are spooled: watched for leftovers."""
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def start_server(app_dir: Path, spool: Path) -> Iterator[object]:
    servers: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = ServerProcess(
            # The port is read from the "Listening on" line, logged at info.
            [*SERVE, "stressapp", "--port", "0", *flags],
            cwd=app_dir,
            env={"TMPDIR": str(spool)},
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` value in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def request(port: int, raw: bytes) -> bytes:
    """Send one request, return the whole response body (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(raw)
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return body
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("closed before the response ended")


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a client that crashes or is killed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- SIGTERM under load ----------------------------------------------------------------


@dataclass
class Outcome:
    sent_at: float
    ok: bool


class Outcomes(list[Outcome]):
    """Every request's outcome; ``warmed_up`` is set after ``goal`` successes."""

    def __init__(self, goal: int) -> None:
        super().__init__()
        self.goal = goal
        self.warmed_up = asyncio.Event()

    def append(self, outcome: Outcome) -> None:
        super().append(outcome)
        if outcome.ok and len(self) >= self.goal:
            self.warmed_up.set()


async def keep_requesting(port: int, outcomes: Outcomes, stop: asyncio.Event) -> None:
    """One client: requests back to back on a keep-alive connection, reconnecting
    when the server closes it, until a connection is refused."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            client = await Client.connect(port)
        except OSError:
            return  # the listener is closed: the server is draining
        try:
            while not stop.is_set():
                sent_at = loop.time()
                await client.send(b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    response = await client.response()
                except (ConnectionError, h11.RemoteProtocolError):
                    outcomes.append(Outcome(sent_at, ok=False))
                    break
                outcomes.append(Outcome(sent_at, ok=response.status == 200))
                if response.header(b"connection") == b"close":
                    break
        except OSError:
            outcomes.append(Outcome(loop.time(), ok=False))
        finally:
            await client.close()


@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
def test_sigterm_under_load_loses_no_accepted_request(
    start_server: object, loop_name: str
) -> None:
    server: ServerProcess = start_server("--loop", loop_name, "--threads", "4")  # type: ignore[operator]
    port = server.port

    async def scenario() -> tuple[list[Outcome], float, int]:
        loop = asyncio.get_running_loop()
        outcomes = Outcomes(goal=200)
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(keep_requesting(port, outcomes, stop)) for _ in range(8)
        ]
        async with asyncio.timeout(WAIT):
            await outcomes.warmed_up.wait()
        signalled_at = loop.time()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, WAIT)
        exit_seconds = loop.time() - signalled_at
        stop.set()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*clients)
        return outcomes, signalled_at, code if exit_seconds < WAIT else -1

    outcomes, signalled_at, code = asyncio.run(scenario())
    before = [o for o in outcomes if o.sent_at < signalled_at]
    assert len(before) >= 200
    failed = [o for o in before if not o.ok]
    assert failed == [], (
        f"{len(failed)} of {len(before)} requests sent before SIGTERM failed"
    )
    assert code == 0
    assert not any("Traceback" in line for line in server.lines)


# -- bodies and resets ----------------------------------------------------------------


def test_200_mb_upload_is_received_with_bounded_memory(start_server: object) -> None:
    server: ServerProcess = start_server()  # type: ignore[operator]
    port, pid = server.port, server.proc.pid
    assert (
        request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        == b"hello"
    )
    rss_before = proc_status(pid, "VmRSS")
    size = 200 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
            expected.update(chunk)
        response = b""
        while data := sock.recv(65536):
            response += data
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(expected.hexdigest().encode())
    peak_growth_kib = proc_status(pid, "VmHWM") - rss_before
    # The body went to a temporary file: the peak grew by a few buffers, not 200 MB.
    assert peak_growth_kib < 64 * 1024, f"peak RSS grew by {peak_growth_kib} KiB"


def wait_for(predicate: object, what: str) -> None:
    """Poll an outside process's state (no event to wait on), bounded."""
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_resets_mid_upload_and_mid_download_leak_nothing(
    start_server: object, spool: Path
) -> None:
    # A small body buffer, so every aborted upload has made a temporary file.
    server: ServerProcess = start_server("--body-buffer-size", "16384")  # type: ignore[operator]
    port, pid = server.port, server.proc.pid
    close = b"Connection: close\r\n"
    assert request(port, b"GET /download HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n")
    assert request(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\n"
        + close
        + b"Content-Length: 65536\r\n\r\n"
        + b"u" * 65536,
    )
    wait_for(lambda: threads(pid) > 0, "server threads")
    fds_before, threads_before = open_fds(pid), threads(pid)

    body = b"u" * 65536
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
            + body
        )
        reset(sock)
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        sock.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)  # the response has begun
        reset(sock)

    # Still serving, and everything the aborted requests held is given back.
    assert request(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n") == b"hello"
    wait_for(lambda: open_fds(pid) <= fds_before, f"fds back to {fds_before}")
    wait_for(
        lambda: threads(pid) <= threads_before, f"threads back to {threads_before}"
    )
    assert list(spool.iterdir()) == []  # spooled bodies leave no file behind
