"""`make up` / `make down` semantics on a separate stack: idempotent up, nothing left after down,
and a clear error when a port is taken."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

PORT = 29092


def _devstack(state: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["NOTIFIER_STATE_DIR"] = str(state)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args, "--stack", "drill", "--kafka-port", str(PORT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _processes_under(state: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(state) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


def test_up_twice_is_a_no_op_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    try:
        first = _devstack(state, "up")
        assert first.returncode == 0, first.stderr
        pids = sorted(p for p in _processes_under(state))
        for part in ("kafka.Kafka", "apicurio-registry", "postgres"):
            assert any(part in p for p in pids), part

        second = _devstack(state, "up")
        assert second.returncode == 0, second.stderr
        assert "starting" not in second.stderr  # nothing new was started
        assert sorted(_processes_under(state)) == pids

        status = _devstack(state, "status")
        assert re.search(r"kafka node 1 +running", status.stdout), status.stdout
        assert re.search(r"schema registry +running", status.stdout), status.stdout
    finally:
        down = _devstack(state, "down")
    assert down.returncode == 0, down.stderr
    for part in ("schema registry", "kafka node 1", "postgres"):
        assert part in down.stdout
    assert _processes_under(state) == []
    status = _devstack(state, "status")
    assert status.stdout.count("stopped") == 3


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", PORT))
        squatter.listen()
        result = _devstack(tmp_path / "stack", "up")
    assert result.returncode == 1
    assert f"port {PORT}" in result.stderr and "in use by pid" in result.stderr
    assert _processes_under(tmp_path / "stack") == []


@pytest.mark.parametrize(
    ("tool", "message"),
    [("java", "no java on PATH"), ("mvn", "no mvn on PATH")],
)
def test_a_missing_tool_is_named(tmp_path: Path, tool: str, message: str) -> None:
    """Only `tool` is hidden; an empty jar cache makes `mvn` needed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for other in {"java", "mvn"} - {tool}:
        found = shutil.which(other)
        assert found is not None, f"{other} is needed on this machine"
        (bin_dir / other).symlink_to(found)
    result = _devstack(
        tmp_path / "stack", "up", PATH=str(bin_dir), NOTIFIER_CACHE_DIR=str(tmp_path / "cache")
    )
    assert result.returncode == 1
    assert message in result.stderr
