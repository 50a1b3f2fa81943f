"""How fast the NotificationLog is rebuilt from delivery.events: synthetic events folded
into a fresh database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from notifier.contracts.records import Channel, Priority
from notifier.settings import Settings


def rebuild_rate(
    settings: Settings, codec: Any, count: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Fold `count` synthetic delivery events (queued, attempted, sent) into a new database."""
    import asyncio

    import psycopg
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from notifier.contracts.records import (
        DeliveryAttempted,
        DeliverySent,
        NotificationKind,
        NotificationQueued,
        Tier,
    )
    from notifier.domain import ids
    from projections.database import database_url
    from projections.rebuild import rebuild

    stamp = uuid.uuid4().hex[:8]
    scratch = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}rb{stamp}."})
    topic = f"{scratch.topic_prefix}delivery.events"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)]).values():
        fut.result()
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "partitioner": "murmur2_random",
        }
    )
    now = datetime.now(UTC)
    made = 0
    for n in range(count // 3 + 1):
        incident = f"rb-{n // 3}"
        nid = ids.notification_id(incident, 1, f"u{n % 3}", Channel.EMAIL)
        base: dict[str, Any] = {
            "notification_id": nid,
            "incident_id": incident,
            "user_id": f"u{n % 3}",
            "channel": Channel.EMAIL,
            "occurred_at": now,
        }
        for record in (
            NotificationQueued(
                event_id=f"{nid}q",
                tier=Tier.PRIMARY,
                escalation_level=1,
                priority=Priority.HIGH,
                kind=NotificationKind.ALERT,
                **base,
            ),
            DeliveryAttempted(event_id=f"{nid}a", attempt=1, provider="smtp", **base),
            DeliverySent(
                event_id=f"{nid}s",
                attempt=1,
                provider="smtp",
                provider_message_id=f"m{n}",
                latency_ms=5,
                **base,
            ),
        ):
            if made >= count:
                break
            while True:
                try:
                    producer.produce(topic, key=incident.encode(), value=codec.encode(record))
                    break
                except BufferError:
                    producer.poll(0.05)
            made += 1
        if n % 20000 == 0:
            producer.poll(0)
            say(f"    ... {made}/{count} events produced")
    producer.flush(120)
    base_url = database_url(settings)
    db = f"bench_rebuild_{stamp}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    parts = urlsplit(base_url)  # a socket directory may sit in the query: only the path
    url = urlunsplit(parts._replace(path=f"/{db}"))
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            say(f"    ... {done}/{total} events folded")

    try:
        result = asyncio.run(rebuild(scratch, codec, url, progress))
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for fut in admin.delete_topics([topic]).values():
            fut.result()
    return {
        "events": result.events,
        "seconds": round(result.seconds, 1),
        "events_per_s": round(result.rate, 1),
    }
