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
