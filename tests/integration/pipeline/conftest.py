"""One running pipeline for the session: test users published, then a real `notifier worker`
and a real `notifier bridge` process against the test stack and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.factory import build_codec
from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    IncidentOpened,
    Priority,
    Record,
    SlackConnection,
    TeamsConnection,
    UserProfile,
    WebhookAuth,
    WebhookEndpoint,
)
from notifier.kafka_io import Publisher
from notifier.settings import Settings
from notifier.topics import full_name

T = TypeVar("T")
NOTIFICATIONLOG_PAGE = (
    Path(__file__).resolve().parents[3] / "docs" / "NOTIFICATIONLOG.md"
).read_text()
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def profile(user_id: str, channels: list[Channel], sandbox_url: str, **kw: Any) -> UserProfile:
    base: dict[str, Any] = {
        "user_id": user_id,
        "name": user_id,
        "updated_at": NOW,
        "email": f"{user_id}@example.com",
        "phone": "+14155550101",
        "push_tokens": [f"token-{user_id}"],
        "slack": SlackConnection(f"U{user_id.upper()}", True),
        "teams": TeamsConnection(f"{sandbox_url}/teams/webhook/{user_id}", True),
        "webhook": WebhookEndpoint(f"{sandbox_url}/hooks/{user_id}", WebhookAuth.NONE),
        "preferences": [ChannelPreference(c, True, i) for i, c in enumerate(channels)],
    }
    base.update(kw)
    return UserProfile(**base)


def pipeline_users(sandbox_url: str) -> list[UserProfile]:
    """Everyone the pipeline tests page."""
    every = list(Channel)
    return [
        profile("all7", every, sandbox_url),
        profile(
            "emailoff",
            every,
            sandbox_url,
            preferences=[
                ChannelPreference(c, c is not Channel.EMAIL, i) for i, c in enumerate(every)
            ],
        ),
        profile("nophone", [Channel.EMAIL, Channel.SMS, Channel.VOICE], sandbox_url, phone=None),
        profile(
            "slackoff",
            [Channel.SLACK, Channel.PUSH],
            sandbox_url,
            slack=SlackConnection("USLACKOFF", False),
        ),
        profile("smsonly", [Channel.SMS, Channel.VOICE], sandbox_url),
        profile("pushy", [Channel.PUSH], sandbox_url),
        profile("teamy", [Channel.TEAMS], sandbox_url),
        profile("mailer", [Channel.EMAIL], sandbox_url),
        profile("alice", [Channel.EMAIL, Channel.PUSH], sandbox_url),
        profile("bob", [Channel.EMAIL], sandbox_url),
        profile("solo", [Channel.EMAIL, Channel.SMS], sandbox_url),
        profile("opsy", [Channel.EMAIL], sandbox_url),
        profile("slacky", [Channel.SLACK, Channel.PUSH], sandbox_url),
        profile("pager", [Channel.SMS, Channel.VOICE], sandbox_url),
        profile("receipted", [Channel.SMS, Channel.VOICE], sandbox_url),
        profile("caller", [Channel.VOICE], sandbox_url),
        profile("repeated", [Channel.SMS, Channel.VOICE], sandbox_url),
        profile("resendy", [Channel.EMAIL], sandbox_url),
        profile("texted", [Channel.SMS], sandbox_url),  # the throttle's: SMS only
        profile("texter", [Channel.SMS], sandbox_url),  # the SMS failover's
        profile("dialer", [Channel.VOICE], sandbox_url),  # the voice failover's
        # acknowledging by SMS reply: the only one with this number, as replies find people
        profile("replier", [Channel.SMS, Channel.PUSH], sandbox_url, phone="+14155550177"),
        profile("teamsack", [Channel.TEAMS, Channel.PUSH], sandbox_url),
        profile("textcall", [Channel.SMS, Channel.VOICE], sandbox_url, phone="+14155550178"),
    ]


@dataclass
class Pipeline:
    """Handles on the running pipeline, for tests."""

    settings: Settings
    codec: AvroCodec
    publisher: Publisher
    sandbox_url: str
    worker: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    command: list[str]
    bridge_url: str

    def start_worker(self) -> None:
        """Start a worker process (after a crash test killed the previous one)."""
        with self.log.open("a") as out:
            self.worker = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def incident(self, *users: str, **kw: Any) -> IncidentOpened:
        """Publish an IncidentOpened for `users` and return it."""
        event = IncidentOpened(
            **{
                "event_id": str(uuid.uuid4()),
                "occurred_at": datetime.now(UTC),
                "incident_id": f"inc-{uuid.uuid4().hex[:12]}",
                "title": "db down",
                "priority": Priority.HIGH,
                "escalation_level": 1,
                "user_ids": list(users),
                **kw,
            }
        )
        self.publish("incidents", event.incident_id, event)
        return event

    def publish(self, topic: str, key: str, record: Record) -> None:
        """Publish one record and wait for Kafka's acknowledgement."""
        self.publisher.publish(topic, key, record)
        self.publisher.flush()

    def produce_raw(self, topic: str, key: bytes, value: bytes) -> None:
        """Put raw bytes on a topic (garbage, for the dead-letter path)."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap})
        producer.produce(full_name(self.settings, topic), key=key, value=value)
        assert producer.flush(30) == 0

    async def requests(self, **filters: str) -> list[dict[str, Any]]:
        """What the sandbox received, filtered by recorded fields."""
        async with httpx.AsyncClient(base_url=self.sandbox_url) as client:
            found = (await client.get("/_sandbox/requests")).json()
        return [r for r in found if all(r.get(k) == v for k, v in filters.items())]

    async def fault(self, provider: str, **fault: Any) -> None:
        """Inject a fault in the sandbox for `provider` (no arguments clears it)."""
        async with httpx.AsyncClient(base_url=self.sandbox_url) as client:
            if fault:
                (await client.put(f"/_sandbox/faults/{provider}", json=fault)).raise_for_status()
            else:
                await client.delete(f"/_sandbox/faults/{provider}")

    async def events(
        self, topic: str, key: str | None, until: Callable[[list[Any]], bool], timeout_s: float = 30
    ) -> list[Any]:
        """Records on `topic` (with `key`), read from the start until `until(records)`."""
        consumer = AIOKafkaConsumer(
            full_name(self.settings, topic),
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # as the worker reads: what an aborted transaction wrote never happened
            isolation_level="read_committed",
        )
        await consumer.start()
        found: list[Any] = []
        try:
            deadline = time.monotonic() + timeout_s
            while not until(found):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out on {topic}; got {found}\n{self.log_tail()}")
                batch = await consumer.getmany(timeout_ms=int(min(left, 1) * 1000))
                for messages in batch.values():
                    for msg in messages:
                        if key is None or msg.key == key.encode():
                            found.append(self.codec.decode(msg.value))
        finally:
            await consumer.stop()
        return found

    async def everything_on(
        self, topic: str, key: str | None = None, timeout_s: float = 30
    ) -> list[Any]:
        """Every record on `topic` (with `key`) up to the topic's end offsets as of now;
        undecodable messages (other tests' garbage) are skipped."""
        name = full_name(self.settings, topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",  # ends: the last stable offsets
        )
        await consumer.start()
        try:
            parts = [TopicPartition(name, n) for n in range(self.settings.topic_partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            found: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, f"{topic} not read to its end in time"
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for m in messages:
                        if key is None or m.key == key.encode():
                            with contextlib.suppress(ContractError):
                                found.append(self.codec.decode(m.value))
            return found
        finally:
            await consumer.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the worker's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def row(self, notification_id: str) -> dict[str, Any] | None:
        """The notification's NotificationLog row, if the projection wrote it."""
        import psycopg
        from psycopg.rows import dict_row

        assert self.settings.database_url is not None
        url = self.settings.database_url.get_secret_value()
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
            cursor = await conn.execute(
                "SELECT * FROM notification_log WHERE notification_id = %s", (notification_id,)
            )
            return await cursor.fetchone()

    async def documented(self, heading: str, incident_id: str) -> list[dict[str, Any]]:
        """The rows of the query under `heading` in docs/NOTIFICATIONLOG.md about
        `incident_id` (put in for <incident-id>), as a reader of the page would run it."""
        import re

        import psycopg
        from psycopg.rows import dict_row

        section = NOTIFICATIONLOG_PAGE.split(f"## {heading}\n", 1)[1]
        query = re.search(r"```sql\n(.*?)```", section, re.S)
        assert query is not None, f"no query under {heading!r}"
        assert self.settings.database_url is not None
        url = self.settings.database_url.get_secret_value()
        sql = query.group(1).replace("<incident-id>", incident_id)
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
            rows = await (await conn.execute(sql)).fetchall()
        return [r for r in rows if r.get("incident_id", incident_id) == incident_id]


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    timeout_s: float = 30,
    every_s: float = 0.1,
) -> T:
    """Poll `probe` until `check` holds; AssertionError with the last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last: {value!r}")
        await asyncio.sleep(every_s)


@pytest.fixture(scope="session")
def pipeline(
    registered: Settings,
    sandbox: dict[str, str],
    cli_env: dict[str, str],
    notifier_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    from projections.migrate import migrate

    assert registered.database_url is not None
    migrate(registered.database_url.get_secret_value())
    codec = build_codec(registered)
    publisher = Publisher(registered, codec)
    for user in pipeline_users(sandbox["SANDBOX_URL"]):
        publisher.publish("users", user.user_id, user)
    publisher.flush()
    bridge_port = free_port()
    bridge_url = f"http://127.0.0.1:{bridge_port}"
    env = {
        **cli_env,
        **{k: v for k, v in sandbox.items() if k.startswith("NOTIFIER_")},
        "NOTIFIER_BRIDGE_PORT": str(bridge_port),
        "NOTIFIER_METRICS_PORT": str(free_port()),  # the worker's /metrics, /healthz, /readyz
        "NOTIFIER_RECEIPT_DEADLINE_S": "3",
        "NOTIFIER_REPEAT_INTERVAL_S": "4",
        "NOTIFIER_RATE_LIMITS": "teams=600",
        "NOTIFIER_RATE_LIMIT_PER_MIN": "600000",
        "NOTIFIER_CHANNEL_CONCURRENCY": "10",
        "NOTIFIER_SEND_TIMEOUT_S": "5",
        "NOTIFIER_CALLBACK_BASE_URL": bridge_url,
        "NOTIFIER_SMS_REPLIES": "true",
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "NOTIFIER_SESSION_TIMEOUT_S": "8",
        "NOTIFIER_OPS_USER_IDS": "opsy",
        # the default SMS window is 15 minutes: one minute keeps the throttle test short;
        # voice lets the repeat test's calls through (four in 12 s, held by the default 3/900)
        "NOTIFIER_THROTTLES": "SMS=5/60,20/3600;VOICE=10/900",
        # email fails over from SMTP to SendGrid, SMS and voice from Twilio to Vonage (the
        # sandbox env carries SendGrid's key, Vonage's key and its application's key file)
        "NOTIFIER_PROVIDERS": "EMAIL=smtp,sendgrid;SMS=twilio,vonage;VOICE=twilio,vonage",
    }
    logs = tmp_path_factory.mktemp("worker")
    log = logs / "worker.log"
    command = [str(notifier_bin), "worker", "--loglevel", "warn"]
    with log.open("w") as out:
        worker = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    with (logs / "bridge.log").open("w") as out:
        bridge = subprocess.Popen(
            [str(notifier_bin), "bridge"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    wait_for_http(f"{bridge_url}/readyz", bridge, logs / "bridge.log")
    running = Pipeline(
        registered, codec, publisher, sandbox["SANDBOX_URL"], worker, log, env, command, bridge_url
    )
    yield running
    for proc in (running.worker, bridge):
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    codec.close()


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30
) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: process exited\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {timeout_s} s\n{log.read_text(errors='replace')}")


SANDBOX_PROVIDERS = ("smtp", "twilio", "fcm", "slack", "teams", "webhook", "sendgrid", "vonage")


@pytest.fixture
async def clean_sandbox(pipeline: Pipeline) -> AsyncIterator[Pipeline]:
    """The pipeline, with sandbox faults cleared before and after the test."""
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        for provider in SANDBOX_PROVIDERS:
            await client.delete(f"/_sandbox/faults/{provider}")
    yield pipeline
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        for provider in SANDBOX_PROVIDERS:
            await client.delete(f"/_sandbox/faults/{provider}")
