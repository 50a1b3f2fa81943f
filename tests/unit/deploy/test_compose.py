"""deploy/compose.yaml and deploy/Dockerfile, checked without Docker: the services and
their commands, healthchecks on the endpoints the code serves, and only real settings."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from notifier.settings import REPO_ROOT, Settings
from tests.unit.deploy.surfaces import (
    DEPLOY,
    PROJECTOR_PROBE_PATH,
    bridge_routes,
    is_setting,
    worker_routes,
)

COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SERVICES = {"kafka", "postgres", "registry", "sandbox", "setup", "worker", "projector", "bridge"}


def services() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def env(service: dict[str, Any]) -> dict[str, str]:
    found = service.get("environment") or {}
    assert isinstance(found, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in found.items()}


def probe_url(service: dict[str, Any]) -> str:
    """The URL a healthcheck requests."""
    test = " ".join(str(part) for part in service["healthcheck"]["test"])
    found = re.search(r"https?://[^\s'\"]+", test)
    assert found, f"no URL in healthcheck {test!r}"
    return found.group(0)


def test_every_part_is_a_service() -> None:
    assert set(services()) == SERVICES


def test_kafka_is_one_kraft_node_with_the_documented_env() -> None:
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    e = env(kafka)
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = e["KAFKA_NODE_ID"]
    listeners: dict[str, str] = {}
    for item in e["KAFKA_LISTENERS"].split(","):
        name, port = re.fullmatch(r"(\w+)://[^:]*:(\d+)", item).groups()  # type: ignore[union-attr]
        listeners[name] = port
    assert e["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    # the one voter is this node, at its controller listener
    assert e["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        f"{node}@kafka:{listeners[e['KAFKA_CONTROLLER_LISTENER_NAMES']]}"
    )
    protocols = dict(
        item.split(":") for item in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    # the other services reach the broker at the address it advertises to them
    assert f"PLAINTEXT://kafka:{listeners['PLAINTEXT']}" in e["KAFKA_ADVERTISED_LISTENERS"]
    assert (
        env(services()["worker"])["NOTIFIER_KAFKA_BOOTSTRAP"] == f"kafka:{listeners['PLAINTEXT']}"
    )


def test_the_registry_is_apicurio_on_kafka_and_the_notifier_speaks_its_ccompat_api() -> None:
    registry = services()["registry"]
    assert registry["image"].startswith("apicurio/apicurio-registry:")
    assert env(registry)["APICURIO_STORAGE_KIND"] in {"kafkasql", "mem"}
    assert probe_url(registry).endswith("/health/ready")
    url = env(services()["worker"])["SCHEMA_REGISTRY_URL"]
    assert url.startswith("http://registry:8080/") and url.endswith("/apis/ccompat/v7")


def test_setup_creates_topics_registers_schemas_and_migrates_once() -> None:
    setup = services()["setup"]
    script = " ".join(setup["entrypoint"] + setup["command"])
    steps = ["notifier topics create", "notifier schemas register", "notifier db migrate"]
    positions = [script.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), script
    assert setup["restart"] == "no"
    for name in ("worker", "projector", "bridge"):
        needs = services()[name]["depends_on"]["setup"]
        assert needs["condition"] == "service_completed_successfully", name


def test_workers_and_bridge_run_the_cli_and_workers_scale() -> None:
    worker, bridge = services()["worker"], services()["bridge"]
    assert worker["command"][0] == "worker"
    assert bridge["command"][0] == "bridge"
    assert "container_name" not in worker and "ports" not in worker  # replicas would clash
    replicas = worker["deploy"]["replicas"]
    assert 1 <= replicas <= int(env(worker)["NOTIFIER_TOPIC_PARTITIONS"])
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"


def test_the_projection_runs_in_the_projector_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, projector = services()["worker"], services()["projector"]
    assert projector["command"][0] == "projector"
    assert env(worker)["NOTIFIER_PROJECTION_ENABLED"] == "false"
    for key, value in env(worker).items():
        monkeypatch.setenv(key, value)
    assert not Settings().projection_enabled  # the value reads as the worker reads it


def test_healthchecks_request_the_endpoints_the_code_serves() -> None:
    all_services = services()
    for name, service in all_services.items():
        if name != "setup":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    worker = all_services["worker"]
    url = probe_url(worker)
    port = env(worker)["NOTIFIER_METRICS_PORT"]
    assert url == f"http://127.0.0.1:{port}/readyz"
    assert "/readyz" in worker_routes()
    assert env(worker)["NOTIFIER_METRICS_HOST"] == "0.0.0.0"  # reachable from outside
    bridge = all_services["bridge"]
    assert probe_url(bridge) == f"http://127.0.0.1:{env(bridge)['NOTIFIER_BRIDGE_PORT']}/readyz"
    assert "/readyz" in bridge_routes()
    projector = all_services["projector"]
    port = env(projector)["NOTIFIER_METRICS_PORT"]
    assert probe_url(projector) == f"http://127.0.0.1:{port}{PROJECTOR_PROBE_PATH}"
    sandbox = all_services["sandbox"]
    port = sandbox["command"][sandbox["command"].index("--port") + 1]
    assert probe_url(sandbox) == f"http://127.0.0.1:{port}/_sandbox/stats"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_notifier_variable_is_a_real_setting(name: str) -> None:
    unknown = [k for k in env(services()[name]) if k.startswith("NOTIFIER_") and not is_setting(k)]
    assert not unknown, f"{name}: not settings of the notifier: {unknown}"


def test_the_notifier_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = env(services()["worker"])
    for key, value in worker.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # validated as the worker validates it at start
    assert settings.kafka_bootstrap == worker["NOTIFIER_KAFKA_BOOTSTRAP"]
    assert settings.metrics_port == int(worker["NOTIFIER_METRICS_PORT"])
    assert settings.database_url is not None


def test_the_dockerfile_installs_the_package_with_everything_it_needs() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"\bpip install -c constraints\.txt \.", text)  # the lock, as make venv
    assert 'ENTRYPOINT ["notifier"]' in text
    copied = set(re.findall(r"^COPY (\S+)", text, re.M))
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    folders = {tool.get("package-dir", {}).get(p, p.replace(".", "/")) for p in tool["packages"]}
    for folder in folders:
        assert any(folder == c or folder.startswith(f"{c}/") for c in copied), folder
    assert "schemas" in copied  # the codec reads the Avro schemas at run time
