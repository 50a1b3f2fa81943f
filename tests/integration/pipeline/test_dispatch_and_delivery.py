"""The running pipeline (real Kafka, a real worker process, the sandbox over sockets):
dispatch, concurrency, ordering, idempotent ids, bounds, dead letters."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.contracts.records import (
    DeadLetter,
    DeliverySent,
    NotificationQueued,
    Priority,
    SendCommand,
    UserUnreachable,
)
from tests.integration.pipeline.conftest import Pipeline, eventually
from tests.samples import sample

pytestmark = pytest.mark.integration

PRIMARY_PROVIDERS = {"smtp", "slack", "fcm", "teams", "webhook"}


async def test_all_primary_channels_go_out_together_and_in_order(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    for provider in PRIMARY_PROVIDERS:
        # Sent one after another, five sends take 5 s; together they overlap within the first
        # second even when a loaded machine starts one channel's send a few hundred ms late.
        await p.fault(provider, latency_ms=1000)
    event = p.incident("all7", title="primary fan-out")
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: sum(isinstance(e, DeliverySent) for e in found) >= 5,
    )
    by_notification: dict[str, list[str]] = {}
    for e in events:
        by_notification.setdefault(e.notification_id, []).append(type(e).__name__)
    assert len(by_notification) == 5
    for steps in by_notification.values():
        assert steps == ["NotificationQueued", "DeliveryAttempted", "DeliverySent"], steps
    channels = {e.channel.value for e in events if isinstance(e, NotificationQueued)}
    assert channels == {"EMAIL", "SLACK", "PUSH", "TEAMS", "WEBHOOK"}  # not SMS, not VOICE

    since = event.occurred_at.timestamp() - 0.5
    ours = [
        r
        for r in await p.requests()
        if r.get("notification_id") in by_notification
        or (r["provider"] == "teams" and r["path"].endswith("/all7") and r["started_at"] >= since)
    ]
    assert Counter(r["provider"] for r in ours) == Counter(dict.fromkeys(PRIMARY_PROVIDERS, 1))
    assert latest_start(ours) < earliest_finish(ours), "primary sends did not overlap"
    assert not await p.requests(provider="twilio", incident_id=event.incident_id)


def latest_start(requests: list[dict[str, Any]]) -> float:
    return float(max(r["started_at"] for r in requests))


def earliest_finish(requests: list[dict[str, Any]]) -> float:
    return float(min(r["finished_at"] for r in requests))


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("emailoff", {"SLACK", "PUSH", "TEAMS", "WEBHOOK"}),
        ("nophone", {"EMAIL"}),
        ("slackoff", {"PUSH"}),
        ("smsonly", {"SMS"}),
    ],
)
async def test_preferences_and_contacts_decide_the_commands(
    clean_sandbox: Pipeline, user: str, expected: set[str]
) -> None:
    event = clean_sandbox.incident(user)
    events = await clean_sandbox.events(
        "delivery.events",
        event.incident_id,
        lambda found: sum(isinstance(e, DeliverySent) for e in found) >= len(expected),
    )
    assert {e.channel.value for e in events if isinstance(e, NotificationQueued)} == expected


async def test_an_info_incident_reaches_the_providers_with_its_details(
    clean_sandbox: Pipeline,
) -> None:
    """Through Kafka and the worker: the email and the SMS show the service, team, alert
    count, trigger time and dashboard link the incident event carried."""
    event = clean_sandbox.incident(
        "nophone",
        "smsonly",
        priority=Priority.INFO,
        service="edge",
        team_name="Platform",
        alert_count=2,
        triggered_at=datetime(2026, 12, 3, 11, 58, tzinfo=UTC),
        dashboard_url="https://grafana.example.com/d/edge",
    )
    await clean_sandbox.events(
        "delivery.events",
        event.incident_id,
        lambda found: sum(isinstance(e, DeliverySent) for e in found) >= 2,
    )
    [email] = await clean_sandbox.requests(provider="smtp", incident_id=event.incident_id)
    text = email["summary"]["text"]
    for shown in ("Service: edge", "Team: Platform", "Alerts: 2", "2026-12-03 11:58 UTC"):
        assert shown in text, text
    assert "https://grafana.example.com/d/edge" in email["summary"]["hrefs"]
    [sms] = await clean_sandbox.requests(provider="twilio", incident_id=event.incident_id)
    body = sms["summary"]["body"]
    assert body.startswith("[INFO] db down") and "edge (Platform), 2 alerts" in body, body
    assert body.split(" Reply ACK ")[0].endswith("https://grafana.example.com/d/edge")


async def test_a_user_nobody_can_reach_is_reported(clean_sandbox: Pipeline) -> None:
    event = clean_sandbox.incident("ghost-user")
    events = await clean_sandbox.events(
        "delivery.events",
        event.incident_id,
        lambda found: any(isinstance(e, UserUnreachable) for e in found),
    )
    reason = (
        "email: no user "
        "profile; push: no user profile; slack: no user profile; sms: no user profile; "
        "teams: no user profile; voice: no user profile; webhook: no user profile"
    )
    assert [e.reason for e in events if isinstance(e, UserUnreachable)] == [reason]
    people = await eventually(
        lambda: clean_sandbox.documented(
            "Who could not be reached, which tiers failed, and why (last day)", event.incident_id
        ),
        bool,
    )
    assert [(r["user_id"], r["kind"], r["reason"]) for r in people] == [
        ("ghost-user", "UNREACHABLE", reason)
    ]


async def test_the_same_incident_event_twice_gives_the_same_ids(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    event = p.incident("pushy", "mailer")
    p.publish("incidents", event.incident_id, event)  # the producer retried, say
    events = await p.events(
        "delivery.events",
        event.incident_id,
        lambda found: sum(isinstance(e, NotificationQueued) for e in found) >= 4,
    )
    queued = [e for e in events if isinstance(e, NotificationQueued)]
    assert len(queued) == 4
    assert len({e.notification_id for e in queued}) == 2

    def ids(found: list[NotificationQueued]) -> list[tuple[str, str]]:
        return [(e.event_id, e.notification_id) for e in found]

    assert ids(queued[:2]) == ids(queued[2:])


async def test_garbage_is_dead_lettered_and_the_next_message_processed(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    p.produce_raw("incidents", b"garbage-incident", b"\x00\x7f\xff\x00\x01not avro")
    p.produce_raw("notify.email", b"garbage-command", b'{"json": true}')
    good = p.incident("mailer")
    dead = await p.events(
        "deadletter",
        None,
        lambda found: (
            {d.key for d in found if isinstance(d, DeadLetter)}
            >= {b"garbage-incident", b"garbage-command"}
        ),
    )
    reasons = {d.key: d for d in dead if isinstance(d, DeadLetter)}
    assert "unknown schema id 2147418113" in reasons[b"garbage-incident"].reason
    assert reasons[b"garbage-incident"].value == b"\x00\x7f\xff\x00\x01not avro"
    assert "magic byte 0x7b" in reasons[b"garbage-command"].reason
    assert reasons[b"garbage-command"].source_topic.endswith("notify.email")
    await p.events(
        "delivery.events",
        good.incident_id,
        lambda found: any(isinstance(e, DeliverySent) for e in found),
    )


async def test_a_command_on_the_wrong_channel_topic_is_dead_lettered(
    clean_sandbox: Pipeline,
) -> None:
    p = clean_sandbox
    wrong = sample(SendCommand, incident_id="inc-wrong-topic")  # a WEBHOOK command
    p.publish("notify.sms", wrong.incident_id, wrong)
    dead = await p.events(
        "deadletter", None, lambda found: any(d.key == b"inc-wrong-topic" for d in found)
    )
    assert any(
        "command for WEBHOOK on the sms topic" in d.reason
        for d in dead
        if d.key == b"inc-wrong-topic"
    )


async def test_concurrency_and_rate_limit_bounds_hold(clean_sandbox: Pipeline) -> None:
    p = clean_sandbox
    await p.fault("fcm", latency_ms=250)
    push = [p.incident("pushy") for _ in range(30)]
    teams = [p.incident("teamy") for _ in range(30)]
    done = await eventually(
        lambda: p.requests(),
        lambda rs: (
            len(
                [
                    r
                    for r in rs
                    if r.get("incident_id") in {e.incident_id for e in push} and r["finished_at"]
                ]
            )
            >= 30
            and len(
                [
                    r
                    for r in rs
                    if r["provider"] == "teams"
                    and r["started_at"] >= teams[0].occurred_at.timestamp() - 1
                ]
            )
            >= 30
        ),
        timeout_s=60,
    )
    ids = {e.incident_id for e in push}
    fcm = [r for r in done if r.get("incident_id") in ids]
    most_in_flight = max(
        sum(1 for o in fcm if o["started_at"] <= r["started_at"] < o["finished_at"]) for r in fcm
    )
    assert 2 <= most_in_flight <= 10, most_in_flight  # concurrent, and never above the bound
    starts = sorted(
        r["started_at"]
        for r in done
        if r["provider"] == "teams" and r["started_at"] >= teams[0].occurred_at.timestamp() - 1
    )[:30]
    # teams is limited to 600/min = 10/s: 30 sends need at least ~2 s
    assert starts[-1] - starts[0] >= 1.8, starts[-1] - starts[0]
    per_second = max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)
    # A bucket of one second's allowance lets through a burst of 10, then 10/s: at most 20 in
    # any second as the worker sends. The sandbox stamps arrival, which shifts each request by
    # scheduling jitter, so a second measured here may hold what the worker sent in ~1.1 s.
    # Without the limiter all 30 land within a fraction of a second.
    jitter_s = 0.1
    assert per_second <= 10 + 10 * (1.0 + jitter_s), per_second
