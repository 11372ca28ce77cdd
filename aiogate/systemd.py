"""systemd's readiness protocol, ``sd_notify(3)``, without python-systemd.

Owns: ``Notifier``, which sends state lines (``READY=1``, ``STOPPING=1``,
``RELOADING=1``) to the datagram socket named by ``NOTIFY_SOCKET``, as services of
``Type=notify`` must. Runs in the main thread of the process systemd started (the
supervisor, or the single server: its ``MAINPID``), on the event loop for the single
server; each call is one non-blocking ``sendto`` on a datagram socket, which never
waits for the reader.

Rules:

1. No ``NOTIFY_SOCKET``: every call does nothing (not under systemd, or
   ``Type=simple``). Workers never notify: systemd's default ``NotifyAccess=main``
   would drop their messages anyway, and the supervisor speaks for them.
2. A name starting with ``@`` is in the abstract namespace (a leading NUL byte), as
   in ``sd_notify``; any other must be an absolute path.
3. Every message carries ``MAINPID``, so systemd tracks the process that sent it even
   when a wrapper script started it.
4. Sending never fails the server: an error is logged once, at WARNING.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger("aiogate.error")


def _address(name: str) -> str | bytes | None:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # vsock: and relative names are not for us


class Notifier:
    """Sends ``sd_notify`` messages to ``NOTIFY_SOCKET`` from ``environ``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        name = environ.get("NOTIFY_SOCKET", "")
        self.address = _address(name) if name else None
        if name and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or @name; not notifying", name)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str) -> None:
        """Send ``states`` (``"READY=1"``, ...) and ``MAINPID``, one datagram."""
        if self.address is None:
            return
        message = "\n".join((*states, f"MAINPID={os.getpid()}")).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %r failed: %s", self.address, exc)

    def ready(self) -> None:
        self.notify("READY=1", "STATUS=Serving")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=Draining")

    def reloading(self) -> None:
        # MONOTONIC_USEC: what Type=notify-reload (systemd 253+) wants with it.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={now}", "STATUS=Replacing workers")
