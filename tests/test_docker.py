"""The real Docker image: built from the top-level Dockerfile, healthy within seconds,
serving the demo app and a mounted app, and stopped by ``docker stop`` with exit code
0 and no request lost under load.

Needs a Docker engine and a Python base image (no image registry is reachable here):
``.ci/run`` starts the engine with ``../shared/tools/docker-base-image.sh`` and puts
the image's name in ``AIOGATE_TEST_BASE_IMAGE``. Without them these tests are skipped,
saying which is missing.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import ssl
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_deploy import NEEDS_DOCKER
from tests.test_deploy import EXIT_AFTER_DRAIN

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("AIOGATE_TEST_BASE_IMAGE", "")
WAIT = 30.0


# (the checks, and why each skips, are shared with the Compose and Swarm tests)
pytestmark = NEEDS_DOCKER


def docker(*args: str, timeout: float = WAIT) -> str:
    completed = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, (args, completed.stderr[-2000:])
    return completed.stdout.strip()


_BUILT: dict[str, str] = {}


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """The image of the top-level Dockerfile, built once per test session. Other
    test modules import this fixture, and pytest then holds one definition per
    module: the tag is kept here, so they all share one build."""
    if "image" not in _BUILT:
        tag = f"aiogate-test:{uuid.uuid4().hex[:12]}"
        docker(
            "build", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", tag,
            str(REPO),
            timeout=900,
        )  # fmt: skip
        _BUILT["image"] = tag
    yield _BUILT["image"]
    # Every definition's teardown runs at the end of the session: the first removes.
    subprocess.run(
        ["docker", "rmi", "-f", _BUILT["image"]], capture_output=True, check=False
    )


# The documented recipe for an app image on top of aiogate's (docs/deployment.md, the
# Dockerfile's header): the install step runs as root, since the virtualenv is root's,
# then the image drops back to the numeric user.
APP_IMAGE_RECIPE = """\
FROM {image}
USER root
COPY . /app
RUN pip install --no-cache-dir -r /app/requirements.txt
USER 10001:10001
ENV AIOGATE_APP=myapp:application
"""

# The app: it imports the extra dependency, echoes the body's size, and /sleep holds
# its thread (for the shutdown timing).
APP = """\
import time

import aiogate_test_extra


def application(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "60"))
    size = len(environ["wsgi.input"].read())
    body = f"{aiogate_test_extra.GREETING} {environ['PATH_INFO']} {size}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def write_wheel(directory: Path) -> str:
    """A one-module wheel, ``aiogate-test-extra`` 1.0, made here: no network is
    needed to install it (the app image is built with ``--network none``)."""
    name = "aiogate_test_extra-1.0-py3-none-any.whl"
    files = {
        "aiogate_test_extra.py": b"GREETING = 'hello from the extra dependency'\n",
        "aiogate_test_extra-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: aiogate-test-extra\nVersion: 1.0\n"
        ),
        "aiogate_test_extra-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append("aiogate_test_extra-1.0.dist-info/RECORD,,")
    files["aiogate_test_extra-1.0.dist-info/RECORD"] = "\n".join(record).encode()
    with zipfile.ZipFile(directory / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return name


@pytest.fixture(scope="session")
def app_image(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An app image built on top of ``image`` with the documented recipe and one extra
    dependency, installed into the image's virtualenv."""
    context = tmp_path_factory.mktemp("app-image")
    (context / "wheels").mkdir()
    write_wheel(context / "wheels")
    (context / "requirements.txt").write_text(
        "--no-index\n--find-links /app/wheels\naiogate-test-extra==1.0\n"
    )
    (context / "myapp.py").write_text(APP)
    (context / "Dockerfile").write_text(APP_IMAGE_RECIPE.format(image=image))
    for path in context.rglob("*"):  # as a checkout would have them: readable
        path.chmod(0o755 if path.is_dir() else 0o644)
    context.chmod(0o755)
    tag = f"aiogate-test-app:{uuid.uuid4().hex[:12]}"
    docker("build", "--network", "none", "-t", tag, str(context), timeout=300)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a self-signed certificate and its key, readable by the
    image's user."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
         "/CN=aiogate-docker-test", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=d, check=True, capture_output=True, timeout=WAIT,
    )  # fmt: skip
    for path in (d, d / "cert.pem", d / "key.pem"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return d


class Container:
    """One running container with its ``port`` published on 127.0.0.1."""

    def __init__(
        self, image: str, *args: str, port: int = 8000, tls: bool = False
    ) -> None:
        self.tls = tls
        self.id = docker(
            "run", "-d", "-p", f"127.0.0.1::{port}", "--health-interval", "1s",
            *args, image,
        )  # fmt: skip
        address = docker("port", self.id, f"{port}/tcp").splitlines()[0]
        self.port = int(address.rsplit(":", 1)[1])

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id)

    def wait_healthy(self) -> float:
        started = time.monotonic()
        while self.inspect("{{.State.Health.Status}}") != "healthy":
            assert self.inspect("{{.State.Running}}") == "true", self.logs()
            assert time.monotonic() - started < WAIT, (
                self.inspect("{{json .State.Health}}"),
                self.logs(),
            )
            time.sleep(0.2)  # polling another process's state, bounded
        return time.monotonic() - started

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self, method: str, path: str = "/", body: bytes | None = None
    ) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str = "/") -> tuple[int, bytes]:
        return self.request("GET", path)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", self.id, *command],
            capture_output=True, text=True, timeout=WAIT, check=False,
        )  # fmt: skip

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
    # Numeric ids, not a name: the kubelet can then check runAsNonRoot.
    assert container.inspect("{{.Config.User}}") == "10001:10001"
    assert container.exec("id", "-u").stdout == "10001\n"
    assert container.exec("id", "-g").stdout == "10001\n"


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


# -- the image as production runs it: read-only, another port, TLS, an app on top ----

UPLOAD = 2 * 1024 * 1024  # over the default --body-buffer-size (512 KiB): a file
GREETING = b"hello from the extra dependency"


def test_app_image_on_top_read_only_with_a_tmpfs(
    app_image: str, containers: list[Container]
) -> None:
    container = Container(app_image, "--read-only", "--tmpfs", "/tmp")
    containers.append(container)
    container.wait_healthy()
    assert container.get("/x") == (200, GREETING + b" /x 0")
    body = os.urandom(UPLOAD)
    assert container.request("POST", "/upload", body) == (
        200,
        GREETING + b" /upload %d" % UPLOAD,
    )
    # The dependency landed in the image's virtualenv, owned by root: the server's
    # user can run the code but not change it.
    owner = container.exec(
        "python", "-c",
        "import os, aiogate_test_extra as m; print(os.stat(m.__file__).st_uid, m.__file__)",
    )  # fmt: skip
    assert owner.stdout.startswith("0 /opt/aiogate/lib/"), owner
    assert "No temporary file can be made" not in container.logs()


def test_a_bind_on_another_port_is_healthy(
    app_image: str, containers: list[Container]
) -> None:
    container = Container(
        app_image, "--read-only", "--tmpfs", "/tmp",
        "-e", "AIOGATE_BIND=0.0.0.0:9001",
        port=9001,
    )  # fmt: skip
    containers.append(container)
    container.wait_healthy()
    assert container.get("/y") == (200, GREETING + b" /y 0")
    assert "GET http://127.0.0.1:9001/livez: 200 OK" in container.inspect(
        "{{json .State.Health.Log}}"
    )


def test_tls_is_healthy(
    app_image: str, containers: list[Container], self_signed: Path
) -> None:
    container = Container(
        app_image, "--read-only", "--tmpfs", "/tmp",
        "-v", f"{self_signed}:/certs:ro",
        "-e", "AIOGATE_SSL_CERTFILE=/certs/cert.pem",
        "-e", "AIOGATE_SSL_KEYFILE=/certs/key.pem",
        tls=True,
    )  # fmt: skip
    containers.append(container)
    container.wait_healthy()
    assert container.get("/z") == (200, GREETING + b" /z 0")
    assert "GET https://127.0.0.1:8000/livez: 200 OK" in container.inspect(
        "{{json .State.Health.Log}}"
    )


def test_the_health_check_turns_unhealthy_and_says_why(
    image: str, containers: list[Container]
) -> None:
    """The probe is not vacuous: with no liveness endpoint to ask, the container
    turns unhealthy, and Docker's health log has the one-line reason."""
    container = Container(
        image,
        "-e",
        "AIOGATE_LIVENESS_PATH=",
        "--health-retries",
        "1",
        "--health-start-period",
        "1s",
    )
    containers.append(container)
    started = time.monotonic()
    while container.inspect("{{.State.Health.Status}}") != "unhealthy":
        assert time.monotonic() - started < WAIT, container.logs()
        time.sleep(0.2)  # polling another process's state, bounded
    assert (
        "aiogate check: unhealthy: no liveness endpoint to ask: set "
        "AIOGATE_LIVENESS_PATH (e.g. /livez)\\n"
    ) in container.inspect("{{json .State.Health.Log}}")


def test_read_only_without_a_tmpfs_warns_at_start(
    app_image: str, containers: list[Container]
) -> None:
    container = Container(app_image, "--read-only")
    containers.append(container)
    container.wait_healthy()  # it serves: an app without uploads needs no tmpfs
    assert container.get("/") == (200, GREETING + b" / 0")
    warnings = [line for line in container.logs().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert (
        "No temporary file can be made ([Errno 2] No usable temporary directory "
        "found in ['/tmp', '/var/tmp', '/usr/tmp', '/app']): request bodies over "
        "--body-buffer-size (524288 bytes) will get a 503"
    ) in warnings[0]


def test_read_only_without_a_tmpfs_a_large_upload_gets_a_503(
    app_image: str, containers: list[Container]
) -> None:
    container = Container(app_image, "--read-only")
    containers.append(container)
    container.wait_healthy()
    status, body = container.request("POST", "/upload", os.urandom(UPLOAD))
    assert (status, body) == (503, b"cannot store the request body\n")
    errors = [line for line in container.logs().splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert (
        "Cannot keep a request body in a temporary file: [Errno 2] No usable "
        "temporary directory found in ['/tmp', '/var/tmp', '/usr/tmp', '/app']; 503 "
        "for ('"
    ) in errors[0]


def test_exit_time_after_the_drain(app_image: str, containers: list[Container]) -> None:
    """``docker stop`` with a request stuck in the app: the process serves on for
    the shutdown delay, drains until the graceful timeout, and exits with code 0 a
    little later. That little is the slack a stop timeout (and Kubernetes'
    terminationGracePeriodSeconds) needs above delay + drain: it must stay under
    test_deploy's EXIT_AFTER_DRAIN."""
    delay, drain = 1.0, 2.0
    container = Container(
        app_image,
        "-e", f"AIOGATE_SHUTDOWN_DELAY={delay}",
        "-e", f"AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN={drain}",
    )  # fmt: skip
    containers.append(container)
    container.wait_healthy()
    outcome: list[BaseException | tuple[int, bytes]] = []

    def stuck_request() -> None:
        try:
            outcome.append(container.request("GET", "/sleep", None))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    client = threading.Thread(target=stuck_request)
    client.start()
    started = time.monotonic()
    # (The per-worker gauge carries a worker label; any worker with one in flight.)
    in_flight = re.compile(rb'^aiogate_requests_in_flight\{worker="\d+"\} 1$', re.M)
    while not in_flight.search(container.get("/metrics")[1]):
        assert time.monotonic() - started < WAIT
        time.sleep(0.05)  # polling the server's own gauge, bounded
    stopped_at = time.monotonic()
    docker("stop", "--time", "20", container.id)
    elapsed = time.monotonic() - stopped_at
    client.join(WAIT)
    slack = elapsed - delay - drain
    print(f"exit after the drain: {slack:.2f} s")  # shown with pytest -s
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert 0 < slack < EXIT_AFTER_DRAIN, (slack, container.logs())
    assert isinstance(outcome[0], OSError | http.client.HTTPException), outcome
