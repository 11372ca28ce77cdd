"""The real Docker image: built from the top-level Dockerfile, healthy within seconds,
serving the demo app and a mounted app, and stopped by ``docker stop`` with exit code
0 and no request lost under load.

Needs a Docker engine and a Python base image (no image registry is reachable here):
``.ci/run`` starts the engine with ``../shared/tools/docker-base-image.sh`` and puts
the image's name in ``AIOGATE_TEST_BASE_IMAGE``. Without them these tests are skipped,
saying which is missing.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("AIOGATE_TEST_BASE_IMAGE", "")
WAIT = 30.0


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "version"], capture_output=True, timeout=20, check=False
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not BASE_IMAGE,
        reason="AIOGATE_TEST_BASE_IMAGE is not set (.ci/run sets it when "
        "../shared/tools/docker-base-image.sh could start Docker)",
    ),
    pytest.mark.skipif(
        bool(BASE_IMAGE) and not _docker_answers(),
        reason="no Docker engine answers `docker version`",
    ),
]


def docker(*args: str, timeout: float = WAIT) -> str:
    completed = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, (args, completed.stderr[-2000:])
    return completed.stdout.strip()


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    tag = f"aiogate-test:{uuid.uuid4().hex[:12]}"
    docker(
        "build", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", tag, str(REPO),
        timeout=900,
    )  # fmt: skip
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


class Container:
    """One running container with its port 8000 published on 127.0.0.1."""

    def __init__(self, image: str, *args: str) -> None:
        self.id = docker(
            "run", "-d", "-p", "127.0.0.1::8000", "--health-interval", "1s",
            *args, image,
        )  # fmt: skip
        address = docker("port", self.id, "8000/tcp").splitlines()[0]
        self.port = int(address.rsplit(":", 1)[1])

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id)

    def wait_healthy(self) -> float:
        started = time.monotonic()
        while self.inspect("{{.State.Health.Status}}") != "healthy":
            assert self.inspect("{{.State.Running}}") == "true", self.logs()
            assert time.monotonic() - started < WAIT, self.logs()
            time.sleep(0.2)  # polling another process's state, bounded
        return time.monotonic() - started

    def get(self, path: str = "/") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def logs(self) -> str:
        return subprocess.run(
            ["docker", "logs", self.id], capture_output=True, text=True, check=False
        ).stderr[-3000:]

    def remove(self) -> None:
        subprocess.run(
            ["docker", "rm", "-f", self.id], capture_output=True, check=False
        )


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def test_demo_app_healthy_within_seconds(
    image: str, containers: list[Container]
) -> None:
    container = Container(image)
    containers.append(container)
    assert container.wait_healthy() < 15
    status, body = container.get("/hello?x=1")
    assert status == 200
    assert b"/hello" in body
    assert container.get("/readyz") == (200, b"ready\n")
    assert b"aiogate_requests_total" in container.get("/metrics")[1]
    assert container.inspect("{{.Config.User}}") == "aiogate"  # not root


def test_mounted_app(image: str, containers: list[Container], tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "myapp.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'mounted ' + environ['PATH_INFO'].encode()]\n"
    )
    app_dir.chmod(0o755)
    (app_dir / "myapp.py").chmod(0o644)
    container = Container(
        image, "-v", f"{app_dir}:/srv/app:ro",
        "-e", "AIOGATE_APP=myapp", "-e", "AIOGATE_APP_DIR=/srv/app",
    )  # fmt: skip
    containers.append(container)
    container.wait_healthy()
    assert container.get("/x") == (200, b"mounted /x")


def test_docker_stop_under_load_loses_nothing_and_exits_0(
    image: str, containers: list[Container]
) -> None:
    container = Container(image, "-e", "AIOGATE_THREADS=4")
    containers.append(container)
    container.wait_healthy()
    outcomes: list[tuple[float, bool]] = []
    lock = threading.Lock()
    done = threading.Event()
    warmed = threading.Semaphore(0)

    def client() -> None:
        while not done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", container.port, timeout=10)
            try:
                while not done.is_set():
                    sent = time.monotonic()
                    try:
                        conn.request("GET", "/work")
                        response = conn.getresponse()
                        response.read()
                        ok = response.status == 200
                    except (OSError, http.client.HTTPException):
                        with lock:
                            outcomes.append((sent, False))
                        break
                    with lock:
                        outcomes.append((sent, ok))
                    warmed.release()
                    if response.getheader("Connection") == "close":
                        break
            finally:
                conn.close()
            try:  # reconnect: refused once the container is gone
                socket_probe = http.client.HTTPConnection(
                    "127.0.0.1", container.port, timeout=2
                )
                socket_probe.connect()
                socket_probe.close()
            except OSError:
                return

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        assert warmed.acquire(timeout=WAIT)
    stopped_at = time.monotonic()
    docker("stop", "--time", "10", container.id)
    stop_seconds = time.monotonic() - stopped_at
    done.set()
    for thread in threads:
        thread.join(WAIT)
    before = [ok for sent, ok in outcomes if sent < stopped_at]
    assert len(before) >= 200
    assert all(before), f"{before.count(False)} of {len(before)} requests failed"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert stop_seconds < 5, stop_seconds
