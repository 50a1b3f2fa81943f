"""Repeat until acknowledged, and operator resends, on the running pipeline."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from notifier.contracts.records import (
    Channel,
    DeliveryAttempted,
    IncidentOpened,
    Priority,
    RepeatDue,
)
from notifier.domain import ids
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration
INTERVAL_S = 4.0  # NOTIFIER_REPEAT_INTERVAL_S of the pipeline's worker


def calls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (r for r in requests if r["path"].endswith("Calls.json")), key=lambda r: r["started_at"]
    )


async def test_the_voice_call_repeats_until_someone_acknowledges(clean_sandbox: Pipeline) -> None:
    pipeline = clean_sandbox
    incident = f"inc-{uuid.uuid4().hex[:12]}"
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
            user_ids=["repeated"],
        ),
    )
    # the SMS gets no delivery receipt: voice (the last tier) is called, then repeated
    made = await eventually(
        lambda: pipeline.requests(provider="twilio", incident_id=incident),
        lambda found: len(calls(found)) >= 2,
        timeout_s=45,
    )
    first, repeat = calls(made)[:2]
    assert first["notification_id"] == ids.notification_id(incident, 1, "repeated", Channel.VOICE)
    assert repeat["notification_id"] == ids.notification_id(
        incident, 1, "repeated", Channel.VOICE, repeat=1
    )
    gap = repeat["started_at"] - first["started_at"]
    print(f"repeat interval: {gap:.2f} s (configured {INTERVAL_S:g} s)")
    assert INTERVAL_S - 0.5 <= gap <= INTERVAL_S + 3
    # between two repeats, the person presses 1 on the repeated call
    async with httpx.AsyncClient(base_url=pipeline.sandbox_url) as client:
        pressed = await client.post(
            "/_sandbox/interact", json={"message_id": repeat["message_id"], "digits": "1"}
        )
    assert pressed.json()["status"] == 200, pressed.text
    timers = await pipeline.events(
        "notify.repeats", incident, lambda found: any(r.repeat == 2 for r in found)
    )
    second_due = next(r for r in timers if isinstance(r, RepeatDue) and r.repeat == 2).due_at
    # an absence can only be seen after its time: wait until well after the next repeat
    # was due, then nothing more was called
    await asyncio.sleep(max(0.0, second_due.timestamp() + 2 - time.time()))
    after = calls(await pipeline.requests(provider="twilio", incident_id=incident))
    assert len(after) == 2, [c["notification_id"] for c in after]


async def test_a_failed_notification_resent_goes_out_once_more_and_is_recorded(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    await pipeline.fault("smtp", fail_next=1, status=550)  # mailbox unknown: final at once
    event = pipeline.incident("resendy")
    nid = ids.notification_id(event.incident_id, 1, "resendy", Channel.EMAIL)
    await eventually(lambda: pipeline.row(nid), lambda r: r is not None and r["status"] == "FAILED")
    run = subprocess.run(  # noqa: ASYNC221  # the CLI as an operator runs it
        [*pipeline.command[:1], "resend", nid, "--by", "tester"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"resend {nid}" in run.stdout and "attempt 2" in run.stdout
    row = await eventually(
        lambda: pipeline.row(nid), lambda r: r is not None and r["status"] == "SENT"
    )
    assert row is not None and row["attempt_count"] == 2
    assert pipeline.settings.database_url is not None
    async with await psycopg.AsyncConnection.connect(
        pipeline.settings.database_url.get_secret_value()
    ) as conn:
        attempts = await (
            await conn.execute(
                "SELECT attempt, outcome FROM notification_attempt "
                "WHERE notification_id = %s ORDER BY attempt",
                (nid,),
            )
        ).fetchall()
    assert attempts == [(1, "FAILED"), (2, "SENT")]
    # the sandbox names the message it accepted: only the resend (the first was refused)
    sent = await pipeline.requests(provider="smtp", notification_id=nid)
    assert len(sent) == 1
    events = await pipeline.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, DeliveryAttempted) and e.attempt == 2 for e in found),
    )
    [resent] = [e for e in events if isinstance(e, DeliveryAttempted) and e.attempt == 2]
    assert resent.requested_by == "tester"
    # a SENT notification is not resent
    again = subprocess.run(  # noqa: ASYNC221
        [*pipeline.command[:1], "resend", nid],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode != 0 and "only FAILED or CANCELLED" in again.stderr + again.stdout
