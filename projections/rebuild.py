"""`notifier projection rebuild`: drop the read model and fold it again from the topics.

Stop the workers first (their projection would write alongside); they resume from the
offsets the rebuild stores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.settings import Settings
from notifier.topics import full_name
from projections.migrate import migrate
from projections.notification_log import Consumed, apply_batch, is_uuid

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
    batch_size: int = 5000,
) -> RebuildResult:
    """Drop, migrate, and fold delivery.events from its beginning to its end as of now."""
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
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        bounds = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            for p in partitions
        }
        total = sum(high - low for low, high in bounds.values())
        left = {p: high for p, (low, high) in bounds.items() if high > low}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in bounds.items()])
        async with await psycopg.AsyncConnection.connect(url) as conn:
            while left:
                messages = consumer.consume(batch_size, timeout=1.0)
                batch: list[Consumed] = []
                offsets: dict[tuple[str, int], int] = {}
                for msg in messages:
                    if msg.error() is not None or msg.partition() not in left:
                        continue
                    part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    if offset >= left[part]:
                        continue
                    events += 1
                    offsets[(topic, part)] = offset + 1
                    if offset + 1 >= left[part]:
                        del left[part]
                    record = _decode(codec, msg.value())
                    if record is None:
                        skipped += 1
                        continue
                    batch.append(Consumed(topic, part, offset, record))
                if offsets:
                    async with conn.transaction():
                        await apply_batch(conn, batch, offsets)
                    if progress is not None:
                        progress(events, total)
    finally:
        consumer.close()
    return RebuildResult(events, skipped, time.monotonic() - started)


def _decode(codec: AvroCodec, value: bytes | None) -> Any:
    try:
        record = codec.decode(value)
    except ContractError:
        return None
    nid = getattr(record, "notification_id", None)
    return None if nid is not None and not is_uuid(nid) else record
