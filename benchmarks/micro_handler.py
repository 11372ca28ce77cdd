"""Microbenchmark: the cost of ``ServerHandler(...).run(app)`` for one request, in µs.

No sockets, no event loop and no threads: a fake sink that does nothing, so what is
measured is the per-request work of the handler (environ, ``start_response``, header
rules, sending) plus a trivial app. Three app shapes, so that no single one is
optimised at the others' expense:

- ``hello``: one-item list with Content-Type and Content-Length (the wrk hello app).
- ``stream``: a generator of three chunks, no Content-Length (chunked on the wire).
- ``flask``: a one-item list with five headers, as a Flask/Werkzeug response has
  (Content-Type, Content-Length, Vary, Set-Cookie, X-Frame-Options).

Run: ``python benchmarks/micro_handler.py [--calls N] [--repeat R] [--profile SHAPE]``.
Prints the minimum over ``R`` repeats of ``N`` calls, in µs per call.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import h11

from aiogate._types import ConnectionInfo
from aiogate.body import EMPTY_BODY
from aiogate.handlers import ServerHandler

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Any]


class Sink:
    def start(self, s: str, h: list[tuple[str, str]]) -> None:
        pass

    def write(self, d: bytes) -> None:
        pass

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


def hello(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    return [b"Hello, world!\n"]


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one\n"
    yield b"two\n"
    yield b"three\n"


_FLASK_BODY = b'{"hello": "world"}\n'


def flask(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(_FLASK_BODY))),
            ("Vary", "Cookie"),
            ("Set-Cookie", "session=abc123; HttpOnly; Path=/"),
            ("X-Frame-Options", "SAMEORIGIN"),
        ],
    )
    return [_FLASK_BODY]


APPS: dict[str, App] = {"hello": hello, "stream": stream, "flask": flask}

REQUEST = h11.Request(
    method=b"GET",
    target=b"/",
    headers=[
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"accept", b"*/*"),
    ],
)
INFO = ConnectionInfo(("127.0.0.1", 8000), ("127.0.0.1", 5555))


def make_call(app: App) -> Callable[[], None]:
    def handler() -> None:
        # A GET has no body: the server passes the shared EMPTY_BODY, as here.
        ServerHandler(EMPTY_BODY, Sink(), sys.stderr, REQUEST, INFO).run(app)

    return handler


def measure(app: App, calls: int, repeat: int) -> float:
    """Minimum µs per call over ``repeat`` runs of ``calls`` calls."""
    call = make_call(app)
    call()  # warm the caches (Date, status, header names and values, Host)
    times = timeit.repeat(call, number=calls, repeat=repeat)
    return min(times) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", choices=sorted(APPS), default=None)
    args = parser.parse_args(argv)
    if args.profile:
        import cProfile
        import pstats

        call = make_call(APPS[args.profile])
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    for name, app in APPS.items():
        print(f"{name:8} {measure(app, args.calls, args.repeat):6.2f} µs/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
