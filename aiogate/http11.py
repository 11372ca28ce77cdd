"""The HTTP/1.1 policy layer: what a client may send us, checked before h11 sees it.

Owns: ``ServerConnection``, a wrapper around ``h11.Connection(h11.SERVER)`` that keeps
its own buffer of received bytes and hands h11 only bytes it has checked: one whole
request head at a time, then exactly the bytes of that request's body. Also owns the
request limits (request line, field count and size), the request-smuggling checks h11
does not make, and the canned ``error_response``. Sans-IO: bytes in, h11 events out;
it raises ``ProtocolError`` and never logs. Runs on the event loop (one object per
connection, used only by ``protocol.H11Protocol``).

Theory of operation:

1. Received bytes go to ``self._buf``, never straight to h11. h11 is lenient in ways
   that matter for request smuggling (bare LF line ends, obs-fold, merged duplicate
   Content-Length, bare CR in chunk extensions, 20-digit chunk sizes, any
   ``HTTP/x.y`` version), so it only ever parses what we have already accepted.
2. Between requests (h11 ``their_state`` IDLE) the head is scanned line by line as it
   arrives. Each line is checked the same way whether it arrived whole or one byte
   at a time, and a line that can no longer become valid fails at once; so the
   outcome never depends on how the bytes were split (``tests/test_request_corpus``
   checks this at every split point), and memory for a head is bounded by the limits.
   A head that arrives whole and is clean takes a fast path of C-level
   ``count``/``find``/``in`` calls instead, with the same outcome.
3. Once the whole head is accepted, its framing fields are checked (RFC 9112 §6),
   then h11 parses it and we return its ``Request``.
4. The body is ours: h11 is not asked again after the ``Request``, and we keep the
   client's state with h11's rules (``_their``). A body framed by Content-Length
   (or none at all) needs only counting: the ``Data`` events carry the received
   bytes objects themselves, not copies. A chunked body goes through our own
   decoder (RFC 9112 §7.1), which checks every unit and returns the data of all
   the chunks it has decoded as one contiguous ``Data``, a bounded number of chunks
   per call: h11 made one event, one bytes object and several microseconds of
   Python per chunk, so a client sending 1-byte chunks could hold the loop and
   fill memory with tiny objects. Trailer fields are checked like head fields and
   parsed into the ``EndOfMessage``. Bytes after the end of the message stay in
   ``self._buf``.
5. While the request is done and ``self._buf`` holds the next one, ``next_event``
   returns ``h11.PAUSED`` until ``start_next_cycle``; after ``Connection: close`` or
   HTTP/1.0 those bytes are never parsed at all. EOF counts only once
   ``self._buf`` is empty.
6. After a ``ProtocolError`` the connection is dead: ``next_event`` raises again,
   received bytes are dropped, and the caller sends ``error_response`` and closes.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, TypeAlias

import h11

from .environ import absolute_form_authority, check_authority
from .errors import ProtocolError
from .response import http_date

if TYPE_CHECKING:
    from h11._util import Sentinel

    #: What ``next_event`` returns (as ``h11.Connection.next_event``).
    NextEvent: TypeAlias = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]
    #: What a server sends.
    SendEvent: TypeAlias = (
        h11.InformationalResponse | h11.Response | h11.Data | h11.EndOfMessage
    )

__all__ = ["ServerConnection"]

_END_OF_MESSAGE = h11.EndOfMessage()  # events are immutable: one serves every request

# RFC 9110 §5.6.2: tchar. A request line starts with a method, which is a token; a
# first byte that cannot start one (a TLS ClientHello starts with 0x16) fails at once
# rather than after limit_request_line bytes or a timeout (h11 checks for < 0x21).
_TCHAR: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789" + bytes(range(65, 91)) + bytes(range(97, 123))
)
_HEXDIG: Final = frozenset(b"0123456789abcdefABCDEF")
_SP: Final = 32
_HTAB: Final = 9
_CR: Final = 13
_LF: Final = 10

# RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT. Anything shaped like a
# version (also "HTTP/2" and "HTTP/3", as clients write them) is an unsupported
# version, 505 (RFC 9110 §15.6.6); anything else is a malformed request line.
_VERSION_RE: Final = re.compile(rb"HTTP/[0-9](?:\.[0-9])?")

_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE.
_QUOTED: Final = (
    rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
)
# RFC 9112 §7.1 and §7.1.1: chunk-size [ chunk-ext ] with
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ).
# Stricter than h11's ``;.*``, which lets a bare CR or NUL through in an extension
# (the "chunk extension" smuggling vectors), and than its trailing whitespace.
_CHUNK_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*"
)
# The usual chunk-size line, matched in one step: no extensions, at most 16 digits.
_PLAIN_CHUNK_LINE_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")
# Chunk-size lines decoded per call of ``_decode_chunked``: a client sending 1-byte
# chunks (6 bytes of framing per byte of data) costs about a microsecond of Python
# per chunk, so one call stays well under a millisecond and the caller can let
# other connections in between (protocol rule 9).
_CHUNK_LINES_PER_CALL: Final = 256
# 16 hex digits is 2**64 - 1. h11 allows 20; more digits than any real body needs
# are only good for overflowing someone else's parser.
_MAX_CHUNK_SIZE_DIGITS: Final = 16
# h11's CONTENT_LENGTH_MAX_DIGITS ("1 billion TB - 1").
_MAX_CONTENT_LENGTH_DIGITS: Final = 20

# RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host from RFC 3986 §3.2.2
# (IP-literal with an RFC 6874 zone, IPvFuture, IPv4address or reg-name). Empty is
# allowed (a target URI without authority).
_HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25(?:[-._~0-9A-Za-z]|%[0-9A-Fa-f]{2})+)?\]"
    rb"|\[[vV][0-9A-Fa-f]+\.[-._~0-9A-Za-z!$&'()*+,;=:]+\]"
    rb"|(?:[-._~0-9A-Za-z!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
# The usual name[:port], checked twice as fast as with _HOST_RE (which it implies).
_SIMPLE_HOST_RE: Final = re.compile(rb"[-.0-9a-z]*(?::[0-9]*)?")

# Body framing of the current request or response (besides a remaining
# Content-Length >= 0); the last two are for responses only.
_CHUNKED: Final = -1
_NO_BODY: Final = -2  # HEAD, 204, 304
_UNTIL_CLOSE: Final = -3  # no length, HTTP/1.0 client: the close ends the body
# States of the chunk scanner.
_SIZE_LINE: Final = 0
_DATA: Final = 1
_DATA_CRLF: Final = 2
_TRAILER: Final = 3
_END: Final = 4

# error_response: the body repeats the reason, cut to this many characters.
_MAX_REASON_CHARS: Final = 200
# RFC 9110 §15.5.6: a 405 MUST carry Allow. We answer 405 only to CONNECT, which we
# do not serve; every other method goes to the app.
_ALLOW: Final = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"


def _error(message: str, status: int = 400) -> ProtocolError:
    return ProtocolError(message, status)


def _show(data: bytes | bytearray, limit: int = 40) -> str:
    """A short printable rendering of client bytes for an error message."""
    text = repr(bytes(data[:limit]))
    return text + "..." if len(data) > limit else text


def _check_request_line(line: bytes) -> bytes:
    """Check a complete request line (no CRLF); return its HTTP-version.

    RFC 9112 §3: request-line = method SP request-target SP HTTP-version. h11 checks
    the method and target characters afterwards; this checks what h11 lets through.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        # Also HTTP/0.9's "GET /path", which has no version at all.
        raise _error(f"malformed request line: {_show(line)}")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if _VERSION_RE.fullmatch(version):
            raise _error(f"unsupported HTTP version: {_show(version)}", 505)
        raise _error(f"malformed HTTP version: {_show(version)}")
    if method == b"CONNECT":
        # RFC 9110 §9.3.6: CONNECT asks for a tunnel (authority-form target, RFC 9112
        # §3.2.3), which an origin server for WSGI apps does not provide.
        raise _error("CONNECT is not supported", 405)
    first = target[:1]
    if first == b"/":  # origin-form, RFC 9112 §3.2.1
        pass
    elif target == b"*":  # asterisk-form, only for server-wide OPTIONS (§3.2.4)
        if method != b"OPTIONS":
            raise _error("the * target is only allowed with OPTIONS")
    else:  # absolute-form, RFC 9112 §3.2.2, with an http(s) URI
        scheme = target[:8].lower()
        if scheme.startswith(b"http://"):
            rest = target[7:]
        elif scheme == b"https://":
            rest = target[8:]
        else:
            raise _error(f"malformed request target: {_show(target)}")
        # RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected.
        if not rest or rest[:1] in (b"/", b"?", b"#"):
            raise _error(f"request target has no host: {_show(target)}")
        # RFC 9112 §3.2.2: this authority replaces Host (environ makes it HTTP_HOST
        # and SERVER_NAME), so it must pass the Host check too, without userinfo.
        authority = absolute_form_authority(target)
        if authority is None or not check_authority(authority):
            raise _error(f"invalid host in request target: {_show(target)}")
    return version


def _field_value(low_head: bytes, key: bytes) -> bytes:
    """The value of the field line starting with ``key`` (``b"\\nname:"``), without
    OWS (RFC 9110 §5.5). ``low_head`` is a clean, lower-cased head."""
    start = low_head.find(key) + len(key)
    return low_head[start : low_head.find(b"\r", start)].strip(b" \t")


def _trailer_field(line: bytes) -> tuple[bytes, bytes]:
    """Split a checked trailer field line (no CRLF) into name and value without OWS;
    h11's ``EndOfMessage`` checks both."""
    name, colon, value = line.partition(b":")
    if not colon:
        raise _error(f"malformed trailer field: {_show(line)}")
    return name, value.strip(b" \t")


def _check_framing(head: bytes, http11: bool) -> tuple[int, bool]:
    """Check the fields of a clean head that decide where the message ends.

    Returns the body framing (a Content-Length, or ``_CHUNKED``) and whether the
    connection may be reused after this request (h11's rule: HTTP/1.1 without
    ``Connection: close``; h11 never keeps HTTP/1.0 connections alive). Every search is a
    C-level scan of the lower-cased head: in a clean head every LF ends a line, so
    ``b"\\nhost:"`` finds exactly the Host field lines (a name with whitespace before
    the colon is not a field name at all, and h11 rejects its line).
    """
    low = head.lower()
    te_count = low.count(b"\ntransfer-encoding:")
    cl_count = low.count(b"\ncontent-length:")
    framing = 0
    if te_count:
        # RFC 9112 §6.1: a server MAY reject a request with both, and MUST close the
        # connection after it either way; both is the classic CL.TE/TE.CL smuggle.
        if cl_count:
            raise _error("both Content-Length and Transfer-Encoding")
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing
        # is faulty, even if a Content-Length is present.
        if not http11:
            raise _error("Transfer-Encoding in an HTTP/1.0 request")
        # RFC 9112 §6.1 and §7: we only implement chunked, exactly once (coding
        # names are case-insensitive). RFC 9110 §15.6.2: otherwise 501, which is
        # also h11's hint.
        if te_count > 1 or _field_value(low, b"\ntransfer-encoding:") != b"chunked":
            raise _error("only Transfer-Encoding: chunked is supported", 501)
        framing = _CHUNKED
    elif cl_count:
        # RFC 9110 §8.6: Content-Length = 1*DIGIT. A list or a repeated field, even
        # with identical values, is refused: h11 would merge them, and some other
        # parser in the path might not (RFC 9112 §6.3 rule 5 allows rejecting).
        if cl_count > 1:
            raise _error("more than one Content-Length")
        value = _field_value(low, b"\ncontent-length:")
        if not value.isdigit() or len(value) > _MAX_CONTENT_LENGTH_DIGITS:
            raise _error(f"invalid Content-Length: {_show(value)}")
        framing = int(value)
    # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for more than one
    # Host field line, and for an invalid Host value (h11 checks the first two).
    host_count = low.count(b"\nhost:")
    if host_count > 1:
        raise _error("more than one Host")
    if host_count == 0:
        if http11:
            raise _error("missing Host")
    else:
        host = _field_value(low, b"\nhost:")
        if not _SIMPLE_HOST_RE.fullmatch(host) and not _HOST_RE.fullmatch(host):
            raise _error(f"invalid Host: {_show(host)}")
    keep_alive = http11
    if keep_alive and b"\nconnection:" in low:
        start = 0
        while (start := low.find(b"\nconnection:", start) + 1) > 0:
            value = _field_value(low[start - 1 :], b"\nconnection:")
            if b"close" in (token.strip(b" \t") for token in value.split(b",")):
                keep_alive = False
                break
    return framing, keep_alive


class ServerConnection:
    """One client connection's HTTP/1.1 state: checked bytes in, h11 events out.

    Runs on the event loop. ``next_event`` raises ``ProtocolError`` for a bad request;
    then the caller sends ``error_response(exc.status_hint, str(exc))`` and closes.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_chunk",
        "_chunk_left",
        "_continue_sent",
        "_deferred_error",
        "_eof",
        "_error",
        "_h11",
        "_http11",
        "_keep_alive",
        "_limit_field",
        "_limit_fields",
        "_limit_line",
        "_line_start",
        "_lines",
        "_max_event",
        "_method",
        "_our",
        "_out_framing",
        "_out_keep_alive",
        "_ready",
        "_searched",
        "_their",
        "_trailers",
        "_version",
        "_waiting_100",
    )

    def __init__(
        self,
        *,
        limit_request_line: int = 8190,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
    ) -> None:
        self._limit_line = limit_request_line
        self._limit_fields = limit_request_fields
        self._limit_field = limit_request_field_size
        # h11 only ever buffers an incomplete trailer section (we feed it whole heads
        # and validated body units), so its own limit just has to exceed ours.
        self._max_event = limit_request_line + (limit_request_fields + 2) * (
            limit_request_field_size + 2
        )
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        # Our side of the exchange, in h11's state names: IDLE, SEND_RESPONSE (a
        # request arrived), SEND_BODY, then DONE or MUST_CLOSE; ERROR after a failure.
        self._our: type[Sentinel] = h11.IDLE
        self._continue_sent = False
        self._http11 = True  # the current request is HTTP/1.1
        self._keep_alive = True  # the current request allows reusing the connection
        self._out_framing = 0  # remaining Content-Length, or a _NO_BODY-style marker
        self._out_keep_alive = True
        self._buf = bytearray()  # received, not yet given to h11
        self._eof = False
        self._error: ProtocolError | None = None
        # A body error found after units that are still to come out as Data.
        self._deferred_error: ProtocolError | None = None
        self._method: bytes | None = None
        self._body = 0  # remaining Content-Length, or _CHUNKED
        self._chunk = _SIZE_LINE
        self._chunk_left = 0
        self._trailers: list[tuple[bytes, bytes]] = []
        # Line scanner (head, then trailers): offset in _buf of the first unchecked
        # line, and how many lines of this section are already checked.
        self._line_start = 0
        self._lines = 0
        self._searched = 0  # fast path: _buf[:_searched] has no CRLFCRLF
        self._version = b""
        # The client's side once a head is parsed, in h11's state names and by
        # h11's rules (None: between requests, IDLE); see ``_body_event``.
        # ``_ready``: body bytes received whole, to be returned as they are;
        # ``_waiting_100``: h11's 100-continue flag, kept too.
        self._their: type[Sentinel] | None = None
        self._ready: bytes | None = None
        self._waiting_100 = False

    # -- state -------------------------------------------------------------------------

    @property
    def our_state(self) -> type[Sentinel]:
        """Our (the server's) side, in h11's state names."""
        return self._our

    @property
    def their_state(self) -> type[Sentinel]:
        """The client's side, in h11's state names; ``h11.ERROR`` after a
        ``ProtocolError``. An ``Upgrade`` request ends in ``DONE`` like any other:
        a WSGI server never switches protocols."""
        if self._error is not None:
            return h11.ERROR
        their = self._their
        return h11.IDLE if their is None else their

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` (HTTP/1.1 only; h11 ignores it
        for HTTP/1.0 as RFC 9110 §10.1.1 requires) and no response or body yet."""
        return (
            self._waiting_100
            and not self._continue_sent
            and self._our is h11.SEND_RESPONSE
        )

    @property
    def request_has_body(self) -> bool:
        """The current request has a body to read (after its ``Request`` event:
        a Content-Length above 0, or chunked)."""
        return self._body != 0

    @property
    def body_bytes_expected(self) -> int | None:
        """Body bytes still to come by Content-Length (right after the ``Request``
        event: the declared length), or None for a chunked body."""
        return None if self._body == _CHUNKED else self._body

    @property
    def has_unparsed_data(self) -> bool:
        """Bytes were received that no event has consumed yet: part of a request
        head still arriving, or a pipelined request waiting its turn."""
        return bool(self._buf) or self._ready is not None

    @property
    def client_is_http10(self) -> bool:
        """The current (or last) request was HTTP/1.0."""
        return not self._http11

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the client sent EOF (as in h11)."""
        if data:
            if self._eof:
                raise RuntimeError("received data after EOF")
            if self._error is None:  # a dead connection keeps nothing
                if (
                    self._their is h11.SEND_BODY
                    and self._ready is None
                    and not self._buf
                    and len(data) <= self._body
                    and type(data) is bytes
                ):
                    self._ready = data  # body bytes, returned as they are (rule 4)
                else:
                    self._buf += data
        else:
            self._eof = True

    def next_event(self) -> NextEvent:
        """The next h11 event, ``h11.NEED_DATA`` or ``h11.PAUSED``.

        Raises ``ProtocolError`` (with ``status_hint``) for a bad request, and again
        on every later call.
        """
        if self._error is not None:
            raise _error(str(self._error), self._error.status_hint)
        try:
            return self._next_event()
        except ProtocolError as exc:
            self._error = exc
            self._buf.clear()
            self._ready = None
            raise
        except h11.RemoteProtocolError as exc:
            self._error = _error(str(exc), exc.error_status_hint)
            self._buf.clear()
            self._ready = None
            raise self._error from exc

    def _next_event(self) -> NextEvent:
        if self._their is not None:
            return self._body_event()
        # Between requests: h11 only ever parses a whole, checked head.
        head = self._take_head()
        if head is None:
            if not self._eof:
                return h11.NEED_DATA
            if self._buf:
                raise _error("client closed the connection inside a request head")
            self._their = h11.CLOSED
            return h11.ConnectionClosed()
        http11 = self._version == b"HTTP/1.1"
        framing, keep_alive = _check_framing(head, http11)
        conn = self._h11
        conn.receive_data(head)
        event = conn.next_event()
        if type(event) is not h11.Request:  # h11 parses a whole head at once
            raise RuntimeError(f"h11 returned {event!r} for a complete head")
        self._method = event.method
        self._http11 = http11
        self._keep_alive = keep_alive
        self._our = h11.SEND_RESPONSE
        self._body = framing
        self._chunk = _SIZE_LINE
        # From here on the body is ours (rule 4): h11 is not asked again. An
        # Upgrade request is no exception: a WSGI server never switches protocols,
        # so its message simply ends, as any other (h11 would wait in
        # MIGHT_SWITCH_PROTOCOL for an answer it never sees).
        self._their = h11.SEND_BODY
        self._waiting_100 = framing != 0 and conn.they_are_waiting_for_100_continue
        return event

    def _body_event(self) -> NextEvent:
        """The events after the ``Request``, as h11 would give them: ``Data`` until
        the body is complete, ``EndOfMessage``, then PAUSED while a pipelined
        request waits, ``ConnectionClosed`` at EOF, else NEED_DATA."""
        their = self._their
        if their is h11.SEND_BODY:
            remaining = self._body
            if remaining == _CHUNKED:
                return self._chunked_event()
            if remaining:
                data = self._ready
                if data is not None:
                    self._ready = None
                    self._body = remaining - len(data)
                elif self._buf:
                    data = self._take_counted_body()
                elif self._eof:
                    raise _error("client closed the connection inside a request body")
                else:
                    return h11.NEED_DATA
                self._waiting_100 = False  # h11's rule: body data ends the wait
                return h11.Data(data=data)
            return self._end_of_message(_END_OF_MESSAGE)
        if their is h11.DONE or their is h11.MUST_CLOSE:
            if self._buf:
                return h11.PAUSED
            if not self._eof:
                return h11.NEED_DATA
            self._their = h11.CLOSED
        return h11.ConnectionClosed()

    def _end_of_message(self, event: h11.EndOfMessage) -> h11.EndOfMessage:
        # h11's rule: a connection that is not kept alive ends in MUST_CLOSE.
        self._their = h11.DONE if self._keep_alive else h11.MUST_CLOSE
        return event

    def _chunked_event(self) -> NextEvent:
        """The next event of a chunked body: the data of every chunk decoded from
        ``_buf`` so far, in one ``Data`` (contiguous, however small the chunks);
        ``EndOfMessage`` after the trailer section; an error found in the framing
        once the data before it is out."""
        if self._buf and self._deferred_error is None and self._chunk != _END:
            data = self._decode_chunked()
            if data:
                self._waiting_100 = False
                return h11.Data(data=data)
        if self._chunk == _END:
            trailers, self._trailers = self._trailers, []
            if not trailers:
                return self._end_of_message(_END_OF_MESSAGE)
            try:
                return self._end_of_message(h11.EndOfMessage(headers=trailers))
            except h11.LocalProtocolError as exc:  # h11's field checks, as before
                raise _error(str(exc), exc.error_status_hint) from None
        if self._deferred_error is not None:
            raise self._deferred_error
        if self._eof:
            raise _error("client closed the connection inside a request body")
        return h11.NEED_DATA

    # -- the request head --------------------------------------------------------------

    def _take_head(self) -> bytes | None:
        """Remove and return the next complete, checked head from ``_buf``, or None."""
        buf = self._buf
        if self._lines == 0:
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
            # received before the request line. We ignore any number of them.
            if buf.startswith(b"\r\n"):
                skip = 2
                while buf.startswith(b"\r\n", skip):
                    skip += 2
                del buf[:skip]
                self._searched = 0
            if len(buf) < 2:
                if buf and buf[0] != _CR and buf[0] not in _TCHAR:
                    raise _error(f"request does not start with a method: {_show(buf)}")
                return None
            end = buf.find(b"\r\n\r\n", max(self._searched - 3, 0))
            if end == -1:
                self._searched = len(buf)
            else:
                head = self._take_clean_head(end + 4)
                if head is not None:
                    return head
        return self._scan_head()

    def _take_clean_head(self, size: int) -> bytes | None:
        """Fast path: the whole head ``_buf[:size]`` arrived at once.

        If it is clean (only CRLF line ends, no bare CR or LF, no obs-fold) the only
        line errors left are the first byte, the limits and the request-line syntax,
        which we check in the order ``_check_line`` would. Otherwise return None and
        let ``_scan_head`` find the first bad line. Measured on a 6-field GET: ~2.4 µs
        here plus ~1 µs in ``_check_framing``, against ~36 µs for h11's own
        request/response cycle (the line-by-line path costs about twice as much).
        """
        buf = self._buf
        head = bytes(buf) if size == len(buf) else bytes(buf[:size])
        lines = head.count(b"\r\n")
        if (
            head.count(b"\n") != lines
            or head.count(b"\r") != lines
            or b"\n " in head
            or b"\n\t" in head
        ):
            return None
        if head[0] not in _TCHAR:
            raise _error(f"request does not start with a method: {_show(head)}")
        line_end = head.find(b"\r\n")
        if line_end > self._limit_line:
            raise _error("request line too long", 414)
        self._version = _check_request_line(head[:line_end])
        if lines - 2 > self._limit_fields:
            raise _error("too many header fields", 431)
        fields_end = size - 4  # the CRLF that ends the last field line
        if (
            fields_end - line_end - 2 > self._limit_field
            and max(map(len, head[line_end + 2 : fields_end].split(b"\r\n")))
            > self._limit_field
        ):
            raise _error("field line too long", 431)
        if size == len(buf):
            buf.clear()
        else:
            del buf[:size]
        self._searched = 0
        return head

    def _scan_head(self) -> bytes | None:
        """Slow path: check the head line by line as it arrives (``_check_line``)."""
        buf = self._buf
        start = self._line_start
        index = self._lines
        while True:
            newline = buf.find(b"\n", start)
            if newline == -1:
                self._check_line(start, len(buf), index, complete=False)
                self._line_start = start
                self._lines = index
                return None
            self._check_line(start, newline, index, complete=True)
            if index and newline - start == 1:  # the empty line that ends the head
                head = bytes(buf[: newline + 1])
                del buf[: newline + 1]
                self._line_start = self._lines = self._searched = 0
                return head
            index += 1
            start = newline + 1

    def _check_line(self, start: int, end: int, index: int, *, complete: bool) -> None:
        """Check line ``index`` of a head or trailer section, ``_buf[start:end]``.

        ``end`` is the LF (not included) when ``complete``; otherwise the line is
        still arriving and we fail as soon as no continuation can make it valid.
        Index 0 is the request line (index 0 never occurs for trailers).

        The checks run in the order their failures become visible while bytes arrive
        (first byte: method, field count, obs-fold; then a CR not before LF within
        the limit; then the length; then the line end), so a line fails with the
        same status however it was split.
        """
        buf = self._buf
        size = end - start
        if size == 0 and not complete:
            return
        first = buf[start] if size else 10
        if index == 0:
            limit, too_long = self._limit_line, 414
            if first not in _TCHAR:
                raise _error(f"request does not start with a method: {_show(buf)}")
        else:
            limit, too_long = self._limit_field, 431
            # Past the last allowed field only the empty line may come; a line that
            # is not CRLF can never end within the limit (RFC 9110 §15.5.20 for 431).
            if index > self._limit_fields and not (
                size == 0 or (size == 1 and first == _CR)
            ):
                raise _error("too many header fields", 431)
            # RFC 9112 §5.2: a server MUST reject obs-fold in a request (other than
            # message/http) with 400; h11 would unfold it.
            if first in (_SP, _HTAB):
                raise _error("obsolete line folding (obs-fold) is not allowed")
        # A CR that is not the last byte (seen so far, or before the LF) is not part
        # of a CRLF. RFC 9112 §2.2: a bare CR MUST be treated as invalid (or replaced
        # by SP). Only the first ``limit`` bytes count: a later CR makes the line too
        # long before it can be seen to be bare.
        ends_with_cr = size > 0 and buf[end - 1] == _CR
        if complete:
            content_end = end - 1 if ends_with_cr else end
            too_long_now = content_end - start > limit
        else:
            # The last byte may be the CR of the CRLF still to come.
            content_end = end - 1
            too_long_now = size > limit + 1 or (size == limit + 1 and not ends_with_cr)
        if buf.find(b"\r", start, min(content_end, start + limit)) != -1:
            raise _error("bare CR (a CR not followed by LF) in the head or trailers")
        if too_long_now:
            raise _error(
                "request line too long" if index == 0 else "field line too long",
                too_long,
            )
        if not complete:
            return
        # RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; we do not,
        # because a proxy in front may not (the "bare LF" smuggling vectors).
        if not ends_with_cr:
            raise _error("line ends with a bare LF")
        if index == 0:
            self._version = _check_request_line(bytes(buf[start:content_end]))

    # -- the request body --------------------------------------------------------------

    def _take_counted_body(self) -> bytes:
        """Remove and return the bytes of a Content-Length body that are in ``_buf``
        (at most what is left of the length), counting them off ``_body``."""
        buf = self._buf
        count = min(self._body, len(buf))
        if count == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:count])
            del buf[:count]
        self._body -= count
        return data

    def _decode_chunked(self) -> bytes:
        """Decode chunked framing (RFC 9112 §7.1) from ``_buf``: return the data of
        the chunks it holds, joined, and remove what was decoded. Stops at the end
        of ``_buf``, at the end of the trailer section, or after
        ``_CHUNK_LINES_PER_CALL`` chunk-size lines, so one call's work is bounded
        however small the chunks are (the caller asks again).

        Each unit is checked before anything after it is taken: a framing error is
        kept in ``_deferred_error`` and raised once the data before it is out, so
        the events do not depend on how the bytes were split.
        """
        buf = self._buf
        size = len(buf)
        pos = 0  # end of what is decoded
        spans: list[tuple[int, int]] = []  # where the chunk data lies in ``buf``
        lines = _CHUNK_LINES_PER_CALL
        try:
            while pos < size:
                state = self._chunk
                if state == _SIZE_LINE:
                    if not lines:
                        break
                    lines -= 1
                    match = _PLAIN_CHUNK_LINE_RE.match(buf, pos)
                    if match is not None:  # the usual line: only the size
                        chunk_size = int(match[1], 16)
                        pos = match.end()
                    else:
                        newline = buf.find(b"\n", pos)
                        end = size if newline == -1 else newline
                        checked = self._check_chunk_line(
                            pos, end, complete=newline != -1
                        )
                        if checked is None:
                            break
                        chunk_size = checked
                        pos = newline + 1
                    if not chunk_size:  # last-chunk; trailers follow (RFC 9112 §7.1.2)
                        self._chunk = _TRAILER
                        self._lines = 1
                        self._trailers = []
                        continue
                    end = pos + chunk_size
                    if end + 2 <= size and buf[end] == _CR and buf[end + 1] == _LF:
                        # The whole chunk is here (the usual case): take it in one step.
                        spans.append((pos, end))
                        pos = end + 2
                        continue
                    self._chunk = _DATA
                    self._chunk_left = chunk_size
                elif state == _DATA:
                    count = min(self._chunk_left, size - pos)
                    spans.append((pos, pos + count))
                    pos += count
                    self._chunk_left -= count
                    if self._chunk_left == 0:
                        self._chunk = _DATA_CRLF
                elif state == _DATA_CRLF:
                    # chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, exactly.
                    if buf[pos] != _CR or (size - pos > 1 and buf[pos + 1] != _LF):
                        raise _error("chunk data not followed by CRLF")
                    if size - pos < 2:
                        break
                    pos += 2
                    self._chunk = _SIZE_LINE
                elif state == _TRAILER:
                    newline = buf.find(b"\n", pos)
                    if newline == -1:
                        self._check_line(pos, size, self._lines, complete=False)
                        break
                    self._check_line(pos, newline, self._lines, complete=True)
                    if newline - pos == 1:  # the empty line that ends the message
                        self._chunk = _END
                        self._lines = 0
                        pos = newline + 1
                        break  # the rest belongs to the next request
                    self._trailers.append(_trailer_field(bytes(buf[pos : newline - 1])))
                    self._lines += 1
                    pos = newline + 1
                else:  # pragma: no cover - _END: never asked to decode
                    break
        except ProtocolError as exc:
            # Each branch raises before it moves ``pos``, so what is before ``pos``
            # was checked and its data still goes out (see ``_chunked_event``).
            self._deferred_error = exc
        if not spans:
            data = b""
        elif len(spans) == 1:
            first, last = spans[0]
            data = bytes(buf[first:last])
        else:
            with memoryview(buf) as view:
                data = b"".join([view[first:last] for first, last in spans])
        if pos == size:
            buf.clear()
        elif pos:
            del buf[:pos]
        return data

    def _check_chunk_line(self, start: int, end: int, *, complete: bool) -> int | None:
        """Check a chunk-size line ``_buf[start:end]``; its size once complete."""
        buf = self._buf
        size = end - start
        if size == 0:  # (a partial line has at least one byte)
            raise _error("empty chunk-size line")
        if buf[start] not in _HEXDIG:
            raise _error(f"invalid chunk size: {_show(buf[start:end])}")
        # RFC 9112 §7.1.1 and §2.2: a CR anywhere but before the LF is invalid (h11's
        # extension pattern lets it through: a TERM.EXT smuggling vector).
        if buf.find(b"\r", start, end - 1) != -1:
            raise _error("bare CR in a chunk-size line")
        if size > self._limit_field + 1:
            raise _error("chunk-size line too long")
        if not complete:
            return None
        if buf[end - 1] != _CR:
            raise _error("chunk-size line ends with a bare LF")
        line = bytes(buf[start : end - 1])
        match = _CHUNK_LINE_RE.fullmatch(line)
        if match is None:
            raise _error(f"invalid chunk-size line: {_show(line)}")
        digits = match.group(1)
        if len(digits) > _MAX_CHUNK_SIZE_DIGITS:
            raise _error(f"chunk size too large: {_show(digits)}")
        return int(digits, 16)

    # -- sending -----------------------------------------------------------------------
    #
    # Responses are serialised here rather than by h11: the handler has already
    # validated the status and headers (aiogate.response), and h11's send path
    # re-validated them with regexes and built each Response twice, about a third of
    # the server's CPU per hello-world request (measured with
    # benchmarks/profile_inline.py). The framing rules are h11's (and RFC 9112 §6):
    # Content-Length when the app gives one, chunked for a 1.1 client otherwise,
    # close-delimited for 1.0; no body for HEAD, 1xx, 204 and 304.

    def start_response(
        self, status: str, headers: list[tuple[str, str]], *, close: bool = False
    ) -> bytes:
        """The status line and header block of the response to the current request.

        ``headers`` come from the handler, already validated; any ``Connection`` or
        ``Transfer-Encoding`` field is replaced by our own framing and keep-alive
        fields. ``close=True`` ends the connection after this response. Raises
        ``h11.LocalProtocolError`` if no response may start now, or if the status or
        a header would break the message (CR, LF or NUL; non-latin-1; a 1xx status;
        a bad Content-Length): the guard against response splitting stays here even
        if a custom handler skips validation."""
        if self._our is not h11.SEND_RESPONSE:
            raise h11.LocalProtocolError(f"cannot start a response in {self._our!r}")
        keep_alive = self._keep_alive and not close
        length = -1
        lines = [f"HTTP/1.1 {status}"]
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                # One field of ASCII digits (RFC 9110 §8.6), as the handler checks.
                if length != -1 or not (value.isascii() and value.isdigit()):
                    raise h11.LocalProtocolError(f"bad Content-Length {value!r}")
                length = int(value)
            elif lowered == "connection":
                if "close" in value.lower():
                    keep_alive = False
                continue
            elif lowered == "transfer-encoding":
                continue
            lines.append(f"{name}: {value}")
        code = int(status[:3]) if status[:3].isdigit() else 0
        if code < 200:
            raise h11.LocalProtocolError(f"not a final status: {status!r}")
        if self._method == b"HEAD" or code == 204 or code == 304:
            framing = _NO_BODY
        elif length != -1:
            framing = length
        elif self._http11:
            framing = _CHUNKED
            lines.append("Transfer-Encoding: chunked")
        else:
            framing = _UNTIL_CLOSE
            keep_alive = False
        if not keep_alive:
            lines.append("Connection: close")
        lines.append("\r\n")
        text = "\r\n".join(lines)
        # Exactly one LF per line, each after a CR, and no NUL: no split response.
        if (
            text.count("\n") != len(lines)
            or text.count("\r") != len(lines)
            or "\0" in text
        ):
            raise h11.LocalProtocolError("CR, LF or NUL in the status or a header")
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise h11.LocalProtocolError(
                f"status or header not latin-1: {exc}"
            ) from None
        self._our = h11.SEND_BODY
        self._out_framing = framing
        self._out_keep_alive = keep_alive
        return data

    def send_data(self, data: bytes) -> bytes:
        """Frame body bytes of the current response. Raises
        ``h11.LocalProtocolError`` past the declared Content-Length."""
        if self._our is not h11.SEND_BODY:
            raise h11.LocalProtocolError(f"cannot send data in {self._our!r}")
        framing = self._out_framing
        if framing >= 0:
            if len(data) > framing:
                raise h11.LocalProtocolError(
                    "more data than the declared Content-Length"
                )
            self._out_framing = framing - len(data)
            return data
        if framing == _CHUNKED:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if framing == _UNTIL_CLOSE:
            return data
        return b""  # _NO_BODY: HEAD, 204, 304

    def end_response(self) -> bytes:
        """End the current response. Raises ``h11.LocalProtocolError`` if fewer bytes
        than the declared Content-Length were sent (the caller then closes)."""
        if self._our is not h11.SEND_BODY:
            raise h11.LocalProtocolError(f"cannot end a response in {self._our!r}")
        if self._out_framing > 0:
            raise h11.LocalProtocolError("less data than the declared Content-Length")
        reusable = self._out_keep_alive and self.their_state is not h11.CLOSED
        self._our = h11.DONE if reusable else h11.MUST_CLOSE
        return b"0\r\n\r\n" if self._out_framing == _CHUNKED else b""

    def send_100_continue(self) -> bytes:
        """``100 Continue`` if the client is still waiting for it, else ``b""``."""
        if not self.they_are_waiting_for_100_continue:
            return b""
        self._continue_sent = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def send_failed(self) -> None:
        """The response could not be sent whole: our side is ERROR (nothing more can
        be sent, and the connection is not reused)."""
        self._our = h11.ERROR

    def start_next_cycle(self) -> None:
        """Both sides are DONE: reset for the next request on this connection
        (``h11.LocalProtocolError`` otherwise). Each request gets a fresh h11
        connection (1.4 µs), so h11 never holds state across messages. The next
        request is parsed from the bytes already buffered, if any."""
        if self._our is not h11.DONE or self.their_state is not h11.DONE:
            raise h11.LocalProtocolError(
                f"cannot start the next cycle in {self._our!r}/{self.their_state!r}"
            )
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        self._our = h11.IDLE
        self._their = None
        self._waiting_100 = False
        self._continue_sent = False
        self._method = None
        self._body = 0
        self._chunk = _SIZE_LINE
        self._line_start = self._lines = self._searched = 0

    def error_response(
        self, status: int, reason: str, retry_after: int | None = None
    ) -> bytes:
        """The complete bytes of a small ``text/plain`` error response that closes
        the connection, or ``b""`` if a response to this request has already begun
        (then the caller just closes). Marks our side of h11 ERROR: nothing more
        can be sent on this connection. ``status`` must be 400-599; ``retry_after``
        (seconds) adds a ``Retry-After`` header (RFC 9110 §10.2.3), for 503s."""
        if not 400 <= status <= 599:
            raise ValueError(f"error status must be 400-599, not {status}")
        if self._our is not h11.IDLE and self._our is not h11.SEND_RESPONSE:
            return b""
        self._our = h11.ERROR
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        text = "".join(
            c if " " <= c <= "~" else "?" for c in reason[:_MAX_REASON_CHARS]
        )
        body = (text + "\n").encode("ascii")
        extra = f"Allow: {_ALLOW}\r\n" if status == 405 else ""
        if retry_after is not None:
            extra += f"Retry-After: {int(retry_after)}\r\n"
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            # RFC 9110 §6.6.1: an origin server with a clock MUST send Date in 4xx.
            f"Date: {http_date()}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        # RFC 9110 §9.3.2: a response to HEAD has no content.
        return head if self._method == b"HEAD" else head + body
