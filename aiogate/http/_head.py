"""Request heads: found in the received bytes, checked line by line, then framed.

Owns: ``HeadReader``, which takes one complete, checked request head at a time out
of the connection's buffer (and checks trailer lines for the chunked reader, by the
same rules); ``check_request_line`` and ``check_framing``, the rules h11 does not
apply or applies leniently. Sans-IO, raises ``ProtocolError``; runs on the event loop
(one reader per connection).

Theory of operation:

1. h11 is lenient in ways that matter for request smuggling (bare LF line ends,
   obs-fold, merged duplicate Content-Length, any ``HTTP/x.y`` version), so it only
   ever parses a head we have accepted.
2. While a head arrives it is scanned line by line. Each line is checked the same
   way whether it arrived whole or one byte at a time, and a line that can no
   longer become valid fails at once; so the outcome never depends on how the bytes
   were split (``tests/test_request_corpus`` checks this at every split point), and
   the memory a head takes is bounded by the limits.
3. A head that arrives whole and is clean takes a fast path of C-level
   ``count``/``find``/``in`` calls instead, with the same outcome.
4. Once the whole head is accepted, its framing fields are checked (RFC 9112 §6):
   ``check_framing`` says how the body ends and whether the connection may be
   reused.
"""

from __future__ import annotations

import re
from typing import Final

from ..environ import absolute_form_authority, check_authority
from ..errors import ProtocolError
from ._syntax import CR, HOST_RE, HTAB, SIMPLE_HOST_RE, SP, TCHAR, error, show

__all__ = ["CHUNKED", "HeadReader", "check_framing", "check_request_line"]

#: The framing of a chunked request body (any other framing is a Content-Length).
CHUNKED: Final = -1
# h11's CONTENT_LENGTH_MAX_DIGITS ("1 billion TB - 1").
_MAX_CONTENT_LENGTH_DIGITS: Final = 20
# RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name being "HTTP"
# (case-sensitive). A version of that shape we do not speak (HTTP/2.0, HTTP/0.9) is
# 505 (RFC 9110 §15.6.6); anything else, "HTTP/1" and "HTTP/2" included, is not a
# version at all but a malformed request line: 400, which is what h11 says of it too
# ("illegal request line"), so the two layers never disagree.
_VERSION_RE: Final = re.compile(rb"HTTP/[0-9]\.[0-9]")
# "#" as an int: ``int in bytes`` is a C-level byte search (22 ns on a 25-byte
# target), where ``b"#" in target`` first tries the needle as an int (210 ns).
_NUMBER_SIGN: Final = 0x23


#: Refusals of a request line that is well formed but asks for what we do not do
#: (CONNECT, another HTTP version): the access log still shows the line.
_WELL_FORMED = frozenset({405, 505})


def check_request_line(line: bytes) -> bytes:
    """Check a complete request line (no CRLF); return its HTTP-version.

    RFC 9112 §3: request-line = method SP request-target SP HTTP-version. h11 checks
    the method and target characters afterwards; this checks what h11 lets through.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        # Also HTTP/0.9's "GET /path", which has no version at all.
        raise error(f"malformed request line: {show(line)}")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if _VERSION_RE.fullmatch(version):
            raise error(f"unsupported HTTP version: {show(version)}", 505)
        raise error(f"malformed HTTP version: {show(version)}")
    if method == b"CONNECT":
        # RFC 9110 §9.3.6: CONNECT asks for a tunnel (authority-form target, RFC 9112
        # §3.2.3), which an origin server for WSGI apps does not provide.
        raise error("CONNECT is not supported", 405)
    if _NUMBER_SIGN in target:
        # RFC 9112 §3.2: no form of request-target has a fragment (a client "MUST
        # NOT" send one, RFC 9110 §4.2.5), and a request line that does not match
        # the grammar "SHOULD" get a 400 (RFC 9112 §3). h11 lets "#" through. We
        # used to strip it, as gunicorn does, but only a broken client or a probe
        # sends one, and a proxy in front may have read the same target differently.
        raise error("fragment in request target")
    first = target[:1]
    if first == b"/":  # origin-form, RFC 9112 §3.2.1
        pass
    elif target == b"*":  # asterisk-form, only for server-wide OPTIONS (§3.2.4)
        if method != b"OPTIONS":
            raise error("the * target is only allowed with OPTIONS")
    else:  # absolute-form, RFC 9112 §3.2.2, with an http(s) URI
        scheme = target[:8].lower()
        if scheme.startswith(b"http://"):
            rest = target[7:]
        elif scheme == b"https://":
            rest = target[8:]
        else:
            raise error(f"malformed request target: {show(target)}")
        # RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected.
        if not rest or rest[:1] in (b"/", b"?", b"#"):
            raise error(f"request target has no host: {show(target)}")
        # RFC 9112 §3.2.2: this authority replaces Host (environ makes it HTTP_HOST
        # and SERVER_NAME), so it must pass the Host check too, without userinfo.
        authority = absolute_form_authority(target)
        if authority is None or not check_authority(authority):
            raise error(f"invalid host in request target: {show(target)}")
    return version


def _field_value(low_head: bytes, key: bytes) -> bytes:
    """The value of the field line starting with ``key`` (``b"\\nname:"``), without
    OWS (RFC 9110 §5.5). ``low_head`` is a clean, lower-cased head."""
    start = low_head.find(key) + len(key)
    return low_head[start : low_head.find(b"\r", start)].strip(b" \t")


def check_framing(head: bytes, http11: bool) -> tuple[int, bool]:
    """Check the fields of a clean head that decide where the message ends.

    Returns the body framing (a Content-Length, or ``CHUNKED``) and whether the
    connection may be reused after this request (HTTP/1.1 without
    ``Connection: close``, h11's rule; HTTP/1.0 with ``Connection: keep-alive``,
    ``_state`` rule 9, which h11 does not have). Every search is a
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
            raise error("both Content-Length and Transfer-Encoding")
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing
        # is faulty, even if a Content-Length is present.
        if not http11:
            raise error("Transfer-Encoding in an HTTP/1.0 request")
        # RFC 9112 §6.1 and §7: we only implement chunked, exactly once (coding
        # names are case-insensitive). RFC 9110 §15.6.2: otherwise 501, which is
        # also h11's hint.
        if te_count > 1 or _field_value(low, b"\ntransfer-encoding:") != b"chunked":
            raise error("only Transfer-Encoding: chunked is supported", 501)
        framing = CHUNKED
    elif cl_count:
        # RFC 9110 §8.6: Content-Length = 1*DIGIT. A list or a repeated field, even
        # with identical values, is refused: h11 would merge them, and some other
        # parser in the path might not (RFC 9112 §6.3 rule 5 allows rejecting).
        if cl_count > 1:
            raise error("more than one Content-Length")
        value = _field_value(low, b"\ncontent-length:")
        if not value.isdigit() or len(value) > _MAX_CONTENT_LENGTH_DIGITS:
            raise error(f"invalid Content-Length: {show(value)}")
        framing = int(value)
    # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for more than one
    # Host field line, and for an invalid Host value (h11 checks the first two).
    host_count = low.count(b"\nhost:")
    if host_count > 1:
        raise error("more than one Host")
    if host_count == 0:
        if http11:
            raise error("missing Host")
    else:
        host = _field_value(low, b"\nhost:")
        if not SIMPLE_HOST_RE.fullmatch(host) and not HOST_RE.fullmatch(host):
            raise error(f"invalid Host: {show(host)}")
    keep_alive = http11
    if keep_alive and b"\nconnection:" in low:
        if b"close" in _connection_tokens(low):
            keep_alive = False
    elif not http11 and b"\nconnection:" in low:
        # ``_state`` rule 9: HTTP/1.0 keep-alive, asked for with a token (RFC 9112
        # §9.3 and appendix C.2.2; RFC 2068 §19.7.1), unless a close says otherwise.
        tokens = _connection_tokens(low)
        keep_alive = b"keep-alive" in tokens and b"close" not in tokens
    return framing, keep_alive


def _connection_tokens(low: bytes) -> list[bytes]:
    """The tokens of every ``Connection`` field line of a clean, lower-cased head."""
    tokens: list[bytes] = []
    start = 0
    while (start := low.find(b"\nconnection:", start) + 1) > 0:
        value = _field_value(low[start - 1 :], b"\nconnection:")
        tokens.extend(token.strip(b" \t") for token in value.split(b","))
    return tokens


class HeadReader:
    """Takes checked request heads out of a connection's buffer, one at a time.

    ``check_line`` is also how the chunked reader checks trailer lines: the same
    limits and the same order of failures as for head fields.
    """

    __slots__ = (
        "_line_start",
        "_lines",
        "_searched",
        "limit_field",
        "limit_fields",
        "limit_line",
        "request_line",
        "version",
    )

    def __init__(self, limit_line: int, limit_fields: int, limit_field: int) -> None:
        self.limit_line = limit_line
        self.limit_fields = limit_fields
        self.limit_field = limit_field
        # Offset in the buffer of the first unchecked line, and how many lines of
        # this head are already checked.
        self._line_start = 0
        self._lines = 0
        self._searched = 0  # fast path: buf[:_searched] has no CRLFCRLF
        #: The HTTP-version of the last request line checked.
        self.version = b""
        #: The current head's request line once checked, else b"": what the access
        #: log shows of a head refused or timed out after its first line.
        self.request_line = b""

    def take_head(self, buf: bytearray) -> bytes | None:
        """Remove and return the next complete, checked head from ``buf``, or None
        while it is still arriving. Raises ``ProtocolError`` as soon as it cannot
        become valid."""
        if self._lines == 0:
            self.request_line = b""  # a new head: its line is not checked yet
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
            # received before the request line. We ignore any number of them.
            if buf.startswith(b"\r\n"):
                skip = 2
                while buf.startswith(b"\r\n", skip):
                    skip += 2
                del buf[:skip]
                self._searched = 0
            if len(buf) < 2:
                if buf and buf[0] != CR and buf[0] not in TCHAR:
                    raise error(f"request does not start with a method: {show(buf)}")
                return None
            end = buf.find(b"\r\n\r\n", max(self._searched - 3, 0))
            if end == -1:
                self._searched = len(buf)
            else:
                head = self._take_clean_head(buf, end + 4)
                if head is not None:
                    return head
        return self._scan_head(buf)

    def _take_clean_head(self, buf: bytearray, size: int) -> bytes | None:
        """Fast path (rule 3): the whole head ``buf[:size]`` arrived at once.

        If it is clean (only CRLF line ends, no bare CR or LF, no obs-fold) the only
        line errors left are the first byte, the limits and the request-line syntax,
        which we check in the order ``check_line`` would. Otherwise return None and
        let ``_scan_head`` find the first bad line. Measured on a 6-field GET: ~2.4 µs
        here plus ~1 µs in ``check_framing``, against ~36 µs for h11's own
        request/response cycle (the line-by-line path costs about twice as much).
        """
        head = bytes(buf) if size == len(buf) else bytes(buf[:size])
        lines = head.count(b"\r\n")
        if (
            head.count(b"\n") != lines
            or head.count(b"\r") != lines
            or b"\n " in head
            or b"\n\t" in head
        ):
            return None
        if head[0] not in TCHAR:
            raise error(f"request does not start with a method: {show(head)}")
        line_end = head.find(b"\r\n")
        if line_end > self.limit_line:
            raise error("request line too long", 414)
        self._take_request_line(head[:line_end])
        if lines - 2 > self.limit_fields:
            raise error("too many header fields", 431)
        fields_end = size - 4  # the CRLF that ends the last field line
        if (
            fields_end - line_end - 2 > self.limit_field
            and max(map(len, head[line_end + 2 : fields_end].split(b"\r\n")))
            > self.limit_field
        ):
            raise error("field line too long", 431)
        if size == len(buf):
            buf.clear()
        else:
            del buf[:size]
        self._searched = 0
        return head

    def _take_request_line(self, line: bytes) -> None:
        """Check the request line (``check_request_line``) and keep it for the access
        log; a well-formed one refused (405, 505) is kept too."""
        try:
            self.version = check_request_line(line)
        except ProtocolError as exc:
            if exc.status_hint in _WELL_FORMED:
                self.request_line = line
            raise
        self.request_line = line

    def _scan_head(self, buf: bytearray) -> bytes | None:
        """Slow path (rule 2): check the head line by line as it arrives."""
        start = self._line_start
        index = self._lines
        while True:
            newline = buf.find(b"\n", start)
            if newline == -1:
                self.check_line(buf, start, len(buf), index, complete=False)
                self._line_start = start
                self._lines = index
                return None
            self.check_line(buf, start, newline, index, complete=True)
            if index and newline - start == 1:  # the empty line that ends the head
                head = bytes(buf[: newline + 1])
                del buf[: newline + 1]
                self._line_start = self._lines = self._searched = 0
                return head
            index += 1
            start = newline + 1

    def check_line(
        self, buf: bytearray, start: int, end: int, index: int, *, complete: bool
    ) -> None:
        """Check line ``index`` of a head or trailer section, ``buf[start:end]``.

        ``end`` is the LF (not included) when ``complete``; otherwise the line is
        still arriving and we fail as soon as no continuation can make it valid.
        Index 0 is the request line (index 0 never occurs for trailers).

        The checks run in the order their failures become visible while bytes arrive
        (first byte: method, field count, obs-fold; then a CR not before LF within
        the limit; then the length; then the line end), so a line fails with the
        same status however it was split.
        """
        size = end - start
        if size == 0 and not complete:
            return
        first = buf[start] if size else 10
        if index == 0:
            limit, too_long = self.limit_line, 414
            if first not in TCHAR:
                raise error(f"request does not start with a method: {show(buf)}")
        else:
            limit, too_long = self.limit_field, 431
            # Past the last allowed field only the empty line may come; a line that
            # is not CRLF can never end within the limit (RFC 9110 §15.5.20 for 431).
            if index > self.limit_fields and not (
                size == 0 or (size == 1 and first == CR)
            ):
                raise error("too many header fields", 431)
            # RFC 9112 §5.2: a server MUST reject obs-fold in a request (other than
            # message/http) with 400; h11 would unfold it.
            if first in (SP, HTAB):
                raise error("obsolete line folding (obs-fold) is not allowed")
        # A CR that is not the last byte (seen so far, or before the LF) is not part
        # of a CRLF. RFC 9112 §2.2: a bare CR MUST be treated as invalid (or replaced
        # by SP). Only the first ``limit`` bytes count: a later CR makes the line too
        # long before it can be seen to be bare.
        ends_with_cr = size > 0 and buf[end - 1] == CR
        if complete:
            content_end = end - 1 if ends_with_cr else end
            too_long_now = content_end - start > limit
        else:
            # The last byte may be the CR of the CRLF still to come.
            content_end = end - 1
            too_long_now = size > limit + 1 or (size == limit + 1 and not ends_with_cr)
        if buf.find(b"\r", start, min(content_end, start + limit)) != -1:
            raise error("bare CR (a CR not followed by LF) in the head or trailers")
        if too_long_now:
            raise error(
                "request line too long" if index == 0 else "field line too long",
                too_long,
            )
        if not complete:
            return
        # RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; we do not,
        # because a proxy in front may not (the "bare LF" smuggling vectors).
        if not ends_with_cr:
            raise error("line ends with a bare LF")
        if index == 0:
            self._take_request_line(bytes(buf[start:content_end]))
