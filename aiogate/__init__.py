"""aiogate: an asyncio HTTP/1.1 origin server for WSGI apps.

The public API: ``Server`` (embed in an asyncio program), ``run`` (serve in this thread
until a signal), ``Config`` (every setting), ``Hooks`` (server hooks, as gunicorn's),
and the wsgiref-style handler family in ``aiogate.handlers``. Importing aiogate
configures no logging and starts nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import server as _server
from ._version import __version__
from .config import Config, refuse_command_line_only
from .errors import AiogateError, AppImportError, ClientDisconnected, ConfigError
from .hooks import Hooks
from .logs import configure_logging
from .server import Server

if TYPE_CHECKING:
    import socket

    from ._types import WSGIApplication

__all__ = [
    "AiogateError",
    "AppImportError",
    "ClientDisconnected",
    "Config",
    "ConfigError",
    "Hooks",
    "Server",
    "__version__",
    "run",
]


def run(
    app: WSGIApplication,
    config: Config | None = None,
    *,
    sockets: list[socket.socket] | None = None,
    hooks: Hooks | Mapping[str, Callable[..., object]] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` in this thread until SIGINT or SIGTERM, then return.

    Takes the options of ``Server``, and its ``hooks``. Like ``aiogate serve``, it sets up aiogate's
    logging at ``log_level``, unless the program has configured logging itself
    (handlers on the root or ``aiogate`` logger). Installs signal handlers, so call
    it from the main thread; embedded programs use ``Server``.
    """
    if config is None:
        config = Config(**options)
        options = {}
    # Said, not ignored: this runs one server in this process. The command line
    # forks the workers (a supervisor), runs the reloader's watcher, writes the pid
    # file and switches users.
    refuse_command_line_only("aiogate.run", config)
    refuse_command_line_only("aiogate.run", options)
    if not (logging.getLogger().handlers or logging.getLogger("aiogate").handlers):
        configure_logging(
            options.get("log_level", config.log_level),
            options.get("log_config", config.log_config),
            options.get("access_log_file", config.access_log_file),
            options.get("error_log_file", config.error_log_file),
        )
    _server.run(app, config, sockets=sockets, hooks=hooks, **options)
