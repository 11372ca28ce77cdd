"""Every request aiogate answers itself is in the access log, once, with its reason;
and the liveness probe counts the threads that replaced stuck ones.

Real ``python -m aiogate serve`` subprocesses on loopback port 0, JSON access lines
read from their stdout. "Exactly one line" is checked with a marker request sent
after each refusal on the same server: the access log's writer is one FIFO thread,
and a refusal's record is queued before its response is written, so every line of
the refusal comes before the marker's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiogate.config import DEFAULT_ACCESS_LOG_FORMAT, Config
from aiogate.errors import ConfigError
from tests.client import Client
from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_observability import Lines, access_lines
from tests.test_observability import get as get_async
from tests.test_server import hello, serving

__all__ = ["access_lines"]  # (a fixture, used by name)

WAIT = 10.0

APP = """
import os
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/block"):
        # Runs until the test creates the flag file (bounded): a request stuck in
        # app code, as far as the server can tell.
        deadline = time.monotonic() + 30
        while not os.path.exists(os.environ["BLOCK_FLAG"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    environ["app.user"] = "bob"
    body = ("hi " + path).encode("latin-1")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
"""


def serve_command(tmp_path: Path, form: str, *flags: str) -> list[str]:
    """``aiogate serve`` of the refusal app (written to ``tmp_path``) on a free port,
    its access log in format ``form``."""
    (tmp_path / "refusal_app.py").write_text(textwrap.dedent(APP))
    return [
        *SERVE, "refusal_app:app", "--app-dir", str(tmp_path), "--port", "0",
        "--access-log", "--access-log-format", form, *flags,
    ]  # fmt: skip


class Served:
    """One server subprocess with a JSON access log, and raw exchanges with it."""

    def __init__(self, tmp_path: Path, *flags: str) -> None:
        self.flag = tmp_path / "release"
        self.process = ServerProcess(
            serve_command(tmp_path, "json", *flags),
            cwd=tmp_path,
            env={"BLOCK_FLAG": str(self.flag)},
        )
        self.port = self.process.port
        self._markers = 0

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        sock.settimeout(WAIT)
        return sock

    def records(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in list(self.process.lines)
            if line.startswith("{")
        ]

    def wait_records(self, count: int) -> list[dict[str, Any]]:
        """The access records, once there are at least ``count`` (bounded poll)."""
        deadline = time.monotonic() + WAIT
        while len(records := self.records()) < count:
            assert time.monotonic() < deadline, "".join(self.process.lines)
            time.sleep(0.01)
        return records

    def marker(self, sock: socket.socket | None = None) -> list[dict[str, Any]]:
        """Send a plain GET (on ``sock``, or a new connection) and return the
        access records logged before its own, which is checked and dropped."""
        self._markers += 1
        path = f"/marker-{self._markers}"
        own = sock is None
        conn = self.connect() if sock is None else sock
        try:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_head(conn).startswith(b"HTTP/1.1 200 ")
        finally:
            if own:
                conn.close()
        deadline = time.monotonic() + WAIT
        while True:
            records = self.records()
            paths = [record["path"] for record in records]
            if path in paths:
                break
            assert time.monotonic() < deadline, "".join(self.process.lines)
            time.sleep(0.01)
        index = paths.index(path)
        assert records[index]["status"] == 200
        assert records[index]["refused"] is None
        return records[:index]

    def stop(self) -> None:
        self.flag.touch()  # free any thread still in the app
        self.process.kill()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    servers: list[Served] = []

    def start(*flags: str) -> Served:
        server = Served(tmp_path, *flags)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def read_head(sock: socket.socket) -> bytes:
    """The response's status line and headers (the socket's timeout bounds it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def refused(served: Served, request: bytes, status: int) -> dict[str, Any]:
    """Send ``request`` on a connection of its own, check the response's status, and
    return the one access record it left."""
    before = len(served.records())
    with served.connect() as sock:
        sock.sendall(request)
        head = read_head(sock)
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    new = served.marker()[before:]
    assert len(new) == 1, new
    [record] = new
    assert record["status"] == status
    return record


def test_refused_heads_and_bodies_are_logged_once_with_their_reason(
    served: Any,
) -> None:
    server = served(
        "--timeout-request-header",
        "0.3",
        "--timeout-request-body",
        "0.3",
        "--limit-request-body",
        "10",
        "--limit-request-line",
        "200",
        "--limit-request-field-size",
        "200",
    )
    cases = [
        # A malformed request line: nothing of it can be shown.
        (b"GARBAGE\r\n\r\n", 400, "bad_request", None),
        # A bad Host: the request line was parsed, so it is shown.
        (
            b"GET /bad-host HTTP/1.1\r\nHost: a b\r\n\r\n",
            400,
            "bad_request",
            "/bad-host",
        ),
        (
            b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
            None,
        ),
        (
            b"GET /big-header HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"b" * 300
            + b"\r\n\r\n",
            431,
            "headers_too_large",
            "/big-header",
        ),
        (
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            413,
            "body_too_large",
            "/upload",
        ),
        # The head never ends: 408 once --timeout-request-header has passed.
        (b"GET /slow HTTP/1.1\r\nHost: x\r\n", 408, "timeout", "/slow"),
        # The body stalls: 408 once --timeout-request-body has passed.
        (
            b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
            408,
            "timeout",
            "/stall",
        ),
        # Well formed, asking for what we do not do: the line is logged as sent.
        (b"GET /v2 HTTP/2.0\r\nHost: x\r\n\r\n", 505, "version_not_supported", "/v2"),
        (
            b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
            "method_not_allowed",
            "x:443",
        ),
        (
            b"PUT /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "not_implemented",
            "/te",
        ),
    ]
    for request, status, reason, path in cases:
        record = refused(server, request, status)
        assert record["refused"] == reason, record
        assert record["path"] == path, record
        assert record["client"] == "127.0.0.1"
        if path is None:
            assert record["method"] is None
            assert record["protocol"] is None
        else:
            assert record["protocol"] == ("HTTP/2.0" if status == 505 else "HTTP/1.1")
    # The head timeout's line says how long the head was waited for.
    assert refused(server, b"PUT /t HTTP/1.1\r\n", 408)["duration_s"] >= 0.3


def test_the_connection_limit_503_is_logged(served: Any) -> None:
    server = served("--limit-connections", "1")
    with server.connect() as held:
        held.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(held).startswith(b"HTTP/1.1 200 ")
        assert server.wait_records(1)[0]["path"] == "/first"
        with server.connect() as over:
            over.sendall(b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_head(over).startswith(b"HTTP/1.1 503 ")
        # The held connection is the only one allowed: the marker goes on it.
        new = server.marker(held)[1:]
    assert len(new) == 1, new
    assert (new[0]["status"], new[0]["refused"]) == (503, "connection_limit")
    assert new[0]["method"] is None  # refused at accept, before any request


def test_concurrency_limit_and_request_timeout_503s_are_logged(served: Any) -> None:
    server = served(
        "--threads", "2", "--limit-concurrency", "1", "--timeout-request", "0.5"
    )
    with server.connect() as stuck:
        stuck.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        with server.connect() as over:
            # /block is in flight (or about to be): this one is over the limit.
            deadline = time.monotonic() + WAIT
            over.sendall(b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_head(over).startswith(b"HTTP/1.1 503 ")
            assert time.monotonic() < deadline
        assert read_head(stuck).startswith(b"HTTP/1.1 503 ")  # after 0.5 s
    new = server.marker()
    by_path = {record["path"]: record for record in new}
    assert len(new) == 2, new
    assert by_path["/over"]["refused"] == "concurrency_limit"
    assert by_path["/block"]["refused"] == "app_timeout"
    assert by_path["/block"]["status"] == 503


def test_the_queue_wait_503_is_logged(served: Any) -> None:
    server = served("--threads", "1", "--max-queue-wait", "0.3")
    with server.connect() as blocking, server.connect() as queued:
        blocking.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        queued.sendall(b"GET /queued HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(queued).startswith(b"HTTP/1.1 503 ")
        server.flag.touch()
        assert read_head(blocking).startswith(b"HTTP/1.1 200 ")
    new = server.marker()
    by_path = {record["path"]: record for record in new}
    assert by_path["/queued"]["refused"] == "queue_wait"
    assert by_path["/queued"]["status"] == 503
    assert by_path["/queued"]["queue_wait_s"] >= 0.3  # what it waited, said
    assert by_path["/block"]["refused"] is None


def get(server: Served, path: str) -> bytes:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_head(sock)


def test_liveness_counts_the_threads_that_replaced_stuck_ones(served: Any) -> None:
    """Issue 15: with 2 threads and two stuck requests, the replacements serve, so
    the process is alive; only once they are stuck too can no thread serve."""
    server = served(
        "--threads", "2", "--timeout-request", "0.5", "--liveness-path", "/livez"
    )
    stuck = [server.connect() for _ in range(2)]
    try:
        for index, sock in enumerate(stuck):
            sock.sendall(f"GET /block-{index} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for sock in stuck:
            assert read_head(sock).startswith(b"HTTP/1.1 503 ")  # timed out
        assert get(server, "/livez").startswith(b"HTTP/1.1 200 ")
        assert get(server, "/served").startswith(b"HTTP/1.1 200 ")
        # Now the two replacements get stuck too, and no more can be started.
        more = [server.connect() for _ in range(2)]
        stuck += more
        for index, sock in enumerate(more):
            sock.sendall(f"GET /block-more{index} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for sock in more:
            assert read_head(sock).startswith(b"HTTP/1.1 503 ")
        live = get(server, "/livez")
        assert live.startswith(b"HTTP/1.1 503 "), live
    finally:
        for sock in stuck:
            sock.close()


@pytest.mark.parametrize(
    "form",
    ["%(h)s %(nonsense)s", "%({X-Y}z)s", "%(Q)s"],
    ids=["word", "brace", "letter"],
)
@pytest.mark.parametrize("check", [True, False], ids=["check-config", "serve"])
def test_an_unknown_atom_is_refused_at_startup(
    form: str, check: bool, tmp_path: Path
) -> None:
    command = serve_command(tmp_path, form, *(["--check-config"] if check else []))
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WAIT * 2, cwd=tmp_path
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    atom = form.split()[-1]
    assert f"unknown access log atom {atom}" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("how", "level"),
    [("flag", "debug"), ("variable", "warning"), ("settings file", "error")],
)
def test_log_levels_are_case_insensitive(how: str, level: str, tmp_path: Path) -> None:
    command = [*SERVE, "refusal_app:app", "--print-config"]
    env = dict(os.environ)
    if how == "flag":
        command += ["--log-level", "DEBUG"]
    elif how == "variable":
        env["AIOGATE_LOG_LEVEL"] = "Warning"
    else:
        (tmp_path / "pyproject.toml").write_text(
            '[tool.aiogate]\nlog-level = "ERROR"\n'
        )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WAIT * 2, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert f'log_level = "{level}"' in done.stdout


# -- text lines, in process (a real loopback socket) -----------------------------------


async def test_text_lines_carry_the_reason_and_the_environ(
    access_lines: Lines,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["REMOTE_USER"] = "bob"  # as an authentication middleware would
        return hello(environ, start_response)

    spec = DEFAULT_ACCESS_LOG_FORMAT + " %({REMOTE_USER}e)s %({wsgi.url_scheme}e)s"
    options = {"access_log": True, "access_log_format": spec, "limit_request_line": 100}
    async with serving(app, **options) as (_, port):
        assert (await get_async(port, "/a")).status == 200
        client = await Client.connect(port)
        await client.send(b"GET /" + b"x" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).status == 414
        await client.close()
        lines = access_lines.wait(2)
    # The app's line is gunicorn's, with the environ values the app left.
    assert lines[0].endswith('"GET /a HTTP/1.1" 200 9 "-" "-" bob http')
    # The refusal's: no request line, no environ (no app call), and the reason.
    assert lines[1].endswith('"-" 414 - "-" "-" - - refused=uri_too_long')


def test_the_embedding_api_takes_a_log_level_in_any_case() -> None:
    assert Config(log_level="DEBUG").log_level == "debug"
    with pytest.raises(ConfigError, match="unknown log_level 'LOUD'"):
        Config(log_level="LOUD")


async def test_the_body_storage_503_is_logged(
    access_lines: Lines, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No temporary file can be made (as on a read-only root without a tmpfs).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    options = {"access_log": True, "access_log_format": "json", "body_buffer_size": 10}
    async with serving(hello, **options) as (_, port):
        client = await Client.connect(port)
        await client.send(
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        )
        assert (await client.response(b"POST")).status == 503
        await client.close()
        assert (await get_async(port, "/marker")).status == 200
        lines = access_lines.wait(2)
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert (first["path"], first["status"], first["refused"]) == (
        "/up",
        503,
        "body_storage",
    )
    assert json.loads(lines[1])["path"] == "/marker"
