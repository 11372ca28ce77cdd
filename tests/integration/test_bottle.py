"""Bottle under aiogate, driven by ``urllib3`` over real loopback sockets: JSON, body
echo (Content-Length and chunked), streaming, ``static_file`` with ranges, redirects,
signed cookies, errors and custom error pages."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bottle
import pytest
import urllib3

from tests.integration.servers import TIMEOUT, Running, serve_in_thread

COOKIE_SECRET = "bottle-integration-secret"


def make_app(static_root: Path) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.get("/hello/<name>")
    def hello(name: str) -> Any:
        return {"hello": name, "query": dict(bottle.request.query)}

    @app.post("/echo")
    def echo() -> Any:
        bottle.response.content_type = bottle.request.content_type
        return bottle.request.body.read()

    @app.get("/peer")
    def peer() -> Any:
        return {"remote_port": bottle.request.environ["REMOTE_PORT"]}

    @app.post("/raw-echo")
    def raw_echo() -> Any:
        return bottle.request.environ["wsgi.input"].read()

    @app.post("/json")
    def json_view() -> Any:
        return {"received": bottle.request.json}

    @app.get("/stream")
    def stream() -> Any:
        count = int(bottle.request.query.get("count", "3"))
        bottle.response.content_type = "text/plain"
        return (f"item {n}\n".encode() for n in range(count))

    @app.get("/static/<filename>")
    def static(filename: str) -> Any:
        return bottle.static_file(filename, root=str(static_root))

    @app.get("/go")
    def go() -> Any:
        bottle.redirect("/hello/redirected")

    @app.get("/remember/<value>")
    def remember(value: str) -> Any:
        bottle.response.set_cookie("remembered", value, secret=COOKIE_SECRET)
        return {"set": value}

    @app.get("/recall")
    def recall() -> Any:
        return {"value": bottle.request.get_cookie("remembered", secret=COOKIE_SECRET)}

    @app.get("/forbidden")
    def forbidden() -> Any:
        bottle.abort(403, "members only")

    @app.get("/broken")
    def broken() -> Any:
        raise RuntimeError("bottle route failed")

    @app.error(404)
    def not_found(error: bottle.HTTPError) -> str:
        bottle.response.content_type = "text/plain"
        return f"custom 404 for {bottle.request.path}"

    return app


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bottle_static")
    (root / "data.bin").write_bytes(os.urandom(200_000))
    return root


@pytest.fixture(scope="module")
def server(static_root: Path) -> Iterator[Running]:
    with serve_in_thread(make_app(static_root)) as running:
        yield running


@pytest.fixture
def pool(server: Running) -> Iterator[urllib3.HTTPConnectionPool]:
    with urllib3.HTTPConnectionPool(
        "127.0.0.1", server.port, maxsize=1, timeout=TIMEOUT, retries=False
    ) as pool:
        yield pool


def test_json(pool: urllib3.HTTPConnectionPool) -> None:
    response = pool.request("GET", "/hello/world?lang=en")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"hello": "world", "query": {"lang": "en"}}

    response = pool.request("POST", "/json", json={"a": [1, 2, {"b": None}]})
    assert response.status == 200
    assert response.json() == {"received": {"a": [1, 2, {"b": None}]}}


def test_body_echo(pool: urllib3.HTTPConnectionPool) -> None:
    # Above Bottle's MEMFILE_MAX, so Bottle spools it to a temporary file.
    payload = os.urandom(400_000)
    response = pool.request(
        "POST",
        "/echo",
        body=payload,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status == 200
    assert response.data == payload


def test_chunked_upload(pool: urllib3.HTTPConnectionPool) -> None:
    pieces = [b"first piece,", b"second piece,", b"x" * 50_000]
    expected = b"".join(pieces)

    def post(path: str) -> urllib3.BaseHTTPResponse:
        return pool.request(
            "POST",
            path,
            body=iter(pieces),
            chunked=True,
            headers={"Content-Type": "application/octet-stream"},
        )

    # Read from wsgi.input, the decoded body is all there.
    raw = post("/raw-echo")
    assert (raw.status, raw.data) == (200, expected)

    # bottle.request.body decodes chunked framing itself whenever the environ says
    # Transfer-Encoding: chunked (Bottle issue #700; under gunicorn it answers 400).
    # aiogate buffers and decodes the body first and passes its CONTENT_LENGTH
    # instead, so Bottle reads it like any other body.
    framed = post("/echo")
    assert (framed.status, framed.data) == (200, expected)


def test_streaming(pool: urllib3.HTTPConnectionPool) -> None:
    response = pool.request("GET", "/stream?count=500", preload_content=False)
    try:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        body = b"".join(response.stream(None))
    finally:
        response.release_conn()
    assert body == b"".join(b"item %d\n" % n for n in range(500))


def test_static_file_with_ranges(
    pool: urllib3.HTTPConnectionPool, static_root: Path
) -> None:
    data = (static_root / "data.bin").read_bytes()
    port = pool.request("GET", "/peer").json()["remote_port"]
    response = pool.request("GET", "/static/data.bin")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.data == data

    partial = pool.request("GET", "/static/data.bin", headers={"Range": "bytes=10-19"})
    assert partial.status == 206
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert partial.data == data[10:20]

    modified = response.headers["Last-Modified"]
    cached = pool.request(
        "GET", "/static/data.bin", headers={"If-Modified-Since": modified}
    )
    assert cached.status == 304
    assert cached.data == b""

    head = pool.request("HEAD", "/static/data.bin")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.data == b""

    # Every request above went over one kept-alive connection.
    assert pool.request("GET", "/peer").json()["remote_port"] == port


def test_redirect_uses_host_and_protocol(
    pool: urllib3.HTTPConnectionPool, server: Running
) -> None:
    response = pool.request("GET", "/go", redirect=False)
    # Bottle answers 303 to HTTP/1.1 clients (SERVER_PROTOCOL), 302 to HTTP/1.0,
    # with an absolute Location built from the Host header.
    assert response.status == 303
    assert response.headers["Location"] == server.url("/hello/redirected")


def test_signed_cookie(pool: urllib3.HTTPConnectionPool) -> None:
    response = pool.request("GET", "/remember/blue")
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("remembered=")
    recalled = pool.request(
        "GET", "/recall", headers={"Cookie": cookie.split(";", 1)[0]}
    )
    assert json.loads(recalled.data) == {"value": "blue"}
    tampered = pool.request("GET", "/recall", headers={"Cookie": "remembered=forged"})
    assert json.loads(tampered.data) == {"value": None}


def test_errors(pool: urllib3.HTTPConnectionPool) -> None:
    missing = pool.request("GET", "/nowhere")
    assert missing.status == 404
    assert missing.data == b"custom 404 for /nowhere"

    forbidden = pool.request("GET", "/forbidden")
    assert forbidden.status == 403
    assert b"members only" in forbidden.data

    broken = pool.request("GET", "/broken")
    assert broken.status == 500
    assert b"Internal Server Error" in broken.data
    assert b"bottle route failed" not in broken.data  # debug is off

    not_allowed = pool.request("PUT", "/echo", body=b"x")
    assert not_allowed.status == 405
    assert not_allowed.headers["Allow"] == "POST"
