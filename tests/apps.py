"""Tiny WSGI apps for the handler tests (waitress ``fixtureapps/`` style).

Each app is a plain function, or a factory when it carries per-run state (an iterable
that records ``close()``), so every run starts fresh.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

TEXT = [("Content-Type", "text/plain")]


class ClosingIterable:
    """Yields ``chunks``; records ``close()`` calls in ``log`` (shared with a sink so
    the order of close and finish can be checked). Raises ``error`` after yielding
    ``fail_after`` chunks, if given. ``sized`` makes ``len()`` work, as for a list."""

    def __init__(
        self,
        chunks: list[bytes],
        *,
        log: list[Any] | None = None,
        fail_after: int | None = None,
        error: BaseException | None = None,
        sized: bool = False,
    ) -> None:
        self.chunks = chunks
        self.log = log if log is not None else []
        self.fail_after = fail_after
        self.error = error or RuntimeError("boom")
        self.sized = sized
        self.closed = 0
        self.yielded = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index >= self.fail_after:
                raise self.error
            self.yielded += 1
            yield chunk
        if self.fail_after is not None and self.fail_after >= len(self.chunks):
            raise self.error

    def __len__(self) -> int:
        if not self.sized:
            raise TypeError("not sized")
        return len(self.chunks)

    def close(self) -> None:
        self.closed += 1
        self.log.append(("close",))


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    return [b"Hello, world!"]


def two_chunks(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    return [b"Hello, ", b"world!"]


def generator(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", list(TEXT))
    yield b"one,"
    yield b"two"


def empty_list(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    return []


def one_empty_chunk(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    return [b""]


def empty_then_data(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    return [b"", b"data"]


def empty_generator_then_data(
    environ: Environ, start_response: StartResponse
) -> Iterator[bytes]:
    start_response("200 OK", list(TEXT))
    yield b""
    yield b"data"
    yield b""


def own_content_length(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [*TEXT, ("Content-Length", "6")])
    return [b"abc", b"def"]


def own_date_and_server(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response(
        "200 OK",
        [("Date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("Server", "app/1"), *TEXT],
    )
    return [b"x"]


def latin1_header(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [*TEXT, ("X-Name", "café")])
    return [b"ok"]


def latin1_reason(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 Ça va", list(TEXT))
    return [b"ok"]


def not_found(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("404 Not Found", list(TEXT))
    return [b"nope"]


def uses_write(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", list(TEXT))
    write(b"written,")
    write(b"")
    return [b"returned"]


def empty_write_then_list(
    environ: Environ, start_response: StartResponse
) -> list[bytes]:
    write = start_response("200 OK", list(TEXT))
    write(b"")
    return [b"body"]


def file_wrapper(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", list(TEXT))
    wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
    return wrapper(BytesIO(b"file contents"), 4)


def echo_environ(environ: Environ, start_response: StartResponse) -> list[bytes]:
    # wsgiref.validate insists on read(size).
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", list(TEXT))
    lines = [
        f"{key}={environ.get(key)!r}"
        for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "wsgi.url_scheme")
    ]
    return ["\n".join(lines).encode("latin-1"), b"\n", body]


def error_before_start(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("boom-secret")


def error_after_start(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    raise RuntimeError("boom-secret")


def error_in_first_next(
    environ: Environ, start_response: StartResponse
) -> Iterator[bytes]:
    start_response("200 OK", list(TEXT))
    raise RuntimeError("boom-secret")
    yield b"never"  # pragma: no cover


def error_mid_body(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", list(TEXT))
    yield b"partial"
    raise RuntimeError("boom-secret")


def error_after_empty_chunk(
    environ: Environ, start_response: StartResponse
) -> Iterator[bytes]:
    """PEP 3333 vs wsgiref: nothing was sent, so this deserves a 500."""
    start_response("200 OK", list(TEXT))
    yield b""
    raise RuntimeError("boom-secret")


def error_after_empty_write(
    environ: Environ, start_response: StartResponse
) -> list[bytes]:
    write = start_response("200 OK", list(TEXT))
    write(b"")
    raise RuntimeError("boom-secret")


def exc_info_before_body(
    environ: Environ, start_response: StartResponse
) -> list[bytes]:
    """The PEP 3333 error-page idiom: replace the status before any body."""
    start_response("200 OK", list(TEXT))
    try:
        raise ValueError("inner")
    except ValueError:
        start_response("503 Service Unavailable", list(TEXT), sys.exc_info())
    return [b"sorry"]


class AppError(Exception):
    """The exception apps in this module raise when the test checks its identity."""


def exc_info_after_body(
    environ: Environ, start_response: StartResponse
) -> Iterator[bytes]:
    """Headers are out; start_response(exc_info) must re-raise the app's exception."""
    start_response("200 OK", list(TEXT))
    yield b"partial"
    try:
        raise AppError("late")
    except AppError:
        start_response("500 Oops", list(TEXT), sys.exc_info())
    yield b"never"  # pragma: no cover


def start_response_twice(
    environ: Environ, start_response: StartResponse
) -> list[bytes]:
    start_response("200 OK", list(TEXT))
    start_response("200 OK", list(TEXT))
    return [b"never"]  # pragma: no cover


def status_app(
    status: Any, headers: Any = None, body: list[bytes] | None = None
) -> App:
    """An app that calls start_response with exactly these arguments."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, list(TEXT) if headers is None else headers)
        return [b"body"] if body is None else body

    return app


def writes_str(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", list(TEXT))
    write("text")
    return []  # pragma: no cover


def yields_str(environ: Environ, start_response: StartResponse) -> list[Any]:
    start_response("200 OK", list(TEXT))
    return ["text"]


def write_without_start(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return [b"no start_response"]
