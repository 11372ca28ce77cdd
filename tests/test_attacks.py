"""Attacks over real loopback sockets (issue 12): hostile clients that cost the server
memory, its event loop or its threads, and what each attack is allowed to cost.

Each test starts ``python -m aiogate serve tests.attackers:app`` in a subprocess, on the
stdlib loop and on uvloop, so the server's RSS (from /proc, Linux) is its own and its
loop competes with no attacker; the attackers (``tests/attackers.py``) are plain sockets
in the test's threads. Every wait is bounded by a socket timeout or a deadline.

The classes are the issue's. Class 4, pipelined requests that each get an error from
the loop, is not an attack: the connection closes after the first error, so nothing
behind it is parsed. Pipelined probes answered on the loop to a client that never
reads are class 1 (``livez``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.attackers import (
    WAIT,
    Bystander,
    FloodResult,
    MiB,
    SlowReader,
    chunked_upload,
    get,
    percentile,
    pipeline_flood,
    proc_status,
    read_response,
)
from tests.test_end_to_end import SERVE, ServerProcess

REPO = Path(__file__).resolve().parents[1]

Serve = Callable[..., ServerProcess]


@pytest.fixture(params=["asyncio", "uvloop"])
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """Start the server on one loop with these flags; killed after the test."""
    loop: str = request.param
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    servers: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = ServerProcess(
            [*SERVE, "tests.attackers:app", "--port", "0", "--loop", loop, *flags],
            cwd=REPO,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


# -- the bystander --------------------------------------------------------------------

# What a bystander's plain GET, on its own connection, may wait while any attack runs,
# at the 99th percentile of one GET every 20 ms (issue 12).
BYSTANDER_P99 = 0.05
# Each attack goes on (again and again if it ends sooner) until the bystander has had
# this many answers, so a p99 is not the maximum (with a dozen GETs it would be: one
# scheduling hiccup), within ATTACK_SECONDS: a server that makes the bystander wait
# gets fewer GETs in, and then its p99 is the longest wait.
BYSTANDER_GETS = 150
ATTACK_SECONDS = 15.0


def check_bystander(bystander: Bystander, measured: str) -> None:
    """The bystander was answered every time, and fast (after ``stop``). What was
    measured is printed (``pytest -s``), passed or not."""
    print(measured)
    assert bystander.error is None, measured
    assert percentile(bystander.latencies, 0.99) < BYSTANDER_P99, measured
    assert len(bystander.latencies) >= BYSTANDER_GETS, measured


# -- class 1: pipelined bodyless responses, and a client that never reads -----------

# What the server's peak RSS may grow by while a client pipelines requests and reads
# no answer. A server that stops answering and reading once its transport is
# write-paused holds the write buffer up to its high-water mark (64 KiB on both
# loops), one read of requests (256 KiB on both) and a constant (what the attack
# leaves in the allocator's pools): under 0.5 MiB measured on such a server. 8 MiB
# leaves room for allocator noise; today's server grows that much in half a second
# (HEAD, 204) or a few seconds (/livez).
FLOOD_RSS_LIMIT_KIB = 8 * 1024

HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_204 = b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n"
GET_LIVEZ = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


def warm_up(port: int, request: bytes) -> None:
    """Ten of these requests, answers read: what the server builds lazily is built
    before its RSS is taken."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        for _ in range(10):
            sock.sendall(request)
            read_response(sock, head_only=request.startswith(b"HEAD"))


@pytest.mark.parametrize(
    "request_bytes", [HEAD, GET_204, GET_LIVEZ], ids=["head", "204", "livez"]
)
def test_class1_pipelined_bodyless_responses_never_read_stop_the_reading(
    serve: Serve, request_bytes: bytes
) -> None:
    # HEAD and 204 answers carry 4 KiB heads (tests.attackers.PADDING) and no body,
    # so the app's thread never waits to write; /livez is answered on the loop.
    server = serve("--threads", "4", "--liveness-path", "/livez")
    port, pid = server.port, server.proc.pid
    warm_up(port, request_bytes)
    rss_before = proc_status(pid, "VmRSS")
    # A flood ends once the server has stopped reading it (a second or so), so it is
    # made again, on a new connection each time, for as long as the bystander needs.
    floods: list[FloodResult] = []
    started = time.monotonic()
    with Bystander(port) as bystander:
        while True:
            floods.append(
                pipeline_flood(
                    port,
                    pid,
                    request_bytes,
                    seconds=6.0,
                    rss_limit_kib=2 * FLOOD_RSS_LIMIT_KIB,
                )
            )
            if (
                bystander.done(BYSTANDER_GETS)
                or floods[-1].outcome == "memory"
                or time.monotonic() - started > ATTACK_SECONDS
            ):
                break
    growth_kib = proc_status(pid, "VmHWM") - rss_before
    measured = (
        f"{len(floods)} floods: {'; '.join(map(str, floods))}; {bystander.summary()}; "
        f"peak RSS grew by {growth_kib / 1024:.1f} MiB over all of them"
    )
    assert growth_kib < FLOOD_RSS_LIMIT_KIB, measured
    # The client sends faster than the server answers, so a server that stops when
    # it cannot write leaves the attacker's sends blocked. (Closing on the attacker
    # bounds memory too, and is accepted.) The stall detector can miss a server that
    # takes a few bytes now and then (a zero-window probe lets one more answer out);
    # then what it read must still be a small part of what was sent.
    for result in floods:
        assert result.outcome in ("server stopped reading", "server closed") or (
            result.outcome == "time" and result.consumed < min(MiB, result.sent / 4)
        ), measured
    # Others are served meanwhile, and without waiting.
    check_bystander(bystander, measured)


# -- class 2: a chunked upload in 1-byte chunks --------------------------------------

# Half the default --body-buffer-size (512 KiB), so the body is kept in memory, the
# worst case for RSS: 262,144 chunks, 1.5 MiB on the wire.
TRICKLE_BODY = 256 * 1024
BODY_BUFFER_KIB = 512
# Held at most: the body (up to --body-buffer-size) and its copy as it is joined
# for wsgi.input, plus a constant: a read buffer (256 KiB) and allocator slack.
TRICKLE_RSS_LIMIT_KIB = 2 * BODY_BUFFER_KIB + 4 * 1024


def test_class2_one_byte_chunks_neither_stall_the_loop_nor_cost_memory_per_chunk(
    serve: Serve,
) -> None:
    server = serve("--threads", "4")
    port, pid = server.port, server.proc.pid
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        assert chunked_upload(sock, 1024) == b"1024"  # warm up
    rss_before = proc_status(pid, "VmRSS")
    answers: list[bytes] = []
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30.0) as sock,
        Bystander(port) as bystander,
    ):
        # Again and again (at least once) while the bystander measures.
        while not answers or not (
            bystander.done(BYSTANDER_GETS)
            or time.monotonic() - started > ATTACK_SECONDS
        ):
            answers.append(chunked_upload(sock, TRICKLE_BODY))
    seconds = time.monotonic() - started
    growth_kib = proc_status(pid, "VmHWM") - rss_before
    measured = (
        f"{len(answers)} uploads of {TRICKLE_BODY // 1024} KiB in 1-byte chunks in "
        f"{seconds:.1f} s, answered {set(answers)}; {bystander.summary()}; peak RSS "
        f"grew by {growth_kib / 1024:.1f} MiB"
    )
    check_bystander(bystander, measured)
    assert growth_kib < TRICKLE_RSS_LIMIT_KIB, measured
    assert set(answers) == {str(TRICKLE_BODY).encode()}, measured


# -- class 3: slow readers of large responses ----------------------------------------

SLOW_RATE = 64 * 1024  # bytes a second each slow reader takes
SLOW_READERS = 3  # one more than --threads (2)
# All three responses are 36 MiB; a server that frees its threads by buffering
# whole responses in memory would hold them. What a reader may cost is its buffers
# (the response spool is a temporary file, not memory).
SLOW_RSS_LIMIT_KIB = 16 * 1024


def test_class3_slow_readers_of_large_responses_do_not_starve_other_clients(
    serve: Serve,
) -> None:
    server = serve("--threads", "2")
    port, pid = server.port, server.proc.pid
    assert get(port) == b"Hello, world!"  # warm up
    rss_before = proc_status(pid, "VmRSS")
    readers: list[SlowReader] = []
    with Bystander(port) as bystander:
        try:
            # One at a time, until both threads are taken: before the response spool
            # they waited to write for as long as their readers took (12 MiB at 64
            # KiB/s: three minutes), and the third reader's request, like each of the
            # bystander's GETs, waited for one.
            for _ in range(SLOW_READERS):
                readers.append(SlowReader(port, SLOW_RATE))
                if len(readers) <= 2:
                    assert readers[-1].started.wait(WAIT), "response did not begin"
            # The readers read on, slowly, while the bystander measures (their
            # responses take minutes at this rate). While the first two responses
            # begin, both threads are busy by design: each writes until the
            # kernel's buffers are full (10-25 ms), waits the writer's SPOOL_GRACE
            # (20 ms) for its reader, then spools the rest (8.5 MiB, 5-10 ms), so
            # one GET waits for a thread, 25-40 ms measured; p99 over 150 GETs is
            # the second longest wait.
            bystander.wait(BYSTANDER_GETS, ATTACK_SECONDS)
        finally:
            bystander.stop()
            # Nothing cuts off a reader that keeps reading: --timeout-write (30 s)
            # only drops a client that reads under --min-write-rate (16 KiB/s). So
            # after the measurement the attackers read on at full speed, and each
            # must end within WAIT: the whole body, intact, or cut off (by a server
            # that sets a minimum rate).
            for reader in readers:
                reader.hurry()
            ended = [reader.join(WAIT) for reader in readers]
    growth_kib = proc_status(pid, "VmHWM") - rss_before
    outcomes = [
        f"{reader.outcome or 'still reading'} after {reader.received / MiB:.1f} MiB"
        + (f" ({reader.error!r})" if reader.error else "")
        for reader in readers
    ]
    measured = (
        f"{bystander.summary()}; slow readers: {outcomes}; peak RSS grew by "
        f"{growth_kib / 1024:.1f} MiB"
    )
    check_bystander(bystander, measured)
    assert all(ended), measured
    assert all(reader.error is None for reader in readers), measured
    assert all(reader.outcome in ("finished", "cut off") for reader in readers), (
        measured
    )
    assert growth_kib < SLOW_RSS_LIMIT_KIB, measured
