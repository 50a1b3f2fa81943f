"""Quiet hours on the running pipeline: a person whose quiet hours (in their own zone) are on
gets a CRITICAL alert at once, while alerts below CRITICAL are held, shown as held in the
NotificationLog, and go out as one bundle when the window ends.

The window is set on the person's wall clock (Asia/Kolkata, UTC+5:30) to end at the next
whole minute at least 40 s away, so the test waits about a minute, not hours.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from notifier.contracts.records import (
    Channel,
    DeliverySent,
    Priority,
    QuietHours,
    ThrottleFlushDue,
    UserUnreachable,
)
from notifier.domain import ids
from tests.integration.pipeline.conftest import Pipeline, eventually, profile

pytestmark = pytest.mark.integration
ZONE = "Asia/Kolkata"
DOC = Path(__file__).resolve().parents[3] / "docs" / "QUIET_HOURS.md"
SLACK_S = 2.0  # between the worker's clock and the sandbox's record of a request


def window_ending_soon(now: datetime) -> tuple[str, str, datetime]:
    """(start, end) as HH:MM in ZONE for an hour-long window around `now` that ends at the
    next whole minute at least 40 s away; and that end as UTC."""
    local = (now + timedelta(seconds=40)).astimezone(ZoneInfo(ZONE))
    end = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=1)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), end.astimezone(UTC)


def texts(requests: list[dict[str, Any]], incidents: set[str]) -> list[dict[str, Any]]:
    """The SMS accepted for these incidents (a bundle is recorded under its first one)."""
    return [
        r
        for r in requests
        if r["path"].endswith("Messages.json") and r["incident_id"] in incidents
        if r["status"] == 201
    ]


async def test_quiet_hours_hold_below_critical_and_let_critical_through(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    user = f"quiet-{uuid.uuid4().hex[:6]}"
    start, end, ends_at = window_ending_soon(datetime.now(UTC))
    person = profile(
        user,
        [Channel.SMS],
        pipeline.sandbox_url,
        time_zone=ZONE,
        quiet_hours=QuietHours(start, end),
    )
    pipeline.publish("users", user, person)

    # CRITICAL goes through at once. The worker reads the new profile on its own time: an
    # alert dispatched before it did finds nobody (UserUnreachable), so try again
    async def critical_sent() -> str | None:
        event = pipeline.incident(user, priority=Priority.CRITICAL, title="core down")
        found = await pipeline.events(
            "delivery.events",
            event.incident_id,
            lambda found: any(isinstance(e, DeliverySent | UserUnreachable) for e in found),
        )
        return event.incident_id if any(isinstance(e, DeliverySent) for e in found) else None

    critical = await eventually(critical_sent, lambda sent: sent is not None, every_s=0)
    assert critical is not None
    assert len(await _texts_of(pipeline, {critical})) == 1
    assert datetime.now(UTC) < ends_at, "the window ended before the test could use it"

    # below CRITICAL: held, and the log says until when and why
    held = [
        pipeline.incident(user, priority=p, title=f"{p.value.lower()} thing")
        for p in (Priority.HIGH, Priority.LOW)
    ]
    incidents = {e.incident_id for e in held}
    notifications = [ids.notification_id(i, 1, user, Channel.SMS) for i in incidents]

    async def rows() -> list[dict[str, Any] | None]:
        return [await pipeline.row(n) for n in notifications]

    queued = await eventually(rows, lambda rs: all(r is not None for r in rs))
    for row in queued:
        assert row is not None
        assert row["status"] == "QUEUED" and row["held_until"] == ends_at, row
        assert row["held_reason"] == f"quiet hours {start}-{end} {ZONE}", row
    timers = await pipeline.events(
        "throttle.timers", user, lambda found: any(isinstance(t, ThrottleFlushDue) for t in found)
    )
    assert {t.due_at for t in timers if isinstance(t, ThrottleFlushDue)} == {ends_at}
    # the documented query lists what is held for the person
    (query,) = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    assert pipeline.settings.database_url is not None
    url = pipeline.settings.database_url.get_secret_value()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        listed = await (await conn.execute(query.replace("<user-id>", user))).fetchall()
    assert datetime.now(UTC) < ends_at
    assert {r[0] for r in listed} == incidents, listed
    assert texts(await pipeline.requests(provider="twilio"), incidents) == []

    # the window ends: one SMS names both, and both rows end SENT with it
    timeout = (ends_at - datetime.now(UTC)).total_seconds() + 45
    sent = await eventually(
        lambda: _texts_of(pipeline, incidents), lambda found: len(found) >= 1, timeout_s=timeout
    )
    (bundle,) = sent
    assert bundle["started_at"] >= ends_at.timestamp() - SLACK_S
    assert set(re.findall(r"inc-[0-9a-f]{12}", bundle["summary"]["body"])) == incidents
    assert "[HIGH]" in bundle["summary"]["body"]  # the highest priority among them
    final = await eventually(rows, lambda rs: all(r and r["status"] == "SENT" for r in rs))
    assert {r["provider_message_id"] for r in final if r} == {bundle["message_id"]}


async def _texts_of(pipeline: Pipeline, incidents: set[str]) -> list[dict[str, Any]]:
    return texts(await pipeline.requests(provider="twilio"), incidents)
