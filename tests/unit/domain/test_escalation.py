"""Tier escalation rules and the critical self-alert guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    ReceiptDue,
    Record,
    Tier,
)
from notifier.domain.escalation import Critical, Escalate, TierState, decide, observe, record

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
TIER_OF = {
    Channel.EMAIL: Tier.PRIMARY,
    Channel.SLACK: Tier.PRIMARY,
    Channel.PUSH: Tier.PRIMARY,
    Channel.SMS: Tier.SECONDARY,
    Channel.VOICE: Tier.FALLBACK,
}


def base(channel: Channel) -> dict[str, Any]:
    return {
        "notification_id": f"n-{channel.value}",
        "incident_id": "inc",
        "user_id": "u",
        "channel": channel,
        "occurred_at": NOW,
    }


def queued(channel: Channel, kind: NotificationKind = NotificationKind.ALERT) -> Record:
    return NotificationQueued(
        event_id="q",
        tier=TIER_OF[channel],
        escalation_level=1,
        priority=Priority.HIGH,
        kind=kind,
        **base(channel),
    )


def failed(channel: Channel, final: bool = True) -> Record:
    return DeliveryFailed(
        event_id="f",
        attempt=3,
        category=FailureCategory.TRANSIENT,
        error="x",
        final=final,
        **base(channel),
    )


def sent(channel: Channel) -> Record:
    return DeliverySent(
        event_id="s",
        attempt=1,
        provider="p",
        provider_message_id="m",
        latency_ms=1,
        **base(channel),
    )


def callback(channel: Channel, status: CallbackStatus) -> ProviderCallback:
    fields = base(channel)
    return ProviderCallback(
        event_id="c",
        received_at=NOW,
        provider="twilio",
        status=status,
        raw_status=status.value.lower(),
        incident_id=fields["incident_id"],
        notification_id=fields["notification_id"],
        channel=channel,
        occurred_at=NOW,
        user_id="u",
    )


def overdue(channel: Channel) -> Record:
    return ReceiptDue(
        event_id="r", due_at=NOW + timedelta(minutes=2), provider="twilio", **base(channel)
    )


DELIVERED, BOUNCED = CallbackStatus.DELIVERED, CallbackStatus.FAILED
E, S, P, SL, V = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.SLACK, Channel.VOICE


def run(events: list[Record], incident: str = "inc") -> list[Escalate | Critical]:
    state = TierState()
    decisions: list[Escalate | Critical] = []
    for event in events:
        state = observe(TierState.from_json(state.to_json()), event)  # through JSON, as stored
        now = decide(state, incident)
        state = record(state, now)
        decisions += now
    return decisions


def tiers(decisions: list[Escalate | Critical]) -> list[str]:
    return [d.to_tier.value if isinstance(d, Escalate) else "CRITICAL" for d in decisions]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([queued(E), queued(P), queued(SL), failed(E)], []),
        ([queued(E), queued(P), queued(SL), failed(E), failed(P)], ["SECONDARY"]),
        ([queued(E), queued(P), failed(E), sent(P)], []),
        ([queued(E), failed(E)], ["SECONDARY"]),  # one primary channel: the seeds' defect
        ([queued(E), failed(E, final=False)], []),  # retries left
        (
            [queued(E), queued(P), failed(E), failed(P), queued(S), failed(S)],
            ["SECONDARY", "FALLBACK", "CRITICAL"],
        ),
        ([queued(E), queued(P), failed(E), failed(P), failed(P), failed(E)], ["SECONDARY"]),
        ([queued(E, NotificationKind.ACKNOWLEDGED_NOTICE), failed(E)], []),  # notices never
        ([queued(S), failed(S)], ["FALLBACK"]),
        ([queued(S), sent(S), overdue(S)], ["FALLBACK"]),  # no receipt in time
        ([queued(S), sent(S), callback(S, DELIVERED), overdue(S)], []),  # receipt in time
        ([queued(S), sent(S), overdue(S), callback(S, DELIVERED)], ["FALLBACK"]),  # too late
        ([queued(S), sent(S), callback(S, BOUNCED)], ["FALLBACK"]),  # undelivered
        ([queued(S), callback(S, DELIVERED), callback(S, BOUNCED)], []),  # delivered stands
        ([queued(S), failed(S), overdue(S), overdue(S)], ["FALLBACK"]),  # decided once
        (
            [queued(E), queued(P), sent(E), sent(P), overdue(E), callback(P, BOUNCED)],
            ["SECONDARY"],
        ),
        # a report naming a channel the tier never alerted on changes nothing (no self-alert)
        ([queued(S), replace(callback(S, BOUNCED), channel=E), callback(S, BOUNCED)], ["FALLBACK"]),
    ],
    ids=[
        "one-of-three",
        "two-of-three",
        "one-failed-one-sent",
        "single-primary",
        "not-final",
        "email-and-sms",
        "replayed-failures",
        "notice",
        "secondary-only",
        "receipt-overdue",
        "receipt-in-time",
        "receipt-too-late",
        "bounced",
        "delivered-then-bounce",
        "overdue-after-failure",
        "primary-overdue-and-bounced",
        "foreign-channel",
    ],
)
def test_escalation_table(events: list[Record], expected: list[str]) -> None:
    assert tiers(run(events)) == expected


def test_critical_alert_once_and_never_about_a_self_alert() -> None:
    events = [queued(E), queued(S), failed(E), failed(S), failed(S)]
    assert tiers(run(events)).count("CRITICAL") == 1
    assert "CRITICAL" not in tiers(run(events, incident="selfalert-123"))
