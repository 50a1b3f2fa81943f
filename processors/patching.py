"""The guard every faust-streaming workaround in the worker goes through."""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger("notifier.patching")


def patchable(target: Any, applied_flag: str, what: str) -> bool:
    """Whether the `what` workaround should be applied to `target` now: not when it already
    was (the flag is set), and not on a Faust other than the 0.15 it was written against
    (said with a warning: that version's code must be read again first)."""
    if getattr(target, applied_flag, False):
        return False
    if not faust.__version__.startswith("0.15."):
        log.warning("faust %s: %s workaround not applied, check it", faust.__version__, what)
        return False
    return True
