"""The demo app, always wrapped in ``wsgiref.validate.validator``.

Requests run through wsgiref's own ``SimpleHandler`` on in-memory streams (as CPython's
``test_wsgiref`` does), so the bytes checked are the bytes a client would get.
"""

from __future__ import annotations

import io
import re
import wsgiref.util
from typing import Any
from wsgiref.handlers import SimpleHandler
from wsgiref.validate import validator

import pytest

from aiogate import demo


def run(
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, dict[str, str], bytes]:
    """(status, headers, body) of one request to the validated demo app."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if body or method in ("POST", "PUT"):
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/octet-stream"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ.update(extra or {})
    wsgiref.util.setup_testing_defaults(environ)
    stdout, stderr = io.BytesIO(), io.StringIO()
    handler = SimpleHandler(io.BytesIO(body), stdout, stderr, environ)
    handler.run(validator(demo.app))
    assert stderr.getvalue() == ""
    head, _, payload = stdout.getvalue().partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = dict(line.split(": ", 1) for line in header_lines)
    return status_line.partition(" ")[2], response_headers, payload


def test_get_plain_text() -> None:
    status, headers, body = run(
        "/hello", query="x=1&y=%3Cb%3E", headers={"X-Test": "yes"}
    )
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    assert headers["X-Content-Type-Options"] == "nosniff"
    text = body.decode("utf-8")
    assert "method  GET" in text
    assert "path    /hello" in text
    assert "query   x=1&y=%3Cb%3E" in text
    assert "X-Test  yes" in text
    assert "wsgi.url_scheme" in text
    assert "PATH_INFO" in text
    assert "Body:" not in text


def test_application_alias() -> None:
    assert demo.application is demo.app


def test_script_name_is_shown_with_the_path() -> None:
    _, _, body = run("/x", extra={"SCRIPT_NAME": "/api"})
    assert "path    /api/x" in body.decode()


def test_utf8_path_is_shown_decoded() -> None:
    _, _, body = run("/caf\xc3\xa9")  # the WSGI (latin-1) form of /café
    assert "/café" in body.decode("utf-8")


def test_post_body_size_and_preview() -> None:
    _, headers, body = run("/upload", method="POST", body=b"name=value\x1b[31m")
    text = body.decode()
    assert headers["Content-Length"] == str(len(body))
    assert "size  15 bytes" in text
    # The escape character is shown, never sent raw to a terminal.
    assert "body  name=value\\x1b[31m" in text
    assert "\x1b" not in text


def test_large_body_is_counted_and_previewed() -> None:
    data = bytes(range(256)) * 300  # 76800 bytes, more than one read
    _, _, body = run("/upload", method="PUT", body=data)
    text = body.decode()
    assert re.search(r"\n  size +76800 bytes\n", text)
    assert "first 1024 bytes" in text


def test_empty_post_shows_the_body_section() -> None:
    _, _, body = run("/", method="POST")
    assert "size  0 bytes" in body.decode()


def test_html_when_preferred_and_everything_escaped() -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    _, headers, body = run(
        "/<script>",
        method="POST",
        body=b"<img src=x onerror=alert(1)>",
        headers={"Accept": browser, "X-Evil": '"><script>alert(1)</script>'},
    )
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    html = body.decode()
    assert html.startswith("<!doctype html>")
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&quot;&gt;&lt;script&gt;" in html


def test_head_has_length_but_no_body() -> None:
    _, get_headers, get_body = run("/same")
    _, headers, body = run("/same", method="HEAD")
    assert body == b""
    # The HEAD page is the GET page with "HEAD" for "GET": one byte longer.
    assert int(headers["Content-Length"]) == len(get_body) + 1
    assert int(get_headers["Content-Length"]) == len(get_body)


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("text/html", True),
        ("text/html;q=0.5, text/plain", False),
        ("text/plain;q=0.5, text/html", True),
        ("text/*;q=0.9, text/plain;q=0.1", True),
        ("text/html, text/plain", False),  # a tie goes to plain text
        ("TEXT/HTML", True),
        ("text/html;level=1;q=0.7, */*;q=0.5", True),
        ("text/html;q=bogus, */*", False),
        ("application/json", False),
    ],
)
def test_prefers_html(accept: str, html: bool) -> None:
    assert demo.prefers_html(accept) is html
