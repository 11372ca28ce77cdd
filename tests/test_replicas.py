"""Scale-out as deploy/ describes it: three replicas of the image behind nginx (built
from deploy/nginx.Dockerfile and deploy/nginx.conf) on a Docker network, reached by
one DNS name. All three get traffic, and a rolling restart (each replica stopped with
``docker stop`` and replaced, one at a time) under load loses no request.

Needs Docker and the base image, like tests/test_docker.py."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_docker import BASE_IMAGE, REPO, WAIT, docker, image, pytestmark

__all__ = ["image", "pytestmark"]  # the image fixture and the skip conditions

APP = (
    "import socket\n"
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
    "    return [socket.gethostname().encode()]\n"
)


class Cluster:
    def __init__(self, image: str, app_dir: Path) -> None:
        self.name = f"aiogate-test-{uuid.uuid4().hex[:8]}"
        self.image = image
        self.app_dir = app_dir
        self.replicas: list[str] = []
        docker("network", "create", self.name)
        self.nginx_image = f"{self.name}-nginx"
        docker(
            "build", "-q", "-f", str(REPO / "deploy/nginx.Dockerfile"),
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", self.nginx_image,
            str(REPO / "deploy"),
            timeout=600,
        )  # fmt: skip
        for _ in range(3):
            self.replicas.append(self.start_replica())
        self.nginx = docker(
            "run", "-d", "--network", self.name, "-p", "127.0.0.1::80",
            self.nginx_image,
        )  # fmt: skip
        self.port = int(
            docker("port", self.nginx, "80/tcp").splitlines()[0].rsplit(":", 1)[1]
        )

    def start_replica(self) -> str:
        container = docker(
            "run", "-d", "--network", self.name, "--network-alias", "app",
            "--health-interval", "1s", "-v", f"{self.app_dir}:/srv/app:ro",
            "-e", "AIOGATE_APP=hostapp", "-e", "AIOGATE_APP_DIR=/srv/app",
            "-e", "AIOGATE_FORWARDED_ALLOW_IPS=*", "-e", "AIOGATE_TIMEOUT_KEEP_ALIVE=75",
            self.image,
        )  # fmt: skip
        started = time.monotonic()
        while docker("inspect", "--format", "{{.State.Health.Status}}", container) != (
            "healthy"
        ):
            assert time.monotonic() - started < WAIT
            time.sleep(0.2)  # polling another process's state, bounded
        return container

    def hostnames(self) -> dict[str, str]:
        """Container hostname (what the app answers) -> container id."""
        return {
            docker("inspect", "--format", "{{.Config.Hostname}}", c): c
            for c in self.replicas
        }

    def remove(self) -> None:
        for container in [*self.replicas, getattr(self, "nginx", "")]:
            if container:
                subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", self.nginx_image], capture_output=True)
        subprocess.run(["docker", "network", "rm", self.name], capture_output=True)


@pytest.fixture
def cluster(image: str, tmp_path: Path) -> Iterator[Cluster]:
    app_dir = tmp_path / "app"
    app_dir.mkdir(mode=0o755)
    (app_dir / "hostapp.py").write_text(APP)
    (app_dir / "hostapp.py").chmod(0o644)
    app_dir.chmod(0o755)
    made = Cluster.__new__(Cluster)
    try:
        made.__init__(image, app_dir)  # type: ignore[misc]
        yield made
    finally:
        made.remove()


def get(port: int, conn: http.client.HTTPConnection | None = None) -> str:
    """One GET through nginx, on ``conn`` (kept open) or a connection of its own."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        if own:
            conn.close()
    assert response.status == 200, (response.status, body)
    return body


def test_replicas_share_traffic_and_survive_a_rolling_restart(cluster: Cluster) -> None:
    names = cluster.hostnames()
    seen = Counter(get(cluster.port) for _ in range(150))
    assert set(seen) == set(names), seen  # every replica served some
    print(f"150 requests over 3 replicas: {sorted(seen.values())}")

    results: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
        while not done.is_set():
            try:
                get(cluster.port, conn)
                outcome = "ok"
            except (OSError, http.client.HTTPException, AssertionError):
                outcome = "failed"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
            with lock:
                results[outcome] += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for index, old in enumerate(list(cluster.replicas)):
            cluster.replicas[index] = cluster.start_replica()  # surge first
            docker("stop", "--time", "20", old, timeout=40)
            subprocess.run(["docker", "rm", "-f", old], capture_output=True)
    finally:
        done.set()
        for thread in threads:
            thread.join(WAIT)
    assert results["ok"] > 100
    assert results["failed"] == 0, results
    new_names = cluster.hostnames()
    assert not set(new_names) & set(names)  # all three were replaced
    print(f"rolling restart: {results['ok']} requests, {results['failed']} failed")
