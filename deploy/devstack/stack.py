"""Bring the whole local stack up, down, or report on it."""

from __future__ import annotations

from devstack import kafka, postgres, registry
from devstack.config import StackConfig
from devstack.processes import read_pid


def up(config: StackConfig) -> dict[str, str]:
    """Start what is not running and wait for it; returns the addresses to use."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    kafka.start(config)
    # the registry takes seconds to boot: PostgreSQL starts meanwhile
    registry_url = config.schema_registry_url or registry.start(config, wait=False)
    database_url = postgres.start(config)
    if not config.schema_registry_url:
        registry.wait_ready(config)
    env = {
        "NOTIFIER_STACK": config.name,
        "NOTIFIER_KAFKA_BOOTSTRAP": config.bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "DATABASE_URL": database_url,
    }
    (config.state_dir / "stack.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env


def down(config: StackConfig) -> list[str]:
    """Stop everything the stack started; returns what was stopped."""
    # the registry first: stopped after Kafka, it hangs retrying its journal topic
    stopped = ["schema registry"] if registry.stop(config) else []
    stopped += [f"kafka node {n}" for n in kafka.stop_all(config)]
    if postgres.stop(config):
        stopped.append("postgres")
    (config.state_dir / "stack.env").unlink(missing_ok=True)
    return stopped


def status(config: StackConfig) -> list[tuple[str, str, str, str]]:
    """(component, state, pid, address) of every part of the stack."""
    rows: list[tuple[str, str, str, str]] = []
    alive = set(kafka.running_nodes(config))
    brokers = kafka.recorded_brokers(config) or config.brokers
    for node in range(1, brokers + 1):
        pid = read_pid(kafka.node_dir(config, node) / "pid")
        rows.append(
            (
                f"kafka node {node}",
                "running" if node in alive else "stopped",
                str(pid) if node in alive else "-",
                f"127.0.0.1:{config.broker_port(node)}",
            )
        )
    if config.schema_registry_url:
        rows.append(("schema registry", "external", "-", "SCHEMA_REGISTRY_URL"))
    else:
        reg_pid = registry.pid(config)
        rows.append(
            (
                "schema registry",
                "running" if reg_pid else "stopped",
                str(reg_pid or "-"),
                registry.url(config),
            )
        )
    if config.database_url:
        rows.append(("postgres", "external", "-", "DATABASE_URL"))
    else:
        pid = postgres.postmaster_pid(config)
        url_path = postgres.url_file(config)
        url = url_path.read_text() if url_path.exists() else "-"
        rows.append(("postgres", "running" if pid else "stopped", str(pid or "-"), url))
    return rows
