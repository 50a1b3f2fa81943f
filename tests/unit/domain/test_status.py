"""Status transition rules: table-driven, monotonic, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    DeliveryCancelled,
    DeliveryDelivered,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationKind,
    NotificationQueued,
    Priority,
    Record,
    Tier,
)
from notifier.domain.status import LogRow, apply, apply_attempt

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "notification_id": "n1",
    "incident_id": "i1",
    "user_id": "u1",
    "channel": Channel.SMS,
}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queued(s: int = 0) -> NotificationQueued:
    return NotificationQueued(
        event_id="q",
        occurred_at=at(s),
        tier=Tier.SECONDARY,
        escalation_level=1,
        priority=Priority.HIGH,
        kind=NotificationKind.ALERT,
        **BASE,
    )


def attempted(n: int = 1, s: int = 1) -> DeliveryAttempted:
    return DeliveryAttempted(
        event_id=f"a{n}", occurred_at=at(s), attempt=n, provider="twilio", **BASE
    )


def sent(n: int = 1, s: int = 2) -> DeliverySent:
    return DeliverySent(
        event_id=f"s{n}",
        occurred_at=at(s),
        attempt=n,
        provider="twilio",
        provider_message_id="SM1",
        latency_ms=40,
        **BASE,
    )


def delivered(s: int = 3) -> DeliveryDelivered:
    return DeliveryDelivered(
        event_id="d", occurred_at=at(s), provider="twilio", provider_message_id="SM1", **BASE
    )


def failed(n: int = 1, final: bool = False, s: int = 2) -> DeliveryFailed:
    return DeliveryFailed(
        event_id=f"f{n}",
        occurred_at=at(s),
        attempt=n,
        category=FailureCategory.TRANSIENT,
        error="HTTP 503",
        final=final,
        provider="twilio",
        **BASE,
    )


def cancelled(s: int = 5) -> DeliveryCancelled:
    return DeliveryCancelled(
        event_id="c", occurred_at=at(s), attempt=1, reason="incident acknowledged", **BASE
    )


def fold(*events: Record) -> LogRow:
    row = None
    for event in events:
        row = apply(row, event)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([queued()], "QUEUED"),
        ([queued(), attempted()], "SENDING"),
        ([queued(), attempted(), sent()], "SENT"),
        ([queued(), attempted(), sent(), delivered()], "DELIVERED"),
        ([queued(), attempted(), delivered(), sent()], "DELIVERED"),  # late SENT: no change
        ([queued(), delivered(s=1), attempted(), sent()], "DELIVERED"),  # callback first
        ([queued(), attempted(), failed()], "SENDING"),  # transient, retries left
        ([queued(), attempted(), failed(final=True)], "FAILED"),
        ([queued(), attempted(), failed(final=True), sent()], "FAILED"),  # terminal
        ([queued(), attempted(), sent(), failed(final=True)], "FAILED"),  # bounce after send
        ([queued(), attempted(), sent(), delivered(), failed(final=True)], "DELIVERED"),
        ([queued(), cancelled()], "CANCELLED"),
        ([queued(), attempted(), failed(), cancelled()], "CANCELLED"),
        ([queued(), attempted(), sent(), cancelled()], "SENT"),  # nothing left to cancel
        ([queued(), cancelled(), attempted(), sent()], "CANCELLED"),  # terminal
        ([attempted(), queued(), sent()], "SENT"),  # out of order: still converges
    ],
)
def test_transitions(events: list[Record], status: str) -> None:
    assert fold(*events).status == status


def test_every_event_applied_twice_changes_nothing() -> None:
    events: list[Record] = [
        queued(),
        attempted(1),
        failed(1, s=2),
        attempted(2, s=30),
        sent(2, s=31),
        delivered(s=40),
    ]
    once = fold(*events)
    twice = fold(*[e for event in events for e in (event, event)])
    assert once == twice
    assert once.attempt_count == 2 and once.status == "DELIVERED"
    assert once.queued_at == at(0) and once.sent_at == at(31) and once.delivered_at == at(40)
    assert once.tier == "SECONDARY" and once.error == "HTTP 503"


def test_attempt_rows() -> None:
    row = None
    for event in (attempted(1), failed(1), failed(1)):
        row = apply_attempt(row, event)
    assert row is not None
    assert (row.attempt, row.outcome, row.error_category) == (1, "FAILED", "TRANSIENT")
    row2 = apply_attempt(apply_attempt(None, attempted(2, s=30)), sent(2, s=31))
    assert row2 is not None and row2.outcome == "SENT" and row2.latency_ms == 40
    assert apply_attempt(None, queued()) is None
