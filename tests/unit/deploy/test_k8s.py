"""deploy/k8s/: every manifest validated offline against the Kubernetes API schemas
kubernetes-validate bundles (strict: no unknown fields), and checked against the code: real
settings in the ConfigMap and Secret, probes on the endpoints the worker and bridge serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from notifier.settings import Settings
from tests.unit.deploy.surfaces import (
    DEPLOY,
    PROJECTOR_PROBE_PATH,
    bridge_routes,
    is_secret,
    is_setting,
    relative,
    worker_routes,
)

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# a fixed recent release, and the newest the installed package bundles
VERSIONS = ("1.33", kubernetes_validate.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: str) -> dict[str, Any]:
    containers = one("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def config() -> dict[str, str]:
    return dict(one("ConfigMap", "notifier-config")["data"])


def port_number(spec: dict[str, Any], port: int | str) -> int:
    """A container port given by number or by name."""
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in spec["ports"] if p["name"] == port))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes_objects(path: Path, version: str) -> None:
    for resource in documents(path):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            kind = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{relative(path)} {kind} against {version}: {where}: {exc.message}")


def test_the_objects_are_all_there_in_one_namespace() -> None:
    kinds = sorted(r["kind"] for r in resources())
    for kind in ("Namespace", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"):
        assert kind in kinds
    deployments = {r["metadata"]["name"] for r in resources() if r["kind"] == "Deployment"}
    assert deployments == {"notifier-worker", "notifier-projector", "notifier-bridge"}
    namespace = one("Namespace", "notifier")["metadata"]["name"]
    for resource in resources():
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS)


def test_config_map_holds_real_settings_and_no_secret() -> None:
    for key in config():
        assert is_setting(key), f"ConfigMap key {key} is not a setting of the notifier"
        assert not is_secret(key), f"{key} is a secret: it belongs in the Secret"


def test_secret_holds_only_secret_settings_as_placeholders() -> None:
    secret = one("Secret", "notifier-secrets")
    assert "data" not in secret  # placeholders in stringData, nothing real encoded
    for key, value in secret["stringData"].items():
        assert is_setting(key) and is_secret(key), f"Secret key {key} is not a secret setting"
        assert "REPLACE_ME" in value, key


def test_config_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in config().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.metrics_port and settings.metrics_host == "0.0.0.0"


@pytest.mark.parametrize("deployment", ["notifier-worker", "notifier-projector", "notifier-bridge"])
def test_pods_read_the_config_map_and_secret(deployment: str) -> None:
    refs = container(deployment)["envFrom"]
    assert {"configMapRef": {"name": "notifier-config"}} in refs
    assert {"secretRef": {"name": "notifier-secrets"}} in refs


def test_worker_probes_the_metrics_endpoint() -> None:
    worker = container("notifier-worker")
    assert worker["args"][0] == "worker"
    port = int(config()["NOTIFIER_METRICS_PORT"])
    routes = worker_routes()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = worker[probe]["httpGet"]
        assert get["path"] == path and path in routes, probe
        assert port_number(worker, get["port"]) == port, probe
    assert worker["startupProbe"]["httpGet"]["path"] in routes
    resources = worker["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"]


def test_the_projection_runs_in_the_projector_pods_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, projector = container("notifier-worker"), container("notifier-projector")
    assert projector["args"][0] == "projector"
    overrides = {e["name"]: e["value"] for e in worker.get("env", [])}
    assert overrides == {"NOTIFIER_PROJECTION_ENABLED": "false"}
    assert "NOTIFIER_PROJECTION_ENABLED" not in config()  # the projector keeps the default
    for key, value in {**config(), **overrides}.items():
        monkeypatch.setenv(key, value)
    assert not Settings().projection_enabled
    get = projector["livenessProbe"]["httpGet"]
    assert get["path"] == PROJECTOR_PROBE_PATH
    assert port_number(projector, get["port"]) == int(config()["NOTIFIER_METRICS_PORT"])
    assert one("Deployment", "notifier-projector")["spec"]["replicas"] >= 1


def test_worker_replicas_fit_the_partitions_and_leave_the_group_cleanly() -> None:
    spec = one("Deployment", "notifier-worker")["spec"]
    assert 1 <= spec["replicas"] <= int(config()["NOTIFIER_TOPIC_PARTITIONS"])
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(config()["NOTIFIER_SESSION_TIMEOUT_S"])
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_bridge_probes_and_service_use_its_port() -> None:
    bridge = container("notifier-bridge")
    assert bridge["args"][0] == "bridge"
    port = int(config()["NOTIFIER_BRIDGE_PORT"])
    routes = bridge_routes()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = bridge[probe]["httpGet"]
        assert get["path"] == path and path in routes, probe
        assert port_number(bridge, get["port"]) == port, probe
    service = one("Service", "notifier-bridge")["spec"]
    pod_labels = one("Deployment", "notifier-bridge")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert port_number(bridge, service["ports"][0]["targetPort"]) == port


@pytest.mark.parametrize("name", ["notifier-worker", "notifier-projector", "notifier-bridge"])
def test_disruption_budgets_select_their_pods(name: str) -> None:
    budget = one("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
    deployment = one("Deployment", name)["spec"]
    assert budget == deployment["selector"]["matchLabels"]
    assert budget.items() <= deployment["template"]["metadata"]["labels"].items()


def test_autoscaler_targets_the_bridge_only() -> None:
    autoscalers = [r for r in resources() if r["kind"] == "HorizontalPodAutoscaler"]
    for autoscaler in autoscalers:
        assert autoscaler["spec"]["scaleTargetRef"]["name"] == "notifier-bridge"
    assert "replicas" not in one("Deployment", "notifier-bridge")["spec"]  # the HPA owns it


def test_workers_mint_fcm_tokens_from_a_mounted_service_account() -> None:
    path = config()["NOTIFIER_FCM_SERVICE_ACCOUNT_FILE"]
    worker = one("Deployment", "notifier-worker")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert path.startswith(mounts["fcm-service-account"] + "/")
    secret = volumes["fcm-service-account"]["secret"]["secretName"]
    assert Path(path).name in one("Secret", secret)["stringData"]
    assert "NOTIFIER_FCM_ACCESS_TOKEN" not in one("Secret", "notifier-secrets")["stringData"]
