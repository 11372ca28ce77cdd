"""Server hooks (gunicorn's names): each one called at its moment with the arguments
the README documents, in a real process tree (``-c conf.py``) and in an embedding
program (``Server(..., hooks=...)``); a failing hook logged with its name, a failing
startup hook stopping startup with exit 3; SIGHUP in a single process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiogate import Hooks, Server
from aiogate.errors import ConfigError
from aiogate.hooks import Hook, HookFailed, Request, Response, Worker
from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_workers import WAIT, ask, children, free_port, wait_until

APP = """
def application(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("app failure")
    start_response("200 OK", [("Content-Length", "2"), ("X-App", "yes")])
    return [b"ok"]
"""

#: A config file whose every hook appends one JSON line: the hook's name, the
#: process and thread it ran in, and what it was given.
RECORDING_CONF = """
import asyncio, json, os, threading

_LOG = {log!r}

def _record(hook, **seen):
    try:
        asyncio.get_running_loop()
        loop = True
    except RuntimeError:
        loop = False
    seen.update(
        hook=hook,
        pid=os.getpid(),
        main_thread=threading.current_thread() is threading.main_thread(),
        loop=loop,
    )
    with open(_LOG, "a") as file:  # one short append: whole lines
        file.write(json.dumps(seen) + "\\n")

def _server(server):
    return {{"server_pid": server.pid, "cfg_threads": server.cfg.threads}}

def _worker(worker):
    return {{
        "worker_pid": worker.pid,
        "worker_ppid": worker.ppid,
        "age": worker.age,
        "worker_cfg_threads": worker.cfg.threads,
        "has_log": hasattr(worker.log, "info"),
        "wsgi": worker.wsgi is not None,
    }}

def on_starting(server):
    _record("on_starting", **_server(server))

def when_ready(server):
    _record("when_ready", **_server(server))

def on_reload(server):
    _record("on_reload", **_server(server))

def pre_fork(server, worker):
    _record("pre_fork", **_server(server), **_worker(worker))

def post_fork(server, worker):
    _record("post_fork", **_server(server), **_worker(worker))

def post_worker_init(worker):
    _record("post_worker_init", **_worker(worker))

def worker_int(worker):
    _record("worker_int", **_worker(worker))

def worker_abort(worker):
    _record("worker_abort", **_worker(worker))

def pre_request(worker, req):
    _record(
        "pre_request", **_worker(worker), method=req.method, path=req.path,
        query=req.query, version=req.version, headers=dict(req.headers),
    )

def post_request(worker, req, environ, resp):
    _record(
        "post_request", **_worker(worker), path=req.path,
        path_info=environ.get("PATH_INFO"), status=resp.status,
        code=resp.status_code, headers=dict(resp.headers), sent=resp.sent,
    )

def child_exit(server, worker):
    _record("child_exit", **_server(server), **_worker(worker))

def worker_exit(server, worker):
    _record("worker_exit", **_server(server), **_worker(worker))

def nworkers_changed(server, new_value, old_value):
    _record("nworkers_changed", **_server(server), new=new_value, old=old_value)

def on_exit(server):
    _record("on_exit", **_server(server))
"""


def records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def recorded(log: Path, hook: str) -> list[dict[str, Any]]:
    return [record for record in records(log) if record["hook"] == hook]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    (tmp_path / "hookapp.py").write_text(APP)
    servers: list[ServerProcess] = []

    def serve(*flags: str, port: int | None = None) -> ServerProcess:
        port = free_port() if port is None else port
        server = ServerProcess(
            [*SERVE, "hookapp", "--port", str(port), "--threads", "3", *flags],
            cwd=tmp_path,
        )
        servers.append(server)
        return server

    yield serve
    for server in servers:
        if server.proc.poll() is None:
            for pid in children(server.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        server.kill()


def test_every_hook_is_called_with_its_arguments_under_a_supervisor(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    (tmp_path / "conf.py").write_text(RECORDING_CONF.format(log=str(log)))
    server = serve("-c", "conf.py", "--workers", "2")
    port = server.port
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    first = children(supervisor)

    assert ask(port, "/path?q=1") == "ok"
    wait_until(lambda: recorded(log, "post_request"), "post_request")
    server.proc.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(children(supervisor)) == 3, "three workers")
    server.proc.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(children(supervisor)) == 2, "two workers again")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: not (children(supervisor) & first) and len(children(supervisor)) == 2,
        "every worker replaced",
    )
    interrupted, aborted = sorted(children(supervisor))
    os.kill(interrupted, signal.SIGINT)
    wait_until(lambda: recorded(log, "worker_int"), "worker_int")
    os.kill(aborted, signal.SIGABRT)
    wait_until(lambda: recorded(log, "worker_abort"), "worker_abort")
    wait_until(
        lambda: (
            not (children(supervisor) & {interrupted, aborted})
            and len(children(supervisor)) == 2
        ),
        "both replaced",
    )
    assert server.stop(signal.SIGTERM) == 0

    seen = records(log)
    assert {record["hook"] for record in seen} == {hook.value for hook in Hook}
    for record in seen:
        assert 3 == record.get("cfg_threads", 3) == record.get("worker_cfg_threads", 3)
        assert record.get("has_log", True)
        if "server_pid" in record:
            assert record["server_pid"] == supervisor
    # The supervisor's own hooks: in the supervisor, on its main thread, no loop.
    for hook in ("on_starting", "when_ready", "on_reload", "pre_fork", "child_exit"):
        for record in recorded(log, hook):
            assert (record["pid"], record["main_thread"]) == (supervisor, True), record
            assert not record["loop"]
    [starting] = recorded(log, "on_starting")
    assert seen.index(starting) == 0
    assert [(r["new"], r["old"]) for r in recorded(log, "nworkers_changed")] == [
        (2, None),
        (3, 2),
        (2, 3),
    ]
    [ready] = recorded(log, "when_ready")
    # pre_fork: before the process exists; the ages count every worker started.
    forks = recorded(log, "pre_fork")
    assert all(record["worker_pid"] == 0 for record in forks)
    assert [record["age"] for record in forks] == list(range(1, len(forks) + 1))
    assert len(forks) == 2 + 1 + 2 + 2  # the first two, TTIN, SIGHUP, INT and ABRT
    # In the worker: post_fork, post_worker_init (the app loaded), worker_exit.
    for hook in ("post_fork", "post_worker_init", "worker_exit"):
        for record in recorded(log, hook):
            assert record["worker_pid"] == record["pid"] != supervisor, record
            assert record["worker_ppid"] == supervisor
    assert all(r["wsgi"] for r in recorded(log, "post_worker_init"))
    assert not any(r["wsgi"] for r in recorded(log, "post_fork"))  # not yet
    # when_ready comes once the first worker serves.
    assert seen.index(ready) > seen.index(recorded(log, "post_worker_init")[0])
    # Signals to a worker: its hook runs in it, on its main thread (worker_int on
    # the event loop, worker_abort in a signal handler there).
    [intr] = recorded(log, "worker_int")
    [abort] = recorded(log, "worker_abort")
    assert (intr["pid"], intr["worker_pid"]) == (interrupted, interrupted)
    assert (abort["pid"], abort["worker_pid"]) == (aborted, aborted)
    assert intr["loop"]
    assert intr["main_thread"]
    assert abort["main_thread"]
    exited = {record["worker_pid"] for record in recorded(log, "child_exit")}
    assert first | {interrupted, aborted} <= exited
    # The request hooks: in the app's thread (not the main thread, no loop).
    [pre] = recorded(log, "pre_request")
    [post] = recorded(log, "post_request")
    for record in (pre, post):
        assert not record["main_thread"]
        assert not record["loop"]
        assert record["pid"] == record["worker_pid"] != supervisor
    assert (pre["method"], pre["path"], pre["query"], pre["version"]) == (
        "GET",
        "/path",
        "q=1",
        "1.1",
    )
    assert pre["headers"]["host"] == "x"
    assert (post["path"], post["path_info"]) == ("/path", "/path")
    assert (post["status"], post["code"], post["sent"]) == ("200 OK", 200, 2)
    assert post["headers"]["X-App"] == "yes"
    [exit_record] = recorded(log, "on_exit")
    assert seen[-1] == exit_record
    assert exit_record["pid"] == supervisor


def test_hooks_of_a_single_process_and_sighup_there(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    (tmp_path / "conf.py").write_text(RECORDING_CONF.format(log=str(log)))
    server = serve("-c", "conf.py")
    port = server.port
    pid = server.proc.pid
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: any("Received SIGHUP: one process" in line for line in server.lines),
        "SIGHUP logged",
    )
    assert ask(port, "/after-hup") == "ok"  # still serving, same process
    assert server.stop(signal.SIGINT) == 0
    hooks = [record["hook"] for record in records(log)]
    assert hooks == [
        "on_starting",
        "post_worker_init",
        "when_ready",
        "pre_request",
        "post_request",
        "worker_int",
        "worker_exit",
        "on_exit",
    ]
    for record in records(log):
        assert record["pid"] == pid
        if "server_pid" in record:
            assert record["server_pid"] == pid
        if "worker_pid" in record:
            assert (record["worker_pid"], record["age"]) == (pid, 1)


FAILING_REQUEST_HOOKS = """
def pre_request(worker, req):
    raise ValueError("pre boom")

def post_request(worker, req, environ, resp):
    raise ValueError("post boom")

def worker_exit(server, worker):
    raise ValueError("exit boom")
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_hook_is_logged_and_the_request_succeeds(
    serve: Callable[..., ServerProcess], tmp_path: Path, workers: str
) -> None:
    (tmp_path / "conf.py").write_text(FAILING_REQUEST_HOOKS)
    server = serve("-c", "conf.py", "--workers", workers)
    assert ask(server.port, "/") == "ok"
    assert ask(server.port, "/") == "ok"
    assert server.stop(signal.SIGTERM) == 0
    text = "".join(server.lines)
    assert text.count("Hook pre_request failed") == 2
    assert text.count("Hook post_request failed") == 2
    assert "ValueError: pre boom" in text
    assert "ValueError: post boom" in text
    assert "Hook worker_exit failed" in text


@pytest.mark.parametrize(
    ("hook", "workers"),
    [
        ("on_starting", "1"),
        ("post_worker_init", "1"),
        ("when_ready", "1"),
        ("on_starting", "2"),
        ("post_fork", "2"),
        ("post_worker_init", "2"),
        ("when_ready", "2"),
    ],
)
def test_a_failing_startup_hook_stops_startup_with_exit_3(
    tmp_path: Path, hook: str, workers: str
) -> None:
    (tmp_path / "hookapp.py").write_text(APP)
    args = "server, worker" if hook == "post_fork" else "arg"
    (tmp_path / "conf.py").write_text(
        f"def {hook}({args}):\n    raise RuntimeError('no database')\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [
            *SERVE,
            "hookapp",
            "-c",
            "conf.py",
            "--workers",
            workers,
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 3, result.stderr
    message = f"hook {hook} failed: RuntimeError: no database"
    assert result.stderr.count(message) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 10


# -- the Hooks object, and embedding -------------------------------------------------


def test_hooks_refuse_unknown_names_and_values() -> None:
    with pytest.raises(ConfigError, match="'on_strat' is not a server hook"):
        Hooks(on_strat=print)
    with pytest.raises(ConfigError, match="hook 'on_exit' must be a function"):
        Hooks({"on_exit": 3})
    assert not Hooks()
    assert Hooks(on_exit=print).names() == ["on_exit"]


def test_a_startup_hook_raises_and_another_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(*args: object) -> None:
        raise KeyError("x")

    hooks = Hooks(on_starting=boom, child_exit=boom)
    with pytest.raises(HookFailed, match="hook on_starting failed: KeyError: 'x'"):
        hooks.call(Hook.ON_STARTING, None)
    hooks.call(Hook.CHILD_EXIT, None, None)
    assert [r.getMessage() for r in caplog.records] == ["Hook child_exit failed"]
    assert caplog.records[0].exc_info is not None


def test_request_and_response_records() -> None:
    import h11

    req = Request.from_h11(
        h11.Request(method="POST", target="/a/b?c=d", headers=[("Host", "h")])
    )
    assert (req.method, req.uri, req.path, req.query) == (
        "POST",
        "/a/b?c=d",
        "/a/b",
        "c=d",
    )
    assert req.headers == (("host", "h"),)
    assert Response("404 Not Found", (), 0).status_code == 404
    assert Response("", (), 0).status_code == 0


async def test_embedded_server_calls_its_hooks() -> None:
    calls: list[tuple[str, Any]] = []
    loop_thread = threading.current_thread()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"hi"]

    def record(name: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            calls.append((name, (threading.current_thread(), args)))

        return hook

    hooks = {hook.value: record(hook.value) for hook in Hook}
    server = Server(app, port=0, threads=2, hooks=hooks)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /e?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    assert response.endswith(b"\r\n\r\nhi")
    await server.shutdown()
    names = [name for name, _ in calls]
    assert names == [
        "on_starting",
        "post_worker_init",
        "when_ready",
        "pre_request",
        "post_request",
        "worker_exit",
        "on_exit",
    ]
    by_name = dict(calls)
    for name in ("on_starting", "when_ready", "on_exit"):
        assert by_name[name] == (loop_thread, (server,))
    worker = by_name["post_worker_init"][1][0]
    assert isinstance(worker, Worker)
    assert worker.wsgi is app
    assert worker.cfg is server.cfg
    thread, (req_worker, req) = by_name["pre_request"]
    assert thread is not loop_thread
    assert req_worker is worker
    assert (req.path, req.query) == ("/e", "x=1")
    thread, (_, _, environ, resp) = by_name["post_request"]
    assert thread is not loop_thread
    assert environ["PATH_INFO"] == "/e"
    assert (resp.status, resp.sent) == ("200 OK", 2)


STUCK_WORKER = """
import os, time

def worker_exit(server, worker):
    time.sleep(60)  # stuck: the supervisor's deadline ends it

def worker_abort(worker):
    with open({log!r}, "a") as file:
        file.write(f"worker_abort {{worker.pid}} {{os.getpid()}}\\n")
"""


def test_a_worker_that_does_not_drain_in_time_gets_worker_abort(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """With a worker_abort hook, the supervisor's kill deadline (graceful timeout
    + 5 s) sends SIGABRT first: the worker calls the hook, even with its loop gone."""
    log = tmp_path / "abort.log"
    (tmp_path / "conf.py").write_text(STUCK_WORKER.format(log=str(log)))
    server = serve(
        "-c", "conf.py", "--max-requests", "1000", "--timeout-graceful-shutdown", "0.1"
    )
    assert server.port
    [worker] = children(server.proc.pid)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert 5 < time.monotonic() - started < 10  # at the deadline, not 5 s later
    assert log.read_text() == f"worker_abort {worker} {worker}\n"
    assert any("did not drain in time" in line for line in server.lines)


async def test_post_request_sees_the_error_response_of_a_failing_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Response] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("app failure")

    def post_request(
        worker: Worker, req: Request, environ: Any, resp: Response
    ) -> None:
        seen.append(resp)

    async with Server(app, port=0, hooks={"post_request": post_request}) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    assert response.startswith(b"HTTP/1.1 500 ")
    [resp] = seen
    assert resp.status_code == 500
    assert resp.sent > 0  # the error page


async def test_an_embedded_startup_hook_failure_stops_start() -> None:
    def no_database(worker: Worker) -> None:
        raise ConnectionRefusedError("db")

    server = Server(lambda e, s: [], port=0, hooks={"post_worker_init": no_database})
    with pytest.raises(HookFailed, match="post_worker_init failed"):
        await server.start()
    assert not server.started


RUN_WITH_HOOKS = """
import os, signal, sys
import aiogate

def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]

def when_ready(server):
    print("when_ready", server.pid == os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # and so to the end

def on_exit(server):
    print("on_exit", flush=True)

aiogate.run(app, port=0, hooks={"when_ready": when_ready, "on_exit": on_exit})
"""


def test_aiogate_run_takes_hooks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITH_HOOKS],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["when_ready True", "on_exit"]


HANGING_HOOK = """
import time
from pathlib import Path

def {hook}(server):
    Path("in-hook").touch()
    time.sleep(3600)  # a hook that hangs (a dependency that never answers)
"""


@pytest.mark.parametrize("hook", ["when_ready", "on_exit"])
def test_a_hanging_supervisor_hook_does_not_make_the_server_unstoppable(
    tmp_path: Path, hook: str
) -> None:
    """The README's signal table: a second TERM kills the workers and exits 1, even
    while a hook holds the supervisor's main thread (which then reads no signal)."""
    (tmp_path / "hookapp.py").write_text(APP)
    (tmp_path / "conf.py").write_text(HANGING_HOOK.format(hook=hook))
    server = ServerProcess(
        [*SERVE, "hookapp", "--port", "0", "--workers", "2", "-c", "conf.py"], tmp_path
    )
    try:
        if hook == "on_exit":
            ask(server.port)
            server.proc.send_signal(signal.SIGTERM)  # drains, then on_exit hangs
        wait_until((tmp_path / "in-hook").exists, f"{hook} called")
        second = signal.SIGTERM
        if hook == "when_ready":
            # Read by nobody, but counted. (Two of a kind sent at once may reach
            # the process as one, pending signals not being queued: INT after it.)
            server.proc.send_signal(signal.SIGTERM)
            second = signal.SIGINT
        server.proc.send_signal(second)
        assert server.proc.wait(WAIT) == 1
        # (Pending together, the two are delivered in signal-number order.)
        said = ": killing the workers"
        assert any(said in line for line in server.lines), server.lines
    finally:
        server.kill()
