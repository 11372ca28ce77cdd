"""aiogate: an asyncio HTTP/1.1 origin server for WSGI apps."""

from ._version import __version__

__all__ = ["__version__"]
