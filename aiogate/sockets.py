"""The listening sockets: TCP on each host, a UNIX socket, an inherited descriptor,
or the sockets systemd passes (socket activation).

Owns: ``bind_sockets(config)``. Synchronous, run once at startup in the main thread,
before the event loop serves; ``Server.start`` hands the sockets to the
``listener``, which accepts on them. Which binds:

1. systemd socket activation (``LISTEN_PID`` is this process, ``LISTEN_FDS`` > 0): the
   descriptors from 3 on, and nothing else;
2. otherwise ``--fd N``, ``--uds PATH`` and every ``--bind`` (``HOST:PORT``,
   ``[IPV6]:PORT``, ``unix:PATH``, ``fd://N``; parsed by ``config.parse_bind``), if
   any is given;
3. otherwise TCP on every address in ``--host`` (comma-separated, e.g.
   ``127.0.0.1,::1``; an IPv6 address may be bracketed, ``[::1]``) at ``--port``.

``--fd``, ``--uds`` and ``--bind`` replace ``--host``/``--port`` rather than add to
them, so that setting one never leaves an unexpected TCP port open as well; given
together, all of them are served. ``--reuse-port`` sets ``SO_REUSEPORT`` on the TCP
sockets bound here, so that separate aiogate processes can share a port. Inherited
descriptors are made non-inheritable, as ``sd_listen_fds`` does, so that a program the
app execs does not keep the port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping

from .config import Bind, Config, parse_bind
from .errors import ConfigError

__all__ = [
    "SD_LISTEN_FDS_START",
    "bind_sockets",
    "remove_socket_files",
    "socket_files",
    "systemd_sockets",
]

#: The first descriptor systemd passes (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3
#: Linux 3.9+, the BSDs, macOS; not Windows.
_SO_REUSEPORT: int | None = getattr(socket, "SO_REUSEPORT", None)


def systemd_sockets(environ: Mapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process, or ``[]``."""
    environ = os.environ if environ is None else environ
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        raise ConfigError(
            f"LISTEN_FDS is not a number: {environ['LISTEN_FDS']!r}"
        ) from None
    return [
        _inherited(fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    ]


def _inherited(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(
            f"file descriptor {fd} is not a socket: {exc.strerror}"
        ) from None
    if sock.type != socket.SOCK_STREAM:
        raise ConfigError(f"file descriptor {fd} is not a stream socket")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def _unix_socket(path: str, mode: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(
                f"uds: {path!r} exists and is not a socket; not replacing it"
            )
        os.unlink(path)  # a stale socket from an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, int(mode, 8))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"uds: cannot listen on {path!r}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _tcp_socket(
    host: str, port: int, backlog: int, reuse_port: bool = False
) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Separate processes on one port; the supervisor's workers share one
            # socket instead (supervisor.py rule 2 says why).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means IPv6 only, so that "0.0.0.0,::" binds both families.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise  # e.g. the address is in use: a startup failure (exit 3), not a config one
    sock.setblocking(False)
    return sock


def _hosts(text: str) -> list[str]:
    """``--host`` split on commas, brackets off; an empty entry in a list is an
    error (a stray comma would otherwise listen on every interface)."""
    hosts = [part.strip() for part in text.split(",")]
    if len(hosts) > 1 and not all(hosts):
        raise ConfigError(f"host: empty address in {text!r}")
    return [
        host[1:-1] if host.startswith("[") and host.endswith("]") else host
        for host in hosts
    ]


def _bound(bind: Bind, config: Config) -> socket.socket:
    """The socket of one ``--bind``; UNIX sockets get ``--uds-mode``."""
    if bind.kind == "unix":
        return _unix_socket(bind.path, config.uds_mode, config.backlog)
    if bind.kind == "fd":
        return _inherited(bind.fd)
    return _tcp_socket(bind.host, bind.port, config.backlog, config.reuse_port)


def socket_files(config: Config, sockets: list[socket.socket]) -> list[str]:
    """The files of the UNIX sockets among ``sockets`` (still open) that
    ``bind_sockets`` made for ``--uds`` and ``--bind unix:``, not those systemd
    passed in: what ``remove_socket_files`` removes at exit."""
    ours = {config.uds} if config.uds else set()
    ours.update(b.path for b in map(parse_bind, config.bind) if b.kind == "unix")
    names = []
    for sock in sockets:
        if sock.family == socket.AF_UNIX:
            name = sock.getsockname()
            if isinstance(name, str) and name in ours:
                names.append(name)
    return names


def remove_socket_files(paths: list[str]) -> None:
    """Remove socket files at exit, so none is left behind (one that is no longer
    a socket, something else's now, is left)."""
    for path in paths:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)


def bind_sockets(config: Config) -> list[socket.socket]:
    """The listening sockets for ``config`` (see the module docstring)."""
    if config.reuse_port and _SO_REUSEPORT is None:
        raise ConfigError("reuse_port: this system has no SO_REUSEPORT")
    activated = systemd_sockets()
    if activated:
        return activated
    sockets: list[socket.socket] = []
    try:
        if config.fd is not None:
            sockets.append(_inherited(config.fd))
        if config.uds:
            sockets.append(_unix_socket(config.uds, config.uds_mode, config.backlog))
        for text in config.bind:
            sockets.append(_bound(parse_bind(text), config))
        if not sockets:
            for host in _hosts(config.host):
                sockets.append(
                    _tcp_socket(host, config.port, config.backlog, config.reuse_port)
                )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
