"""Runs the NotificationLog projection inside a worker: consumes delivery.events and
provider.callbacks in batches, applies each batch in one PostgreSQL transaction together with
its offsets, and resumes from the offsets stored there. When PostgreSQL is down it waits with
backoff and loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from mode import Service

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.settings import Settings
from notifier.topics import full_name
from processors.metrics import projected
from projections.notification_log import (
    PROJECTION,
    TOPICS,
    Consumed,
    apply_batch,
    is_uuid,
    load_offsets,
)

log = logging.getLogger("notifier.projection")
BACKOFF_S = (0.5, 1, 2, 5, 10, 30)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets stored with the rows, not Kafka's."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to flush: each batch is committed before the next is taken."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.runner.seek_to_stored(list(assigned))


class ProjectionRunner(Service):
    """The projection agent: delivery.events and provider.callbacks -> notification_log,
    exactly once in effect."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        database_url: str,
        dead_letter: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codec
        self.database_url = database_url
        self.dead_letter = dead_letter
        self.topics = [full_name(settings, t) for t in TOPICS]
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # the rebalance listener (reading offsets) and the batch loop share the connection,
        # from different tasks: one transaction at a time, or psycopg refuses the nesting
        self._db_lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.database_url, connect_timeout=5)
        return self._conn

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"{self.settings.topic_prefix}notifier-projection",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_s * 100),
            max_poll_records=2000,
            # range gives partition n of both topics to the same worker: both are keyed by
            # incident_id, so a notification's events and callbacks are folded by one worker
            # (round robin only while older workers without range are still in the group)
            partition_assignment_strategy=(RangePartitionAssignor, RoundRobinPartitionAssignor),
        )
        self._consumer.subscribe(self.topics, listener=_SeekToStored(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None:
            await self._conn.close()

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Seek `partitions` to the offsets stored in PostgreSQL (waiting for it if down)."""
        assert self._consumer is not None
        stored = await self._with_backoff(
            lambda conn: load_offsets(conn, [tp.topic for tp in partitions]), "read offsets"
        )
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)

    async def _with_backoff(self, work: Any, what: str) -> Any:
        attempt = 0
        while True:
            async with self._db_lock:
                try:
                    conn = await self._connection()
                    async with conn.transaction():
                        return await work(conn)
                except psycopg.Error as exc:
                    delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                    if isinstance(exc, psycopg.OperationalError):
                        log.warning(
                            "PostgreSQL unavailable (%s), retrying %s in %s s", exc, what, delay
                        )
                    else:  # a bug or a schema drift: keep the batch, say so loudly, try again
                        log.error(
                            "projecting failed (%s: %s), retrying %s in %s s",
                            type(exc).__name__,
                            exc,
                            what,
                            delay,
                        )
                    if self._conn is not None:
                        await self._conn.close()
                    self._conn = None
            attempt += 1
            await asyncio.sleep(delay)

    @Service.task
    async def _project(self) -> None:
        while not self.should_stop:
            if self._consumer is None:
                await asyncio.sleep(0.05)
                continue
            fetched = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            if not fetched:
                continue
            batch: list[Consumed] = []
            offsets: dict[tuple[str, int], int] = {}
            for tp, messages in fetched.items():
                for msg in messages:
                    record = self._decode(msg)
                    if record is not None:
                        batch.append(Consumed(tp.topic, tp.partition, msg.offset, record))
                offsets[(tp.topic, tp.partition)] = messages[-1].offset + 1
            started = time.monotonic()
            written = await self._with_backoff(
                lambda conn, b=batch, o=offsets: apply_batch(conn, b, o), "the batch"
            )
            projected(c.record for c in batch)
            log.debug(
                "projected %d events, %d rows in %.0f ms",
                len(batch),
                written,
                (time.monotonic() - started) * 1000,
            )

    def _decode(self, msg: Any) -> Any:
        try:
            record = self.codec.decode(msg.value)
        except ContractError as exc:
            log.warning(
                "projection skipped %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc.reason
            )
            return None
        nid = getattr(record, "notification_id", None)
        if nid is not None and not is_uuid(nid):
            log.warning(
                "projection skipped %s[%s]@%s: notification id %r is not a UUID",
                msg.topic,
                msg.partition,
                msg.offset,
                nid,
            )
            return None
        return record


__all__ = ["PROJECTION", "ProjectionRunner"]
