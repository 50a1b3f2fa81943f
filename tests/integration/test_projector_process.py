"""`notifier projector`: the projection in a process of its own, as an operator runs it, on
the real broker, registry and PostgreSQL. It folds delivery events into the NotificationLog
and dead-letters what it cannot decode through its own producer."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from notifier.contracts.factory import build_codec
from notifier.contracts.records import DeadLetter
from notifier.contracts.registry import register_subjects
from notifier.kafka_io import Publisher
from notifier.localprocs import free_port
from notifier.settings import Settings
from notifier.topics import ensure_topics, full_name, subjects
from projections.migrate import migrate
from tests.samples import SmsNotification
from tests.unit.deploy.surfaces import PROJECTOR_PROBE_PATH

pytestmark = pytest.mark.integration
T = TypeVar("T")
WITHIN_S = 60.0  # the projector's start (registry, group join) takes a few seconds here


@pytest.fixture
def scratch(registered: Settings) -> Iterator[Settings]:
    """Settings under a prefix of this test only: the session's projection group has the
    pipeline tests' worker in it, which a second member would make rebalance."""
    prefix = f"{registered.topic_prefix}pj{uuid.uuid4().hex[:6]}."
    scratch = registered.model_copy(update={"topic_prefix": prefix, "session_timeout_s": 8.0})
    assert scratch.schema_registry_url is not None and scratch.database_url is not None
    migrate(scratch.database_url.get_secret_value())  # idempotent: the session shares it
    ensure_topics(scratch.kafka_bootstrap, scratch)
    register_subjects(scratch.schema_registry_url, subjects(scratch))
    yield scratch
    admin = AdminClient({"bootstrap.servers": scratch.kafka_bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for fut in admin.delete_topics(ours, operation_timeout=30).values():
        fut.result()


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Poll `read` until `done` holds; AssertionError after WITHIN_S."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WITHIN_S} s; last {value!r}")
        await asyncio.sleep(0.2)


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    """What the dead-letter topic holds now."""
    codec = build_codec(settings)
    consumer = AIOKafkaConsumer(
        full_name(settings, "deadletter"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=1000)
        found = [codec.decode(m.value) for ms in batch.values() for m in ms]
        return [r for r in found if isinstance(r, DeadLetter)]
    finally:
        await consumer.stop()
        codec.close()


async def row_and_dead_letter(settings: Settings, nid: str) -> tuple[Any, list[DeadLetter]]:
    """The notification's (status, attempt_count) once SENT, and the dead letters once one
    is there."""
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

        async def status() -> Any:
            cursor = await conn.execute(
                "SELECT status, attempt_count FROM notification_log WHERE notification_id = %s",
                (nid,),
            )
            return await cursor.fetchone()

        row = await eventually(status, lambda s: s is not None and s[0] == "SENT", "the row")
    kept = await eventually(
        lambda: dead_letters(settings), lambda found: len(found) == 1, "the dead letter"
    )
    return row, kept


def test_the_projector_process_folds_events_and_dead_letters_garbage(
    scratch: Settings, cli_env: dict[str, str], notifier_bin: Path, tmp_path: Path
) -> None:
    settings = scratch
    port = free_port()
    env = {
        **cli_env,
        "NOTIFIER_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFIER_METRICS_PORT": str(port),
    }
    log = tmp_path / "projector.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(notifier_bin), "projector", "--loglevel", "warn"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        sms = SmsNotification("pat")
        incident_id, events = sms.incident_id, sms.events()
        codec = build_codec(settings)
        publisher = Publisher(settings, codec)
        for record in events:
            publisher.publish("delivery.events", incident_id, record)
        publisher.flush()
        codec.close()
        garbage = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        garbage.produce(full_name(settings, "delivery.events"), key=b"junk", value=b"not avro")
        assert garbage.flush(30) == 0
        try:
            row, kept = asyncio.run(row_and_dead_letter(settings, sms.id))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()}") from exc
        assert row == ("SENT", 1)
        assert kept[0].value == b"not avro"
        assert kept[0].stage == "decode"
        assert kept[0].source_topic == full_name(settings, "delivery.events")
        assert proc.poll() is None, log.read_text()
        # the path the deployments probe: the projection's metrics, with the batch folded
        metrics = httpx.get(f"http://127.0.0.1:{port}{PROJECTOR_PROBE_PATH}", timeout=5)
        assert metrics.status_code == 200
        assert "notifier_projection_event_to_row_seconds_count" in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(
                f"the projector did not stop on SIGTERM\n{log.read_text()}"
            ) from None
    assert code == 0, log.read_text()
