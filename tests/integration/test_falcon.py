"""Falcon under aiogate, driven by ``httpx`` over real loopback sockets: JSON media,
body echo (Content-Length and chunked), streamed and file-like responses, HTTP errors
and a custom error handler."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import falcon
import httpx
import pytest

from tests.integration.servers import TIMEOUT, Running, serve_in_thread

REPORT = os.urandom(250_000)


class ItemStore:
    """``/items`` and ``/items/{item_id}``: JSON in, JSON out."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {1: {"name": "first"}}

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: int) -> None:
        if item_id not in self.items:
            raise falcon.HTTPNotFound(
                title="No such item", description=f"item {item_id} does not exist"
            )
        resp.media = {"id": item_id, **self.items[item_id]}

    def on_post_collection(self, req: falcon.Request, resp: falcon.Response) -> None:
        document = req.get_media()
        if not isinstance(document, dict) or "name" not in document:
            raise falcon.HTTPBadRequest(title="Bad item", description="name missing")
        item_id = max(self.items) + 1
        self.items[item_id] = {"name": document["name"]}
        resp.status = falcon.HTTP_201
        resp.location = f"/items/{item_id}"
        resp.media = {"id": item_id, "name": document["name"]}


class Echo:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # bounded_stream stops at Content-Length; a chunked request has none, so the
        # raw stream is read to its end (safe because wsgi.input_terminated is true).
        stream = req.bounded_stream if req.content_length is not None else req.stream
        data = stream.read()
        resp.data = data
        resp.content_type = req.content_type or falcon.MEDIA_TEXT
        resp.set_header("X-Sha256", hashlib.sha256(data).hexdigest())


class Countdown:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        start = req.get_param_as_int("from", default=5)

        def lines() -> Iterator[bytes]:
            for n in range(start, -1, -1):
                yield f"{n}\n".encode()

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = lines()


class Report:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # A file-like stream: Falcon hands it to wsgi.file_wrapper.
        resp.stream = io.BytesIO(REPORT)
        resp.content_length = len(REPORT)
        resp.content_type = "application/octet-stream"


class Divide:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = req.get_param_as_int("a", required=True)
        b = req.get_param_as_int("b", required=True)
        resp.media = {"result": a / b}


def on_zero_division(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    resp.status = falcon.HTTP_422
    resp.media = {"error": "division by zero", "handled_by": "on_zero_division"}


class Peer:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"addr": req.remote_addr, "port": req.env["REMOTE_PORT"]}


class Broken:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("falcon responder failed")


def make_app() -> falcon.App:
    app = falcon.App()
    store = ItemStore()
    app.add_route("/items/{item_id:int}", store)
    app.add_route("/items", store, suffix="collection")
    app.add_route("/echo", Echo())
    app.add_route("/countdown", Countdown())
    app.add_route("/report", Report())
    app.add_route("/divide", Divide())
    app.add_route("/broken", Broken())
    app.add_route("/peer", Peer())
    app.add_error_handler(ZeroDivisionError, on_zero_division)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve_in_thread(make_app()) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=TIMEOUT) as client:
        yield client


def test_json_media(client: httpx.Client) -> None:
    response = client.get("/items/1")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"id": 1, "name": "first"}

    created = client.post("/items", json={"name": "second ✓"})
    assert created.status_code == 201
    assert created.json() == {"id": 2, "name": "second ✓"}
    location = created.headers["Location"]
    assert client.get(location).json() == {"id": 2, "name": "second ✓"}


def test_body_echo(client: httpx.Client) -> None:
    payload = os.urandom(700_000)
    response = client.post(
        "/echo", content=payload, headers={"Content-Type": "application/x-blob"}
    )
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["Content-Type"] == "application/x-blob"

    pieces = [b"chunk-%d;" % n for n in range(500)]
    # An iterator body makes httpx send Transfer-Encoding: chunked.
    response = client.post("/echo", content=iter(pieces))
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert response.content == b"".join(pieces)
    assert response.headers["X-Sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_streamed_and_file_like_responses(client: httpx.Client) -> None:
    with client.stream("GET", "/countdown?from=1000") as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        body = b"".join(response.iter_bytes())
    assert body == b"".join(b"%d\n" % n for n in range(1000, -1, -1))

    report = client.get("/report")
    assert report.status_code == 200
    assert report.headers["Content-Length"] == str(len(REPORT))
    assert report.content == REPORT


def test_errors(client: httpx.Client) -> None:
    peer = client.get("/peer").json()
    assert peer["addr"] == "127.0.0.1"

    missing = client.get("/items/99")
    assert missing.status_code == 404
    assert missing.json() == {
        "title": "No such item",
        "description": "item 99 does not exist",
    }

    bad = client.post("/items", json={"colour": "red"})
    assert bad.status_code == 400
    assert bad.json()["title"] == "Bad item"

    unrouted = client.get("/nowhere")
    assert unrouted.status_code == 404

    invalid_param = client.get("/divide?a=1")
    assert invalid_param.status_code == 400
    assert "b" in invalid_param.json()["description"]

    handled = client.get("/divide?a=1&b=0")
    assert handled.status_code == 422
    assert handled.json() == {
        "error": "division by zero",
        "handled_by": "on_zero_division",
    }

    broken = client.get("/broken")
    assert broken.status_code == 500
    assert broken.json() == {"title": "500 Internal Server Error"}

    not_allowed = client.delete("/echo")
    assert not_allowed.status_code == 405
    assert "POST" in not_allowed.headers["Allow"]

    # After all those errors the connection is still the one we started with.
    assert client.get("/peer").json() == peer
