"""Worker processes: ``--workers N``, supervised.

Owns: ``Supervisor``. Runs in the main thread of the supervisor process, which binds
the listening sockets once and forks the workers; each worker is a whole aiogate
server (``server.run``: its own event loop and thread pool) on the inherited sockets.

Theory of operation:

1. **Fork, with the app already imported** (the command line imports it before
   anything else, so an app that cannot be imported exits with code 3 at once, never
   a restart loop). Forking is the fastest start, and safe here: the supervisor has
   started no thread and no event loop when it forks. The cost is gunicorn's
   ``--preload`` caveat: a replaced worker runs the code imported at startup; to load
   new code, restart the supervisor.
2. **One shared listening socket per bind, held by the supervisor**, not one
   ``SO_REUSEPORT`` socket per worker: when a worker leaves (a restart, SIGHUP,
   ``--max-requests``), connections already queued in the kernel stay queued for the
   others. With ``SO_REUSEPORT`` each worker's queue dies with its socket, and those
   connections are reset (``benchmarks/spread.py`` counts them: 12-34 of about
   1000-1400 requests over 6 replacements, none on the shared socket, whose spread
   is close). The test suite checks that every worker gets a share.
3. **Event-driven**: signals (including SIGCHLD) reach the loop through
   ``signal.set_wakeup_fd``; the supervisor sleeps in ``select`` until one arrives.
4. **Signals**: TERM or INT drain every worker (each does the graceful shutdown,
   including ``--shutdown-delay``) and exit 0, killing stragglers after
   ``--timeout-graceful-shutdown`` + ``shutdown_delay`` + 5 s; a second TERM or INT
   kills them at once (exit 1). A worker already draining (retired, or at
   ``--max-requests``) gets no second SIGTERM, which would make it exit at once.
   HUP replaces the workers one at a time (the new one first). TTIN adds a worker,
   TTOU removes one.
5. **Workers live in their own process group**, so a terminal's Ctrl-C reaches only
   the supervisor, which then drains them once; and each worker asks the kernel to
   send it SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``, Linux).
6. A worker that exits on its own (``--max-requests``, a crash) is replaced; one that
   dies within a second of starting is replaced after a growing pause (up to 30 s),
   so a crashing worker cannot spin the CPU. A worker that reaches
   ``--max-requests`` writes its pid to the supervisor's *retire pipe* as it stops
   accepting, and its replacement is forked at once, not after the drain (which
   lasts as long as its slowest request): with one worker, the queue would otherwise
   wait that long for an acceptor.
7. A worker that cannot start serving (``serve`` raised an ``AiogateError`` or
   ``OSError``: a TLS file, the event loop, ...) exits with ``WORKER_BOOT_ERROR`` (4,
   gunicorn's ``APP_LOAD_ERROR``); every worker would fail the same way, so the
   supervisor stops the others and exits with 3 (``BOOT_FAILED``) instead of
   restarting it in a loop.
8. **Metrics add up** (with ``--metrics-path``): the supervisor maps one shared
   region before forking and gives each worker a slot of it; a reaped worker's
   counts are folded into the region's retired slot (``tally``), so any worker's
   scrape sums the whole server, across restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable

from . import tally
from .config import Config
from .errors import AiogateError

__all__ = ["BOOT_FAILED", "WORKER_BOOT_ERROR", "Supervisor"]

log = logging.getLogger("aiogate.error")

_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
_PR_SET_PDEATHSIG = 1
KILL_MARGIN = 5.0  # seconds past the workers' own graceful timeout
MAX_BACKOFF = 30.0
#: A worker's exit code when it could not start serving.
WORKER_BOOT_ERROR = 4
#: The supervisor's exit code then (the command line's startup failure).
BOOT_FAILED = 3
#: A pid on the retire pipe: one write of 4 bytes, atomic (below PIPE_BUF).
_PID = struct.Struct("=i")


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when its parent dies (best effort elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _tell_retiring(fd: int) -> None:
    """Runs on a worker's event loop when it reaches ``--max-requests``: tell the
    supervisor, through the retire pipe, that this worker now drains and exits."""
    with contextlib.suppress(OSError):  # a full pipe, or no supervisor to tell
        os.write(fd, _PID.pack(os.getpid()))


class Supervisor:
    """Runs ``serve(sockets, on_max_requests)`` in ``config.workers`` forked workers
    until signalled. ``serve`` calls ``on_max_requests`` (on the worker's loop) when
    the worker begins to drain after ``--max-requests``."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        serve: Callable[[list[socket.socket], Callable[[], None]], None],
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.serve = serve
        # Metrics add up (above): made before any fork, for every worker to share.
        self._tally = tally.ServerTally(config.workers) if config.metrics_path else None
        self.target = config.workers
        self.workers: dict[int, float] = {}  # pid -> start time
        self._stopping = False
        self._replace: list[int] = []  # SIGHUP: old workers still to replace
        self._retiring: set[int] = set()  # told to stop; not to be replaced
        self._backoff = 0.0
        self._restart_at = 0.0  # monotonic time before which no restart happens
        self._pipe: tuple[int, int] | None = None  # the signal wakeup pipe
        self._retire_pipe: tuple[int, int] | None = None  # workers -> supervisor
        self._boot_failed = False

    # -- workers ---------------------------------------------------------------------

    def spawn(self) -> int:
        parent = os.getpid()
        # Blocked across the fork: until the child has dropped the supervisor's
        # handlers and wakeup pipe, a signal sent to it (a quick SIGTERM) would be
        # written to that shared pipe and read as the supervisor's own.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        slot = self._tally.before_fork() if self._tally is not None else -1
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            if self._tally is not None:
                self._tally.forked(slot, None)
            raise
        if pid == 0:  # the worker
            code = 1
            try:
                if self._tally is not None:  # the slot this worker writes
                    self._tally.enter(slot)
                signal.set_wakeup_fd(-1)
                for signum in _SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                # In its own process group the worker is in the terminal's
                # background: ignored, TTIN/TTOU cannot stop it for touching the tty.
                signal.signal(signal.SIGTTIN, signal.SIG_IGN)
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                if self._pipe is not None:
                    for fd in self._pipe:
                        os.close(fd)
                retire_write = -1  # (no pipe outside run(): nobody to tell)
                if self._retire_pipe is not None:
                    retire_read, retire_write = self._retire_pipe
                    os.close(retire_read)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                os.setpgid(0, 0)
                _die_with_parent(parent)
                self.serve(self.sockets, lambda: _tell_retiring(retire_write))
                code = 0
            except (AiogateError, OSError) as exc:
                log.error("Worker %d could not start: %s", os.getpid(), exc)
                code = WORKER_BOOT_ERROR
            except BaseException:
                log.exception("Worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        self.workers[pid] = time.monotonic()
        log.info("Started worker %d", pid)
        if self._tally is not None:
            self._tally.forked(slot, pid)
            if self._tally.full:
                log.warning("No metrics slot left: worker %d is not in the sums", pid)
        return pid

    def _signal_worker(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def _retire(self, pid: int) -> None:
        self._retiring.add(pid)
        self._signal_worker(pid, signal.SIGTERM)

    def _on_retiring(self, data: bytes) -> None:
        """Workers that began to drain on their own (``--max-requests``): not to be
        replaced when they exit, since ``_top_up`` replaces them now."""
        for (pid,) in _PID.iter_unpack(data[: len(data) - len(data) % _PID.size]):
            if pid in self.workers and pid not in self._retiring:
                self._retiring.add(pid)
                log.info("Worker %d reached max-requests; starting its successor", pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            started = self.workers.pop(pid, None)
            if started is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self._tally is not None:  # its counts are kept (metrics add up)
                self._tally.reaped(pid, usage)
            if code == WORKER_BOOT_ERROR and not self._boot_failed:
                log.error(
                    "Worker %d could not start serving; stopping (see the error above)",
                    pid,
                )
                self._boot_failed = True
                self._stop()
                continue
            if pid in self._retiring:
                self._retiring.discard(pid)
                log.info("Worker %d stopped (%d)", pid, code)
                continue
            if self._stopping:
                continue
            if time.monotonic() - started < 1.0:
                self._backoff = min(MAX_BACKOFF, max(0.5, self._backoff * 2))
                log.error(
                    "Worker %d exited with %d right after starting; next in %.1fs",
                    pid,
                    code,
                    self._backoff,
                )
                self._restart_at = time.monotonic() + self._backoff
            else:
                self._backoff = 0.0
                log.info("Worker %d exited (%d); replacing it", pid, code)

    def _top_up(self) -> None:
        """Start workers up to the target, and carry on a SIGHUP replacement."""
        if self._stopping or time.monotonic() < self._restart_at:
            return
        active = [pid for pid in self.workers if pid not in self._retiring]
        while len(active) < self.target:
            active.append(self.spawn())
        if self._replace and not self._retiring:
            old = self._replace.pop(0)
            if old in self.workers:
                self.spawn()  # the new one first, then the old one drains
                self._retire(old)
        while len(active) > self.target:
            self._retire(active.pop())

    # -- signals ---------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stopping:
                log.warning(
                    "Second %s: killing the workers", signal.Signals(signum).name
                )
                for pid in self.workers:
                    self._signal_worker(pid, signal.SIGKILL)
                sys.exit(1)
            log.info(
                "Received %s: draining %d workers",
                signal.Signals(signum).name,
                len(self.workers),
            )
            self._stop()
        elif signum == signal.SIGHUP:
            log.info("Received SIGHUP: replacing the workers one by one")
            self._replace = [pid for pid in self.workers if pid not in self._retiring]
        elif signum == signal.SIGTTIN:
            self.target += 1
            log.info("Received SIGTTIN: %d workers", self.target)
        elif signum == signal.SIGTTOU:
            self.target = max(1, self.target - 1)
            log.info("Received SIGTTOU: %d workers", self.target)

    def _stop(self) -> None:
        self._stopping = True
        for pid in self.workers:
            # A retiring worker is draining already; a second SIGTERM would make it
            # exit at once (the server's "second signal"), cutting its requests.
            if pid not in self._retiring:
                self._signal_worker(pid, signal.SIGTERM)

    def run(self) -> int:
        """Supervise until the workers have drained after TERM or INT; the exit code."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        retire_read, retire_write = os.pipe()
        os.set_blocking(retire_read, False)
        os.set_blocking(retire_write, False)
        self._retire_pipe = (retire_read, retire_write)
        old_fd = signal.set_wakeup_fd(write_fd)
        for signum in _SIGNALS:
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries them
        deadline: float | None = None
        try:
            self._top_up()
            while self.workers or not self._stopping:
                if self._stopping and deadline is None:
                    deadline = time.monotonic() + (
                        self.config.timeout_graceful_shutdown
                        + self.config.shutdown_delay
                        + KILL_MARGIN
                    )
                timeout = None
                if deadline is not None:
                    timeout = max(0.0, deadline - time.monotonic())
                elif self._restart_at > time.monotonic():
                    timeout = self._restart_at - time.monotonic()
                if self._tally is not None:  # its CPU and memory, as of now
                    self._tally.publish()
                ready, _, _ = select.select([read_fd, retire_read], [], [], timeout)
                if retire_read in ready:
                    with contextlib.suppress(BlockingIOError):
                        self._on_retiring(os.read(retire_read, 4096))
                if read_fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        for number in os.read(read_fd, 64):
                            self._on_signal(number)
                self._reap()
                if deadline is not None and time.monotonic() >= deadline:
                    for pid in self.workers:
                        log.warning("Worker %d did not drain in time; killing it", pid)
                        self._signal_worker(pid, signal.SIGKILL)
                    deadline = time.monotonic() + KILL_MARGIN
                self._top_up()
        finally:
            signal.set_wakeup_fd(old_fd)
            os.close(read_fd)
            os.close(write_fd)
            os.close(retire_read)
            os.close(retire_write)
            self._pipe = self._retire_pipe = None
        if self._boot_failed:
            return BOOT_FAILED
        log.info("Stopped")
        return 0
