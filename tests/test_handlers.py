"""The handler family: wsgiref parity for the stream handlers, and ServerHandler.

Part 1 runs a table of apps through CPython's ``wsgiref.handlers`` and through ours on
``BytesIO`` and compares the bytes (Date normalised). Part 2 drives ``ServerHandler``
with an in-memory ``ResponseSink`` and a fake request head, one test per rule.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import wsgiref.handlers
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.headers import Headers
from wsgiref.validate import validator

import pytest

from aiogate import handlers, server_handler
from aiogate._types import ConnectionInfo
from aiogate._version import __version__
from aiogate.errors import ClientDisconnected
from aiogate.handlers import (
    BaseCGIHandler,
    BaseHandler,
    CGIHandler,
    IISCGIHandler,
    SimpleHandler,
)
from aiogate.server_handler import ServerHandler
from aiogate.wsgi_errors import ErrorLog
from tests import apps
from tests.apps import TEXT, App, ClosingIterable, Environ, StartResponse

DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    r"Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
)


def base_environ(**extra: str) -> dict[str, str]:
    env = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    env.update(extra)
    return env


def normalise(raw: bytes) -> bytes:
    return re.sub(rb"(\r\nDate: )[^\r]*", rb"\1<date>", raw)


@dataclass
class StreamRun:
    out: bytes
    err: str
    handler: Any


def run_stream(
    handler_class: type[Any],
    app: App,
    environ: dict[str, str] | None = None,
    stdout: io.BytesIO | None = None,
) -> StreamRun:
    out = stdout if stdout is not None else io.BytesIO()
    err = io.StringIO()
    handler = handler_class(
        io.BytesIO(b""), out, err, environ if environ is not None else base_environ()
    )
    handler.run(app)
    return StreamRun(out.getvalue(), err.getvalue(), handler)


class WsgirefWithServer(wsgiref.handlers.SimpleHandler):
    server_software = "Test/1.0"


class OursWithServer(SimpleHandler):
    server_software = "Test/1.0"


class WsgirefHTTP10(wsgiref.handlers.SimpleHandler):
    http_version = "1.1"


class OursHTTP10(SimpleHandler):
    http_version = "1.1"


HANDLER_PAIRS = {
    "SimpleHandler": (wsgiref.handlers.SimpleHandler, SimpleHandler),
    "BaseCGIHandler": (wsgiref.handlers.BaseCGIHandler, BaseCGIHandler),
    "server_software": (WsgirefWithServer, OursWithServer),
    "http_version": (WsgirefHTTP10, OursHTTP10),
}


def closing_app(chunks: list[bytes], **options: Any) -> App:
    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return ClosingIterable(chunks, **options)

    return app


# Apps whose output must be byte-for-byte the same under wsgiref and under ours.
PARITY_APPS: dict[str, App] = {
    "hello": apps.hello,
    "two_chunks": apps.two_chunks,
    "generator": apps.generator,
    "empty_list": apps.empty_list,
    "one_empty_chunk": apps.one_empty_chunk,
    "empty_then_data": apps.empty_then_data,
    "empty_generator_then_data": apps.empty_generator_then_data,
    "own_content_length": apps.own_content_length,
    "own_date_and_server": apps.own_date_and_server,
    "latin1_header": apps.latin1_header,
    "latin1_reason": apps.latin1_reason,
    "not_found": apps.not_found,
    "uses_write": apps.uses_write,
    "file_wrapper": apps.file_wrapper,
    "closing_iterable": closing_app([b"a", b"b"]),
    "closing_sized": closing_app([b"only"], sized=True),
    "error_before_start": apps.error_before_start,
    "error_after_start": apps.error_after_start,
    "error_in_first_next": apps.error_in_first_next,
    "error_mid_body": apps.error_mid_body,
    "error_mid_closing": closing_app([b"a", b"b"], fail_after=1),
    "exc_info_before_body": apps.exc_info_before_body,
    "exc_info_after_body": apps.exc_info_after_body,
    "start_response_twice": apps.start_response_twice,
    "status_too_short": apps.status_app("200"),
    "status_no_space": apps.status_app("200OK"),
    "status_not_digits": apps.status_app("2x0 OK"),
    "status_bytes": apps.status_app(b"200 OK"),
    "header_name_bytes": apps.status_app("200 OK", [(b"X", "y")]),
    "header_value_int": apps.status_app("200 OK", [("X", 1)]),
    "headers_not_list": apps.status_app("200 OK", (("X", "y"),)),
    "hop_by_hop": apps.status_app("200 OK", [("Connection", "close")]),
    "writes_str": apps.writes_str,
    "yields_str": apps.yields_str,
    "no_start_response": apps.write_without_start,
}


@pytest.mark.parametrize("pair", HANDLER_PAIRS.values(), ids=HANDLER_PAIRS.keys())
@pytest.mark.parametrize("app", PARITY_APPS.values(), ids=PARITY_APPS.keys())
def test_same_bytes_as_wsgiref(pair: tuple[type[Any], type[Any]], app: App) -> None:
    theirs_class, ours_class = pair
    theirs = run_stream(theirs_class, app)
    ours = run_stream(ours_class, app)
    assert normalise(ours.out) == normalise(theirs.out)
    assert theirs.out  # every app in the table produces a response
    # Both log the same error (the tracebacks differ only in our frames).
    assert bool(ours.err) == bool(theirs.err)
    if theirs.err:
        assert ours.err.splitlines()[-1] == theirs.err.splitlines()[-1]
        assert ours.err.startswith("Traceback (most recent call last):")


@pytest.mark.parametrize("pair", HANDLER_PAIRS.values(), ids=HANDLER_PAIRS.keys())
def test_http09_client_gets_body_only_as_in_wsgiref(
    pair: tuple[type[Any], type[Any]],
) -> None:
    environ = base_environ(SERVER_PROTOCOL="HTTP/0.9")
    theirs = run_stream(pair[0], apps.hello, environ)
    ours = run_stream(pair[1], apps.hello, environ)
    assert ours.out == theirs.out
    if pair[1].origin_server:
        assert ours.out == b"Hello, world!"


def test_expected_bytes_for_simple_and_cgi() -> None:
    """Pin the exact output too, so a change in both would still be caught."""
    simple = run_stream(OursWithServer, apps.hello).out
    assert normalise(simple) == (
        b"HTTP/1.0 200 OK\r\nDate: <date>\r\nServer: Test/1.0\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
    )
    cgi = run_stream(BaseCGIHandler, apps.hello).out
    assert cgi == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        b"Hello, world!"
    )
    error = run_stream(SimpleHandler, apps.error_before_start).out
    assert normalise(error) == (
        b"HTTP/1.0 500 Internal Server Error\r\nDate: <date>\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 59\r\n\r\n"
        + BaseHandler.error_body
    )


@pytest.mark.parametrize(
    "app", [apps.error_after_empty_chunk, apps.error_after_empty_write]
)
def test_empty_chunk_does_not_send_headers(app: App) -> None:
    """The one deliberate difference: wsgiref sends the 200 head on ``b""`` and can
    then only stop; we have sent nothing, so the client gets a proper 500."""
    theirs = run_stream(wsgiref.handlers.SimpleHandler, app)
    ours = run_stream(SimpleHandler, app)
    assert theirs.out.startswith(b"HTTP/1.0 200 OK\r\n")
    assert ours.out.startswith(b"HTTP/1.0 500 Internal Server Error\r\n")
    assert ours.out.endswith(BaseHandler.error_body)
    assert "boom-secret" in ours.err


def test_empty_write_leaves_room_for_content_length() -> None:
    """Same difference, harmless side: after ``write(b"")`` wsgiref has sent the head
    (no Content-Length, as the iterable did not exist yet); ours waits for the
    one-item list and can infer one."""
    theirs = run_stream(wsgiref.handlers.SimpleHandler, apps.empty_write_then_list)
    ours = run_stream(SimpleHandler, apps.empty_write_then_list)
    assert b"Content-Length" not in theirs.out
    assert normalise(ours.out) == normalise(theirs.out).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\n"
    )


def test_iterable_closed_on_every_stream_path() -> None:
    for options in ({}, {"fail_after": 0}, {"fail_after": 1}):
        body = ClosingIterable([b"a", b"b"], **options)

        def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
            start_response("200 OK", list(TEXT))
            return body  # noqa: B023  # called within this iteration

        run_stream(SimpleHandler, app)
        assert body.closed == 1, options


class BrokenPipeAfter(io.BytesIO):
    """A stdout whose client goes away once ``limit`` bytes were written."""

    def __init__(self, limit: int, error: type[OSError] = BrokenPipeError) -> None:
        super().__init__()
        self.limit = limit
        self.error = error

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.limit:
            raise self.error("client gone")
        return super().write(data)


@pytest.mark.parametrize(
    "error", [BrokenPipeError, ConnectionResetError, ConnectionAbortedError]
)
@pytest.mark.parametrize("limit", [0, 10, 90])
def test_client_disconnect_same_as_wsgiref(error: type[OSError], limit: int) -> None:
    results = []
    for handler_class in (wsgiref.handlers.SimpleHandler, SimpleHandler):
        body = ClosingIterable([b"x" * 30, b"y" * 30, b"z" * 30])

        def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
            start_response("200 OK", list(TEXT))
            return body  # noqa: B023  # called within this iteration

        run = run_stream(handler_class, app, stdout=BrokenPipeAfter(limit, error))
        assert run.err == ""  # quiet, no traceback
        assert body.closed == 1
        results.append(normalise(run.out))
    assert results[0] == results[1]


class PartialWriter(io.BytesIO):
    """Writes at most 3 bytes per call, as a non-blocking stream might."""

    def write(self, data: Any) -> int:
        return super().write(bytes(data[:3]))


def test_partial_writes_warn_and_complete_as_in_wsgiref() -> None:
    outputs = []
    for handler_class in (wsgiref.handlers.SimpleHandler, SimpleHandler):
        with pytest.warns(DeprecationWarning, match="partial writes"):
            run = run_stream(handler_class, apps.hello, stdout=PartialWriter())
        outputs.append(normalise(run.out))
    assert outputs[0] == outputs[1]
    assert outputs[1].endswith(b"\r\n\r\nHello, world!")


def test_environ_same_as_wsgiref() -> None:
    seen = []
    for handler_class in (WsgirefWithServer, OursWithServer):
        captured: dict[str, Any] = {}

        def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
            captured.update(environ)  # noqa: B023  # called within this iteration
            start_response("200 OK", [])
            return []

        handler = handler_class(
            io.BytesIO(), io.BytesIO(), io.StringIO(), base_environ(HTTPS="on"),
            multithread=False, multiprocess=True,
        )  # fmt: skip
        handler.os_environ = {"FROM_OS": "1"}  # the import-time snapshots may differ
        handler.run(app)
        assert captured["wsgi.input"] is handler.stdin
        assert captured["wsgi.errors"] is handler.stderr
        assert captured["wsgi.file_wrapper"] is wsgiref.util.FileWrapper
        seen.append(
            {
                k: v
                for k, v in captured.items()
                if k not in ("wsgi.input", "wsgi.errors")
            }
        )
    assert seen[0] == seen[1]
    assert seen[1]["wsgi.url_scheme"] == "https"
    assert seen[1]["SERVER_SOFTWARE"] == "Test/1.0"
    assert seen[1]["FROM_OS"] == "1"
    assert (seen[1]["wsgi.multithread"], seen[1]["wsgi.multiprocess"]) == (False, True)


def test_defaults_match_wsgiref() -> None:
    for ours, theirs in (
        (BaseHandler, wsgiref.handlers.BaseHandler),
        (SimpleHandler, wsgiref.handlers.SimpleHandler),
        (BaseCGIHandler, wsgiref.handlers.BaseCGIHandler),
        (CGIHandler, wsgiref.handlers.CGIHandler),
        (IISCGIHandler, wsgiref.handlers.IISCGIHandler),
    ):
        for name in (
            "wsgi_version", "wsgi_multithread", "wsgi_multiprocess", "wsgi_run_once",
            "origin_server", "http_version", "server_software", "os_environ",
            "wsgi_file_wrapper", "headers_class", "traceback_limit", "error_status",
            "error_headers", "error_body", "status", "result", "headers_sent",
            "headers", "bytes_sent",
        ):  # fmt: skip
            if name == "os_environ" and theirs.os_environ:
                # Both are read_environ() snapshots taken at import; the process
                # environment may have changed in between (pytest adds variables).
                assert type(ours.os_environ) is dict
                assert "PATH" in ours.os_environ
                continue
            assert getattr(ours, name) == getattr(theirs, name), (ours, name)
        public = {n for n in dir(theirs) if not n.startswith("__")}
        assert public <= set(dir(ours)), public - set(dir(ours))


@pytest.mark.parametrize(
    "method", ["_write", "_flush", "get_stdin", "get_stderr", "add_cgi_vars"]
)
def test_abstract_hooks_raise(method: str) -> None:
    handler = BaseHandler()
    args = (b"",) if method == "_write" else ()
    with pytest.raises(NotImplementedError):
        getattr(handler, method)(*args)


def test_start_response_exc_info_reraises_after_headers() -> None:
    handler = SimpleHandler(io.BytesIO(), io.BytesIO(), io.StringIO(), base_environ())
    handler.setup_environ()
    write = handler.start_response("200 OK", [])
    write(b"sent")
    error = apps.AppError("original")
    try:
        raise error
    except apps.AppError:
        exc_info = sys.exc_info()
    # Outside any except block: the exception raised must be exc_info's, not the
    # "active" one (PEP 3333; wsgiref's bare raise would give a RuntimeError here).
    with pytest.raises(apps.AppError) as info:
        handler.start_response("500 Oops", [], exc_info)
    assert info.value is error
    with pytest.raises(AssertionError, match="Headers already set!"):
        handler.start_response("500 Oops", [])


def test_checks_survive_python_O() -> None:
    """Under -O wsgiref lets a hop-by-hop header through; ours still refuses it."""
    script = textwrap.dedent(
        """
        import io, sys, wsgiref.handlers
        # Import the handlers module alone, not the whole package and its server.
        sys.modules.setdefault("aiogate", type(sys)("aiogate")).__path__ = [sys.argv[1]]
        from aiogate.handlers import SimpleHandler
        assert not __debug__
        def app(environ, start_response):
            start_response("200 OK", [("Connection", "close")])
            return [b"x"]
        env = {"SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET"}
        for cls in (wsgiref.handlers.SimpleHandler, SimpleHandler):
            out = io.BytesIO()
            cls(io.BytesIO(), out, io.StringIO(), env).run(app)
            print(out.getvalue().split(b"\\r\\n")[0].decode())
        """
    )
    package = str(handlers.__file__).rsplit("/", 1)[0]
    result = subprocess.run(
        [sys.executable, "-O", "-c", script, package],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "HTTP/1.0 200 OK",
        "HTTP/1.0 500 Internal Server Error",
    ]


def test_cgi_handlers_same_as_wsgiref(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("SERVER_PROTOCOL", "HTTP/1.1")
    monkeypatch.setenv("SCRIPT_NAME", "/app")
    monkeypatch.setenv("PATH_INFO", "/app/page")
    outputs: dict[type[Any], tuple[bytes, dict[str, Any]]] = {}
    for handler_class in (
        wsgiref.handlers.CGIHandler,
        CGIHandler,
        wsgiref.handlers.IISCGIHandler,
        IISCGIHandler,
    ):
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO()))
        captured: dict[str, Any] = {}

        def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
            captured.update(environ)  # noqa: B023  # called within this iteration
            start_response("200 OK", list(TEXT))
            return [environ["PATH_INFO"].encode()]

        handler_class().run(app)
        stdout.flush()
        raw = stdout.buffer.getvalue()  # type: ignore[attr-defined]
        outputs[handler_class] = (raw, captured)
        assert captured["wsgi.run_once"] is True
        assert captured["wsgi.multithread"] is False
        assert captured["wsgi.multiprocess"] is True
    monkeypatch.undo()
    assert outputs[CGIHandler][0] == outputs[wsgiref.handlers.CGIHandler][0]
    assert outputs[CGIHandler][0].endswith(b"\r\n\r\n/app/page")
    assert outputs[IISCGIHandler][0] == outputs[wsgiref.handlers.IISCGIHandler][0]
    assert outputs[IISCGIHandler][0].endswith(b"\r\n\r\n/page")
    assert outputs[CGIHandler][0].startswith(b"Status: 200 OK\r\n")


def test_read_environ_is_wsgirefs() -> None:
    assert handlers.read_environ() == wsgiref.handlers.read_environ()


# ---------------------------------------------------------------------------------
# Validator: apps wrapped in wsgiref.validate raise no warning (warnings are errors).
# ---------------------------------------------------------------------------------

VALIDATED_APPS = {
    "hello": apps.hello,
    "two_chunks": apps.two_chunks,
    "generator": apps.generator,
    "empty_list": apps.empty_list,
    "one_empty_chunk": apps.one_empty_chunk,
    "empty_generator_then_data": apps.empty_generator_then_data,
    "uses_write": apps.uses_write,
    "file_wrapper": apps.file_wrapper,
    "exc_info_before_body": apps.exc_info_before_body,
    "latin1_header": apps.latin1_header,
    "echo_environ": apps.echo_environ,
}


@pytest.mark.parametrize("app", VALIDATED_APPS.values(), ids=VALIDATED_APPS.keys())
@pytest.mark.parametrize("handler_class", [SimpleHandler, BaseCGIHandler])
def test_validator_is_happy_with_stream_handlers(
    handler_class: type[Any], app: App
) -> None:
    run = run_stream(handler_class, validator(app))
    assert run.err == ""
    assert b" 500 " not in run.out.split(b"\r\n")[0]


@pytest.mark.parametrize("app", VALIDATED_APPS.values(), ids=VALIDATED_APPS.keys())
def test_validator_is_happy_with_server_handler(app: App) -> None:
    result = serve(validator(app), target=b"/path?q=1")
    assert result.errors == []
    assert result.sink.events[0][0] == "start"
    assert not result.sink.events[0][1].startswith("500")
    assert result.sink.events[-1] == ("finish",)


# ---------------------------------------------------------------------------------
# ServerHandler
# ---------------------------------------------------------------------------------


class FakeSink:
    """Records what the handler sends. ``events`` may be shared with an iterable so
    the order of ``close()`` and ``finish()`` shows."""

    def __init__(
        self,
        events: list[Any] | None = None,
        *,
        disconnect_on: str | None = None,
        disconnect_after: int = 0,
    ) -> None:
        self.events: list[Any] = events if events is not None else []
        self.disconnect_on = disconnect_on
        self.disconnect_after = disconnect_after
        self.writes = 0

    def start(
        self, status: str, headers: list[tuple[str, str]], version: str = "1.1"
    ) -> None:
        if self.disconnect_on == "start":
            raise ClientDisconnected("gone at start")
        self.events.append(("start", status, headers))

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        assert data, "the handler must not pass empty writes"
        if self.disconnect_on == "write" and self.writes >= self.disconnect_after:
            raise ClientDisconnected("gone at write")
        self.writes += 1
        self.events.append(("write", data))

    def finish(self) -> None:
        self.events.append(("finish",))

    def abort(self) -> None:
        self.events.append(("abort",))

    # Views for assertions.

    @property
    def status(self) -> str:
        return str(self.starts[0][1])

    @property
    def starts(self) -> list[Any]:
        return [event for event in self.events if event[0] == "start"]

    @property
    def headers(self) -> list[tuple[str, str]]:
        (start,) = self.starts
        return list(start[2])

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def body(self) -> bytes:
        return b"".join(event[1] for event in self.events if event[0] == "write")

    @property
    def ends(self) -> list[str]:
        return [e[0] for e in self.events if e[0] in ("finish", "abort")]


class CountingHeaders:
    """Request headers that count how often they are iterated."""

    def __init__(self, items: list[tuple[bytes, bytes]]) -> None:
        self.items = items
        self.iterations = 0

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.iterations += 1
        return iter(self.items)


@dataclass
class FakeRequest:
    """The parts of an ``h11.Request`` the handler reads."""

    method: bytes = b"GET"
    target: bytes = b"/"
    http_version: bytes = b"1.1"
    headers: Iterable[tuple[bytes, bytes]] = field(
        default_factory=lambda: [(b"host", b"example.com")]
    )


CONN = ConnectionInfo(server=("127.0.0.1", 8000), client=("10.0.0.1", 50000))


@dataclass
class Served:
    sink: FakeSink
    handler: ServerHandler
    environ: dict[str, Any]
    records: list[logging.LogRecord]

    @property
    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def serve(
    app: App,
    *,
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: Iterable[tuple[bytes, bytes]] | None = None,
    sink: FakeSink | None = None,
    handler_class: type[ServerHandler] = ServerHandler,
    conn: ConnectionInfo = CONN,
    stdin: Any = None,
    log_level: int = logging.DEBUG,
    **options: Any,
) -> Served:
    """Run ``app`` through a ServerHandler; capture environ, sink and log records."""
    sink = sink if sink is not None else FakeSink()
    request = FakeRequest(method=method, target=target)
    if headers is not None:
        request.headers = headers
    environ: dict[str, Any] = {}

    def capturing(env: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ.update(env)
        return app(env, start_response)

    handler = handler_class(
        stdin if stdin is not None else io.BytesIO(b"request body"),
        sink,
        ErrorLog(),  # the server's wsgi.errors
        request,
        conn,
        **options,
    )
    logger = logging.getLogger("aiogate.error")
    recorder = RecordingHandler()
    old_level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(log_level)
    try:
        handler.run(capturing)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old_level)
    return Served(sink, handler, environ, recorder.records)


def test_hello_response() -> None:
    result = serve(apps.hello)
    sink = result.sink
    assert [e[0] for e in sink.events] == ["start", "write", "finish"]
    assert sink.status == "200 OK"
    assert sink.header("Content-Type") == ["text/plain"]
    assert sink.header("Content-Length") == ["13"]
    (date,) = sink.header("Date")
    assert DATE_RE.fullmatch(date)
    assert sink.header("Server") == [f"aiogate/{__version__}"]
    assert sink.body == b"Hello, world!"
    assert result.records == []


def test_headers_reach_the_sink_as_a_list_of_str_tuples() -> None:
    sink = serve(apps.latin1_header).sink
    headers = sink.headers
    assert isinstance(sink.starts[0][2], list)
    assert ("X-Name", "café") in headers
    assert all(type(k) is str and type(v) is str for k, v in headers)


def test_class_attributes() -> None:
    assert ServerHandler.os_environ == {}
    assert ServerHandler.wsgi_multithread is True
    assert ServerHandler.wsgi_multiprocess is False
    assert ServerHandler.wsgi_run_once is False
    assert ServerHandler.origin_server is True
    assert ServerHandler.server_software == f"aiogate/{__version__}"
    assert ServerHandler.wsgi_file_wrapper is wsgiref.util.FileWrapper
    assert issubclass(ServerHandler, BaseHandler)
    # Built on the standard library's classes: isinstance holds as for wsgiref's own.
    assert issubclass(ServerHandler, wsgiref.handlers.BaseHandler)
    for ours, theirs in [
        (BaseHandler, wsgiref.handlers.BaseHandler),
        (SimpleHandler, wsgiref.handlers.SimpleHandler),
        (BaseCGIHandler, wsgiref.handlers.BaseCGIHandler),
        (CGIHandler, wsgiref.handlers.CGIHandler),
        (handlers.IISCGIHandler, wsgiref.handlers.IISCGIHandler),
    ]:
        assert issubclass(ours, theirs), ours


def test_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOGATE_LEAK_CHECK", "secret")
    stdin = io.BytesIO(b"")
    https = ConnectionInfo(server=("127.0.0.1", 443), client=None, url_scheme="https")
    result = serve(
        apps.hello,
        method=b"POST",
        target=b"/app/x?y=1",
        stdin=stdin,
        conn=https,
        root_path="/app",
        multithread=False,
        multiprocess=True,
    )
    env = result.environ
    assert env["wsgi.input"] is stdin
    assert env["wsgi.errors"] is result.handler.stderr
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "https"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is wsgiref.util.FileWrapper
    assert env["SERVER_SOFTWARE"] == f"aiogate/{__version__}"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x"
    assert env["QUERY_STRING"] == "y=1"
    assert "AIOGATE_LEAK_CHECK" not in env
    assert "PATH" not in env  # nothing of os.environ


def test_environ_defaults() -> None:
    env = serve(apps.hello).environ
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False


def test_add_cgi_vars_uses_build_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_build_environ(request: Any, conn: Any, root_path: str) -> dict[str, Any]:
        calls.append((request, conn, root_path))
        return {"REQUEST_METHOD": "GET", "MARKER": "from build_environ"}

    monkeypatch.setattr(server_handler, "build_environ", fake_build_environ)
    result = serve(apps.hello, root_path="/mount")
    ((request, conn, root_path),) = calls
    assert request is result.handler.request
    assert conn is CONN
    assert root_path == "/mount"
    assert result.environ["MARKER"] == "from build_environ"


def test_os_environ_of_a_subclass_is_used() -> None:
    class WithBase(ServerHandler):
        os_environ = {"DEPLOYMENT": "blue"}  # noqa: RUF012

    assert serve(apps.hello, handler_class=WithBase).environ["DEPLOYMENT"] == "blue"


def test_underscore_headers_logged_at_debug() -> None:
    headers = [(b"host", b"x"), (b"x_forwarded_for", b"1.2.3.4"), (b"x-real", b"y")]
    result = serve(apps.hello, headers=headers, target=b"/p?secret=1")
    (record,) = [r for r in result.records if "'_'" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "x_forwarded_for" in record.getMessage()
    assert "x-real" not in record.getMessage()
    assert "GET /p" in record.getMessage()
    assert "secret" not in record.getMessage()


def test_underscore_scan_only_when_debug_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_handler, "build_environ", lambda *args: {})
    quiet = CountingHeaders([(b"x_a", b"1")])
    serve(apps.hello, headers=quiet, log_level=logging.INFO)
    assert quiet.iterations == 0
    loud = CountingHeaders([(b"x_a", b"1")])
    serve(apps.hello, headers=loud, log_level=logging.DEBUG)
    assert loud.iterations == 1


@pytest.mark.parametrize(
    ("server_software", "expected"),
    [(None, [f"aiogate/{__version__}"]), ("", []), ("custom/2", ["custom/2"])],
)
def test_server_software_option(
    server_software: str | None, expected: list[str]
) -> None:
    result = serve(apps.hello, server_software=server_software)
    assert result.sink.header("Server") == expected
    assert result.environ.get("SERVER_SOFTWARE") == (expected[0] if expected else None)


def test_server_software_from_a_subclass() -> None:
    class Branded(ServerHandler):
        server_software = "brand/9"

    assert serve(apps.hello, handler_class=Branded).sink.header("Server") == ["brand/9"]
    # The constructor option still wins over the class attribute.
    sink = serve(apps.hello, handler_class=Branded, server_software="opt/1").sink
    assert sink.header("Server") == ["opt/1"]


def test_app_date_and_server_are_kept_once() -> None:
    sink = serve(apps.own_date_and_server).sink
    assert sink.header("Date") == ["Sun, 06 Nov 1994 08:49:37 GMT"]
    assert sink.header("Server") == ["app/1"]


def test_exactly_one_date_header() -> None:
    app = apps.status_app("200 OK", [("Date", "a"), ("date", "b")], [b"x"])
    assert serve(app).sink.header("Date") == ["a"]


def test_empty_chunks_do_not_start_the_response() -> None:
    sink = FakeSink()
    seen: list[list[Any]] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", list(TEXT))
        write(b"")
        seen.append(list(sink.events))
        yield b""
        seen.append(list(sink.events))
        yield b"data"
        seen.append(list(sink.events))

    serve(app, sink=sink)
    assert seen[0] == []
    assert seen[1] == []
    assert [e[0] for e in seen[2]] == ["start", "write"]
    assert sink.ends == ["finish"]


@pytest.mark.parametrize(
    ("app", "content_length"),
    [
        (apps.hello, ["13"]),  # one-item list: inferred
        (apps.one_empty_chunk, ["0"]),
        (apps.empty_list, ["0"]),  # no body at all
        (apps.two_chunks, []),  # left to the server (chunked)
        (apps.generator, []),
        (apps.empty_then_data, []),
        (apps.own_content_length, ["6"]),
        (closing_app([b"abc"], sized=True), ["3"]),
        (closing_app([b"abc"]), []),  # not sized
        (apps.file_wrapper, []),
    ],
)
def test_content_length_inference(app: App, content_length: list[str]) -> None:
    sink = serve(app).sink
    assert sink.header("Content-Length") == content_length
    assert sink.ends == ["finish"]


def test_error_before_body_is_500_and_logged_once() -> None:
    result = serve(apps.error_before_start, target=b"/some/path?token=secret")
    sink = result.sink
    assert [e[0] for e in sink.events] == ["start", "write", "finish"]
    assert sink.status == "500 Internal Server Error"
    assert sink.header("Content-Type") == ["text/plain"]
    assert sink.header("Content-Length") == [str(len(ServerHandler.error_body))]
    assert len(sink.header("Date")) == 1
    assert sink.body == ServerHandler.error_body
    assert b"boom" not in sink.body
    (record,) = result.errors
    assert record.name == "aiogate.error"
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "GET /some/path" in record.getMessage()
    assert "token" not in record.getMessage()
    assert result.records == result.errors  # nothing else was logged


@pytest.mark.parametrize(
    "app",
    [
        apps.error_after_start,
        apps.error_in_first_next,
        apps.error_after_empty_chunk,
        apps.error_after_empty_write,
        apps.start_response_twice,
        apps.writes_str,
        apps.yields_str,
        apps.write_without_start,
        closing_app([b"a"], fail_after=0),
    ],
)
def test_errors_before_the_first_byte_are_500(app: App) -> None:
    result = serve(app)
    assert result.sink.status == "500 Internal Server Error"
    assert result.sink.body == ServerHandler.error_body
    assert result.sink.ends == ["finish"]
    assert len(result.errors) == 1


def test_start_response_twice_is_assertion_error() -> None:
    result = serve(apps.start_response_twice)
    (record,) = result.errors
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AssertionError)
    assert str(record.exc_info[1]) == "Headers already set!"


def test_expose_tracebacks() -> None:
    result = serve(apps.error_before_start, expose_tracebacks=True)
    sink = result.sink
    assert sink.status == "500 Internal Server Error"
    assert sink.header("Content-Type") == ["text/plain; charset=utf-8"]
    assert sink.body.startswith(b"Traceback (most recent call last):")
    assert b"RuntimeError: boom-secret" in sink.body
    assert sink.header("Content-Length") == [str(len(sink.body))]
    assert len(result.errors) == 1


def test_error_mid_body_aborts() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"partial", b"more"], log=events, fail_after=1)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "write", "close", "abort"]
    assert result.sink.body == b"partial"
    assert body.closed == 1
    (record,) = result.errors
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_exc_info_before_body_replaces_the_status() -> None:
    result = serve(apps.exc_info_before_body)
    assert result.sink.status == "503 Service Unavailable"
    assert result.sink.body == b"sorry"
    assert result.sink.ends == ["finish"]
    assert result.errors == []


def test_exc_info_after_body_reraises_the_apps_exception() -> None:
    result = serve(apps.exc_info_after_body)
    assert result.sink.status == "200 OK"
    assert result.sink.body == b"partial"
    assert result.sink.ends == ["abort"]
    (record,) = result.errors
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], apps.AppError)
    assert str(record.exc_info[1]) == "late"


def test_server_handler_exc_info_unit() -> None:
    handler = ServerHandler(
        io.BytesIO(), FakeSink(), io.StringIO(), FakeRequest(), CONN
    )
    handler.setup_environ()
    handler.start_response("200 OK", [])
    # Before the headers are out, exc_info replaces the status and headers.
    try:
        raise apps.AppError("first")
    except apps.AppError:
        handler.start_response("502 Bad Gateway", [("X-A", "b")], sys.exc_info())
    assert handler.status == "502 Bad Gateway"
    with pytest.raises(AssertionError, match="Headers already set!"):
        handler.start_response("200 OK", [])
    handler.write(b"x")
    error = apps.AppError("second")
    try:
        raise error
    except apps.AppError:
        exc_info = sys.exc_info()
    with pytest.raises(apps.AppError) as info:
        handler.start_response("500 Oops", [], exc_info)
    assert info.value is error


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("200", ValueError),
        ("200OK", ValueError),
        ("2000 OK", ValueError),
        ("OK 200", ValueError),
        ("099 Low", ValueError),
        ("100 Continue", ValueError),  # h11 cannot send a 1xx as the response
        ("101 Switching Protocols", ValueError),
        ("200 OK\r\nSet-Cookie: x=1", ValueError),
        ("200 OK\n", ValueError),
        ("200 O\0K", ValueError),
        ("200 ☃", ValueError),
        (b"200 OK", TypeError),
        (200, TypeError),
    ],
)
def test_bad_status_is_500(status: Any, error: type[Exception]) -> None:
    result = serve(apps.status_app(status))
    assert result.sink.status == "500 Internal Server Error"
    assert len(result.sink.starts) == 1
    (record,) = result.errors
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is error


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ([("X-A", "b\r\nSet-Cookie: x=1")], ValueError),
        ([("X-A", "b\n")], ValueError),
        ([("X-A", "b\0")], ValueError),
        # RFC 9110 §5.5: no control characters at all in a field value.
        ([("X-A", "\x1b[31mred")], ValueError),
        ([("X-A", "a\x7fb")], ValueError),
        ([("Set-Cookie", "ga=google\x01analytics")], ValueError),
        ([("X A", "b")], ValueError),
        ([("X-A:", "b")], ValueError),
        ([("X-A", "☃")], ValueError),
        ([("Content-Length", "abc")], ValueError),
        ([("Content-Length", "1"), ("Content-Length", "2")], ValueError),
        # RFC 9110 §8.6: one value of digits; equal repeats are refused too.
        ([("Content-Length", "4, 4")], ValueError),
        ([("Content-Length", "4"), ("Content-Length", "4")], ValueError),
        ([("Content-Length", "4"), ("content-length", " 4 ")], ValueError),
        ([("Content-Length", "")], ValueError),
        ([(b"X-A", "b")], TypeError),
        ([("X-A", 1)], TypeError),
        ([["X-A", "b"]], TypeError),
        ((("X-A", "b"),), TypeError),
    ],
)
def test_bad_headers_are_500_never_split(headers: Any, error: type[Exception]) -> None:
    result = serve(apps.status_app("200 OK", headers))
    sink = result.sink
    assert sink.status == "500 Internal Server Error"
    assert all("Set-Cookie" not in name for name, _ in sink.headers)
    (record,) = result.errors
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is error


def test_app_sees_the_error_from_start_response() -> None:
    """PEP 3333: header errors are raised by start_response, inside the app, so an
    app may catch one and start again; nothing was stored by the failed call."""
    seen: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            start_response("200 OK", [("Content-Length", "4, 4")])
        except ValueError as exc:
            seen.append(exc)
            start_response("200 OK", [("Content-Length", "4")])
        return [b"body"]

    result = serve(app)
    (error,) = seen
    assert "Content-Length" in str(error)
    assert result.sink.status == "200 OK"
    assert result.sink.header("Content-Length") == ["4"]
    assert result.sink.body == b"body"
    assert result.errors == []


def test_header_values_are_stripped() -> None:
    app = apps.status_app("200 OK", [("X-A", " \tvalue \t"), ("X-B", "")], [b"x"])
    sink = serve(app).sink
    assert sink.header("X-A") == ["value"]
    assert sink.header("X-B") == [""]


@pytest.mark.parametrize(
    ("headers", "connection", "logged"),
    [
        ([("Transfer-Encoding", "chunked")], [], True),
        ([("Keep-Alive", "timeout=5"), ("Upgrade", "x"), ("TE", "x")], [], True),
        ([("Trailers", "x"), ("Proxy-Authenticate", "x")], [], True),
        ([("Connection", "keep-alive")], [], True),
        ([("Connection", "close")], ["close"], False),
        ([("connection", "Upgrade, Close")], ["close"], False),
        ([("Connection", "close"), ("Connection", "close")], ["close"], False),
        ([("Connection", "close"), ("Keep-Alive", "x")], ["close"], True),
    ],
)
def test_hop_by_hop_headers_dropped_except_connection_close(
    headers: list[tuple[str, str]], connection: list[str], logged: bool
) -> None:
    result = serve(apps.status_app("200 OK", [*TEXT, *headers], [b"ok"]))
    sink = result.sink
    assert sink.status == "200 OK"
    assert sink.body == b"ok"
    assert sink.header("Connection") == connection
    names = {name.lower() for name, _ in sink.headers}
    assert not names & {"transfer-encoding", "keep-alive", "upgrade", "te", "trailers"}
    assert "proxy-authenticate" not in names
    assert sink.header("Content-Type") == ["text/plain"]
    dropped = [r for r in result.records if "hop-by-hop" in r.getMessage()]
    assert [r.levelno for r in dropped] == ([logging.DEBUG] if logged else [])
    assert result.errors == []


def test_head_sends_no_body_but_keeps_inferred_length() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"Hello"], log=events, sized=True)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    result = serve(app, method=b"HEAD", sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "close", "finish"]
    assert result.sink.header("Content-Length") == ["5"]
    assert body.yielded == 1  # still iterated


@pytest.mark.parametrize(
    ("app", "content_length"),
    [
        (apps.generator, []),
        (apps.own_content_length, ["6"]),  # declared but not sent: still a finish
        (apps.uses_write, []),
        (apps.empty_list, ["0"]),
    ],
)
def test_head_variants(app: App, content_length: list[str]) -> None:
    sink = serve(app, method=b"HEAD").sink
    assert sink.body == b""
    assert sink.header("Content-Length") == content_length
    assert sink.ends == ["finish"]


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_statuses_send_no_body(status: str) -> None:
    events: list[Any] = []
    body = ClosingIterable([b"junk"], log=events, sized=True)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response(status, [])
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "close", "finish"]
    assert result.sink.header("Content-Length") == []  # none inferred
    assert body.yielded == 1


@pytest.mark.parametrize(
    ("status", "content_length"),
    [("204 No Content", []), ("304 Not Modified", ["1234"])],
)
def test_declared_length_on_bodiless_statuses(
    status: str, content_length: list[str]
) -> None:
    app = apps.status_app(status, [("Content-Length", "1234")], [b"x" * 10])
    sink = serve(app).sink
    assert sink.header("Content-Length") == content_length
    assert sink.body == b""
    assert sink.ends == ["finish"]


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_empty_bodiless_response_gets_no_zero_length(status: str) -> None:
    sink = serve(apps.status_app(status, [], [])).sink
    assert sink.header("Content-Length") == []
    assert sink.ends == ["finish"]


def test_bytes_past_content_length_are_cut() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"ab", b"cd", b"ef"], log=events)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", [("Content-Length", "3")])
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "write", "write", "close", "finish"]
    assert result.sink.body == b"abc"
    assert body.yielded == 3  # the app still ran to the end
    warnings = [r for r in result.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Content-Length of 3" in warnings[0].getMessage()


def test_write_callable_is_cut_too() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "4")])
        write(b"abc")
        write(b"def")
        return [b"ghi"]

    sink = serve(app).sink
    assert sink.body == b"abcd"
    assert sink.ends == ["finish"]


def test_short_body_aborts_after_close() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"abc"], log=events)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", [("Content-Length", "10")])
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "write", "close", "abort"]
    warnings = [r for r in result.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 of the 10" in warnings[0].getMessage()


def test_declared_zero_length_with_no_body_finishes() -> None:
    sink = serve(apps.status_app("200 OK", [("Content-Length", "0")], [])).sink
    assert sink.ends == ["finish"]
    assert sink.header("Content-Length") == ["0"]


def test_write_callable_and_iterable() -> None:
    sink = serve(apps.uses_write).sink
    assert [e[0] for e in sink.events] == ["start", "write", "write", "finish"]
    assert sink.body == b"written,returned"
    assert sink.header("Content-Length") == []


def test_close_then_finish_on_success() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"a", b"b"], log=events)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "write", "write", "close", "finish"]
    assert body.closed == 1


def test_close_on_error_before_body() -> None:
    events: list[Any] = []
    body = ClosingIterable([b"a"], log=events, fail_after=0)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["close", "start", "write", "finish"]
    assert result.sink.status.startswith("500")
    assert body.closed == 1


@pytest.mark.parametrize(
    ("disconnect_on", "after", "expected"),
    [
        ("start", 0, ["close", "abort"]),
        ("write", 0, ["start", "close", "abort"]),
        ("write", 1, ["start", "write", "close", "abort"]),
    ],
)
def test_client_disconnect_closes_iterable_quietly(
    disconnect_on: str, after: int, expected: list[str]
) -> None:
    events: list[Any] = []
    body = ClosingIterable([b"a", b"b", b"c"], log=events)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    sink = FakeSink(events, disconnect_on=disconnect_on, disconnect_after=after)
    result = serve(app, sink=sink)
    assert [e[0] for e in events] == expected
    assert body.closed == 1
    assert [r for r in result.records if r.levelno > logging.DEBUG] == []
    (record,) = result.records
    assert "disconnected" in record.getMessage()
    assert record.exc_info is None


def test_disconnect_while_reading_the_body_is_quiet() -> None:
    class GoneInput(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise ClientDisconnected("client closed mid-request")

    result = serve(apps.echo_environ, stdin=GoneInput())
    assert result.sink.events == [("abort",)]
    assert [r.levelno for r in result.records] == [logging.DEBUG]


def test_disconnect_while_sending_the_error_page() -> None:
    sink = FakeSink(disconnect_on="start")
    result = serve(apps.error_before_start, sink=sink)  # does not raise
    assert sink.events == [("abort",)]
    assert len(result.errors) == 1  # the app's error, once


def test_close_raising_after_complete_body_aborts() -> None:
    class BadClose(ClosingIterable):
        def close(self) -> None:
            super().close()
            raise RuntimeError("close failed")

    events: list[Any] = []
    body = BadClose([b"all"], log=events, sized=True)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    result = serve(app, sink=FakeSink(events))
    assert [e[0] for e in events] == ["start", "write", "close", "abort"]
    assert len(result.sink.starts) == 1  # no 500 after a complete response
    (record,) = result.errors
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "close failed"


def test_file_wrapper_is_iterated_and_closed() -> None:
    handler = ServerHandler(
        io.BytesIO(), FakeSink(), io.StringIO(), FakeRequest(), CONN
    )
    assert handler.sendfile() is False
    source = io.BytesIO(b"file contents")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", list(TEXT))
        wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return wrapper(source, 4)

    sink = serve(app).sink
    assert [e[1] for e in sink.events if e[0] == "write"] == [
        b"file", b" con", b"tent", b"s",
    ]  # fmt: skip
    assert sink.ends == ["finish"]
    assert source.closed


class FileSink(FakeSink):
    """A sink that can send files: records each call, with the bytes it names."""

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        self.events.append(("sendfile", offset, count, os.pread(fd, count, offset)))

    @property
    def sent_files(self) -> list[Any]:
        return [event[1:] for event in self.events if event[0] == "sendfile"]


def file_app(
    path: Path, headers: list[tuple[str, str]] = TEXT, *, seek: int = 0
) -> tuple[App, list[Any]]:
    """An app answering with ``wsgi.file_wrapper(open(path))``; the list gets the
    file object, to check it was closed."""
    opened: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", list(headers))
        f = path.open("rb")
        f.seek(seek)
        opened.append(f)
        wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return wrapper(f)

    return app, opened


def test_a_regular_file_is_sent_whole_by_the_sink_with_its_size_declared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789" * 1000)
    app, opened = file_app(path)
    sink = serve(app, sink=FileSink()).sink
    assert sink.header("Content-Length") == ["10000"]
    assert sink.sent_files == [(0, 10000, b"0123456789" * 1000)]
    assert sink.body == b""  # nothing went through write()
    assert sink.ends == ["finish"]
    assert opened[0].closed


def test_a_file_is_sent_from_its_position_up_to_the_apps_content_length(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(100)))
    app, _ = file_app(path, seek=10)
    assert serve(app, sink=FileSink()).sink.sent_files == [
        (10, 90, bytes(range(10, 100)))
    ]
    app, _ = file_app(path, [*TEXT, ("Content-Length", "5")], seek=10)
    sink = serve(app, sink=FileSink()).sink
    assert sink.header("Content-Length") == ["5"]
    assert sink.sent_files == [(10, 5, bytes(range(10, 15)))]
    assert sink.ends == ["finish"]


def test_a_file_shorter_than_the_apps_content_length_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    app, _ = file_app(path, [*TEXT, ("Content-Length", "20")])
    sink = serve(app, sink=FileSink()).sink
    assert sink.sent_files == [(0, 10, b"x" * 10)]
    assert sink.ends == ["abort"]  # 10 of 20 bytes: never a false success


def test_a_file_answering_head_declares_its_size_and_sends_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    app, opened = file_app(path)
    sink = serve(app, method=b"HEAD", sink=FileSink()).sink
    assert sink.header("Content-Length") == ["10"]
    assert sink.sent_files == []
    assert sink.ends == ["finish"]
    assert opened[0].closed


def test_a_file_is_iterated_when_the_sink_cannot_send_files(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    app, _ = file_app(path)
    sink = serve(app).sink  # FakeSink: no sendfile
    assert sink.body == b"x" * 10
    assert sink.ends == ["finish"]


def test_subclass_error_output() -> None:
    class JSONErrors(ServerHandler):
        def error_output(
            self, environ: Environ, start_response: StartResponse
        ) -> list[bytes]:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json")],
                sys.exc_info(),
            )
            return [b'{"error": "%s"}' % environ["PATH_INFO"].encode()]

    result = serve(apps.error_before_start, target=b"/x", handler_class=JSONErrors)
    sink = result.sink
    assert sink.status == "503 Service Unavailable"
    assert sink.header("Content-Type") == ["application/json"]
    assert sink.body == b'{"error": "/x"}'
    assert sink.header("Content-Length") == [str(len(sink.body))]
    assert len(result.errors) == 1


def test_subclass_log_exception() -> None:
    seen: list[Any] = []

    class Quiet(ServerHandler):
        def log_exception(self, exc_info: Any) -> None:
            seen.append(exc_info[1])

    result = serve(apps.error_before_start, handler_class=Quiet)
    assert result.records == []
    assert [type(e) for e in seen] == [RuntimeError]
    assert result.sink.status.startswith("500")


def test_subclass_error_attributes() -> None:
    class Plain(ServerHandler):
        error_status = "500 Oops"
        error_headers = [("Content-Type", "text/html")]  # noqa: RUF012
        error_body = b"<h1>Oops</h1>"

    sink = serve(apps.error_before_start, handler_class=Plain).sink
    assert sink.status == "500 Oops"
    assert sink.header("Content-Type") == ["text/html"]
    assert sink.body == b"<h1>Oops</h1>"


def test_app_connection_errors_are_app_errors() -> None:
    """Only ClientDisconnected means the client left; a reset from the app's own
    backend connection is an app error. (wsgiref, and our SimpleHandler, stay
    silent: they cannot tell the two apart.)"""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise ConnectionResetError("database connection reset")

    result = serve(app)
    assert result.sink.status == "500 Internal Server Error"
    assert result.sink.ends == ["finish"]
    (record,) = result.errors
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionResetError)
    for handler_class in (wsgiref.handlers.SimpleHandler, SimpleHandler):
        run = run_stream(handler_class, app)
        assert (run.out, run.err) == (b"", "")


def test_error_in_error_output_aborts_and_propagates() -> None:
    class Broken(ServerHandler):
        def error_output(
            self, environ: Environ, start_response: StartResponse
        ) -> list[bytes]:
            raise KeyError("broken error page")

    events: list[Any] = []
    body = ClosingIterable([b"a"], log=events, fail_after=0)

    def app(environ: Environ, start_response: StartResponse) -> ClosingIterable:
        start_response("200 OK", list(TEXT))
        return body

    sink = FakeSink(events)
    with pytest.raises(KeyError, match="broken error page"):
        serve(app, handler_class=Broken, sink=sink)
    assert events == [("close",), ("abort",)]  # closed once, never twice


def test_error_on_head_request_has_no_body() -> None:
    sink = serve(apps.error_before_start, method=b"HEAD").sink
    assert sink.status == "500 Internal Server Error"
    assert sink.body == b""
    assert sink.header("Content-Length") == [str(len(ServerHandler.error_body))]
    assert sink.ends == ["finish"]


def test_handler_state_reset_after_run() -> None:
    result = serve(apps.hello)
    handler = result.handler
    assert handler.status is None
    assert handler.headers is None
    assert handler.result is None
    assert handler.environ is None
    assert handler.headers_sent is False


# ---------------------------------------------------------------------------------
# ServerHandler's fast paths: every hook still runs, every header change still counts
# ---------------------------------------------------------------------------------

# Every overridable hook, recorded by a subclass that then calls the real one.
HOOKS = (
    "setup_environ",
    "add_cgi_vars",
    "get_stdin",
    "get_stderr",
    "get_scheme",
    "start_response",
    "finish_response",
    "result_is_file",
    "sendfile",
    "write",
    "send_headers",
    "cleanup_headers",
    "set_content_length",
    "send_preamble",
    "client_is_modern",
    "_write",
    "_flush",
    "finish_content",
    "close",
    "handle_error",
    "log_exception",
    "error_output",
)


def recording_handler(calls: list[Any]) -> type[ServerHandler]:
    def hook(name: str) -> Callable[..., Any]:
        def method(self: ServerHandler, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return getattr(super(Recording, self), name)(*args, **kwargs)

        return method

    Recording = type("Recording", (ServerHandler,), {n: hook(n) for n in HOOKS})
    return Recording


_PREFIX = ["setup_environ", "add_cgi_vars", "get_stdin", "get_stderr", "get_scheme"]
_HEADERS = [
    "send_headers",
    "cleanup_headers",
    "set_content_length",
    "client_is_modern",
    "send_preamble",
    "client_is_modern",  # wsgiref's send_preamble asks again
]
_CHUNK = ["_write", "sink.write", "_flush"]
_END = ["finish_content", "close", "sink.finish"]


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            apps.hello,
            [*_PREFIX, "start_response", "finish_response", "result_is_file",
             "write", *_HEADERS, "sink.start", *_CHUNK, *_END],
        ),
        (
            apps.generator,
            [*_PREFIX, "finish_response", "result_is_file", "start_response",
             "write", *_HEADERS, "sink.start", *_CHUNK, "write", *_CHUNK, *_END],
        ),
        (
            apps.empty_list,
            [*_PREFIX, "start_response", "finish_response", "result_is_file",
             "finish_content", "send_headers", "cleanup_headers", "client_is_modern",
             "send_preamble", "client_is_modern", "sink.start", "close",
             "sink.finish"],
        ),
        (
            apps.file_wrapper,
            [*_PREFIX, "start_response", "finish_response", "result_is_file",
             "sendfile", "write", *_HEADERS, "sink.start", *_CHUNK,
             *(["write", *_CHUNK] * 3), *_END],
        ),
        (
            apps.error_after_start,
            [*_PREFIX, "start_response", "handle_error", "log_exception",
             "get_stderr", "error_output", "start_response", "finish_response", "result_is_file",
             "write", *_HEADERS, "sink.start", *_CHUNK, *_END],
        ),
    ],
)  # fmt: skip
def test_every_hook_runs_in_order(app: App, expected: list[str]) -> None:
    """The hooks run in wsgiref's order (send_headers: cleanup_headers,
    client_is_modern, send_preamble, then the headers go out)."""
    calls: list[Any] = []
    serve(app, sink=FakeSink(calls), handler_class=recording_handler(calls))
    assert [c if isinstance(c, str) else f"sink.{c[0]}" for c in calls] == expected


def handler_of(start_response: StartResponse) -> ServerHandler:
    """The handler behind a ``start_response`` (what an app could reach)."""
    handler = start_response.__self__  # type: ignore[attr-defined]
    assert isinstance(handler, ServerHandler)
    return handler


def test_app_changes_headers_after_start_response() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [*TEXT, ("Content-Length", "5"), ("Server", "x")])
        headers = handler_of(start_response).headers
        assert headers is not None
        headers["Content-Length"] = "3"
        del headers["Server"]
        headers.add_header("Date", "one")
        headers.add_header("Date", "two")
        return [b"hello"]

    result = serve(app)
    sink = result.sink
    assert sink.header("Content-Length") == ["3"]  # the new length frames the body
    assert sink.body == b"hel"
    assert sink.header("Date") == ["one"]  # exactly one Date, still
    assert sink.header("Server") == [f"aiogate/{__version__}"]
    assert sink.ends == ["finish"]


def test_app_replaces_the_headers_object() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [*TEXT, ("Content-Length", "99")])
        handler_of(start_response).headers = Headers([("X-New", "1")])
        return [b"hello"]

    sink = serve(app).sink
    assert [name for name, _ in sink.headers] == [
        "X-New",
        "Content-Length",
        "Date",
        "Server",
    ]
    assert sink.header("Content-Length") == ["5"]  # inferred: the 99 went with it
    assert sink.body == b"hello"


class LengthInCleanup(ServerHandler):
    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        assert self.headers is not None
        self.headers["Content-Length"] = "2"


class ReplacedInCleanup(ServerHandler):
    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self.headers = Headers([("X-Replaced", "1")])


class EditedAfterPreamble(ServerHandler):
    def send_preamble(self) -> None:
        super().send_preamble()
        assert self.headers is not None
        del self.headers["Server"]
        self.headers.add_header("X-After", "1")


class DateBeforePreamble(ServerHandler):
    def send_preamble(self) -> None:
        assert self.headers is not None
        self.headers.add_header("Date", "early")
        super().send_preamble()


class NoInferredLength(ServerHandler):
    def set_content_length(self) -> None:
        pass


class OwnInferredLength(ServerHandler):
    def set_content_length(self) -> None:
        assert self.headers is not None
        self.headers["Content-Length"] = "1"


class CountingSets(Headers):
    names: list[str] = []  # noqa: RUF012

    def __setitem__(self, name: str, val: str) -> None:
        self.names.append(name)
        super().__setitem__(name, val)


class OwnHeadersClass(ServerHandler):
    headers_class = CountingSets


DATE = ("Date", "<date>")
SERVER = ("Server", f"aiogate/{__version__}")
CT = ("Content-Type", "text/plain")


@pytest.mark.parametrize(
    ("handler_class", "headers", "body"),
    [
        (LengthInCleanup, [CT, ("Content-Length", "2"), DATE, SERVER], b"he"),
        (ReplacedInCleanup, [("X-Replaced", "1"), DATE, SERVER], b"hello"),
        (
            EditedAfterPreamble,
            [CT, ("Content-Length", "5"), DATE, ("X-After", "1")],
            b"hello",
        ),
        (
            DateBeforePreamble,
            [CT, ("Content-Length", "5"), ("Date", "early"), SERVER],
            b"hello",
        ),
        (NoInferredLength, [CT, DATE, SERVER], b"hello"),
        (OwnInferredLength, [CT, ("Content-Length", "1"), DATE, SERVER], b"h"),
        (OwnHeadersClass, [CT, ("Content-Length", "5"), DATE, SERVER], b"hello"),
    ],
)
def test_subclass_header_changes_are_honoured(
    handler_class: type[ServerHandler], headers: list[tuple[str, str]], body: bytes
) -> None:
    """Each hook may change ``self.headers``; what reaches the sink, and the length
    that frames the body, follow the change."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", list(TEXT))
        return [b"hello"]

    sink = serve(app, handler_class=handler_class).sink
    sent = [(n, "<date>" if DATE_RE.fullmatch(v) else v) for n, v in sink.headers]
    assert sent == headers
    assert sink.body == body
    assert sink.ends == ["finish"]


def test_own_headers_class_is_used_through_its_api() -> None:
    CountingSets.names.clear()
    seen: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", list(TEXT))
        seen.append(handler_of(start_response).headers)
        return [b"hello"]

    serve(app, handler_class=OwnHeadersClass)
    assert type(seen[0]) is CountingSets
    assert CountingSets.names == ["Content-Length", "Date", "Server"]


def test_default_headers_object_is_a_plain_headers() -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("X-A", " padded ")])
        headers = handler_of(start_response).headers
        seen.append((type(headers), headers.items() if headers else None))
        return [b"x"]

    serve(app)
    assert seen == [(Headers, [("X-A", "padded")])]


def test_str_subclass_header_name_is_still_refused_by_headers() -> None:
    """A str subclass passes validate_headers but not wsgiref's Headers (exact str
    only): a 500, as before the fast path."""

    class Name(str):
        pass

    result = serve(apps.status_app("200 OK", [(Name("X-A"), "b")]))
    assert result.sink.status == "500 Internal Server Error"
    (record,) = result.errors
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is AssertionError


def test_path_is_worked_out_when_asked_and_can_be_set() -> None:
    handler = ServerHandler(
        io.BytesIO(), FakeSink(), io.StringIO(), FakeRequest(target=b"/a/b?q=1"), CONN
    )
    assert handler.path == "/a/b"
    handler.path = "/elsewhere"
    assert handler.path == "/elsewhere"


def test_subclasses_may_add_attributes() -> None:
    class WithState(ServerHandler):
        def setup_environ(self) -> None:
            self.extra = "kept"
            super().setup_environ()

    result = serve(apps.hello, handler_class=WithState)
    assert result.handler.extra == "kept"  # type: ignore[attr-defined]
    assert result.sink.status == "200 OK"


# ---------------------------------------------------------------------------------
# wsgi.errors and log_exception
# ---------------------------------------------------------------------------------


def test_the_error_log_makes_a_record_per_write_of_whole_lines() -> None:
    recorder = RecordingHandler()
    logger = logging.getLogger("test.wsgi_errors")
    logger.addHandler(recorder)
    try:
        errors = ErrorLog(logger)
        errors.write("one line\n")
        errors.write("two\nlines\n")
        errors.write("part")  # waits for the rest of its line
        assert [r.getMessage() for r in recorder.records] == ["one line", "two\nlines"]
        errors.write(" and the rest\nnext")
        errors.flush()
        errors.flush()  # nothing more
    finally:
        logger.removeHandler(recorder)
    assert [r.getMessage() for r in recorder.records] == [
        "one line",
        "two\nlines",
        "part and the rest",
        "next",
    ]
    assert {r.levelno for r in recorder.records} == {logging.ERROR}
    with pytest.raises(TypeError, match="str"):
        errors.write(b"bytes")  # type: ignore[arg-type]


def test_the_error_log_keeps_each_threads_unfinished_line_apart() -> None:
    recorder = RecordingHandler()
    logger = logging.getLogger("test.wsgi_errors.threads")
    logger.addHandler(recorder)
    errors = ErrorLog(logger)
    try:
        errors.write("main ")
        worker = threading.Thread(
            target=lambda: (errors.write("worker "), errors.flush())
        )
        worker.start()
        worker.join(5)
        errors.write("thread\n")
    finally:
        logger.removeHandler(recorder)
    assert [r.getMessage() for r in recorder.records] == ["worker ", "main thread"]


def nested_failure(environ: Environ, start_response: StartResponse) -> list[bytes]:
    def inner() -> None:
        raise apps.AppError("deep")

    def outer() -> None:
        inner()

    outer()
    return []


def test_log_exception_keeps_the_exception_and_cuts_the_traceback() -> None:
    class Short(ServerHandler):
        traceback_limit = 1

    full = serve(nested_failure).errors[0]
    short = serve(nested_failure, handler_class=Short).errors[0]
    for record in (full, short):
        assert record.getMessage() == "Error in app handling GET /"
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == "deep"
    formatter = logging.Formatter()
    assert "in inner" in formatter.format(full)
    text = formatter.format(short)
    assert "in inner" not in text  # one frame: the handler's call of the app
    assert text.endswith("AppError: deep")


def test_log_exception_writes_wsgirefs_text_to_a_redirected_stderr() -> None:
    stream = io.StringIO()

    class ToStream(ServerHandler):
        traceback_limit = 1

        def get_stderr(self) -> io.StringIO:
            return stream

    result = serve(nested_failure, handler_class=ToStream)
    assert result.errors == []  # not logged: written where the subclass said
    assert result.sink.status.startswith("500 ")
    text = stream.getvalue()
    assert text.startswith("Traceback (most recent call last):")
    assert "in inner" not in text
    assert text.endswith("AppError: deep\n")


def test_what_the_app_writes_to_wsgi_errors_is_logged_for_its_request() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.errors"].write("cache miss for /x\n")
        print("no newline at the end", end="", file=environ["wsgi.errors"])
        start_response("200 OK", list(TEXT))
        return [b"ok"]

    result = serve(app)
    assert [r.getMessage() for r in result.errors] == [
        "cache miss for /x",
        "no newline at the end",  # flushed when the request ended
    ]


def test_preamble_follows_origin_server_and_client_is_modern() -> None:
    class NotOrigin(ServerHandler):
        origin_server = False

    class Ancient(ServerHandler):
        def client_is_modern(self) -> bool:
            return False

    for cls in (NotOrigin, Ancient):
        sink = serve(apps.hello, handler_class=cls).sink
        assert sink.header("Date") == [], cls
        assert sink.header("Server") == [], cls
        assert sink.body == b"Hello, world!"
    sink = serve(apps.hello).sink
    assert len(sink.header("Date")) == 1
    assert sink.header("Server") == [f"aiogate/{__version__}"]
