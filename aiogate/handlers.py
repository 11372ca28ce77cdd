"""The wsgiref-style stream handlers: ``BaseHandler`` and the family that writes bytes.

Owns ``BaseHandler``, ``SimpleHandler``, ``BaseCGIHandler``, ``CGIHandler`` and
``IISCGIHandler``, with the public hooks, attributes, defaults and behaviour of CPython
3.11's ``wsgiref.handlers`` (code written against those works with these): they write
the response's raw bytes to a stream. Every method runs in the thread that calls
``run()``: the main thread for ``aiogate cgi`` (``CGIHandler``), a worker thread for
the server's ``ServerHandler`` (``aiogate.server_handler``, a ``BaseHandler``
subclass). Nothing here touches the event loop, a socket or h11.
``aiogate.handlers.ServerHandler`` still works: ``__getattr__`` at the bottom.

Differences from wsgiref, all deliberate:

1. Headers wait for the first *non-empty* body chunk (or the end of the iterable), as
   PEP 3333 requires; wsgiref sends them on any chunk, even ``b""``. So an app that
   yields ``b""`` and then fails gets a 500 here, where wsgiref sent a 200 and stopped.
2. Checks on what the app controls (status form, header and body types, hop-by-hop
   headers) are explicit ``raise`` statements of the exception types wsgiref's
   ``assert`` statements raise, so they still hold under ``python -O``.
3. ``start_response`` with ``exc_info`` after the headers went out re-raises
   ``exc_info`` itself (PEP 3333), not whatever exception happens to be active.
4. ``ServerHandler`` differs further; its docstring lists how.

Otherwise, for the same app, ``SimpleHandler`` and ``BaseCGIHandler`` write the same
bytes as wsgiref's (tests/test_handlers.py runs both and compares).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from typing import IO, TYPE_CHECKING
from wsgiref.handlers import read_environ
from wsgiref.headers import Headers
from wsgiref.util import FileWrapper, guess_scheme

from .response import http_date, is_hop_by_hop

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

    from ._types import (
        ErrorStream,
        InputStream,
        StartResponse,
        WSGIApplication,
        WSGIEnvironment,
    )
    from .server_handler import ServerHandler as ServerHandler

__all__ = [
    "BaseCGIHandler",
    "BaseHandler",
    "CGIHandler",
    "IISCGIHandler",
    "ServerHandler",
    "SimpleHandler",
    "read_environ",
]


#: What a client hanging up looks like from a write; ``run`` ends quietly on these
#: (wsgiref 3.11 ``BaseHandler.run``). ``ClientDisconnected`` is a
#: ``ConnectionAbortedError``.
_DISCONNECTS = (ConnectionAbortedError, BrokenPipeError, ConnectionResetError)


def _close_iterable(result: object) -> None:
    """Call ``result.close()`` if it has one (PEP 3333)."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


class BaseHandler:
    """Manage the invocation of a WSGI application (wsgiref's ``BaseHandler``).

    Subclasses provide ``_write``, ``_flush``, ``get_stdin``, ``get_stderr`` and
    ``add_cgi_vars``. The class attributes below are the configuration; override them
    per subclass or per instance.
    """

    # Configuration parameters; can override per-subclass or per-instance.
    wsgi_version: tuple[int, int] = (1, 0)
    wsgi_multithread: bool = True
    wsgi_multiprocess: bool = True
    wsgi_run_once: bool = False

    origin_server: bool = True  # We are transmitting direct to client
    http_version: str = "1.0"  # Version that should be used for response
    server_software: str | None = None  # String name of server software, if any

    #: Configuration from the OS environment, copied into every request's environ:
    #: by default ``os.environ`` as of import time, with the HTTP variables' bytes
    #: recovered (wsgiref's ``read_environ``).
    os_environ: MutableMapping[str, str] = read_environ()

    # Collaborator classes
    wsgi_file_wrapper: type[FileWrapper] | None = FileWrapper  # None to disable
    headers_class: type[Headers] = Headers  # must be a Headers-like class

    # Error handling (also per-subclass or per-instance)
    traceback_limit: int | None = None  # Print entire traceback to self.get_stderr()
    error_status: str = "500 Internal Server Error"
    # A plain list as in wsgiref, so instances may replace it; error_output copies it.
    error_headers: list[tuple[str, str]] = [("Content-Type", "text/plain")]  # noqa: RUF012
    error_body: bytes = b"A server error occurred.  Please contact the administrator."

    # State variables (don't mess with these)
    status: str | None = None
    result: Iterable[bytes] | None = None
    headers_sent: bool = False
    headers: Headers | None = None
    bytes_sent: int = 0
    #: Set by ``setup_environ``; ``close`` resets it to None, as wsgiref does.
    environ: WSGIEnvironment

    def run(self, application: WSGIApplication) -> None:
        """Invoke the application: set up the environ, call it, send its response.

        A client that hangs up ends the call quietly. Any other error goes to
        ``handle_error``; if that fails too, the handler is closed and the second
        error propagates to the caller.
        """
        # As in wsgiref, close() happens in finish_response (or on the double-error
        # branch below), never here: it resets the state this method relies on.
        try:
            self.setup_environ()
            self.result = application(self.environ, self.start_response)
            self.finish_response()
        except _DISCONNECTS:
            # We expect the client to close the connection abruptly from time to time.
            return
        except BaseException:  # wsgiref uses a bare except: SystemExit gets a 500 too
            try:
                self.handle_error()
            except BaseException:
                # If we get an error handling an error, just give up already!
                self.close()
                raise  # ...and let the actual server figure it out.

    def setup_environ(self) -> None:
        """Set up the environment for one request: ``os_environ``, then
        ``add_cgi_vars()``, then the ``wsgi.*`` keys."""
        env = self.environ = dict(self.os_environ)
        self.add_cgi_vars()

        env["wsgi.input"] = self.get_stdin()
        env["wsgi.errors"] = self.get_stderr()
        env["wsgi.version"] = self.wsgi_version
        env["wsgi.run_once"] = self.wsgi_run_once
        env["wsgi.url_scheme"] = self.get_scheme()
        env["wsgi.multithread"] = self.wsgi_multithread
        env["wsgi.multiprocess"] = self.wsgi_multiprocess

        if self.wsgi_file_wrapper is not None:
            env["wsgi.file_wrapper"] = self.wsgi_file_wrapper

        if self.origin_server and self.server_software:
            env.setdefault("SERVER_SOFTWARE", self.server_software)

    def finish_response(self) -> None:
        """Send any iterable data, then close self and the iterable.

        On an exception the iterable is closed and the exception propagates (to
        ``run``, which calls ``handle_error``); only on success does ``close()`` reset
        the handler's state (bpo-29183).
        """
        try:
            if not self.result_is_file() or not self.sendfile():
                for data in self._result():
                    self.write(data)
                self.finish_content()
        except BaseException:
            _close_iterable(self.result)
            raise
        else:
            self.close()

    def get_scheme(self) -> str:
        """Return the URL scheme being used (guessed from ``HTTPS`` in the environ)."""
        return guess_scheme(self.environ)

    def set_content_length(self) -> None:
        """Compute Content-Length when the iterable is one block (a one-item list)."""
        try:
            blocks = len(self.result)  # type: ignore[arg-type]  # duck-typed, as wsgiref
        except (TypeError, AttributeError, NotImplementedError):
            pass
        else:
            if blocks == 1:
                self._require_headers()["Content-Length"] = str(self.bytes_sent)
                return
        # Otherwise the framing is left to whoever sends the response.

    def cleanup_headers(self) -> None:
        """Make any necessary header changes or defaults, just before they are sent.

        Subclasses can extend this to add other defaults.
        """
        if "Content-Length" not in self._require_headers():
            self.set_content_length()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        """The ``start_response()`` callable of PEP 3333.

        With ``exc_info`` the status and headers replace earlier ones, unless the
        headers were already sent, in which case ``exc_info`` is re-raised. Without it,
        a second call raises ``AssertionError("Headers already set!")``.
        """
        if exc_info:
            try:
                if self.headers_sent:
                    _reraise(exc_info)
            finally:
                exc_info = None  # avoid a dangling circular reference
        elif self.headers is not None:
            raise AssertionError("Headers already set!")

        self.status = status
        self.headers = self.headers_class(headers)
        status = self._convert_string_type(status, "Status")
        if len(status) < 4:
            raise AssertionError("Status must be at least 4 characters")
        if not status[:3].isdigit():
            raise AssertionError("Status message must begin w/3-digit code")
        if status[3] != " ":
            raise AssertionError("Status message must have a space after code")

        for name, val in headers:
            name = self._convert_string_type(name, "Header name")
            val = self._convert_string_type(val, "Header value")
            if is_hop_by_hop(name):
                raise AssertionError(f"Hop-by-hop header, '{name}: {val}', not allowed")

        return self.write

    def _convert_string_type(self, value: object, title: str) -> str:
        """Check that ``value`` is exactly a ``str``, as wsgiref does."""
        if type(value) is str:
            return value
        raise AssertionError(f"{title} must be of type str (got {value!r})")

    def send_preamble(self) -> None:
        """Transmit version/status/date/server, via ``self._write()``."""
        headers = self._require_headers()
        if self.origin_server:
            if self.client_is_modern():
                self._write(
                    f"HTTP/{self.http_version} {self.status}\r\n".encode("iso-8859-1")
                )
                if "Date" not in headers:
                    self._write(f"Date: {http_date()}\r\n".encode("iso-8859-1"))
                if self.server_software and "Server" not in headers:
                    self._write(
                        f"Server: {self.server_software}\r\n".encode("iso-8859-1")
                    )
        else:
            self._write(f"Status: {self.status}\r\n".encode("iso-8859-1"))

    def write(self, data: bytes) -> None:
        """The ``write()`` callable of PEP 3333, also used for the iterable's chunks.

        The headers go out before the first non-empty chunk; an empty chunk before that
        is ignored (PEP 3333: "must not" send headers until there is body data).
        """
        if type(data) is not bytes:
            raise AssertionError("write() argument must be a bytes instance")

        if not self.status:
            raise AssertionError("write() before start_response()")
        elif not self.headers_sent:
            if not data:
                return
            # Before the first output, send the stored headers.
            self.bytes_sent = len(data)  # make sure we know content-length
            self.send_headers()
        else:
            self.bytes_sent += len(data)

        self._write(data)
        self._flush()

    def sendfile(self) -> bool:
        """Platform-specific file transmission.

        Called only when the app's iterable (``self.result``) is an instance of
        ``self.wsgi_file_wrapper``. Return True if the file was sent some faster way,
        False to fall back to iterating over it; raise if sending was attempted but
        failed. An override that sends must call ``self.send_headers()`` first when
        ``self.headers_sent`` is false. The default always returns False.
        """
        return False

    def finish_content(self) -> None:
        """Ensure headers and content have both been sent."""
        if not self.headers_sent:
            # Only zero Content-Length if not set by the application (so that HEAD
            # requests can be satisfied properly, bpo-3839).
            self._require_headers().setdefault("Content-Length", "0")
            self.send_headers()

    def close(self) -> None:
        """Close the iterable (if it has ``close``) and reset all per-request state.

        Subclasses may want to also drop the client connection.
        """
        try:
            # _close_iterable, inlined: this runs for every request.
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.result = self.headers = self.status = None
            # wsgiref resets environ to None too; nothing reads it until the next
            # setup_environ(), so it is typed as always present.
            self.environ = None  # type: ignore[assignment]
            self.bytes_sent = 0
            self.headers_sent = False

    def send_headers(self) -> None:
        """Transmit headers to the client, via ``self._write()``."""
        self.cleanup_headers()
        self.headers_sent = True
        if not self.origin_server or self.client_is_modern():
            self.send_preamble()
            self._write(bytes(self._require_headers()))

    def result_is_file(self) -> bool:
        """True if ``self.result`` is an instance of ``self.wsgi_file_wrapper``."""
        wrapper = self.wsgi_file_wrapper
        return wrapper is not None and isinstance(self.result, wrapper)

    def client_is_modern(self) -> bool:
        """True if the client can accept a status line and headers (not HTTP/0.9)."""
        return bool(self.environ["SERVER_PROTOCOL"].upper() != "HTTP/0.9")

    def log_exception(self, exc_info: OptExcInfo) -> None:
        """Log the ``exc_info`` tuple in the server log.

        The default prints the traceback to ``self.get_stderr()``, limited to
        ``traceback_limit`` frames. Subclasses may override to retarget the output or
        change its format.
        """
        try:
            stderr = self.get_stderr()
            traceback.print_exception(
                exc_info[0], exc_info[1], exc_info[2], self.traceback_limit, stderr
            )
            stderr.flush()
        finally:
            exc_info = None  # type: ignore[assignment]  # drop the traceback cycle

    def handle_error(self) -> None:
        """Log the current error, and send error output to the client if the headers
        have not gone out yet (else there is nothing more to do)."""
        self.log_exception(sys.exc_info())
        if not self.headers_sent:
            self.result = self.error_output(self.environ, self.start_response)
            self.finish_response()

    def error_output(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> list[bytes]:
        """WSGI mini-app to create error output.

        By default, this just uses the ``error_status``, ``error_headers`` and
        ``error_body`` attributes to generate an output page. Override it to generate
        diagnostics or choose a language; it is not recommended to send diagnostics
        to any client, which is why the default includes none.
        """
        start_response(self.error_status, self.error_headers[:], sys.exc_info())
        return [self.error_body]

    # Pure abstract methods; *must* be overridden in subclasses.

    def _write(self, data: bytes) -> None:
        """Override in subclass to buffer data for sending to the client.

        It's okay if this method actually transmits the data; BaseHandler just
        separates write and flush operations for greater efficiency when the
        underlying system actually has such a distinction.
        """
        raise NotImplementedError

    def _flush(self) -> None:
        """Override in subclass to force sending of recent ``_write()`` calls.

        It's okay if this method is a no-op (i.e., if ``_write()`` actually sends).
        """
        raise NotImplementedError

    def get_stdin(self) -> InputStream:
        """Override in subclass to return a suitable ``wsgi.input``."""
        raise NotImplementedError

    def get_stderr(self) -> ErrorStream:
        """Override in subclass to return a suitable ``wsgi.errors``."""
        raise NotImplementedError

    def add_cgi_vars(self) -> None:
        """Override in subclass to insert CGI variables in ``self.environ``."""
        raise NotImplementedError

    # Helpers (not wsgiref hooks).

    def _require_headers(self) -> Headers:
        headers = self.headers
        if headers is None:
            raise AssertionError("start_response() has not been called")
        return headers

    def _result(self) -> Iterable[bytes]:
        result = self.result
        if result is None:
            raise TypeError("the application returned None, not an iterable")
        return result


def _reraise(exc_info: OptExcInfo) -> None:
    """Raise the exception in ``exc_info`` with its traceback (PEP 3333)."""
    value = exc_info[1]
    if value is None:
        # An empty exc_info: wsgiref's bare ``raise`` re-raises the active exception.
        raise
    raise value.with_traceback(exc_info[2])


class SimpleHandler(BaseHandler):
    """Handler that's just initialized with streams, environment, etc.

    For synchronous HTTP/1.0 origin servers; it sends the entire response output,
    given the correct inputs::

        handler = SimpleHandler(inp, out, err, env, multithread=False)
        handler.run(app)
    """

    def __init__(
        self,
        stdin: InputStream,
        stdout: IO[bytes],
        stderr: ErrorStream,
        environ: MutableMapping[str, str],
        multithread: bool = True,
        multiprocess: bool = False,
    ) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.base_env = environ
        self.wsgi_multithread = multithread
        self.wsgi_multiprocess = multiprocess

    def get_stdin(self) -> InputStream:
        return self.stdin

    def get_stderr(self) -> ErrorStream:
        return self.stderr

    def add_cgi_vars(self) -> None:
        self.environ.update(self.base_env)

    def _write(self, data: bytes) -> None:
        result: int | None = self.stdout.write(data)
        if result is None or result == len(data):
            return
        from warnings import warn

        warn(
            "SimpleHandler.stdout.write() should not do partial writes",
            DeprecationWarning,
            stacklevel=2,
        )
        while True:
            data = data[result:]
            if not data:
                break
            result = self.stdout.write(data)

    def _flush(self) -> None:
        self.stdout.flush()


class BaseCGIHandler(SimpleHandler):
    """CGI-like systems using input/output/error streams and an environ mapping.

    For gateway protocols like ReadyExec and FastCGI, and the base class of
    ``CGIHandler``. ``origin_server`` is False, so the status goes out as a
    ``Status:`` header rather than a status line.
    """

    origin_server = False


class CGIHandler(BaseCGIHandler):
    """CGI-based invocation via ``sys.stdin``/``stdout``/``stderr`` and ``os.environ``.

    Always ``wsgi.run_once`` True, ``wsgi.multithread`` False and
    ``wsgi.multiprocess`` True; use ``BaseCGIHandler`` to choose otherwise.
    """

    wsgi_run_once = True
    # Do not let os.environ leak between requests in multi-run CGI uses (bpo-7250).
    os_environ = {}  # noqa: RUF012  # per-instance overridable, as in wsgiref

    def __init__(self) -> None:
        BaseCGIHandler.__init__(
            self,
            sys.stdin.buffer,
            sys.stdout.buffer,
            sys.stderr,
            read_environ(),
            multithread=False,
            multiprocess=True,
        )


class IISCGIHandler(BaseCGIHandler):
    """CGI-based invocation with a workaround for IIS's PATH_INFO bug.

    IIS without ``allowPathInfo`` repeats SCRIPT_NAME at the front of PATH_INFO; this
    handler strips it.
    """

    wsgi_run_once = True
    os_environ = {}  # noqa: RUF012  # per-instance overridable, as in wsgiref

    def __init__(self) -> None:
        environ = read_environ()
        path = environ.get("PATH_INFO", "")
        script = environ.get("SCRIPT_NAME", "")
        if (path + "/").startswith(script + "/"):
            environ["PATH_INFO"] = path[len(script) :]
        BaseCGIHandler.__init__(
            self,
            sys.stdin.buffer,
            sys.stdout.buffer,
            sys.stderr,
            environ,
            multithread=False,
            multiprocess=True,
        )


def __getattr__(name: str) -> object:
    """``ServerHandler``, imported on first use (PEP 562).

    ``ServerHandler`` lives in ``aiogate.server_handler``, which subclasses
    ``BaseHandler`` from this module, but ``aiogate.handlers.ServerHandler`` is its
    public path (``--handler-class``, the README). Importing it here eagerly would be
    circular: importing ``aiogate.server_handler`` first would run this module, which
    would ask the half-initialised ``server_handler`` for a class not yet defined. It
    would also load the server's request machinery (environ, proxy headers) into a
    CGI script that wants only the stream family. Lazily, both orders work and the
    class is the same object either way.
    """
    if name == "ServerHandler":
        from .server_handler import ServerHandler

        return ServerHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
