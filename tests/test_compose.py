"""deploy/compose.yaml, run with the very commands of docs/deployment.md ("Docker
Compose"): three replicas behind nginx come up, nginx keeps its connections to them
alive, aiogate trusts nginx's X-Forwarded-For, and scaling 3 -> 5 -> 2 under load from
four keep-alive clients fails no request.

Needs Docker (see tests/docker_deploy.py) and Docker Compose v2 or later; skipped,
saying which is missing, without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.docker_deploy import (
    DOC_BUILDS,
    REPO,
    WAIT,
    Load,
    answers,
    app_image,
    argv,
    check_app_service,
    compose_env,
    doc_commands,
    docker,
    free_port,
    get,
    metric,
    needs_docker,
    nginx_image,
    remote_addr,
    run,
    unique,
)

__all__ = ["app_image", "nginx_image"]  # fixtures

COMPOSE = "docker compose -f deploy/compose.yaml"
UP = f"{COMPOSE} up -d --wait"
SCALE_UP = f"{COMPOSE} up -d --wait --scale app=5 --no-recreate"
SCALE_DOWN = f"{COMPOSE} up -d --wait --scale app=2 --no-recreate"
DOWN = f"{COMPOSE} down"
UP_WAIT = 120.0  # replicas healthy: a few seconds each, on 2 busy cores


def test_the_docs_show_these_commands() -> None:
    assert doc_commands("Docker Compose") == [
        *DOC_BUILDS,
        UP,
        SCALE_UP,
        SCALE_DOWN,
        DOWN,
    ]


def test_the_file_agrees_with_aiogate_and_nginx() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    check_app_service(compose["services"]["app"], subnet)


@pytest.fixture
def project(
    app_image: str, nginx_image: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The environment of the docs' commands: the test's images, port and project."""
    env = {
        **compose_env(tmp_path / "docker-config"),
        "COMPOSE_PROJECT_NAME": unique("compose"),
        "AIOGATE_IMAGE": app_image,
        "AIOGATE_NGINX_IMAGE": nginx_image,
        "AIOGATE_NGINX_PORT": str(free_port()),
    }
    try:
        yield env
    finally:
        run([*argv(DOWN), "--timeout", "5"], env=env, timeout=120, check=False)


def containers(env: dict[str, str], service: str) -> list[str]:
    return run([*argv(COMPOSE), "ps", "-q", service], env=env).split()


@needs_docker
def test_scale_up_and_down_under_load(project: dict[str, str]) -> None:
    env = project
    port = int(env["AIOGATE_NGINX_PORT"])
    run(argv(UP), env=env, timeout=UP_WAIT)
    replicas = containers(env, "app")
    assert len(replicas) == 3

    # nginx's address is in the trusted subnet: aiogate takes the client's from
    # X-Forwarded-For (what nginx saw: the network's gateway), not nginx's own.
    (nginx,) = containers(env, "nginx")
    nginx_ip = docker(
        "inspect", "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", nginx,
    )  # fmt: skip
    assert nginx_ip.startswith("172.30.231.")
    status, body = get(port)
    assert status == 200
    assert remote_addr(body) not in ("", nginx_ip)

    with Load(port) as load:
        load.wait_requests(600)
        steady = load.phase()
        # Upstream keep-alive: far fewer connections than requests (the health
        # checks open one every 5 s per replica too).
        accepted = sum(
            metric(c, "aiogate_connections_accepted_total") for c in replicas
        )
        served = sum(
            metric(c, 'aiogate_requests_total{status="200"}') for c in replicas
        )
        assert served >= 600
        assert accepted < served / 10, (accepted, served)

        run(argv(SCALE_UP), env=env, timeout=UP_WAIT)
        assert len(containers(env, "app")) == 5
        load.wait_requests(300)  # and with the new replicas in DNS
        grew = load.phase()

        run(argv(SCALE_DOWN), env=env, timeout=UP_WAIT)
        assert len(containers(env, "app")) == 2
        load.wait_requests(300)  # and with the removed ones gone from DNS
        shrank = load.phase()
    print(
        f"\nsteady: {steady}; {served:.0f} requests served on {accepted:.0f} "
        f"connections\nscale 3 -> 5: {grew}\nscale 5 -> 2: {shrank}"
    )
    assert steady.failed == 0, steady.failures
    assert grew.failed == 0, grew.failures
    assert shrank.failed == 0, shrank.failures
    assert answers(port)
    run(argv(DOWN), env=env, timeout=WAIT * 2)
    assert containers(env, "app") == []
