"""Issue 12 item 6, "the small defects", as a client sees them over real sockets.

One test (or table) per defect; each failed on the code before its fix:

1. An app's ``Content-Length: 5, 5`` (or two Content-Length headers) got the client no
   response at all; now it is an app error: a 500 and an ERROR log record.
2. A header value with a control character (ESC, DEL, 0x01) reached the wire; now it
   is an app error too.
3. An absolute-form target's authority is what the app sees as ``HTTP_HOST`` and
   ``SERVER_NAME``/``SERVER_PORT`` (RFC 9112 §3.2.2: the Host header is ignored), and
   an authority that is not a valid host is a 400, like the same text in ``Host``.
4. Proxy-identity headers beyond the six ``resolve`` reads (``X-Real-IP``,
   ``True-Client-IP`` ...) reached the app from an untrusted peer; now they are
   removed like those six.

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.client import Client
from tests.test_server import serving

Environ = dict[str, Any]


def fixed_response(headers: list[tuple[str, str]], body: bytes = b"hello") -> Any:
    """An app that answers every request with these headers and this body."""

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", list(headers))
        return [body]

    return app


def environ_json(environ: Environ, start_response: Any) -> list[bytes]:
    """Every ``HTTP_*`` and ``SERVER_*`` key and ``REMOTE_ADDR``, as JSON."""
    seen = {
        key: value
        for key, value in environ.items()
        if key.startswith(("HTTP_", "SERVER_")) or key == "REMOTE_ADDR"
    }
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def fetch(port: int, request: bytes) -> tuple[int, bytes]:
    client = await Client.connect(port)
    try:
        await client.send(request)
        response = await client.response()
    finally:
        await client.close()
    return response.status, response.body


# --- 1 and 2: response headers the app must not send ---------------------------------


async def assert_500_and_logged(
    headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The app's response with these headers is a 500 and one ERROR record."""
    caplog.set_level(logging.ERROR, logger="aiogate.error")
    app = fixed_response([("Content-Type", "text/plain"), *headers])
    async with serving(app) as (_, port):
        status, body = await fetch(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500
    assert body != b"hello"
    records = [
        r
        for r in caplog.records
        if r.name == "aiogate.error" and r.levelno == logging.ERROR
    ]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert type(records[0].exc_info[1]) is ValueError


@pytest.mark.parametrize(
    "headers",
    [
        # RFC 9110 §8.6: Content-Length = 1*DIGIT, and we refuse repeats even when
        # equal. The list used to reach the serialiser, which refused it, and the
        # client got no response at all; the repeat went out twice.
        [("Content-Length", "5, 5")],
        [("Content-Length", "5"), ("Content-Length", "5")],
    ],
)
async def test_an_app_content_length_list_or_repeat_is_a_500(
    headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    await assert_500_and_logged(headers, caplog)


@pytest.mark.parametrize(
    "headers",
    [
        # RFC 9110 §5.5: field-vchar = VCHAR / obs-text; no other control characters.
        [("X-Color", "\x1b[31mred\x1b[0m")],
        [("X-Del", "a\x7fb")],
        [("Set-Cookie", "ga=google\x01analytics")],
        [("X-Unit", "a\x1fb")],
    ],
)
async def test_a_control_character_in_an_app_header_is_a_500(
    headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    await assert_500_and_logged(headers, caplog)


async def test_valid_headers_still_pass() -> None:
    """What the new checks must not refuse: tabs, obs-text, one plain length."""
    headers = [
        ("Content-Length", "5"),
        ("X-Tab", "a\tb"),
        ("X-Latin1", "caf\xe9"),
        ("X-Punct", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ]
    async with serving(fixed_response(headers)) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await client.response()
        await client.close()
    assert response.status == 200
    assert response.body == b"hello"
    assert response.header(b"x-tab") == b"a\tb"
    assert response.header(b"x-latin1") == b"caf\xe9"


# --- 3: absolute-form targets ------------------------------------------------------


@pytest.mark.parametrize(
    ("request_head", "host", "server"),
    [
        (
            b"GET http://target.example:8081/p HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "target.example:8081",
            ("target.example", "8081"),
        ),
        (
            b"GET http://target.example/p?q=1 HTTP/1.0\r\n\r\n",
            "target.example",
            ("target.example", "80"),
        ),
        (
            b"GET http://[::1]:9/ HTTP/1.1\r\nHost: other.example:7\r\n\r\n",
            "[::1]:9",
            ("[::1]", "9"),
        ),
    ],
)
async def test_absolute_form_authority_is_the_host(
    request_head: bytes, host: str, server: tuple[str, str]
) -> None:
    async with serving(environ_json) as (_, port):
        status, body = await fetch(port, request_head)
    assert status == 200
    seen = json.loads(body)
    assert seen["HTTP_HOST"] == host
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == server


@pytest.mark.parametrize(
    "target",
    [
        b"http://ev\"il'<x>/",
        b"http://user:pw@target.example/",  # RFC 9110 §4.2.4: userinfo is an error
        b"http://target.example:80:80/",
        b"http://:80/",  # RFC 9110 §4.2.1: an empty host MUST be rejected
    ],
)
async def test_a_bad_absolute_form_authority_is_a_400(target: bytes) -> None:
    async with serving(environ_json) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET " + target + b" HTTP/1.0\r\n\r\n")
        raw = await client.read_until_eof()
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:80]


async def test_a_bad_host_header_is_a_400() -> None:
    """What the absolute-form authority must match: the same text as Host is a 400."""
    async with serving(environ_json) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / HTTP/1.0\r\nHost: ev\"il'<x>\r\n\r\n")
        raw = await client.read_until_eof()
    assert raw.startswith(b"HTTP/1.1 400 ")


# --- 4: proxy-identity headers from an untrusted peer ------------------------------

# One of every kind: the six resolve reads, and the others frameworks and libraries
# believe (see PROXY_ENVIRON_KEYS).
IDENTITY_HEADERS = (
    b"X-Forwarded-For: 6.6.6.6\r\n"
    b"Forwarded: for=6.6.6.6\r\n"
    b"X-Real-IP: 6.6.6.6\r\n"
    b"True-Client-IP: 6.6.6.6\r\n"
    b"X-Client-IP: 6.6.6.6\r\n"
    b"Client-IP: 6.6.6.6\r\n"
    b"CF-Connecting-IP: 6.6.6.6\r\n"
    b"Fastly-Client-IP: 6.6.6.6\r\n"
    b"X-Cluster-Client-IP: 6.6.6.6\r\n"
    b"X-Original-Forwarded-For: 6.6.6.6\r\n"
    b"X-ProxyUser-Ip: 6.6.6.6\r\n"
    b"X-Forwarded-Ssl: on\r\n"
    b"X-Forwarded-Scheme: https\r\n"
    b"X-Url-Scheme: https\r\n"
    b"Front-End-Https: on\r\n"
    b"X-Forwarded-Protocol: ssl\r\n"
    b"X-Original-URL: /admin\r\n"
    b"X-Forwarded-Server: evil.test\r\n"
    b"X-Forwarded-Prefix: /evil\r\n"
)


@pytest.mark.parametrize(
    "options",
    [{"forwarded_allow_ips": "10.0.0.1"}, {"proxy_headers": "off"}],
)
async def test_proxy_identity_headers_from_an_untrusted_peer_are_removed(
    options: dict[str, str],
) -> None:
    request = (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n"
        + IDENTITY_HEADERS
        + b"X-Other: kept\r\n\r\n"
    )
    async with serving(environ_json, **options) as (_, port):
        status, body = await fetch(port, request)
    assert status == 200
    seen = json.loads(body)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["HTTP_X_OTHER"] == "kept"
    assert "6.6.6.6" not in body.decode()
    leaked = sorted(
        key
        for key in seen
        if key not in ("HTTP_HOST", "HTTP_X_OTHER") and key.startswith("HTTP_")
    )
    assert leaked == []


async def test_a_trusted_proxy_passes_them_on() -> None:
    """What the removal must not touch: from a trusted peer (loopback, the default)
    the headers reach the app as sent."""
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\n" + IDENTITY_HEADERS + b"\r\n"
    async with serving(environ_json) as (_, port):
        status, body = await fetch(port, request)
    assert status == 200
    seen = json.loads(body)
    assert seen["REMOTE_ADDR"] == "6.6.6.6"
    assert seen["HTTP_X_REAL_IP"] == "6.6.6.6"
    assert seen["HTTP_X_FORWARDED_SSL"] == "on"
    assert seen["HTTP_X_ORIGINAL_URL"] == "/admin"


# -- a response cut by an app error ----------------------------------------------------


def cut_short(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    yield b"x" * 300_000  # more than the socket buffers take at once
    raise RuntimeError("the app fails half way")


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
async def test_a_response_cut_by_an_app_error_ends_with_a_reset(
    version: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # For HTTP/1.0 the body is close-delimited: a FIN would read as a complete
    # response. The client must see a reset, whatever was queued before it.
    caplog.set_level(logging.CRITICAL, logger="aiogate.error")
    async with serving(cut_short) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET / " + version + b"\r\nHost: x\r\n\r\n")
        received, reset = await client.read_until_reset()
        assert reset
        assert len(received) < 300_000 + 1000
