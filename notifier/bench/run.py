"""`notifier bench` (`make bench`): the pipeline under load against the provider sandbox.

Prints and saves (bench-results/*.json): notifications/s from incidents to provider requests,
incident -> first provider request latency percentiles at a paced rate, and the raw Kafka
produce -> consume rate for the same message count, measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    IncidentOpened,
    Priority,
    SlackConnection,
    UserProfile,
)
from notifier.kafka_io import end_offsets
from notifier.localprocs import sandbox_and_worker
from notifier.settings import Settings

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"
CHANNELS = (Channel.EMAIL, Channel.SLACK, Channel.PUSH)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _wait_count(sandbox: str, target: int, timeout_s: float, say: Callable[[str], None]) -> float:
    """Poll the sandbox until it has `target` requests; returns when it got there."""
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while True:
        count = _get(f"{sandbox}/_sandbox/stats")["count"]
        now = time.monotonic()
        if count >= target:
            return time.time()
        if now > deadline:
            raise RuntimeError(f"only {count} of {target} provider requests within {timeout_s} s")
        if now - last_report > 2:
            say(f"    ... {count}/{target} provider requests")
            last_report = now
        time.sleep(0.05)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
    }


def raw_kafka_rate(settings: Settings, count: int, size: int = 400) -> float:
    """Messages/s for `count` messages produced with confluent-kafka and consumed back."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"{settings.topic_prefix}bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)]).values():
        fut.result()
    payload = b"x" * size
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "acks": "all"}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    consumer.poll(1.0)  # join the group before timing
    started = time.monotonic()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    seen = 0
    while seen < count and time.monotonic() - started < 120:
        seen += len([m for m in consumer.consume(1000, 0.5) if m.error() is None])
    elapsed = time.monotonic() - started
    consumer.close()
    for fut in admin.delete_topics([topic]).values():
        fut.result()
    return seen / elapsed


def run_bench(
    settings: Settings,
    say: Callable[[str], None],
    *,
    incidents: int = 2000,
    rate: int = 200,
    paced_s: float = 10.0,
    users: int = 500,
    rebuild_events: int = 1_000_000,
) -> dict[str, Any]:
    """Run every phase and return (and save) the figures."""
    from notifier.contracts.factory import build_codec
    from notifier.kafka_io import Publisher

    codec = build_codec(settings)
    publisher = Publisher(settings, codec)
    logs = settings.stack_dir / "bench"
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "incidents": incidents,
        "channels_per_incident": len(CHANNELS),
        "paced_rate": rate,
        "paced_seconds": paced_s,
    }
    stamp = time.strftime("%H%M%S")
    say(f"publishing {users} users with {', '.join(c.value.lower() for c in CHANNELS)}")
    for i in range(users):
        user_id = f"bench-{stamp}-{i}"
        publisher.publish(
            "users",
            user_id,
            UserProfile(
                user_id=user_id,
                name=user_id,
                updated_at=datetime.now(UTC),
                email=f"{user_id}@example.com",
                push_tokens=[f"tok-{user_id}"],
                slack=SlackConnection(f"U{i:08d}", True),
                preferences=[ChannelPreference(c, True, n) for n, c in enumerate(CHANNELS)],
            ),
        )
    publisher.flush()

    def incident(n: int) -> IncidentOpened:
        return IncidentOpened(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=f"bench-{stamp}-{n}-{uuid.uuid4().hex[:6]}",
            title="bench",
            priority=Priority.HIGH,
            escalation_level=1,
            user_ids=[f"bench-{stamp}-{n % users}"],
        )

    extra = {
        "NOTIFIER_EMAIL_PROVIDER": "sendgrid",
        "NOTIFIER_RATE_LIMIT_PER_MIN": "6000000",
        "NOTIFIER_CHANNEL_CONCURRENCY": "50",
        "NOTIFIER_LOG_LEVEL": "WARNING",
    }
    with sandbox_and_worker(logs, extra) as (sandbox, worker, _):
        say(f"sandbox {sandbox}, worker pid {worker.pid}; warming up")
        warm = incident(0)
        publisher.publish("incidents", warm.incident_id, warm)
        publisher.flush()
        _wait_count(sandbox, len(CHANNELS), 120, say)

        events_before = sum(end_offsets(settings, "delivery.events").values())
        say(f"phase 1: {incidents} incidents as fast as possible")
        urllib.request.urlopen(
            urllib.request.Request(f"{sandbox}/_sandbox/requests", method="DELETE"), timeout=10
        ).close()
        started = time.time()
        for n in range(incidents):
            event = incident(n)
            publisher.publish("incidents", event.incident_id, event)
        publisher.flush()
        published = time.time()
        finished = _wait_count(sandbox, incidents * len(CHANNELS), 300, say)
        sends = incidents * len(CHANNELS)
        results["throughput"] = {
            "notifications": sends,
            "seconds": round(finished - started, 2),
            "notifications_per_s": round(sends / (finished - started), 1),
            "publish_seconds": round(published - started, 2),
        }
        say(
            f"    {sends} notifications in {finished - started:.1f} s = "
            f"{sends / (finished - started):.0f}/s"
        )
        caught_up = _wait_projection(settings, say)
        events = sum(end_offsets(settings, "delivery.events").values()) - events_before
        results["projection"] = {
            "events": events,
            "seconds": round(caught_up - started, 2),
            "events_per_s": round(events / (caught_up - started), 1),
        }
        say(
            f"    projection: {events} events into PostgreSQL, caught up "
            f"{caught_up - finished:.1f} s after the last send"
        )

        say(f"phase 2: {rate} incidents/s for {paced_s:.0f} s, latency to first provider request")
        urllib.request.urlopen(
            urllib.request.Request(f"{sandbox}/_sandbox/requests", method="DELETE"), timeout=10
        ).close()
        sent_at: dict[str, float] = {}
        total = int(rate * paced_s)
        t0 = time.monotonic()
        for n in range(total):
            due = t0 + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event = incident(n)
            publisher.publish("incidents", event.incident_id, event)
            publisher._producer.poll(0)
            sent_at[event.incident_id] = event.occurred_at.timestamp()
        publisher.flush()
        _wait_count(sandbox, total * len(CHANNELS), 300, say)
        first: dict[str, float] = {}
        for item in _get(f"{sandbox}/_sandbox/requests"):
            incident_id = item.get("incident_id")
            if incident_id in sent_at:
                first[incident_id] = min(
                    first.get(incident_id, item["started_at"]), item["started_at"]
                )
        latencies = [(first[i] - sent_at[i]) * 1000 for i in first]
        results["latency_ms"] = {"incidents": len(latencies), **_percentiles(latencies)}
        say(f"    incident -> first provider request: {results['latency_ms']}")

        _wait_projection(settings, say)
        visibility = _visibility_ms(settings, list(sent_at))
        results["event_to_row_ms"] = {"rows": len(visibility), **_percentiles(visibility)}
        say(f"    DeliverySent -> row written: {results['event_to_row_ms']}")
        rss = _rss_mb(worker.pid)
        results["worker_rss_mb"] = rss

    if rebuild_events:
        say(f"rebuild: {rebuild_events} synthetic delivery events, folded into a fresh database")
        results["rebuild"] = rebuild_rate(settings, codec, rebuild_events, say)
        say(f"    {results['rebuild']['events_per_s']} events/s")
    say(f"raw Kafka: {incidents * len(CHANNELS)} messages produced and consumed")
    raw = raw_kafka_rate(settings, incidents * len(CHANNELS))
    results["raw_kafka_msgs_per_s"] = round(raw, 1)
    results["share_of_raw"] = round(results["throughput"]["notifications_per_s"] / raw, 3)
    codec.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=2))
    say(f"saved {out}")
    return results


def _wait_projection(
    settings: Settings, say: Callable[[str], None], timeout_s: float = 300
) -> float:
    """Wait until the projection's stored offsets reach the end of delivery.events."""
    import psycopg

    from notifier.topics import full_name
    from projections.database import database_url

    topic = full_name(settings, "delivery.events")
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        while True:
            ends = {p: o for p, o in end_offsets(settings, "delivery.events").items() if o}
            stored: dict[int, int] = dict(
                conn.execute(
                    "SELECT partition, next_offset FROM projection_offset WHERE topic = %s",
                    (topic,),
                ).fetchall()
            )
            behind = sum(o - stored.get(p, 0) for p, o in ends.items())
            if behind <= 0:
                return time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"projection still {behind} events behind")
            time.sleep(0.1)


def _visibility_ms(settings: Settings, incident_ids: list[str]) -> list[float]:
    """Per SENT row: from its DeliverySent event to the row's write in PostgreSQL."""
    import psycopg

    from projections.database import database_url

    with psycopg.connect(database_url(settings)) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM updated_at - sent_at) * 1000 FROM notification_log "
            "WHERE incident_id = ANY(%s) AND status = 'SENT'",
            (incident_ids,),
        ).fetchall()
    return [float(r[0]) for r in rows]


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
    url = (
        base_url.replace("/postgres?", f"/{db}?")
        if "/postgres?" in base_url
        else base_url.rsplit("/", 1)[0] + f"/{db}"
    )
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


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / 1e6, 1)
    except psutil.Error:
        return -1.0
