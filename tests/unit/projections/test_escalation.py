"""The projection's escalation fold: which events can change a decision, and what the fold
emits over a table of tier states (the rules themselves: tests/unit/domain)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryFailed,
    DeliverySent,
    EscalateTier,
    IncidentOpened,
    NotificationKind,
    NotificationQueued,
    ProviderCallback,
    ReceiptDue,
    Record,
    Tier,
    TierEscalated,
)
from notifier.domain.escalation import Critical
from notifier.domain.ids import notification_id
from notifier.settings import Settings
from projections.escalation import _emit, changes_decisions, escalate
from tests.samples import sample

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
INCIDENT, USER = "inc-1", "carol"


@pytest.mark.parametrize(
    ("event", "decides"),
    [
        (sample(NotificationQueued, kind=NotificationKind.ALERT), True),
        (sample(NotificationQueued, kind=NotificationKind.RESOLVED_NOTICE), False),
        (sample(DeliveryFailed, final=True), True),
        (sample(DeliveryFailed, final=False), False),  # a retry is coming
        (sample(DeliverySent), False),
        (sample(ProviderCallback, status=CallbackStatus.DELIVERED, user_id="u"), True),
        (sample(ProviderCallback, status=CallbackStatus.FAILED, user_id="u"), True),
        (sample(ProviderCallback, status=CallbackStatus.SENT, user_id="u"), False),
        (sample(ProviderCallback, status=CallbackStatus.FAILED, user_id=None), False),
        (sample(ReceiptDue), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Record) else str(v),
)
def test_only_queued_alerts_final_failures_receipts_and_deadlines_decide(
    event: Record, decides: bool
) -> None:
    assert changes_decisions(event) is decides


def queued(channel: Channel) -> NotificationQueued:
    return sample(
        NotificationQueued,
        notification_id=notification_id(INCIDENT, 1, USER, channel),
        incident_id=INCIDENT,
        user_id=USER,
        channel=channel,
        tier=Tier.PRIMARY,
        escalation_level=1,
        kind=NotificationKind.ALERT,
    )


def failed(channel: Channel) -> DeliveryFailed:
    return sample(
        DeliveryFailed,
        notification_id=notification_id(INCIDENT, 1, USER, channel),
        incident_id=INCIDENT,
        user_id=USER,
        channel=channel,
        final=True,
    )


def fold(events: list[Record], table: dict[str, Any], status: str = "open") -> list[Any]:
    out: list[Any] = []
    for event in events:
        out += escalate(event, table, lambda _: status, Settings(), NOW)
    return out


def test_two_failed_primary_channels_escalate_once_and_a_replay_emits_nothing() -> None:
    table: dict[str, Any] = {}
    channels = (Channel.EMAIL, Channel.PUSH, Channel.SLACK)
    assert fold([queued(c) for c in channels] + [failed(Channel.EMAIL)], table) == []
    out = fold([failed(Channel.PUSH)], table)
    assert [(topic, type(r)) for topic, _, r in out] == [
        ("delivery.events", TierEscalated),
        ("dispatch.commands", EscalateTier),
    ]
    escalated, command = out[0][2], out[1][2]
    assert command.tier is Tier.SECONDARY and command.command_id == escalated.event_id
    assert escalated.occurred_at == NOW and list(table) == [f"{INCIDENT}|{USER}"]
    assert fold([failed(Channel.PUSH), failed(Channel.SLACK)], table) == []


def test_a_closed_incident_escalates_nothing() -> None:
    table: dict[str, Any] = {}
    events = [queued(Channel.EMAIL), queued(Channel.PUSH), failed(Channel.EMAIL)]
    assert fold([*events, failed(Channel.PUSH)], table, status="acknowledged") == []


def test_the_self_alert_names_the_notifier_as_its_service() -> None:
    failure = sample(DeliveryFailed, incident_id="inc-9", user_id="carol")
    out = _emit(
        failure, 1, [Critical((Channel.EMAIL, Channel.SMS))], Settings(ops_user_ids=("ops",)), NOW
    )
    [opened] = [record for topic, _, record in out if topic == "incidents"]
    assert isinstance(opened, IncidentOpened)
    assert opened.service == "notifier" and opened.triggered_at == opened.occurred_at == NOW
