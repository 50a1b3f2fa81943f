"""The sandbox signs callbacks, events, clicks and key presses as the providers do: a bridge
configured from `sandbox_env` verifies them, and so do the providers' own libraries."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from aiohttp import web
from sendgrid.helpers.eventwebhook import (  # type: ignore[import-untyped]
    EventWebhook,
    EventWebhookHeader,
)
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from adapters.bridge.signatures import (
    SignatureError,
    verify_sendgrid,
    verify_slack,
    verify_twilio,
)
from adapters.providers import build_providers
from adapters.slack import SlackMessage
from notifier.contracts.records import Channel, NotificationKind, SendCommand
from notifier.domain.sms_reply import short_code
from notifier.settings import Settings
from tests.samples import sample

pytestmark = pytest.mark.integration
MAX_AGE = 300.0


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A stand-in for the webhook bridge: records what arrives and answers 200."""

    def __init__(self) -> None:
        self.seen: list[Received] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Received(str(request.url), dict(request.headers), await request.read()))
        return web.json_response({"accepted": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", got.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    got.base = f"http://{host}:{port}"
    yield got
    await runner.cleanup()


def bridge_settings(sandbox: dict[str, str], **extra: Any) -> Settings:
    """The settings a bridge would read from the sandbox's environment."""
    values: dict[str, Any] = {
        k.removeprefix("NOTIFIER_").lower(): v
        for k, v in sandbox.items()
        if k.startswith("NOTIFIER_")
    }
    values.update(send_timeout_s=2.0, **extra)
    return Settings.model_validate(values)


def command(channel: Channel, address: str) -> SendCommand:
    return sample(
        SendCommand,
        channel=channel,
        address=address,
        kind=NotificationKind.ALERT,
        title="[CRITICAL] db down",
        body="Primary database unreachable.",
        address_params={},
        provider=None,
        url="https://inc.example.com/1",
    )


async def send(settings: Settings, cmd: SendCommand) -> str:
    providers = build_providers(settings)
    try:
        return await providers[cmd.channel].send(cmd)
    finally:
        for provider in providers.values():
            await provider.close()


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox["SANDBOX_URL"], timeout=15) as client:
        yield client


async def test_sendgrid_events_are_signed_as_sendgrid_signs_them(
    sandbox: dict[str, str], control: httpx.AsyncClient, receiver: Receiver
) -> None:
    settings = bridge_settings(sandbox, email_provider="sendgrid")
    cmd = command(Channel.EMAIL, "alice@example.com")
    message_id = await send(settings, cmd)
    asked = await control.post(
        "/_sandbox/callbacks",
        json={"message_id": message_id, "status": "delivered", "url": f"{receiver.base}/sg"},
    )
    assert asked.json()["status"] == 200
    [got] = receiver.seen
    ts = got.headers[EventWebhookHeader.TIMESTAMP]
    signature = got.headers[EventWebhookHeader.SIGNATURE]
    key = settings.sendgrid_webhook_public_key
    verify_sendgrid(key, ts, got.body, signature, time.time(), MAX_AGE)
    assert EventWebhook(key).verify_signature(got.body.decode(), signature, ts)
    [event] = json.loads(got.body)
    assert got.body.endswith(b"]\r\n")
    assert event["event"] == "delivered"
    assert event["sg_message_id"].startswith(message_id)
    assert (event["notification_id"], event["incident_id"], event["user_id"]) == (
        cmd.notification_id,
        cmd.incident_id,
        cmd.user_id,
    )
    assert event["sg_event_id"]
    with pytest.raises(SignatureError):
        verify_sendgrid(key, ts, got.body.rstrip(), signature, time.time(), MAX_AGE)

    await control.post(
        "/_sandbox/callbacks",
        json={"message_id": message_id, "status": "open", "url": f"{receiver.base}/sg"},
    )
    assert json.loads(receiver.seen[1].body)[0]["sg_event_id"] != event["sg_event_id"]


async def test_slack_clicks_are_signed_as_slack_signs_them(
    sandbox: dict[str, str], control: httpx.AsyncClient, receiver: Receiver
) -> None:
    settings = bridge_settings(sandbox)
    cmd = command(Channel.SLACK, "U0ALICE")
    message_id = await send(settings, cmd)
    asked = await control.post(
        "/_sandbox/interact",
        json={"message_id": message_id, "action": "resolve", "url": f"{receiver.base}/slack"},
    )
    reply = asked.json()
    assert (reply["status"], json.loads(reply["body"])) == (200, {"accepted": True})
    [got] = receiver.seen
    assert reply["posted_to"] == got.url == f"{receiver.base}/slack"
    ts, signature = got.headers["X-Slack-Request-Timestamp"], got.headers["X-Slack-Signature"]
    assert settings.slack_signing_secret is not None
    secret = settings.slack_signing_secret.get_secret_value()
    verify_slack(secret, ts, got.body, signature, time.time(), MAX_AGE)
    assert SignatureVerifier(secret).is_valid_request(got.body, got.headers)
    assert not SignatureVerifier("another-secret").is_valid_request(got.body, got.headers)
    form = dict(parse_qsl(got.body.decode()))
    payload = json.loads(form["payload"])
    channel, _, ts_sent = message_id.partition(":")
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0ALICE"
    assert (payload["channel"]["id"], payload["container"]["message_ts"]) == (channel, ts_sent)
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["type"]) == (
        "resolve",
        "incident_actions",
        "button",
    )
    [buttons] = [b["elements"] for b in SlackMessage.blocks(cmd) if b["type"] == "actions"]
    assert action["value"] == buttons[1]["value"]
    assert action["value"].startswith(f"{cmd.incident_id}|{cmd.notification_id}")
    assert payload["response_url"].startswith(sandbox["SANDBOX_URL"])
    answered = await control.post(payload["response_url"], json={"text": "Resolved"})
    assert answered.json() == {"ok": True}


async def test_twilio_key_presses_go_to_the_gather_action_signed(
    sandbox: dict[str, str], control: httpx.AsyncClient, receiver: Receiver
) -> None:
    settings = bridge_settings(sandbox, callback_base_url=f"{receiver.base}/bridge")
    cmd = command(Channel.VOICE, "+14155550101")
    call_sid = await send(settings, cmd)
    asked = await control.post(
        "/_sandbox/interact", json={"message_id": call_sid, "action": "press", "digits": "1"}
    )
    assert asked.json()["status"] == 200
    [got] = receiver.seen
    assert got.url.startswith(f"{receiver.base}/bridge/twilio/gather?")
    query = dict(parse_qsl(got.url.partition("?")[2]))
    assert (query["n"], query["i"]) == (cmd.notification_id, cmd.incident_id)
    form = dict(parse_qsl(got.body.decode(), keep_blank_values=True))
    assert (form["CallSid"], form["Digits"], form["To"]) == (call_sid, "1", cmd.address)
    signature = got.headers["X-Twilio-Signature"]
    assert settings.twilio_auth_token is not None
    token = settings.twilio_auth_token.get_secret_value()
    verify_twilio([token], got.url, form, signature)
    verify_twilio(["a-newer-token", token], got.url, form, signature)
    assert RequestValidator(token).validate(got.url, form, signature)
    with pytest.raises(SignatureError):
        verify_twilio([token], got.url, {**form, "Digits": "2"}, signature)


async def test_interact_refuses_what_it_cannot_do(
    sandbox: dict[str, str], control: httpx.AsyncClient, receiver: Receiver
) -> None:
    unknown = await control.post("/_sandbox/interact", json={"message_id": "nope", "url": "x"})
    assert unknown.status_code == 404
    settings = bridge_settings(sandbox, email_provider="sendgrid")
    email = await send(settings, command(Channel.EMAIL, "alice@example.com"))
    other = await control.post(
        "/_sandbox/interact", json={"message_id": email, "url": f"{receiver.base}/x"}
    )
    assert other.status_code == 400
    slack = await send(settings, command(Channel.SLACK, "U0ALICE"))
    no_url = await control.post("/_sandbox/interact", json={"message_id": slack})
    assert no_url.status_code == 400
    assert receiver.seen == []


async def test_sms_replies_go_to_the_incoming_message_webhook_signed(
    sandbox: dict[str, str], control: httpx.AsyncClient, receiver: Receiver
) -> None:
    settings = bridge_settings(
        sandbox, callback_base_url=f"{receiver.base}/bridge", sms_replies=True
    )
    cmd = dataclasses.replace(command(Channel.SMS, "+14155550177"), bundled={})
    sms_sid = await send(settings, cmd)
    [sent] = [
        r
        for r in (await control.get("/_sandbox/requests", params={"provider": "twilio"})).json()
        if r["message_id"] == sms_sid
    ]
    # the alert invites the reply, and stays one segment
    hint = f" Reply ACK {short_code(cmd.incident_id)} to acknowledge"
    assert sent["summary"]["body"] == cmd.body + hint
    assert sent["summary"]["num_segments"] == "1"
    webhook = f"{receiver.base}/bridge/twilio/sms"
    asked = await control.post(
        "/_sandbox/twilio/inbound",
        json={"message_id": sms_sid, "body": "ACK 4821", "url": webhook},
    )
    assert asked.json()["status"] == 200, asked.text
    [got] = receiver.seen
    assert got.url == webhook
    form = dict(parse_qsl(got.body.decode(), keep_blank_values=True))
    # the person (the SMS's recipient) writes to the number it came from
    assert (form["From"], form["To"]) == (cmd.address, settings.twilio_from)
    assert form["Body"] == "ACK 4821"
    assert form["MessageSid"] == asked.json()["message_sid"] and form["SmsStatus"] == "received"
    signature = got.headers["X-Twilio-Signature"]
    assert settings.twilio_auth_token is not None
    token = settings.twilio_auth_token.get_secret_value()
    verify_twilio([token], got.url, form, signature)
    assert RequestValidator(token).validate(got.url, form, signature)
    with pytest.raises(SignatureError):
        verify_twilio([token], got.url, {**form, "Body": "1"}, signature)
    nobody = await control.post("/_sandbox/twilio/inbound", json={"body": "1", "url": webhook})
    assert nobody.status_code == 400
