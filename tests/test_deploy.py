"""The deployment files agree with aiogate: every AIOGATE_* variable they set is an
option, probes point at the endpoints they enable, and the shutdown arithmetic has
the measured slack. The Kubernetes manifest, which cannot run here (no cluster), is
right by construction: strict schema validation against several Kubernetes versions
(kubernetes-validate, offline), the "restricted" Pod Security fields, a read-only
root with /tmp on an emptyDir, and its disruption budget, probes and spread."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

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


# -- Kubernetes --------------------------------------------------------------------

MANIFEST = REPO / "deploy/kubernetes.yaml"
# The oldest Kubernetes version still commonly run (EKS and AKS support it in 2026
# under extended support) and the newest the installed validator bundles.
KUBERNETES_VERSIONS = ("1.29.0", "1.31.0", all_versions()[-1])
# The image's user and group (USER 10001:10001 in the Dockerfile).
IMAGE_UID = 10001


def manifest_objects() -> list[dict[str, Any]]:
    """The manifest's objects, then the commented-out ones at its end (the optional
    HorizontalPodAutoscaler), uncommented as the comment above them says."""
    text = MANIFEST.read_text()
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "# ---")
    optional = [line.removeprefix("# ") for line in lines[start:]]
    assert all(not line.startswith("#") or line == "---" for line in optional)
    objects += [doc for doc in yaml.safe_load_all("\n".join(optional)) if doc]
    return objects


def the(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifest_objects() if doc["kind"] == kind]
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_manifest_has_the_objects_it_says() -> None:
    kinds = [doc["kind"] for doc in manifest_objects()]
    assert kinds == [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    # Only the HPA is commented out.
    assert len(list(yaml.safe_load_all(MANIFEST.read_text()))) == 3


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifest_passes_strict_schema_validation(version: str) -> None:
    bundled = {major_minor(v) for v in all_versions()}
    assert major_minor(version) in bundled, (
        f"kubernetes-validate {kubernetes_validate.__version__} no longer bundles "
        f"Kubernetes {version}: pick versions from {sorted(bundled)}"
    )
    for doc in manifest_objects():
        # It returns the schema version it used: that very one, not an older one.
        used = kubernetes_validate.validate(doc, version, strict=True)
        assert used == major_minor(version), (doc["kind"], used)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The validation above can fail: a field the API does not have is an error."""
    deployment = copy.deepcopy(the("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # capital S
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_container_meets_the_restricted_pod_security_level() -> None:
    """The checks of the "restricted" Pod Security Standard, with a container's
    securityContext overriding the pod's, plus a read-only root filesystem."""
    pod = the("Deployment")["spec"]["template"]["spec"]
    pod_context = pod["securityContext"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    assert pod.get("automountServiceAccountToken") is False
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        context = {**pod_context, **container.get("securityContext", {})}
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] == IMAGE_UID, container["name"]
        assert context["runAsGroup"] == IMAGE_UID, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert not context.get("privileged"), container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert all("hostPort" not in port for port in container.get("ports", []))
    # Restricted allows only these volume types; /tmp must be an emptyDir.
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"}
    allowed |= {"persistentVolumeClaim", "projected", "secret"}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for volume in volumes.values():
        assert set(volume) - {"name"} <= allowed, volume
    (app,) = pod["containers"]
    (tmp,) = [m for m in app["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]
    assert not tmp.get("readOnly")


def test_the_grace_period_covers_delay_drain_and_the_measured_exit() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    delay = float(env["AIOGATE_SHUTDOWN_DELAY"])
    drain = float(env["AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN"])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= delay + drain + EXIT_AFTER_DRAIN, (grace, delay, drain)
    # And the comment at the top says the same figures.
    text = MANIFEST.read_text()
    assert f"terminationGracePeriodSeconds ({grace} s) >= {delay:g} + {drain:g}" in text


def test_probes_budget_spread_and_resources() -> None:
    deployment = the("Deployment")
    labels = deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    env = env_of(app)
    ports = {port["name"] for port in app["ports"]}
    probes = {
        name: app[name]["httpGet"]
        for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert {probe["port"] for probe in probes.values()} <= ports
    assert probes["startupProbe"]["path"] == env.get("AIOGATE_LIVENESS_PATH", "/livez")
    assert probes["livenessProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    # A slow app import gets time: the startup probe allows a minute.
    startup = app["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # The image turns these endpoints on (Dockerfile ENV), the manifest keeps them.
    image_env = set_variables((REPO / "Dockerfile").read_text())
    assert image_env["AIOGATE_LIVENESS_PATH"] == "/livez"
    assert image_env["AIOGATE_READINESS_PATH"] == "/readyz"
    assert "AIOGATE_LIVENESS_PATH" not in env
    assert "AIOGATE_READINESS_PATH" not in env

    budget = the("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"] == labels
    assert budget["maxUnavailable"] == 1
    assert deployment["spec"]["replicas"] > budget["maxUnavailable"]

    spread = pod["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in spread}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == labels for c in spread)

    # One process, about one core (docs/deployment.md, Sizing); memory limited.
    resources = app["resources"]
    assert resources["requests"]["cpu"] == "1"
    assert resources["requests"]["memory"] == "128Mi"
    assert resources["limits"] == {"memory": "512Mi"}

    hpa = the("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= deployment["spec"]["replicas"]


def test_the_trusted_proxy_range_is_explained_for_the_common_cnis() -> None:
    text = MANIFEST.read_text()
    env = env_of(the("Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["AIOGATE_FORWARDED_ALLOW_IPS"] == "10.0.0.0/8"
    for hint in ("Calico 192.168.0.0/16", "flannel", "10.244.0.0/16", "GKE", "EKS"):
        assert hint in text, hint
