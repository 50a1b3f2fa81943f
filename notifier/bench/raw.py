"""The raw Kafka ceiling: the same number of messages produced and consumed with
confluent-kafka alone, on the same broker in the same run, to compare the pipeline with."""

from __future__ import annotations

import time
import uuid

from notifier.settings import Settings


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
