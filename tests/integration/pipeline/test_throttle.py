"""The per-person throttle on the running pipeline: a burst of incidents for one person,
over the SMS window, goes out as the window allows and the rest as one bundle, nothing lost.

The pipeline's worker runs with NOTIFIER_THROTTLES="SMS=5/60,..." (conftest.py): at most
5 texts a minute for "texted", who has SMS only.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.contracts.records import Channel, ThrottleFlushDue
from notifier.domain import ids
from notifier.domain.throttle import parse_throttles
from tests.integration.pipeline.conftest import Pipeline, eventually

pytestmark = pytest.mark.integration
USER = "texted"
DOC = Path(__file__).resolve().parents[3] / "docs" / "THROTTLES.md"
SLACK_S = 2.0  # between the throttle's clock and the sandbox's record of a request


def texts(requests: list[dict[str, Any]], incidents: set[str]) -> list[dict[str, Any]]:
    """The SMS of these incidents (a bundle is recorded under its first incident)."""
    return sorted(
        (
            r
            for r in requests
            if r["path"].endswith("Messages.json")
            and r["incident_id"] in incidents
            and r["status"] == 201
        ),
        key=lambda r: r["started_at"],
    )


def mentioned(sent: list[dict[str, Any]], titles: dict[str, str]) -> set[str]:
    """The incidents some SMS tells about: a bundle names each by id; a text of its own
    (recorded under its incident) carries its title."""
    found = {i for r in sent for i in re.findall(r"inc-[0-9a-f]{12}", r["summary"]["body"])}
    found |= {r["incident_id"] for r in sent if titles[r["incident_id"]] in r["summary"]["body"]}
    return found


async def test_twelve_incidents_in_two_minutes_bundled_within_the_limits_nothing_lost(
    clean_sandbox: Pipeline,
) -> None:
    pipeline = clean_sandbox
    (window,) = [
        w for w in parse_throttles(pipeline.env["NOTIFIER_THROTTLES"])[Channel.SMS] if w.limit == 5
    ]
    run = uuid.uuid4().hex[:6]
    events = [pipeline.incident(USER, title=f"svc-{run}-{n} down") for n in range(12)]
    incidents = {e.incident_id for e in events}
    titles = {e.incident_id: e.title for e in events}

    async def sms() -> list[dict[str, Any]]:
        return texts(await pipeline.requests(provider="twilio"), incidents)

    # five go out at once; the sixth is held and a flush is scheduled for when the window opens
    timers = await pipeline.events(
        "throttle.timers", USER, lambda found: any(isinstance(t, ThrottleFlushDue) for t in found)
    )
    first_due = min(t.due_at for t in timers if isinstance(t, ThrottleFlushDue))
    early = await eventually(sms, lambda found: len(found) >= 5)
    assert len(early) == 5, [r["summary"]["body"] for r in early]
    assert all(mentioned([r], titles) == {r["incident_id"]} for r in early)

    # the window opens: the seven held incidents go out as one message
    sent = await eventually(
        sms, lambda found: mentioned(found, titles) >= incidents, timeout_s=window.seconds + 45
    )
    bodies = [r["summary"]["body"] for r in sent]
    assert mentioned(sent, titles) == incidents, bodies
    # the bundle names the seven it carries by id
    held = incidents - {r["incident_id"] for r in early}
    assert all(i in sent[-1]["summary"]["body"] for i in held), sent[-1]["summary"]["body"]
    assert len(sent) == 6, bodies
    bundle = sent[-1]
    assert "6 more incidents" in bundle["summary"]["body"]
    assert bundle["started_at"] >= first_due.timestamp() - SLACK_S
    # never more than 5 in any minute (the sandbox's clock, with a little slack)
    for text in sent:
        recent = [
            r
            for r in sent
            if text["started_at"] - window.seconds + SLACK_S < r["started_at"] <= text["started_at"]
        ]
        assert len(recent) <= window.limit, [r["started_at"] for r in sent]

    # every notification's row ends SENT; the held ones with the bundle's message id
    notifications = [ids.notification_id(i, 1, USER, Channel.SMS) for i in incidents]

    async def rows() -> list[dict[str, Any] | None]:
        return [await pipeline.row(n) for n in notifications]

    final = await eventually(rows, lambda rs: all(r and r["status"] == "SENT" for r in rs))
    by_message: dict[str, int] = {}
    for row in final:
        assert row is not None
        by_message[row["provider_message_id"]] = by_message.get(row["provider_message_id"], 0) + 1
    assert sorted(by_message.values()) == [1, 1, 1, 1, 1, 7]
    assert by_message[bundle["message_id"]] == 7

    # the documented query shows the bundle: one message, seven notifications
    query = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)[0]
    assert pipeline.settings.database_url is not None
    url = pipeline.settings.database_url.get_secret_value()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        found = await (await conn.execute(query.replace("<user-id>", USER))).fetchall()
    assert [(r[0], r[3]) for r in found] == [(bundle["message_id"], 7)], found
