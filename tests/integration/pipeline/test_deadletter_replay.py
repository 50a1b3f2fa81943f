"""`notifier deadletter list` and `replay` against the running pipeline: a message the worker
could not decode is put back after the fix and processed once, however often replay runs."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from notifier.contracts.records import (
    Channel,
    DeadLetter,
    DeliverySent,
    IncidentOpened,
    NotificationQueued,
    Priority,
    SendCommand,
)
from notifier.deadletters import REPLAYED_FROM, preview
from notifier.settings import Settings
from notifier.topics import full_name
from tests.integration.pipeline.conftest import Pipeline, eventually
from tests.samples import sample

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
# Apicurio numbers new content in sequence, shared by every session on the registry (and a
# registration of known content uses up a number too), so "the next id" cannot be predicted
# while other sessions register. The test writes a message with an id HEADROOM ahead of the
# newest, lets the worker dead-letter it, steps the numbering up with throwaway schemas and
# registers IncidentOpened at exactly that id; if another registration lands on it first,
# it starts over with a new message.
HEADROOM = 50
ATTEMPTS = 5


@dataclass(frozen=True)
class Raw:
    """A message as Kafka holds it."""

    partition: int
    offset: int
    value: bytes | None
    headers: dict[str, bytes]


def raw_messages(settings: Settings, topic: str, key: bytes) -> list[Raw]:
    """Every message with `key` on `topic`, from the beginning to the end offsets now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    name = full_name(settings, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-raw-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        left = {p: end for p, end in ends.items() if end > 0}
        found: list[Raw] = []
        deadline = time.monotonic() + 30
        while left:
            assert time.monotonic() < deadline, f"{name}: not read to its end in 30 s"
            msg = consumer.poll(0.5)
            # positions, not offsets seen: a partition may end in a transaction marker
            for tp in consumer.position([TopicPartition(name, p) for p in list(left)]):
                if tp.offset >= left[tp.partition]:
                    left.pop(tp.partition, None)
            if msg is None or msg.error() is not None:
                continue
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if msg.key() == key:
                pairs = msg.headers() or []  # a consumed message's headers are a list
                headers = {str(k): v for k, v in list(pairs) if isinstance(v, bytes)}
                found.append(Raw(partition, offset, msg.value(), headers))
        return found
    finally:
        consumer.close()


async def register(settings: Settings, subject: str, schema: Mapping[str, object]) -> int:
    """Register `schema` under `subject` (Confluent-compatible API); its id."""
    assert settings.schema_registry_url is not None
    async with httpx.AsyncClient(base_url=settings.schema_registry_url, timeout=10) as client:
        answer = await client.post(
            f"/subjects/{subject}/versions",
            json={"schema": json.dumps(schema)},
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
    assert answer.status_code == 200, f"{subject}: {answer.status_code} {answer.text}"
    return int(answer.json()["id"])


def incident_opened_schema(note: str) -> dict[str, object]:
    """schemas/incident_opened.avsc with a different doc: the same record, new content."""
    schema: dict[str, object] = json.loads((SCHEMAS / "incident_opened.avsc").read_text())
    schema["doc"] = f"{schema['doc']} {note}"
    return schema


def produce(settings: Settings, topic: str, key: str, value: bytes) -> None:
    """Produce as an outside service would: murmur2 on the key, with a header of its own."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"}
    )
    producer.produce(
        full_name(settings, topic),
        key=key.encode(),
        value=value,
        headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    )
    assert producer.flush(30) == 0


async def notifier(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `notifier` command as an operator would, against this session's stack."""
    return await asyncio.to_thread(
        subprocess.run,
        [p.command[0], *args],
        env=p.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def dead_letter_then_fix(p: Pipeline) -> tuple[IncidentOpened, int]:
    """An IncidentOpened written with a schema id the registry does not know yet, dead-lettered
    by the worker; then that id registered as IncidentOpened. Returns the event and the id."""
    for _ in range(ATTEMPTS):
        run = uuid.uuid4().hex[:12]
        probes = f"{p.settings.topic_prefix}replay-probe-{run}"
        current = await register(p.settings, probes, probe_schema(run, 0))
        target = current + HEADROOM
        event = IncidentOpened(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            incident_id=f"inc-replay-{run}",
            title="replayed after the schema fix",
            priority=Priority.HIGH,
            escalation_level=1,
            user_ids=["mailer"],
        )
        body = p.codec.encode(event)[5:]  # the Avro body, behind magic byte and schema id
        produce(p.settings, "incidents", event.incident_id, struct.pack(">bI", 0, target) + body)
        dead = await p.events("deadletter", event.incident_id, lambda found: len(found) >= 1)
        assert isinstance(dead[0], DeadLetter) and dead[0].stage == "decode"
        assert f"unknown schema id {target}" in dead[0].reason
        # the fix: step the registry's numbering up to just below the id, then register
        # IncidentOpened (new content: its doc differs) so that it gets exactly that id
        step = 0
        while current < target - 1:
            step += 1
            current = await register(p.settings, probes, probe_schema(run, step))
        if current == target - 1:
            fixed = await register(
                p.settings,
                f"{p.settings.topic_prefix}replay-fix-{run}-notifier.IncidentOpened",
                incident_opened_schema(f"(registered again by the replay test, run {run})"),
            )
            if fixed == target:
                return event, target
    raise AssertionError(f"schema id taken by another registration {ATTEMPTS} times")


def probe_schema(run: str, step: int) -> dict[str, object]:
    """A throwaway record schema, new content every step."""
    doc = f"replay test {run}, step {step}"
    return {
        "type": "record",
        "name": "Probe",
        "namespace": "notifier.tests",
        "doc": doc,
        "fields": [],
    }


async def test_a_message_dead_lettered_for_its_schema_id_is_processed_once_after_the_fix(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    event, schema_id = await dead_letter_then_fix(p)
    key = event.incident_id.encode()
    reason = f"unknown schema id {schema_id}"

    dry = await notifier(p, "deadletter", "replay", "--reason", reason, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 of 1 matching" in dry.stdout
    assert len(await asyncio.to_thread(raw_messages, p.settings, "incidents", key)) == 1

    first = await notifier(p, "deadletter", "replay", "--reason", reason, "--yes")
    assert first.returncode == 0, first.stderr
    assert "replayed 1 of 1 matching dead letter(s); 0 already replayed, 0 failed" in first.stdout

    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliverySent) for e in found),
    )
    assert [e.channel for e in events if isinstance(e, NotificationQueued)] == [Channel.EMAIL]
    sent = await eventually(
        lambda: p.requests(provider="smtp", incident_id=event.incident_id), lambda rs: len(rs) >= 1
    )
    assert len(sent) == 1

    again = await notifier(p, "deadletter", "replay", "--reason", reason, "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to replay: 1 dead letter(s) match, 1 already replayed" in again.stdout

    [letter] = await asyncio.to_thread(raw_messages, p.settings, "deadletter", key)
    original, replayed = await asyncio.to_thread(raw_messages, p.settings, "incidents", key)
    assert REPLAYED_FROM not in original.headers
    assert replayed.value == original.value
    assert replayed.partition == original.partition
    assert replayed.headers == {
        **original.headers,
        REPLAYED_FROM: f"deadletter@{letter.partition}:{letter.offset}".encode(),
    }
    steps = await asyncio.to_thread(raw_messages, p.settings, "delivery.events", key)
    settled = [p.codec.decode(m.value) for m in steps]  # everything there now
    assert sum(isinstance(e, NotificationQueued) for e in settled) == 1
    assert len(await p.requests(provider="smtp", incident_id=event.incident_id)) == 1

    listed = await notifier(p, "deadletter", "list", "--reason", reason)
    assert listed.returncode == 0, listed.stderr
    assert "IncidentOpened {" in listed.stdout  # decodable now that the schema is known
    assert "1 dead letter(s) match" in listed.stdout


async def test_deadletter_list_shows_reasons_and_previews(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    run = uuid.uuid4().hex[:12]
    wrong = sample(
        SendCommand,
        incident_id=f"inc-list-{run}",
        channel=Channel.EMAIL,
        address="pat.doe@example.com",
    )
    p.publish("notify.sms", wrong.incident_id, wrong)
    garbage = f"garbage-{run}".encode()
    p.produce_raw("notify.sms", garbage, b'{"json": true, "note": "not avro"}')
    dead = await p.events(
        "deadletter",
        None,
        lambda found: {d.key for d in found} >= {wrong.incident_id.encode(), garbage},
    )
    command = next(d for d in dead if d.key == wrong.incident_id.encode())
    shown = preview(p.codec, command.value, limit=None)
    assert shown.startswith("SendCommand {") and f'"incident_id": "{wrong.incident_id}"' in shown
    assert "p***@example.com" in shown and "pat.doe@example.com" not in shown

    listed = await notifier(p, "deadletter", "list", "--topic", "notify.sms")
    assert listed.returncode == 0, listed.stderr
    assert "command for EMAIL on the sms" in listed.stdout
    assert "SendCommand {" in listed.stdout
    assert "undecodable, 34 bytes: 7b 22 6a 73" in listed.stdout
    assert f"{full_name(p.settings, 'notify.sms')}[" in listed.stdout

    only = await notifier(
        p, "deadletter", "list", "--topic", "notify.sms", "--reason", "MAGIC BYTE"
    )
    assert (
        "undecodable, 34 bytes: 7b 22 6a 73" in only.stdout and "SendCommand {" not in only.stdout
    )

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = await notifier(p, "deadletter", "list", "--topic", "notify.sms", "--since", later)
    assert none.returncode == 0 and "no dead letters match" in none.stdout
    naive = await notifier(p, "deadletter", "list", "--since", "2026-11-25T03:00:00")
    assert naive.returncode == 1 and "needs a time zone" in naive.stderr
