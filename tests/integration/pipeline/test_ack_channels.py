"""Acknowledging from every channel the seeds name, on the running pipeline: an SMS reply
(through Twilio's signed incoming-message webhook, posted by the sandbox as Twilio would)
and a Teams card's one-time link each stop the incident's waiting retries within a second."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from notifier.contracts.records import (
    Channel,
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentResolved,
    NotificationKind,
    NotificationQueued,
    Priority,
    ReceiptDue,
    TierEscalated,
)
from notifier.domain import ids
from notifier.domain.sms_reply import short_code
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration


async def paged_with_a_waiting_retry(pipeline: Pipeline, user: str, channel: Channel) -> Any:
    """An incident for `user` on every tier at once: `channel` sent, push failed with a
    Retry-After far away, so its retry is certainly still waiting."""
    await pipeline.fault("fcm", fail_next=5, status=503, retry_after=60)
    event = pipeline.incident(user, skip_tiers=True)
    push = ids.notification_id(event.incident_id, 1, user, Channel.PUSH)
    await pipeline.events(
        "delivery.events",
        event.incident_id,
        lambda found: (
            any(isinstance(e, DeliveryFailed) and e.notification_id == push for e in found)
            and any(isinstance(e, DeliverySent) and e.channel is channel for e in found)
        ),
    )
    return event


async def retry_cancelled_after(pipeline: Pipeline, incident: str, since: datetime) -> float:
    """Seconds from `since` to the waiting push retry's cancellation (polled, with a deadline),
    once the acknowledged notice was queued too."""
    events = await pipeline.events(
        "delivery.events",
        incident,
        lambda found: (
            any(isinstance(e, DeliveryCancelled) for e in found)
            and any(
                isinstance(e, NotificationQueued) and e.kind is NotificationKind.ACKNOWLEDGED_NOTICE
                for e in found
            )
        ),
    )
    cancelled = next(e for e in events if isinstance(e, DeliveryCancelled))
    assert cancelled.reason == "incident acknowledged"
    assert cancelled.channel is Channel.PUSH
    return (cancelled.occurred_at - since).total_seconds()


async def acknowledgements(pipeline: Pipeline, incident: str) -> list[IncidentAcknowledged]:
    events = await pipeline.events(
        "incidents", incident, lambda found: any(isinstance(e, IncidentAcknowledged) for e in found)
    )
    return [e for e in events if isinstance(e, IncidentAcknowledged)]


async def incident_status(pipeline: Pipeline, incident: str) -> str | None:
    assert pipeline.settings.database_url is not None
    url = pipeline.settings.database_url.get_secret_value()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT status FROM incident WHERE incident_id = %s", (incident,)
        )
        row = await cursor.fetchone()
    return str(row[0]) if row else None


async def test_an_sms_reply_of_1_stops_pending_retries_within_a_second(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    event = await paged_with_a_waiting_retry(pipeline, "replier", Channel.SMS)
    incident = event.incident_id
    [sms] = [
        r
        for r in await pipeline.requests(provider="twilio", incident_id=incident)
        if r["path"].endswith("Messages.json")
    ]
    assert sms["summary"]["body"].endswith(f"Reply ACK {short_code(incident)} to acknowledge")
    # the person reads the SMS once the read model knows what was sent to them
    sms_row = ids.notification_id(incident, 1, "replier", Channel.SMS)
    await eventually(lambda: pipeline.row(sms_row), lambda r: r is not None)
    await eventually(lambda: incident_status(pipeline, incident), lambda s: s == "open")
    webhook = f"{pipeline.bridge_url}/twilio/sms"
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        replied_at = datetime.now(UTC)
        reply = await client.post(
            "/_sandbox/twilio/inbound",
            json={"message_id": sms["message_id"], "body": "1", "url": webhook},
        )
    answered = reply.json()
    assert answered["status"] == 200, answered
    assert "<Message>Acknowledged: db down</Message>" in answered["body"]
    delay_s = await retry_cancelled_after(pipeline, incident, replied_at)
    print(f"SMS reply -> retry cancelled: {delay_s * 1000:.0f} ms")
    assert delay_s <= 1.0
    acks = await acknowledgements(pipeline, incident)
    assert [(a.via, a.by_user_id) for a in acks] == [("sms", "replier")]
    push = ids.notification_id(incident, 1, "replier", Channel.PUSH)
    assert len(await pipeline.requests(provider="fcm", notification_id=push)) == 1
    # nothing is open any more: a second "1" says so and publishes nothing
    await eventually(lambda: incident_status(pipeline, incident), lambda s: s != "open")
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        again = await client.post(
            "/_sandbox/twilio/inbound",
            json={"message_id": sms["message_id"], "body": "1", "url": webhook},
        )
    assert "no open incidents" in again.json()["body"]
    assert len(await acknowledgements(pipeline, incident)) == 1


async def test_an_sms_reply_before_the_receipt_deadline_stops_the_escalation_to_voice(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    incident = f"inc-{uuid.uuid4().hex[:12]}"
    # CRITICAL: the SMS needs a receipt within NOTIFIER_RECEIPT_DEADLINE_S (3 s), which
    # never comes; unacknowledged, the person's voice tier would be called
    pipeline.publish(
        "incidents",
        incident,
        IncidentOpened(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=incident,
            title="payments down",
            priority=Priority.CRITICAL,
            escalation_level=1,
            user_ids=["textcall"],
        ),
    )
    [sms] = await eventually(
        lambda: pipeline.requests(provider="twilio", incident_id=incident),
        lambda found: len(found) == 1,
        every_s=0.02,
    )
    sms_row = ids.notification_id(incident, 1, "textcall", Channel.SMS)
    await eventually(lambda: pipeline.row(sms_row), lambda r: r is not None, every_s=0.02)
    await eventually(
        lambda: incident_status(pipeline, incident), lambda s: s == "open", every_s=0.02
    )
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        reply = await client.post(
            "/_sandbox/twilio/inbound",
            json={
                "message_id": sms["message_id"],
                "body": "1",
                "url": f"{pipeline.bridge_url}/twilio/sms",
            },
        )
    replied_after_s = datetime.now(UTC).timestamp() - sms["finished_at"]
    assert replied_after_s < 3, f"replied {replied_after_s:.1f} s after the SMS: too late"
    assert "Acknowledged: payments down" in reply.json()["body"]
    # the deadline passes (ReceiptDue is forwarded) and nothing escalates
    events = await pipeline.events(
        "delivery.events", incident, lambda found: any(isinstance(e, ReceiptDue) for e in found)
    )
    assert not any(isinstance(e, TierEscalated) for e in events)
    # an absence can only be seen after its time: without the reply the call is made a few
    # milliseconds after ReceiptDue, so give it well over that before looking
    await asyncio.sleep(2)
    requests = await pipeline.requests(provider="twilio", incident_id=incident)
    assert [r["path"].rsplit("/", 1)[1] for r in requests] == ["Messages.json"]


async def test_a_forged_sms_reply_is_refused_and_acknowledges_nothing(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    event = pipeline.incident("replier", skip_tiers=True)
    sms_row = ids.notification_id(event.incident_id, 1, "replier", Channel.SMS)
    await eventually(lambda: pipeline.row(sms_row), lambda r: r is not None)
    form = {"MessageSid": "SM" + "0" * 32, "From": "+14155550177", "Body": "1"}
    async with httpx.AsyncClient(base_url=pipeline.bridge_url) as client:
        unsigned = await client.post("/twilio/sms", data=form)
        forged = await client.post(
            "/twilio/sms", data=form, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
        )
    assert (unsigned.status_code, forged.status_code) == (401, 403)
    assert await incident_status(pipeline, event.incident_id) == "open"
    acks = [
        e
        for e in await pipeline.everything_on("incidents", event.incident_id)
        if isinstance(e, IncidentAcknowledged)
    ]
    assert acks == []
    # closed, so that no later reply of this person finds it open
    pipeline.publish(
        "incidents",
        event.incident_id,
        IncidentResolved(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=event.incident_id,
            by_user_id="tester",
            via="test",
        ),
    )


async def test_a_teams_acknowledge_link_stops_pending_retries_within_a_second_once(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    event = await paged_with_a_waiting_retry(pipeline, "teamsack", Channel.TEAMS)
    incident = event.incident_id
    # the alert card (Teams webhooks carry no ids of ours: it is this person's one alert)
    [link] = [
        action["url"]
        for r in await pipeline.requests(provider="teams")
        if r["path"].endswith("/teamsack")
        for action in r["summary"]["actions"]
        if action["title"] == "Acknowledge"
    ]
    assert link.startswith(f"{pipeline.bridge_url}/links/")
    async with httpx.AsyncClient() as client:
        page = await client.get(link)  # what opening the button shows: nothing done yet
        assert page.status_code == 200 and "Acknowledge incident" in page.text
        clicked_at = datetime.now(UTC)
        done = await client.post(link)
        assert done.status_code == 200, done.text
        delay_s = await retry_cancelled_after(pipeline, incident, clicked_at)
        again = await client.post(link)
        shown_again = await client.get(link)
    print(f"Teams link -> retry cancelled: {delay_s * 1000:.0f} ms")
    assert delay_s <= 1.0
    assert (again.status_code, shown_again.status_code) == (403, 403)
    assert "already used" in again.text and "already used" in shown_again.text
    acks = await acknowledgements(pipeline, incident)
    assert [(a.via, a.by_user_id) for a in acks] == [("teams_link", "teamsack")]
