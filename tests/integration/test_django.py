"""Django under aiogate over real loopback sockets: ``request.body``, file uploads,
``StreamingHttpResponse``, ``FileResponse`` (through ``wsgi.file_wrapper``), errors,
and Django's ``request_finished`` signal, which fires only when the server calls the
response iterable's ``close()``: it must fire for every request, HEAD and a client
that disconnects mid-stream included.

The project is ``tests/integration/django_site.py`` (settings in code).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from collections.abc import Iterator

import pytest
import requests

from tests.integration import django_site
from tests.integration.django_site import FINISHED
from tests.integration.servers import TIMEOUT, Running, serve_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve_in_thread(django_site.application) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def finished_after(request: tuple[str, str], before: int) -> bool:
    """Wait until ``request`` finished once more than ``before`` times."""
    return FINISHED.wait_for(request, before + 1, TIMEOUT)


def test_request_body(server: Running, session: requests.Session) -> None:
    payload = os.urandom(1_000_000)
    response = session.post(
        server.url("/echo"),
        data=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["X-Body-Sha256"] == hashlib.sha256(payload).hexdigest()

    document = {"name": "Zoë", "items": list(range(100)), "nested": {"ok": True}}
    response = session.post(server.url("/json"), json=document, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"received": document, "method": "POST"}


def test_chunked_upload_reaches_request_body(
    server: Running, session: requests.Session
) -> None:
    # Django reads only CONTENT_LENGTH (WSGIRequest), so a chunked upload is an empty
    # body under servers that pass it through; aiogate buffers and decodes it first.
    payload = os.urandom(300_000)
    pieces = (payload[i : i + 50_000] for i in range(0, len(payload), 50_000))
    response = session.post(
        server.url("/echo"),
        data=pieces,
        headers={"Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert response.content == payload


def test_file_uploads(server: Running, session: requests.Session) -> None:
    big = os.urandom(300_000)
    small = "résumé text\n".encode()
    response = session.post(
        server.url("/upload"),
        data={"title": "papers", "lang": "fr"},
        files={
            "scan": ("scan.bin", big, "application/octet-stream"),
            "cv": ("résumé.txt", small, "text/plain"),
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    # The request is above FILE_UPLOAD_MAX_MEMORY_SIZE: Django streams both files
    # to temporary files while it reads wsgi.input.
    assert response.json() == {
        "files": {
            "scan": {
                "name": "scan.bin",
                "size": len(big),
                "content_type": "application/octet-stream",
                "sha256": hashlib.sha256(big).hexdigest(),
                "storage": "TemporaryUploadedFile",
            },
            "cv": {
                "name": "résumé.txt",
                "size": len(small),
                "content_type": "text/plain",
                "sha256": hashlib.sha256(small).hexdigest(),
                "storage": "TemporaryUploadedFile",
            },
        },
        "fields": {"title": "papers", "lang": "fr"},
    }

    response = session.post(
        server.url("/upload"), files={"cv": ("cv.txt", small)}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.json()["files"]["cv"]["storage"] == "InMemoryUploadedFile"
    assert response.json()["files"]["cv"]["size"] == len(small)


def test_streaming_http_response(server: Running, session: requests.Session) -> None:
    before = FINISHED.records.count(("GET", "/stream"))
    response = session.get(server.url("/stream?lines=2000"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.content == b"".join(b"line %d\n" % n for n in range(2000))
    assert finished_after(("GET", "/stream"), before)


def test_file_response(server: Running, session: requests.Session) -> None:
    before = FINISHED.records.count(("GET", "/report"))
    response = session.get(server.url("/report"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == django_site.DATA_FILE.read_bytes()
    assert response.headers["Content-Length"] == str(django_site.FILE_SIZE)
    assert "Transfer-Encoding" not in response.headers
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="quarterly report.bin"'
    )
    # Django hands the file to wsgi.file_wrapper and makes the wrapper's close() the
    # response's close(): the signal proves the server closed the wrapper.
    assert finished_after(("GET", "/report"), before)


def test_errors(server: Running, session: requests.Session) -> None:
    missing = session.get(server.url("/missing"), timeout=TIMEOUT)
    assert missing.status_code == 404
    unrouted = session.get(server.url("/no/such/route"), timeout=TIMEOUT)
    assert unrouted.status_code == 404

    broken = session.get(server.url("/broken"), timeout=TIMEOUT)
    assert broken.status_code == 500
    assert b"the view has a bug" not in broken.content  # DEBUG is off

    # The Host header reaches Django as sent: absolute URIs are built from it, and
    # ALLOWED_HOSTS refuses a host not in the list.
    host = session.get(server.url("/host?q=1"), timeout=TIMEOUT)
    assert host.json() == {
        "host": f"127.0.0.1:{server.port}",
        "uri": server.url("/host?q=1"),
        "secure": False,
    }
    bad_host = session.get(
        server.url("/host"), headers={"Host": "evil.example"}, timeout=TIMEOUT
    )
    assert bad_host.status_code == 400

    for request in [("GET", "/missing"), ("GET", "/no/such/route"), ("GET", "/broken")]:
        assert FINISHED.wait_for(request, 1, TIMEOUT), request


def test_request_finished_fires_for_every_request_including_head(
    server: Running,
) -> None:
    requests_made = [
        ("GET", "/hello"),
        ("HEAD", "/hello"),
        ("POST", "/echo"),
        ("HEAD", "/stream"),
        ("GET", "/stream"),
        ("HEAD", "/report"),
        ("GET", "/report"),
        ("HEAD", "/missing"),
        ("GET", "/hello"),
    ]
    before = {request: FINISHED.records.count(request) for request in requests_made}
    expected_counts = dict(before)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    ports = set()
    try:
        for method, path in requests_made:
            body = b"some body" if method == "POST" else None
            conn.request(method, path, body=body)
            response = conn.getresponse()
            content = response.read()
            if method == "HEAD":
                assert content == b""
                if path == "/report":
                    assert response.getheader("Content-Length") == str(
                        django_site.FILE_SIZE
                    )
            if path == "/hello":
                ports.add(response.getheader("X-Remote-Port"))
                assert response.status == 200
                assert content == (b"hello GET world" if method == "GET" else b"")
            expected_counts[(method, path)] += 1
            # close() runs in the worker thread after the last body byte is handed
            # over and before the response is ended, so the client may be a moment
            # ahead of it: wait (bounded) rather than assume.
            assert FINISHED.wait_for(
                (method, path), expected_counts[(method, path)], TIMEOUT
            ), (method, path)
    finally:
        conn.close()
    assert len(ports) == 1, "the connection was not kept alive"
    for request, count in expected_counts.items():
        assert FINISHED.records.count(request) == count, request


def test_request_finished_fires_when_client_disconnects_mid_stream(
    server: Running,
) -> None:
    django_site.ENDLESS_CLOSED.clear()
    before = FINISHED.records.count(("GET", "/endless"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while len(received) < 3 * django_site.STREAM_CHUNK:
            data = sock.recv(65536)
            assert data, "server closed the connection early"
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
        # The client goes away with gigabytes still to come.
    assert django_site.ENDLESS_CLOSED.wait(TIMEOUT), "the generator was never closed"
    assert finished_after(("GET", "/endless"), before)


def test_json_error_for_malformed_body(server: Running) -> None:
    # A Django view that raises on a bad body gives Django's 500; the connection and
    # the server stay healthy for the next request.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(
            "POST", "/json", body=b"{not json", headers={"Content-Type": "text/json"}
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 500
        conn.request("POST", "/json", body=json.dumps([1, 2]).encode())
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"received": [1, 2], "method": "POST"}
    finally:
        conn.close()
