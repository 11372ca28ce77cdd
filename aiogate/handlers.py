"""The wsgiref stream handlers: ``BaseHandler`` and the family that writes bytes.

Owns ``BaseHandler``, ``SimpleHandler``, ``BaseCGIHandler``, ``CGIHandler`` and
``IISCGIHandler``. Each subclasses the standard library's class of the same name
(``wsgiref.handlers``), so ``isinstance`` holds both ways round and every hook,
attribute and default not listed below is wsgiref's own code: fidelity by
construction, not by copying. They write the response's raw bytes to a stream.
Every method runs in the thread that calls ``run()``: the main thread for
``aiogate cgi`` (``CGIHandler``), a worker thread for the server's
``ServerHandler`` (``aiogate.server_handler``, a ``BaseHandler`` subclass).
Nothing here touches the event loop, a socket or h11.
``aiogate.handlers.ServerHandler`` still works: ``__getattr__`` at the bottom.

Differences from wsgiref, all deliberate (``BaseHandler.start_response`` and
``BaseHandler.write`` are the only overrides):

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
bytes as wsgiref's (tests/test_handlers.py runs both and compares), and CPython's
own ``test_wsgiref`` handler tests pass on these classes
(tests/test_cpython_wsgiref.py).
"""

from __future__ import annotations

import wsgiref.handlers as wsgiref_handlers
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from wsgiref.handlers import read_environ
from wsgiref.headers import Headers

from .response import is_hop_by_hop

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

    from ._types import WSGIEnvironment
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


def _close_iterable(result: object) -> None:
    """Call ``result.close()`` if it has one (PEP 3333)."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _reraise(exc_info: OptExcInfo) -> None:
    """Raise the exception in ``exc_info`` with its traceback (PEP 3333)."""
    value = exc_info[1]
    if value is None:
        # An empty exc_info: wsgiref's bare ``raise`` re-raises the active exception.
        raise
    raise value.with_traceback(exc_info[2])


class BaseHandler(wsgiref_handlers.BaseHandler):
    """Manage the invocation of a WSGI application: wsgiref's ``BaseHandler``, with
    ``start_response`` and ``write`` made to hold under ``python -O`` and to follow
    PEP 3333 where wsgiref does not (the module's differences 1-3).

    Subclasses provide ``_write``, ``_flush``, ``get_stdin``, ``get_stderr`` and
    ``add_cgi_vars``, as for wsgiref's.
    """

    # wsgiref's per-request state, which typeshed's stub leaves out; declared only
    # (the class-level defaults stay wsgiref's own).
    status: str | None
    result: Iterable[bytes] | None
    headers_sent: bool
    headers: Headers | None
    bytes_sent: int
    #: Set by ``setup_environ``; ``close`` resets it to None, as wsgiref does.
    environ: WSGIEnvironment

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
        if exc_info or self.headers is not None:
            try:
                self._start_again(exc_info)
            finally:
                exc_info = None  # no cycle through a re-raised traceback

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

    def _start_again(self, exc_info: OptExcInfo | None) -> None:
        """``start_response`` once more, or with ``exc_info`` (PEP 3333): allowed
        with ``exc_info`` until the headers are sent, and then ``exc_info`` is
        re-raised; without it, ``AssertionError``, as in wsgiref."""
        if exc_info:
            try:
                if self.headers_sent:
                    _reraise(exc_info)
            finally:
                exc_info = None  # avoid a dangling circular reference
        elif self.headers is not None:
            raise AssertionError("Headers already set!")

    def _convert_string_type(self, value: object, title: str) -> str:
        """Check that ``value`` is exactly a ``str`` (wsgiref's own, typed)."""
        if type(value) is str:
            return value
        raise AssertionError(f"{title} must be of type str (got {value!r})")

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

    # Helper (not a wsgiref hook).

    def _require_headers(self) -> Headers:
        headers = self.headers
        if headers is None:
            raise AssertionError("start_response() has not been called")
        return headers


class SimpleHandler(BaseHandler, wsgiref_handlers.SimpleHandler):
    """wsgiref's ``SimpleHandler`` (streams, an environ mapping), with this module's
    ``BaseHandler`` differences::

        handler = SimpleHandler(inp, out, err, env, multithread=False)
        handler.run(app)
    """


class BaseCGIHandler(SimpleHandler, wsgiref_handlers.BaseCGIHandler):
    """wsgiref's ``BaseCGIHandler``: CGI-like systems on streams (``origin_server``
    is False, so the status goes out as a ``Status:`` header)."""


class CGIHandler(BaseCGIHandler, wsgiref_handlers.CGIHandler):
    """wsgiref's ``CGIHandler``: CGI on ``sys.stdin``/``stdout``/``stderr`` and
    ``os.environ`` (``aiogate cgi``)."""


class IISCGIHandler(BaseCGIHandler, wsgiref_handlers.IISCGIHandler):
    """wsgiref's ``IISCGIHandler``: CGI with the workaround for IIS's PATH_INFO."""


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
