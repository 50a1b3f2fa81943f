"""The projection's consumer group on the real broker: two workers starting together each
get their partitions (offered with round robin beside range, they re-joined the group for
minutes in about half the tries, and neither projected anything)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer

from notifier.settings import Settings
from notifier.topics import full_name
from projections.notification_log import TOPICS
from projections.runner import projection_consumer

pytestmark = pytest.mark.integration

ROUNDS = 4  # with the old assignors all four went through about one time in sixteen
WITHIN_S = 20.0  # a join takes well under a second here; the session timeout is 8 s


async def both_assigned(consumers: list[AIOKafkaConsumer], partitions: int) -> float:
    """Seconds until every partition is assigned to one of `consumers`, each having some;
    AssertionError after WITHIN_S."""
    started = time.monotonic()
    deadline = started + WITHIN_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # aiokafka joins the group in a task of its own
        held = [c.assignment() for c in consumers]
        if all(held) and sum(len(h) for h in held) == partitions:
            return time.monotonic() - started
    raise AssertionError(
        f"not assigned within {WITHIN_S} s: {[len(c.assignment()) for c in consumers]}"
    )


async def test_two_projections_starting_together_both_get_their_partitions(
    registered: Settings,
) -> None:
    settings = registered.model_copy(update={"session_timeout_s": 8.0})
    topics = [full_name(settings, t) for t in TOPICS]
    partitions = len(topics) * settings.topic_partitions
    for _ in range(ROUNDS):
        consumers = [projection_consumer(settings) for _ in range(2)]
        for consumer in consumers:
            consumer.subscribe(topics)
        await asyncio.gather(*(c.start() for c in consumers))
        try:
            await both_assigned(consumers, partitions)
        finally:
            # a consumer caught re-joining may not leave in time: its session ends anyway
            await asyncio.wait_for(asyncio.gather(*(c.stop() for c in consumers)), 30)
