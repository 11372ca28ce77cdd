"""gunicorn's and uvicorn's spellings on ``aiogate serve``: their flags, our meaning.

Owns: ``PEER_FLAGS``, one record per peer flag (or group of flags): what it becomes in
aiogate and how its meaning differs; ``add_peer_flags``, which adds the ones that are
not aiogate's own spellings to the ``serve`` parser, hidden from ``--help``; the bare
uvicorn switch ``--proxy-headers`` (``bare_switches``); the process effects of
gunicorn's ``--chdir``, ``--pythonpath`` and ``--env`` (``prepare_process``); and the
README's "Coming from gunicorn or uvicorn" table (``peer_table_markdown``), so the
table and the parser come from the same records.

Each flag given on the command line has one of three fates (``Fate``):

1. **alias**: it sets aiogate settings, parsed as aiogate parses them, and counts as
   a flag (``--print-config`` says ``# flag``). Only the command line has these
   spellings: no ``AIOGATE_*`` variable or settings-file key is added;
   One whose meaning differs enough says so in the log at startup (``-t``);
2. **warn**: aiogate has nothing to do for it and ignoring it changes nothing a user
   relies on (``-k gthread``, ``--worker-tmp-dir``): accepted, and one warning line
   says why (logged at startup, ``warnings`` below);
3. **refuse**: ignoring it would change what the user relies on (``-k gevent``, an
   ASGI interface, statsd): a usage error (exit 2), one line saying why and what to
   use instead.

Runs in the main thread at startup, while the command line is parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .options import JOINED, Option, config_options

__all__ = [
    "ELSEWHERE",
    "PEER_FLAGS",
    "Fate",
    "Outcome",
    "PeerFlag",
    "add_peer_flags",
    "bare_switches",
    "notes",
    "peer_table_markdown",
    "prepare_process",
    "warnings",
]


class Fate(enum.Enum):
    """What a peer flag given on the command line does."""

    ALIAS = "alias"
    WARN = "warn"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One use of a peer flag: settings (``Config`` fields, or the command-line-only
    ``peer_chdir``/``peer_pythonpath``/``peer_env``) or a warning or a refusal, in
    one line."""

    fate: Fate
    settings: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True, slots=True)
class PeerFlag:
    """A peer's flag (or flags of one meaning) and what aiogate makes of it."""

    flags: tuple[str, ...]
    peer: str
    #: The README cell: the aiogate option it becomes, or what happens.
    aiogate: str
    #: How the meaning differs from the peer's, or why it is refused.
    note: str = ""
    #: The value's (or the switch's, with ``None``) outcome; ``None``: a README row
    #: only (the flag is aiogate's own, or another part of aiogate adds it).
    apply: Callable[[str | None], Outcome] | None = None
    switch: bool = False
    #: ``Config`` fields the flag sets, which another part of aiogate adds (process
    #: management): until they exist the flag is left off the parser.
    needs: tuple[str, ...] = ()


# -- outcomes -----------------------------------------------------------------------


def _option(dest: str) -> Option:
    return next(option for option in config_options() if option.dest == dest)


def _to(*dests: str, **constants: Any) -> Callable[[str | None], Outcome]:
    """The value, parsed as aiogate's own option for ``dests[0]`` parses it, set on
    each of ``dests``; plus ``constants`` (``access_log=True``)."""

    def apply(text: str | None) -> Outcome:
        settings: dict[str, Any] = dict(constants)
        if dests:
            assert text is not None  # (a flag with dests takes a value)
            option = _option(dests[0])
            if option.repeatable:  # one item per flag, as aiogate's own --bind
                value: Any = [text]
            else:
                try:
                    value = option.parse(text)
                except ValueError:  # said as argparse says it for aiogate's own
                    kind = getattr(option.parse, "__name__", "")
                    raise ValueError(f"invalid {kind} value: {text!r}") from None
            if option.choices is not None and value not in option.choices:
                choices = ", ".join(option.choices)
                raise ValueError(f"invalid choice: {text!r} (choose from {choices})")
            settings.update(dict.fromkeys(dests, value))
        return Outcome(Fate.ALIAS, settings)

    return apply


def _noted(
    apply: Callable[[str | None], Outcome], note: str
) -> Callable[[str | None], Outcome]:
    """An alias whose meaning differs enough from the peer's to say so at startup
    (logged at INFO, with the warnings)."""
    return lambda text: dataclasses.replace(apply(text), text=note)


def _set(**settings: Any) -> Callable[[str | None], Outcome]:
    return lambda _text: Outcome(Fate.ALIAS, settings)


def _warn(text: str) -> Callable[[str | None], Outcome]:
    return lambda _text: Outcome(Fate.WARN, text=text)


def _refuse(text: str) -> Callable[[str | None], Outcome]:
    return lambda _text: Outcome(Fate.REFUSE, text=text)


def _by_value(
    known: Mapping[str, Outcome], other: Outcome
) -> Callable[[str | None], Outcome]:
    return lambda text: known.get((text or "").strip().lower(), other)


def _cert_reqs(text: str | None) -> Outcome:
    """gunicorn's ``--cert-reqs`` takes ``ssl.CERT_*`` numbers (0, 1, 2)."""
    return _to("ssl_cert_reqs")(text)


def _log_config_json(text: str | None) -> Outcome:
    if not (text or "").endswith(".json"):
        return Outcome(
            Fate.REFUSE,
            text="aiogate reads a --log-config file as JSON when its name ends in "
            ".json: rename the file",
        )
    return Outcome(Fate.ALIAS, {"log_config": text})


def _env(text: str | None) -> Outcome:
    name, equals, value = (text or "").partition("=")
    if not (equals and name):
        return Outcome(Fate.REFUSE, text=f"expected NAME=VALUE, not {text!r}")
    return Outcome(Fate.ALIAS, {"peer_env": [(name, value)]})


def _absolute(dest: str) -> Callable[[str | None], Outcome]:
    # Absolute now: the --reload watcher's child gets the same arguments and must
    # not apply a relative --chdir a second time.
    return lambda text: Outcome(Fate.ALIAS, {dest: os.path.abspath(text or ".")})


def _paths(text: str | None) -> Outcome:
    paths = [os.path.abspath(part) for part in (text or "").split(",") if part]
    return Outcome(Fate.ALIAS, {"peer_pythonpath": paths})


_THREADS = "aiogate always runs the app in a thread pool beside an asyncio loop"
_SYSLOG = "use --log-config with a logging.handlers.SysLogHandler (or your own handler)"

# -- the table ------------------------------------------------------------------------

_G, _U, _GU = "gunicorn", "uvicorn", "gunicorn, uvicorn"

PEER_FLAGS: tuple[PeerFlag, ...] = (
    # Binding and processes.
    PeerFlag(
        ("--host", "--port", "--uds", "--fd", "--backlog"),
        _U,
        "the same options",
        "--backlog is gunicorn's too.",
    ),
    PeerFlag(
        ("-b", "--bind"),
        _G,
        "--bind (repeatable)",
        "HOST:PORT, [IPV6]:PORT, unix:PATH, fd://N as in gunicorn; a bare HOST "
        "(gunicorn adds :8000) and :PORT are refused: name both.",
        _to("bind"),
    ),
    PeerFlag(
        ("-w", "--workers"),
        _GU,
        "--workers",
        "WEB_CONCURRENCY is read when it is not given, as both do.",
        _to("workers"),
    ),
    PeerFlag(
        ("--worker-connections",),
        _G,
        "--limit-connections",
        "Per worker process, as gthread's; beyond it a connection gets a 503 and is "
        "closed. gunicorn's default is 1000, aiogate's 2048.",
        _to("limit_connections"),
    ),
    PeerFlag(
        ("--threads", "--max-requests", "--max-requests-jitter"),
        _G,
        "the same options",
        "aiogate's default is 16 threads (gunicorn's 1).",
    ),
    PeerFlag(
        ("--limit-max-requests",),
        _U,
        "--max-requests",
        "uvicorn exits after N requests; aiogate replaces the worker gracefully "
        "(a supervisor runs even with one worker).",
        _to("max_requests"),
    ),
    PeerFlag(
        ("-k", "--worker-class"),
        _G,
        "sync, gthread: accepted with a warning; others refused",
        _THREADS + "; gevent, eventlet and tornado workers (greenlets, "
        "monkey-patching) and ASGI workers are refused.",
        _by_value(
            {
                name: Outcome(
                    Fate.WARN,
                    text=f"{_THREADS} (as gthread does); size it with --threads",
                )
                for name in (
                    "sync",
                    "gthread",
                    "gunicorn.workers.sync.syncworker",
                    "gunicorn.workers.gthread.threadworker",
                )
            },
            Outcome(
                Fate.REFUSE,
                text="aiogate runs the app in threads (no greenlets, no ASGI): drop "
                "-k and size --threads for the app's concurrent waits",
            ),
        ),
    ),
    PeerFlag(
        ("--preload",),
        _G,
        "--preload (process management)",
        "Listed for completeness: see its own option.",
    ),
    PeerFlag(
        ("--pid", "--user", "--group", "--umask"),
        _G,
        "the same options (process management)",
        "Listed for completeness: see their own options.",
    ),
    *(
        PeerFlag((short,), _G, f"--{dest}", "", _to(dest), needs=(dest,))
        for short, dest in (("-p", "pid"), ("-u", "user"), ("-g", "group"))
    ),
    PeerFlag(("-m",), _G, "--umask", "", _to("umask"), needs=("umask",)),
    PeerFlag(
        ("--reuse-port", "--env-file"),
        _GU,
        "the same options (process management)",
        "--reuse-port is gunicorn's, --env-file uvicorn's.",
    ),
    PeerFlag(
        ("-c", "--config"),
        _G,
        "-c FILE.py (hooks): a Python settings file with gunicorn's hooks",
        "aiogate's --config FILE.toml stays for TOML settings.",
    ),
    PeerFlag(
        ("--chdir",),
        _G,
        "--chdir DIR (command line only)",
        "Changes directory after reading the settings file and before opening log "
        "files and importing the app, and puts DIR first on sys.path, as gunicorn.",
        _absolute("peer_chdir"),
    ),
    PeerFlag(
        ("--pythonpath",),
        _G,
        "--pythonpath DIRS (command line only)",
        "Comma-separated directories put first on sys.path before the app is "
        "imported (aiogate's --app-dir takes one).",
        _paths,
    ),
    PeerFlag(
        ("-e", "--env"),
        _G,
        "-e NAME=VALUE (command line only)",
        "Set in the environment before the app is imported (after aiogate's own "
        "AIOGATE_* variables are read).",
        _env,
    ),
    PeerFlag(
        ("-D", "--daemon"),
        _G,
        "refused",
        "aiogate stays in the foreground: run it under systemd, a container "
        "runtime or supervisord.",
        _refuse(
            "aiogate stays in the foreground: run it under systemd, a container "
            "runtime or supervisord"
        ),
        switch=True,
    ),
    # Timeouts.
    PeerFlag(
        ("-t", "--timeout"),
        _G,
        "--timeout-request",
        "gunicorn kills and restarts a worker silent this long (on by default, 30 "
        "s). aiogate's nearest: a request still in the app this long gets a 503 (or "
        "is cut off if its response began), its thread's stack is logged and a new "
        "thread takes its place; the process is not killed. Off (0) unless given.",
        _noted(
            _to("timeout_request"),
            "taken as --timeout-request: a request still in the app after this "
            "long gets a 503 and its thread is replaced; no process is killed",
        ),
    ),
    PeerFlag(
        ("--graceful-timeout",),
        _G,
        "--timeout-graceful-shutdown",
        "uvicorn's spelling is aiogate's.",
        _to("timeout_graceful_shutdown"),
    ),
    PeerFlag(
        ("--keep-alive",),
        _G,
        "--timeout-keep-alive",
        "uvicorn's spelling is aiogate's. gunicorn's default is 2 s, aiogate's and "
        "uvicorn's 5 s.",
        _to("timeout_keep_alive"),
    ),
    PeerFlag(
        ("--timeout-keep-alive", "--timeout-graceful-shutdown"),
        _U,
        "the same options",
        "uvicorn waits for ever on shutdown unless told; aiogate 30 s.",
    ),
    PeerFlag(
        ("--timeout-worker-healthcheck",),
        _U,
        "accepted with a warning",
        "The supervisor does not ping its workers; it replaces those that exit.",
        _warn("the supervisor does not ping its workers; it replaces those that exit"),
    ),
    # Logging.
    PeerFlag(
        ("--access-logfile",),
        _G,
        "--access-log --access-log-file FILE",
        "- is stdout, as in gunicorn.",
        _to("access_log_file", access_log=True),
    ),
    PeerFlag(
        ("--error-logfile", "--log-file"),
        _G,
        "--error-log-file FILE",
        "- is stderr, as in gunicorn.",
        _to("error_log_file"),
    ),
    PeerFlag(
        ("--access-logformat",),
        _G,
        "--access-log-format",
        "gunicorn's atoms; 'json' for JSON lines.",
        _to("access_log_format"),
    ),
    PeerFlag(
        ("--access-log", "--no-access-log"),
        _U,
        "the same options",
        "uvicorn logs requests by default; aiogate, like gunicorn, only when asked.",
    ),
    PeerFlag(
        ("--log-level", "--log-config"),
        _GU,
        "the same options",
        "Levels in any case; uvicorn's trace is debug. A log config file is .json "
        "(dictConfig) or INI; YAML is not read.",
    ),
    PeerFlag(
        ("--logconfig",),
        _G,
        "--log-config",
        "gunicorn's setting name.",
        _to("log_config"),
    ),
    PeerFlag(
        ("--log-config-json",),
        _G,
        "--log-config",
        "The file name must end in .json.",
        _log_config_json,
    ),
    PeerFlag(
        ("--capture-output", "-R", "--enable-stdio-inheritance"),
        _G,
        "accepted with a warning",
        "The app's stdout and stderr stay the process's own (aiogate does not "
        "daemonize); only aiogate's logs go to --error-log-file.",
        _warn(
            "the app's stdout and stderr stay the process's own; only aiogate's "
            "logs go to --error-log-file"
        ),
        switch=True,
    ),
    PeerFlag(
        ("--use-colors", "--no-use-colors"),
        _U,
        "accepted with a warning",
        "aiogate's log lines have no colours.",
        _warn("aiogate's log lines have no colours"),
        switch=True,
    ),
    PeerFlag(
        ("--log-syslog-to", "--log-syslog-prefix", "--log-syslog-facility"),
        _G,
        "refused",
        _SYSLOG + ".",
        _refuse(_SYSLOG),
    ),
    PeerFlag(("--log-syslog",), _G, "refused", _SYSLOG + ".", _refuse(_SYSLOG), True),
    PeerFlag(
        ("--logger-class",),
        _G,
        "refused",
        "Use --log-config.",
        _refuse("configure the aiogate loggers with --log-config instead"),
    ),
    PeerFlag(
        ("--disable-redirect-access-to-syslog",),
        _G,
        "accepted",
        "No syslog unless a --log-config sends it there.",
        _set(),
        switch=True,
    ),
    PeerFlag(
        ("--statsd-host", "--statsd-prefix", "--dogstatsd-tags"),
        _G,
        "refused",
        "aiogate exports Prometheus metrics: --metrics-path /metrics.",
        _refuse("aiogate exports Prometheus metrics instead: --metrics-path /metrics"),
    ),
    # TLS.
    PeerFlag(("--certfile",), _G, "--ssl-certfile", "", _to("ssl_certfile")),
    PeerFlag(("--keyfile",), _G, "--ssl-keyfile", "", _to("ssl_keyfile")),
    PeerFlag(("--ca-certs",), _G, "--ssl-ca-certs", "", _to("ssl_ca_certs")),
    PeerFlag(
        ("--cert-reqs",),
        _G,
        "--ssl-cert-reqs",
        "0, 1, 2 (ssl.CERT_*) or none, optional, required; uvicorn's "
        "--ssl-cert-reqs takes the numbers too.",
        _cert_reqs,
    ),
    PeerFlag(("--ciphers",), _G, "--ssl-ciphers", "", _to("ssl_ciphers")),
    PeerFlag(
        (
            "--ssl-certfile",
            "--ssl-keyfile",
            "--ssl-keyfile-password",
            "--ssl-ca-certs",
            "--ssl-ciphers",
        ),
        _U,
        "the same options",
    ),
    PeerFlag(
        ("--ssl-version",),
        _GU,
        "accepted with a warning",
        "aiogate negotiates TLS 1.2 or later; --ssl-minimum-version TLSv1.3 raises "
        "the floor.",
        _warn(
            "aiogate negotiates TLS 1.2 or later; --ssl-minimum-version TLSv1.3 "
            "raises the floor"
        ),
    ),
    PeerFlag(
        ("--do-handshake-on-connect", "--suppress-ragged-eofs"),
        _G,
        "accepted with a warning",
        "aiogate's TLS is asyncio's: handshakes and close are handled for you.",
        _warn("aiogate's TLS is asyncio's: handshakes and close are handled for you"),
        switch=True,
    ),
    # HTTP and proxies.
    PeerFlag(
        ("--limit-request-line", "--limit-request-fields"),
        _G,
        "the same options",
        "gunicorn's 0 (its maximum, or no limit) is refused: give a number. "
        "aiogate's line limit is 8190 (gunicorn's 4094).",
    ),
    PeerFlag(
        ("--limit-request-field_size",),
        _G,
        "--limit-request-field-size",
        "gunicorn's 0 (no limit) is refused: give a number.",
        _to("limit_request_field_size"),
    ),
    PeerFlag(
        ("--limit-concurrency",),
        _U,
        "the same option",
        "Counts requests in flight (uvicorn: connections or tasks).",
    ),
    PeerFlag(
        ("--h11-max-incomplete-event-size",),
        _U,
        "refused",
        "aiogate limits each part of a head: --limit-request-line, "
        "--limit-request-field-size, --limit-request-fields.",
        _refuse(
            "aiogate limits each part of a request head instead: "
            "--limit-request-line, --limit-request-field-size, "
            "--limit-request-fields"
        ),
    ),
    PeerFlag(
        ("--forwarded-allow-ips", "--root-path"),
        _GU,
        "the same options",
        "--root-path is uvicorn's.",
    ),
    PeerFlag(
        ("--proxy-headers",),
        _U,
        "--proxy-headers [x-forwarded|forwarded|off]",
        "Bare, as a uvicorn switch: x-forwarded.",
    ),
    PeerFlag(
        ("--no-proxy-headers",),
        _U,
        "--proxy-headers off",
        "aiogate then removes proxy headers from the environ (uvicorn leaves them).",
        _set(proxy_headers="off"),
        switch=True,
    ),
    PeerFlag(
        ("--proxy-protocol",),
        _G,
        "the same option (PROXY protocol)",
        "Listed for completeness: see its own option.",
    ),
    PeerFlag(
        ("--server-header",),
        _U,
        "--server-header TEXT",
        "aiogate's takes the header's value (empty: none).",
    ),
    PeerFlag(
        ("--no-server-header",),
        _U,
        '--server-header ""',
        "",
        _set(server_header=""),
        switch=True,
    ),
    PeerFlag(
        ("--date-header",),
        _U,
        "accepted",
        "aiogate always sends Date.",
        _set(),
        switch=True,
    ),
    PeerFlag(
        ("--no-date-header",),
        _U,
        "accepted with a warning",
        "aiogate always sends Date (RFC 9110 §6.6.1).",
        _warn("aiogate always sends Date (RFC 9110 §6.6.1)"),
        switch=True,
    ),
    PeerFlag(
        ("--header",),
        _U,
        "refused",
        "aiogate adds no configured response headers: set them in the app or a "
        "WSGI middleware.",
        _refuse(
            "aiogate adds no configured response headers: set them in the app "
            "or a WSGI middleware"
        ),
    ),
    PeerFlag(
        ("--header-map",),
        _G,
        "drop: accepted (aiogate's behaviour); refuse, dangerous: refused",
        "Header names with _ are dropped from the environ.",
        _by_value(
            {"drop": Outcome(Fate.ALIAS)},
            Outcome(
                Fate.REFUSE,
                text="aiogate drops header names with _ (gunicorn's drop); there "
                "is no other choice",
            ),
        ),
    ),
    PeerFlag(
        ("--strip-header-spaces", "--permit-obsolete-folding"),
        _G,
        "refused",
        "aiogate answers 400 to whitespace before a header's colon and to folded "
        "lines (RFC 9112 §5.1, §5.2).",
        _refuse(
            "aiogate answers 400 to whitespace before a header's colon and to "
            "folded lines (RFC 9112 §5.1, §5.2)"
        ),
        switch=True,
    ),
    # The app and its interface.
    PeerFlag(
        ("--app-dir", "--factory"),
        _U,
        "the same options",
    ),
    PeerFlag(
        ("--interface",),
        _U,
        "wsgi, auto: accepted; asgi3, asgi2: refused",
        "aiogate serves WSGI apps only.",
        _by_value(
            {"wsgi": Outcome(Fate.ALIAS), "auto": Outcome(Fate.ALIAS)},
            Outcome(
                Fate.REFUSE,
                text="aiogate serves WSGI apps only; an ASGI app needs an ASGI server",
            ),
        ),
    ),
    PeerFlag(
        ("--http",),
        _U,
        "accepted with a warning",
        "aiogate parses HTTP/1.1 with h11 and its own checks.",
        _warn("aiogate parses HTTP/1.1 with h11 and its own checks"),
    ),
    PeerFlag(
        ("--loop",),
        _U,
        "the same option",
        "auto, uvloop or asyncio.",
    ),
    PeerFlag(
        (
            "--ws",
            "--ws-max-size",
            "--ws-max-queue",
            "--ws-ping-interval",
            "--ws-ping-timeout",
            "--ws-per-message-deflate",
            "--lifespan",
        ),
        _U,
        "accepted with a warning",
        "WSGI has no WebSockets and no lifespan events.",
        _warn("WSGI has no WebSockets and no lifespan events"),
    ),
    PeerFlag(
        ("--paste", "--paster", "--paste-global"),
        _G,
        "refused",
        "aiogate does not read PasteDeploy files: give TARGET as module:app.",
        _refuse("aiogate does not read PasteDeploy files: give TARGET as module:app"),
    ),
    # Development.
    PeerFlag(
        ("--reload", "--reload-include", "--reload-exclude"),
        _GU,
        "the same options",
        "Repeatable or comma-separated. aiogate's --reload-include replaces the "
        "default *.py (uvicorn adds to it): --reload-include '*.py,*.html'.",
    ),
    PeerFlag(
        ("--reload-dir",),
        _U,
        "--reload-dirs",
        "Repeatable, as uvicorn's.",
        _to("reload_dirs"),
    ),
    PeerFlag(
        ("--reload-delay", "--reload-engine"),
        _GU,
        "accepted with a warning",
        "aiogate's watcher (watchfiles) has its own debounce.",
        _warn("aiogate's watcher (watchfiles) has its own debounce"),
    ),
    PeerFlag(
        ("--reload-extra-file",),
        _G,
        "refused",
        "Use --reload-dirs and --reload-include.",
        _refuse("watch files with --reload-dirs DIR and --reload-include PATTERN"),
    ),
    PeerFlag(
        ("--spew",),
        _G,
        "accepted with a warning",
        "No line tracing: use a debugger or py-spy.",
        _warn("no line tracing here: use a debugger or py-spy"),
        switch=True,
    ),
    PeerFlag(
        ("--check-config", "--print-config", "--version"),
        _GU,
        "the same options",
        "--check-config also imports the app and loads the TLS files.",
    ),
    PeerFlag(
        ("-n", "--name"),
        _G,
        "accepted with a warning",
        "aiogate does not set process titles.",
        _warn("aiogate does not set process titles"),
    ),
    PeerFlag(
        ("--worker-tmp-dir",),
        _G,
        "accepted with a warning",
        "aiogate's workers keep no heartbeat file (request bodies and slow "
        "responses spool to TMPDIR).",
        _warn(
            "aiogate's workers keep no heartbeat file (bodies and slow responses "
            "spool to TMPDIR)"
        ),
    ),
    PeerFlag(
        ("--no-sendfile",),
        _G,
        "accepted with a warning",
        "File responses go out with os.sendfile when the connection allows (not "
        "over TLS); there is no switch.",
        _warn(
            "file responses go out with os.sendfile when the connection allows; "
            "there is no switch"
        ),
        switch=True,
    ),
)

#: README rows for flags another part of aiogate adds (issue 15: hooks and config
#: file, process management, PROXY protocol); the parser leaves them alone here.
ELSEWHERE = frozenset(
    {
        "-c",
        "--preload",
        "--pid",
        "--user",
        "--group",
        "--umask",
        "--reuse-port",
        "--env-file",
        "--proxy-protocol",
    }
)


# -- the parser -----------------------------------------------------------------------


class _PeerAction(argparse.Action):
    """One peer flag on the ``serve`` parser, hidden from ``--help``."""

    def __init__(self, option_strings: Sequence[str], peer: PeerFlag) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            nargs=0 if peer.switch else None,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            metavar="VALUE",
        )
        self.peer = peer

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert self.peer.apply is not None
        text = values if isinstance(values, str) else None
        try:
            outcome = self.peer.apply(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        said = f"{option_string} {text}" if text is not None else option_string
        if outcome.fate is Fate.REFUSE:  # one line, naming what was given
            parser.error(f"{said}: {outcome.text}")
        if outcome.fate is Fate.WARN:
            _extend(namespace, "peer_warnings", [f"{said}: {outcome.text}"])
        elif outcome.text:  # an alias with a note
            _extend(namespace, "peer_notes", [f"{said}: {outcome.text}"])
        for dest, value in outcome.settings.items():
            if isinstance(value, list):  # repeatable: --bind, -e, --pythonpath
                _extend(namespace, dest, value)
            elif dest in JOINED and hasattr(namespace, dest):
                setattr(namespace, dest, f"{getattr(namespace, dest)},{value}")
            else:
                setattr(namespace, dest, value)


def _extend(namespace: argparse.Namespace, dest: str, items: list[Any]) -> None:
    setattr(namespace, dest, [*getattr(namespace, dest, []), *items])


def add_peer_flags(parser: argparse.ArgumentParser) -> None:
    """Add each peer flag that is not already one of ``parser``'s own (an aiogate
    option of the same name keeps its own meaning), hidden from ``--help``."""
    taken = set(parser._option_string_actions)
    fields = {option.dest for option in config_options()}
    for peer in PEER_FLAGS:
        if peer.apply is None or not fields.issuperset(peer.needs):
            continue
        for flag in peer.flags:
            if flag not in taken:
                parser._add_action(_PeerAction([flag], peer))
                taken.add(flag)
    # uvicorn's bare --server-header (its default), rewritten by bare_switches.
    parser._add_action(
        _PeerAction(
            [_SERVER_HEADER_ON],
            PeerFlag((), _U, "", "", _set(server_header=None), True),
        )
    )


_PROXY_MODES = frozenset({"x-forwarded", "forwarded", "off"})
_SERVER_HEADER_ON = "--uvicorn-server-header"


def bare_switches(argv: Sequence[str]) -> list[str]:
    """uvicorn's switches that are aiogate options taking a value, given bare:
    ``--proxy-headers`` not followed by a mode becomes ``--proxy-headers=x-forwarded``
    (its default), so ``--proxy-headers app:app`` does not take the app for a mode;
    ``--server-header`` with nothing after it, or another option, asks for the
    default Server header. Arguments after ``--`` are left alone."""
    out: list[str] = []
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        following = args[index + 1] if index + 1 < len(args) else None
        if arg == "--proxy-headers" and (
            following is None or following.lower() not in _PROXY_MODES
        ):
            out.append("--proxy-headers=x-forwarded")
        elif arg == "--server-header" and (
            following is None or (following.startswith("-") and following != "-")
        ):
            out.append(_SERVER_HEADER_ON)
        else:
            out.append(arg)
    return out


def warnings(args: argparse.Namespace) -> list[str]:
    """The warnings of the peer flags given (``--worker-tmp-dir /dev/shm: ...``)."""
    return list(getattr(args, "peer_warnings", []))


def notes(args: argparse.Namespace) -> list[str]:
    """What the aliases given that mean something a little different say
    (``-t 30: taken as --timeout-request: ...``), for the log at INFO."""
    return list(getattr(args, "peer_notes", []))


def prepare_process(args: argparse.Namespace) -> None:
    """gunicorn's ``--chdir``, ``--pythonpath`` and ``-e``: change directory (and put
    it first on ``sys.path``), add the paths, set the variables. Called once the
    settings are read and before log files are opened and the app is imported.
    Raises ``OSError`` for a directory that cannot be entered."""
    directory: str | None = getattr(args, "peer_chdir", None)
    if directory is not None:
        os.chdir(directory)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    for path in reversed(getattr(args, "peer_pythonpath", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    for name, value in getattr(args, "peer_env", []):
        os.environ[name] = value


# -- the README table -----------------------------------------------------------------


def _cell(text: str) -> str:
    """Markdown: option names as code, pipes escaped."""
    return re.sub(r"(?<![\w`-])(--[a-z][\w-]*)", r"`\1`", text).replace("|", "\\|")


def peer_table_markdown() -> str:
    """The README's "Coming from gunicorn or uvicorn" table, from ``PEER_FLAGS``."""
    rows = [
        "| Their flag | Server | In aiogate | Notes |",
        "|---|---|---|---|",
    ]
    for peer in PEER_FLAGS:
        flags = ", ".join(f"`{flag}`" for flag in peer.flags)
        rows.append(
            f"| {flags} | {peer.peer} | {_cell(peer.aiogate)} | {_cell(peer.note)} |"
        )
    return "\n".join(rows) + "\n"
