"""Benchmark aiogate against its peers with wrk, one workload at a time.

(``suite.py`` runs every workload and peer in one command; this is its engine, and
the tool for measuring one workload.) Peers: waitress, gunicorn (gthread), uvicorn
with a2wsgi, granian, aiogate with two workers, the bare h11 ceiling, and aiogate
from another checkout (``aiogate-base``, ``--base-tree``) to compare two versions.

One command runs every server, one at a time, on 127.0.0.1 with the same WSGI app
from ``benchmarks/apps.py``, one process and the same number of app threads, and
measures it with ``wrk``. The servers are interleaved within each round (round 1:
aiogate, waitress, gunicorn; round 2: the same again; ...) so that the noise of a
shared machine hits them all alike. The report gives medians over the rounds and the
ratio of the reference server (aiogate) to each peer, computed within each round and
then taken as the median over rounds.

Usage (from anywhere; the servers always run with the repository root as cwd)::

    /work/venv/bin/python benchmarks/run.py --duration 10 --rounds 3
    /work/venv/bin/python benchmarks/run.py --servers waitress,gunicorn --markdown
    /work/venv/bin/python benchmarks/run.py --workload sleep --json results/s.json

Progress goes to stderr as each run finishes; the report goes to stdout. The exit
status is 0 when every run of every server succeeded, 1 when any failed (a server
that would not start, died, or a wrk error), 2 on bad usage or a missing ``wrk``.
See ``benchmarks/README.md`` for what the numbers mean and their caveats.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Not resolved: resolving a virtualenv's python symlink would leave the virtualenv.
BIN_DIR = Path(sys.executable).parent

SERVERS = (
    "aiogate", "waitress", "gunicorn", "uvicorn", "granian", "aiogate-2w", "h11-ceiling",
    "aiogate-base",
)  # fmt: skip
#: What --servers uses when not given: the peers, one process each.
DEFAULT_SERVERS = ("aiogate", "waitress", "gunicorn")
WORKLOADS = (
    "hello", "big", "upload", "post", "chunked", "sleep", "flask", "paced", "file",
    "bigfile",
)  # fmt: skip
#: The app of ``benchmarks/apps.py`` each workload serves.
WORKLOAD_APPS = {
    "hello": "hello",
    "big": "big",
    "upload": "upload",
    "post": "upload",
    "chunked": "upload",
    "sleep": "sleep",
    "flask": "flask_json",
    "paced": "hello",
    "file": "file_1m",
    "bigfile": "file_100m",
}
#: Request body sizes of the POST workloads.
POST_BYTES = {"upload": 1024 * 1024, "post": 64 * 1024, "chunked": 64 * 1024}
#: The POST workloads that send their body with ``Transfer-Encoding: chunked``, and
#: the size of each chunk: ``chunked`` is ``post``'s 64 KiB in 1 KiB chunks (issue 12).
CHUNK_BYTES = {"chunked": 1024}
#: Keep-alive connections of a workload, in place of ``--connections``: a 100 MiB
#: response takes 50-100 ms on loopback, so 64 of them at once would take seconds
#: each; 8 (one per app thread) keep every server busy and the latencies readable.
WORKLOAD_CONNECTIONS = {"bigfile": 8}
#: wrk counts a response as a timeout after 2 s by default; the file workloads may
#: take longer under a slow peer, and a timeout would be counted as an error.
WRK_TIMEOUT = {"file": "30s", "bigfile": "30s"}
#: The h11 ceiling answers a fixed hello response: it only stands in for these.
CEILING_WORKLOADS = ("hello", "paced")
PACED_RATE = 1000.0  # requests a second of the paced workload
PACED_CONNECTIONS = 16
VERSIONED_PACKAGES = (
    "aiogate", "h11", "uvloop", "waitress", "gunicorn", "uvicorn", "a2wsgi", "granian",
)  # fmt: skip

WARMUP_SECONDS = 2
START_TIMEOUT = 20.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
COOLDOWN_SECONDS = 1.0  # pause between runs, so one server's exit doesn't overlap
WRK_GRACE = 30.0  # seconds wrk may take beyond its --duration before we kill it
LOG_TAIL_LINES = 15

# wrk prints durations with these units (see its units.c).
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_REQUESTS_PER_SEC = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)([a-z]+),", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*(\d+)%\s+([\d.]+)([a-z]+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_BAD_STATUS = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class RunFailed(Exception):
    """One server's run could not produce a measurement; the message says why."""


@dataclass
class WrkResult:
    """The numbers parsed from one wrk run."""

    requests_per_second: float
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # wrk's counters: connect, read, write, timeout.
    socket_errors: dict[str, int]
    # wrk's "Non-2xx or 3xx responses" line, which in fact counts statuses >= 400.
    bad_status: int

    @property
    def errors(self) -> int:
        """Every failed request or connection that wrk counted."""
        return sum(self.socket_errors.values()) + self.bad_status

    def error_detail(self) -> str:
        """The non-zero error counters, e.g. ``read 3, status>=400 12``; or ``0``."""
        parts = [f"{name} {n}" for name, n in self.socket_errors.items() if n]
        if self.bad_status:
            parts.append(f"status>=400 {self.bad_status}")
        return ", ".join(parts) or "0"


@dataclass
class Run:
    """One server measured once, in one round: a result, or why there is none."""

    round: int
    server: str
    command: list[str]
    result: WrkResult | None = None
    error: str | None = None
    note: str | None = None  # something odd that did not spoil the measurement
    wrk_output: str = ""
    log_lines: int = 0
    log_tail: list[str] = field(default_factory=list)
    #: The kernel's peak RSS (VmHWM) of the server's processes, summed, at the end.
    peak_rss_kib: int | None = None
    #: CPU seconds (user + system) the server's processes used while measured.
    cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        """Whether this run produced a measurement."""
        return self.result is not None

    @property
    def cpu_us_per_request(self) -> float | None:
        """The server's CPU time per completed request, in microseconds."""
        if self.result is None or self.cpu_seconds is None or not self.result.requests:
            return None
        return self.cpu_seconds / self.result.requests * 1e6


@dataclass
class Summary:
    """One server over every round."""

    server: str
    rounds_ok: int
    rounds: int
    rps: list[float]
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    # reference ÷ this server, one per round where both succeeded.
    ratios: list[float]
    peak_rss_kib: int | None = None  # the largest over rounds
    cpu_us_per_request: float | None = None  # the median over rounds


# --- Servers -------------------------------------------------------------------------


@cache
def _gunicorn_has_control_socket() -> bool:
    """Whether this gunicorn has a control socket (newer ones), which we switch off."""
    try:
        completed = subprocess.run(
            [str(BIN_DIR / "gunicorn"), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--no-control-socket" in completed.stdout


def server_command(
    server: str, app: str, port: int, threads: int, base_python: str | None = None
) -> list[str]:
    """The command line that serves ``app`` (``module:callable``) on ``port``.

    ``aiogate-base`` is aiogate as well, run with ``base_python`` (default: this
    interpreter) from the ``--base-tree`` checkout: ``run_one`` gives it that
    directory as cwd and ``PYTHONPATH``, so ``-m aiogate`` imports the tree's code.
    """
    if server == "aiogate-2w":  # two worker processes under the supervisor
        return [*server_command("aiogate", app, port, threads), "--workers", "2"]
    if server in ("aiogate", "aiogate-base"):
        python = base_python if server == "aiogate-base" and base_python else None
        return [
            python or sys.executable, "-m", "aiogate", "serve", app,
            "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--log-level", "warning",
        ]  # fmt: skip
    if server == "waitress":
        # waitress-serve has no quiet flag; its "Serving on" line goes to our log file.
        return [
            str(BIN_DIR / "waitress-serve"),
            f"--listen=127.0.0.1:{port}", f"--threads={threads}", app,
        ]  # fmt: skip
    if server == "gunicorn":
        # gthread keeps connections alive (default --keep-alive 2 s); the access log
        # is off unless --access-logfile is given.
        command = [
            str(BIN_DIR / "gunicorn"),
            "-k", "gthread", "--workers", "1", "--threads", str(threads),
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        ]  # fmt: skip
        if _gunicorn_has_control_socket():
            command.append("--no-control-socket")
        return [*command, app]
    if server == "uvicorn":
        # uvicorn serves ASGI: the same WSGI app through a2wsgi (benchmarks/asgi_apps).
        return [
            "env", f"A2WSGI_THREADS={threads}",  # env execs uvicorn: the same pid
            str(BIN_DIR / "uvicorn"), app.replace("benchmarks.apps:", "benchmarks.asgi_apps:"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if server == "granian":
        return [
            str(BIN_DIR / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--blocking-threads", str(threads),
            "--no-ws", app,
        ]  # fmt: skip
    if (
        server == "h11-ceiling"
    ):  # a fixed response whatever the app: see CEILING_WORKLOADS
        return [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "h11_ceiling.py"),
            str(port),
        ]
    raise ValueError(f"unknown server {server!r}")


def server_env(root: Path = REPO_ROOT) -> dict[str, str]:
    """The environment of a server: ours, plus its source tree first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), env.get("PYTHONPATH", "")) if p
    )
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_line(port: int) -> str | None:
    """Send one ``GET /`` and return the response's status line, or None if none."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    if not head.startswith(b"HTTP/1."):
        return None
    return head.split(b"\r\n", 1)[0].decode("latin-1")


def wait_until_ready(process: subprocess.Popen[bytes], port: int) -> None:
    """Poll until the server answers 200 to ``GET /``; raise RunFailed otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        code = process.poll()
        if code is not None:
            raise RunFailed(f"exited with code {code} before answering on port {port}")
        status = _status_line(port)
        if status is not None:
            if status.split(" ")[1:2] != ["200"]:
                raise RunFailed(f"answered {status!r} to GET / instead of 200")
            return
        if time.monotonic() > deadline:
            raise RunFailed(
                f"did not answer on port {port} within {START_TIMEOUT:.0f} s"
            )
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> str | None:
    """Stop a server: SIGTERM, a bounded wait, then SIGKILL. Return a note if forced.

    Each server runs in its own session (process group), so the SIGKILL also reaches
    any worker processes it forked (gunicorn's) and nothing else.
    """
    note = None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            note = f"did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM; killed"
    # ProcessLookupError is the usual case: the whole group has already exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return note


# --- wrk -----------------------------------------------------------------------------


def _to_ms(value: str, unit: str) -> float:
    """A wrk duration such as (``"1.23"``, ``"ms"``) in milliseconds."""
    if unit not in _TIME_UNITS_MS:
        raise RunFailed(f"wrk printed an unknown time unit {unit!r}")
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Parse the report that ``wrk --latency`` prints; raise RunFailed if it can't."""
    rps = _REQUESTS_PER_SEC.search(output)
    total = _TOTAL.search(output)
    percentiles = {int(p): _to_ms(v, u) for p, v, u in _PERCENTILE.findall(output)}
    if rps is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise RunFailed("could not parse wrk's output:\n" + output.strip())
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    found = _SOCKET_ERRORS.search(output)
    if found is not None:
        socket_errors = dict(zip(socket_errors, map(int, found.groups()), strict=True))
    bad_status = _BAD_STATUS.search(output)
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        seconds=_to_ms(total.group(2), total.group(3)) / 1000.0,
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        socket_errors=socket_errors,
        bad_status=int(bad_status.group(1)) if bad_status else 0,
    )


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int,
    script: Path | None,
    timeout: str | None = None,
) -> str:
    """Run wrk against ``url`` and return its report; raise RunFailed on failure."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if timeout is not None:
        command += ["--timeout", timeout]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(
            f"wrk did not finish within {seconds + WRK_GRACE:.0f} s"
        ) from exc
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip()
        raise RunFailed(f"wrk exited with code {completed.returncode}: {detail}")
    return completed.stdout


def chunked_body(size: int, chunk_size: int) -> bytes:
    """``size`` bytes of ``x`` in the chunked coding (RFC 9112 §7.1), in chunks of
    ``chunk_size`` (the last one shorter if need be), then the last chunk."""
    pieces = []
    for start in range(0, size, chunk_size):
        length = min(chunk_size, size - start)
        pieces.append(b"%x\r\n%s\r\n" % (length, b"x" * length))
    return b"".join(pieces) + b"0\r\n\r\n"


def post_request(workload: str, host: str) -> bytes:
    """The request a POST workload's wrk script sends, built here in Python: what
    ``check_post_answer`` sends once before the measurement."""
    size = POST_BYTES[workload]
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
    ).encode("ascii")
    if workload in CHUNK_BYTES:
        body = chunked_body(size, CHUNK_BYTES[workload])
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + body
    return head + b"Content-Length: %d\r\n\r\n" % size + b"x" * size


def wrk_script(workload: str) -> str | None:
    """The wrk Lua script a workload needs (the POST bodies), if any."""
    if workload not in POST_BYTES:
        return None
    size = POST_BYTES[workload]
    content_type = 'wrk.headers["Content-Type"] = "application/octet-stream"'
    if workload not in CHUNK_BYTES:
        body = f'wrk.body = string.rep("x", {size})'
        return "\n".join(['wrk.method = "POST"', body, content_type, ""])
    chunk = CHUNK_BYTES[workload]
    full, rest = divmod(size, chunk)
    last = f" .. chunk({rest})" if rest else ""
    # wrk.format() adds a Content-Length for wrk.body, and a request with both that
    # and Transfer-Encoding is an error (RFC 9112 §6.3; aiogate answers 400). So
    # wrk.body stays nil, the head comes from wrk.format() (ending with its blank
    # line), and the chunked body is appended to it, once, on the first request. A
    # script with a request() function makes wrk call it for every request: one Lua
    # call returning the same string, negligible beside the server's work.
    return "\n".join(
        [
            f"-- benchmarks/run.py, workload {workload}: {size} bytes, chunked, "
            f"in chunks of {chunk}",
            'wrk.method = "POST"',
            content_type,
            'wrk.headers["Transfer-Encoding"] = "chunked"',
            "local function chunk(size)",
            r'   return string.format("%x\r\n%s\r\n", size, string.rep("x", size))',
            "end",
            f'local body = string.rep(chunk({chunk}), {full}){last} .. "0\\r\\n\\r\\n"',
            "local req = nil",
            "function request()",
            "   if req == nil then",
            "      req = wrk.format() .. body",
            "   end",
            "   return req",
            "end",
            "",
        ]
    )


def write_wrk_script(workload: str, directory: Path) -> Path | None:
    """Write ``wrk_script(workload)`` to a file in ``directory``, if there is one."""
    text = wrk_script(workload)
    if text is None:
        return None
    script = directory / f"{workload}.lua"
    script.write_text(text)
    return script


def check_post_answer(port: int, workload: str) -> None:
    """Send the workload's POST once and check that the app read the whole body
    (``upload`` answers the length it read). A server that left a chunked body
    unread (no ``wsgi.input_terminated``) would be measured doing less work."""
    expected = b"%d\n" % POST_BYTES[workload]
    request = post_request(workload, f"127.0.0.1:{port}")
    request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        raise RunFailed(f"the check POST failed: {exc}") from exc
    status = answer.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200") or not answer.endswith(
        b"\r\n\r\n" + expected
    ):
        raise RunFailed(
            f"answered {answer[:200]!r} to the workload's POST; expected 200 and "
            f"{expected!r} (the length the app read)"
        )


def _session_pids(session: int) -> list[int]:
    """The processes of a session (servers start in their own: pid == sid)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The fields after the command name (in parentheses, which may hold spaces):
        # state ppid pgrp session ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session:
            pids.append(int(entry.name))
    return pids


def peak_rss_kib(pid: int) -> int | None:
    """The peak RSS (VmHWM) of the server's processes, summed: the master and its
    workers for gunicorn and granian, one process for the others. None where
    ``/proc`` is not there."""
    total = 0
    found = False
    for member in _session_pids(pid) if Path("/proc").is_dir() else []:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
                    found = True
    return total if found else None


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime, in clock ticks, from a ``/proc/PID/stat`` line.

    The process's own fields count all its threads (proc(5)); the children's count
    those it has waited for, so a worker that exits while measured still counts."""
    # After the command name (in parentheses, which may hold spaces and parentheses)
    # come fields 3, 4, ... of proc(5): utime is field 14, cstime field 17.
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11:15])


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the processes of the server's session (the master
    and workers of gunicorn, granian and ``aiogate --workers``; one process for the
    others). Read before and after a measurement; None where ``/proc`` is not there."""
    if not Path("/proc").is_dir():
        return None
    ticks = 0
    for member in _session_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ticks += parse_cpu_ticks(Path(f"/proc/{member}/stat").read_text())
    return ticks / os.sysconf("SC_CLK_TCK")


def run_paced(port: int, seconds: int) -> WrkResult:
    """The paced workload: ``PACED_RATE`` requests a second for ``seconds``."""
    import asyncio

    if str(REPO_ROOT) not in sys.path:  # run as a script
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.paced import measure, percentile_ms

    result = asyncio.run(measure(port, PACED_RATE, seconds, PACED_CONNECTIONS))
    latencies = sorted(result.latencies)
    p50_ms, p99_ms = percentile_ms(latencies, 0.50), percentile_ms(latencies, 0.99)
    if p50_ms is None or p99_ms is None:
        raise RunFailed(f"no request succeeded ({dict(result.failures)})")

    errors = sum(result.failures.values())
    elapsed = result.ended - result.started
    return WrkResult(
        requests_per_second=len(latencies) / elapsed,
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        socket_errors={"read": errors} if errors else {},
        bad_status=0,
    )


# --- One run -------------------------------------------------------------------------


def _read_log(path: Path) -> list[str]:
    """The lines a server wrote to its log file."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def run_one(
    server: str, round_number: int, args: argparse.Namespace, workdir: Path
) -> Run:
    """Start ``server``, warm it up, measure it with wrk, stop it."""
    port = free_port()
    base_tree: Path | None = getattr(args, "base_tree", None)
    command = server_command(
        server,
        f"benchmarks.apps:{WORKLOAD_APPS[args.workload]}",
        port,
        args.threads,
        getattr(args, "base_python", None),
    )
    run = Run(round=round_number, server=server, command=command)
    root = REPO_ROOT
    if server == "aiogate-base":
        if base_tree is None:
            run.error = "aiogate-base needs --base-tree (a checkout to compare with)"
            return run
        root = base_tree
    log_path = workdir / f"{server}-round{round_number}.log"
    url = f"http://127.0.0.1:{port}/"
    wrk_options = {
        "connections": connections(args),
        "threads": args.wrk_threads,
        "script": write_wrk_script(args.workload, workdir),
        "timeout": WRK_TIMEOUT.get(args.workload),
    }
    size = file_size(args.workload)
    if size is not None:  # made now, not by the first server while it starts
        from benchmarks.apps import bench_file

        bench_file(size)
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                command,
                cwd=root,
                env=server_env(root),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            run.error = f"could not start: {exc}"
            return run
    try:
        wait_until_ready(process, port)
        if args.workload in POST_BYTES:
            check_post_answer(port, args.workload)
        run_wrk(url, seconds=WARMUP_SECONDS, **wrk_options)
        cpu_before = cpu_seconds(process.pid)
        if args.workload == "paced":
            result = run_paced(port, args.duration)
        else:
            run.wrk_output = run_wrk(url, seconds=args.duration, **wrk_options)
            result = parse_wrk(run.wrk_output)
        cpu_after = cpu_seconds(process.pid)
        if process.poll() is not None:
            raise RunFailed(f"exited with code {process.returncode} during the run")
        if cpu_before is not None and cpu_after is not None:
            run.cpu_seconds = cpu_after - cpu_before
        run.peak_rss_kib = peak_rss_kib(process.pid)
        run.result = result
    except RunFailed as exc:
        run.error = str(exc)
    finally:
        run.note = stop(process)
        lines = _read_log(log_path)
        run.log_lines = len(lines)
        run.log_tail = lines[-LOG_TAIL_LINES:]
    return run


def file_size(workload: str) -> int | None:
    """The size of the file a file workload serves; None for the others."""
    if str(REPO_ROOT) not in sys.path:  # run as a script
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.apps import FILE_SIZES

    return FILE_SIZES.get(WORKLOAD_APPS[workload])


def connections(args: argparse.Namespace) -> int:
    """The keep-alive connections wrk opens for the workload."""
    return WORKLOAD_CONNECTIONS.get(args.workload, args.connections)


def progress_line(run: Run, rounds: int) -> str:
    """One line (plus the log tail on failure) describing a finished run."""
    head = f"round {run.round}/{rounds}  {run.server:<9}"
    if run.result is None:
        text = f"{head} FAILED: {run.error}"
        if run.log_tail:
            text += "\n" + "\n".join(f"    | {line}" for line in run.log_tail)
        return text
    r = run.result
    text = (
        f"{head} {r.requests_per_second:>9.0f} req/s  {_cpu(run.cpu_us_per_request):>7} "
        f"CPU µs/req  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
        f"errors {r.error_detail()}"
    )
    if run.log_lines:
        text += f"  (server log: {run.log_lines} lines)"
    if run.note:
        text += f"  [{run.note}]"
    return text


# --- Summary and report --------------------------------------------------------------


def _median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def requests_per_second(run: Run) -> float:
    """A measured run's req/s."""
    assert run.result is not None
    return run.result.requests_per_second


def round_ratios(
    runs: Sequence[Run],
    top: str,
    bottom: str,
    value: Callable[[Run], float] = requests_per_second,
) -> list[float]:
    """``value(top) / value(bottom)`` in each round where both were measured (and
    the divisor is above 0): ratios are taken within a round, so that the drift of
    a shared machine cancels out."""
    return ratios_by_round(
        [run for run in runs if run.server == top],
        [run for run in runs if run.server == bottom],
        value,
    )


def ratios_by_round(
    tops: Sequence[Run],
    bottoms: Sequence[Run],
    value: Callable[[Run], float] = requests_per_second,
) -> list[float]:
    """``value(top) / value(bottom)`` for the runs of the same round, where both
    were measured and the divisor is above 0: two servers on one workload, or one
    server on two workloads (``suite.py``: chunked ÷ Content-Length upload)."""
    top_of = {run.round: run for run in tops if run.ok}
    bottom_of = {run.round: run for run in bottoms if run.ok}
    return [
        value(top_of[number]) / value(bottom_of[number])
        for number in sorted(top_of.keys() & bottom_of.keys())
        if value(bottom_of[number]) > 0
    ]


def summarize(
    runs: Sequence[Run], servers: Sequence[str], reference: str | None, rounds: int
) -> list[Summary]:
    """Per-server medians, and the reference's per-round ratio to each server."""
    summaries = []
    for server in servers:
        results = [run.result for run in runs if run.server == server and run.result]
        ratios = [] if reference is None else round_ratios(runs, reference, server)
        summaries.append(
            Summary(
                server=server,
                rounds_ok=len(results),
                rounds=rounds,
                rps=[r.requests_per_second for r in results],
                p50_ms=_median_or_none([r.p50_ms for r in results]),
                p99_ms=_median_or_none([r.p99_ms for r in results]),
                errors=sum(r.errors for r in results),
                ratios=ratios,
                peak_rss_kib=max(
                    (
                        run.peak_rss_kib
                        for run in runs
                        if run.server == server and run.peak_rss_kib
                    ),
                    default=None,
                ),
                cpu_us_per_request=median_cpu_us(
                    [run for run in runs if run.server == server]
                ),
            )
        )
    return summaries


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, its columns padded so it reads as plain text too."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def median_cpu_us(runs: Sequence[Run]) -> float | None:
    """The median CPU µs per request of the runs where it was measured."""
    return _median_or_none(
        [us for us in (run.cpu_us_per_request for run in runs) if us is not None]
    )


def summary_table(summaries: Sequence[Summary], reference: str | None) -> str:
    """The final table: one row per server."""
    header = [
        "server", "req/s (median)", "min-max", "CPU µs/req", "p50", "p99", "errors",
        "ok", "peak RSS MiB",
    ]  # fmt: skip
    if reference is not None:
        header.append(f"{reference} ÷ server (median, min-max)")
    rows = []
    for s in summaries:
        row = [
            s.server,
            f"{statistics.median(s.rps):.0f}" if s.rps else "FAILED",
            f"{min(s.rps):.0f}-{max(s.rps):.0f}" if s.rps else "n/a",
            _cpu(s.cpu_us_per_request),
            _ms(s.p50_ms),
            _ms(s.p99_ms),
            str(s.errors) if s.rps else "n/a",
            f"{s.rounds_ok}/{s.rounds}",
            f"{s.peak_rss_kib / 1024:.1f}" if s.peak_rss_kib else "n/a",
        ]
        if reference is not None:
            if s.server == reference:
                row.append("(reference)")
            elif s.ratios:
                row.append(
                    f"{statistics.median(s.ratios):.2f} "
                    f"({min(s.ratios):.2f}-{max(s.ratios):.2f})"
                )
            else:
                row.append("n/a")
        rows.append(row)
    return _markdown_table(header, rows)


def rounds_table(runs: Sequence[Run]) -> str:
    """Every run: one row per round and server."""
    header = ["round", "server", "req/s", "CPU µs/req", "p50", "p99", "errors"]
    rows = []
    for run in runs:
        if run.result is None:
            rows.append([str(run.round), run.server, "FAILED", "", "", "", ""])
        else:
            r = run.result
            rows.append(
                [
                    str(run.round),
                    run.server,
                    f"{r.requests_per_second:.0f}",
                    _cpu(run.cpu_us_per_request),
                    _ms(r.p50_ms),
                    _ms(r.p99_ms),
                    r.error_detail(),
                ]
            )
    return _markdown_table(header, rows)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        completed = subprocess.run(
            ["wrk", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (completed.stdout or completed.stderr).splitlines()[:1]
    # e.g. "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    return first[0].split(" Copyright")[0].removeprefix("wrk ") if first else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str, cwd: Path = REPO_ROOT) -> str | None:
    """The output of a read-only git command in ``cwd``; None if it failed."""
    try:
        completed = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def aiogate_source(root: Path = REPO_ROOT) -> str:
    """Which aiogate code a server runs: ``aiogate/`` of its tree (the server's cwd
    and ``PYTHONPATH``), the last commit that changed it, and whether it is edited."""
    commit = _git("log", "-1", "--format=%H", "--", "aiogate", cwd=root) or "unknown"
    status = _git("status", "--porcelain", "--", "aiogate", cwd=root)
    state = {None: "state unknown", "": "clean"}.get(status, "with uncommitted changes")
    return f"{root / 'aiogate'}, last commit {commit}, {state}"


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info(base_tree: Path | None = None) -> dict[str, str]:
    """What the numbers were measured on (and the ``aiogate-base`` tree, if any)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info = {
        "cpus (nproc)": str(usable or os.cpu_count()),
        "cpu model": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for package in VERSIONED_PACKAGES:
        info[package] = _version(package)
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    info["aiogate"] += f" (repository HEAD {head})"
    info["aiogate source"] = aiogate_source()
    if base_tree is not None:
        info["aiogate-base source"] = aiogate_source(base_tree)
    info["wrk"] = _wrk_version()
    info["load average at start"] = _load_average()
    return info


def settings_line(args: argparse.Namespace) -> str:
    """The benchmark's parameters, in one line."""
    if args.workload == "paced":
        load = (
            f"{PACED_RATE:g} GET/s, paced, over {PACED_CONNECTIONS} keep-alive "
            "connections (benchmarks/paced.py; wrk only warms up)"
        )
    else:
        load = (
            f"{connections(args)} keep-alive connections from wrk -t{args.wrk_threads}"
        )
    body = (
        f", POST {POST_BYTES[args.workload]} bytes"
        if args.workload in POST_BYTES
        else ""
    )
    size = file_size(args.workload)
    if size is not None:
        body += f", a {size}-byte file through wsgi.file_wrapper"
    if args.workload in CHUNK_BYTES:
        body += f" chunked in {CHUNK_BYTES[args.workload]}-byte chunks"
    return (
        f"workload {args.workload}{body}; {load}; {args.threads} app threads per server, "
        f"1 process; {args.rounds} round(s) of {args.duration} s after a "
        f"{WARMUP_SECONDS} s warm-up; servers interleaved within each round"
    )


def render_report(
    args: argparse.Namespace,
    machine: dict[str, str],
    runs: Sequence[Run],
    summaries: Sequence[Summary],
    reference: str | None,
) -> str:
    """The final report; all markdown with ``--markdown``, else plain headings."""

    def heading(title: str) -> str:
        return f"### {title}" if args.markdown else f"== {title} =="

    bullet = "- " if args.markdown else "  "
    sub_bullet = "  - " if args.markdown else "    "
    parts = [heading("Machine")]
    parts += [f"{bullet}{key}: {value}" for key, value in machine.items()]
    parts += ["", heading("Settings"), f"{bullet}{settings_line(args)}"]
    parts += ["", heading("Per round"), rounds_table(runs)]
    parts += ["", heading("Summary"), summary_table(summaries, reference)]
    if reference is not None:
        parts += [
            "",
            f"{reference} ÷ server: {reference}'s req/s divided by the server's, "
            "within each round; the median (and range) over rounds.",
        ]
    failures = [run for run in runs if not run.ok]
    if failures:
        parts += ["", heading("Failures")]
        # The same failure in every round is shown in full only once.
        first_seen: dict[tuple[str, tuple[str, ...]], int] = {}
        for run in failures:
            parts.append(f"{bullet}round {run.round}, {run.server}: {run.error}")
            key = (run.server, tuple(run.log_tail))
            if key in first_seen:
                parts.append(f"{sub_bullet}same server log as round {first_seen[key]}")
                continue
            first_seen[key] = run.round
            parts.append(f"{sub_bullet}command: {' '.join(run.command)}")
            if run.log_tail:
                fence = ["```"] if args.markdown else []
                tail = [f"    | {line}" for line in run.log_tail]
                parts += [*fence, *tail, *fence]
    return "\n".join(parts)


# --- Command line --------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _server_list(text: str) -> list[str]:
    names = list(
        dict.fromkeys(name.strip() for name in text.split(",") if name.strip())
    )
    unknown = [name for name in names if name not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"choose from {','.join(SERVERS)}; got {text!r}"
        )
    return names


def _source_tree(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "aiogate" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} has no aiogate/__init__.py")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark aiogate, waitress and gunicorn with wrk on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=_positive_int,
        default=10,
        help="seconds of measurement per server per round",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=3,
        help="rounds; each runs every server once",
    )
    parser.add_argument(
        "--connections",
        type=_positive_int,
        default=64,
        help="concurrent keep-alive connections (wrk -c)",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=8, help="app threads of every server"
    )
    parser.add_argument(
        "--wrk-threads",
        type=_positive_int,
        default=2,
        help="wrk's own threads (wrk -t)",
    )
    parser.add_argument(
        "--servers",
        type=_server_list,
        default=list(DEFAULT_SERVERS),
        help="comma-separated, in the order run within a round",
    )
    parser.add_argument(
        "--reference",
        default="aiogate",
        help="the server whose req/s is divided by each peer's",
    )
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="hello",
        help="which app of benchmarks/apps.py to serve",
    )
    parser.add_argument(
        "--base-tree",
        type=_source_tree,
        metavar="DIR",
        help="the checkout (e.g. a git worktree of main) that server aiogate-base "
        "runs, to compare aiogate with it within each round",
    )
    parser.add_argument(
        "--base-python",
        metavar="PATH",
        help="the interpreter of aiogate-base (default: this one)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="format the whole report as markdown"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also save the raw results (with wrk's output) here",
    )
    args = parser.parse_args(argv)
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    if "aiogate-base" in args.servers and args.base_tree is None:
        parser.error("--servers aiogate-base needs --base-tree")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk not found on PATH; install it: apt-get install -y wrk", file=sys.stderr
        )
        return 2
    if "h11-ceiling" in args.servers and args.workload not in CEILING_WORKLOADS:
        print(
            f"# h11-ceiling answers a fixed hello response: left out of "
            f"--workload {args.workload}",
            file=sys.stderr,
        )
        args.servers = [name for name in args.servers if name != "h11-ceiling"]
    reference = args.reference if args.reference in args.servers else None
    machine = machine_info(args.base_tree)
    print(f"# {settings_line(args)}", file=sys.stderr)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="aiogate-bench-") as tmp:
        for round_number in range(1, args.rounds + 1):
            for server in args.servers:
                if runs:
                    time.sleep(COOLDOWN_SECONDS)
                run = run_one(server, round_number, args, Path(tmp))
                runs.append(run)
                print(progress_line(run, args.rounds), file=sys.stderr, flush=True)
    machine["load average at end"] = _load_average()
    summaries = summarize(runs, args.servers, reference, args.rounds)
    print(render_report(args, machine, runs, summaries, reference))
    if args.json is not None:
        raw = {
            # The paths (--json, --base-tree) as strings.
            "settings": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
            },
            "warmup_seconds": WARMUP_SECONDS,
            "machine": machine,
            "runs": [asdict(run) for run in runs],
            "summary": [asdict(s) for s in summaries],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"raw results saved to {args.json}", file=sys.stderr)
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
