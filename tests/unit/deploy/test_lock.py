"""constraints.txt locks every dependency, and every install goes through it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def _name(requirement: str) -> str:
    bare = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return bare.lower().replace("_", "-")


def locked() -> dict[str, str]:
    pins = re.findall(
        r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO_ROOT / "constraints.txt").read_text(), re.M
    )
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_every_dependency_and_dev_tool_is_locked() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = locked()
    missing = sorted(_name(r) for r in wanted if _name(r) not in pins)
    assert missing == [], f"not in constraints.txt (run make lock): {missing}"


def test_faust_and_aiokafka_are_pinned_where_the_worker_checks_them() -> None:
    from processors.versions import TESTED

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    exact = {_name(r): r.split("==")[1] for r in project["dependencies"] if "==" in r}
    pins = locked()
    for name, version in TESTED.items():
        assert exact[name] == version == pins[name]


def test_make_and_the_image_install_through_the_lock() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt -e '\.\[dev\]'", makefile)
    assert "constraints.txt" in (REPO_ROOT / "deploy" / "Dockerfile").read_text()
