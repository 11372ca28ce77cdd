"""One frozen record of every setting the server has, declared once.

Owns: ``Config``: each field's type, default, help text (in ``metadata["help"]``) and
validation (``__post_init__``). The command line, the ``AIOGATE_*`` environment
variables and the README reference are all derived from these declarations. Building a
``Config`` has no side effects: no logging setup, no import of the app. Pure; any thread.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "COMMAND_LINE_ONLY",
    "Bind",
    "Config",
    "LogLevel",
    "LoopName",
    "ProxyHeaders",
    "option_fields",
    "parse_bind",
    "refuse_command_line_only",
]

#: gunicorn's default access_log_format, so gunicorn users see the same lines.
DEFAULT_ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
)

LoopName = Literal["auto", "uvloop", "asyncio"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ProxyHeaders = Literal["x-forwarded", "forwarded", "off"]
CertReqs = Literal["none", "optional", "required"]
TLSVersion = Literal["TLSv1.2", "TLSv1.3"]


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A field with a default and help text; ``extra`` lands in metadata too."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of one server. Field order is the order of ``aiogate --help``."""

    host: str = _opt(
        "127.0.0.1",
        "Address(es) to bind, comma-separated (e.g. 127.0.0.1,::1). 0.0.0.0 or :: "
        "listens on all of one family.",
    )
    port: int = _opt(8000, "TCP port to bind; 0 picks a free one.")
    uds: str | None = _opt(
        None,
        "Listen on this UNIX socket path instead of TCP (a stale one is replaced).",
    )
    # Owner and group: nginx running in the socket's group can connect, others not.
    uds_mode: str = _opt("0660", "Permissions of the UNIX socket, in octal.")
    fd: int | None = _opt(
        None,
        "Listen on this inherited socket descriptor instead of TCP. (systemd socket "
        "activation, LISTEN_FDS/LISTEN_PID, is used automatically.)",
    )
    # Measured with benchmarks/run.py on 2 cores (2026-11-22): hello world gives the
    # same req/s, within noise, from 2 to 32 threads (the hand-off batches jobs), while
    # an app that waits 10 ms serves threads x 100 req/s (91-97 % of that ideal). So
    # threads cost little and waiting apps need them: 16, raise it for apps that wait
    # on databases or HTTP calls. (gunicorn gthread defaults to 1, waitress to 4.)
    threads: int = _opt(16, "Worker threads that run the WSGI app.")
    # One process by default: add processes for CPU-bound apps (the GIL), or rather
    # replicas on an orchestrator. WEB_CONCURRENCY is read when this is not set.
    workers: int = _opt(
        1,
        "Worker processes, each with its own event loop and threads, under a "
        "supervisor (default 1, or WEB_CONCURRENCY).",
    )
    max_requests: int = _opt(
        0,
        "Replace a worker after it has served this many requests, gracefully (0: never).",
    )
    max_requests_jitter: int = _opt(
        0,
        "Add up to this many to max_requests per worker, so they do not all restart at once.",
    )
    # Off, as gunicorn's --preload: then SIGHUP's rolling restart loads new code,
    # which is what a deploy by "kill -HUP" expects. On, the workers share the
    # app's memory pages and start faster, but run the code of the first import.
    preload: bool = _opt(
        False,
        "Import the app once in the supervisor, before forking the workers (shared "
        "memory, faster starts), instead of in each worker; SIGHUP then restarts the "
        "workers on the code imported at startup, not on new code.",
    )
    root_path: str = _opt(
        "", "Mount point of the app (SCRIPT_NAME), e.g. /api when behind a path prefix."
    )
    handler_class: str | type | None = _opt(
        None,
        "A subclass of aiogate.handlers.ServerHandler (module:Class) to customise "
        "error_output, log_exception, server_software and the other wsgiref hooks.",
    )
    server_header: str | None = _opt(
        None,
        "Value of the Server header of every response, aiogate's own error "
        "responses included; empty to send none. "
        "Default: the handler's server_software.",
    )
    log_level: LogLevel = _opt("info", "Log level of the aiogate loggers.")
    loop: LoopName = _opt("auto", "Event loop: uvloop if installed (auto), or asyncio.")
    # uvicorn's default is 5 s; it must exceed the idle timeout of any load balancer in
    # front (see the README), or the balancer may reuse a connection we just closed.
    timeout_keep_alive: float = _opt(
        5.0, "Close a keep-alive connection idle for this many seconds."
    )
    # Slowloris defence: a head is a few hundred bytes, which any live client sends in
    # well under a second; 10 s leaves room for bad mobile links (nginx waits 60 s
    # between reads, Apache's mod_reqtimeout 20-40 s for the whole head).
    timeout_request_header: float = _opt(
        10.0,
        "The whole request head must arrive within this many seconds of its first "
        "byte; otherwise 408 and close.",
    )
    # nginx's client_body_timeout is 60 s between reads; a stalled upload costs us a
    # buffer and a connection slot, never a thread, so half that is still generous.
    timeout_request_body: float = _opt(
        30.0,
        "Answer 408 and close when no request body data arrives for this many seconds.",
    )
    timeout_write: float = _opt(
        30.0,
        "Drop a client that reads under --min-write-rate for this many seconds "
        "while the app's thread waits on it or its response's spool is sent.",
    )
    # Off by default: a deadline that fires on a legitimately slow endpoint is worse
    # than none; set it above the slowest request the app is meant to serve.
    timeout_request: float = _opt(
        0.0,
        "Per-request deadline for the app call, in seconds (0: none). On overrun the "
        "client gets a 503 (or the connection is aborted if the response began), the "
        "stuck thread's stack is logged and a new thread takes its place.",
    )
    timeout_graceful_shutdown: float = _opt(
        30.0, "On shutdown, wait this long for requests in flight, then close."
    )
    # For Kubernetes: endpoints are removed from Services asynchronously after the pod
    # is told to stop, so new requests keep arriving for a few seconds.
    shutdown_delay: float = _opt(
        0.0,
        "On SIGTERM, keep serving this many seconds (reporting not ready) before the "
        "graceful shutdown begins.",
    )
    # Off by default, like uvicorn's limit_concurrency: shedding is a policy choice.
    max_queue_wait: float = _opt(
        0.0,
        "Answer 503 with Retry-After, without calling the app, when a complete request "
        "has waited this many seconds for a thread (0: wait as long as it takes).",
    )
    # gunicorn and uvicorn default to 2048 too; the kernel caps it at somaxconn.
    backlog: int = _opt(2048, "Listen backlog: connections the kernel queues for us.")
    # Each connection costs a few KiB idle and at most a head, body-buffer-size and the
    # write buffers busy. waitress stops at 100 connections, a common complaint.
    limit_connections: int = _opt(
        2048,
        "Most open connections, each counted from accept until closed (TLS handshake "
        "and lingering close included); a new one beyond it gets a 503 with "
        "Retry-After and is closed, and while 64 of those are open too, new ones "
        "wait in the listen backlog (0: no limit).",
    )
    limit_concurrency: int = _opt(
        0,
        "Most requests in flight (running in a thread or waiting for one); a request "
        "beyond it gets a 503 with Retry-After (0: no limit).",
    )
    # waitress keeps 512 KiB of a body in memory before spilling to a temporary file,
    # and its max_request_body_size is 1 GiB; both work well for us too.
    body_buffer_size: int = _opt(
        512 * 1024,
        "Request bodies up to this many bytes are kept in memory; larger ones are "
        "spooled to an anonymous temporary file (in TMPDIR).",
    )
    limit_request_body: int = _opt(
        1024 * 1024 * 1024, "Largest request body, in bytes (413 beyond)."
    )
    # waitress's outbuf_high_watermark: a slow reader's response goes to a temporary
    # file instead of holding the app's thread, up to this; it is disk (page cache),
    # not RSS, and only responses whose client falls behind get one.
    response_spool_size: int = _opt(
        16 * 1024 * 1024,
        "Bytes of a response held in an anonymous temporary file (in TMPDIR) for a "
        "client that reads slower than the app writes, so the app's thread is "
        "released; beyond it the thread waits (0: no file, the thread waits).",
    )
    # A third of a slow mobile link (~50 KB/s, 400 kbit/s), so a bad but real link is
    # never cut over a 30 s window, while a trickle (bytes a minute) cannot hold a
    # thread or a spool file for long. 0 keeps only the idle rule: a byte a window.
    min_write_rate: int = _opt(
        16 * 1024,
        "Bytes/s a client must read, over each --timeout-write, while the app's "
        "thread waits on it or its response's spool is sent; slower ones are dropped.",
    )
    # gunicorn allows 100 fields of 8190 bytes and a 4094-byte request line; we allow
    # 8190 for the line too, since long query strings are common behind APIs.
    limit_request_line: int = _opt(8190, "Longest request line, in bytes (414 beyond).")
    limit_request_fields: int = _opt(
        100, "Most header fields in a request (431 beyond)."
    )
    limit_request_field_size: int = _opt(
        8190, "Longest header field line, in bytes (431 beyond)."
    )
    # gunicorn's and uvicorn's default: only a proxy on this machine is believed.
    forwarded_allow_ips: str = _opt(
        "127.0.0.1,::1",
        "Peers trusted to set proxy headers: comma-separated addresses and CIDR "
        "networks, 'unix' for UNIX-socket peers, or '*' for everyone. Proxy headers "
        "from any other peer are removed.",
    )
    proxy_headers: ProxyHeaders = _opt(
        "x-forwarded",
        "Which proxy headers trusted peers may use: X-Forwarded-For/-Proto/-Host/"
        "-Port/-Prefix, RFC 7239 Forwarded, or none (all are then removed).",
    )
    # Off by default: with it on, every connection must start with the header, which
    # only a load balancer configured for it sends (HAProxy send-proxy, AWS NLB).
    proxy_protocol: bool = _opt(
        False,
        "Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy "
        "and AWS NLB send), accepted only from --forwarded-allow-ips peers; the "
        "client it names becomes REMOTE_ADDR. With TLS, the header comes first.",
    )
    ssl_certfile: str | None = _opt(
        None, "Serve HTTPS with this certificate (chain) file, PEM."
    )
    ssl_keyfile: str | None = _opt(
        None, "The private key file (PEM), if not in ssl_certfile."
    )
    ssl_keyfile_password: str | None = _opt(
        None, "Password of an encrypted private key."
    )
    ssl_ca_certs: str | None = _opt(
        None, "CA certificates (PEM) that client certificates are checked against."
    )
    ssl_cert_reqs: CertReqs = _opt(
        "none",
        "Client certificates: not asked for, optional (checked if given), or required.",
    )
    ssl_ciphers: str = _opt(
        "", "OpenSSL cipher list for TLS 1.2 (empty: Python's secure defaults)."
    )
    # TLS 1.0 and 1.1 are deprecated by RFC 8996.
    ssl_minimum_version: TLSVersion = _opt("TLSv1.2", "Oldest TLS version accepted.")
    # Off by default, like gunicorn's: a line per request costs CPU and disk, and the
    # peers we are measured against log nothing by default either.
    access_log: bool = _opt(
        False, "Log one line per request to stdout (logger aiogate.access)."
    )
    access_log_format: str = _opt(
        DEFAULT_ACCESS_LOG_FORMAT,
        "Access line format, with gunicorn's atoms (%(h)s %(r)s %(s)s ... "
        "%({VAR}e)s) plus %(w)s, seconds waited for a thread, and %(refused)s, why "
        "aiogate answered without the app; or 'json' for JSON lines.",
    )
    log_config: str | None = _opt(
        None,
        "A logging configuration file (dictConfig .json, or fileConfig INI) used "
        "instead of aiogate's own setup.",
    )
    # gunicorn's --access-logfile and --error-logfile, "-" meaning stdout and stderr as
    # there: a file is for hosts without a log collector reading the streams.
    access_log_file: str = _opt(
        "-",
        "Where --access-log lines go: - for stdout, or a file they are appended to "
        "(reopened if logrotate moves it).",
    )
    error_log_file: str = _opt(
        "-",
        "Where the aiogate.error log goes: - for stderr, or a file it is appended to "
        "(reopened if logrotate moves it).",
    )
    # Off by default; the Docker image and the Kubernetes manifest turn them on.
    liveness_path: str = _opt(
        "",
        "Answer GET on this path (e.g. /livez) from the event loop: 200 while the "
        "server runs and not every thread is stuck. Empty: off.",
    )
    readiness_path: str = _opt(
        "",
        "Answer GET on this path (e.g. /readyz) from the event loop: 200 when "
        "serving, 503 while starting, draining, or within 1 s of shedding load.",
    )
    metrics_path: str = _opt(
        "",
        "Serve Prometheus metrics on this path (e.g. /metrics) from the event loop. "
        "Empty: off.",
    )
    # Development only, like uvicorn's --reload: a watcher process restarts the
    # server on every change; needs the optional watchfiles (aiogate[reload]).
    reload: bool = _opt(
        False,
        "Restart the server when a watched file changes (development; needs "
        "pip install 'aiogate[reload]').",
    )
    reload_dirs: str = _opt(
        "", "Comma-separated directories to watch (default: --app-dir)."
    )
    reload_include: str = _opt(
        "*.py", "Comma-separated glob patterns of the files that trigger a reload."
    )
    reload_exclude: str = _opt(
        ".*,*~,*.py[cod],__pycache__",
        "Comma-separated glob patterns of files and directories never watched.",
    )
    expose_tracebacks: bool = _opt(
        False, "Send the traceback of an app error to the client (development only)."
    )
    # gunicorn's --bind syntax, for binds of different kinds at once: a UNIX socket
    # for nginx and a TCP port for the orchestrator's probes, for instance.
    bind: tuple[str, ...] = _opt(
        (),
        "Listen on HOST:PORT ([::1]:8000 for IPv6), unix:PATH or fd://N; repeat the "
        "flag for several (in AIOGATE_BIND, separate them with spaces or commas). "
        "Served together with --uds and --fd; any of these replaces --host/--port.",
    )

    # Process management, with gunicorn's names (uvicorn's for --env-file). The
    # command line applies them (cli.py), not Server: an embedding program owns its
    # process.
    pid: str | None = _opt(
        None,
        "Write the server's process id (the supervisor's with --workers) to this file "
        "once the sockets are bound; removed at exit. A file naming another running "
        "process stops the start (exit 3).",
    )
    user: str | None = _opt(
        None,
        "When started as root, switch to this user (name or id) after binding, before "
        "serving; with --workers the workers switch, the supervisor stays root.",
    )
    group: str | None = _opt(
        None,
        "When started as root, switch to this group (name or id) after binding "
        "(default: --user's primary group).",
    )
    umask: str | None = _opt(
        None, "Set the process umask at startup, in octal (e.g. 0027); unset: inherit."
    )
    env_file: str | None = _opt(
        None,
        "Load KEY=VALUE lines from this file into the environment first, for the app "
        "and for AIOGATE_* settings; variables already set win over the file.",
    )
    # Off: the supervisor's workers share one socket anyway (supervisor.py rule 2);
    # this is for separate aiogate processes sharing a port.
    reuse_port: bool = _opt(
        False,
        "Set SO_REUSEPORT on the TCP listening sockets, so several aiogate processes "
        "can bind the same port (the kernel spreads connections; a stopping one resets "
        "what is queued on its socket).",
    )

    def __post_init__(self) -> None:
        _check_types(self)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        try:
            if not 0 <= int(self.uds_mode, 8) <= 0o777:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"uds_mode must be octal, e.g. 0660: {self.uds_mode!r}"
            ) from None
        if self.umask is not None:
            try:
                if not 0 <= int(self.umask, 8) <= 0o777:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"umask must be octal, e.g. 0027: {self.umask!r}"
                ) from None
        for name in ("pid", "user", "group", "env_file"):
            if getattr(self, name) == "":
                raise ConfigError(f"{name} must not be empty")
        if self.fd is not None and self.fd < 0:
            raise ConfigError(f"fd must be a descriptor number, not {self.fd}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            raise ConfigError("max_requests and max_requests_jitter must be 0 or more")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        if self.root_path and (
            not self.root_path.startswith("/") or self.root_path.endswith("/")
        ):
            raise ConfigError(
                f"root_path must start with / and not end with one: {self.root_path!r}"
            )
        for name in (
            "timeout_keep_alive",
            "timeout_request_header",
            "timeout_request_body",
            "timeout_write",
            "timeout_graceful_shutdown",
        ):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):  # refuses NaN and inf too
                raise ConfigError(f"{name} must be positive, not {value}")
        for name in ("timeout_request", "shutdown_delay", "max_queue_wait"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be 0 (off) or positive, not {value}")
        for name in (
            "limit_request_line",
            "limit_request_fields",
            "limit_request_field_size",
            "backlog",
            "limit_request_body",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, not {getattr(self, name)}"
                )
        for name in (
            "limit_connections",
            "limit_concurrency",
            "body_buffer_size",
            "response_spool_size",
            "min_write_rate",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{name} must be 0 or more, not {getattr(self, name)}"
                )
        levels = ("critical", "error", "warning", "info", "debug")
        if isinstance(self.log_level, str) and self.log_level.lower() in levels:
            # Any case, as on the command line (logging's own names are upper case).
            object.__setattr__(self, "log_level", self.log_level.lower())
        if self.log_level not in levels:
            raise ConfigError(f"unknown log_level {self.log_level!r}")
        if self.ssl_certfile is None and (
            self.ssl_keyfile or self.ssl_ca_certs or self.ssl_cert_reqs != "none"
        ):
            raise ConfigError("the ssl_* settings need ssl_certfile")
        if self.ssl_cert_reqs != "none" and not self.ssl_ca_certs:
            raise ConfigError(
                f"ssl_cert_reqs {self.ssl_cert_reqs!r} needs ssl_ca_certs to check "
                "client certificates against"
            )
        if self.ssl_cert_reqs not in ("none", "optional", "required"):
            raise ConfigError(f"unknown ssl_cert_reqs {self.ssl_cert_reqs!r}")
        if self.ssl_minimum_version not in ("TLSv1.2", "TLSv1.3"):
            raise ConfigError(
                f"unknown ssl_minimum_version {self.ssl_minimum_version!r}"
            )
        paths = [self.liveness_path, self.readiness_path, self.metrics_path]
        for name, path in zip(
            ("liveness_path", "readiness_path", "metrics_path"), paths, strict=True
        ):
            if path and (not path.startswith("/") or "?" in path or " " in path):
                raise ConfigError(f"{name} must be a path starting with /: {path!r}")
        used = [path for path in paths if path]
        if len(set(used)) != len(used):
            raise ConfigError(
                "liveness_path, readiness_path and metrics_path must differ"
            )
        if self.proxy_headers not in ("x-forwarded", "forwarded", "off"):
            raise ConfigError(f"unknown proxy_headers {self.proxy_headers!r}")
        if self.loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"unknown loop {self.loop!r}")
        if self.server_header is not None and any(
            c in self.server_header for c in "\r\n\0"
        ):
            raise ConfigError("server_header must not contain CR, LF or NUL")
        if self.server_header is not None and not self.server_header.isascii():
            # A header value is bytes on the wire; ASCII is what every peer reads
            # alike (RFC 9110 §5.5 discourages obs-text).
            raise ConfigError("server_header must be ASCII")
        if self.log_config is not None and (
            self.access_log_file != "-" or self.error_log_file != "-"
        ):
            raise ConfigError(
                "access_log_file and error_log_file do not apply with log_config: "
                "give the handlers their files in that configuration"
            )
        for name in ("access_log_file", "error_log_file"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must be - or a file path, not empty")
        binds: object = self.bind
        if isinstance(binds, str):  # Config(bind="unix:/run/app.sock"): one bind
            binds = (binds,)
        if not (
            isinstance(binds, tuple | list)
            and all(isinstance(text, str) for text in binds)
        ):
            raise ConfigError(f"bind must be a list of strings, not {binds!r}")
        object.__setattr__(self, "bind", tuple(binds))  # frozen: normalised once
        for text in self.bind:
            parse_bind(text)  # raises ConfigError


#: The plain types a field may be checked against (``_check_types``).
_PLAIN = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@functools.cache
def _plain_fields() -> tuple[tuple[str, type, bool], ...]:
    """(name, plain type, None allowed) of each field typed as one plain type or
    an optional one; worked out once (``get_type_hints`` takes most of a
    millisecond, and a Config is made for every server and worker)."""
    hints = typing.get_type_hints(Config)
    fields = []
    for item in dataclasses.fields(Config):
        hint = hints[item.name]
        allowed = {hint} if hint in _PLAIN else set(typing.get_args(hint))
        plain = [kind for kind in _PLAIN if kind in allowed]
        if len(plain) == 1 and allowed <= {plain[0], type(None)}:
            fields.append((item.name, plain[0], type(None) in allowed))
    return tuple(fields)


def _check_types(config: Config) -> None:
    """A ``ConfigError`` naming the field for a value of the wrong plain type
    (``Server(app, threads="x")`` from an embedding program, where no command line
    parsed it), before a check compares it with a number and fails unrelatedly.
    Fields of other types (tuples, Literal choices, classes) are checked elsewhere."""
    for name, kind, optional in _plain_fields():
        value = getattr(config, name)
        if value is None and optional:
            continue
        ok = isinstance(value, kind) and not (kind is not bool and type(value) is bool)
        if kind is float and type(value) is int:
            ok = True
        if not ok:
            raise ConfigError(f"{name} must be {_PLAIN[kind]}, not {value!r}")


#: Settings of the ``aiogate serve`` process rather than of one server: its workers
#: (the supervisor), the reloader's watcher, and what the command line does around
#: serving. An embedding program that sets one gets a ``ConfigError`` naming it, not
#: a setting silently ignored.
COMMAND_LINE_ONLY = (
    "workers",
    "preload",
    "reload",
    "pid",
    "user",
    "group",
    "umask",
    "env_file",
)


def refuse_command_line_only(
    who: str, values: Config | typing.Mapping[str, Any]
) -> None:
    """``ConfigError`` if ``values`` (a ``Config``, or settings by name) sets any of
    ``COMMAND_LINE_ONLY`` to other than its default: ``who`` (an embedding entry
    point) serves one server in its own process."""
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    if isinstance(values, Config):
        values = {name: getattr(values, name) for name in COMMAND_LINE_ONLY}
    named = [
        name
        for name in COMMAND_LINE_ONLY
        if name in values and values[name] != defaults[name]
    ]
    if named:
        flags = ", ".join("--" + name.replace("_", "-") for name in named)
        raise ConfigError(
            f"{who} serves one server in this process: {', '.join(named)} "
            f"{'is' if len(named) == 1 else 'are'} for the command line "
            f"(aiogate serve {flags})"
        )


def option_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of ``Config``, in declaration order, for the CLI and the docs."""
    return dataclasses.fields(Config)


@dataclass(frozen=True, slots=True)
class Bind:
    """One ``--bind`` address, parsed: TCP ``host``/``port``, a UNIX socket ``path``,
    or an inherited descriptor ``fd``."""

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


def parse_bind(text: str) -> Bind:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``fd://N`` (gunicorn's
    ``--bind`` forms); ``ConfigError`` for anything else."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ConfigError(f"bind {text!r}: unix: needs a path")
        return Bind("unix", path=text[5:])
    if text.startswith("fd://"):
        number = text[5:]
        if not (number.isascii() and number.isdigit()):
            raise ConfigError(f"bind {text!r}: fd:// needs a descriptor number")
        return Bind("fd", fd=int(number))
    host, colon, port = text.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ConfigError(
            f"bind {text!r}: expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # 1::1:8000 is ambiguous
        raise ConfigError(f"bind {text!r}: put an IPv6 address in brackets, [::1]:8000")
    if not host:  # gunicorn reads ":8000" as all interfaces; say which ones instead
        raise ConfigError(f"bind {text!r}: name the host, e.g. 0.0.0.0:{port}")
    return Bind("tcp", host=host, port=int(port))
