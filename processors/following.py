"""Reading a whole topic in every worker: from its beginning, then following it (no group).

What every worker must know whatever partitions it owns (users, closed incidents) is kept in
compacted topics and read whole by each worker; `ready` is set once it has caught up with
what the topic held at start.

Read read_committed: the incident-memory changelog is written in the dispatcher's
transactions, and an aborted one's records never happened. Caught up is judged by the
consumer's position, not by the offset of the last record applied: a topic may end with a
transaction's marker (or an aborted transaction), which takes offsets no record is handed at.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from notifier.settings import Settings
from processors.reader import short_of, start_reader

log = logging.getLogger("notifier.following")


class TopicFollower(Service):
    """Applies every record of `topic` (all partitions) with `apply`, in order per partition."""

    def __init__(self, settings: Settings, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.topic = topic
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._end: dict[TopicPartition, int] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Take one record in (a None value is a tombstone)."""
        raise NotImplementedError

    def on_caught_up(self) -> None:
        """Called once, when what the topic held at start has been applied."""

    async def on_start(self) -> None:
        partitions = await asyncio.to_thread(self._partitions)
        consumer = await start_reader(self.settings)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        # read_committed: the last stable offsets, the ends of what can be read now
        self._end = await consumer.end_offsets(assigned)
        self._consumer = consumer
        await self._maybe_ready()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def _partitions(self) -> list[int]:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        found = admin.list_topics(timeout=30).topics.get(self.topic)
        if found is None or found.error is not None:
            raise RuntimeError(f"topic {self.topic} does not exist: run `notifier topics create`")
        return list(found.partitions)

    async def _maybe_ready(self) -> None:
        if self.ready.is_set() or self._consumer is None:
            return
        if await short_of(self._consumer, self._end):
            return
        self.on_caught_up()
        self.ready.set()

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            if self._consumer is None:
                await asyncio.sleep(0.05)
                continue
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for msg in messages:
                    try:
                        self.apply(msg.key, msg.value)
                    except Exception:
                        # one record this worker cannot take must not stop it following
                        # the rest (it would never get past it: the topic is read whole)
                        log.exception("%s: record at offset %d skipped", tp, msg.offset)
            await self._maybe_ready()
