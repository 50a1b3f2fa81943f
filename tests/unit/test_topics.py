"""The topic declaration: every record has a topic, names follow the settings."""

from __future__ import annotations

from notifier.contracts.records import TOP_LEVEL_RECORDS, Channel
from notifier.settings import Settings
from notifier.topics import declared_topics, full_name, subjects


def test_every_record_type_travels_on_some_topic() -> None:
    carried = {r for spec in declared_topics(Settings()) for r in spec.records}
    assert carried == set(TOP_LEVEL_RECORDS)


def test_names_channels_retry_steps_and_prefix() -> None:
    settings = Settings(topic_prefix="acme.", retry_delays_s=(5, 10))
    names = [spec.name for spec in declared_topics(settings)]
    assert len(names) == len(set(names))
    assert {f"notify.{c.value.lower()}" for c in Channel} <= set(names)
    assert "notify.retry.5s" in names and "notify.retry.10s" in names
    assert "notify.retry.30s" not in names
    assert full_name(settings, "incidents") == "acme.incidents"
    assert ("acme.incidents", "notifier.IncidentOpened") in subjects(settings)


def test_users_are_compacted_and_history_is_kept() -> None:
    specs = {s.name: s for s in declared_topics(Settings())}
    assert specs["users"].config["cleanup.policy"] == "compact"
    for name in ("incidents", "delivery.events", "provider.callbacks"):
        assert specs[name].config["retention.ms"] == "-1", name


def test_every_delay_of_every_priority_schedule_has_its_topic() -> None:
    settings = Settings(retry_delays_s=(30, 60), retry_schedules={"CRITICAL": (10, 30, 90)})
    retry = sorted(s.name for s in declared_topics(settings) if s.name.startswith("notify.retry."))
    assert retry == ["notify.retry.10s", "notify.retry.30s", "notify.retry.60s", "notify.retry.90s"]
