"""The PROXY protocol header reader (aiogate.proxy_protocol), sans-IO: bytes in,
a header or an error out, whole and one byte at a time."""

from __future__ import annotations

import socket
import struct

import pytest

from aiogate.errors import ProtocolError
from aiogate.proxy_protocol import (
    V1_MAX_SIZE,
    V1_MIN_SIZE,
    V2_MAX_SIZE,
    V2_SIGNATURE,
    Family,
    ProxyHeader,
    ProxyHeaderReader,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(
    command: int = 1,
    family: int = 1,
    transport: int = 1,
    addresses: bytes = b"",
    tlvs: bytes = b"",
    *,
    length: int | None = None,
    version: int = 2,
) -> bytes:
    body = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([version << 4 | command, family << 4 | transport])
        + struct.pack(">H", len(body) if length is None else length)
        + body
    )


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET, src)
        + socket.inet_pton(socket.AF_INET, dst)
        + struct.pack(">HH", sport, dport)
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack(">HH", sport, dport)
    )


def unix(src: bytes, dst: bytes) -> bytes:
    return src.ljust(108, b"\0") + dst.ljust(108, b"\0")


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def read_whole(data: bytes) -> tuple[ProxyHeader | None, bytes]:
    reader = ProxyHeaderReader()
    header = reader.feed(data)
    return header, reader.rest


def read_bytewise(data: bytes) -> tuple[ProxyHeader | None, bytes]:
    """One byte at a time; once the header is whole, the rest stays unread."""
    reader = ProxyHeaderReader()
    for index in range(len(data)):
        header = reader.feed(data[index : index + 1])
        if header is not None:
            assert reader.rest == b""
            return header, data[index + 1 :]
    return None, b""


READERS = [read_whole, read_bytewise]

# (version, family, client, server): the header's size is the length of its bytes.
Header = tuple[int, Family, object, object]
TLVS = (
    tlv(0x01, b"h2")  # ALPN
    + tlv(0xEA, b"\x01vpce-0123456789abcdef")  # AWS VPC endpoint id
    + tlv(0x04, b"")  # NOOP, empty
    + tlv(0x20, b"\x01" + b"\0" * 4 + tlv(0x21, b"TLSv1.3"))  # SSL, with a sub-TLV
)
FFFF = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

VALID: list[tuple[str, bytes, Header]] = [
    (
        "v1-tcp4",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        (1, Family.TCP4, ("192.0.2.1", 56324), ("198.51.100.2", 443)),
    ),
    (
        "v1-tcp6",
        b"PROXY TCP6 2001:DB8::1 2001:db8:0:0:0:0:0:2 65535 0\r\n",
        (1, Family.TCP6, ("2001:db8::1", 65535), ("2001:db8::2", 0)),
    ),
    (
        "v1-tcp6-mapped",  # as IPv4, the spelling the trust list matches
        b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n",
        (1, Family.TCP6, ("10.0.0.1", 1), ("::1", 2)),
    ),
    ("v1-unknown", b"PROXY UNKNOWN\r\n", (1, Family.UNKNOWN, None, None)),
    (
        "v1-unknown-with-anything",  # ignored up to the CRLF
        b"PROXY UNKNOWN ffff::1 whatever 1 2\r\n",
        (1, Family.UNKNOWN, None, None),
    ),
    (
        "v1-longest-tcp6",
        f"PROXY TCP6 {FFFF} {FFFF} 65535 65535\r\n".encode(),
        (1, Family.TCP6, (FFFF, 65535), (FFFF, 65535)),
    ),
    (
        "v1-longest",  # the spec's worst case: exactly 107 bytes
        f"PROXY UNKNOWN {FFFF} {FFFF} 65535 65535\r\n".encode(),
        (1, Family.UNKNOWN, None, None),
    ),
    (
        "v2-inet",
        v2(addresses=inet("203.0.113.7", "10.0.0.1", 40000, 80)),
        (2, Family.TCP4, ("203.0.113.7", 40000), ("10.0.0.1", 80)),
    ),
    (
        "v2-inet6",
        v2(family=2, addresses=inet6("2001:db8::7", "::1", 1, 65535)),
        (2, Family.TCP6, ("2001:db8::7", 1), ("::1", 65535)),
    ),
    (
        "v2-inet6-mapped",
        v2(family=2, addresses=inet6("::ffff:192.0.2.9", "::1", 5, 6)),
        (2, Family.TCP6, ("192.0.2.9", 5), ("::1", 6)),
    ),
    (
        "v2-unix",
        v2(family=3, addresses=unix(b"/run/client.sock", b"/run/app.sock")),
        (2, Family.UNIX, "/run/client.sock", "/run/app.sock"),
    ),
    (
        "v2-unix-unnamed",
        v2(family=3, addresses=unix(b"", b"\0abstract")),
        (2, Family.UNIX, "", ""),
    ),
    (
        "v2-local",  # the proxy's own health check: addresses ignored
        v2(command=0, addresses=inet("1.2.3.4", "5.6.7.8", 1, 2)),
        (2, Family.LOCAL, None, None),
    ),
    (
        "v2-local-block-discarded",  # whatever follows LOCAL's length is skipped
        v2(command=0, family=4, transport=7, addresses=b"\xff" * 5),
        (2, Family.LOCAL, None, None),
    ),
    (
        "v2-local-unspec",
        v2(command=0, family=0, transport=0),
        (2, Family.LOCAL, None, None),
    ),
    (
        "v2-proxy-unspec",  # an unsupported family: keep the socket's peer
        v2(family=0, transport=0, tlvs=tlv(0x04, b"")),
        (2, Family.UNKNOWN, None, None),
    ),
    (
        "v2-tlvs-skipped",
        v2(addresses=inet("198.51.100.1", "10.0.0.1", 1234, 443), tlvs=TLVS),
        (2, Family.TCP4, ("198.51.100.1", 1234), ("10.0.0.1", 443)),
    ),
    (
        "v2-tlvs-skipped-inet6",
        v2(family=2, addresses=inet6("2001:db8::1", "::1", 1, 2), tlvs=TLVS),
        (2, Family.TCP6, ("2001:db8::1", 1), ("::1", 2)),
    ),
    (
        "v2-largest",
        v2(
            addresses=inet("1.2.3.4", "5.6.7.8", 1, 2),
            tlvs=tlv(0x04, b"\0" * (V2_MAX_SIZE - 16 - 12 - 3)),
        ),
        (2, Family.TCP4, ("1.2.3.4", 1), ("5.6.7.8", 2)),
    ),
]


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    ("data", "expected"), [row[1:] for row in VALID], ids=[row[0] for row in VALID]
)
def test_valid_headers(read, data: bytes, expected: Header) -> None:  # type: ignore[no-untyped-def]
    expected_header = ProxyHeader(*expected, size=len(data))  # type: ignore[arg-type]
    assert read(data) == (expected_header, b"")
    # What follows the header, in the same segment, is HTTP's, unchanged.
    assert read(data + REQUEST) == (expected_header, REQUEST)


def test_the_largest_valid_headers_are_the_limits() -> None:
    sizes = {name: len(data) for name, data, _ in VALID}
    assert sizes["v1-longest"] == V1_MAX_SIZE
    assert sizes["v2-largest"] == V2_MAX_SIZE


INVALID: list[tuple[str, bytes]] = [
    ("http-request", REQUEST),
    ("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ("lower-case", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-no-space", b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-unknown-protocol", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-no-protocol", b"PROXY \r\n"),
    ("v1-too-few-fields", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
    ("v1-too-many-fields", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
    ("v1-double-space", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
    ("v1-trailing-space", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
    ("v1-tcp4-with-ipv6", b"PROXY TCP4 ::1 ::1 1 2\r\n"),
    ("v1-tcp6-with-ipv4", b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-ipv4-leading-zero", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-ipv4-bad", b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),
    ("v1-hostname", b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n"),
    ("v1-ipv6-zone", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
    ("v1-port-too-big", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
    ("v1-port-leading-zero", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"),
    ("v1-port-sign", b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n"),
    ("v1-port-empty", b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n"),
    ("v1-bare-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
    ("v1-control-byte", b"PROXY UNKNOWN \x00\r\n"),
    ("v1-non-ascii", b"PROXY UNKNOWN \xff\r\n"),
    ("v1-too-long", b"PROXY UNKNOWN " + b"x" * (V1_MAX_SIZE - 14) + b"\r\n"),
    ("v1-no-crlf-in-107", b"PROXY UNKNOWN " + b"x" * 200),
    ("v2-signature-wrong", V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c"),
    ("v2-version-1", v2(version=1, addresses=inet("1.2.3.4", "5.6.7.8", 1, 2))),
    ("v2-version-3", v2(version=3, addresses=inet("1.2.3.4", "5.6.7.8", 1, 2))),
    ("v2-command-2", v2(command=2, addresses=inet("1.2.3.4", "5.6.7.8", 1, 2))),
    ("v2-family-4", v2(family=4)),
    ("v2-transport-3", v2(transport=3, addresses=inet("1.2.3.4", "5.6.7.8", 1, 2))),
    ("v2-inet-too-short", v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2)[:11])),
    ("v2-inet6-too-short", v2(family=2, addresses=b"\0" * 35)),
    ("v2-unix-too-short", v2(family=3, addresses=b"\0" * 215)),
    ("v2-too-large", v2(length=V2_MAX_SIZE - 16 + 1)),
    ("v2-local-too-large", v2(command=0, length=V2_MAX_SIZE - 16 + 1)),
    ("v2-largest-length", v2(length=0xFFFF)),
    (
        "v2-tlv-cut-short",
        v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2), tlvs=b"\x01\x00"),
    ),
    (
        "v2-tlv-too-long",
        v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2), tlvs=b"\x01\x00\x05abcd"),
    ),
]


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "data", [row[1] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_malformed_headers_are_refused(read, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError):
        read(data + REQUEST)


@pytest.mark.parametrize(
    "first",
    [b"G", b"\x16", b"\r\n\r\n\x00\r\nQUIX", b"PROXX", b"\x00", b" "],
)
def test_a_connection_that_cannot_start_a_header_is_refused_at_once(
    first: bytes,
) -> None:
    """No waiting for more bytes once the first ones cannot begin a header."""
    with pytest.raises(ProtocolError):
        ProxyHeaderReader().feed(first)


@pytest.mark.parametrize(
    "data",
    [row[1] for row in VALID],
    ids=[row[0] for row in VALID],
)
def test_every_proper_prefix_asks_for_more(data: bytes) -> None:
    reader = ProxyHeaderReader()
    assert not reader.started
    for end in range(1, len(data)):
        assert ProxyHeaderReader().feed(data[:end]) is None
    assert reader.feed(b"") is None
    assert not reader.started
    assert reader.feed(data[:1]) is None
    assert reader.started


def test_v2_length_is_checked_before_the_bytes_arrive() -> None:
    """An oversized v2 header is refused from its 16 fixed bytes, not buffered."""
    with pytest.raises(ProtocolError, match="larger than"):
        ProxyHeaderReader().feed(v2(length=0xFFFF)[:16])


def test_v1_without_crlf_is_refused_at_107_bytes() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY UNKNOWN " + b"x" * (V1_MAX_SIZE - 15)) is None
    with pytest.raises(ProtocolError, match="longer than 107"):
        reader.feed(b"x")


def test_feeding_after_the_header_is_a_bug() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(RuntimeError):
        reader.feed(REQUEST)


@pytest.mark.parametrize(
    "data", [row[1] for row in VALID], ids=[row[0] for row in VALID]
)
def test_reading_bytes_needed_at_a_time_never_reads_past_the_header(
    data: bytes,
) -> None:
    """What a reader that must leave the bytes after the header unread (a TLS
    handshake follows) relies on: it reads exactly the header, in few reads."""
    reader = ProxyHeaderReader()
    stream = data + b"\x16\x03\x01 a TLS ClientHello"
    offset = reads = 0
    header = None
    while header is None:
        needed = reader.bytes_needed
        assert needed >= 1
        header = reader.feed(stream[offset : offset + needed])
        offset += needed
        reads += 1
    assert offset == len(data)
    assert reader.rest == b""
    if data.startswith(V2_SIGNATURE):
        assert reads <= 3  # 15 + 1 fixed bytes, then the rest at once
    else:
        assert reads <= 1 + len(data) - V1_MIN_SIZE
