"""Where a channel agent starts reading the outcomes recorded before it took a partition."""

from __future__ import annotations

import pytest

from processors.recorded_results import window_start_ms


@pytest.mark.parametrize(
    ("timestamps_s", "margin_ms", "start_ms"),
    [
        ([100.0], 0, 100_000),
        ([100.5, 99.25, 101.0], 0, 99_250),  # the oldest command of the batch
        ([100.0], 30_000, 70_000),
        ([10.0], 30_000, 0),  # never before the epoch
    ],
)
def test_outcomes_are_read_from_before_the_oldest_command(
    timestamps_s: list[float], margin_ms: int, start_ms: int
) -> None:
    assert window_start_ms(timestamps_s, margin_ms) == start_ms
