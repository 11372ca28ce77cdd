"""The response side of the server's handler: ``SinkHandler``.

Owns ``SinkHandler``, the ``BaseHandler`` (``aiogate.handlers``, wsgiref's family)
whose response goes to a ``ResponseSink`` (``sink.start``, ``sink.write``; the
subclass ends it with ``sink.finish``/``sink.abort``) instead of a stream of bytes:
``start_response`` with ``aiogate.response``'s checks, the header hooks
(``cleanup_headers``, ``set_content_length``, ``finish_content``,
``send_preamble``, ``send_headers``) and the body rules (no body for HEAD, 1xx, 204
and 304; nothing past the declared Content-Length). ``ServerHandler``
(``aiogate.server_handler``) adds the request side: the environ, the run and its
errors; its docstring lists how both differ from wsgiref. Every method runs in the
worker thread that runs the request; the sink is the only way out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import GeneratorType
from typing import TYPE_CHECKING
from wsgiref.headers import Headers

from .handlers import BaseHandler
from .response import (
    body_forbidden,
    content_length,
    http_date,
    is_hop_by_hop,
    scan_headers,
    status_code,
    validate_headers,
)

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

    from ._types import ResponseSink

__all__ = ["SinkHandler"]

log = logging.getLogger("aiogate.error")


class SinkHandler(BaseHandler):
    """A wsgiref handler whose response goes to a ``ResponseSink``: the response
    half of ``ServerHandler``. Runs in a worker thread."""

    # A handler is built for every request: its own state lives in slots (wsgiref's
    # attributes stay in the __dict__, over their class-level defaults).
    __slots__ = (
        "_body_allowed",
        "_body_bytes",
        "_code",
        "_code_of",
        "_cut",
        "_declared_length",
        "_known",
        "_known_dates",
        "_known_items",
        "_known_length",
        "_known_list",
        "_known_server",
        "_started",
        "method",
        "sink",
    )
    _started: bool  # sink.start() called
    _body_allowed: bool
    _declared_length: int | None
    _body_bytes: int  # body bytes given to the sink
    _cut: bool  # bytes past Content-Length were dropped (logged once)
    _code_of: str | None  # the status _code was parsed from
    _code: int
    #: The request's path for log messages (``ServerHandler.path``).
    path: str

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

    def __init__(self, sink: ResponseSink, method: str) -> None:
        self.sink = sink
        # For the body rules and log messages; they outlive close().
        self.method = method
        self._started = False
        self._body_allowed = True
        self._declared_length = None
        self._body_bytes = 0
        self._cut = False
        self._code_of = None
        self._code = 0
        self._known = None

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
        if exc_info or self.headers is not None:
            try:
                self._start_again(exc_info)
            finally:
                exc_info = None  # no cycle through a re-raised traceback

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
        if not self.origin_server or not self.client_is_modern():
            # wsgiref's CGI ``Status:`` line (the status line says it here), or
            # an HTTP/0.9 client: wsgiref asks client_is_modern again here.
            return
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
        self.sink.start(status, items, self.http_version)

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
