"""A small Django project with its settings in code, for ``test_django.py``.

Importing this module configures Django for the whole test process (Django's settings
are global and can be configured once), so only the Django tests import it. It is also
the ``ROOT_URLCONF``: the views and ``urlpatterns`` are below. ``FINISHED`` records,
per request, that Django's ``request_finished`` signal fired, which happens when the
server calls ``close()`` on the response iterable.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="aiogate-integration-tests",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        TEMPLATES=[],
        USE_TZ=True,
        # Leave the process's logging alone (pytest captures the records).
        LOGGING_CONFIG=None,
        # Uploads above this go to a temporary file rather than memory.
        FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024,
    )
    django.setup()

from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path

application = WSGIHandler()

STREAM_CHUNK = 64 * 1024
FILE_SIZE = 500_000
_DATA_DIR = tempfile.mkdtemp(prefix="aiogate-django-")
# Removed when the test process ends, so runs leave nothing behind in TMPDIR.
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)
DATA_FILE = Path(_DATA_DIR) / "report.bin"
DATA_FILE.write_bytes(
    bytes(range(256)) * (FILE_SIZE // 256) + b"\xff" * (FILE_SIZE % 256)
)


class FinishedRequests:
    """``(method, path)`` of every request whose ``request_finished`` fired, in order.

    ``request_started`` (sent with the environ, in the worker thread that runs the
    request) remembers which request the thread is on; ``request_finished`` (sent
    from ``close()``, in the same thread) records it.
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []
        self.started: list[tuple[str, str]] = []
        self._current = threading.local()
        self._changed = threading.Condition()

    def on_started(self, sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        request = (environ["REQUEST_METHOD"], environ["PATH_INFO"])
        self._current.request = request
        with self._changed:
            self.started.append(request)

    def on_finished(self, sender: Any, **kwargs: Any) -> None:
        request = getattr(self._current, "request", ("?", "?"))
        self._current.request = ("?", "?")
        with self._changed:
            self.records.append(request)
            self._changed.notify_all()

    def wait_for(self, request: tuple[str, str], count: int, timeout: float) -> bool:
        """Wait until ``request`` has finished ``count`` times in all."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.records.count(request) >= count, timeout
            )


FINISHED = FinishedRequests()
request_started.connect(FINISHED.on_started, dispatch_uid="aiogate-tests-started")
request_finished.connect(FINISHED.on_finished, dispatch_uid="aiogate-tests-finished")

# Set by the endless stream's generator when it is closed (the client went away).
ENDLESS_CLOSED = threading.Event()


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        f"hello {request.method} {request.GET.get('name', 'world')}",
        content_type="text/plain",
        headers={"X-Remote-Port": request.META["REMOTE_PORT"]},
    )


def host(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "host": request.get_host(),  # checked against ALLOWED_HOSTS
            "uri": request.build_absolute_uri(),
            "secure": request.is_secure(),
        }
    )


def echo(request: HttpRequest) -> HttpResponse:
    body = request.body
    return HttpResponse(
        body,
        content_type=request.content_type,
        headers={"X-Body-Sha256": hashlib.sha256(body).hexdigest()},
    )


def json_view(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    return JsonResponse({"received": data, "method": request.method})


def upload(request: HttpRequest) -> JsonResponse:
    files = {}
    for field, uploaded in request.FILES.items():
        data = uploaded.read()
        files[field] = {
            "name": uploaded.name,
            "size": uploaded.size,
            "content_type": uploaded.content_type,
            "sha256": hashlib.sha256(data).hexdigest(),
            "storage": type(uploaded).__name__,
        }
    return JsonResponse({"files": files, "fields": request.POST.dict()})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("lines", "5"))

    def lines() -> Iterator[bytes]:
        for number in range(count):
            yield f"line {number}\n".encode()

    return StreamingHttpResponse(lines(), content_type="text/plain")


def endless(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        try:
            for _ in range(100_000):  # 6.4 GB: "endless" for any test
                yield b"e" * STREAM_CHUNK
        finally:
            ENDLESS_CLOSED.set()

    return StreamingHttpResponse(chunks(), content_type="application/octet-stream")


def report(request: HttpRequest) -> FileResponse:
    return FileResponse(
        DATA_FILE.open("rb"), as_attachment=True, filename="quarterly report.bin"
    )


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such thing")


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view has a bug")


urlpatterns = [
    path("hello", hello),
    path("host", host),
    path("echo", echo),
    path("json", json_view),
    path("upload", upload),
    path("stream", stream),
    path("endless", endless),
    path("report", report),
    path("missing", missing),
    path("broken", broken),
]
