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
    with sandbox_and_worker(logs, extra) as (sandbox, worker):
        say(f"sandbox {sandbox}, worker pid {worker.pid}; warming up")
        warm = incident(0)
        publisher.publish("incidents", warm.incident_id, warm)
        publisher.flush()
        _wait_count(sandbox, len(CHANNELS), 120, say)

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

        rss = _rss_mb(worker.pid)
        results["worker_rss_mb"] = rss

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


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / 1e6, 1)
    except psutil.Error:
        return -1.0
