"""What a Faust worker commits, and reading again the messages it skipped."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from processors.patching import patchable

log = logging.getLogger("notifier.offsets")


def never_commit_past_unprocessed() -> None:
    """Make Faust commit a partition only up to its first message not yet processed.

    Faust (faust-streaming 0.15) treats a jump in the offsets it reads as a gap left by
    compaction or transaction markers and counts the skipped range as acknowledged; and
    its check for a hole at the head of the acknowledged offsets is one short (the message
    at the committed offset itself missing passes). Our agents read only plain topics, where
    offsets have no gaps: a jump means Faust dropped fetched messages around a rebalance,
    and committing past them loses them (the chaos drill lost single messages of
    `incidents`, `notify.push` and `notify.email` this way). Here a jump is not counted as
    done, and nothing is committed while the message at the committed offset is not; the
    next rewind to the committed offsets (every rebalance) reads the dropped ones again.
    """
    from faust.transport.consumer import Consumer

    consumer: Any = Consumer
    if not patchable(consumer, "_commits_only_processed", "commit"):
        return
    new_offset = consumer._new_offset

    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        log.warning(
            "%s: offsets %d..%d were not read; not counted as done, to be read again",
            tp,
            offset_from,
            offset_to - 1,
        )
        skipped(self).setdefault(tp, time.monotonic())

    def first_unprocessed_bounds(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            return None  # the message at the committed offset is not processed yet
        result: int | None = new_offset(self, tp)
        return result

    consumer._add_gap = add_gap
    consumer._new_offset = first_unprocessed_bounds
    consumer._commits_only_processed = True


def skipped(consumer: Any) -> dict[Any, float]:
    """Partitions where the consumer saw offsets jump, with when it first saw it."""
    found: dict[Any, float] | None = getattr(consumer, "_notifier_skipped", None)
    if found is None:
        found = {}
        consumer._notifier_skipped = found
    return found


async def read_skipped_again(app: faust.App, after_s: float = 2.0) -> bool:
    """Rewind to the committed offsets when messages were skipped `after_s` ago or more;
    True when it did. Without this the skipped messages would wait for the next rebalance.

    Flow is stopped first and the fetcher let finish, as Faust does before it seeks, so no
    message read from the old position lands after the rewind; then every partition goes
    back to its committed offset (never past a skipped message: see
    `never_commit_past_unprocessed`), and what follows it is read again (at-least-once).
    """
    consumer: Any = app.consumer
    seen = skipped(consumer)
    if not seen or time.monotonic() - min(seen.values()) < after_s or not consumer.flow_active:
        return False
    tps = sorted(str(tp) for tp in seen)
    seen.clear()
    consumer.stop_flow()
    try:
        await asyncio.wait_for(consumer.wait_for_stopped_flow(), 10)
        await consumer.perform_seek()
    finally:
        consumer.resume_flow()
    log.warning("read again from the committed offsets after skipped messages in %s", tps)
    return True
