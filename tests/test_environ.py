"""``build_environ``: request heads in, CGI variables out (table-driven, no I/O).

Each case runs on a small frozen fake request and, where h11 accepts the request, on a
real ``h11.Request`` too, so the fake cannot drift from what the protocol hands over.
"""

from __future__ import annotations

import wsgiref.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
import pytest

from aiogate import environ as environ_module
from aiogate._types import ConnectionInfo
from aiogate.environ import build_environ, header_environ_key
from aiogate.http import _syntax


@dataclass(frozen=True, slots=True)
class FakeRequest:
    method: bytes = b"GET"
    target: bytes = b"/"
    http_version: bytes = b"1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ((b"host", b"example.com"),)


TCP = ConnectionInfo(server=("127.0.0.1", 8000), client=("10.0.0.7", 51234))


def fake_and_h11(
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]] = ((b"host", b"example.com"),),
    method: bytes = b"GET",
    http_version: bytes = b"1.1",
) -> list[Any]:
    """The same request twice: as ``FakeRequest`` and as ``h11.Request``."""
    headers = tuple(headers)
    return [
        FakeRequest(method, target, http_version, headers),
        h11.Request(
            method=method,
            target=target,
            headers=list(headers),
            http_version=http_version,
        ),
    ]


def environ_of(
    request: Any, conn: ConnectionInfo = TCP, root_path: str = ""
) -> dict[str, Any]:
    return build_environ(request, conn, root_path)


# (target, PATH_INFO, QUERY_STRING)
TARGETS = [
    (b"/", "/", ""),
    (b"/hello?x=1&y=2", "/hello", "x=1&y=2"),
    (b"/a?", "/a", ""),
    (b"/a?b?c", "/a", "b?c"),
    # Percent-decoding goes to bytes, then latin-1: never UTF-8.
    (b"/caf%C3%A9", "/caf\xc3\xa9", ""),
    (b"/caf%c3%a9?q=caf%C3%A9", "/caf\xc3\xa9", "q=caf%C3%A9"),
    # %2F is decoded like any other escape (wsgiref, gunicorn).
    (b"/a%2Fb", "/a/b", ""),
    (b"/sp%20ace+plus", "/sp ace+plus", ""),
    # A malformed escape is left as it is.
    (b"/bad%zz%4", "/bad%zz%4", ""),
    (b"/%00nul", "/\x00nul", ""),
    (b"//double//slash", "//double//slash", ""),
    (b"/a/../b", "/a/../b", ""),
    # A fragment is not part of a request-target: dropped, even before a "?".
    (b"/page#frag", "/page", ""),
    (b"/page?q=1#frag", "/page", "q=1"),
    (b"/page#frag?q=1", "/page", ""),
    # Absolute-form.
    (b"http://example.com/path?q=1", "/path", "q=1"),
    (b"http://example.com", "/", ""),
    (b"http://example.com?q=1", "/", "q=1"),
    (b"https://example.com:8443/x%2Fy", "/x/y", ""),
    # Asterisk-form: PATH_INFO "*" (wsgiref, gunicorn).
    (b"*", "*", ""),
]


@pytest.mark.parametrize(("target", "path_info", "query"), TARGETS)
def test_target_split_and_decoding(target: bytes, path_info: str, query: str) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    for request in fake_and_h11(target, method=method):
        environ = environ_of(request)
        assert environ["PATH_INFO"] == path_info
        assert environ["QUERY_STRING"] == query
        assert environ["SCRIPT_NAME"] == ""
        assert environ["RAW_URI"] == environ["REQUEST_URI"] == target.decode("latin-1")
        assert environ["REQUEST_METHOD"] == method.decode()


def test_utf8_path_round_trips_through_latin1() -> None:
    environ = environ_of(FakeRequest(target=b"/caf%C3%A9"))
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"


def test_raw_non_ascii_target_bytes_are_latin1() -> None:
    # h11 rejects these (the target must be visible ASCII), but another parser
    # might not: they still come out as latin-1, byte for byte.
    with pytest.raises(h11.LocalProtocolError):
        fake_and_h11(b"/\xe9t\xe9")
    environ = environ_of(FakeRequest(target=b"/\xe9t\xe9?\xff"))
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/\xe9t\xe9", "\xff")


def test_authority_form_is_kept_as_the_path() -> None:
    environ = environ_of(FakeRequest(method=b"CONNECT", target=b"example.com:443"))
    assert environ["PATH_INFO"] == "example.com:443"
    assert environ["QUERY_STRING"] == ""


# (root_path, target, SCRIPT_NAME, PATH_INFO)
ROOT_PATHS = [
    ("/api", b"/api", "/api", ""),
    ("/api", b"/api/", "/api", "/"),
    ("/api", b"/api/users?x=1", "/api", "/users"),
    # Not at a segment boundary: the whole path stays in PATH_INFO.
    ("/api", b"/apix", "/api", "/apix"),
    ("/api", b"/other", "/api", "/other"),
    ("/api", b"/", "/api", "/"),
    # Matched on the decoded path.
    ("/api", b"/%61pi/x", "/api", "/x"),
    ("/a/b", b"/a/b/c", "/a/b", "/c"),
    ("/a/b", b"/a/bc", "/a/b", "/a/bc"),
    # A non-ASCII root_path is compared (and given) in the latin-1 form of its UTF-8.
    ("/café", b"/caf%C3%A9/menu", "/caf\xc3\xa9", "/menu"),
    ("/api", b"*", "/api", "*"),
    ("/api", b"http://h/api/x", "/api", "/x"),
]


@pytest.mark.parametrize(
    ("root_path", "target", "script_name", "path_info"), ROOT_PATHS
)
def test_root_path(
    root_path: str, target: bytes, script_name: str, path_info: str
) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    for request in fake_and_h11(target, method=method):
        environ = environ_of(request, root_path=root_path)
        assert environ["SCRIPT_NAME"] == script_name
        assert environ["PATH_INFO"] == path_info


def test_headers_map_to_cgi_names() -> None:
    headers = [
        (b"host", b"example.com"),
        (b"user-agent", b"curl/8"),
        (b"content-type", b"text/plain"),
        (b"content-length", b"5"),
        (b"x-custom-thing", b"v"),
        (b"x-odd!name", b"w"),
    ]
    for request in fake_and_h11(b"/", headers, method=b"POST"):
        environ = environ_of(request)
        assert environ["HTTP_HOST"] == "example.com"
        assert environ["HTTP_USER_AGENT"] == "curl/8"
        assert environ["CONTENT_TYPE"] == "text/plain"
        assert environ["CONTENT_LENGTH"] == "5"
        assert environ["HTTP_X_CUSTOM_THING"] == "v"
        assert environ["HTTP_X_ODD!NAME"] == "w"
        assert "HTTP_CONTENT_TYPE" not in environ
        assert "HTTP_CONTENT_LENGTH" not in environ


def test_content_type_and_length_absent_when_not_sent() -> None:
    environ = environ_of(FakeRequest())
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ


def test_repeated_headers_are_joined() -> None:
    headers = [
        (b"host", b"example.com"),
        (b"accept", b"text/html"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"accept", b"text/plain"),
        (b"x-forwarded-for", b"2.2.2.2, 3.3.3.3"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"cookie", b"c=3"),
    ]
    for request in fake_and_h11(b"/", headers):
        environ = environ_of(request)
        assert environ["HTTP_ACCEPT"] == "text/html,text/plain"
        assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2, 3.3.3.3"
        # Cookie uses the separator of its one-line form (RFC 6265 §5.4).
        assert environ["HTTP_COOKIE"] == "a=1; b=2; c=3"


def test_header_names_with_underscores_are_dropped() -> None:
    headers = [
        (b"host", b"example.com"),
        (b"x-auth-user", b"alice"),
        (b"x-auth_user", b"mallory"),
        (b"content_length", b"999"),
    ]
    for request in fake_and_h11(b"/", headers):
        environ = environ_of(request)
        assert environ["HTTP_X_AUTH_USER"] == "alice"
        assert "CONTENT_LENGTH" not in environ
        assert "HTTP_CONTENT_LENGTH" not in environ


def test_header_values_are_latin1() -> None:
    headers = [(b"host", b"example.com"), (b"x-name", b"caf\xc3\xa9 \xff")]
    for request in fake_and_h11(b"/", headers):
        assert environ_of(request)["HTTP_X_NAME"] == "caf\xc3\xa9 \xff"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (b"host", "HTTP_HOST"),
        (b"content-type", "CONTENT_TYPE"),
        (b"content-length", "CONTENT_LENGTH"),
        (b"x-a-b-c", "HTTP_X_A_B_C"),
        (b"some-new-header-nobody-sends", "HTTP_SOME_NEW_HEADER_NOBODY_SENDS"),
        (b"x_y", ""),
    ],
)
def test_header_environ_key(name: bytes, key: str) -> None:
    assert header_environ_key(name) == key


def test_many_distinct_header_names_still_map() -> None:
    # More uncommon names than the key cache holds: all still map correctly.
    headers = [(b"host", b"h")] + [(b"x-n%d" % i, b"%d" % i) for i in range(600)]
    environ = environ_of(FakeRequest(headers=tuple(headers)))
    assert all(environ[f"HTTP_X_N{i}"] == str(i) for i in range(600))


# (scheme, Host header or None, server sockname, SERVER_NAME, SERVER_PORT)
# Any: asyncio reports IPv6 addresses as 4-tuples, which _types.Address does not cover.
SERVERS: list[tuple[str, bytes | None, Any, str, str]] = [
    ("http", b"example.com", ("127.0.0.1", 8000), "example.com", "80"),
    ("https", b"example.com", ("127.0.0.1", 8000), "example.com", "443"),
    ("http", b"example.com:8080", ("127.0.0.1", 8000), "example.com", "8080"),
    ("http", b"example.com:", ("127.0.0.1", 8000), "example.com", "80"),
    ("http", b"Example.COM:08080", ("127.0.0.1", 8000), "Example.COM", "8080"),
    ("http", b"[::1]:9000", ("::1", 8000, 0, 0), "[::1]", "9000"),
    ("https", b"[2001:db8::1]", ("::1", 8000, 0, 0), "[2001:db8::1]", "443"),
    # Unusable Host values fall back to the socket address.
    ("http", b"example.com:http", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b"example.com:99999", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b"::1", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b"[::1", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b"[::1]x", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b":8080", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", b"", ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    # No Host header (HTTP/1.0): the socket address.
    ("http", None, ("127.0.0.1", 8000), "127.0.0.1", "8000"),
    ("http", None, ("::1", 8000, 0, 0), "[::1]", "8000"),
    # UNIX socket or unknown address without a Host: localhost and the default port.
    ("http", None, "/run/aiogate.sock", "localhost", "80"),
    ("https", None, None, "localhost", "443"),
    ("http", b"app.internal", "/run/aiogate.sock", "app.internal", "80"),
]


@pytest.mark.parametrize(("scheme", "host", "server", "name", "port"), SERVERS)
def test_server_name_and_port(
    scheme: str, host: bytes | None, server: Any, name: str, port: str
) -> None:
    conn = ConnectionInfo(server=server, client=("10.0.0.1", 1), url_scheme=scheme)
    headers = () if host is None else ((b"host", host),)
    environ = environ_of(FakeRequest(headers=headers, http_version=b"1.0"), conn)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)


def test_first_of_several_host_headers_counts() -> None:
    headers = ((b"host", b"a.example:1"), (b"host", b"b.example:2"))
    environ = environ_of(FakeRequest(headers=headers))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("a.example", "1")
    assert environ["HTTP_HOST"] == "a.example:1,b.example:2"


@pytest.mark.parametrize(
    ("target", "host", "name", "port"),
    [
        (b"http://target.example:81/p", "target.example:81", "target.example", "81"),
        (b"http://target.example/p", "target.example", "target.example", "80"),
        (
            b"https://Target.Example:443#f",
            "Target.Example:443",
            "Target.Example",
            "443",
        ),
        (b"http://[::2]:83?q", "[::2]:83", "[::2]", "83"),
        # A port that does not parse: HTTP_HOST as sent, SERVER_* from the socket,
        # as for the same Host header.
        (b"http://target.example:99999/", "target.example:99999", "127.0.0.1", "8000"),
    ],
)
def test_absolute_form_authority_replaces_host(
    target: bytes, host: str, name: str, port: str
) -> None:
    """RFC 9112 §3.2.2: the Host header is ignored; the authority is HTTP_HOST and
    SERVER_NAME/SERVER_PORT, so the app never sees two disagreeing hosts."""
    for headers in (((b"host", b"host.example:9"),), ()):
        for request in fake_and_h11(target, headers, http_version=b"1.0"):
            environ = environ_of(request)
            assert environ["HTTP_HOST"] == host
            assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)


@pytest.mark.parametrize(
    "target",
    [
        b"http://ev\"il'<x>/",
        b"http://user:pw@target.example:82/p",  # RFC 9110 §4.2.4
        b"http://@target.example/",
        b"http://:80/",  # RFC 9110 §4.2.1: no host
        b"http://target.example:80:80/",
        b"http://[::1/",
        b"http://::1/",
        b"http://%zz/",
    ],
)
def test_a_bad_absolute_form_authority_reaches_the_app_nowhere(target: bytes) -> None:
    """The parser refuses these (400); if a head like this arrives anyway, neither
    the authority nor the Host header it overrides is believed."""
    for request in fake_and_h11(target, ((b"host", b"host.example:9"),)):
        environ = environ_of(request)
        assert "HTTP_HOST" not in environ
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")


@pytest.mark.parametrize(
    ("target", "authority"),
    [
        (b"http://h/p", b"h"),
        (b"http://h", b"h"),
        (b"https://h:8443?q", b"h:8443"),
        (b"http://h#frag", b"h"),
        (b"http://u:p@h:1/x", b"u:p@h:1"),
        (b"http://", b""),
        (b"HTTP://H/", b"H"),
        (b"/p", None),
        (b"*", None),
        (b"example.com:443", None),
        (b"/a://b", None),
        (b"://h/", None),
    ],
)
def test_absolute_form_authority(target: bytes, authority: bytes | None) -> None:
    assert environ_module.absolute_form_authority(target) == authority


VALID_AUTHORITIES = [
    b"example.com",
    b"EXAMPLE.com:8080",
    b"h:",  # RFC 3986: port = *DIGIT
    b"127.0.0.1",
    b"[::1]",
    b"[::1]:80",
    b"[fe80::1%25eth0]:80",  # RFC 6874 zone
    b"[v1.fe:x]",  # IPvFuture
    b"a-b.c_d~e",
    b"%41bc",
    b"sub!$&'()*+,;=.example",
]
INVALID_AUTHORITIES = [
    b"",
    b":80",
    b"user@h",
    b"user:pw@h:80",
    b"ev\"il'<x>",
    b"h:80:80",
    b"h:8o",
    b"[::1",
    b"::1",
    b"[::1]x",
    b"h/p",
    b"h?q",
    b"h#f",
    b"a b",
    b"h\t",
    b"%zz",
    b"h\xe9",
]


@pytest.mark.parametrize("value", VALID_AUTHORITIES)
def test_check_authority_accepts(value: bytes) -> None:
    assert environ_module.check_authority(value)


@pytest.mark.parametrize("value", INVALID_AUTHORITIES)
def test_check_authority_rejects(value: bytes) -> None:
    assert not environ_module.check_authority(value)


@pytest.mark.parametrize("value", VALID_AUTHORITIES + INVALID_AUTHORITIES)
def test_check_authority_is_the_host_rule(value: bytes) -> None:
    """The same text is good as an authority exactly when it is good as a Host
    header (http11's rule), with a host in it and no userinfo."""
    host_ok = _syntax.HOST_RE.fullmatch(value) is not None
    has_host = value.partition(b":")[0] != b"" or value.startswith(b"[")
    assert environ_module.check_authority(value) == (host_ok and has_host)


@pytest.mark.parametrize(
    ("client", "remote"),
    [
        (("10.0.0.7", 51234), {"REMOTE_ADDR": "10.0.0.7", "REMOTE_PORT": "51234"}),
        (("::1", 40000, 0, 0), {"REMOTE_ADDR": "::1", "REMOTE_PORT": "40000"}),
        ("", {"REMOTE_ADDR": ""}),
        ("/tmp/client.sock", {"REMOTE_ADDR": "/tmp/client.sock"}),
        (None, {"REMOTE_ADDR": ""}),
    ],
)
def test_remote_addr_and_port(client: Any, remote: dict[str, str]) -> None:
    environ = environ_of(FakeRequest(), ConnectionInfo(server=None, client=client))
    got = {
        key: environ[key] for key in ("REMOTE_ADDR", "REMOTE_PORT") if key in environ
    }
    assert got == remote
    # RFC 3875 §4.1.9: the address stands in for the client's name (no DNS lookup),
    # so REMOTE_HOST is always there, as waitress sets it.
    assert environ["REMOTE_HOST"] == remote["REMOTE_ADDR"]


@pytest.mark.parametrize(
    ("version", "protocol"),
    [(b"1.1", "HTTP/1.1"), (b"1.0", "HTTP/1.0"), (b"0.9", "HTTP/0.9")],
)
def test_server_protocol(version: bytes, protocol: str) -> None:
    assert environ_of(FakeRequest(http_version=version))["SERVER_PROTOCOL"] == protocol


def test_full_environ_of_an_h11_request() -> None:
    request = h11.Request(
        method="POST",
        target="/api/items?id=3",
        headers=[
            ("Host", "shop.example:8080"),
            ("Content-Type", "application/json"),
            ("Content-Length", "2"),
            ("X-Request-ID", "abc"),
        ],
    )
    conn = ConnectionInfo(server=("192.0.2.1", 8080), client=("198.51.100.2", 4000))
    assert build_environ(request, conn, "/api") == {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/api",
        "PATH_INFO": "/items",
        "QUERY_STRING": "id=3",
        "RAW_URI": "/api/items?id=3",
        "REQUEST_URI": "/api/items?id=3",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "shop.example:8080",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "2",
        "HTTP_X_REQUEST_ID": "abc",
        "SERVER_NAME": "shop.example",
        "SERVER_PORT": "8080",
        "REMOTE_ADDR": "198.51.100.2",
        "REMOTE_HOST": "198.51.100.2",
        "REMOTE_PORT": "4000",
    }


@pytest.mark.parametrize(
    ("target", "conn", "url"),
    [
        (b"/p?q=1", TCP, "http://example.com/p?q=1"),
        (
            b"/p",
            ConnectionInfo(server="/run/s.sock", client="", url_scheme="https"),
            "https://localhost/p",
        ),
    ],
)
def test_wsgiref_reconstructs_the_url(
    target: bytes, conn: ConnectionInfo, url: str
) -> None:
    host = ((b"host", b"example.com"),) if conn is TCP else ()
    environ = environ_of(FakeRequest(target=target, headers=host), conn)
    environ["wsgi.url_scheme"] = conn.url_scheme
    assert wsgiref.util.request_uri(environ) == url


def test_every_value_is_a_native_string() -> None:
    headers = ((b"host", b"h:1"), (b"cookie", b"a=1"), (b"cookie", b"b=2"))
    environ = environ_of(FakeRequest(headers=headers))
    assert all(type(value) is str for value in environ.values())


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"example.com")],
        [(b"Host", b"a:1"), (b"Accept", b"*/*"), (b"ACCEPT", b"text/html")],
        [(b"host", b"h"), (b"cookie", b"a=1"), (b"Cookie", b"b=2"), (b"x_skip", b"1")],
        [(b"Host", b"h"), (b"Content-Type", b"text/plain"), (b"Content-Length", b"3")],
        [
            (b"X-Unusual-Name-1", b"caf\xe9"),
            (b"x-unusual-name-1", b"2"),
            (b"host", b"h"),
        ],
    ],
)
def test_h11_headers_give_the_same_environ_as_any_iterable(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """build_environ reads h11's header list directly; the result, key order
    included, must be what iterating ``request.headers`` gives."""
    request = h11.Request(method=b"GET", target=b"/p?q", headers=headers)
    lowered = tuple((name.lower(), value) for name, value in headers)
    fake = FakeRequest(target=b"/p?q", headers=lowered)
    assert list(request.headers) == list(lowered)
    for _ in range(2):  # the second time through the caches
        assert list(environ_of(request).items()) == list(environ_of(fake).items())


def test_host_split_is_remembered_per_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environ_module, "_HOST_CACHES", {"http": {}, "https": {}})
    splits: list[str] = []
    real_split_host = environ_module._split_host

    def counting(host: str, default_port: str) -> tuple[str, str] | None:
        splits.append(host)
        return real_split_host(host, default_port)

    monkeypatch.setattr(environ_module, "_split_host", counting)
    https = ConnectionInfo(server=None, client=None, url_scheme="https")
    request = FakeRequest(headers=((b"host", b"cached.example"),))
    for _ in range(3):
        plain = environ_of(request)
        secure = environ_of(request, https)
        assert (plain["SERVER_NAME"], plain["SERVER_PORT"]) == ("cached.example", "80")
        assert (secure["SERVER_NAME"], secure["SERVER_PORT"]) == (
            "cached.example",
            "443",
        )
    assert splits == ["cached.example", "cached.example"]  # once per scheme


def test_unusable_hosts_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environ_module, "_HOST_CACHES", {"http": {}, "https": {}})
    request = FakeRequest(headers=((b"host", b"bad:port"),))
    for _ in range(2):
        env = environ_of(request)
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert environ_module._HOST_CACHES == {"http": {}, "https": {}}


def test_host_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environ_module, "_HOST_CACHES", {"http": {}, "https": {}})
    monkeypatch.setattr(environ_module, "_HOST_CACHE_LIMIT", 2)
    for i in range(5):
        request = FakeRequest(headers=((b"host", b"h%d.example:%d" % (i, 8000 + i)),))
        for _ in range(2):
            env = environ_of(request)
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (
                f"h{i}.example",
                str(8000 + i),
            )
    assert len(environ_module._HOST_CACHES["http"]) == 2


def test_unknown_scheme_uses_port_80_uncached() -> None:
    conn = ConnectionInfo(server=None, client=None, url_scheme="gopher")
    env = environ_of(FakeRequest(headers=((b"host", b"old.example"),)), conn)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("old.example", "80")
    assert "gopher" not in environ_module._HOST_CACHES


def test_h11_header_list_is_read_directly() -> None:
    """The fast path is on for the installed h11 (it probes h11's private list); if a
    new h11 keeps its fields differently, this fails to flag the lost speed."""
    request = h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"h")])
    assert environ_module._H11_HEADERS is type(request.headers)
