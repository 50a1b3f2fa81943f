"""A consumer outside any group that reads only committed records, for the parts of the
worker that read partitions by hand (followers, incident memories, recorded outcomes)."""

from __future__ import annotations

from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from notifier.settings import Settings


async def start_reader(settings: Settings) -> AIOKafkaConsumer:
    """A started consumer with no group, reading read_committed from the earliest offset
    when told nothing else (an aborted transaction's records are never seen)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    return consumer


async def short_of(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer's position is short of `ends` in any partition (positions, not
    offsets seen: a partition ending in a transaction marker has no record at its end)."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


class LazyReader:
    """One reader, started when first needed and stopped with its owner."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def get(self) -> AIOKafkaConsumer:
        """The reader, started."""
        if self._consumer is None:
            self._consumer = await start_reader(self.settings)
        return self._consumer

    async def stop(self) -> None:
        """Stop the reader if it was started."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
