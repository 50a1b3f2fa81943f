"""A worker killed while dispatching a burst writes each notification once: the dispatcher's
outputs, its incident memories and its input offsets are committed together (Kafka
transactions), so what the next owner dispatches again was never visible."""

from __future__ import annotations

import signal
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
