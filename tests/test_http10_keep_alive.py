"""HTTP/1.0 keep-alive (``http/_state.py`` rule 9) over real loopback sockets: what
``ab -k`` and other 1.0 clients ask for with ``Connection: keep-alive``.

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

from typing import Any

from tests.apps import generator
from tests.client import Client
from tests.test_server import serving

# What ab -k sends.
KEEP_ALIVE = (
    b"GET /%d HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\n"
    b"User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
)


def counted(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["PATH_INFO"].encode() + b" " + environ["SERVER_PROTOCOL"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def no_content(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("204 No Content", [])
    return []


async def test_three_requests_on_one_connection() -> None:
    async with serving(counted) as (_, port):
        client = await Client.connect(port)
        for index in range(3):
            await client.send(KEEP_ALIVE % index)
            response = await client.response()
            assert response.body == b"/%d HTTP/1.0" % index
            assert response.all(b"connection") == [b"keep-alive"]
        # Pipelined, as well, and a HEAD (no body: its length is known).
        await client.send(KEEP_ALIVE % 3 + (KEEP_ALIVE % 4).replace(b"GET", b"HEAD"))
        assert (await client.response()).body == b"/3 HTTP/1.0"
        head = await client.response(b"HEAD")
        assert head.all(b"connection") == [b"keep-alive"]
        await client.send(KEEP_ALIVE % 5)
        assert (await client.response()).body == b"/5 HTTP/1.0"
        await client.close()


async def test_a_bodyless_status_keeps_the_connection() -> None:
    async with serving(no_content) as (_, port):
        client = await Client.connect(port)
        for index in range(2):
            await client.send(KEEP_ALIVE % index)
            response = await client.response()
            assert response.status == 204
            assert response.all(b"connection") == [b"keep-alive"]
        await client.close()


async def test_a_response_of_unknown_length_ends_the_connection() -> None:
    async with serving(generator) as (_, port):
        client = await Client.connect(port)
        await client.send(KEEP_ALIVE % 1)
        response = await client.response()
        assert response.status == 200
        assert response.body  # close-delimited: the close ends it
        assert response.all(b"connection") == [b"close"]
        assert response.header(b"transfer-encoding") is None
        assert await client.closed_by_server()


async def test_http10_without_keep_alive_closes_as_before() -> None:
    async with serving(counted) as (_, port):
        client = await Client.connect(port)
        await client.send(b"GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n")
        response = await client.response()
        assert response.body == b"/a HTTP/1.0"
        assert response.all(b"connection") == [b"close"]
        assert await client.closed_by_server()  # the second request is never read
