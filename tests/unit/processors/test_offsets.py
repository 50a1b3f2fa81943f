"""What a worker commits: never past a message it has not processed."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from processors.offsets import never_commit_past_unprocessed, skipped

TOPIC = TP("incidents", 3)


def consumer(acked: list[int], committed: int | None) -> Any:
    return SimpleNamespace(
        _acked=defaultdict(list, {TOPIC: list(acked)}),
        _acked_index=defaultdict(set, {TOPIC: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TOPIC: committed}),
        _gap=defaultdict(IntervalTree),
    )


@pytest.mark.parametrize(
    ("acked", "committed", "commit"),
    [
        ([5, 6, 7], 5, 8),  # everything from the committed offset on: all of it
        ([5, 6, 8], 5, 7),  # up to the first message not processed
        ([6, 7], 5, None),  # the message at the committed offset is missing: nothing
        ([9, 10], 5, None),
        ([0, 1, 2], None, 3),  # nothing committed yet: the first run of offsets
        ([], 5, None),
    ],
)
def test_commits_stop_at_the_first_unprocessed_message(
    acked: list[int], committed: int | None, commit: int | None
) -> None:
    never_commit_past_unprocessed()
    assert Consumer._new_offset(consumer(acked, committed), TOPIC) == commit


async def test_a_jump_in_offsets_is_not_counted_as_done() -> None:
    never_commit_past_unprocessed()
    seen = consumer([5], 5)
    await Consumer._add_gap(seen, TOPIC, 6, 9)  # Faust read 5, then 9
    seen._acked[TOPIC].append(9)
    assert Consumer._new_offset(seen, TOPIC) == 6  # 6..8 still to do: 5 is all that is done
    assert TOPIC in skipped(seen)  # and the partition is marked to be read again
