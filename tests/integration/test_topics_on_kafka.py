"""Topic creation against the real broker: idempotent, and the declared configs are set."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from notifier.settings import Settings
from notifier.topics import declared_topics, describe_topics, ensure_topics, full_name

pytestmark = pytest.mark.integration


def test_create_twice_then_repair_a_drifted_config(settings: Settings) -> None:
    names = [full_name(settings, s.name) for s in declared_topics(settings)]

    first = ensure_topics(settings.kafka_bootstrap, settings)
    assert {a.topic for a in first} == set(names)
    assert all(a.action in ("created", "unchanged") for a in first)

    second = ensure_topics(settings.kafka_bootstrap, settings)
    assert [a.action for a in second] == ["unchanged"] * len(names)

    described = describe_topics(settings.kafka_bootstrap, names)
    assert set(described) == set(names)
    users = described[full_name(settings, "users")]
    assert users["cleanup.policy"] == "compact"
    assert users["partitions"] == str(settings.topic_partitions)
    assert described[full_name(settings, "delivery.events")]["retention.ms"] == "-1"
    assert described[full_name(settings, "notify.retry.1s")]["retention.ms"] == "86400000"

    incidents = full_name(settings, "incidents")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    drift = ConfigResource(
        ResourceType.TOPIC,
        incidents,
        incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for fut in admin.incremental_alter_configs([drift]).values():
        fut.result()
    assert describe_topics(settings.kafka_bootstrap, [incidents])[incidents]["retention.ms"] == (
        "60000"
    )

    third = {a.topic: a for a in ensure_topics(settings.kafka_bootstrap, settings)}
    assert third[incidents].action == "updated"
    assert "retention.ms" in third[incidents].detail
    assert describe_topics(settings.kafka_bootstrap, [incidents])[incidents]["retention.ms"] == "-1"
