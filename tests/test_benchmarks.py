"""The benchmark tools' own logic, without wrk or peers: how ``suite.py`` judges the
targets, compares with a baseline run and rewrites the README, how ``run.py`` builds
its wrk scripts and measures a server's memory and CPU time, and the paced client and
the POST check against a real aiogate server on a loopback port."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import h11
import pytest

from aiogate import Config, Server
from benchmarks import apps as bench_apps
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


def with_cpu(measured: list[bench.Run], us_per_request: float) -> list[bench.Run]:
    """The same runs, each having used ``us_per_request`` µs of CPU per request."""
    for run in measured:
        assert run.result is not None
        run.cpu_seconds = run.result.requests * us_per_request / 1e6
    return measured


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


# --- The chunked workload ---------------------------------------------------------


def h11_events(request: bytes) -> list[h11.Event]:
    """What h11 makes of a whole request, up to its end."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    events: list[h11.Event] = []
    while not events or type(events[-1]) is not h11.EndOfMessage:
        event = conn.next_event()
        assert event is not h11.NEED_DATA, "the request is incomplete"
        assert isinstance(event, h11.Event)
        events.append(event)
    return events


@pytest.mark.parametrize(
    ("workload", "chunks"), [("post", 0), ("chunked", 64), ("upload", 0)]
)
def test_post_requests_carry_the_workload_body(workload: str, chunks: int) -> None:
    events = h11_events(bench.post_request(workload, "127.0.0.1:8000"))
    request, *data, end = events
    assert isinstance(request, h11.Request)
    headers = dict(request.headers)
    assert headers.get(b"transfer-encoding") == (b"chunked" if chunks else None)
    assert (b"content-length" in headers) is not bool(chunks)
    assert type(end) is h11.EndOfMessage
    body = b"".join(bytes(e.data) for e in data if isinstance(e, h11.Data))
    assert body == b"x" * bench.POST_BYTES[workload]
    assert sum(1 for e in data if isinstance(e, h11.Data) and e.chunk_end) == chunks


def test_chunked_body_ends_with_a_short_chunk_when_the_size_does_not_divide() -> None:
    body = bench.chunked_body(2500, 1024)
    sizes = re.findall(rb"(?:^|\r\n)([0-9a-f]+)\r\n", body)
    assert sizes[:3] == [b"400", b"400", b"1c4"]  # 1024, 1024, 452
    assert body.endswith(b"x\r\n0\r\n\r\n")
    assert bench.chunked_body(0, 1024) == b"0\r\n\r\n"


def test_wrk_scripts() -> None:
    assert bench.wrk_script("hello") is None
    assert bench.wrk_script("post") == (
        'wrk.method = "POST"\n'
        'wrk.body = string.rep("x", 65536)\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    chunked = bench.wrk_script("chunked")
    assert chunked is not None
    assert 'wrk.headers["Transfer-Encoding"] = "chunked"' in chunked
    # No wrk.body: wrk.format() would add a Content-Length beside Transfer-Encoding.
    assert "wrk.body" not in chunked
    assert 'string.rep(chunk(1024), 64) .. "0\\r\\n\\r\\n"' in chunked
    # Lua's escapes, not Python's: the script holds a backslash and an r.
    assert '"%x\\r\\n%s\\r\\n"' in chunked
    assert "req = wrk.format() .. body" in chunked


def test_wrk_script_of_a_size_that_does_not_divide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(bench.POST_BYTES, "chunked", 2500)
    script = bench.wrk_script("chunked")
    assert script is not None
    assert 'string.rep(chunk(1024), 2) .. chunk(452) .. "0' in script


def test_write_wrk_script(tmp_path: Path) -> None:
    assert bench.write_wrk_script("hello", tmp_path) is None
    path = bench.write_wrk_script("chunked", tmp_path)
    assert path == tmp_path / "chunked.lua"
    assert path.read_text() == bench.wrk_script("chunked")


@pytest.mark.parametrize(
    ("workload", "app"), [("chunked", "upload"), ("post", "hello")]
)
async def test_post_check_against_a_real_server(workload: str, app: str) -> None:
    # upload reads the chunked body whole (aiogate sets wsgi.input_terminated);
    # hello never reads it, and answers something else: the check must say so.
    server = Server(bench_apps.APPS[app], Config(host="127.0.0.1", port=0, threads=2))
    await server.start()
    try:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(WAIT):
            if app == "upload":
                await asyncio.to_thread(bench.check_post_answer, port, workload)
            else:
                with pytest.raises(bench.RunFailed, match="expected 200"):
                    await asyncio.to_thread(bench.check_post_answer, port, workload)
    finally:
        await server.shutdown(WAIT)


def test_chunked_target_pairs_aiogate_runs_of_two_workloads_by_round() -> None:
    results = {
        "post": runs(aiogate=[1000, 800, 1000], gunicorn=[500, 500, 500]),
        "chunked": runs(aiogate=[900, 700, 700], gunicorn=[9000] * 3),
    }
    name = "chunked 64 KiB upload (1 KiB chunks) ÷ Content-Length upload, aiogate"
    found = {t.name: t for t in suite.targets(results, threads=8)}
    # Per round 0.9, 0.875, 0.7: the median is round 2's, gunicorn plays no part.
    assert found[name].measured == "0.88 (0.70-0.90)"
    assert found[name].met is True
    assert found[name].issue == "12"
    del results["post"]
    assert verdicts(suite.targets(results, threads=8))[name] is None


def test_hello_against_the_ceiling_is_issue_12s_0_9() -> None:
    results = {"hello": runs(aiogate=[880] * 3, **{"h11-ceiling": [1000] * 3})}
    target = {t.name: t for t in suite.targets(results, threads=8)}[
        "hello: aiogate ÷ bare h11 ceiling"
    ]
    assert (target.goal, target.met) == (">= 0.9", False)


# --- CPU time per request ---------------------------------------------------------


def test_cpu_ticks_from_a_proc_stat_line() -> None:
    # proc(5): utime, stime, cutime, cstime are fields 14-17; the command name may
    # hold spaces and parentheses.
    stat = (
        "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 1800 0 0 0 "
        "250 75 3 2 20 0 9 0 123456 30000000 7000 18446744073709551615"
    )
    assert bench.parse_cpu_ticks(stat) == 250 + 75 + 3 + 2


def test_cpu_us_per_request() -> None:
    run = bench.Run(round=1, server="aiogate", command=[], result=result(1000))
    assert run.cpu_us_per_request is None  # not measured
    run.cpu_seconds = 0.25
    assert run.cpu_us_per_request == pytest.approx(250.0)
    run.result = None
    assert run.cpu_us_per_request is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_cpu_ticks_of_this_process_match_os_times() -> None:
    before = os.times()
    ticks = bench.parse_cpu_ticks(Path("/proc/self/stat").read_text())
    after = os.times()
    seconds = ticks / os.sysconf("SC_CLK_TCK")
    low = before.user + before.system + before.children_user + before.children_system
    high = after.user + after.system + after.children_user + after.children_system
    assert low - 0.02 <= seconds <= high + 0.02


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_cpu_seconds_sum_the_session_and_keep_exited_workers() -> None:
    # A leader in its own session whose child burns 0.3 s of CPU: the session's sum
    # has it while the child runs, and keeps it once the leader has reaped it.
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time\\nwhile time.process_time() < 0.3: pass\\nprint(1, flush=True)"
        "\\nimport sys; sys.stdin.read()'], "
        "stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "child.stdout.readline()\n"
        "print('burnt', flush=True)\n"
        "sys.stdin.readline()\n"
        "child.stdin.close(); child.wait()\n"
        "print('reaped', flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "burnt"
        while_running = bench.cpu_seconds(process.pid)
        assert while_running is not None
        assert while_running >= 0.25  # ticks round down: 10 ms each, usually
        process.stdin.write("reap\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "reaped"
        assert len(bench._session_pids(process.pid)) == 1
        after_exit = bench.cpu_seconds(process.pid)
        assert after_exit is not None
        assert after_exit >= while_running
    finally:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        process.wait(WAIT)
        process.stdout.close()


def test_workload_table_has_cpu_per_request() -> None:
    measured = with_cpu(runs(aiogate=[1000, 1100, 900]), 150.0)
    measured[0].cpu_seconds = None  # one round without a figure: left out
    table = suite.workload_table("hello", measured, ["aiogate"])
    header, _, row = table.splitlines()
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[header.split("|")[1:-1].index(" CPU µs/req ")] == "150"


# --- Against a baseline -----------------------------------------------------------


def test_compare_with_a_baseline_run() -> None:
    before = {
        "hello": with_cpu(runs(aiogate=[1000] * 3, gunicorn=[500] * 3), 100.0),
        "big": with_cpu(runs(aiogate=[300] * 3), 1000.0),
    }
    after = {
        "hello": with_cpu(runs(aiogate=[960] * 3, gunicorn=[490] * 3), 105.0),
        "big": with_cpu(runs(aiogate=[298] * 3), 1000.0),
        "chunked": runs(aiogate=[100] * 3),  # not in the baseline: no row
    }
    changes = suite.compare(before, after)
    assert [(c.workload, c.server) for c in changes] == [
        ("hello", "aiogate"),
        ("hello", "gunicorn"),
        ("big", "aiogate"),
    ]
    hello_aiogate, hello_gunicorn, big = changes
    assert hello_aiogate.rps_ratio == pytest.approx(0.96)
    assert hello_aiogate.cpu_ratio == pytest.approx(1.05)
    assert suite.verdict(hello_aiogate) == "**slower**, **5 % more CPU/req**"
    assert suite.verdict(hello_gunicorn) == "peer: drift"
    assert suite.verdict(big) == "ok"  # 0.993 and the same CPU
    table = suite.comparison_table(changes)
    assert "| 0.960 " in table
    assert "| 1.050 " in table
    found = {
        t.name: t.met
        for t in suite.targets(after, threads=8, baseline=before)
        if t.issue == "12"
    }
    assert found["hello: aiogate req/s ÷ baseline's (medians of two runs)"] is False
    assert found["big: aiogate req/s ÷ baseline's (medians of two runs)"] is True
    assert "chunked: aiogate req/s ÷ baseline's (medians of two runs)" not in found


def test_a_server_missing_from_a_run_is_not_a_verdict() -> None:
    before = {"hello": runs(aiogate=[1000] * 3)}
    after = {"hello": runs(aiogate=[1000] * 3)}
    for run in after["hello"]:
        run.result = None
    (change,) = suite.compare(before, after)
    assert change.rps_ratio is None
    assert change.cpu_ratio is None
    assert suite.verdict(change) == "not measured"


def test_not_slower_uses_the_same_run_base_tree_when_it_ran() -> None:
    results = {
        "hello": runs(aiogate=[980, 1000, 900], **{"aiogate-base": [1000] * 3}),
        "post": runs(aiogate=[950] * 3, **{"aiogate-base": [1000] * 3}),
    }
    found = {t.name: t for t in suite.not_slower_targets(results, baseline=None)}
    assert found["hello: aiogate ÷ aiogate-base (same run)"].met is True  # 0.98
    assert found["post: aiogate ÷ aiogate-base (same run)"].met is False
    (nothing,) = suite.not_slower_targets({"hello": runs(aiogate=[1.0])}, None)
    assert nothing.met is None


def test_saved_runs_read_back_the_same(tmp_path: Path) -> None:
    results = {"chunked": with_cpu(runs(aiogate=[700, 720], gunicorn=[600, 610]), 9.0)}
    results["chunked"][1].result = None
    results["chunked"][1].error = "died"
    results["chunked"][0].peak_rss_kib = 32_000
    args = suite.parse_args(["--rounds", "2", "--workloads", "chunked"])
    path = tmp_path / "results" / "run.json"
    servers_of = {"chunked": ["aiogate", "gunicorn"]}
    suite.save_results(path, args, {"python": "CPython"}, results, servers_of)
    saved = suite.load_results(path)
    assert saved.results == results
    assert saved.servers_of == servers_of
    assert saved.machine == {"python": "CPython"}
    assert (saved.settings.rounds, saved.settings.threads) == (2, 8)


def test_a_run_from_an_older_or_newer_file() -> None:
    raw = {"round": 1, "server": "aiogate", "command": [], "a_newer_field": 1}
    run = suite.run_from_dict(raw)
    assert run.cpu_seconds is None
    assert run.result is None


def test_suite_options() -> None:
    assert suite.workload_servers("hello", None) == [
        "aiogate", "waitress", "gunicorn", "uvicorn", "granian", "h11-ceiling",
        "aiogate-2w",
    ]  # fmt: skip
    only = ["aiogate", "gunicorn", "h11-ceiling"]
    assert suite.workload_servers("hello", only) == only
    assert suite.workload_servers("chunked", only) == ["aiogate", "gunicorn"]
    assert suite.workload_servers("big", only, base=True) == [
        "aiogate", "aiogate-base", "gunicorn",
    ]  # fmt: skip
    assert suite.workload_servers("big", ["gunicorn"], base=True) == ["gunicorn"]
    assert "chunked" in suite.parse_args([]).workloads
    with pytest.raises(SystemExit):
        suite.parse_args(["--from-json", "a.json", "--json", "b.json"])
    with pytest.raises(SystemExit):
        suite.parse_args(["--servers", "nginx"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--servers", "aiogate,aiogate-base"])  # needs --base-tree


def test_base_tree_server_runs_that_tree(tmp_path: Path) -> None:
    (tmp_path / "aiogate").mkdir()
    (tmp_path / "aiogate" / "__init__.py").write_text("")
    args = bench.parse_args(
        ["--servers", "aiogate,aiogate-base", "--base-tree", str(tmp_path)]
    )
    assert args.base_tree == tmp_path.resolve()
    command = bench.server_command("aiogate-base", "benchmarks.apps:hello", 1, 2, "/py")
    assert command[:4] == ["/py", "-m", "aiogate", "serve"]
    assert bench.server_env(tmp_path)["PYTHONPATH"].split(os.pathsep)[0] == str(
        tmp_path
    )
    with pytest.raises(SystemExit):
        bench.parse_args(["--base-tree", str(tmp_path / "nothing")])
