"""Message text fits each channel."""

from __future__ import annotations

import pytest

from notifier.contracts.records import Channel, NotificationKind, Priority
from notifier.domain.templates import SMS_SEGMENT, IncidentText, gsm_safe, render

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
