"""deploy/stack.yaml on Docker Swarm, run with the very commands of
docs/deployment.md ("Docker Swarm"): the stack deploys as it is, aiogate trusts
nginx's X-Forwarded-For on the overlay network, and a rolling restart
(``docker service update --force``) and a scale-down 3 -> 2, under load from four
keep-alive clients (one of them sending POSTs, which nginx never retries), fail no
request: a task leaves DNS before it is stopped, so nginx has stopped using it when it
drains.

The engine joins a swarm of one (on loopback) only if it is in none, and leaves it
afterwards; a swarm it is already in is left as it was. Needs Docker (see
tests/docker_deploy.py); skipped, saying why, without it.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

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
    doc_commands,
    docker,
    free_port,
    get,
    needs_docker,
    nginx_image,
    remote_addr,
    run,
    unique,
    wait_until,
)

__all__ = ["app_image", "nginx_image"]  # fixtures

INIT = "docker swarm init --advertise-addr 127.0.0.1"
DEPLOY = "docker stack deploy -c deploy/stack.yaml aiogate"
UPDATE = "docker service update --force aiogate_app"
SCALE_DOWN = "docker service scale aiogate_app=2"
REMOVE = "docker stack rm aiogate"
CONVERGE_WAIT = 180.0  # three tasks replaced one at a time, each healthy first


def test_the_docs_show_these_commands() -> None:
    assert doc_commands("Docker Swarm") == [
        INIT, *DOC_BUILDS, DEPLOY, UPDATE, SCALE_DOWN, REMOVE,
    ]  # fmt: skip


def test_the_stack_file_agrees_with_aiogate_and_nginx() -> None:
    stack = yaml.safe_load((REPO / "deploy" / "stack.yaml").read_text())
    network = stack["networks"]["aiogate"]
    assert network["driver"] == "overlay"
    (subnet,) = [c["subnet"] for c in network["ipam"]["config"]]
    app = stack["services"]["app"]
    check_app_service(app, subnet)
    assert "build" not in str(stack)  # Swarm does not build
    deploy = app["deploy"]
    assert deploy["endpoint_mode"] == "dnsrr"
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    assert [port["mode"] for port in stack["services"]["nginx"]["ports"]] == ["host"]


def named(command: str, stack: str) -> list[str]:
    """``command`` with the stack named ``stack`` instead of ``aiogate``."""
    return [re.sub(r"^aiogate(?=$|_)", stack, word) for word in argv(command)]


@pytest.fixture
def swarm() -> Iterator[None]:
    """This engine as a swarm manager: joined for the test if it was in no swarm."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    created = False
    if state == "inactive":
        had_gwbridge = bool(
            docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$")
        )
        run(argv(INIT))
        created = True
    elif state != "active":
        pytest.skip(f"this engine's swarm state is {state!r}")
    elif docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
        pytest.skip("this engine is a swarm worker: a stack needs a manager")
    try:
        yield
    finally:
        if created:
            docker("swarm", "leave", "--force", check=False)
            if not had_gwbridge:  # made for the stack's published port
                docker("network", "rm", "docker_gwbridge", check=False)


@pytest.fixture
def stack(
    swarm: None, app_image: str, nginx_image: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """A stack name, and the environment that gives it the test's images and port."""
    name = unique("swarm")
    env = {
        "AIOGATE_IMAGE": app_image,
        "AIOGATE_NGINX_IMAGE": nginx_image,
        "AIOGATE_NGINX_PORT": str(free_port()),
    }
    try:
        yield name, env
    finally:
        remove(name)


def remove(stack: str) -> None:
    """``docker stack rm``, again until it has removed everything, as the docs say.

    The command removes the stack's network right after its services, while their
    tasks may still be stopping (a scaled-down task drains for up to 8 s): then it
    fails with "network ... is in use by task" (moby/moby#31068) and the network stays
    until it is run again."""
    label = f"label=com.docker.stack.namespace={stack}"

    def gone() -> bool:
        removed = subprocess.run(
            named(REMOVE, stack), capture_output=True, timeout=WAIT, cwd=REPO
        )
        return (
            removed.returncode == 0
            and not docker("ps", "-aq", "--filter", label, check=False)
            and not docker("network", "ls", "-q", "--filter", label, check=False)
        )

    wait_until(gone, 90, f"stack {stack} removed", interval=2)


def timed(command: list[str]) -> float:
    """Run ``command`` (one that waits until the service has converged); seconds."""
    started = time.monotonic()
    run(command, timeout=CONVERGE_WAIT)
    return time.monotonic() - started


def running_tasks(service: str) -> set[str]:
    return set(
        docker(
            "service", "ps", "-q", "--filter", "desired-state=running", service
        ).split()
    )


@needs_docker
def test_rolling_update_and_scale_down_under_load(
    stack: tuple[str, dict[str, str]],
) -> None:
    name, env = stack
    port = int(env["AIOGATE_NGINX_PORT"])
    app = f"{name}_app"
    run(named(DEPLOY, name), env=env)

    def ready() -> bool:
        replicas = docker(
            "service", "ls", "--filter", f"name={app}", "--format", "{{.Replicas}}"
        )
        return replicas == "3/3" and answers(port)

    wait_until(ready, 120, "3 replicas behind nginx")

    # nginx's address on the overlay is in the trusted subnet: aiogate takes the
    # client's from X-Forwarded-For (what nginx saw), not nginx's own.
    (nginx,) = docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}_nginx"
    ).split()
    nginx_ip = docker(
        "inspect", "--format",
        f'{{{{(index .NetworkSettings.Networks "{name}_aiogate").IPAddress}}}}', nginx,
    )  # fmt: skip
    assert nginx_ip.startswith("10.231.0."), nginx_ip
    status, body = get(port)
    assert status == 200
    assert remote_addr(body) not in ("", nginx_ip)

    before = running_tasks(app)
    with Load(port, posts=1) as load:
        load.wait_requests(300)
        steady = load.phase()
        took = {"update": timed(named(UPDATE, name))}
        load.wait_requests(300)
        updated = load.phase()
        update_state = docker(
            "service", "inspect", "--format", "{{.UpdateStatus.State}}", app
        )
        took["scale"] = timed(named(SCALE_DOWN, name))
        load.wait_requests(300)
        scaled = load.phase()
    print(
        f"\nsteady: {steady}\nservice update --force ({took['update']:.0f} s): "
        f"{updated}\nscale 3 -> 2 ({took['scale']:.0f} s): {scaled}"
    )
    assert update_state == "completed"  # not rolled back
    after = running_tasks(app)
    assert len(after) == 2
    assert not after & before  # every task was replaced
    assert steady.failed == 0, steady.failures
    assert updated.failed == 0, updated.failures
    assert scaled.failed == 0, scaled.failures
    assert answers(port)
    remove(name)
