"""What a Faust worker commits, and reading again the messages it skipped."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

log = logging.getLogger("notifier.offsets")


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
    back to its committed offset (never past a skipped message: see `SafeCommitConsumer` in
    processors/kafka_transport.py), and what follows it is read again (at-least-once).
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
