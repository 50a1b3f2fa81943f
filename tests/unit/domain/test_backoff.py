"""The backoff schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from notifier.contracts.records import SendCommand
from notifier.domain.backoff import max_attempts, next_attempt, retry_step
from tests.samples import sample

DELAYS = (30, 60, 120, 240)
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(("attempt", "step"), [(1, 30), (2, 60), (3, 120), (4, 240), (5, None)])
def test_steps(attempt: int, step: int | None) -> None:
    assert retry_step(attempt, DELAYS) == step


def test_five_attempts_in_about_seven_and_a_half_minutes() -> None:
    assert max_attempts(DELAYS) == 5
    assert sum(DELAYS) == 450  # 7.5 minutes, not the seeds' "~10 minutes"


@pytest.mark.parametrize("seed", range(20))
def test_jitter_stays_within_twenty_percent(seed: int) -> None:
    command = sample(SendCommand, attempt=2, not_before=None)
    step, retried = next_attempt(command, DELAYS, NOW, random.Random(seed))  # type: ignore[misc]
    assert step == 60 and retried.attempt == 3
    assert retried.command_id != command.command_id
    assert retried.notification_id == command.notification_id
    assert retried.not_before is not None
    assert timedelta(seconds=48) <= retried.not_before - NOW <= timedelta(seconds=72)


def test_retry_after_is_honoured_and_the_last_attempt_is_final() -> None:
    command = sample(SendCommand, attempt=1)
    result = next_attempt(command, DELAYS, NOW, random.Random(1), retry_after_s=100)
    assert result is not None and result[1].not_before == NOW + timedelta(seconds=100)
    assert next_attempt(sample(SendCommand, attempt=5), DELAYS, NOW, random.Random(1)) is None
