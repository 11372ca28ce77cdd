"""gunicorn's and uvicorn's command lines on ``aiogate serve`` (issue 15, items 1 and 7):
their spellings, warnings and refusals, bind failures and ``--check-config`` parity.

In-process tests run ``main()`` with ``aiogate.server.run`` replaced by a recorder; the
command lines of the issue run as real ``python -m aiogate serve`` subprocesses
answering real requests on loopback, with bounded waits.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aiogate.cli
import aiogate.server
from aiogate.cli import build_parser, main
from aiogate.config import Config
from aiogate.errors import ConfigError
from aiogate.logs import configure_logging
from aiogate.peer_flags import ELSEWHERE, PEER_FLAGS, bare_switches, peer_table_markdown
from tests.test_readme import ROOT, load_updater

TIMEOUT = 20.0
APP = "aiogate.demo:app"


class FakeRun:
    """Stands in for ``aiogate.server.run``: records the ``Config`` it was given."""

    def __init__(self) -> None:
        self.configs: list[Config] = []

    def __call__(self, app: Any, config: Config, **kwargs: Any) -> None:
        self.configs.append(config)

    @property
    def config(self) -> Config:
        assert len(self.configs) == 1
        return self.configs[0]


@pytest.fixture(autouse=True)
def clean_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIOGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(os.getcwd())  # --chdir changes it: restored after each test


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    fake = FakeRun()
    monkeypatch.setattr(aiogate.server, "run", fake)
    monkeypatch.setattr(aiogate.cli, "configure_logging", lambda *args: None)
    return fake


# -- spellings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["-b", "127.0.0.1:9000", "-b", "unix:/run/a.sock"],
            {"bind": ("127.0.0.1:9000", "unix:/run/a.sock")},
        ),
        (["-t", "30"], {"timeout_request": 30.0}),
        (["--timeout", "7"], {"timeout_request": 7.0}),
        (["--graceful-timeout", "3"], {"timeout_graceful_shutdown": 3.0}),
        (["--keep-alive", "2"], {"timeout_keep_alive": 2.0}),
        (["--access-logfile", "-"], {"access_log": True}),
        (
            ["--access-logfile", "/var/log/a.log"],
            {"access_log": True, "access_log_file": "/var/log/a.log"},
        ),
        (["--error-logfile", "-"], {}),
        (["--log-file", "/var/log/e.log"], {"error_log_file": "/var/log/e.log"}),
        (["--access-logformat", "%(h)s %(s)s"], {"access_log_format": "%(h)s %(s)s"}),
        (["--worker-connections", "500"], {"limit_connections": 500}),
        (["--limit-request-field_size", "4000"], {"limit_request_field_size": 4000}),
        (["--logconfig", "log.json"], {"log_config": "log.json"}),
        (["--log-config-json", "log.json"], {"log_config": "log.json"}),
        (["--reload-dir", "a", "--reload-dir", "b"], {"reload_dirs": "a,b"}),
        (
            ["--reload-include", "*.py", "--reload-include", "*.html"],
            {"reload_include": "*.py,*.html"},
        ),
        (["--no-proxy-headers"], {"proxy_headers": "off"}),
        (["--proxy-headers"], {"proxy_headers": "x-forwarded"}),
        (["--proxy-headers", "forwarded"], {"proxy_headers": "forwarded"}),
        (["--no-server-header"], {"server_header": ""}),
        (["--server-header"], {}),
        (["--server-header", "Gate"], {"server_header": "Gate"}),
        (["--log-level", "trace"], {"log_level": "debug"}),
        (["--header-map", "drop", "--interface", "wsgi", "--date-header"], {}),
    ],
)
def test_peer_spellings_set_aiogate_settings(
    fake_run: FakeRun, argv: list[str], expected: dict[str, Any]
) -> None:
    assert main(["serve", APP, *argv]) == 0
    assert fake_run.config == Config(**expected)


def test_the_target_may_follow_a_bare_switch(fake_run: FakeRun) -> None:
    # uvicorn's --proxy-headers is a switch: the app after it is the app, not a mode.
    assert main(["serve", "--proxy-headers", APP, "--server-header"]) == 0
    assert fake_run.config == Config(proxy_headers="x-forwarded")
    assert bare_switches(["serve", "--", "--proxy-headers"]) == [
        "serve",
        "--",
        "--proxy-headers",
    ]


def test_certificate_flags(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--certfile", "c.pem", "--keyfile", "k.pem", "--ca-certs", "ca.pem"]
    for reqs, expected in (
        ("2", "required"),
        ("1", "optional"),
        ("REQUIRED", "required"),
    ):
        assert main(["serve", APP, *argv, "--cert-reqs", reqs, "--print-config"]) == 0
        out = capsys.readouterr().out
        assert f'ssl_cert_reqs = "{expected}"  # flag' in out
        assert 'ssl_certfile = "c.pem"  # flag' in out
        assert 'ssl_ca_certs = "ca.pem"  # flag' in out
        assert 'ssl_keyfile = "k.pem"  # flag' in out
    # uvicorn's --ssl-cert-reqs is aiogate's own option, and takes the numbers too.
    ssl = [
        "--ssl-certfile",
        "c.pem",
        "--ssl-ca-certs",
        "ca.pem",
        "--ssl-cert-reqs",
        "2",
    ]
    assert main(["serve", APP, *ssl, "--print-config"]) == 0
    assert 'ssl_cert_reqs = "required"  # flag' in capsys.readouterr().out
    assert main(["serve", APP, "--cert-reqs", "7"]) == 2
    assert "argument --cert-reqs: invalid choice: '7'" in capsys.readouterr().err


def test_process_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    # (--print-config: with these set, serve would start a supervisor in this process)
    argv = ["-w", "3", "--limit-max-requests", "100", "--print-config"]
    assert main(["serve", APP, *argv]) == 0
    out = capsys.readouterr().out
    assert "workers = 3  # flag" in out
    assert "max_requests = 100  # flag" in out
    # A warning reaches stderr here too, where no logging is set up.
    assert main(["serve", APP, "-k", "sync", "--print-config"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("aiogate serve: warning: -k sync: aiogate always runs")
    assert main(["serve", APP, "-w", "x"]) == 2
    assert "argument -w: invalid int value: 'x'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "warning"),
    [
        (["-k", "gthread"], "-k gthread: aiogate always runs the app in a thread pool"),
        (["--worker-class", "sync"], "--worker-class sync: aiogate always runs"),
        (
            ["--worker-tmp-dir", "/dev/shm"],
            "--worker-tmp-dir /dev/shm: aiogate's workers keep no heartbeat file",
        ),
        (["--http", "httptools"], "--http httptools: aiogate parses HTTP/1.1 with h11"),
        (["--use-colors"], "--use-colors: aiogate's log lines have no colours"),
        (["--lifespan", "on"], "--lifespan on: WSGI has no WebSockets and no lifespan"),
        (["-n", "web"], "-n web: aiogate does not set process titles"),
        (["--no-date-header"], "--no-date-header: aiogate always sends Date"),
    ],
)
def test_harmless_flags_are_accepted_with_a_warning(
    fake_run: FakeRun,
    caplog: pytest.LogCaptureFixture,
    argv: list[str],
    warning: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiogate.error"):
        assert main(["serve", APP, *argv]) == 0
    assert fake_run.config == Config()
    (record,) = [r for r in caplog.records if r.name == "aiogate.error"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(warning)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["-k", "gevent"], "-k gevent: aiogate runs the app in threads (no greenlets, no ASGI)"),
        (["-k", "uvicorn.workers.UvicornWorker"], "no ASGI"),
        (["--interface", "asgi3"], "--interface asgi3: aiogate serves WSGI apps only"),
        (["--statsd-host", "localhost:8125"], "--metrics-path /metrics"),
        (["--log-syslog"], "--log-syslog: use --log-config with a logging.handlers.SysLogHandler"),
        (["-D"], "-D: aiogate stays in the foreground"),
        (["--header", "X-A:1"], "--header X-A:1: aiogate adds no configured response headers"),
        (["--header-map", "dangerous"], "aiogate drops header names with _"),
        (["--strip-header-spaces"], "aiogate answers 400 to whitespace before a header's colon"),
        (["--h11-max-incomplete-event-size", "65536"], "--limit-request-field-size"),
        (["--paste", "development.ini"], "aiogate does not read PasteDeploy files"),
        (["--reload-extra-file", "x.html"], "--reload-dirs DIR and --reload-include PATTERN"),
        (["-e", "NOVALUE"], "-e NOVALUE: expected NAME=VALUE"),
        (["--log-config-json", "log.conf"], "its name ends in .json"),
    ],
)  # fmt: skip
def test_flags_that_would_change_behaviour_are_refused_in_one_line(
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    reason: str,
) -> None:
    assert main(["serve", APP, *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("aiogate serve: error: ")
    assert reason in lines[0]
    assert lines[1] == "Run 'aiogate serve --help' for the options."
    assert fake_run.configs == []


def test_every_listed_flag_is_handled_and_none_hides_an_aiogate_option() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    serve = commands.choices["serve"]  # type: ignore[index]
    fields = {field.name for field in dataclasses.fields(Config)}
    for peer in PEER_FLAGS:
        if not fields.issuperset(peer.needs):
            continue  # its setting comes with another part of issue 15
        for flag in peer.flags:
            if flag in ELSEWHERE:
                continue  # added by another part of issue 15
            action = serve._option_string_actions.get(flag)
            assert action is not None, f"{flag} is in the table but not accepted"
            if peer.apply is not None and type(action).__name__ == "_PeerAction":
                assert action.help == "==SUPPRESS==", flag  # hidden from --help


def test_peer_flags_stay_out_of_serve_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    options, pointer, _ = out.partition("gunicorn's and uvicorn's spellings (-b, -w")
    assert pointer, "no line pointing at the README table"
    assert "'Coming from gunicorn or uvicorn' in the README" in out
    for hidden in ("--worker-class", "--access-logfile", "--keep-alive", "-k ", "-w "):
        assert hidden not in options


def test_readme_table_is_generated_from_the_records() -> None:
    text = (ROOT / "README.md").read_text()
    updater = load_updater()
    generated = updater.with_table(
        text, peer_table_markdown(), updater.PEER_START, updater.PEER_END
    )
    assert generated == text, "README.md peer table is stale: run docs/update_readme.py"
    for flag in ("`-b`", "`-k`", "`--access-logfile`", "`--proxy-headers`", "`--pid`"):
        assert flag in peer_table_markdown()


# -- --chdir, --pythonpath, -e ----------------------------------------------------------


def write_app(directory: Path) -> None:
    (directory / "peerapp.py").write_text(
        textwrap.dedent(
            """
            import json, os

            def application(environ, start_response):
                keys = ("SCRIPT_NAME", "PATH_INFO", "REMOTE_ADDR", "wsgi.multiprocess")
                body = json.dumps(
                    {key: environ.get(key) for key in keys}
                    | {"cwd": os.getcwd(), "pid": os.getpid(),
                       "FROM_ENV": os.environ.get("FROM_ENV")}
                ).encode()
                start_response("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body)))])
                return [body]
            """
        )
    )


def test_chdir_pythonpath_and_env_before_the_import(
    fake_run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FROM_ENV", raising=False)
    project, libs = tmp_path / "project", tmp_path / "libs"
    project.mkdir()
    libs.mkdir()
    write_app(project)
    (libs / "peerlib.py").write_text("VALUE = 1\n")
    argv = ["serve", "peerapp", "--chdir", str(project), "--pythonpath", str(libs)]
    assert main([*argv, "-e", "FROM_ENV=yes", "--env", "OTHER=a=b"]) == 0
    assert Path.cwd() == project
    imported = sys.modules.pop("peerapp")
    assert Path(imported.__file__ or "").parent == project  # from the new directory
    spec = importlib.util.find_spec("peerlib")
    assert spec is not None
    assert Path(spec.origin or "").parent == libs
    assert (os.environ["FROM_ENV"], os.environ["OTHER"]) == ("yes", "a=b")
    monkeypatch.delenv("OTHER")
    assert main(["serve", "peerapp", "--chdir", str(tmp_path / "missing")]) == 2


# -- log files --------------------------------------------------------------------------


def test_log_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    try:
        configure_logging("info", None, str(access), str(errors))
        logging.getLogger("aiogate.error").info("to the file")
        logging.getLogger("aiogate.access").info('"GET / HTTP/1.1" 200')
    finally:
        configure_logging("info")  # back to the streams (closes the files)
    assert errors.read_text().endswith("[INFO] to the file\n")
    assert access.read_text() == '"GET / HTTP/1.1" 200\n'
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ConfigError, match="cannot open log file"):
        configure_logging("info", None, str(tmp_path / "no" / "dir.log"))
    with pytest.raises(ConfigError, match="do not apply with log_config"):
        Config(log_config="log.json", error_log_file=str(errors))


# -- the command lines, for real ------------------------------------------------


class Process:
    """``python -m aiogate serve ...``, its stdout and stderr read by threads."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiogate", "serve", *argv],
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith("AIOGATE_")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.proc.stdout, self.out),
                (self.proc.stderr, self.err),
            )
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, text: str, lines: list[str], count: int = 1) -> None:
        deadline = time.monotonic() + TIMEOUT
        while sum(text in line for line in list(lines)) < count:
            assert self.proc.poll() is None, "".join(self.err)
            assert time.monotonic() < deadline, f"no {text!r}: {''.join(self.err)}"
            time.sleep(0.02)  # polling another process's output, bounded

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(TIMEOUT)
        for reader in self.readers:
            reader.join(TIMEOUT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        for reader in self.readers:
            reader.join(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def listening_port(server: Process, count: int) -> int:
    """The port of the ``Listening on`` lines (port 0 was asked for), once ``count``
    of them (one per worker) are logged."""
    server.wait_for("Listening on http://127.0.0.1:", server.err, count)
    ports = {
        line.rsplit(":", 1)[1].split()[0] for line in server.err if "Listening" in line
    }
    (port,) = ports  # every worker on the one shared socket
    return int(port)


def request(port: int, path: str, headers: str = "") -> tuple[bytes, socket.socket]:
    """One keep-alive request; the response and the still-open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(
        line.split(b":")[1] for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ))  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body, sock


def print_config(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "aiogate", "serve", *argv, "--print-config"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return result.stdout


def test_a_gunicorn_command_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_app(project)
    argv = [
        "peerapp", "--chdir", str(project), "-b", "127.0.0.1:0", "-w", "2",
        "-t", "5", "--graceful-timeout", "3", "--keep-alive", "2",
        "--access-logfile", "-", "--error-logfile", "-",
    ]  # fmt: skip
    settings = print_config(argv, tmp_path)
    for line in (
        'bind = ["127.0.0.1:0"]  # flag',
        "workers = 2  # flag",
        "timeout_request = 5.0  # flag",
        "timeout_graceful_shutdown = 3.0  # flag",
        "timeout_keep_alive = 2.0  # flag",
        "access_log = true  # flag",
    ):
        assert line in settings
    server = Process(argv, cwd=tmp_path)
    try:
        server.wait_for("Started worker", server.err, count=2)  # -w 2
        port = listening_port(server, count=2)
        response, sock = request(port, "/hello")
        with sock:
            assert response.startswith(b"HTTP/1.1 200 ")
            seen = json.loads(response.partition(b"\r\n\r\n")[2])
            assert seen["cwd"] == str(project)  # --chdir, then imported from there
            assert seen["wsgi.multiprocess"] is True
            # --keep-alive 2: the idle connection is closed after about 2 s (gunicorn's
            # meaning; aiogate's default would be 5 s).
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert 1.5 <= time.monotonic() - started < 4.5
        # --access-logfile -: the request's line on stdout; the error log on stderr.
        server.wait_for('"GET /hello HTTP/1.1" 200', server.out)
        assert server.stop() == 0
    finally:
        server.kill()
    assert not any("Listening" in line for line in server.out)
    # -t is not gunicorn's worker kill: the log says what it became.
    assert any("-t 5: taken as --timeout-request" in line for line in server.err)
    assert not any("Traceback" in line for line in server.err)


def test_a_uvicorn_command_line(tmp_path: Path) -> None:
    write_app(tmp_path)
    argv = [
        "peerapp", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        "--proxy-headers", "--forwarded-allow-ips", "*", "--timeout-keep-alive", "2",
        "--root-path", "/api",
    ]  # fmt: skip
    settings = print_config(argv, tmp_path)
    assert 'proxy_headers = "x-forwarded"  # flag' in settings
    assert 'root_path = "/api"  # flag' in settings
    server = Process(argv, cwd=tmp_path)
    try:
        port = listening_port(server, count=2)
        response, sock = request(port, "/api/items", "X-Forwarded-For: 203.0.113.9\r\n")
        sock.close()
        assert response.startswith(b"HTTP/1.1 200 ")
        seen = json.loads(response.partition(b"\r\n\r\n")[2])
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/api", "/items")
        assert seen["REMOTE_ADDR"] == "203.0.113.9"  # trusted proxy header
        assert seen["wsgi.multiprocess"] is True
        assert server.stop() == 0
    finally:
        server.kill()


# -- friendly failures ------------------------------------------------------------------


def run_serve(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiogate", "serve", *argv],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIOGATE_")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("workers", [[], ["-w", "2"]], ids=["single", "workers"])
def test_a_port_in_use_exits_5_naming_the_address(workers: list[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_serve(APP, "-b", f"127.0.0.1:{port}", *workers)
    assert result.returncode == 5
    assert result.stderr.endswith(
        f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )
    assert "Traceback" not in result.stderr


def test_a_missing_socket_directory_exits_5(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.sock"
    result = run_serve(APP, "--uds", str(path))
    assert result.returncode == 5
    assert result.stderr.endswith(
        f"Error: cannot listen on unix:{path}: no such file or directory\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "127.0.0.1,"],
        ["--host", "host.invalid"],
        ["-b", "host.invalid:8000"],
        ["--uds", "{file}"],
        ["--fd", "{fd}"],
    ],
    ids=["stray-comma", "unknown-host", "unknown-bind", "uds-not-a-socket", "fd"],
)
def test_check_config_refuses_what_serve_refuses(
    tmp_path: Path, argv: list[str]
) -> None:
    taken = tmp_path / "not-a-socket"
    taken.write_text("")
    # A descriptor that is a file, not a socket: 0 (stdin is /dev/null here).
    argv = [arg.format(file=taken, fd=0) for arg in argv]
    checked = run_serve(APP, *argv, "--check-config")
    served = run_serve(APP, *argv)
    assert (checked.returncode, served.returncode) == (2, 2)
    assert checked.stderr.startswith("Error: ")
    assert checked.stderr == served.stderr.splitlines(keepends=True)[-1]
    assert taken.read_text() == ""  # left alone


def test_log_files_of_a_served_process(tmp_path: Path) -> None:
    """gunicorn's --access-logfile and --error-logfile with files, in two workers."""
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    argv = [APP, "-b", "127.0.0.1:0", "-w", "2", "--access-logfile", str(access)]
    server = Process([*argv, "--error-logfile", str(errors)], cwd=ROOT)

    def wait_for_file(path: Path, text: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while text not in (content := path.read_text() if path.exists() else ""):
            assert server.proc.poll() is None, "".join(server.err)
            assert time.monotonic() < deadline, f"no {text!r} in {path}: {content}"
            time.sleep(0.02)  # polling another process's file, bounded
        return content

    try:
        logged = wait_for_file(errors, "Listening on http://127.0.0.1:")
        port = int(logged.split("Listening on http://127.0.0.1:")[1].split()[0])
        response, sock = request(port, "/logged")
        sock.close()
        assert response.startswith(b"HTTP/1.1 200 ")
        wait_for_file(access, '"GET /logged HTTP/1.1" 200')
        assert server.stop() == 0
    finally:
        server.kill()
    assert "Stopped" in errors.read_text()
    assert server.err == []  # nothing left on stderr: it all went to the file
    assert server.out == []


def test_short_flags_wait_for_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's -p/-u/-g/-m join the parser once --pid, --user, --group and --umask
    are Config fields (process management, merged separately): here a stand-in
    ``pid`` option shows the mechanism."""
    import aiogate.peer_flags
    from aiogate.options import Option, config_options

    def parse(argv: list[str]) -> Any:
        parser = build_parser()
        args, extra = parser.parse_known_args(["serve", APP, *argv])
        return args, extra

    fields = {option.dest for option in config_options()}
    if "pid" not in fields:
        assert parse(["-p", "/run/app.pid"])[1] == ["-p", "/run/app.pid"]
        stand_in = Option("pid", "--pid", "AIOGATE_PID", "", None, str)
        monkeypatch.setattr(
            aiogate.peer_flags,
            "config_options",
            lambda: (*config_options(), stand_in),
        )
    args, extra = parse(["-p", "/run/app.pid"])
    assert (args.pid, extra) == ("/run/app.pid", [])
