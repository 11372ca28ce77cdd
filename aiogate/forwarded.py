"""The proxy headers themselves: which ones there are, and the syntax of their values.

Owns: the list of headers by which a proxy says who the client is, how it connected or
where the request was sent (``PROXY_ENVIRON_KEYS``, as environ keys), and the reading
of one header value, with no notion of whom to believe: a comma-separated list
(``split_list``), an RFC 7239 ``Forwarded`` element and its quoted strings
(``parse_element``), an entry of the for-chain (``parse_node``) and the IP address in
it (``parse_ip``, also used on the peer's address), and the checks of a scheme, port,
host and path prefix (``valid_proto``, ``valid_port``, ``split_host``,
``valid_prefix``). Which peers may send these headers, which hop names the client, and
what the values change in the environ is ``proxy_headers``'s business: it is the one
caller of these functions, and it re-exports ``PROXY_ENVIRON_KEYS``.

Sans-IO and pure: a string in, a value or None out; no I/O, no logging, no locks, no
caches. It runs wherever ``resolve`` runs: in a worker thread, for every request that
carries a proxy header.

Decisions (``proxy_headers`` has the rest, and the projects studied):

- **Values are validated; an invalid one is ignored, never propagated.** A scheme is
  ``http`` or ``https`` (any case, returned lowercase). A host is ``name[:port]`` with
  ``name`` made of ASCII letters, digits and ``-._~`` or a bracketed IPv6 literal, so
  no spaces, ``/``, ``@``, ``\\`` or commas reach ``HTTP_HOST``. A port is 1-65535 in
  ASCII digits. A prefix starts with one ``/`` (``//evil.example`` would be read by
  browsers as another host), has no ``.``/``..`` segment, no ``%`` (``%2e%2e``), no
  ``\\``, ``?``, ``#``, space or control character; its trailing ``/`` is dropped, so
  ``/`` gives ``SCRIPT_NAME == ""`` (werkzeug does the same).
- **An address read from a header is given back normalized**: IPv4 dotted, IPv6
  compressed and lowercase, a mapped address (``::ffff:127.0.0.1``) as plain IPv4.
- **``Forwarded`` parsing** follows RFC 7239 §4: elements separated by ``,`` (repeated
  header lines arrive joined with ``,``, which is the same list), pairs by ``;``,
  case-insensitive parameter names, token or quoted-string values with ``\\`` escapes,
  each parameter at most once per element. ``by=`` and extension parameters are
  parsed and not used. Two deliberate deviations: the list is split at every ``,``
  and ``;`` *before* quoted strings are read, so a quoted value containing either is
  a malformed element (no ``for``/``by``/``host``/``proto`` value can contain one),
  and an unterminated quote written by a client cannot swallow the elements our
  trusted proxies appended after it. And unquoted values may contain ``:``, ``[`` and
  ``]`` (``for=[::1]:80``, ``host=example.com:8080``), a common mistake that is
  harmless because every value is validated afterwards.
- **Empty list elements** (``, 1.2.3.4`` from a proxy appending to an empty header) are
  dropped, as RFC 9110 §5.6.1 asks of list recipients; they do not end the walk.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = [
    "DEFAULT_PORTS",
    "IP",
    "PROXY_ENVIRON_KEYS",
    "Node",
    "parse_element",
    "parse_ip",
    "parse_node",
    "split_host",
    "split_list",
    "valid_port",
    "valid_prefix",
    "valid_proto",
]

#: The environ keys of the headers by which a proxy says who the client is, how it
#: connected, or where the request was sent: every header ``proxy_headers.resolve``
#: reads, in either mode, and the others that apps and their libraries take on trust. A
#: request whose peer is not trusted must not carry any of them to the app. Test
#: membership with ``isdisjoint``/``intersection`` against the environ: one C-level
#: pass over its keys, whatever the length of this set.
PROXY_ENVIRON_KEYS: Final = frozenset(
    {
        # Read by resolve (X-Forwarded-* mode, RFC 7239 mode).
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PORT",
        "HTTP_X_FORWARDED_PREFIX",
        "HTTP_X_FORWARDED_PROTO",
        # The client's address. The first nine are in the default list of
        # python-ipware/django-ipware (so of django-axes and others), the usual
        # source of "the client IP" in Django apps; the rest are set by the
        # platforms named, and read by code written for them.
        "HTTP_X_REAL_IP",  # nginx convention (ngx_http_realip)
        "HTTP_CLIENT_IP",  # also Rails' RemoteIp
        "HTTP_X_CLIENT_IP",  # Azure
        "HTTP_TRUE_CLIENT_IP",  # Akamai, Cloudflare Enterprise
        "HTTP_CF_CONNECTING_IP",  # Cloudflare
        "HTTP_FASTLY_CLIENT_IP",  # Fastly, Firebase Hosting
        "HTTP_X_CLUSTER_CLIENT_IP",  # Rackspace, Riverbed Stingray
        "HTTP_X_FORWARDED",  # Squid and others
        "HTTP_FORWARDED_FOR",  # a pre-RFC 7239 spelling
        "HTTP_X_APPENGINE_USER_IP",  # Google App Engine
        "HTTP_X_PROXYUSER_IP",  # Google
        "HTTP_X_ORIGINAL_FORWARDED_FOR",  # ingress-nginx: the X-F-F it received
        "HTTP_X_ENVOY_EXTERNAL_ADDRESS",  # Envoy, Istio
        # The scheme ("is it HTTPS?").
        "HTTP_X_FORWARDED_PROTOCOL",  # gunicorn's secure_scheme_headers ("ssl")
        "HTTP_X_FORWARDED_SSL",  # gunicorn's secure_scheme_headers, Rack ("on")
        "HTTP_X_FORWARDED_SCHEME",  # Rack, Plack, ingress-nginx
        "HTTP_X_SCHEME",  # ingress-nginx; the Flask "ReverseProxied" recipe
        "HTTP_X_URL_SCHEME",  # Kallithea/RhodeCode's https fixup
        "HTTP_FRONT_END_HTTPS",  # Microsoft's ("on"); Plack
        "HTTP_X_ARR_SSL",  # Azure App Service (ARR)
        "HTTP_CF_VISITOR",  # Cloudflare, {"scheme":"https"}
        # The host, the prefix and the original URL.
        "HTTP_X_FORWARDED_SERVER",  # Apache mod_proxy
        "HTTP_X_ORIGINAL_HOST",  # Azure Application Gateway
        "HTTP_X_SCRIPT_NAME",  # the Flask "ReverseProxied" recipe
        "HTTP_X_ORIGINAL_URL",  # IIS; Symfony and Zend believed these two
        "HTTP_X_REWRITE_URL",  # until CVE-2018-14773
    }
)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# An address read from a header: its normalized text, the address, and the port.
Node = tuple[str, IP, int | None]

DEFAULT_PORTS = {"http": "80", "https": "443"}

# Characters of a host name: RFC 3986 "unreserved" (the sub-delims it also allows never
# occur in real host names, and "%" escapes are left out so nothing needs decoding).
_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
)
# RFC 9110 §5.6.2 tchar: parameter names and unquoted values are tokens.
_TOKEN_CHARS = _NAME_CHARS | frozenset("!#$%&'*+^`|")
# Unquoted values may also hold ":[]", for the IPv6 literals and ports of careless
# proxies (see the module docstring); every value is validated afterwards.
_VALUE_CHARS = _TOKEN_CHARS | frozenset(":[]")
_OBFUSCATED_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)
# Not in a prefix: "%" (so "%2e%2e" cannot stand for ".."), "\\" (browsers read it as
# "/"), "?" and "#" (they end a path), and space, DEL and the C0 controls below.
_PREFIX_FORBIDDEN = frozenset("%\\?# \x7f") | frozenset(map(chr, range(0x20)))


def split_list(value: object) -> list[str]:
    """The non-empty, trimmed elements of a comma-separated header value."""
    if not isinstance(value, str) or not value:
        return []
    return [item for item in (part.strip(" \t") for part in value.split(",")) if item]


def parse_element(text: str) -> dict[str, str] | None:
    """One ``Forwarded`` element as {lowercased name: value}, or None if malformed."""
    params: dict[str, str] = {}
    for raw in text.split(";"):
        pair = raw.strip(" \t")
        if not pair:
            continue  # RFC 7239 §4: forwarded-pair is optional between the ";"s
        name, sep, value = pair.partition("=")
        if not sep or not name or not _TOKEN_CHARS.issuperset(name):
            return None
        name = name.lower()
        if name in params:
            return None  # §4: "MUST NOT occur more than once per forwarded-element"
        if value[:1] == '"':
            unquoted = _unquote(value)
            if unquoted is None:
                return None
            value = unquoted
        elif not value or not _VALUE_CHARS.issuperset(value):
            return None
        params[name] = value
    return params


def _unquote(value: str) -> str | None:
    """The content of an RFC 9110 §5.6.4 quoted-string, or None if it is not one."""
    if len(value) < 2 or value[-1] != '"':
        return None
    out: list[str] = []
    escaped = False
    for char in value[1:-1]:
        if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
            return None
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return None
        else:
            out.append(char)
    if escaped:
        return None  # the closing quote was escaped: unterminated
    return "".join(out)


def parse_ip(text: str) -> tuple[str, IP] | None:
    """An address written in a header or by a socket: its normalized text (IPv4
    dotted, IPv6 compressed and lowercase, IPv4-mapped IPv6 as IPv4) and the address
    (mapped ones as IPv4); None if it is not one.

    Zone ids (``fe80::1%eth0``) are refused: they mean nothing to another host.
    """
    try:
        if ":" not in text:
            # ipaddress accepts only the canonical dotted quad (no leading zeros, no
            # shorthand), so the text is already normalized; str() would cost 1 µs.
            return text, ipaddress.IPv4Address(text)
        if "%" in text:
            return None
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped), mapped
    return str(ip), ip


def parse_node(text: str) -> Node | None:
    """An entry of the for-chain: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]``,
    ``[::1]:80``; an RFC 7239 obfuscated port (``_abc``) is dropped. None when the
    entry is not an address (``unknown``, ``_hidden``, anything malformed)."""
    port_text: str | None = None
    if text[:1] == "[":
        end = text.find("]")
        if end < 0:
            return None
        address, rest = text[1:end], text[end + 1 :]
        if rest:
            if rest[0] != ":":
                return None
            port_text = rest[1:]
        if ":" not in address:
            return None  # brackets are for IPv6 only
    elif text.count(":") == 1:
        address, _, port_text = text.partition(":")
    else:
        address = text
    parsed = parse_ip(address)
    if parsed is None:
        return None
    port: int | None = None
    if port_text is not None and not _is_obfuscated(port_text):
        valid = valid_port(port_text)
        if valid is None:
            return None
        port = int(valid)
    return parsed[0], parsed[1], port


def _is_obfuscated(text: str) -> bool:
    """RFC 7239 §6.3 obfnode / §6.4 obfport: ``_`` then letters, digits, ``._-``."""
    return len(text) > 1 and text[0] == "_" and _OBFUSCATED_CHARS.issuperset(text)


def valid_proto(value: str) -> str | None:
    proto = value.lower()
    return proto if proto in DEFAULT_PORTS else None


def valid_port(value: str) -> str | None:
    """``"443"`` → ``"443"``; None unless 1-65535 in ASCII digits."""
    if not (0 < len(value) <= 5 and value.isascii() and value.isdigit()):
        return None
    port = int(value)
    return str(port) if 0 < port <= 65535 else None


def split_host(value: str) -> tuple[str, str | None] | None:
    """``"example.com:8080"`` → ``("example.com", "8080")``; None if not a valid host.

    The name is ASCII letters, digits and ``-._~``, or a bracketed IPv6 literal.
    """
    if value[:1] == "[":
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        literal = name[1:-1]
        if ":" not in literal or "%" in literal:
            return None
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        if not rest:
            return name, None
        if rest[0] != ":":
            return None
        port_text = rest[1:]
    else:
        name, sep, port_text = value.partition(":")
        if not name or not _NAME_CHARS.issuperset(name):
            return None
        if not sep:
            return name, None
    port = valid_port(port_text)
    return None if port is None else (name, port)


def valid_prefix(value: str) -> str | None:
    """``"/app/"`` → ``"/app"``, ``"/"`` → ``""``; None if not a safe path prefix."""
    if value[:1] != "/" or value[:2] == "//" or not _PREFIX_FORBIDDEN.isdisjoint(value):
        return None
    for segment in value.split("/"):
        if segment in (".", ".."):
            return None
    return value.rstrip("/")
