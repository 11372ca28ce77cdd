"""Metrics of a whole ``--workers`` server, as real process trees: whichever worker
answers a scrape, the counters are summed over every worker and never go down, also
across workers recycled by ``--max-requests``, SIGHUP, a kill or TTOU; each worker's gauges
carry its label; a scrape is answered while every app thread of every worker is
blocked."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_workers import children, free_port, wait_until

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    import fcntl, os

    def application(environ, start_response):
        if environ["PATH_INFO"] == "/hold":  # until the test unlocks the file
            with open(environ["QUERY_STRING"], "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a connection of its own and read until the server
    closes; the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def ask(port: int, target: str = "/") -> int:
    """One app request; the pid of the worker that answered."""
    data = exchange(
        port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:200]
    return int(body)


def scrape(port: int) -> dict[str, float]:
    """The samples of one scrape: ``name{labels}`` -> value."""
    data = exchange(
        port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:200]
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def requests_total(samples: dict[str, float]) -> float:
    return sum(
        value
        for name, value in samples.items()
        if name.startswith("aiogate_requests_total{")
    )


def workers_seen(samples: dict[str, float]) -> set[int]:
    return {
        int(value)
        for name, value in samples.items()
        if name.startswith("aiogate_worker_pid{")
    }


def worker_labels(samples: dict[str, float]) -> set[str]:
    return {
        name.partition('"')[2].partition('"')[0]
        for name in samples
        if name.startswith("aiogate_worker_pid{")
    }


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerProcess, int]]]:
    (tmp_path / "lockapp.py").write_text(APP)
    servers: list[ServerProcess] = []

    def start(*flags: str) -> tuple[ServerProcess, int]:
        port = free_port()
        server = ServerProcess(
            [
                *SERVE,
                "lockapp",
                "--port",
                str(port),
                "--metrics-path",
                "/metrics",
                *flags,
            ],
            cwd=tmp_path,
        )
        servers.append(server)
        assert server.port == port
        return server, port

    yield start
    for server in servers:
        if server.proc.poll() is None:
            for pid in children(server.proc.pid):
                os.kill(pid, signal.SIGKILL)
        server.kill()


def scrapes_never_decrease(port: int, at_least: int, count: int = 5) -> list[float]:
    """``count`` scrapes: each sums at least ``at_least`` requests, none fewer than
    the one before."""
    totals = [requests_total(scrape(port)) for _ in range(count)]
    assert all(total >= at_least for total in totals), totals
    assert totals == sorted(totals), totals
    return totals


def test_forty_requests_then_five_scrapes_count_every_worker(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    answered_by: set[int] = set()
    sent = 0
    while sent < 40 or answered_by != children(supervisor):  # each worker served
        answered_by.add(ask(port))
        sent += 1
        assert sent < 400, answered_by
    totals = scrapes_never_decrease(port, 40)
    assert totals[-1] == sent  # summed over both; scrapes not counted; none twice
    # Each live worker has its gauges, labelled; the per-worker pids are theirs.
    wait_until(lambda: workers_seen(scrape(port)) == children(supervisor), "gauges")
    samples = scrape(port)
    assert {name for name in samples if name.startswith("aiogate_threads{")} == {
        'aiogate_threads{worker="0"}',
        'aiogate_threads{worker="1"}',
    }
    assert samples['aiogate_rejections_total{reason="uri_too_long"}'] == 0
    # process_*: summed over the supervisor and both workers.
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_resident_memory_bytes"] > sum(
        value
        for name, value in samples.items()
        if name.startswith("aiogate_worker_resident_memory_bytes{")
    )
    assert samples["process_open_fds"] >= 3 * 3
    assert samples["process_max_fds"] > 0
    assert 0 < samples["process_start_time_seconds"] <= time.time()
    [build] = [name for name in samples if name.startswith("aiogate_build_info{")]
    assert re.fullmatch(
        r'aiogate_build_info\{version="[^"]+",python="3\.[^"]+",h11="[^"]+",'
        r'loop="(asyncio|uvloop)"\}',
        build,
    )
    assert server.stop(signal.SIGTERM) == 0


def test_totals_survive_max_requests_sighup_a_kill_and_ttou(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start(
        "--workers", "2", "--max-requests", "15", "--max-requests-jitter", "0"
    )
    supervisor = server.proc.pid
    first = children(supervisor)
    sent = 0
    pids: set[int] = set()
    while not first.isdisjoint(children(supervisor)) or len(pids) < 6:
        pids.add(ask(port))  # every worker is replaced after 15 requests
        sent += 1
        assert sent < 400, "workers were not recycled"
    scrapes_never_decrease(port, sent)
    wait_until(lambda: requests_total(scrape(port)) == sent, "exactly the requests")
    # The recycled workers' slots were folded and freed: only the live workers
    # have gauges (each with a label of its own), though six or more have served.
    wait_until(
        lambda: workers_seen(scrape(port)) == children(supervisor),
        "only live workers have gauges",
    )
    assert len(worker_labels(scrape(port))) == len(children(supervisor))

    before = children(supervisor)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: (
            before.isdisjoint(children(supervisor)) and len(children(supervisor)) == 2
        ),
        "every worker replaced by SIGHUP",
    )
    scrapes_never_decrease(port, sent)
    assert requests_total(scrape(port)) == sent

    victim = min(children(supervisor))
    for _ in range(5):
        ask(port)
        sent += 1
    os.kill(victim, signal.SIGKILL)  # a crash: its slot is folded when reaped
    wait_until(lambda: victim not in children(supervisor), "the killed worker reaped")
    scrapes_never_decrease(port, sent)
    assert requests_total(scrape(port)) == sent

    server.proc.send_signal(signal.SIGTTOU)  # one worker fewer: its counts stay
    wait_until(lambda: len(children(supervisor)) == 1, "one worker after TTOU")
    scrapes_never_decrease(port, sent)
    assert requests_total(scrape(port)) == sent
    server.proc.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(children(supervisor)) == 2, "two workers after TTIN")
    for _ in range(5):
        ask(port)
        sent += 1
    wait_until(lambda: requests_total(scrape(port)) == sent, "the new ones counted")
    assert server.stop(signal.SIGTERM) == 0


def test_a_scrape_is_answered_while_every_app_thread_is_blocked(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    server, port = start("--workers", "2", "--threads", "1")
    wait_until(lambda: len(children(server.proc.pid)) == 2, "two workers")
    lock_path = tmp_path / "lock"
    lock_path.write_bytes(b"")
    held: list[threading.Thread] = []
    answers: list[int] = []
    with open(lock_path, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        def hold() -> None:
            answers.append(ask(port, f"/hold?{lock_path}"))

        def every_thread_busy() -> bool:
            # The kernel spreads connections over the workers as it likes: add held
            # requests until both workers' one thread is taken.
            if len(held) < 24:
                held.append(threading.Thread(target=hold))
                held[-1].start()
            samples = scrape(port)  # answered with every thread blocked, at the end
            busy = [
                value
                for name, value in samples.items()
                if name.startswith("aiogate_threads_busy{")
            ]
            return len(busy) == 2 and sum(busy) == 2

        wait_until(every_thread_busy, "both workers' thread blocked")
        assert requests_total(scrape(port)) == 0  # none has finished
        fcntl.flock(lock, fcntl.LOCK_UN)
    for thread in held:
        thread.join(20)
    assert len(answers) == len(held)
    wait_until(lambda: requests_total(scrape(port)) == len(held), "all counted")
    assert server.stop(signal.SIGTERM) == 0


def test_rejections_of_every_worker_are_summed_by_reason(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2", "--limit-request-line", "200")
    wait_until(lambda: len(children(server.proc.pid)) == 2, "two workers")
    for _ in range(6):  # on new connections: spread over the workers
        long_target = exchange(port, b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n")
        assert long_target.startswith(b"HTTP/1.1 414 ")
        bad = exchange(port, b"NOT HTTP\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
    samples = scrape(port)
    assert samples['aiogate_rejections_total{reason="uri_too_long"}'] == 6
    assert samples['aiogate_rejections_total{reason="bad_request"}'] == 6
    assert samples['aiogate_rejections_total{reason="headers_too_large"}'] == 0
    assert server.stop(signal.SIGTERM) == 0
