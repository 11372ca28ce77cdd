"""``--pid FILE``: the process id file of a running server.

Owns: ``PidFile``. Runs in the main thread of the process that wrote it: the
supervisor with ``--workers N`` (forked workers never touch it), the server itself
otherwise. Rules, after gunicorn's ``pidfile.py``:

1. **Refused when taken**: before binding, a file that names a live process other
   than this one is a ``PidFileTaken`` error (another server is probably running
   with the same file); the command line exits with 3, the startup failure. A file
   naming a dead process, or garbage, is stale and replaced. One that names this
   very process is stale too: a container's PID 1 restarted in the same namespace
   gets the same pid its predecessor wrote.
2. **Written after the sockets are bound**, so a process manager that waits for the
   file finds a server that accepts connections (queued by the kernel until the
   loop runs). The pid goes to a temporary file in the same directory, renamed over
   the target: a reader never sees an empty or half-written file.
3. **Removed at exit**, including after SIGTERM and SIGINT, but only while it still
   holds our pid: a second server that replaced a stale file keeps its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from .errors import AiogateError

__all__ = ["PidFile", "PidFileTaken"]

log = logging.getLogger("aiogate.error")


class PidFileTaken(AiogateError):
    """The pid file names a live process other than this one."""


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as file:
            text = file.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class PidFile:
    """The pid file at ``path`` for the current process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None  # the pid written, once written

    def check(self) -> None:
        """Rule 1: ``PidFileTaken`` if the file names another live process; and
        ``AiogateError`` if its directory is missing or not writable (``write``
        would fail after binding, naming a temporary file)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise AiogateError(f"pid file {self.path!r}: no directory {directory!r}")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise AiogateError(
                f"pid file {self.path!r}: this process (uid {os.geteuid()}) may not "
                f"write in {directory!r}"
            )
        pid = _read_pid(self.path)
        if pid is not None and pid > 0 and pid != os.getpid() and _alive(pid):
            raise PidFileTaken(
                f"pid file {self.path!r} names process {pid}, which is running "
                "(another server?); stop it or remove the file"
            )

    def write(self) -> None:
        """Rule 2: write this process's pid, atomically. ``OSError`` if it cannot."""
        pid = os.getpid()
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".aiogate-pid-")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(f"{pid}\n")
            # 0644 whatever the umask: the point of the file is that others read it.
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self.pid = pid

    def remove(self) -> None:
        """Rule 3: remove the file if it still holds the pid we wrote."""
        if self.pid is None or _read_pid(self.path) != self.pid:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # e.g. --user may not write the file's directory
            log.warning("Could not remove the pid file %s: %s", self.path, exc)
        self.pid = None
