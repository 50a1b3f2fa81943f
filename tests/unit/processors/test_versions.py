"""The worker starts only on the faust-streaming and aiokafka it was tested with."""

from __future__ import annotations

import pytest

from processors.versions import TESTED, UntestedVersionError, require_tested_versions


def test_the_installed_versions_are_the_tested_ones() -> None:
    require_tested_versions()


@pytest.mark.parametrize(
    ("found", "named"),
    [
        ({"faust-streaming": "0.15.4", "aiokafka": "0.14.0"}, ["faust-streaming 0.15.4"]),
        ({"faust-streaming": "0.15.3", "aiokafka": "0.13.0"}, ["aiokafka 0.13.0"]),
        (
            {"faust-streaming": None, "aiokafka": "0.15.0"},
            ["faust-streaming not installed", "aiokafka 0.15.0"],
        ),
    ],
)
def test_any_other_version_is_refused_with_the_versions_named(
    found: dict[str, str | None], named: list[str]
) -> None:
    with pytest.raises(UntestedVersionError) as refused:
        require_tested_versions(found)
    for part in named:
        assert part in str(refused.value)
    assert "constraints.txt" in str(refused.value)


def test_the_worker_refuses_before_it_builds_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifier.settings import Settings
    from processors import app, versions

    monkeypatch.setattr(versions, "installed", lambda name: "0.0.1")
    with pytest.raises(UntestedVersionError):
        app.create_app(Settings(), codec=object())  # type: ignore[arg-type]
    assert set(TESTED) == {"faust-streaming", "aiokafka"}
