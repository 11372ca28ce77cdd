"""The deployment files agree with aiogate: every AIOGATE_* variable they set is an
option, probes point at the endpoints they enable, and the Kubernetes grace period
covers the shutdown delay plus the drain."""

from __future__ import annotations

import re
from pathlib import Path

from aiogate.cli import app_options, config_options

REPO = Path(__file__).resolve().parent.parent
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
    assert "AIOGATE_LIVENESS_PATH" in text.split("HEALTHCHECK", 1)[1]
    assert env["AIOGATE_HOST"] == "0.0.0.0"
    assert 'ENTRYPOINT ["aiogate", "serve"]' in text  # exec form: aiogate is PID 1
