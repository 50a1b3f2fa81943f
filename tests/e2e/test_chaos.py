"""The short failure drill, as CI runs it: `notifier chaos --short` on a three-broker stack of
its own (`chaos`, brokers on 29092-29094), started here and always stopped at the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devstack import stack as devstack
from devstack.config import StackConfig

CHAOS_PORT = 29092


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[dict[str, str]]:
    """The `chaos` stack with three brokers; stopped at the end whatever happened."""
    # its own PostgreSQL and registry, whatever DATABASE_URL or SCHEMA_REGISTRY_URL say here
    config = replace(
        StackConfig.from_env("chaos", 3, CHAOS_PORT), database_url=None, schema_registry_url=None
    )
    try:
        yield devstack.up(config)
    finally:
        devstack.down(config)


@pytest.mark.integration
@pytest.mark.e2e
def test_the_short_drill_loses_nothing(chaos_stack: dict[str, str], notifier_bin: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= chaos_stack
    started = time.monotonic()
    done = subprocess.run(
        [str(notifier_bin), "chaos", "--short"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    print(f"\n{done.stdout}\nshort drill: {took:.0f} s")
    found = re.search(r"summary: (\S+\.json)", done.stdout)
    assert found, f"no summary written (exit {done.returncode}):\n{output[-4000:]}"
    summary: dict[str, Any] = json.loads(Path(found.group(1)).read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    failed = [f"{c['name']}: {c['value']} {c['note']}" for c in checks.values() if not c["ok"]]
    assert done.returncode == 0 and not failed, (
        f"exit {done.returncode}; failed checks: {failed}\nsamples: {summary['samples']}"
    )
    # the drill did what it says: kills, one broker and PostgreSQL down, garbage injected
    kinds = summary["disruptions_by_kind"]
    assert kinds["kills"] >= 1 and kinds["broker_stops"] == 1 and kinds["postgres_stops"] == 1
    assert checks["lost: no row"]["value"] == "0"
    assert checks["lost: not in a terminal status"]["value"] == "0"
    assert checks["other dead letters"]["value"] == "0"
    garbage = summary["options"]["garbage"]
    assert checks["injected garbage dead-lettered"]["value"] == f"{garbage} of {garbage}"
    # every disruption has its line of extra requests, kept for comparing runs
    per_disruption = summary["figures"]["extra_requests_per_disruption"]
    assert len(per_disruption) == summary["disruptions"]
    assert summary["figures"]["extra_requests_unexplained"] == 0
    statuses = summary["figures"]["statuses"]
    assert sum(statuses.values()) == int(checks["expected notifications"]["value"])
