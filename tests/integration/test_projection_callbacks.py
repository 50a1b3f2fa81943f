"""Provider callbacks in the NotificationLog projection, against the real PostgreSQL: stored
once each, folded when their notification's row exists, in whichever order they come."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryFailed,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    Record,
    Tier,
)
from notifier.contracts.registry import LocalSchemaRegistry
from notifier.kafka_io import Publisher
from notifier.settings import Settings
from notifier.topics import full_name
from projections.migrate import migrate
from projections.notification_log import TOPICS, Consumed, apply_batch
from tests.samples import SmsNotification, at

pytestmark = pytest.mark.integration
T = TypeVar("T")
OFFSETS = itertools.count()


@contextlib.contextmanager
def fresh_database(base: str, label: str) -> Iterator[str]:
    """A new database on the test server, dropped afterwards."""
    name = f"notifier_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def db(stack_env: dict[str, str]) -> Iterator[str]:
    """A migrated database of this module's own (no worker writes to it)."""
    with fresh_database(stack_env["DATABASE_URL"], "callbacks") as url:
        migrate(url)
        yield url


@pytest.fixture
async def conn(db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(db) as connection:
        yield connection


def consumed(*records: Record) -> tuple[list[Consumed], dict[tuple[str, int], int]]:
    """A batch as the runner makes it: each record at the next offset of its topic."""
    batch = [
        Consumed(
            "provider.callbacks" if isinstance(r, ProviderCallback) else "delivery.events",
            0,
            next(OFFSETS),
            r,
        )
        for r in records
    ]
    offsets = {(c.topic, c.partition): c.offset + 1 for c in batch}
    return batch, offsets


async def fold(conn: psycopg.AsyncConnection[Any], *records: Record) -> int:
    """Apply one batch of `records` in its own transaction, as the runner does."""
    batch, offsets = consumed(*records)
    async with conn.transaction():
        return await apply_batch(conn, batch, offsets)


async def row(conn: psycopg.AsyncConnection[Any], nid: str) -> dict[str, Any] | None:
    cursor = await conn.execute(
        "SELECT status, provider, provider_message_id, error, error_category, sent_at, "
        "delivered_at, failed_at FROM notification_log WHERE notification_id = %s",
        (nid,),
    )
    found = await cursor.fetchone()
    if found is None:
        return None
    assert cursor.description is not None
    return dict(zip([c.name for c in cursor.description], found, strict=True))


async def callbacks(conn: psycopg.AsyncConnection[Any], nid: str) -> list[tuple[Any, ...]]:
    """(status, raw_status, error, occurred_at, applied) of a notification's callbacks."""
    cursor = await conn.execute(
        "SELECT status, raw_status, error, occurred_at, applied_at IS NOT NULL "
        "FROM provider_callback WHERE notification_id = %s ORDER BY occurred_at, event_id",
        (nid,),
    )
    return await cursor.fetchall()


@pytest.mark.parametrize("later", [False, True], ids=["same batch", "later batch"])
async def test_a_delivered_callback_before_its_notification_is_folded_when_the_row_comes(
    conn: psycopg.AsyncConnection[Any], later: bool
) -> None:
    n = SmsNotification()
    delivered = n.callback(CallbackStatus.DELIVERED, 9)
    if later:
        assert await fold(conn, delivered) == 0
        assert await row(conn, n.id) is None
        assert await callbacks(conn, n.id) == [("DELIVERED", "delivered", None, at(9), False)]
        written = await fold(conn, *n.events())
    else:
        written = await fold(conn, delivered, *n.events())

    assert written == 1
    found = await row(conn, n.id)
    assert found is not None
    assert (found["status"], found["delivered_at"], found["sent_at"]) == ("DELIVERED", at(9), at(2))
    assert await callbacks(conn, n.id) == [("DELIVERED", "delivered", None, at(9), True)]


async def test_the_first_event_of_a_notification_folds_what_waited_for_it(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    await fold(conn, n.callback(CallbackStatus.DELIVERED, 9))
    await fold(conn, n.queued())  # the row exists from here on
    found = await row(conn, n.id)
    assert found is not None and found["status"] == "DELIVERED"
    await fold(conn, n.attempted(), n.sent())  # and late events do not move it back
    found = await row(conn, n.id)
    assert found is not None
    assert (found["status"], found["delivered_at"], found["provider"]) == (
        "DELIVERED",
        at(9),
        "twilio",
    )


async def test_waiting_callbacks_are_folded_in_the_providers_order(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    # consumed out of order: the message was delivered (t=9), then bounced (t=12)
    await fold(conn, n.callback(CallbackStatus.FAILED, 12, raw="bounce"))
    await fold(conn, n.callback(CallbackStatus.DELIVERED, 9))
    await fold(conn, *n.events())
    found = await row(conn, n.id)
    assert found is not None
    # in the provider's order the bounce comes after delivery and changes nothing; in the
    # order they were consumed the row would have ended FAILED
    assert (found["status"], found["delivered_at"], found["error"]) == ("DELIVERED", at(9), None)
    assert [c[-1] for c in await callbacks(conn, n.id)] == [True, True]


async def test_a_callback_behind_a_waiting_one_waits_for_it(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    await fold(conn, n.callback(CallbackStatus.DELIVERED, 9))
    # the bounce is read after the row exists, but the delivery it follows is still waiting:
    # folded at once it would come first and end the row FAILED
    await fold(conn, *n.events(), n.callback(CallbackStatus.FAILED, 12, raw="bounce"))
    found = await row(conn, n.id)
    assert found is not None and (found["status"], found["error"]) == ("DELIVERED", None)
    assert [c[-1] for c in await callbacks(conn, n.id)] == [True, True]


async def test_a_late_sent_callback_after_delivered_changes_nothing(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    await fold(conn, *n.events(), n.callback(CallbackStatus.DELIVERED, 9))
    before = await row(conn, n.id)
    assert before is not None and before["status"] == "DELIVERED"
    assert await fold(conn, n.callback(CallbackStatus.SENT, 11)) == 0
    assert await row(conn, n.id) == before
    assert [c[0] for c in await callbacks(conn, n.id)] == ["DELIVERED", "SENT"]  # both heard


async def test_a_bounce_after_sent_fails_the_notification_with_the_providers_error(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    await fold(conn, *n.events())
    bounce = n.callback(
        CallbackStatus.FAILED, 12, raw="undelivered", error="30005 unknown destination"
    )
    assert await fold(conn, bounce) == 1
    found = await row(conn, n.id)
    assert found is not None
    assert (found["status"], found["error"], found["error_category"], found["failed_at"]) == (
        "FAILED",
        "30005 unknown destination",
        "PERMANENT",
        at(12),
    )
    assert found["sent_at"] == at(2) and found["delivered_at"] is None


async def _snapshot(conn: psycopg.AsyncConnection[Any], incident_ids: Sequence[str]) -> Any:
    queries = [
        "SELECT * FROM notification_log WHERE incident_id = ANY(%s) ORDER BY notification_id",
        "SELECT a.* FROM notification_attempt a JOIN notification_log l USING (notification_id) "
        "WHERE l.incident_id = ANY(%s) ORDER BY a.notification_id, a.attempt",
        "SELECT * FROM provider_callback WHERE incident_id = ANY(%s) ORDER BY event_id",
    ]
    return [await (await conn.execute(q, (list(incident_ids),))).fetchall() for q in queries]


async def test_replaying_a_batch_changes_nothing(conn: psycopg.AsyncConnection[Any]) -> None:
    first, second, orphan = SmsNotification(), SmsNotification("dave"), SmsNotification("erin")
    delivered = first.callback(CallbackStatus.DELIVERED, 9)
    records: list[Record] = [
        delivered,
        *first.events(),
        delivered,  # the bridge published it twice
        *second.events(),
        second.callback(CallbackStatus.SENT, 3),
        second.callback(CallbackStatus.FAILED, 12, raw="bounce"),
        orphan.callback(CallbackStatus.DELIVERED, 7),  # its events never come
    ]
    batch, offsets = consumed(*records)
    incidents = [first.incident_id, second.incident_id, orphan.incident_id]

    async with conn.transaction():
        written = await apply_batch(conn, batch, offsets)
    once = await _snapshot(conn, incidents)
    async with conn.transaction():
        again = await apply_batch(conn, batch, offsets)
    twice = await _snapshot(conn, incidents)

    assert (written, again) == (2, 0)
    assert once == twice
    rows = [await row(conn, n.id) for n in (first, second, orphan)]
    assert [r and (r["status"], r["error"]) for r in rows] == [
        ("DELIVERED", None),
        ("FAILED", "bounce"),
        None,
    ]
    stored = sorted((r[0].split("-cb-")[1], r[-1] is not None) for r in once[2])
    # the duplicate is stored once; the orphan waits for a row
    assert stored == [
        ("bounce-12", True),
        ("delivered-7", False),
        ("delivered-9", True),
        ("sent-3", True),
    ]


async def test_a_batch_that_did_not_commit_replays_as_if_new(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    n = SmsNotification()
    await fold(conn, n.callback(CallbackStatus.DELIVERED, 9))
    batch, offsets = consumed(*n.events(), n.callback(CallbackStatus.SENT, 11))

    class CrashError(Exception):
        pass

    with pytest.raises(CrashError):
        async with conn.transaction():
            await apply_batch(conn, batch, offsets)
            raise CrashError  # the worker died before the commit: nothing of the batch stays
    assert await row(conn, n.id) is None
    assert [c[-1] for c in await callbacks(conn, n.id)] == [False]

    async with conn.transaction():
        assert await apply_batch(conn, batch, offsets) == 1
    found = await row(conn, n.id)
    assert found is not None and (found["status"], found["delivered_at"]) == ("DELIVERED", at(9))
    assert [c[-1] for c in await callbacks(conn, n.id)] == [True, True]


# --- through Kafka: the runner consumes both topics, and a rebuild reads both back ---------


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout_s: float = 30
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last: {value!r}")
        await asyncio.sleep(0.1)


@pytest.fixture
def scratch(settings: Settings) -> Iterator[Settings]:
    """Settings with the projection's two topics under a prefix of this test only."""
    from confluent_kafka.admin import AdminClient, NewTopic

    prefix = f"{settings.topic_prefix}cb{uuid.uuid4().hex[:6]}."
    scratch = settings.model_copy(update={"topic_prefix": prefix})
    names = [full_name(scratch, t) for t in TOPICS]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(n, 3, 1) for n in names]).values():
        fut.result()
    yield scratch
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        fut.result()


KAFKA_SNAPSHOT = [
    "SELECT notification_id, incident_id, user_id, channel, tier, escalation_level, priority, "
    "kind, repeat, status, provider, provider_message_id, error, error_category, "
    "attempt_count, queued_at, sent_at, delivered_at, failed_at, cancelled_at, "
    "last_attempt_at FROM notification_log ORDER BY notification_id",
    "SELECT * FROM notification_attempt ORDER BY notification_id, attempt",
    "SELECT event_id, notification_id, incident_id, channel, provider, provider_message_id, "
    "status, raw_status, error, occurred_at, received_at, applied_at IS NOT NULL "
    "FROM provider_callback ORDER BY event_id",
    "SELECT topic, partition, next_offset FROM projection_offset ORDER BY topic, partition",
]


async def test_the_runner_and_a_rebuild_fold_both_topics(
    scratch: Settings, stack_env: dict[str, str]
) -> None:
    from projections.rebuild import rebuild
    from projections.runner import ProjectionRunner

    codec = AvroCodec(LocalSchemaRegistry())
    publisher = Publisher(scratch, codec)
    first, bounced, orphan = SmsNotification(), SmsNotification("dave"), SmsNotification("erin")
    base = stack_env["DATABASE_URL"]
    with fresh_database(base, "live") as live, fresh_database(base, "rebuilt") as rebuilt:
        migrate(live)
        runner = ProjectionRunner(scratch, codec, live)
        await runner.start()
        try:
            async with await psycopg.AsyncConnection.connect(live, autocommit=True) as conn:
                # the provider answers before the projection has seen the notification
                publisher.publish(
                    "provider.callbacks",
                    first.incident_id,
                    first.callback(CallbackStatus.DELIVERED, 9),
                )
                publisher.publish(
                    "provider.callbacks",
                    orphan.incident_id,
                    orphan.callback(CallbackStatus.SENT, 4),
                )
                publisher.flush()
                await eventually(lambda: callbacks(conn, first.id), lambda cs: len(cs) == 1)
                assert await row(conn, first.id) is None
                for n in (first, bounced):
                    for record in n.events():
                        publisher.publish("delivery.events", n.incident_id, record)
                publisher.publish(
                    "provider.callbacks",
                    bounced.incident_id,
                    bounced.callback(
                        CallbackStatus.FAILED, 12, raw="bounce", error="550 no such user"
                    ),
                )
                publisher.flush()

                async def statuses() -> list[Any]:
                    return [await row(conn, n.id) for n in (first, bounced)]

                found = await eventually(
                    statuses,
                    lambda rs: [r and r["status"] for r in rs] == ["DELIVERED", "FAILED"],
                )
                assert found[0] is not None and found[0]["delivered_at"] == at(9)
                assert found[1] is not None and found[1]["error"] == "550 no such user"
                assert [c[-1] for c in await callbacks(conn, first.id)] == [True]
                assert [c[-1] for c in await callbacks(conn, orphan.id)] == [False]
                stored_topics = await (
                    await conn.execute("SELECT DISTINCT topic FROM projection_offset")
                ).fetchall()
                assert sorted(t for (t,) in stored_topics) == sorted(
                    full_name(scratch, t) for t in ("delivery.events", "provider.callbacks")
                )
        finally:
            await runner.stop()
            publisher.flush()

        def snapshot(url: str) -> list[list[tuple[Any, ...]]]:
            with psycopg.connect(url) as sync:
                return [sync.execute(q).fetchall() for q in KAFKA_SNAPSHOT]

        seen: list[tuple[int, int]] = []
        result = await rebuild(
            scratch, codec, rebuilt, lambda done, total: seen.append((done, total))
        )
        assert (result.events, result.skipped) == (9, 0)
        assert seen and seen[-1] == (9, 9)
        assert snapshot(rebuilt) == snapshot(live)


async def test_an_event_the_database_refuses_is_dead_lettered_and_the_rest_projected(
    scratch: Settings, stack_env: dict[str, str]
) -> None:
    """A NUL in a text field is refused by PostgreSQL: that event alone goes to the dead
    letters with the database's message; the events around it, in the same batch and after
    it, are projected and the offsets move past it."""
    from projections.runner import ProjectionRunner

    codec = AvroCodec(LocalSchemaRegistry())
    publisher = Publisher(scratch, codec)
    dead: list[tuple[str, int, str, str]] = []

    async def dead_letter(msg: Any, stage: str, error: BaseException) -> None:
        dead.append((msg.topic, msg.offset, stage, str(error)))

    before, poisoned, after = SmsNotification("ann"), SmsNotification("ben"), SmsNotification("cat")
    poison = dataclasses.replace(poisoned.sent(), provider_message_id="SM\x00broken")
    with fresh_database(stack_env["DATABASE_URL"], "poison") as live:
        migrate(live)
        runner = ProjectionRunner(scratch, codec, live, dead_letter)
        await runner.start()
        try:
            # one incident key for all three: one partition, in this order, likely one batch
            key = before.incident_id
            for record in [*before.events(), poisoned.queued(), poison, *after.events()]:
                publisher.publish("delivery.events", key, record)
            publisher.flush()
            async with await psycopg.AsyncConnection.connect(live, autocommit=True) as conn:

                async def statuses() -> list[Any]:
                    return [await row(conn, n.id) for n in (before, poisoned, after)]

                found = await eventually(
                    statuses,
                    lambda rs: [r and r["status"] for r in rs] == ["SENT", "QUEUED", "SENT"],
                )
                assert found[1] is not None and found[1]["provider_message_id"] is None

                async def letters() -> list[tuple[str, int, str, str]]:
                    return dead

                await eventually(letters, lambda d: len(d) == 1)
                [(topic, offset, stage, reason)] = dead
                assert topic == full_name(scratch, "delivery.events") and stage == "project"
                assert offset == 4  # the fifth message of the partition
                assert "0x00" in reason  # the NUL, named by PostgreSQL
                stored = await (
                    await conn.execute("SELECT sum(next_offset) FROM projection_offset")
                ).fetchone()
                assert stored is not None and stored[0] == 8  # every message, the poison too
        finally:
            await runner.stop()


async def test_people_are_kept_as_their_latest_profile_and_forgotten_when_deleted(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """A tombstone on the users topic removes the person's contact details from SQL."""
    from notifier.contracts.records import UserProfile
    from notifier.domain.incident_status import ProfileDeleted

    user = f"u-{uuid.uuid4().hex[:8]}"

    def profile(s: int, email: str) -> UserProfile:
        return UserProfile(user_id=user, name="Dee", updated_at=at(s), email=email)

    async def person() -> tuple[Any, ...] | None:
        cursor = await conn.execute("SELECT name, email FROM person WHERE user_id = %s", (user,))
        return await cursor.fetchone()

    await fold(conn, profile(10, "dee@example.com"), profile(5, "old@example.com"))
    assert await person() == ("Dee", "dee@example.com")  # the newer profile, whatever the order
    await fold(conn, ProfileDeleted(user))  # type: ignore[arg-type]
    assert await person() is None


async def test_an_incidents_details_and_info_priority_reach_its_row(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """The incident row keeps the team, alert count, trigger time and dashboard; an INFO
    incident and an INFO notification pass the tables' priority checks."""
    from notifier.contracts.records import (
        Channel,
        IncidentEscalated,
        IncidentOpened,
    )

    incident = f"inc-{uuid.uuid4().hex[:8]}"
    common: dict[str, Any] = {
        "incident_id": incident,
        "title": "certificate renews in 30 days",
        "priority": Priority.INFO,
        "user_ids": ["alice"],
    }
    opened = IncidentOpened(
        event_id=f"{incident}-o",
        occurred_at=at(10),
        escalation_level=1,
        service="edge",
        team_name="Platform",
        alert_count=2,
        triggered_at=at(5),
        dashboard_url="https://grafana.example.com/d/edge",
        **common,
    )
    # an escalation that names only some details: the rest stay as they were
    escalated = IncidentEscalated(
        event_id=f"{incident}-e", occurred_at=at(20), escalation_level=2, alert_count=4, **common
    )
    nid = str(uuid.uuid4())
    queued = NotificationQueued(
        event_id=f"{incident}-q",
        occurred_at=at(11),
        notification_id=nid,
        incident_id=incident,
        user_id="alice",
        channel=Channel.EMAIL,
        tier=Tier.PRIMARY,
        escalation_level=1,
        priority=Priority.INFO,
        kind=NotificationKind.ALERT,
    )
    await fold(conn, opened, queued, escalated)
    cursor = await conn.execute(
        "SELECT priority, service, team_name, alert_count, triggered_at, dashboard_url, "
        "escalation_level FROM incident WHERE incident_id = %s",
        (incident,),
    )
    assert await cursor.fetchone() == (
        "INFO",
        "edge",
        "Platform",
        4,
        at(5),
        "https://grafana.example.com/d/edge",
        2,
    )
    cursor = await conn.execute(
        "SELECT priority FROM notification_log WHERE notification_id = %s", (nid,)
    )
    assert await cursor.fetchone() == ("INFO",)


async def test_an_attempt_made_twice_says_so(conn: psycopg.AsyncConnection[Any]) -> None:
    """A copy of a command sent again after a crash: one attempt row, two requests."""
    twice, once = SmsNotification(), SmsNotification("dave")
    await fold(conn, once.queued(), twice.queued(), twice.attempted(), once.attempted())
    # the copy, made a few seconds later and folded a batch later; then that batch read again
    copy = (twice.attempted(s=5), twice.sent(s=6), once.sent())
    await fold(conn, *copy)
    await fold(conn, *copy)
    cursor = await conn.execute(
        "SELECT notification_id::text, attempt, requests, outcome FROM notification_attempt "
        "WHERE notification_id = ANY(%s) ORDER BY requests",
        ([once.id, twice.id],),
    )
    assert await cursor.fetchall() == [(once.id, 1, 1, "SENT"), (twice.id, 1, 2, "SENT")]


async def test_the_runner_and_a_rebuild_skip_an_aborted_transaction(
    scratch: Settings, stack_env: dict[str, str]
) -> None:
    """delivery.events is written in the dispatcher's transactions: the events of an aborted
    one never happened. Both readers skip them, and the rebuild ends though the partition
    ends with the abort marker (no record at its last offset)."""
    from projections.rebuild import rebuild
    from projections.runner import ProjectionRunner
    from tests.integration.transactions import write_transactions

    codec = AvroCodec(LocalSchemaRegistry())
    n = SmsNotification()
    encoded = [codec.encode(r) for r in n.events()]  # queued, attempted, sent
    wanted, end = await asyncio.to_thread(
        write_transactions,
        scratch.kafka_bootstrap,
        full_name(scratch, "delivery.events"),
        [(True, encoded[:2]), (False, encoded[2:])],  # "sent" aborted
        n.incident_id.encode(),
    )
    assert wanted == [0, 1] and end > 3
    base = stack_env["DATABASE_URL"]
    with fresh_database(base, "live") as live, fresh_database(base, "rebuilt") as rebuilt:
        migrate(live)
        runner = ProjectionRunner(scratch, codec, live)
        await runner.start()
        try:
            async with await psycopg.AsyncConnection.connect(live, autocommit=True) as conn:
                found = await eventually(
                    lambda: row(conn, n.id), lambda r: r is not None and r["provider"] == "twilio"
                )
        finally:
            await runner.stop()
        assert found is not None and found["sent_at"] is None and found["status"] != "SENT"
        # the rebuild reads Kafka blocking: in a thread, so a rebuild that never ends fails
        result = await asyncio.wait_for(
            asyncio.to_thread(asyncio.run, rebuild(scratch, codec, rebuilt)), 60
        )
        assert (result.events, result.skipped) == (2, 0)
        with psycopg.connect(rebuilt) as sync:
            status = sync.execute(
                "SELECT status, sent_at FROM notification_log WHERE notification_id = %s", (n.id,)
            ).fetchone()
        assert status is not None and status[0] == found["status"] and status[1] is None


async def test_the_runner_counts_a_partition_ending_with_a_commit_marker_as_caught_up(
    scratch: Settings, stack_env: dict[str, str]
) -> None:
    """The dispatcher writes delivery.events in transactions: a partition may end with a
    commit marker after its last event. The stored offset must reach the partition's end,
    or the projection reads as behind for good (the bench waited on it until it gave up)."""
    from aiokafka import AIOKafkaProducer

    from projections.runner import ProjectionRunner
    from tests.integration.transactions import settled_end

    codec = AvroCodec(LocalSchemaRegistry())
    topic = full_name(scratch, "delivery.events")
    producer = AIOKafkaProducer(
        bootstrap_servers=scratch.kafka_bootstrap, transactional_id=f"t-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(
                topic, codec.encode(SmsNotification().queued()), partition=0
            )
    finally:
        await producer.stop()
    end = await asyncio.to_thread(settled_end, scratch.kafka_bootstrap, topic)
    assert end == 2  # the event, then its transaction's marker

    with fresh_database(stack_env["DATABASE_URL"], "marker") as db:
        migrate(db)
        runner = ProjectionRunner(scratch, codec, db)
        await runner.start()
        try:
            async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:

                async def stored() -> list[Any]:
                    cursor = await conn.execute(
                        "SELECT next_offset FROM projection_offset "
                        "WHERE topic = %s AND partition = 0",
                        (topic,),
                    )
                    return list(await cursor.fetchall())

                await eventually(stored, lambda found: found == [(end,)])
        finally:
            await runner.stop()


async def test_what_a_dead_worker_left_in_the_escalation_outbox_is_published_once_kafka_takes_it(
    scratch: Settings, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed between the commit that took an escalation decision and its publish
    leaves the records in the outbox: the next projection publishes them, and keeps them
    while publishing fails."""
    import projections.runner as runner_module
    from projections.escalation import Escalations
    from projections.runner import ProjectionRunner

    monkeypatch.setattr(runner_module, "PUBLISH_RETRY_S", 0.2)
    codec = AvroCodec(LocalSchemaRegistry())
    published: list[tuple[str, bytes | None, bytes]] = []
    failures = [RuntimeError("broker away")]

    async def publish(items: list[tuple[str, bytes | None, bytes]]) -> None:
        if failures:
            raise failures.pop()
        published.extend(items)

    with fresh_database(stack_env["DATABASE_URL"], "outbox") as db:
        migrate(db)
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            left = [("dispatch.commands", b"inc-1", b"one"), ("delivery.events", b"inc-1", b"two")]
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO escalation_outbox (topic, key, value) VALUES (%s, %s, %s)", left
                )
            runner = ProjectionRunner(
                scratch, codec, db, escalations=Escalations(scratch, codec), publish=publish
            )
            await runner.start()
            try:

                async def outbox() -> int:
                    cursor = await conn.execute("SELECT count(*) FROM escalation_outbox")
                    found = await cursor.fetchone()
                    return int(found[0]) if found else -1

                await eventually(outbox, lambda n: n == 0)
                assert not failures  # the first try failed, and the rows stayed for the next
                assert published == left
            finally:
                await runner.stop()


async def test_a_rebuild_keeps_the_tier_states_and_folds_in_only_what_the_projection_had_not(
    scratch: Settings, stack_env: dict[str, str]
) -> None:
    """A user's only primary channel failed finally: the tier escalates. Folded by the
    projection already (its offsets stored), a rebuild decides nothing again; stopped before
    the projection got there, the rebuild takes the decision and leaves it in the outbox."""
    from projections.rebuild import rebuild
    from tests.samples import sample

    codec = AvroCodec(LocalSchemaRegistry())
    publisher = Publisher(scratch, codec)
    n = SmsNotification("dora")
    failed = sample(
        DeliveryFailed,
        event_id=f"{n.id}-f1",
        notification_id=n.id,
        incident_id=n.incident_id,
        user_id=n.user,
        channel=Channel.SMS,
        attempt=1,
        final=True,
        occurred_at=at(3),
    )
    for record in (n.queued(), n.attempted(), failed):
        publisher.publish("delivery.events", n.incident_id, record)
    publisher.flush()
    topic = full_name(scratch, "delivery.events")
    with fresh_database(stack_env["DATABASE_URL"], "tiers") as db:
        migrate(db)
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:

            async def outbox() -> list[str]:
                cursor = await conn.execute("SELECT topic FROM escalation_outbox ORDER BY id")
                return [t for (t,) in await cursor.fetchall()]

            # as if a live projection had folded all three (its tier state is not needed here)
            for partition in range(3):
                await conn.execute(
                    "INSERT INTO projection_offset (projection, topic, partition, next_offset) "
                    "VALUES ('notification_log', %s, %s, 3)",
                    (topic, partition),
                )
            await rebuild(scratch, codec, db)
            assert await outbox() == []

            await conn.execute("DELETE FROM projection_offset")
            await rebuild(scratch, codec, db)
            assert await outbox() == ["delivery.events", "dispatch.commands"]
            cursor = await conn.execute("SELECT key FROM tier_state")
            assert await cursor.fetchall() == [(f"{n.incident_id}|dora",)]
