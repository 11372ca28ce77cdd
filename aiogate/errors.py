"""The exception hierarchy of aiogate: every error the server raises on purpose.

Owns: ``AiogateError`` and its subclasses. Imported by every layer; imports nothing
from aiogate. Pure definitions, so any thread may raise or catch them.
"""

from __future__ import annotations

__all__ = [
    "AiogateError",
    "AppImportError",
    "BindError",
    "ClientDisconnected",
    "ConfigError",
    "ProtocolError",
    "WriteTimeout",
]


class AiogateError(Exception):
    """Root of every error aiogate raises on purpose."""


class ConfigError(AiogateError, ValueError):
    """A setting has a value the server cannot use. The message names the setting."""


class AppImportError(AiogateError):
    """The ``module:attribute`` target could not be imported or is not a WSGI app."""


class BindError(AiogateError, OSError):
    """A listening socket could not be made (the address is in use, a privileged
    port, an address not on this host). The message names the address:
    ``cannot listen on 127.0.0.1:8000: address already in use``."""


class ProtocolError(AiogateError):
    """The client broke HTTP/1.1 in a way that ends the connection.

    ``status_hint`` is the status of the error response we send before closing
    (h11's ``error_status_hint`` idea: 400, 405, 408, 413, 414, 431, 501, 505).
    """

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class ClientDisconnected(AiogateError, ConnectionAbortedError):
    """The client went away while the app was reading the body or writing the response.

    A ``ConnectionAbortedError``, so code written for wsgiref's disconnect handling
    (which catches ``ConnectionAbortedError``/``BrokenPipeError``/``ConnectionResetError``
    and ``OSError``) treats it the same way.
    """


class WriteTimeout(ClientDisconnected):
    """The client stopped reading the response for longer than the write timeout."""
