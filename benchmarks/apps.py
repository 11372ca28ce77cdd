"""The WSGI apps that every server is benchmarked with.

Each server under test loads the very same callable from this module (for example
``benchmarks.apps:hello``), so differences in the numbers come from the servers and
not from the apps. The apps are deliberately tiny and allocation-free where possible:

- ``hello``: 200, ``text/plain``, a 14-byte body. Measures per-request overhead.
- ``big``: 200, a 1 MiB body in one chunk. Measures the response write path.
- ``upload``: reads the whole request body, answers its length in bytes. Measures the
  request-body read path (drive it with POST requests).
- ``sleep``: sleeps 10 ms (as if waiting on a database), then answers like ``hello``.
  Measures how well the app threads are kept busy while the app blocks.
- ``flask_json``: a Flask app whose one route returns a small JSON object, as APIs
  do: a framework's routing, request and response objects on top of the server's
  work. Imported on first use (``benchmarks/flask_app.py``), so the other apps do
  not need Flask installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["APPS", "BIG_BODY", "HELLO_BODY", "big", "hello", "sleep", "upload"]

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO_BODY = b"Hello, world!\n"
BIG_BODY = b"x" * (1024 * 1024)
SLEEP_SECONDS = 0.010
_READ_CHUNK = 64 * 1024


def _plain(body: bytes) -> list[tuple[str, str]]:
    """Response headers for a ``text/plain`` body of known length."""
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """200 ``Hello, world!``."""
    start_response("200 OK", _plain(HELLO_BODY))
    return [HELLO_BODY]


def big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """200 with a 1 MiB body, returned as a single chunk."""
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(BIG_BODY))),
        ],
    )
    return [BIG_BODY]


def _read_body_length(environ: Environ) -> int:
    """Read the whole request body in chunks and return how many bytes it had.

    With a ``Content-Length`` header, read exactly that much. Without one, read to
    EOF only if the server promises ``wsgi.input_terminated`` (chunked uploads);
    otherwise PEP 3333 says reading past the body may block, so read nothing.
    """
    stream = environ["wsgi.input"]
    try:
        remaining: int | None = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        remaining = None
    if remaining is None and not environ.get("wsgi.input_terminated"):
        return 0
    total = 0
    while remaining is None or remaining > 0:
        size = _READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining)
        chunk = stream.read(size)
        if not chunk:
            break
        total += len(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return total


def upload(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body; answer its length in bytes, e.g. ``1048576``."""
    body = b"%d\n" % _read_body_length(environ)
    start_response("200 OK", _plain(body))
    return [body]


def sleep(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Block the app thread for 10 ms, then answer like ``hello``."""
    time.sleep(SLEEP_SECONDS)
    start_response("200 OK", _plain(HELLO_BODY))
    return [HELLO_BODY]


APPS: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "hello": hello,
    "big": big,
    "upload": upload,
    "sleep": sleep,
}


def __getattr__(name: str) -> Any:
    if name == "flask_json":
        from benchmarks.flask_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
