"""What the deploy files must agree with, read from the code: the settings' environment
names, the HTTP routes of the worker endpoint and the bridge, the metric names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import AliasChoices

from notifier.settings import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"
# environment names that Settings reads beyond NOTIFIER_<FIELD> (see Settings.secret)
SECRET_REF_PREFIX = "NOTIFIER_SECRET_"


def setting_envs() -> dict[str, str]:
    """Every environment name Settings reads, with the field it sets."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        names[f"NOTIFIER_{field_name.upper()}"] = field_name
        if isinstance(field.validation_alias, AliasChoices):
            for choice in field.validation_alias.choices:
                names[str(choice)] = field_name
    return names


def is_setting(env: str) -> bool:
    """Whether the notifier reads `env` (a setting, or a secret a profile refers to)."""
    return env in setting_envs() or (
        env.startswith(SECRET_REF_PREFIX) and len(env) > len(SECRET_REF_PREFIX)
    )


def is_secret(env: str) -> bool:
    """Whether `env` sets a secret (SecretStr) setting or a profile's secret."""
    field = setting_envs().get(env)
    if field is None:
        return env.startswith(SECRET_REF_PREFIX)
    return "SecretStr" in str(Settings.model_fields[field].annotation)


def get_routes(app: web.Application) -> set[str]:
    """The paths an aiohttp application answers GET on."""
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }


def worker_routes() -> set[str]:
    """The GET paths of the worker's metrics endpoint."""
    from processors.endpoint import WorkerEndpoint

    endpoint = WorkerEndpoint(Settings(), app=None, directory=cast(Any, None))
    return get_routes(endpoint.build_app())


def bridge_routes() -> set[str]:
    """The GET paths of the webhook bridge."""
    from adapters.bridge.server import Bridge, build_app

    return get_routes(build_app(Bridge(Settings(), cast(Any, None), cast(Any, None))))


def defined_metrics() -> set[str]:
    """Every sample name the worker and the bridge can expose, from the registry."""
    import adapters.bridge.server
    import processors.metrics  # noqa: F401  (registers the worker's metrics)

    assert adapters.bridge.server.REQUESTS is not None
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def relative(path: Path) -> str:
    """`path` as the repository names it, for messages."""
    return str(path.relative_to(REPO_ROOT))


# `notifier projector` serves its metrics (prometheus_client's server) and nothing else:
# the path its probes request, asked of the running process in
# tests/integration/test_projector_process.py
PROJECTOR_PROBE_PATH = "/metrics"
