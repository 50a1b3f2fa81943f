"""Tier escalation and the critical self-alert on the real pipeline."""

from __future__ import annotations

import pytest

from notifier.contracts.records import (
    CriticalDeliveryFailure,
    DeliverySent,
    NotificationQueued,
    TierEscalated,
)
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration
WHO_FAILED = "Who could not be reached, which tiers failed, and why (last day)"
PRIMARY = ("smtp", "slack", "fcm", "teams", "webhook")


async def test_primary_fails_then_sms_fails_then_voice(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    for provider in PRIMARY:
        await p.fault(provider, fail_next=1, status=400)  # permanent: no retries
    await p.fault("twilio", fail_next=1, status=400, code="21211")  # the SMS
    event = p.incident("all7")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(
            isinstance(e, DeliverySent) and e.channel.value == "VOICE" for e in found
        ),
        timeout_s=40,
    )
    queued = [e.channel.value for e in events if isinstance(e, NotificationQueued)]
    assert set(queued[:5]) == {"EMAIL", "SLACK", "PUSH", "TEAMS", "WEBHOOK"}
    assert queued[5:] == ["SMS", "VOICE"]
    escalations = [
        (e.from_tier.value, e.to_tier.value) for e in events if isinstance(e, TierEscalated)
    ]
    assert escalations == [("PRIMARY", "SECONDARY"), ("SECONDARY", "FALLBACK")]


async def test_a_single_failed_primary_channel_escalates(clean_sandbox: Pipeline) -> None:
    """The seeds' defect: a user whose only primary channel is email was never escalated."""
    p = clean_sandbox
    await p.fault("smtp", fail_next=1, status=550)
    event = p.incident("solo")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliverySent) and e.channel.value == "SMS" for e in found),
    )
    assert [e.to_tier.value for e in events if isinstance(e, TierEscalated)] == ["SECONDARY"]


async def test_email_and_sms_failing_pages_the_ops_team_once(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    await p.fault("smtp", fail_next=1, status=550)
    await p.fault("twilio", fail_next=1, status=400, code="21211")
    event = p.incident("solo")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, CriticalDeliveryFailure) for e in found),
        timeout_s=30,
    )
    critical = [e for e in events if isinstance(e, CriticalDeliveryFailure)]
    assert len(critical) == 1
    ops_id = critical[0].ops_incident_id
    # the NotificationLog says it too, with the page's own query
    people = await eventually(
        lambda: p.documented(WHO_FAILED, event.incident_id),
        lambda rows: any(r["kind"] == "CRITICAL_FAILURE" for r in rows),
    )
    assert sorted((r["kind"], r["from_tier"] or "", r["to_tier"] or "") for r in people) == [
        ("CRITICAL_FAILURE", "", ""),
        ("TIER_ESCALATED", "PRIMARY", "SECONDARY"),
        ("TIER_ESCALATED", "SECONDARY", "FALLBACK"),
    ]
    [paged] = [r for r in people if r["kind"] == "CRITICAL_FAILURE"]
    assert paged["failed_channels"] == ["EMAIL", "SMS"] and paged["ops_incident_id"] == ops_id
    assert all(r["reason"] for r in people)
    ops = await p.events(
        "delivery.events",
        ops_id,
        lambda found: any(isinstance(e, DeliverySent) for e in found),
        timeout_s=30,
    )
    assert {(e.user_id, e.channel.value) for e in ops if isinstance(e, DeliverySent)} == {
        ("opsy", "EMAIL")
    }
