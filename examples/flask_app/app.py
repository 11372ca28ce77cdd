"""A small Flask app to serve with aiogate.

Run it from the repository root (see README.md in this folder):

    aiogate serve --app-dir examples/flask_app app:app
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, request, send_file, stream_with_context

app = Flask(__name__)

HERE = Path(__file__).resolve().parent


@app.get("/")
def index() -> dict[str, object]:
    return {
        "message": "Hello from Flask on aiogate",
        "server": request.environ.get("SERVER_SOFTWARE"),
        "multithread": request.environ["wsgi.multithread"],
        "try": ["/hello/you", "POST /upload", "/countdown", "/source"],
    }


@app.get("/hello/<name>")
def hello(name: str) -> dict[str, str]:
    return {"greeting": f"Hello, {name}!"}


@app.post("/upload")
def upload() -> dict[str, object]:
    """A multipart form (``curl -F file=@somefile``) or a raw body, chunked or not."""
    if request.files:
        return {
            name: {
                "filename": storage.filename,
                "sha256": hashlib.sha256(storage.read()).hexdigest(),
            }
            for name, storage in request.files.items()
        }
    data = request.get_data()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.get("/countdown")
def countdown() -> Response:
    """Streamed line by line: each line reaches the client as it is produced."""
    start = request.args.get("from", 5, type=int)

    def lines() -> Iterator[str]:
        for n in range(start, -1, -1):
            yield f"{n}\n"
            if n:
                time.sleep(request.args.get("pause", 0.2, type=float))

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/source")
def source() -> Response:
    """This file, sent through the server's wsgi.file_wrapper."""
    return send_file(HERE / "app.py", mimetype="text/plain")
