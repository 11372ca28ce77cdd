"""``--reload``: restart the server whenever a watched file changes (development).

Owns: ``run_with_reload``. The process that runs it never imports the app: it starts
the server as a child process (the same ``aiogate serve`` command line, with
``--no-reload``), watches the directories with ``watchfiles`` (an optional dependency,
``pip install 'aiogate[reload]'``), and on a change stops the child gracefully
(SIGTERM) and starts a new one. A child that crashes (a syntax error in the app, say)
is started again at the next change, as with uvicorn; one that exits with a bad
setting (2) or an address it cannot listen on (5) ends the watcher with its code, since
no edit of the app mends those. SIGINT or SIGTERM stop the child and end the watcher
with code 0. Runs in the main thread of the watcher process.
"""

from __future__ import annotations

import fnmatch
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .errors import ConfigError

__all__ = ["check_reload", "run_with_reload"]

log = logging.getLogger("aiogate.error")

#: How long a child may take to stop before it is killed: reloads should be quick.
STOP_TIMEOUT = 5.0
#: How often the watcher looks at its child while nothing changes, in ms.
CHILD_POLL_MS = 500
#: A child's exit codes that end the watcher too (``cli``: 2 a bad setting, 5 an
#: address that cannot be listened on). An app that cannot be imported (3) is what
#: the next edit mends, so the watcher waits for it.
FINAL_CODES = frozenset({2, 5})


def _patterns(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class _Filter:
    """watchfiles filter: a path is watched when no part of it matches an exclude
    pattern and its name matches an include pattern."""

    def __init__(self, include: str, exclude: str) -> None:
        self.include = _patterns(include)
        self.exclude = _patterns(exclude)

    def __call__(self, change: object, path: str) -> bool:
        parts = Path(path).parts
        if any(
            fnmatch.fnmatch(part, pattern) for part in parts for pattern in self.exclude
        ):
            return False
        name = parts[-1] if parts else path
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.include)


def check_reload(dirs: str, app_dir: str) -> list[str]:
    """The directories to watch; ``ConfigError`` if watchfiles is missing or one is
    not a directory (``--check-config`` asks too)."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--reload needs watchfiles: pip install 'aiogate[reload]'"
        ) from None
    paths = _patterns(dirs) or [app_dir]
    for path in paths:
        if not Path(path).is_dir():
            raise ConfigError(f"reload_dirs: {path!r} is not a directory")
    return paths


def run_with_reload(
    argv: Sequence[str], dirs: str, include: str, exclude: str, app_dir: str
) -> int:
    """Serve ``argv`` (the ``serve`` arguments) in a child process, restarting it on
    every change under ``dirs`` (comma-separated; ``app_dir`` when empty)."""
    paths = check_reload(dirs, app_dir)
    import watchfiles

    command = [sys.executable, "-m", "aiogate", "serve", *argv, "--no-reload"]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    log.info("Watching %s for changes (%s)", ", ".join(paths), include)
    child = subprocess.Popen(command)
    try:
        for changes in watchfiles.watch(
            *paths,
            watch_filter=_Filter(include, exclude),
            stop_event=stop,
            rust_timeout=CHILD_POLL_MS,
            yield_on_timeout=True,
        ):
            if not changes:  # a quiet while: is the child still there?
                code = child.poll()
                if code in FINAL_CODES:
                    # An address in use or a bad setting: no edit of the app's code
                    # mends it, so say it with the child's code rather than watch on.
                    return code
                continue
            names = sorted({Path(path).name for _, path in changes})
            log.info("Changed: %s; restarting", ", ".join(names[:5]))
            _stop_child(child)
            child = subprocess.Popen(command)
    finally:
        _stop_child(child)
    return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
