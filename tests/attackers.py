"""Hostile clients for ``tests/test_attacks.py``, the app they attack, and what the
tests read of the server process in /proc (Linux).

The app is served by a subprocess (``python -m aiogate serve tests.attackers:app``), so
this module imports only the standard library: the server process must not carry the
test suite's memory, or its RSS would not be the server's alone.

Every attacker is a plain socket in one of the test's threads, so the server's event
loop competes with nobody; every wait on the server is bounded by a socket timeout or
a deadline. Attack data is built once and sent again and again from the same
buffer, so the attacker's memory does not grow either.
"""

from __future__ import annotations

import fcntl
import math
import os
import select
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WAIT = 10.0
MiB = 1024 * 1024

# -- the app ------------------------------------------------------------------------

#: ``/stream`` yields this piece (one object, yielded again and again) STREAM_PIECES
#: times, with a Content-Length: 12 MiB, more than any client or kernel buffer
#: absorbs (loopback queues about 3.5 MiB), within the default response spool (16
#: MiB): what a slow reader of it may cost is the spool file, not a thread. (Past the
#: spool the thread waits, held to --min-write-rate: tests/test_slow_readers.py.)
PIECE = b"s" * 65536
STREAM_PIECES = 192
STREAM_SIZE = len(PIECE) * STREAM_PIECES


#: A 4 KiB response head, as cookies and a content security policy make: a 29-byte
#: HEAD request costs the server a 4 KiB answer, so what it buffers for a client that
#: reads none shows in its RSS within a second (with 150-byte heads, today's growth
#: took a minute to reach what this does in a second).
PADDING = [("X-Padding", "p" * 4000)]


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """``/`` hello (with ``PADDING``), ``/204`` an empty 204 (with ``PADDING``),
    ``/length`` the number of body bytes received, ``/stream`` 12 MiB in 64 KiB
    pieces."""
    path = environ["PATH_INFO"]
    if path == "/204":
        start_response("204 No Content", list(PADDING))
        return []
    if path == "/length":
        stream = environ["wsgi.input"]
        size = 0
        while chunk := stream.read(65536):
            size += len(chunk)
        body = str(size).encode()
    elif path == "/stream":
        start_response("200 OK", [("Content-Length", str(STREAM_SIZE))])
        return (PIECE for _ in range(STREAM_PIECES))
    else:
        start_response("200 OK", [("Content-Length", "13"), *PADDING])
        return [b"Hello, world!"]
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


# -- what /proc says ----------------------------------------------------------------


def proc_status(pid: int, name: str) -> int:
    """A ``/proc/PID/status`` value in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def unsent(sock: socket.socket) -> int:
    """Bytes in our socket's send queue: written by us, not yet taken by the peer's
    kernel (SIOCOUTQ)."""
    result = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", result)[0])


def unread_by_server(sock: socket.socket) -> int:
    """Bytes the server's kernel holds for it on this connection, not yet read by
    the server process: the receive queue of its end, from /proc/net/tcp."""
    ours, theirs = sock.getsockname()[1], sock.getpeername()[1]
    local, remote = f"0100007F:{theirs:04X}", f"0100007F:{ours:04X}"
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no server socket for 127.0.0.1:{ours} in /proc/net/tcp")


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with few samples, p99 is the maximum)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- plain requests -----------------------------------------------------------------


def read_response(sock: socket.socket, *, head_only: bool = False) -> bytes:
    """Read one response framed by Content-Length (every response of ``app`` is);
    return its body, or its head with ``head_only``."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed inside a response head: {data[:200]!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    if head_only:
        return head
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed after {len(body)} of {length} body bytes")
        body += more
    return body


def get(port: int, target: str = "/", *, timeout: float = WAIT) -> bytes:
    """One GET on a new connection; its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(sock)


# -- class 1: pipelined requests, never a response read -----------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used, user and system, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class FloodResult:
    sent: int = 0  # request bytes we wrote
    consumed: int = 0  # of them, bytes the server process read
    rss_growth_kib: int = 0  # the server's peak RSS over its RSS before the attack
    seconds: float = 0.0
    #: Why the attack stopped: "server stopped reading", "server closed",
    #: "memory" (its RSS passed the limit), "time" (it was still reading).
    outcome: str = ""

    def __str__(self) -> str:
        return (
            f"{self.outcome} after {self.seconds:.1f} s: sent {self.sent / MiB:.1f} "
            f"MiB of requests, the server read {self.consumed / MiB:.2f} MiB of them "
            f"and its peak RSS grew by {self.rss_growth_kib / 1024:.1f} MiB"
        )


def pipeline_flood(
    port: int,
    pid: int,
    request: bytes,
    *,
    seconds: float,
    rss_limit_kib: int,
    stall: float = 1.0,
) -> FloodResult:
    """Pipeline ``request`` on one connection as fast as the socket takes it and
    never read a byte of the answers.

    The client advertises a 536-byte MSS and a 4 KiB receive buffer, as a hostile one
    may: Linux sizes the server's socket send buffer from the MSS, so the kernel holds
    a few hundred KiB of unread answers instead of 4 MiB, and what the server buffers
    beyond that shows in its RSS at once.

    Stops when the server has stopped reading: bytes wait for it in its receive
    queue, yet for ``stall`` seconds it read none of them and used almost no CPU (so
    it is not merely busy answering what it read before). Also stops when the server
    closes the connection, when its peak RSS has grown by ``rss_limit_kib`` (the
    damage is done), or after ``seconds``.
    """
    batch = memoryview(request * (MiB // len(request)))  # sent again and again
    result = FloodResult()
    rss_before = proc_status(pid, "VmRSS")
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    started = time.monotonic()
    offset = 0
    # (time, bytes the server read, its CPU seconds), sampled every 50 ms
    samples: list[tuple[float, int, float]] = []
    try:
        while True:
            if poller.poll(20):
                try:
                    offset += sock.send(batch[offset:])
                except BlockingIOError:
                    pass
                except OSError:  # reset or broken pipe: the server cut us off
                    result.outcome = "server closed"
                    break
                if offset == len(batch):
                    result.sent += offset
                    offset = 0
            now = time.monotonic()
            if samples and now - samples[-1][0] < 0.05:
                continue
            waiting = unread_by_server(sock)
            result.consumed = result.sent + offset - unsent(sock) - waiting
            samples.append((now, result.consumed, cpu_seconds(pid)))
            window = [sample for sample in samples if sample[0] >= now - stall]
            if (
                waiting
                and now - window[0][0] >= stall * 0.95
                and window[0][1] == result.consumed
                and samples[-1][2] - window[0][2] <= 0.05 * stall
            ):
                result.outcome = "server stopped reading"
                break
            if proc_status(pid, "VmHWM") - rss_before > rss_limit_kib:
                result.outcome = "memory"
                break
            if now - started >= seconds:
                result.outcome = "time"
                break
    finally:
        result.seconds = time.monotonic() - started
        result.sent += offset
        result.rss_growth_kib = proc_status(pid, "VmHWM") - rss_before
        sock.close()
    return result


# -- class 2: a chunked upload of 1-byte chunks -------------------------------------


def chunked_upload(sock: socket.socket, body_size: int) -> bytes:
    """POST ``body_size`` bytes to ``/length`` on this connection as 1-byte chunks
    (``1\\r\\nX\\r\\n``), written in large sends as fast as the server takes them,
    then the last chunk; returns the response body (the byte count the app saw)."""
    sock.sendall(
        b"POST /length HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    whole, rest = divmod(body_size, 65536)
    for _ in range(whole):
        sock.sendall(CHUNKS)
    sock.sendall(CHUNKS[: rest * 6] + b"0\r\n\r\n")
    return read_response(sock)


#: 65,536 1-byte chunks: 384 KiB on the wire, 64 KiB of body, sent again and again.
CHUNKS = b"1\r\nX\r\n" * 65536


@dataclass
class Bystander:
    """A well-behaved client on its own keep-alive connection: a GET about every
    ``interval`` seconds while an attack runs, each one timed. The one in flight when
    ``stop`` is called counts too (as the time it had waited, if it never ends)."""

    port: int
    interval: float = 0.02
    latencies: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sent_at = 0.0
        self._counted = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def done(self, count: int) -> bool:
        """Whether ``count`` GETs have been answered, or one failed."""
        return len(self.latencies) >= count or self.error is not None

    def wait(self, count: int, timeout: float) -> bool:
        """Until ``count`` GETs have been answered or one failed (``done``), or for
        ``timeout`` seconds (then False)."""
        with self._counted:
            return self._counted.wait_for(lambda: self.done(count), timeout)

    def stop(self) -> list[float]:
        if self._stop.is_set():
            return self.latencies  # stopped already
        self._stop.set()
        self._thread.join(WAIT)
        if self._thread.is_alive():  # still waiting for an answer
            self.latencies.append(time.monotonic() - self._sent_at)
        return self.latencies

    def summary(self) -> str:
        """p99 and maximum of the latencies, for a test's message (after ``stop``)."""
        latencies = self.latencies or [math.inf]
        return (
            f"bystander p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max "
            f"{max(latencies) * 1000:.1f} ms over {len(self.latencies)} GETs"
            + (f" ({self.error!r})" if self.error else "")
        )

    def _run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                while not self._stop.is_set():
                    self._sent_at = time.monotonic()
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert read_response(sock) == b"Hello, world!"
                    answered = time.monotonic()
                    with self._counted:
                        self.latencies.append(answered - self._sent_at)
                        self._counted.notify_all()
                    self._stop.wait(max(0.0, self._sent_at + self.interval - answered))
        except BaseException as exc:  # reported by the test
            with self._counted:
                self.error = exc
                self._counted.notify_all()


# -- class 3: slow readers ----------------------------------------------------------


class SlowReader:
    """GET ``/stream`` and read the response at ``rate`` bytes a second (a small
    receive buffer, so the kernel cannot absorb the response for us) until
    ``hurry`` is called; then read the rest as fast as it comes. ``outcome`` is
    "finished" (the whole body arrived, intact) or "cut off" (the server closed
    first), or None while reading."""

    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self.rate = rate
        self.received = 0  # body bytes
        self.head = b""
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()  # the response head has arrived
        self._hurry = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def hurry(self) -> None:
        self._hurry.set()

    def join(self, timeout: float) -> bool:
        """True if the attack ended (finished or cut off) within ``timeout``."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.settimeout(WAIT)
            with sock:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
                self._read(sock)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _read(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                self.outcome = "cut off"
                return
            data += more
        self.head, _, body = data.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 200 "), self.head[:100]
        self.started.set()
        self.received = len(body)
        intact = body.count(b"s") == len(body)
        began = time.monotonic()
        buffer = bytearray(65536)
        while self.received < STREAM_SIZE:
            if not self._hurry.is_set():
                ahead = self.received / self.rate - (time.monotonic() - began)
                if ahead > 0:
                    self._hurry.wait(min(ahead, 0.05))  # the pacing is the attack
                    continue
            try:
                count = sock.recv_into(buffer, 4096 if not self._hurry.is_set() else 0)
            except ConnectionError:
                self.outcome = "cut off"
                return
            if not count:
                self.outcome = "cut off"
                return
            intact = intact and buffer[:count].count(b"s") == count
            self.received += count
        assert intact, "the streamed body was corrupted"
        self.outcome = "finished"
