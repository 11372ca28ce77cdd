"""aiogate: an asyncio HTTP/1.1 origin server for WSGI apps.

The public API: ``Server`` (embed in an asyncio program), ``run`` (serve in this thread
until a signal), ``Config`` (every setting), and the wsgiref-style handler family in
``aiogate.handlers``. Importing aiogate configures no logging and starts nothing.
"""

from ._version import __version__
from .config import Config
from .errors import AiogateError, AppImportError, ClientDisconnected, ConfigError
from .server import Server, run

__all__ = [
    "AiogateError",
    "AppImportError",
    "ClientDisconnected",
    "Config",
    "ConfigError",
    "Server",
    "__version__",
    "run",
]
