"""The examples in ``examples/`` start with the exact command their README gives and
answer a request: the Flask app and the Django project, each through the real
``aiogate serve`` command line in a subprocess."""

from __future__ import annotations

import http.client
import json
import re
import shlex
from pathlib import Path

from tests.integration.servers import TIMEOUT, cli_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def readme_command(example: str) -> list[str]:
    """The arguments of the one ``aiogate serve`` command in the example's README."""
    text = (EXAMPLES / example / "README.md").read_text()
    commands = re.findall(r"^aiogate serve (.+)$", text, flags=re.MULTILINE)
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def fetch(
    port: int, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    """One request on its own connection, closed afterwards (so the server's
    graceful shutdown has no connection to wait for)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_flask_example() -> None:
    arguments = readme_command("flask_app")
    assert arguments == ["--app-dir", "examples/flask_app", "app:app"]
    with cli_server([*arguments, "--port", "0", "--threads", "2"], cwd=ROOT) as server:
        status, body = fetch(server.port, "GET", "/hello/reader")
        assert status == 200
        assert json.loads(body) == {"greeting": "Hello, reader!"}
        status, body = fetch(server.port, "GET", "/source")
        assert (status, body) == (200, (EXAMPLES / "flask_app/app.py").read_bytes())


def test_django_example() -> None:
    arguments = readme_command("django_project")
    assert arguments == ["--app-dir", "examples/django_project", "mysite.wsgi"]
    with cli_server([*arguments, "--port", "0", "--threads", "2"], cwd=ROOT) as server:
        status, body = fetch(server.port, "GET", "/")
        assert status == 200
        document = json.loads(body)
        assert document["message"] == "Hello from Django on aiogate"
        assert document["server"].startswith("aiogate/")
        status, body = fetch(
            server.port,
            "POST",
            "/echo",
            json.dumps({"a": [1, 2]}).encode(),
            **{"Content-Type": "application/json"},
        )
        assert (status, json.loads(body)) == (200, {"json": {"a": [1, 2]}})
