"""The ``aiogate`` command, its ``AIOGATE_*`` variables, exit codes and logging setup.

``aiogate.server.run`` is replaced by a recorder, so no server starts here: the tests
check what the command would serve (which app, which ``Config``). ``cgi`` and
``python -m aiogate`` run in real subprocesses, with timeouts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aiogate
import aiogate.cli
import aiogate.importer
import aiogate.options
import aiogate.server
from aiogate import demo
from aiogate.cli import app_options, config_options, main, usage_table_markdown
from aiogate.config import Config, option_fields
from aiogate.errors import AppImportError, BindError
from aiogate.handlers import ServerHandler
from aiogate.logs import configure_logging, logging_config

SUBPROCESS_TIMEOUT = 60
REPO = Path(__file__).resolve().parent.parent


class FakeRun:
    """Stands in for ``aiogate.server.run``: records what it was asked to serve."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Config]] = []
        self.raises: BaseException | None = None

    def __call__(self, app: Any, config: Config, **kwargs: Any) -> None:
        self.calls.append((app, config))
        if self.raises is not None:
            raise self.raises

    @property
    def config(self) -> Config:
        assert len(self.calls) == 1
        return self.calls[0][1]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIOGATE_"):
            monkeypatch.delenv(name)
    # import_app puts the app directory first on sys.path; undo that after each test.
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The startup steps, in order; logging setup is recorded, not performed."""
    seen: list[str] = []
    real_import_app = aiogate.importer.import_app

    def record_logging(level: str, *files: str | None) -> None:
        seen.append(f"logging:{level}")

    def record_import(target: str, **kwargs: Any) -> Any:
        seen.append(f"import:{target}")
        return real_import_app(target, **kwargs)

    monkeypatch.setattr(aiogate.cli, "configure_logging", record_logging)
    monkeypatch.setattr(aiogate.cli, "import_app", record_import)
    return seen


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> FakeRun:
    fake = FakeRun()
    monkeypatch.setattr(aiogate.server, "run", fake)
    return fake


def write_module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


# -- serve: options ---------------------------------------------------------------


def test_serve_with_defaults(fake_run: FakeRun, events: list[str]) -> None:
    assert main(["serve", "aiogate.demo:app"]) == 0
    app, config = fake_run.calls[0]
    assert app is demo.app
    assert config == Config()
    assert events == ["logging:info", "import:aiogate.demo:app"]


def test_module_alone_serves_its_application(fake_run: FakeRun) -> None:
    assert main(["serve", "aiogate.demo"]) == 0
    assert fake_run.calls[0][0] is demo.application


def test_every_config_field_has_one_option() -> None:
    assert [option.dest for option in config_options()] == [
        field.name for field in option_fields()
    ]


def test_serve_help_lists_every_flag_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for field in option_fields():
        flag = "--" + field.name.replace("_", "-")
        assert flag in out
        assert "AIOGATE_" + field.name.upper() in out
    for name in ("TARGET", "--factory", "--app-dir", "AIOGATE_APP", "AIOGATE_FACTORY"):
        assert name in out
    assert "(default: 8000; env: AIOGATE_PORT)" in out


def test_flags_of_every_type(fake_run: FakeRun) -> None:
    argv = [
        "serve",
        "aiogate.demo:app",
        "--host", "0.0.0.0",
        "--port", "9000",
        "--threads", "3",
        "--root-path", "/api",
        "--server-header", "",
        "--log-level", "debug",
        "--loop", "asyncio",
        "--timeout-keep-alive", "2.5",
        "--limit-request-line", "100",
        "--expose-tracebacks",
    ]  # fmt: skip
    assert main(argv) == 0
    assert fake_run.config == Config(
        host="0.0.0.0",
        port=9000,
        threads=3,
        root_path="/api",
        server_header="",
        log_level="debug",
        loop="asyncio",
        timeout_keep_alive=2.5,
        limit_request_line=100,
        expose_tracebacks=True,
    )


def test_boolean_flags_have_a_negative_form(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_EXPOSE_TRACEBACKS", "true")
    assert main(["serve", "aiogate.demo:app", "--no-expose-tracebacks"]) == 0
    assert fake_run.config.expose_tracebacks is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "argument --port: invalid int value: 'http'"),
        (["--timeout-write", "soon"], "invalid float value: 'soon'"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_flags_are_usage_errors(
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert main(["serve", "aiogate.demo:app", *argv]) == 2
    assert message in capsys.readouterr().err
    assert fake_run.calls == []


def test_environment_variables_set_options(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_PORT", "9001")
    monkeypatch.setenv("AIOGATE_TIMEOUT_WRITE", "1.5")
    monkeypatch.setenv("AIOGATE_LOOP", "asyncio")
    monkeypatch.setenv("AIOGATE_EXPOSE_TRACEBACKS", "YES")
    monkeypatch.setenv("AIOGATE_SERVER_HEADER", "")
    assert main(["serve", "aiogate.demo:app"]) == 0
    assert fake_run.config == Config(
        port=9001,
        timeout_write=1.5,
        loop="asyncio",
        expose_tracebacks=True,
        server_header="",
    )


def test_a_list_option_from_flags_variable_and_file(
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``bind`` is a ``tuple[str, ...]`` field: the flag repeats, the variable
    separates with spaces or commas, the settings file takes an array (or a string)."""
    binds = ("127.0.0.1:8001", "[::1]:8001", "unix:/run/a.sock", "fd://3")
    argv = ["serve", "aiogate.demo:app"]
    assert main([*argv, *(f"--bind={bind}" for bind in binds)]) == 0
    monkeypatch.setenv(
        "AIOGATE_BIND", "127.0.0.1:8001, [::1]:8001 unix:/run/a.sock,fd://3"
    )
    assert main(argv) == 0
    monkeypatch.delenv("AIOGATE_BIND")
    settings = tmp_path / "settings.toml"
    settings.write_text("bind = [" + ", ".join(f'"{bind}"' for bind in binds) + "]\n")
    assert main([*argv, "--config", str(settings)]) == 0
    settings.write_text('bind = "unix:/run/a.sock"\n')
    assert main([*argv, "--config", str(settings)]) == 0
    assert [config.bind for _, config in fake_run.calls] == [binds] * 3 + [
        ("unix:/run/a.sock",)
    ]
    assert main([*argv, "--bind", "unix:/x", "--print-config"]) == 0
    assert 'bind = ["unix:/x"]  # flag' in capsys.readouterr().out
    settings.write_text("bind = [1]\n")
    assert main([*argv, "--config", str(settings)]) == 2
    assert "expected an array of strings" in capsys.readouterr().err
    assert main([*argv, "--bind", "127.0.0.1"]) == 2  # no port
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert len(fake_run.calls) == 4


def test_flag_beats_environment_beats_default(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_PORT", "9001")
    monkeypatch.setenv("AIOGATE_THREADS", "5")
    assert main(["serve", "aiogate.demo:app", "--port", "9002"]) == 0
    assert (fake_run.config.port, fake_run.config.threads) == (9002, 5)
    assert fake_run.config.host == Config().host


def test_flag_wins_over_a_bad_variable(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_PORT", "not-a-port")
    assert main(["serve", "aiogate.demo:app", "--port", "9003"]) == 0
    assert fake_run.config.port == 9003


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AIOGATE_PORT", "eighty", "AIOGATE_PORT='eighty': invalid literal for int()"),
        ("AIOGATE_TIMEOUT_KEEP_ALIVE", "", "AIOGATE_TIMEOUT_KEEP_ALIVE=''"),
        ("AIOGATE_EXPOSE_TRACEBACKS", "maybe", "AIOGATE_EXPOSE_TRACEBACKS='maybe'"),
        ("AIOGATE_LOG_LEVEL", "loud", "AIOGATE_LOG_LEVEL='loud': expected one of"),
        ("AIOGATE_FACTORY", "2", "AIOGATE_FACTORY='2'"),
    ],
)
def test_bad_environment_values_name_the_variable(
    fake_run: FakeRun,
    events: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve", "aiogate.demo:app"]) == 2
    err = capsys.readouterr().err
    assert f"aiogate serve: error: environment variable {message}" in err
    assert "Traceback" not in err
    assert fake_run.calls == []
    assert events == []


def test_config_error_exits_2_before_logging_and_import(
    fake_run: FakeRun, events: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "aiogate.demo:app", "--port", "70000"]) == 2
    assert capsys.readouterr().err == "Error: port must be 0-65535, not 70000\n"
    assert fake_run.calls == []
    assert events == []


def test_config_error_from_environment(
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOGATE_ROOT_PATH", "api/")
    assert main(["serve", "aiogate.demo:app"]) == 2
    assert "Error: root_path must start with /" in capsys.readouterr().err


# -- serve: the app ---------------------------------------------------------------


def test_app_from_environment(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_APP", "aiogate.demo:app")
    assert main(["serve"]) == 0
    assert fake_run.calls[0][0] is demo.app


def test_target_beats_app_variable(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_APP", "no.such.module:app")
    assert main(["serve", "aiogate.demo:app"]) == 0
    assert fake_run.calls[0][0] is demo.app


def test_no_app_is_a_usage_error(
    fake_run: FakeRun, events: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "aiogate serve: error: no app given: pass TARGET or set AIOGATE_APP\n"
        "Run 'aiogate serve --help' for the options.\n"
    )
    assert events == []


@pytest.mark.parametrize(
    "argv",
    [["--no-such-option"], ["--port", "http"], ["--log-level", "loud"]],
)
def test_a_usage_error_is_one_line_and_a_hint_not_the_whole_usage(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["serve", "aiogate.demo:app", *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("aiogate serve: error: ")
    assert lines[1] == "Run 'aiogate serve --help' for the options."


def test_choices_are_taken_in_any_case(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gunicorn users write --log-level DEBUG; TLS versions keep their own spelling.
    monkeypatch.setenv("AIOGATE_LOOP", "AsyncIO")
    argv = ["--log-level", "DEBUG", "--ssl-minimum-version", "tlsv1.3"]
    assert main(["serve", "aiogate.demo:app", *argv]) == 0
    config = fake_run.config
    assert (config.log_level, config.loop) == ("debug", "asyncio")
    assert config.ssl_minimum_version == "TLSv1.3"


FACTORY = """
def create_app():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"from factory"]
    return app
"""


def test_factory_and_app_dir(fake_run: FakeRun, tmp_path: Path) -> None:
    name = write_module(tmp_path, "cli_factory_app", FACTORY)
    argv = ["serve", f"{name}:create_app", "--factory", "--app-dir", str(tmp_path)]
    assert main(argv) == 0
    app = fake_run.calls[0][0]
    assert app({}, lambda *args: None) == [b"from factory"]
    assert sys.path[0] == str(tmp_path)


def test_factory_and_app_dir_from_environment(
    fake_run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, "cli_factory_env", FACTORY)
    monkeypatch.setenv("AIOGATE_APP", f"{name}:create_app")
    monkeypatch.setenv("AIOGATE_FACTORY", "1")
    monkeypatch.setenv("AIOGATE_APP_DIR", str(tmp_path))
    assert main(["serve"]) == 0
    assert fake_run.calls[0][0]({}, lambda *args: None) == [b"from factory"]


def test_no_factory_flag_overrides_variable(
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOGATE_FACTORY", "on")
    assert main(["serve", "aiogate.demo:app", "--no-factory"]) == 0
    assert fake_run.calls[0][0] is demo.app


def test_app_dir_defaults_to_current_directory(
    fake_run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, "cli_cwd_app", FACTORY)
    monkeypatch.chdir(tmp_path)
    assert main(["serve", f"{name}:create_app", "--factory"]) == 0
    assert sys.path[0] == str(tmp_path)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "aiogate_no_such_module_xyz:app",
            "module 'aiogate_no_such_module_xyz' not found",
        ),
        ("aiogate.demo:nothing", "'aiogate.demo' has no attribute 'nothing'"),
        ("aiogate.demo:BODY_PREVIEW_SIZE", "is not callable (it is a int)"),
        ("not a target", "malformed target"),
    ],
)
def test_import_failure_exits_3_with_one_line(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    assert main(["serve", target]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Error: ")
    assert message in err
    assert err.count("\n") == 1
    assert fake_run.calls == []


def test_import_raising_exits_3_without_traceback(
    fake_run: FakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module(tmp_path, "cli_raises", "raise RuntimeError('no database')\n")
    assert main(["serve", f"{name}:app", "--app-dir", str(tmp_path)]) == 3
    assert capsys.readouterr().err == (
        f"Error: error while importing '{name}': RuntimeError: no database\n"
    )


def test_handler_class_is_imported(fake_run: FakeRun, tmp_path: Path) -> None:
    name = write_module(
        tmp_path,
        "cli_handlers",
        """
        from aiogate.handlers import ServerHandler

        class Quiet(ServerHandler):
            server_software = "quiet"
        """,
    )
    argv = ["serve", "aiogate.demo:app", "--handler-class", f"{name}:Quiet"]
    assert main([*argv, "--app-dir", str(tmp_path)]) == 0
    handler_class = fake_run.config.handler_class
    assert isinstance(handler_class, type)
    assert issubclass(handler_class, ServerHandler)
    assert handler_class.server_software == "quiet"


def test_bad_handler_class_exits_3(
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOGATE_HANDLER_CLASS", "aiogate.demo:app")
    assert main(["serve", "aiogate.demo:app"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: 'aiogate.demo:app': it is of type function, not a subclass"
    )
    assert fake_run.calls == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (OSError(98, "Address already in use"), 3),
        (BindError("cannot listen on 127.0.0.1:8000: address already in use"), 5),
        (AppImportError("late"), 3),
        (
            aiogate.ConfigError("loop 'uvloop' asked for, but uvloop is not installed"),
            2,
        ),
    ],
)
def test_server_failures_map_to_exit_codes(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    fake_run.raises = error
    assert main(["serve", "aiogate.demo:app"]) == code
    assert capsys.readouterr().err == f"Error: {error}\n"


# -- the command itself -----------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"aiogate {aiogate.__version__} (h11 ")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_unsupported_config_type_is_caught() -> None:
    @dataclasses.dataclass
    class Odd:
        value: list[int] = dataclasses.field(default_factory=list)

    (field,) = dataclasses.fields(Odd)
    with pytest.raises(TypeError, match="no command-line option for type"):
        aiogate.options._option_for_field(field, list[int])


def test_usage_table_markdown() -> None:
    table = usage_table_markdown()
    lines = table.splitlines()
    assert lines[0] == "| Option | Environment variable | Default | Description |"
    assert len(lines) == 2 + len(app_options()) + len(option_fields())
    assert lines[1] == "|---|---|---|---|"
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])
    assert "| `--port PORT` | `AIOGATE_PORT` | `8000` |" in table
    assert "| `--expose-tracebacks` / `--no-expose-tracebacks` |" in table
    assert "`TARGET` (positional) | `AIOGATE_APP` | unset |" in table
    assert "One of: `critical`, `error`, `warning`, `info`, `debug`." in table
    assert '| `--root-path ROOT_PATH` | `AIOGATE_ROOT_PATH` | `""` |' in table


def run_module(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIOGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "aiogate", *args],
        input=stdin,
        capture_output=True,
        env={**base, **(env or {})},
        cwd=REPO,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_python_dash_m() -> None:
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"aiogate ")


def test_python_dash_m_exit_code_of_an_import_failure() -> None:
    result = run_module("serve", "aiogate_no_such_module_xyz:app")
    assert result.returncode == 3
    assert result.stderr.startswith(b"Error: could not import")
    assert b"Traceback" not in result.stderr


CGI_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "/cgi-bin/demo",
    "PATH_INFO": "/hello",
    "QUERY_STRING": "x=1",
    "SERVER_NAME": "example.com",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "CONTENT_LENGTH": "5",
    "CONTENT_TYPE": "text/plain",
    "HTTP_ACCEPT": "text/plain",
}


def test_cgi_runs_the_app_once() -> None:
    result = run_module("cgi", "aiogate.demo:app", env=CGI_ENV, stdin=b"hello")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK\r\n")
    assert b"Content-Type: text/plain; charset=utf-8" in head
    assert re.search(rb"Content-Length: %d\r\n" % len(body), head + b"\r\n")
    assert b"path    /cgi-bin/demo/hello" in body
    assert b"body  hello" in body


def test_cgi_import_failure_exits_3() -> None:
    result = run_module("cgi", "aiogate_no_such_module_xyz:app", env=CGI_ENV)
    assert result.returncode == 3
    assert result.stdout == b""
    assert result.stderr.startswith(b"Error: could not import")


# -- logging ----------------------------------------------------------------------


def test_importing_aiogate_adds_no_handlers() -> None:
    code = (
        "import logging, aiogate, aiogate.cli, aiogate.logs\n"
        "names = ['', 'aiogate', 'aiogate.error', 'aiogate.access']\n"
        "print(sum(len(logging.getLogger(n).handlers) for n in names))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        cwd=REPO,
        timeout=SUBPROCESS_TIMEOUT,
        check=True,
    )
    assert result.stdout == b"0\n"


def test_configure_logging_format_and_idempotence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    configure_logging("info")
    parent = logging.getLogger("aiogate")
    assert len(parent.handlers) == 1
    assert parent.propagate is False
    logging.getLogger("aiogate.error").info("Listening at %s", "http://127.0.0.1:8000")
    logging.getLogger("aiogate.access").info('"GET / HTTP/1.1" 200')
    logging.getLogger("aiogate.error").debug("not shown at info")
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\]"
    assert len(lines) == 1
    assert re.fullmatch(
        stamp + rf" \[{os.getpid()}\] \[INFO\] Listening at http://127\.0\.0\.1:8000",
        lines[0],
    )
    # Access lines: on stdout, the line alone (it carries its own time and fields).
    assert captured.out == '"GET / HTTP/1.1" 200\n'
    assert len(logging.getLogger("aiogate.access").handlers) == 1


def test_configure_logging_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug")
    logging.getLogger("aiogate.error").debug("shown")
    configure_logging("warning")
    logging.getLogger("aiogate.error").info("hidden")
    logging.getLogger("aiogate.access").info("hidden too")
    logging.getLogger("aiogate.error").warning("warned")
    err = capsys.readouterr().err
    assert "[DEBUG] shown" in err
    assert "hidden" not in err
    assert "[WARNING] warned" in err


def test_configure_logging_leaves_other_loggers_alone() -> None:
    other = logging.getLogger("some.app.logger")
    configure_logging("info")
    assert other.disabled is False


def test_logging_config_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logging_config("loud")


def test_print_config_does_not_show_the_key_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOGATE_SSL_KEYFILE_PASSWORD", "hunter2")
    assert main(["serve", "aiogate.demo:app", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert 'ssl_keyfile_password = "(redacted)"  # env' in out


def test_print_config_prints_then_says_what_serve_would_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["serve", "aiogate.demo:app", "--limit-request-line", "0"]
    assert main([*argv, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert "limit_request_line = 0  # flag" in captured.out
    assert captured.err == "Error: limit_request_line must be at least 1, not 0\n"


def test_serve_version_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--version"]) == 0
    assert capsys.readouterr().out.startswith("aiogate ")
