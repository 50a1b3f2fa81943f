"""Message text fits each channel."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifier.contracts.records import Channel, NotificationKind, Priority
from notifier.domain.sms_reply import SMS_REPLY_ROOM
from notifier.domain.templates import (
    PUSH_BODY,
    SMS_PART,
    SMS_SEGMENT,
    IncidentText,
    facts,
    gsm_safe,
    render,
    septets,
    shown_time,
)

LONG = IncidentText(
    title="checkout-api: error rate above 5% — " + "x" * 300,
    priority=Priority.CRITICAL,
    escalation_level=2,
    description="5xx ratio 7.2%",
    url="https://inc.example.com/i/42",
)


def test_sms_is_one_gsm_segment_and_keeps_the_link() -> None:
    _, body = render(Channel.SMS, NotificationKind.ALERT, LONG)
    assert len(body) <= SMS_SEGMENT
    assert body == gsm_safe(body)
    assert body.endswith("https://inc.example.com/i/42")
    assert body.startswith("[CRITICAL] checkout-api")


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_has_text(channel: Channel) -> None:
    for kind in NotificationKind:
        title, body = render(channel, kind, LONG)
        assert title and body


def test_notices_say_what_happened_and_who() -> None:
    text = IncidentText(title="db down", priority=Priority.HIGH, escalation_level=1, by="alice")
    title, body = render(Channel.EMAIL, NotificationKind.ACKNOWLEDGED_NOTICE, text)
    assert title == "Acknowledged: db down"
    assert "acknowledged by alice" in body
    _, spoken = render(Channel.VOICE, NotificationKind.ALERT, text)
    assert "HIGH" in spoken and "db down" in spoken


DETAILED = IncidentText(
    title="checkout-api: error rate above 5%",
    priority=Priority.HIGH,
    escalation_level=1,
    description="5xx ratio 7.2%",
    url="https://inc.example.com/i/42",
    service="checkout-api",
    team_name="Payments",
    alert_count=3,
    triggered_at=datetime(2026, 12, 3, 11, 58, 30, tzinfo=UTC),
    dashboard_url="https://grafana.example.com/d/checkout",
)
WHEN = "2026-12-03 11:58 UTC"

# what each channel's alert must show; a call cannot show a link, so it names the rest
SHOWN: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("checkout-api", "Payments", "Alerts: 3", WHEN, DETAILED.dashboard_url or ""),
    Channel.SMS: ("checkout-api (Payments)", "3 alerts", WHEN, DETAILED.dashboard_url or ""),
    Channel.VOICE: ("Service checkout-api", "Team Payments", "3 alerts", WHEN),
    Channel.PUSH: ("checkout-api", "Payments", "Alerts: 3", WHEN, DETAILED.dashboard_url or ""),
    Channel.SLACK: ("checkout-api", "Payments", "Alerts: 3", WHEN, DETAILED.dashboard_url or ""),
    Channel.TEAMS: ("checkout-api", "Payments", "Alerts: 3", WHEN, DETAILED.dashboard_url or ""),
    Channel.WEBHOOK: ("checkout-api", "Payments", "Alerts: 3", WHEN, DETAILED.dashboard_url or ""),
}


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value.lower())
def test_every_channel_shows_the_incident_details(channel: Channel) -> None:
    _, body = render(channel, NotificationKind.ALERT, DETAILED)
    for shown in SHOWN[channel]:
        assert shown in body, f"{channel.value} body lacks {shown!r}: {body!r}"


@pytest.mark.parametrize("channel", list(Channel), ids=lambda c: c.value.lower())
def test_details_not_given_are_not_shown(channel: Channel) -> None:
    bare = IncidentText(title="db down", priority=Priority.HIGH, escalation_level=1)
    _, body = render(channel, NotificationKind.ALERT, bare)
    for label in ("Service", "Team", "Alerts", "Triggered", "Dashboard", "None"):
        assert label not in body


def test_only_the_known_details_are_shown() -> None:
    some = IncidentText(
        title="db down", priority=Priority.LOW, escalation_level=1, team_name="DBA", alert_count=0
    )
    _, body = render(Channel.EMAIL, NotificationKind.ALERT, some)
    assert body.splitlines()[0] == "Team: DBA | Alerts: 0"
    _, spoken = render(Channel.VOICE, NotificationKind.ALERT, some)
    assert "Team DBA. 0 alerts." in spoken and "Service" not in spoken


def test_a_negative_alert_count_is_not_shown() -> None:
    odd = IncidentText(title="db down", priority=Priority.LOW, escalation_level=1, alert_count=-2)
    assert facts(odd) == []


def test_the_sms_keeps_details_and_links_and_shortens_the_headline() -> None:
    long = IncidentText(**{**DETAILED.__dict__, "title": "x" * 300})
    _, body = render(Channel.SMS, NotificationKind.ALERT, long)
    assert body == gsm_safe(body)
    assert body.endswith(f"{DETAILED.url} {DETAILED.dashboard_url}")
    assert f"... checkout-api (Payments), 3 alerts, triggered {WHEN} https://" in body
    # no room in one segment: the headline fills two, less the room kept for the reply hint
    assert septets(body) == 2 * SMS_PART - SMS_REPLY_ROOM  # "[", "]" take two septets each
    assert body.startswith("[HIGH] " + "x" * 100)


def test_an_sms_stays_in_one_segment_when_the_details_leave_room() -> None:
    short = IncidentText(
        title="x" * 300, priority=Priority.LOW, escalation_level=1, service="db", alert_count=1
    )
    _, body = render(Channel.SMS, NotificationKind.ALERT, short)
    assert septets(body) == SMS_SEGMENT - SMS_REPLY_ROOM and body.endswith("... db, 1 alert")


def test_push_keeps_the_details_when_the_description_is_long() -> None:
    long = IncidentText(**{**DETAILED.__dict__, "description": "y" * 1000})
    _, body = render(Channel.PUSH, NotificationKind.ALERT, long)
    assert len(body) <= PUSH_BODY
    assert body.startswith("Service: checkout-api | Team: Payments | Alerts: 3")


def test_notices_keep_the_dashboard_link_but_not_the_details() -> None:
    _, body = render(Channel.EMAIL, NotificationKind.RESOLVED_NOTICE, DETAILED)
    assert "Dashboard: https://grafana.example.com/d/checkout" in body
    assert "Alerts: 3" not in body


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        (datetime(2026, 12, 3, 11, 58, 59, tzinfo=UTC), "2026-12-03 11:58 UTC"),
        (datetime(2026, 12, 3, 13, 58, tzinfo=timezone(timedelta(hours=2))), WHEN),
        (datetime(2026, 12, 3, 11, 58), WHEN),  # naive: taken as UTC
    ],
)
def test_times_are_shown_in_utc_to_the_minute(at: datetime, shown: str) -> None:
    assert shown_time(at) == shown


def test_info_is_shown_like_any_priority() -> None:
    info = IncidentText(
        title="certificate renews in 30 days", priority=Priority.INFO, escalation_level=1
    )
    title, _ = render(Channel.EMAIL, NotificationKind.ALERT, info)
    assert title == "[INFO] certificate renews in 30 days"


@pytest.mark.parametrize(
    ("time_zone", "shown"),
    [
        ("UTC", "2026-12-03 11:58 UTC"),
        ("Europe/Berlin", "2026-12-03 12:58 CET"),
        ("America/New_York", "2026-12-03 06:58 EST"),
        ("Asia/Kolkata", "2026-12-03 17:28 IST"),
        ("Mars/Olympus_Mons", "2026-12-03 11:58 UTC"),  # unknown: UTC rather than no message
    ],
)
def test_every_channel_shows_the_trigger_time_in_the_readers_zone(
    time_zone: str, shown: str
) -> None:
    text = replace(DETAILED, time_zone=time_zone)
    for channel in Channel:
        _, body = render(channel, NotificationKind.ALERT, text)
        assert shown in body, (channel, body)


@pytest.mark.parametrize(
    ("text", "count"),
    [("db down", 7), ("[HIGH] db", 11), ("a{b}c~d|e^f\\g", 19), ("", 0)],
)
def test_gsm_extension_characters_take_two_septets(text: str, count: int) -> None:
    assert septets(text) == count
