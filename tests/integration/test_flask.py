"""Flask under aiogate, driven by ``requests`` over real loopback sockets: forms,
multipart and chunked uploads, ``stream_with_context`` streaming, ``send_file``
through ``wsgi.file_wrapper``, errors and error handlers, redirects, cookies and
sessions, and keep-alive reuse across them."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from wsgiref.util import FileWrapper

import flask
import pytest
import requests

from aiogate.handlers import ServerHandler
from tests.integration.servers import TIMEOUT, Running, serve_in_thread

FILE_SIZE = 300_000


class RecordingFileWrapper(FileWrapper):
    """wsgiref's ``FileWrapper`` that remembers every instance and its ``close()``."""

    made: ClassVar[list[RecordingFileWrapper]] = []

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        super().__init__(filelike, blksize)
        self.closed = threading.Event()
        # wsgiref's FileWrapper sets ``self.close = filelike.close``; wrap that.
        close_file = filelike.close

        def close() -> None:
            close_file()
            self.closed.set()

        self.close = close
        RecordingFileWrapper.made.append(self)


class RecordingHandler(ServerHandler):
    """Offers ``RecordingFileWrapper`` as ``wsgi.file_wrapper``."""

    wsgi_file_wrapper = RecordingFileWrapper


class PathLog:
    """Paths recorded from worker threads, with a bounded wait for a count."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._changed = threading.Condition()

    def record(self, path: str) -> None:
        with self._changed:
            self.paths.append(path)
            self._changed.notify_all()

    def count(self, path: str) -> int:
        with self._changed:
            return self.paths.count(path)

    def wait_for(self, path: str, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: self.paths.count(path) >= count, TIMEOUT
            )


class Conflict(Exception):
    """Raised by a view; the app turns it into a 409 with its own handler."""


def make_app(files: Path) -> flask.Flask:
    app = flask.Flask("aiogate_flask_integration")
    app.secret_key = "integration-test-secret"
    # State the tests use to steer the views and to observe them.
    app.config["PROCEED"] = threading.Event()
    app.config["ENDLESS_CLOSED"] = threading.Event()
    app.config["TEARDOWNS"] = PathLog()

    @app.get("/whoami")
    def whoami() -> Any:
        return {
            "remote_port": flask.request.environ["REMOTE_PORT"],
            "user": flask.session.get("user"),
        }

    @app.post("/form")
    def form() -> Any:
        return {
            "fields": flask.request.form.to_dict(flat=False),
            "query": flask.request.args.to_dict(),
            "content_type": flask.request.mimetype,
        }

    @app.post("/upload")
    def upload() -> Any:
        uploads = {}
        for field, storage in flask.request.files.items(multi=True):
            data = storage.read()
            uploads[field] = {
                "filename": storage.filename,
                "content_type": storage.mimetype,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        return {"files": uploads, "fields": flask.request.form.to_dict()}

    @app.post("/digest")
    def digest() -> Any:
        data = flask.request.get_data()
        environ = flask.request.environ
        return {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": flask.request.content_length,
            "input_terminated": environ.get("wsgi.input_terminated"),
            "remote_port": environ["REMOTE_PORT"],
        }

    @app.post("/limited")
    def limited() -> Any:
        flask.request.max_content_length = 100_000  # Flask 3.1: per request
        return {"size": len(flask.request.get_data())}

    @app.get("/hello/<name>")
    def hello(name: str) -> Any:
        return {
            "name": name,
            "args": flask.request.args.to_dict(),
            "path": flask.request.path,
            "link": flask.url_for("hello", name=name, _external=True),
        }

    @app.get("/endless")
    def endless() -> Any:
        closed: threading.Event = app.config["ENDLESS_CLOSED"]

        def generate() -> Iterator[bytes]:
            try:
                for _ in range(100_000):
                    yield b"e" * 65536
            finally:
                closed.set()

        return flask.Response(
            flask.stream_with_context(generate()), mimetype="application/octet-stream"
        )

    @app.teardown_request
    def count_teardown(error: BaseException | None) -> None:
        app.config["TEARDOWNS"].record(flask.request.path)

    @app.post("/ignore-body")
    def ignore_body() -> Any:
        return {"remote_port": flask.request.environ["REMOTE_PORT"]}

    @app.get("/stream")
    def stream() -> Any:
        proceed: threading.Event = app.config["PROCEED"]

        def generate() -> Iterator[str]:
            yield "first\n"
            # The test sets `proceed` only after it has received the first line, so
            # this only continues if that line really went out on its own.
            if not proceed.wait(TIMEOUT):
                yield "first line was held back\n"
                return
            # stream_with_context keeps the request context alive in here.
            yield f"second for {flask.request.args['who']}\n"
            yield "third\n"

        return flask.Response(
            flask.stream_with_context(generate()), mimetype="text/plain"
        )

    @app.get("/stream-then-fail")
    def stream_then_fail() -> Any:
        def generate() -> Iterator[bytes]:
            yield b"x" * 1000
            raise RuntimeError("failed while streaming")

        return flask.Response(generate(), mimetype="application/octet-stream")

    @app.get("/file")
    def file() -> Any:
        return flask.send_file(files / "data.bin", mimetype="application/octet-stream")

    @app.get("/download")
    def download() -> Any:
        return flask.send_file(
            files / "data.bin", as_attachment=True, download_name="report final.bin"
        )

    @app.get("/teapot")
    def teapot() -> Any:
        flask.abort(418)

    @app.get("/conflict")
    def conflict() -> Any:
        raise Conflict("already exists")

    @app.get("/broken")
    def broken() -> Any:
        raise KeyError("a bug in the view")

    @app.errorhandler(404)
    def not_found(error: Any) -> Any:
        return {"error": "not found", "path": flask.request.path}, 404

    @app.errorhandler(Conflict)
    def on_conflict(error: Conflict) -> Any:
        return {"error": str(error)}, 409, {"X-Handled-By": "on_conflict"}

    @app.errorhandler(500)
    def on_server_error(error: Any) -> Any:
        return flask.Response("custom 500 page", status=500, mimetype="text/plain")

    @app.get("/old")
    def old() -> Any:
        return flask.redirect("/new?from=old")

    @app.get("/new")
    def new() -> Any:
        return {"arrived": True, "from": flask.request.args.get("from")}

    @app.post("/old-post")
    def old_post() -> Any:
        return flask.redirect(flask.url_for("digest", _external=True), code=307)

    @app.get("/external")
    def external() -> Any:
        return flask.redirect(flask.url_for("new", _external=True))

    @app.post("/login")
    def login() -> Any:
        flask.session["user"] = flask.request.form["user"]
        response = flask.make_response({"logged_in": True})
        response.set_cookie("theme", "dark", httponly=True, samesite="Lax")
        response.set_cookie("lang", "en")
        return response

    @app.post("/logout")
    def logout() -> Any:
        flask.session.clear()
        response = flask.make_response({"logged_in": False})
        response.delete_cookie("theme")
        return response

    @app.get("/cookies")
    def cookies() -> Any:
        return dict(flask.request.cookies)

    return app


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("flask_files")
    (directory / "data.bin").write_bytes(os.urandom(FILE_SIZE))
    return directory


@pytest.fixture(scope="module")
def app(files: Path) -> flask.Flask:
    return make_app(files)


@pytest.fixture(scope="module")
def server(app: flask.Flask) -> Iterator[Running]:
    with serve_in_thread(app, handler_class=RecordingHandler) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for 127.0.0.1
        yield session


def test_urlencoded_form_and_query(server: Running, session: requests.Session) -> None:
    response = session.post(
        server.url("/form?page=2"),
        data={"name": "Zoë", "tags": ["a", "b&c"], "empty": ""},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json() == {
        "fields": {"name": ["Zoë"], "tags": ["a", "b&c"], "empty": [""]},
        "query": {"page": "2"},
        "content_type": "application/x-www-form-urlencoded",
    }


def test_multipart_file_upload(server: Running, session: requests.Session) -> None:
    big = os.urandom(1_500_000)  # over --body-buffer-size: spooled to a file
    small = b"name,value\nx,1\n"
    response = session.post(
        server.url("/upload"),
        data={"title": "two files"},
        files={
            "big": ("big.bin", big, "application/octet-stream"),
            "small": ("table.csv", small, "text/csv"),
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json() == {
        "files": {
            "big": {
                "filename": "big.bin",
                "content_type": "application/octet-stream",
                "size": len(big),
                "sha256": hashlib.sha256(big).hexdigest(),
            },
            "small": {
                "filename": "table.csv",
                "content_type": "text/csv",
                "size": len(small),
                "sha256": hashlib.sha256(small).hexdigest(),
            },
        },
        "fields": {"title": "two files"},
    }


def test_chunked_upload_is_read_to_the_end(
    server: Running, session: requests.Session
) -> None:
    pieces = [b"alpha", b"", b"beta" * 1000, os.urandom(200_000)]
    expected = b"".join(pieces)
    # A generator body makes requests send Transfer-Encoding: chunked.
    response = session.post(
        server.url("/digest"), data=(piece for piece in pieces), timeout=TIMEOUT
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    body = response.json()
    assert body["size"] == len(expected)
    assert body["sha256"] == hashlib.sha256(expected).hexdigest()
    # Decoded and buffered before the app ran, so Flask is told the length.
    assert body["content_length"] == len(expected)
    assert body["input_terminated"] is True


def test_chunked_multipart_upload(server: Running, session: requests.Session) -> None:
    payload = os.urandom(100_000)
    boundary = "----aiogate-boundary"
    form = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="note"\r\n\r\n'
            "streamed form\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="blob"; filename="blob.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    pieces = [form[i : i + 7000] for i in range(0, len(form), 7000)]
    response = session.post(
        server.url("/upload"),
        data=iter(pieces),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=TIMEOUT,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert response.json() == {
        "files": {
            "blob": {
                "filename": "blob.bin",
                "content_type": "application/octet-stream",
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        },
        "fields": {"note": "streamed form"},
    }


def test_stream_with_context_arrives_incrementally(
    app: flask.Flask, server: Running, session: requests.Session
) -> None:
    proceed: threading.Event = app.config["PROCEED"]
    proceed.clear()
    with session.get(
        server.url("/stream?who=ann"), stream=True, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in response.headers
        chunks = response.iter_content(chunk_size=None)
        assert next(chunks) == b"first\n"
        proceed.set()
        rest = b"".join(chunks)
    assert rest == b"second for ann\nthird\n"


def test_error_while_streaming_truncates_the_response(
    server: Running, session: requests.Session
) -> None:
    # The status line is out before the generator fails: the client must see a
    # broken response, never a complete-looking one.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(server.url("/stream-then-fail"), timeout=TIMEOUT)


def test_send_file_goes_through_wsgi_file_wrapper(
    server: Running, session: requests.Session, files: Path
) -> None:
    data = (files / "data.bin").read_bytes()
    before = len(RecordingFileWrapper.made)
    response = session.get(server.url("/file"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Content-Length"] == str(FILE_SIZE)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Transfer-Encoding" not in response.headers
    made = RecordingFileWrapper.made[before:]
    assert len(made) == 1, "send_file did not use wsgi.file_wrapper"
    assert made[0].closed.wait(TIMEOUT), "the file wrapper was never closed"
    assert made[0].filelike.closed


def test_send_file_conditional_range_and_head(
    server: Running, session: requests.Session, files: Path
) -> None:
    data = (files / "data.bin").read_bytes()
    first = session.get(server.url("/file"), timeout=TIMEOUT)
    etag = first.headers["ETag"]

    not_modified = session.get(
        server.url("/file"), headers={"If-None-Match": etag}, timeout=TIMEOUT
    )
    assert not_modified.status_code == 304
    assert not_modified.content == b""

    partial = session.get(
        server.url("/file"), headers={"Range": "bytes=1000-1999"}, timeout=TIMEOUT
    )
    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 1000-1999/{FILE_SIZE}"
    assert partial.headers["Content-Length"] == "1000"
    assert partial.content == data[1000:2000]

    suffix = session.get(
        server.url("/file"), headers={"Range": "bytes=-10"}, timeout=TIMEOUT
    )
    assert (suffix.status_code, suffix.content) == (206, data[-10:])

    unsatisfiable = session.get(
        server.url("/file"),
        headers={"Range": f"bytes={FILE_SIZE + 5}-"},
        timeout=TIMEOUT,
    )
    assert unsatisfiable.status_code == 416

    before = len(RecordingFileWrapper.made)
    head = session.head(server.url("/file"), timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(FILE_SIZE)
    assert head.content == b""
    made = RecordingFileWrapper.made[before:]
    assert len(made) == 1
    assert made[0].closed.wait(TIMEOUT), "HEAD left the file open"

    # Every one of these answers went over the one kept-alive connection.
    again = session.get(server.url("/whoami"), timeout=TIMEOUT)
    port = again.json()["remote_port"]
    assert session.get(server.url("/whoami"), timeout=TIMEOUT).json()[
        "remote_port"
    ] == (port)


def test_send_file_as_attachment(server: Running, session: requests.Session) -> None:
    response = session.get(server.url("/download"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert len(response.content) == FILE_SIZE
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "report%20final.bin" in disposition or "report final.bin" in disposition


def test_errors_and_custom_error_handlers(
    server: Running, session: requests.Session
) -> None:
    missing = session.get(server.url("/no/such/page"), timeout=TIMEOUT)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found", "path": "/no/such/page"}

    teapot = session.get(server.url("/teapot"), timeout=TIMEOUT)
    assert teapot.status_code == 418
    assert teapot.reason == "I'M A TEAPOT"  # Werkzeug's spelling, passed through
    assert "teapot" in teapot.text.lower()

    conflict = session.get(server.url("/conflict"), timeout=TIMEOUT)
    assert conflict.status_code == 409
    assert conflict.headers["X-Handled-By"] == "on_conflict"
    assert conflict.json() == {"error": "already exists"}

    broken = session.get(server.url("/broken"), timeout=TIMEOUT)
    assert broken.status_code == 500
    assert broken.text == "custom 500 page"

    not_allowed = session.post(server.url("/whoami"), timeout=TIMEOUT)
    assert not_allowed.status_code == 405
    assert set(not_allowed.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_redirects(server: Running, session: requests.Session) -> None:
    response = session.get(server.url("/old"), timeout=TIMEOUT)
    assert [r.status_code for r in response.history] == [302]
    assert response.history[0].headers["Location"] == "/new?from=old"
    assert response.url == server.url("/new?from=old")
    assert response.json() == {"arrived": True, "from": "old"}

    # url_for(_external=True) builds the URL from the Host header aiogate passed on.
    external = session.get(
        server.url("/external"), allow_redirects=False, timeout=TIMEOUT
    )
    assert external.status_code == 302
    assert external.headers["Location"] == server.url("/new")

    # A 307 keeps the method and the body.
    payload = b"resent after redirect"
    posted = session.post(server.url("/old-post"), data=payload, timeout=TIMEOUT)
    assert [r.status_code for r in posted.history] == [307]
    assert posted.json()["sha256"] == hashlib.sha256(payload).hexdigest()


def test_cookies_and_session(server: Running, session: requests.Session) -> None:
    assert session.get(server.url("/whoami"), timeout=TIMEOUT).json()["user"] is None

    login = session.post(server.url("/login"), data={"user": "ann"}, timeout=TIMEOUT)
    assert login.status_code == 200
    set_cookies = login.raw.headers.getlist("Set-Cookie")
    # Three separate Set-Cookie fields (session, theme, lang), never folded into one.
    assert len(set_cookies) == 3, set_cookies
    assert any(c.startswith("theme=dark;") and "HttpOnly" in c for c in set_cookies)
    assert any(c.startswith("session=") for c in set_cookies)

    assert session.get(server.url("/whoami"), timeout=TIMEOUT).json()["user"] == "ann"
    cookies = session.get(server.url("/cookies"), timeout=TIMEOUT).json()
    assert cookies["theme"] == "dark"
    assert cookies["lang"] == "en"
    assert "session" in cookies

    session.post(server.url("/logout"), timeout=TIMEOUT)
    assert session.get(server.url("/whoami"), timeout=TIMEOUT).json()["user"] is None
    assert "theme" not in session.get(server.url("/cookies"), timeout=TIMEOUT).json()


def test_keep_alive_survives_uploads_and_unread_bodies(
    server: Running, session: requests.Session
) -> None:
    ports = {session.get(server.url("/whoami"), timeout=TIMEOUT).json()["remote_port"]}
    ports.add(
        session.post(
            server.url("/digest"), data=os.urandom(300_000), timeout=TIMEOUT
        ).json()["remote_port"]
    )
    # The view never reads this body; the connection stays usable all the same.
    ports.add(
        session.post(
            server.url("/ignore-body"), data=b"z" * 200_000, timeout=TIMEOUT
        ).json()["remote_port"]
    )
    ports.add(session.get(server.url("/whoami"), timeout=TIMEOUT).json()["remote_port"])
    assert len(ports) == 1, ports


def test_non_ascii_path_and_query(server: Running, session: requests.Session) -> None:
    response = session.get(
        server.url("/hello/Zo%C3%AB%20x?q=%C3%A9t%C3%A9&a=1+2"), timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.json() == {
        "name": "Zoë x",
        "args": {"q": "été", "a": "1 2"},
        "path": "/hello/Zoë x",
        "link": server.url("/hello/Zo%C3%AB%20x"),
    }


def check_mounted_app(mounted: Running) -> None:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(mounted.url("/api/hello/ann?x=1"), timeout=TIMEOUT)
        assert response.status_code == 200
        document = response.json()
        assert document["path"] == "/hello/ann"  # PATH_INFO without SCRIPT_NAME
        assert document["link"] == mounted.url("/api/hello/ann")  # url_for adds it
        redirect = session.get(
            mounted.url("/api/external"), allow_redirects=False, timeout=TIMEOUT
        )
        assert redirect.headers["Location"] == mounted.url("/api/new")


def test_mounted_under_a_root_path(app: flask.Flask) -> None:
    with serve_in_thread(app, root_path="/api") as mounted:
        # (In a function of its own: a live requests response keeps its socket open,
        # and the server's graceful shutdown would wait for the client to close it.)
        check_mounted_app(mounted)


def test_too_large_body_gets_413_and_the_connection_stays_honest(
    server: Running,
) -> None:
    """Flask refuses a body over its limit (413) without reading it. The client has
    sent the whole body and then reads the answer; what it learns about the
    connection must be true: either ``Connection: close``, or the connection really
    takes the next request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/limited", body=b"b" * 5_000_000)
        response = conn.getresponse()
        response.read()
        assert response.status == 413
        # Without "Connection: close", http.client reuses the connection as is
        # (with it, http.client reconnects by itself).
        conn.request("POST", "/limited", body=b"s" * 1000)
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"size": 1000})
    finally:
        conn.close()


def test_client_disconnect_mid_stream_closes_the_generator(
    app: flask.Flask, server: Running
) -> None:
    closed: threading.Event = app.config["ENDLESS_CLOSED"]
    closed.clear()
    teardowns: PathLog = app.config["TEARDOWNS"]
    before = teardowns.count("/endless")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while len(received) < 200_000:
            data = sock.recv(65536)
            assert data, "server closed the connection early"
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
    # close() reached the generator (its finally ran), and Flask's teardown ran
    # twice: when the view returned, and when stream_with_context's generator,
    # which pushes the request context again, was closed.
    assert closed.wait(TIMEOUT), "the streaming generator was never closed"
    assert teardowns.wait_for("/endless", before + 2)
