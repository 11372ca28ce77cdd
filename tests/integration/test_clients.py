"""The HTTP clients people use, against aiogate over real loopback sockets: requests,
httpx (sync and async), urllib3, http.client and curl.

For each: keep-alive (the app returns ``REMOTE_PORT``, so a reused connection shows
as one client port), uploads with Content-Length and chunked, and streamed downloads.
None of these clients pipelines any more (curl dropped it), so pipelining is driven
from a raw socket, with request bodies, against a Flask app.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import flask
import h11
import httpx
import pytest
import requests
import urllib3

from aiogate import Server
from tests.integration.servers import TIMEOUT, Running, serve_in_thread

CURL = "/usr/bin/curl"
Environ = dict[str, Any]


def probe(environ: Environ, start_response: Any) -> Any:
    """A plain WSGI app that reports what it received.

    ``/peer``: the client's port and the request's protocol. ``/upload``: size and
    SHA-256 of the body and how it was framed. ``/stream?chunks=N&size=S``: N chunks
    of S bytes, streamed (no Content-Length). ``/sized?size=S``: S bytes with a
    Content-Length.
    """
    path = environ["PATH_INFO"]
    query = {
        key: values[0] for key, values in parse_qs(environ["QUERY_STRING"]).items()
    }
    if path == "/peer":
        document = {
            "remote_port": environ["REMOTE_PORT"],
            "protocol": environ["SERVER_PROTOCOL"],
            "method": environ["REQUEST_METHOD"],
        }
    elif path == "/upload":
        data = environ["wsgi.input"].read()
        document = {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
            "remote_port": environ["REMOTE_PORT"],
        }
    elif path == "/stream":
        chunks, size = int(query.get("chunks", "10")), int(query.get("size", "100"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes([65 + n % 26]) * size for n in range(chunks))
    elif path == "/sized":
        body = pattern(int(query["size"]))
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such probe"]
    body = json.dumps(document).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def pattern(size: int) -> bytes:
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def streamed(chunks: int, size: int) -> bytes:
    return b"".join(bytes([65 + n % 26]) * size for n in range(chunks))


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve_in_thread(probe) as running:
        yield running


# -- requests ----------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for 127.0.0.1
        yield session


def test_requests_session_reuses_its_connection(
    server: Running, session: requests.Session
) -> None:
    ports = {session.get(server.url("/peer"), timeout=TIMEOUT).json()["remote_port"]}
    for _ in range(3):
        ports.add(
            session.get(server.url("/peer"), timeout=TIMEOUT).json()["remote_port"]
        )
    upload = session.post(server.url("/upload"), data=b"x" * 100_000, timeout=TIMEOUT)
    ports.add(upload.json()["remote_port"])
    streamed_response = session.get(server.url("/stream?chunks=50"), timeout=TIMEOUT)
    assert streamed_response.content == streamed(50, 100)
    ports.add(session.get(server.url("/peer"), timeout=TIMEOUT).json()["remote_port"])
    assert len(ports) == 1, ports

    # A second session is a second connection.
    with requests.Session() as other:
        other.trust_env = False
        other_port = other.get(server.url("/peer"), timeout=TIMEOUT).json()
    assert other_port["remote_port"] not in ports


def test_requests_uploads(server: Running, session: requests.Session) -> None:
    payload = os.urandom(2_000_000)
    sized = session.post(server.url("/upload"), data=payload, timeout=TIMEOUT).json()
    assert sized["size"] == len(payload)
    assert sized["sha256"] == hashlib.sha256(payload).hexdigest()
    assert sized["content_length"] == str(len(payload))

    pieces = [payload[i : i + 65_000] for i in range(0, len(payload), 65_000)]
    chunked = session.post(
        server.url("/upload"), data=iter(pieces), timeout=TIMEOUT
    ).json()
    # Buffered whole before the app ran: the decoded length is CONTENT_LENGTH.
    assert chunked["transfer_encoding"] is None
    assert chunked["content_length"] == str(len(payload))
    assert chunked["sha256"] == hashlib.sha256(payload).hexdigest()


def test_requests_streamed_download(server: Running, session: requests.Session) -> None:
    with session.get(
        server.url("/stream?chunks=300&size=1000"), stream=True, timeout=TIMEOUT
    ) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        received = b"".join(response.iter_content(chunk_size=4096))
    assert received == streamed(300, 1000)


# -- httpx -------------------------------------------------------------------------


def test_httpx_client_reuses_its_connection(server: Running) -> None:
    with httpx.Client(base_url=server.base, timeout=TIMEOUT, trust_env=False) as client:
        responses = [client.get("/peer") for _ in range(4)]
        responses.append(client.post("/upload", content=b"y" * 50_000))
        responses.append(client.get("/peer"))
    assert all(r.http_version == "HTTP/1.1" for r in responses)
    assert responses[0].json()["protocol"] == "HTTP/1.1"
    assert len({r.json()["remote_port"] for r in responses}) == 1


def test_httpx_uploads_and_streamed_download(server: Running) -> None:
    payload = os.urandom(500_000)
    with httpx.Client(base_url=server.base, timeout=TIMEOUT, trust_env=False) as client:
        pieces = [payload[i : i + 10_000] for i in range(0, len(payload), 10_000)]
        chunked = client.post("/upload", content=iter(pieces))
        assert chunked.request.headers["Transfer-Encoding"] == "chunked"
        assert chunked.json()["sha256"] == hashlib.sha256(payload).hexdigest()
        assert chunked.json()["transfer_encoding"] is None
        assert chunked.json()["content_length"] == str(len(payload))

        with client.stream("GET", "/stream?chunks=200&size=500") as response:
            assert response.status_code == 200
            received = b"".join(response.iter_raw())
        assert received == streamed(200, 500)

        sized = client.get("/sized?size=1000000")
        assert sized.headers["Content-Length"] == "1000000"
        assert sized.content == pattern(1_000_000)


async def test_httpx_async_client_concurrent_requests() -> None:
    """Many requests at once from one async client, against a server embedded in the
    test's own event loop (run on asyncio and on uvloop)."""
    async with Server(probe, host="127.0.0.1", port=0, threads=4) as server:
        port = server.sockets[0].getsockname()[1]
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=TIMEOUT,
            limits=limits,
            trust_env=False,
        ) as client:

            async def upload(n: int) -> dict[str, Any]:
                response = await client.post("/upload", content=bytes([n]) * (n * 1000))
                return response.json()  # type: ignore[no-any-return]

            async with asyncio.timeout(TIMEOUT):
                results = await asyncio.gather(*(upload(n) for n in range(1, 41)))
        for n, result in enumerate(results, start=1):
            assert result["size"] == n * 1000
            assert (
                result["sha256"] == hashlib.sha256(bytes([n]) * (n * 1000)).hexdigest()
            )
        # 40 requests over at most 4 kept-alive connections.
        assert 1 <= len({result["remote_port"] for result in results}) <= 4


# -- urllib3 -----------------------------------------------------------------------


def test_urllib3_pool_reuses_one_connection(server: Running) -> None:
    with urllib3.HTTPConnectionPool(
        "127.0.0.1", server.port, maxsize=1, block=True, timeout=TIMEOUT, retries=False
    ) as pool:
        ports = {pool.request("GET", "/peer").json()["remote_port"] for _ in range(3)}
        chunked = pool.request(
            "POST", "/upload", body=iter([b"a" * 1000, b"b" * 2000]), chunked=True
        ).json()
        assert (chunked["size"], chunked["content_length"]) == (3000, "3000")
        assert chunked["transfer_encoding"] is None
        ports.add(chunked["remote_port"])

        response = pool.request(
            "GET", "/stream?chunks=100&size=700", preload_content=False
        )
        try:
            received = b"".join(response.stream(1024))
        finally:
            response.release_conn()
        assert received == streamed(100, 700)

        ports.add(pool.request("GET", "/peer").json()["remote_port"])
        # (Not pool.num_connections: it counts connection objects, and http.client
        # silently reopens a closed one.)
        assert len(ports) == 1
        assert pool.num_requests == 6


def test_urllib3_pool_manager(server: Running) -> None:
    with urllib3.PoolManager(timeout=TIMEOUT, retries=False) as manager:
        first = manager.request("GET", server.url("/peer")).json()
        second = manager.request("GET", server.url("/peer")).json()
        assert first["remote_port"] == second["remote_port"]
        sized = manager.request("GET", server.url("/sized?size=70000"))
        assert sized.data == pattern(70_000)


# -- http.client -------------------------------------------------------------------


def test_http_client_connection_reuse_and_chunked_upload(server: Running) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/peer")
        first = json.loads(conn.getresponse().read())
        sock = conn.sock
        assert sock is not None
        local_port = sock.getsockname()[1]
        assert first["remote_port"] == str(local_port)

        conn.request(
            "POST",
            "/upload",
            body=iter([b"one", b"two", b"three"]),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        upload = json.loads(conn.getresponse().read())
        assert (upload["size"], upload["content_length"]) == (11, "11")
        assert upload["transfer_encoding"] is None

        conn.request("HEAD", "/sized?size=5000")
        head = conn.getresponse()
        assert head.getheader("Content-Length") == "5000"
        assert head.read() == b""

        conn.request("GET", "/stream?chunks=3&size=5")
        response = conn.getresponse()
        assert response.chunked
        assert response.read() == b"AAAAABBBBBCCCCC"

        conn.request("GET", "/peer")
        last = json.loads(conn.getresponse().read())
        assert conn.sock is sock, "http.client had to reconnect"
        assert last["remote_port"] == first["remote_port"]
    finally:
        conn.close()


# -- curl --------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run curl with a bounded time, no proxy and no config file."""
    return subprocess.run(
        [
            CURL,
            "-q",
            "--silent",
            "--show-error",
            "--noproxy",
            "*",
            "--max-time",
            str(int(TIMEOUT)),
            *args,
        ],
        capture_output=True,
        timeout=TIMEOUT + 5,
        check=True,
    )


def test_curl_reuses_the_connection_for_several_urls(server: Running) -> None:
    result = curl(
        "--write-out",
        "\\n%{num_connects}\\n",
        server.url("/peer"),
        server.url("/sized?size=20"),
        server.url("/peer"),
        server.url("/peer"),
    )
    lines = result.stdout.split(b"\n")
    peers = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert len(peers) == 3
    assert len({peer["remote_port"] for peer in peers}) == 1
    # num_connects: 1 for the first transfer, 0 for each that reused it.
    connects = [int(line) for line in lines if line.strip().isdigit()]
    assert connects == [1, 0, 0, 0]


def test_curl_uploads(server: Running, tmp_path: Path) -> None:
    payload = os.urandom(1_500_000)
    upload_file = tmp_path / "upload.bin"
    upload_file.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    sized = json.loads(
        curl("--data-binary", f"@{upload_file}", server.url("/upload")).stdout
    )
    assert (sized["size"], sized["sha256"]) == (len(payload), digest)

    chunked = json.loads(
        curl(
            "--data-binary",
            f"@{upload_file}",
            "--header",
            "Transfer-Encoding: chunked",
            server.url("/upload"),
        ).stdout
    )
    assert chunked["transfer_encoding"] is None
    assert chunked["content_length"] == str(len(payload))
    assert (chunked["size"], chunked["sha256"]) == (len(payload), digest)


def test_curl_expect_100_continue(server: Running, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    upload_file = tmp_path / "upload.bin"
    upload_file.write_bytes(payload)
    # With a long expect timeout, curl sends the body only after the server's 100.
    result = curl(
        "--verbose",
        "--expect100-timeout",
        str(int(TIMEOUT)),
        "--header",
        "Expect: 100-continue",
        "--data-binary",
        f"@{upload_file}",
        server.url("/upload"),
    )
    assert b"< HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(payload).hexdigest()


def test_curl_http10_and_head(server: Running) -> None:
    result = curl("--http1.0", "--include", server.url("/stream?chunks=4&size=3"))
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")  # our version, framed for a 1.0 client
    assert b"transfer-encoding" not in head.lower()
    assert body == b"AAABBBCCCDDD"

    peer = json.loads(curl("--http1.0", server.url("/peer")).stdout)
    assert peer["protocol"] == "HTTP/1.0"

    head_only = curl("--head", server.url("/sized?size=12345")).stdout
    assert head_only.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-length: 12345\r\n" in head_only.lower()
    assert head_only.endswith(b"\r\n\r\n")


# -- pipelining, from a raw socket, against Flask ---------------------------------


def pipelining_app() -> flask.Flask:
    app = flask.Flask("aiogate_pipelining")

    @app.route("/item/<int:number>", methods=["GET", "POST"])
    def item(number: int) -> Any:
        data = flask.request.get_data()
        return {
            "number": number,
            "body": data.decode(),
            "remote_port": flask.request.environ["REMOTE_PORT"],
        }

    return app


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` responses (to non-HEAD requests) from ``sock``, in order.

    An h11 client only parses a response to a request it sent itself, so each
    response gets a fresh h11 connection (with a stand-in request) fed with what
    the previous one left over.
    """
    responses: list[tuple[int, bytes]] = []
    leftover = b""
    for _ in range(count):
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "t")]))
        conn.send(h11.EndOfMessage())
        if leftover:  # (receive_data(b"") would mean EOF)
            conn.receive_data(leftover)
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                assert data, "server closed the connection"
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        responses.append((status, body))
        leftover = conn.trailing_data[0]
    return responses


def test_pipelined_requests_with_bodies_to_flask() -> None:
    with serve_in_thread(pipelining_app()) as running:
        requests_bytes = (
            b"GET /item/1 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /item/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /item/3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /item/5 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", running.port), TIMEOUT) as sock:
            sock.sendall(requests_bytes)
            responses = read_responses(sock, 5)
            local_port = str(sock.getsockname()[1])
    assert [status for status, _ in responses] == [200, 200, 200, 404, 200]
    documents = [json.loads(body) for status, body in responses if status == 200]
    assert [(d["number"], d["body"]) for d in documents] == [
        (1, ""),
        (2, "hello"),
        (3, "abcdefg"),
        (5, ""),
    ]
    assert {d["remote_port"] for d in documents} == {local_port}


# -- a body the app does not read --------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_connection_after_an_unread_large_body_is_reusable_or_closed_openly(
    server: Running, framing: str
) -> None:
    """The app answers without reading a 5 MB body. http.client sends the whole
    body, then reads the response; unless the response says ``Connection: close``
    it sends the next request on the same connection, which must then be answered.
    """
    body = b"u" * 5_000_000
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        if framing == "chunked":
            pieces = (body[i : i + 100_000] for i in range(0, len(body), 100_000))
            conn.request("POST", "/peer", body=pieces, encode_chunked=True)
        else:
            conn.request("POST", "/peer", body=body)
        first = conn.getresponse()
        assert first.status == 200
        first.read()
        conn.request("GET", "/peer")
        second = conn.getresponse()
        assert second.status == 200
        assert json.loads(second.read())["method"] == "GET"
    finally:
        conn.close()
