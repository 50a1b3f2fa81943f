"""The dispatcher's writes in Kafka transactions: its outputs, the incident memories they
change and its input offsets, committed together or not at all.

Without this a worker killed after writing a batch's SendCommands but before committing its
input offsets wrote them again after the restart, and the channel agents sent every copy
(issue: one push sent 13 times across 5 SIGKILLs). Here each dispatcher partition (the same
partition of `incidents` and `dispatch.commands`, which Faust assigns together, and of the
memory topic) has one transactional producer whose id is the partition's: the next owner's
producer fences the old one and aborts its open transaction, and consumers read
read_committed, so an aborted batch's records are never acted on. The input offsets go into
the transaction (`send_offsets_to_transaction`), where the group resumes. They do not decide
what was dispatched: a plain commit of Faust's (of events acknowledged before) appended
between a transaction's offsets and its commit marker wins over them, and moves the group's
offset back. What decides is the partition's progress record, written in the same
transaction (processors/incident_memories.py): an event below it is acknowledged, not
dispatched again.

Not covered (docs/ARCHITECTURE.md): provider requests and PostgreSQL are outside Kafka,
so the channel agents and the projection stay at-least-once with idempotent effects. A
worker that stalls past its session and wakes as a zombie is fenced at its next transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerFenced

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import Channel, Record
from notifier.domain.dispatch import Dispatch, IncidentMemory
from notifier.settings import Settings
from notifier.topics import full_name
from processors.dispatcher import log_dispatch, outgoing
from processors.emitter import dead_letter_record
from processors.incident_memories import (
    IncidentMemories,
    Memory,
    Progress,
    encode_memory,
    encode_progress,
)
from processors.partitioner import CachedMurmur2Partitioner

log = logging.getLogger("notifier.dispatch")

Decide = Callable[[Record, IncidentMemory], tuple[Dispatch, IncidentMemory]]
RETRY_FIRST_S = 0.1
RETRY_MOST_S = 5.0
STOP_TIMEOUT_S = 10.0
TRANSACTION_TIMEOUT_MS = 10_000
START_TIMEOUT_S = 15.0
# A transaction begun right after its producer's last commit finds the coordinator still
# writing that commit's markers (a millisecond or two) and is told to retry. aiokafka
# waits a fixed 20 ms when that answer comes to the transaction's first AddPartitionsToTxn
# and `retry_backoff_ms` when it comes to AddOffsetsToTxn: so each transaction adds its
# offsets first, with a short backoff. Measured back to back on the dev broker, per
# transaction: 22 ms records first; offsets first 12 ms at 10 ms backoff, 7 ms at 5 ms.
# The backoff also paces these producers' other retries (metadata, produce): in `make
# chaos`, a broker stopped for 30 s made the two workers log 65 produce retries in all.
TXN_RETRY_BACKOFF_MS = 5
BATCH_BYTES = 512 * 1024  # under the broker's default message.max.bytes (1 MiB)

# topic (full name), partition (None: by key), key, value: ready for the producer
EncodedRecord = tuple[str, int | None, bytes | None, bytes | None]


def transactional_id(group_id: str, partition: int) -> str:
    """The transactional id of one dispatcher partition: the same on every worker, so the
    partition's next owner fences the previous one and ends its open transaction."""
    return f"{group_id}-dispatcher-{partition}"


@dataclass
class Staged:
    """What one partition's batch writes in its transaction, and what follows its commit."""

    records: list[EncodedRecord] = field(default_factory=list)
    memories: dict[str, Memory] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    progress: Progress = field(default_factory=dict)
    dispatched: list[tuple[Record, Dispatch]] = field(default_factory=list)


class PartitionProducers:
    """One started transactional producer per dispatcher partition this worker writes."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._unchecked: set[int] = set()  # started, what the previous one did not read back
        self._starting: dict[int, asyncio.Lock] = {}
        self.partitioner = CachedMurmur2Partitioner()

    async def get(self, partition: int) -> tuple[AIOKafkaProducer, bool]:
        """The producer of `partition`, started if new (its transactions initialised: a
        previous owner's open transaction aborted, or its commit in progress finished), and
        whether what happened before it has yet to be read back (see `checked`)."""
        async with self._starting.setdefault(partition, asyncio.Lock()):
            producer = self._producers.get(partition)
            if producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    transactional_id=transactional_id(self.group_id, partition),
                    enable_idempotence=True,
                    acks="all",
                    # no linger: every record of a transaction is sent before its commit,
                    # which then waits for them; a linger would only hold the commit back
                    linger_ms=0,
                    # see `TXN_RETRY_BACKOFF_MS`
                    retry_backoff_ms=TXN_RETRY_BACKOFF_MS,
                    # a killed worker's open transaction holds back every read_committed
                    # reader of the partitions it wrote until it is aborted: by the next
                    # owner's producer, or by the coordinator after this long (a batch's
                    # transaction takes milliseconds; Kafka Streams uses the same 10 s)
                    transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                    partitioner=self.partitioner,
                    # a batch's records of one partition go as one batch (`send_batched`)
                    max_batch_size=BATCH_BYTES,
                )
                try:
                    # bounded: with its coordinator away, init_transactions waits on, holding
                    # this partition's lock, which the revoke handler needs to end a rebalance
                    await asyncio.wait_for(producer.start(), START_TIMEOUT_S)
                except TimeoutError as exc:
                    await _stop_quietly(producer)
                    raise KafkaTimeoutError(
                        f"dispatcher partition {partition}: producer not started"
                    ) from exc
                except BaseException:
                    await _stop_quietly(producer)
                    raise
                self._producers[partition] = producer
                self._unchecked.add(partition)
            return producer, partition in self._unchecked

    def checked(self, partition: int) -> None:
        """What was committed before `partition`'s producer started has been read back."""
        self._unchecked.discard(partition)

    async def start(self, partitions: Iterable[int]) -> None:
        """Start the producers of newly assigned `partitions` at once: each aborts what a
        killed owner left open, which holds back every reader of what it wrote, rather
        than when the partition's first event arrives (after table recovery)."""
        for partition in partitions:
            try:
                await self.get(partition)
            except Exception as exc:  # tried again with the partition's first event
                log.warning("dispatcher partition %d: producer not started (%r)", partition, exc)

    async def drop(self, partitions: Iterable[int]) -> None:
        """Stop the producers of `partitions` (revoked, fenced or in an unknown state)."""
        for partition in list(partitions):
            async with self._starting.setdefault(partition, asyncio.Lock()):
                producer = self._producers.pop(partition, None)
                self._unchecked.discard(partition)
                if producer is not None:
                    await _stop_quietly(producer)

    async def stop(self) -> None:
        """Stop every producer."""
        await self.drop(list(self._producers))


async def send_batched(
    producer: AIOKafkaProducer,
    partitioner: Callable[[bytes | None, Sequence[int], Sequence[int]], int],
    records: Sequence[EncodedRecord],
) -> None:
    """Queue `records` in the producer's open transaction, one record batch per partition,
    in order within each partition. aiokafka's `send` makes a future and a partition lookup
    per record; a batch built by hand appends a record for about a microsecond. Delivery
    is awaited by the transaction's commit, as for `send`."""
    by_partition: dict[tuple[str, int], list[EncodedRecord]] = {}
    partitions: dict[str, list[int]] = {}
    for record in records:
        topic, to, key, _ = record
        if to is None:
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            to = partitioner(key, known, known)
        by_partition.setdefault((topic, to), []).append(record)
    for (topic, to), held in by_partition.items():
        batch = producer.create_batch()
        for _, _, key, value in held:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await producer.send_batch(batch, topic, partition=to)
                batch = producer.create_batch()
                # a batch takes its first record whatever its size (one too large for the
                # broker is refused by it, where `send` refused it before sending)
                batch.append(key=key, value=value, timestamp=None)
        await producer.send_batch(batch, topic, partition=to)


def ack_done(events: Sequence[Any], done_below: Callable[[TopicPartition], int]) -> list[Any]:
    """`events` less those at offsets below `done_below` of their partition, which are
    acknowledged (asked once per partition)."""
    below: dict[TopicPartition, int] = {}
    left = []
    for event in events:
        message = event.message
        tp = TopicPartition(message.topic, message.partition)
        end = below.get(tp)
        if end is None:
            end = below[tp] = done_below(tp)
        if message.offset < end:
            event.ack()
        else:
            left.append(event)
    return left


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    # a producer stopped while its broker is away would wait for it: bounded, as the
    # transaction it leaves open is ended by the partition's next producer anyway
    try:
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
    except Exception as exc:
        log.warning("transactional producer not stopped cleanly: %r", exc)


class TransactionalDispatcher:
    """Handles the dispatcher's events a batch at a time, one transaction per partition."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        memories: IncidentMemories,
        producers: PartitionProducers,
        decide: Decide,
        throttled: Collection[Channel],
        owns: Callable[[Any], bool],
        skipped_by_log: Callable[[TopicPartition, int, int], bool] = lambda tp, first, end: False,
        committed: Callable[[TopicPartition], int | None] = lambda tp: None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.memories = memories
        self.producers = producers
        self.decide = decide
        self.throttled = throttled
        self.owns = owns  # whether this worker still owns a Faust TP
        # whether the log has no record at any offset in [first, end) of a partition
        self.skipped_by_log = skipped_by_log
        # the offset Faust's consumer committed for a partition (what it counted as done)
        self.committed = committed
        self._names: dict[str, str] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._background: set[asyncio.Future[None]] = set()

    async def handle(self, events: Sequence[Any]) -> None:
        """Dispatch `events` (Faust events, not acknowledged): each acknowledged once its
        partition's transaction committed, or left to the partition's next owner."""
        by_partition: dict[int, list[Any]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        await asyncio.gather(*(self._commit(p, evs) for p, evs in by_partition.items()))

    def assigned(self, partitions: Iterable[int]) -> None:
        """Take over newly assigned `partitions`: their producers started in the background
        (see `PartitionProducers.start`; the assignment and table recovery do not wait)."""
        task = asyncio.ensure_future(self.producers.start(list(partitions)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def revoked(self, partitions: Iterable[int]) -> None:
        """Forget what is held of `partitions`: their next owner writes them."""
        wanted = set(partitions)
        self.memories.forget(wanted)
        await self.producers.drop(wanted)

    async def stop(self) -> None:
        """Stop the producers and clients."""
        await self.producers.stop()
        await self.memories.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _commit(self, partition: int, events: list[Any]) -> None:
        delay = RETRY_FIRST_S
        retrying = False
        while True:
            if retrying:
                events = [e for e in events if self.owns(e.message.tp)]
                if not events:
                    return  # revoked while waiting: the next owner reads them again
            retrying = True
            try:
                producer, unchecked = await self.producers.get(partition)
                if unchecked:
                    # a new producer ended what an earlier one left (aborted, or finished
                    # its commit): the memories and progress now say what happened
                    self.memories.forget([partition])
                await self.memories.load([partition])
                if unchecked:
                    # also for a partition with a progress record: one written by an
                    # earlier release (without progress records) may have owned it since
                    events = await self._not_committed(events)
                    self.producers.checked(partition)
                events = self._not_dispatched(partition, events)
                if not events:
                    return
                staged = self.stage(partition, events)
                async with producer.transaction():
                    # offsets first: see `TXN_RETRY_BACKOFF_MS`
                    await producer.send_offsets_to_transaction(
                        staged.offsets, self.producers.group_id
                    )
                    await send_batched(producer, self.producers.partitioner, staged.records)
            except ProducerFenced:
                log.warning("dispatcher partition %d fenced: another worker owns it", partition)
                await self.revoked([partition])
                return
            except (KafkaError, OSError) as exc:
                # the outcome is unknown (the commit may have landed): the producer is
                # replaced, and what it did is read back before the batch is tried again
                log.warning(
                    "dispatcher partition %d: transaction failed (%r), again in %.1f s",
                    partition,
                    exc,
                    delay,
                )
                await self.revoked([partition])
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST_S)
                continue
            self.memories.update(partition, staged.memories, staged.progress)
            for event in events:
                event.ack()
            for record, dispatched in staged.dispatched:
                log_dispatch(record, dispatched)
            return

    def stage(self, partition: int, events: Sequence[Any]) -> Staged:
        """Decide every event of one partition's batch, in order: the records to write, the
        memories changed (each incident's last), the input offsets to commit."""
        staged = Staged()
        memories: dict[str, Memory] = {}
        progress = dict(self.memories.progress(partition) or {})
        read: set[TopicPartition] = set()
        for event in events:
            message = event.message
            tp = TopicPartition(message.topic, message.partition)
            read.add(tp)
            self._advance(progress, tp, message.offset)
            try:
                record = self.codec.decode(message.value)
            except ContractError as exc:
                self._dead_letter(staged, message, "decode", exc)
                continue
            incident_id = getattr(record, "incident_id", "")
            try:
                held = memories.get(incident_id) or self.memories.get(incident_id, partition)
                dispatched, memory = self.decide(record, IncidentMemory.from_json(held))
                items = outgoing(dispatched, throttled=self.throttled)
                encoded = [
                    (self._full_name(topic), None, key.encode(), self.codec.encode(out))
                    for topic, key, out in items
                ]
            except Exception as exc:
                log.exception("dispatch failed", extra={"incident_id": incident_id})
                self._dead_letter(staged, message, "handle", exc)
                continue
            memories[incident_id] = memory.to_json()
            staged.records += encoded
            staged.dispatched.append((record, dispatched))
        for incident_id, changed in memories.items():
            key, value = encode_memory(incident_id, changed)
            staged.records.append((self.memories.topic, partition, key, value))
        staged.memories = memories
        staged.progress = progress
        staged.offsets = {tp: progress[tp.topic] for tp in read if tp.topic in progress}
        key, value = encode_progress(progress)
        staged.records.append((self.memories.topic, partition, key, value))
        return staged

    def _advance(self, progress: Progress, tp: TopicPartition, offset: int) -> None:
        """Move `tp`'s progress past the event at `offset` when nothing before it is left
        undone: it follows the progress (or what Faust's consumer committed), or the log has
        no record in between. An event after records Faust dropped (faust-streaming #606)
        is dispatched but the progress stays before them: read again, they are dispatched
        then, and the events after them a second time (never lost)."""
        known = [o for o in (progress.get(tp.topic), self.committed(tp)) if o is not None]
        if not known:  # nothing recorded or committed yet: reading starts here
            progress[tp.topic] = offset + 1
            return
        expected = max(known)
        if offset == expected or (offset > expected and self.skipped_by_log(tp, expected, offset)):
            progress[tp.topic] = offset + 1
        elif expected > progress.get(tp.topic, -1):
            progress[tp.topic] = expected  # Faust committed past the progress (log skips)

    def _not_dispatched(self, partition: int, events: list[Any]) -> list[Any]:
        """`events` less those done, which are acknowledged: below the partition's progress
        record (dispatched by a committed transaction) or below what Faust's consumer
        committed. Read again after the group's offset moved back (see
        processors/incident_memories.py), they are not dispatched twice."""
        progress = self.memories.progress(partition) or {}

        def done_below(tp: TopicPartition) -> int:
            known = [o for o in (progress.get(tp.topic), self.committed(tp)) if o is not None]
            return max(known, default=-1)

        left = ack_done(events, done_below)
        if len(left) < len(events):
            log.info(
                "dispatcher partition %d: %d events already dispatched, not again",
                partition,
                len(events) - len(left),
            )
        return left

    def _dead_letter(self, staged: Staged, message: Any, stage: str, error: Exception) -> None:
        record = dead_letter_record(message, stage, error)
        staged.records.append(
            (self._full_name("deadletter"), None, message.key, self.codec.encode(record))
        )

    def _full_name(self, logical: str) -> str:
        name = self._names.get(logical)
        if name is None:
            name = self._names[logical] = full_name(self.settings, logical)
        return name

    async def _not_committed(self, events: list[Any]) -> list[Any]:
        """`events` less those whose offsets the group has committed (their transaction
        committed before this worker's producer took the partition over), those acknowledged."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await admin.start()
            self._admin = admin
        tps = sorted({TopicPartition(e.message.topic, e.message.partition) for e in events})
        committed = await self._admin.list_consumer_group_offsets(
            self.producers.group_id, partitions=tps
        )
        done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        left = ack_done(events, lambda tp: done.get(tp, -1))
        if len(left) < len(events):
            log.info(
                "dispatcher: %d events already committed by an earlier transaction",
                len(events) - len(left),
            )
        return left
