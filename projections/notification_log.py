"""The NotificationLog projection: folds a batch of delivery events and provider callbacks
into notification_log, notification_attempt and provider_callback in one transaction, with the
consumed offsets."""

from __future__ import annotations

import dataclasses
import operator
import typing
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    CriticalDeliveryFailure,
    ProviderCallback,
    Record,
    TierEscalated,
    UserProfile,
    UserUnreachable,
)
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
from projections.escalation import Escalations, fold_escalations

PROJECTION = "notification_log"
# every batch holds this advisory lock shared; a rebuild holds it alone from the drop to the
# last COPY, so a worker still running waits instead of writing into the half-built tables
REBUILD_LOCK = 0x6E6C6F67  # "nlog"
# plus a partition number: one batch of that partition (of every topic folded, all keyed
# alike) at a time, whichever worker writes it
PARTITION_LOCK = 0x6E6C0000
# what it folds, by logical name: the deliveries, and the incidents and people they are about
TOPICS = ("delivery.events", "provider.callbacks", "incidents", "users")
LOG_COLUMNS = [f.name for f in dataclasses.fields(LogRow)]
ATTEMPT_COLUMNS = [f.name for f in dataclasses.fields(AttemptRow)]
assert LOG_COLUMNS[0] == ATTEMPT_COLUMNS[0] == "notification_id"  # the reads below rely on it
# attrgetter, not dataclasses.astuple: astuple deep-copies every value (a quarter of a
# rebuild's time, measured with py-spy)
log_values = operator.attrgetter(*LOG_COLUMNS)
attempt_values = operator.attrgetter(*ATTEMPT_COLUMNS)
# named, not taken from the record: a field added to ProviderCallback needs a column first
CALLBACK_COLUMNS = [
    "event_id",
    "notification_id",
    "incident_id",
    "user_id",
    "channel",
    "provider",
    "provider_message_id",
    "status",
    "raw_status",
    "error",
    "occurred_at",
    "received_at",
]


@dataclass(frozen=True)
class Consumed:
    """One message of a batch: where it came from and the record in it."""

    topic: str
    partition: int
    offset: int
    record: Record


def is_uuid(value: str) -> bool:
    """True for a well-formed UUID (notification ids are UUIDv5)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _sql_type(name: str, hint: Any) -> str:
    if name == "notification_id":
        return "uuid"
    for python, sql in ((datetime, "timestamptz"), (int, "integer"), (str, "text")):
        if hint is python or python in typing.get_args(hint):
            return sql
    raise TypeError(f"no SQL type for {name}: {hint}")


def _upsert(table: str, row: type, key: Sequence[str]) -> str:
    """One statement that upserts a whole batch of `row`s, given one array per column.

    `unnest` of column arrays rather than `executemany` of a row each: a batch is one
    statement to plan and one round trip, not one bound execution per row (the projection's
    largest cost, py-spy under `make bench`)."""
    hints = typing.get_type_hints(row)
    columns = [f.name for f in dataclasses.fields(row)]
    arrays = ", ".join(f"%b::{_sql_type(c, hints[c])}[]" for c in columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    names, values = ", ".join(columns), ", ".join(columns)
    if table == "notification_log":
        # the time of this write, not of the transaction's start: event -> row visibility
        names, values = f"{names}, updated_at", f"{values}, clock_timestamp()"
        updates += ", updated_at = clock_timestamp()"
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM unnest({arrays}) "
        f"AS batch ({', '.join(columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def as_columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows of `width` values as one list per column: the parameters of an `_upsert`."""
    listed = list(rows)
    if not listed:
        return [[] for _ in range(width)]
    # zip transposes in C: a Python loop over every value was 5% of the projection's time
    columns = [list(column) for column in zip(*listed, strict=True)]
    if len(columns) != width:
        raise ValueError(f"rows of {width} values expected, not {len(columns)}")
    return columns


UPSERT_LOG = _upsert("notification_log", LogRow, ["notification_id"])
UPSERT_INCIDENT = _upsert("incident", IncidentRow, ["incident_id"])
UPSERT_PERSON = _upsert("person", PersonRow, ["user_id"])
INCIDENT_COLUMNS = [f.name for f in dataclasses.fields(IncidentRow)]
PERSON_COLUMNS = [f.name for f in dataclasses.fields(PersonRow)]
incident_values = operator.attrgetter(*INCIDENT_COLUMNS)
person_values = operator.attrgetter(*PERSON_COLUMNS)
UPSERT_ATTEMPT = _upsert("notification_attempt", AttemptRow, ["notification_id", "attempt"])
# a callback is stored once: a replayed one (same event_id) changes nothing; the batch's
# callbacks in one statement, as the rows
CALLBACK_TYPES = [
    "text",
    "uuid",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
]
INSERT_CALLBACKS = (
    f"INSERT INTO provider_callback ({', '.join(CALLBACK_COLUMNS)}, applied_at) "
    f"SELECT {', '.join(CALLBACK_COLUMNS)}, CASE WHEN applied THEN clock_timestamp() END "
    f"FROM unnest({', '.join(f'%b::{t}[]' for t in CALLBACK_TYPES)}, %b::boolean[]) "
    f"AS batch ({', '.join(CALLBACK_COLUMNS)}, applied) ON CONFLICT (event_id) DO NOTHING"
)
MARK_APPLIED = (
    "UPDATE provider_callback SET applied_at = clock_timestamp() "
    "WHERE event_id = ANY(%s) AND applied_at IS NULL"
)
# notification ids as text: the rows hold them as str (no UUID object made and turned back)
SELECT_LOG = (
    f"SELECT notification_id::text, {', '.join(LOG_COLUMNS[1:])} FROM notification_log "
    "WHERE notification_id = ANY(%b::uuid[]) ORDER BY notification_id FOR UPDATE"
)
SELECT_ATTEMPTS = (
    f"SELECT notification_id::text, {', '.join(ATTEMPT_COLUMNS[1:])} FROM notification_attempt "
    "WHERE notification_id = ANY(%b::uuid[])"
)
# the batch's callbacks already stored, and every callback of its notifications still waiting
# for a row (the partial index provider_callback_unapplied makes this cheap)
SELECT_CALLBACKS = (
    f"SELECT applied_at IS NULL, {', '.join(CALLBACK_COLUMNS)} FROM provider_callback "
    "WHERE (notification_id = ANY(%b::uuid[]) AND applied_at IS NULL) OR event_id = ANY(%b::text[])"
)
# a person-level event is stored once: a replayed one (same event_id) changes nothing
USER_EVENT_COLUMNS = [
    "event_id",
    "incident_id",
    "user_id",
    "escalation_level",
    "kind",
    "from_tier",
    "to_tier",
    "reason",
    "failed_channels",
    "ops_incident_id",
    "occurred_at",
]
INSERT_USER_EVENT = (
    f"INSERT INTO user_event ({', '.join(USER_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(USER_EVENT_COLUMNS))}) ON CONFLICT (event_id) DO NOTHING"
)
UserEvent = UserUnreachable | TierEscalated | CriticalDeliveryFailure
USER_EVENTS = (UserUnreachable, TierEscalated, CriticalDeliveryFailure)


def user_event_values(event: UserEvent) -> tuple[Any, ...]:
    """A person-level event as the values of USER_EVENT_COLUMNS."""
    common = (event.event_id, event.incident_id, event.user_id, event.escalation_level)
    if isinstance(event, UserUnreachable):
        return (*common, "UNREACHABLE", None, None, event.reason, None, None, event.occurred_at)
    if isinstance(event, TierEscalated):
        tiers = (event.from_tier.value, event.to_tier.value)
        return (*common, "TIER_ESCALATED", *tiers, event.reason, None, None, event.occurred_at)
    channels = [c.value for c in event.failed_channels]
    reason = f"{' and '.join(channels)} failed finally; operations paged"
    return (
        *common,
        "CRITICAL_FAILURE",
        None,
        None,
        reason,
        channels,
        event.ops_incident_id,
        event.occurred_at,
    )


UPSERT_OFFSET = (
    "INSERT INTO projection_offset (projection, topic, partition, next_offset) "
    "SELECT %b::text, * FROM unnest(%b::text[], %b::integer[], %b::bigint[]) "
    "ON CONFLICT (projection, topic, partition) "
    # never backwards: a batch that waited out a rebuild must not undo the rebuild's offsets
    "DO UPDATE SET next_offset = GREATEST(projection_offset.next_offset, EXCLUDED.next_offset), "
    "updated_at = now()"
)


async def store_offsets(conn: AsyncConnection[Any], offsets: dict[tuple[str, int], int]) -> None:
    """Store the next offsets of this projection, by (topic, partition), in one statement."""
    if offsets:
        columns = as_columns(((t, p, o) for (t, p), o in offsets.items()), 3)
        await conn.execute(UPSERT_OFFSET, [PROJECTION, *columns])


def callback_values(callback: ProviderCallback) -> tuple[Any, ...]:
    """A callback as the values of CALLBACK_COLUMNS (enums as their names)."""
    return tuple(
        value.value if isinstance(value, Channel | CallbackStatus) else value
        for value in (getattr(callback, name) for name in CALLBACK_COLUMNS)
    )


def _callback_of(values: Sequence[Any]) -> ProviderCallback:
    found = dict(zip(CALLBACK_COLUMNS, values, strict=True))
    found["notification_id"] = str(found["notification_id"])
    found["channel"] = Channel(found["channel"])
    found["status"] = CallbackStatus(found["status"])
    return ProviderCallback(**found)


def by_provider_time(callback: ProviderCallback) -> tuple[Any, str]:
    """Sort key of waiting callbacks: the provider's order, then a stable tie-break."""
    return callback.occurred_at, callback.event_id


async def load_offsets(
    conn: AsyncConnection[Any], topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Stored next offsets of this projection, by (topic, partition); waits for a rebuild
    in progress (whose offsets are not stored yet)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (REBUILD_LOCK,))
    return await stored_offsets(conn, topics)


async def stored_offsets(
    conn: AsyncConnection[Any], topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """The next offsets this projection stored for `topics`, by (topic, partition)."""
    cursor = await conn.execute(
        "SELECT topic, partition, next_offset FROM projection_offset "
        "WHERE projection = %s AND topic = ANY(%s)",
        (PROJECTION, list(topics)),
    )
    return {(t, p): o for t, p, o in await cursor.fetchall()}


async def apply_batch(
    conn: AsyncConnection[Any],
    batch: Sequence[Consumed],
    offsets: dict[tuple[str, int], int],
    escalations: Escalations | None = None,
) -> int:
    """Fold `batch` into the read model and store `offsets`, in the caller's transaction;
    with `escalations`, also into the tier state, putting what it decides in the outbox.

    One batch of a partition at a time, and only what is past its stored offset (see
    not_applied). Rows are locked and read once, folded in Python by the pure transition
    rules, and written back once each: a replayed event changes nothing. A provider callback
    is stored once (by event_id) and folded when its notification's row exists: at once, or,
    when it came first, after the delivery events of the batch that creates the row, in the
    provider's time order. Returns the notification rows written.
    """
    # one pipeline: the locks and the stored offsets go in one round trip, the three reads in
    # another, the writes in a third (a round trip costs the worker more than the statements'
    # parameters)
    async with conn.pipeline():
        return await _apply_batch(conn, batch, offsets, escalations)


async def not_applied(
    conn: AsyncConnection[Any], batch: Sequence[Consumed], offsets: dict[tuple[str, int], int]
) -> list[Consumed]:
    """Take the batch's partitions for this transaction and return what of `batch` no
    transaction has applied yet (at or past the stored offset of its partition).

    In a rebalance the old owner of a partition may still write a batch it fetched while the
    new owner starts from the stored offset: each would fold on rows the other had not
    committed (an event of a row not yet visible is dropped, a stale fold overwrites a newer
    row). With the lock the later one waits, then reads the earlier one's rows and offsets."""
    partitions = sorted({c.partition for c in batch} | {p for _, p in offsets})
    for partition in partitions:  # in order: two batches never wait on each other
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK + partition,))
    topics = sorted({c.topic for c in batch})
    if not topics:
        return []
    stored = await stored_offsets(conn, topics)
    return [c for c in batch if c.offset >= stored.get((c.topic, c.partition), 0)]


async def _apply_batch(
    conn: AsyncConnection[Any],
    batch: Sequence[Consumed],
    offsets: dict[tuple[str, int], int],
    escalations: Escalations | None,
) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (REBUILD_LOCK,))
    batch = await not_applied(conn, batch, offsets)
    records = [c.record for c in batch if isinstance(c.record, (*ROW_EVENTS, ProviderCallback))]
    ids = sorted({r.notification_id for r in records})
    rows: dict[str, LogRow] = {}
    attempts: dict[tuple[str, int], AttemptRow] = {}
    stored: set[str] = set()  # callbacks of the batch already in provider_callback
    waiting: dict[str, ProviderCallback] = {}  # callbacks without a row, by event_id
    if ids:
        event_ids = [r.event_id for r in records if isinstance(r, ProviderCallback)]
        log_cursor = await conn.execute(SELECT_LOG, (ids,))
        attempt_cursor = await conn.execute(SELECT_ATTEMPTS, (ids,))
        callback_cursor = await conn.execute(SELECT_CALLBACKS, (ids, event_ids))
        for values in await log_cursor.fetchall():
            rows[values[0]] = LogRow(*values)
        for values in await attempt_cursor.fetchall():
            attempts[(values[0], values[1])] = AttemptRow(*values)
        for unapplied, *values in await callback_cursor.fetchall():
            callback = _callback_of(values)
            stored.add(callback.event_id)
            if unapplied:
                waiting[callback.event_id] = callback
    changed_rows: dict[str, LogRow] = {}
    changed_attempts: dict[tuple[str, int], AttemptRow] = {}
    fresh: dict[str, ProviderCallback] = {}  # callbacks to insert, by event_id
    applied: set[str] = set()
    # a notification's callbacks are folded in order: one behind a waiting callback waits too
    behind = {c.notification_id for c in waiting.values()}

    def fold_callback(callback: ProviderCallback) -> None:
        nid = callback.notification_id
        new_row = apply_callback(rows[nid], callback)
        if new_row != rows[nid]:
            rows[nid] = changed_rows[nid] = new_row
        applied.add(callback.event_id)

    for record in records:
        nid: str = record.notification_id
        if isinstance(record, ProviderCallback):
            if record.event_id in stored or record.event_id in fresh:
                continue  # replayed: stored already (and folded, or waiting below)
            fresh[record.event_id] = record
            if nid in rows and nid not in behind:
                fold_callback(record)
            else:
                waiting[record.event_id] = record
                behind.add(nid)
            continue
        new_row = apply(rows.get(nid), record)
        if new_row != rows.get(nid):
            rows[nid] = changed_rows[nid] = new_row
        number = getattr(record, "attempt", None)
        if number is not None:
            key = (nid, number)
            new_attempt = apply_attempt(attempts.get(key), record)
            if new_attempt is not None and new_attempt != attempts.get(key):
                attempts[key] = changed_attempts[key] = new_attempt
    # callbacks that came before their row, now that the batch's events have made it
    ready = [c for c in waiting.values() if c.notification_id in rows]
    for callback in sorted(ready, key=by_provider_time):
        fold_callback(callback)
    await apply_incidents_and_people(conn, [c.record for c in batch])
    if escalations is not None:  # after the incidents: a decision needs its incident open
        await fold_escalations(conn, [c.record for c in batch], escalations, datetime.now(UTC))
    people = [c.record for c in batch if isinstance(c.record, USER_EVENTS)]
    async with conn.cursor() as cur:
        if people:  # rare (escalations, the unreachable): a row each is fine
            await cur.executemany(INSERT_USER_EVENT, [user_event_values(e) for e in people])
        if fresh:
            await cur.execute(
                INSERT_CALLBACKS,
                as_columns(
                    ((*callback_values(c), c.event_id in applied) for c in fresh.values()),
                    len(CALLBACK_COLUMNS) + 1,
                ),
            )
        if applied - fresh.keys():
            await cur.execute(MARK_APPLIED, (sorted(applied - fresh.keys()),))
        if changed_rows:
            await cur.execute(
                UPSERT_LOG,
                as_columns(map(log_values, changed_rows.values()), len(LOG_COLUMNS)),
            )
        if changed_attempts:
            await cur.execute(
                UPSERT_ATTEMPT,
                as_columns(map(attempt_values, changed_attempts.values()), len(ATTEMPT_COLUMNS)),
            )
    await store_offsets(conn, offsets)
    return len(changed_rows)


async def apply_incidents_and_people(conn: AsyncConnection[Any], records: Sequence[Record]) -> None:
    """Fold the batch's incident events and user profiles into `incident` and `person`, in
    the order read (rows locked, read once, written once)."""
    incidents = [r for r in records if isinstance(r, INCIDENT_EVENTS)]
    profiles = [r for r in records if isinstance(r, UserProfile | ProfileDeleted)]
    if incidents:
        await _fold_rows(conn, INCIDENT_FOLD, [(e.incident_id, e) for e in incidents])
    if profiles:
        await _fold_rows(conn, PERSON_FOLD, [(p.user_id, p) for p in profiles])


@dataclass(frozen=True)
class _Fold:
    """How one table of rows keyed by one column is read, folded and written back."""

    table: str
    key: str
    columns: list[str]
    row: Callable[..., Any]
    apply: Callable[[Any, Any], Any]
    values: Callable[[Any], tuple[Any, ...]]
    upsert: str


INCIDENT_FOLD = _Fold(
    "incident",
    "incident_id",
    INCIDENT_COLUMNS,
    IncidentRow,
    apply_incident,
    incident_values,
    UPSERT_INCIDENT,
)
PERSON_FOLD = _Fold(
    "person", "user_id", PERSON_COLUMNS, PersonRow, apply_profile, person_values, UPSERT_PERSON
)


async def _fold_rows(
    conn: AsyncConnection[Any], fold: _Fold, keyed: Sequence[tuple[str, Any]]
) -> None:
    cursor = await conn.execute(
        f"SELECT {', '.join(fold.columns)} FROM {fold.table} "
        f"WHERE {fold.key} = ANY(%s) ORDER BY {fold.key} FOR UPDATE",
        (sorted({key for key, _ in keyed}),),
    )
    rows = {values[0]: fold.row(*values) for values in await cursor.fetchall()}
    for key, record in keyed:
        rows[key] = fold.apply(rows.get(key), record)
    kept = [row for row in rows.values() if row is not None]
    gone = [key for key, row in rows.items() if row is None]  # deleted by a tombstone
    if kept:
        await conn.execute(fold.upsert, as_columns(map(fold.values, kept), len(fold.columns)))
    if gone:
        await conn.execute(f"DELETE FROM {fold.table} WHERE {fold.key} = ANY(%s)", (gone,))
