"""--reload: the watcher restarts the server when a watched file changes, keeps
watching when the new code does not even import, and stops cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.test_end_to_end import SERVE, ServerProcess

WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_source(greeting: str) -> str:
    return (
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [b{greeting!r}]\n"
    )


def body(port: int) -> bytes | None:
    """The app's answer, or None while no server listens (between restarts)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        data = conn.getresponse().read()
        conn.close()
        return data
    except OSError:
        return None


def wait_for_body(port: int, expected: bytes) -> None:
    """Poll the server in another process until it answers ``expected`` (bounded)."""
    deadline = time.monotonic() + WAIT
    while body(port) != expected:
        assert time.monotonic() < deadline, f"never answered {expected!r}"
        time.sleep(0.1)


@pytest.mark.slow
def test_reload_serves_the_new_code_after_a_change(tmp_path: Path) -> None:
    app = tmp_path / "reloadapp.py"
    app.write_text(app_source("first"))
    port = free_port()
    server = ServerProcess(
        [*SERVE, "reloadapp", "--port", str(port), "--reload"], cwd=tmp_path
    )
    try:
        wait_for_body(port, b"first")
        app.write_text(app_source("second"))
        wait_for_body(port, b"second")
        # A broken change: the child fails to import; the watcher waits for a fix.
        app.write_text("def application(:\n")
        deadline = time.monotonic() + WAIT
        while body(port) is not None:
            assert time.monotonic() < deadline, "broken app still served"
            time.sleep(0.1)
        (tmp_path / "notes.txt").write_text("not a .py file: ignored")
        app.write_text(app_source("fixed"))
        wait_for_body(port, b"fixed")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    log = "".join(server.lines)
    assert "Watching" in log
    assert "Changed: reloadapp.py; restarting" in log
    assert "notes.txt" not in log


def test_reload_ends_with_the_childs_code_when_the_port_is_taken(
    tmp_path: Path,
) -> None:
    """An address in use is no edit away from working: the watcher exits 5 with the
    child, rather than watching on with nothing served."""
    (tmp_path / "reloadapp.py").write_text(app_source("first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(
            [*SERVE, "reloadapp", "--port", str(port), "--reload"], cwd=tmp_path
        )
        try:
            assert server.proc.wait(WAIT) == 5
        finally:
            server.kill()
    assert any("cannot listen on 127.0.0.1:" in line for line in server.lines)


def test_reload_without_watchfiles_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    from aiogate.cli import main

    real_import = builtins.__import__

    def no_watchfiles(name: str, *args: object, **kwargs: object) -> object:
        if name == "watchfiles":
            raise ImportError("no watchfiles here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_watchfiles)
    monkeypatch.setattr("aiogate.cli.configure_logging", lambda *args: None)
    assert main(["serve", "aiogate.demo:app", "--reload"]) == 2
    assert "pip install 'aiogate[reload]'" in capsys.readouterr().err
