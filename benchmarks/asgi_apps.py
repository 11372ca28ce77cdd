"""The WSGI apps of ``apps.py`` wrapped for ASGI servers with a2wsgi, so that uvicorn
serves the very same app code (``uvicorn benchmarks.asgi_apps:hello``). a2wsgi runs
the WSGI app in a thread pool of ``A2WSGI_THREADS`` threads (default 8)."""

from __future__ import annotations

import os
from typing import Any

from a2wsgi import WSGIMiddleware

from benchmarks import apps

_THREADS = int(os.environ.get("A2WSGI_THREADS", "8"))


def __getattr__(name: str) -> Any:
    return WSGIMiddleware(getattr(apps, name), workers=_THREADS)
