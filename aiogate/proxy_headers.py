"""Trusted proxy headers: who the client really is, and which scheme and host it used.

Owns: the trust list (``parse_trusted`` → ``TrustedProxies``), the reading of
``X-Forwarded-For/Proto/Host/Port/Prefix`` or of RFC 7239 ``Forwarded`` (``resolve`` →
``ProxyResult``), and the rule that a request from an untrusted peer must carry none of
``PROXY_ENVIRON_KEYS``. That list of headers and the syntax of their values are
``forwarded``'s (``PROXY_ENVIRON_KEYS`` is re-exported here). Sans-IO and pure: strings
in, a frozen record out; no I/O, no logging, no locks, no caches. ``parse_trusted`` runs
once, when the configuration is read; ``resolve`` runs in a worker thread for every
request, after ``environ.build_environ``.

How a caller uses it: ``parse_trusted`` once at startup (``Server``), then for each
request that carries a proxy header, ``resolve`` on the environ ``build_environ`` made,
and either remove ``PROXY_ENVIRON_KEYS`` (untrusted peer) or write the result's fields
into the environ: ``ServerHandler.apply_proxy_headers`` in ``handlers.py`` does exactly
that.

Every field of ``ProxyResult`` is ``None`` when it leaves the environ as it is; a
result with nothing to change is one of the two constants ``UNTRUSTED`` and
``UNCHANGED``, so ``result is UNCHANGED`` is a cheap test too.

Decisions (uvicorn ``middleware/proxy_headers.py``, gunicorn ``forwarded_allow_ips``,
werkzeug ``ProxyFix`` and hypercorn ``ProxyFixMiddleware`` were studied; the code is
our own):

- **Trust is by address**, like uvicorn and gunicorn, not by a count of hops like
  werkzeug and hypercorn: the headers are read only when the direct peer is in the
  trust list. The list takes IPv4/IPv6 addresses and CIDR networks (a network with
  host bits set, ``10.0.0.1/8``, is an error rather than a guess), ``*`` (trust every
  peer, UNIX and unknown ones included; must be written out) and ``unix``. Anything
  else is a ``ConfigError`` naming the entry (uvicorn silently keeps unknown entries
  as literals, so a typo just never matches). Empty entries are skipped, so ``""``
  trusts no one. The default, ``DEFAULT_TRUSTED``, is loopback only, gunicorn's and
  uvicorn's default.
- **UNIX-socket peers** are trusted only when the list says ``unix`` (or ``*``).
  gunicorn always honours proxy headers from a UNIX peer; uvicorn has no peer address
  there and so trusts it only with ``*``. A socket file's permissions are easy to get
  wrong, so we make it explicit rather than implied.
- **IPv4-mapped IPv6** (``::ffff:127.0.0.1``, what a dual-stack ``::`` listener
  reports for an IPv4 client) is the IPv4 address: ``127.0.0.1`` in the list trusts
  both spellings, and a mapped entry or network in the list is stored as IPv4.
- **The fast path.** The peer's host string is looked up in a frozenset of exact
  addresses (every spelling the socket layer can produce); only when the list has
  networks is a miss parsed with ``ipaddress`` and checked against them. So with the
  default list an untrusted peer costs one set lookup. The peer's string is compared
  as the socket layer reports it (normalized); a header's addresses are always parsed,
  then looked up the same way. Measured with ``timeit`` on a 2-core VM: ``resolve``
  takes 0.15 µs for an untrusted peer with the default list, 2.8 µs when the list has
  a network, 5-7 µs for a trusted peer and one hop (most of it in ``ipaddress``).
- **The client is found by walking the list right to left** (each proxy appends the
  address of its own peer): trusted addresses are skipped, and the first untrusted
  one is the client; if every one is trusted, the leftmost is (uvicorn's rule). An
  entry that is not an address (``unknown``, an obfuscated ``_identifier``, a missing
  ``for=``, a malformed element, garbage) also ends the walk, because nothing to its
  left can be checked; the client is then the nearest address to its right that we
  could identify, or the peer itself when there is none (nginx ``real_ip_recursive``
  does the same). An unidentifiable entry is never passed on as ``REMOTE_ADDR``, and
  never skipped: skipping it would let the client's own forged entries further left
  be believed. A port is kept when the entry has one (``[::1]:8080``,
  ``1.2.3.4:8080``, as Azure sends); otherwise the client's port is ``None``.
- **Scheme, host, port and prefix come from the hop the client was chosen at.** In
  ``Forwarded`` that is the chosen element's ``proto=``/``host=`` (RFC 7239 keeps each
  element's parameters together). In the ``X-Forwarded-*`` mode, a header with as
  many comma-separated values as ``X-Forwarded-For`` is read at the same position
  (every proxy appended to both; werkzeug also reads each header at a position
  counted from the right); otherwise its
  rightmost value is used, the one our trusted peer wrote or overwrote (what nginx's
  ``proxy_set_header X-Forwarded-Proto $scheme`` produces). Either way the value was
  written by a trusted proxy, never by the client. Only the chosen value is looked
  at: when it is invalid the field stays unchanged, with no fallback to another one.
- **``X-Forwarded-Port``** replaces the port of the forwarded host, or of the request's
  Host when there is no forwarded host (werkzeug's rule). **``X-Forwarded-Prefix``**
  *replaces* ``SCRIPT_NAME`` (root_path included), as werkzeug does; ``PATH_INFO`` is
  left as it is, since the proxy already stripped the prefix. ``Forwarded`` has neither.
- **``SERVER_NAME``/``SERVER_PORT``** are derived again whenever the scheme, host or
  port changes: from the new (or, for a scheme change alone, the current) host, with
  the default port of the resulting scheme (``https`` with ``Host: example.com`` gives
  ``443``). An IPv6 name keeps its brackets, as in ``environ``. Without a usable host
  they stay as they are, except that a forwarded port still sets ``SERVER_PORT``.
- **Headers are kept when the peer is trusted** (uvicorn and werkzeug keep them; werkzeug
  also adds ``X-Original-*`` copies, which we don't), and the headers of the mode not
  in use are left alone: a trusted proxy answers for everything it forwards. When the
  peer is not trusted (or proxy headers are off), every key of ``PROXY_ENVIRON_KEYS``
  must go: both modes, and also the headers we never read but someone further in
  might (``X-Real-IP``, ``True-Client-IP``, ``X-Forwarded-Ssl`` ...), since a client
  can send any of them and only a proxy we trust may. The list is what widely used
  code believes (see ``forwarded.PROXY_ENVIRON_KEYS``); a header not on it reaches the
  app as sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, assert_never

from .errors import ConfigError
from .forwarded import (
    DEFAULT_PORTS,
    IP,
    PROXY_ENVIRON_KEYS,
    Node,
    parse_element,
    parse_ip,
    parse_node,
    split_host,
    split_list,
    valid_port,
    valid_prefix,
    valid_proto,
)

if TYPE_CHECKING:
    from ._types import Address

__all__ = [
    "DEFAULT_TRUSTED",
    "PROXY_ENVIRON_KEYS",
    "PROXY_MODES",
    "UNCHANGED",
    "UNTRUSTED",
    "ProxyMode",
    "ProxyResult",
    "TrustedProxies",
    "parse_trusted",
    "resolve",
]

#: Which headers to read: ``X-Forwarded-*`` or RFC 7239 ``Forwarded``.
ProxyMode = Literal["x-forwarded", "forwarded"]
PROXY_MODES: Final[tuple[ProxyMode, ...]] = ("x-forwarded", "forwarded")

#: The trust list to use when none is configured: loopback only (gunicorn's
#: ``forwarded_allow_ips`` default; uvicorn's is ``127.0.0.1``).
DEFAULT_TRUSTED: Final = "127.0.0.1,::1"

# The network that holds the IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The peers whose proxy headers are believed. Build it with ``parse_trusted``."""

    #: Every spelling of a trusted address a socket reports: ``str(ip)`` (IPv4-mapped
    #: entries as IPv4), plus the ``::ffff:a.b.c.d`` form of each IPv4 one. So the
    #: peer, and a normalized address from a header, cost one set lookup.
    addresses: frozenset[str] = frozenset()
    networks_v4: tuple[ipaddress.IPv4Network, ...] = ()
    networks_v6: tuple[ipaddress.IPv6Network, ...] = ()
    #: ``unix``: peers on a UNIX socket are trusted.
    unix: bool = False
    #: ``*``: every peer is trusted.
    everything: bool = False

    def is_trusted(self, peer: Address | None) -> bool:
        """Whether the direct peer may set proxy headers.

        ``peer`` is ``ConnectionInfo.client``: a ``(host, port, ...)`` tuple for TCP, a
        string (the socket name, often ``""``) for a UNIX socket, ``None`` if unknown.
        """
        if self.everything:
            return True
        if isinstance(peer, tuple):
            host = peer[0]
            if host in self.addresses:
                return True
            if not (self.networks_v4 or self.networks_v6):
                return False
            parsed = parse_ip(host)
            return parsed is not None and self._trusts(*parsed)
        if isinstance(peer, str):
            return self.unix
        return False

    def _trusts(self, text: str, ip: IP) -> bool:
        """Whether the address ``ip``, normalized as ``text`` by ``parse_ip``, is
        trusted."""
        if self.everything or text in self.addresses:
            return True
        return bool(self.networks_v4 or self.networks_v6) and self._in_networks(ip)

    def _in_networks(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """``ip`` (IPv4-mapped ones already made IPv4) is in a trusted network."""
        if isinstance(ip, ipaddress.IPv4Address):
            return any(ip in network for network in self.networks_v4)
        return any(ip in network for network in self.networks_v6)


def parse_trusted(value: str) -> TrustedProxies:
    """Parse a comma-separated trust list: addresses, CIDR networks, ``*``, ``unix``.

    ``"127.0.0.1, ::1, 10.0.0.0/8, unix"``. Raises ``ConfigError`` naming the first
    entry that is none of those. See the module docstring for what each entry means.
    """
    addresses: set[str] = set()
    networks_v4: list[ipaddress.IPv4Network] = []
    networks_v6: list[ipaddress.IPv6Network] = []
    unix = everything = False
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*":
            everything = True
        elif entry.lower() == "unix":
            unix = True
        elif "/" in entry:
            network = _parse_network(entry)
            if network.num_addresses == 1:
                _add_address(network.network_address, addresses)
            elif isinstance(network, ipaddress.IPv4Network):
                networks_v4.append(network)
            else:
                networks_v6.append(network)
        else:
            try:
                ip = ipaddress.ip_address(entry)
            except ValueError:
                raise ConfigError(
                    f"trusted proxies: {entry!r} is not an IP address, a CIDR network "
                    "(10.0.0.0/8), '*' or 'unix'"
                ) from None
            _add_address(ip, addresses)
    return TrustedProxies(
        addresses=frozenset(addresses),
        networks_v4=tuple(networks_v4),
        networks_v6=tuple(networks_v6),
        unix=unix,
        everything=everything,
    )


def _parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR entry of the trust list, an IPv4-mapped IPv6 one made IPv4."""
    try:
        network = ipaddress.ip_network(entry)
    except ValueError:
        try:
            loose = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"trusted proxies: {entry!r} is not a CIDR network (10.0.0.0/8)"
            ) from None
        raise ConfigError(
            f"trusted proxies: {entry!r} has host bits set; did you mean {loose}?"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        low_bits = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low_bits, network.prefixlen - 96))
    return network


def _add_address(ip: IP, addresses: set[str]) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    addresses.add(str(ip))
    if isinstance(ip, ipaddress.IPv4Address):
        # What a dual-stack socket reports (inet_ntop's spelling; Python before 3.13
        # writes str() of a mapped address in hex, ::ffff:7f00:1, which no socket does).
        addresses.add("::ffff:" + str(ip))


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """What the proxy headers of one request change. ``None`` means "leave it"."""

    #: The peer is trusted: the values below were read, and the headers stay. When
    #: False, the caller removes every key of ``PROXY_ENVIRON_KEYS`` from the environ.
    trusted: bool
    #: The real client: a normalized IP address and its port, or None if the entry
    #: had none (then ``REMOTE_PORT`` should go, not keep the proxy's port).
    client: tuple[str, int | None] | None = None
    #: ``"http"`` or ``"https"``: the new ``wsgi.url_scheme``.
    scheme: str | None = None
    #: The new ``HTTP_HOST``, ``name[:port]``.
    host: str | None = None
    #: The new ``SERVER_NAME`` and ``SERVER_PORT`` (strings, as in the environ).
    server_name: str | None = None
    server_port: str | None = None
    #: The new ``SCRIPT_NAME`` (``""`` for an app mounted at ``/``).
    script_name: str | None = None


#: The peer is not trusted: nothing changes, and the proxy headers must be removed.
UNTRUSTED: Final = ProxyResult(trusted=False)
#: The peer is trusted but its headers change nothing.
UNCHANGED: Final = ProxyResult(trusted=True)


def resolve(
    trusted: TrustedProxies,
    mode: ProxyMode,
    peer: Address | None,
    headers: Mapping[str, Any],
    scheme: str,
    host: str | None,
) -> ProxyResult:
    """What the proxy headers of one request say, if the peer may set them.

    ``peer`` is ``ConnectionInfo.client``; ``headers`` maps environ keys
    (``HTTP_X_FORWARDED_FOR``, ``HTTP_FORWARDED`` ...) to their values, repeated
    fields joined with ``","``, which is what the environ itself holds; ``scheme`` is
    the connection's URL scheme and ``host`` the request's ``HTTP_HOST`` (or None).
    Returns ``UNTRUSTED`` when the peer is not trusted (one set lookup with the
    default list), ``UNCHANGED`` when nothing usable was sent. Runs in a worker thread.
    """
    if not trusted.is_trusted(peer):
        return UNTRUSTED
    if mode == "x-forwarded":
        return _resolve_x_forwarded(trusted, headers, scheme, host)
    if mode == "forwarded":
        return _resolve_forwarded(trusted, headers, scheme, host)
    assert_never(mode)


def _resolve_x_forwarded(
    trusted: TrustedProxies, headers: Mapping[str, Any], scheme: str, host: str | None
) -> ProxyResult:
    nodes = [
        parse_node(item) for item in split_list(headers.get("HTTP_X_FORWARDED_FOR"))
    ]
    index, client = _walk(trusted, nodes)

    def pick(key: str) -> str | None:
        values = split_list(headers.get(key))
        if not values:
            return None
        if len(values) == len(nodes):
            return values[index]
        return values[-1]

    proto = pick("HTTP_X_FORWARDED_PROTO")
    forwarded_host = pick("HTTP_X_FORWARDED_HOST")
    port = pick("HTTP_X_FORWARDED_PORT")
    prefix = pick("HTTP_X_FORWARDED_PREFIX")
    return _result(
        client,
        valid_proto(proto) if proto is not None else None,
        split_host(forwarded_host) if forwarded_host is not None else None,
        valid_port(port) if port is not None else None,
        valid_prefix(prefix) if prefix is not None else None,
        scheme,
        host,
    )


def _resolve_forwarded(
    trusted: TrustedProxies, headers: Mapping[str, Any], scheme: str, host: str | None
) -> ProxyResult:
    elements = [
        parse_element(item) for item in split_list(headers.get("HTTP_FORWARDED"))
    ]
    nodes = [
        parse_node(element["for"]) if element is not None and "for" in element else None
        for element in elements
    ]
    index, client = _walk(trusted, nodes)
    element = elements[index] if elements else None
    if element is None:
        return _result(client, None, None, None, None, scheme, host)
    proto = element.get("proto")
    forwarded_host = element.get("host")
    return _result(
        client,
        valid_proto(proto) if proto is not None else None,
        split_host(forwarded_host) if forwarded_host is not None else None,
        None,
        None,
        scheme,
        host,
    )


def _walk(
    trusted: TrustedProxies, nodes: list[Node | None]
) -> tuple[int, tuple[str, int | None] | None]:
    """The index of the hop the client was found at, and the client address.

    ``nodes`` are the for-chain's entries, left to right; None is an entry that is not
    an address. The address is None when no entry could be identified (keep the peer).
    """
    identified: tuple[str, int | None] | None = None
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if node is None:
            return index, identified
        text, ip, port = node
        identified = (text, port)
        if index == 0 or not trusted._trusts(text, ip):
            return index, identified
    return -1, None


def _result(
    client: tuple[str, int | None] | None,
    proto: str | None,
    forwarded_host: tuple[str, str | None] | None,
    port: str | None,
    prefix: str | None,
    scheme: str,
    host: str | None,
) -> ProxyResult:
    """Put the validated values together, with SERVER_NAME/SERVER_PORT derived again."""
    if proto is None and forwarded_host is None and port is None and prefix is None:
        return UNCHANGED if client is None else ProxyResult(trusted=True, client=client)
    new_scheme = proto if proto is not None and proto != scheme else None
    current: tuple[str, str | None] | None = None
    target = forwarded_host
    if port is not None:
        if target is None and host is not None:
            target = current = split_host(host)
        if target is not None:
            target = (target[0], port)
    new_host: str | None = None
    if target is not None:
        name, target_port = target
        joined = name if target_port is None else name + ":" + target_port
        if joined != host:
            new_host = joined
    server_name = server_port = None
    if new_scheme is not None or new_host is not None:
        effective = target
        if effective is None and host is not None:
            effective = current or split_host(host)
        if effective is not None:
            server_name = effective[0]
            server_port = effective[1] or DEFAULT_PORTS.get(proto or scheme, "80")
    if target is None and port is not None:
        server_port = port  # no usable host to carry it: SERVER_PORT alone
    if (
        client is None
        and new_scheme is None
        and new_host is None
        and server_name is None
        and server_port is None
        and prefix is None
    ):
        return UNCHANGED
    return ProxyResult(
        trusted=True,
        client=client,
        scheme=new_scheme,
        host=new_host,
        server_name=server_name,
        server_port=server_port,
        script_name=prefix,
    )
