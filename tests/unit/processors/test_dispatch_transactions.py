"""What one partition's transaction holds: the staged records, memories and offsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import (
    Channel,
    DeadLetter,
    IncidentAcknowledged,
    IncidentOpened,
    NotificationQueued,
    Record,
    SendCommand,
)
from notifier.contracts.registry import LocalSchemaRegistry
from notifier.domain.dispatch import Dispatch, IncidentMemory
from notifier.settings import Settings
from processors.closed_incidents import status_in_changelog
from processors.dispatch_transactions import (
    PartitionProducers,
    TransactionalDispatcher,
    send_batched,
    transactional_id,
)
from processors.incident_memories import (
    PROGRESS_KEY,
    IncidentMemories,
    decode_memory,
    decode_progress,
    encode_memory,
    encode_progress,
)
from tests.messages import Message
from tests.samples import sample

CODEC = AvroCodec(LocalSchemaRegistry())
SETTINGS = Settings(topic_prefix="t.")


@dataclass
class Event:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


def event(offset: int, record: Record | bytes, topic: str = "t.incidents") -> Event:
    value = record if isinstance(record, bytes) else CODEC.encode(record)
    return Event(Message(topic, 2, offset, value, b"k"))


def decide(record: Record, memory: IncidentMemory) -> tuple[Dispatch, IncidentMemory]:
    """One notification per IncidentOpened; the memory counts what it saw."""
    memory.escalations.append(type(record).__name__)
    if isinstance(record, IncidentOpened):
        command = sample(
            SendCommand, incident_id=record.incident_id, channel=Channel.EMAIL, not_before=None
        )
        queued = sample(NotificationQueued, incident_id=record.incident_id)
        return Dispatch(events=[queued], commands=[command]), memory
    if record.incident_id == "boom":  # type: ignore[attr-defined]
        raise ValueError("cannot decide")
    return Dispatch(), memory


def dispatcher(
    memories: IncidentMemories | None = None,
    committed: int | None = None,
    log_skipped: Sequence[tuple[int, int]] = (),
) -> TransactionalDispatcher:
    """A dispatcher whose consumer committed `committed` of every partition, and whose
    fetches passed over the offset ranges `log_skipped` (markers) with no record."""
    return TransactionalDispatcher(
        SETTINGS,
        CODEC,
        memories or IncidentMemories(SETTINGS),
        PartitionProducers(SETTINGS, "t.notifier"),
        decide,
        throttled=(),
        owns=lambda tp: True,
        skipped_by_log=lambda tp, first, end: any(a <= first and end <= b for a, b in log_skipped),
        committed=lambda tp: committed,
    )


def test_a_batch_stages_its_outputs_then_each_incidents_last_memory_and_its_offsets() -> None:
    a = sample(IncidentOpened, incident_id="a")
    staged = dispatcher().stage(
        2,
        [
            event(10, a),
            event(11, sample(IncidentAcknowledged, incident_id="a")),
            event(12, sample(IncidentOpened, incident_id="b")),
            event(40, sample(IncidentAcknowledged, incident_id="b"), "t.dispatch.commands"),
        ],
    )
    topics = [topic for topic, _, _, _ in staged.records]
    assert topics == [
        "t.delivery.events",
        "t.notify.email",
        "t.delivery.events",
        "t.notify.email",
        "t.notifier-incident-memory-changelog",
        "t.notifier-incident-memory-changelog",
        "t.notifier-incident-memory-changelog",
    ]
    # memories and progress go to the input's partition; outputs to the partitioner's
    assert [to for _, to, _, _ in staged.records] == [None, None, None, None, 2, 2, 2]
    assert staged.records[-1][2] == PROGRESS_KEY
    assert decode_progress(staged.records[-1][3]) == {"t.incidents": 13, "t.dispatch.commands": 41}
    assert staged.memories["a"]["escalations"] == ["IncidentOpened", "IncidentAcknowledged"]
    assert staged.offsets == {
        TopicPartition("t.incidents", 2): 13,
        TopicPartition("t.dispatch.commands", 2): 41,
    }
    assert [type(r).__name__ for r, _ in staged.dispatched] == [
        "IncidentOpened",
        "IncidentAcknowledged",
        "IncidentOpened",
        "IncidentAcknowledged",
    ]


def test_a_batch_reads_the_memory_held_for_its_partition() -> None:
    memories = IncidentMemories(SETTINGS)
    memories.update(2, {"a": IncidentMemory(escalations=["before"]).to_json()})
    staged = dispatcher(memories).stage(
        2, [event(1, sample(IncidentAcknowledged, incident_id="a"))]
    )
    assert staged.memories["a"]["escalations"] == ["before", "IncidentAcknowledged"]
    # held memories change only when the transaction committed
    assert memories.get("a", 2) == IncidentMemory(escalations=["before"]).to_json()


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        (b"\x00garbage", "decode"),
        (CODEC.encode(sample(IncidentAcknowledged, incident_id="boom")), "handle"),
    ],
)
def test_what_cannot_be_dispatched_is_dead_lettered_in_the_same_transaction(
    value: bytes, stage: str
) -> None:
    staged = dispatcher().stage(2, [event(5, value), event(6, sample(IncidentOpened))])
    dead = [r for r in staged.records if r[0] == "t.deadletter"]
    assert len(dead) == 1
    letter = CODEC.decode(dead[0][3] or b"")
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.source_offset, letter.value) == (stage, 5, value)
    # the rest of the batch is dispatched, and both offsets committed
    assert staged.offsets == {TopicPartition("t.incidents", 2): 7}
    assert len(staged.dispatched) == 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (b"inc-1", b'{"status":"open"}', ("inc-1", {"status": "open"})),
        (b'"inc-1"', b'{"status":"resolved"}', ("inc-1", {"status": "resolved"})),
        (b"inc-1", None, ("inc-1", None)),
        (b"inc-1", b"not json", ("inc-1", None)),
        (b"inc-1", b"[1, 2]", ("inc-1", None)),
    ],
)
def test_memory_records_read_back(
    key: bytes, value: bytes | None, expected: tuple[str, object]
) -> None:
    assert decode_memory(key, value) == expected


def test_a_memory_is_written_as_it_reads_back() -> None:
    memory = IncidentMemory(title="db", escalations=["x"]).to_json()
    assert decode_memory(*encode_memory("inc-9", memory)) == ("inc-9", memory)
    assert encode_memory("inc-9", None) == (b'"inc-9"', None)


def test_each_partition_has_one_transactional_id_on_every_worker() -> None:
    assert transactional_id("t.notifier", 3) == "t.notifier-dispatcher-3"
    assert transactional_id("t.notifier", 3) != transactional_id("t.notifier", 4)


def test_revoked_partitions_are_forgotten() -> None:
    memories = IncidentMemories(SETTINGS)
    memories.update(1, {"a": {"status": "open"}})
    memories.update(2, {"b": {"status": "resolved"}})
    memories.forget([1])
    assert (memories.get("a"), memories.get("b")) == (None, {"status": "resolved"})
    assert (memories.loaded(1), memories.loaded(2)) == (False, True)


def test_the_progress_written_keeps_the_inputs_this_batch_did_not_read() -> None:
    memories = IncidentMemories(SETTINGS)
    memories.update(2, {}, {"t.incidents": 7, "t.dispatch.commands": 30})
    staged = dispatcher(memories).stage(2, [event(7, sample(IncidentOpened))])
    assert staged.progress == {"t.incidents": 8, "t.dispatch.commands": 30}
    assert decode_progress(staged.records[-1][3]) == staged.progress
    # held progress moves only when the transaction committed
    assert memories.progress(2) == {"t.incidents": 7, "t.dispatch.commands": 30}


@pytest.mark.parametrize(
    ("progress", "offsets", "left"),
    [
        # nothing recorded (a partition new, or written by an earlier release): all go
        (None, [("t.incidents", 3), ("t.incidents", 4)], [3, 4]),
        # below the progress: dispatched by a committed transaction, read again
        ({"t.incidents": 5}, [("t.incidents", 3), ("t.incidents", 4)], []),
        ({"t.incidents": 4}, [("t.incidents", 3), ("t.incidents", 4), ("t.incidents", 5)], [4, 5]),
        # each input topic by its own progress
        (
            {"t.incidents": 10, "t.dispatch.commands": 2},
            [("t.incidents", 9), ("t.dispatch.commands", 2), ("t.dispatch.commands", 1)],
            [2],
        ),
        # a topic the progress does not name yet
        ({"t.incidents": 10}, [("t.dispatch.commands", 0)], [0]),
    ],
)
def test_events_a_committed_transaction_dispatched_are_acknowledged_not_dispatched(
    progress: dict[str, int] | None, offsets: list[tuple[str, int]], left: list[int]
) -> None:
    memories = IncidentMemories(SETTINGS)
    if progress is not None:
        memories.update(2, {}, progress)
    events = [event(offset, sample(IncidentOpened), topic) for topic, offset in offsets]
    kept = dispatcher(memories)._not_dispatched(2, events)
    assert [e.message.offset for e in kept] == left
    assert all(e.acked != (e in kept) for e in events)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (encode_progress({"t.incidents": 12})[1], {"t.incidents": 12}),
        (b'{"progress":{"t.incidents":12,"t.x":"12","t.y":true}}', {"t.incidents": 12}),
        (b'{"status":"open"}', {}),
        (b"not json", {}),
        (None, {}),
    ],
)
def test_progress_records_read_back(value: bytes | None, expected: dict[str, int]) -> None:
    assert decode_progress(value) == expected


def test_progress_is_taken_in_with_commits_and_forgotten_with_the_partition() -> None:
    memories = IncidentMemories(SETTINGS)
    assert memories.progress(2) is None
    memories.update(2, {}, {"t.incidents": 4})
    memories.update(2, {}, {"t.dispatch.commands": 9})
    assert memories.progress(2) == {"t.incidents": 4, "t.dispatch.commands": 9}
    memories.forget([2])
    assert memories.progress(2) is None


def test_a_progress_record_is_no_incident_and_closes_none() -> None:
    key, value = encode_progress({"t.incidents": 12})
    assert not key.startswith(b'"')  # every incident's key is JSON text
    assert status_in_changelog(value) == "open"


@pytest.mark.parametrize(
    ("held", "committed", "log_skipped", "offsets", "progress"),
    [
        ({"t.incidents": 5}, None, [], [5, 6], 7),
        # records Faust dropped (6..8) before 9: the progress stays before them
        ({"t.incidents": 5}, None, [], [5, 9], 6),
        # offsets the log has no record at (transaction markers) are passed over
        ({"t.incidents": 5}, None, [(6, 9)], [5, 9], 10),
        # nothing recorded or committed: reading starts at the first event
        (None, None, [], [12, 13], 14),
        # Faust committed past the progress (over log skips it saw)
        ({"t.incidents": 5}, 8, [], [8], 9),
        ({"t.incidents": 5}, 8, [], [10], 8),
        # the dropped records read again after the event that followed them
        ({"t.incidents": 5}, None, [], [9, 5, 6, 7, 8], 9),
    ],
)
def test_the_progress_never_passes_an_event_not_handled(
    held: dict[str, int] | None,
    committed: int | None,
    log_skipped: list[tuple[int, int]],
    offsets: list[int],
    progress: int,
) -> None:
    memories = IncidentMemories(SETTINGS)
    if held is not None:
        memories.update(2, {}, held)
    staged = dispatcher(memories, committed, log_skipped).stage(
        2, [event(offset, sample(IncidentOpened)) for offset in offsets]
    )
    assert staged.progress["t.incidents"] == progress
    # the group resumes where the progress is
    assert staged.offsets == {TopicPartition("t.incidents", 2): progress}


def test_records_faust_dropped_are_dispatched_when_read_again() -> None:
    memories = IncidentMemories(SETTINGS)
    memories.update(2, {}, {"t.incidents": 5})
    d = dispatcher(memories)
    staged = d.stage(2, [event(5, sample(IncidentOpened)), event(9, sample(IncidentOpened))])
    memories.update(2, staged.memories, staged.progress)  # its transaction committed
    again = [event(offset, sample(IncidentOpened)) for offset in (5, 6, 7, 8)]
    assert [e.message.offset for e in d._not_dispatched(2, again)] == [6, 7, 8]


@pytest.mark.parametrize(
    ("held", "committed", "left"),
    [
        (None, 8, [8, 9]),  # below what Faust's consumer committed: handled
        ({"t.incidents": 9}, 8, [9]),
        ({"t.incidents": 7}, None, [7, 8, 9]),
    ],
)
def test_what_faust_committed_is_not_dispatched_again(
    held: dict[str, int] | None, committed: int | None, left: list[int]
) -> None:
    memories = IncidentMemories(SETTINGS)
    if held is not None:
        memories.update(2, {}, held)
    events = [event(offset, sample(IncidentOpened)) for offset in (6, 7, 8, 9)]
    kept = dispatcher(memories, committed)._not_dispatched(2, events)
    assert [e.message.offset for e in kept] == left


@dataclass
class Stored:
    key: bytes | None
    value: bytes | None


class MemoryTopic:
    """Stands in for the reader's consumer: one partition of the memory topic, and the ends
    of the dispatcher's input partitions."""

    def __init__(self, records: list[Stored], input_ends: dict[str, int]) -> None:
        self.records = records
        self.input_ends = input_ends
        self.read = False

    def assign(self, tps: list[TopicPartition]) -> None:
        self.tps = tps

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.read = False

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {
            tp: len(self.records) if tp in self.tps else self.input_ends[tp.topic] for tp in tps
        }

    async def position(self, tp: TopicPartition) -> int:
        return len(self.records) if self.read else 0

    async def getmany(self, *tps: TopicPartition, **kw: Any) -> dict[TopicPartition, Any]:
        self.read = True
        return {tps[0]: self.records}


class Reader:
    def __init__(self, consumer: MemoryTopic) -> None:
        self.consumer = consumer

    async def get(self) -> MemoryTopic:
        return self.consumer


@pytest.mark.parametrize(
    ("records", "input_ends", "progress"),
    [
        # the last progress record counts, and it is no incident
        (
            [
                Stored(*encode_progress({"t.incidents": 3})),
                Stored(*encode_memory("a", {"status": "open"})),
                Stored(*encode_progress({"t.incidents": 4, "t.dispatch.commands": 1})),
            ],
            {"t.incidents": 10, "t.dispatch.commands": 5},
            {"t.incidents": 4, "t.dispatch.commands": 1},
        ),
        # none recorded (an earlier release wrote the partition), or one holding nothing
        ([Stored(*encode_memory("a", {"status": "open"}))], {}, None),
        ([Stored(PROGRESS_KEY, b"not json")], {}, None),
        # past its input's end: the topic was made again, and its new events are not done
        (
            [Stored(*encode_progress({"t.incidents": 40, "t.dispatch.commands": 1}))],
            {"t.incidents": 2, "t.dispatch.commands": 5},
            {"t.dispatch.commands": 1},
        ),
    ],
)
async def test_a_partition_is_read_with_its_progress(
    records: list[Stored], input_ends: dict[str, int], progress: dict[str, int] | None
) -> None:
    memories = IncidentMemories(SETTINGS)
    memories._reader = Reader(MemoryTopic(records, input_ends))  # type: ignore[assignment]
    await memories.load([2])
    assert memories.progress(2) == progress
    assert memories.get("a", 2) in (None, {"status": "open"})
    assert memories.get("\x00dispatcher-progress", 2) is None


class Batches:
    """Stands in for a transactional producer: the batches it was given, and how full."""

    def __init__(self, fits: int) -> None:
        self.fits = fits  # records a batch takes
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> Any:
        producer = self

        class Batch:
            records: list[tuple[bytes | None, bytes | None]] = []

            def append(self, *, key: bytes | None, value: bytes | None, timestamp: None) -> Any:
                # as aiokafka's builder: full at `fits`, but the first record always goes in
                if self.records and len(self.records) >= producer.fits:
                    return None
                self.records = [*self.records, (key, value)]
                return object()

        return Batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> None:
        self.sent.append((topic, partition, batch.records))


async def test_records_go_as_one_batch_per_partition_in_their_order() -> None:
    producer = Batches(fits=2)
    records = [
        ("t.delivery.events", None, b"k1", b"a"),
        ("t.notify.email", None, b"k1", b"b"),
        ("t.delivery.events", None, b"k2", b"c"),
        ("t.delivery.events", None, b"k1", b"d"),
        ("t.memory", 2, b"k1", b"e"),
        ("t.delivery.events", None, b"k1", b"f"),
    ]
    # the partitioner's choice for keyless partitions: k1 -> 1, k2 -> 0
    partitioner = Partitioner({b"k1": 1, b"k2": 0})
    await send_batched(producer, partitioner, records)
    assert producer.sent == [
        ("t.delivery.events", 1, [(b"k1", b"a"), (b"k1", b"d")]),  # full at two
        ("t.delivery.events", 1, [(b"k1", b"f")]),
        ("t.notify.email", 1, [(b"k1", b"b")]),
        ("t.delivery.events", 0, [(b"k2", b"c")]),
        ("t.memory", 2, [(b"k1", b"e")]),  # a partition given is kept
    ]
    assert partitioner.asked == [[0, 1, 2]] * 5


class Partitioner:
    def __init__(self, chosen: dict[bytes, int]) -> None:
        self.chosen = chosen
        self.asked: list[list[int]] = []

    def __call__(self, key: bytes | None, every: Sequence[int], available: Sequence[int]) -> int:
        self.asked.append(list(every))
        return self.chosen[key or b""]
