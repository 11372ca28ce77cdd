"""Slow and idle clients: are normal clients still served, and how much memory?

The acceptance figure of the slow-client limits (issue 4): with 500 slowloris
connections (trickling a request head) and 1,000 idle connections held open, a normal
client's p99 latency stays within 3x of an unloaded run, none of its requests fail,
and the server's memory stays under a documented bound.

Three processes, so that none starves another's event loop:

- the server: ``python -m aiogate serve benchmarks.apps:hello --threads 16`` with
  every limit at its default (``--limit-connections 2048``,
  ``--timeout-keep-alive 5``, ``--timeout-request-header 10``), started with the
  helpers of ``benchmarks/run.py``. One server serves every round, so memory the
  attack leaves behind shows in the following baseline.
- the attacker: this module with ``--attacker PORT``, its own asyncio loop. It keeps
  ``--idle`` connections open that send nothing, and ``--slowloris`` connections
  that send a request line, then trickle one header byte a second and never end the
  head. The server's protection is to close them: an idle connection after
  ``--timeout-keep-alive`` (5 s), a slowloris one with a 408 once its head has taken
  ``--timeout-request-header`` (10 s). A real attacker reconnects, so this one
  reopens every connection the server closes. It reports when its connections are
  established, counts them twice a second, and stops when told to (its stdin
  closes) or, at the latest, after a bounded time of its own.
- the measuring client, this process: a paced, open-loop client that sends
  ``--rate`` requests a second (200 by default) for ``--duration`` seconds over
  ``--connections`` keep-alive connections and times every request from the moment
  it is ready to go, so a request that waits for a free connection (all of them busy
  with slow answers) is charged for the wait: the schedule does not slow down when
  the server does (no coordinated omission).

Why a paced client rather than wrk: wrk (wrk 4, as packaged; only wrk2 has ``-R``)
sends as fast as the server answers, so its p99 is queueing at saturation, and on a
2-core machine that the attacker shares, it would measure how the cores are split
between three busy processes, not how a normal client is treated. The criterion is
about latency at a normal load: a fixed, moderate rate, identical in both phases,
gives p99s that can be divided. wrk is therefore not needed.

By default the attacker opens all its connections at once, so the server's closes, and
the reconnections, come in waves of up to 1,500 connections: the harsher case;
``--ramp S`` spreads the first connections evenly over S seconds instead. The
measurement starts 2 s after the attack is established, so that with the default 10 s
it spans the server closing the idle connections (twice) and answering the slowloris
ones with 408, and the attacker's reconnections.

Each round runs a baseline (no attacker) and then an attack phase; the report gives
each phase's latency percentiles, the ratio of the p99s within each round and its median, the
server's memory (VmRSS sampled from ``/proc`` every 0.2 s and VmHWM, the kernel's peak,
reset at the start of each phase), its open descriptors and CPU, and the attacker's
counts (connections open during the measurement, 408s received, its own CPU).

Loopback only; every phase is bounded in time, the attacker in connections and time.

Run: ``python benchmarks/slow_clients.py [--rounds 3] [--duration 10]``. Exit status
0 when every phase ran (whatever the verdict), 1 when one failed, 2 on bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.paced import CONNECT_TIMEOUT, Measurement, measure, percentile_ms
from benchmarks.run import (
    REPO_ROOT,
    RunFailed,
    free_port,
    machine_info,
    server_command,
    server_env,
    stop,
    wait_until_ready,
)

APP = "benchmarks.apps:hello"
# The slowloris head: a request line and the start of a header that never ends.
SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: "
TRICKLE_SECONDS = 1.0  # one header byte this often, per slowloris connection
RECONNECT_PAUSE = 0.5  # the attacker's pause after a failed connect
SAMPLE_SECONDS = 0.5  # the attacker counts its open connections this often
READY_FRACTION = 0.99  # the attack is established once this share is open
# Once it is, wait this long before measuring, so that with the default 10 s the
# measurement spans the server's closing waves: the idle connections' (5 s after they
# opened, and again 5 s later) and the slowloris 408s (10-10.5 s after they opened:
# the server checks deadlines every 0.5 s with the default timeouts), each followed by
# the attacker reconnecting.
ATTACK_SETTLE_SECONDS = 2.0
RAMP_TIMEOUT = 20.0  # seconds beyond --ramp the attacker may take to open them all
ATTACK_MARGIN = 30.0  # the attacker's own deadline beyond ramp + duration
DRAIN_TIMEOUT = 20.0  # seconds for the server to let go of the attack's connections
SERVER_SAMPLE_SECONDS = 0.2  # RSS and descriptors of the server, this often
PAUSE_SECONDS = 1.0  # between phases
LOG_TAIL_LINES = 10


# -- the attacker (a process of its own) ------------------------------------------


@dataclass
class AttackStats:
    """What the attacker saw; ``samples`` are (wall time, idle open, slow open)."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    ready_after: float | None = None
    cpu_seconds: float = 0.0
    seconds: float = 0.0


class Attack:
    """Idle and slowloris connections against one port, each reopened when closed."""

    def __init__(self, port: int, idle: int, slowloris: int, ramp: float) -> None:
        self.port = port
        self.ramp = ramp
        self.wanted = {"idle": idle, "slow": slowloris}
        self.open = {"idle": 0, "slow": 0}
        self.stats = AttackStats()
        self.stop = asyncio.Event()

    async def keep_connecting(self, kind: str, first_at: float) -> None:
        """One attacking client: connect, misbehave until closed, and again."""
        counts = self.stats.counts
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), first_at)
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                counts["connect_failed"] += 1
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            counts[f"{kind}_opened"] += 1
            self.open[kind] += 1
            try:
                answer = await (self.idle if kind == "idle" else self.slowloris)(
                    reader, writer
                )
            except OSError:
                answer = None  # reset, or a write to a closed connection
            finally:
                self.open[kind] -= 1
                writer.close()
            counts[f"{kind}_closed_{_answer_kind(answer)}"] += 1

    @staticmethod
    async def idle(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> bytes:
        """Send nothing; return what the server sent before closing (normally b"")."""
        answer = await reader.read(64)
        if answer:
            with contextlib.suppress(OSError):
                await reader.read()  # wait for the close after an answer
        return answer

    @staticmethod
    async def slowloris(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Send a request line, then a header byte a second; return the answer."""
        writer.write(SLOW_HEAD)
        answer = asyncio.ensure_future(reader.read(64))
        try:
            # Start at a random point of the second, so that the bytes of all the
            # slowloris connections are spread over it rather than sent in bursts.
            await asyncio.wait([answer], timeout=random.uniform(0, TRICKLE_SECONDS))
            while not answer.done():
                writer.write(b"a")
                await asyncio.wait([answer], timeout=TRICKLE_SECONDS)
            return answer.result()
        finally:
            answer.cancel()

    async def run(self, max_seconds: float) -> AttackStats:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max_seconds
        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            loop.add_reader(sys.stdin.fileno(), self._on_stdin)
        tasks = [
            asyncio.create_task(self.keep_connecting(kind, self.ramp * index / count))
            for kind, count in self.wanted.items()
            for index in range(count)
        ]
        total = sum(self.wanted.values())
        while not self.stop.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), SAMPLE_SECONDS)
            now_open = self.open["idle"] + self.open["slow"]
            self.stats.samples.append(
                (time.time(), self.open["idle"], self.open["slow"])
            )
            established = now_open >= READY_FRACTION * total
            if self.stats.ready_after is None and (
                established or loop.time() > started + self.ramp + RAMP_TIMEOUT
            ):
                self.stats.ready_after = loop.time() - started
                # The parent measures from here; if the connections could not all be
                # opened, the counts in the report say so.
                print(f"ready {now_open}", flush=True)
        self.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stats.seconds = loop.time() - started
        return self.stats

    def _on_stdin(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 1024)
        except OSError:
            data = b""
        if not data:  # the parent closed our stdin: stop
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            self.stop.set()


def _answer_kind(answer: bytes | None) -> str:
    if answer is None:
        return "reset"
    if not answer:
        return "silently"
    if answer.startswith(b"HTTP/1.1 "):
        return answer[9:12].decode("latin-1", "replace")  # "408", "503", ...
    return "other"


def attacker_main(
    port: int, idle: int, slowloris: int, ramp: float, max_seconds: float
) -> int:
    """The attacker process: attack, then print its stats as one JSON line."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = idle + slowloris + 256
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    stats = asyncio.run(Attack(port, idle, slowloris, ramp).run(max_seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.cpu_seconds = usage.ru_utime + usage.ru_stime
    # Not asdict(): it would rebuild the Counter from (key, value) pairs.
    raw = {**vars(stats), "counts": dict(stats.counts)}
    print(json.dumps(raw), flush=True)
    return 0


class Attacker:
    """The attacker process, seen from the parent."""

    def __init__(self, port: int, args: argparse.Namespace, log_dir: Path) -> None:
        self.ready_timeout = args.ramp + RAMP_TIMEOUT + 10
        max_seconds = args.ramp + RAMP_TIMEOUT + args.duration + ATTACK_MARGIN
        self.command = [
            sys.executable, "-m", "benchmarks.slow_clients", "--attacker", str(port),
            "--idle", str(args.idle), "--slowloris", str(args.slowloris),
            "--ramp", str(args.ramp), "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        self.log_path = log_dir / "attacker.log"
        self.lines: queue.Queue[str | None] = queue.Queue()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=server_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.max_seconds = max_seconds

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_ready(self) -> int:
        """Block until the attack is established; return its open connections."""
        try:
            line = self.lines.get(timeout=self.ready_timeout)
        except queue.Empty:
            line = None
        if line is None or not line.startswith("ready "):
            raise RunFailed(f"the attacker did not start: {line!r}{self._log_tail()}")
        return int(line.split()[1])

    def finish(self) -> dict[str, object]:
        """Tell the attacker to stop, and return its stats."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RunFailed("the attacker did not stop within 30 s") from None
        self.reader.join(timeout=5)
        last = None
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line:
                last = line
        if self.process.returncode != 0 or last is None:
            raise RunFailed(
                f"the attacker exited with code {self.process.returncode}"
                f"{self._log_tail()}"
            )
        return json.loads(last)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        try:
            tail = self.log_path.read_text().splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return ""
        return "".join(f"\n    | {line}" for line in tail)


# -- the server's resources ----------------------------------------------------------


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of a process; False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class ServerSampler(threading.Thread):
    """Samples the server's RSS and open descriptors until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, int]] = []  # (wall time, RSS KiB, fds)
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                rss = _status_kib(self.pid)["VmRSS"]
                self.samples.append((time.time(), rss, _open_fds(self.pid)))
            if self.done.wait(SERVER_SAMPLE_SECONDS):
                return

    def finish(self) -> None:
        self.done.set()
        self.join()


# -- phases --------------------------------------------------------------------------


@dataclass
class Phase:
    """One measurement: a baseline, or under attack."""

    round: int
    name: str  # "baseline" or "attack"
    error: str | None = None
    requests: int = 0
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    server_cpu_percent: float | None = None
    server_fds_mean: float | None = None  # during the measurement
    rss_start_kib: int | None = None
    rss_peak_kib: int | None = None  # the phase's peak: VmHWM (or the samples' max)
    rss_end_kib: int | None = None
    peak_from_hwm: bool = False
    # The attack phase only:
    attack_open_mean: float | None = None  # during the measurement
    attack_open_min: int | None = None
    attack_idle_mean: float | None = None
    attack_slow_mean: float | None = None
    attack_ready_after: float | None = None
    attack_counts: dict[str, int] = field(default_factory=dict)
    attacker_cpu_percent: float | None = None
    drain_seconds: float | None = None  # until the server closed the attack's fds

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def got_408(self) -> int:
        return self.attack_counts.get("slow_closed_408", 0)


def _within(samples: Sequence[Sequence[float]], start: float, end: float) -> list:
    return [s for s in samples if start <= s[0] <= end]


def _wait_drained(pid: int, idle_fds: int) -> float:
    """Wait until the server holds no more descriptors than when idle."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT:
        if _open_fds(pid) <= idle_fds:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RunFailed(
        f"the server still held {_open_fds(pid)} descriptors {DRAIN_TIMEOUT:.0f} s "
        f"after the attacker exited (idle: {idle_fds})"
    )


def run_phase(
    phase: Phase,
    server: subprocess.Popen[bytes],
    port: int,
    idle_fds: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> None:
    """Measure one phase into ``phase``; raise RunFailed when it cannot."""
    pid = server.pid
    phase.rss_start_kib = _status_kib(pid)["VmRSS"]
    phase.peak_from_hwm = _reset_peak(pid)
    sampler = ServerSampler(pid)
    sampler.start()
    attacker = None
    try:
        if phase.name == "attack":
            attacker = Attacker(port, args, log_dir)
            attacker.wait_ready()
            time.sleep(ATTACK_SETTLE_SECONDS)
        cpu_before = _cpu_seconds(pid)
        result = asyncio.run(measure(port, args.rate, args.duration, args.connections))
        cpu_after = _cpu_seconds(pid)
        if attacker is not None:
            stats = attacker.finish()
            attacker = None
            phase.drain_seconds = _wait_drained(pid, idle_fds)
            _record_attack(phase, stats, result)
    finally:
        if attacker is not None:
            attacker.kill()
        sampler.finish()
    if server.poll() is not None:
        raise RunFailed(f"the server exited with code {server.returncode}")
    status = _status_kib(pid)
    rss = [s[1] for s in sampler.samples]
    phase.rss_end_kib = status["VmRSS"]
    phase.rss_peak_kib = max(
        [*rss, status["VmRSS"]] + ([status["VmHWM"]] if phase.peak_from_hwm else [])
    )
    during = _within(sampler.samples, result.started, result.ended)
    if during:
        phase.server_fds_mean = statistics.mean(s[2] for s in during)
    phase.server_cpu_percent = (
        100 * (cpu_after - cpu_before) / max(1e-9, result.ended - result.started)
    )
    ordered = sorted(result.latencies)
    phase.requests = len(ordered) + sum(result.failures.values())
    phase.failures = sum(result.failures.values())
    phase.failure_kinds = dict(result.failures)
    phase.p50_ms = percentile_ms(ordered, 0.50)
    phase.p90_ms = percentile_ms(ordered, 0.90)
    phase.p99_ms = percentile_ms(ordered, 0.99)
    phase.max_ms = percentile_ms(ordered, 1.0)


def _record_attack(phase: Phase, stats: dict, result: Measurement) -> None:
    during = _within(stats["samples"], result.started, result.ended)
    if during:
        phase.attack_idle_mean = statistics.mean(s[1] for s in during)
        phase.attack_slow_mean = statistics.mean(s[2] for s in during)
        phase.attack_open_mean = phase.attack_idle_mean + phase.attack_slow_mean
        phase.attack_open_min = min(s[1] + s[2] for s in during)
    phase.attack_ready_after = stats["ready_after"]
    phase.attack_counts = dict(sorted(stats["counts"].items()))
    phase.attacker_cpu_percent = (
        100 * stats["cpu_seconds"] / max(1e-9, stats["seconds"])
    )


# -- report --------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def ratios(phases: Sequence[Phase], rounds: int) -> list[float]:
    """p99 under attack ÷ p99 of the baseline, for each round where both ran."""
    found = []
    for number in range(1, rounds + 1):
        pair = {p.name: p for p in phases if p.round == number and p.ok}
        base, attack = pair.get("baseline"), pair.get("attack")
        if base and attack and base.p99_ms and attack.p99_ms is not None:
            found.append(attack.p99_ms / base.p99_ms)
    return found


def _spread(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "n/a"
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def verdict(phases: Sequence[Phase], rounds: int) -> tuple[str, str]:
    """("PASS" or "FAIL", the one-line verdict)."""
    found = ratios(phases, rounds)
    failures = sum(p.failures for p in phases)
    median = statistics.median(found) if found else math.inf
    passed = bool(found) and median <= 3 and failures == 0
    word = "PASS" if passed else "FAIL"
    worst = f", worst round {max(found):.2f}" if found else ""
    line = (
        f"Verdict: {word}: median p99 ratio {median:.2f} (goal <= 3{worst}); "
        f"{failures} failed request(s) of the normal client (goal 0)"
    )
    return word, line


def report(
    phases: Sequence[Phase], args: argparse.Namespace, machine: dict[str, str]
) -> str:
    lines = ["### Machine"]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += [
        "",
        "### Settings",
        f"- server: aiogate serve {APP} --threads {args.threads}, 1 process, default "
        "limits (limit-connections 2048, timeout-keep-alive 5 s, "
        "timeout-request-header 10 s)",
        f"- normal client: {args.rate:g} req/s for {args.duration:g} s, paced, over "
        f"{args.connections} keep-alive connections; latency includes any wait for "
        "a free connection",
        f"- attacker: {args.idle} idle + {args.slowloris} slowloris connections "
        f"(a header byte every {TRICKLE_SECONDS:g} s), each reopened when the server "
        "closes it; "
        + (
            f"first opened evenly over {args.ramp:g} s"
            if args.ramp
            else "all first opened at once"
        ),
        f"- {args.rounds} round(s) of baseline then attack, one server throughout",
        "- CPUs: "
        + (
            f"the server on CPU {args.cpus[0]}, the attacker and the client on "
            + ", ".join(map(str, args.cpus[1:]))
            if args.cpus
            else "not pinned: the server, the attacker and the client share them"
        ),
        "",
        "### Per phase",
    ]
    header = [
        "round", "phase", "p50 ms", "p99 ms", "max ms", "requests", "failed",
        "server CPU %", "server fds (mean)", "attack conns open (mean, min)",
        "408s to slowloris", "RSS start MiB", "RSS peak MiB", "RSS end MiB",
    ]  # fmt: skip
    rows = []
    for p in phases:
        if not p.ok:
            first_line = (p.error or "").splitlines()[0]
            rows.append([str(p.round), p.name, f"FAILED: {first_line}", *[""] * 11])
            continue
        attack = p.name == "attack"
        rows.append(
            [
                str(p.round),
                p.name,
                _fmt(p.p50_ms),
                _fmt(p.p99_ms),
                _fmt(p.max_ms),
                str(p.requests),
                str(p.failures)
                + (f" ({dict(p.failure_kinds)})" if p.failure_kinds else ""),
                _fmt(p.server_cpu_percent, 0),
                _fmt(p.server_fds_mean, 0),
                f"{_fmt(p.attack_open_mean, 0)}, {p.attack_open_min}" if attack else "",
                str(p.got_408) if attack else "",
                _mib(p.rss_start_kib),
                _mib(p.rss_peak_kib),
                _mib(p.rss_end_kib),
            ]
        )
    lines += _table(header, rows)

    lines += ["", "### Summary"]
    rows = []
    for name in ("baseline", "attack"):
        done = [p for p in phases if p.name == name and p.ok]
        rows.append(
            [
                name,
                f"{len(done)}/{args.rounds}",
                _spread([p.p50_ms for p in done if p.p50_ms is not None]),
                _spread([p.p99_ms for p in done if p.p99_ms is not None]),
                str(sum(p.failures for p in done)),
                _mib(max((p.rss_peak_kib or 0 for p in done), default=None)),
            ]
        )
    lines += _table(
        ["phase", "ok", "p50 ms, median (min-max)", "p99 ms, median (min-max)",
         "failed", "RSS peak MiB (max)"],
        rows,
    )  # fmt: skip
    found = ratios(phases, args.rounds)
    attacks = [p for p in phases if p.name == "attack" and p.ok]
    lines += [
        "",
        "p99 under attack ÷ p99 of the baseline, per round: "
        + (", ".join(f"{r:.2f}" for r in found) or "n/a")
        + f"; median {_spread(found)}",
    ]
    if attacks:
        opened = [p.attack_open_mean for p in attacks if p.attack_open_mean is not None]
        lines.append(
            "Attack connections open during the measurement: mean "
            + _spread(opened, 0)
            + f" of {args.idle + args.slowloris}; 408s to slowloris per attack phase: "
            + ", ".join(str(p.got_408) for p in attacks)
            + "; attacker CPU, % of a core: "
            + ", ".join(_fmt(p.attacker_cpu_percent, 0) for p in attacks)
            + "; attacker counts: "
            + "; ".join(
                ", ".join(f"{k} {v}" for k, v in p.attack_counts.items())
                for p in attacks
            )
        )
        first_base = next(
            (p for p in phases if p.name == "baseline" and p.ok and p.round == 1), None
        )
        peak = max(p.rss_peak_kib or 0 for p in attacks)
        if first_base is not None and first_base.rss_peak_kib and opened:
            per_conn = (peak - first_base.rss_peak_kib) / max(opened)
            lines.append(
                f"Server memory: peak {_mib(peak)} MiB under attack, against "
                f"{_mib(first_base.rss_peak_kib)} MiB in the first (unattacked) "
                f"baseline: about {per_conn:.1f} KiB per attacking connection"
            )
    failed = [p for p in phases if not p.ok]
    if failed:
        lines += ["", "### Failures"]
        for p in failed:
            lines += [f"- round {p.round}, {p.name}:", "```", p.error or "", "```"]
    lines += ["", verdict(phases, args.rounds)[1]]
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be 0-10000, not {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=_positive(int), default=3, help="rounds")
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=10.0,
        help="seconds of measurement per phase",
    )
    parser.add_argument(
        "--idle", type=_count, default=1000, help="idle attacking connections"
    )
    parser.add_argument(
        "--slowloris", type=_count, default=500, help="slowloris connections"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="open the attack's connections evenly over this many seconds "
        "(0: all at once, so that the server closes them in waves: the harsher case)",
    )
    parser.add_argument(
        "--rate",
        type=_positive(float),
        default=200.0,
        help="requests a second of the normal client",
    )
    parser.add_argument(
        "--connections",
        type=_positive(int),
        default=8,
        help="keep-alive connections of the normal client",
    )
    parser.add_argument(
        "--threads", type=_positive(int), default=16, help="app threads of aiogate"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the server on one CPU and the attacker and the measuring client on "
        "the others (when there are at least two), as if they were other machines",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also save the results here"
    )
    # The attacker process (internal).
    parser.add_argument("--attacker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.ramp < 0:
        parser.error("--ramp must not be negative")
    if args.idle + args.slowloris >= 2048 - args.connections:
        parser.error("--idle plus --slowloris must stay below --limit-connections")
    return args


def _machine() -> dict[str, str]:
    info = machine_info()
    keep = ("cpus (nproc)", "cpu model", "kernel", "python", "aiogate", "h11", "uvloop")
    machine = {key: info[key] for key in keep if key in info}
    machine["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    machine["load average at start"] = info.get("load average at start", "unknown")
    return machine


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
    if args.attacker is not None:
        return attacker_main(
            args.attacker, args.idle, args.slowloris, args.ramp, args.max_seconds
        )
    machine = _machine()
    port = free_port()
    # On a real deployment the attacker and the clients are other machines; here
    # they share two cores with the server, and unpinned, the p99 ratio also
    # measures how the scheduler splits a core between the server and the attack
    # it is answering. Pinned, each side has its own.
    allowed = (
        sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    )
    args.cpus = allowed if args.pin and len(allowed) >= 2 else []
    phases: list[Phase] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aiogate-slow-") as tmp:
        log_dir = Path(tmp)
        server_log = (log_dir / "server.log").open("w")
        server = subprocess.Popen(
            server_command("aiogate", APP, port, args.threads),
            cwd=REPO_ROOT,
            env=server_env(),
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(
                (lambda: os.sched_setaffinity(0, args.cpus[:1])) if args.cpus else None
            ),
        )
        if args.cpus:  # this process, its client and the attacker it starts
            os.sched_setaffinity(0, args.cpus[1:])
        try:
            wait_until_ready(server, port)
            time.sleep(PAUSE_SECONDS)  # the readiness probe's connection is gone
            idle_fds = _open_fds(server.pid)
            for number in range(1, args.rounds + 1):
                for name in ("baseline", "attack"):
                    if phases:
                        time.sleep(PAUSE_SECONDS)
                    phase = Phase(number, name)
                    phases.append(phase)
                    try:
                        run_phase(phase, server, port, idle_fds, args, log_dir)
                    except Exception as exc:  # reported; the exit status is 1
                        phase.error = (
                            str(exc) if isinstance(exc, RunFailed) else repr(exc)
                        )
                        if server.poll() is not None:
                            phase.error = (
                                f"the server exited with code {server.returncode} "
                                f"({phase.error})"
                            )
                    print(_progress(phase, args.rounds), file=sys.stderr, flush=True)
                    if server.poll() is not None:
                        break
                if server.poll() is not None:
                    break
        except RunFailed as exc:
            print(f"the server did not start: {exc}", file=sys.stderr)
            phases.append(Phase(0, "start", error=str(exc)))
        finally:
            note = stop(server)
            server_log.close()
            log = (log_dir / "server.log").read_text().splitlines()
        if note:
            print(f"server: {note}", file=sys.stderr)
        if log:
            print(f"server log ({len(log)} lines), last lines:", file=sys.stderr)
            for line in log[-LOG_TAIL_LINES:]:
                print(f"    | {line}", file=sys.stderr)
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(report(phases, args, machine))
    if args.json is not None:
        raw = {
            "settings": {**vars(args), "json": str(args.json)},
            "machine": machine,
            "phases": [asdict(p) for p in phases],
            "p99_ratios": ratios(phases, args.rounds),
            "verdict": verdict(phases, args.rounds)[0],
            "server_log": log,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"results saved to {args.json}", file=sys.stderr)
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0 if phases and all(p.ok for p in phases) else 1


def _progress(phase: Phase, rounds: int) -> str:
    head = f"round {phase.round}/{rounds} {phase.name:<8}"
    if not phase.ok:
        return f"{head} FAILED: {phase.error}"
    text = (
        f"{head} p50 {_fmt(phase.p50_ms)} ms  p99 {_fmt(phase.p99_ms)} ms  "
        f"failed {phase.failures}  RSS peak {_mib(phase.rss_peak_kib)} MiB"
    )
    if phase.name == "attack":
        text += (
            f"  attack open {_fmt(phase.attack_open_mean, 0)} "
            f"(ready after {_fmt(phase.attack_ready_after, 1)} s)  "
            f"408s {phase.got_408}  drained in {_fmt(phase.drain_seconds, 1)} s"
        )
    return text


if __name__ == "__main__":
    sys.exit(main())
