"""`notifier demo`: the whole flow on the local stack, with the provider sandbox.

Starts the sandbox, the webhook bridge and a worker, publishes the sample users and an
incident, prints every delivery event as it happens and what the sandbox received, then
presses Acknowledge on the Slack message (through the bridge, signed as Slack signs it) and
prints the acknowledgement notices, then stops what it started.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from notifier.contracts.records import (
    DeliveryFailed,
    DeliverySent,
    NotificationQueued,
    Record,
    UserUnreachable,
)
from notifier.localprocs import sandbox_and_worker
from notifier.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "sample"


def describe(record: Record) -> str:
    """One line for a delivery event."""
    name = type(record).__name__
    fields: dict[str, Any] = (
        vars(record)
        if hasattr(record, "__dict__")
        else {f: getattr(record, f) for f in record.__dataclass_fields__}
    )
    channel = fields.get("channel")
    parts = [
        f"{name:<19}",
        f"{fields.get('user_id', ''):<6}",
        f"{channel.value if channel else '':<7}",
    ]
    if isinstance(record, NotificationQueued) and record.kind.value != "ALERT":
        parts.append(record.kind.value.lower().replace("_", " "))
    if "attempt" in fields:
        parts.append(f"attempt {fields['attempt']}")
    if isinstance(record, DeliverySent):
        parts.append(
            f"{record.provider} id={record.provider_message_id[:28]} ({record.latency_ms} ms)"
        )
    if isinstance(record, DeliveryFailed):
        parts.append(f"{record.category.value} final={record.final}: {record.error[:60]}")
    if isinstance(record, UserUnreachable):
        parts.append(record.reason[:80])
    return "  ".join(parts)


def _post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _follow(
    settings: Settings,
    codec: Any,
    incident_id: str,
    since: dict[int, int],
    timeout_s: float,
    say: Callable[[str], None],
) -> tuple[set[str], set[str]]:
    """Print the incident's delivery events from `since` until every queued notification
    was sent or finally failed; (queued, done) notification ids."""
    from notifier.kafka_io import read_topic

    queued: set[str] = set()
    done: set[str] = set()
    deadline = time.monotonic() + timeout_s
    for key, value, _, _ in read_topic(
        settings, "delivery.events", from_beginning=False, start_offsets=since, timeout_s=timeout_s
    ):
        if key != incident_id.encode():
            if time.monotonic() > deadline:
                break
            continue
        record = codec.decode(value)
        say("  " + describe(record))
        if isinstance(record, NotificationQueued):
            queued.add(record.notification_id)
        if isinstance(record, DeliverySent) or (
            isinstance(record, DeliveryFailed) and record.final
        ):
            done.add(record.notification_id)
        if queued and done >= queued:
            break
    return queued, done


def _wait_for_log(
    settings: Settings, incident_id: str, expected: int, timeout_s: float = 30
) -> list[tuple[object, ...]]:
    """The incident's NotificationLog rows once every notification has left QUEUED/SENDING."""
    import psycopg

    from projections.database import database_url

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url(settings)) as conn:
        while True:
            rows = conn.execute(
                "SELECT user_id, channel, kind, status, provider, "
                "to_char(sent_at, 'HH24:MI:SS.MS') FROM notification_log "
                "WHERE incident_id = %s ORDER BY user_id, channel, queued_at",
                (incident_id,),
            ).fetchall()
            settled = [r for r in rows if r[3] not in ("QUEUED", "SENDING")]
            if len(settled) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def run_demo(settings: Settings, say: Callable[[str], None], timeout_s: float = 120) -> int:
    """Run the demo; returns the exit code (0 when every notification was sent)."""
    from notifier.contracts.convert import from_json
    from notifier.contracts.factory import build_codec
    from notifier.contracts.records import IncidentOpened, UserProfile
    from notifier.kafka_io import Publisher, end_offsets

    logs = settings.stack_dir / "demo"
    codec = build_codec(settings)
    # a short session: if an earlier demo's worker left uncleanly, its partitions come back
    # in seconds rather than the default 30 s
    extra = {
        "NOTIFIER_RATE_LIMIT_PER_MIN": "6000",
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "NOTIFIER_SESSION_TIMEOUT_S": "10",
    }
    with sandbox_and_worker(logs, extra, bridge=True) as (sandbox_url, worker, bridge_url, _, _):
        say(
            f"provider sandbox on {sandbox_url}, webhook bridge on {bridge_url}, "
            f"worker pid {worker.pid} (logs in {logs})"
        )
        publisher = Publisher(settings, codec)
        users = [
            from_json(UserProfile, {**u, "updated_at": int(time.time() * 1000)})
            for u in json.loads((SAMPLES / "users.json").read_text())
        ]
        for user in users:
            publisher.publish("users", user.user_id, user)
        raw = json.loads((SAMPLES / "incident.json").read_text())
        raw.pop("type", None)
        incident_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        incident = from_json(
            IncidentOpened,
            {
                **raw,
                "incident_id": incident_id,
                "event_id": f"{incident_id}-opened",
                "occurred_at": int(time.time() * 1000),
                # the alerts began a little before the incident was opened
                "triggered_at": int(time.time() * 1000) - 120_000,
            },
        )
        since = end_offsets(settings, "delivery.events")  # read only what comes next
        publisher.publish("incidents", incident_id, incident)
        publisher.flush()
        say(
            f"published {len(users)} users and IncidentOpened {incident_id} "
            f"for {', '.join(incident.user_ids)}; delivery events as they happen:"
        )
        queued, done = _follow(settings, codec, incident_id, since, timeout_s, say)
        with urllib.request.urlopen(f"{sandbox_url}/_sandbox/requests") as resp:
            received = json.loads(resp.read())
        say(f"the sandbox received {len(received)} provider request(s):")
        for item in received:
            say(f"  {item['provider']:<8} -> {str(item['to'])[:32]:<32} HTTP/SMTP {item['status']}")
        sms = next(
            (r for r in received if r["provider"] == "twilio" and "body" in r["summary"]), None
        )
        if sms is not None:
            say(f"the SMS read: {sms['summary']['body']}")
        slack = [r for r in received if r["provider"] == "slack" and r["status"] == 200]
        if bridge_url and slack and done >= queued:
            since = end_offsets(settings, "delivery.events")
            say(
                f"{slack[0]['to']} presses Acknowledge on the Slack message; the bridge "
                "verifies Slack's signature and publishes IncidentAcknowledged:"
            )
            _post_json(
                f"{sandbox_url}/_sandbox/interact",
                {
                    "message_id": slack[0]["message_id"],
                    "action": "acknowledge",
                    "url": f"{bridge_url}/slack/actions",
                },
            )
            notices, notices_done = _follow(settings, codec, incident_id, since, timeout_s, say)
            queued |= notices
            done |= notices_done
        rows = _wait_for_log(settings, incident_id, len(queued))
        say(f"the NotificationLog in PostgreSQL (notifier log {incident_id}):")
        for row in rows:
            say(
                "  "
                + "  ".join(
                    f"{col!s:<{width}}"
                    for col, width in zip(row, (6, 7, 19, 9, 9, 32), strict=True)
                )
            )
    codec.close()
    if not queued or done < queued:
        say(f"not every notification finished within {timeout_s:.0f} s")
        return 1
    return 0
