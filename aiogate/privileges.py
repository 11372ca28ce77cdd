"""``--user``, ``--group`` and ``--umask``: who the server runs as.

Owns: ``Identity`` (the user and group to switch to, resolved from names or numeric
ids), ``resolve_identity``, ``drop_privileges``, ``chown_socket_files`` and
``apply_umask``. Runs in the main thread at startup, before any event loop or thread
exists in the process that switches. The theory, after gunicorn's
``set_owner_process``:

1. **Resolved and checked before binding**: an unknown user or group, or a switch
   this process cannot make (it is not root and asks to become someone else), is a
   ``ConfigError`` (exit 2) before any socket is bound or file written. Asking for
   the user and group one already is, without root, is allowed and changes nothing
   (the same command line then works in and out of a container).
2. **Dropped after binding**, so that a server started as root can bind port 80 and
   write its pid file in ``/run``, and before a request is served. With
   ``--workers N`` the supervisor stays root, as gunicorn's arbiter does (it runs no
   app code, and can still remove the pid file and the socket files at exit); each
   worker switches right after the fork. A single server switches itself, after
   writing its pid file (it then removes the file at exit only if the new user may
   write its directory; a warning says so otherwise).
3. **Order**: supplementary groups first (``initgroups`` for a user with a passwd
   entry, else just the group), then the group, then the user: once the user is
   not root, the groups can no longer be changed. Root's supplementary groups are
   never kept.
4. **UNIX socket files** made for ``--uds``/``--bind unix:`` are given to the new
   user and group before the switch, so they stay theirs (``--uds-mode`` still sets
   who may connect).
5. ``--umask`` is applied at startup, before anything is bound or written, and is
   inherited by the workers and anything the app creates.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigError

__all__ = [
    "Identity",
    "apply_umask",
    "chown_socket_files",
    "drop_privileges",
    "resolve_identity",
]

log = logging.getLogger("aiogate.error")


@dataclass(frozen=True, slots=True)
class Identity:
    """The user and group to run as; ``user_name`` is None for a numeric user with
    no passwd entry or when only ``--group`` was given (``uid`` is then None)."""

    uid: int | None
    gid: int
    user_name: str | None


def _user(text: str) -> pwd.struct_passwd | int:
    """The passwd entry of a user name or id; a bare id when it has none."""
    if text.isascii() and text.isdigit():
        try:
            return pwd.getpwuid(int(text))
        except KeyError:
            return int(text)
    try:
        return pwd.getpwnam(text)
    except KeyError:
        raise ConfigError(f"user: no such user {text!r}") from None


def _group(text: str) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError(f"group: no such group {text!r}") from None


def resolve_identity(user: str | None, group: str | None) -> Identity | None:
    """Rule 1: the identity ``--user``/``--group`` ask for, checked against what
    this process may do; None when neither is given."""
    if user is None and group is None:
        return None
    uid: int | None = None
    name: str | None = None
    gid: int | None = None if group is None else _group(group)
    if user is not None:
        entry = _user(user)
        if isinstance(entry, int):
            uid = entry
            if gid is None:
                # No passwd entry, so no primary group: keeping root's group 0
                # would be a quiet hole, guessing another one a surprise.
                raise ConfigError(
                    f"user: {user} has no passwd entry; give its --group too"
                )
        else:
            uid, name = entry.pw_uid, entry.pw_name
            gid = entry.pw_gid if gid is None else gid
    assert gid is not None
    identity = Identity(uid, gid, name)
    if os.geteuid() != 0 and (
        (uid is not None and uid != os.geteuid()) or gid != os.getegid()
    ):
        asked = " and ".join(
            f"{what} {text!r}"
            for what, text in (("user", user), ("group", group))
            if text is not None
        )
        raise ConfigError(
            f"switching to {asked} needs root; this process runs as uid "
            f"{os.geteuid()}, gid {os.getegid()} (start it as root, or drop "
            "--user/--group)"
        )
    return identity


def chown_socket_files(paths: Iterable[str], identity: Identity) -> None:
    """Rule 4: give the socket files to the new user and group (as root)."""
    if os.geteuid() != 0:
        return
    for path in paths:
        uid = -1 if identity.uid is None else identity.uid
        os.chown(path, uid, identity.gid, follow_symlinks=False)


def drop_privileges(identity: Identity) -> None:
    """Rules 2 and 3: become ``identity``; ``OSError`` if the kernel refuses. A
    process that is not root has been checked to be ``identity`` already."""
    if os.geteuid() != 0:
        return
    # asyncio imports its default executor lazily, and the drain runs there: import
    # it while the Python installation is surely readable. After the switch it may
    # not be (pyenv under /root, mode 0700), and the drain would fail at its end.
    import concurrent.futures.thread  # noqa: F401

    if identity.user_name is not None:
        os.initgroups(identity.user_name, identity.gid)
    else:  # a bare id, or --group alone: that group only
        os.setgroups([identity.gid])
    os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)
        # setuid from root sets the real, effective and saved ids: no way back.
        if identity.uid != 0:
            with contextlib.suppress(PermissionError):
                os.setuid(0)
                raise OSError(f"could not drop root: setuid({identity.uid}) kept it")
    log.info(
        "Running as uid %d, gid %d (groups %s)",
        os.getuid(),
        os.getgid(),
        ",".join(map(str, os.getgroups())) or "none",
    )


def apply_umask(text: str | None) -> None:
    """Rule 5: set the process umask from ``--umask`` (octal text), if given."""
    if text is not None:
        os.umask(int(text, 8))
