"""The guard every faust-streaming workaround in the worker goes through."""

from __future__ import annotations

import logging
from typing import Any

import faust

from processors.versions import require_tested_versions

log = logging.getLogger("notifier.patching")


def patchable(target: Any, applied_flag: str, what: str) -> bool:
    """Whether the `what` workaround should be applied to `target` now: not when it already
    was (the flag is set). Never on another Faust than the one it was written against:
    the worker refuses to start on one (processors/versions.py), and this says so again."""
    if getattr(target, applied_flag, False):
        return False
    require_tested_versions()
    log.debug("faust %s: applying the %s workaround", faust.__version__, what)
    return True
