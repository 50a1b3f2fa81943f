"""'This incident is closed' is one durable fact: the incident table's changelog, followed by
every worker (processors/closed_incidents.py), read the same whatever worker owns the
incident's partition, and again at once by a worker that starts after the fact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from notifier.contracts.records import Channel, IncidentAcknowledged, IncidentResolved
from notifier.domain import ids
from processors.closed_incidents import ClosedIncidents
from tests.integration.pipeline.conftest import Pipeline, eventually


def changelog(p: Pipeline) -> str:
    return f"{p.settings.topic_prefix}notifier-incident-memory-changelog"


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
