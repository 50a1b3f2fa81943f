"""Runs the NotificationLog projection inside a worker: consumes delivery.events and
provider.callbacks in batches, applies each batch in one PostgreSQL transaction together with
its offsets, and resumes from the offsets stored there. When PostgreSQL is down it waits with
backoff and loses nothing. It reads read_committed (delivery.events is written in the
dispatcher's transactions); the offset stored after a batch is its last record's next. A
transaction's marker after the last record of a partition is passed over when the consumer is
idle: its position is stored then, so "caught up" means the end of the partition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError
from mode import Service

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.domain.incident_status import ProfileDeleted
from notifier.settings import Settings
from notifier.topics import full_name
from processors.metrics import projected
from projections.escalation import Escalations
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
# what PostgreSQL refuses because of the data itself (a NUL in a text, a value out of a
# column's range or check): that event is dead-lettered; any other error is the database's
# or the deployment's and is retried, the batch kept
REFUSED = (psycopg.DataError, psycopg.IntegrityError)
# keeps one consumed message that could not be projected, with the stage and why; returns
# once the message is safely stored (the offsets move past it right after)
DeadLetterSink = Callable[[Any, str, BaseException], Awaitable[None]]
# writes encoded records (logical topic, key, value) to Kafka; returns once the broker has them
Publish = Callable[[list[tuple[str, bytes | None, bytes]]], Awaitable[None]]
OUTBOX_BATCH = 500
PUBLISH_RETRY_S = 5.0  # a failed publish waits this long before it is tried again
SELECT_OUTBOX = (
    "SELECT id, topic, key, value FROM escalation_outbox ORDER BY id LIMIT %s "
    "FOR UPDATE SKIP LOCKED"
)


class RefusedError(Exception):
    """PostgreSQL refused the data of a batch (not a lost connection)."""

    def __init__(self, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets stored with the rows, not Kafka's."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to flush: each batch is committed before the next is taken."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.runner.seek_to_stored(list(assigned))


def projection_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The projection's consumer (in the group every worker's projection shares), not
    started."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}notifier-projection",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # delivery.events is written in the dispatcher's transactions: an aborted one's
        # events never happened (docs/ARCHITECTURE.md)
        isolation_level="read_committed",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.session_timeout_s * 100),
        max_poll_records=2000,
        # the broker holds a fetch until 64 KiB are there or the wait is over: under load
        # a few large batches a second (each one transaction) rather than one per event
        fetch_min_bytes=64 * 1024,
        fetch_max_wait_ms=settings.projection_fetch_wait_ms,
        # range gives partition n of both topics to the same worker: both are keyed by
        # incident_id, so a notification's events and callbacks are folded by one worker.
        # Range alone: offered with round robin too (for workers of older releases), two
        # workers starting together joined and re-joined the group for minutes in about
        # half the tries, each one's JoinGroup counted a change of metadata by the broker
        # (Kafka 4.1), so neither got its partitions
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


class ProjectionRunner(Service):
    """The projection agent: delivery.events and provider.callbacks -> notification_log,
    exactly once in effect."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        database_url: str,
        dead_letter: DeadLetterSink | None = None,
        escalations: Escalations | None = None,
        publish: Publish | None = None,
        **kwargs: Any,
    ) -> None:
        """`escalations` and `publish` together: take tier escalation decisions and publish
        what they emit (a worker's projection; a tool's folds rows only)."""
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codec
        self.database_url = database_url
        self.dead_letter = dead_letter
        self.topics = [full_name(settings, t) for t in TOPICS]
        self.users_topic = full_name(settings, "users")
        self.deliveries = {
            full_name(settings, t) for t in ("delivery.events", "provider.callbacks")
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # the rebalance listener (reading offsets) and the batch loop share the connection,
        # from different tasks: one transaction at a time, or psycopg refuses the nesting
        self._db_lock = asyncio.Lock()
        # (topic, partition) -> the offset stored in PostgreSQL, for the partitions held
        self._stored: dict[tuple[str, int], int] = {}
        self.escalations = escalations if publish is not None else None
        self.publish = publish
        if self.escalations is not None:
            self.escalations.queued = 1  # what a previous run left in the outbox, at start
        self._publish_after = 0.0  # monotonic time before which a failed publish waits

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.database_url, connect_timeout=5)
        return self._conn

    async def on_start(self) -> None:
        self._consumer = projection_consumer(self.settings)
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
            self._stored[(tp.topic, tp.partition)] = offset or 0
        if self.escalations is not None:
            # a worker that died between a commit and its publish left its partitions' outbox
            self.escalations.queued += 1

    async def _with_backoff(self, work: Any, what: str, refusable: bool = False) -> Any:
        """Run `work` in a transaction until it commits, waiting out outages with backoff;
        with `refusable`, RefusedError when the database refuses the data itself."""
        attempt = 0
        while True:
            async with self._db_lock:
                try:
                    conn = await self._connection()
                    async with conn.transaction():
                        return await work(conn)
                except REFUSED as exc:
                    if not refusable:
                        raise
                    raise RefusedError(exc) from exc
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
                await self._store_idle_positions()
                await self._publish_outbox()
                continue
            batch: list[Consumed] = []
            messages_of: dict[tuple[str, int, int], Any] = {}
            offsets: dict[tuple[str, int], int] = {}
            for tp, messages in fetched.items():
                for msg in messages:
                    record = await self._decode(msg)
                    if record is not None:
                        batch.append(Consumed(tp.topic, tp.partition, msg.offset, record))
                        messages_of[(tp.topic, tp.partition, msg.offset)] = msg
                offsets[(tp.topic, tp.partition)] = messages[-1].offset + 1
            started = time.monotonic()
            try:
                written = await self._with_backoff(
                    lambda conn, b=batch, o=offsets: apply_batch(conn, b, o, self.escalations),
                    "the batch",
                    refusable=True,
                )
            except RefusedError as refused:
                log.warning(
                    "PostgreSQL refused a batch of %d events (%s); applying them one by one",
                    len(batch),
                    refused,
                )
                written = await self._apply_one_by_one(batch, offsets, messages_of)
            self._stored.update(offsets)
            await self._publish_outbox()
            projected(c.record for c in batch)
            log.debug(
                "projected %d events, %d rows in %.0f ms",
                len(batch),
                written,
                (time.monotonic() - started) * 1000,
            )

    async def _publish_outbox(self) -> None:
        """Publish what escalation decisions put in the outbox, and delete it once the broker
        has it. Kafka or PostgreSQL away: it stays, and is tried again (PUBLISH_RETRY_S)."""
        if self.escalations is None or self.publish is None or not self.escalations.queued:
            return
        if time.monotonic() < self._publish_after:
            return
        try:
            while True:
                async with self._db_lock:
                    conn = await self._connection()
                    async with conn.transaction():
                        cursor = await conn.execute(SELECT_OUTBOX, (OUTBOX_BATCH,))
                        rows = await cursor.fetchall()
                        if rows:
                            await self.publish([(t, k, v) for _, t, k, v in rows])
                            await conn.execute(
                                "DELETE FROM escalation_outbox WHERE id = ANY(%s)",
                                ([r[0] for r in rows],),
                            )
                if len(rows) < OUTBOX_BATCH:
                    self.escalations.queued = 0
                    return
        except Exception as exc:  # the outbox keeps it: said, and tried again
            log.warning("escalations not published yet, trying again soon: %r", exc)
            self._publish_after = time.monotonic() + PUBLISH_RETRY_S

    async def _store_idle_positions(self) -> None:
        """Store the positions that moved past what the last batches stored with no record
        returned: a transaction's marker at the end of a partition. Without this the stored
        offset stays one short of the end until the next event, and the projection reads
        as behind (the bench waited on it for good)."""
        assert self._consumer is not None
        moved: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            key = (tp.topic, tp.partition)
            stored = self._stored.get(key)
            if stored is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            if position > stored:
                moved[key] = position
        if moved:
            await self._with_backoff(lambda conn: apply_batch(conn, [], moved), "the offsets")
            self._stored.update(moved)

    async def _apply_one_by_one(
        self,
        batch: list[Consumed],
        offsets: dict[tuple[str, int], int],
        messages_of: dict[tuple[str, int, int], Any],
    ) -> int:
        """Apply a refused batch an event at a time, each with its own offset: what the
        database refuses is dead-lettered with its message, the rest applied."""
        written = 0
        for consumed in sorted(batch, key=lambda c: (c.topic, c.partition, c.offset)):
            position = {(consumed.topic, consumed.partition): consumed.offset + 1}
            try:
                written += await self._with_backoff(
                    lambda conn, c=consumed, o=position: apply_batch(
                        conn, [c], o, self.escalations
                    ),
                    "an event",
                    refusable=True,
                )
            except RefusedError as refused:
                msg = messages_of[(consumed.topic, consumed.partition, consumed.offset)]
                await self._dead_letter(msg, refused.error)
                await self._with_backoff(
                    lambda conn, o=position: apply_batch(conn, [], o), "the offset"
                )
        # the batch's last offsets too: messages skipped as undecodable lie beyond its events
        await self._with_backoff(lambda conn: apply_batch(conn, [], offsets), "the offsets")
        return written

    async def _dead_letter(self, msg: Any, error: BaseException, stage: str = "project") -> None:
        reason = f"{type(error).__name__}: {error}"
        log.error(
            "projection could not %s %s[%s]@%s, dead-lettered: %s",
            "decode" if stage == "decode" else "apply",
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
        )
        if self.dead_letter is None:  # a tool's projection, not a worker's: said, not kept
            return
        await self.dead_letter(msg, stage, error)

    async def _decode(self, msg: Any) -> Any:
        if msg.value is None and msg.topic == self.users_topic and msg.key:
            return ProfileDeleted(msg.key.decode(errors="replace"))  # a person deleted
        try:
            record = self.codec.decode(msg.value)
        except ContractError as exc:
            if msg.topic in self.deliveries:
                await self._dead_letter(msg, exc, "decode")
            else:  # incidents and users: dead-lettered once, by the agents that act on them
                log.warning(
                    "projection skipped %s[%s]@%s: %s",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    exc.reason,
                )
            return None
        nid = getattr(record, "notification_id", None)
        if nid is not None and not is_uuid(nid):
            await self._dead_letter(msg, ContractError(f"notification id {nid!r} is not a UUID"))
            return None
        return record


__all__ = ["PROJECTION", "ProjectionRunner"]
