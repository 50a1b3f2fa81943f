"""Retries through the delay topics (compressed schedule: 1 s, 2 s), on the real pipeline."""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from notifier.contracts.records import (
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
    IncidentAcknowledged,
)
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration


async def _log(pipeline: Pipeline, incident_id: str) -> list[tuple[object, ...]]:
    assert pipeline.settings.database_url is not None
    url = pipeline.settings.database_url.get_secret_value()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT l.channel, l.status, l.attempt_count, count(a.attempt) "
            "FROM notification_log l LEFT JOIN notification_attempt a USING (notification_id) "
            "WHERE l.incident_id = %s GROUP BY 1, 2, 3 ORDER BY 1",
            (incident_id,),
        )
        return await cursor.fetchall()


async def test_two_transient_failures_then_success(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    await p.fault("fcm", fail_next=2, status=503)
    event = p.incident("alice")  # email and push; only push fails
    rows = await eventually(
        lambda: _log(p, event.incident_id), lambda rs: ("PUSH", "SENT", 3, 3) in rs, timeout_s=30
    )
    assert rows == [("EMAIL", "SENT", 1, 1), ("PUSH", "SENT", 3, 3)]
    pushes = sorted(
        (r for r in await p.requests(provider="fcm") if r["incident_id"] == event.incident_id),
        key=lambda r: r["started_at"],
    )
    assert [r["status"] for r in pushes] == [503, 503, 200]
    assert len(await p.requests(provider="smtp", incident_id=event.incident_id)) == 1
    # due-time error: each retry waited its step (1 s, then 2 s) +-20%, and not 1 s longer
    gaps = [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(pushes)]
    assert 0.8 - 0.05 <= gaps[0] <= 1.2 + 1.0, gaps
    assert 1.6 - 0.05 <= gaps[1] <= 2.4 + 1.0, gaps


async def test_the_last_attempt_is_final(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    await p.fault("fcm", fail_next=5, status=503)
    event = p.incident("pushy")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliveryFailed) and e.final for e in found),
        timeout_s=30,
    )
    failures = [(e.attempt, e.final) for e in events if isinstance(e, DeliveryFailed)]
    assert failures == [(1, False), (2, False), (3, True)]
    await eventually(
        lambda: _log(p, event.incident_id), lambda rs: rs == [("PUSH", "FAILED", 3, 3)]
    )


async def test_permanent_failures_are_not_retried(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    await p.fault("fcm", fail_next=1, status=400)
    event = p.incident("pushy")
    await eventually(
        lambda: _log(p, event.incident_id), lambda rs: rs == [("PUSH", "FAILED", 1, 1)]
    )


async def test_an_acknowledgement_cancels_a_waiting_retry(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    # nothing of earlier tests still to be taken (it would take the injected failure)
    await eventually(lambda: _uncommitted(p, "notify.push"), lambda left: left == 0)
    await p.fault("fcm", fail_next=1, status=503)
    event = p.incident("pushy")
    await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliveryFailed) for e in found),
    )
    p.publish(
        "incidents",
        event.incident_id,
        IncidentAcknowledged(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=event.incident_id,
            by_user_id="pushy",
            via="test",
        ),
    )
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliveryCancelled) for e in found),
        timeout_s=20,
    )
    assert not [
        e
        for e in events
        if isinstance(e, DeliverySent)
        and e.channel.value == "PUSH"
        and e.user_id == "pushy"
        and e.attempt > 1
    ]
    alerts = [
        r
        for r in await p.requests(provider="fcm", incident_id=event.incident_id)
        if r["summary"].get("title", "").startswith("[")
    ]
    assert len(alerts) == 1  # the failed first attempt only
    await eventually(
        lambda: _log(p, event.incident_id), lambda rs: ("PUSH", "CANCELLED", 1, 1) in rs
    )


async def test_pending_retries_survive_a_worker_crash(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    # nothing of earlier tests still to be taken (it would take the injected failure)
    await eventually(lambda: _uncommitted(p, "notify.push"), lambda left: left == 0)
    await p.fault("fcm", fail_next=1, status=503)
    event = p.incident("pushy")
    await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliveryFailed) for e in found),
    )
    # the failed attempt's command committed, so the crash tests the retry waiting in
    # notify.retry.1s, not a replay of attempt 1 (at-least-once would send it again)
    await eventually(lambda: _uncommitted(p, "notify.push"), lambda left: left == 0)
    p.worker.send_signal(signal.SIGKILL)  # the retry is waiting in notify.retry.1s
    p.worker.wait(10)
    p.start_worker()
    await eventually(
        lambda: _log(p, event.incident_id), lambda rs: rs == [("PUSH", "SENT", 2, 2)], timeout_s=60
    )


async def _uncommitted(p: Pipeline, logical: str) -> int:
    """Messages of `logical` the worker's group has not committed yet."""
    return await asyncio.to_thread(_count_uncommitted, p, logical)


def _count_uncommitted(p: Pipeline, logical: str) -> int:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    from notifier.kafka_io import end_offsets
    from notifier.topics import full_name

    topic = full_name(p.settings, logical)
    ends = end_offsets(p.settings, logical)
    admin = AdminClient({"bootstrap.servers": p.settings.kafka_bootstrap})
    request = ConsumerGroupTopicPartitions(
        f"{p.settings.topic_prefix}notifier", [TopicPartition(topic, n) for n in ends]
    )
    found = admin.list_consumer_group_offsets([request])[request.group_id].result()
    committed = {tp.partition: max(tp.offset, 0) for tp in found.topic_partitions}
    return sum(end - committed.get(n, 0) for n, end in ends.items())
