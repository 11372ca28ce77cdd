"""Servers for the integration tests, each running in a background thread.

``serve_in_thread`` runs ``aiogate.Server`` on its own event loop (the loop that
``aiogate serve`` picks: uvloop where installed) in a daemon thread, so tests that use
blocking clients (requests, urllib3, curl ...) stay synchronous and run once.
``reference_server`` does the same for the standard library's ``wsgiref.simple_server``,
the reference the httpbin comparison is checked against. ``cli_server`` runs the real
``aiogate serve`` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from aiogate import Server
from aiogate.server import loop_factory

# Every wait in these tests is bounded by this (seconds): client calls, thread joins,
# server start and stop.
TIMEOUT = 10.0


@dataclass(frozen=True)
class Running:
    """A server that is listening on 127.0.0.1:``port``."""

    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[Running]:
    """Serve ``app`` with aiogate in a background thread; stop it gracefully on exit.

    ``options`` are ``aiogate.Server`` options (``threads``, ``timeout_keep_alive`` ...).
    An exception inside the server thread is re-raised here.
    """
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("threads", 4)
    ready = threading.Event()
    started: dict[str, Any] = {}
    failure: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        async with Server(app, **options) as server:
            started["port"] = server.sockets[0].getsockname()[1]
            started["loop"] = asyncio.get_running_loop()
            started["stop"] = stop
            ready.set()
            await stop.wait()
            await server.shutdown(timeout=5)

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
                runner.run(main())
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="aiogate-test-server", daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT), "aiogate did not start listening"
    if failure:
        raise failure[0]
    try:
        yield Running(started["port"])
    finally:
        started["loop"].call_soon_threadsafe(started["stop"].set)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "aiogate did not stop"
        if failure:
            raise failure[0]


class QuietRequestHandler(WSGIRequestHandler):
    """wsgiref's request handler without the access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def reference_server(app: Any) -> Iterator[Running]:
    """Serve ``app`` with ``wsgiref.simple_server`` (HTTP/1.0, one request at a time)
    in a background thread."""
    httpd: WSGIServer = make_server(
        "127.0.0.1", 0, app, handler_class=QuietRequestHandler
    )
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="wsgiref-test-server",
        daemon=True,
    )
    thread.start()
    try:
        yield Running(httpd.server_port)
    finally:
        httpd.shutdown()
        thread.join(TIMEOUT)
        httpd.server_close()


LISTENING = re.compile(r"Listening on http://127\.0\.0\.1:(\d+)")


@contextmanager
def cli_server(arguments: list[str], cwd: Path) -> Iterator[Running]:
    """Run ``python -m aiogate serve ARGUMENTS`` in ``cwd``; stop it with SIGTERM.

    The port is read from the "Listening on" log line. On exit the process must
    stop cleanly (exit code 0) within ``TIMEOUT``; its output is in the failure
    message otherwise.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "aiogate", "serve", *arguments],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found: list[int] = []
    ready = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = LISTENING.search(line)
            if match and not found:
                found.append(int(match[1]))
                ready.set()
        ready.set()  # the process exited: wake the waiter either way

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        assert ready.wait(TIMEOUT), "server did not start: " + "".join(lines)
        assert found, "server exited: " + "".join(lines)
        yield Running(found[0])
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0, "".join(lines)
        reader.join(TIMEOUT)
        assert not any("Traceback" in line for line in lines), "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
