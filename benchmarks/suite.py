"""The whole performance suite in one command: every workload, every peer, one table.

    python benchmarks/suite.py --install          # install the peers, then run it all
    python benchmarks/suite.py --update-readme    # ... and rewrite README's table

For each workload of ``run.py`` (hello, a 1 MiB response, a 64 KiB POST, the same
POST chunked in 1 KiB chunks, a 10 ms sleep, a Flask JSON endpoint, a paced 1,000
requests a second, a 1 MiB and a 100 MiB file through ``wsgi.file_wrapper``), it runs
aiogate and the peers (waitress, gunicorn gthread, uvicorn with a2wsgi, granian) with
the same app, one process and the same thread count, exactly as ``run.py`` does (the
100 MiB file over 8 connections, not 64), and adds the bare h11 server (``h11_ceiling.py``)
where a fixed response stands in for the app (hello, paced), and aiogate with two
workers for hello. Each round runs every workload's servers once, one after the
other. It prints one markdown report: the machine and versions, a table per workload
(req/s, the server's CPU µs per request, latency, memory), and the targets of issues
7, 12 and 13, each with the figure measured and whether it is met. Ratios are taken
within a round, then the median over rounds, so the noise of a shared machine hits
every server alike.

Issue 12's "no workload slower by more than 3 %": ``--base-tree DIR`` runs aiogate
from another checkout beside this one in every round (same-run ratios), and
``--baseline FILE`` compares with a run saved by ``--json``.

Exit status: 0 when every run succeeded (whatever the targets say), 1 when a run
failed, 2 on bad usage or a missing ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

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
SUITE_WORKLOADS = (
    "hello", "big", "post", "chunked", "sleep", "flask", "paced", "file", "bigfile",
)  # fmt: skip
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
    "aiogate-base": "aiogate (base tree)",
}


#: Issue 12: no workload of aiogate slower than the baseline by more than 3 %.
NOT_SLOWER = 0.97


@dataclass
class Target:
    """One of the issues' criteria, with what was measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured (a run failed or a server is missing)
    issue: str = "7"


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


def targets(
    results: dict[str, list[bench.Run]],
    threads: int,
    baseline: dict[str, list[bench.Run]] | None = None,
) -> list[Target]:
    """The issues' criteria, checked on the medians of per-round ratios (and, given
    the runs of a ``baseline``, issue 12's "no workload slower" across the runs)."""
    found: list[Target] = []

    def add(name: str, goal: float, ratios: list[float], issue: str) -> None:
        met = statistics.median(ratios) >= goal if ratios else None
        found.append(Target(name, f">= {goal:g}", _spread(ratios), met, issue))

    def ratio_target(
        workload: str, bottom: str, goal: float, name: str, issue: str = "7"
    ) -> None:
        add(
            name,
            goal,
            bench.round_ratios(results.get(workload, []), "aiogate", bottom),
            issue,
        )

    for peer in ("gunicorn", "waitress"):
        ratio_target("hello", peer, 1.6, f"hello: aiogate ÷ {LABELS.get(peer, peer)}")
    # Issue 7 asked for 0.85 of the ceiling, issue 12 for 0.9.
    ratio_target(
        "hello", "h11-ceiling", 0.9, "hello: aiogate ÷ bare h11 ceiling", "7, 12"
    )
    for workload, title in (("big", "1 MiB response"), ("post", "64 KiB POST")):
        for peer in ("gunicorn", "waitress"):
            issue = "7, 12" if (workload, peer) == ("big", "gunicorn") else "7"
            ratio_target(workload, peer, 1.3, f"{title}: aiogate ÷ {peer}", issue)
    # Two workloads of one server: aiogate's runs of each, paired by round.
    add(
        "chunked 64 KiB upload (1 KiB chunks) ÷ Content-Length upload, aiogate",
        0.8,
        bench.ratios_by_round(
            [r for r in results.get("chunked", []) if r.server == "aiogate"],
            [r for r in results.get("post", []) if r.server == "aiogate"],
        ),
        "12",
    )
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
    # Issue 13: a file through wsgi.file_wrapper, against gunicorn's sendfile.
    ratio_target(
        "file", "gunicorn", 1.0, "1 MiB file: aiogate ÷ gunicorn gthread", "13"
    )
    ratio_target(
        "bigfile", "gunicorn", 1.5, "100 MiB file: aiogate ÷ gunicorn gthread", "13"
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
    found += not_slower_targets(results, baseline)
    return found


def not_slower_targets(
    results: dict[str, list[bench.Run]],
    baseline: dict[str, list[bench.Run]] | None,
) -> list[Target]:
    """Issue 12's "no workload slower by more than 3 %", one target per workload.

    Where ``aiogate-base`` (the ``--base-tree`` checkout) ran beside aiogate, the
    figure is the median of the per-round ratios, as for the other targets. Else,
    given a ``--baseline`` file, it is the ratio of aiogate's median req/s in the two
    runs: a weaker figure, since drift between the runs does not cancel (the
    comparison table shows how far the peers, whose code did not change, moved)."""
    found = []
    goal = f">= {NOT_SLOWER:g}"
    for workload, runs in results.items():
        if any(r.server == "aiogate-base" for r in runs):
            ratios = bench.round_ratios(runs, "aiogate", "aiogate-base")
            met = statistics.median(ratios) >= NOT_SLOWER if ratios else None
            name = f"{workload}: aiogate ÷ aiogate-base (same run)"
            found.append(Target(name, goal, _spread(ratios), met, "12"))
        elif baseline is not None and workload in baseline:
            new, old = (
                _median_rps(runs, "aiogate"),
                _median_rps(baseline[workload], "aiogate"),
            )
            ratio = new / old if new is not None and old else None
            found.append(
                Target(
                    f"{workload}: aiogate req/s ÷ baseline's (medians of two runs)",
                    goal,
                    "n/a" if ratio is None else f"{ratio:.2f}",
                    None if ratio is None else ratio >= NOT_SLOWER,
                    "12",
                )
            )
    if not found:
        found.append(
            Target(
                "no workload slower than the baseline by more than 3 %",
                goal,
                "n/a: run with --base-tree, or --baseline FILE",
                None,
                "12",
            )
        )
    return found


def _median_rps(runs: Sequence[bench.Run], server: str) -> float | None:
    values = [_rps(r) for r in runs if r.ok and r.server == server]
    return statistics.median(values) if values else None


def _median_cpu(runs: Sequence[bench.Run], server: str) -> float | None:
    return bench.median_cpu_us([r for r in runs if r.ok and r.server == server])


@dataclass(frozen=True, slots=True)
class Change:
    """One server on one workload, in a baseline run and in this one."""

    workload: str
    server: str
    old_rps: float | None
    new_rps: float | None
    old_cpu_us: float | None
    new_cpu_us: float | None

    @property
    def rps_ratio(self) -> float | None:
        """new ÷ old req/s: below 1 is slower."""
        if self.old_rps and self.new_rps is not None:
            return self.new_rps / self.old_rps
        return None

    @property
    def cpu_ratio(self) -> float | None:
        """new ÷ old CPU µs per request: above 1 costs more."""
        if self.old_cpu_us and self.new_cpu_us is not None:
            return self.new_cpu_us / self.old_cpu_us
        return None


def compare(
    baseline: dict[str, list[bench.Run]], results: dict[str, list[bench.Run]]
) -> list[Change]:
    """Every (workload, server) measured in both runs: the two runs' medians."""
    changes = []
    for workload, runs in results.items():
        old_runs = baseline.get(workload, [])
        old_servers = {r.server for r in old_runs}
        for server in dict.fromkeys(r.server for r in runs):
            if server not in old_servers:
                continue
            changes.append(
                Change(
                    workload,
                    server,
                    _median_rps(old_runs, server),
                    _median_rps(runs, server),
                    _median_cpu(old_runs, server),
                    _median_cpu(runs, server),
                )
            )
    return changes


def verdict(change: Change) -> str:
    """aiogate's verdict against issue 12's 3 %; the peers' code did not change, so
    their rows show how far the machine drifted between the runs."""
    if change.server not in ("aiogate", "aiogate-2w"):
        return "peer: drift"
    rps, cpu = change.rps_ratio, change.cpu_ratio
    if rps is None:
        return "not measured"
    words = ["ok" if rps >= NOT_SLOWER else "**slower**"]
    if cpu is not None and cpu > 1 / NOT_SLOWER:
        words.append(f"**{(cpu - 1) * 100:.0f} % more CPU/req**")
    return ", ".join(words)


def comparison_table(changes: Sequence[Change]) -> str:
    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return bench._markdown_table(
        [
            "workload", "server", "req/s before", "after", "after ÷ before",
            "CPU µs/req before", "after", "after ÷ before", "verdict",
        ],
        [
            [
                c.workload, LABELS.get(c.server, c.server),
                number(c.old_rps, ".0f"), number(c.new_rps, ".0f"),
                number(c.rps_ratio, ".3f"), number(c.old_cpu_us, ".0f"),
                number(c.new_cpu_us, ".0f"), number(c.cpu_ratio, ".3f"), verdict(c),
            ]
            for c in changes
        ],
    )  # fmt: skip


def comparison_report(
    changes: Sequence[Change], baseline_path: Path, baseline_machine: dict[str, str]
) -> str:
    source = baseline_machine.get("aiogate source", baseline_machine.get("aiogate"))
    return "\n".join(
        [
            f"**Against the baseline** `{baseline_path}` (aiogate: {source}):",
            "",
            comparison_table(changes),
            "",
            f"Medians of each run. aiogate is *slower* below {NOT_SLOWER:g} of the "
            "baseline's req/s (issue 12: no workload slower by more than 3 %); CPU "
            "µs per request is flagged above 3 % more. The peers' rows show the "
            "machine's drift between the two runs: a change of aiogate within it "
            "is noise. For a same-run comparison, use --base-tree.",
        ]
    )


def targets_table(found: Sequence[Target]) -> str:
    verdicts = {True: "met", False: "**not met**", None: "not measured"}
    return bench._markdown_table(
        [
            "target",
            "issue",
            "goal",
            "measured: median (min-max) over rounds",
            "verdict",
        ],
        [[t.name, t.issue, t.goal, t.measured, verdicts[t.met]] for t in found],
    )


def workload_table(
    workload: str, runs: Sequence[bench.Run], servers: Sequence[str]
) -> str:
    """req/s, latency and memory per server, and aiogate's ratio to each."""
    header = [
        "server", "req/s (median)", "min-max", "CPU µs/req", "p50", "p99",
        "peak RSS MiB", "aiogate ÷ server",
    ]  # fmt: skip
    rows = []
    for server in servers:
        mine = [r for r in runs if r.server == server]
        ok = [r for r in mine if r.result is not None]
        if not ok:
            rows.append([LABELS.get(server, server), "FAILED", *[""] * 6])
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
                bench._cpu(bench.median_cpu_us(ok)),
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
    "chunked": "64 KiB POST in 1 KiB chunks (Transfer-Encoding: chunked), read from "
    "wsgi.input",
    "sleep": "the app sleeps 10 ms (thread-pool concurrency)",
    "flask": "Flask, a small JSON endpoint",
    "paced": "paced: 1,000 GET/s over 16 connections (latency at a moderate rate; "
    "the last column is the server's p99 ÷ aiogate's)",
    "upload": "1 MiB POST",
    "file": "1 MiB file through wsgi.file_wrapper",
    "bigfile": "100 MiB file through wsgi.file_wrapper (8 connections)",
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
    # A report from --from-json gives the date of the run.
    date = getattr(args, "date", None) or time.strftime("%Y-%m-%d")
    if "aiogate source" in machine:
        versions += f"; aiogate code: {machine['aiogate source']}"
    if "aiogate-base source" in machine:
        versions += f"; aiogate (base tree): {machine['aiogate-base source']}"
    lines = [
        f"Measured with `python benchmarks/suite.py --rounds {args.rounds} "
        f"--duration {args.duration}` on {date}: one process and "
        f"{args.threads} app threads for every server, {args.connections} keep-alive "
        "connections from wrk on loopback (except *paced*), servers interleaved within "
        "each round; medians of the rounds, ratios taken within a round. Machine: "
        f"{machine.get('cpus (nproc)')} CPUs ({machine.get('cpu model')}), "
        f"{machine.get('kernel')}, {machine.get('python')}; {versions}; "
        f"{machine.get('wrk', 'wrk')}. Load average at the start: "
        f"{machine.get('load average at start')}. A shared machine: absolute numbers "
        "move by up to 30 % between runs, the ratios much less. CPU µs/req: the "
        "user + system CPU time of the server's processes during the measurement, "
        "divided by the requests completed (steadier than req/s when other tenants "
        "take CPU).",
        "",
        "**Targets** (issues 7, 12 and 13):",
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
        "--servers",
        type=bench._server_list,
        default=None,
        help="run only these servers (comma-separated) in the workloads they belong "
        "to: aiogate, the peers, h11-ceiling and aiogate-2w; default: all",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also save every run (wrk's output, CPU time, RSS) here, for --baseline",
    )
    parser.add_argument(
        "--base-tree",
        type=bench._source_tree,
        metavar="DIR",
        help="also run aiogate from this checkout (e.g. `git worktree add "
        "/tmp/aiogate-base main`) as aiogate-base, beside aiogate in every round: "
        "issue 12's 'no workload slower by more than 3 %%' as same-run ratios",
    )
    parser.add_argument(
        "--base-python",
        metavar="PATH",
        help="the interpreter of aiogate-base (default: this one)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="JSON",
        help="compare with a previous run saved with --json: per workload and "
        "server, req/s and CPU µs/req before and after, and a verdict",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="JSON",
        help="run nothing: report on a run saved with --json (with --baseline, "
        "compare two saved runs)",
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
    if args.from_json is not None and (args.install or args.json or args.base_tree):
        parser.error("--from-json runs nothing: no --install, --json or --base-tree")
    return args


def workload_servers(
    workload: str, only: Sequence[str] | None, base: bool = False
) -> list[str]:
    """The servers a workload runs, in order, restricted to ``only`` if given; with
    ``base``, aiogate-base (the ``--base-tree`` checkout) right after aiogate."""
    servers = ["aiogate", *PEERS, *EXTRA_SERVERS.get(workload, ())]
    servers = [s for s in servers if only is None or s in only]
    if base and "aiogate" in servers:
        servers.insert(servers.index("aiogate") + 1, "aiogate-base")
    return servers


def run_py_args(
    args: argparse.Namespace, workload: str, servers: Sequence[str]
) -> argparse.Namespace:
    """The settings ``run.py`` would have for one workload of the suite."""
    argv = [
        "--workload", workload, "--rounds", str(args.rounds),
        "--duration", str(args.duration), "--threads", str(args.threads),
        "--connections", str(args.connections), "--servers", ",".join(servers),
    ]  # fmt: skip
    if args.base_tree is not None:
        argv += ["--base-tree", str(args.base_tree)]
    if args.base_python is not None:
        argv += ["--base-python", args.base_python]
    return bench.parse_args(argv)


def run_suite(
    args: argparse.Namespace, servers_of: dict[str, list[str]]
) -> dict[str, list[bench.Run]]:
    """Run every workload's servers, ``args.rounds`` times.

    The rounds are the outer loop: round 1 runs every workload once, then round 2,
    and so on. A drift of the machine then lands on one round of every workload,
    not on every round of one, so that ratios between workloads taken within a
    round (chunked ÷ Content-Length upload) are as fair as those between servers.
    """
    run_args = {
        workload: run_py_args(args, workload, servers)
        for workload, servers in servers_of.items()
    }
    for settings in run_args.values():
        print(f"# {bench.settings_line(settings)}", file=sys.stderr)
    results: dict[str, list[bench.Run]] = {workload: [] for workload in servers_of}
    with tempfile.TemporaryDirectory(prefix="aiogate-suite-") as tmp:
        for number in range(1, args.rounds + 1):
            for workload, servers in servers_of.items():
                for server in servers:
                    time.sleep(bench.COOLDOWN_SECONDS)
                    run = bench.run_one(server, number, run_args[workload], Path(tmp))
                    results[workload].append(run)
                    print(
                        f"{workload:<8} {bench.progress_line(run, args.rounds)}",
                        file=sys.stderr,
                        flush=True,
                    )
    return results


def save_results(
    path: Path,
    args: argparse.Namespace,
    machine: dict[str, str],
    results: dict[str, list[bench.Run]],
    servers_of: dict[str, list[str]],
) -> None:
    """Save a suite run as JSON: what ``load_results`` (``--baseline``) reads."""
    raw = {
        "settings": {
            "date": time.strftime("%Y-%m-%d"),
            "rounds": args.rounds,
            "duration": args.duration,
            "threads": args.threads,
            "connections": args.connections,
            "workloads": list(results),
        },
        "warmup_seconds": bench.WARMUP_SECONDS,
        "machine": machine,
        "servers_of": servers_of,
        "runs": {w: [asdict(run) for run in runs] for w, runs in results.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"raw results saved to {path}", file=sys.stderr)


@dataclass
class Saved:
    """A suite run read back from its ``--json`` file."""

    settings: argparse.Namespace  # rounds, duration, threads, connections, workloads
    machine: dict[str, str]
    servers_of: dict[str, list[str]]
    results: dict[str, list[bench.Run]]


def run_from_dict(raw: dict[str, Any]) -> bench.Run:
    """A ``Run`` from its ``asdict`` form; keys this version does not know (a newer
    file's) are dropped, missing ones (an older file's) keep their defaults."""
    known = {f.name for f in fields(bench.Run)}
    values = {key: value for key, value in raw.items() if key in known}
    if isinstance(values.get("result"), dict):
        values["result"] = bench.WrkResult(**values["result"])
    return bench.Run(**values)


def load_results(path: Path) -> Saved:
    """Read what ``save_results`` wrote."""
    raw = json.loads(path.read_text())
    results = {
        workload: [run_from_dict(run) for run in runs]
        for workload, runs in raw["runs"].items()
    }
    servers_of = raw.get("servers_of") or {
        workload: list(dict.fromkeys(run.server for run in runs))
        for workload, runs in results.items()
    }
    return Saved(
        argparse.Namespace(**raw["settings"]), raw["machine"], servers_of, results
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        saved = load_results(args.from_json)
        return report(
            args, saved.settings, saved.machine, saved.results, saved.servers_of
        )
    if args.install and install() != 0:
        print("installing the peers failed", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print(
            "wrk not found on PATH; install it: apt-get install -y wrk", file=sys.stderr
        )
        return 2
    servers_of = {
        workload: workload_servers(workload, args.servers, args.base_tree is not None)
        for workload in args.workloads
    }
    wanted = {server for servers in servers_of.values() for server in servers}
    missing = [
        peer
        for peer, executable in PEER_EXECUTABLES.items()
        if peer in wanted and shutil.which(executable, path=str(bench.BIN_DIR)) is None
    ]
    if missing:
        print(
            f"not installed beside {sys.executable}: {', '.join(missing)}; "
            "run with --install",
            file=sys.stderr,
        )
        return 2
    servers_of = {w: servers for w, servers in servers_of.items() if servers}
    machine = bench.machine_info(args.base_tree)
    started = time.monotonic()
    results = run_suite(args, servers_of)
    machine["load average at end"] = bench._load_average()
    print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json is not None:
        save_results(args.json, args, machine, results, servers_of)
    return report(args, args, machine, results, servers_of)


def report(
    args: argparse.Namespace,
    settings: argparse.Namespace,
    machine: dict[str, str],
    results: dict[str, list[bench.Run]],
    servers_of: dict[str, list[str]],
) -> int:
    """Print the report (and the comparison with ``--baseline``), update the README
    if asked; return the exit status."""
    baseline = load_results(args.baseline) if args.baseline is not None else None
    found = targets(results, settings.threads, baseline.results if baseline else None)
    text = render(settings, machine, results, servers_of, found)
    print(text)
    if baseline is not None:
        changes = compare(baseline.results, results)
        print("\n" + comparison_report(changes, args.baseline, baseline.machine))
    if args.update_readme:
        update_readme(text)
        print("README.md updated", file=sys.stderr)
    return 0 if all(r.ok for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
