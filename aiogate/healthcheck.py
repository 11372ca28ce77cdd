"""``aiogate check``: a health probe that asks a running server's liveness endpoint,
found from the same settings the server reads.

Owns: the ``check`` subcommand (its parser, added to the command line by ``cli.py``)
and the probe. The settings come from ``options.py``'s model exactly as for ``serve``
(flag > ``AIOGATE_*`` variable > settings file > default) and are checked by
``Config``, so the probe follows whatever the server binds:

1. the address: the first ``--bind`` that is TCP or a UNIX socket, else ``--uds``,
   else the first ``--host`` at ``--port``; a wildcard host (``0.0.0.0``, ``::``) is
   asked on its loopback address. An inherited descriptor (``--fd``, ``fd://N``) has
   no address to connect to, and neither has port 0: both are reported;
2. the scheme: HTTPS when ``ssl_certfile`` is set, without verifying the certificate
   (the probe asks whether this server is alive, not who it is: a self-signed
   certificate is fine);
3. the path: ``--liveness-path``, answered by the server's event loop, never by an
   app thread.

Exit codes follow Docker's ``HEALTHCHECK``: 0 when the answer is a 200, 1 otherwise,
with one line on stderr saying why. A bad setting is 1 too (Docker reserves 2); only
an unknown flag on the command line itself is argparse's usage error, 2.

Runs in the main thread of its own short-lived process: blocking sockets, each step
bounded by ``--timeout``; no event loop, no thread, no import of the app.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import dataclass
from typing import Any

from .config import Config, parse_bind
from .errors import ConfigError
from .options import (
    UsageError,
    add_option,
    app_options,
    config_options,
    option_source,
    option_value,
    read_settings_file,
)

__all__ = ["Probe", "add_check_command", "probe_for", "run_check", "send_probe"]

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1  # Docker: "1: unhealthy"; 2 is reserved there
# Below Docker's --timeout of the image's HEALTHCHECK (3 s), so the probe reports
# its own reason before Docker kills it with none.
DEFAULT_TIMEOUT = 2.0
# What of a non-200 answer's body goes into the one-line reason.
_REASON_BODY = 200


class ProbeError(Exception):
    """The server cannot be probed from these settings, or its answer is not a 200;
    the message is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Where and how to ask: TCP ``host``/``port`` or a UNIX socket ``path``."""

    tls: bool
    path: str
    host: str = ""
    port: int = 0
    unix_path: str = ""

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        if self.unix_path:
            return f"{scheme}+unix://{self.unix_path}{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path}"


def add_check_command(
    commands: argparse._SubParsersAction[Any],
) -> None:
    """Add ``check`` to the ``aiogate`` command's subcommands."""
    check = commands.add_parser(
        "check",
        help="Ask a running server's liveness endpoint (a container health check).",
        description="GET the liveness path of the server that these settings "
        "describe (the same flags, AIOGATE_* variables and settings file as serve: "
        "its bind, port, UNIX socket, and HTTPS when ssl_certfile is set, the "
        "certificate not verified). Exit 0 on a 200, 1 otherwise with the reason.",
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="Give up on each step (connect, TLS handshake, answer) after this "
        f"long (default: {DEFAULT_TIMEOUT:g}).",
    )
    for option in app_options():
        if option.dest == "config":
            add_option(check, option)
    for option in config_options():
        add_option(check, option)
    check.set_defaults(run_command=run_check, command_parser=check)


def run_check(args: argparse.Namespace) -> int:
    """The ``check`` command: probe, print one line, return the exit code."""
    try:
        timeout: float = args.timeout
        if not 0 < timeout < float("inf"):
            raise ProbeError(f"--timeout must be positive, not {timeout}")
        read_settings_file(args)
        settings = {
            option.dest: option_value(args, option)
            for option in config_options()
            if option_source(args, option) != "default"
        }
        probe = probe_for(Config(**settings))
        status_line = send_probe(probe, timeout)
    except (ProbeError, UsageError, ConfigError) as exc:
        print(f"aiogate check: unhealthy: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"aiogate check: healthy: {status_line}")
    return EXIT_HEALTHY


def probe_for(config: Config) -> Probe:
    """Where the server of ``config`` listens, and how to ask it (rules 1-3)."""
    if not config.liveness_path:
        raise ProbeError(
            "no liveness endpoint to ask: set AIOGATE_LIVENESS_PATH (e.g. /livez)"
        )
    tls = config.ssl_certfile is not None
    path = config.liveness_path
    for text in config.bind:
        bind = parse_bind(text)
        if bind.kind == "tcp":
            return Probe(tls, path, host=_loopback(bind.host), port=bind.port)
        if bind.kind == "unix":
            return Probe(tls, path, unix_path=bind.path)
    if config.uds:
        return Probe(tls, path, unix_path=config.uds)
    if config.bind or config.fd is not None:
        raise ProbeError(
            "the server listens only on an inherited descriptor (fd); there is no "
            "address to connect to: also bind a TCP port or a UNIX socket"
        )
    if config.port == 0:
        raise ProbeError("port 0 lets the system pick the port: set AIOGATE_PORT")
    host = config.host.split(",")[0].strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Probe(tls, path, host=_loopback(host), port=config.port)


def _loopback(host: str) -> str:
    """A wildcard listens on every address of its family: ask on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def send_probe(probe: Probe, timeout: float) -> str:
    """GET the probe's path; the status line if it is a 200, else ``ProbeError``."""
    # Here, not at the top: cli.py imports this module for every command, and
    # http.client brings the email package (about 20 modules) that serve never needs.
    import http.client
    import ssl

    where = f"GET {probe.url}"
    try:
        if probe.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(probe.unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((probe.host, probe.port), timeout=timeout)
        if probe.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # alive, not authentic: see rule 2
            try:
                sock = context.wrap_socket(sock)
            except BaseException:
                sock.close()
                raise
        # Host names the server as it was asked; http.client sends it from these.
        connection = http.client.HTTPConnection(
            probe.host or "localhost", probe.port or None, timeout=timeout
        )
        connection.sock = sock
        try:
            connection.request("GET", probe.path, headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read(_REASON_BODY)
        finally:
            connection.close()
    except ssl.SSLError as exc:
        raise ProbeError(f"{where}: TLS failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise ProbeError(f"{where}: no answer within {timeout:g}s") from None
    except ConnectionRefusedError:
        raise ProbeError(f"{where}: connection refused") from None
    except FileNotFoundError:
        raise ProbeError(f"{where}: no such socket") from None
    except http.client.HTTPException as exc:
        raise ProbeError(f"{where}: not an HTTP answer ({exc!r})") from None
    except OSError as exc:
        raise ProbeError(f"{where}: {exc.strerror or exc}") from None
    status = f"{where}: {response.status} {response.reason}"
    if response.status != 200:
        text = " ".join(body.decode("ascii", "replace").split())
        raise ProbeError(f"{status}: {text}" if text else status)
    return status
