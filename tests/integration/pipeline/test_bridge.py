"""The webhook bridge against the running pipeline: signatures, replays, callbacks in any
order, one-time email links, acknowledgements that stop retries, receipt deadlines."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest

from adapters.bridge.signatures import (
    sendgrid_keypair_from_seed,
    sendgrid_sign,
    slack_signature,
    twilio_signature,
)
from adapters.sandbox.providers import SandboxCredentials
from adapters.webhook import sign
from notifier.contracts.records import (
    Channel,
    DeliveryCancelled,
    DeliveryFailed,
    DeliverySent,
    IncidentAcknowledged,
    IncidentResolved,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    RawCallback,
    ReceiptDue,
    TierEscalated,
)
from notifier.domain import ids
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration


def new_incident() -> str:
    return f"inc-{uuid.uuid4().hex[:12]}"


def twilio_form(
    pipeline: Pipeline, query: dict[str, str], form: dict[str, str], token: str | None = None
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A Twilio status callback as Twilio posts it: URL, form and signature header."""
    url = f"{pipeline.bridge_url}/twilio/status?{urlencode(query)}"
    token = token or pipeline.env["NOTIFIER_TWILIO_AUTH_TOKEN"]
    return url, form, {"X-Twilio-Signature": twilio_signature(token, url, form)}


def sms_status(incident: str, notification: str, status: str, user: str = "pager") -> Any:
    query = {"n": notification, "i": incident, "c": "SMS", "u": user}
    form = {
        "AccountSid": "ACsandbox00000000000000000000000000",
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "MessageStatus": status,
        "To": "+14155550101",
    }
    return query, form


def slack_request(pipeline: Pipeline, payload: dict[str, Any], age_s: float = 0) -> Any:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time() - age_s))
    secret = pipeline.env["NOTIFIER_SLACK_SIGNING_SECRET"]
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers


def ack_button(incident: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "UPAGER"},
        "trigger_id": uuid.uuid4().hex,
        "actions": [
            {
                "action_id": "acknowledge",
                "value": f"{incident}|n-1|pager",
                "action_ts": str(time.time()),
            }
        ],
    }


async def test_forged_stale_and_replayed_requests_are_refused_and_nothing_published(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    incident = new_incident()
    nid = ids.notification_id(incident, 1, "pager", Channel.SMS)
    query, form = sms_status(incident, nid, "delivered")
    url, form, headers = twilio_form(pipeline, query, form)
    stale_body, stale_headers = slack_request(pipeline, ack_button(incident), age_s=600)
    forged_body, forged_headers = slack_request(pipeline, ack_button(incident))
    receipt = json.dumps(
        {"notification_id": nid, "incident_id": incident, "status": "delivered"}
    ).encode()
    async with httpx.AsyncClient() as client:
        refused = {
            "twilio, no signature": await client.post(url, data=form),
            "twilio, signed with another token": await client.post(
                url, data=form, headers=twilio_form(pipeline, query, form, "not-the-token")[2]
            ),
            "twilio, form changed after signing": await client.post(
                url, data={**form, "MessageStatus": "failed"}, headers=headers
            ),
            "slack, stale": await client.post(
                f"{pipeline.bridge_url}/slack/actions", content=stale_body, headers=stale_headers
            ),
            "slack, body changed after signing": await client.post(
                f"{pipeline.bridge_url}/slack/actions",
                content=forged_body.replace(b"acknowledge", b"resolve"),
                headers=forged_headers,
            ),
            "sendgrid, unsigned": await client.post(
                f"{pipeline.bridge_url}/sendgrid/events", content=b"[]"
            ),
            "receipt, wrong secret": await client.post(
                f"{pipeline.bridge_url}/webhook/receipts",
                content=receipt,
                headers={"X-Notifier-Signature": sign("guess", int(time.time()), receipt)},
            ),
        }
        accepted = await client.post(url, data=form, headers=headers)
        replayed = await client.post(url, data=form, headers=headers)
    assert {k: r.status_code for k, r in refused.items()} == {
        "twilio, no signature": 401,
        "twilio, signed with another token": 403,
        "twilio, form changed after signing": 403,
        "slack, stale": 403,
        "slack, body changed after signing": 403,
        "sendgrid, unsigned": 401,
        "receipt, wrong secret": 403,
    }
    assert accepted.status_code == 204, accepted.text
    assert replayed.status_code == 403 and "replay" in replayed.text
    callbacks = [
        c for c in await pipeline.everything_on("provider.callbacks") if c.incident_id == incident
    ]
    assert [(c.status.value, c.raw_status) for c in callbacks] == [("DELIVERED", "delivered")]
    acks = [
        e
        for e in await pipeline.everything_on("incidents")
        if getattr(e, "incident_id", None) == incident
    ]
    assert acks == []


async def test_a_malformed_body_is_a_400_and_is_archived_for_reprocessing(
    clean_sandbox: Pipeline,
) -> None:
    body, headers = slack_request(clean_sandbox, {"type": "block_actions", "actions": []})
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"{clean_sandbox.bridge_url}/slack/actions", content=body, headers=headers
        )
    assert reply.status_code == 400 and "no actions" in reply.text
    archived = [
        r
        for r in await clean_sandbox.everything_on("callbacks.raw")
        if isinstance(r, RawCallback) and r.body == body
    ]
    assert len(archived) == 1
    assert archived[0].source == "slack_actions"
    assert archived[0].headers["x-slack-signature"] == headers["X-Slack-Signature"]


def test_archived_requests_can_be_parsed_again(pipeline: Pipeline) -> None:
    def reparse(*args: str) -> str:
        run = subprocess.run(
            [*pipeline.command[:1], "reparse-callbacks", "--dry-run", *args],
            env=pipeline.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    # the malformed Slack request of the test above is still malformed to today's parser
    slack = reparse("--source", "slack_actions")
    assert "still malformed: slack_actions" in slack and "no actions" in slack
    # the accepted Twilio callback means the same thing again (same event id: idempotent)
    twilio = reparse("--source", "twilio_status")
    assert re.search(
        r"(\d+) archived requests: would publish \1 records, 0 still malformed", twilio
    )
    assert not twilio.startswith("0 archived")


async def test_a_callback_before_its_send_ends_delivered_and_a_late_sent_changes_nothing(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    incident = new_incident()
    nid = ids.notification_id(incident, 1, "pager", Channel.SMS)

    async def post(status: str) -> None:
        url, form, headers = twilio_form(pipeline, *sms_status(incident, nid, status))
        async with httpx.AsyncClient() as client:
            reply = await client.post(url, data=form, headers=headers)
        assert reply.status_code == 204, reply.text

    async def callbacks() -> list[tuple[str, bool]]:
        assert pipeline.settings.database_url is not None
        url = pipeline.settings.database_url.get_secret_value()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cursor = await conn.execute(
                "SELECT raw_status, applied_at IS NOT NULL FROM provider_callback "
                "WHERE notification_id = %s ORDER BY received_at",
                (nid,),
            )
            return [(s, bool(a)) for s, a in await cursor.fetchall()]

    await post("delivered")
    # kept, not dropped: there is no row to apply it to yet
    assert await eventually(callbacks, lambda c: c == [("delivered", False)]) == [
        ("delivered", False)
    ]
    pipeline.publish(
        "incidents",
        incident,
        pipeline_incident(incident, "pager"),
    )
    row = await eventually(
        lambda: pipeline.row(nid),
        lambda r: r is not None and r["status"] == "DELIVERED" and r["sent_at"] is not None,
    )
    assert row is not None and row["delivered_at"] is not None
    await post("sent")
    await eventually(callbacks, lambda c: c == [("delivered", True), ("sent", True)])
    after = await pipeline.row(nid)
    assert after is not None and after["status"] == "DELIVERED"
    assert after["delivered_at"] == row["delivered_at"]


def pipeline_incident(incident: str, *users: str, priority: Priority = Priority.HIGH) -> Any:
    from notifier.contracts.records import IncidentOpened

    return IncidentOpened(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        incident_id=incident,
        title="disk full",
        priority=priority,
        escalation_level=1,
        user_ids=list(users),
    )


async def test_an_email_link_works_once_and_not_after_it_expires(clean_sandbox: Pipeline) -> None:
    pipeline = clean_sandbox
    event = pipeline.incident("mailer")
    sent = await eventually(
        lambda: pipeline.requests(provider="smtp", incident_id=event.incident_id),
        lambda found: len(found) == 1,
    )
    links = sent[0]["summary"]["links"]
    ack = next(u for u in links if u.startswith(f"{pipeline.bridge_url}/links/"))
    resolve = links[links.index(ack) + 1]
    async with httpx.AsyncClient() as client:
        page = await client.get(ack)
        assert page.status_code == 200 and "Acknowledge incident" in page.text
        first = await client.post(ack)
        assert first.status_code == 200, first.text
        again = await client.post(ack)
        shown_again = await client.get(ack)
        # the resolve link of the same email expires: refused too
        assert pipeline.settings.database_url is not None
        token = resolve.rsplit("/", 1)[1]
        from adapters.bridge.store import token_hash

        async with await psycopg.AsyncConnection.connect(
            pipeline.settings.database_url.get_secret_value(), autocommit=True
        ) as conn:
            await conn.execute(
                "UPDATE magic_link SET expires_at = now() - interval '1 second' "
                "WHERE token_sha256 = %s",
                (token_hash(token),),
            )
        expired = await client.post(resolve)
        unknown = await client.post(f"{pipeline.bridge_url}/links/not-a-token")
    assert (again.status_code, shown_again.status_code) == (403, 403)
    assert "already used" in again.text
    assert expired.status_code == 403 and "expired" in expired.text
    assert unknown.status_code == 403
    events = await pipeline.events(
        "incidents",
        event.incident_id,
        lambda found: any(isinstance(e, IncidentAcknowledged) for e in found),
    )
    acks = [e for e in events if isinstance(e, IncidentAcknowledged)]
    assert [(a.via, a.by_user_id) for a in acks] == [("email_link", "mailer")]


async def test_a_slack_acknowledgement_stops_pending_retries_within_a_second(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    # push fails with a Retry-After far away: its retry is certainly still waiting
    await pipeline.fault("fcm", fail_next=5, status=503, retry_after=60)
    event = pipeline.incident("slacky")
    push = ids.notification_id(event.incident_id, 1, "slacky", Channel.PUSH)
    await pipeline.events(
        "delivery.events",
        event.incident_id,
        lambda found: (
            any(isinstance(e, DeliveryFailed) and e.notification_id == push for e in found)
            and any(isinstance(e, DeliverySent) and e.channel is Channel.SLACK for e in found)
        ),
    )
    slack = await pipeline.requests(provider="slack", incident_id=event.incident_id)
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        clicked_at = datetime.now(UTC)
        click = await client.post(
            "/_sandbox/interact",
            json={
                "message_id": slack[0]["message_id"],
                "action": "acknowledge",
                "url": f"{pipeline.bridge_url}/slack/actions",
            },
        )
    assert click.status_code == 200 and click.json()["status"] == 200, click.text
    events = await pipeline.events(
        "delivery.events",
        event.incident_id,
        lambda found: (
            any(isinstance(e, DeliveryCancelled) for e in found)
            and any(
                isinstance(e, NotificationQueued) and e.kind is NotificationKind.ACKNOWLEDGED_NOTICE
                for e in found
            )
        ),
    )
    cancelled = next(e for e in events if isinstance(e, DeliveryCancelled))
    assert cancelled.notification_id == push and cancelled.reason == "incident acknowledged"
    delay_s = (cancelled.occurred_at - clicked_at).total_seconds()
    print(f"acknowledgement -> retry cancelled: {delay_s * 1000:.0f} ms")
    assert delay_s <= 1.0
    pushes = await pipeline.requests(provider="fcm", notification_id=push)
    assert len(pushes) == 1  # the first attempt only (the notice is another notification)


async def test_a_critical_sms_without_receipt_escalates_to_voice(clean_sandbox: Pipeline) -> None:
    pipeline = clean_sandbox
    incident = new_incident()
    pipeline.publish(
        "incidents", incident, pipeline_incident(incident, "pager", priority=Priority.CRITICAL)
    )
    events = await pipeline.events(
        "delivery.events",
        incident,
        lambda found: any(isinstance(e, TierEscalated) for e in found),
    )
    due = next(e for e in events if isinstance(e, ReceiptDue))
    escalated = next(e for e in events if isinstance(e, TierEscalated))
    assert due.channel is Channel.SMS
    assert (escalated.from_tier.value, escalated.to_tier.value) == ("SECONDARY", "FALLBACK")
    calls = await eventually(
        lambda: pipeline.requests(provider="twilio", incident_id=incident),
        lambda found: any(r["path"].endswith("Calls.json") for r in found),
    )
    assert sum(r["path"].endswith("Messages.json") for r in calls) == 1


async def test_a_critical_sms_delivered_in_time_does_not_escalate(clean_sandbox: Pipeline) -> None:
    pipeline = clean_sandbox
    incident = new_incident()
    pipeline.publish(
        "incidents",
        incident,
        pipeline_incident(incident, "receipted", priority=Priority.CRITICAL),
    )
    sms = await eventually(
        lambda: pipeline.requests(provider="twilio", incident_id=incident),
        lambda found: len(found) == 1,
    )
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        posted = await client.post(
            "/_sandbox/callbacks", json={"message_id": sms[0]["message_id"], "status": "delivered"}
        )
    assert posted.json()["status"] == 204, posted.text
    nid = ids.notification_id(incident, 1, "receipted", Channel.SMS)
    await eventually(
        lambda: pipeline.row(nid), lambda r: r is not None and r["status"] == "DELIVERED"
    )
    # the deadline passes (ReceiptDue is forwarded) and nothing escalates
    events = await pipeline.events(
        "delivery.events", incident, lambda found: any(isinstance(e, ReceiptDue) for e in found)
    )
    assert not any(isinstance(e, TierEscalated) for e in events)
    requests = await pipeline.requests(provider="twilio", incident_id=incident)
    assert [r["path"].rsplit("/", 1)[1] for r in requests] == ["Messages.json"]


async def test_pressing_1_on_the_call_acknowledges_and_other_keys_do_nothing(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    event = pipeline.incident("caller")
    calls = await eventually(
        lambda: pipeline.requests(provider="twilio", incident_id=event.incident_id),
        lambda found: len(found) == 1,
    )
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        other = await client.post(
            "/_sandbox/interact", json={"message_id": calls[0]["message_id"], "digits": "2"}
        )
        pressed = await client.post(
            "/_sandbox/interact", json={"message_id": calls[0]["message_id"], "digits": "1"}
        )
    assert other.json()["status"] == 200 and "No action taken" in other.json()["body"]
    assert pressed.json()["status"] == 200 and "acknowledged" in pressed.json()["body"]
    events = await pipeline.events(
        "incidents",
        event.incident_id,
        lambda found: any(isinstance(e, IncidentAcknowledged) for e in found),
    )
    acks = [e for e in events if isinstance(e, IncidentAcknowledged | IncidentResolved)]
    assert [(a.via, a.by_user_id) for a in acks] == [("voice", "caller")]


async def test_sendgrid_events_and_webhook_receipts_become_callbacks(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    incident = new_incident()
    email = ids.notification_id(incident, 1, "mailer", Channel.EMAIL)
    hook = ids.notification_id(incident, 1, "hooked", Channel.WEBHOOK)
    key, _ = sendgrid_keypair_from_seed(SandboxCredentials().sendgrid_key_seed)
    events = json.dumps(
        [
            {
                "email": "mailer@example.com",
                "timestamp": int(time.time()),
                "event": "bounce",
                "reason": "550 5.1.1 mailbox unknown",
                "sg_event_id": uuid.uuid4().hex,
                "sg_message_id": "msg123.filter0001.1.0",
                "notification_id": email,
                "incident_id": incident,
                "user_id": "mailer",
            },
            {"event": "open", "timestamp": int(time.time()), "sg_event_id": "x"},
        ]
    ).encode()
    ts = str(int(time.time()))
    receipt = json.dumps(
        {
            "notification_id": hook,
            "incident_id": incident,
            "user_id": "hooked",
            "status": "delivered",
        }
    ).encode()
    secret = pipeline.env["NOTIFIER_WEBHOOK_SIGNING_SECRET"]
    async with httpx.AsyncClient(base_url=pipeline.bridge_url) as client:
        sendgrid = await client.post(
            "/sendgrid/events",
            content=events,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(key, ts, events),
                "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            },
        )
        hooked = await client.post(
            "/webhook/receipts",
            content=receipt,
            headers={"X-Notifier-Signature": sign(secret, int(ts), receipt)},
        )
    assert (sendgrid.status_code, hooked.status_code) == (200, 204), sendgrid.text + hooked.text
    found = await pipeline.events("provider.callbacks", incident, lambda found: len(found) >= 2)
    got = {
        (c.provider, c.notification_id, c.status.value, c.raw_status, c.error)
        for c in found
        if isinstance(c, ProviderCallback)
    }
    assert got == {
        ("sendgrid", email, "FAILED", "bounce", "550 5.1.1 mailbox unknown"),
        ("webhook", hook, "DELIVERED", "delivered", None),
    }
