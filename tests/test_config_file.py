"""Settings from a file ([tool.aiogate] of pyproject.toml, or --config FILE), their
precedence (flag > AIOGATE_* variable > file > default), --print-config and
--check-config."""

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
