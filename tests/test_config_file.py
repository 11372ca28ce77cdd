"""Settings from a file ([tool.aiogate] of pyproject.toml, --config FILE, or -c
FILE.py as gunicorn's), their precedence (flag > AIOGATE_* variable > file >
default), --print-config and --check-config. (The hooks of a Python config file
being called: tests/test_hooks.py.)"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aiogate.server
from aiogate.cli import main
from aiogate.config import Config


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AIOGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    configs: list[Config] = []

    def fake_run(app: Any, config: Config, **kwargs: Any) -> None:
        configs.append(config)

    monkeypatch.setattr(aiogate.server, "run", fake_run)
    monkeypatch.setattr("aiogate.cli.configure_logging", lambda *args: None)
    return configs


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_pyproject_table_is_read(tmp_path: Path, served: list[Config]) -> None:
    write(
        tmp_path / "pyproject.toml",
        """
        [project]
        name = "mine"

        [tool.aiogate]
        app = "aiogate.demo:app"
        port = 9001
        threads = 3
        timeout-keep-alive = 7
        access_log = true
        forwarded-allow-ips = "10.0.0.0/8"
        """,
    )
    assert main(["serve"]) == 0
    [config] = served
    assert (config.port, config.threads, config.timeout_keep_alive) == (9001, 3, 7.0)
    assert config.access_log is True
    assert config.forwarded_allow_ips == "10.0.0.0/8"


def test_flag_beats_variable_beats_file_beats_default(
    tmp_path: Path, served: list[Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "settings.toml",
        """
        app = "aiogate.demo:app"
        port = 9001
        threads = 3
        backlog = 100
        """,
    )
    monkeypatch.setenv("AIOGATE_THREADS", "4")
    monkeypatch.setenv("AIOGATE_PORT", "9002")
    assert main(["serve", "--config", "settings.toml", "--port", "9003"]) == 0
    [config] = served
    assert config.port == 9003  # flag
    assert config.threads == 4  # variable
    assert config.backlog == 100  # file
    assert config.limit_request_line == Config().limit_request_line  # default


def test_config_file_from_the_environment(
    tmp_path: Path, served: list[Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "a.toml", '[tool.aiogate]\napp = "aiogate.demo:app"\nport = 9100\n'
    )
    monkeypatch.setenv("AIOGATE_CONFIG", "a.toml")
    assert main(["serve"]) == 0
    assert served[0].port == 9100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port = 'eighty'\n", "port = 'eighty': expected an integer"),
        ("port = true\n", "port = True: expected an integer"),
        ("access_log = 1\n", "access_log = 1: expected true or false"),
        ("loop = 'fast'\n", "expected one of auto, uvloop, asyncio"),
        ("no_such_thing = 1\n", "unknown setting(s) no_such_thing"),
        ("port = [\n", "is not valid TOML"),
        ("port = 1\nport = 2\n", "is not valid TOML"),
        ("port = 70000\n", "port must be 0-65535"),
    ],
)
def test_bad_file_values_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    write(tmp_path / "bad.toml", 'app = "aiogate.demo:app"\n' + content)
    assert main(["serve", "--config", "bad.toml"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", "nope.toml"]) == 2
    assert "cannot read config file 'nope.toml'" in capsys.readouterr().err


def test_print_config_shows_values_and_their_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", '[tool.aiogate]\napp = "x:y"\nthreads = 5\n')
    monkeypatch.setenv("AIOGATE_BACKLOG", "64")
    assert main(["serve", "--print-config", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert "[tool.aiogate]\n" in out
    assert 'app = "x:y"  # file\n' in out
    assert "threads = 5  # file\n" in out
    assert "backlog = 64  # env\n" in out
    assert "port = 8123  # flag\n" in out
    assert 'host = "127.0.0.1"  # default\n' in out
    assert "# ssl_certfile = (unset)  # default\n" in out
    # What it prints is itself a valid settings file with the same values.
    write(tmp_path / "printed.toml", out)
    import tomllib

    table = tomllib.loads(out)["tool"]["aiogate"]
    assert (table["threads"], table["backlog"], table["port"]) == (5, 64, 8123)


def test_check_config_imports_the_app_and_checks_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "aiogate.demo:app", "--check-config"]) == 0
    assert "Configuration OK" in capsys.readouterr().out
    assert main(["serve", "no_such_module:app", "--check-config"]) == 3
    assert (
        main(
            [
                "serve",
                "aiogate.demo:app",
                "--check-config",
                "--ssl-certfile",
                str(tmp_path / "missing.pem"),
            ]
        )
        == 2
    )
    assert "ssl_certfile" in capsys.readouterr().err


# -- a Python config file (gunicorn's -c) -------------------------------------------

GUNICORN_CONF = """
import multiprocessing
import os.path
from os.path import join as _join
from os.path import basename

wsgi_app = "aiogate.demo:app"
bind = ["127.0.0.1:9200", "unix:/tmp/x.sock"]
workers = 3
threads = 4
timeout = 30
graceful_timeout = 12
keepalive = 2
loglevel = "DEBUG"
accesslog = "-"
errorlog = "-"
preload_app = True
max_requests = 1000
max_requests_jitter = 50
forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]
limit_request_line = 4000
_private = object()

def _helper():
    return 1

def on_starting(server):
    pass

def post_fork(server, worker):
    pass
"""


def test_python_config_file_with_gunicorn_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "gunicorn.conf.py", GUNICORN_CONF)
    monkeypatch.setenv("AIOGATE_THREADS", "6")
    assert main(["serve", "-c", "gunicorn.conf.py", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "# hooks from gunicorn.conf.py: on_starting, post_fork\n" in out
    for line in (
        'app = "aiogate.demo:app"  # file',
        'bind = ["127.0.0.1:9200", "unix:/tmp/x.sock"]  # file',
        "workers = 3  # file",
        "threads = 6  # env",  # the variable wins over the file
        "timeout_request = 30.0  # file",
        "timeout_graceful_shutdown = 12.0  # file",
        "timeout_keep_alive = 2.0  # file",
        'log_level = "debug"  # file',
        "access_log = true  # file",
        "preload = true  # file",
        "max_requests = 1000  # file",
        "max_requests_jitter = 50  # file",
        'forwarded_allow_ips = "10.0.0.1,10.0.0.2"  # file',
        "limit_request_line = 4000  # file",
        "port = 8000  # default",
    ):
        assert line + "\n" in out, line


def test_python_config_file_settings_reach_the_server(
    tmp_path: Path, served: list[Config]
) -> None:
    write(
        tmp_path / "conf.py",
        """
        import os
        app = "aiogate.demo:app"
        port = 9300 + 1
        threads = int(os.environ.get("NOT_SET_HERE", "3"))
        """,
    )
    assert main(["serve", "--config", "conf.py", "--port", "9400"]) == 0
    [config] = served
    assert (config.port, config.threads) == (9400, 3)  # the flag wins


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("workerz = 2\n", "conf.py: unknown name 'workerz' (not a setting or a "),
        ("def on_strating(server):\n    pass\n", "unknown name 'on_strating'"),
        ("on_starting = 3\n", "conf.py: hook on_starting must be a function"),
        (
            "def post_request(worker):\n    pass\n",
            "conf.py: hook 'post_request' is called as post_request(worker, req, "
            "environ, resp); post_request(worker) cannot take that",
        ),
        (
            "async def pre_request(worker, req):\n    pass\n",
            "conf.py: hook 'pre_request' is async: hooks are plain functions",
        ),
        ("port = 'eighty'\n", "port = 'eighty': expected an integer"),
        ("port = (\n", "config file 'conf.py' failed (line 2): SyntaxError"),
        ("raise KeyError('DATABASE_URL')\n", "failed: KeyError: 'DATABASE_URL'"),
        ("accesslog = 3\n", "accesslog = 3: expected a file name or '-'"),
        ("import sys\nsys.exit(0)\n", "failed: SystemExit: 0"),
        (
            "worker_class = 'gthread'\n",
            "gunicorn's worker_class has no aiogate meaning: aiogate has one kind",
        ),
        ("port = 1\nbind = 'x'\nkeepalive = 1\ntimeout_keep_alive = 2\n", "twice"),
    ],
)
def test_bad_python_config_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    write(tmp_path / "conf.py", 'app = "aiogate.demo:app"\n' + content)
    assert main(["serve", "-c", "conf.py"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the error, and where the help is


def test_python_config_file_log_files_are_the_command_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "conf.py",
        'app = "aiogate.demo:app"\naccesslog = "a.log"\nerrorlog = "e.log"\n',
    )
    assert main(["serve", "-c", "conf.py", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "access_log = true  # file" in out
    assert 'access_log_file = "a.log"  # file' in out
    assert 'error_log_file = "e.log"  # file' in out


def test_missing_python_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "-c", "nope.py"]) == 2
    assert "cannot read config file 'nope.py'" in capsys.readouterr().err


def test_gunicorns_chdir_is_what_the_flag_does(
    tmp_path: Path, served: list[Config]
) -> None:
    """gunicorn's chdir: into the directory (the app's relative files are found),
    and the app imported from there; --chdir on the command line wins."""
    for name in ("sub", "other"):
        (tmp_path / name).mkdir()
        write(
            tmp_path / name / "chdirapp.py",
            f"""
            import os
            WHERE = {name!r}

            def application(environ, start_response):
                return []
            """,
        )
    write(tmp_path / "conf.py", 'app = "chdirapp"\nchdir = "sub"\n')
    assert main(["serve", "-c", "conf.py"]) == 0
    assert Path.cwd() == tmp_path / "sub"
    assert sys.modules["chdirapp"].WHERE == "sub"
    del sys.modules["chdirapp"]
    os.chdir(tmp_path)
    assert main(["serve", "-c", "conf.py", "--chdir", str(tmp_path / "other")]) == 0
    assert Path.cwd() == tmp_path / "other"
    assert sys.modules.pop("chdirapp").WHERE == "other"
    assert len(served) == 2
