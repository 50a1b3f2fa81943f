"""A worker killed while dispatching a burst writes each notification once: the dispatcher's
outputs, its incident memories and its input offsets are committed together (Kafka
transactions), so what the next owner dispatches again was never visible. And what is read
again after the group's offset moved back is not dispatched again."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.contracts.records import (
    DeliverySent,
    IncidentOpened,
    NotificationQueued,
    Priority,
    SendCommand,
)
from notifier.kafka_io import end_offsets
from notifier.topics import full_name
from tests.integration.pipeline.conftest import Pipeline

pytestmark = pytest.mark.integration

BURST = 1500  # enough that the kill lands while the dispatcher is still at it


def opened(title: str) -> IncidentOpened:
    """An incident paging mailer (email only)."""
    return IncidentOpened(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        incident_id=f"inc-{uuid.uuid4().hex[:12]}",
        title=title,
        priority=Priority.HIGH,
        escalation_level=1,
        user_ids=["mailer"],
    )


def sent_of(event: Any, ids: set[str]) -> bool:
    """Whether `event` is the send of a notification of `ids`' incidents."""
    return isinstance(event, DeliverySent) and event.incident_id in ids


def queued_of(found: list[Any], ids: set[str]) -> Counter[str]:
    """How many times each notification of `ids`' incidents was queued."""
    return Counter(
        e.notification_id
        for e in found
        if isinstance(e, NotificationQueued) and e.incident_id in ids
    )


async def test_a_dispatcher_killed_mid_burst_writes_each_notification_once(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    incidents = [opened(f"burst-{n}") for n in range(BURST)]
    for event in incidents:  # one flush for all: the dispatcher gets them as one burst
        p.publisher.publish("incidents", event.incident_id, event)
    p.publisher.flush()
    ids = {e.incident_id for e in incidents}

    await p.events("delivery.events", None, lambda found: bool(queued_of(found, ids)), 60)
    p.worker.send_signal(signal.SIGKILL)
    p.worker.wait(10)
    before_restart = queued_of(await p.everything_on("delivery.events"), ids)
    # the kill must land mid-burst, or this test proves nothing
    assert 0 < len(before_restart) < BURST, len(before_restart)
    p.start_worker()

    found = await p.events(
        "delivery.events", None, lambda found: len(queued_of(found, ids)) == BURST, 120
    )
    queued = queued_of(found, ids)
    assert len(queued) == BURST  # nothing lost
    assert [n for n, times in queued.items() if times > 1] == []
    commands = Counter(
        c.command_id
        for c in await p.everything_on("notify.email")
        if isinstance(c, SendCommand) and c.incident_id in ids
    )
    assert len(commands) == BURST
    assert [c for c, times in commands.items() if times > 1] == []
    print(f"queued before the restart: {len(before_restart)} of {BURST}")
    # the burst is sent before the next test starts, or its sends would queue behind it
    await p.events(
        "delivery.events",
        None,
        lambda found: len({e.notification_id for e in found if sent_of(e, ids)}) == BURST,
        180,
    )


async def test_events_read_again_after_the_group_offset_moved_back_are_not_dispatched_again(
    clean_sandbox: Pipeline,
) -> None:
    """Kafka keeps whichever offset commit was appended last: a plain commit of Faust's
    between a transaction's offsets and its commit marker moves the group's offset back
    behind what the transaction dispatched. Here the offset is moved back by hand."""
    p = clean_sandbox
    before = end_offsets(p.settings, "incidents")
    incidents = [opened(f"again-{n}") for n in range(20)]
    for event in incidents:
        p.publisher.publish("incidents", event.incident_id, event)
    p.publisher.flush()
    ids = {e.incident_id for e in incidents}
    await p.events("delivery.events", None, lambda found: len(queued_of(found, ids)) == 20, 60)
    ends = end_offsets(p.settings, "incidents")
    await asyncio.to_thread(_committed_to, p, ends, 60)  # the dispatcher's last commits

    p.worker.terminate()  # a clean stop leaves the group empty, so its offsets can be set
    p.worker.wait(60)
    await asyncio.to_thread(_move_back, p, before, 60)
    assert await asyncio.to_thread(_committed, p, before) == before  # or this proves nothing
    p.start_worker()
    await asyncio.to_thread(_committed_to, p, ends, 120)  # read again, all of it

    queued = queued_of(await p.everything_on("delivery.events"), ids)
    assert len(queued) == 20
    assert [n for n, times in queued.items() if times > 1] == []


def _group(p: Pipeline) -> str:
    return f"{p.settings.topic_prefix}notifier"


def _committed(p: Pipeline, partitions: dict[int, int]) -> dict[int, int]:
    """The worker's group's committed offsets of `incidents` `partitions`."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = full_name(p.settings, "incidents")
    admin = AdminClient({"bootstrap.servers": p.settings.kafka_bootstrap})
    request = ConsumerGroupTopicPartitions(
        _group(p), [TopicPartition(topic, n) for n in partitions]
    )
    found = admin.list_consumer_group_offsets([request])[_group(p)].result()
    return {tp.partition: tp.offset for tp in found.topic_partitions}


def _committed_to(p: Pipeline, ends: dict[int, int], timeout_s: float) -> None:
    """Poll until the worker's group has committed `incidents` up to `ends`."""
    deadline = time.monotonic() + timeout_s
    while True:
        committed = _committed(p, ends)
        if all(committed.get(n, -1) >= end for n, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"committed {committed}, wanted {ends}"
        time.sleep(0.2)


def _move_back(p: Pipeline, offsets: dict[int, int], timeout_s: float) -> None:
    """Set the worker's group's `incidents` offsets to `offsets`, once the group is empty."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = full_name(p.settings, "incidents")
    admin = AdminClient({"bootstrap.servers": p.settings.kafka_bootstrap})
    request = ConsumerGroupTopicPartitions(
        _group(p), [TopicPartition(topic, n, offset) for n, offset in offsets.items()]
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.alter_consumer_group_offsets([request])[_group(p)].result()
            return
        except KafkaException as exc:  # members not gone yet
            assert time.monotonic() < deadline, f"offsets not moved back: {exc}"
            time.sleep(0.5)
