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

Every check that can be made without binding (a host list with a stray comma, a host
that does not resolve, a descriptor that is not a stream socket, a UNIX socket path
taken by another kind of file: all ``ConfigError``) is made by ``_plan``, which
both ``bind_sockets`` and ``check_binds`` (``--check-config``) run, so the two cannot
disagree. Then an address that cannot be listened on is a ``BindError`` naming it
(``cannot listen on 127.0.0.1:8000: address already in use``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config import Bind, Config, parse_bind
from .errors import BindError, ConfigError

__all__ = [
    "SD_LISTEN_FDS_START",
    "bind_sockets",
    "check_binds",
    "remove_socket_files",
    "socket_files",
    "systemd_sockets",
]

#: The first descriptor systemd passes (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3
#: Linux 3.9+, the BSDs, macOS; not Windows.
_SO_REUSEPORT: int | None = getattr(socket, "SO_REUSEPORT", None)


def _systemd_fds(environ: Mapping[str, str] | None = None) -> list[int]:
    """The descriptors systemd passed to this process, or ``[]``."""
    environ = os.environ if environ is None else environ
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        raise ConfigError(
            f"LISTEN_FDS is not a number: {environ['LISTEN_FDS']!r}"
        ) from None
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def systemd_sockets(environ: Mapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process, or ``[]``."""
    return [_inherited(fd) for fd in _systemd_fds(environ)]


def _check_descriptor(fd: int) -> None:
    """``ConfigError`` unless ``fd`` is an open stream socket; takes nothing over
    (a duplicate is looked at), so ``--check-config`` can ask too."""
    try:
        copy = os.dup(fd)
    except OSError as exc:
        raise ConfigError(
            f"file descriptor {fd} is not a socket: {exc.strerror}"
        ) from None
    try:
        probe = socket.socket(fileno=copy)
    except OSError as exc:
        os.close(copy)
        raise ConfigError(
            f"file descriptor {fd} is not a socket: {exc.strerror}"
        ) from None
    with probe:
        if probe.type != socket.SOCK_STREAM:
            raise ConfigError(f"file descriptor {fd} is not a stream socket")


def _inherited(fd: int) -> socket.socket:
    _check_descriptor(fd)
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def _reason(exc: OSError) -> str:
    """``address already in use``: the system's words, in a sentence's case."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _check_unix_path(path: str) -> None:
    """A ``ConfigError`` when ``path`` is taken by a file that is not a socket (a
    setting naming the wrong file): a stale socket is replaced at bind time,
    anything else is never deleted."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(
                f"cannot listen on unix:{path}: it exists and is not a socket; "
                "not replacing it"
            )


def _unix_socket(path: str, mode: str, backlog: int) -> socket.socket:
    _check_unix_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket from an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, int(mode, 8))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {_reason(exc)}") from None
    sock.setblocking(False)
    return sock


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def _resolve(host: str, port: int) -> tuple[Any, ...]:
    """The address ``host``/``port`` binds to (getaddrinfo's first answer)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"host {host!r}: {exc.strerror}") from None
    return infos[0]


def _tcp_socket(
    info: tuple[Any, ...], shown: str, backlog: int, reuse_port: bool = False
) -> socket.socket:
    family, kind, proto, _, address = info
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
    except OSError as exc:
        sock.close()
        # The address in use, a privileged port, an address not on this host: the
        # command line's own exit code (5), with the address named.
        raise BindError(f"cannot listen on {shown}: {_reason(exc)}") from None
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


@dataclass(frozen=True, slots=True)
class _Planned:
    """One socket to listen on, checked as far as it can be without binding."""

    kind: Literal["tcp", "unix", "fd"]
    shown: str = ""
    info: tuple[Any, ...] = ()
    path: str = ""
    fd: int = -1


def _planned(bind: Bind) -> _Planned:
    if bind.kind == "unix":
        _check_unix_path(bind.path)
        return _Planned("unix", path=bind.path)
    if bind.kind == "fd":
        _check_descriptor(bind.fd)
        return _Planned("fd", fd=bind.fd)
    return _Planned("tcp", _shown(bind.host, bind.port), _resolve(bind.host, bind.port))


def _plan(config: Config) -> list[_Planned]:
    """What ``bind_sockets`` will listen on (see the module docstring), with every
    check made that needs no bind: ``ConfigError`` or ``BindError`` for the first
    that fails."""
    if config.reuse_port and _SO_REUSEPORT is None:
        raise ConfigError("reuse_port: this system has no SO_REUSEPORT")
    activated = _systemd_fds()
    if activated:
        for fd in activated:
            _check_descriptor(fd)
        return [_Planned("fd", fd=fd) for fd in activated]
    binds = [Bind("fd", fd=config.fd)] if config.fd is not None else []
    if config.uds:
        binds.append(Bind("unix", path=config.uds))
    binds.extend(parse_bind(text) for text in config.bind)
    if not binds:
        binds = [Bind("tcp", host, config.port) for host in _hosts(config.host)]
    return [_planned(bind) for bind in binds]


def check_binds(config: Config) -> None:
    """The checks ``bind_sockets`` makes before binding, binding nothing
    (``--check-config``)."""
    _plan(config)


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
    """The listening sockets for ``config`` (see the module docstring); UNIX
    sockets get ``--uds-mode``. ``ConfigError`` for a bad setting, ``BindError``
    for an address that cannot be listened on; nothing stays bound then."""
    plan = _plan(config)
    sockets: list[socket.socket] = []
    try:
        for item in plan:
            if item.kind == "fd":
                sockets.append(_inherited(item.fd))
            elif item.kind == "unix":
                sockets.append(_unix_socket(item.path, config.uds_mode, config.backlog))
            else:
                sockets.append(
                    _tcp_socket(
                        item.info, item.shown, config.backlog, config.reuse_port
                    )
                )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
