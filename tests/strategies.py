"""Hypothesis strategies for ``test_fuzz.py``: raw HTTP/1.1 requests to throw at the
parser policy (``aiogate.http``) and the environ builder (``aiogate.environ``).

- ``mutated_corpus``: a valid request from ``tests/requests/valid`` with byte-level
  mutations (bytes from an alphabet rich in ``\\r \\n SP HTAB : ; , NUL VT`` and hex
  digits inserted, replaced or deleted; line ends changed; lines duplicated, case
  swapped; framing fields and line ends inserted at a line start).
- ``framed_request``: a request built from a small grammar with a body framed by
  Content-Length, chunked or nothing, either well-formed (with the ``Message`` any
  correct parser reads) or with odd spellings of the framing (RFC 9112 §6, §7.1).
- ``NEXT_REQUESTS``: request B, the one that goes behind A in the smuggling tests.
- ``environ_cases``: well-formed requests with percent-escapes, absolute-form
  targets, odd query bytes, header names with ``_`` and ``-``, repeated fields and
  Host values with ports and IPv6 literals, plus what the environ must say of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

_CRLF = b"\r\n"
_OWS = b" \t"

#: The valid corpus files, by name (``get-simple``: ``GET / HTTP/1.1`` ...).
CORPUS = {
    path.stem: path.read_bytes()
    for path in sorted((Path(__file__).parent / "requests" / "valid").glob("*.http"))
}


#: (method, target, http_version, fields), fields as (lowercased name, value) pairs.
Head = tuple[bytes, bytes, bytes, tuple[tuple[bytes, bytes], ...]]


@dataclass
class Message:
    """One request as read: its head, its body so far, its trailers once complete."""

    head: Head
    body: bytes = b""
    trailers: tuple[tuple[bytes, bytes], ...] | None = None

    @property
    def complete(self) -> bool:
        return self.trailers is not None


#: ServerConnection's limit_* keyword arguments.
Limits = dict[str, int]
#: The default limits, or small ones so that 414 and 431 come up often.
LIMITS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "limit_request_line": st.integers(4, 80),
            "limit_request_fields": st.integers(0, 8),
            "limit_request_field_size": st.integers(2, 60),
        }
    ),
)


# -- strategies: mutations of the corpus -----------------------------------------------

_NOISE_BYTES = (
    b"\r\n \t:;,\x00\x0b" + b"0123456789abcdefABCDEF" + b'xzXZ-_"=/\x7f\x80\xff'
)
_NOISE = st.binary(min_size=1, max_size=3).map(
    lambda raw: bytes(_NOISE_BYTES[b % len(_NOISE_BYTES)] for b in raw)
)
#: Whole fragments worth inserting at a line start: framing fields, line ends, a
#: request line, a last-chunk.
_FRAGMENTS = st.sampled_from(
    [
        b"Content-Length: 5\r\n",
        b"Content-Length: 0\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding : chunked\r\n",
        b" chunked\r\n",
        b"Host: x\r\n",
        b"Connection: close\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"0\r\n\r\n",
        b"5;x=y\r\nhello\r\n",
        b"GET /smuggled HTTP/1.1\r\n",
    ]
)
_LINE_ENDS = st.sampled_from(
    [b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n ", b"\r\n\t", b""]
)
_POSITION = st.integers(min_value=0, max_value=1 << 16)

#: A mutation: (kind, position, argument).
MUTATIONS = st.one_of(
    st.tuples(st.just("insert"), _POSITION, _NOISE),
    st.tuples(st.just("replace"), _POSITION, _NOISE),
    st.tuples(st.just("delete"), _POSITION, st.integers(1, 4)),
    st.tuples(st.just("insert_line"), _POSITION, _FRAGMENTS),
    st.tuples(st.just("line_end"), _POSITION, _LINE_ENDS),
    st.tuples(st.just("duplicate_line"), _POSITION, st.none()),
    st.tuples(st.just("swap_case_line"), _POSITION, st.none()),
)


def _line_bounds(data: bytes, position: int) -> tuple[int, int]:
    """Start and end (after its LF, if any) of the line holding ``position``."""
    start = data.rfind(b"\n", 0, position) + 1
    newline = data.find(b"\n", position)
    return start, len(data) if newline == -1 else newline + 1


def mutate(data: bytes, mutation: tuple[str, int, Any]) -> bytes:
    kind, position, arg = mutation
    at = position % (len(data) + 1)
    if kind == "insert":
        return data[:at] + arg + data[at:]
    if kind == "replace":
        return data[:at] + arg + data[at + len(arg) :]
    if kind == "delete":
        return data[:at] + data[at + arg :]
    start, end = _line_bounds(data, at)
    if kind == "insert_line":
        return data[:start] + arg + data[start:]
    if kind == "line_end":  # replace this line's CRLF (or LF) with something else
        line = data[start:end]
        stripped = line.removesuffix(b"\n").removesuffix(b"\r")
        return data[:start] + stripped + arg + data[end:]
    if kind == "duplicate_line":
        return data[:end] + data[start:end] + data[end:]
    assert kind == "swap_case_line"
    return data[:start] + data[start:end].swapcase() + data[end:]


@st.composite
def mutated_corpus(draw: st.DrawFn, max_mutations: int = 4) -> bytes:
    name = draw(st.sampled_from(sorted(CORPUS)))
    data = CORPUS[name]
    for mutation in draw(st.lists(MUTATIONS, max_size=max_mutations)):
        data = mutate(data, mutation)
    return data


#: Where to split a byte stream into receive_data calls (see test_fuzz.cut).
CUTS = st.lists(st.integers(min_value=1, max_value=1 << 16), max_size=8)

# -- strategies: requests with odd framing ---------------------------------------------

# Odd line ends, rarer than CRLF (sampled_from draws uniformly).
_ODD_ENDS = [_CRLF] * 6 + [b"\n", b"\r", b"\r\r\n", b"\n\r", b" \r\n"]

_CL_NAMES = [b"Content-Length", b"content-length", b"CONTENT-LENGTH"]
_CL_NAMES_ODD = [
    b"Content-Length ",
    b"Content-Length\t",
    b" Content-Length",
    b"Content_Length",
    b"Content-Lengt",
    b"X-Content-Length",
    b"Content-Length\x00",
    b"Content\x0bLength",
    b"Content-Length\r",
]
_TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING"]
_TE_NAMES_ODD = [
    b"Transfer-Encoding ",
    b"Transfer-Encoding\t",
    b" Transfer-Encoding",
    b"\tTransfer-Encoding",
    b"Transfer_Encoding",
    b"Transfer-Encodings",
    b"X-Transfer-Encoding",
]
_TE_VALUES = [b"chunked", b"Chunked", b"CHUNKED", b"chunked "]
_TE_VALUES_ODD = [
    b" chunked",
    b"chunked, chunked",
    b"identity, chunked",
    b"chunked, identity",
    b"gzip, chunked",
    b"xchunked",
    b"chunked\x0b",
    b"\x0bchunked",
    b'"chunked"',
    b"chunked;q=1",
    b"chunk",
    b"",
    b"chunked,",
    b",chunked",
    b"chunked\x00",
    b"ch unked",
]
_OWS_AFTER_COLON = [b" ", b"", b"\t", b"  \t"]
_CHUNK_EXTS = [b"", b"", b";a", b";a=b", b' ; q="x;y\\"z"', b";t = tok", b"\t;\ta"]
_CHUNK_EXTS_ODD = [
    b";",
    b";a\rb",
    b";a\nb",
    b";a\x00",
    b'; q="unterminated',
    b";a=",
    b"; =b",
    b";a b",
    b" ",
    b"\t",
    b";a=b ",
]
_SIZE_FORMS = [b"%x", b"%X", b"0%x", b"000%X"]
_SIZE_FORMS_ODD = [
    b"0x%x",
    b"%x ",
    b" %x",
    b"-%x",
    b"+%x",
    b"0000000000000000%x",
    b"%x\x00",
]
_TRAILERS = [b"X-Sum: abc", b"X-Count:  2 ", b"Expires: 0"]
_TRAILERS_ODD = [b"X-Sum : abc", b" folded", b"Bad Name: x", b"X: a\rb", b"no-colon"]
_EXTRA_FIELDS = [
    b"Accept: */*",
    b"X-Thing: v",
    b"Connection: keep-alive",
    b"Connection: close",
    b"Connection: Keep-Alive, Close",
    b"Expect: 100-continue",
    b"Content-Type: text/plain",
    b"Trailer: X-Sum",
    b"Upgrade: websocket",
    b"Cookie: a=1",
]
#: Body bytes that look like framing, to tempt a parser that loses its place.
_BODY_PIECES = st.sampled_from(
    [
        b"a",
        b"xyz",
        b"0",
        b"\r\n",
        b"\n",
        b"0\r\n\r\n",
        b"5\r\n",
        b"GET / HTTP/1.1\r\n",
        b"Host: x\r\n\r\n",
        b";",
    ]
)


@st.composite
def framed_request(draw: st.DrawFn, odd: bool) -> tuple[bytes, Message]:
    """A request with a body framed by Content-Length, chunked or nothing.

    With ``odd=False`` it is well-formed and the ``Message`` is what any correct
    parser reads; with ``odd=True`` names, values, line ends, chunk lines and
    trailers are drawn from spellings that are invalid or ambiguous too, and the
    ``Message`` is only what the generator meant.
    """

    rarity = draw(st.sampled_from([2, 4, 8, 16]))

    def pick(clean: list[bytes], odd_extra: list[bytes]) -> bytes:
        # Each part is odd one time in ``rarity``, so that some requests get through.
        if odd and odd_extra and draw(st.integers(1, rarity)) == 1:
            return draw(st.sampled_from(odd_extra))
        return draw(st.sampled_from(clean))

    def end() -> bytes:
        return pick([_CRLF], _ODD_ENDS)

    version = draw(st.sampled_from([b"HTTP/1.1"] * 3 + [b"HTTP/1.0"]))
    method = draw(
        st.sampled_from([b"POST", b"PUT", b"PATCH", b"GET", b"HEAD", b"DELETE"])
    )
    target = draw(st.sampled_from([b"/a", b"/upload?x=1", b"/p%20q"]))
    body = b"".join(draw(st.lists(_BODY_PIECES, max_size=6)))
    kinds = ["none", "length"] + (["chunked"] if version == b"HTTP/1.1" else [])
    if odd and draw(st.integers(1, rarity)) == 1:  # the usual framings, mostly
        kinds += ["both", "length twice", "chunked twice", "chunked"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        body = b""

    fields: list[bytes] = [
        b"Host:" + pick([b" example.com"], [b"", b" a b", b" x\r\nHost: y"])
    ]
    fields += draw(st.lists(st.sampled_from(_EXTRA_FIELDS), max_size=3, unique=True))

    def length_field() -> bytes:
        n = len(body)
        value = b"%d" % n
        value = pick(
            [value],
            [
                b"0" + value,
                b"%d" % (n + 1),
                b"%d" % max(n - 1, 0),
                b"+" + value,
                b"-" + value,
                value + b"," + value,
                value + b", " + value,
                b"0x%x" % n,
                b"",
                value + b" " + value,
                value + b"\x0b",
                b"1" * 21,
                value + b"\x00",
                b"%d" % (n + 5),
            ],
        )
        return (
            pick(_CL_NAMES, _CL_NAMES_ODD) + b":" + pick(_OWS_AFTER_COLON, []) + value
        )

    def chunked_field() -> bytes:
        return (
            pick(_TE_NAMES, _TE_NAMES_ODD)
            + b":"
            + pick(_OWS_AFTER_COLON, [])
            + pick(_TE_VALUES, _TE_VALUES_ODD)
        )

    framing_fields = {
        "none": [],
        "length": [length_field()],
        "chunked": [chunked_field()],
        "both": [length_field(), chunked_field()],
        "length twice": [length_field(), length_field()],
        "chunked twice": [chunked_field(), chunked_field()],
    }[kind]
    for framing_field in framing_fields:
        fields.insert(draw(st.integers(0, len(fields))), framing_field)
    if (
        odd and draw(st.integers(1, rarity)) == 1
    ):  # an obs-fold continuation line somewhere
        fields.insert(
            draw(st.integers(1, len(fields))),
            draw(st.sampled_from([b" chunked", b"\tx", b" "])),
        )

    data = method + b" " + target + b" " + version + end()
    data += b"".join(f + end() for f in fields) + end()
    trailers: list[bytes] = []
    chunked = kind in ("chunked", "chunked twice") or (
        kind == "both" and draw(st.booleans())
    )
    if chunked:
        cuts = sorted(
            set(draw(st.lists(st.integers(1, max(len(body), 1)), max_size=3)))
        )
        bounds = [0, *[c for c in cuts if c < len(body)], len(body)]
        for a, b in itertools.pairwise(bounds):
            if b == a:
                continue
            size = b - a
            if odd and draw(st.integers(0, 7)) == 0:
                size = max(size + draw(st.sampled_from([-1, 1, 2])), 0)
            data += (
                pick(_SIZE_FORMS, _SIZE_FORMS_ODD) % size
                + pick(_CHUNK_EXTS, _CHUNK_EXTS_ODD)
                + end()
            )
            data += body[a:b] + pick([_CRLF], [*_ODD_ENDS, b"", b"\r\n\r\n"])
        data += pick([b"0", b"00", b"0;end"], [b"0 ", b"0x0", b" 0", b"0" * 17]) + end()
        trailers = draw(
            st.lists(
                st.sampled_from(_TRAILERS + (_TRAILERS_ODD if odd else [])), max_size=2
            )
        )
        data += b"".join(t + end() for t in trailers) + end()
    else:
        data += body

    # What the generator meant (exact when odd=False).
    def parsed(line: bytes) -> tuple[bytes, bytes]:
        name, _, value = line.partition(b":")
        return name.strip().lower(), value.strip(_OWS)

    head = (method, target, version[5:], tuple(parsed(f) for f in fields))
    message = Message(head, body, tuple(parsed(t) for t in trailers))
    return data, message


#: Request B, behind request A: each with a marker A never contains, and what a
#: correct parser reads of it.
NEXT_REQUESTS = [
    (  # RFC 9112 §2.2: empty lines before a request line are ignored
        b"\r\n\r\nDELETE /b HTTP/1.1\r\nHost: b.example\r\n\r\n",
        Message((b"DELETE", b"/b", b"1.1", ((b"host", b"b.example"),)), b"", ()),
    ),
    (
        b"GET /b?marker=1 HTTP/1.1\r\nHost: b.example\r\nX-Marker: B\r\n\r\n",
        Message(
            (
                b"GET",
                b"/b?marker=1",
                b"1.1",
                ((b"host", b"b.example"), (b"x-marker", b"B")),
            ),
            b"",
            (),
        ),
    ),
    (
        b"POST /b HTTP/1.1\r\nHost: b.example\r\nContent-Length: 2\r\n\r\nok",
        Message(
            (
                b"POST",
                b"/b",
                b"1.1",
                ((b"host", b"b.example"), (b"content-length", b"2")),
            ),
            b"ok",
            (),
        ),
    ),
    (
        b"PUT /b HTTP/1.1\r\nHost: b.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        Message(
            (
                b"PUT",
                b"/b",
                b"1.1",
                ((b"host", b"b.example"), (b"transfer-encoding", b"chunked")),
            ),
            b"ok",
            (),
        ),
    ),
]
#: An index into NEXT_REQUESTS.
next_request = st.sampled_from(range(len(NEXT_REQUESTS)))


# -- strategies: requests for the environ builder --------------------------------------

_UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_PATH_CHAR = st.sampled_from(list(_UNRESERVED + _SUB_DELIMS + ":@"))
_ESCAPE = st.tuples(st.integers(0, 255), st.booleans()).map(
    lambda t: ("%%%02X" if t[1] else "%%%02x") % t[0]
)
_BAD_ESCAPE = st.sampled_from(["%", "%4", "%zz", "%G1", "%%", "%2"])
_SEGMENT = st.one_of(
    st.sampled_from(["api", "a", "caf%C3%A9", "%2F", "..", ".", "", "%00", "%25"]),
    st.lists(st.one_of(_PATH_CHAR, _ESCAPE, _BAD_ESCAPE), max_size=6).map("".join),
)
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
# The query is passed on undecoded: any visible ASCII (h11 takes nothing else in a
# target), with escapes and a rare byte h11 refuses.
_QUERY = st.lists(
    st.one_of(st.sampled_from([chr(c) for c in range(0x21, 0x7F)] + ["\x80"]), _ESCAPE),
    max_size=10,
).map("".join)
_HOST_NAMES = st.sampled_from(
    [
        "example.com",
        "Example.COM",
        "a-b.example.",
        "my_host",
        "127.0.0.1",
        "[::1]",
        "[2001:db8::1]",
        "[fe80::1%25eth0]",
        "xn--caf-dma.example",
        "%41b",
        "",
    ]
)
_PORTS = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "80", "8080", "08080", "65535", "65536", "99999"]),
)
_NAME_PARTS = st.sampled_from(
    ["x", "auth", "user", "forwarded", "for", "a1", "Request", "ID"]
)
_HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "Accept",
            "accept",
            "Cookie",
            "cookie",
            "Content-Type",
            "X-Forwarded-For",
            "X_Forwarded_For",
            "x-forwarded_for",
            "User-Agent",
            "Connection",
            "X-Auth-User",
            "X-Auth_User",
        ]
    ),
    st.lists(st.tuples(_NAME_PARTS, st.sampled_from("-_")), min_size=1, max_size=3).map(
        lambda parts: "".join(p + s for p, s in parts)[:-1]
    ),
)
_VALUE_CHARS = st.sampled_from(
    [chr(c) for c in range(0x21, 0x7F)] + [" ", "\t", "\xe9", "\xff", "\x80"]
)
_HEADER_VALUES = st.lists(_VALUE_CHARS, max_size=8).map(
    lambda cs: "".join(cs).strip(" \t")
)


@dataclass
class EnvironCase:
    data: bytes
    method: str
    target: bytes
    version: str
    fields: list[tuple[str, str]]  # as sent, Host included
    #: (name, port) of the Host field or the absolute-form authority that decides
    #: SERVER_NAME/SERVER_PORT; None when there is neither.
    server: tuple[str, str | None] | None


@st.composite
def environ_cases(draw: st.DrawFn) -> EnvironCase:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    form = draw(st.sampled_from(["origin", "origin", "origin", "absolute", "asterisk"]))
    method = (
        "OPTIONS"
        if form == "asterisk"
        else draw(st.sampled_from(["GET", "POST", "HEAD", "DELETE", "PROPFIND"]))
    )
    path = draw(_PATH)
    query = draw(st.one_of(st.none(), _QUERY))
    rest = path + ("" if query is None else "?" + query)
    host = draw(_HOST_NAMES), draw(_PORTS)
    host_value = host[0] + ("" if host[1] is None else ":" + host[1])
    server: tuple[str, str | None] | None = host
    if form == "asterisk":
        target = "*"
    elif form == "absolute":
        scheme = draw(st.sampled_from(["http", "https", "HTTP", "hTtPs"]))
        authority = draw(_HOST_NAMES.filter(bool)), draw(_PORTS)
        userinfo = draw(st.sampled_from(["", "", "user@", "user:pw@"]))
        tail = draw(st.sampled_from([rest, rest, "", "?" + (query or "")]))
        target = (
            f"{scheme}://{userinfo}{authority[0]}"
            + ("" if authority[1] is None else ":" + authority[1])
            + tail
        )
        server = authority
    else:
        target = rest
    fields = [
        (name, draw(_HEADER_VALUES))
        for name in draw(st.lists(_HEADER_NAMES, max_size=6))
    ]
    if version == "HTTP/1.1" or draw(st.booleans()):
        fields.insert(
            draw(st.integers(0, len(fields))),
            (draw(st.sampled_from(["Host", "host", "HOST"])), host_value),
        )
    elif form != "absolute":
        server = None
    lines = [f"{method} {target} {version}"] + [f"{n}: {v}" for n, v in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return EnvironCase(data, method, target.encode("latin-1"), version, fields, server)
