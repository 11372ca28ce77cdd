"""Views of the example project."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

from django.http import (
    FileResponse,
    HttpRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

HERE = Path(__file__).resolve().parent


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "message": "Hello from Django on aiogate",
            "server": request.META.get("SERVER_SOFTWARE"),
            "path": request.path,
            "try": ["POST /echo", "/countdown", "/source"],
        }
    )


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> JsonResponse:
    """A JSON body comes back parsed; anything else is summarised."""
    if request.content_type == "application/json":
        return JsonResponse({"json": json.loads(request.body)})
    return JsonResponse(
        {
            "size": len(request.body),
            "sha256": hashlib.sha256(request.body).hexdigest(),
            "files": {name: upload.size for name, upload in request.FILES.items()},
        }
    )


@require_GET
def countdown(request: HttpRequest) -> StreamingHttpResponse:
    start = int(request.GET.get("from", "5"))

    def lines() -> Iterator[str]:
        for n in range(start, -1, -1):
            yield f"{n}\n"
            if n:
                time.sleep(float(request.GET.get("pause", "0.2")))

    return StreamingHttpResponse(lines(), content_type="text/plain")


@require_GET
def source(request: HttpRequest) -> FileResponse:
    """This file, handed to the server's wsgi.file_wrapper by Django."""
    return FileResponse((HERE / "views.py").open("rb"), content_type="text/plain")
