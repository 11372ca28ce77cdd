"""Issue 12 item 6, "the small defects", as a client sees them over real sockets.

One test (or table) per defect; each failed on the code before its fix:

1. An app's ``Content-Length: 5, 5`` (or two Content-Length headers) got the client no
   response at all; now it is an app error: a 500 and an ERROR log record.
2. A header value with a control character (ESC, DEL, 0x01) reached the wire; now it
   is an app error too.

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

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
