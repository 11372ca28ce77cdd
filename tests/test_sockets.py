"""Binds: several TCP addresses at once (IPv4 and IPv6), a UNIX socket with its
permissions, an inherited descriptor, systemd socket activation, and readable errors
for bad binds. Real sockets; the CLI cases run the real command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aiogate import Server
from aiogate.config import Bind, Config, parse_bind
from aiogate.errors import BindError, ConfigError
from aiogate.sockets import (
    bind_sockets,
    remove_socket_files,
    socket_files,
    systemd_sockets,
)
from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_server import hello

GET = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def fetch(family: int, address: str | tuple[Any, ...]) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(10):
            await loop.sock_connect(sock, address)
            await loop.sock_sendall(sock, GET)
            chunks = []
            while data := await loop.sock_recv(sock, 65536):
                chunks.append(data)
    finally:
        sock.close()
    return b"".join(chunks)


async def test_unix_socket_with_permissions(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    path.write_bytes(b"")  # not a socket: refused, never replaced
    with pytest.raises(ConfigError, match="not a socket"):
        bind_sockets(Config(uds=str(path)))
    path.unlink()
    async with Server(hello, uds=str(path), uds_mode="0600") as server:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        raw = await fetch(socket.AF_UNIX, str(path))
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert raw.endswith(b"Hello, /x")
        assert server.sockets[0].family == socket.AF_UNIX
    assert not path.exists()  # removed at exit: nothing left behind
    # A stale socket file (a server that was killed) is replaced at the next start.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert stat.S_ISSOCK(path.lstat().st_mode)
    async with Server(hello, uds=str(path)):
        assert (await fetch(socket.AF_UNIX, str(path))).endswith(b"Hello, /x")
    assert not path.exists()


def test_only_the_socket_files_we_made_are_removed(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.sock", tmp_path / "theirs.sock"
    config = Config(bind=(f"unix:{ours}",))
    sockets = bind_sockets(config)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # (systemd's, say)
    other.bind(str(theirs))
    try:
        files = socket_files(config, [*sockets, other])
        assert files == [str(ours)]
        remove_socket_files(files)
        assert not ours.exists()
        assert theirs.exists()
    finally:
        for sock in (*sockets, other):
            sock.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv4_and_ipv6_at_once() -> None:
    async with Server(hello, host="127.0.0.1,::1", port=0) as server:
        by_family = {sock.family: sock.getsockname() for sock in server.sockets}
        assert set(by_family) == {socket.AF_INET, socket.AF_INET6}
        v4 = await fetch(socket.AF_INET, by_family[socket.AF_INET][:2])
        v6 = await fetch(socket.AF_INET6, by_family[socket.AF_INET6][:2])
        assert v4.endswith(b"Hello, /x")
        assert v6.endswith(b"Hello, /x")


async def test_inherited_descriptor() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = os.dup(listener.fileno())
    listener.close()
    async with Server(hello, fd=fd):
        assert (await fetch(socket.AF_INET, ("127.0.0.1", port))).endswith(b"Hello, /x")


def test_systemd_activation_only_for_our_pid() -> None:
    assert (
        systemd_sockets({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}) == []
    )
    assert systemd_sockets({}) == []
    with pytest.raises(ConfigError, match="LISTEN_FDS"):
        systemd_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


def test_systemd_socket_activation_through_the_cli(tmp_path: Path) -> None:
    """The listening socket arrives as fd 3, as systemd passes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    # LISTEN_PID must be the server's own pid: a tiny wrapper sets it, then execs.
    wrapper = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'aiogate', 'serve', "
        "'aiogate.demo:app'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, str(listener.fileno())],
        pass_fds=[listener.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(GET)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        output = proc.stdout.read()
        proc.stdout.close()
    assert f"Listening on http://127.0.0.1:{port}" in output


def test_bad_binds_are_readable_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uds_mode"):
        Config(uds="/tmp/x.sock", uds_mode="rw-rw----")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_sockets(Config(fd=os.open(os.devnull, os.O_RDONLY)))
    with pytest.raises(BindError, match=r"cannot listen on unix:.*: no such file"):
        bind_sockets(Config(uds=str(tmp_path / "missing-dir" / "app.sock")))


def test_cli_uds(tmp_path: Path) -> None:
    path = tmp_path / "cli.sock"
    server = ServerProcess(
        [*SERVE, "aiogate.demo:app", "--uds", str(path)], cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 20
        while not any("Listening on unix:" in line for line in server.lines):
            assert server.proc.poll() is None, "".join(server.lines)
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)  # watching another process's log, bounded
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(GET)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    assert any(f"Listening on unix:{path}" in line for line in server.lines)


def test_host_lists_bracketed_ipv6_and_stray_commas() -> None:
    with pytest.raises(ConfigError, match="empty address"):
        bind_sockets(Config(host="127.0.0.1,", port=0))
    sockets = bind_sockets(Config(host="[127.0.0.1]", port=0))
    try:
        assert sockets[0].getsockname()[0] == "127.0.0.1"
    finally:
        for sock in sockets:
            sock.close()
    if has_ipv6_loopback():
        sockets = bind_sockets(Config(host="[::1]", port=0))
        try:
            assert sockets[0].family == socket.AF_INET6
        finally:
            for sock in sockets:
                sock.close()


def test_cli_fd_and_uds_together_under_workers(tmp_path: Path) -> None:
    """An inherited TCP socket (pass_fds) and a UNIX socket at once, shared by two
    workers: both binds answer, and each is logged."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    path = tmp_path / "both.sock"
    fd = listener.fileno()
    proc = subprocess.Popen(
        [
            *SERVE,
            "aiogate.demo:app",
            "--fd",
            str(fd),
            "--uds",
            str(path),
            "--workers",
            "2",
        ],
        pass_fds=[fd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(GET)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        deadline = time.monotonic() + 20
        while not path.exists():  # the supervisor binds before forking; bounded
            assert time.monotonic() < deadline, "no UNIX socket"
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(GET)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        output = proc.stdout.read()
        proc.stdout.close()
    assert f"Listening on http://127.0.0.1:{port}" in output
    assert f"Listening on unix:{path}" in output


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8000", Bind("tcp", host="127.0.0.1", port=8000)),
        ("localhost:0", Bind("tcp", host="localhost", port=0)),
        ("[::1]:8000", Bind("tcp", host="::1", port=8000)),
        ("[::]:80", Bind("tcp", host="::", port=80)),
        ("unix:/run/app.sock", Bind("unix", path="/run/app.sock")),
        ("unix:relative.sock", Bind("unix", path="relative.sock")),
        ("fd://3", Bind("fd", fd=3)),
    ],
)
def test_bind_syntax(text: str, parsed: Bind) -> None:
    assert parse_bind(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:http", "expected HOST:PORT"),
        ("127.0.0.1:65536", "expected HOST:PORT"),
        ("127.0.0.1:\uff18\uff10", "expected HOST:PORT"),  # fullwidth 80
        (":8000", "name the host"),
        ("::1:8000", "in brackets"),
        ("unix:", "needs a path"),
        ("fd://", "descriptor number"),
        ("fd://-1", "descriptor number"),
    ],
)
def test_bad_bind_syntax_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(bind=(text,))


def test_bind_given_as_one_string_or_a_list() -> None:
    # Not the declared type, but what an embedding program may well write.
    one: Any = "unix:/a.sock"
    assert Config(bind=one).bind == ("unix:/a.sock",)
    assert Config(bind=[one]).bind == ("unix:/a.sock",)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of strings"):
        Config(bind=(8000,))  # type: ignore[arg-type]


async def test_binds_of_every_kind_at_once(tmp_path: Path) -> None:
    """--uds with --bind TCP, unix: and fd:// at once: four binds, all served."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    inherited_port = listener.getsockname()[1]
    fd = os.dup(listener.fileno())
    os.set_inheritable(fd, True)  # as systemd or a parent process passes it
    listener.close()
    uds, bound = tmp_path / "uds.sock", tmp_path / "bind.sock"
    config = Config(uds=str(uds), bind=("127.0.0.1:0", f"unix:{bound}", f"fd://{fd}"))
    async with Server(hello, config) as server:
        names = [sock.getsockname() for sock in server.sockets]
        # --uds, then each --bind in order.
        assert names == [str(uds), names[1], str(bound), ("127.0.0.1", inherited_port)]
        for family, address in [
            (socket.AF_UNIX, str(uds)),
            (socket.AF_INET, names[1]),
            (socket.AF_UNIX, str(bound)),
            (socket.AF_INET, names[3]),
        ]:
            assert (await fetch(family, address)).endswith(b"Hello, /x")
        # A UNIX socket from --bind gets --uds-mode too.
        assert stat.S_IMODE(bound.stat().st_mode) == 0o660
        # Not passed on to programs the app runs (sd_listen_fds does the same).
        assert not os.get_inheritable(fd)


def test_cli_several_binds_are_each_served_and_logged(tmp_path: Path) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    tcp.close()  # a free port, for --bind (port 0 would not be known)
    path = tmp_path / "cli-bind.sock"
    binds = ["--bind", f"127.0.0.1:{port}", "--bind", f"unix:{path}"]
    if has_ipv6_loopback():
        binds += ["--bind", f"[::1]:{port}"]
    server = ServerProcess([*SERVE, "aiogate.demo:app", *binds], cwd=tmp_path)
    try:
        assert server.port == port
        deadline = time.monotonic() + 20
        while sum("Listening on" in line for line in server.lines) < len(binds) // 2:
            assert time.monotonic() < deadline, "".join(server.lines)
            time.sleep(0.05)  # watching another process's log, bounded
        for family, address in [
            (socket.AF_INET, ("127.0.0.1", port)),
            (socket.AF_UNIX, str(path)),
            *([(socket.AF_INET6, ("::1", port))] if len(binds) > 4 else []),
        ]:
            with socket.socket(family) as sock:
                sock.settimeout(10)
                sock.connect(address)
                sock.sendall(GET)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    log = "".join(server.lines)
    assert f"Listening on http://127.0.0.1:{port}" in log
    assert f"Listening on unix:{path}" in log
    if len(binds) > 4:
        assert f"Listening on http://[::1]:{port}" in log
