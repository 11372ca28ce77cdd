"""Serving a WSGI app: the listener (``listener.Listener``: accepting and the connection
budget), the thread pool, the open-file limit, start and graceful shutdown.

Owns: ``Server`` (the embedding API: ``start``/``serve_forever``/``shutdown``/``async
with``) and ``run`` (blocking; picks the event loop and handles SIGINT/SIGTERM, and
SIGHUP in a single process: logged and ignored, since there is no worker to replace).
The ``Server`` methods run on the event loop; ``run`` runs in the main thread.

Hooks (``hooks.Hook``): a ``Server`` on its own (one process, or embedded) calls
``on_starting``, ``post_worker_init`` and ``when_ready`` in ``start``,
``worker_int`` on SIGINT and ``worker_abort`` on SIGABRT (in ``run``), and
``worker_exit`` and ``on_exit`` at the end of ``shutdown``; as a supervised worker
(``worker`` given) only ``post_worker_init``, ``worker_int`` and ``worker_abort``:
the supervisor calls the others. Each runs on the event loop's thread (the main
thread, in ``run``); ``pre_request``/``post_request`` run in the app's thread.

Shutdown, in order: stop accepting; close busy connections after their current response
(which carries ``Connection: close``), and idle ones after a grace in which a request
already on its way is still served (``H11Protocol.shutdown``); wait for connections to
finish up to ``timeout_graceful_shutdown``; abort what remains; stop the thread pool.
A thread stuck inside app code cannot be killed: the pool's threads are daemons, so the
process can still exit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pkgutil
import random
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .access_log import compile_format, environ_keys
from .config import Config, refuse_command_line_only
from .deadlines import DeadlineSweeper
from .errors import ConfigError
from .hooks import Hook, HookFailed, Hooks, Worker
from .listener import Listener, open_files_needed
from .log_writer import AccessLogWriter
from .observe import Probes, new_metrics
from .protocol import LINGER_TIMEOUT, H11Protocol
from .proxied import ProxiedH11Protocol, ProxiedTLSGate
from .proxy_headers import parse_trusted
from .server_handler import ServerHandler, as_handler_class
from .server_state import ServerState
from .sockets import bind_sockets, remove_socket_files, socket_files
from .thread_pool import ThreadPool
from .tls import make_ssl_context

if TYPE_CHECKING:
    from ._types import WSGIApplication

__all__ = ["Server", "loop_factory", "run"]

log = logging.getLogger("aiogate.error")


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for ``Config.loop``: uvloop when asked or available."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ConfigError(
                    "loop 'uvloop' asked for, but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def _handler_class(value: str | type | None) -> type[ServerHandler]:
    if value is None:
        return ServerHandler
    resolved = pkgutil.resolve_name(value) if isinstance(value, str) else value
    try:
        return as_handler_class(resolved)
    except TypeError as exc:
        raise ConfigError(f"handler_class: {exc}") from None


class Server:
    """A WSGI app served on the running event loop.

    ``Server(app, host="127.0.0.1", port=0, threads=8, ...)`` takes any ``Config``
    field as a keyword, or ``config=Config(...)``. No signal handlers are installed:
    the embedding program decides when to call ``shutdown``.

    ``hooks``: server hooks by name (``{"post_worker_init": f}``, or a
    ``hooks.Hooks``), called as the module docstring says. ``worker``: given by a
    supervised worker process, which is then not the whole server. To hooks the
    server is ``server``: ``cfg``, ``pid``, ``log``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: Config | None = None,
        *,
        hooks: Hooks | Mapping[str, Callable[..., object]] | None = None,
        worker: Worker | None = None,
        **options: Any,
    ) -> None:
        # An embedding program's keywords (the command line passes a whole Config).
        refuse_command_line_only("Server", options)
        if config is None:
            config = Config(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        self.app = app
        self.config = config
        self.hooks = hooks if isinstance(hooks, Hooks) else Hooks(hooks)
        #: Not supervised: this process is the whole server, and its own worker.
        self.standalone = worker is None
        self.worker = worker if worker is not None else Worker(config, age=1)
        self.log = log
        #: Called on the loop once listening (a supervised worker says READY).
        self.on_ready: Callable[[], object] | None = None
        self._handler_class = _handler_class(config.handler_class)
        try:
            self._access_line = compile_format(config.access_log_format)
        except ValueError as exc:
            raise ConfigError(f"access_log_format: {exc}") from None
        self._access_writer: AccessLogWriter | None = None
        self._ssl_context = (
            None
            if config.ssl_certfile is None
            else make_ssl_context(
                certfile=config.ssl_certfile,
                keyfile=config.ssl_keyfile,
                password=config.ssl_keyfile_password,
                ca_certs=config.ssl_ca_certs,
                cert_reqs=config.ssl_cert_reqs,
                ciphers=config.ssl_ciphers,
                minimum_version=config.ssl_minimum_version,
            )
        )
        # Parsed here, once: a bad entry is a ConfigError before anything is bound.
        self._trusted_proxies = (
            None
            if config.proxy_headers == "off"
            else parse_trusted(config.forwarded_allow_ips)
        )
        # Which protocol each accepted socket gets (proxied.py: only with the
        # option on, so plain connections keep H11Protocol's path as it is).
        self._protocol_factory: Callable[..., asyncio.BaseProtocol] = H11Protocol
        self._listener_ssl = self._ssl_context
        if config.proxy_protocol:
            trusted = self._trusted_proxies or parse_trusted(config.forwarded_allow_ips)
            if self._ssl_context is None:
                self._protocol_factory = partial(ProxiedH11Protocol, trusted=trusted)
            else:
                # The header comes before the TLS handshake: the listener takes plain
                # sockets and the gate starts TLS after the header (proxied rule 5).
                self._protocol_factory = partial(
                    ProxiedTLSGate, trusted=trusted, ssl_context=self._ssl_context
                )
                self._listener_ssl = None
        self._listener: Listener | None = None
        # The files of UNIX sockets this server bound itself: removed at exit.
        self._socket_files: list[str] = []
        self._state: ServerState | None = None
        self._pool: ThreadPool | None = None
        self._stopped: asyncio.Event | None = None
        self._all_closed: asyncio.Event | None = None
        self._sweeper: DeadlineSweeper | None = None
        self._shutdown_started = False
        self._self_stop: asyncio.Task[None] | None = None
        #: Called on the loop when ``max_requests`` is reached, as the drain begins:
        #: a supervised worker tells its supervisor, which starts the replacement
        #: at once instead of when this process has drained and exited.
        self.on_max_requests: Callable[[], object] | None = None
        # Deadlines (keep-alive, head, body, queue wait, request, linger) are checked
        # this often, so they fire up to one tick late; a quarter of the shortest
        # timeout keeps that small.
        timeouts = (
            config.timeout_keep_alive,
            config.timeout_request_header,
            config.timeout_request_body,
            config.timeout_request or 2.0,
            config.max_queue_wait or 2.0,
        )
        self._tick_interval = max(0.01, min(timeouts) / 4)

    @property
    def cfg(self) -> Config:
        """gunicorn's name for the settings, for hooks."""
        return self.config

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (``getsockname()`` gives the real port)."""
        return [] if self._listener is None else list(self._listener.sockets)

    @property
    def ready(self) -> bool:
        """False until listening, and again from the start of a shutdown (including
        ``shutdown_delay``): what the readiness endpoint reports, load aside."""
        return self._state is not None and self._state.ready

    @property
    def started(self) -> bool:
        return self._state is not None

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind (or take ``sockets``), start the threads, and begin accepting.
        Returns once the server is listening."""
        if self._state is not None:
            raise RuntimeError("server already started")
        config = self.config
        loop = asyncio.get_running_loop()
        hooks, worker = self.hooks, self.worker
        if self.standalone:
            worker.set_current()
            hooks.call(Hook.ON_STARTING, self)  # a startup hook: raises HookFailed
        worker.wsgi = self.app
        hooks.call(Hook.POST_WORKER_INIT, worker)
        _raise_open_file_limit(config.limit_connections, config.threads)
        _check_temporary_directory(config)
        pool = ThreadPool(config.threads)
        pool.start()
        self._pool = pool
        make_handler = partial(
            self._handler_class,
            root_path=config.root_path,
            multithread=True,
            multiprocess=config.workers > 1,
            server_software=config.server_header,
            expose_tracebacks=config.expose_tracebacks,
            trusted_proxies=self._trusted_proxies,
            proxy_mode="forwarded"
            if config.proxy_headers == "forwarded"
            else "x-forwarded",
        )
        software = config.server_header
        if software is None:
            software = self._handler_class.server_software
        state = ServerState(
            loop=loop,
            app=self.app,
            pool=pool,
            make_handler=make_handler,
            config=config,
            server_software=software,
        )
        if Hook.PRE_REQUEST in hooks or Hook.POST_REQUEST in hooks:
            state.hooks, state.worker = hooks, worker  # else no cost per request
        if config.metrics_path:
            state.metrics = new_metrics()
        if config.access_log:
            self._access_writer = AccessLogWriter(self._access_line)
            state.access_log = self._access_writer.submit
            state.access_environ = environ_keys(config.access_log_format)
        Probes(state, pool, self._open_connections).install(
            config.liveness_path, config.readiness_path, config.metrics_path
        )
        self._state = state
        self._stopped = asyncio.Event()
        self._all_closed = asyncio.Event()
        try:
            if not sockets:
                sockets = bind_sockets(config)
                self._socket_files = socket_files(config, sockets)
            self._listener = Listener(
                loop,
                sockets,
                partial(self._protocol_factory, state),
                limit_connections=config.limit_connections,
                backlog=config.backlog,
                ssl=self._listener_ssl,
                # The handshake counts against the head's deadline: a client that
                # opens a TLS connection and stalls is a slowloris too.
                ssl_handshake_timeout=config.timeout_request_header,
                # A client that read everything but never answers our close_notify
                # would hold its place for the loop's default 30 s: it gets the
                # linger a plain TCP connection gets.
                ssl_shutdown_timeout=LINGER_TIMEOUT,
                on_release=self._on_connection_lost,
            )
            self._listener.start()
        except BaseException:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            pool.shutdown(0)
            if self._access_writer is not None:
                self._access_writer.close()
            self._state = None
            raise
        self._sweeper = DeadlineSweeper(
            loop, lambda: state.connections, self._tick_interval
        )
        self._sweeper.start()
        if config.max_requests:
            # Jitter, so that workers started together are not replaced together.
            state.max_requests = config.max_requests + random.randint(
                0, config.max_requests_jitter
            )
            state.on_max_requests = self._on_max_requests
        state.ready = True
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                host, port = name[0], name[1]
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                scheme = "http" if self._ssl_context is None else "https"
                log.info(
                    "Listening on %s://%s (%d threads)", scheme, shown, config.threads
                )
            else:
                log.info("Listening on unix:%s (%d threads)", name, config.threads)
        if self.standalone:
            try:
                hooks.call(Hook.WHEN_READY, self)
            except HookFailed:
                await self.shutdown(delay=0)
                raise
        if self.on_ready is not None:
            self.on_ready()

    async def serve_forever(self) -> None:
        """Start if needed, then wait until ``shutdown`` has finished."""
        if self._state is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def shutdown(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        delay: float | None = None,
    ) -> None:
        # (A timeout argument, not asyncio.timeout around the call: the deadline
        # applies to waiting for connections, after which they are aborted.)
        """Stop gracefully: see the module docstring. ``timeout`` defaults to
        ``timeout_graceful_shutdown``; ``delay`` (default ``shutdown_delay``) is how
        long to keep serving, not ready, before the drain starts."""
        state = self._state
        if state is None or self._shutdown_started:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._shutdown_started = True
        try:
            await self._drain(state, timeout, delay)
        except Exception:
            # Whatever failed, serve_forever must return and the process exit, not
            # wait for a drain that will never finish.
            log.exception("Shutdown failed; stopping without finishing it")
        finally:
            if self._sweeper is not None:
                self._sweeper.stop()
            if self.standalone:  # under a supervisor, the supervisor calls them
                self.hooks.call(Hook.WORKER_EXIT, self, self.worker)
                self.hooks.call(Hook.ON_EXIT, self)
            assert self._stopped is not None
            self._stopped.set()

    async def _drain(
        self, state: ServerState, grace: float | None, delay: float | None
    ) -> None:
        """``shutdown``'s steps, in order; ``grace`` is its ``timeout``."""
        state.ready = False
        if grace is None:
            grace = self.config.timeout_graceful_shutdown
        if delay is None:
            delay = self.config.shutdown_delay
        if delay > 0:
            log.info("Not ready; serving %gs more before draining", delay)
            await asyncio.sleep(delay)
        state.shutting_down = True
        listener = self._listener
        assert listener is not None
        remove_socket_files(self._socket_files)
        listener.close()
        # One more turn of the loop first: a request that already sits in a socket's
        # receive buffer is read, and then served (with Connection: close) as a
        # request arriving, not left to an idle connection's grace.
        await asyncio.sleep(0)
        for protocol in list(state.connections):
            protocol.shutdown()
        assert self._all_closed is not None
        # listener.open: TLS handshakes in progress too (they have no protocol yet).
        if listener.open:
            log.info("Waiting for %d connections to finish", listener.open)
            try:
                async with asyncio.timeout(grace):
                    await self._all_closed.wait()
            except TimeoutError:
                log.warning(
                    "Graceful shutdown timed out; aborting %d connections",
                    listener.open,
                )
                listener.abort_connecting()
                for protocol in list(state.connections):
                    protocol.abort()
        assert self._pool is not None
        # Jobs of aborted connections end at their next read or write; a thread stuck
        # in app code cannot be stopped, so do not wait for it on the loop.
        pool = self._pool
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pool.shutdown, 1.0)
        if self._access_writer is not None:  # after the pool: every line is queued
            await loop.run_in_executor(None, self._access_writer.close)

    # -- endpoints answered on the event loop ----------------------------------------

    def _open_connections(self) -> int:
        return self._listener.open if self._listener is not None else 0

    def _on_max_requests(self) -> None:
        """Runs on the loop when the request that reaches --max-requests is
        dispatched: drain (that request and those in flight are served) and stop, so
        the supervisor starts a fresh worker."""
        if not self._shutdown_started:
            assert self._state is not None
            log.info(
                "Served %d requests (max-requests): stopping to be replaced",
                self._state.dispatched,
            )
            self._self_stop = asyncio.get_running_loop().create_task(
                self.shutdown(delay=0)
            )
            if self.on_max_requests is not None:
                self.on_max_requests()

    def _on_connection_lost(self) -> None:
        """A client socket is closed (the listener released its slot)."""
        state = self._state
        if (
            state is not None
            and state.shutting_down
            and self._listener is not None
            and not self._listener.open
        ):
            assert self._all_closed is not None
            self._all_closed.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


async def _serve_until_signalled(
    server: Server,
    sockets: list[socket.socket] | None,
    on_stopping: Callable[[], object] | None = None,
    on_forced_exit: Callable[[], object] | None = None,
) -> None:
    """Start, and serve until SIGINT or SIGTERM; a second signal exits at once,
    after ``on_forced_exit`` (what the caller removes at exit: a pid file, socket
    files). ``on_stopping`` is called as the first signal starts the drain (systemd's
    ``STOPPING=1``). SIGABRT, with a ``worker_abort`` hook: call it and exit at once
    (gunicorn's). SIGHUP in a single process: logged and ignored (its default would
    end the process). The handlers are in place before ``start``, whose hooks (and
    the first "Listening" line) may make someone send a signal at once; ``start``
    does not yield, so a handler runs only once it has returned."""
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    stopping: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        if stopping:
            # Forced: requests still in flight are cut, so say so in the exit code.
            log.warning("Second %s: exiting now", signal.Signals(signum).name)
            if on_forced_exit is not None:
                try:
                    on_forced_exit()
                except Exception:  # exiting regardless
                    log.exception("Could not clean up before exiting")
            sys.stdout.flush()
            os._exit(1)
        log.info("Received %s: shutting down", signal.Signals(signum).name)
        if on_stopping is not None:
            on_stopping()
        if signum == signal.SIGINT:
            server.hooks.call(Hook.WORKER_INT, server.worker)
        stopping.append(loop.create_task(server.shutdown()))

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    if Hook.WORKER_ABORT in server.hooks:
        # A plain handler, not the loop's: it runs even if the loop is stuck (the
        # supervisor sends SIGABRT to a worker that did not drain in time), and
        # after the loop is gone (a worker_exit hook that hangs).
        signal.signal(signal.SIGABRT, lambda *_: _abort(server))
    if server.standalone:
        loop.add_signal_handler(signal.SIGHUP, _on_hangup)
        signals.append(signal.SIGHUP)
    try:
        await server.start(sockets)
        await server.serve_forever()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("Stopped")


def _abort(server: Server) -> None:
    """SIGABRT with a ``worker_abort`` hook: call it, and exit at once."""
    log.warning("Received SIGABRT: exiting now")
    server.hooks.call(Hook.WORKER_ABORT, server.worker)
    logging.shutdown()
    os._exit(1)


def _on_hangup() -> None:
    log.warning(
        "Received SIGHUP: one process has no worker to replace; ignored (to load "
        "new code, restart it, or run --workers 2 or more)"
    )


def _raise_open_file_limit(limit_connections: int, threads: int) -> None:
    """Raise the soft limit on open files to what ``limit_connections`` may need
    (``listener.open_files_needed``: a socket and a spooled body per connection, the
    refused ones, the threads' files, spare), or to the hard limit when there is no
    connection limit. Many systems start processes at 1024 while the hard limit is
    far higher (nginx's worker_rlimit_nofile does the same). Warn when the hard limit
    is lower: the listener then meets EMFILE before the connection limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit_connections == 0:
        wanted = hard
    else:
        wanted = open_files_needed(limit_connections, threads)
        if hard != resource.RLIM_INFINITY and hard < wanted:
            log.warning(
                "Open-file hard limit %d is below the %d descriptors that "
                "limit_connections %d may need; raise it (ulimit -Hn, systemd "
                "LimitNOFILE=) or lower --limit-connections",
                hard,
                wanted,
                limit_connections,
            )
            wanted = hard
    if soft != resource.RLIM_INFINITY and (
        wanted == resource.RLIM_INFINITY or soft < wanted
    ):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:  # pragma: no cover - platform quirk
            log.debug("Could not raise the open-file limit: %s", exc)


def _check_temporary_directory(config: Config) -> None:
    """Warn when no temporary file can be made (a read-only root filesystem with no
    tmpfs): large request bodies and slow readers' responses need one. A warning, not
    a refusal to start: an app that takes no large uploads runs read-only as it is."""
    if not config.response_spool_size and config.limit_request_body <= (
        config.body_buffer_size
    ):
        return  # nothing ever goes to a file
    import tempfile  # what body.py and writer.py use, so the same directory is tried

    try:
        tempfile.TemporaryFile().close()
    except OSError as exc:
        log.warning(
            "No temporary file can be made (%s): request bodies over "
            "--body-buffer-size (%d bytes) will get a 503, and responses to clients "
            "that read slowly are cut off when they need a spool file; mount a "
            "writable /tmp (docker run --tmpfs /tmp, an emptyDir in Kubernetes) or "
            "set TMPDIR",
            exc,
            config.body_buffer_size,
        )


def run(
    app: WSGIApplication,
    config: Config | None = None,
    *,
    sockets: list[socket.socket] | None = None,
    on_max_requests: Callable[[], object] | None = None,
    on_ready: Callable[[], object] | None = None,
    on_stopping: Callable[[], object] | None = None,
    on_forced_exit: Callable[[], object] | None = None,
    hooks: Hooks | Mapping[str, Callable[..., object]] | None = None,
    worker: Worker | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` in this thread until SIGINT or SIGTERM, then return.

    Takes the same options as ``Server`` (``on_max_requests``, ``on_ready``: see
    ``Server.on_max_requests`` and ``Server.on_ready``); ``on_stopping`` is called
    when a signal starts the drain (sd_notify's STOPPING), ``on_forced_exit`` before
    a second signal ends the process at once. Signal handlers are
    installed, so call it from the main thread (embedded programs use ``Server``
    instead)."""
    server = Server(app, config, hooks=hooks, worker=worker, **options)
    server.on_max_requests = on_max_requests
    server.on_ready = on_ready

    coroutine: Coroutine[Any, Any, None] = _serve_until_signalled(
        server, sockets, on_stopping, on_forced_exit
    )
    with asyncio.Runner(loop_factory=loop_factory(server.config.loop)) as runner:
        runner.run(coroutine)
