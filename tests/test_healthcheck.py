"""``aiogate check`` against a live in-process server: it finds the server from the
same settings the server reads (AIOGATE_* variables, flags, the settings file), over
HTTP, HTTPS with a self-signed certificate, a wildcard bind and a UNIX socket, and
says in one line why a server is not healthy (exit 1)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiogate import Server
from aiogate.cli import main

TIMEOUT = 10.0


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers the paths the server itself does not: /busy is a 503 with a reason."""
    if environ["PATH_INFO"] == "/busy":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"all threads\nstuck\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not here\n"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AIOGATE_* variable of the caller's, and no ./pyproject.toml settings."""
    for name in list(os.environ):
        if name.startswith("AIOGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key: no CA the probe could know."""
    d = tmp_path_factory.mktemp("self-signed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
         "/CN=aiogate-check", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=d, check=True, capture_output=True, timeout=TIMEOUT,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


async def check(
    capsys: pytest.CaptureFixture[str], *args: str, **env: str
) -> tuple[int, str]:
    """Run ``aiogate check`` in a thread (the server answers on this loop); return
    the exit code and the one line it printed."""
    for name, value in env.items():
        os.environ[name] = value  # the fixture's monkeypatch has saved the originals
    try:
        code = await asyncio.wait_for(
            asyncio.to_thread(main, ["check", *args]), TIMEOUT
        )
    finally:
        for name in env:
            del os.environ[name]
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    assert len(lines) == 1, lines
    assert (out if code == 0 else err) == lines[0] + "\n"
    return code, lines[0]


def port_of(server: Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def test_healthy_over_http_from_the_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Server(app, port=0, liveness_path="/livez") as server:
        port = str(port_of(server))
        code, line = await check(
            capsys, AIOGATE_PORT=port, AIOGATE_LIVENESS_PATH="/livez"
        )
    assert code == 0
    assert line == (
        f"aiogate check: healthy: GET http://127.0.0.1:{port}/livez: 200 OK"
    )


async def test_a_bind_wins_over_the_port_and_a_wildcard_is_asked_on_loopback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Server(app, port=0, liveness_path="/livez") as server:
        port = port_of(server)
        code, line = await check(
            capsys,
            AIOGATE_BIND=f"0.0.0.0:{port}",
            AIOGATE_PORT="9",  # discard: nothing listens there
            AIOGATE_LIVENESS_PATH="/livez",
        )
    assert (code, line) == (
        0,
        f"aiogate check: healthy: GET http://127.0.0.1:{port}/livez: 200 OK",
    )


async def test_flags_are_read_as_serve_reads_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Server(app, port=0, liveness_path="/alive") as server:
        port = port_of(server)
        code, _ = await check(
            capsys, "--port", str(port), "--liveness-path", "/alive", "--timeout", "5"
        )
    assert code == 0


async def test_https_with_a_self_signed_certificate(
    capsys: pytest.CaptureFixture[str], self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    async with Server(
        app,
        port=0,
        liveness_path="/livez",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    ) as server:
        port = str(port_of(server))
        env = {
            "AIOGATE_PORT": port,
            "AIOGATE_LIVENESS_PATH": "/livez",
            "AIOGATE_SSL_CERTFILE": str(cert),
            "AIOGATE_SSL_KEYFILE": str(key),
        }
        healthy = await check(capsys, **env)
        del env["AIOGATE_SSL_CERTFILE"], env["AIOGATE_SSL_KEYFILE"]
        plain = await check(capsys, **env)
    assert healthy == (
        0,
        f"aiogate check: healthy: GET https://127.0.0.1:{port}/livez: 200 OK",
    )
    # Plain HTTP to the TLS port: refused, said in one line.
    assert plain[0] == 1
    assert plain[1].startswith(
        f"aiogate check: unhealthy: GET http://127.0.0.1:{port}/livez: "
    )


async def test_a_unix_socket_from_the_settings_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "aiogate.sock"
    async with Server(app, bind=(f"unix:{path}",), liveness_path="/livez"):
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.aiogate]\nbind = ["unix:{path}"]\nliveness-path = "/livez"\n'
        )
        from_file = await check(capsys)
        (tmp_path / "pyproject.toml").unlink()
        from_uds = await check(capsys, AIOGATE_UDS=str(path))
    assert from_file == (
        0,
        f"aiogate check: healthy: GET http+unix://{path}/livez: 200 OK",
    )
    # Without a liveness path there is nothing to ask.
    assert from_uds == (
        1,
        "aiogate check: unhealthy: no liveness endpoint to ask: set "
        "AIOGATE_LIVENESS_PATH (e.g. /livez)",
    )


async def test_a_dead_port_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, line = await check(
        capsys, AIOGATE_PORT=str(port), AIOGATE_LIVENESS_PATH="/livez"
    )
    assert (code, line) == (
        1,
        f"aiogate check: unhealthy: GET http://127.0.0.1:{port}/livez: "
        "connection refused",
    )


async def test_an_answer_other_than_200_is_unhealthy_with_its_body(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Server(app, port=0) as server:  # /busy reaches the app
        port = port_of(server)
        code, line = await check(
            capsys, AIOGATE_PORT=str(port), AIOGATE_LIVENESS_PATH="/busy"
        )
    assert (code, line) == (
        1,
        f"aiogate check: unhealthy: GET http://127.0.0.1:{port}/busy: "
        "503 Service Unavailable: all threads stuck",
    )


async def test_a_server_that_never_answers_times_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as listening:  # accepted by the kernel, never answered
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        code, line = await check(
            capsys,
            "--timeout",
            "0.3",
            AIOGATE_PORT=str(port),
            AIOGATE_LIVENESS_PATH="/livez",
        )
    assert (code, line) == (
        1,
        f"aiogate check: unhealthy: GET http://127.0.0.1:{port}/livez: "
        "no answer within 0.3s",
    )


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (
            (),
            {"AIOGATE_FD": "3", "AIOGATE_LIVENESS_PATH": "/livez"},
            "the server listens only on an inherited descriptor (fd); there is no "
            "address to connect to: also bind a TCP port or a UNIX socket",
        ),
        (
            (),
            {"AIOGATE_PORT": "0", "AIOGATE_LIVENESS_PATH": "/livez"},
            "port 0 lets the system pick the port: set AIOGATE_PORT",
        ),
        (
            (),
            {"AIOGATE_PORT": "eighty", "AIOGATE_LIVENESS_PATH": "/livez"},
            "environment variable AIOGATE_PORT='eighty': invalid literal for int() "
            "with base 10: 'eighty'",
        ),
        (
            (),
            {"AIOGATE_BIND": "8000", "AIOGATE_LIVENESS_PATH": "/livez"},
            "bind '8000': expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N",
        ),
        (
            ("--timeout", "0"),
            {"AIOGATE_LIVENESS_PATH": "/livez"},
            "--timeout must be positive, not 0.0",
        ),
    ],
)
async def test_settings_that_cannot_be_probed_are_one_line_reasons(
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    env: dict[str, str],
    reason: str,
) -> None:
    assert await check(capsys, *args, **env) == (
        1,
        f"aiogate check: unhealthy: {reason}",
    )


def test_the_console_script_runs_it(tmp_path: Path) -> None:
    """The installed entry point, as Docker's HEALTHCHECK runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "aiogate", "check"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=tmp_path,
        env={**os.environ, "AIOGATE_LIVENESS_PATH": "/livez", "AIOGATE_PORT": "9"},
    )  # fmt: skip
    assert completed.returncode == 1
    assert completed.stderr == (
        "aiogate check: unhealthy: GET http://127.0.0.1:9/livez: connection refused\n"
    )
