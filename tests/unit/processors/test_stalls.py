"""Which partitions count as stalled (the rule alone; at work on a real broker:
tests/integration/test_faust_fixes.py, a hole at the end of a partition)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import pytest
from faust.types import TP

from processors.offsets import skipped
from processors.stalls import PartitionProgress, StallWatch, faust_progress, read_stalled_again

TP0 = TP("notify.slack", 5)
AFTER = 30.0


@pytest.mark.parametrize(
    ("samples", "stalled_at_last"),
    [
        # behind its end, nothing in flight, unmoved for 30 s: stalled
        ([(0, PartitionProgress(8, 39, 0)), (30, PartitionProgress(8, 39, 0))], True),
        # not yet 30 s
        ([(0, PartitionProgress(8, 39, 0)), (29.9, PartitionProgress(8, 39, 0))], False),
        # messages in flight: slow, not stalled
        ([(0, PartitionProgress(8, 39, 3)), (60, PartitionProgress(8, 39, 3))], False),
        # the committed offset moved: counting starts again
        (
            [
                (0, PartitionProgress(8, 39, 0)),
                (20, PartitionProgress(9, 39, 0)),
                (40, PartitionProgress(9, 39, 0)),
            ],
            False,
        ),
        # at its end: nothing to read
        ([(0, PartitionProgress(39, 39, 0)), (60, PartitionProgress(39, 39, 0))], False),
        # end or committed offset unknown: no judgement
        ([(0, PartitionProgress(8, None, 0)), (60, PartitionProgress(8, None, 0))], False),
        ([(0, PartitionProgress(None, 39, 0)), (60, PartitionProgress(None, 39, 0))], False),
        # in flight for a while, then nothing in flight: counted from when it emptied
        ([(0, PartitionProgress(8, 39, 1)), (40, PartitionProgress(8, 39, 0))], False),
        (
            [
                (0, PartitionProgress(8, 39, 1)),
                (40, PartitionProgress(8, 39, 0)),
                (70, PartitionProgress(8, 39, 0)),
            ],
            True,
        ),
    ],
)
def test_a_partition_is_stalled_when_behind_idle_and_unmoved(
    samples: list[tuple[float, PartitionProgress]], stalled_at_last: bool
) -> None:
    watch = StallWatch(AFTER)
    found: list[Any] = []
    for now, progress in samples:
        found = watch.stalled({TP0: progress}, now)
    assert (found == [TP0]) is stalled_at_last


def test_a_stalled_partition_is_reported_again_only_after_another_wait() -> None:
    watch = StallWatch(AFTER)
    stuck = {TP0: PartitionProgress(8, 39, 0)}
    assert watch.stalled(stuck, 0) == []
    assert watch.stalled(stuck, 30) == [TP0]
    assert watch.stalled(stuck, 40) == []  # being read again
    assert watch.stalled(stuck, 60) == [TP0]  # that did not help: again


def test_a_revoked_partition_is_forgotten() -> None:
    watch = StallWatch(AFTER)
    watch.stalled({TP0: PartitionProgress(8, 39, 0)}, 0)
    watch.stalled({}, 10)
    assert watch.stalled({TP0: PartitionProgress(8, 39, 0)}, 30) == []  # counted from 30


class Message:
    def __init__(self, tp: TP) -> None:
        self.tp = tp


def faust_consumer(held: list[Message]) -> Any:
    """The parts of Faust's consumer the check reads."""
    changelog = SimpleNamespace(get_topic_name=lambda: "notifier-tier-state-changelog")
    unacked: WeakSet[Message] = WeakSet(held)
    other = TP("notify.email", 1)
    return SimpleNamespace(
        _committed_offset={TP0: 8},
        _read_offset={TP0: 38, other: 38},
        _unacked_messages=unacked,
        app=SimpleNamespace(tables={"tier-state": SimpleNamespace(changelog_topic=changelog)}),
        assignment=lambda: {TP0, other, TP("notifier-tier-state-changelog", 5)},
        highwater=lambda tp: 39,
    )


def test_the_consumer_is_read_for_committed_offsets_ends_and_messages_in_flight() -> None:
    held = [Message(TP0), Message(TP0)]
    progress = faust_progress(faust_consumer(held))
    assert progress == {
        TP0: PartitionProgress(8, 39, 2),
        # nothing committed since it was assigned: the offset after the last read
        TP("notify.email", 1): PartitionProgress(39, 39, 0),
    }  # and the table's changelog is left to recovery


def test_a_stalled_partition_is_marked_to_be_read_again_at_once() -> None:
    consumer = faust_consumer([])
    watch = StallWatch(AFTER)
    assert read_stalled_again(consumer, watch, now=100.0) == []
    assert read_stalled_again(consumer, watch, now=130.0) == [TP0]
    marks = skipped(consumer)
    assert TP0 in marks
    assert 130.0 - marks[TP0] >= 2.0  # old enough for read_skipped_again's next tick


def test_an_unknown_end_is_no_judgement_and_a_failing_read_is_no_crash() -> None:
    consumer = faust_consumer([])

    def not_fetched_yet(tp: Any) -> int:
        raise TypeError("int() argument must be ... not 'NoneType'")  # Faust's, then

    consumer.highwater = not_fetched_yet
    watch = StallWatch(AFTER)
    assert faust_progress(consumer)[TP0].end is None
    assert read_stalled_again(consumer, watch, now=100.0) == []
    consumer.assignment = lambda: 1 / 0  # not started: raises
    assert read_stalled_again(consumer, watch, now=200.0) == []
