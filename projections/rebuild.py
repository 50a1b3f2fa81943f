"""`notifier projection rebuild`: drop the read model and fold it again from the topics.

Stop the workers first (their projection would write alongside); they resume from the
offsets the rebuild stores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.domain.status import ROW_EVENTS, AttemptRow, LogRow, apply, apply_attempt
from notifier.settings import Settings
from notifier.topics import full_name
from projections.migrate import migrate
from projections.notification_log import (
    ATTEMPT_COLUMNS,
    LOG_COLUMNS,
    PROJECTION,
    UPSERT_OFFSET,
    attempt_values,
    is_uuid,
    log_values,
)

DROP = """
DROP VIEW IF EXISTS channel_success_rate, incident_summary;
DROP TABLE IF EXISTS notification_attempt, notification_log, projection_offset;
DELETE FROM _yoyo_migration;
DELETE FROM _yoyo_log;
"""


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
        exists = conn.execute("SELECT to_regclass('_yoyo_migration')").fetchone()
        statements = DROP if exists and exists[0] else DROP.split("DELETE")[0]
        conn.execute(statements)


async def rebuild(
    settings: Settings,
    codec: AvroCodec,
    url: str,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 10000,
) -> RebuildResult:
    """Drop, migrate, and fold delivery.events from its beginning to its end as of now.

    The fold runs in memory with the projection's own rules (every notification's row is
    held until the end: about 1 KB each), then the rows go in with COPY, which is what makes
    a rebuild fast; the live projection's batched upserts are for steady traffic.
    """
    from confluent_kafka import Consumer, TopicPartition

    drop_read_model(url)
    migrate(url)
    topic = full_name(settings, "delivery.events")
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"notifier-rebuild-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    started = time.monotonic()
    events = skipped = 0
    rows: dict[str, LogRow] = {}
    attempts: dict[tuple[str, int], AttemptRow] = {}
    offsets: dict[int, int] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        bounds = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            for p in partitions
        }
        total = sum(high - low for low, high in bounds.values())
        left = {p: high for p, (low, high) in bounds.items() if high > low}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in bounds.items()])
        while left:
            for msg in consumer.consume(batch_size, timeout=1.0):
                if msg.error() is not None or msg.partition() not in left:
                    continue
                part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if offset >= left[part]:
                    continue
                events += 1
                offsets[part] = offset + 1
                if offset + 1 >= left[part]:
                    del left[part]
                record = _decode(codec, msg.value())
                if not isinstance(record, ROW_EVENTS):
                    skipped += record is None
                    continue
                nid = record.notification_id
                rows[nid] = apply(rows.get(nid), record)
                number = getattr(record, "attempt", None)
                if number is not None:
                    found = apply_attempt(attempts.get((nid, number)), record)
                    if found is not None:
                        attempts[(nid, number)] = found
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
        async with conn.cursor() as cur:
            await cur.executemany(
                UPSERT_OFFSET, [(PROJECTION, topic, p, o) for p, o in offsets.items()]
            )
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


def _decode(codec: AvroCodec, value: bytes | None) -> Any:
    try:
        record = codec.decode(value)
    except ContractError:
        return None
    nid = getattr(record, "notification_id", None)
    return None if nid is not None and not is_uuid(nid) else record
