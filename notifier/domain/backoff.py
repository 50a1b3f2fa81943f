"""Backoff schedule: when a transiently failed send is tried again, and how often at most."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from notifier.contracts.records import SendCommand
from notifier.domain import ids

JITTER = 0.2  # +-20%: retries of one outage do not all land in the same second


def max_attempts(delays: tuple[int, ...]) -> int:
    """Attempts in all: the first, then one per delay (30,60,120,240 s: 5 in ~7.5 min)."""
    return len(delays) + 1


def retry_step(attempt: int, delays: tuple[int, ...]) -> int | None:
    """The delay topic (seconds) a command that failed on `attempt` waits in, or None when no
    attempt is left."""
    return delays[attempt - 1] if attempt <= len(delays) else None


def next_attempt(
    command: SendCommand,
    delays: tuple[int, ...],
    now: datetime,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> tuple[int, SendCommand] | None:
    """(delay topic, the command of the next attempt) after a transient failure, or None.

    The wait is the step's delay with +-20% jitter, and never shorter than the provider's
    Retry-After.
    """
    step = retry_step(command.attempt, delays)
    if step is None:
        return None
    wait = step * (1 + rng.uniform(-JITTER, JITTER))
    if retry_after_s is not None:
        wait = max(wait, retry_after_s)
    attempt = command.attempt + 1
    return step, replace(
        command,
        attempt=attempt,
        command_id=ids.command_id(command.notification_id, attempt),
        not_before=now + timedelta(seconds=wait),
    )
