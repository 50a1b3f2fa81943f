"""The retry agent: holds commands from the delay topics until they are due, then puts them
back on their channel's topic. Every other timer of the pipeline waits here the same way
(see WAITING): receipt deadlines, repeats of unacknowledged incidents, throttle windows.

It also reads `incidents`: when one is acknowledged or resolved, the alerts of it that are
waiting here are cancelled at once (DeliveryCancelled), not when they come due. Its
consumer uses range assignment, so a worker owns the same partition numbers of every topic
(all are keyed by incident): the acknowledgement and the retries of an incident meet.

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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from notifier.contracts.errors import ContractError
from notifier.contracts.records import (
    DeliveryCancelled,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    NotificationKind,
    ReceiptDue,
    Record,
    RepeatDue,
    SendCommand,
    ThrottleFlushDue,
)
from notifier.settings import Settings
from notifier.topics import channel_topic, full_name, retry_topic
from processors.channels import delivery_fields
from processors.closed_incidents import ClosedIncidents
from processors.emitter import Emitter
from processors.metrics import RETRY_LATENESS

CLOSED_REMEMBERED = 100_000  # acknowledged/resolved incidents kept in memory, newest
INCIDENTS_COMMIT_EVERY_S = 1.0  # how often offsets of incidents that changed nothing are committed
Waiting = SendCommand | ReceiptDue | RepeatDue | ThrottleFlushDue
# the topics whose records wait here, besides the retry topics of the backoff schedule
TIMER_TOPICS = ("receipt.deadlines", "notify.repeats", "throttle.timers")


def due_time(item: Waiting) -> float:
    """When `item` is due (unix seconds)."""
    if isinstance(item, SendCommand):
        return item.not_before.timestamp() if item.not_before else time.time()
    return item.due_at.timestamp()


def target(item: Waiting) -> tuple[str, str, Record]:
    """Where a due item goes: a command back to its channel, a receipt deadline to the
    escalation, a repeat to the dispatcher, a throttle window to the throttle."""
    if isinstance(item, SendCommand):
        return channel_topic(item.channel), item.incident_id, item
    if isinstance(item, ReceiptDue):
        return "delivery.events", item.incident_id, item
    if isinstance(item, RepeatDue):
        return "dispatch.commands", item.incident_id, item
    return "notify.throttle", item.user_id, item


log = logging.getLogger("notifier.retry")


@dataclass(order=True)
class _Waiting:
    due: float
    seq: int
    tp: TopicPartition = field(compare=False)
    offset: int = field(compare=False)
    command: Waiting = field(compare=False)


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scheduler: RetryScheduler) -> None:
        self.scheduler = scheduler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.scheduler.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """The new owner starts from the committed offset: nothing to do."""


class RetryScheduler(Service):
    """Consumes every delay topic; forwards each command to notify.<channel> when due."""

    def __init__(
        self,
        settings: Settings,
        emitter: Emitter,
        closed: ClosedIncidents | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.emitter = emitter
        # incidents closed before this worker's committed offsets of `incidents`, or on
        # partitions of `incidents` another worker reads: the durable fact
        self.closed = closed
        self.topics = [full_name(settings, retry_topic(d)) for d in settings.every_retry_delay]
        self.topics += [full_name(settings, t) for t in TIMER_TOPICS]
        self.incidents_topic = full_name(settings, "incidents")
        # what this worker's own partitions of `incidents` said last, newest last
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._heap: list[_Waiting] = []
        self._pending: dict[TopicPartition, set[int]] = {}
        self._read_up_to: dict[TopicPartition, int] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._committed_at = 0.0
        self._revocations = 0  # rebalances seen, so a fetch handled across one stops
        self._committing = asyncio.Lock()

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"{self.settings.topic_prefix}notifier-retry",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # the dispatcher writes the repeats and throttle timers in transactions: an
            # aborted one's records were never meant (docs/ARCHITECTURE.md)
            isolation_level="read_committed",
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_s * 100),
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self._consumer.subscribe(
            [*self.topics, self.incidents_topic], listener=_ForgetRevoked(self)
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop what waits from partitions this worker no longer owns (their new owner
        reads them again from the committed offset)."""
        self._revocations += 1
        self._heap = [w for w in self._heap if w.tp not in revoked]
        heapq.heapify(self._heap)
        for tp in revoked:
            self._pending.pop(tp, None)
            self._read_up_to.pop(tp, None)

    def _status(self, incident_id: str) -> str:
        seen = self._closed.get(incident_id)
        if seen is not None:
            return seen
        return self.closed.status(incident_id) if self.closed is not None else "open"

    @Service.task
    async def _read(self) -> None:
        if self.closed is not None:
            await self.closed.ready.wait()  # nothing is held before "closed" is known
        while not self.should_stop:
            if self._consumer is None:
                await asyncio.sleep(0.05)
                continue
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            if not fetched:
                continue
            waiting_before = len(self._heap)
            await self.take(fetched)
            self._wake.set()
            # incidents that cancelled nothing change nothing if read again, so their offsets
            # are committed at most once a second, not on every fetch (a producer flush and a
            # commit per fetch under load: most of what this consumer cost)
            only_incidents = all(tp.topic == self.incidents_topic for tp in fetched)
            if only_incidents and len(self._heap) == waiting_before and not self._commit_due():
                continue
            await self._commit()

    async def take(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Hold what one fetch brought. A rebalance during it (while a dead letter or a
        cancellation is written) ends it: what is left was fetched for partitions this
        worker may no longer own, and their offsets must not be committed from here
        (the broker takes a commit from any member, whoever owns the partition now)."""
        revocations = self._revocations
        for tp, messages in fetched.items():
            for msg in messages:
                # only `_hold` awaits (a dead letter, a cancellation): a rebalance comes there
                await self._hold(tp, msg)
                if self._revocations != revocations:
                    return
                self._read_up_to[tp] = msg.offset + 1

    def _commit_due(self) -> bool:
        return time.monotonic() - self._committed_at >= INCIDENTS_COMMIT_EVERY_S

    async def _hold(self, tp: TopicPartition, msg: Any) -> None:
        if msg.topic == self.incidents_topic:
            await self._incident(msg)
            return
        try:
            waiting = self.emitter.codec.decode(msg.value)
            if not isinstance(waiting, Waiting):
                raise ContractError(f"{type(waiting).__name__} does not wait on {msg.topic}")
        except ContractError as exc:
            await self.emitter.dead_letter_message(msg, "decode", exc)
            return
        if isinstance(waiting, SendCommand) and self._cancelled(waiting):
            await self._cancel([waiting], self._status(waiting.incident_id))
            return
        if isinstance(waiting, RepeatDue) and self._status(waiting.incident_id) != "open":
            return  # the incident was acknowledged: no more repeats
        heapq.heappush(
            self._heap, _Waiting(due_time(waiting), next(self._seq), tp, msg.offset, waiting)
        )
        self._pending.setdefault(tp, set()).add(msg.offset)

    def _cancelled(self, command: SendCommand) -> bool:
        # bundles are the channel sender's to split; resends were asked for by hand
        return (
            command.kind is NotificationKind.ALERT
            and not command.bundled
            and not command.requested_by
            and self._status(command.incident_id) != "open"
        )

    async def _incident(self, msg: Any) -> None:
        """An acknowledgement or resolution cancels the incident's waiting alerts now."""
        try:
            event = self.emitter.codec.decode(msg.value)
        except ContractError:
            return  # the dispatcher dead-letters it; one dead letter per message
        if isinstance(event, IncidentOpened | IncidentEscalated):
            # opened again after it was resolved: its alerts are wanted again (as the
            # dispatcher's memory reopens it)
            # (said here, not forgotten: the changelog may still say "resolved" a moment)
            if self._status(event.incident_id) == "resolved":
                self._closed[event.incident_id] = "open"
            return
        if not isinstance(event, IncidentAcknowledged | IncidentResolved):
            return
        status = "resolved" if isinstance(event, IncidentResolved) else "acknowledged"
        if self._closed.get(event.incident_id) != "resolved":
            self._closed[event.incident_id] = status
        self._closed.move_to_end(event.incident_id)
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        stopped = [
            w
            for w in self._heap
            if (isinstance(w.command, SendCommand) and self._cancelled(w.command))
            or (isinstance(w.command, RepeatDue) and w.command.incident_id == event.incident_id)
        ]
        if not stopped:
            return
        self._heap = [w for w in self._heap if w not in stopped]
        heapq.heapify(self._heap)
        await self._cancel(
            [w.command for w in stopped if isinstance(w.command, SendCommand)], status
        )
        for waiting in stopped:
            self._pending.get(waiting.tp, set()).discard(waiting.offset)
            if isinstance(waiting.command, RepeatDue):
                log.info(
                    "repeat %d stopped: incident %s",
                    waiting.command.repeat,
                    status,
                    extra={"incident_id": waiting.command.incident_id},
                )

    async def _cancel(self, commands: list[SendCommand], status: str) -> None:
        await self.emitter.send_many(
            (
                "delivery.events",
                c.incident_id,
                DeliveryCancelled(**delivery_fields(c, "cancelled"), reason=f"incident {status}"),
            )
            for c in commands
        )
        for command in commands:
            log.info(
                "retry cancelled: incident %s",
                status,
                extra={
                    "incident_id": command.incident_id,
                    "notification_id": command.notification_id,
                },
            )

    async def forward_due(self, now: float) -> bool:
        """Forward what is due at `now`, then commit past it; whether anything was due."""
        due = []
        while self._heap and self._heap[0].due <= now:
            due.append(heapq.heappop(self._heap))
        if not due:
            return False
        await self.emitter.send_many(target(w.command) for w in due)
        for waiting in due:
            RETRY_LATENESS.observe(max(0.0, now - waiting.due))
            self._pending.get(waiting.tp, set()).discard(waiting.offset)
            log.info(
                "%s due",
                type(waiting.command).__name__,
                extra={
                    "incident_id": getattr(waiting.command, "incident_id", None),
                    "notification_id": getattr(waiting.command, "notification_id", None),
                },
            )
        await self._commit()
        return True

    @Service.task
    async def _forward(self) -> None:
        while not self.should_stop:
            now = time.time()
            if await self.forward_due(now):
                continue
            wait = self._heap[0].due - now if self._heap else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # woken by new commands or the next due
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition read here, the offset to commit: its oldest command still waiting,
        else the end of what was read."""
        return {
            tp: min(self._pending[tp]) if self._pending.get(tp) else read
            for tp, read in self._read_up_to.items()
        }

    async def _commit(self) -> None:
        """Commit, per partition, up to the oldest command still waiting, once what was
        forwarded before it is in Kafka."""
        if self._consumer is None:
            return
        async with self._committing:  # one at a time, so the offsets never go back
            # The offsets are taken before the flush, which waits only for what was queued
            # when it began: a command forwarded while it runs is not covered by it, and
            # offsets taken after it would move past that command all the same (the drill
            # lost five retries so: forwarded during a slow flush, committed by a commit
            # that had started before, the worker killed before the broker had them).
            offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self.committable().items()}
            revocations = self._revocations
            await self.emitter.app.producer.flush()
            self._committed_at = time.monotonic()
            if not offsets or self._revocations != revocations:
                return  # after a rebalance some may be another worker's: the next commit
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:  # a rebalance in progress: the next commit catches up
                log.warning("retry offsets not committed: %s", exc)
