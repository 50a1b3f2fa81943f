"""Publishing records and reading topics with confluent-kafka, for the CLI and tools."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import Record
from notifier.settings import Settings
from notifier.topics import full_name


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """confluent-kafka producer settings every notifier producer shares: acknowledged by all
    in-sync replicas, idempotent, and keyed with murmur2 as Faust and Java clients are (one
    key, one partition, whoever produces it)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "logger": logging.getLogger("notifier.kafka.producer"),
        **overrides,
    }


class PublishError(RuntimeError):
    """Kafka did not acknowledge a message."""


class Publisher:
    """Encodes records with the shared codec and produces them, acknowledged by all replicas."""

    def __init__(self, settings: Settings, codec: AvroCodec) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.codec = codec
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        self._errors: list[str] = []

    def publish(self, topic: str, key: str, record: Record) -> None:
        """Queue `record` on logical topic `topic` under `key` (waiting while the
        producer's queue is full, so a long run of publishes never fails on it)."""
        value = self.codec.encode(record)
        while True:
            try:
                self._producer.produce(
                    full_name(self.settings, topic),
                    key=key.encode(),
                    value=value,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued message is acknowledged; PublishError if any was not."""
        left = self._producer.flush(timeout_s)
        if left:
            raise PublishError(
                f"{left} message(s) not acknowledged within {timeout_s:.0f} s "
                f"by {self.settings.kafka_bootstrap}"
            )
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError("; ".join(errors))


def end_offsets(settings: Settings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The next offset of every partition of `topic` now (where a reader 'from now' starts)."""
    from confluent_kafka import Consumer, TopicPartition

    name = full_name(settings, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"notifier-offsets-{time.time_ns()}",
        }
    )
    try:
        partitions = consumer.list_topics(name, timeout=timeout_s).topics[name].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout_s)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def read_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    start_offsets: dict[int, int] | None = None,
    timeout_s: float,
    max_messages: int | None = None,
) -> Iterator[tuple[bytes | None, bytes | None, int | None, int | None]]:
    """Yield (key, value, partition, offset) from every partition until idle for `timeout_s`."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    name = full_name(settings, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"notifier-tail-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "logger": logging.getLogger("notifier.kafka.consumer"),
        }
    )
    try:
        metadata = consumer.list_topics(name, timeout=10)
        partitions = metadata.topics[name].partitions
        if metadata.topics[name].error is not None:
            raise PublishError(f"topic {name}: {metadata.topics[name].error}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign(
            [TopicPartition(name, p, (start_offsets or {}).get(p, start)) for p in partitions]
        )
        seen = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            deadline = time.monotonic() + timeout_s
            yield msg.key(), msg.value(), msg.partition(), msg.offset()
            seen += 1
            if max_messages is not None and seen >= max_messages:
                return
    finally:
        consumer.close()
