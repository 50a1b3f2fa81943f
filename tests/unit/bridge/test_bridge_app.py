"""The bridge's answers when its dependencies fail: over real HTTP, with stand-ins for
Kafka and PostgreSQL so each failure can be forced."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from aiohttp import web

from adapters.bridge.publisher import PublishFailedError
from adapters.bridge.server import Bridge, build_app
from adapters.bridge.signatures import slack_signature
from notifier.contracts.records import IncidentAcknowledged, RawCallback, Record
from notifier.settings import Settings

SECRET = "test-signing-secret"


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Record] = []
        self.down = False

    async def publish(self, items: Sequence[tuple[str, str, Record]]) -> None:
        if self.down:
            raise PublishFailedError("Kafka did not acknowledge in 10 s")
        self.published += [record for _, _, record in items]


class FakeStore:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.down = False

    async def first_time(self, source: str, signature: str) -> bool:
        if self.down:
            raise psycopg.OperationalError("connection refused")
        if signature in self.seen:
            return False
        self.seen.add(signature)
        return True

    async def forget(self, signature: str) -> None:
        self.seen.discard(signature)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[str, FakePublisher, FakeStore]]:
    publisher, store = FakePublisher(), FakeStore()
    settings = Settings(slack_signing_secret=SECRET)
    app = build_app(Bridge(settings, publisher, store))  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", publisher, store
    await runner.cleanup()


def slack_click(user: object = None) -> tuple[bytes, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": user if user is not None else {"id": "U1"},
        "actions": [{"action_id": "acknowledge", "value": "inc-1|n-1|alice", "action_ts": "1.2"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    return body, {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SECRET, ts, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_accepted_click_is_archived_and_published(bridge: Any) -> None:
    url, publisher, _ = bridge
    body, headers = slack_click()
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{url}/slack/actions", content=body, headers=headers)
    assert reply.status_code == 200
    assert [type(r) for r in publisher.published] == [RawCallback, IncidentAcknowledged]


async def test_kafka_down_is_a_503_and_the_providers_retry_is_accepted(bridge: Any) -> None:
    url, publisher, _ = bridge
    body, headers = slack_click()
    publisher.down = True
    async with httpx.AsyncClient() as client:
        refused = await client.post(f"{url}/slack/actions", content=body, headers=headers)
        publisher.down = False
        retried = await client.post(f"{url}/slack/actions", content=body, headers=headers)
    assert refused.status_code == 503
    assert retried.status_code == 200  # not taken for a replay: it was never published
    assert len(publisher.published) == 2


async def test_postgresql_down_is_a_503_and_nothing_published(bridge: Any) -> None:
    url, publisher, store = bridge
    body, headers = slack_click()
    store.down = True
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{url}/slack/actions", content=body, headers=headers)
    assert reply.status_code == 503 and "try again" in reply.text
    assert publisher.published == []


async def test_a_parser_bug_is_a_400_and_the_request_is_archived(bridge: Any) -> None:
    url, publisher, _ = bridge
    body, headers = slack_click(user="bob")  # not the object Slack sends
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{url}/slack/actions", content=body, headers=headers)
    assert reply.status_code == 400 and "not understood" in reply.text
    assert [type(r) for r in publisher.published] == [RawCallback]
