"""The NotificationLog in PostgreSQL, fed by the projection running in the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    DeliveryDelivered,
    DeliverySent,
    NotificationKind,
    NotificationQueued,
    Priority,
    Record,
    Tier,
)
from notifier.domain.ids import notification_id
from projections.notification_log import Consumed, apply_batch
from tests.integration.pipeline.conftest import NOW, Pipeline, eventually

pytestmark = pytest.mark.integration


def _db(pipeline: Pipeline) -> str:
    assert pipeline.settings.database_url is not None
    return pipeline.settings.database_url.get_secret_value()


async def _rows(pipeline: Pipeline, incident_id: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(_db(pipeline)) as conn:
        cursor = await conn.execute(
            "SELECT user_id, channel, tier, status, attempt_count, provider, "
            "provider_message_id IS NOT NULL, queued_at IS NOT NULL, sent_at IS NOT NULL "
            "FROM notification_log WHERE incident_id = %s ORDER BY user_id, channel",
            (incident_id,),
        )
        return await cursor.fetchall()


async def test_sent_notifications_appear_in_the_log(pipeline: Pipeline) -> None:
    event = pipeline.incident("alice", "bob")
    rows = await eventually(
        lambda: _rows(pipeline, event.incident_id),
        lambda rs: len(rs) == 3 and all(r[3] == "SENT" for r in rs),
    )
    assert [r[:6] for r in rows] == [
        ("alice", "EMAIL", "PRIMARY", "SENT", 1, "smtp"),
        ("alice", "PUSH", "PRIMARY", "SENT", 1, "fcm"),
        ("bob", "EMAIL", "PRIMARY", "SENT", 1, "smtp"),
    ]
    assert all(r[6] and r[7] and r[8] for r in rows)
    async with await psycopg.AsyncConnection.connect(_db(pipeline)) as conn:
        attempts = await (
            await conn.execute(
                "SELECT a.attempt, a.outcome, a.latency_ms IS NOT NULL FROM notification_attempt a "
                "JOIN notification_log l USING (notification_id) WHERE l.incident_id = %s",
                (event.incident_id,),
            )
        ).fetchall()
        summary = await (
            await conn.execute(
                "SELECT notifications, users, sent FROM incident_summary WHERE incident_id = %s",
                (event.incident_id,),
            )
        ).fetchone()
    assert attempts == [(1, "SENT", True)] * 3
    assert summary == (3, 2, 3)


def _events(incident: str) -> list[Record]:
    nid = notification_id(incident, 1, "carol", Channel.SMS)
    base: dict[str, Any] = {
        "notification_id": nid,
        "incident_id": incident,
        "user_id": "carol",
        "channel": Channel.SMS,
        "occurred_at": NOW,
    }
    return [
        NotificationQueued(
            event_id="q",
            tier=Tier.SECONDARY,
            escalation_level=1,
            priority=Priority.HIGH,
            kind=NotificationKind.ALERT,
            **base,
        ),
        DeliveryDelivered(event_id="d", provider="twilio", provider_message_id="SM1", **base),
        DeliveryAttempted(event_id="a", attempt=1, provider="twilio", **base),
        DeliverySent(
            event_id="s",
            attempt=1,
            provider="twilio",
            provider_message_id="SM1",
            latency_ms=12,
            **base,
        ),
    ]


async def test_replaying_a_batch_changes_nothing_and_delivered_beats_a_late_sent(
    pipeline: Pipeline,
) -> None:
    incident = "inc-replay-1"
    batch = [Consumed("replay", 0, n, e) for n, e in enumerate(_events(incident))]
    snapshot = (
        "SELECT l.*, a.* FROM notification_log l JOIN notification_attempt a "
        "USING (notification_id) WHERE l.incident_id = %s"
    )
    async with await psycopg.AsyncConnection.connect(_db(pipeline)) as conn:
        async with conn.transaction():
            written = await apply_batch(conn, batch, {("replay", 0): 4})
        first = await (await conn.execute(snapshot, (incident,))).fetchall()
        async with conn.transaction():
            again = await apply_batch(conn, batch, {("replay", 0): 4})
        second = await (await conn.execute(snapshot, (incident,))).fetchall()
        # these rows never went through Kafka: leave no trace for the rebuild comparison
        await conn.execute("DELETE FROM notification_log WHERE incident_id = %s", (incident,))
        await conn.execute("DELETE FROM projection_offset WHERE topic = 'replay'")
        await conn.commit()
    assert written == 1 and again == 0
    assert first == second
    status = [c for c in first[0] if c in ("DELIVERED", "SENT")]
    assert status[0] == "DELIVERED"  # the row's status, not the attempt's outcome


# (offsets of the batch held open, offsets of the batch written meanwhile), of the events
# queued (0), attempted (2) and sent (3) of _events: two owners of one partition in a
# rebalance, the old one still writing what it fetched as the new one starts
OVERLAPS = {
    "the later batch folds onto the row the earlier one creates": ([0], [2, 3]),
    "an earlier batch does not fold over the row a later one wrote": ([0, 2, 3], [0]),
}


@pytest.mark.parametrize("held, meanwhile", OVERLAPS.values(), ids=list(OVERLAPS))
async def test_two_owners_of_a_partition_lose_no_event(
    pipeline: Pipeline, held: list[int], meanwhile: list[int]
) -> None:
    incident = f"inc-overlap-{held[-1]}-{meanwhile[-1]}"
    topic = f"overlap-{len(held)}"
    events = _events(incident)

    def batch(offsets: list[int]) -> tuple[list[Consumed], dict[tuple[str, int], int]]:
        return [Consumed(topic, 0, n, events[n]) for n in offsets], {(topic, 0): offsets[-1] + 1}

    async def waiting_for_a_lock(conn: psycopg.AsyncConnection[Any], pid: int) -> bool:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = %s", (pid,)
        )
        row = await cursor.fetchone()
        return row is not None and row[0] > 0

    async def write_meanwhile(conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await apply_batch(conn, *batch(meanwhile))

    db = _db(pipeline)
    async with (
        await psycopg.AsyncConnection.connect(db) as first,
        await psycopg.AsyncConnection.connect(db) as second,
        await psycopg.AsyncConnection.connect(db, autocommit=True) as watch,
    ):
        await apply_batch(first, *batch(held))  # its transaction stays open
        other = asyncio.create_task(write_meanwhile(second))
        # it either waits for the first transaction or has finished without waiting
        pid = second.info.backend_pid
        await eventually(lambda: waiting_for_a_lock(watch, pid), lambda w: w or other.done())
        await first.commit()
        await other
        row = await (
            await watch.execute(
                "SELECT status, attempt_count FROM notification_log WHERE incident_id = %s",
                (incident,),
            )
        ).fetchall()
        # these rows never went through Kafka: leave no trace for the rebuild comparison
        await watch.execute("DELETE FROM notification_log WHERE incident_id = %s", (incident,))
        await watch.execute("DELETE FROM projection_offset WHERE topic = %s", (topic,))
    assert row == [("SENT", 1)]
