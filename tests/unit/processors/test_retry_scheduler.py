"""The retry agent's bookkeeping of one fetch: what waits, and which offsets it commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import Channel, NotificationKind, SendCommand
from notifier.contracts.registry import LocalSchemaRegistry
from notifier.settings import Settings
from processors.retry import RetryScheduler
from tests.messages import Message
from tests.samples import sample


class DeadLetters:
    """Stands in for the emitter: keeps dead letters, runs `meanwhile` while writing one
    (as a rebalance may run while the agent waits for Kafka)."""

    def __init__(self) -> None:
        self.codec = AvroCodec(LocalSchemaRegistry())
        self.dead: list[int] = []
        self.meanwhile: Callable[[], None] = lambda: None

    async def dead_letter_message(self, message: Any, stage: str, error: BaseException) -> None:
        self.meanwhile()
        self.dead.append(message.offset)


def scheduler() -> tuple[RetryScheduler, DeadLetters, TopicPartition]:
    emitter = DeadLetters()
    retry = RetryScheduler(Settings(retry_delays_s=(1,)), emitter)  # type: ignore[arg-type]
    return retry, emitter, TopicPartition(retry.topics[0], 0)


def waiting_command(emitter: DeadLetters, tp: TopicPartition, offset: int) -> Message:
    command = sample(
        SendCommand,
        channel=Channel.EMAIL,
        kind=NotificationKind.ALERT,
        bundled={},
        requested_by=None,
        not_before=None,
    )
    return Message(tp.topic, tp.partition, offset, emitter.codec.encode(command))


async def test_a_fetch_commits_up_to_the_oldest_command_still_waiting() -> None:
    retry, emitter, tp = scheduler()
    garbage = Message(tp.topic, tp.partition, 7, b"not avro")
    await retry.take({tp: [garbage, waiting_command(emitter, tp, 8)]})
    assert emitter.dead == [7]
    assert retry.committable() == {tp: 8}  # the command at 8 still waits


async def test_a_fetch_handled_across_a_rebalance_stops_there() -> None:
    # the partition is revoked while a dead letter is written: the rest of the fetch was
    # for a partition another worker may own now, and nothing of it is committed from here
    retry, emitter, tp = scheduler()
    emitter.meanwhile = lambda: retry.forget({tp})
    garbage = Message(tp.topic, tp.partition, 7, b"not avro")
    await retry.take({tp: [garbage, waiting_command(emitter, tp, 8)]})
    assert emitter.dead == [7]
    assert retry.committable() == {}


class SlowKafka:
    """Stands in for the emitter, its producer and the consumer: each flush waits until let
    go and covers what was queued when it began; each commit notes how many forwarded
    records were in Kafka by then."""

    def __init__(self) -> None:
        self.codec = AvroCodec(LocalSchemaRegistry())
        self.app = SimpleNamespace(producer=self)
        self.queued: list[Any] = []
        self.in_kafka: list[Any] = []
        self.flushes: list[asyncio.Event] = []
        self.commits: list[tuple[int, int]] = []  # (offset committed, records in Kafka)

    async def send_many(self, items: Any) -> None:
        self.queued += [record for _, _, record in items]

    async def flush(self) -> None:
        covered = list(self.queued)
        gate = asyncio.Event()
        self.flushes.append(gate)
        await gate.wait()
        self.in_kafka += [r for r in covered if r not in self.in_kafka]

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        (committed,) = [o.offset for o in offsets.values()]
        self.commits.append((committed, len(self.in_kafka)))


async def until(condition: Callable[[], object], steps: int = 200) -> None:
    """Let the other tasks run until `condition` holds (no timer involved)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("not reached")


async def test_offsets_move_past_a_forwarded_command_only_once_it_is_in_kafka() -> None:
    kafka = SlowKafka()
    retry = RetryScheduler(Settings(retry_delays_s=(1,)), kafka)  # type: ignore[arg-type]
    retry._consumer = kafka
    tp = TopicPartition(retry.topics[0], 0)
    await retry.take({tp: [waiting_command(kafka, tp, 8)]})  # type: ignore[arg-type]
    fetched = asyncio.ensure_future(retry._commit())  # a fetch's commit, its flush slow
    await until(lambda: len(kafka.flushes) == 1)
    # the command comes due and is forwarded while that flush runs
    forwarded = asyncio.ensure_future(retry.forward_due(time.time() + 1))
    await until(lambda: kafka.queued)
    kafka.flushes[0].set()
    await until(lambda: kafka.commits)
    assert kafka.commits == [(8, 0)]  # not past the command: it is not in Kafka yet
    await until(lambda: len(kafka.flushes) == 2)
    kafka.flushes[1].set()
    await asyncio.gather(fetched, forwarded)
    assert kafka.commits == [(8, 0), (9, 1)]
