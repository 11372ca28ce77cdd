"""Property-based fuzzing of the request parser policy and the environ builder.

``aiogate.http.ServerConnection`` stands between the network and h11: it must turn
*any* byte stream, however split into ``receive_data`` calls, into h11 events or one
``ProtocolError``, and it must never let a request hide inside another one (request
smuggling). ``aiogate.environ.build_environ`` must turn any request it lets through
into a PEP 3333 environ without raising. Hand-written tables (``test_http.py``,
``test_environ.py``) and the raw corpus (``test_request_corpus.py``) check the known
cases; this module throws generated and mutated requests at both and checks:

- **Termination.** Every input, whole or split at arbitrary points, then EOF, ends in
  a close or a ``ProtocolError`` whose ``status_hint`` is one we document; only h11's
  request-side events come out; no other exception escapes; ``next_event`` is called
  a bounded number of times. The ``error_response`` for a rejection parses, with h11
  on the client side, as one complete response with that status and
  ``Connection: close``.
- **Split invariance.** The same bytes split differently give the same requests,
  bodies, trailers and verdict.
- **No smuggling.** For request A (mutated corpus files, or generated with odd
  framing) followed by request B, every request the parser reports agrees with
  ``strict_reading``, a small RFC 9112 reader over the same bytes: the same heads,
  bodies and trailers, message boundaries in the same places, so B is seen exactly as
  generated or not at all. Rejecting is always allowed; accepting something the
  strict reading rejects, or framing it differently, is not.
- **Environ.** For every request the parser accepts, ``build_environ`` returns only
  native strings, ``PATH_INFO`` is the latin-1 form of the percent-decoded path,
  ``QUERY_STRING`` is undecoded, header names with ``_`` are dropped, repeated fields
  are joined, and ``SERVER_NAME``/``SERVER_PORT`` follow the Host (or the
  absolute-form authority).

The generators (corpus mutations, the framing grammar, the environ cases) are in
``tests/strategies.py``; ``strict_reading``, the reference, is here, next to the
properties that trust it. ``test_strict_reading_of_the_valid_corpus`` and
``test_well_formed_pipelines_parse_exactly`` check the reference itself.

With the ``CI`` environment variable set every property runs a fixed, derandomized
set of examples. Locally the examples are random (and failures are replayed from
Hypothesis' database); ``AIOGATE_FUZZ_SCALE=20`` runs twenty times as many.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_to_bytes

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aiogate._types import ConnectionInfo
from aiogate.environ import build_environ
from aiogate.errors import ProtocolError
from aiogate.http import ServerConnection, State
from tests.strategies import (
    CORPUS,
    CUTS,
    LIMITS,
    MUTATIONS,
    NEXT_REQUESTS,
    EnvironCase,
    Head,
    Limits,
    Message,
    environ_cases,
    framed_request,
    mutate,
    mutated_corpus,
    next_request,
)

# -- settings --------------------------------------------------------------------------

_IN_CI = bool(os.environ.get("CI"))
_SCALE = float(os.environ.get("AIOGATE_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings for one property: fixed examples in CI, random locally."""
    options: dict[str, Any] = {}
    if _IN_CI:
        options["database"] = None
    return settings(
        max_examples=max(1, round(max_examples * _SCALE)),
        derandomize=_IN_CI,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **options,
    )


# -- driving ServerConnection ----------------------------------------------------------

#: The statuses ``ServerConnection`` rejects with (aiogate/http and h11's hints):
#: 400 malformed, 405 CONNECT, 414 request line, 431 fields, 501 Transfer-Encoding,
#: 505 HTTP version. (No 413: aiogate sets no body size limit.)
REJECTION_STATUSES = frozenset({400, 405, 414, 431, 501, 505})

TCP = ConnectionInfo(server=("127.0.0.1", 8000), client=("10.0.0.7", 51234))


@dataclass
class Trace:
    """Everything one run of ``ServerConnection`` reported."""

    messages: list[Message] = field(default_factory=list)
    #: ``rejected`` (ProtocolError), ``closed`` (ConnectionClosed after EOF) or
    #: ``must_close`` (we answered a request that ends the connection).
    end: str = ""
    status: int | None = None

    def outcome(self) -> tuple[object, ...]:
        return (
            [(m.head, m.body, m.trailers) for m in self.messages],
            self.end,
            self.status,
        )


def head_of(request: h11.Request) -> Head:
    return (
        bytes(request.method),
        bytes(request.target),
        bytes(request.http_version),
        tuple((bytes(n), bytes(v)) for n, v in request.headers),
    )


def respond(conn: ServerConnection) -> None:
    conn.start_response("200 OK", [("Content-Length", "0")])
    conn.end_response()


def drive(
    pieces: list[bytes], *, respond_early: bool = False, limits: Limits | None = None
) -> Trace:
    """Feed ``pieces`` to a fresh ``ServerConnection`` one at a time, then EOF, taking
    every event after each, the way ``protocol.H11Protocol`` does: answer each
    request (at its ``Request`` event if ``respond_early``, else at its end), start
    the next cycle when both sides are done, stop when the server would close.

    Asserts the invariants every input must keep (allowed events only, bounded
    work, a verdict after EOF, a valid ``error_response``) and returns the trace.
    """
    assert all(pieces), "b'' would be EOF"
    conn = ServerConnection(**(limits or {}))
    trace = Trace()
    current: Message | None = None  # the request whose cycle is running
    responded = False
    # Each next_event either consumes input, ends a message, or returns NEED_DATA:
    # a loop that does none of these is a hang.
    budget = 4 * sum(map(len, pieces)) + 8 * len(pieces) + 64
    feed = [*pieces, b""]
    for index, piece in enumerate(feed):
        conn.receive_data(piece)
        while True:
            budget -= 1
            assert budget >= 0, "next_event does not make progress"
            try:
                ev = conn.next_event()
            except ProtocolError as exc:
                method = current.head[0] if current and not current.complete else None
                check_rejection(conn, exc, method, responded)
                trace.end, trace.status = "rejected", exc.status_hint
                return trace
            if ev is h11.NEED_DATA:
                # After EOF there is always a verdict: nothing more can arrive.
                assert piece, "NEED_DATA after EOF"
                break
            if ev is h11.PAUSED:
                # We answer every request at once and start the next cycle when both
                # sides are done, so only a connection that must close stays paused.
                assert conn.our_state is State.MUST_CLOSE, (
                    "PAUSED with nothing to wait for"
                )
                trace.end = "must_close"
                return trace
            kind = type(ev)
            if kind is h11.Request:
                assert current is None or current.complete, "Request inside a request"
                current = Message(head_of(ev))
                trace.messages.append(current)
                responded = False
                if respond_early:  # an app that answers without reading the body
                    respond(conn)
                    responded = True
                    if conn.our_state is State.MUST_CLOSE:
                        trace.end = "must_close"  # the server closes at once
                        return trace
            elif kind is h11.Data:
                assert current is not None, "Data before a request"
                assert not current.complete, "Data after the end of a request"
                current.body += bytes(ev.data)
            elif kind is h11.EndOfMessage:
                assert current is not None, "EndOfMessage before a request"
                assert not current.complete, "EndOfMessage twice"
                current.trailers = tuple((bytes(n), bytes(v)) for n, v in ev.headers)
                if not responded:
                    respond(conn)
                    responded = True
                if conn.our_state is State.DONE and conn.their_state is State.DONE:
                    conn.start_next_cycle()
                    responded = False
                else:
                    assert conn.our_state is State.MUST_CLOSE
                    check_never_parsed(conn, feed[index + 1 :])
                    trace.end = "must_close"
                    return trace
            elif kind is h11.ConnectionClosed:
                assert not piece, "ConnectionClosed before EOF"
                assert current is None or current.complete, "closed inside a request"
                trace.end = "closed"
                return trace
            else:
                pytest.fail(f"unexpected event {ev!r}")
    pytest.fail("unreachable: the EOF round always ends the trace")


def check_never_parsed(conn: ServerConnection, rest: list[bytes]) -> None:
    """After a request that closes the connection, bytes behind it stay unparsed."""
    for piece in rest:
        conn.receive_data(piece)
        for _ in range(3):
            ev = conn.next_event()
            assert (
                ev is h11.PAUSED
                or ev is h11.NEED_DATA
                or type(ev) is h11.ConnectionClosed
            )


def check_rejection(
    conn: ServerConnection, exc: ProtocolError, method: bytes | None, responded: bool
) -> None:
    """A rejection: a documented status, a dead connection, a valid error response."""
    assert exc.status_hint in REJECTION_STATUSES, (exc.status_hint, str(exc))
    assert conn.their_state is State.ERROR
    # Nothing after a rejection is ever parsed: next_event keeps raising.
    for _ in range(2):
        with pytest.raises(ProtocolError) as again:
            conn.next_event()
        assert again.value.status_hint == exc.status_hint
    data = conn.error_response(exc.status_hint, str(exc))
    if responded:  # our answer already went out: the caller just closes
        assert data == b""
    else:
        check_error_response(data, exc.status_hint, method or b"GET")


def check_error_response(data: bytes, status: int, method: bytes) -> None:
    """``data`` is exactly one response to ``method`` as h11 reads it: ``status``,
    ``Connection: close``, complete, with nothing after it."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    events: list[Any] = []
    while not events or type(events[-1]) is not h11.ConnectionClosed:
        assert len(events) < 8, events
        events.append(client.next_event())
    response, *body_events, end, _closed = events
    assert type(response) is h11.Response, events
    assert response.status_code == status
    assert b"close" in [v for n, v in response.headers if n == b"connection"]
    if status == 405:  # RFC 9110 §15.5.6: a 405 carries Allow
        assert any(n == b"allow" for n, _ in response.headers)
    assert all(type(e) is h11.Data for e in body_events), events
    body = b"".join(bytes(e.data) for e in body_events)
    if method == b"HEAD":  # no content (RFC 9110 §9.3.2)
        assert body == b""
    else:
        assert body.endswith(b"\n"), body
        assert body.isascii(), body
    assert type(end) is h11.EndOfMessage


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at ``cuts`` (taken modulo its length), no empty pieces."""
    points = sorted({c % len(data) for c in cuts} - {0}) if data else []
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- the strict reference reading (RFC 9112) -------------------------------------------

_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_HEXDIG = frozenset(b"0123456789abcdefABCDEF")
_OWS = b" \t"


def _is_token(data: bytes) -> bool:
    """RFC 9110 §5.6.2: token = 1*tchar."""
    return bool(data) and all(c in _TCHAR for c in data)


@dataclass
class Reading:
    """What ``strict_reading`` found: the messages with a valid head, in order (the
    last may be incomplete or have a bad body, then ``trailers is None`` and ``body``
    holds the body bytes before the problem), and why it stopped."""

    messages: list[Message]
    #: ``end`` (all bytes read), ``close`` (a message ends the connection),
    #: ``invalid`` or ``incomplete``.
    stop: str
    #: Where each message started (after any leading empty lines).
    starts: list[int]


class _Stop(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


def _lines(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The lines from ``pos`` up to and including an empty line; each must end in
    CRLF. RFC 9112 §2.2: a bare CR is invalid, and we take no bare LF as a line end
    (the leniency §2.2 allows is exactly what smuggling exploits)."""
    lines: list[bytes] = []
    while True:
        end = data.find(b"\r\n", pos)
        if end == -1:
            rest = data[pos:].removesuffix(b"\r")  # a CR at the very end may be a CRLF
            raise _Stop("invalid" if b"\r" in rest or b"\n" in rest else "incomplete")
        line = data[pos:end]
        if b"\r" in line or b"\n" in line:
            raise _Stop("invalid")
        pos = end + 2
        if not line:
            return lines, pos
        lines.append(line)


def _field(line: bytes) -> tuple[bytes, bytes]:
    """RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, with no
    whitespace before the colon (§5.1); a line starting with whitespace is obs-fold
    (§5.2), which a server must reject. The value is anything else."""
    name, colon, value = line.partition(b":")
    if not colon or not _is_token(name):
        raise _Stop("invalid")
    return name.lower(), value.strip(_OWS)


def _chunk_ext_is_valid(ext: bytes) -> bool:
    """RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name
    [ BWS "=" BWS chunk-ext-val ] ), name a token, value a token or a
    quoted-string (RFC 9110 §5.6.4). Scanned by hand, byte by byte."""
    n = len(ext)

    def skip_ws(i: int) -> int:
        while i < n and ext[i] in _OWS:
            i += 1
        return i

    def token_end(i: int) -> int:
        while i < n and ext[i] in _TCHAR:
            i += 1
        return i

    def quoted_end(i: int) -> int:  # ext[i] is the opening DQUOTE; -1 if invalid
        i += 1
        while i < n:
            c = ext[i]
            if c == 0x22:  # closing DQUOTE
                return i + 1
            if c == 0x5C:  # quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                if (
                    i + 1 >= n
                    or not (ext[i + 1] in _OWS or ext[i + 1] >= 0x21)
                    or ext[i + 1] == 0x7F
                ):
                    return -1
                i += 2
            elif c in _OWS or c == 0x21 or 0x23 <= c <= 0x7E or c >= 0x80:  # qdtext
                i += 1
            else:
                return -1
        return -1

    i = 0
    while i < n:
        i = skip_ws(i)
        if i >= n or ext[i] != 0x3B:  # ";"
            return False
        i = skip_ws(i + 1)
        name_end = token_end(i)
        if name_end == i:
            return False
        i = name_end
        after = skip_ws(i)
        if after < n and ext[after] == 0x3D:  # "="
            i = skip_ws(after + 1)
            if i < n and ext[i] == 0x22:
                i = quoted_end(i)
                if i == -1:
                    return False
            else:
                value_end = token_end(i)
                if value_end == i:
                    return False
                i = value_end
    return True


def _framing(version: bytes, fields: list[tuple[bytes, bytes]]) -> int | None:
    """RFC 9112 §6.3: the body length of a request (None for chunked), or _Stop."""
    lengths = [v for n, v in fields if n == b"content-length"]
    codings_fields = [v for n, v in fields if n == b"transfer-encoding"]
    if codings_fields:
        # §6.1: Content-Length with Transfer-Encoding is the CL.TE/TE.CL smuggle;
        # a server may reject it (we require that), and must close either way.
        if lengths:
            raise _Stop("invalid")
        # §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        if version == b"HTTP/1.0":
            raise _Stop("invalid")
        # §6.3 rule 4 and §7: we know only chunked, applied once, last. Empty list
        # elements do not count (RFC 9110 §5.6.1).
        codings = [c.strip(_OWS).lower() for v in codings_fields for c in v.split(b",")]
        if [c for c in codings if c] != [b"chunked"]:
            raise _Stop("invalid")
        return None
    if lengths:
        # §6.3 rule 5 (RFC 9110 §8.6: Content-Length = 1*DIGIT): one field, digits.
        if (
            len(lengths) != 1
            or not lengths[0]
            or not all(0x30 <= c <= 0x39 for c in lengths[0])
        ):
            raise _Stop("invalid")
        return int(lengths[0])
    return 0  # §6.3 rule 6: a request with neither has no body


def _keeps_alive(version: bytes, fields: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9112 §9.3: HTTP/1.1 persists unless a Connection field says close;
    HTTP/1.0 persists only when one says keep-alive (appendix C.2.2) and none says
    close (aiogate's http/_state.py rule 9; h11 itself closes every 1.0 one)."""
    tokens = {
        t.strip(_OWS).lower()
        for n, v in fields
        if n == b"connection"
        for t in v.split(b",")
    }
    if b"close" in tokens:
        return False
    return version == b"HTTP/1.1" or b"keep-alive" in tokens


def _read_chunked(data: bytes, pos: int, message: Message) -> int:
    """RFC 9112 §7.1: read a chunked body into ``message``; return where it ends."""
    body = bytearray()
    try:
        while True:
            # chunk-size [ chunk-ext ] CRLF
            line_end = data.find(b"\r\n", pos)
            if line_end == -1:
                rest = data[pos:].removesuffix(b"\r")
                raise _Stop(
                    "invalid" if b"\r" in rest or b"\n" in rest else "incomplete"
                )
            line = data[pos:line_end]
            if b"\r" in line or b"\n" in line:  # §7.1.1: no bare CR or LF in the line
                raise _Stop("invalid")
            digits = len(line) - len(line.lstrip(bytes(_HEXDIG)))
            if digits == 0 or not _chunk_ext_is_valid(line[digits:]):
                raise _Stop("invalid")
            size = int(line[:digits], 16)
            pos = line_end + 2
            if size == 0:  # last-chunk
                break
            # chunk-data CRLF
            chunk = data[pos : pos + size]
            body += chunk
            if len(chunk) < size:
                raise _Stop("incomplete")
            pos += size
            after = data[pos : pos + 2]
            if after != b"\r\n":
                raise _Stop("incomplete" if b"\r\n".startswith(after) else "invalid")
            pos += 2
        # §7.1.2: trailer-section = *( field-line CRLF ), then CRLF
        lines, pos = _lines(data, pos)
        trailers = []
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                raise _Stop("invalid")
            trailers.append(_field(line))
    finally:
        message.body = bytes(body)
    message.trailers = tuple(trailers)
    return pos


def strict_reading(data: bytes) -> Reading:
    """Read ``data`` as a sequence of pipelined requests, strictly per RFC 9112, up
    to the first message that is invalid, incomplete or ends the connection.

    Limits (line length, field count) and checks that do not move message
    boundaries (method and target characters, Host, field value bytes) are left to
    the parser: it may reject more than this reading, never less.
    """
    messages: list[Message] = []
    starts: list[int] = []
    pos = 0
    while True:
        # §2.2: a server SHOULD ignore empty lines (CRLF) before a request line.
        while data.startswith(b"\r\n", pos):
            pos += 2
        if pos == len(data):
            return Reading(messages, "end", starts)
        start = pos
        try:
            lines, pos = _lines(data, pos)
            # §3: request-line = method SP request-target SP HTTP-version
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not all(parts):
                raise _Stop("invalid")
            method, target, version = parts
            if version not in (b"HTTP/1.1", b"HTTP/1.0"):  # §2.3: case-sensitive
                raise _Stop("invalid")
            fields = []
            for line in lines[1:]:
                if line[:1] in (b" ", b"\t"):  # §2.2, §5.2: whitespace-preceded line
                    raise _Stop("invalid")
                fields.append(_field(line))
            length = _framing(version, fields)
        except _Stop as stop:
            return Reading(messages, stop.why, starts)
        message = Message((method, target, version[5:], tuple(fields)))
        messages.append(message)
        starts.append(start)
        try:
            if length is None:
                pos = _read_chunked(data, pos, message)
            else:
                message.body = data[pos : pos + length]
                if len(message.body) < length:
                    raise _Stop("incomplete")
                message.trailers = ()
                pos += length
        except _Stop as stop:
            return Reading(messages, stop.why, starts)
        if not _keeps_alive(version, fields):
            return Reading(messages, "close", starts)


def as_h11_reports(
    fields: tuple[tuple[bytes, bytes], ...],
) -> tuple[tuple[bytes, bytes], ...]:
    """Fields as h11 reports them: Transfer-Encoding lowercased, a Content-Length
    list of one repeated value as that value (h11 ``normalize_and_validate``)."""
    out = []
    for name, value in fields:
        if name == b"transfer-encoding":
            value = value.lower()
        elif name == b"content-length":
            values = {v.strip() for v in value.split(b",")}
            if len(values) == 1:
                value = values.pop()
        out.append((name, value))
    return tuple(out)


def normalized(message: Message) -> Message:
    method, target, version, fields = message.head
    trailers = message.trailers
    return replace(
        message,
        head=(method, target, version, as_h11_reports(fields)),
        trailers=None if trailers is None else as_h11_reports(trailers),
    )


def check_agrees(trace: Trace, reading: Reading) -> None:
    """Every request the parser reported is the strict reading's, in the same place:
    same head, same body (so far), same trailers. The parser may stop earlier
    (reject, or close), never read on past the strict reading."""
    for index, got in enumerate(trace.messages):
        assert index < len(reading.messages), (
            f"the parser read request #{index + 1}, the strict reading stops after "
            f"{len(reading.messages)} ({reading.stop}): {got.head!r}"
        )
        want = normalized(reading.messages[index])
        assert got.head == want.head, f"request #{index + 1} head"
        if got.complete:
            assert want.complete, (
                f"the parser completed request #{index + 1}; the strict reading finds "
                f"its body {reading.stop}: {want.body!r}"
            )
            assert got.body == want.body, f"request #{index + 1} body"
            assert got.trailers == want.trailers, f"request #{index + 1} trailers"
        else:
            assert want.body.startswith(got.body), f"request #{index + 1} partial body"


def check_no_smuggling(
    a: bytes, b_index: int, cuts: list[int], respond_early: bool
) -> Trace:
    """Drive A + B, compare with the strict reading; if the strict reading ends A
    exactly where B begins, the parser's second request is B as generated."""
    b, b_message = NEXT_REQUESTS[b_index]
    stream = a + b
    trace = drive(cut(stream, cuts), respond_early=respond_early)
    reading = strict_reading(stream)
    check_agrees(trace, reading)
    # Where the strict reading ends A exactly where B's request line starts, the
    # parser's second request is B as generated (check_agrees checked that it is the
    # strict reading's second request; this checks the reading against B too).
    b_line = b.lstrip(b"\r\n")
    if (
        len(trace.messages) > 1
        and len(reading.starts) > 1
        and stream[reading.starts[1] :] == b_line
    ):
        second = trace.messages[1]
        event("B checked against the generator")
        assert second.head == b_message.head
        if second.complete:
            assert (second.body, second.trailers) == (
                b_message.body,
                b_message.trailers,
            )
    accepted = bool(trace.messages) and trace.messages[0].complete
    event(
        f"A {'accepted' if accepted else 'rejected' if trace.status else 'unfinished'}"
    )
    event(f"strict reading: {len(reading.messages)} message(s), {reading.stop}")
    return trace


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """RFC 9112 §3.2 and RFC 3986 §3: the path and query of a request-target (a
    ``#fragment``, not valid there, is cut off as ``urlsplit`` does)."""
    target = target.partition(b"#")[0]
    if target == b"*":
        return b"*", b""
    if not target.startswith(b"/"):  # absolute-form: skip scheme://authority
        rest = target.partition(b"://")[2]
        ends = [i for i in (rest.find(b"/"), rest.find(b"?")) if i != -1]
        rest = rest[min(ends) :] if ends else b""
        path, _, query = rest.partition(b"?")
        return path or b"/", query
    path, _, query = target.partition(b"?")
    return path, query


def check_environ(
    environ: dict[str, Any], request: h11.Request, root_path: str
) -> None:
    """What holds for the environ of any request: native strings, the decoded path,
    the raw query, the request line."""
    assert all(type(k) is str and type(v) is str for k, v in environ.items()), environ
    target = bytes(request.target)
    path, query = split_target(target)
    decoded = unquote_to_bytes(path).decode("latin-1")
    assert environ["SCRIPT_NAME"] == root_path
    if root_path and (decoded == root_path or decoded.startswith(root_path + "/")):
        assert environ["PATH_INFO"] == decoded[len(root_path) :]
    else:
        assert environ["PATH_INFO"] == decoded
        # PEP 3333 round trip: the app gets the decoded bytes back exactly.
        assert environ["PATH_INFO"].encode("latin-1") == unquote_to_bytes(path)
    assert environ["QUERY_STRING"] == query.decode("latin-1")
    assert environ["RAW_URI"] == environ["REQUEST_URI"] == target.decode("latin-1")
    assert environ["REQUEST_METHOD"] == request.method.decode("latin-1")
    assert environ["SERVER_PROTOCOL"] == "HTTP/" + request.http_version.decode()
    port = environ["SERVER_PORT"]
    assert port.isascii(), port
    assert port.isdigit(), port
    assert int(port) <= 65535, port
    assert environ["SERVER_NAME"]


def expected_cgi_fields(fields: list[tuple[str, str]]) -> dict[str, str]:
    """PEP 3333 / RFC 3875 §4.1.18 header variables for ``fields`` as sent: names
    with ``_`` dropped, repeats joined with "," (Cookie with "; ", RFC 6265 §5.4)."""
    out: dict[str, str] = {}
    for name, value in fields:
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        separator = "; " if key == "HTTP_COOKIE" else ","
        out[key] = out[key] + separator + value if key in out else value
    return out


def first_request(data: bytes) -> h11.Request | None:
    """The first request ``ServerConnection`` accepts from ``data`` (then EOF)."""
    conn = ServerConnection()
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        ev = conn.next_event()
    except ProtocolError:
        return None
    return ev if type(ev) is h11.Request else None


# -- properties ------------------------------------------------------------------------


@fuzz(400)
@given(data=mutated_corpus(), cuts=CUTS, respond_early=st.booleans(), limits=LIMITS)
def test_any_input_ends_in_a_response_or_a_close(
    data: bytes, cuts: list[int], respond_early: bool, limits: Limits
) -> None:
    """Mutated corpus requests, whole and split, then EOF: events or one rejection
    with a documented status and a valid error response (checked in ``drive``)."""
    for pieces in ([data], cut(data, cuts)):
        if data:
            trace = drive(pieces, respond_early=respond_early, limits=limits)
            event(trace.end if trace.status is None else f"rejected {trace.status}")


@fuzz(300)
@given(
    data=st.one_of(
        mutated_corpus(),
        framed_request(odd=True).map(lambda r: r[0]),
        st.binary(min_size=1, max_size=64),
    ),
    cuts=CUTS,
    respond_early=st.booleans(),
    limits=LIMITS,
)
def test_split_points_do_not_change_the_outcome(
    data: bytes, cuts: list[int], respond_early: bool, limits: Limits
) -> None:
    """Same bytes, different ``receive_data`` boundaries: the same requests, bodies
    (concatenated), trailers and verdict."""
    if not data:
        return
    whole = drive([data], respond_early=respond_early, limits=limits).outcome()
    split = drive(cut(data, cuts), respond_early=respond_early, limits=limits)
    assert split.outcome() == whole
    if len(data) <= 1024:
        bytewise = [data[i : i + 1] for i in range(len(data))]
        again = drive(bytewise, respond_early=respond_early, limits=limits)
        assert again.outcome() == whole


@fuzz(400)
@given(
    a=mutated_corpus(),
    b_index=next_request,
    cuts=CUTS,
    respond_early=st.booleans(),
)
def test_no_smuggling_behind_a_mutated_corpus_request(
    a: bytes, b_index: int, cuts: list[int], respond_early: bool
) -> None:
    check_no_smuggling(a, b_index, cuts, respond_early)


@fuzz(600)
@given(
    a=framed_request(odd=True),
    mutations=st.lists(MUTATIONS, max_size=2),
    b_index=next_request,
    cuts=CUTS,
    respond_early=st.booleans(),
)
def test_no_smuggling_with_odd_framing(
    a: tuple[bytes, Message],
    mutations: list[tuple[str, int, Any]],
    b_index: int,
    cuts: list[int],
    respond_early: bool,
) -> None:
    data = a[0]
    for mutation in mutations:
        data = mutate(data, mutation)
    check_no_smuggling(data, b_index, cuts, respond_early)


@fuzz(200)
@given(
    a=framed_request(odd=False),
    b_index=next_request,
    cuts=CUTS,
    respond_early=st.booleans(),
)
def test_well_formed_pipelines_parse_exactly(
    a: tuple[bytes, Message], b_index: int, cuts: list[int], respond_early: bool
) -> None:
    """The control for the smuggling properties: well-formed A + B are read by the
    strict reading exactly as generated, and the parser accepts both and agrees."""
    data, a_message = a
    b, b_message = NEXT_REQUESTS[b_index]
    reading = strict_reading(data + b)
    keep_alive = _keeps_alive(b"HTTP/" + a_message.head[2], list(a_message.head[3]))
    expected = [a_message, b_message] if keep_alive else [a_message]
    assert [normalized(m) for m in reading.messages] == [
        normalized(m) for m in expected
    ]
    assert reading.stop == ("end" if keep_alive else "close")
    trace = check_no_smuggling(data, b_index, cuts, respond_early)
    assert trace.status is None, trace
    assert len(trace.messages) == len(expected)
    if keep_alive or not respond_early:  # else the server closes after answering
        assert all(m.complete for m in trace.messages)


@fuzz(400)
@given(
    case=environ_cases(),
    root_path=st.sampled_from(["", "", "/api"]),
    https=st.booleans(),
)
def test_environ_of_any_accepted_request(
    case: EnvironCase, root_path: str, https: bool
) -> None:
    request = first_request(case.data)
    event("accepted" if request is not None else "rejected")
    if request is None:
        return
    conn = ConnectionInfo(
        server=TCP.server, client=TCP.client, url_scheme="https" if https else "http"
    )
    environ = build_environ(request, conn, root_path)
    check_environ(environ, request, root_path)
    # Header fields: exactly the expected CGI variables, none from a name with "_".
    cgi = {k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))}
    expected_fields = expected_cgi_fields(case.fields)
    believed = True
    if b"://" in case.target:
        # RFC 9112 §3.2.2: an absolute-form authority replaces Host, as HTTP_HOST
        # too; one with userinfo (RFC 9110 §4.2.4) is believed nowhere.
        rest = case.target.partition(b"://")[2]
        ends = [i for i in (rest.find(b"/"), rest.find(b"?")) if i != -1]
        authority = rest[: min(ends)] if ends else rest
        believed = b"@" not in authority
        expected_fields.pop("HTTP_HOST", None)
        if believed:
            expected_fields["HTTP_HOST"] = authority.decode("latin-1")
    assert cgi == expected_fields
    dashed = {n.upper().replace("-", "_") for n, _ in case.fields if "_" not in n}
    for name, _ in case.fields:
        if "_" in name and name.upper().replace("-", "_") not in dashed:
            assert "HTTP_" + name.upper().replace("-", "_") not in environ
    # SERVER_NAME/SERVER_PORT: the authority or Host, its port or the scheme's.
    default = "443" if https else "80"
    expected = ("127.0.0.1", "8000")  # the socket, when there is nothing usable
    if case.server is not None and believed:
        name, port = case.server
        if name and (not port or int(port) <= 65535):
            expected = (name, str(int(port)) if port else default)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == expected


@fuzz(300)
@given(data=mutated_corpus(max_mutations=3), root_path=st.sampled_from(["", "/api"]))
def test_environ_of_any_accepted_mutated_request(data: bytes, root_path: str) -> None:
    request = first_request(data)
    event("accepted" if request is not None else "rejected")
    if request is not None:
        check_environ(build_environ(request, TCP, root_path), request, root_path)


# -- the reference reading, checked against the corpus ---------------------------------


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_strict_reading_of_the_valid_corpus(name: str) -> None:
    """Every valid corpus request is read whole by ``strict_reading``, the same way
    the parser reads it: the reference is no stricter than the parser on them."""
    data = CORPUS[name]
    reading = strict_reading(data)
    assert len(reading.messages) == 1, reading
    assert reading.messages[0].complete, reading
    assert reading.stop in ("end", "close")
    trace = drive([data])
    assert trace.status is None
    check_agrees(trace, reading)
    assert len(trace.messages) == 1


# -- regressions -----------------------------------------------------------------------


def test_body_before_a_chunked_body_error_does_not_depend_on_splits() -> None:
    """Found by ``test_split_points_do_not_change_the_outcome``.

    A chunked body that turns invalid: the chunk ``1\\r\\nx`` is valid, then ``y``
    stands where the CRLF after the chunk data must be (RFC 9112 §7.1). Sent whole,
    the request is rejected before any body byte comes out; sent in two pieces
    (``...x`` then ``y``) the ``x`` comes out as ``Data`` first. The verdict is the
    same (400), but what the app may have read before it is not.

    Cause (fixed): the chunked scanner (then ``ServerConnection._feed_chunked``)
    collected the units it had checked in ``out`` and handed them to h11 only after
    its loop; a
    ``ProtocolError`` raised in the loop drops the units already checked in this
    call, which an earlier ``receive_data`` would have delivered.
    """
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy"
    whole = drive([data]).outcome()
    assert whole[1:] == ("rejected", 400)
    for at in range(1, len(data)):
        assert drive([data[:at], data[at:]]).outcome() == whole, f"split at {at}"
