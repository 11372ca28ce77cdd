"""Logging setup for the command line and ``aiogate.run()``: gunicorn-style lines.

Owns: the logger names (``aiogate.error`` for server events on stderr,
``aiogate.access`` for one line per request on stdout, the uvicorn and gunicorn split;
either may go to a file instead, gunicorn's ``--error-logfile``/``--access-logfile``)
and ``configure_logging`` (aiogate's setup, or a ``--log-config`` file). Runs in
the main thread at startup. Importing aiogate installs no handlers; only ``cli.py`` and
``aiogate.run()`` call ``configure_logging``, and embedding programs configure the
``aiogate`` loggers themselves, like any library's.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from .errors import ConfigError

__all__ = ["ACCESS_LOGGER", "ERROR_LOGGER", "configure_logging", "logging_config"]

ERROR_LOGGER = "aiogate.error"
ACCESS_LOGGER = "aiogate.access"

#: ``[2026-11-22 10:00:00 +0000] [1234] [INFO] Listening at ...``, gunicorn's layout.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"

_LEVELS = ("critical", "error", "warning", "info", "debug")


def _destination(path: str, stream: str) -> dict[str, Any]:
    """A handler's target: ``stream`` for ``-`` (gunicorn's spelling), else a file
    appended to and reopened when moved (``WatchedFileHandler``: logrotate works
    without a signal, in every worker)."""
    if path == "-":
        return {"class": "logging.StreamHandler", "stream": stream}
    return {"class": "logging.handlers.WatchedFileHandler", "filename": path}


def logging_config(
    level: str, access_log_file: str = "-", error_log_file: str = "-"
) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema that ``configure_logging`` installs.

    One handler (stderr, or ``error_log_file``) on the ``aiogate`` logger, the parent
    of ``aiogate.error`` and ``aiogate.access``, so both (and any later ``aiogate.*``
    logger) share it; access lines have their own (stdout, or ``access_log_file``).
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {_LEVELS}")
    return {
        "version": 1,
        # Loggers that exist already (the app's, the embedding program's) keep working.
        "disable_existing_loggers": False,
        "formatters": {
            "aiogate": {"format": LOG_FORMAT, "datefmt": DATE_FORMAT},
            "access": {"format": "%(message)s"},
        },
        "handlers": {
            "aiogate_stderr": {
                **_destination(error_log_file, "ext://sys.stderr"),
                "formatter": "aiogate",
            },
            # Access lines carry their own time and fields: the message alone, on
            # stdout, where container platforms and log shippers expect requests.
            "aiogate_access": {
                **_destination(access_log_file, "ext://sys.stdout"),
                "formatter": "access",
            },
        },
        "loggers": {
            # propagate=False: a root handler configured by the app would otherwise
            # print every line twice.
            "aiogate": {
                "level": level.upper(),
                "handlers": ["aiogate_stderr"],
                "propagate": False,
            },
            ERROR_LOGGER: {"level": "NOTSET"},
            # INFO whatever --log-level says: --access-log alone turns it on or off.
            ACCESS_LOGGER: {
                "level": "INFO",
                "handlers": ["aiogate_access"],
                "propagate": False,
            },
        },
    }


def configure_logging(
    level: str,
    log_config: str | None = None,
    access_log_file: str = "-",
    error_log_file: str = "-",
) -> None:
    """Send ``aiogate.error`` to stderr (or ``error_log_file``) at ``level``
    (``"info"``, ``"debug"``...) and ``aiogate.access`` to stdout (or
    ``access_log_file``); or, with ``log_config``, load that file instead: a
    ``dictConfig`` schema in JSON (``.json``) or a ``fileConfig`` INI file.

    Idempotent: calling it again replaces the handlers instead of adding more. The
    default applies ``logging_config(level)`` itself rather than through
    ``logging.config``, whose imports (socketserver, pickle...) cost about 1 MiB of
    every process for nothing; unlike ``dictConfig`` it leaves other code's
    handlers alone. Raises ``ConfigError`` for a log configuration file that cannot
    be read or used, or a log file that cannot be opened.
    """
    if log_config is None:
        _apply(logging_config(level, access_log_file, error_log_file))
        return
    import logging.config  # only for a file of the user's

    try:
        if log_config.endswith(".json"):
            with open(log_config, encoding="utf-8") as file:
                schema = json.load(file)
            schema.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(schema)
        else:
            logging.config.fileConfig(log_config, disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"log_config {log_config!r}: {exc}") from None


def _apply(schema: dict[str, Any]) -> None:
    """Install a schema of the shape ``logging_config`` returns (stream and file
    handlers only), as ``dictConfig`` would with ``disable_existing_loggers`` false."""
    formatters = {
        name: logging.Formatter(spec["format"], spec.get("datefmt"))
        for name, spec in schema["formatters"].items()
    }
    streams = {"ext://sys.stderr": sys.stderr, "ext://sys.stdout": sys.stdout}
    handlers: dict[str, logging.Handler] = {}
    for name, spec in schema["handlers"].items():
        handler: logging.Handler
        if "filename" in spec:
            # Only for a log file: logging.handlers imports socket, pickle ...
            from logging.handlers import WatchedFileHandler

            try:
                handler = WatchedFileHandler(spec["filename"])
            except OSError as exc:
                for opened in handlers.values():
                    opened.close()
                raise ConfigError(
                    f"cannot open log file {spec['filename']!r}: {exc.strerror}"
                ) from None
        else:
            handler = logging.StreamHandler(streams[spec["stream"]])
        handler.setFormatter(formatters[spec["formatter"]])
        handlers[name] = handler
    for name, spec in schema["loggers"].items():
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()  # a log file's descriptor; a stream handler leaves its stream
        for handler_name in spec.get("handlers", ()):
            logger.addHandler(handlers[handler_name])
        logger.setLevel(spec["level"])
        if "propagate" in spec:
            logger.propagate = spec["propagate"]
