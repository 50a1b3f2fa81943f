"""The long-running commands refuse to start, with a clear error, when the stack they need
is not set up (no schema registry here): exit 1, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTIFIER = Path(sys.executable).parent / "notifier"


@pytest.mark.parametrize("command", ["projector", "worker", "bridge"])
def test_a_process_without_its_stack_exits_with_the_reason(command: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "NOTIFIER_STACK": "nosuch"}
    done = subprocess.run(
        [str(NOTIFIER), command], env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    said = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, said
    assert "no SCHEMA_REGISTRY_URL" in said
    assert "Traceback" not in said
