"""Outcomes already recorded for the commands a channel agent is about to take again.

After an assignment a channel agent reads its partition from the committed offset: commands
its previous owner may have sent, and whose outcome it may have recorded on
`delivery.events`, before it died without committing them. Commands and delivery events are
both keyed by incident and have as many partitions, so the outcomes of a command-topic
partition's commands are in the same partition of `delivery.events`, written after the
command was. Before the first batch of a partition after an assignment, that partition of
`delivery.events` is read from shortly before the batch's oldest command to its end (10 s
before: clocks of two hosts), and the (notification, attempt) of every outcome of this
channel marked finished: such a command is not sent again. A copy written long after its
original was sent (a forwarder's redo after a crash) is caught here only within that margin,
and otherwise by the remembered outcomes of the worker that sent the original. What the kill
interrupted between the provider's answer and the outcome's write is still sent again
(at-least-once): that is what was in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import (
    Channel,
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
)
from notifier.settings import Settings
from notifier.topics import full_name
from processors.finished_commands import FinishedCommands, outcome_key
from processors.reader import LazyReader, short_of

log = logging.getLogger("notifier.recorded")

OUTCOMES = frozenset(cls.AVRO_NAME for cls in (DeliverySent, DeliveryFailed, DeliveryCancelled))
# the command's and the outcome's producers may be on two hosts whose clocks differ a little
CLOCK_MARGIN_MS = 10_000


def window_start_ms(timestamps_s: Iterable[float], margin_ms: int = CLOCK_MARGIN_MS) -> int:
    """Where to start reading outcomes: before the oldest of the commands' timestamps."""
    return max(0, int(min(timestamps_s) * 1000) - margin_ms)


class RecordedResults:
    """Marks, per partition once after each assignment, the outcomes recorded since its oldest
    uncommitted command as finished for one channel agent."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        channel: Channel,
        finished: FinishedCommands,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.channel = channel
        self.finished = finished
        self.topic = full_name(settings, "delivery.events")
        self._read: set[int] = set()
        self._reader = LazyReader(settings)
        self._reading = asyncio.Lock()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: read them again when they come back."""
        self._read.difference_update(partitions)

    async def before(self, events: Sequence[Any]) -> None:
        """Read what is recorded for the partitions of `events` not read since assigned. A
        failure to read is logged and tried again with the next batch: sending is not held."""
        first: dict[int, list[float]] = {}
        for event in events:
            message = event.message
            if message.partition not in self._read:
                first.setdefault(message.partition, []).append(message.timestamp)
        for partition, timestamps in first.items():
            try:
                keys = await self.outcomes(partition, window_start_ms(timestamps))
            except Exception as exc:
                log.warning("outcomes of partition %d not read (%r)", partition, exc)
                continue
            self.finished.add_all(keys)
            self._read.add(partition)

    async def outcomes(self, partition: int, since_ms: int) -> list[str]:
        """The (notification, attempt) keys of this channel's outcomes recorded in
        `partition` of delivery.events since `since_ms`."""
        keys: list[str] = []
        read = 0
        async with self._reading:
            consumer = await self._reader.get()
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if found is None:
                return keys  # nothing written since
            consumer.seek(tp, found.offset)
            while await short_of(consumer, {tp: end}):
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                for message in batch.get(tp, []):
                    read += 1
                    key = self._outcome_key(message.value)
                    if key is not None:
                        keys.append(key)
        log.info(
            "%s: %d outcomes recorded in delivery.events[%d] (%d events read)",
            self.channel.value,
            len(keys),
            partition,
            read,
        )
        return keys

    async def stop(self) -> None:
        """Close the reading consumer."""
        await self._reader.stop()

    def _outcome_key(self, value: bytes | None) -> str | None:
        try:
            if self.codec.record_name(value) not in OUTCOMES:
                return None
            record = self.codec.decode(value)
        except ContractError:
            return None  # not ours to judge: the projection dead-letters it
        if getattr(record, "channel", None) is not self.channel:
            return None
        return outcome_key(record.notification_id, record.attempt)  # type: ignore[attr-defined]
