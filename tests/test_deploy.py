"""The deployment files agree with aiogate: every AIOGATE_* variable they set is an
option, probes point at the endpoints they enable, and the Kubernetes grace period
covers the shutdown delay plus the drain."""

from __future__ import annotations

import re
from pathlib import Path

from aiogate.cli import app_options, config_options

REPO = Path(__file__).resolve().parent.parent
# Seconds the process takes to exit after the graceful-shutdown timeout, measured by
# test_docker.py's test_exit_time_after_the_drain (which fails above this): the pool
# gives a thread still stuck in the app 1 s, then the loop and the container end.
EXIT_AFTER_DRAIN = 2.0
VARIABLES = {option.envvar for option in (*app_options(), *config_options())}


def set_variables(text: str) -> dict[str, str]:
    pairs = re.findall(r"name: (AIOGATE_\w+), value: \"([^\"]*)\"", text)
    pairs += re.findall(r"^\s+(AIOGATE_\w+): \"?([^\"\s#]*)", text, re.MULTILINE)
    pairs += re.findall(r"(AIOGATE_\w+)=(\S+?)(?: \\)?$", text, re.MULTILINE)
    return dict(pairs)


def test_every_variable_in_the_deployment_files_is_an_option() -> None:
    for name in ("Dockerfile", "deploy/kubernetes.yaml", "deploy/compose.yaml"):
        found = set_variables((REPO / name).read_text())
        assert found, name
        assert set(found) <= VARIABLES, (name, set(found) - VARIABLES)


def test_kubernetes_grace_period_covers_delay_and_drain() -> None:
    text = (REPO / "deploy/kubernetes.yaml").read_text()
    env = set_variables(text)
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text)[1])  # type: ignore[index]
    delay = float(env["AIOGATE_SHUTDOWN_DELAY"])
    drain = float(env["AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN"])
    assert grace > delay + drain
    assert "path: /readyz" in text
    assert "path: /livez" in text


def test_the_image_enables_the_endpoints_its_health_check_uses() -> None:
    text = (REPO / "Dockerfile").read_text()
    env = set_variables(text)
    assert env["AIOGATE_LIVENESS_PATH"] == "/livez"
    # aiogate check reads the server's own settings: the liveness path, the bind,
    # the port, TLS (tests/test_healthcheck.py).
    assert re.search(r'^HEALTHCHECK .*\\\n\s+CMD \["aiogate", "check"\]$', text, re.M)
    assert env["AIOGATE_HOST"] == "0.0.0.0"
    assert 'ENTRYPOINT ["aiogate", "serve"]' in text  # exec form: aiogate is PID 1
    # Numeric user and group, with fixed ids: runAsNonRoot can be checked.
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "groupadd --system --gid 10001 aiogate" in text
    assert "useradd --system --uid 10001 --gid 10001 " in text


def test_the_image_drains_within_the_default_stop_timeout() -> None:
    """docker stop and Swarm's stop_grace_period give 10 s before SIGKILL."""
    env = set_variables((REPO / "Dockerfile").read_text())
    assert float(env["AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN"]) + EXIT_AFTER_DRAIN <= 10
