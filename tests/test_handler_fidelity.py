"""The same wsgiref subclass overrides, on wsgiref's own handler and on aiogate's server.

Issue 13 asks that anyone who has subclassed ``wsgiref.handlers`` can customise
aiogate the same way. So each row of ``OVERRIDES`` is the body of a subclass a wsgiref
user would write, and each is applied twice:

- to the standard library's ``wsgiref.handlers.SimpleHandler``, run on ``BytesIO``
  streams with a CGI-ish environ; the raw bytes it writes are parsed as an HTTP
  response;
- to ``aiogate.handlers.ServerHandler``, the class a live ``Server(app, port=0,
  handler_class=...)`` on loopback runs; a real client reads the response.

Every app of ``APPS`` runs through both, and for each (override, app) three tests
compare the two, after the one normalisation of documented differences in
``normalise``:

- ``test_client_receives_the_same``: the status, the headers that matter and the body;
- ``test_hooks_are_called_the_same``: the sequence of hook calls with their key
  arguments and results (``Recorder`` wraps every public hook of wsgiref's
  ``BaseHandler``), and what the overrides themselves recorded;
- ``test_app_sees_the_same_environ``: the environ the app saw, apart from the
  variables that describe the request itself.

A difference that neither the ``ServerHandler`` docstring nor the ``aiogate.handlers``
docstring documents is a bug: it is listed in ``KNOWN_DIFFERENCES``, and the cases it
shows in are marked ``xfail(strict=True)``, so the suite passes while it is known and
fails once it is fixed (then remove the entry).

One server per override, started once and asked for every app (``server_seen``); no
sleeps: the handler reports each request's hook calls through a queue when ``run``
returns, and the test waits on it with a timeout.
"""

from __future__ import annotations

import asyncio
import io
import queue
import re
import sys
import wsgiref.handlers
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar
from wsgiref.headers import Headers

import pytest

from aiogate import Server
from aiogate.handlers import ServerHandler
from tests.client import Client

TIMEOUT = 10.0

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


# -- the apps -----------------------------------------------------------------------

#: Header lists are copied on every use: a ``Headers`` object edits the very list it
#: was made with (wsgiref's ``finish_content`` adds ``Content-Length: 0`` to it).
TEXT = (("Content-Type", "text/plain"),)
#: A real file for the ``wsgi.file_wrapper`` apps: this module's own source (several
#: 8 KiB blocks, and it exists wherever the test runs).
REAL_FILE = Path(__file__)
BLOCK_SIZE = 8192


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-App", "hello")])
    return [b"hello"]


def streaming(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])

    def chunks() -> Iterator[bytes]:
        yield b"one "
        yield b"two "
        yield b"three"

    return chunks()


def write_callable(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The legacy ``write()`` callable of PEP 3333, then the iterable."""
    write = start_response("200 OK", [*TEXT])
    write(b"written, ")
    return [b"then returned"]


def empty(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    return []


def error_before_start(
    environ: Environ, start_response: StartResponse
) -> Iterable[bytes]:
    raise RuntimeError("failed before start_response")


def error_after_start(
    environ: Environ, start_response: StartResponse
) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    raise ValueError("failed after start_response, before the body")


def _blocks(filelike: Any, size: int) -> Iterator[bytes]:
    """PEP 3333's fallback when there is no ``wsgi.file_wrapper`` (closing the file)."""
    with filelike:
        while block := filelike.read(size):
            yield block


def _file_response(environ: Environ, filelike: Any, size: int) -> Iterable[bytes]:
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:
        return _blocks(filelike, size)
    return wrapper(filelike, size)  # type: ignore[no-any-return]


def file_bytesio(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _file_response(environ, io.BytesIO(b"0123456789" * 3), 8)


def file_real(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/x-python")])
    return _file_response(environ, REAL_FILE.open("rb"), BLOCK_SIZE)


@dataclass(frozen=True)
class Request:
    method: str
    app: App


#: Each app is served at ``/<name>``.
APPS: dict[str, Request] = {
    "hello": Request("GET", hello),
    "streaming": Request("GET", streaming),
    "write_callable": Request("GET", write_callable),
    "empty": Request("GET", empty),
    "error_before_start": Request("GET", error_before_start),
    "error_after_start": Request("GET", error_after_start),
    "file_bytesio": Request("GET", file_bytesio),
    "file_real": Request("GET", file_real),
    "head": Request("HEAD", hello),
}


def dispatch(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return APPS[environ["PATH_INFO"].lstrip("/")].app(environ, start_response)


# -- recording the hooks ------------------------------------------------------------


def _exc_name(exc_info: Any) -> str | None:
    return exc_info[0].__name__ if exc_info and exc_info[0] is not None else None


#: Every public hook of wsgiref's ``BaseHandler`` a subclass may override, with what
#: to record of its arguments (None: nothing). ``RESULT_HOOKS`` also record what they
#: returned. ``run`` is wrapped separately (``Recorder.run``).
HOOKS: dict[str, Callable[..., object] | None] = {
    "setup_environ": None,
    "get_stdin": None,
    "get_stderr": None,
    "add_cgi_vars": None,
    "get_scheme": None,
    "start_response": lambda status, headers, exc_info=None: (
        status,
        _exc_name(exc_info),
    ),
    "finish_response": None,
    "result_is_file": None,
    "sendfile": None,
    "write": lambda data: len(data),
    "send_headers": None,
    "cleanup_headers": None,
    "set_content_length": None,
    "client_is_modern": None,
    "send_preamble": None,
    "finish_content": None,
    "close": None,
    "handle_error": None,
    "log_exception": _exc_name,
    "error_output": None,
}
RESULT_HOOKS = {"get_scheme", "result_is_file", "sendfile", "client_is_modern"}


@dataclass
class Observed:
    """What one handler saw of one request (sent through ``Recorder.outbox``)."""

    path: str
    #: (hook, key argument or result), in call order; overrides may add their own.
    calls: list[tuple[str, object]]
    #: The environ the app saw: key -> a comparable description of the value.
    environ: dict[str, object]


def _describe(key: str, value: object) -> object:
    if key == "wsgi.file_wrapper":
        return getattr(value, "__qualname__", repr(value))
    return value


class Recorder:
    """The outermost mixin: wraps every hook of ``HOOKS`` (below the class) to record
    the call in ``fidelity_calls``, and ``run`` to capture the app's environ and to
    report the whole ``Observed`` through ``outbox`` when it returns."""

    outbox: ClassVar[queue.Queue[Observed]]
    fidelity_calls: list[tuple[str, object]]

    def run(self, application: App) -> None:
        self.fidelity_calls = []
        seen: dict[str, object] = {}
        path = ""

        def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            nonlocal path
            path = environ["PATH_INFO"]
            seen.update({key: _describe(key, value) for key, value in environ.items()})
            # The streams: are they what get_stdin()/get_stderr() return (asked
            # past Recorder, so as not to record the question)?
            handler: Any = super(Recorder, self)
            seen["wsgi.input"] = environ["wsgi.input"] is handler.get_stdin()
            seen["wsgi.errors"] = environ["wsgi.errors"] is handler.get_stderr()
            return application(environ, start_response)

        try:
            super().run(app)  # type: ignore[misc]
        finally:
            self.outbox.put(Observed(path, self.fidelity_calls, seen))


def _recording(name: str, describe: Callable[..., object] | None) -> Callable[..., Any]:
    def hook(self: Recorder, *args: Any, **kwargs: Any) -> Any:
        arg = describe(*args, **kwargs) if describe is not None else None
        index = len(self.fidelity_calls)
        self.fidelity_calls.append((name, arg))
        result = getattr(super(Recorder, self), name)(*args, **kwargs)
        if name in RESULT_HOOKS:
            self.fidelity_calls[index] = (name, result)
        return result

    hook.__name__ = hook.__qualname__ = name
    return hook


for _name, _describe_args in HOOKS.items():
    setattr(Recorder, _name, _recording(_name, _describe_args))


# -- the overrides ------------------------------------------------------------------
# Each is the body of a subclass a wsgiref user would write, as a mixin placed between
# ``Recorder`` and the handler class. Anything they record goes to fidelity_calls.


class Baseline:
    """No override: the defaults themselves."""


class ErrorPage:
    error_status = "502 Bad Gateway"
    error_headers: ClassVar[list[tuple[str, str]]] = [
        ("Content-Type", "text/html"),
        ("X-Error", "custom"),
    ]
    error_body = b"<p>custom error</p>"


class ErrorOutput:
    def error_output(
        self, environ: Environ, start_response: StartResponse
    ) -> list[bytes]:
        start_response(
            "503 Service Unavailable",
            [*TEXT, ("Retry-After", "1")],
            sys.exc_info(),
        )
        return [b"error_output: ", type(sys.exc_info()[1]).__name__.encode()]


class ServerSoftware:
    server_software = "Fidelity/1.0"


class NoServerSoftware:
    server_software = ""


class OsEnviron:
    os_environ: ClassVar[dict[str, str]] = {"FIDELITY_OS": "yes"}


class NoFileWrapper:
    wsgi_file_wrapper = None


class BlockWrapper:
    """A file wrapper of one's own, shaped like wsgiref's (``filelike``, blocks)."""

    def __init__(self, filelike: Any, blksize: int = BLOCK_SIZE) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        while block := self.filelike.read(self.blksize):
            yield block

    def close(self) -> None:
        self.filelike.close()


class CustomFileWrapper:
    wsgi_file_wrapper = BlockWrapper


class UpperWrapper(wsgiref.util.FileWrapper):
    """A ``FileWrapper`` subclass that transforms what it yields (as a wrapper that
    decompresses, encrypts or templates a file would)."""

    def __next__(self) -> bytes:
        return super().__next__().upper()


class TransformingFileWrapper:
    wsgi_file_wrapper = UpperWrapper


class HttpsScheme:
    def get_scheme(self) -> str:
        return "https"


class AddCgiVars:
    def add_cgi_vars(self) -> None:
        super().add_cgi_vars()  # type: ignore[misc]
        self.environ["FIDELITY_CGI"] = "yes"  # type: ignore[attr-defined]


class SetupEnviron:
    def setup_environ(self) -> None:
        super().setup_environ()  # type: ignore[misc]
        self.environ["fidelity.setup"] = "yes"  # type: ignore[attr-defined]


class CleanupHeaders:
    def cleanup_headers(self) -> None:
        super().cleanup_headers()  # type: ignore[misc]
        self.headers["X-Cleanup"] = "yes"  # type: ignore[attr-defined]


class NoContentLength:
    def set_content_length(self) -> None:
        """Never infer a Content-Length (the server frames the body)."""


class PassThrough:
    """Overrides that note they ran and call super: a subclass's usual instrumentation."""

    fidelity_calls: list[tuple[str, object]]

    def start_response(self, *args: Any) -> Any:
        self.fidelity_calls.append(("override", "start_response"))
        return super().start_response(*args)  # type: ignore[misc]

    def finish_response(self) -> None:
        self.fidelity_calls.append(("override", "finish_response"))
        super().finish_response()  # type: ignore[misc]

    def send_preamble(self) -> None:
        self.fidelity_calls.append(("override", "send_preamble"))
        super().send_preamble()  # type: ignore[misc]

    def finish_content(self) -> None:
        self.fidelity_calls.append(("override", "finish_content"))
        super().finish_content()  # type: ignore[misc]

    def close(self) -> None:
        self.fidelity_calls.append(("override", "close"))
        super().close()  # type: ignore[misc]


class LogException:
    """Sends errors elsewhere instead of ``wsgi.errors`` (no super)."""

    fidelity_calls: list[tuple[str, object]]

    def log_exception(self, exc_info: Any) -> None:
        self.fidelity_calls.append(("logged", (exc_info[0].__name__, str(exc_info[1]))))


_FRAME = re.compile(r'^  File ".*", line \d+, in (\S+)$', re.MULTILINE)


class RedirectedStderr:
    """``wsgi.errors`` to a stream of one's own, tracebacks cut to one frame."""

    traceback_limit = 1
    fidelity_calls: list[tuple[str, object]]
    _captured: io.StringIO

    def get_stderr(self) -> io.StringIO:
        if not hasattr(self, "_captured"):
            self._captured = io.StringIO()
        return self._captured

    def log_exception(self, exc_info: Any) -> None:
        super().log_exception(exc_info)  # type: ignore[misc]
        text = self._captured.getvalue()
        # The frames' function names and the last line (file paths and line numbers
        # are each handler's own).
        self.fidelity_calls.append(
            ("stderr", (_FRAME.findall(text), text.splitlines()[-1]))
        )


class NotAFile:
    def result_is_file(self) -> bool:
        return False


class OwnSendfile:
    """A platform-specific ``sendfile``, as wsgiref's docstring describes: send the
    headers if not sent yet, transmit the file, return True."""

    result: Any
    headers: Headers
    headers_sent: bool

    def sendfile(self) -> bool:
        data = b"".join(self.result)
        if not self.headers_sent:
            self.headers["Content-Length"] = str(len(data))
            self.send_headers()  # type: ignore[attr-defined]
        self._write(data)  # type: ignore[attr-defined]
        self._flush()  # type: ignore[attr-defined]
        return True


class RecordingHeaders(Headers):
    """A ``Headers`` subclass that notes which headers the handler sets."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers)
        self.set_names: list[str] = []

    def __setitem__(self, name: str, val: str) -> None:
        self.set_names.append(name)
        super().__setitem__(name, val)

    def setdefault(self, name: str, value: str) -> str:
        if name not in self:
            self.set_names.append(name)
        return super().setdefault(name, value)


class HeadersClass:
    headers_class = RecordingHeaders
    fidelity_calls: list[tuple[str, object]]
    headers: Any

    def close(self) -> None:
        if isinstance(self.headers, RecordingHeaders):
            self.fidelity_calls.append(("headers set", tuple(self.headers.set_names)))
        super().close()  # type: ignore[misc]


class NotOrigin:
    origin_server = False


class Http10:
    http_version = "1.0"


OVERRIDES: dict[str, type] = {
    "baseline": Baseline,
    "error_page": ErrorPage,
    "error_output": ErrorOutput,
    "server_software": ServerSoftware,
    "server_software_empty": NoServerSoftware,
    "os_environ": OsEnviron,
    "no_file_wrapper": NoFileWrapper,
    "custom_file_wrapper": CustomFileWrapper,
    "transforming_file_wrapper": TransformingFileWrapper,
    "get_scheme": HttpsScheme,
    "add_cgi_vars": AddCgiVars,
    "setup_environ": SetupEnviron,
    "cleanup_headers": CleanupHeaders,
    "set_content_length": NoContentLength,
    "pass_through": PassThrough,
    "log_exception": LogException,
    "get_stderr_traceback_limit": RedirectedStderr,
    "result_is_file": NotAFile,
    "sendfile": OwnSendfile,
    "headers_class": HeadersClass,
    "origin_server": NotOrigin,
    "http_version": Http10,
}


def subclass(override: str, base: type) -> type:
    """``class X(Recorder, <override>, base)``, with its own outbox."""
    mixin = OVERRIDES[override]
    return type(
        f"{mixin.__name__}On{base.__name__}",
        (Recorder, mixin, base),
        {"outbox": queue.Queue()},
    )


# -- running both -------------------------------------------------------------------


@dataclass
class Seen:
    """One request's outcome on one side: what the client got, what the hooks saw."""

    version: str | None  # the status line's HTTP version; None for a CGI Status:
    status: int
    headers: list[tuple[str, str]]  # lowercased names, in the order received
    body: bytes
    observed: Observed
    handler: type  # the handler class that ran


def _take(outbox: queue.Queue[Observed], path: str) -> Observed:
    observed = outbox.get(timeout=TIMEOUT)
    assert observed.path == path, (observed.path, path)
    return observed


def parse_stream_response(
    raw: bytes,
) -> tuple[str | None, int, list[tuple[str, str]], bytes]:
    """wsgiref's raw output: an HTTP/1.x status line, or a CGI ``Status:`` header
    (``origin_server = False``), then headers, a blank line and the body."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, raw
    lines = head.decode("latin-1").split("\r\n")
    version: str | None = None
    if lines[0].startswith("HTTP/"):
        version_text, _, rest = lines.pop(0).partition(" ")
        version = version_text.removeprefix("HTTP/")
        status = int(rest[:3])
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value.strip()))
    if version is None:
        status_value = next(value for name, value in headers if name == "status")
        status = int(status_value[:3])
        headers = [(name, value) for name, value in headers if name != "status"]
    return version, status, headers, body


@cache
def stream_seen(override: str, app: str) -> Seen:
    """Run ``app`` through wsgiref's own ``SimpleHandler`` with the override
    (once: three tests compare it)."""
    cls = subclass(override, wsgiref.handlers.SimpleHandler)
    request = APPS[app]
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": f"/{app}",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "t",
        "REMOTE_ADDR": "127.0.0.1",
    }
    stdout = io.BytesIO()
    handler = cls(io.BytesIO(), stdout, io.StringIO(), environ)
    handler.run(dispatch)
    version, status, headers, body = parse_stream_response(stdout.getvalue())
    return Seen(version, status, headers, body, _take(cls.outbox, f"/{app}"), cls)


async def _ask_all(cls: Any) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    async with Server(dispatch, port=0, handler_class=cls, access_log=False) as server:
        port = server.sockets[0].getsockname()[1]
        for app, request in APPS.items():
            client = await Client.connect(port)
            try:
                await client.send(
                    f"{request.method} /{app} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                )
                response = await client.response(request.method.encode())
            finally:
                await client.close()
            observed = await asyncio.to_thread(_take, cls.outbox, f"/{app}")
            seen[app] = Seen(
                response.http_version.decode(),
                response.status,
                [
                    (n.decode("latin-1"), v.decode("latin-1"))
                    for n, v in response.headers
                ],
                response.body,
                observed,
                cls,
            )
    return seen


@cache
def server_seen(override: str) -> dict[str, Seen]:
    """Every app through one live server whose handler class has the override."""
    return asyncio.run(_ask_all(subclass(override, ServerHandler)))


# -- the normalisation: every documented difference, in one place ---------------------

#: Framing and connection management are the server's (and h11's) job, not the
#: handler's: wsgiref on a stream says nothing about them.
FRAMING = {"transfer-encoding", "connection", "keep-alive"}
#: The process environment, which wsgiref's default ``os_environ`` copies into every
#: request.
PROCESS_ENVIRON = set(wsgiref.handlers.BaseHandler.os_environ)
#: The CGI variables that describe the request and the connection (RFC 3875 §4.1):
#: each side's gateway derives them from its own request (a CGI-ish dict here, a real
#: socket there). What the hooks add (``wsgi.*``, ``SERVER_SOFTWARE``, the overrides'
#: keys, ``os_environ``) is compared.
REQUEST_KEYS = {
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REMOTE_HOST",
    "RAW_URI",
    "REQUEST_URI",
}


@dataclass(frozen=True)
class View:
    """One side's outcome, comparable with the other side's."""

    # What the client received.
    says_http_version: bool  # the status line's version is the handler's http_version
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    # What the hooks and the app saw.
    calls: list[tuple[str, object]]
    environ: dict[str, object]


def normalise(stream: Seen, server: Seen) -> tuple[View, View]:
    """Both sides' outcome, minus the differences the docstrings document.

    Each step names the docstring that documents the difference: "SH n" is item n
    of the ``ServerHandler`` class docstring's list.
    """
    views = []
    for seen in (stream, server):
        is_server = seen is server
        cls = seen.handler
        headers = [(n, v) for n, v in seen.headers if n not in FRAMING and n != "date"]
        body = seen.body
        calls = list(seen.observed.calls)
        environ = {
            key: value
            for key, value in seen.observed.environ.items()
            if key not in REQUEST_KEYS and not key.startswith("HTTP_")
        }

        # The default server_software differs: wsgiref's BaseHandler has None (no
        # Server header, no SERVER_SOFTWARE), ServerHandler's is "aiogate/<version>"
        # (SH 3: send_preamble adds Server unless server_software is empty). A
        # different default value, not a different behaviour: the default's Server
        # header and SERVER_SOFTWARE are left out; an override's are compared.
        base = ServerHandler if is_server else wsgiref.handlers.SimpleHandler
        software = cls.server_software
        if software and software == base.server_software:
            headers = [(n, v) for n, v in headers if (n, v) != ("server", software)]
            if environ.get("SERVER_SOFTWARE") == software:
                del environ["SERVER_SOFTWARE"]

        # The status line's version is compared as "says the handler's
        # http_version" (wsgiref's default is "1.0", ServerHandler's "1.1").
        # wsgiref's CGI mode (origin_server = False) writes a ``Status:`` header,
        # which has no version.
        says_http_version = seen.version is None or seen.version == cls.http_version

        if not is_server:
            # SH 4: no body bytes for HEAD (wsgiref writes the body to the stream).
            if APPS[seen.observed.path.lstrip("/")].method == "HEAD":
                body = b""
            # SH 1: os_environ is {} by default: the process environment does not
            # leak into requests (wsgiref's default copies it).
            if cls.os_environ is wsgiref.handlers.BaseHandler.os_environ:
                environ = {
                    key: value
                    for key, value in environ.items()
                    if key not in PROCESS_ENVIRON
                }
        else:
            # SH 1: the environ also has wsgi.input_terminated = True.
            environ.pop("wsgi.input_terminated", None)
            # SH 3: send_preamble adds Date and Server to the headers (wsgiref
            # writes them straight to the stream), so a Headers subclass sees them
            # set.
            calls = [
                (name, tuple(h for h in arg if h not in ("Date", "Server")))
                if name == "headers set" and isinstance(arg, tuple)
                else (name, arg)
                for name, arg in calls
            ]

        # SH 3 again: Date and Server arrive after the app's headers, where wsgiref
        # writes them first. HTTP gives no meaning to the order of fields with
        # different names (RFC 9110 §5.3), so the headers are compared sorted by
        # name, keeping the order of same-name fields (a stable sort).
        headers.sort(key=lambda pair: pair[0])
        views.append(
            View(says_http_version, seen.status, headers, body, calls, environ)
        )
    stream_view, server_view = views

    # ServerHandler.sendfile (its docstring): the default sendfile() transmits a
    # wsgi.file_wrapper response of a regular file itself, declaring the file's size
    # as the Content-Length, where wsgiref's default returns False and the handler
    # iterates the wrapper. So wsgiref's iteration after ``sendfile`` (the ``write``
    # calls, ``finish_content``, and ``set_content_length``, which finds the
    # Content-Length sendfile set) becomes what sendfile does: send the headers; and
    # the declared size is not compared.
    if ("sendfile", True) in server_view.calls and (
        "sendfile",
        False,
    ) in stream_view.calls:
        start = stream_view.calls.index(("sendfile", False))
        after = [
            call
            for call in stream_view.calls[start + 1 :]
            if call[0] not in ("write", "finish_content", "set_content_length")
            and call != ("override", "finish_content")
        ]
        stream_view = replace(
            stream_view, calls=[*stream_view.calls[:start], ("sendfile", True), *after]
        )
        length = ("content-length", str(len(server_view.body)))
        if length in server_view.headers and not any(
            name == "content-length" for name, _ in stream_view.headers
        ):
            server_view = replace(
                server_view,
                headers=[h for h in server_view.headers if h != length],
                calls=[
                    (name, tuple(h for h in arg if h != "Content-Length"))
                    if name == "headers set" and isinstance(arg, tuple)
                    else (name, arg)
                    for name, arg in server_view.calls
                ],
            )
    return stream_view, server_view


# -- the tests ------------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """An undocumented difference: the cases of ``aspect`` it shows in."""

    reason: str
    aspect: str  # "client", "calls" or "environ"
    overrides: frozenset[str] = frozenset(OVERRIDES)
    apps: frozenset[str] = frozenset(APPS)


#: Every undocumented difference found: its cases are marked xfail(strict=True), so
#: they fail once it is fixed; then remove the entry.
KNOWN_DIFFERENCES: list[Known] = []


def _cases(aspect: str) -> list[Any]:
    cases = []
    for override in OVERRIDES:
        for app in APPS:
            reasons = [
                known.reason
                for known in KNOWN_DIFFERENCES
                if known.aspect == aspect
                and override in known.overrides
                and app in known.apps
            ]
            marks = (
                [pytest.mark.xfail(strict=True, reason="; ".join(reasons))]
                if reasons
                else []
            )
            cases.append(
                pytest.param(override, app, marks=marks, id=f"{override}-{app}")
            )
    return cases


def views(override: str, app: str) -> tuple[View, View]:
    return normalise(stream_seen(override, app), server_seen(override)[app])


@pytest.mark.parametrize(("override", "app"), _cases("client"))
def test_client_receives_the_same(override: str, app: str) -> None:
    stream, server = views(override, app)
    assert (
        server.says_http_version,
        server.status,
        server.headers,
        server.body,
    ) == (stream.says_http_version, stream.status, stream.headers, stream.body)


@pytest.mark.parametrize(("override", "app"), _cases("calls"))
def test_hooks_are_called_the_same(override: str, app: str) -> None:
    stream, server = views(override, app)
    assert server.calls == stream.calls


@pytest.mark.parametrize(("override", "app"), _cases("environ"))
def test_app_sees_the_same_environ(override: str, app: str) -> None:
    stream, server = views(override, app)
    assert server.environ == stream.environ
