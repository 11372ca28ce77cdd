"""Scale-out as deploy/ describes it, with plain ``docker network`` and ``docker run``:
three replicas of the image behind nginx (deploy/nginx.Dockerfile and
deploy/nginx.conf) on a Docker network, reached by one DNS name. All three get
traffic, and a rolling restart done by hand (each replica in turn replaced: a new one
started, given the name once healthy, then the old one stopped with ``docker stop``)
under load from four keep-alive clients loses no request. This is what docs/deployment.md
offers Compose users who need a rolling update.

Needs Docker (see tests/docker_deploy.py); skipped, saying why, without it."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_deploy import (
    WAIT,
    Load,
    answers,
    app_image,
    docker,
    get,
    logs,
    needs_docker,
    nginx_image,
    unique,
    wait_until,
)

__all__ = ["app_image", "nginx_image"]  # fixtures

APP = (
    "import socket\n"
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
    "    return [socket.gethostname().encode()]\n"
)


class Cluster:
    def __init__(self, image: str, nginx_image: str, app_dir: Path) -> None:
        self.name = unique("replicas")
        self.image = image
        self.app_dir = app_dir
        self.replicas: list[str] = []
        self.nginx = ""
        docker("network", "create", self.name)
        for _ in range(3):
            self.replicas.append(self.start_replica())
        self.nginx = docker(
            "run", "-d", "--network", self.name, "-p", "127.0.0.1::80", nginx_image,
        )  # fmt: skip
        self.port = int(
            docker("port", self.nginx, "80/tcp").splitlines()[0].rsplit(":", 1)[1]
        )

    def start_replica(self) -> str:
        """A new replica, healthy, then added to the name ``app``: started on no
        network, and connected with the alias once it listens. Had it joined the
        name at start, nginx might find it refusing connections and set it aside
        for 10 s (deploy/nginx.conf), and with the old replica draining as well,
        have none left."""
        container = docker(
            "run", "-d", "--network", "none",
            "--health-interval", "1s", "-v", f"{self.app_dir}:/srv/app:ro",
            "-e", "AIOGATE_APP=hostapp", "-e", "AIOGATE_APP_DIR=/srv/app",
            "-e", "AIOGATE_FORWARDED_ALLOW_IPS=*", "-e", "AIOGATE_TIMEOUT_KEEP_ALIVE=75",
            self.image,
        )  # fmt: skip
        wait_until(
            lambda: (
                docker("inspect", "--format", "{{.State.Health.Status}}", container)
                == "healthy"
            ),
            WAIT,
            "healthy",
        )
        docker("network", "disconnect", "none", container)
        docker("network", "connect", "--alias", "app", self.name, container)
        return container

    def hostnames(self) -> dict[str, str]:
        """Container hostname (what the app answers) -> container id."""
        return {
            docker("inspect", "--format", "{{.Config.Hostname}}", c): c
            for c in self.replicas
        }

    def remove(self) -> None:
        for container in [*self.replicas, self.nginx]:
            if container:
                subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "network", "rm", self.name], capture_output=True)


@pytest.fixture
def cluster(app_image: str, nginx_image: str, tmp_path: Path) -> Iterator[Cluster]:
    app_dir = tmp_path / "app"
    app_dir.mkdir(mode=0o755)
    (app_dir / "hostapp.py").write_text(APP)
    (app_dir / "hostapp.py").chmod(0o644)
    app_dir.chmod(0o755)
    made = Cluster.__new__(Cluster)
    try:
        made.__init__(app_image, nginx_image, app_dir)  # type: ignore[misc]
        yield made
    finally:
        made.remove()


@needs_docker
def test_replicas_share_traffic_and_survive_a_rolling_restart(cluster: Cluster) -> None:
    names = cluster.hostnames()
    wait_until(lambda: answers(cluster.port), WAIT, "answering through nginx")
    seen: Counter[str] = Counter()
    for _ in range(150):
        status, body = get(cluster.port)
        assert status == 200, body
        seen[body.decode()] += 1
    assert set(seen) == set(names), seen  # every replica served some
    print(f"\n150 requests over 3 replicas: {sorted(seen.values())}")

    with Load(cluster.port) as load:
        load.wait_requests(300)
        for index, old in enumerate(list(cluster.replicas)):
            cluster.replicas[index] = cluster.start_replica()  # surge first
            docker("stop", "--time", "20", old, timeout=40)
            subprocess.run(["docker", "rm", "-f", old], capture_output=True)
        load.wait_requests(300)
        tally = load.phase()
    print(f"rolling restart: {tally}")
    assert tally.ok > 1000
    assert tally.failed == 0, (tally.failures, logs(cluster.nginx))
    new_names = cluster.hostnames()
    assert not set(new_names) & set(names)  # all three were replaced
