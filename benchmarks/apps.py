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
- ``file_1m``, ``file_100m``: 200 with a 1 MiB or 100 MiB file sent through
  ``wsgi.file_wrapper`` (issue 13), with its Content-Length as a static-file app
  sets it; a server may send it with ``sendfile``. The files are made once, in
  ``bench_files_dir()``, by whoever asks first (``run.py`` before it starts a server).
- ``flask_json``: a Flask app whose one route returns a small JSON object, as APIs
  do: a framework's routing, request and response objects on top of the server's
  work. Imported on first use (``benchmarks/flask_app.py``), so the other apps do
  not need Flask installed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.util import FileWrapper

__all__ = [
    "APPS",
    "BIG_BODY",
    "FILE_SIZES",
    "HELLO_BODY",
    "bench_file",
    "big",
    "hello",
    "sleep",
    "upload",
]

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO_BODY = b"Hello, world!\n"
BIG_BODY = b"x" * (1024 * 1024)
SLEEP_SECONDS = 0.010
_READ_CHUNK = 64 * 1024
#: The files of the file workloads, by app name.
FILE_SIZES = {"file_1m": 1024 * 1024, "file_100m": 100 * 1024 * 1024}
# The block size the apps pass to wsgi.file_wrapper: what a server that iterates
# the wrapper reads at a time (gunicorn's and waitress's default is 8 KiB; a static
# file app such as whitenoise asks for more).
_FILE_BLOCK = 256 * 1024


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


def bench_files_dir() -> Path:
    """Where the file workloads' files live: in the temporary directory, shared by
    every server and round (the page cache keeps them, as a busy static site's)."""
    return Path(tempfile.gettempdir()) / "aiogate-bench-files"


def bench_file(size: int) -> Path:
    """The path of a ``size``-byte file of the file workloads, made if missing (to a
    temporary name, then renamed, so that a reader never sees half a file)."""
    path = bench_files_dir() / f"{size}.bin"
    if path.is_file() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes(range(256)) * (_FILE_BLOCK // 256)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as file:
        for start in range(0, size, len(block)):
            file.write(block[: size - start])
    os.replace(temporary, path)
    return path


def _file_app(size: int) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    path = str(bench_file(size))

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        file = open(path, "rb")  # noqa: SIM115 - the server closes it (PEP 3333)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(size)),
            ],
        )
        # (Every server measured has a wsgi.file_wrapper; wsgiref's for the others.)
        wrapper = environ.get("wsgi.file_wrapper") or FileWrapper
        return wrapper(file, _FILE_BLOCK)

    return app


APPS: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "hello": hello,
    "big": big,
    "upload": upload,
    "sleep": sleep,
}


def __getattr__(name: str) -> Any:
    # Made on first use, so that importing the module makes no 100 MiB file.
    if name in FILE_SIZES:
        app = globals()[name] = _file_app(FILE_SIZES[name])
        return app
    if name == "flask_json":
        from benchmarks.flask_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
