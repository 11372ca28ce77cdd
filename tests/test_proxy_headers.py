"""Trusted proxy headers: the trust list, both header modes and the value checks.

Table-driven, no I/O: a peer, a mapping of environ keys and the current scheme/host
in, a ``ProxyResult`` out. The trust list of most tables is ``TRUSTED`` and the peer
``PEER``, a trusted proxy on 10.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiogate import proxy_headers
from aiogate._types import Address, ConnectionInfo
from aiogate.environ import build_environ, header_environ_key
from aiogate.errors import ConfigError
from aiogate.proxy_headers import (
    DEFAULT_TRUSTED,
    PROXY_ENVIRON_KEYS,
    PROXY_MODES,
    UNCHANGED,
    UNTRUSTED,
    ProxyMode,
    ProxyResult,
    TrustedProxies,
    parse_trusted,
    resolve,
)

TRUSTED = parse_trusted("127.0.0.1, ::1, 10.0.0.0/8, 2001:db8:cafe::/48")
PEER = ("10.0.0.2", 40000)
HOST = "app.internal:8000"  # the request's Host, as the proxy passed it on

XFF = "HTTP_X_FORWARDED_FOR"
XFP = "HTTP_X_FORWARDED_PROTO"
XFH = "HTTP_X_FORWARDED_HOST"
XFPORT = "HTTP_X_FORWARDED_PORT"
XFPREFIX = "HTTP_X_FORWARDED_PREFIX"
FWD = "HTTP_FORWARDED"


def changed(**fields: Any) -> ProxyResult:
    return ProxyResult(trusted=True, **fields)


def x_forwarded(
    headers: dict[str, str],
    *,
    peer: Address | None = PEER,
    trusted: TrustedProxies = TRUSTED,
    scheme: str = "http",
    host: str | None = HOST,
) -> ProxyResult:
    return resolve(trusted, "x-forwarded", peer, headers, scheme, host)


def forwarded(
    value: str,
    *,
    peer: Address | None = PEER,
    trusted: TrustedProxies = TRUSTED,
    scheme: str = "http",
    host: str | None = HOST,
) -> ProxyResult:
    return resolve(trusted, "forwarded", peer, {FWD: value}, scheme, host)


# --- the trust list ---------------------------------------------------------------

# (trust list, peer, trusted?); Any because asyncio's IPv6 peers are 4-tuples
TRUST_CASES: list[tuple[str, Any, bool]] = [
    (DEFAULT_TRUSTED, ("127.0.0.1", 1), True),
    (DEFAULT_TRUSTED, ("::1", 1, 0, 0), True),  # asyncio's IPv6 4-tuple
    (DEFAULT_TRUSTED, ("::ffff:127.0.0.1", 1, 0, 0), True),  # dual-stack listener
    (DEFAULT_TRUSTED, ("127.0.0.2", 1), False),  # exact, not 127.0.0.0/8
    (DEFAULT_TRUSTED, ("10.0.0.2", 1), False),
    (DEFAULT_TRUSTED, ("::ffff:10.0.0.2", 1), False),
    (DEFAULT_TRUSTED, "", False),  # UNIX peers need "unix"
    (DEFAULT_TRUSTED, "/run/aiogate.sock", False),
    (DEFAULT_TRUSTED, None, False),
    ("unix", "", True),
    ("UNIX", "/run/aiogate.sock", True),
    ("unix", ("127.0.0.1", 1), False),
    ("unix", None, False),
    ("*", ("203.0.113.7", 1), True),
    ("*", "", True),
    ("*", None, True),
    ("10.0.0.0/8", ("10.255.1.2", 1), True),
    ("10.0.0.0/8", ("11.0.0.1", 1), False),
    ("10.0.0.0/8", ("::ffff:10.1.2.3", 1), True),
    ("10.0.0.0/8", ("::1", 1), False),
    ("10.0.0.0/8", ("not an address", 1), False),
    ("2001:db8::/32", ("2001:db8:5::1", 1), True),
    ("2001:db8::/32", ("2001:db9::1", 1), False),
    ("2001:db8::/32", ("10.0.0.1", 1), False),
    ("::ffff:10.0.0.0/104", ("10.1.1.1", 1), True),  # a mapped network is IPv4
    ("::ffff:10.0.0.0/104", ("::ffff:10.1.1.1", 1), True),
    ("::ffff:192.0.2.1", ("192.0.2.1", 1), True),  # a mapped address is IPv4
    ("::ffff:192.0.2.1", ("::ffff:192.0.2.1", 1), True),
    ("192.0.2.1/32", ("192.0.2.1", 1), True),  # a one-address network is exact
    ("2001:DB8:0:0::1", ("2001:db8::1", 1), True),  # entries are normalized
    ("", ("127.0.0.1", 1), False),  # an empty list trusts no one
    (" 127.0.0.1 , , ::1 ", ("::1", 1), True),
]


@pytest.mark.parametrize(("value", "peer", "expected"), TRUST_CASES)
def test_is_trusted(value: str, peer: Address | None, expected: bool) -> None:
    assert parse_trusted(value).is_trusted(peer) is expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost", "'localhost' is not an IP address, a CIDR network"),
        ("127.0.0.1, bogus", "'bogus' is not an IP address"),
        ("127.0.0.1:8000", "'127.0.0.1:8000' is not an IP address"),
        ("[::1]", r"'\[::1\]' is not an IP address"),
        ("256.1.1.1", "'256.1.1.1' is not an IP address"),
        ("*.example.com", r"'\*.example.com' is not an IP address"),
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR network"),
        ("example.com/24", "'example.com/24' is not a CIDR network"),
    ],
)
def test_invalid_trust_entries(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_trusted(value)


def test_default_is_loopback_only() -> None:
    trusted = parse_trusted(DEFAULT_TRUSTED)
    assert trusted.addresses == {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    assert trusted.networks_v4 == trusted.networks_v6 == ()
    assert not trusted.unix
    assert not trusted.everything


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("10.0.0.5", True),
        ("::ffff:10.0.0.5", True),
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),
        ("::ffff:127.0.0.1", True),
        ("::FFFF:7f00:1", True),
        ("2001:db8:cafe::9", True),
        ("2001:DB8:CAFE:0::9", True),
        ("203.0.113.7", False),
        ("::ffff:203.0.113.7", False),
        ("2001:db8::9", False),
        ("2001:DB8:0::9", False),
    ],
)
def test_header_addresses_are_normalized_before_the_trust_check(
    address: str, trusted: bool
) -> None:
    """Every spelling of a trusted proxy in a header is skipped; an untrusted one is
    the client, given back normalized."""
    result = x_forwarded({XFF: f"198.51.100.1, {address}"})
    if trusted:
        assert result == changed(client=("198.51.100.1", None))
    else:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        assert result == changed(client=(str(ip), None))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(AssertionError):
        resolve(TRUSTED, "x-real-ip", PEER, {}, "http", HOST)  # type: ignore[arg-type]  # on purpose


def test_untrusted_peer_costs_no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only exact addresses, the peer check is a set lookup: nothing is parsed."""

    def fail(text: str) -> None:
        raise AssertionError(f"parsed {text!r}")

    trusted = parse_trusted("127.0.0.1, ::1, 192.0.2.1")
    monkeypatch.setattr(proxy_headers, "parse_ip", fail)
    monkeypatch.setattr(ipaddress, "ip_address", fail)
    headers = {XFF: "1.2.3.4", XFP: "https", FWD: "for=1.2.3.4"}
    for mode in PROXY_MODES:
        assert resolve(trusted, mode, ("203.0.113.7", 1), headers, "http", HOST) is (
            UNTRUSTED
        )


# --- untrusted peers ---------------------------------------------------------------

SPOOFED = {
    XFF: "127.0.0.1",
    XFP: "https",
    XFH: "bank.example",
    XFPORT: "443",
    XFPREFIX: "/admin",
    FWD: "for=127.0.0.1;proto=https;host=bank.example",
}


@pytest.mark.parametrize("mode", PROXY_MODES)
@pytest.mark.parametrize(
    ("trust_list", "peer"),
    [
        (DEFAULT_TRUSTED, ("203.0.113.7", 5000)),
        (DEFAULT_TRUSTED, ("10.0.0.2", 5000)),
        (DEFAULT_TRUSTED, ""),  # UNIX socket, "unix" not listed
        (DEFAULT_TRUSTED, None),
        ("10.0.0.0/8", ("192.168.0.1", 5000)),
        ("", ("127.0.0.1", 5000)),
    ],
)
def test_untrusted_peer_changes_nothing(
    mode: ProxyMode, trust_list: str, peer: Address | None
) -> None:
    result = resolve(parse_trusted(trust_list), mode, peer, SPOOFED, "http", HOST)
    assert result is UNTRUSTED
    assert not result.trusted
    environ = {**SPOOFED, "HTTP_HOST": HOST, "REMOTE_ADDR": "203.0.113.7"}
    for key in PROXY_ENVIRON_KEYS:  # what the caller does with UNTRUSTED
        environ.pop(key, None)
    assert environ == {"HTTP_HOST": HOST, "REMOTE_ADDR": "203.0.113.7"}


def test_proxy_environ_keys_cover_every_header_read() -> None:
    """Whatever resolve reads, in either mode, is on the list the caller strips."""

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    read: set[str] = set()
    for mode in PROXY_MODES:
        resolve(TRUSTED, mode, PEER, Recording(SPOOFED), "http", HOST)
    assert read == READ_KEYS
    assert read < PROXY_ENVIRON_KEYS


# What resolve reads; PROXY_ENVIRON_KEYS also has the headers it never reads.
READ_KEYS = {
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
}


def header_name(key: str) -> str:
    """``HTTP_X_REAL_IP`` → ``x-real-ip``."""
    return key.removeprefix("HTTP_").lower().replace("_", "-")


def test_proxy_environ_keys_are_what_the_headers_become() -> None:
    """One frozen set, each key the environ key of a real header name (a typo such as
    ``HTTP_X-REAL-IP`` would strip nothing)."""
    assert type(PROXY_ENVIRON_KEYS) is frozenset
    for key in PROXY_ENVIRON_KEYS:
        assert key.startswith("HTTP_")
        assert header_environ_key(header_name(key).encode()) == key
    # The identity headers frameworks and CDNs use besides X-Forwarded-*/Forwarded
    # (issue 12); the module comment says who reads each.
    for name in (
        "X-Real-IP",
        "True-Client-IP",
        "X-Client-IP",
        "Client-IP",
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "X-Cluster-Client-IP",
        "X-Original-Forwarded-For",
        "X-ProxyUser-Ip",
        "X-Forwarded-Ssl",
        "X-Forwarded-Scheme",
        "X-Forwarded-Protocol",
        "X-Url-Scheme",
        "Front-End-Https",
        "X-Forwarded-Server",
    ):
        assert header_environ_key(name.lower().encode()) in PROXY_ENVIRON_KEYS


def test_an_untrusted_request_keeps_only_other_headers() -> None:
    """build_environ, then what the handler does for an untrusted peer: every
    listed header is gone, and nothing else."""
    names = sorted(header_name(key) for key in PROXY_ENVIRON_KEYS)
    request = h11.Request(
        method="GET",
        target="/",
        headers=[("Host", "example.com"), ("X-Other", "kept")]
        + [(name, "6.6.6.6") for name in names],
    )
    environ = build_environ(request, ConnectionInfo(None, ("203.0.113.7", 1)), "")
    assert resolve(
        TRUSTED, "x-forwarded", ("203.0.113.7", 1), environ, "http", None
    ) is (UNTRUSTED)
    for key in PROXY_ENVIRON_KEYS.intersection(environ):
        del environ[key]
    assert {k: v for k, v in environ.items() if k.startswith("HTTP_")} == {
        "HTTP_HOST": "example.com",
        "HTTP_X_OTHER": "kept",
    }


def test_readme_lists_every_removed_header() -> None:
    """README's proxy section names each header an untrusted peer loses."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.partition("## Behind a proxy")[2].partition("\n## ")[0]
    named = {m.lower() for m in re.findall(r"`([A-Za-z][-A-Za-z]*)`", section)}
    assert {header_name(key) for key in PROXY_ENVIRON_KEYS} <= named


# --- X-Forwarded-* ----------------------------------------------------------------

X_FORWARDED_CASES: list[tuple[dict[str, str], ProxyResult]] = [
    ({}, UNCHANGED),
    ({XFF: ""}, UNCHANGED),
    # single hop
    ({XFF: "203.0.113.7"}, changed(client=("203.0.113.7", None))),
    ({XFF: " 203.0.113.7 "}, changed(client=("203.0.113.7", None))),
    ({XFF: "203.0.113.7:4711"}, changed(client=("203.0.113.7", 4711))),
    # chains: trusted hops are skipped, the first untrusted one is the client
    (
        {XFF: "198.51.100.1, 203.0.113.7, 10.0.0.5"},
        changed(client=("203.0.113.7", None)),
    ),
    ({XFF: "10.0.0.9, 203.0.113.7, 10.0.0.5"}, changed(client=("203.0.113.7", None))),
    ({XFF: "10.0.0.9, 10.0.0.5"}, changed(client=("10.0.0.9", None))),  # leftmost
    ({XFF: "127.0.0.1"}, changed(client=("127.0.0.1", None))),
    ({XFF: "203.0.113.7, 2001:db8:cafe::1"}, changed(client=("203.0.113.7", None))),
    ({XFF: "203.0.113.7, ::ffff:10.0.0.5"}, changed(client=("203.0.113.7", None))),
    # IPv6, with and without brackets and ports, normalized
    ({XFF: "2001:db8::7"}, changed(client=("2001:db8::7", None))),
    ({XFF: "[2001:db8::7]"}, changed(client=("2001:db8::7", None))),
    ({XFF: "[2001:db8::7]:4711"}, changed(client=("2001:db8::7", 4711))),
    ({XFF: "2001:DB8:0:0::7"}, changed(client=("2001:db8::7", None))),
    ({XFF: "::ffff:203.0.113.7"}, changed(client=("203.0.113.7", None))),
    # empty list elements are dropped, they do not end the walk
    ({XFF: ", 203.0.113.7"}, changed(client=("203.0.113.7", None))),
    ({XFF: "203.0.113.7,, 10.0.0.5,"}, changed(client=("203.0.113.7", None))),
    # an entry that is not an address ends the walk at the nearest identified hop
    ({XFF: "203.0.113.7, garbage, 10.0.0.5"}, changed(client=("10.0.0.5", None))),
    ({XFF: "203.0.113.7, unknown"}, UNCHANGED),
    ({XFF: "203.0.113.7, <script>"}, UNCHANGED),
    ({XFF: "203.0.113.7:99999"}, UNCHANGED),
    ({XFF: "203.0.113.7:0"}, UNCHANGED),
    ({XFF: "203.0.113.7:"}, UNCHANGED),
    ({XFF: "[203.0.113.7]"}, UNCHANGED),
    ({XFF: "[2001:db8::7"}, UNCHANGED),
    ({XFF: "[2001:db8::7]x"}, UNCHANGED),
    ({XFF: "fe80::1%eth0"}, UNCHANGED),
    ({XFF: "example.com"}, UNCHANGED),
    ({XFF: "1.2.3"}, UNCHANGED),
    ({XFF: "010.0.0.1"}, UNCHANGED),  # leading zeros: octal to some parsers
    # the scheme: only http/https, any case; same as now → nothing to change
    (
        {XFP: "https"},
        changed(scheme="https", server_name="app.internal", server_port="8000"),
    ),
    (
        {XFP: "HTTPS"},
        changed(scheme="https", server_name="app.internal", server_port="8000"),
    ),
    ({XFP: "http"}, UNCHANGED),
    ({XFP: "ftp"}, UNCHANGED),
    ({XFP: "https;"}, UNCHANGED),
    ({XFP: "http s"}, UNCHANGED),
    # several values: the one at the client's position when the counts match...
    (
        {XFF: "203.0.113.7, 10.0.0.5", XFP: "https, http"},
        changed(
            client=("203.0.113.7", None),
            scheme="https",
            server_name="app.internal",
            server_port="8000",
        ),
    ),
    (
        {XFF: "198.51.100.1, 203.0.113.7, 10.0.0.5", XFP: "http, https, http"},
        changed(
            client=("203.0.113.7", None),
            scheme="https",
            server_name="app.internal",
            server_port="8000",
        ),
    ),
    # ... else the rightmost, which our trusted peer wrote
    (
        {XFF: "198.51.100.1, 203.0.113.7", XFP: "https"},
        changed(
            client=("203.0.113.7", None),
            scheme="https",
            server_name="app.internal",
            server_port="8000",
        ),
    ),
    (
        {XFF: "203.0.113.7, 10.0.0.5", XFP: "https, https, http"},
        changed(client=("203.0.113.7", None)),
    ),
    (
        {XFP: "http, https"},
        changed(scheme="https", server_name="app.internal", server_port="8000"),
    ),
    ({XFF: "203.0.113.7", XFP: "https, ftp"}, changed(client=("203.0.113.7", None))),
    # the host
    (
        {XFH: "example.com"},
        changed(host="example.com", server_name="example.com", server_port="80"),
    ),
    (
        {XFH: "example.com:8443"},
        changed(host="example.com:8443", server_name="example.com", server_port="8443"),
    ),
    (
        {XFH: "example.com", XFP: "https"},
        changed(
            scheme="https",
            host="example.com",
            server_name="example.com",
            server_port="443",
        ),
    ),
    (
        {XFH: "[2001:db8::1]:8080"},
        changed(
            host="[2001:db8::1]:8080", server_name="[2001:db8::1]", server_port="8080"
        ),
    ),
    (
        {XFH: "[2001:db8::1]"},
        changed(host="[2001:db8::1]", server_name="[2001:db8::1]", server_port="80"),
    ),
    (
        {XFH: "Example.COM:08443"},
        changed(host="Example.COM:8443", server_name="Example.COM", server_port="8443"),
    ),
    ({XFH: HOST}, UNCHANGED),
    (
        {XFH: "a.example, b.example"},
        changed(host="b.example", server_name="b.example", server_port="80"),
    ),
    # the port replaces the port of the forwarded host, or of the request's Host
    (
        {XFPORT: "8443"},
        changed(
            host="app.internal:8443", server_name="app.internal", server_port="8443"
        ),
    ),
    (
        {XFH: "example.com", XFPORT: "8443"},
        changed(host="example.com:8443", server_name="example.com", server_port="8443"),
    ),
    (
        {XFH: "example.com:1", XFPORT: "443", XFP: "https"},
        changed(
            scheme="https",
            host="example.com:443",
            server_name="example.com",
            server_port="443",
        ),
    ),
    ({XFPORT: "8000"}, UNCHANGED),
    # the prefix
    ({XFPREFIX: "/app"}, changed(script_name="/app")),
    ({XFPREFIX: "/app/"}, changed(script_name="/app")),
    ({XFPREFIX: "/"}, changed(script_name="")),
    ({XFPREFIX: "/a/b...c/d"}, changed(script_name="/a/b...c/d")),
    ({XFPREFIX: "/caf\xc3\xa9"}, changed(script_name="/caf\xc3\xa9")),  # UTF-8 bytes
    (
        {XFF: "203.0.113.7, 10.0.0.5", XFPREFIX: "/outer, /inner"},
        changed(client=("203.0.113.7", None), script_name="/outer"),
    ),
    # everything at once
    (
        {
            XFF: "203.0.113.7",
            XFP: "https",
            XFH: "example.com",
            XFPORT: "8443",
            XFPREFIX: "/api",
        },
        changed(
            client=("203.0.113.7", None),
            scheme="https",
            host="example.com:8443",
            server_name="example.com",
            server_port="8443",
            script_name="/api",
        ),
    ),
    # Forwarded is not read in this mode
    ({FWD: "for=203.0.113.7;proto=https"}, UNCHANGED),
]


@pytest.mark.parametrize(("headers", "expected"), X_FORWARDED_CASES)
def test_x_forwarded(headers: dict[str, str], expected: ProxyResult) -> None:
    assert x_forwarded(headers) == expected
    if expected == UNCHANGED:
        assert x_forwarded(headers) is UNCHANGED


INVALID_HOSTS = [
    "evil.example/path",
    "user@evil.example",
    "exa mple.com",
    "exa\\mple.com",
    "exa%41mple.com",
    "example.com:0",
    "example.com:65536",
    "example.com:abc",
    "example.com:+80",
    "example.com:",
    "example.com:80:90",
    ":80",
    "[not-ipv6]:80",
    "[2001:db8::zz]",
    "[1.2.3.4]",
    "[2001:db8::1",
    "[2001:db8::1]x",
    "[fe80::1%eth0]",
    "ex\x01ample.com",
    "\u00e9xample.com",
]


@pytest.mark.parametrize("value", INVALID_HOSTS)
def test_invalid_forwarded_host_is_ignored(value: str) -> None:
    assert x_forwarded({XFH: value}) is UNCHANGED
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    assert forwarded(f'host="{quoted}"') is UNCHANGED


@pytest.mark.parametrize(
    "value", ["0", "65536", "-1", "+80", "80a", "\uff18\uff10", "123456", "0x50"]
)
def test_invalid_forwarded_port_is_ignored(value: str) -> None:
    assert x_forwarded({XFPORT: value}) is UNCHANGED


@pytest.mark.parametrize(
    "value",
    [
        "app",
        "//evil.example",
        "//",
        "/a/../b",
        "/..",
        "/a/..",
        "/./x",
        "/a%2e%2e",
        "/a\\b",
        "/a?b",
        "/a#b",
        "/a b",
        "/a\x01b",
        "/a\tb",
        "/a\x7fb",
    ],
)
def test_invalid_forwarded_prefix_is_ignored(value: str) -> None:
    assert x_forwarded({XFPREFIX: value}) is UNCHANGED


@pytest.mark.parametrize(
    ("headers", "host", "expected"),
    [
        # a scheme change alone re-derives SERVER_PORT from the current Host
        (
            {XFP: "https"},
            "example.com",
            changed(scheme="https", server_name="example.com", server_port="443"),
        ),
        (
            {XFP: "https"},
            "[2001:db8::1]",
            changed(scheme="https", server_name="[2001:db8::1]", server_port="443"),
        ),
        # no usable Host: SERVER_NAME/SERVER_PORT stay (they came from the socket)
        ({XFP: "https"}, None, changed(scheme="https")),
        ({XFP: "https"}, "bad host", changed(scheme="https")),
        # a port without a host to carry it sets SERVER_PORT alone
        ({XFPORT: "8443"}, None, changed(server_port="8443")),
        (
            {XFH: "example.com"},
            None,
            changed(host="example.com", server_name="example.com", server_port="80"),
        ),
    ],
)
def test_current_host(
    headers: dict[str, str], host: str | None, expected: ProxyResult
) -> None:
    assert x_forwarded(headers, host=host) == expected


def test_https_connection_forwarded_as_http() -> None:
    assert x_forwarded({XFP: "http"}, scheme="https", host="example.com") == changed(
        scheme="http", server_name="example.com", server_port="80"
    )


def test_trust_everything_takes_the_leftmost() -> None:
    everyone = parse_trusted("*")
    headers = {XFF: "198.51.100.1, 203.0.113.7", XFP: "https, http"}
    assert x_forwarded(headers, trusted=everyone, peer=("192.0.2.9", 1)) == changed(
        client=("198.51.100.1", None),
        scheme="https",
        server_name="app.internal",
        server_port="8000",
    )
    assert forwarded(
        "for=198.51.100.1, for=203.0.113.7", trusted=everyone, peer=None
    ) == changed(client=("198.51.100.1", None))


def test_unix_peer_when_listed() -> None:
    unix = parse_trusted("unix")
    assert x_forwarded({XFF: "203.0.113.7, 127.0.0.1"}, trusted=unix, peer="") == (
        changed(client=("127.0.0.1", None))  # 127.0.0.1 is not in this list
    )
    assert x_forwarded({XFF: "203.0.113.7"}, trusted=unix, peer=("127.0.0.1", 1)) is (
        UNTRUSTED
    )


# --- Forwarded (RFC 7239) ---------------------------------------------------------

FORWARDED_CASES: list[tuple[str, ProxyResult]] = [
    ("", UNCHANGED),
    ("for=203.0.113.7", changed(client=("203.0.113.7", None))),
    ("For=203.0.113.7", changed(client=("203.0.113.7", None))),
    ("FOR=203.0.113.7", changed(client=("203.0.113.7", None))),
    # the examples of RFC 7239 §4 and §7.4
    ('for="_gazonk"', UNCHANGED),
    ('For="[2001:db8:cafe::17]:4711"', changed(client=("2001:db8:cafe::17", 4711))),
    ("for=192.0.2.60;proto=http;by=203.0.113.43", changed(client=("192.0.2.60", None))),
    ("for=192.0.2.43, for=198.51.100.17", changed(client=("198.51.100.17", None))),
    # IPv6: quoted with brackets, with and without a port; unquoted (lenient)
    ('for="[2001:db8::17]:4711"', changed(client=("2001:db8::17", 4711))),
    ('for="[2001:db8::17]"', changed(client=("2001:db8::17", None))),
    ("for=[2001:db8::17]:4711", changed(client=("2001:db8::17", 4711))),
    ('for="192.0.2.43:4711"', changed(client=("192.0.2.43", 4711))),
    ('for="192.0.2.43:_abc"', changed(client=("192.0.2.43", None))),  # obfport
    ('for="[::ffff:192.0.2.43]"', changed(client=("192.0.2.43", None))),
    # quoted-strings: escapes undone, then validated
    ('for="192.0.2.\\43"', changed(client=("192.0.2.43", None))),
    (
        'for="192.0.2.43";proto="HTTPS";host="example.com:8443"',
        changed(
            client=("192.0.2.43", None),
            scheme="https",
            host="example.com:8443",
            server_name="example.com",
            server_port="8443",
        ),
    ),
    # chains: trusted hops skipped; proto/host from the element the client is in
    ("for=192.0.2.43, for=10.0.0.5", changed(client=("192.0.2.43", None))),
    (
        "for=192.0.2.43;proto=https;host=example.com, "
        "for=10.0.0.5;proto=http;host=app.internal",
        changed(
            client=("192.0.2.43", None),
            scheme="https",
            host="example.com",
            server_name="example.com",
            server_port="443",
        ),
    ),
    (
        "for=198.51.100.1;proto=http, for=192.0.2.43;proto=https, for=10.0.0.5",
        changed(
            client=("192.0.2.43", None),
            scheme="https",
            server_name="app.internal",
            server_port="8000",
        ),
    ),
    ("for=10.0.0.9, for=10.0.0.5", changed(client=("10.0.0.9", None))),
    # unknown and obfuscated identifiers end the walk; their proto/host are used
    (
        "for=unknown;proto=https",
        changed(scheme="https", server_name="app.internal", server_port="8000"),
    ),
    (
        "for=_hidden;proto=https",
        changed(scheme="https", server_name="app.internal", server_port="8000"),
    ),
    ('for="_hidden:_port"', UNCHANGED),
    ("for=unknown, for=10.0.0.5", changed(client=("10.0.0.5", None))),
    ("for=192.0.2.43, for=_hidden, for=10.0.0.5", changed(client=("10.0.0.5", None))),
    # no for= at all: the peer stays the client
    (
        "proto=https;host=example.com",
        changed(
            scheme="https",
            host="example.com",
            server_name="example.com",
            server_port="443",
        ),
    ),
    ("by=203.0.113.43", UNCHANGED),
    # empty elements and pairs are allowed; unknown parameters are ignored
    (", for=192.0.2.43", changed(client=("192.0.2.43", None))),
    ("for=192.0.2.43;;ext=1;", changed(client=("192.0.2.43", None))),
    # invalid values are ignored, the rest of the element is used
    ("for=192.0.2.43;proto=ftp", changed(client=("192.0.2.43", None))),
    ('for=192.0.2.43;host="evil.example/x"', changed(client=("192.0.2.43", None))),
    ('for=""', UNCHANGED),
    ("for=192.0.2.43:99999", UNCHANGED),
    ("for=example.com", UNCHANGED),
    # malformed elements: nothing of them is used, and the walk ends there
    ("for=192.0.2.43;for=198.51.100.1", UNCHANGED),  # a parameter twice
    ("for=192.0.2.43;FOR=198.51.100.1", UNCHANGED),
    ("for", UNCHANGED),
    ("=192.0.2.43", UNCHANGED),
    ("for=", UNCHANGED),
    ('for="192.0.2.43', UNCHANGED),  # unterminated
    ('for="192.0.2.43\\"', UNCHANGED),  # the closing quote is escaped
    ('for="192.0.2.43"x', UNCHANGED),
    ('for="192.0.2."43"', UNCHANGED),  # a quote inside, unescaped
    ('for=192.0.2."43"', UNCHANGED),
    ("for=192.0.2.43 x", UNCHANGED),
    ("for =192.0.2.43", UNCHANGED),
    ('for="192.0.2.43\x01"', UNCHANGED),
    ("for=192.0.2.43;proto=https x", UNCHANGED),
    ('for=garbage", for=10.0.0.5', changed(client=("10.0.0.5", None))),
    # an unterminated quote cannot swallow the elements after it
    ('for="198.51.100.1, for=203.0.113.7', changed(client=("203.0.113.7", None))),
    # a quoted "," or ";" breaks its element (no for/by/host/proto holds one)
    ('for=192.0.2.43;ext="a,b"', UNCHANGED),
    ('for=192.0.2.43;ext="a;b"', UNCHANGED),
    # X-Forwarded-* are not read in this mode (see test_forwarded_ignores_x_forwarded)
]


@pytest.mark.parametrize(("value", "expected"), FORWARDED_CASES)
def test_forwarded(value: str, expected: ProxyResult) -> None:
    assert forwarded(value) == expected
    if expected == UNCHANGED:
        assert forwarded(value) is UNCHANGED


def test_forwarded_ignores_x_forwarded() -> None:
    headers = {XFF: "203.0.113.7", XFP: "https", XFH: "a.example", XFPREFIX: "/x"}
    assert resolve(TRUSTED, "forwarded", PEER, headers, "http", HOST) is UNCHANGED


# --- repeated header lines, through the real environ --------------------------------


@pytest.mark.parametrize(
    ("mode", "lines", "expected"),
    [
        (
            "x-forwarded",
            [
                (b"x-forwarded-for", b"198.51.100.1"),
                (b"x-forwarded-for", b"203.0.113.7, 10.0.0.5"),
                (b"x-forwarded-proto", b"http, https"),
                (b"x-forwarded-proto", b"http"),
            ],
            changed(
                client=("203.0.113.7", None),
                scheme="https",
                server_name="app.internal",
                server_port="8000",
            ),
        ),
        (
            "forwarded",
            [
                (b"forwarded", b"for=198.51.100.1"),
                (b"forwarded", b'for="[2001:db8::17]:4711";proto=https'),
                (b"forwarded", b"for=10.0.0.5;proto=http"),
            ],
            changed(
                client=("2001:db8::17", 4711),
                scheme="https",
                server_name="app.internal",
                server_port="8000",
            ),
        ),
    ],
)
def test_repeated_header_lines(
    mode: ProxyMode, lines: list[tuple[bytes, bytes]], expected: ProxyResult
) -> None:
    request = h11.Request(
        method="GET", target="/", headers=[(b"host", HOST.encode()), *lines]
    )
    conn = ConnectionInfo(server=("10.0.0.1", 8000), client=PEER)
    environ = build_environ(request, conn, "")
    result = resolve(
        TRUSTED, mode, conn.client, environ, conn.url_scheme, environ["HTTP_HOST"]
    )
    assert result == expected


# --- whatever arrives, nothing invalid comes out ------------------------------------

HEADER_TEXT = st.lists(
    st.sampled_from(
        [
            *'0123456789abcdef.:[]_,; ="\\/@%?#-xX\t',
            *("for", "proto", "host", "http", "https", "unknown", "10.0.0.5", "::1"),
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PROXY_MODES),
    st.fixed_dictionaries({key: HEADER_TEXT for key in sorted(READ_KEYS)}),
    st.sampled_from([None, HOST, "example.com", "bad host"]),
)
def test_results_are_always_valid(
    mode: ProxyMode, headers: dict[str, str], host: str | None
) -> None:
    everyone = parse_trusted("*")
    result = resolve(everyone, mode, PEER, headers, "http", host)
    assert result.trusted
    if result.client is not None:
        ip, port = result.client
        assert str(ipaddress.ip_address(ip)) == ip
        assert port is None or 0 < port <= 65535
    assert result.scheme in (None, "https")  # "http" is the current one
    for value in (result.host, result.server_name):
        if value is not None:
            assert value
            assert not set(value) & set(' /@\\%?#,;"\t')
    if result.script_name is not None:
        assert result.script_name == "" or result.script_name[0] == "/"
        assert ".." not in result.script_name.split("/")
    if result.server_port is not None:
        assert 0 < int(result.server_port) <= 65535
    assert resolve(TRUSTED, mode, ("203.0.113.7", 1), headers, "http", host) is (
        UNTRUSTED
    )
