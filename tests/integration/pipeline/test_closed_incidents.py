"""'This incident is closed' is one durable fact: the incident table's changelog, followed by
every worker (processors/closed_incidents.py), read the same whatever worker owns the
incident's partition, and again at once by a worker that starts after the fact."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.contracts.records import (
    Channel,
    IncidentAcknowledged,
    IncidentResolved,
    NotificationKind,
    SendCommand,
)
from notifier.domain import ids
from notifier.topics import full_name
from processors.closed_incidents import ClosedIncidents
from processors.incident_memories import memory_topic
from tests.integration.pipeline.conftest import Pipeline, eventually
from tests.integration.pipeline.test_scale import Scale

TERMINAL = ("SENT", "DELIVERED", "FAILED", "CANCELLED")
FIRST_REPEAT = 100  # the test's repeats: far above any the dispatcher queues (REPEAT_MAX)


def changelog(p: Pipeline) -> str:
    return memory_topic(p.settings)


async def test_closed_is_read_by_a_follower_started_before_and_one_started_after(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    acked, resolved, still_open = (p.incident("pushy") for _ in range(3))
    # dispatched: the worker is up and its table's changelog exists
    first = ids.notification_id(still_open.incident_id, 1, "pushy", Channel.PUSH)
    await eventually(lambda: p.row(first), lambda row: row is not None, timeout_s=60)
    running = ClosedIncidents(p.settings, changelog(p))  # a worker that owns no partition
    await running.start()
    try:
        for event, closing in (
            (acked, IncidentAcknowledged),
            (resolved, IncidentResolved),
        ):
            p.publish(
                "incidents",
                event.incident_id,
                closing(
                    event_id=str(uuid.uuid4()),
                    occurred_at=datetime.now(UTC),
                    incident_id=event.incident_id,
                    by_user_id="pushy",
                    via="test",
                ),
            )

        async def statuses(follower: ClosedIncidents) -> list[str]:
            return [follower.status(e.incident_id) for e in (acked, resolved, still_open)]

        expected = ["acknowledged", "resolved", "open"]
        await eventually(lambda: statuses(running), lambda s: s == expected, timeout_s=30)
        # a worker started afterwards (a restart, or a new member) knows it once caught up
        started_after = ClosedIncidents(p.settings, changelog(p))
        await started_after.start()
        try:
            await started_after.ready.wait()
            assert await statuses(started_after) == expected
        finally:
            await started_after.stop()
    finally:
        await running.stop()


@pytest.fixture
async def two_workers(clean_sandbox: Pipeline, tmp_path: Path) -> AsyncIterator[Scale]:
    """The session's worker and one more in its consumer group; the session's worker alone
    again afterwards, as the other tests expect."""
    s = Scale(clean_sandbox, tmp_path)
    await s.settle_on_original()
    try:
        yield s
    finally:
        for worker in list(s.extra):
            s.stop(worker)
        await s.settle_on_original()


def acknowledge(p: Pipeline, incident_id: str) -> None:
    p.publish(
        "incidents",
        incident_id,
        IncidentAcknowledged(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=incident_id,
            by_user_id="mailer",
            via="test",
        ),
    )


def repeat_of(alert: SendCommand, repeat: int) -> SendCommand:
    """The alert's repeat `repeat`, as the dispatcher queues one for an incident nobody has
    acknowledged yet (one that left before the acknowledgement was dispatched)."""
    nid = ids.notification_id(
        alert.incident_id, alert.escalation_level, alert.user_id, alert.channel, repeat=repeat
    )
    return dataclasses.replace(
        alert, notification_id=nid, command_id=ids.command_id(nid, 1), repeat=repeat
    )


async def status_of(p: Pipeline, notification_id: str) -> str | None:
    row = await p.row(notification_id)
    return None if row is None else str(row["status"])


def owner_of_channel_partition(s: Scale, topic: str, partition: int) -> str | None:
    """The member of the worker group that consumes `partition` of `topic`."""
    group = s.admin.describe_consumer_groups([s.group], request_timeout=5)[s.group].result()
    for member in group.members:
        parts = member.assignment.topic_partitions if member.assignment else []
        if any(tp.topic == topic and tp.partition == partition for tp in parts):
            return str(member.client_id)
    return None


async def test_an_incident_acknowledged_on_one_worker_is_closed_on_the_other(
    two_workers: Scale,
) -> None:
    """An incident whose partition worker A owns is acknowledged there; a command for it
    that worker B consumes (a repeat queued before the acknowledgement, on a partition of
    notify.email that B owns) is not sent: B's own table holds none of A's incidents, so
    this is B's reading of the changelog. The NotificationLog shows the command cancelled."""
    s, p = two_workers, two_workers.p
    b = s.start(f"{p.settings.topic_prefix}closed-b")
    owners = await s.settle(2, [s.original.name, b.name])
    part_a, part_b = min(owners[s.original.name]), min(owners[b.name])
    email_topic = full_name(p.settings, "notify.email")
    assert await asyncio.to_thread(owner_of_channel_partition, s, email_topic, part_b) == b.name

    # two incidents on a partition of A, each alert sent; acknowledged there, in this order
    acked, marker = (
        p.incident("mailer", incident_id=s.incident_on(part_a), title="closed across workers")
        for _ in range(2)
    )
    alerts: dict[str, SendCommand] = {}
    for event in (acked, marker):
        nid = ids.notification_id(event.incident_id, 1, "mailer", Channel.EMAIL)
        await eventually(functools.partial(status_of, p, nid), lambda st: st == "SENT", 45, 0.3)
        (alerts[event.incident_id],) = [
            c
            for c in await p.everything_on("notify.email", event.incident_id)
            if isinstance(c, SendCommand) and c.notification_id == nid
        ]
    notices_before = await s.queued(s.original, NotificationKind.ACKNOWLEDGED_NOTICE)
    acknowledge(p, acked.incident_id)
    acknowledge(p, marker.incident_id)
    # A's dispatcher took both acknowledgements (the notices to mailer are its)
    await eventually(
        lambda: s.queued(s.original, NotificationKind.ACKNOWLEDGED_NOTICE),
        lambda n: n - notices_before >= 2,
        30,
        0.3,
    )

    # B has read the changelog past `acked` once it cancels a repeat of `marker`, whose
    # memory was written after `acked`'s on the same partition: until then each probe may
    # still be sent (B had not read it yet), and the next one is published
    probes: dict[str, str | None] = {}
    for repeat in range(FIRST_REPEAT, FIRST_REPEAT + 30):
        probe = repeat_of(alerts[marker.incident_id], repeat)
        p.publish("notify.email", s.incident_on(part_b), probe)
        probes[probe.notification_id] = ended = await eventually(
            functools.partial(status_of, p, probe.notification_id),
            lambda st: st in TERMINAL,
            30,
            0.2,
        )
        if ended == "CANCELLED":
            break
    sent_first = sum(st != "CANCELLED" for st in probes.values())
    assert "CANCELLED" in probes.values(), (
        f"B never read {marker.incident_id} closed: {sent_first} repeats of it sent"
    )
    print(f"B read the acknowledgement after {sent_first} probe(s) were sent")

    # the repeat of the acknowledged incident, on B's partition, and then an alert of an
    # incident still open on the same partition: the open one sent shows B got past the
    # closed one
    late = repeat_of(alerts[acked.incident_id], FIRST_REPEAT)
    key_b = s.incident_on(part_b)
    p.publish("notify.email", key_b, late)
    still_open = p.incident("mailer", incident_id=key_b, title="still open")
    open_nid = ids.notification_id(still_open.incident_id, 1, "mailer", Channel.EMAIL)
    await eventually(lambda: status_of(p, open_nid), lambda st: st == "SENT", 30, 0.3)
    row = await eventually(
        lambda: p.row(late.notification_id),
        lambda r: r is not None and r["status"] == "CANCELLED",
        30,
        0.3,
    )
    assert row is not None and row["error"] == "incident acknowledged"
    assert row["attempt_count"] == 0
    assert not await p.requests(notification_id=late.notification_id)
    assert len(await p.requests(notification_id=open_nid)) == 1
    # the group did not move while it ran: B consumed what was on its partition
    assert await asyncio.to_thread(owner_of_channel_partition, s, email_topic, part_b) == b.name
