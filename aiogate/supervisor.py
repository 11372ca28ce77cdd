"""Worker processes: ``--workers N``, supervised.

Owns: ``Supervisor``. Runs in the main thread of the supervisor process, which binds
the listening sockets once and forks the workers; each worker is a whole aiogate
server (``server.run``: its own event loop and thread pool) on the inherited sockets.

Theory of operation:

1. **Fork; the app is imported after forking unless** ``--preload``. Without it each
   worker imports the app itself, so a worker started later (SIGHUP, a replacement)
   runs the code on disk now, as gunicorn's default does. With ``--preload`` the
   command line imports it once before forking: faster starts and shared pages, but
   a replaced worker runs the code imported at startup. Forking is safe either way:
   the supervisor has started no thread and no event loop when it forks.
2. **One shared listening socket per bind, held by the supervisor**, not one
   ``SO_REUSEPORT`` socket per worker: when a worker leaves (a restart, SIGHUP,
   ``--max-requests``), connections already queued in the kernel stay queued for the
   others. With ``SO_REUSEPORT`` each worker's queue dies with its socket, and those
   connections are reset (``benchmarks/spread.py`` counts them: 12-34 of about
   1000-1400 requests over 6 replacements, none on the shared socket, whose spread
   is close). The test suite checks that every worker gets a share.
3. **Event-driven**: signals (including SIGCHLD) reach the loop through
   ``signal.set_wakeup_fd``; the supervisor sleeps in ``select`` until one arrives.
   Workers send news (``News``: READY once listening, RETIRING at
   ``--max-requests``) through the *news pipe*.
4. **Signals**: TERM or INT drain every worker (each does the graceful shutdown,
   including ``--shutdown-delay``) and exit 0, killing stragglers after
   ``--timeout-graceful-shutdown`` + ``shutdown_delay`` + 5 s (with a
   ``worker_abort`` hook, SIGABRT first and SIGKILL 5 s later); a second TERM or INT
   kills them at once (exit 1), even while a hook holds the main thread (the signal
   handler counts them: ``_hook``). A worker already draining (retired, or at
   ``--max-requests``) gets no second SIGTERM, which would make it exit at once.
   HUP replaces the workers one at a time: the new one first, and the old one is
   told to drain only once the new one is READY. TTIN adds a worker, TTOU removes one.
5. **Workers live in their own process group**, so a terminal's Ctrl-C reaches only
   the supervisor, which then drains them once; and each worker asks the kernel to
   send it SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``, Linux).
6. A worker that exits on its own (``--max-requests``, a crash) is replaced; one that
   dies within a second of starting is replaced after a growing pause (up to 30 s),
   so a crashing worker cannot spin the CPU. A worker that reaches
   ``--max-requests`` says RETIRING as it stops accepting, and its replacement is
   forked at once, not after the drain (which lasts as long as its slowest
   request): with one worker, the queue would otherwise wait that long for an
   acceptor.
7. A worker that cannot start serving (the app cannot be imported, a startup hook
   raised, ``serve`` raised an ``AiogateError`` or ``OSError``: a TLS file, the
   event loop, ...) exits with ``WORKER_BOOT_ERROR`` (4, gunicorn's
   ``APP_LOAD_ERROR``). At startup one worker is started alone until it is READY,
   so such an error is shown once; if it fails, every worker would, so the
   supervisor exits with 3 (``BOOT_FAILED``) instead of restarting it in a loop.
   Once the server has been ready, the old workers keep serving instead: a SIGHUP
   whose new worker cannot start is abandoned (the error logged), and a replacement
   that cannot start is retried after rule 6's pause.
8. Hooks (``hooks.Hook``) are called here at gunicorn's moments, on the main thread:
   ``pre_fork``, ``post_fork`` and ``worker_exit`` (in the child), ``child_exit``,
   ``on_reload``, ``when_ready`` (the first READY), ``nworkers_changed``,
   ``on_exit``. A failing ``when_ready`` stops startup (exit 3).
9. **systemd** (``Type=notify``, when given a ``Notifier``): ``READY=1`` once as
   many workers as ``--workers`` have said READY; ``RELOADING=1`` on SIGHUP, then
   ``READY=1`` again once every old worker has been replaced and has left;
   ``STOPPING=1`` as the drain starts. Workers never notify (systemd's
   ``NotifyAccess=main``).
10. **Metrics add up** (with ``--metrics-path``): the supervisor maps one shared
    region before forking and gives each worker a slot of it; a reaped worker's
    counts are folded into the region's retired slot (``tally``), so any worker's
    scrape sums the whole server, across restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
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
from .hooks import Hook, HookFailed, Hooks, Worker
from .systemd import Notifier

__all__ = ["BOOT_FAILED", "WORKER_BOOT_ERROR", "News", "Supervisor"]

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
#: A worker's news on the news pipe: (pid, News), one write of 8 bytes, atomic
#: (below PIPE_BUF).
_NEWS = struct.Struct("=ii")


class News(enum.IntEnum):
    """What a worker tells its supervisor."""

    #: Listening: the supervisor may retire the worker this one replaces.
    READY = 1
    #: At ``--max-requests``: draining now, to be replaced at once.
    RETIRING = 2


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when its parent dies (best effort elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _tell(fd: int, news: News) -> None:
    """Runs in a worker (on its event loop): tell the supervisor, through the news
    pipe."""
    with contextlib.suppress(OSError):  # a full pipe, or no supervisor to tell
        os.write(fd, _NEWS.pack(os.getpid(), news))


#: ``serve(sockets, worker, tell)``: run one worker's server on the inherited
#: sockets; ``tell(News.READY)`` once listening, ``tell(News.RETIRING)`` when it
#: begins to drain after ``--max-requests``.
Serve = Callable[[list[socket.socket], Worker, Callable[[News], None]], None]


class Supervisor:
    """Runs ``serve`` in ``config.workers`` forked workers until signalled.

    To hooks it is ``server``: ``cfg``, ``pid``, ``log``, ``num_workers``."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        serve: Serve,
        hooks: Hooks | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.serve = serve
        self.hooks = hooks if hooks is not None else Hooks()
        self.pid = os.getpid()
        self.log = log
        # Metrics add up (above): made before any fork, for every worker to share.
        self._tally = tally.ServerTally(config.workers) if config.metrics_path else None
        self.target = config.workers
        self.workers: dict[int, float] = {}  # pid -> start time
        self.worker_info: dict[int, Worker] = {}  # pid -> what hooks get
        self._age = 0  # workers started so far
        self._stopping = False
        self._replace: list[int] = []  # SIGHUP: old workers still to replace
        # SIGHUP: (new, old) while the new worker starts; old retires at its READY.
        self._successor: tuple[int, int] | None = None
        self._retiring: set[int] = set()  # told to stop; not to be replaced
        self._backoff = 0.0
        self._restart_at = 0.0  # monotonic time before which no restart happens
        self._pipe: tuple[int, int] | None = None  # the signal wakeup pipe
        self._news_pipe: tuple[int, int] | None = None  # workers -> supervisor
        self._ready_once = False  # a worker has been READY (rule 7)
        self._aborted = False  # SIGABRT sent to stragglers (worker_abort hook)
        self._boot_failed = False
        self._in_hook = False  # a hook runs on the main thread (see _hook)
        self._stop_signals = 0  # TERM and INT received, as they arrive
        self.notifier = notifier
        self._ready: set[int] = set()  # workers that said READY (rule 9)
        self._announced = False  # READY=1 sent, and no SIGHUP since

    @property
    def cfg(self) -> Config:
        """gunicorn's name for the settings, for hooks."""
        return self.config

    @property
    def num_workers(self) -> int:
        return self.target

    # -- workers ---------------------------------------------------------------------

    def spawn(self) -> int:
        parent = os.getpid()
        self._age += 1
        worker = Worker(self.config, self._age)
        self._hook(Hook.PRE_FORK, self, worker)
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
                news_write = -1  # (no pipe outside run(): nobody to tell)
                if self._news_pipe is not None:
                    news_read, news_write = self._news_pipe
                    os.close(news_read)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                os.setpgid(0, 0)
                _die_with_parent(parent)
                worker.set_current()
                self.hooks.call(Hook.POST_FORK, self, worker)
                self.serve(self.sockets, worker, lambda news: _tell(news_write, news))
                code = 0
            except (AiogateError, OSError) as exc:
                log.error("Worker %d could not start: %s", os.getpid(), exc)
                code = WORKER_BOOT_ERROR
            except BaseException:
                log.exception("Worker %d failed", os.getpid())
            finally:
                self.hooks.call(Hook.WORKER_EXIT, self, worker)
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        self.workers[pid] = time.monotonic()
        worker.pid, worker.ppid = pid, parent
        self.worker_info[pid] = worker
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

    def _on_news(self, data: bytes) -> None:
        """READY: the first one makes the server ready (``when_ready``); a SIGHUP
        successor's retires the worker it replaces. RETIRING: a worker drains on
        its own (``--max-requests``): not to be replaced when it exits, since
        ``_top_up`` replaces it now."""
        for pid, news in _NEWS.iter_unpack(data[: len(data) - len(data) % _NEWS.size]):
            if pid not in self.workers:
                continue
            if news == News.READY:
                self._ready.add(pid)
                if not self._ready_once:
                    self._ready_once = True
                    try:
                        self._hook(Hook.WHEN_READY, self)
                    except HookFailed as exc:
                        log.error("%s; stopping", exc)
                        self._boot_failed = True
                        self._stop()
                if self._successor is not None and self._successor[0] == pid:
                    old = self._successor[1]
                    self._successor = None
                    # (Not if it is draining already: max-requests.)
                    if old in self.workers and old not in self._retiring:
                        self._retire(old)
            elif news == News.RETIRING and pid not in self._retiring:
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
            self._ready.discard(pid)
            if started is None:
                continue
            worker = self.worker_info.pop(pid)
            self._hook(Hook.CHILD_EXIT, self, worker)
            code = os.waitstatus_to_exitcode(status)
            if self._tally is not None:  # its counts are kept (metrics add up)
                self._tally.reaped(pid, usage)
            successor, self._successor = self._successor, None
            if successor is not None and successor[1] == pid:
                pass  # the old one left early: the new one simply takes its place
            elif successor is not None and successor[0] == pid:
                if code == WORKER_BOOT_ERROR:
                    log.error(
                        "Worker %d (SIGHUP) could not start serving; the old workers "
                        "go on serving (see the error above)",
                        pid,
                    )
                    self._replace = []
                    continue
                self._replace.insert(0, successor[1])  # try that one again
            else:
                self._successor = successor
            if code == WORKER_BOOT_ERROR and not self._ready_once:
                if not self._boot_failed:
                    log.error(
                        "Worker %d could not start serving; stopping (see the error "
                        "above)",
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
        replaced = None if self._successor is None else self._successor[1]
        active = [
            pid for pid in self.workers if pid not in self._retiring and pid != replaced
        ]
        # Rule 7: one worker alone until it is READY.
        wanted = self.target if self._ready_once else 1
        while len(active) < wanted:
            active.append(self.spawn())
        if self._replace and not self._retiring and self._successor is None:
            old = self._replace.pop(0)
            if old in self.workers:
                # The new one first; the old one drains once the new one is READY.
                self._successor = (self.spawn(), old)
        while len(active) > self.target:
            self._retire(active.pop())

    def _notify_ready(self) -> None:
        """Rule 9: READY=1 once the workers listen and no replacement is under way."""
        if (
            self.notifier is None
            or self._announced
            or self._stopping
            or self._replace
            or self._successor is not None
            or self._retiring
        ):
            return
        serving = [pid for pid in self.workers if pid in self._ready]
        if len(serving) >= self.target:
            self._announced = True
            self.notifier.ready()

    # -- signals ---------------------------------------------------------------------

    def _hook(self, hook: Hook, *args: object) -> None:
        """Call a hook on the supervisor's main thread, marked as doing so: while it
        runs, the loop reads no signal, so ``_on_raw_signal`` acts on a second TERM
        or INT itself (a hook that hangs must not make the server unstoppable)."""
        self._in_hook = True
        try:
            self.hooks.call(hook, *args)
        finally:
            self._in_hook = False

    def _on_raw_signal(self, signum: int, frame: object) -> None:
        """The Python-level handler (the wakeup fd carries the signal to the loop,
        which acts on it); counts TERM and INT, for ``_hook``."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_signals += 1
            if self._stop_signals >= 2 and self._in_hook:
                self._kill_and_exit(signum)

    def _kill_and_exit(self, signum: int) -> None:
        log.warning("Second %s: killing the workers", signal.Signals(signum).name)
        for pid in self.workers:
            self._signal_worker(pid, signal.SIGKILL)
        sys.exit(1)

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stopping:
                self._kill_and_exit(signum)
            log.info(
                "Received %s: draining %d workers",
                signal.Signals(signum).name,
                len(self.workers),
            )
            self._stop()
        elif signum == signal.SIGHUP:
            log.info("Received SIGHUP: replacing the workers one by one")
            if self.notifier is not None and self._announced:
                self._announced = False
                self.notifier.reloading()
            self._hook(Hook.ON_RELOAD, self)
            self._replace = [pid for pid in self.workers if pid not in self._retiring]
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            old = self.target
            self.target = max(1, old + (1 if signum == signal.SIGTTIN else -1))
            log.info(
                "Received %s: %d workers", signal.Signals(signum).name, self.target
            )
            if self.target != old:
                self._hook(Hook.NWORKERS_CHANGED, self, self.target, old)

    def _stop(self) -> None:
        if self.notifier is not None and not self._stopping:
            self.notifier.stopping()
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
        news_read, news_write = os.pipe()
        os.set_blocking(news_read, False)
        os.set_blocking(news_write, False)
        self._news_pipe = (news_read, news_write)
        old_fd = signal.set_wakeup_fd(write_fd)
        for signum in _SIGNALS:
            signal.signal(signum, self._on_raw_signal)  # the wakeup fd carries them
        deadline: float | None = None
        try:
            self._hook(Hook.NWORKERS_CHANGED, self, self.target, None)
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
                ready, _, _ = select.select([read_fd, news_read], [], [], timeout)
                if news_read in ready:
                    with contextlib.suppress(BlockingIOError):
                        self._on_news(os.read(news_read, 4096))
                if read_fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        for number in os.read(read_fd, 64):
                            self._on_signal(number)
                self._reap()
                if deadline is not None and time.monotonic() >= deadline:
                    # With a worker_abort hook, SIGABRT first: the worker calls it
                    # and exits; SIGKILL after KILL_MARGIN for any still there.
                    abort = Hook.WORKER_ABORT in self.hooks and not self._aborted
                    self._aborted = True
                    for pid in self.workers:
                        log.warning("Worker %d did not drain in time; killing it", pid)
                        self._signal_worker(
                            pid, signal.SIGABRT if abort else signal.SIGKILL
                        )
                    deadline = time.monotonic() + KILL_MARGIN
                self._top_up()
                self._notify_ready()
        finally:
            signal.set_wakeup_fd(old_fd)
            os.close(read_fd)
            os.close(write_fd)
            os.close(news_read)
            os.close(news_write)
            self._pipe = self._news_pipe = None
            self._hook(Hook.ON_EXIT, self)
        if self._boot_failed:
            return BOOT_FAILED
        log.info("Stopped")
        return 0
