"""SMS replies on the bridge over real HTTP: Twilio's signature checked (good, bad,
missing), the reply read and answered with TwiML, an acknowledgement published only when
the reply names one open incident. PostgreSQL and Kafka are stand-ins."""

from __future__ import annotations

import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from aiohttp import web

from adapters.bridge.server import Bridge, build_app
from adapters.bridge.signatures import twilio_signature
from adapters.bridge.store import OpenIncident
from notifier.contracts.records import IncidentAcknowledged, RawCallback, Record
from notifier.domain.sms_reply import short_code
from notifier.settings import Settings

TOKEN = "test-twilio-token"
PHONE = "+14155550177"


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Record] = []

    async def publish(self, items: Sequence[tuple[str, str, Record]]) -> None:
        self.published += [record for _, _, record in items]


class FakeStore:
    """The read model as the bridge asks it: who has a phone, and their open incidents."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.people: dict[str, list[str]] = {}
        self.open: dict[str, dict[str, OpenIncident]] = {}

    async def first_time(self, source: str, signature: str) -> bool:
        if signature in self.seen:
            return False
        self.seen.add(signature)
        return True

    async def forget(self, signature: str) -> None:
        self.seen.discard(signature)

    async def open_incidents_of(self, phone: str) -> tuple[list[str], dict[str, OpenIncident]]:
        return self.people.get(phone, []), self.open.get(phone, {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[str, FakePublisher, FakeStore]]:
    publisher, store = FakePublisher(), FakeStore()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(twilio_auth_token=TOKEN, callback_base_url=base)
    runner = web.AppRunner(build_app(Bridge(settings, publisher, store)))  # type: ignore[arg-type]
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield base, publisher, store
    await runner.cleanup()


def inbound(body: str, sender: str = PHONE) -> dict[str, str]:
    """The form Twilio posts for an SMS to our number."""
    sid = "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": "+14155550000",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "ACtest",
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


async def post(base: str, form: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{base}/twilio/sms", data=form, headers=headers)


def said(reply: httpx.Response) -> str:
    """The text of the TwiML <Message> the person gets back."""
    assert reply.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(reply.text)
    assert root.tag == "Response"
    message = root.find("Message")
    assert message is not None and message.text
    return message.text


@pytest.mark.parametrize(
    ("how", "status"),
    [("missing", 401), ("another token", 403), ("body changed after signing", 403)],
)
async def test_unsigned_or_badly_signed_replies_publish_nothing(
    bridge: Any, how: str, status: int
) -> None:
    base, publisher, store = bridge
    store.people[PHONE] = ["texter"]
    store.open[PHONE] = {"inc-1": OpenIncident("db down", "texter")}
    form = inbound("1")
    url = f"{base}/twilio/sms"
    signature = {
        "missing": None,
        "another token": twilio_signature("not-the-token", url, form),
        "body changed after signing": twilio_signature(TOKEN, url, inbound("1")),
    }[how]
    reply = await post(base, form, signature)
    assert reply.status_code == status
    assert publisher.published == []


async def test_a_signed_1_acknowledges_the_only_open_incident_once(bridge: Any) -> None:
    base, publisher, store = bridge
    store.people[PHONE] = ["texter"]
    store.open[PHONE] = {"inc-1": OpenIncident("db down", "texter")}
    form = inbound("1")
    signature = twilio_signature(TOKEN, f"{base}/twilio/sms", form)
    reply = await post(base, form, signature)
    replayed = await post(base, form, signature)
    assert reply.status_code == 200
    assert said(reply) == "Acknowledged: db down"
    assert replayed.status_code == 403
    raw, ack = publisher.published
    assert isinstance(raw, RawCallback) and raw.source == "twilio_sms"
    assert isinstance(ack, IncidentAcknowledged)
    assert (ack.incident_id, ack.by_user_id, ack.via) == ("inc-1", "texter", "sms")


OPEN_TWO = {"inc-1": OpenIncident("db down", "texter"), "inc-2": OpenIncident("disk full", None)}


@pytest.mark.parametrize(
    ("people", "open_incidents", "body", "acknowledged", "answer_has"),
    [
        ([], {}, "1", None, "not registered"),
        (["texter"], {}, "1", None, "no open incidents"),
        (["texter"], OPEN_TWO, "1", None, f"ACK {short_code('inc-2')} disk full"),
        (["texter"], OPEN_TWO, f"ack {short_code('inc-2')}", "inc-2", "Acknowledged: disk full"),
        (["texter"], OPEN_TWO, "ACK 0000", None, "No open incident has code 0000"),
        (["texter"], OPEN_TWO, "hello", None, "Not understood"),
        # two people share the phone: the one alerted about the incident acknowledged it
        (["a", "texter"], OPEN_TWO, f"ACK {short_code('inc-1')}", "inc-1", "db down"),
    ],
)
async def test_replies_are_answered_and_acknowledge_only_one_named_incident(
    bridge: Any,
    people: list[str],
    open_incidents: dict[str, OpenIncident],
    body: str,
    acknowledged: str | None,
    answer_has: str,
) -> None:
    base, publisher, store = bridge
    store.people[PHONE], store.open[PHONE] = people, open_incidents
    form = inbound(body)
    reply = await post(base, form, twilio_signature(TOKEN, f"{base}/twilio/sms", form))
    assert reply.status_code == 200
    assert answer_has in said(reply)
    acks = [r for r in publisher.published if isinstance(r, IncidentAcknowledged)]
    assert [a.incident_id for a in acks] == ([acknowledged] if acknowledged else [])
    assert all(a.by_user_id == "texter" for a in acks)
    assert isinstance(publisher.published[0], RawCallback)  # archived either way


async def test_a_reply_without_message_sid_is_a_400(bridge: Any) -> None:
    base, publisher, store = bridge
    store.people[PHONE] = ["texter"]
    form = {k: v for k, v in inbound("1").items() if not k.endswith("Sid")}
    reply = await post(base, form, twilio_signature(TOKEN, f"{base}/twilio/sms", form))
    assert reply.status_code == 400 and "MessageSid" in reply.text
    assert [type(r) for r in publisher.published] == [RawCallback]
