"""The retry agent: holds commands from the delay topics until they are due, then puts them
back on their channel's topic.

Due times carry jitter, so a later message can be due before an earlier one: commands wait
in a heap, not at the head of their partition, and nothing already due waits behind one
that is not. The committed offset of a partition is its oldest command still waiting, so a
restart loses no pending retry (one forwarded out of order may be forwarded twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from notifier.contracts.errors import ContractError
from notifier.contracts.records import SendCommand
from notifier.settings import Settings
from notifier.topics import channel_topic, full_name, retry_topic
from processors.emitter import Emitter
from processors.metrics import RETRY_LATENESS

log = logging.getLogger("notifier.retry")


@dataclass(order=True)
class _Waiting:
    due: float
    seq: int
    tp: TopicPartition = field(compare=False)
    offset: int = field(compare=False)
    command: SendCommand = field(compare=False)


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scheduler: RetryScheduler) -> None:
        self.scheduler = scheduler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.scheduler.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """The new owner starts from the committed offset: nothing to do."""


class RetryScheduler(Service):
    """Consumes every delay topic; forwards each command to notify.<channel> when due."""

    def __init__(self, settings: Settings, emitter: Emitter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.emitter = emitter
        self.topics = [full_name(settings, retry_topic(d)) for d in settings.retry_delays_s]
        self._heap: list[_Waiting] = []
        self._pending: dict[TopicPartition, set[int]] = {}
        self._read_up_to: dict[TopicPartition, int] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"{self.settings.topic_prefix}notifier-retry",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_s * 100),
        )
        self._consumer.subscribe(self.topics, listener=_ForgetRevoked(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop what waits from partitions this worker no longer owns (their new owner
        reads them again from the committed offset)."""
        self._heap = [w for w in self._heap if w.tp not in revoked]
        heapq.heapify(self._heap)
        for tp in revoked:
            self._pending.pop(tp, None)
            self._read_up_to.pop(tp, None)

    @Service.task
    async def _read(self) -> None:
        while not self.should_stop:
            if self._consumer is None:
                await asyncio.sleep(0.05)
                continue
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, messages in fetched.items():
                for msg in messages:
                    await self._hold(tp, msg)
                    self._read_up_to[tp] = msg.offset + 1
            if fetched:
                self._wake.set()
                await self._commit()

    async def _hold(self, tp: TopicPartition, msg: Any) -> None:
        try:
            command = self.emitter.codec.decode(msg.value)
            if not isinstance(command, SendCommand):
                raise ContractError(f"{type(command).__name__} is not a SendCommand")
        except ContractError as exc:
            await self.emitter.dead_letter_message(
                msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.headers, "decode", exc
            )
            return
        due = command.not_before.timestamp() if command.not_before else time.time()
        heapq.heappush(self._heap, _Waiting(due, next(self._seq), tp, msg.offset, command))
        self._pending.setdefault(tp, set()).add(msg.offset)

    @Service.task
    async def _forward(self) -> None:
        while not self.should_stop:
            now = time.time()
            due = []
            while self._heap and self._heap[0].due <= now:
                due.append(heapq.heappop(self._heap))
            if due:
                await self.emitter.send_many(
                    (channel_topic(w.command.channel), w.command.incident_id, w.command)
                    for w in due
                )
                for waiting in due:
                    RETRY_LATENESS.observe(max(0.0, now - waiting.due))
                    self._pending.get(waiting.tp, set()).discard(waiting.offset)
                    log.info(
                        "retry due",
                        extra={
                            "incident_id": waiting.command.incident_id,
                            "notification_id": waiting.command.notification_id,
                            "attempt": waiting.command.attempt,
                        },
                    )
                await self._commit()
                continue
            wait = self._heap[0].due - now if self._heap else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # woken by new commands or the next due
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))

    async def _commit(self) -> None:
        """Commit, per partition, up to the oldest command still waiting."""
        if self._consumer is None:
            return
        offsets = {}
        for tp, read in self._read_up_to.items():
            waiting = self._pending.get(tp)
            offsets[tp] = OffsetAndMetadata(min(waiting) if waiting else read, "")
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:  # a rebalance in progress: the next commit catches up
                log.warning("retry offsets not committed: %s", exc)
