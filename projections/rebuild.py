"""`notifier projection rebuild`: drop the read model and fold it again from the topics.

Stop the workers first (their projection would write alongside); they resume from the
offsets the rebuild stores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import ProviderCallback, UserProfile
from notifier.domain.incident_status import (
    INCIDENT_EVENTS,
    IncidentRow,
    PersonRow,
    ProfileDeleted,
    apply_incident,
    apply_profile,
)
from notifier.domain.status import (
    ROW_EVENTS,
    AttemptRow,
    LogRow,
    apply,
    apply_attempt,
    apply_callback,
)
from notifier.settings import Settings
from notifier.topics import full_name
from projections.escalation import Escalations, changes_decisions, fold_escalations
from projections.migrate import migrate
from projections.notification_log import (
    ATTEMPT_COLUMNS,
    CALLBACK_COLUMNS,
    INCIDENT_COLUMNS,
    LOG_COLUMNS,
    PERSON_COLUMNS,
    PROJECTION,
    REBUILD_LOCK,
    TOPICS,
    USER_EVENT_COLUMNS,
    USER_EVENTS,
    UserEvent,
    attempt_values,
    by_provider_time,
    callback_values,
    incident_values,
    is_uuid,
    log_values,
    person_values,
    store_offsets,
    user_event_values,
)

DROP = """
DROP VIEW IF EXISTS channel_success_rate, incident_summary;
DROP TABLE IF EXISTS notification_attempt, notification_log, projection_offset, provider_callback,
    user_event, incident, person;
"""
# the migrations that create what DROP drops: forgotten, so that migrate() runs them again;
# any other state in the database (and its migrations) stays
READ_MODEL_MIGRATIONS = [
    "0001_notification_log",
    "0002_views",
    "0003_provider_callbacks",
    "0006_user_events",
    "0007_people_and_incidents",
    "0008_incident_details",  # alters incident and notification_log: must run after them
    "0010_quiet_hours",
    "0011_attempt_requests",  # alters notification_attempt: must run after 0001
    "0012_lighter_log_writes",  # replaces indexes 0001 creates
]


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild read and wrote, and how fast."""

    events: int
    skipped: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events folded per second."""
        return self.events / self.seconds if self.seconds else 0.0


def drop_read_model(url: str) -> None:
    """Drop every table and view of the read model, and yoyo's record of them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DROP)
        exists = conn.execute("SELECT to_regclass('_yoyo_migration')").fetchone()
        if exists and exists[0]:
            for table in ("_yoyo_migration", "_yoyo_log"):
                conn.execute(
                    f"DELETE FROM {table} WHERE migration_id = ANY(%s)", (READ_MODEL_MIGRATIONS,)
                )


async def rebuild(
    settings: Settings,
    codec: AvroCodec,
    url: str,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 10000,
) -> RebuildResult:
    """Drop, migrate, and fold delivery.events and provider.callbacks from their beginning to
    their end as of now.

    The fold runs in memory with the projection's own rules (every notification's row is
    held until the end: about 1 KB each), then the rows go in with COPY, which is what makes
    a rebuild fast; the live projection's batched upserts are for steady traffic. As live,
    a callback read before its notification's row waits for the row (to the end of the chunk
    that makes it, then in the provider's time order) and stays unapplied if none comes.
    """
    # held until the rows are in: a live projection's next batch waits for the rebuild, then
    # applies (idempotently) what it had read, rather than racing the COPY
    lock = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await lock.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK,))
        return await _rebuild(settings, codec, url, progress, batch_size)
    finally:
        await lock.close()  # the session's lock goes with it


async def _rebuild(
    settings: Settings,
    codec: AvroCodec,
    url: str,
    progress: Callable[[int, int], None] | None,
    batch_size: int,
) -> RebuildResult:
    from confluent_kafka import Consumer, TopicPartition

    # the tier states are kept: they hold what the projection folded, up to these offsets
    folded = _stored_offsets(url)
    drop_read_model(url)
    migrate(url)
    topics = [full_name(settings, t) for t in TOPICS]
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"notifier-rebuild-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # librdkafka's default, relied on
        }
    )
    started = time.monotonic()
    events = skipped = 0
    rows: dict[str, LogRow] = {}
    attempts: dict[tuple[str, int], AttemptRow] = {}
    callbacks: dict[str, tuple[ProviderCallback, datetime | None]] = {}  # by event_id
    waiting: dict[str, list[ProviderCallback]] = {}  # by notification id, until its row
    people: dict[str, UserEvent] = {}  # person-level events, by event_id (stored once)
    incidents: dict[str, IncidentRow] = {}
    persons: dict[str, PersonRow | None] = {}  # None: deleted by a tombstone
    unfolded: list[Any] = []  # deciding events past what the tier states hold, in order
    users_topic = full_name(settings, "users")
    offsets: dict[tuple[str, int], int] = {}
    try:
        bounds: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            found = consumer.list_topics(topic, timeout=30).topics.get(topic)
            for p in found.partitions if found is not None else ():  # none if it does not exist
                bounds[(topic, p)] = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=30
                )
        total = sum(high - low for low, high in bounds.values())
        left = {tp: high for tp, (low, high) in bounds.items() if high > low}
        consumer.assign([TopicPartition(t, p, low) for (t, p), (low, _) in bounds.items()])
        while left:
            ready: set[str] = set()
            messages = consumer.consume(batch_size, timeout=1.0)
            if not messages:
                # a partition whose last offsets hold no record (a transaction's marker, an
                # aborted transaction: read_committed, librdkafka's default) is done when
                # the consumer's position has passed them
                for at in consumer.position([TopicPartition(t, p) for t, p in left]):
                    if at.offset >= 0 and at.offset >= left[(at.topic, at.partition)]:
                        del left[(at.topic, at.partition)]
            for msg in messages:
                tp = (str(msg.topic()), int(msg.partition() or 0))
                if msg.error() is not None or tp not in left:
                    continue
                offset = int(msg.offset() or 0)
                if offset >= left[tp]:
                    continue
                events += 1
                offsets[tp] = offset + 1
                if offset + 1 >= left[tp]:
                    del left[tp]
                record = _decode(codec, msg.value())
                if msg.value() is None and tp[0] == users_topic and msg.key():
                    record = ProfileDeleted(bytes(msg.key() or b"").decode(errors="replace"))
                if record is not None and offset >= folded.get(tp, 0) and changes_decisions(record):
                    unfolded.append(record)
                if isinstance(record, ProviderCallback):
                    if record.event_id in callbacks:
                        continue  # the same callback again: stored and folded once
                    nid = record.notification_id
                    if nid in rows and nid not in waiting:  # in order, as live
                        rows[nid] = apply_callback(rows[nid], record)
                        callbacks[record.event_id] = (record, datetime.now(UTC))
                    else:
                        callbacks[record.event_id] = (record, None)
                        waiting.setdefault(nid, []).append(record)
                    continue
                if isinstance(record, USER_EVENTS):
                    people.setdefault(record.event_id, record)
                    continue
                if isinstance(record, INCIDENT_EVENTS):
                    found = incidents.get(record.incident_id)
                    incidents[record.incident_id] = apply_incident(found, record)
                    continue
                if isinstance(record, UserProfile | ProfileDeleted):
                    persons[record.user_id] = apply_profile(persons.get(record.user_id), record)
                    continue
                if not isinstance(record, ROW_EVENTS):
                    skipped += record is None
                    continue
                nid = record.notification_id
                rows[nid] = apply(rows.get(nid), record)
                if nid in waiting:
                    ready.add(nid)
                number = getattr(record, "attempt", None)
                if number is not None:
                    found = apply_attempt(attempts.get((nid, number)), record)
                    if found is not None:
                        attempts[(nid, number)] = found
            for nid in ready:  # callbacks that came before their row
                now = datetime.now(UTC)
                for callback in sorted(waiting.pop(nid), key=by_provider_time):
                    rows[nid] = apply_callback(rows[nid], callback)
                    callbacks[callback.event_id] = (callback, now)
            if progress is not None:
                progress(events, total)
    finally:
        consumer.close()
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await _copy(conn, "notification_log", LOG_COLUMNS, (log_values(r) for r in rows.values()))
        await _copy(
            conn,
            "notification_attempt",
            ATTEMPT_COLUMNS,
            (attempt_values(a) for a in attempts.values()),
        )
        await _copy(
            conn,
            "provider_callback",
            [*CALLBACK_COLUMNS, "applied_at"],
            ((*callback_values(c), at) for c, at in callbacks.values()),
        )
        await _copy(
            conn, "incident", INCIDENT_COLUMNS, (incident_values(r) for r in incidents.values())
        )
        await _copy(
            conn, "person", PERSON_COLUMNS, (person_values(r) for r in persons.values() if r)
        )
        await _copy(
            conn,
            "user_event",
            USER_EVENT_COLUMNS,
            (user_event_values(e) for e in people.values()),
        )
        # what the workers had not folded when they stopped: its decisions are taken now, and
        # sent by the next projection (after the incidents: a decision needs its incident open)
        await fold_escalations(
            conn, unfolded, Escalations(settings, codec), datetime.now(UTC), bulk=True
        )
        await store_offsets(conn, offsets)
    return RebuildResult(events, skipped, time.monotonic() - started)


async def _copy(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    columns: list[str],
    values: Iterable[tuple[Any, ...]],
) -> None:
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in values:
            await copy.write_row(row)


def _stored_offsets(url: str) -> dict[tuple[str, int], int]:
    """The projection's stored offsets ({} before its first batch)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('projection_offset')").fetchone()
        if not exists or not exists[0]:
            return {}
        rows = conn.execute(
            "SELECT topic, partition, next_offset FROM projection_offset WHERE projection = %s",
            (PROJECTION,),
        ).fetchall()
    return {(t, p): o for t, p, o in rows}


def _decode(codec: AvroCodec, value: bytes | None) -> Any:
    try:
        record = codec.decode(value)
    except ContractError:
        return None
    nid = getattr(record, "notification_id", None)
    return None if nid is not None and not is_uuid(nid) else record
