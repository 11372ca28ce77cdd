"""The whole performance suite in one command: every workload, every peer, one table.

    python benchmarks/suite.py --install          # install the peers, then run it all
    python benchmarks/suite.py --update-readme    # ... and rewrite README's table

For each workload of ``run.py`` (hello, a 1 MiB response, a 64 KiB POST, a 10 ms
sleep, a Flask JSON endpoint, a paced 1,000 requests a second), it runs aiogate and
the peers (waitress, gunicorn gthread, uvicorn with a2wsgi, granian) with the same
app, one process and the same thread count, interleaved within each round, exactly as
``run.py`` does, and adds the bare h11 server (``h11_ceiling.py``) where a fixed
response stands in for the app (hello, paced), and aiogate with two workers for hello.
It prints one markdown report: the machine and versions, a table per workload, and
the issue's targets, each with the figure measured and whether it is met. Ratios are
taken within a round, then the median over rounds, so the noise of a shared machine
hits every server alike.

Exit status: 0 when every run succeeded (whatever the targets say), 1 when a run
failed, 2 on bad usage or a missing ``wrk``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run as bench
from benchmarks.apps import SLEEP_SECONDS

PEERS = ("waitress", "gunicorn", "uvicorn", "granian")
#: The command each peer is started with, looked for beside this interpreter.
PEER_EXECUTABLES = {
    "waitress": "waitress-serve",
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "granian": "granian",
}
#: What each workload runs, beyond aiogate and the peers.
EXTRA_SERVERS = {"hello": ("h11-ceiling", "aiogate-2w"), "paced": ("h11-ceiling",)}
SUITE_WORKLOADS = ("hello", "big", "post", "sleep", "flask", "paced")
PURE_PYTHON_PEERS = ("waitress", "gunicorn", "uvicorn")
MEMORY_GOAL_MIB = 40.0
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
README = bench.REPO_ROOT / "README.md"
START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"
LABELS = {
    "gunicorn": "gunicorn gthread",
    "uvicorn": "uvicorn + a2wsgi",
    "granian": "granian (Rust)",
    "aiogate-2w": "aiogate, 2 workers",
    "h11-ceiling": "bare h11 (ceiling)",
}


@dataclass
class Target:
    """One of the issue's criteria, with what was measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured (a run failed or a server is missing)


_rps = bench.requests_per_second


def _p99(run: bench.Run) -> float:
    assert run.result is not None
    return run.result.p99_ms


def _spread(values: Sequence[float]) -> str:
    return (
        f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
        if values
        else "n/a"
    )


def targets(results: dict[str, list[bench.Run]], threads: int) -> list[Target]:
    """The issue's criteria, checked on the medians of per-round ratios."""
    found: list[Target] = []

    def ratio_target(
        workload: str, bottom: str, goal: float, name: str, value=_rps
    ) -> None:
        ratios = bench.round_ratios(results.get(workload, []), "aiogate", bottom, value)
        met = statistics.median(ratios) >= goal if ratios else None
        found.append(Target(name, f">= {goal:g}", _spread(ratios), met))

    for peer in ("gunicorn", "waitress"):
        ratio_target("hello", peer, 1.6, f"hello: aiogate ÷ {LABELS.get(peer, peer)}")
    ratio_target("hello", "h11-ceiling", 0.85, "hello: aiogate ÷ bare h11 ceiling")
    for workload, title in (("big", "1 MiB response"), ("post", "64 KiB POST")):
        for peer in ("gunicorn", "waitress"):
            ratio_target(workload, peer, 1.3, f"{title}: aiogate ÷ {peer}")
    ideal = threads / SLEEP_SECONDS
    sleep_rps = [
        _rps(r) for r in results.get("sleep", []) if r.ok and r.server == "aiogate"
    ]
    if sleep_rps:
        share = statistics.median(sleep_rps) / ideal
        found.append(
            Target(
                f"sleep 10 ms: aiogate ÷ ideal ({ideal:.0f} req/s with {threads} threads)",
                ">= 0.95",
                f"{share:.3f}",
                share >= 0.95,
            )
        )
    else:
        found.append(Target("sleep 10 ms: aiogate ÷ ideal", ">= 0.95", "n/a", None))
    for peer in PURE_PYTHON_PEERS:
        ratio_target(
            "flask", peer, 1.0, f"Flask JSON: aiogate ÷ {LABELS.get(peer, peer)}"
        )
    # Paced: gunicorn's p99 over ours, so that >= 1 means "no worse".
    ratios = bench.round_ratios(results.get("paced", []), "gunicorn", "aiogate", _p99)
    found.append(
        Target(
            "paced 1,000 req/s: gunicorn p99 ÷ aiogate p99",
            ">= 1",
            _spread(ratios),
            statistics.median(ratios) >= 1.0 if ratios else None,
        )
    )
    peaks = [
        r.peak_rss_kib / 1024
        for runs in results.values()
        for r in runs
        if r.server == "aiogate" and r.peak_rss_kib
    ]
    found.append(
        Target(
            "peak RSS of one aiogate process, any workload",
            f"< {MEMORY_GOAL_MIB:g} MiB",
            f"{max(peaks):.1f} MiB" if peaks else "n/a",
            max(peaks) < MEMORY_GOAL_MIB if peaks else None,
        )
    )
    return found


def targets_table(found: Sequence[Target]) -> str:
    verdicts = {True: "met", False: "**not met**", None: "not measured"}
    return bench._markdown_table(
        ["target", "goal", "measured: median (min-max) over rounds", "verdict"],
        [[t.name, t.goal, t.measured, verdicts[t.met]] for t in found],
    )


def workload_table(
    workload: str, runs: Sequence[bench.Run], servers: Sequence[str]
) -> str:
    """req/s, latency and memory per server, and aiogate's ratio to each."""
    header = [
        "server", "req/s (median)", "min-max", "p50", "p99", "peak RSS MiB",
        "aiogate ÷ server",
    ]  # fmt: skip
    rows = []
    for server in servers:
        mine = [r for r in runs if r.server == server]
        ok = [r for r in mine if r.result is not None]
        if not ok:
            rows.append([LABELS.get(server, server), "FAILED", "", "", "", "", ""])
            continue
        rps = [_rps(r) for r in ok]
        peaks = [r.peak_rss_kib for r in mine if r.peak_rss_kib]
        ratios = (
            bench.round_ratios(runs, server, "aiogate", _p99)
            if workload == "paced"
            else bench.round_ratios(runs, "aiogate", server)
        )
        rows.append(
            [
                LABELS.get(server, server),
                f"{statistics.median(rps):.0f}",
                f"{min(rps):.0f}-{max(rps):.0f}",
                bench._ms(statistics.median(r.result.p50_ms for r in ok if r.result)),
                bench._ms(statistics.median(r.result.p99_ms for r in ok if r.result)),
                f"{max(peaks) / 1024:.1f}" if peaks else "n/a",
                "" if server == "aiogate" else _spread(ratios),
            ]
        )
    return bench._markdown_table(header, rows)


WORKLOAD_TITLES = {
    "hello": "hello world (14-byte response)",
    "big": "1 MiB response",
    "post": "64 KiB POST, read from wsgi.input",
    "sleep": "the app sleeps 10 ms (thread-pool concurrency)",
    "flask": "Flask, a small JSON endpoint",
    "paced": "paced: 1,000 GET/s over 16 connections (latency at a moderate rate; "
    "the last column is the server's p99 ÷ aiogate's)",
    "upload": "1 MiB POST",
}


def render(
    args: argparse.Namespace,
    machine: dict[str, str],
    results: dict[str, list[bench.Run]],
    servers_of: dict[str, list[str]],
    found: Sequence[Target],
) -> str:
    versions = ", ".join(
        f"{name} {machine[name].split(' ')[0]}"
        for name in bench.VERSIONED_PACKAGES
        if name in machine and not machine[name].startswith("not installed")
    )
    lines = [
        f"Measured with `python benchmarks/suite.py --rounds {args.rounds} "
        f"--duration {args.duration}` on {time.strftime('%Y-%m-%d')}: one process and "
        f"{args.threads} app threads for every server, {args.connections} keep-alive "
        "connections from wrk on loopback (except *paced*), servers interleaved within "
        "each round; medians of the rounds, ratios taken within a round. Machine: "
        f"{machine.get('cpus (nproc)')} CPUs ({machine.get('cpu model')}), "
        f"{machine.get('kernel')}, {machine.get('python')}; {versions}; "
        f"{machine.get('wrk', 'wrk')}. Load average at the start: "
        f"{machine.get('load average at start')}. A shared machine: absolute numbers "
        "move by up to 30 % between runs, the ratios much less.",
        "",
        "**Targets** (issue 7):",
        "",
        targets_table(found),
    ]
    for workload, runs in results.items():
        lines += [
            "",
            f"**{WORKLOAD_TITLES.get(workload, workload)}**",
            "",
            workload_table(workload, runs, servers_of[workload]),
        ]
    failures = [run for runs in results.values() for run in runs if not run.ok]
    if failures:
        lines += ["", "**Failed runs**", ""]
        lines += [f"- {r.server}, round {r.round}: {r.error}" for r in failures]
    return "\n".join(lines)


def update_readme(text: str, readme_path: Path = README) -> None:
    """Replace what is between the perf-table markers of the README with ``text``."""
    readme = readme_path.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} block to replace")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    readme_path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def install() -> int:
    """Install the peers (and Flask) into this interpreter's environment."""
    command = [sys.executable, "-m", "pip", "install", "-r", str(REQUIREMENTS)]
    print("# " + " ".join(command), file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run every workload against aiogate and the peers; one report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--install", action="store_true", help="pip install the peers first"
    )
    parser.add_argument("--rounds", type=bench._positive_int, default=3)
    parser.add_argument(
        "--duration", type=bench._positive_int, default=5, help="seconds per run"
    )
    parser.add_argument("--threads", type=bench._positive_int, default=8)
    parser.add_argument("--connections", type=bench._positive_int, default=64)
    parser.add_argument(
        "--workloads",
        type=lambda text: [w for w in text.split(",") if w],
        default=list(SUITE_WORKLOADS),
        help="comma-separated, from " + ",".join(bench.WORKLOADS),
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help=f"replace README.md's {START} block with the report",
    )
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in bench.WORKLOADS]
    if unknown or not args.workloads:
        parser.error(f"--workloads: choose from {','.join(bench.WORKLOADS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install and install() != 0:
        print("installing the peers failed", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print(
            "wrk not found on PATH; install it: apt-get install -y wrk", file=sys.stderr
        )
        return 2
    missing = [
        peer
        for peer, executable in PEER_EXECUTABLES.items()
        if shutil.which(executable, path=str(bench.BIN_DIR)) is None
    ]
    if missing:
        print(
            f"not installed beside {sys.executable}: {', '.join(missing)}; "
            "run with --install",
            file=sys.stderr,
        )
        return 2
    machine = bench.machine_info()
    results: dict[str, list[bench.Run]] = {}
    servers_of: dict[str, list[str]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aiogate-suite-") as tmp:
        for workload in args.workloads:
            servers = ["aiogate", *PEERS, *EXTRA_SERVERS.get(workload, ())]
            servers_of[workload] = servers
            run_args = bench.parse_args(
                [
                    "--workload", workload, "--rounds", str(args.rounds),
                    "--duration", str(args.duration), "--threads", str(args.threads),
                    "--connections", str(args.connections),
                    "--servers", ",".join(servers),
                ]
            )  # fmt: skip
            print(f"# {bench.settings_line(run_args)}", file=sys.stderr)
            runs = results.setdefault(workload, [])
            for number in range(1, args.rounds + 1):
                for server in servers:
                    time.sleep(bench.COOLDOWN_SECONDS)
                    run = bench.run_one(server, number, run_args, Path(tmp))
                    runs.append(run)
                    print(
                        bench.progress_line(run, args.rounds),
                        file=sys.stderr,
                        flush=True,
                    )
    machine["load average at end"] = bench._load_average()
    report = render(args, machine, results, servers_of, targets(results, args.threads))
    print(report)
    if args.update_readme:
        update_readme(report)
        print(
            f"README.md updated ({time.monotonic() - started:.0f} s)", file=sys.stderr
        )
    return 0 if all(r.ok for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
