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
from collections.abc import Callable, MutableMapping
from types import GeneratorType
from typing import TYPE_CHECKING
from wsgiref.headers import Headers

from .environ import build_environ
from .errors import ClientDisconnected
from .handlers import BaseHandler, _close_iterable, _reraise
from .proxy_headers import PROXY_ENVIRON_KEYS, ProxyMode, TrustedProxies, resolve
from .response import (
    SERVER_SOFTWARE,
    body_forbidden,
    content_length,
    http_date,
    is_hop_by_hop,
    scan_headers,
    status_code,
    validate_headers,
)
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


class ServerHandler(BaseHandler):
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
        "_body_allowed",
        "_body_bytes",
        "_code",
        "_code_of",
        "_cut",
        "_declared_length",
        "_ended",
        "_known",
        "_known_dates",
        "_known_items",
        "_known_length",
        "_known_list",
        "_known_server",
        "_path",
        "_proxy_mode",
        "_scheme",
        "_started",
        "_trusted_proxies",
        "conn",
        "method",
        "request",
        "root_path",
        "sink",
        "stderr",
        "stdin",
    )
    _started: bool  # sink.start() called
    _ended: bool  # sink.finish() or sink.abort() called
    _body_allowed: bool
    _declared_length: int | None
    _body_bytes: int  # body bytes given to the sink
    _cut: bool  # bytes past Content-Length were dropped (logged once)
    _code_of: str | None  # the status _code was parsed from
    _code: int

    # What start_response learned about the headers in its one pass (Content-Length,
    # Date and Server), so that the hooks which run before sending need not scan them
    # again. The facts describe the ``Headers`` object ``_known`` while the list it
    # wraps (``_known_list``; wsgiref: "changes made to the new Headers object will
    # directly update the headers list it was created with") still equals our copy,
    # ``_known_items``. Every hook checks exactly that (an identity test, then a list
    # comparison of the same tuple objects, about 0.05 µs) before it trusts them, so
    # if a subclass or an app replaced or edited ``self.headers`` in between, the hook
    # takes the general path, which reads the headers themselves. Where our own hooks
    # add a header on the fast path they append it to both lists, as Headers would.
    # ``_known`` is None when there are no facts; the others are set with it.
    # Why keep them: the same hooks through the Headers API alone (a scan and a
    # .lower() per name for each get, set and delete, four type checks per add)
    # cost 26k more CPU instructions per request than these facts, 6 % of a whole
    # keep-alive request (callgrind, benchmarks' hello app; 2.7 µs by timeit).
    _known: Headers | None
    _known_list: list[tuple[str, str]]
    _known_items: list[tuple[str, str]]
    _known_length: int | None  # the declared Content-Length (None: no header)
    _known_dates: int  # how many Date headers
    _known_server: bool  # there is a Server header

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
        self.stdin = stdin
        self.sink = sink
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
        # For the body rules and log messages; they outlive close().
        self.method = request.method.decode("latin-1")
        self._path: str | None = None  # see path
        self._started = False
        self._ended = False
        self._body_allowed = True
        self._declared_length = None
        self._body_bytes = 0
        self._cut = False
        self._code_of = None
        self._code = 0
        self._known = None

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
            if type(stderr) is ErrorLog:
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
        wrapper, as wsgiref does) for anything but a regular file, or a sink that
        cannot send files."""
        send = getattr(self.sink, "sendfile", None)
        fileno = getattr(getattr(self.result, "filelike", None), "fileno", None)
        if send is None or fileno is None:
            return False
        filelike = self.result.filelike  # type: ignore[union-attr]
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

    # -- the response ----------------------------------------------------------------

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``, validating with ``aiogate.response``.

        Raises ``ValueError``/``TypeError`` on a bad status or header, before storing
        anything; drops hop-by-hop headers except ``Connection: close``.
        """
        if exc_info:
            try:
                if self.headers_sent:
                    _reraise(exc_info)
            finally:
                exc_info = None  # avoid a dangling circular reference
        elif self.headers is not None:
            raise AssertionError("Headers already set!")

        code = status_code(status)
        if code < 200:
            raise ValueError(
                f"status {status!r} is informational (1xx); a WSGI response needs a "
                "final status"
            )
        scan = scan_headers(headers)
        if scan is None:
            # Not plain (a hop-by-hop header, several Content-Lengths, a str
            # subclass, an error...): the general checks, which raise the precise
            # error or drop and log what they must. No facts: the hooks scan.
            validate_headers(headers)
            kept = self._drop_hop_by_hop(headers)
            content_length(
                value for name, value in kept if name.lower() == "content-length"
            )
            self.status = status
            self.headers = self.headers_class(kept)
            self._known = None
        else:
            kept, length, dates, server = scan
            self.status = status
            if self.headers_class is Headers:
                # wsgiref documents that a Headers object updates the very list it
                # was made with, so ``live`` shows every change made through it.
                live = kept[:]
                known = self.headers = Headers(live)
                self._known = known
                self._known_list = live
                self._known_items = kept  # nobody else holds it: the snapshot
                self._known_length = length
                self._known_dates = dates
                self._known_server = server
            else:
                self.headers = self.headers_class(kept)
                self._known = None
        self._code, self._code_of = code, status
        return self.write

    # The hooks below check the facts inline (``headers is self._known and
    # self._known_list == self._known_items``) rather than through a helper: they
    # run for every response, and a method call costs more than the check.

    def _facts_hold(self) -> bool:
        """True if the facts start_response recorded still describe ``self.headers``."""
        headers = self.headers
        return (
            headers is not None
            and headers is self._known
            and self._known_list == self._known_items
        )

    def _add_known(self, name: str, value: str) -> None:
        """Append a header the facts say is absent, as ``headers[name] = value``
        would (its delete finds nothing), keeping the facts true."""
        pair = (name, value)
        self._known_list.append(pair)
        self._known_items.append(pair)

    def _drop_hop_by_hop(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The app's headers without hop-by-hop ones (PEP 3333 forbids them; the server
        owns the connection), values stripped of surrounding spaces and tabs (RFC
        9110 §5.5; h11 refuses them). ``Connection: close`` stays, as ``close``, so
        the connection closes after this response (RFC 9112 §9.6)."""
        kept: list[tuple[str, str]] = []
        dropped: list[str] = []
        closing = False
        for name, value in headers:
            if not is_hop_by_hop(name):
                kept.append((name, value.strip(" \t")))
            elif name.lower() == "connection" and "close" in (
                token.strip().lower() for token in value.split(",")
            ):
                if not closing:
                    kept.append((name, "close"))
                    closing = True
            else:
                dropped.append(f"{name}: {value}")
        if dropped:
            log.debug(
                "Dropped hop-by-hop headers from the app (%s %s): %s",
                self.method,
                self.path,
                "; ".join(dropped),
            )
        return kept

    def cleanup_headers(self) -> None:
        """wsgiref's Content-Length inference, except: 1xx and 204 responses lose any
        Content-Length (RFC 9110 §8.6 forbids it), and a 304 gets none inferred
        (its Content-Length would describe the 200 body, not this empty one)."""
        headers = self.headers
        if headers is None:
            raise AssertionError("start_response() has not been called")
        status = self.status
        code = (
            self._code
            if status is self._code_of and status is not None
            else self._status_code()
        )
        known = headers is self._known and self._known_list == self._known_items
        if code < 200 or code == 204:
            if not known or self._known_length is not None:
                del headers["Content-Length"]
                self._known = None
        elif code != 304 and (
            self._known_length is None if known else "Content-Length" not in headers
        ):
            self.set_content_length()

    def set_content_length(self) -> None:
        """wsgiref's: ``Content-Length`` when the iterable is one block (a one-item
        list); otherwise the server frames the body (chunked, or to the close)."""
        result = self.result
        if (
            type(result) is GeneratorType
            or getattr(type(result), "__len__", None) is None
        ):
            # len() would raise TypeError; raising and catching it cost 0.3 µs per
            # streamed response (benchmarks/micro_handler.py), and the type test
            # spares the commonest stream, a generator, even the getattr.
            return
        try:
            blocks = len(result)  # type: ignore[arg-type]  # duck-typed, as wsgiref
        except (TypeError, AttributeError, NotImplementedError):
            return
        if blocks == 1:
            known = self._known
            if (
                known is not None
                and self.headers is known
                and self._known_list == self._known_items
                and self._known_length is None
            ):
                pair = ("Content-Length", str(self.bytes_sent))
                self._known_list.append(pair)
                self._known_items.append(pair)
                self._known_length = self.bytes_sent
            else:
                self._require_headers()["Content-Length"] = str(self.bytes_sent)
                self._known = None

    def finish_content(self) -> None:
        """Send the headers if no body byte did, with ``Content-Length: 0`` unless the
        app set one (wsgiref) or the status has no body (1xx, 204, 304)."""
        if not self.headers_sent:
            code = self._status_code()
            if code >= 200 and code not in (204, 304):
                if not self._facts_hold():
                    self._require_headers().setdefault("Content-Length", "0")
                elif self._known_length is None:
                    self._add_known("Content-Length", "0")
                    self._known_length = 0
            self.send_headers()

    def send_preamble(self) -> None:
        """As an origin server (``origin_server``, the default), add ``Date`` (exactly
        one) and ``Server`` (if ``server_software``) to the headers: wsgiref writes
        them after the status line, which here is the serialiser's to write, with
        the framing. Not called for a client that is not modern (HTTP/0.9, which
        aiogate never accepts), as in wsgiref."""
        headers = self.headers
        if headers is None:
            raise AssertionError("start_response() has not been called")
        if not self.origin_server:
            return  # wsgiref's CGI ``Status:`` line: the status line says it here
        server = self.server_software
        if (
            headers is self._known
            and self._known_list == self._known_items
            and self._known_dates < 2
        ):
            # What the general code below does, from the facts.
            live, snapshot = self._known_list, self._known_items
            if not self._known_dates:
                pair = ("Date", http_date())
                live.append(pair)
                snapshot.append(pair)
                self._known_dates = 1
            if server and not self._known_server:
                if type(server) is str:
                    pair = ("Server", server)
                    live.append(pair)
                    snapshot.append(pair)
                    self._known_server = True
                else:  # let Headers refuse it, as below
                    headers["Server"] = server
            return
        dates = headers.get_all("Date")
        if not dates:
            headers["Date"] = http_date()
        elif len(dates) > 1:
            headers["Date"] = dates[0]
        if server and "Server" not in headers:
            headers["Server"] = server
        self._known = None

    def send_headers(self) -> None:
        """wsgiref's order (``cleanup_headers``, ``headers_sent``, then
        ``send_preamble`` if ``client_is_modern``), then the status and final
        headers to ``sink.start``, once."""
        self.cleanup_headers()
        self.headers_sent = True
        if not self.origin_server or self.client_is_modern():
            self.send_preamble()
        headers = self.headers
        status = self.status
        if headers is None or status is None:
            raise AssertionError("start_response() has not been called")
        code = self._code if status is self._code_of else self._status_code()
        allowed = self._body_allowed = not body_forbidden(self.method, code)
        if headers is self._known and self._known_list == self._known_items:
            self._declared_length = self._known_length if allowed else None
            items = self._known_list[:]  # what Headers.items() returns
        else:
            self._declared_length = (
                content_length(headers.get_all("Content-Length")) if allowed else None
            )
            items = headers.items()
        self._started = True
        self.sink.start(status, items)

    def _write(self, data: bytes) -> None:
        """Body bytes to ``sink.write``, minus what the status or method forbids and
        anything past the declared Content-Length."""
        if not self._body_allowed or not data:
            return
        limit = self._declared_length
        if limit is not None and self._body_bytes + len(data) > limit:
            if not self._cut:
                self._cut = True
                log.warning(
                    "App sent more body bytes than its Content-Length of %d "
                    "(%s %s); the excess was not sent",
                    limit,
                    self.method,
                    self.path,
                )
            data = data[: limit - self._body_bytes]
            if not data:
                return
        self._body_bytes += len(data)
        self.sink.write(data)

    def _flush(self) -> None:
        """Nothing to do: the sink sends (or queues) on every write."""

    def _require_status(self) -> str:
        status = self.status
        if status is None:
            raise AssertionError("start_response() has not been called")
        return status

    def _status_code(self) -> int:
        # Asked up to three times per response; parse each status string once.
        status = self._require_status()
        if status is not self._code_of:
            self._code = status_code(status)
            self._code_of = status
        return self._code
