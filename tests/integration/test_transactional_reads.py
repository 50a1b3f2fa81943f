"""The worker's own Kafka loops on a topic written in transactions (as the dispatcher
writes): they read read_committed, and a topic ending with a marker counts as read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from notifier.settings import Settings
from processors.following import TopicFollower
from tests.integration.transactions import write_transactions


class Collecting(TopicFollower):
    """A follower that keeps every value it applies, in order."""

    def __init__(self, settings: Settings, topic: str, **kwargs: Any) -> None:
        super().__init__(settings, topic, **kwargs)
        self.values: list[bytes | None] = []

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        self.values.append(value)


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    """A fresh one-partition topic."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = f"{settings.topic_prefix}tx-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, 1, 1)])[name].result()
    yield name
    for fut in admin.delete_topics([name], operation_timeout=30).values():
        fut.result()


async def test_a_follower_skips_aborted_records_and_is_ready_at_a_trailing_marker(
    settings: Settings, topic: str
) -> None:
    transactions = [
        (True, [b"c0", b"c1"]),
        (False, [b"a0", b"a1"]),  # a restarted dispatcher's unfinished transaction
        (True, [b"c2"]),  # the topic ends with its commit marker
    ]
    _, end = await asyncio.to_thread(
        write_transactions, settings.kafka_bootstrap, topic, transactions
    )
    follower = Collecting(settings, topic)
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
        assert follower.values == [b"c0", b"c1", b"c2"]
        assert follower._consumer is not None
        tp = next(iter(follower._consumer.assignment()))
        assert await follower._consumer.position(tp) == end
    finally:
        await follower.stop()


async def test_a_follower_of_a_topic_of_markers_and_aborted_records_is_ready(
    settings: Settings, topic: str
) -> None:
    transactions = [(False, [b"a0"]), (True, []), (False, [b"a1", b"a2"])]
    await asyncio.to_thread(write_transactions, settings.kafka_bootstrap, topic, transactions)
    follower = Collecting(settings, topic)
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
        assert follower.values == []
    finally:
        await follower.stop()
