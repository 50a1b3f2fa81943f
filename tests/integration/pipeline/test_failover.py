"""Email fails over from SMTP to SendGrid, SMS from Twilio to Vonage, on the real pipeline
(the session's worker runs with NOTIFIER_PROVIDERS=EMAIL=smtp,sendgrid;SMS=twilio,vonage;
VOICE=twilio,vonage; the retry schedule is 1 s, 2 s)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    DeliveryFailed,
    DeliverySent,
    IncidentOpened,
    NotificationQueued,
    TierEscalated,
)
from notifier.domain import ids
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "FAILOVER.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


async def _query(p: Pipeline, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    assert p.settings.database_url is not None
    async with await psycopg.AsyncConnection.connect(
        p.settings.database_url.get_secret_value()
    ) as conn:
        return await (await conn.execute(sql, args or None)).fetchall()


async def _attempts(p: Pipeline, notification_id: str) -> list[tuple[Any, ...]]:
    """The documented per-notification query: (attempt, provider, outcome, category, ...)."""
    return await _query(p, QUERIES[0].replace("<notification-id>", notification_id))


async def _smtp_down_then_sent(p: Pipeline, status: int) -> tuple[IncidentOpened, list[Any]]:
    """SMTP fails every message with `status` until our email's first attempt failed; the
    incident's delivery events up to its DeliverySent."""
    await p.fault("smtp", fail_next=1000, status=status)
    try:
        event = p.incident("mailer", title=f"smtp down {status}")
        await p.events(
            "delivery.events",
            event.incident_id,
            lambda found: any(isinstance(e, DeliveryFailed) for e in found),
        )
    finally:
        await p.fault("smtp")  # cleared at once: other emails of the session are not hit
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliverySent) for e in found),
        timeout_s=30,
    )
    return event, events


async def _no_escalation(
    p: Pipeline, incident_id: str, queued_as: tuple[str, str] = ("EMAIL", "PRIMARY")
) -> None:
    """A moment after the message was sent, nothing else happened to the incident."""
    await asyncio.sleep(2)  # an escalation follows a final failure within milliseconds
    events = await p.everything_on("delivery.events", incident_id)
    assert not [e for e in events if isinstance(e, TierEscalated)]
    assert not [e for e in events if isinstance(e, DeliveryFailed) and e.final]
    queued = [(q.channel.value, q.tier.value) for q in events if isinstance(q, NotificationQueued)]
    assert queued == [queued_as]


def _attempt_events(events: list[Any]) -> list[tuple[str, int, str | None]]:
    return [
        (type(e).__name__, e.attempt, e.provider)
        for e in events
        if isinstance(e, DeliveryAttempted | DeliveryFailed | DeliverySent)
    ]


async def test_smtp_down_the_email_goes_out_through_sendgrid(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    started = time.time()
    event, events = await _smtp_down_then_sent(p, 451)  # SMTP 4xx: transient
    nid = ids.notification_id(event.incident_id, 1, "mailer", Channel.EMAIL)
    # one notification, attempted through SMTP, then through SendGrid
    assert {e.notification_id for e in events} == {nid}
    assert _attempt_events(events) == [
        ("DeliveryAttempted", 1, "smtp"),
        ("DeliveryFailed", 1, "smtp"),
        ("DeliveryAttempted", 2, "sendgrid"),
        ("DeliverySent", 2, "sendgrid"),
    ]
    failed = next(e for e in events if isinstance(e, DeliveryFailed))
    assert (failed.category.value, failed.final) == ("TRANSIENT", False)
    # the sandbox: SMTP refused it, SendGrid took it, once
    grid = await p.requests(provider="sendgrid", notification_id=nid)
    assert [r["status"] for r in grid] == [202]
    refused = [
        r
        for r in await p.requests(provider="smtp")
        if r["fault"] == "injected" and r["started_at"] >= started
    ]
    assert refused and not await p.requests(provider="smtp", notification_id=nid)
    # a transient failure waits its backoff step (1 s +-20%) before the other provider
    assert grid[0]["started_at"] - min(r["finished_at"] for r in refused) >= 0.75
    await _failed_over_in_the_log(p, nid, "smtp", "TRANSIENT", "sendgrid")
    paths = await _query(p, QUERIES[1])
    assert (nid, event.incident_id, "EMAIL", "SENT", "smtp:FAILED -> sendgrid:SENT") in [
        (str(r[0]), *r[1:]) for r in paths
    ]
    await _no_escalation(p, event.incident_id)


async def test_smtp_refusing_our_credentials_fails_over_at_once(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    event, events = await _smtp_down_then_sent(p, 535)  # authentication failed: configuration
    nid = ids.notification_id(event.incident_id, 1, "mailer", Channel.EMAIL)
    failed = next(e for e in events if isinstance(e, DeliveryFailed))
    assert (failed.provider, failed.category.value, failed.final) == (
        "smtp",
        "CONFIGURATION",
        False,
    )
    sent = next(e for e in events if isinstance(e, DeliverySent))
    assert (sent.provider, sent.attempt) == ("sendgrid", 2)
    # straight back on notify.email, not through the 1 s delay topic
    assert (sent.occurred_at - failed.occurred_at).total_seconds() < 0.7
    await _failed_over_in_the_log(p, nid, "smtp", "CONFIGURATION", "sendgrid")
    await _no_escalation(p, event.incident_id)


async def test_twilio_down_the_sms_goes_out_through_vonage(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    started = time.time()
    await p.fault("twilio", fail_next=1000, status=503)  # HTTP 5xx: transient
    try:
        event = p.incident("texter", title="twilio down")
        await p.events(
            "delivery.events",
            event.incident_id,
            lambda found: any(isinstance(e, DeliveryFailed) for e in found),
        )
    finally:
        await p.fault("twilio")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliverySent) for e in found),
        timeout_s=30,
    )
    nid = ids.notification_id(event.incident_id, 1, "texter", Channel.SMS)
    assert {e.notification_id for e in events} == {nid}
    assert _attempt_events(events) == [
        ("DeliveryAttempted", 1, "twilio"),
        ("DeliveryFailed", 1, "twilio"),
        ("DeliveryAttempted", 2, "vonage"),
        ("DeliverySent", 2, "vonage"),
    ]
    failed = next(e for e in events if isinstance(e, DeliveryFailed))
    assert (failed.category.value, failed.final) == ("TRANSIENT", False)
    # the sandbox: Twilio refused it, Vonage's SMS API took it once, after the backoff step
    refused = [
        r
        for r in await p.requests(provider="twilio", notification_id=nid)
        if r["fault"] == "injected"
    ]
    texts = await p.requests(provider="vonage", notification_id=nid)
    assert [r["status"] for r in texts] == [200] and len(refused) == 1
    assert texts[0]["path"] == "/vonage/rest/sms/json" and texts[0]["started_at"] >= started
    assert texts[0]["started_at"] - refused[0]["finished_at"] >= 0.75
    sent = next(e for e in events if isinstance(e, DeliverySent))
    assert sent.provider_message_id == texts[0]["message_id"]
    await _failed_over_in_the_log(p, nid, "twilio", "TRANSIENT", "vonage")
    paths = await _query(p, QUERIES[1])
    assert (nid, event.incident_id, "SMS", "SENT", "twilio:FAILED -> vonage:SENT") in [
        (str(r[0]), *r[1:]) for r in paths
    ]
    await _no_escalation(p, event.incident_id, ("SMS", "SECONDARY"))  # SMS-only: its tier


async def test_twilio_refusing_our_credentials_the_call_goes_out_through_vonage(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    await p.fault("twilio", fail_next=1000, status=401, code="20003")  # configuration
    try:
        event = p.incident("dialer", title="twilio credentials revoked")
        events = await p.events(
            "delivery.events",
            event.incident_id,
            lambda found: any(isinstance(e, DeliverySent) for e in found),
            timeout_s=30,
        )
    finally:
        await p.fault("twilio")
    assert _attempt_events(events) == [
        ("DeliveryAttempted", 1, "twilio"),
        ("DeliveryFailed", 1, "twilio"),
        ("DeliveryAttempted", 2, "vonage"),
        ("DeliverySent", 2, "vonage"),
    ]
    failed = next(e for e in events if isinstance(e, DeliveryFailed))
    sent = next(e for e in events if isinstance(e, DeliverySent))
    assert (failed.category.value, failed.final) == ("CONFIGURATION", False)
    assert (sent.occurred_at - failed.occurred_at).total_seconds() < 0.7  # at once
    [call] = await p.requests(provider="vonage", message_id=sent.provider_message_id)
    assert (call["path"], call["status"]) == ("/vonage/api/v1/calls", 201)
    nid = ids.notification_id(event.incident_id, 1, "dialer", Channel.VOICE)
    await _failed_over_in_the_log(p, nid, "twilio", "CONFIGURATION", "vonage")


async def _failed_over_in_the_log(
    p: Pipeline, nid: str, first: str, category: str, then: str
) -> None:
    """The NotificationLog: attempt 1 failed on `first` (`category`), attempt 2 sent by
    `then`; the row sent by `then` after two attempts."""
    rows = await eventually(lambda: _attempts(p, nid), _settled)
    assert [r[:4] for r in rows] == [(1, first, "FAILED", category), (2, then, "SENT", None)]
    row = await p.row(nid)
    assert row is not None
    assert (row["status"], row["provider"], row["attempt_count"]) == ("SENT", then, 2)


def _settled(rows: list[tuple[Any, ...]]) -> bool:
    return len(rows) == 2 and rows[1][2] != "PENDING"
