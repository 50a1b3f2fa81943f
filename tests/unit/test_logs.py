"""Logs are JSON lines that carry ids and never contacts or secrets."""

from __future__ import annotations

import json
import logging

import pytest

from notifier.logs import JsonFormatter, mask


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("sent to alice.smith@example.com", "alice.smith", "a***@example.com"),
        ("sms to +14155550101 queued", "4155550101", "+***01"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Bearer ***"),
        ("api_key=sk_live_123 and token: xyz", "sk_live_123", "api_key=***"),
        ("postgresql://app:s3cret@db/x", "s3cret", "postgresql://app:***@db/x"),
    ],
)
def test_mask(text: str, hidden: str, kept: str) -> None:
    masked = mask(text)
    assert hidden not in masked
    assert kept in masked


def test_json_line_with_ids_and_masked_fields() -> None:
    record = logging.LogRecord(
        "notifier.test", logging.INFO, __file__, 1, "sending to %s", ("bob@example.com",), None
    )
    record.incident_id = "inc-1"
    record.notification_id = "n-1"
    record.address = "+14155550102"
    line = json.loads(JsonFormatter().format(record))
    assert line["incident_id"] == "inc-1" and line["notification_id"] == "n-1"
    assert line["level"] == "info"
    assert "bob@" not in line["msg"] and "4155550102" not in line["address"]
