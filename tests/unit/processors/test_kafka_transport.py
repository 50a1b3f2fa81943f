"""What a worker commits: never past a message it has not processed (the rules alone; the
fixes at work on a real broker: tests/integration/pipeline/test_faust_fixes.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP

from processors.kafka_transport import (
    BROKER_SCHEME,
    SafeCommitConsumer,
    Transport,
    require_fixed_transport,
    waits_for_committed,
)
from processors.offsets import skipped

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


async def test_a_jump_in_offsets_is_marked_to_be_read_again() -> None:
    consumer = SimpleNamespace()
    await SafeCommitConsumer._add_gap(consumer, TOPIC, 6, 9)  # type: ignore[arg-type]
    assert TOPIC in skipped(consumer)
    assert not hasattr(consumer, "_gap")  # nothing counted as done


def test_faust_finds_the_transport_by_its_scheme() -> None:
    from faust.transport import by_url

    assert by_url(f"{BROKER_SCHEME}://127.0.0.1:9092") is Transport
    assert Transport.Consumer is SafeCommitConsumer
    require_fixed_transport()
