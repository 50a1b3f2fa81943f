"""The faust-streaming and aiokafka releases the worker was tested with, and the check that
refuses any other.

The worker's at-least-once delivery rests on how exactly these two fetch, acknowledge and
commit (see docs/ARCHITECTURE.md, "faust-streaming 0.15 fixes"): on another release a fix
may no longer fit and a message could be lost silently, so the worker does not start.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# distribution name -> the exact version pyproject.toml pins and constraints.txt locks
TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UntestedVersionError(RuntimeError):
    """A library the worker's delivery guarantees rest on is not the tested release."""


def installed(distribution: str) -> str | None:
    """The installed version of `distribution`, or None."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def require_tested_versions(found: dict[str, str | None] | None = None) -> None:
    """Raise UntestedVersionError, naming every mismatch, unless the tested releases of
    faust-streaming and aiokafka are installed (`found`: versions to check instead)."""
    found = found if found is not None else {name: installed(name) for name in TESTED}
    wrong = [
        f"{name} {found.get(name) or 'not installed'} (tested: {wanted})"
        for name, wanted in TESTED.items()
        if found.get(name) != wanted
    ]
    if wrong:
        raise UntestedVersionError(
            "the worker refuses to start on untested libraries: "
            + "; ".join(wrong)
            + ". Its delivery guarantees rest on their exact behaviour; install the locked "
            "versions (pip install -c constraints.txt .) or test and pin the new ones first."
        )
