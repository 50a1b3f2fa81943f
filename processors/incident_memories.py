"""The dispatcher's memory of each incident: what it was told and whom it notified.

Kept in a compacted topic that the dispatcher writes inside its Kafka transactions, together
with the notifications a memory led to and the input offsets (processors/dispatch_transactions.py):
a restart finds the memory and the outputs both written or both not. A Faust table cannot take
part in those transactions (it writes its changelog through Faust's producer as a value is
set), so this store replaces the table; the topic keeps the table changelog's name and format
(key: the incident id, value: the memory as JSON), so memories written by earlier releases
carry over, and every worker's ClosedIncidents follows it as before.

A worker holds the memories of the partitions whose dispatcher input it owns: a partition is
read whole (read_committed: an aborted transaction's memories are never seen) the first time
an event of it arrives after an assignment, and forgotten when it is revoked.

Each transaction also writes the partition's progress: per input topic, the offset before
which every event is dispatched, under a key no incident has (`PROGRESS_KEY`). The group's
committed offsets cannot say what was dispatched: Kafka keeps the commit appended last to
`__consumer_offsets`, and a plain commit of Faust's that lands between a transaction's
offsets and its commit marker wins over them, so the group's offset can move back behind
what a committed transaction dispatched (a worker killed then dispatched a burst's
notifications twice). The progress record is committed with the outputs, so it cannot
disagree with them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from notifier.settings import Settings
from processors.reader import LazyReader, short_of

log = logging.getLogger("notifier.memories")

Memory = dict[str, Any]
Progress = dict[str, int]  # input topic -> the next offset to dispatch, of one partition

# raw bytes, not JSON text like every incident's key, and not text an incident id holds
PROGRESS_KEY = b"\x00dispatcher-progress"


def memory_topic(settings: Settings) -> str:
    """The topic of the incident memories (the name the Faust table's changelog had)."""
    return f"{settings.topic_prefix}notifier-incident-memory-changelog"


def encode_memory(incident_id: str, memory: Memory | None) -> tuple[bytes, bytes | None]:
    """The topic's key and value of one memory (None: a tombstone). The key is JSON text, as
    the Faust table wrote it: one incident keeps one key, so compaction keeps its last
    memory only, and a worker of the release before reads the topic as its own."""
    value = None if memory is None else json.dumps(memory, separators=(",", ":")).encode()
    return json.dumps(incident_id).encode(), value


def decode_memory(key: bytes | None, value: bytes | None) -> tuple[str, Memory | None]:
    """The incident id and memory of one record (None for a tombstone or a value that is not
    a stored memory). Keys are JSON text (as the Faust table wrote them), or raw text."""
    incident_id = (key or b"").decode(errors="replace")
    if incident_id.startswith('"'):
        incident_id = json.loads(incident_id)
    if value is None:
        return incident_id, None
    try:
        memory = json.loads(value)
    except ValueError:
        return incident_id, None
    return incident_id, memory if isinstance(memory, dict) else None


def encode_progress(progress: Mapping[str, int]) -> tuple[bytes, bytes]:
    """The topic's key and value of one partition's progress record."""
    return PROGRESS_KEY, json.dumps({"progress": dict(progress)}, separators=(",", ":")).encode()


def decode_progress(value: bytes | None) -> Progress:
    """The input offsets a progress record holds (none for a value that holds none)."""
    try:
        data = json.loads(value or b"")
    except ValueError:
        return {}
    found = data.get("progress") if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(t): o for t, o in found.items() if isinstance(o, int) and not isinstance(o, bool)}


async def _drop_past_the_end(consumer: Any, partition: int, progress: Progress) -> None:
    """Forget progress past its input partition's end: the topic was deleted and made
    again, and its new events (from offset 0) would all read as dispatched."""
    tps = [TopicPartition(topic, partition) for topic in progress]
    try:
        ends = await consumer.end_offsets(tps)
    except KafkaError as exc:  # kept: a topic made again is rare, a broker away is not
        log.warning("dispatcher progress not checked against the inputs' ends: %r", exc)
        return
    for tp, end in ends.items():
        if progress[tp.topic] > end:
            log.warning(
                "dispatcher progress of %s is %d, past its end %d (the topic made again?): ignored",
                tp,
                progress[tp.topic],
                end,
            )
            del progress[tp.topic]


class IncidentMemories:
    """The memories of the dispatcher partitions this worker owns, read from the topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = memory_topic(settings)
        self._by_partition: dict[int, dict[str, Memory]] = {}
        self._progress: dict[int, Progress] = {}
        self._reader = LazyReader(settings)
        self._loading = asyncio.Lock()

    def get(self, incident_id: str, partition: int | None = None) -> Memory | None:
        """The memory of `incident_id` (of `partition` when known), None when not held here."""
        if partition is not None:
            return self._by_partition.get(partition, {}).get(incident_id)
        for memories in self._by_partition.values():
            found = memories.get(incident_id)
            if found is not None:
                return found
        return None

    def loaded(self, partition: int) -> bool:
        """Whether `partition` has been read since it was assigned."""
        return partition in self._by_partition

    def progress(self, partition: int) -> Progress | None:
        """The input offsets `partition`'s committed transactions dispatched up to; None
        when none recorded one (the partition's memories written by an earlier release)."""
        return self._progress.get(partition)

    def update(
        self,
        partition: int,
        memories: Mapping[str, Memory | None],
        progress: Mapping[str, int] | None = None,
    ) -> None:
        """Take in what a committed transaction wrote for `partition`."""
        if progress:
            self._progress.setdefault(partition, {}).update(progress)
        held = self._by_partition.setdefault(partition, {})
        for incident_id, memory in memories.items():
            if memory is None:
                held.pop(incident_id, None)
            else:
                held[incident_id] = memory

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is held of `partitions` (revoked: their next owner writes them)."""
        for partition in partitions:
            self._by_partition.pop(partition, None)
            self._progress.pop(partition, None)

    async def load(self, partitions: Iterable[int]) -> None:
        """Read `partitions` whole, those not held yet (their previous owner's last commit
        included: its transactions are committed or aborted before the topic's end moves)."""
        async with self._loading:
            wanted = sorted(p for p in set(partitions) if p not in self._by_partition)
            if not wanted:
                return
            consumer = await self._reader.get()
            tps = [TopicPartition(self.topic, p) for p in wanted]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            read: dict[int, dict[str, Memory]] = {p: {} for p in wanted}
            progress: dict[int, Progress] = {}
            records = 0
            while await short_of(consumer, ends):
                batches = await consumer.getmany(*tps, timeout_ms=500, max_records=10_000)
                for tp, messages in batches.items():
                    held = read[tp.partition]
                    for msg in messages:
                        records += 1
                        if msg.key == PROGRESS_KEY:
                            found = decode_progress(msg.value)
                            if found:  # one that holds nothing counts as none
                                progress[tp.partition] = found
                            continue
                        incident_id, memory = decode_memory(msg.key, msg.value)
                        if memory is None:
                            held.pop(incident_id, None)
                        else:
                            held[incident_id] = memory
            for partition, found in progress.items():
                await _drop_past_the_end(consumer, partition, found)
            self._by_partition.update(read)
            self._progress.update(progress)
            log.info(
                "incident memories read: partitions %s, %d records, %d incidents, progress %s",
                wanted,
                records,
                sum(len(m) for m in read.values()),
                progress,
            )

    async def stop(self) -> None:
        """Close the reading consumer."""
        await self._reader.stop()
