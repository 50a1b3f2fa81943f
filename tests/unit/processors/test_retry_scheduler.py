"""The retry agent's bookkeeping of one fetch: what waits, and which offsets it commits."""

from __future__ import annotations

from collections.abc import Callable
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
