"""The codec through a real topic: written with confluent-kafka, read back with aiokafka."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from notifier.contracts.errors import ContractError
from notifier.contracts.factory import build_codec
from notifier.contracts.records import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    Record,
)
from notifier.settings import Settings
from notifier.topics import full_name
from tests.samples import sample

pytestmark = pytest.mark.integration


async def test_records_survive_a_real_topic(registered: Settings) -> None:
    settings = registered
    topic = full_name(settings, "incidents")
    codec = build_codec(settings)
    sent: list[Record] = [
        sample(IncidentOpened, incident_id="inc-codec"),
        sample(IncidentEscalated, incident_id="inc-codec", escalation_level=2),
        sample(IncidentAcknowledged, incident_id="inc-codec"),
        sample(IncidentResolved, incident_id="inc-codec"),
    ]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for record in sent:
        producer.produce(topic, key=b"inc-codec", value=codec.encode(record))
    producer.produce(topic, key=b"inc-codec", value=b"not avro at all")
    assert producer.flush(30) == 0

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    received: list[Record] = []
    errors: list[str] = []
    try:
        while len(received) + len(errors) < len(sent) + 1:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "nothing arrived within 10 s"
            for messages in batch.values():
                for msg in messages:
                    if msg.key != b"inc-codec":
                        continue
                    try:
                        received.append(codec.decode(msg.value))
                    except ContractError as exc:
                        errors.append(exc.reason)
    finally:
        await consumer.stop()
        codec.close()
    assert received == sent
    assert len(errors) == 1 and "magic byte" in errors[0]
