"""Logging setup for the command line and ``aiogate.run()``: gunicorn-style lines.

Owns: the logger names (``aiogate.error`` for server events, ``aiogate.access`` for one
line per request, the uvicorn and gunicorn split) and ``configure_logging``. Runs in
the main thread at startup. Importing aiogate installs no handlers; only ``cli.py`` and
``aiogate.run()`` call ``configure_logging``, and embedding programs configure the
``aiogate`` loggers themselves, like any library's.
"""

from __future__ import annotations

import logging.config
from typing import Any

__all__ = ["ACCESS_LOGGER", "ERROR_LOGGER", "configure_logging", "logging_config"]

ERROR_LOGGER = "aiogate.error"
ACCESS_LOGGER = "aiogate.access"

#: ``[2026-11-22 10:00:00 +0000] [1234] [INFO] Listening at ...``, gunicorn's layout.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"

_LEVELS = ("critical", "error", "warning", "info", "debug")


def logging_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema that ``configure_logging`` installs.

    One stderr handler on the ``aiogate`` logger, the parent of ``aiogate.error`` and
    ``aiogate.access``, so both (and any later ``aiogate.*`` logger) share it.
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {_LEVELS}")
    return {
        "version": 1,
        # Loggers that exist already (the app's, the embedding program's) keep working.
        "disable_existing_loggers": False,
        "formatters": {
            "aiogate": {"format": LOG_FORMAT, "datefmt": DATE_FORMAT},
        },
        "handlers": {
            "aiogate_stderr": {
                "class": "logging.StreamHandler",
                "formatter": "aiogate",
                "stream": "ext://sys.stderr",
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
            ACCESS_LOGGER: {"level": "NOTSET"},
        },
    }


def configure_logging(level: str) -> None:
    """Send the ``aiogate`` loggers to stderr at ``level`` (``"info"``, ``"debug"``...).

    Idempotent: calling it again replaces the handler instead of adding a second one.
    Note that ``dictConfig`` also flushes and closes the handlers other code has
    created (it leaves them attached), so call this once, at startup.
    """
    logging.config.dictConfig(logging_config(level))
