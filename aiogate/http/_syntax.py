"""The request grammar the core checks against, and how it reports a violation.

Owns: the character sets and patterns of RFC 9110 and RFC 9112 that more than one
part of the core needs (tokens, the HTTP version, Host), and ``error``/``show``, which
turn a violation into a ``ProtocolError`` with a short, printable excerpt of the
client's bytes. Pure data and functions: no state, any thread.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import ProtocolError

# RFC 9110 §5.6.2: tchar. A request line starts with a method, which is a token; a
# first byte that cannot start one (a TLS ClientHello starts with 0x16) fails at once
# rather than after limit_request_line bytes or a timeout (h11 checks for < 0x21).
TCHAR: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789" + bytes(range(65, 91)) + bytes(range(97, 123))
)
HEXDIG: Final = frozenset(b"0123456789abcdefABCDEF")
SP: Final = 32
HTAB: Final = 9
CR: Final = 13
LF: Final = 10

TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE.
QUOTED: Final = (
    rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
)

# RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host from RFC 3986 §3.2.2
# (IP-literal with an RFC 6874 zone, IPvFuture, IPv4address or reg-name). Empty is
# allowed (a target URI without authority).
HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25(?:[-._~0-9A-Za-z]|%[0-9A-Fa-f]{2})+)?\]"
    rb"|\[[vV][0-9A-Fa-f]+\.[-._~0-9A-Za-z!$&'()*+,;=:]+\]"
    rb"|(?:[-._~0-9A-Za-z!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
# The usual name[:port], checked twice as fast as with HOST_RE (which it implies).
SIMPLE_HOST_RE: Final = re.compile(rb"[-.0-9a-z]*(?::[0-9]*)?")


def error(message: str, status: int = 400) -> ProtocolError:
    return ProtocolError(message, status)


def show(data: bytes | bytearray, limit: int = 40) -> str:
    """A short printable rendering of client bytes for an error message."""
    text = repr(bytes(data[:limit]))
    return text + "..." if len(data) > limit else text
