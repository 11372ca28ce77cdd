"""``ServerConnection``: bytes in, h11 events or ``ProtocolError(status)`` out.

Table-driven, in the style of h11's ``test_io.py``. Each rejection is also replayed
one byte at a time, and must fail the same way. The raw-request corpus
(``tests/requests``, ``test_request_corpus.py``) covers the same rules again with
every split point.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiogate.errors import ProtocolError
from aiogate.http import ServerConnection, State
from aiogate.http._framing import (
    DEFAULT_SERVER_FIELD,
    error_response,
    server_field,
)
from aiogate.response import SERVER_SOFTWARE

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: example.com\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


def events(conn: ServerConnection) -> list[Any]:
    """Every event up to (and including) NEED_DATA, PAUSED or ConnectionClosed."""
    out: list[Any] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return out
        if type(event) is h11.ConnectionClosed:
            return out


def state_name(state: object) -> str:
    """A side's state by name: ours are ``State`` members, h11's are sentinels."""
    return state.name if isinstance(state, State) else repr(state)


def parse(
    data: bytes, *, eof: bool = False, bytewise: bool = False, **limits: int
) -> Any:
    """Feed ``data`` (whole or byte by byte); return the events, with Data merged,
    or the ``ProtocolError`` raised."""
    conn = ServerConnection(**limits)
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    pieces = [piece for piece in pieces if piece]  # b"" would be EOF
    if eof:
        pieces.append(b"")
    out: list[Any] = []
    try:
        for piece in pieces:
            conn.receive_data(piece)
            out += events(conn)
    except ProtocolError as exc:
        return exc
    return simplify(out)


def simplify(out: list[Any]) -> list[Any]:
    """Drop NEED_DATA and merge adjacent Data, so replays compare equal."""
    merged: list[Any] = []
    for event in out:
        if event is h11.NEED_DATA:
            continue
        if type(event) is h11.Data and merged and type(merged[-1]) is h11.Data:
            merged[-1] = h11.Data(data=bytes(merged[-1].data) + bytes(event.data))
        elif type(event) is h11.Data:
            merged.append(h11.Data(data=bytes(event.data)))
        else:
            merged.append(event)
    return merged


def request(conn: ServerConnection) -> h11.Request:
    event = conn.next_event()
    assert type(event) is h11.Request
    return event


def respond(conn: ServerConnection, body: bytes = b"ok") -> bytes:
    return b"".join(
        [
            conn.start_response("200 OK", [("Content-Length", str(len(body)))]),
            conn.send_data(body),
            conn.end_response(),
        ]
    )


# -- rejections ------------------------------------------------------------------------

REJECTED: list[tuple[str, bytes, int]] = [
    # RFC 9112 §6.1 / §6.3: framing
    ("cl+te", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te+cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (
        "cl twice, same value",
        POST + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n",
        400,
    ),
    (
        "cl twice, differing",
        POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
        400,
    ),
    ("cl list", POST + b"Content-Length: 1,1\r\n\r\n", 400),
    ("cl negative", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("cl hex", POST + b"Content-Length: 0x1\r\n\r\n", 400),
    ("cl plus", POST + b"Content-Length: +1\r\n\r\n", 400),
    ("cl empty", POST + b"Content-Length: \r\n\r\n", 400),
    ("cl 21 digits", POST + b"Content-Length: " + b"1" * 21 + b"\r\n\r\n", 400),
    ("te on http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    (
        "te chunked, identity",
        POST + b"Transfer-Encoding: chunked, identity\r\n\r\n",
        501,
    ),
    ("te gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    (
        "te twice",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        501,
    ),
    ("te space before colon", POST + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    # RFC 9112 §5.1, §5.2, §2.2: field lines and line ends
    ("space before colon", b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", 400),
    ("obs-fold space", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("obs-fold tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400),
    ("obs-fold first line", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    ("bare lf everywhere", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare lf request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare lf field", b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    ("bare lf end of head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("bare cr request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare cr field", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("bare cr end of head", b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400),
    ("nul in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", 400),
    ("nul in name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\nHost: a\r\nbogus\r\n\r\n", 400),
    # RFC 9112 §2.3, RFC 9110 §15.6.6: versions. A well-formed one we do not speak
    # is 505; without its minor digit it is no HTTP-version at all: 400 (h11 too).
    ("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("http/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    ("http/0.9", b"GET / HTTP/0.9\r\n\r\n", 505),
    ("http/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("http/1", b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    ("http/2", b"GET / HTTP/2\r\nHost: a\r\n\r\n", 400),
    ("http/1.", b"GET / HTTP/1.\r\nHost: a\r\n\r\n", 400),
    ("http/.1", b"GET / HTTP/.1\r\nHost: a\r\n\r\n", 400),
    ("version garbage", b"GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", 400),
    ("version lowercase", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    ("no version (0.9 style)", b"GET /\r\n\r\n", 400),
    ("extra space", b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # RFC 9112 §3.2: Host
    ("no host on 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("two hosts on 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400),
    ("invalid host", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    # RFC 9112 §3.2.1-§3.2.4: request targets
    ("relative target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("* without OPTIONS", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("other scheme", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http uri without host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http uri without anything", b"GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # RFC 9112 §3.2, RFC 9110 §4.2.5: no form of request-target has a fragment
    ("fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("empty fragment", b"GET /# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment after query", b"GET /a?q=1#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment absolute", b"GET http://a/p#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment after authority", b"GET http://a#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment in asterisk", b"OPTIONS *#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    # not HTTP at all
    ("tls client hello", b"\x16\x03\x01\x00\xa5\x01\x00", 400),
    ("leading space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare lf before request", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("method with bad char", b"G{T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # RFC 9112 §7.1: chunked framing
    ("chunk size not hex", CHUNKED + b"z\r\n", 400),
    ("chunk size 0x", CHUNKED + b"0x1\r\na\r\n0\r\n\r\n", 400),
    ("chunk size negative", CHUNKED + b"-1\r\n", 400),
    ("chunk size 17 digits", CHUNKED + b"0" * 16 + b"1\r\na\r\n0\r\n\r\n", 400),
    ("chunk size 2**64", CHUNKED + b"10000000000000000\r\n", 400),
    ("chunk size trailing space", CHUNKED + b"1 \r\na\r\n0\r\n\r\n", 400),
    ("chunk size empty", CHUNKED + b"\r\n", 400),
    ("chunk size empty, bare lf", CHUNKED + b"\n", 400),
    ("chunk line too long", CHUNKED + b"1;" + b"e" * 8190 + b"\r\na\r\n0\r\n\r\n", 400),
    ("chunk line never ends", CHUNKED + b"1;" + b"e" * 8190, 400),
    ("chunk line bare lf", CHUNKED + b"1\na\r\n0\r\n\r\n", 400),
    ("chunk ext bare cr", CHUNKED + b"1;a\rb\r\na\r\n0\r\n\r\n", 400),
    ("chunk ext bare cr at end", CHUNKED + b"1;a\r\r\na\r\n0\r\n\r\n", 400),
    ("chunk ext bare lf", CHUNKED + b"1;a\na\r\n0\r\n\r\n", 400),
    ("chunk ext nul", CHUNKED + b"1;a\x00\r\na\r\n0\r\n\r\n", 400),
    ("chunk ext without name", CHUNKED + b"1;\r\na\r\n0\r\n\r\n", 400),
    ("chunk data too long", CHUNKED + b"1\r\nab\r\n0\r\n\r\n", 400),
    ("chunk data then bare lf", CHUNKED + b"1\r\na\n0\r\n\r\n", 400),
    ("chunk data then bare cr", CHUNKED + b"1\r\na\r0\r\n\r\n", 400),
    ("trailer obs-fold", CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", 400),
    ("trailer bare cr", CHUNKED + b"0\r\nX: a\rb\r\n\r\n", 400),
    ("trailer bare lf", CHUNKED + b"0\r\nX: a\n\r\n", 400),
    ("trailer end bare lf", CHUNKED + b"0\r\n\n", 400),
    # h11's own checks and hints come through
    ("h11: trailer te", CHUNKED + b"0\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("h11: bad target char", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("data", "status"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED]
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_rejected(data: bytes, status: int, bytewise: bool) -> None:
    result = parse(data, bytewise=bytewise)
    assert isinstance(result, ProtocolError)
    assert result.status_hint == status


@pytest.mark.parametrize(
    ("version", "status", "reason"),
    [
        (b"HTTP/1", 400, "malformed HTTP version: b'HTTP/1'"),
        (b"HTTP/2", 400, "malformed HTTP version: b'HTTP/2'"),
        (b"HTTP/11", 400, "malformed HTTP version: b'HTTP/11'"),
        (b"HTTP/2.0", 505, "unsupported HTTP version: b'HTTP/2.0'"),
        (b"HTTP/3.0", 505, "unsupported HTTP version: b'HTTP/3.0'"),
    ],
)
def test_version_verdicts_agree_with_h11(
    version: bytes, status: int, reason: str
) -> None:
    data = b"GET / " + version + b"\r\nHost: a\r\n\r\n"
    for bytewise in (False, True):
        result = parse(data, bytewise=bytewise)
        assert isinstance(result, ProtocolError)
        assert (result.status_hint, str(result)) == (status, reason)
    # h11 reads the same line as HTTP-version = "HTTP/" DIGIT "." DIGIT too: what we
    # call malformed it refuses with 400; what we call unsupported it parses.
    h11_conn = h11.Connection(h11.SERVER)
    h11_conn.receive_data(data)
    if status == 400:
        with pytest.raises(h11.RemoteProtocolError) as excinfo:
            h11_conn.next_event()
        assert excinfo.value.error_status_hint == 400
    else:
        event = h11_conn.next_event()
        assert type(event) is h11.Request
        assert event.http_version == version[5:]


@pytest.mark.parametrize(
    "target", [b"/a#b", b"/#", b"/a?q#f", b"http://a/p#f", b"https://a#f", b"*#f"]
)
def test_fragment_in_the_target_is_refused_by_name(target: bytes) -> None:
    method = b"OPTIONS" if target.startswith(b"*") else b"GET"
    result = parse(method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(result, ProtocolError)
    assert (result.status_hint, str(result)) == (400, "fragment in request target")


def test_rejected_without_waiting_for_more() -> None:
    # A head that cannot become valid fails on the bytes so far, not at CRLFCRLF.
    for data, status in [
        (b"\x16\x03", 400),
        (b"GET / HTTP/1.1\r\n Ho", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: a\rb", 400),  # bare CR
        (b"GET / HTTP/1.1\nHo", 400),  # bare LF
        (b"GET / HTTP/1.1\r\n\n", 400),
        (b"GET / HTTP/2.0\r\nHost", 505),
        (b"CONNECT a:1 HTTP/1.1\r\n", 405),
        (CHUNKED + b"1;\r;", 400),
        (CHUNKED + b"x", 400),
        (CHUNKED + b"1\r\nax", 400),
    ]:
        result = parse(data)
        assert isinstance(result, ProtocolError), data
        assert result.status_hint == status, data


def test_after_an_error_nothing_is_parsed() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n" + GET)
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert conn.their_state is State.ERROR
    conn.receive_data(GET)
    for _ in range(3):
        with pytest.raises(ProtocolError) as excinfo:
            conn.next_event()
        assert excinfo.value.status_hint == 400
        assert "obs-fold" in str(excinfo.value)
    conn.receive_data(b"")
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_error_in_body_after_request() -> None:
    conn = ServerConnection()
    conn.receive_data(CHUNKED + b"1\r\na\r\n2\r\nbcX")
    assert type(conn.next_event()) is h11.Request
    # The chunks checked before the bad byte come out first, as they would have if
    # the bad byte had come in a later read; then the error.
    data = b""
    while type(event := conn.next_event()) is h11.Data:  # raises after the Data
        data += event.data
        if data == b"abc":
            break
    assert data == b"abc"
    with pytest.raises(ProtocolError) as excinfo:
        conn.next_event()
    assert excinfo.value.status_hint == 400
    assert conn.their_state is State.ERROR


# -- limits ----------------------------------------------------------------------------

LIMITS = {
    "limit_request_line": 20,
    "limit_request_fields": 3,
    "limit_request_field_size": 12,
}
LINE_20 = b"GET /aaaaaa HTTP/1.1"
LINE_21 = b"GET /aaaaaaa HTTP/1.1"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (LINE_20 + b"\r\nHost: a\r\n\r\n", None),
        (LINE_21 + b"\r\nHost: a\r\n\r\n", 414),
        (LINE_20 + b"\r", None),  # 20 bytes and the CR of the CRLF: still fine
        (LINE_20 + b"x", 414),  # can never end within the limit
        (LINE_20[:19] + b"\rx", 400),  # a bare CR, not the CRLF
        (b"GET /" + b"a" * 40, 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Twelve: 12\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Thirteen: 1\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Thirteen: 1", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Twelve: 12\r", None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", None),  # 3 fields
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC", 431),  # a 4th begins
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r", None),  # or the end
    ],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_limits(data: bytes, status: int | None, bytewise: bool) -> None:
    result = parse(data, bytewise=bytewise, **LIMITS)
    if status is None:
        assert not isinstance(result, ProtocolError), result
    else:
        assert isinstance(result, ProtocolError)
        assert result.status_hint == status


@pytest.mark.parametrize(
    ("trailers", "status"),
    [
        (b"X-" + b"a" * 21 + b": 1\r\nA: 1\r\nB: 2\r\n\r\n", None),  # 26 bytes
        (b"X-" + b"a" * 22 + b": 1\r\n\r\n", 431),  # 27 bytes
        (b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431),
    ],
)
def test_trailer_limits(trailers: bytes, status: int | None) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    limits = {**LIMITS, "limit_request_field_size": 26}
    result = parse(data + trailers, **limits)
    if status is None:
        assert not isinstance(result, ProtocolError), result
        assert len(result[-1].headers) == 3
    else:
        assert isinstance(result, ProtocolError)
        assert result.status_hint == status


def test_default_limits() -> None:
    result = parse(b"GET /" + b"a" * 9000)
    assert isinstance(result, ProtocolError)
    assert result.status_hint == 414
    host = b"Host: a\r\n"
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(99))
    ok = parse(b"GET / HTTP/1.1\r\n" + host + fields + b"\r\n")
    assert type(ok[0]) is h11.Request
    assert len(ok[0].headers) == 100
    result = parse(b"GET / HTTP/1.1\r\n" + host + fields + b"X: 1\r\n\r\n")
    assert isinstance(result, ProtocolError)
    assert result.status_hint == 431
    result = parse(b"GET / HTTP/1.1\r\n" + host + b"X: " + b"1" * 8188 + b"\r\n\r\n")
    assert isinstance(result, ProtocolError)
    assert result.status_hint == 431
    ok = parse(b"GET / HTTP/1.1\r\n" + host + b"X: " + b"1" * 8187 + b"\r\n\r\n")
    assert type(ok[0]) is h11.Request


# -- accepted requests -----------------------------------------------------------------

ACCEPTED: list[tuple[str, bytes, bytes, bytes, bytes]] = [
    # (id, data, method, target, body)
    ("get", GET, b"GET", b"/", b""),
    ("http/1.0 without host", b"GET /x HTTP/1.0\r\n\r\n", b"GET", b"/x", b""),
    (
        "absolute form",
        b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET",
        b"http://a.example/x",
        b"",
    ),
    (
        "absolute https",
        b"GET https://a:1?q HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET",
        b"https://a:1?q",
        b"",
    ),
    ("options *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"OPTIONS", b"*", b""),
    ("empty lines first", b"\r\n\r\n" + GET, b"GET", b"/", b""),
    (
        "content-length",
        POST + b"Content-Length: 5\r\n\r\nhello",
        b"POST",
        b"/p",
        b"hello",
    ),
    (
        "content-length ows",
        POST + b"Content-Length:\t5 \r\n\r\nhello",
        b"POST",
        b"/p",
        b"hello",
    ),
    ("content-length 0", POST + b"Content-Length: 0\r\n\r\n", b"POST", b"/p", b""),
    (
        "chunked",
        CHUNKED + b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
        b"POST",
        b"/p",
        b"hello!",
    ),
    (
        "chunked upper hex",
        CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n",
        b"POST",
        b"/p",
        b"0123456789",
    ),
    (
        "chunked ext",
        CHUNKED + b'5;a=b;c;d="q;\\""\r\nhello\r\n0;e\r\n\r\n',
        b"POST",
        b"/p",
        b"hello",
    ),
    (
        "chunked ext bws",
        CHUNKED + b"5 ;\ta = b\r\nhello\r\n0\r\n\r\n",
        b"POST",
        b"/p",
        b"hello",
    ),
    (
        "te case and ows",
        POST + b"Transfer-Encoding: \tChunked \r\n\r\n0\r\n\r\n",
        b"POST",
        b"/p",
        b"",
    ),
    ("host ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", b"GET", b"/", b""),
    ("host empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", b"GET", b"/", b""),
    (
        "host pct and sub-delims",
        b"GET / HTTP/1.1\r\nHost: a%2Db!$&'()*+,;=\r\n\r\n",
        b"GET",
        b"/",
        b"",
    ),
    (
        "obs-text and ctl in value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \xe9\x01\r\n\r\n",
        b"GET",
        b"/",
        b"",
    ),
]


@pytest.mark.parametrize(
    ("data", "method", "target", "body"),
    [a[1:] for a in ACCEPTED],
    ids=[a[0] for a in ACCEPTED],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_accepted(
    data: bytes, method: bytes, target: bytes, body: bytes, bytewise: bool
) -> None:
    result = parse(data, eof=True, bytewise=bytewise)
    assert not isinstance(result, ProtocolError), result
    req, *rest = result
    assert type(req) is h11.Request
    assert (req.method, req.target) == (method, target)
    assert [type(e) for e in rest[-2:]] == [h11.EndOfMessage, h11.ConnectionClosed]
    assert b"".join(bytes(e.data) for e in rest if type(e) is h11.Data) == body


def test_chunked_trailers_and_extensions() -> None:
    result = parse(CHUNKED + b'3;x="y"\r\nabc\r\n0;z\r\nX-A: 1\r\nX-B:  two \r\n\r\n')
    assert not isinstance(result, ProtocolError)
    assert bytes(result[1].data) == b"abc"
    assert result[2] == h11.EndOfMessage(headers=[(b"x-a", b"1"), (b"x-b", b"two")])
    assert len(result) == 3


# -- keep-alive, pipelining, EOF -------------------------------------------------------


def test_keep_alive_several_requests() -> None:
    conn = ServerConnection()
    for i in range(3):
        conn.receive_data(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        assert request(conn).target == b"/%d" % i
        assert type(conn.next_event()) is h11.EndOfMessage
        assert conn.next_event() is h11.NEED_DATA
        respond(conn)
        assert conn.our_state is State.DONE
        conn.start_next_cycle()
    conn.receive_data(b"")
    assert type(conn.next_event()) is h11.ConnectionClosed


def test_pipelined_request_waits_for_start_next_cycle() -> None:
    conn = ServerConnection()
    conn.receive_data(
        POST
        + b"Content-Length: 3\r\n\r\nabc"
        + b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
        + b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert request(conn).target == b"/p"
    assert conn.next_event() == h11.Data(data=b"abc")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.next_event() is h11.PAUSED
    assert conn.next_event() is h11.PAUSED
    conn.receive_data(b"")  # EOF after the pipelined requests: they still count
    assert conn.next_event() is h11.PAUSED
    respond(conn)
    conn.start_next_cycle()
    assert request(conn).target == b"/second"
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.next_event() is h11.PAUSED
    respond(conn)
    conn.start_next_cycle()
    assert request(conn).target == b"/third"
    assert type(conn.next_event()) is h11.EndOfMessage
    assert type(conn.next_event()) is h11.ConnectionClosed


def test_pipelined_chunked_request_keeps_the_next_one_back() -> None:
    conn = ServerConnection()
    conn.receive_data(
        CHUNKED + b"2\r\nab\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert type(conn.next_event()) is h11.Request
    # Chunk boundaries are not reported: the data of decoded chunks comes joined.
    assert conn.next_event() == h11.Data(data=b"ab")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.next_event() is h11.PAUSED
    respond(conn)
    conn.start_next_cycle()
    assert request(conn).target == b"/next"


@pytest.mark.parametrize(
    "first",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ],
)
def test_after_a_closing_request_nothing_is_parsed(first: bytes) -> None:
    # h11 would raise on these bytes; we answer the request we have, then close.
    conn = ServerConnection()
    conn.receive_data(first + b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.next_event() is h11.PAUSED
    respond(conn)
    assert conn.our_state is State.MUST_CLOSE
    assert conn.next_event() is h11.PAUSED
    with pytest.raises(h11.LocalProtocolError):
        conn.start_next_cycle()


def test_upgrade_waits_for_the_response() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n" + GET
    )
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    # We never switch protocols, so the request is simply complete.
    assert conn.their_state is State.DONE
    assert conn.next_event() is h11.PAUSED
    respond(conn)  # a normal response declines the upgrade
    assert conn.their_state is State.DONE
    conn.start_next_cycle()
    assert type(conn.next_event()) is h11.Request


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"G",
        b"\r",
        POST + b"Content-Length: 5\r\n\r\nhel",
        POST + b"Content-Length: 5\r\n\r\n",
        CHUNKED + b"5\r\nhel",
        CHUNKED + b"5\r\nhello",
        CHUNKED + b"5\r\nhello\r\n",
        CHUNKED + b"5\r\nhello\r\n0",
        CHUNKED + b"5\r\nhello\r\n0\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\nX: 1\r\n",
    ],
)
def test_eof_inside_a_request(data: bytes) -> None:
    result = parse(data, eof=True)
    assert isinstance(result, ProtocolError), result
    assert result.status_hint == 400
    assert "closed the connection" in str(result)


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n"])
def test_eof_between_requests(data: bytes) -> None:
    # RFC 9112 §2.2: empty lines before a request line are ignored, also at EOF.
    assert parse(data, eof=True) == [h11.ConnectionClosed()]
    conn = ServerConnection()
    conn.receive_data(GET + data)
    conn.receive_data(b"")
    expected = [
        h11.Request,
        h11.EndOfMessage,
        h11.PAUSED if data else h11.ConnectionClosed,
    ]
    assert [type(e) if e is not h11.PAUSED else e for e in events(conn)] == expected
    if data:
        respond(conn)
        conn.start_next_cycle()
        assert events(conn) == [h11.ConnectionClosed()]


def test_eof_after_a_complete_request() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    conn.receive_data(b"")
    assert [type(e) for e in events(conn)] == [
        h11.Request,
        h11.EndOfMessage,
        h11.ConnectionClosed,
    ]
    assert conn.their_state is State.CLOSED
    # The response still goes out; then the connection must close.
    respond(conn)
    assert conn.our_state is State.MUST_CLOSE


def test_data_after_eof_is_a_bug() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    conn.receive_data(b"")  # repeated EOF is fine
    with pytest.raises(RuntimeError):
        conn.receive_data(b"x")


def test_body_arriving_in_pieces() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"Content-Length: 10\r\n\r\n01")
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() == h11.Data(data=b"01")
    assert conn.next_event() is h11.NEED_DATA
    conn.receive_data(b"2345")
    assert conn.next_event() == h11.Data(data=b"2345")
    conn.receive_data(b"6789GET")  # the next request starts in the same segment
    assert conn.next_event() == h11.Data(data=b"6789")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.next_event() is h11.PAUSED


def test_chunked_body_arriving_in_pieces() -> None:
    conn = ServerConnection()
    conn.receive_data(CHUNKED + b"a;ext=1")
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() is h11.NEED_DATA
    body = b""
    for piece in [
        b"\r\n0123",
        b"4567",
        b"89\r",
        b"\n3\r\nabc\r\n0\r\nX: y\r\n",
        b"\r\nGET",
    ]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if type(event) is h11.Data:
                body += event.data
            elif event is h11.NEED_DATA:
                break
            else:
                assert event == h11.EndOfMessage(headers=[(b"x", b"y")])
                assert conn.next_event() is h11.PAUSED
                break
    assert body == b"0123456789abc"


# -- 100-continue, HTTP/1.0 ------------------------------------------------------------


def test_100_continue() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    assert conn.they_are_waiting_for_100_continue
    assert not conn.client_is_http10
    data = conn.send_100_continue()
    assert data == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.they_are_waiting_for_100_continue
    assert conn.send_100_continue() == b""  # once
    conn.receive_data(b"ok")
    assert conn.next_event() == h11.Data(data=b"ok")
    assert type(conn.next_event()) is h11.EndOfMessage


def test_100_continue_is_ignored_for_http10() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert type(conn.next_event()) is h11.Request
    assert not conn.they_are_waiting_for_100_continue
    assert conn.client_is_http10


# -- sending ---------------------------------------------------------------------------


def client_reads(data: bytes, method: bytes = b"GET") -> list[Any]:
    """Parse response bytes back as an h11 client that sent ``method``."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    out: list[Any] = []
    while True:
        event = client.next_event()
        out.append(event)
        if type(event) is h11.ConnectionClosed:
            return out


def test_response_cycle_http11_chunked_without_length() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    head = conn.start_response("200 OK", [("Content-Type", "text/plain")])
    assert b"Transfer-Encoding: chunked\r\n" in head
    data = head + conn.send_data(b"hello") + conn.send_data(b"") + conn.end_response()
    assert data.endswith(b"5\r\nhello\r\n0\r\n\r\n")
    assert conn.our_state is State.DONE
    response, body, end, _ = client_reads(data)
    assert response.status_code == 200
    assert body.data == b"hello"
    assert type(end) is h11.EndOfMessage
    conn.start_next_cycle()
    assert conn.our_state is State.IDLE


def test_response_cycle_http10_close_delimited() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    head = conn.start_response("200 OK", [])
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close\r\n" in head
    assert conn.send_data(b"hello") == b"hello"
    assert conn.end_response() == b""
    assert conn.our_state is State.MUST_CLOSE


# -- HTTP/1.0 keep-alive (_state rule 9) --------------------------------------------

HTTP10_KEEP_ALIVE = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"


@pytest.mark.parametrize(
    ("connection", "reusable"),
    [
        (b"keep-alive", True),
        (b"Keep-Alive", True),  # what ab -k sends
        (b"te, keep-alive", True),
        (b"keep-alive, close", False),
        (b"close", False),
        (b"upgrade", False),
        (None, False),
    ],
)
def test_http10_keep_alive_is_asked_for_with_the_token(
    connection: bytes | None, reusable: bool
) -> None:
    conn = ServerConnection()
    field = b"" if connection is None else b"Connection: " + connection + b"\r\n"
    conn.receive_data(b"GET / HTTP/1.0\r\n" + field + b"\r\n")
    request(conn)
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.their_state is (State.DONE if reusable else State.MUST_CLOSE)
    head = respond(conn).partition(b"\r\n\r\n")[0].lower()
    expected = b"connection: keep-alive" if reusable else b"connection: close"
    assert head.split(b"\r\n").count(expected) == 1
    assert head.count(b"connection:") == 1
    assert conn.our_state is (State.DONE if reusable else State.MUST_CLOSE)


@pytest.mark.parametrize(
    ("method", "status", "headers", "reusable"),
    [
        (b"GET", "200 OK", [("Content-Length", "5")], True),
        (b"HEAD", "200 OK", [], True),  # no body: its length is known
        (b"GET", "204 No Content", [], True),
        (b"GET", "304 Not Modified", [], True),
        (b"GET", "200 OK", [], False),  # close-delimited: the close ends it
        (b"GET", "200 OK", [("Connection", "close"), ("Content-Length", "5")], False),
    ],
    ids=["length", "head", "204", "304", "unknown-length", "app-close"],
)
def test_http10_keep_alive_needs_a_known_length(
    method: bytes, status: str, headers: list[tuple[str, str]], reusable: bool
) -> None:
    conn = ServerConnection()
    conn.receive_data(method + HTTP10_KEEP_ALIVE[3:])
    request(conn)
    data = conn.start_response(status, headers)
    if method == b"GET" and status.startswith("200"):
        data += conn.send_data(b"hello")
    data += conn.end_response()
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert b"transfer-encoding" not in head  # never chunked for a 1.0 client
    lines = head.split(b"\r\n")
    assert (
        lines.count(b"connection: keep-alive" if reusable else b"connection: close")
        == 1
    )
    assert conn.our_state is (State.DONE if reusable else State.MUST_CLOSE)


def test_http10_keep_alive_several_requests_pipelined_too() -> None:
    # Each cycle parses its head with a fresh h11 connection, which never sees the
    # one before: h11's own rule (close after 1.0) does not come into it.
    conn = ServerConnection()
    conn.receive_data(HTTP10_KEEP_ALIVE + HTTP10_KEEP_ALIVE.replace(b"/ ", b"/2 "))
    for target in (b"/", b"/2", b"/3"):
        assert request(conn).target == target
        assert type(conn.next_event()) is h11.EndOfMessage
        assert b"connection: keep-alive" in respond(conn).lower()
        assert conn.our_state is State.DONE
        conn.start_next_cycle()
        if target == b"/2":
            conn.receive_data(HTTP10_KEEP_ALIVE.replace(b"/ ", b"/3 "))
    conn.receive_data(b"")
    assert type(conn.next_event()) is h11.ConnectionClosed


def test_http10_keep_alive_with_a_handler_writing_http10_still_closes() -> None:
    conn = ServerConnection()
    conn.receive_data(HTTP10_KEEP_ALIVE)
    request(conn)
    data = conn.start_response("200 OK", [("Content-Length", "0")], version="1.0")
    data += conn.end_response()
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"connection: close" in data.lower()
    assert conn.our_state is State.MUST_CLOSE


# (request, status, headers, close) -> (framing header expected, keep-alive after)
FRAMING: list[
    tuple[str, bytes, str, list[tuple[str, str]], bool, bytes | None, bool]
] = [
    (
        "length",
        GET,
        "200 OK",
        [("Content-Length", "5")],
        False,
        b"content-length",
        True,
    ),
    ("chunked", GET, "200 OK", [], False, b"transfer-encoding", True),
    (
        "app-te-replaced",
        GET,
        "200 OK",
        [("Transfer-Encoding", "gzip")],
        False,
        b"transfer-encoding",
        True,
    ),
    ("http10", b"GET / HTTP/1.0\r\n\r\n", "200 OK", [], False, None, False),
    (
        "http10-length",
        b"GET / HTTP/1.0\r\n\r\n",
        "200 OK",
        [("Content-Length", "5")],
        False,
        b"content-length",
        False,
    ),
    (
        "request-close",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "200 OK",
        [("Content-Length", "5")],
        False,
        b"content-length",
        False,
    ),
    (
        "request-close-list",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te, Close\r\n\r\n",
        "200 OK",
        [("Content-Length", "5")],
        False,
        b"content-length",
        False,
    ),
    (
        "app-close",
        GET,
        "200 OK",
        [("Content-Length", "5"), ("Connection", "close")],
        False,
        b"content-length",
        False,
    ),
    (
        "app-keep-alive-dropped",
        GET,
        "200 OK",
        [("Content-Length", "5"), ("Connection", "keep-alive")],
        False,
        b"content-length",
        True,
    ),
    (
        "server-close",
        GET,
        "200 OK",
        [("Content-Length", "5")],
        True,
        b"content-length",
        False,
    ),
    ("204", GET, "204 No Content", [], False, None, True),
    ("304", GET, "304 Not Modified", [("ETag", "x")], False, None, True),
]


@pytest.mark.parametrize(
    ("request_bytes", "status", "headers", "close", "framing", "keep_alive"),
    [row[1:] for row in FRAMING],
    ids=[row[0] for row in FRAMING],
)
def test_response_framing_and_keep_alive(
    request_bytes: bytes,
    status: str,
    headers: list[tuple[str, str]],
    close: bool,
    framing: bytes | None,
    keep_alive: bool,
) -> None:
    conn = ServerConnection()
    conn.receive_data(request_bytes)
    request(conn)
    body = b"hello" if status.startswith("200") else b""
    data = conn.start_response(status, headers, close=close)
    data += conn.send_data(body) + conn.end_response()
    response, *rest = client_reads(data)
    names = [name for name, _ in response.headers]
    assert names.count(b"transfer-encoding") + names.count(b"content-length") == (
        0 if framing is None else 1
    )
    if framing is not None:
        assert framing in names
    assert (b"connection", b"close") in response.headers or keep_alive
    assert names.count(b"connection") == (0 if keep_alive else 1)
    assert b"".join(e.data for e in rest if type(e) is h11.Data) == body
    assert conn.our_state is (State.DONE if keep_alive else State.MUST_CLOSE)


@pytest.mark.parametrize(
    ("headers", "framing"),
    [([("Content-Length", "5")], b"content-length"), ([], None)],
    ids=["length", "until-close"],
)
def test_an_http10_response_is_never_chunked_and_ends_the_connection(
    headers: list[tuple[str, str]], framing: bytes | None
) -> None:
    # A handler whose http_version is "1.0" (wsgiref's default), to a 1.1 client.
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    data = conn.start_response("200 OK", headers, version="1.0")
    data += conn.send_data(b"hello") + conn.end_response()
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]]
    assert b"transfer-encoding" not in names
    assert (framing in names) if framing else b"content-length" not in names
    assert b"connection: close" in head.lower()
    assert body == b"hello"  # as it is: the close ends it
    assert conn.our_state is State.MUST_CLOSE


def test_head_response_keeps_length_and_sends_no_body() -> None:
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    request(conn)
    head = conn.start_response("200 OK", [("Content-Length", "5")])
    assert conn.send_data(b"hello") == b""
    assert conn.end_response() == b""
    assert b"Content-Length: 5\r\n" in head
    assert type(client_reads(head, b"HEAD")[1]) is h11.EndOfMessage


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK\r\nX-Evil: 1", []),
        ("200 OK", [("X-A", "1\r\nX-Evil: 1")]),
        ("200 OK", [("X-A", "1\nX-Evil: 1")]),
        ("200 OK", [("X-A", "1\rX")]),
        ("200 OK", [("X-A", "a\0b")]),
        ("200 OK", [("X-A", "snow\u2603")]),
        ("100 Continue", []),
        ("200 OK", [("Content-Length", "-1")]),
        ("200 OK", [("Content-Length", "1"), ("Content-Length", "2")]),
    ],
)
def test_start_response_refuses_what_would_break_the_message(
    status: str, headers: list[tuple[str, str]]
) -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    with pytest.raises(h11.LocalProtocolError):
        conn.start_response(status, headers)
    assert conn.our_state is State.SEND_RESPONSE  # nothing was sent: a 500 still can be


def test_content_length_is_enforced() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    conn.start_response("200 OK", [("Content-Length", "3")])
    with pytest.raises(h11.LocalProtocolError):
        conn.send_data(b"abcd")
    assert conn.send_data(b"ab") == b"ab"
    with pytest.raises(h11.LocalProtocolError):
        conn.end_response()


def test_out_of_order_sends_are_refused() -> None:
    conn = ServerConnection()
    with pytest.raises(h11.LocalProtocolError):
        conn.start_response("200 OK", [])  # no request yet
    conn.receive_data(POST + b"Content-Length: 2\r\n\r\n")
    request(conn)
    with pytest.raises(h11.LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(h11.LocalProtocolError):
        conn.end_response()
    conn.start_response("200 OK", [("Content-Length", "0")])
    with pytest.raises(h11.LocalProtocolError):
        conn.start_response("200 OK", [])
    conn.end_response()
    with pytest.raises(h11.LocalProtocolError):
        conn.start_next_cycle()  # the request body has not arrived yet
    conn.receive_data(b"ok")
    assert conn.next_event() == h11.Data(data=b"ok")
    assert type(conn.next_event()) is h11.EndOfMessage
    conn.start_next_cycle()


def test_upgrade_request_is_done_after_the_response() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        + GET
    )
    request(conn)
    assert type(conn.next_event()) is h11.EndOfMessage
    respond(conn)
    assert conn.their_state is State.DONE
    conn.start_next_cycle()
    assert request(conn).target == b"/"


def test_send_failed() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    conn.start_response("200 OK", [("Content-Length", "3")])
    conn.send_failed()
    assert conn.our_state is State.ERROR
    assert conn.error_response(500, "too late") == b""


# -- error_response --------------------------------------------------------------------


def check_error_response(
    data: bytes, status: int, reason: str, method: bytes = b"GET"
) -> None:
    response, *rest = client_reads(data, method)
    assert type(response) is h11.Response
    assert response.status_code == status
    headers = dict(response.headers)
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"date" in headers
    body = b"".join(e.data for e in rest if type(e) is h11.Data)
    if method == b"HEAD":
        assert body == b""
    else:
        assert body == reason.encode() + b"\n"
        assert headers[b"content-length"] == str(len(body)).encode()
    assert type(rest[-1]) is h11.ConnectionClosed


@pytest.mark.parametrize(
    ("data", "status"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED]
)
def test_error_response_for_each_rejection(data: bytes, status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(data)
    with pytest.raises(ProtocolError) as excinfo:
        events(conn)
    out = conn.error_response(excinfo.value.status_hint, str(excinfo.value))
    response = client_reads(out)[0]
    assert response.status_code == status
    assert conn.our_state is State.ERROR
    assert conn.error_response(400, "again") == b""  # only one response per request


def test_error_response_before_and_after_the_head() -> None:
    # h11 never saw the head:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/2.0\r\n\r\n")
    with pytest.raises(ProtocolError):
        conn.next_event()
    check_error_response(conn.error_response(505, "unsupported"), 505, "unsupported")
    # h11 saw the head, the body was bad:
    conn = ServerConnection()
    conn.receive_data(CHUNKED + b"zz\r\n")
    request(conn)
    with pytest.raises(ProtocolError):
        conn.next_event()
    check_error_response(conn.error_response(400, "bad chunk"), 400, "bad chunk")
    # after a 100 Continue the final response may still be an error:
    conn = ServerConnection()
    conn.receive_data(POST + b"Expect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    request(conn)
    conn.send_100_continue()
    check_error_response(conn.error_response(503, "busy"), 503, "busy")


def test_error_response_after_the_response_started_is_empty() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"Content-Length: 9\r\n\r\nabc")
    request(conn)
    conn.start_response("200 OK", [])
    conn.receive_data(b"")
    conn.next_event()
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert conn.error_response(400, "truncated body") == b""


def test_error_response_details() -> None:
    conn = ServerConnection()
    data = conn.error_response(405, "CONNECT is not supported")
    assert b"HTTP/1.1 405 Method Not Allowed\r\n" in data
    assert b"\r\nAllow: GET, HEAD" in data  # RFC 9110 §15.5.6
    # The reason is cut short and made printable ASCII:
    conn = ServerConnection()
    data = conn.error_response(400, "bad \r\n\x00\u00e9" + "x" * 1000)
    check_error_response(data, 400, "bad ????" + "x" * 192)
    # A response to HEAD has no content (RFC 9110 §9.3.2):
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
    request(conn)
    conn.receive_data(b"")
    conn.next_event()
    with pytest.raises(ProtocolError):
        conn.next_event()
    check_error_response(
        conn.error_response(400, "truncated"), 400, "truncated", b"HEAD"
    )
    # An unknown status code gets a generic phrase; non-error statuses are refused:
    assert (
        ServerConnection()
        .error_response(499, "x")
        .startswith(b"HTTP/1.1 499 Error\r\n")
    )
    with pytest.raises(ValueError, match="400-599"):
        ServerConnection().error_response(200, "x")


def test_error_responses_carry_the_server_header_of_app_responses() -> None:
    # One Server policy for every response: by default the handler's
    # server_software, on our own 400s and 503s too.
    assert SERVER_SOFTWARE.startswith("aiogate/")
    assert server_field(SERVER_SOFTWARE) == DEFAULT_SERVER_FIELD
    response = client_reads(ServerConnection().error_response(400, "bad"))[0]
    assert dict(response.headers)[b"server"] == SERVER_SOFTWARE.encode()
    # The setting decides: another value, or none at all.
    for software, expected in [("custom/1.0 (\xe9)", b"custom/1.0 (\xe9)"), ("", None)]:
        for head_only in (False, True):
            data = error_response(
                503, "busy", head_only=head_only, server=server_field(software)
            )
            method = b"HEAD" if head_only else b"GET"
            response = client_reads(data, method)[0]
            assert dict(response.headers).get(b"server") == expected
            assert response.status_code == 503


@pytest.mark.parametrize(
    ("software", "field"),
    [
        (None, b""),
        ("", b""),
        ("aiogate/1", b"Server: aiogate/1\r\n"),
        ("caf\xe9", b"Server: caf\xe9\r\n"),
    ],
)
def test_server_field(software: str | None, field: bytes) -> None:
    assert server_field(software) == field


@pytest.mark.parametrize("software", ["a\r\nSet-Cookie: x=1", "a\nb", "a\0", "\u20ac"])
def test_server_field_refuses_what_cannot_be_sent(software: str) -> None:
    with pytest.raises(ValueError, match="Server header"):
        server_field(software)


# -- split invariance ------------------------------------------------------------------

# Mutations that hit the interesting bytes: line ends, folding, the limits.
_NOISE = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b" ", b"\t", b"a" * 9, b":", b"\x00", b"0"]
)


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(
    base=st.sampled_from(
        [
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n",
            CHUNKED.replace(b"POST /p", b"POST /") + b"3;e\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        ]
    ),
    edits=st.lists(st.tuples(st.integers(0, 200), _NOISE), max_size=3),
    cut=st.integers(1, 200),
)
def test_outcome_does_not_depend_on_how_bytes_arrive(
    base: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    data = base
    for at, noise in edits:
        at %= len(data) + 1
        data = data[:at] + noise + data[at:]
    limits = {
        "limit_request_line": 16,
        "limit_request_fields": 3,
        "limit_request_field_size": 12,
    }
    whole = outcome(parse(data, eof=True, **limits))
    assert outcome(parse(data, eof=True, bytewise=True, **limits)) == whole
    cut = 1 + cut % (len(data) - 1)  # both pieces non-empty
    conn = ServerConnection(**limits)
    out: list[Any] = []
    try:
        for piece in (data[:cut], data[cut:], b""):
            conn.receive_data(piece)
            out += events(conn)
        split: Any = simplify(out)
    except ProtocolError as exc:
        split = exc
    assert outcome(split) == whole


def outcome(result: Any) -> Any:
    if isinstance(result, ProtocolError):
        return ("error", result.status_hint)
    return [e for e in result if e is not h11.PAUSED]


BODYLESS = [
    GET,
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    # (HTTP/1.0 with Connection: keep-alive is not h11's: _state rule 9, tested in
    # test_http10_keep_alive_*.)
    b"DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    # (An Upgrade request ends as any other: see test_upgrade_request_with_a_body_is_ours_too.)
]


@pytest.mark.parametrize("request_bytes", BODYLESS)
@pytest.mark.parametrize("then", [b"", b"EOF", GET, GET + b"EOF"])
def test_a_request_without_a_body_reads_as_h11_reads_it(
    request_bytes: bytes, then: bytes
) -> None:
    """The end of a bodyless message is ours to say (h11 is not asked twice): the
    events, and the client's state after each, are h11's own."""
    eof = then.endswith(b"EOF")
    following = then.removesuffix(b"EOF")

    def run(conn: Any) -> list[tuple[type, Any, bool]]:
        conn.receive_data(request_bytes + following)
        if eof:
            conn.receive_data(b"")
        seen: list[tuple[type, Any, bool]] = []
        for _ in range(4):
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                # h11 refuses bytes after a message that closes the connection;
                # ours keeps them unparsed (PAUSED) and answers the request it has.
                assert following
                assert seen[-1][1] == "MUST_CLOSE"
                seen += [(h11.PAUSED, "MUST_CLOSE", False)] * (4 - len(seen))
                break
            seen.append(
                (
                    event if event in (h11.NEED_DATA, h11.PAUSED) else type(event),
                    state_name(conn.their_state),
                    conn.they_are_waiting_for_100_continue,
                )
            )
        return seen

    ours = run(ServerConnection())
    theirs = run(h11.Connection(h11.SERVER))

    assert [(k, s) for k, s, _ in ours] == [(k, s) for k, s, _ in theirs]
    # h11 says a bodyless request with Expect: 100-continue waits until its
    # EndOfMessage; with nothing to send, the client waits for nothing.
    assert not any(waiting for _, _, waiting in ours)


WITH_BODY = [
    POST + b"Content-Length: 5\r\n\r\nhello",
    POST + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    POST + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\nwxyz",
]


@pytest.mark.parametrize("request_bytes", WITH_BODY)
@pytest.mark.parametrize("then", [b"", b"EOF", GET])
@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_a_content_length_body_reads_as_h11_reads_it(
    request_bytes: bytes, then: bytes, piece: int
) -> None:
    """Body bytes by Content-Length are counted here, not parsed by h11: the same
    events (the bytes may come in other pieces), states and 100-continue flag."""
    eof = then == b"EOF"
    data = request_bytes + (b"" if eof else then)

    def run(conn: Any) -> list[tuple[Any, Any, bool]]:
        seen: list[tuple[Any, Any, bool]] = []
        for start in range(0, len(data), piece):
            conn.receive_data(data[start : start + piece])
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:  # bytes after a closing message
                    event = h11.PAUSED
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                seen.append(
                    (
                        event,
                        state_name(conn.their_state),
                        conn.they_are_waiting_for_100_continue,
                    )
                )
        if eof:
            conn.receive_data(b"")
            event = conn.next_event()
            seen.append((event, state_name(conn.their_state), False))
        return seen

    def merged(seen: list[tuple[Any, Any, bool]]) -> list[Any]:
        """Data events joined: where bytes are split is not part of the contract."""
        out: list[Any] = []
        for event, state, waiting in seen:
            if type(event) is h11.Data and out and type(out[-1][0]) is h11.Data:
                out[-1] = (h11.Data(data=out[-1][0].data + event.data), state, waiting)
            else:
                out.append((event, state, waiting))
        return [(type(e), getattr(e, "data", None), s, w) for e, s, w in out]

    assert merged(run(ServerConnection())) == merged(run(h11.Connection(h11.SERVER)))


def test_body_bytes_received_whole_are_not_copied() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"Content-Length: 6\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() is h11.NEED_DATA
    body = b"abcdef"
    conn.receive_data(body)
    assert conn.has_unparsed_data
    event = conn.next_event()
    assert type(event) is h11.Data
    assert event.data is body
    assert type(conn.next_event()) is h11.EndOfMessage


def test_eof_inside_a_content_length_body_is_an_error() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"Content-Length: 6\r\n\r\nabc")
    conn.receive_data(b"")
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() == h11.Data(data=b"abc")
    with pytest.raises(ProtocolError, match="inside a request body"):
        conn.next_event()


# -- the chunked decoder: contiguous data, bounded work per call ----------------------


def test_tiny_chunks_come_out_joined_a_bounded_number_per_call() -> None:
    # One h11 Data event (and one bytes object) per 1-byte chunk let a client hold
    # the loop and fill memory with tiny objects; our decoder joins the data of the
    # chunks it decodes, at most _CHUNK_LINES_PER_CALL of them per call.
    from aiogate.http import CHUNK_LINES_PER_CALL as _CHUNK_LINES_PER_CALL

    conn = ServerConnection()
    count = 3 * _CHUNK_LINES_PER_CALL + 5
    conn.receive_data(CHUNKED + b"1\r\nX\r\n" * count + b"0\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    sizes = []
    while type(event := conn.next_event()) is h11.Data:
        sizes.append(len(event.data))
        assert conn.has_unparsed_data or len(sizes) == 4
    assert type(event) is h11.EndOfMessage
    assert sizes == [_CHUNK_LINES_PER_CALL] * 3 + [5]


def test_chunk_data_split_across_reads_is_joined_per_read() -> None:
    conn = ServerConnection()
    conn.receive_data(CHUNKED + b"3\r\nab")
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() == h11.Data(data=b"ab")
    assert conn.next_event() is h11.NEED_DATA
    conn.receive_data(b"c\r\n2\r\nde\r\n4\r\nfg")
    assert conn.next_event() == h11.Data(data=b"cdefg")
    conn.receive_data(b"hi\r\n0\r\n\r\n")
    assert conn.next_event() == h11.Data(data=b"hi")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.their_state is State.DONE


def test_expect_100_continue_with_a_chunked_body() -> None:
    conn = ServerConnection()
    conn.receive_data(CHUNKED[:-2] + b"Expect: 100-continue\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    assert conn.they_are_waiting_for_100_continue
    conn.receive_data(b"1\r\na\r\n")
    assert conn.next_event() == h11.Data(data=b"a")
    assert not conn.they_are_waiting_for_100_continue  # body data ends the wait


def test_upgrade_request_with_a_body_is_ours_too() -> None:
    # A WSGI server never switches protocols: the request ends like any other, and
    # the connection goes on (h11 would wait in MIGHT_SWITCH_PROTOCOL).
    conn = ServerConnection()
    conn.receive_data(
        POST + b"Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n0\r\n\r\n" + GET
    )
    assert type(conn.next_event()) is h11.Request
    assert conn.next_event() == h11.Data(data=b"ab")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.their_state is State.DONE
    assert conn.next_event() is h11.PAUSED
    respond(conn)
    conn.start_next_cycle()
    assert request(conn).target == b"/"


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Length", "2"), ("Content-Length", "2")],
        [("Content-Length", "²")],
        [("Content-Length", "2, 2")],
    ],
)
def test_serialiser_takes_one_ascii_content_length(
    headers: list[tuple[str, str]],
) -> None:
    # The handler refuses these first; the serialiser is the last guard for a
    # custom handler that does not.
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    with pytest.raises(h11.LocalProtocolError):
        conn.start_response("200 OK", headers)


def test_a_body_sent_by_other_means_is_counted_against_its_length() -> None:
    # os.sendfile sends a file's bytes past the serialiser (file_sender): only a
    # body that goes on the wire as it is may go that way, and it still counts.
    conn = ServerConnection()
    conn.receive_data(GET)
    request(conn)
    conn.start_response("200 OK", [("Content-Length", "10")])
    assert conn.body_goes_as_is()
    conn.count_data(6)
    with pytest.raises(h11.LocalProtocolError, match="more data"):
        conn.count_data(5)
    conn.count_data(4)
    assert conn.end_response() == b""
    chunked = ServerConnection()
    chunked.receive_data(GET)
    request(chunked)
    chunked.start_response("200 OK", [])  # streamed to a 1.1 client: chunked
    assert not chunked.body_goes_as_is()
    with pytest.raises(h11.LocalProtocolError, match="not sent as it is"):
        chunked.count_data(1)
    idle = ServerConnection()
    with pytest.raises(h11.LocalProtocolError, match="cannot send data"):
        idle.body_goes_as_is()
