"""How do worker processes share the connections: one shared listening socket, or
one ``SO_REUSEPORT`` socket per worker?

The measurement behind ``aiogate/supervisor.py``'s choice (README, *Workers and
binds*). For each mode, N forked workers each run ``aiogate.server.run`` with an app
that answers its pid:

- ``shared``: the parent binds one socket and every worker accepts on it (what
  ``--workers`` does); the parent keeps it open.
- ``reuseport``: each worker binds its own ``SO_REUSEPORT`` socket on the same port
  (the kernel hashes each new connection to one of them); the parent holds none.

Three figures per mode:

1. *sequential*: one client, one request per connection, one after the other: the
   share of requests per worker at light load;
2. *concurrent*: ``--clients`` threads doing the same at once;
3. *recycle*: under the concurrent load of an app that computes for 5 ms (holding
   the GIL, so each worker's loop accepts late and connections queue), one worker at a
   time is stopped gracefully (SIGTERM: stop accepting, finish what it has) and a new
   one is forked, ``--recycles`` times; the failed requests are counted.

Run: ``python benchmarks/spread.py [--workers 2] [--requests 400] [--clients 8]``.
Loopback only, Linux (``SO_REUSEPORT``); every phase is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``aiogate`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiogate.config import Config
from aiogate.server import run

TIMEOUT = 10.0


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["QUERY_STRING"] == "busy":  # holds the GIL: accepting lags too
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def listener(port: int, reuseport: bool) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def fork_worker(shared: socket.socket | None, port: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        sock = shared if shared is not None else listener(port, reuseport=True)
        run(app, Config(threads=4, log_level="warning"), sockets=[sock])
        code = 0
    finally:
        os._exit(code)


def ask(port: int, query: str = "") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET /?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200 "):
        raise OSError(f"bad response {data[:40]!r}")
    return int(data.partition(b"\r\n\r\n")[2])


def load(
    port: int, clients: int, stop: threading.Event, query: str = ""
) -> tuple[Counter[int], list[str], list[threading.Thread]]:
    pids: Counter[int] = Counter()
    failures: list[str] = []

    def client() -> None:
        while not stop.is_set():
            try:
                pids[ask(port, query)] += 1
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return pids, failures, threads


def shares(pids: Counter[int]) -> str:
    total = sum(pids.values())
    return " / ".join(f"{100 * n / total:.0f} %" for _, n in pids.most_common())


def measure(mode: str, args: argparse.Namespace) -> None:
    probe = listener(0, reuseport=True)
    port = probe.getsockname()[1]
    probe.close()
    shared = listener(port, reuseport=False) if mode == "shared" else None
    workers = [fork_worker(shared, port) for _ in range(args.workers)]
    try:
        deadline = time.monotonic() + TIMEOUT  # every worker answers once
        seen: set[int] = set()
        while seen != set(workers):
            with contextlib.suppress(OSError):  # a worker not listening yet
                seen.add(ask(port))
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: workers did not all answer: {seen}")
        sequential = Counter(ask(port) for _ in range(args.requests))
        stop = threading.Event()
        pids, failures, threads = load(port, args.clients, stop)
        while sum(pids.values()) < args.requests * 2:
            time.sleep(0.01)
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
        concurrent = Counter(pids)
        stop = threading.Event()
        pids, failures, threads = load(port, args.clients, stop, query="busy")
        for _ in range(args.recycles):
            time.sleep(0.3)
            old = workers.pop(0)
            os.kill(old, signal.SIGTERM)
            workers.append(fork_worker(shared, port))
            os.waitpid(old, 0)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
        print(
            f"{mode:9} | sequential {shares(sequential)} "
            f"| concurrent {shares(concurrent)} "
            f"| recycle: {len(failures)} failed of {sum(pids.values()) + len(failures)}"
            + (f" ({Counter(f.split('(')[0] for f in failures)})" if failures else "")
        )
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if shared is not None:
            shared.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--recycles", type=int, default=6)
    parser.add_argument("--modes", default="shared,reuseport")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        measure(mode, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
