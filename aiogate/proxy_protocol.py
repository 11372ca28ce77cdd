"""The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer puts
before the first byte of a connection to say who the client is.

Owns: ``ProxyHeaderReader`` (bytes in, one ``ProxyHeader`` out, the bytes after it
kept for HTTP), ``ProxyHeader``, ``Family`` and the size limits. Sans-IO and pure:
it raises ``ProtocolError`` for a header it will not accept and never logs. Runs on
the event loop, one reader per connection, fed by ``proxied.ProxiedH11Protocol``
(or ``proxied.ProxiedTLSGate``, before a TLS handshake) until the header is whole.

The format is https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt ("the
spec" below). Decisions:

1. The header is the first thing on the connection: the first bytes must be a
   prefix of ``PROXY `` (version 1) or of the 12-byte version 2 signature, or the
   connection is refused at once, without waiting for more (spec §2: a receiver
   "must not try to guess" whether a header is there).
2. Version 1 is one line of at most ``V1_MAX_SIZE`` (107) bytes, CRLF included
   (spec §2.1). ``TCP4`` and ``TCP6`` carry four fields separated by single
   spaces, addresses in their canonical forms (``ipaddress`` parses them: no
   leading zeros in IPv4), ports 0-65535 in decimal without leading zeros.
   An IPv4-mapped IPv6 address is written as IPv4 (``forwarded.parse_ip``'s
   spelling, which the trust list matches). ``UNKNOWN`` may carry anything up to
   the CRLF, which is ignored (spec: "the receiver must ignore anything presented
   before the CRLF").
3. Version 2 is a 16-byte block and ``length`` more bytes (spec §2.2): version
   nibble 2, command LOCAL (0) or PROXY (1); for PROXY, family
   UNSPEC/INET/INET6/UNIX (0-3) with transport UNSPEC/STREAM/DGRAM (0-2);
   anything else is refused. LOCAL's block is skipped unread, as the spec says.
   For PROXY the length must hold the family's addresses (12, 36 or 216 bytes).
   It is capped at
   ``V2_MAX_SIZE`` in all, far above what HAProxy, AWS NLB or Azure send (their
   TLVs are tens of bytes), instead of the format's 64 KiB.
4. The TLVs after PROXY's addresses are checked to tile the rest of the header (a TLV
   that runs past the end is a malformed header) and otherwise skipped: none of
   them (ALPN, the TLS details, AWS's VPC endpoint ID, CRC32C) is used.
5. What the header says about the client (``ProxyHeader.client``): an (address,
   port) pair for TCP over IPv4 and IPv6, the socket path for UNIX (up to its
   first NUL, latin-1 as an environ string), or None to keep the socket's own
   peer: version 1 ``UNKNOWN``, version 2 ``LOCAL`` (the proxy's own health
   checks) and ``UNSPEC`` (spec: the receiver may use the real addresses).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final, Literal

from .errors import ProtocolError

if TYPE_CHECKING:
    from ._types import Address

__all__ = [
    "V1_MAX_SIZE",
    "V1_MIN_SIZE",
    "V2_MAX_SIZE",
    "V2_SIGNATURE",
    "Family",
    "ProxyHeader",
    "ProxyHeaderReader",
]

#: Spec §2.1: "a receiver may reject an incomplete line which does not contain the
#: CRLF sequence in the first 107 characters" (the longest TCP6 line, CRLF included).
V1_MAX_SIZE: Final = 107
#: The shortest version 1 line, ``PROXY UNKNOWN\r\n`` (a version 2 header has 16
#: bytes at least).
V1_MIN_SIZE: Final = 15
_V1_PREFIX: Final = b"PROXY "
#: Spec §2.2: the 12 bytes that start a version 2 header (``\r\n\r\n\0\r\nQUIT\n``).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED: Final = 16  # signature, version and command, family, length
#: The largest version 2 header we take, fixed part included (decision 3). HAProxy
#: with every TLS TLV on sends a few hundred bytes; 4 KiB leaves room for a client
#: certificate's subject and the like without letting a peer make us buffer 64 KiB.
V2_MAX_SIZE: Final = 4096
# Spec §2.2: the size of the address block of each family (INET, INET6, UNIX).
_V2_ADDRESS_SIZE: Final = {1: 12, 2: 36, 3: 216}
_UNIX_PATH_SIZE: Final = 108


class Family(Enum):
    """What the header says the client's connection was."""

    TCP4 = "TCP4"  # v1 TCP4, v2 INET
    TCP6 = "TCP6"  # v1 TCP6, v2 INET6
    UNIX = "UNIX"  # v2 UNIX
    UNKNOWN = "UNKNOWN"  # v1 UNKNOWN, v2 UNSPEC: keep the socket's peer
    LOCAL = "LOCAL"  # v2 LOCAL: the proxy itself speaking; keep the socket's peer


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One accepted PROXY header."""

    version: Literal[1, 2]
    family: Family
    #: The client (decision 5); None: the socket's own peer stays the client.
    client: Address | None
    #: Where the client connected to, at the proxy (None when ``client`` is None).
    server: Address | None
    #: Bytes the header took on the wire.
    size: int


class ProxyHeaderReader:
    """Collects the first bytes of a connection until they make a whole header.

    ``feed`` returns None while more bytes are needed and the ``ProxyHeader`` once
    it is whole; then ``rest`` holds the bytes that came after it, for HTTP. A
    header that cannot be accepted raises ``ProtocolError`` (and the caller closes
    the connection: there is no HTTP yet to answer with)."""

    __slots__ = ("_buf", "header", "rest")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.header: ProxyHeader | None = None
        self.rest = b""

    @property
    def started(self) -> bool:
        """Some bytes of a header are here (a close now cuts one short)."""
        return bool(self._buf)

    @property
    def bytes_needed(self) -> int:
        """How many more bytes the header needs at least (1 or more until it is
        whole): a reader that takes no more than this never takes a byte of what
        follows the header, such as a TLS handshake (``proxied.ProxiedTLSGate``)."""
        buf = self._buf
        if buf[:1] == b"\r":  # version 2: 16 bytes, then exactly their length
            if len(buf) < _V2_FIXED:
                return _V2_FIXED - len(buf)
            return max(1, _V2_FIXED + int.from_bytes(buf[14:16], "big") - len(buf))
        # Version 1 (or nothing yet, and version 2 is longer): its shortest line.
        return max(1, V1_MIN_SIZE - len(buf))

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add received bytes; the header once whole, else None."""
        if self.header is not None:
            raise RuntimeError("the PROXY header is complete already")
        buf = self._buf
        buf += data
        if buf[:1] == b"P":
            if not _V1_PREFIX.startswith(bytes(buf[:6])):
                raise ProtocolError("not a PROXY protocol header")
            header = _parse_v1(buf)
        elif buf[:1] == b"\r":
            if not V2_SIGNATURE.startswith(bytes(buf[:12])):
                raise ProtocolError("not a PROXY protocol header")
            header = _parse_v2(buf)
        elif buf:
            raise ProtocolError("not a PROXY protocol header")
        else:
            header = None
        if header is not None:
            self.header = header
            self.rest = bytes(buf[header.size :])
            buf.clear()
        return header


# -- version 1 -----------------------------------------------------------------------


def _parse_v1(buf: bytearray) -> ProxyHeader | None:
    end = buf.find(b"\r\n", 0, V1_MAX_SIZE)
    if end < 0:
        if len(buf) >= V1_MAX_SIZE:
            raise ProtocolError(f"PROXY v1 line longer than {V1_MAX_SIZE} bytes")
        if b"\n" in buf:  # a bare LF would never be followed by the CRLF we need
            raise ProtocolError("PROXY v1 line not ended by CRLF")
        return None
    line = bytes(buf[:end])
    # Spec §2.1: US-ASCII, fields separated by exactly one space.
    if not all(0x20 <= byte < 0x7F for byte in line):
        raise ProtocolError("PROXY v1 line with a control or non-ASCII byte")
    size = end + 2
    fields = line.split(b" ")
    protocol = fields[1] if len(fields) > 1 else b""
    if protocol == b"UNKNOWN":
        return ProxyHeader(1, Family.UNKNOWN, None, None, size)
    if protocol not in (b"TCP4", b"TCP6"):
        raise ProtocolError(f"PROXY v1 protocol {protocol[:16]!r} is not known")
    if len(fields) != 6:
        raise ProtocolError("PROXY v1 line must have 6 space-separated fields")
    family = Family.TCP4 if protocol == b"TCP4" else Family.TCP6
    kind = ipaddress.IPv4Address if family is Family.TCP4 else ipaddress.IPv6Address
    try:
        if b"%" in fields[2] or b"%" in fields[3]:  # a zone id means nothing here
            raise ValueError
        source = kind(fields[2].decode("ascii"))
        destination = kind(fields[3].decode("ascii"))
    except ValueError:
        raise ProtocolError(
            f"PROXY v1 {protocol.decode()} address is not valid"
        ) from None
    client = (_text(source), _v1_port(fields[4]))
    server = (_text(destination), _v1_port(fields[5]))
    return ProxyHeader(1, family, client, server, size)


def _v1_port(text: bytes) -> int:
    if (
        not (text.isdigit() and len(text) <= 5 and (text == b"0" or text[:1] != b"0"))
        or int(text) > 65535
    ):
        raise ProtocolError(f"PROXY v1 port {text[:8]!r} is not valid")
    return int(text)


# -- version 2 -----------------------------------------------------------------------


def _parse_v2(buf: bytearray) -> ProxyHeader | None:
    if len(buf) < _V2_FIXED:
        return None
    version_command, family_transport = buf[12], buf[13]
    length = int.from_bytes(buf[14:16], "big")
    if version_command >> 4 != 2:
        raise ProtocolError(f"PROXY v2 version {version_command >> 4} is not 2")
    command = version_command & 0x0F
    if command > 1:
        raise ProtocolError(f"PROXY v2 command {command} is not LOCAL or PROXY")
    size = _V2_FIXED + length
    if size > V2_MAX_SIZE:
        raise ProtocolError(f"PROXY v2 header larger than {V2_MAX_SIZE} bytes")
    if command == 0:
        # Spec §2.2: for LOCAL the receiver "must discard the protocol block
        # including the family", so nothing after the length is looked at.
        return (
            ProxyHeader(2, Family.LOCAL, None, None, size) if len(buf) >= size else None
        )
    address_family, transport = family_transport >> 4, family_transport & 0x0F
    if address_family > 3 or transport > 2:
        raise ProtocolError(f"PROXY v2 family byte {family_transport:#04x} unknown")
    needed = _V2_ADDRESS_SIZE.get(address_family, 0)
    if length < needed:
        raise ProtocolError("PROXY v2 header too short for its addresses")
    if len(buf) < size:
        return None
    body = bytes(buf[_V2_FIXED:size])
    _check_tlvs(body[needed:])
    if address_family == 0:
        return ProxyHeader(2, Family.UNKNOWN, None, None, size)
    if address_family == 1:
        client: Address = (str(ipaddress.IPv4Address(body[0:4])), _port(body, 8))
        server: Address = (str(ipaddress.IPv4Address(body[4:8])), _port(body, 10))
        return ProxyHeader(2, Family.TCP4, client, server, size)
    if address_family == 2:
        client = (_text(ipaddress.IPv6Address(body[0:16])), _port(body, 32))
        server = (_text(ipaddress.IPv6Address(body[16:32])), _port(body, 34))
        return ProxyHeader(2, Family.TCP6, client, server, size)
    client = _unix_path(body[:_UNIX_PATH_SIZE])
    server = _unix_path(body[_UNIX_PATH_SIZE : 2 * _UNIX_PATH_SIZE])
    return ProxyHeader(2, Family.UNIX, client, server, size)


def _text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as ``forwarded.parse_ip`` writes one, so that trust checks and
    logs see one spelling: an IPv4-mapped IPv6 address as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _port(body: bytes, offset: int) -> int:
    return int.from_bytes(body[offset : offset + 2], "big")


def _unix_path(raw: bytes) -> str:
    """A socket path as the environ holds one: up to the first NUL, latin-1 (an
    unnamed or abstract socket gives ``""``, as asyncio's peername does)."""
    return raw.partition(b"\x00")[0].decode("latin-1")


def _check_tlvs(tlvs: bytes) -> None:
    """Decision 4: type (1 byte), length (2 bytes, big-endian), value; back to back
    to the end of the header."""
    offset = 0
    while offset < len(tlvs):
        if offset + 3 > len(tlvs):
            raise ProtocolError("PROXY v2 TLV cut short")
        offset += 3 + int.from_bytes(tlvs[offset + 1 : offset + 3], "big")
        if offset > len(tlvs):
            raise ProtocolError("PROXY v2 TLV longer than the header")
