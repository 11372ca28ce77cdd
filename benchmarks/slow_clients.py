"""Slow and idle clients: do normal clients still get served, and how much memory?

The acceptance figure of the slow-client limits: with 500 slowloris connections
(trickling a request head, a byte a second) and 1,000 idle connections held open, a
normal client's p99 latency stays within 3x of an unloaded run, none of its requests
fail, and the server's memory stays bounded.

Three processes, so none starves another's event loop: the server (``aiogate serve
benchmarks.apps:hello``, default limits), the attacker (this script with
``--attacker``: it keeps ``--idle`` connections open and ``--slowloris`` connections
trickling, reopening each one the server closes, as a real attacker would: aiogate
closes idle connections after ``--timeout-keep-alive`` and answers a head that takes
longer than ``--timeout-request-header`` with 408) and the measuring client (this
process): ``--rate`` requests a second, paced, over 8 keep-alive connections, each
request timed. A paced client, not wrk: wrk measures how fast the server can go,
while this asks how a steady, moderate load is treated while the attack runs.

Rounds alternate a baseline (no attacker) and an attack phase; the report gives each
phase's p50/p99, the p99 ratio within each round and its median, the server's RSS
(sampled from /proc) and the attacker's counts. Loopback only; every phase is
bounded and the attacker stops by itself.

Run: ``python benchmarks/slow_clients.py [--rounds 3] [--duration 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from benchmarks.run import (
    REPO_ROOT,
    free_port,
    server_command,
    server_env,
    stop,
    wait_until_ready,
)

CONNECT_TIMEOUT = 5.0
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


# -- the attacker (a process of its own) ------------------------------------------


@dataclass
class AttackStats:
    opened: int = 0
    closed_by_server: int = 0
    got_408: int = 0
    open_samples: list[int] = field(default_factory=list)


ConnectionHandler = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, AttackStats, float], Awaitable[None]
]


async def _keep_connecting(
    port: int,
    stats: AttackStats,
    stop_at: float,
    open_now: list[int],
    behave: ConnectionHandler,
) -> None:
    """One attacking client: connect, ``behave`` until the server closes, repeat."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
            continue
        stats.opened += 1
        open_now[0] += 1
        try:
            await behave(reader, writer, stats, stop_at)
        except OSError:
            stats.closed_by_server += 1
        finally:
            open_now[0] -= 1
            writer.close()


async def _idle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stats: AttackStats,
    stop_at: float,
) -> None:
    """Send nothing; wait for the server to close (after its keep-alive timeout)."""
    remaining = max(0.1, stop_at - asyncio.get_running_loop().time())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), remaining)
        stats.closed_by_server += 1


async def _slowloris(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stats: AttackStats,
    stop_at: float,
) -> None:
    """Trickle a request head a byte a second, never ending it."""
    loop = asyncio.get_running_loop()
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
    answer = asyncio.ensure_future(reader.read(64))
    while loop.time() < stop_at and not answer.done():
        writer.write(b"a")
        await asyncio.wait([answer], timeout=1.0)
    if not answer.done():
        answer.cancel()
        return
    data = b"" if answer.exception() else answer.result()
    stats.closed_by_server += 1
    if data.startswith(b"HTTP/1.1 408"):
        stats.got_408 += 1


async def _attack(port: int, idle: int, slowloris: int, duration: float) -> AttackStats:
    loop = asyncio.get_running_loop()
    stats = AttackStats()
    stop_at = loop.time() + duration
    open_now = [0]
    tasks = [
        asyncio.create_task(_keep_connecting(port, stats, stop_at, open_now, behave))
        for behave, count in ((_idle, idle), (_slowloris, slowloris))
        for _ in range(count)
    ]
    ready_reported = False
    while loop.time() < stop_at:
        await asyncio.sleep(0.5)
        stats.open_samples.append(open_now[0])
        if not ready_reported and open_now[0] >= 0.95 * (idle + slowloris):
            print("ready", flush=True)
            ready_reported = True
    if not ready_reported:
        print("ready", flush=True)  # let the measurement go on; the counts tell
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def attacker_main(port: int, idle: int, slowloris: int, duration: float) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, idle + slowloris + 256)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    stats = asyncio.run(_attack(port, idle, slowloris, duration))
    print(json.dumps(asdict(stats)), flush=True)
    return 0


# -- the measuring client ------------------------------------------------------------


async def _one_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:40])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)


async def _measure(port: int, rate: float, duration: float) -> tuple[list[float], int]:
    """Paced requests: latencies in seconds, and the count of failed requests."""
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.Queue()
    )
    for _ in range(8):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        reader, writer = await pool.get()
        started = loop.time()
        try:
            await asyncio.wait_for(_one_request(reader, writer), 10.0)
            latencies.append(loop.time() - started)
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            failures += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        pool.put_nowait((reader, writer))

    tasks = []
    start = loop.time()
    count = int(rate * duration)
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies, failures


# -- phases and report ---------------------------------------------------------------


@dataclass
class Phase:
    name: str
    round: int
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int
    rss_max_kib: int
    attack: dict[str, object] | None = None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _sample_rss(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(_rss_kib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def _phase(
    port: int, pid: int, rate: float, duration: float
) -> tuple[list[float], int, int]:
    samples: list[int] = []
    done = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, samples, done))
    latencies, failures = await _measure(port, rate, duration)
    done.set()
    await sampler
    return latencies, failures, max(samples, default=0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0
    )


def run_phase(
    name: str, index: int, port: int, pid: int, args: argparse.Namespace
) -> Phase:
    attacker = None
    if name == "attack":
        attacker = subprocess.Popen(
            [
                sys.executable, str(Path(__file__).resolve()), "--attacker", str(port),
                "--idle", str(args.idle), "--slowloris", str(args.slowloris),
                "--duration", str(args.duration + 8),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert attacker.stdout is not None
        ready = attacker.stdout.readline()  # bounded by the attacker's own duration
        if ready.strip() != "ready":
            raise RuntimeError(f"attacker did not start: {ready!r}")
    latencies, failures, rss = asyncio.run(_phase(port, pid, args.rate, args.duration))
    attack = None
    if attacker is not None:
        out, _ = attacker.communicate(timeout=args.duration + 60)
        attack = json.loads(out.strip().splitlines()[-1])
        samples = attack.pop("open_samples") or [0]
        attack["open_mean"] = round(statistics.mean(samples))
    return Phase(
        name, index, _percentile(latencies, 0.5), _percentile(latencies, 0.99),
        len(latencies), failures, rss, attack,
    )  # fmt: skip


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    lines = [
        f"Paced client: {args.rate:g} req/s for {args.duration:g} s over 8 keep-alive "
        f"connections; attack: {args.idle} idle + {args.slowloris} slowloris "
        f"connections; aiogate --threads {args.threads}, default limits.",
        "",
        "| round | phase | p50 ms | p99 ms | requests | failed | server RSS max MiB "
        "| attack conns open (mean) | 408s to slowloris |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        attack = p.attack or {}
        lines.append(
            f"| {p.round} | {p.name} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.requests} "
            f"| {p.failures} | {p.rss_max_kib / 1024:.1f} "
            f"| {attack.get('open_mean', '')} | {attack.get('got_408', '')} |"
        )
    ratios = []
    for index in range(1, args.rounds + 1):
        base = [p for p in phases if p.round == index and p.name == "baseline"]
        attack = [p for p in phases if p.round == index and p.name == "attack"]
        if base and attack and base[0].p99_ms:
            ratios.append(attack[0].p99_ms / base[0].p99_ms)
    failures = sum(p.failures for p in phases)
    median = statistics.median(ratios) if ratios else float("nan")
    verdict = "PASS" if median <= 3 and failures == 0 else "FAIL"
    lines += [
        "",
        f"p99 under attack / p99 unloaded, per round: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; median {median:.2f}",
        f"Verdict: {verdict} (p99 ratio <= 3 and no failed request; failed: {failures})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slowloris", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--attacker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attacker is not None:
        return attacker_main(args.attacker, args.idle, args.slowloris, args.duration)
    if args.rounds < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--rounds, --duration and --rate must be positive")
    port = free_port()
    server = subprocess.Popen(
        server_command("aiogate", "benchmarks.apps:hello", port, args.threads),
        cwd=REPO_ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    phases: list[Phase] = []
    try:
        wait_until_ready(server, port)
        for index in range(1, args.rounds + 1):
            for name in ("baseline", "attack"):
                phase = run_phase(name, index, port, server.pid, args)
                phases.append(phase)
                print(
                    f"round {index} {name}: p99 {phase.p99_ms:.2f} ms, "
                    f"{phase.failures} failed",
                    file=sys.stderr,
                )
    except Exception as exc:  # report what ran, then fail
        print(f"run failed: {exc!r}", file=sys.stderr)
        return 1
    finally:
        stop(server)
    text = report(phases, args)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(p) for p in phases], indent=2))
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
