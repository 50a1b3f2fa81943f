"""Every schema must read data written with its previous committed version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from notifier.contracts.compatibility import backward_problems, changed_schemas
from notifier.contracts.schemas import SCHEMAS_DIR, load_schemas, parse_schema_text

REPO = SCHEMAS_DIR.parent


def _variant(name: str, change: str) -> tuple[str, str]:
    base = json.loads(load_schemas()[name].text)
    new = json.loads(json.dumps(base))
    if change == "add-optional":
        new["fields"].append(
            {"name": "extra", "type": ["null", "string"], "default": None, "doc": "added"}
        )
    elif change == "add-required":
        new["fields"].append({"name": "extra", "type": "string", "doc": "added"})
    elif change == "remove-enum-symbol":
        for f in new["fields"]:
            if f["name"] == "priority":
                f["type"]["symbols"] = ["LOW", "MEDIUM", "HIGH"]
    elif change == "change-type":
        for f in new["fields"]:
            if f["name"] == "escalation_level":
                f["type"] = "string"
    return json.dumps(base), json.dumps(new)


@pytest.mark.parametrize(
    ("change", "compatible"),
    [
        ("add-optional", True),
        ("add-required", False),
        ("remove-enum-symbol", False),
        ("change-type", False),
    ],
)
def test_backward_check_table(change: str, compatible: bool) -> None:
    old, new = _variant("notifier.IncidentOpened", change)
    problems = backward_problems(parse_schema_text(new), parse_schema_text(old), samples=200)
    assert (problems == []) is compatible, problems


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(),
    reason="needs the git history of a checkout",
)
def test_every_schema_reads_its_previous_committed_version() -> None:
    failures = {
        change.path.name: (change.previous_commit[:10], problems)
        for change in changed_schemas(REPO, SCHEMAS_DIR)
        if (problems := backward_problems(change.current, change.previous))
    }
    assert failures == {}, (
        "schema changes that break readers of existing data (add a default, or a new "
        f"record type, instead): {failures}"
    )


def test_history_walk_finds_a_breaking_change(tmp_path: Path) -> None:
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("no git")
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    old, new = _variant("notifier.IncidentResolved", "add-required")
    (schemas / "incident_resolved.avsc").write_text(old)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "v1")
    (schemas / "incident_resolved.avsc").write_text(new)
    changes = changed_schemas(tmp_path, schemas)
    assert len(changes) == 1
    assert backward_problems(changes[0].current, changes[0].previous) != []
