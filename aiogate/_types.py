"""Shared types and the small seams between layers.

Owns: the WSGI type aliases (from ``wsgiref.types``), ``ConnectionInfo`` (facts about one
connection that the environ needs), and the ``Protocol`` seams that let the thread side
and the sans-IO core be tested with fakes. No behaviour; any thread may use these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wsgiref.types import (
        ErrorStream,
        InputStream,
        StartResponse,
        WSGIApplication,
        WSGIEnvironment,
    )

__all__ = [
    "Address",
    "ConnectionInfo",
    "ErrorStream",
    "InputStream",
    "LoopLike",
    "RequestHead",
    "ResponseSink",
    "StartResponse",
    "WSGIApplication",
    "WSGIEnvironment",
]

#: A socket address as asyncio reports it: (host, port) for TCP, a path for UNIX.
Address = tuple[str, int] | str


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the environ needs to know about the connection a request came in on.

    Built once per connection on the event loop; read by worker threads.
    """

    #: ``transport.get_extra_info("sockname")``: where the client connected to.
    server: Address | None
    #: ``transport.get_extra_info("peername")``: who the client is.
    client: Address | None
    #: ``"http"`` or ``"https"``.
    url_scheme: str = "http"
    #: On TLS connections, the environ variables it adds (``HTTPS``, ``SSL_*``).
    tls: Mapping[str, str] | None = None


class RequestHead(Protocol):
    """The parts of a parsed request head the environ builder reads.

    ``h11.Request`` satisfies it: ``headers`` iterates over ``(lowercased_name, value)``
    byte pairs in the order they arrived.
    """

    @property
    def method(self) -> bytes: ...

    @property
    def target(self) -> bytes: ...

    @property
    def http_version(self) -> bytes: ...

    @property
    def headers(self) -> Iterable[tuple[bytes, bytes]]: ...


class LoopLike(Protocol):
    """The only thing the thread side may ask of the event loop."""

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> Any: ...


class ResponseSink(Protocol):
    """Where the server's per-request handler sends its response, from a worker thread.

    The real one is ``aiogate.writer.ResponseWriter``, which hands each call to the
    event loop; tests use an in-memory fake. Every method runs in a worker thread.
    """

    def start(
        self, status: str, headers: list[tuple[str, str]], version: str = "1.1"
    ) -> None:
        """Send the status line and headers (already validated, with Date/Server);
        ``version`` is the response's HTTP version, "1.1" or "1.0"."""

    def write(self, data: bytes) -> None:
        """Send body bytes. May block for backpressure; raises ``ClientDisconnected``."""

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` body bytes of the regular file ``fd`` from ``offset``
        (``ServerHandler.sendfile``; the head declares them as its Content-Length,
        unless body bytes went before them: then the body is framed as it began).
        The sink may use ``fd`` only during the call: it duplicates it if it sends
        later. Optional: a handler checks for it and iterates the file otherwise."""

    def finish(self) -> None:
        """The response is complete; end the message cleanly."""

    def abort(self) -> None:
        """The app failed after the headers went out: close without ending the message,
        so the client sees a truncated response, never a false success."""
