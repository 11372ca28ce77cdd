"""Process management as systemd units and containers use it (issue 15): ``--pid``,
``--user``/``--group``/``--umask``, ``--env-file``, ``--reuse-port`` and sd_notify,
each through real ``python -m aiogate serve`` processes: the pid file on disk, the
workers' ids and umask in ``/proc/PID/status``, notifications received on a datagram
socket the test binds. The parsing rules of env files, and the refusals that need no
server, are checked in-process too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiogate import privileges
from aiogate.config import Config
from aiogate.env_file import EnvFileError, load_env_file, read_env_file
from aiogate.errors import ConfigError
from aiogate.pidfile import PidFile, PidFileTaken
from aiogate.systemd import Notifier
from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_workers import free_port, wait_until

pytestmark = pytest.mark.slow
WAIT = 20.0
ROOT = os.geteuid() == 0

APP = textwrap.dedent(
    """
    import os

    def application(environ, start_response):
        body = f"{os.getpid()} {os.environ.get('GREETING')}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "procapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may write, outside pytest's root-only tmp tree: what a
    server that switched to nobody needs to remove its pid file at exit."""
    path = Path(tempfile.mkdtemp(prefix="aiogate-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        # Stopped (no-op if it exited) and its log read to the end before the pipe
        # is closed: a reader thread still reading a closed pipe fails the test.
        server.stop(signal.SIGTERM)
        server.kill()


def start(
    servers: list[ServerProcess],
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    server = ServerProcess([*SERVE, "procapp", "--port", "0", *args], cwd, env)
    servers.append(server)
    return server


def ask(port: int) -> tuple[int, str]:
    """(the pid of the process that served, its GREETING variable)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:200]
    pid, greeting = body.decode().split(" ", 1)
    return int(pid), greeting


def status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (x.partition(":") for x in lines)}


def run_serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``serve`` that is expected to exit by itself (a refusal)."""
    return subprocess.run(
        [*SERVE, *args], cwd=cwd, capture_output=True, text=True, timeout=WAIT
    )


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(WAIT)
    return child.pid


# -- --pid ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_pid_file_is_written_after_binding_and_removed_on_sigterm(
    app_dir: Path, servers: list[ServerProcess], workers: list[str]
) -> None:
    pid_file = app_dir / "run" / "aiogate.pid"
    pid_file.parent.mkdir()
    server = start(servers, app_dir, "--pid", str(pid_file), *workers)
    port = server.port  # logged once listening; the file was written before that
    assert pid_file.read_text() == f"{server.proc.pid}\n"  # the supervisor's, if any
    assert oct(pid_file.stat().st_mode & 0o777) == "0o644"
    served_by, _ = ask(port)
    assert (served_by == server.proc.pid) == (not workers)
    assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()
    assert list(pid_file.parent.iterdir()) == []  # no temporary file left either


def test_pid_file_removed_on_sigint(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    pid_file = app_dir / "aiogate.pid"
    server = start(servers, app_dir, "--pid", str(pid_file))
    ask(server.port)
    assert server.stop(signal.SIGINT) == 0
    assert not pid_file.exists()


@pytest.mark.parametrize(
    "mode",
    [[], ["--workers", "2"], ["--check-config"]],
    ids=["one", "workers", "check"],
)
def test_a_pid_file_naming_a_running_process_refuses_the_start(
    app_dir: Path, mode: list[str]
) -> None:
    pid_file = app_dir / "aiogate.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: alive
    result = run_serve(app_dir, "procapp", "--port", "0", "--pid", str(pid_file), *mode)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: pid file {str(pid_file)!r} names process {os.getpid()}, which is "
        "running (another server?); stop it or remove the file"
    ]
    assert pid_file.read_text() == f"{os.getpid()}\n"  # left alone


@pytest.mark.parametrize("mode", [[], ["--check-config"]], ids=["serve", "check"])
def test_a_pid_file_in_a_missing_directory_is_said_before_binding(
    app_dir: Path, mode: list[str]
) -> None:
    pid_file = app_dir / "nodir" / "aiogate.pid"
    result = run_serve(app_dir, "procapp", "--port", "0", "--pid", str(pid_file), *mode)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: pid file {str(pid_file)!r}: no directory {str(pid_file.parent)!r}"
    ]


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_no_pid_file_when_the_sockets_cannot_be_bound(
    app_dir: Path, workers: list[str]
) -> None:
    pid_file = app_dir / "aiogate.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_serve(
            app_dir, "procapp", "--port", port, "--pid", str(pid_file), *workers
        )
    assert result.returncode != 0, result.stderr
    assert "in use" in result.stderr
    assert not pid_file.exists()


def test_a_stale_pid_file_is_replaced(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    pid_file = app_dir / "aiogate.pid"
    pid_file.write_text(f"{dead_pid()}\n")
    server = start(servers, app_dir, "--pid", str(pid_file))
    ask(server.port)
    assert pid_file.read_text() == f"{server.proc.pid}\n"


def test_a_pid_file_that_names_another_process_by_then_is_not_removed(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    pid_file = app_dir / "aiogate.pid"
    server = start(servers, app_dir, "--pid", str(pid_file))
    ask(server.port)
    pid_file.write_text("12345\n")  # a second server took the file over
    assert server.stop(signal.SIGTERM) == 0
    assert pid_file.read_text() == "12345\n"


def test_pid_file_rules_in_process(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    ours = PidFile(str(path))
    path.write_text(f"{os.getpid()}\n")  # our own pid: a restarted PID 1's leftover
    ours.check()
    path.write_text("garbage\n")
    ours.check()
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(PidFileTaken):
        ours.check()
    ours.remove()  # never written: leaves the file alone
    assert path.exists()
    ours.write()
    assert path.read_text() == f"{os.getpid()}\n"
    ours.remove()
    assert not path.exists()


# -- --user / --group / --umask -------------------------------------------------------

AS_UID_1000 = textwrap.dedent(
    """
    import os, sys
    os.geteuid = os.getegid = lambda: 1000
    from aiogate.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_user_and_group_are_switched_to_after_binding(
    app_dir: Path, servers: list[ServerProcess], shared_dir: Path
) -> None:
    """As root (the test machine's containers): each worker runs as nobody:nogroup
    with no supplementary groups of root's, imports the app as nobody (no
    --preload: so the app lives where nobody can read it), still serves, and the
    UNIX socket file belongs to it; the supervisor stays root. Not root: the start
    is refused (the simulated cases are in
    test_a_user_switch_without_root_is_refused)."""
    if ROOT:
        (shared_dir / "procapp.py").write_text(APP)
        app_dir = shared_dir
    uds = app_dir / "app.sock"
    args = ["--user", "nobody", "--group", "nogroup", "--workers", "2"]
    if not ROOT:
        result = run_serve(app_dir, "procapp", *args)
        assert result.returncode == 2, result.stderr
        assert "needs root" in result.stderr
        return
    pid_file = app_dir / "aiogate.pid"
    server = start(
        servers,
        app_dir,
        *args,
        "--pid",
        str(pid_file),
        "--bind",
        "127.0.0.1:0",
        "--bind",
        f"unix:{uds}",
    )
    worker, _ = ask(server.port)
    seen = status(worker)
    assert seen["Uid"].split() == ["65534"] * 4, seen["Uid"]
    assert seen["Gid"].split() == ["65534"] * 4, seen["Gid"]
    assert seen["Groups"] == "65534", seen["Groups"]  # initgroups: nobody's only
    assert status(server.proc.pid)["Uid"].split()[0] == "0"
    assert (uds.stat().st_uid, uds.stat().st_gid) == (65534, 65534)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(uds))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    assert any("Running as uid 65534, gid 65534" in line for line in server.lines)
    assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()  # the supervisor, still root, removed them
    assert not uds.exists()


def test_an_app_the_user_may_not_read_is_said_to_be_unreadable(
    app_dir: Path, shared_dir: Path
) -> None:
    """Not "module not found": a worker that switched users (or any process)
    finds the app's directory or file closed to it, and says so."""
    if ROOT:  # pytest's temporary tree is root's alone: nobody may not enter it
        args = ["--user", "nobody", "--group", "nogroup", "--workers", "2"]
        result = run_serve(app_dir, "procapp", "--port", "0", *args)
        assert result.returncode == 3, result.stderr
        assert "the app directory is not readable" in result.stderr
        assert "uid 65534" in result.stderr
        return
    # Not root: a module file this user may not read, in a directory it may.
    (shared_dir / "procapp.py").write_text(APP)
    (shared_dir / "procapp.py").chmod(0)
    result = run_serve(shared_dir, "procapp", "--port", "0")
    assert result.returncode == 3, result.stderr
    assert "is there but not readable" in result.stderr


def test_a_single_server_switches_user_itself(
    app_dir: Path, servers: list[ServerProcess], shared_dir: Path
) -> None:
    if not ROOT:
        result = run_serve(app_dir, "procapp", "--user", "nobody")
        assert result.returncode == 2, result.stderr
        return
    pid_file = shared_dir / "aiogate.pid"  # nobody removes it at exit
    server = start(
        servers, app_dir, "--user", "65534", "--group", "65534", "--pid", str(pid_file)
    )
    served_by, _ = ask(server.port)
    assert served_by == server.proc.pid
    assert status(served_by)["Uid"].split() == ["65534"] * 4
    assert pid_file.read_text() == f"{server.proc.pid}\n"  # written before the switch
    assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()


def test_a_user_switch_without_root_is_refused(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated: the command runs with os.geteuid/getegid answering 1000 (this
    machine's Python lives under /root, which a real nobody cannot even run)."""
    result = subprocess.run(
        [sys.executable, "-c", AS_UID_1000, "serve", "procapp", "--user", "nobody"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: switching to user 'nobody' needs root; this process runs as uid "
        "1000, gid 1000 (start it as root, or drop --user/--group)"
    ]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    with pytest.raises(ConfigError, match=r"^switching to user 'nobody' and group"):
        privileges.resolve_identity("nobody", "nogroup")
    with pytest.raises(ConfigError, match="needs root"):
        privileges.resolve_identity(None, "0")
    # Asking to be who one already is works without root (and changes nothing).
    identity = privileges.resolve_identity("1000", "1000")
    assert identity is not None
    assert (identity.uid, identity.gid) == (1000, 1000)
    privileges.drop_privileges(identity)  # not root: nothing to drop


def test_unknown_users_and_groups_are_refused(app_dir: Path) -> None:
    result = run_serve(app_dir, "procapp", "--user", "no-such-user-here")
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: user: no such user 'no-such-user-here'"
    result = run_serve(app_dir, "procapp", "--group", "no-such-group-here")
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: group: no such group 'no-such-group-here'"
    with pytest.raises(ConfigError, match="has no passwd entry; give its --group"):
        privileges.resolve_identity("54321", None)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_umask_applies_to_the_server_and_its_workers(
    app_dir: Path, servers: list[ServerProcess], workers: list[str]
) -> None:
    server = start(servers, app_dir, "--umask", "0077", *workers)
    served_by, _ = ask(server.port)
    assert status(served_by)["Umask"] == "0077"
    assert status(server.proc.pid)["Umask"] == "0077"


def test_a_umask_that_is_not_octal_is_refused() -> None:
    for text in ("0999", "rwx", "1777"):
        with pytest.raises(ConfigError, match="umask must be octal"):
            Config(umask=text)
    assert Config(umask="022").umask == "022"


# -- --env-file -----------------------------------------------------------------------


def test_env_file_sets_aiogate_settings_and_the_apps_environment(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    env_file = app_dir / ".env"
    env_file.write_text(
        "# settings for this host\n"
        "\n"
        "export AIOGATE_THREADS=3\n"
        "AIOGATE_UMASK = '0027'\n"
        'GREETING="hello ${WHO}"  # a comment\n'
    )
    env = {"WHO": "world"}
    server = start(servers, app_dir, "--env-file", str(env_file), env=env)
    served_by, greeting = ask(server.port)
    assert greeting == "hello world"
    assert status(served_by)["Umask"] == "0027"
    assert any("(3 threads)" in line for line in server.lines), server.lines
    # A flag still wins over the file, and so does a variable already set.
    other = start(
        servers,
        app_dir,
        "--threads",
        "5",
        env={"AIOGATE_ENV_FILE": str(env_file), "GREETING": "set"},
    )
    assert ask(other.port)[1] == "set"
    assert any("(5 threads)" in line for line in other.lines), other.lines


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("A=1\nnot a setting\n", ":2: expected KEY=VALUE, not 'not a setting'"),
        ("1A=x\n", ":1: expected KEY=VALUE, not '1A=x'"),
        ("A='open\n", ":1: A: unterminated single quote"),
        ('A="open\n', ":1: A: unterminated double quote"),
        ('A="x" y\n', ":1: A: unexpected text after the closing quote: 'y'"),
    ],
)
def test_a_malformed_env_file_is_a_one_line_error(
    app_dir: Path, text: str, error: str
) -> None:
    env_file = app_dir / "bad.env"
    env_file.write_text(text)
    result = run_serve(app_dir, "procapp", "--env-file", str(env_file))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Error: {env_file}{error}"]


def test_a_missing_env_file_is_a_one_line_error(app_dir: Path) -> None:
    result = run_serve(app_dir, "procapp", "--env-file", "missing.env")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: env file 'missing.env': No such file or directory"
    ]


def test_env_file_syntax(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        textwrap.dedent(
            r"""
            PLAIN = value with spaces   # comment
            HASH=a#b
            EMPTY=
            SINGLE='no ${EXPANSION} or \n here'
            DOUBLE="line\nnext \"quoted\" \\ end"
            export EXPORTED=yes
            REF=${PLAIN}/x
            DEFAULTED=${UNSET_HERE:-fallback}
            FROM_ENV=${OUTSIDE}
            """
        )
    )
    assert read_env_file(str(path), {"OUTSIDE": "out"}) == {
        "PLAIN": "value with spaces",
        "HASH": "a#b",
        "EMPTY": "",
        "SINGLE": r"no ${EXPANSION} or \n here",
        "DOUBLE": 'line\nnext "quoted" \\ end',
        "EXPORTED": "yes",
        "REF": "value with spaces/x",
        "DEFAULTED": "fallback",
        "FROM_ENV": "out",
    }
    environ = {"PLAIN": "already"}
    assert load_env_file(str(path), environ)["EXPORTED"] == "yes"
    assert environ["PLAIN"] == "already"  # the environment wins over the file
    path.write_bytes(b"A=\xff\n")
    with pytest.raises(EnvFileError, match="not UTF-8"):
        read_env_file(str(path))


# -- --reuse-port ---------------------------------------------------------------------


def test_reuse_port_lets_two_servers_share_a_port(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    port = str(free_port())
    first = start(servers, app_dir, "--port", port, "--reuse-port")
    second = start(servers, app_dir, "--port", port, "--reuse-port")
    assert first.port == second.port == int(port)
    pids = {first.proc.pid, second.proc.pid}
    assert ask(int(port))[0] in pids
    # Without it, the second one cannot bind (the test can fail).
    refused = run_serve(app_dir, "procapp", "--port", port)
    assert refused.returncode != 0, refused.stderr
    assert "in use" in refused.stderr


# -- sd_notify ------------------------------------------------------------------------


class NotifySocket:
    """The datagram socket systemd would listen on, bound by the test."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(WAIT)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def close(self) -> None:
        self.sock.close()


def listening(server: ServerProcess) -> int:
    return sum("Listening on" in line for line in server.lines)


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[NotifySocket, str]]:
    path = str(tmp_path / "notify.sock")
    listener = NotifySocket(path)
    yield listener, path
    listener.close()


@pytest.fixture
def notify_abstract() -> Iterator[tuple[NotifySocket, str]]:
    name = f"aiogate-test-{uuid.uuid4().hex}"
    listener = NotifySocket(b"\0" + name.encode())
    yield listener, "@" + name
    listener.close()


def test_sd_notify_ready_then_stopping_from_a_single_server(
    app_dir: Path, servers: list[ServerProcess], notify_path: tuple[NotifySocket, str]
) -> None:
    listener, name = notify_path
    server = start(servers, app_dir, env={"NOTIFY_SOCKET": name})
    ready = listener.receive()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.proc.pid)
    ask(server.port)  # ready means serving
    server.proc.send_signal(signal.SIGTERM)
    stopping = listener.receive()
    assert stopping["STOPPING"] == "1"
    assert stopping["MAINPID"] == str(server.proc.pid)
    assert server.proc.wait(WAIT) == 0


def test_sd_notify_from_the_supervisor_on_an_abstract_socket(
    app_dir: Path,
    servers: list[ServerProcess],
    notify_abstract: tuple[NotifySocket, str],
) -> None:
    """READY once both workers listen (each has logged it), RELOADING then READY
    around a SIGHUP, STOPPING on SIGTERM; all from the supervisor, none from a
    worker."""
    listener, name = notify_abstract
    server = start(servers, app_dir, "--workers", "2", env={"NOTIFY_SOCKET": name})
    ready = listener.receive()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.proc.pid)
    # Both workers logged "Listening" before telling the supervisor (the reader
    # thread may still be catching up with the log).
    wait_until(lambda: listening(server) == 2, "two workers listening")
    ask(server.port)
    server.proc.send_signal(signal.SIGHUP)
    reloading = listener.receive()
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    again = listener.receive()
    assert again["READY"] == "1"
    # The replacements listened, and the old workers left, before READY.
    wait_until(lambda: listening(server) == 4, "both replacements listening")
    wait_until(
        lambda: sum(" stopped (" in line for line in server.lines) == 2,
        "both old workers gone",
    )
    server.proc.send_signal(signal.SIGTERM)
    assert listener.receive()["STOPPING"] == "1"
    assert server.proc.wait(WAIT) == 0
    listener.sock.settimeout(0)
    with pytest.raises(BlockingIOError):  # and nothing from the workers
        listener.sock.recv(4096)


def test_sd_notify_failures_never_stop_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 4 of systemd.py: nobody listening is logged once, not raised."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    notifier.ready()
    notifier.stopping()
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled
    assert not Notifier({}).enabled
    Notifier({}).ready()  # not under systemd: nothing to do


HOLDING_APP = textwrap.dedent(
    """
    from pathlib import Path

    def application(environ, start_response):
        Path("in-app").touch()
        with open("fifo", "rb") as fifo:  # held until someone writes: never here
            fifo.read()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    """
)


def test_a_forced_exit_still_removes_the_pid_and_socket_files(
    app_dir: Path, servers: list[ServerProcess]
) -> None:
    """A second signal ends a single server at once (exit 1), cutting the request in
    flight; what it wrote at startup goes all the same."""
    (app_dir / "holdapp.py").write_text(HOLDING_APP)
    os.mkfifo(app_dir / "fifo")
    pid_file, uds = app_dir / "a.pid", app_dir / "a.sock"
    binds = ["--bind", "127.0.0.1:0", "--bind", f"unix:{uds}"]
    server = ServerProcess([*SERVE, "holdapp", "--pid", str(pid_file), *binds], app_dir)
    servers.append(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until((app_dir / "in-app").exists, "the request reached the app")
        assert pid_file.exists()
        assert uds.exists()
        server.proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: any("shutting down" in line for line in server.lines),
            "the drain started",
        )
        assert server.stop(signal.SIGTERM) == 1
    assert not pid_file.exists()
    assert not uds.exists()
