"""aiogate as users run it: the real command line in a subprocess, a Flask app, and
apps checked by ``wsgiref.validate``, all over real loopback sockets with a real
HTTP client (``http.client``)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import flask
import pytest

from aiogate import Server
from aiogate.errors import ConfigError
from aiogate.handlers import ServerHandler
from tests.client import Client
from tests.test_importer import WRAPPED_APPS

TIMEOUT = 20.0
LISTENING = re.compile(r"Listening on http://127\.0\.0\.1:(\d+)")


# -- the command line ---------------------------------------------------------------


SERVE = [sys.executable, "-m", "aiogate", "serve"]


class ServerProcess:
    """A server in a subprocess (``command``); ``port`` is read from its log."""

    def __init__(
        self, command: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._port: int | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self._port is None:
                self._port = int(match[1])
                self._ready.set()
        self._ready.set()  # exited: wake the waiter either way

    @property
    def port(self) -> int:
        assert self._ready.wait(TIMEOUT), "server did not start"
        assert self._port is not None, "".join(self.lines)
        return self._port

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def get(port: int, path: str = "/", **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(kwargs.pop("method", "GET"), path, **kwargs)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            def application(environ, start_response):
                body = ("hi from " + environ["PATH_INFO"]).encode("latin-1")
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [body]
            """
        )
    )
    return tmp_path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_answers_and_stops_cleanly(app_dir: Path, signum: int) -> None:
    # The current directory is importable, and `module` alone means `application`.
    server = ServerProcess([*SERVE, "myapp", "--port", "0"], cwd=app_dir)
    try:
        status, headers, body = get(server.port, "/there")
        assert status == 200
        assert body == b"hi from /there"
        assert headers["Server"].startswith("aiogate/")
        assert server.stop(signum) == 0
        assert not any("Traceback" in line for line in server.lines)
    finally:
        server.kill()


def test_serve_demo_app_configured_by_environment(tmp_path: Path) -> None:
    env = {
        "AIOGATE_APP": "aiogate.demo:app",
        "AIOGATE_PORT": "0",
        "AIOGATE_THREADS": "2",
    }
    server = ServerProcess(SERVE, cwd=tmp_path, env=env)
    try:
        status, _, body = get(server.port, "/hello?x=1")
        assert status == 200
        assert b"/hello" in body
        assert b"x=1" in body
        assert server.stop(signal.SIGTERM) == 0
        assert any("(2 threads)" in line for line in server.lines)
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule:app", "nosuchmodule"),
        ("myapp:missing", "missing"),
        ("myapp:NOT_CALLABLE", "not callable"),
        ("broken", "RuntimeError"),
    ],
)
def test_bad_target_exits_3_with_one_readable_line(
    app_dir: Path, target: str, message: str
) -> None:
    (app_dir / "myapp.py").write_text("NOT_CALLABLE = 1\napplication = None\n")
    (app_dir / "broken.py").write_text("raise RuntimeError('import-time failure')\n")
    result = subprocess.run(
        [sys.executable, "-m", "aiogate", "serve", target, "--port", "0"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]


@pytest.mark.parametrize("kind", ["werkzeug", "wrapped", "instance"])
def test_serve_starts_any_callable_taking_two_arguments(
    app_dir: Path, kind: str
) -> None:
    # Issue 13: werkzeug's @Request.application and other functools.wraps
    # decorators used to be refused at startup (exit 3, "pass --factory").
    (app_dir / "wrapped.py").write_text(WRAPPED_APPS)
    server = ServerProcess([*SERVE, f"wrapped:{kind}_app", "--port", "0"], app_dir)
    try:
        status, _, body = get(server.port, "/there")
        assert (status, body) == (200, f"{kind} /there".encode())
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()


def test_bad_option_exits_2(app_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiogate", "serve", "myapp", "--threads", "0"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "threads" in result.stderr
    assert "Traceback" not in result.stderr


# -- apps people run ------------------------------------------------------------------


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[int]:
    async with Server(app, port=0, **options) as server:
        yield server.sockets[0].getsockname()[1]


def flask_app() -> Any:
    app = flask.Flask("e2e")

    @app.get("/hello/<name>")
    def hello(name: str) -> Any:
        return flask.jsonify(greeting=f"hello {name}", query=dict(flask.request.args))

    @app.post("/echo")
    def echo() -> Any:
        data = flask.request.get_data()
        return flask.Response(data, mimetype="application/octet-stream")

    @app.post("/form")
    def form() -> Any:
        upload = flask.request.files["file"]
        return {"name": flask.request.form["name"], "size": len(upload.read())}

    @app.get("/stream")
    def stream() -> Any:
        def generate() -> Iterator[str]:
            for i in range(3):
                yield f"line {i}\n"

        return flask.Response(
            flask.stream_with_context(generate()), mimetype="text/plain"
        )

    @app.get("/fail")
    def fail() -> Any:
        raise RuntimeError("flask view failed")

    return app


async def test_flask_app_runs_unchanged() -> None:
    app = flask_app()
    async with serving(app) as port:
        status, headers, body = await asyncio.to_thread(get, port, "/hello/ann?x=1")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"greeting": "hello ann", "query": {"x": "1"}}

        payload = os.urandom(300_000)
        status, _, body = await asyncio.to_thread(
            get, port, "/echo", method="POST", body=payload
        )
        assert (status, body) == (200, payload)

        # A chunked upload (http.client frames an iterable body itself): Flask
        # sees it because wsgi.input_terminated is true.
        chunks = iter([b"abc", b"defg", b"h" * 70_000])
        status, _, body = await asyncio.to_thread(
            get, port, "/echo", method="POST", body=chunks
        )
        assert (status, body) == (200, b"abcdefg" + b"h" * 70_000)

        boundary = "XyZ"
        form = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + b"\0" * 5000
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, _, body = await asyncio.to_thread(
            get,
            port,
            "/form",
            method="POST",
            body=form,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert status == 200
        assert json.loads(body) == {"name": "ann", "size": 5000}

        status, headers, body = await asyncio.to_thread(get, port, "/stream")
        assert (status, body) == (200, b"line 0\nline 1\nline 2\n")
        assert headers.get("Transfer-Encoding") == "chunked"

        status, _, body = await asyncio.to_thread(get, port, "/fail")
        assert status == 500
        assert b"flask view failed" not in body


def checked_apps() -> dict[str, Any]:
    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")]
        )
        return [b"hi"]

    def echo(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = b""
        while chunk := stream.read(4):  # the validator wants a size on every read
            rest += chunk
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        yield first
        yield rest

    def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]

    return {"/hello": hello, "/echo": echo, "/write": writer}


async def test_wsgiref_validator_finds_nothing_to_warn_about() -> None:
    apps = checked_apps()

    def route(environ: dict[str, Any], start_response: Any) -> Any:
        return validator(apps[environ["PATH_INFO"]])(environ, start_response)

    # Warnings are errors in this suite, in every thread: a validator complaint
    # would turn into an app error, a 500, and fail the assertions below.
    async with serving(route) as port:
        status, _, body = await asyncio.to_thread(get, port, "/hello")
        assert (status, body) == (200, b"hi")
        status, _, body = await asyncio.to_thread(
            get, port, "/echo", method="POST", body=b"line one\nand the rest"
        )
        assert (status, body) == (200, b"line one\nand the rest")
        status, _, body = await asyncio.to_thread(get, port, "/write")
        assert (status, body) == (200, b"written and returned")
        status, _, body = await asyncio.to_thread(get, port, "/hello", method="HEAD")
        assert (status, body) == (200, b"")


async def test_remote_host_is_the_client_address() -> None:
    # RFC 3875 §4.1.9, as waitress does: the address, not a reverse DNS lookup.
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_HOST']} {environ['REMOTE_ADDR']}".encode()]

    async with serving(app) as port:
        status, _, body = await asyncio.to_thread(get, port, "/")
        assert (status, body) == (200, b"127.0.0.1 127.0.0.1")


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.mark.parametrize(
    ("request_line", "status", "reason"),
    [
        # RFC 9112 §2.3: no minor digit, no HTTP-version: malformed, not unsupported.
        (b"GET / HTTP/1", 400, b"malformed HTTP version"),
        (b"GET / HTTP/2", 400, b"malformed HTTP version"),
        (b"GET / HTTP/2.0", 505, b"unsupported HTTP version"),
        # RFC 9112 §3.2: a request-target has no fragment, in either form.
        (b"GET /page?q=1#top HTTP/1.1", 400, b"fragment in request target"),
        (b"GET http://t/page#top HTTP/1.1", 400, b"fragment in request target"),
    ],
)
async def test_bad_request_lines_on_the_wire(
    request_line: bytes, status: int, reason: bytes
) -> None:
    async with serving(hello_app) as port:
        client = await Client.connect(port)
        try:
            await client.send(request_line + b"\r\nHost: t\r\n\r\n")
            response = await client.response()
            assert response.status == status
            assert response.body.startswith(reason), response.body
            assert response.header(b"connection") == b"close"
            assert await client.closed_by_server()
        finally:
            await client.close()


async def test_error_responses_carry_the_server_header_of_app_responses() -> None:
    async with serving(hello_app) as port:
        status, headers, _ = await asyncio.to_thread(get, port, "/")
        assert status == 200
        server = headers["Server"]
        assert server.startswith("aiogate/")
        client = await Client.connect(port)
        try:
            await client.send(b"GET /#x HTTP/1.1\r\nHost: t\r\n\r\n")
            response = await client.response()
            assert response.status == 400
            assert response.all(b"server") == [server.encode()]
        finally:
            await client.close()


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "caf\u00e9/1", "nul\0"])
def test_a_server_header_that_cannot_go_on_the_wire_is_a_config_error(
    value: str,
) -> None:
    with pytest.raises(ConfigError, match="server_header"):
        Server(hello_app, server_header=value)


class NamedHandler(ServerHandler):
    server_software = "named-handler/2"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"server_header": "custom/1.0"}, [b"custom/1.0"]),
        ({"server_header": ""}, []),  # turned off: off for our errors too
        ({"handler_class": NamedHandler}, [b"named-handler/2"]),
    ],
    ids=["custom", "off", "handler"],
)
async def test_error_responses_follow_the_server_header_setting(
    options: dict[str, Any], expected: list[bytes]
) -> None:
    # App responses, our own errors and the loop-answered probes: one policy.
    async with serving(hello_app, liveness_path="/livez", **options) as port:
        for request in (b"GET / HTTP/1.1", b"GET / HTTP/1", b"GET /livez HTTP/1.1"):
            client = await Client.connect(port)
            try:
                await client.send(request + b"\r\nHost: t\r\n\r\n")
                response = await client.response()
                assert response.status in (200, 400)
                assert response.all(b"server") == expected, request
            finally:
                await client.close()


def test_aiogate_run_logs_and_stops_on_sigterm(app_dir: Path) -> None:
    script = app_dir / "serve_it.py"
    script.write_text(
        textwrap.dedent(
            """
            import aiogate
            from myapp import application
            aiogate.run(application, port=0, threads=2)
            """
        )
    )
    server = ServerProcess([sys.executable, str(script)], cwd=app_dir)
    try:
        status, _, body = get(server.port, "/x")
        assert (status, body) == (200, b"hi from /x")
        assert server.stop(signal.SIGTERM) == 0
        assert any("Stopped" in line for line in server.lines)
    finally:
        server.kill()


async def test_wsgi_errors_and_app_errors_reach_the_error_log_with_traceback_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Short(ServerHandler):
        traceback_limit = 1

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        print("about to fail", file=environ["wsgi.errors"])
        raise KeyError("missing")

    caplog.set_level(logging.ERROR, logger="aiogate.error")
    async with serving(app, handler_class=Short) as port:
        status, _, _ = await asyncio.to_thread(get, port, "/x")
    assert status == 500
    messages = [r.getMessage() for r in caplog.records if r.name == "aiogate.error"]
    assert messages == ["about to fail", "Error in app handling GET /x"]
    (failure,) = [r for r in caplog.records if r.exc_info]
    assert isinstance(failure.exc_info[1], KeyError)  # type: ignore[index]
    text = logging.Formatter().format(failure)
    assert text.count('File "') == 1  # traceback_limit = 1


def test_a_handler_written_for_wsgiref_is_refused_saying_why_and_what_to_do() -> None:
    import wsgiref.handlers

    class Stdlib(wsgiref.handlers.SimpleHandler):
        error_status = "503 Service Unavailable"

    for cls in (Stdlib, wsgiref.handlers.SimpleHandler, wsgiref.handlers.BaseHandler):
        with pytest.raises(ConfigError, match="wsgiref handler that writes raw bytes"):
            Server(hello_app, handler_class=cls)

    class Ours(ServerHandler):  # the same override, moved as the message says
        error_status = "503 Service Unavailable"

    assert Server(hello_app, handler_class=Ours)._handler_class is Ours


@pytest.mark.parametrize("version", ["2.0", "1", "HTTP/1.1"])
def test_a_handler_http_version_the_server_cannot_write_is_refused(
    version: str,
) -> None:
    handler = type("Odd", (ServerHandler,), {"http_version": version})
    with pytest.raises(
        ConfigError, match=r"Odd\.http_version must be '1\.0' or '1\.1'"
    ):
        Server(hello_app, handler_class=handler)
