"""The projection's consumer group on the real broker: two workers starting together each
get their partitions (offered with round robin beside range, they re-joined the group for
minutes in about half the tries, and neither projected anything)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from notifier.settings import Settings
from notifier.topics import full_name
from projections.notification_log import TOPICS
from projections.runner import projection_consumer

pytestmark = pytest.mark.integration

ROUNDS = 4  # with the old assignors all four went through about one time in sixteen
PARTITIONS = 6
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


@pytest.fixture
def scratch(settings: Settings) -> Iterator[Settings]:
    """Settings with the projection's topics, and so its group, under a prefix of this test
    only: the session's group has the pipeline tests' workers in it."""
    prefix = f"{settings.topic_prefix}pg{uuid.uuid4().hex[:6]}."
    scratch = settings.model_copy(update={"topic_prefix": prefix, "session_timeout_s": 8.0})
    names = [full_name(scratch, t) for t in TOPICS]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        fut.result()
    yield scratch
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        fut.result()


async def test_two_projections_starting_together_both_get_their_partitions(
    scratch: Settings,
) -> None:
    settings = scratch
    topics = [full_name(settings, t) for t in TOPICS]
    partitions = len(topics) * PARTITIONS
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
