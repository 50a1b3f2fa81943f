"""Settings: environment parsing, validation and masking."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.settings import Settings, mask_url


def test_reads_prefixed_and_conventional_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("NOTIFIER_RETRY_DELAYS_S", "1, 2,4")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db:5432/notify")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://registry:8081")
    settings = Settings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.retry_delays_s == (1, 2, 4)
    assert settings.schema_registry_url == "http://registry:8081"
    shown = settings.masked()
    assert shown["database_url"] == "postgresql://app:***@db:5432/notify"
    assert "s3cret" not in str(shown)


@pytest.mark.parametrize("delays", ["0,30", "", "-5"])
def test_rejects_a_bad_backoff_schedule(monkeypatch: pytest.MonkeyPatch, delays: str) -> None:
    monkeypatch.setenv("NOTIFIER_RETRY_DELAYS_S", delays)
    with pytest.raises(ValidationError, match="retry_delays_s"):
        Settings()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:@/postgres?host=/tmp/x",
        ),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_per_channel_timeouts_and_per_priority_schedules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFIER_SEND_TIMEOUT_S", "8")
    monkeypatch.setenv("NOTIFIER_SEND_TIMEOUTS", "voice=30, SMS=4.5")
    monkeypatch.setenv("NOTIFIER_RETRY_DELAYS_S", "30,60")
    monkeypatch.setenv("NOTIFIER_RETRY_SCHEDULES", "CRITICAL=10,20,40,80;low=300;INFO=600")
    settings = Settings()
    assert [settings.send_timeout(c) for c in ("VOICE", "SMS", "EMAIL")] == [30.0, 4.5, 8.0]
    assert settings.retry_delays("CRITICAL") == (10, 20, 40, 80)
    assert settings.retry_delays("LOW") == (300,)
    assert settings.retry_delays("INFO") == (600,)
    assert settings.retry_delays("HIGH") == (30, 60)
    assert settings.every_retry_delay == (10, 20, 30, 40, 60, 80, 300, 600)  # a topic each
    shown = settings.masked()  # what `notifier config` prints
    assert shown["retry_schedules"] == "CRITICAL=10,20,40,80;LOW=300;INFO=600"
    assert shown["send_timeouts"] == "VOICE=30.0,SMS=4.5"


def test_priority_lists_take_info_and_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_REPEAT_PRIORITIES", "critical, info")
    monkeypatch.setenv("NOTIFIER_RECEIPT_PRIORITIES", "")
    settings = Settings()
    assert settings.repeat_priorities == ("CRITICAL", "INFO")
    assert settings.receipt_priorities == ()
    assert Settings().retry_delays("INFO") == Settings().retry_delays_s  # not named: default


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NOTIFIER_SEND_TIMEOUTS", "FAX=3", "unknown channel 'FAX'"),
        ("NOTIFIER_SEND_TIMEOUTS", "SMS=0", "must be positive"),
        ("NOTIFIER_SEND_TIMEOUTS", "SMS", "is not CHANNEL=seconds"),
        ("NOTIFIER_RETRY_SCHEDULES", "URGENT=10", "unknown priority 'URGENT'"),
        ("NOTIFIER_RETRY_SCHEDULES", "LOW=0,5", "positive delays"),
        ("NOTIFIER_RETRY_SCHEDULES", "LOW", "is not PRIORITY=delay"),
        ("NOTIFIER_REPEAT_PRIORITIES", "CRITICAL,CRTICAL", "unknown priority 'CRTICAL'"),
        ("NOTIFIER_RECEIPT_PRIORITIES", "URGENT", "unknown priority 'URGENT'"),
    ],
)
def test_bad_timeouts_and_schedules_are_refused_with_why(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
