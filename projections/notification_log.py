"""The NotificationLog projection: folds a batch of delivery events into notification_log
and notification_attempt in one transaction, with the consumed offsets."""

from __future__ import annotations

import dataclasses
import operator
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from notifier.contracts.records import Record
from notifier.domain.status import ROW_EVENTS, AttemptRow, LogRow, apply, apply_attempt

PROJECTION = "notification_log"
LOG_COLUMNS = [f.name for f in dataclasses.fields(LogRow)]
ATTEMPT_COLUMNS = [f.name for f in dataclasses.fields(AttemptRow)]
# attrgetter, not dataclasses.astuple: astuple deep-copies every value (a quarter of a
# rebuild's time, measured with py-spy)
log_values = operator.attrgetter(*LOG_COLUMNS)
attempt_values = operator.attrgetter(*ATTEMPT_COLUMNS)


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


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    names, values = ", ".join(columns), ", ".join(["%s"] * len(columns))
    if table == "notification_log":
        # the time of this write, not of the transaction's start: event -> row visibility
        names, values = f"{names}, updated_at", f"{values}, clock_timestamp()"
        updates += ", updated_at = clock_timestamp()"
    return (
        f"INSERT INTO {table} ({names}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


UPSERT_LOG = _upsert("notification_log", LOG_COLUMNS, ["notification_id"])
UPSERT_ATTEMPT = _upsert("notification_attempt", ATTEMPT_COLUMNS, ["notification_id", "attempt"])
UPSERT_OFFSET = (
    "INSERT INTO projection_offset (projection, topic, partition, next_offset) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (projection, topic, partition) "
    "DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
)


async def load_offsets(
    conn: AsyncConnection[Any], topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Stored next offsets of this projection, by (topic, partition)."""
    cursor = await conn.execute(
        "SELECT topic, partition, next_offset FROM projection_offset "
        "WHERE projection = %s AND topic = ANY(%s)",
        (PROJECTION, list(topics)),
    )
    return {(t, p): o for t, p, o in await cursor.fetchall()}


async def apply_batch(
    conn: AsyncConnection[Any], batch: Sequence[Consumed], offsets: dict[tuple[str, int], int]
) -> int:
    """Fold `batch` into the read model and store `offsets`, in the caller's transaction.

    Rows are locked and read once, folded in Python by the pure transition rules, and written
    back once each: a replayed event changes nothing. Returns the rows written.
    """
    events = [c.record for c in batch if isinstance(c.record, ROW_EVENTS)]
    ids = sorted({e.notification_id for e in events})
    rows: dict[str, LogRow] = {}
    attempts: dict[tuple[str, int], AttemptRow] = {}
    if ids:
        cursor = await conn.execute(
            f"SELECT {', '.join(LOG_COLUMNS)} FROM notification_log "
            "WHERE notification_id = ANY(%s::uuid[]) ORDER BY notification_id FOR UPDATE",
            (ids,),
        )
        for values in await cursor.fetchall():
            row = LogRow(*values)
            rows[str(row.notification_id)] = dataclasses.replace(
                row, notification_id=str(row.notification_id)
            )
        cursor = await conn.execute(
            f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM notification_attempt "
            "WHERE notification_id = ANY(%s::uuid[])",
            (ids,),
        )
        for values in await cursor.fetchall():
            attempt = AttemptRow(*values)
            attempts[(str(attempt.notification_id), attempt.attempt)] = dataclasses.replace(
                attempt, notification_id=str(attempt.notification_id)
            )
    changed_rows: dict[str, LogRow] = {}
    changed_attempts: dict[tuple[str, int], AttemptRow] = {}
    for event in events:
        nid: str = event.notification_id
        new_row = apply(rows.get(nid), event)
        if new_row != rows.get(nid):
            rows[nid] = changed_rows[nid] = new_row
        number = getattr(event, "attempt", None)
        if number is not None:
            key = (nid, number)
            new_attempt = apply_attempt(attempts.get(key), event)
            if new_attempt is not None and new_attempt != attempts.get(key):
                attempts[key] = changed_attempts[key] = new_attempt
    async with conn.cursor() as cur:
        if changed_rows:
            await cur.executemany(UPSERT_LOG, [log_values(r) for r in changed_rows.values()])
        if changed_attempts:
            await cur.executemany(
                UPSERT_ATTEMPT, [attempt_values(a) for a in changed_attempts.values()]
            )
        await cur.executemany(
            UPSERT_OFFSET, [(PROJECTION, t, p, o) for (t, p), o in offsets.items()]
        )
    return len(changed_rows)
