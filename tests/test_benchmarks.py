"""The benchmark tools' own logic, without wrk or peers: how ``suite.py`` judges the
targets, rewrites the README, and measures a server's memory, and the paced client
against a real aiogate server on a loopback port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiogate import Config, Server
from benchmarks import run as bench
from benchmarks import suite
from benchmarks.paced import measure

from .apps import hello

WAIT = 10.0


def result(rps: float, p99: float = 10.0) -> bench.WrkResult:
    return bench.WrkResult(
        requests_per_second=rps,
        requests=int(rps),
        seconds=1.0,
        p50_ms=p99 / 2,
        p99_ms=p99,
        socket_errors={},
        bad_status=0,
    )


def runs(**rps_by_server: list[float]) -> list[bench.Run]:
    """One run per round for each server, with these req/s."""
    return [
        bench.Run(round=number, server=server, command=[], result=result(rps))
        for server, values in rps_by_server.items()
        for number, rps in enumerate(values, start=1)
    ]


def verdicts(found: list[suite.Target]) -> dict[str, bool | None]:
    return {target.name: target.met for target in found}


def test_ratio_targets_take_the_median_of_per_round_ratios() -> None:
    results = {
        # Per round: 2.0, 1.5, 1.0 against gunicorn (median 1.5 < 1.6).
        "hello": runs(aiogate=[200, 150, 100], gunicorn=[100, 100, 100]),
    }
    found = verdicts(suite.targets(results, threads=8))
    assert found["hello: aiogate ÷ gunicorn gthread"] is False
    assert found["hello: aiogate ÷ waitress"] is None  # not measured
    results["hello"] = runs(aiogate=[200, 170, 100], gunicorn=[100, 100, 100])
    found = verdicts(suite.targets(results, threads=8))
    assert found["hello: aiogate ÷ gunicorn gthread"] is True


def test_a_failed_round_is_left_out_of_the_ratios() -> None:
    hello_runs = runs(aiogate=[100, 100, 100], gunicorn=[100, 10, 100])
    hello_runs[4].result = None  # gunicorn's round 2 failed: its 10 req/s never counts
    hello_runs[4].error = "died"
    ratios = bench.round_ratios(hello_runs, "aiogate", "gunicorn")
    assert sorted(ratios) == [1.0, 1.0]


def test_sleep_paced_and_memory_targets() -> None:
    paced = runs(aiogate=[1000] * 3, gunicorn=[1000] * 3)
    for run in paced:
        assert run.result is not None
        run.result.p99_ms = 2.0 if run.server == "aiogate" else 3.0
    sleep = runs(aiogate=[770, 780, 790])
    sleep[0].peak_rss_kib = 41 * 1024
    found = verdicts(suite.targets({"paced": paced, "sleep": sleep}, threads=8))
    assert found["paced 1,000 req/s: gunicorn p99 ÷ aiogate p99"] is True
    assert found["sleep 10 ms: aiogate ÷ ideal (800 req/s with 8 threads)"] is True
    assert found["peak RSS of one aiogate process, any workload"] is False
    slow = verdicts(suite.targets({"sleep": runs(aiogate=[700] * 3)}, threads=8))
    assert slow["sleep 10 ms: aiogate ÷ ideal (800 req/s with 8 threads)"] is False


def test_update_readme_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{suite.START}\nold table\n{suite.END}\nafter\n")
    suite.update_readme("new table", readme)
    assert readme.read_text() == (
        f"# x\n\nbefore\n{suite.START}\nnew table\n{suite.END}\nafter\n"
    )
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit):
        suite.update_readme("new table", readme)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_peak_rss_sums_the_server_session() -> None:
    # A process in its own session whose child holds 40 MiB: the sum covers both.
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        '\'import sys; b = b"x" * (40 * 1024 * 1024); print(1, flush=True); '
        "sys.stdin.read()'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "child.stdout.readline()\n"  # the child has written its 40 MiB
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "child.stdin.close(); child.wait()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        assert len(bench._session_pids(process.pid)) == 2
        peak = bench.peak_rss_kib(process.pid)
        assert peak is not None
        assert peak > 40 * 1024
    finally:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        process.wait(WAIT)
        process.stdout.close()
    assert os.getpid() not in bench._session_pids(process.pid)


async def test_paced_client_keeps_its_rate_against_a_real_server() -> None:
    server = Server(hello, Config(host="127.0.0.1", port=0, threads=2))
    await server.start()
    try:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(WAIT):
            measured = await measure(port, rate=200.0, duration=0.5, connections=2)
    finally:
        await server.shutdown(WAIT)
    assert not measured.failures
    assert len(measured.latencies) == 100
    assert all(0 < latency < WAIT for latency in measured.latencies)
