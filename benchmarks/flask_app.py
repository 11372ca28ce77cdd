"""The Flask workload: one route answering a small JSON object (``apps.flask_json``)."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, object]:
    return {"message": "Hello, world!", "id": 1, "tags": ["wsgi", "json"]}
