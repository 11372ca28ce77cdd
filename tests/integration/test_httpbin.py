"""httpbin under aiogate, checked against the same app under the standard library's
reference server ``wsgiref.simple_server``.

Each case sends the same request (with ``requests``) to both servers and compares the
status line, every response header (each value of a repeated one) and the body. Only
what legitimately differs between two servers on two ports is left out: Date, Server,
Connection, Keep-Alive and Transfer-Encoding (wsgiref speaks HTTP/1.0 and closes;
aiogate keeps alive and may chunk); Content-Length, checked against the body on each
side instead (the port in a body changes its length); the port in URLs; the
``Content-Type: text/plain`` that wsgiref invents for a request without one; and the
order of keys in JSON objects. Cases are limited to what wsgiref handles (no chunked
uploads, no keep-alive); keep-alive is checked on aiogate alone at the end.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpbin
import pytest
import requests
import urllib3

from tests.integration.servers import (
    TIMEOUT,
    Running,
    reference_server,
    serve_in_thread,
)

# Headers that differ between any two servers, or between HTTP/1.0 and 1.1 framing.
IGNORED_HEADERS = {"date", "server", "connection", "keep-alive", "transfer-encoding"}

MULTIPART_BODY, MULTIPART_TYPE = urllib3.encode_multipart_formdata(
    {
        "field": "value",
        "upload": ("notes.txt", b"line 1\nline 2\n", "text/plain"),
        "binary": ("blob.bin", bytes(range(256)) * 40, "application/octet-stream"),
    },
    boundary="aiogate-fixed-boundary",
)

# (id, method, path, keyword arguments for requests.Session.request)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("get-args", "GET", "/get?a=1&b=2&b=3&utf8=%C3%A9", {}),
    ("head-get", "HEAD", "/get?a=1", {}),
    ("headers", "GET", "/headers", {"headers": {"X-Custom": "v", "Accept": "a/b"}}),
    ("ip", "GET", "/ip", {}),
    ("user-agent", "GET", "/user-agent", {"headers": {"User-Agent": "agent/1.0"}}),
    ("post-form", "POST", "/post", {"data": {"name": "Zoë", "n": ["1", "2"]}}),
    ("post-json", "POST", "/post", {"json": {"a": [1, 2.5, None], "b": "✓"}}),
    (
        "post-multipart",
        "POST",
        "/post",
        {"data": MULTIPART_BODY, "headers": {"Content-Type": MULTIPART_TYPE}},
    ),
    ("post-binary", "POST", "/post", {"data": bytes(range(256)) * 100}),
    ("put", "PUT", "/put", {"data": b"put body"}),
    ("patch", "PATCH", "/patch", {"json": {"op": "replace"}}),
    ("delete", "DELETE", "/delete?id=7", {}),
    ("anything-path", "GET", "/anything/a%20b/c?x=%2F", {}),
    ("anything-post", "POST", "/anything", {"data": "text body"}),
    (
        "options-cors",
        "OPTIONS",
        "/get",
        {
            "headers": {
                "Origin": "http://example.com",
                "Access-Control-Request-Headers": "X-A",
            }
        },
    ),
    ("status-418", "GET", "/status/418", {}),
    ("status-204", "GET", "/status/204", {}),
    ("status-201-post", "POST", "/status/201", {"data": b"x"}),
    ("status-500", "GET", "/status/500", {}),
    (
        "response-headers",
        "GET",
        "/response-headers?X-Foo=bar&X-Foo=baz&Content-Type=text/x-test",
        {},
    ),
    ("redirect-n", "GET", "/redirect/3", {}),
    ("relative-redirect", "GET", "/relative-redirect/2", {}),
    ("absolute-redirect", "GET", "/absolute-redirect/2", {}),
    ("redirect-to-307", "GET", "/redirect-to?url=/get&status_code=307", {}),
    ("follow-redirects", "GET", "/redirect/2", {"allow_redirects": True}),
    ("cookies-set", "GET", "/cookies/set?k1=v1&k2=v%202", {}),
    ("cookies", "GET", "/cookies", {"headers": {"Cookie": "a=1; b=two"}}),
    ("cookies-delete", "GET", "/cookies/delete?a", {"headers": {"Cookie": "a=1"}}),
    ("basic-auth-ok", "GET", "/basic-auth/user/pass", {"auth": ("user", "pass")}),
    ("basic-auth-missing", "GET", "/basic-auth/user/pass", {}),
    ("bearer", "GET", "/bearer", {"headers": {"Authorization": "Bearer token-1"}}),
    ("gzip", "GET", "/gzip", {}),
    ("deflate", "GET", "/deflate", {}),
    ("brotli", "GET", "/brotli", {}),
    ("utf8", "GET", "/encoding/utf8", {}),
    ("html", "GET", "/html", {}),
    ("xml", "GET", "/xml", {}),
    ("json", "GET", "/json", {}),
    ("robots", "GET", "/robots.txt", {}),
    ("deny", "GET", "/deny", {}),
    ("png", "GET", "/image/png", {}),
    (
        "base64",
        "GET",
        "/base64/" + base64.urlsafe_b64encode(b"hi aiogate").decode(),
        {},
    ),
    ("bytes-seeded", "GET", "/bytes/3000?seed=42", {}),
    ("stream-bytes", "GET", "/stream-bytes/5000?seed=7&chunk_size=333", {}),
    ("stream-json", "GET", "/stream/7", {}),
    ("drip", "GET", "/drip?numbytes=50&duration=0&delay=0&code=200", {}),
    ("range", "GET", "/range/1000", {"headers": {"Range": "bytes=100-199"}}),
    ("range-whole", "GET", "/range/300", {}),
    ("etag-match", "GET", "/etag/abc", {"headers": {"If-None-Match": '"abc"'}}),
    ("etag-precondition", "GET", "/etag/abc", {"headers": {"If-Match": '"zzz"'}}),
    ("cache-304", "GET", "/cache", {"headers": {"If-Modified-Since": "x"}}),
    ("cache-control", "GET", "/cache/60", {}),
    ("links", "GET", "/links/5/2", {}),
    ("forms-page", "GET", "/forms/post", {}),
    ("not-found", "GET", "/no/such/endpoint", {}),
    ("method-not-allowed", "POST", "/get", {}),
]


@dataclass
class Observed:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: Any


def normalise_text(text: str, port: int) -> str:
    return text.replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")


def parse_json(text: str) -> list[Any]:
    """One JSON document, or (httpbin's /stream) one per line."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines()]


def without_default_content_type(document: Any) -> Any:
    """wsgiref sets ``CONTENT_TYPE`` to ``text/plain`` when the request has none
    (``WSGIRequestHandler.get_environ``), so httpbin echoes a header that was never
    sent; drop it from the reference's echo of the request headers."""
    if isinstance(document, dict) and isinstance(document.get("headers"), dict):
        headers = dict(document["headers"])
        if headers.get("Content-Type") == "text/plain":
            del headers["Content-Type"]
        return {**document, "headers": headers}
    return document


def normalise_json(value: Any, port: int) -> Any:
    if isinstance(value, str):
        return normalise_text(value, port)
    if isinstance(value, list):
        return [normalise_json(item, port) for item in value]
    if isinstance(value, dict):
        return {key: normalise_json(item, port) for key, item in value.items()}
    return value


def fetch(
    session: requests.Session,
    server: Running,
    method: str,
    path: str,
    *,
    reference: bool = False,
    **kwargs: Any,
) -> Observed:
    kwargs.setdefault("allow_redirects", False)
    response = session.request(method, server.url(path), timeout=TIMEOUT, **kwargs)
    session.cookies.clear()  # each case starts without cookies
    port = server.port
    headers: dict[str, list[str]] = {}
    for name, value in response.raw.headers.items():
        if name.lower() not in IGNORED_HEADERS:
            headers.setdefault(name.lower(), []).append(normalise_text(value, port))
    content = response.content
    length = headers.pop("content-length", None)
    if length is not None and "content-encoding" not in headers and method != "HEAD":
        # Checked per server, not compared: the port in a body can change its length.
        assert int(length[0]) == len(content), (server, length)
    content_type = response.headers.get("Content-Type", "")
    body: Any
    if content_type.startswith("application/json") and content:
        body = [normalise_json(doc, port) for doc in parse_json(content.decode())]
        if reference and "Content-Type" not in kwargs.get("headers", {}):
            body = [without_default_content_type(document) for document in body]
    else:
        body = content.replace(str(port).encode(), b"PORT")
    history = [
        normalise_text(r.headers.get("Location", ""), port) for r in response.history
    ]
    if history:
        headers["x-followed-locations"] = history
    return Observed(response.status_code, response.reason, headers, body)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Running, Running]]:
    with (
        serve_in_thread(httpbin.app) as aiogate_server,
        reference_server(httpbin.app) as wsgiref_server,
    ):
        yield aiogate_server, wsgiref_server


@pytest.fixture(scope="module")
def sessions() -> Iterator[tuple[requests.Session, requests.Session]]:
    with requests.Session() as ours, requests.Session() as reference:
        ours.trust_env = reference.trust_env = False  # no proxies from the environment
        yield ours, reference


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [pytest.param(method, path, kwargs, id=id_) for id_, method, path, kwargs in CASES],
)
def test_same_response_as_wsgiref(
    servers: tuple[Running, Running],
    sessions: tuple[requests.Session, requests.Session],
    method: str,
    path: str,
    kwargs: dict[str, Any],
) -> None:
    aiogate_server, wsgiref_server = servers
    ours, reference = sessions
    expected = fetch(reference, wsgiref_server, method, path, reference=True, **kwargs)
    actual = fetch(ours, aiogate_server, method, path, **kwargs)
    assert actual.status == expected.status
    assert actual.reason == expected.reason
    assert actual.headers == expected.headers
    assert actual.body == expected.body


def with_remote_port(app: Any) -> Any:
    """``app`` with the client's port added to every response as X-Remote-Port."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            headers = [*headers, ("X-Remote-Port", environ["REMOTE_PORT"])]
            return start_response(status, headers, *exc_info)

        return app(environ, start)

    return wrapped


def test_keep_alive_across_httpbin_endpoints() -> None:
    # wsgiref closes every connection; aiogate serves all of these on one.
    with (
        serve_in_thread(with_remote_port(httpbin.app)) as server,
        urllib3.HTTPConnectionPool(
            "127.0.0.1", server.port, maxsize=1, timeout=TIMEOUT, retries=False
        ) as pool,
    ):
        ports = set()
        paths = ["/get", "/stream/3", "/gzip", "/status/404", "/bytes/10", "/get"]
        for path in paths:
            response = pool.request("GET", path)
            assert response.status == (404 if path == "/status/404" else 200)
            ports.add(response.headers["X-Remote-Port"])
        assert len(ports) == 1, ports
        assert pool.num_requests == len(paths)
