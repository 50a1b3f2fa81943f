"""What a worker commits: never past a message it has not processed, and past what the log
itself skips (the rules alone; the fixes at work on a real broker:
tests/integration/test_faust_fixes.py)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from processors.kafka_transport import (
    BROKER_SCHEME,
    SafeCommitConsumer,
    Transport,
    require_fixed_transport,
    waits_for_committed,
)
from processors.offsets import (
    LogSkips,
    Skip,
    covered,
    log_skips,
    past_skips,
    read_skipped_again,
    skipped,
)

TOPIC = TP("incidents", 3)


@pytest.mark.parametrize(
    ("acked", "committed", "waits"),
    [
        ([5, 6, 7], 5, False),  # the message at the committed offset is done
        ([5, 6, 8], 5, False),  # (Faust then commits up to the first hole: 7)
        ([6, 7], 5, True),  # the message at the committed offset is missing: nothing
        ([9, 10], 5, True),
        ([0, 1, 2], None, False),  # nothing committed yet: the first run of offsets
        ([], 5, False),  # nothing acknowledged: Faust commits nothing anyway
    ],
)
def test_a_commit_waits_for_the_message_at_the_committed_offset(
    acked: list[int], committed: int | None, waits: bool
) -> None:
    assert waits_for_committed(acked, committed) is waits


@pytest.mark.parametrize(
    ("acked", "committed", "skips", "waits"),
    [
        ([6, 7], 5, [(5, 6)], False),  # a marker at the committed offset
        ([8], 5, [(5, 8)], False),  # an aborted transaction and its marker
        ([8], 5, [(5, 7)], True),  # 7 was handed to Faust: not the log's
        ([8], 5, [(6, 8)], True),  # the message at the committed offset itself
        ([8], 5, [(5, 6), (6, 8)], False),  # skips met in two fetches
    ],
)
def test_a_commit_does_not_wait_for_offsets_the_log_skipped(
    acked: list[int], committed: int, skips: list[Skip], waits: bool
) -> None:
    assert waits_for_committed(acked, committed, skips) is waits


@pytest.mark.parametrize(
    ("before", "after", "handed", "skips"),
    [
        (0, 10, list(range(10)), []),  # plain records: nothing skipped
        (0, 4, [0, 1, 2], [(3, 4)]),  # a commit marker after the last record
        (10, 12, [], [(10, 12)]),  # only markers (or aborted records) this fetch
        (0, 9, [0, 1, 5, 6, 7], [(2, 5), (8, 9)]),  # aborted 2..3, markers 4 and 8
        (5, 9, [2, 3, 6], [(5, 6), (7, 9)]),  # sought back while waiting: 2, 3 read again
        (None, 9, [7, 8], []),  # no position before: nothing is known
        (5, None, [5], []),
        (9, 9, [], []),  # nothing read
        (9, 5, [5], []),  # sought back, after < before
    ],
)
def test_what_a_fetch_passed_over_is_what_the_log_skipped(
    before: int | None, after: int | None, handed: list[int], skips: list[Skip]
) -> None:
    assert log_skips(before, after, handed) == skips


@pytest.mark.parametrize(
    ("first", "end", "skips", "within"),
    [
        (4, 6, [(3, 7)], True),
        (4, 6, [(4, 5)], False),  # 5 was not skipped by the log
        (4, 6, [(5, 6), (4, 5)], True),  # in any order
        (4, 6, [], False),
        (4, 4, [], True),  # nothing to cover
        (0, 3, [(0, 1), (2, 3)], False),  # 1 was handed
    ],
)
def test_a_range_is_covered_by_log_skips(
    first: int, end: int, skips: list[Skip], within: bool
) -> None:
    assert covered(first, end, skips) is within


@pytest.mark.parametrize(
    ("offset", "skips", "moved"),
    [(10, [(10, 11)], 11), (10, [(10, 11), (11, 14)], 14), (10, [(11, 12)], 10), (10, [], 10)],
)
def test_an_offset_moves_past_what_the_log_skipped(
    offset: int, skips: list[Skip], moved: int
) -> None:
    assert past_skips(offset, skips) == moved


def test_log_skips_are_kept_once_and_bounded() -> None:
    known = LogSkips(keep=3)
    known.add(TOPIC, [(3, 4), (8, 10)])
    known.add(TOPIC, [(8, 9)])  # met again after a seek back: already known
    assert known.of(TOPIC) == [(3, 4), (8, 10)]
    known.add(TOPIC, [(12, 13), (15, 16)])
    assert known.of(TOPIC) == [(8, 10), (12, 13), (15, 16)]
    assert known.of(TP("other", 0)) == []


def faust_consumer(skips: list[Skip], committed: int | None = None) -> Any:
    """A SafeCommitConsumer with only the bookkeeping the commit rules read."""
    consumer: Any = object.__new__(SafeCommitConsumer)
    known = LogSkips()
    known.add(TOPIC, skips)
    consumer._thread = SimpleNamespace(log_skips=known)
    consumer._gap = defaultdict(IntervalTree)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._committed_offset[TOPIC] = committed
    return consumer


async def test_a_jump_over_handed_records_is_marked_to_be_read_again() -> None:
    consumer = faust_consumer([(6, 7)])  # 7 and 8 were handed to Faust and dropped
    await SafeCommitConsumer._add_gap(consumer, TOPIC, 6, 9)
    assert TOPIC in skipped(consumer)
    assert not consumer._gap[TOPIC]  # nothing counted as done


async def test_a_jump_the_log_has_is_counted_as_done() -> None:
    consumer = faust_consumer([(6, 9)], committed=5)  # an aborted transaction, its marker
    await SafeCommitConsumer._add_gap(consumer, TOPIC, 6, 9)
    assert TOPIC not in skipped(consumer)
    consumer._acked[TOPIC] = [5, 9]
    assert consumer._new_offset(TOPIC) == 10


def test_a_trailing_marker_is_committed_past() -> None:
    consumer = faust_consumer([(3, 4)], committed=3)  # 0..2 handled and committed
    assert consumer._new_offset(TOPIC) == 4
    handled = faust_consumer([(3, 4)], committed=None)
    handled._acked[TOPIC] = [0, 1, 2]
    assert handled._new_offset(TOPIC) == 4
    plain = faust_consumer([], committed=3)
    assert plain._new_offset(TOPIC) is None  # nothing new


def test_faust_finds_the_transport_by_its_scheme() -> None:
    from faust.transport import by_url

    assert by_url(f"{BROKER_SCHEME}://127.0.0.1:9092") is Transport
    assert Transport.Consumer is SafeCommitConsumer
    require_fixed_transport()


def test_log_skips_chain_from_a_handed_record_and_go_once_committed_past() -> None:
    known = LogSkips()
    known.add(TOPIC, [(5, 6), (6, 9), (12, 13)])
    assert known.covers(TOPIC, 5, 9)  # met in two fetches
    assert known.covers(TOPIC, 7, 9)  # inside one
    assert not known.covers(TOPIC, 5, 10)  # 9 was handed
    known.prune(TOPIC, 9)
    assert known.of(TOPIC) == [(12, 13)]


def test_thousands_of_markers_met_ahead_of_the_agents_are_all_kept() -> None:
    known = LogSkips()
    known.add(TOPIC, [(n, n + 1) for n in range(0, 20_000, 2)])
    assert known.covers(TOPIC, 0, 1) and known.covers(TOPIC, 19_998, 19_999)


async def test_a_failed_rewind_keeps_the_partitions_to_read_again() -> None:
    """A rewind that fails (a broker away) leaves flow on and the marks kept: the next tick
    tries again, and the worker does not stop."""
    calls: list[str] = []

    class Consumer:
        flow_active = True

        def stop_flow(self) -> None:
            calls.append("stop")

        def resume_flow(self) -> None:
            calls.append("resume")

        async def wait_for_stopped_flow(self) -> None:
            return None

        async def perform_seek(self) -> None:
            raise OSError("broker away")

    consumer = Consumer()
    skipped(consumer)[TOPIC] = 0.0
    app: Any = SimpleNamespace(consumer=consumer)
    assert await read_skipped_again(app) is False
    assert calls == ["stop", "resume"]
    assert TOPIC in skipped(consumer)


async def test_one_commit_passes_every_transaction_handled() -> None:
    # the dispatcher writes commands in transactions: three commands, then a marker
    markers = [(4 * t + 3, 4 * t + 4) for t in range(10)]
    commands = [o for t in range(10) for o in range(4 * t, 4 * t + 3)]
    consumer = faust_consumer(markers)
    read = None
    for offset in commands:  # as the drain loop reads them
        if read is not None and offset - read > 1:
            await SafeCommitConsumer._add_gap(consumer, TOPIC, read + 1, offset)
        read = offset
    for offset in commands:  # each handled and acknowledged
        consumer._acked[TOPIC].append(offset)
        consumer._acked_index[TOPIC].add(offset)
    assert consumer._new_offset(TOPIC) == 40  # past the last command and its marker


async def test_a_jump_the_commit_already_passed_is_not_read_again() -> None:
    # the commit moved past the markers 8..10 (and forgot them) before the drain loop
    # met the jump from 7 to 11
    consumer = faust_consumer([], committed=11)
    await SafeCommitConsumer._add_gap(consumer, TOPIC, 8, 11)
    assert TOPIC not in skipped(consumer)
    partly = faust_consumer([], committed=9)  # 9 and 10 not known as skipped: read again
    await SafeCommitConsumer._add_gap(partly, TOPIC, 8, 11)
    assert TOPIC in skipped(partly)


@pytest.mark.parametrize(
    ("committed", "ranges"),
    [
        (None, [(3, 3), (7, 7), (11, 11)]),  # a marker per transaction: never overlapping
        (None, [(3, 4), (5, 6), (9, 9)]),  # touching ranges stay apart, as Faust keeps them
        (None, [(3, 3), (7, 7), (2, 8), (7, 7)]),  # read again after a seek back: overlaps
        (5, [(3, 4), (4, 8), (12, 12)]),  # before the committed offset: clipped or dropped
    ],
)
async def test_skipped_offsets_make_the_tree_faust_would_make(
    committed: int | None, ranges: list[tuple[int, int]]
) -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    ours, faust = faust_consumer([], committed), faust_consumer([], committed)
    for first, last in ranges:
        ours._add_skipped(TOPIC, first, last, committed)
        await FaustConsumer._add_gap(faust, TOPIC, first, last)
    assert sorted(ours._gap[TOPIC]) == sorted(faust._gap[TOPIC])
