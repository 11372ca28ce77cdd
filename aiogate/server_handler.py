"""The server's own handler: ``ServerHandler``, which runs one request's app.

Owns ``ServerHandler``, aiogate's per-request handler: a ``BaseHandler``
(``aiogate.handlers``, the wsgiref family) that hands its response to a
``ResponseSink`` (``sink.start``, ``sink.write``, ``sink.finish``/``sink.abort``)
instead of writing raw bytes, and builds the environ from the request head and the
connection. The server makes one per request and runs it in a worker thread of the
thread pool; every method runs in that thread. Nothing here touches the event loop, a
socket or h11: the sink is the only way out.

Its public path is still ``aiogate.handlers.ServerHandler`` (``--handler-class``,
``Server(handler_class=...)``); the class docstring lists how it differs from
wsgiref's handlers.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
import traceback
import wsgiref.handlers as wsgiref_handlers
from collections.abc import MutableMapping
from typing import TYPE_CHECKING
from wsgiref.util import FileWrapper

from .environ import build_environ
from .errors import ClientDisconnected
from .handlers import _close_iterable
from .proxy_headers import PROXY_ENVIRON_KEYS, ProxyMode, TrustedProxies, resolve
from .response import (
    SERVER_SOFTWARE,
    content_length,
)
from .sink_handler import SinkHandler
from .wsgi_errors import ErrorLog

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

    from ._types import (
        ConnectionInfo,
        ErrorStream,
        InputStream,
        RequestHead,
        ResponseSink,
        StartResponse,
        WSGIApplication,
        WSGIEnvironment,
    )

__all__ = ["ServerHandler", "as_handler_class"]

log = logging.getLogger("aiogate.error")


def _stream_length(stream: object) -> int | None:
    """The size of a buffered request body: an ``io.BytesIO`` or a file (None for
    anything else, whose length we cannot know without reading it)."""
    if isinstance(stream, io.BytesIO):
        return len(stream.getbuffer())
    fileno = getattr(stream, "fileno", None)
    if fileno is not None:
        try:
            return os.fstat(fileno()).st_size
        except (OSError, ValueError):
            return None
    return None


def as_handler_class(obj: object) -> type[ServerHandler]:
    """``obj`` if it can be the server's handler class (``--handler-class``): a
    subclass of ``ServerHandler``; else ``TypeError`` saying why not. A class written
    for the standard library's ``wsgiref.handlers`` cannot run as it is: it writes
    the response's raw bytes to a stream, where the server's handler hands status,
    headers and body to the event loop (which frames them for HTTP/1.1, keep-alive
    and chunking included). Its overrides carry over, since ``ServerHandler`` is a
    wsgiref ``BaseHandler`` with the same hooks: the message says so."""
    if isinstance(obj, type):
        if issubclass(obj, ServerHandler):
            if obj.http_version not in ("1.0", "1.1"):
                raise TypeError(
                    f"{obj.__qualname__}.http_version must be '1.0' or '1.1' (the "
                    f"versions of the responses it can write), not {obj.http_version!r}"
                )
            return obj
        if issubclass(obj, wsgiref_handlers.BaseHandler):
            raise TypeError(
                f"{obj.__qualname__} is a wsgiref handler that writes raw bytes to a "
                "stream; the server's handler hands the response to the event loop "
                "instead. Subclass aiogate.handlers.ServerHandler (a wsgiref "
                "BaseHandler with the same hooks) and move your overrides there"
            )
        raise TypeError(
            f"the class {obj.__qualname__} is not a subclass of "
            "aiogate.handlers.ServerHandler"
        )
    raise TypeError(
        f"it is of type {type(obj).__name__}, not a subclass of "
        "aiogate.handlers.ServerHandler"
    )


class ServerHandler(SinkHandler):
    """aiogate's handler for one request: a SimpleHandler-style origin server whose
    response goes to a ``ResponseSink`` (the status and headers to ``sink.start``, body
    bytes to ``sink.write``, the end to ``sink.finish`` or ``sink.abort``).

    Runs in a worker thread, created per request by the server with the request head
    (an ``h11.Request``), the connection facts and the ``wsgi.input`` object. Subclass
    it (``--handler-class``) to change ``error_output``, ``log_exception``,
    ``server_software`` and the other hooks.

    How it differs from wsgiref's handlers:

    1. ``os_environ`` is ``{}``: the process environment does not leak into requests.
       ``add_cgi_vars`` uses ``aiogate.environ.build_environ``, and the environ also
       has ``wsgi.input_terminated = True``.
    2. ``start_response`` validates with ``aiogate.response`` and raises
       ``ValueError``/``TypeError`` (a 500), never ``AssertionError``: a status that is
       not ``NNN reason`` or is 1xx (h11 cannot send an interim status as the
       response), non-token header names, control characters in values (RFC 9110
       §5.5: only VCHAR, obs-text, SP and HTAB), a Content-Length that is not one
       value of ASCII digits (a list such as ``5, 5``, or a second Content-Length
       header even with the same value: RFC 9110 §8.6). The error is
       raised inside the app's ``start_response`` call, as PEP 3333 asks ("servers
       should check for errors in the headers at the time start_response is
       called"), so the app may catch it and call again; if it propagates, the
       client gets a 500 (``handle_error``). Hop-by-hop headers are dropped (logged
       at DEBUG) instead of failing the request, except ``Connection: close``, which
       is kept so the connection closes after the response. Spaces and tabs around
       header values are stripped.
    3. ``send_preamble`` adds ``Date`` (exactly one) and ``Server`` (unless
       ``server_software`` is empty) to the headers; the status line and framing are
       the server's job.
    4. Body rules: no body bytes for HEAD, 1xx, 204 and 304; no Content-Length on 1xx
       and 204, and none inferred for 304. Bytes past the declared Content-Length are
       cut; a body shorter than declared ends with ``sink.abort()`` so the connection
       closes instead of waiting for bytes that never come.
    5. An app error is logged once through ``log_exception`` (logger ``aiogate.error``,
       ERROR, with the traceback, method and path; ``traceback_limit`` is not used).
       Before the first body byte the client gets ``error_output`` (a 500 without the
       traceback, unless ``expose_tracebacks``); after it, ``sink.abort()``.
    6. A client disconnect (``ClientDisconnected``, raised by the sink or by
       ``wsgi.input``) closes the iterable, is logged at DEBUG, and ends with
       ``sink.abort()`` (which does nothing on a closed connection), never
       ``finish``. Other connection errors are app errors (see ``run``).
    7. The app's iterable is closed exactly once on every path, then the response
       ends (``finish`` only after ``close()`` returned).
    """

    server_software = SERVER_SOFTWARE
    http_version = "1.1"
    os_environ = {}  # noqa: RUF012  # per-instance overridable, as in wsgiref
    wsgi_multithread = True
    wsgi_multiprocess = False
    #: Send the traceback of an app error to the client (development only).
    expose_tracebacks: bool = False

    # The constructor's values and the private per-request state live in slots: a
    # handler is built for every request, and some 30 attributes in its __dict__
    # made it grow (and resize) on every run, 0.2 µs (benchmarks/micro_handler.py).
    # wsgiref's attributes stay in the __dict__, over their class-level defaults.
    __slots__ = (
        "_ended",
        "_path",
        "_proxy_mode",
        "_scheme",
        "_trusted_proxies",
        "conn",
        "request",
        "root_path",
        "stderr",
        "stdin",
    )
    _ended: bool  # sink.finish() or sink.abort() called

    def __init__(
        self,
        stdin: InputStream,
        sink: ResponseSink,
        stderr: ErrorStream,
        request: RequestHead,
        conn: ConnectionInfo,
        *,
        root_path: str = "",
        multithread: bool = True,
        multiprocess: bool = False,
        server_software: str | None = None,
        expose_tracebacks: bool = False,
        trusted_proxies: TrustedProxies | None = None,
        proxy_mode: ProxyMode = "x-forwarded",
    ) -> None:
        super().__init__(sink, request.method.decode("latin-1"))
        self.stdin = stdin
        self.stderr = stderr
        self.request = request
        self.conn = conn
        self.root_path = root_path
        self.wsgi_multithread = multithread
        self.wsgi_multiprocess = multiprocess
        if server_software is not None:
            self.server_software = server_software
        self.expose_tracebacks = expose_tracebacks
        # Peers whose proxy headers are believed (None: nobody's), and which headers.
        self._trusted_proxies = trusted_proxies
        self._proxy_mode = proxy_mode
        self._scheme = conn.url_scheme
        self._path: str | None = None  # see path
        self._ended = False

    @property
    def path(self) -> str:
        """The request's path, undecoded, without the query: for log messages.

        Worked out on first use, since most requests never log anything."""
        path = self._path
        if path is None:
            path = self._path = self.request.target.partition(b"?")[0].decode("latin-1")
        return path

    @path.setter
    def path(self, value: str) -> None:
        self._path = value

    # -- environ -------------------------------------------------------------------

    def get_stdin(self) -> InputStream:
        """The ``wsgi.input`` the server made (a ``RequestBody``)."""
        return self.stdin

    def get_stderr(self) -> ErrorStream:
        """``wsgi.errors``: the stream given to the constructor (the server's is an
        ``ErrorLog``: what the app writes there is logged to ``aiogate.error``)."""
        return self.stderr

    def get_scheme(self) -> str:
        """The connection's scheme (``"https"`` on TLS), or the one a trusted proxy
        reported (``add_cgi_vars``); never a guess from ``HTTPS``."""
        return self._scheme

    def add_cgi_vars(self) -> None:
        """Add the CGI and ``HTTP_*`` variables of the request (``build_environ``),
        then apply or strip the proxy headers (``apply_proxy_headers``)."""
        request = self.request
        env = self.environ
        conn = self.conn
        env.update(build_environ(request, conn, self.root_path))
        if conn.tls is not None:
            env.update(conn.tls)  # HTTPS, SSL_PROTOCOL, SSL_CLIENT_CERT ...
        if "HTTP_TRANSFER_ENCODING" in env:
            # A chunked body was decoded and buffered whole before the app was called,
            # so its length is known: say it as CONTENT_LENGTH, as waitress does.
            # Django, Falcon and Bottle read only CONTENT_LENGTH (Bottle would even
            # try to decode the chunks again), so they now see chunked uploads too.
            length = _stream_length(self.stdin)
            if length is not None:
                del env["HTTP_TRANSFER_ENCODING"]
                env["CONTENT_LENGTH"] = str(length)
        # Most requests carry no proxy header: one C-level pass over the environ's
        # keys, whatever the size of the set. timeit: 0.17 µs for wrk's 14-key
        # environ, as for the six dict lookups of the old six-key list; 0.24 µs
        # (+0.07) for a browser's 21 keys, where 32 lookups would cost 0.8 µs.
        if not PROXY_ENVIRON_KEYS.isdisjoint(env):
            self.apply_proxy_headers(env)
        if log.isEnabledFor(logging.DEBUG):
            # build_environ drops them (HTTP_X_A would be ambiguous between X-A and
            # X_A, a header-spoofing risk); say so, since it surprises people.
            dropped = [name for name, _ in request.headers if b"_" in name]
            if dropped:
                log.debug(
                    "Ignored request headers with '_' in the name (%s %s): %s",
                    self.method,
                    self.path,
                    b", ".join(dropped).decode("latin-1"),
                )

    def apply_proxy_headers(self, env: MutableMapping[str, object]) -> None:
        """The request carries proxy headers: from a trusted peer (``--forwarded-allow-
        ips``), let them set ``REMOTE_ADDR``/``REMOTE_PORT``, the URL scheme, the host
        and ``SERVER_NAME``/``SERVER_PORT``, and ``SCRIPT_NAME`` (a prefix, before
        ``--root-path``); from any other peer, remove them all (every key of
        ``PROXY_ENVIRON_KEYS``, those we never read included), so a spoofed header
        changes nothing and the app never sees it."""
        trusted = self._trusted_proxies
        result = (
            resolve(
                trusted,
                self._proxy_mode,
                self.conn.client,
                env,
                self._scheme,
                env.get("HTTP_HOST"),  # type: ignore[arg-type]
            )
            if trusted is not None
            else None
        )
        if result is None or not result.trusted:
            # The set's keys found in the environ, in one C-level pass (0.5 µs;
            # popping each of the 32 would take 1.1 µs).
            for key in PROXY_ENVIRON_KEYS.intersection(env):
                del env[key]
            return
        if result.client is not None:
            env["REMOTE_ADDR"] = env["REMOTE_HOST"] = result.client[0]
            if result.client[1] is None:
                env.pop("REMOTE_PORT", None)  # the proxy's own port would mislead
            else:
                env["REMOTE_PORT"] = str(result.client[1])
        if result.scheme is not None:
            self._scheme = result.scheme
        if result.host is not None:
            env["HTTP_HOST"] = result.host
        if result.server_name is not None:
            env["SERVER_NAME"] = result.server_name
        if result.server_port is not None:
            env["SERVER_PORT"] = result.server_port
        if result.script_name is not None:
            env["SCRIPT_NAME"] = result.script_name + self.root_path

    def setup_environ(self) -> None:
        """wsgiref's environ plus ``wsgi.input_terminated`` (the server delivers
        the whole body and then EOF, so reading to the end is safe)."""
        super().setup_environ()
        self.environ["wsgi.input_terminated"] = True

    # -- running -------------------------------------------------------------------

    def run(self, application: WSGIApplication) -> None:
        """Invoke the application and end the response exactly once.

        Like wsgiref's, except: only ``ClientDisconnected`` (what the sink and
        ``wsgi.input`` raise when the client is gone) counts as a disconnect, so a
        ``ConnectionResetError`` from the app's own backend call is an app error (a
        500 and a log record), not silence; a disconnect while sending the error page
        also ends the call quietly; and on the double-error branch the sink is aborted
        before the second error propagates (to the thread pool, which logs it).
        """
        try:
            self.setup_environ()
            self.result = application(self.environ, self.start_response)
            self.finish_response()
        except ClientDisconnected as exc:
            self._client_gone(exc)
        except BaseException:  # as wsgiref: anything the app raises gets a 500
            try:
                self.handle_error()
            except ClientDisconnected as exc:
                self._client_gone(exc)
            except BaseException:
                try:
                    self.close()
                finally:
                    self._end(abort=True)
                raise
        finally:
            stderr = self.stderr
            if type(stderr) is ErrorLog and stderr.pending:
                stderr.flush()  # a last line without its newline: this request's

    def finish_response(self) -> None:
        """Send the iterable's data, close the iterable, then ``sink.finish()``
        (or ``sink.abort()`` if fewer bytes than the declared Content-Length went out).
        """
        try:
            if not self.result_is_file() or not self.sendfile():
                result = self.result
                if result is None:
                    raise TypeError("the application returned None, not an iterable")
                for data in result:
                    self.write(data)
                self.finish_content()
        except BaseException:
            # Forget it once closed, so no later close() (run's double-error branch)
            # closes it a second time.
            result, self.result = self.result, None
            _close_iterable(result)
            raise
        else:
            self.close()
            limit = self._declared_length
            if limit is not None and self._body_bytes < limit:
                log.warning(
                    "App sent %d of the %d body bytes its Content-Length declared "
                    "(%s %s); closing the connection",
                    self._body_bytes,
                    limit,
                    self.method,
                    self.path,
                )
                self._end(abort=True)
            elif not self._ended:  # _end(abort=False), inlined: every request
                self._ended = True
                self.sink.finish()

    def sendfile(self) -> bool:
        """Send a ``wsgi.file_wrapper`` response of a regular file without copying it
        through Python: the sink (``sink.sendfile``) sends its bytes from the file
        itself, with ``os.sendfile`` where the connection allows it.

        The body is the file from its current position to its end, or the app's
        Content-Length if that is shorter (the range the app chose); without a
        Content-Length, the file's size is declared as one. False (iterate the
        wrapper, as wsgiref does) for anything but wsgiref's own ``FileWrapper`` of a
        regular file (a subclass may change what it yields), or a sink that cannot
        send files."""
        send = getattr(self.sink, "sendfile", None)
        wrapper = self.result
        if send is None or type(wrapper) is not FileWrapper:
            # Only the stock wrapper: it yields the file's bytes as they are, where
            # a subclass (or another wsgi_file_wrapper) may change what it yields.
            return False
        filelike = wrapper.filelike
        fileno = getattr(filelike, "fileno", None)
        if fileno is None:
            return False
        try:
            fd = fileno()
            info = os.fstat(fd)
            offset = filelike.tell()
        except (OSError, ValueError):  # not a real file, or closed
            return False
        if not stat.S_ISREG(info.st_mode):
            return False  # a pipe or a device: its size says nothing
        count = max(0, info.st_size - offset)
        headers = self._require_headers()
        declared = content_length(headers.get_all("Content-Length"))
        if declared is None:
            if self._status_code() not in (204, 304):  # (1xx never gets here)
                headers["Content-Length"] = str(count)
        else:
            count = min(count, declared)
        self._known = None  # the headers changed under the facts
        if not self.headers_sent:
            self.send_headers()
        if self._body_allowed and count:
            send(fd, offset, count)
            self._body_bytes += count
            self.bytes_sent += count
        return True

    def handle_error(self) -> None:
        """Log the error once; send ``error_output`` if nothing was sent yet, else
        abort the response (a truncated body must not pass for a complete one)."""
        self.log_exception(sys.exc_info())
        if not self.headers_sent and not self._started:
            self.result = self.error_output(self.environ, self.start_response)
            self.finish_response()
        else:
            self._end(abort=True)

    def log_exception(self, exc_info: OptExcInfo) -> None:
        """wsgiref's: the traceback, cut to ``traceback_limit`` frames, to
        ``get_stderr()`` (``wsgi.errors``). The server's ``wsgi.errors`` is the
        ``aiogate.error`` logger (``wsgi_errors.ErrorLog``): there the error is one
        ERROR record naming the request, with the exception on it for error
        trackers. A ``get_stderr`` that returns another stream gets wsgiref's text."""
        try:
            stderr = self.get_stderr()
            if isinstance(stderr, ErrorLog):
                stderr.log_exception(
                    f"Error in app handling {self.method} {self.path}",
                    exc_info,
                    self.traceback_limit,
                )
            else:
                traceback.print_exception(
                    exc_info[0], exc_info[1], exc_info[2], self.traceback_limit, stderr
                )
                stderr.flush()
        finally:
            exc_info = None  # type: ignore[assignment]  # drop the traceback cycle

    def error_output(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> list[bytes]:
        """The error page: wsgiref's ``error_status``/``error_headers``/``error_body``,
        or with ``expose_tracebacks`` the traceback as plain text."""
        if not self.expose_tracebacks:
            return super().error_output(environ, start_response)
        exc_info = sys.exc_info()
        text = "".join(
            traceback.format_exception(
                exc_info[0], exc_info[1], exc_info[2], limit=self.traceback_limit
            )
        )
        start_response(
            self.error_status, [("Content-Type", "text/plain; charset=utf-8")], exc_info
        )
        return [text.encode("utf-8", "replace")]

    def _client_gone(self, exc: BaseException) -> None:
        log.debug("Client disconnected during %s %s: %r", self.method, self.path, exc)
        self._end(abort=True)

    def _end(self, *, abort: bool) -> None:
        """End the response on the sink, once."""
        if self._ended:
            return
        self._ended = True
        if abort:
            self.sink.abort()
        else:
            self.sink.finish()
