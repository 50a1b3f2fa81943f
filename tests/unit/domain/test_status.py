"""Status transition rules: table-driven, monotonic, idempotent."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryAttempted,
    DeliveryCancelled,
    DeliveryDelivered,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    Record,
    Tier,
)
from notifier.domain import status
from notifier.domain.status import AttemptRow, LogRow, apply, apply_attempt, apply_callback

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "notification_id": "n1",
    "incident_id": "i1",
    "user_id": "u1",
    "channel": Channel.SMS,
}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queued(s: int = 0) -> NotificationQueued:
    return NotificationQueued(
        event_id="q",
        occurred_at=at(s),
        tier=Tier.SECONDARY,
        escalation_level=1,
        priority=Priority.HIGH,
        kind=NotificationKind.ALERT,
        **BASE,
    )


def attempted(n: int = 1, s: int = 1) -> DeliveryAttempted:
    return DeliveryAttempted(
        event_id=f"a{n}", occurred_at=at(s), attempt=n, provider="twilio", **BASE
    )


def sent(n: int = 1, s: int = 2) -> DeliverySent:
    return DeliverySent(
        event_id=f"s{n}",
        occurred_at=at(s),
        attempt=n,
        provider="twilio",
        provider_message_id="SM1",
        latency_ms=40,
        **BASE,
    )


def delivered(s: int = 3) -> DeliveryDelivered:
    return DeliveryDelivered(
        event_id="d", occurred_at=at(s), provider="twilio", provider_message_id="SM1", **BASE
    )


def failed(n: int = 1, final: bool = False, s: int = 2) -> DeliveryFailed:
    return DeliveryFailed(
        event_id=f"f{n}",
        occurred_at=at(s),
        attempt=n,
        category=FailureCategory.TRANSIENT,
        error="HTTP 503",
        final=final,
        provider="twilio",
        latency_ms=12,
        **BASE,
    )


def cancelled(s: int = 5) -> DeliveryCancelled:
    return DeliveryCancelled(
        event_id="c", occurred_at=at(s), attempt=1, reason="incident acknowledged", **BASE
    )


def callback(
    status: CallbackStatus, s: int = 10, error: str | None = None, raw: str = ""
) -> ProviderCallback:
    return ProviderCallback(
        event_id=f"cb-{status.value}-{s}",
        occurred_at=at(s),
        received_at=at(s + 1),
        incident_id="i1",
        notification_id="n1",
        channel=Channel.SMS,
        provider="twilio",
        status=status,
        raw_status=raw or status.value.lower(),
        provider_message_id="SM1",
        error=error,
    )


def cb_delivered(s: int = 10) -> ProviderCallback:
    return callback(CallbackStatus.DELIVERED, s, raw="delivered")


def cb_sent(s: int = 10) -> ProviderCallback:
    return callback(CallbackStatus.SENT, s, raw="sent")


def cb_bounce(s: int = 10) -> ProviderCallback:
    return callback(CallbackStatus.FAILED, s, error="30005 unknown destination", raw="undelivered")


def cb_deferred(s: int = 10) -> ProviderCallback:
    return callback(CallbackStatus.DEFERRED, s, error="mailbox full", raw="deferred")


def fold(*events: Record) -> LogRow:
    row = None
    for event in events:
        if isinstance(event, ProviderCallback):  # folded only once the row exists
            assert row is not None
            row = apply_callback(row, event)
        else:
            row = apply(row, event)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([queued()], "QUEUED"),
        ([queued(), attempted()], "SENDING"),
        ([queued(), attempted(), sent()], "SENT"),
        ([queued(), attempted(), sent(), delivered()], "DELIVERED"),
        ([queued(), attempted(), delivered(), sent()], "DELIVERED"),  # late SENT: no change
        ([queued(), delivered(s=1), attempted(), sent()], "DELIVERED"),  # callback first
        ([queued(), attempted(), failed()], "SENDING"),  # transient, retries left
        ([queued(), attempted(), failed(final=True)], "FAILED"),
        ([queued(), attempted(), failed(final=True), sent()], "FAILED"),  # terminal
        ([queued(), attempted(), sent(), failed(final=True)], "FAILED"),  # bounce after send
        ([queued(), attempted(), sent(), delivered(), failed(final=True)], "DELIVERED"),
        ([queued(), cancelled()], "CANCELLED"),
        ([queued(), attempted(), failed(), cancelled()], "CANCELLED"),
        ([queued(), attempted(), sent(), cancelled()], "SENT"),  # nothing left to cancel
        ([queued(), cancelled(), attempted(), sent()], "CANCELLED"),  # terminal
        ([attempted(), queued(), sent()], "SENT"),  # out of order: still converges
    ],
)
def test_transitions(events: list[Record], status: str) -> None:
    assert fold(*events).status == status


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([queued(), attempted(), sent(), cb_delivered()], "DELIVERED"),
        ([queued(), cb_delivered(), attempted(), sent()], "DELIVERED"),  # callback first
        ([queued(), attempted(), sent(), cb_delivered(), cb_sent(s=11)], "DELIVERED"),  # late
        ([queued(), attempted(), sent(), cb_sent()], "SENT"),
        ([queued(), attempted(), cb_sent()], "SENT"),
        ([queued(), cb_sent()], "SENT"),
        ([queued(), attempted(), sent(), cb_bounce()], "FAILED"),
        ([queued(), attempted(), cb_bounce(), sent(), delivered()], "FAILED"),  # terminal
        ([queued(), attempted(), sent(), delivered(), cb_bounce()], "DELIVERED"),
        ([queued(), attempted(), sent(), cb_delivered(), cb_bounce()], "DELIVERED"),
        ([queued(), attempted(), sent(), cb_deferred()], "SENT"),
        ([queued(), attempted(), sent(), cb_deferred(), cb_delivered(s=20)], "DELIVERED"),
        ([queued(), attempted(), sent(), cb_deferred(), cb_bounce(s=20)], "FAILED"),
        ([queued(), cancelled(), cb_delivered()], "CANCELLED"),  # terminal
        ([queued(), attempted(), failed(final=True), cb_delivered()], "FAILED"),
    ],
)
def test_callback_transitions(events: list[Record], status: str) -> None:
    assert fold(*events).status == status


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (  # delivered_at is the provider's time
            [queued(), attempted(), sent(), cb_delivered(s=9)],
            {"delivered_at": at(9), "sent_at": at(2), "error": None},
        ),
        (  # earliest delivery wins, whichever says it
            [queued(), attempted(), sent(), cb_delivered(s=9), delivered(s=5), cb_delivered(8)],
            {"delivered_at": at(5)},
        ),
        (  # a "sent" callback before our DeliverySent: earliest wins, as for DeliverySent
            [queued(), cb_sent(s=7), attempted(), sent(s=2)],
            {"sent_at": at(2), "status": "SENT"},
        ),
        ([queued(), cb_sent(s=7)], {"sent_at": at(7), "provider": "twilio"}),
        (  # a late "sent" does not move DELIVERED back, nor its times
            [queued(), attempted(), sent(), cb_delivered(s=9), cb_sent(s=11)],
            {"sent_at": at(2), "delivered_at": at(9)},
        ),
        (  # a bounce: the provider's error, permanent, at the provider's time
            [queued(), attempted(), sent(), cb_bounce(s=12)],
            {
                "error": "30005 unknown destination",
                "error_category": "PERMANENT",
                "failed_at": at(12),
            },
        ),
        (  # a bounce without error text says the provider's word
            [queued(), attempted(), sent(), callback(CallbackStatus.FAILED, 12, raw="bounce")],
            {"error": "bounce", "error_category": "PERMANENT"},
        ),
        (  # a bounce after delivery: nothing changes
            [queued(), attempted(), sent(), cb_delivered(s=9), cb_bounce(s=12)],
            {"error": None, "failed_at": None},
        ),
        (  # a failed attempt folded after the bounce does not replace why it ended
            [queued(), cb_bounce(s=12), attempted(), failed(), attempted(2, s=3), sent(2, s=4)],
            {"status": "FAILED", "error": "30005 unknown destination", "failed_at": at(12)},
        ),
        (  # a bounce after our own final failure keeps our reason
            [queued(), attempted(), failed(final=True), cb_bounce()],
            {"error": "HTTP 503", "error_category": "TRANSIENT", "failed_at": at(2)},
        ),
        (  # deferred: nothing changes (its error is kept with the callback)
            [queued(), attempted(), sent(), cb_deferred()],
            {"status": "SENT", "error": None, "error_category": None},
        ),
        (  # a deferral folded before or after a failed attempt leaves the attempt's error
            [queued(), attempted(), cb_deferred(s=1), failed(s=2)],
            {"status": "SENDING", "error": "HTTP 503", "error_category": "TRANSIENT"},
        ),
        (
            [queued(), attempted(), failed(s=2), cb_deferred(s=1)],
            {"status": "SENDING", "error": "HTTP 503", "error_category": "TRANSIENT"},
        ),
        (  # a late deferral does not touch a delivered row
            [queued(), attempted(), sent(), cb_delivered(s=9), cb_deferred(s=5)],
            {"error": None, "error_category": None},
        ),
        (  # the message id comes from our send only, so the fold order cannot change it
            [queued(), cb_delivered()],
            {"provider_message_id": None, "provider": "twilio", "delivered_at": at(10)},
        ),
    ],
)
def test_callback_fields(events: list[Record], expected: dict[str, Any]) -> None:
    row = fold(*events)
    assert {k: getattr(row, k) for k in expected} == expected


def test_the_message_id_is_the_sends_whichever_is_folded_first() -> None:
    other = replace(cb_delivered(), provider_message_id="SM-other")
    assert fold(queued(), attempted(), sent(), other).provider_message_id == "SM1"
    assert fold(queued(), attempted(), other, sent()).provider_message_id == "SM1"


@pytest.mark.parametrize(
    "events",
    [
        [queued(), attempted(), sent(), cb_delivered(), cb_sent(s=11)],
        [queued(), cb_delivered(), attempted(), sent()],
        [queued(), attempted(), sent(), cb_deferred(), cb_bounce(s=20)],
        [queued(), attempted(), sent(), cb_deferred()],
        [queued(), cb_sent(s=1), attempted(), failed(), cb_bounce(s=20)],
    ],
)
def test_every_callback_applied_twice_changes_nothing(events: list[Record]) -> None:
    assert fold(*[e for event in events for e in (event, event)]) == fold(*events)


def test_every_event_applied_twice_changes_nothing() -> None:
    events: list[Record] = [
        queued(),
        attempted(1),
        failed(1, s=2),
        attempted(2, s=30),
        sent(2, s=31),
        delivered(s=40),
    ]
    once = fold(*events)
    twice = fold(*[e for event in events for e in (event, event)])
    assert once == twice
    assert once.attempt_count == 2 and once.status == "DELIVERED"
    assert once.queued_at == at(0) and once.sent_at == at(31) and once.delivered_at == at(40)
    assert once.tier == "SECONDARY" and once.error == "HTTP 503"


def test_attempt_rows() -> None:
    row = None
    for event in (attempted(1), failed(1), failed(1)):
        row = apply_attempt(row, event)
    assert row is not None
    assert (row.attempt, row.outcome, row.error_category) == (1, "FAILED", "TRANSIENT")
    assert row.latency_ms == 12  # how long it took to fail: a refusal is quick, a timeout not
    row2 = apply_attempt(apply_attempt(None, attempted(2, s=30)), sent(2, s=31))
    assert row2 is not None and row2.outcome == "SENT" and row2.latency_ms == 40
    assert apply_attempt(None, queued()) is None


@pytest.mark.parametrize(
    ("events", "requests"),
    [
        ([attempted(1), sent(1)], 1),
        # a copy of the command sent again after a crash: the provider was asked twice
        ([attempted(1), attempted(1, s=5), sent(1), sent(1, s=6)], 2),
        ([attempted(1), failed(1), attempted(1, s=5), failed(1), attempted(1, s=9)], 3),
        # the same event read again (a replay of the projection's input) is not a request
        ([attempted(1), sent(1), attempted(1), sent(1)], 1),
        ([sent(1)], 0),  # a bundle's carried notification: asked within another's request
    ],
    ids=["once", "twice", "three-times", "replayed", "carried"],
)
def test_an_attempt_counts_the_requests_made_for_it(events: list[Record], requests: int) -> None:
    row = None
    for event in events:
        row = apply_attempt(row, event)
    assert row is not None and row.requests == requests


def resend(n: int, s: int) -> DeliveryAttempted:
    return replace(attempted(n, s), requested_by="ops")


@pytest.mark.parametrize(
    ("events", "status", "attempts"),
    [
        ([queued(), attempted(1), failed(1, final=True), resend(2, 9), sent(2, s=10)], "SENT", 2),
        ([queued(), attempted(1), failed(1, final=True), resend(2, 9)], "SENDING", 2),
        ([queued(), cancelled(), resend(1, 9), sent(1, s=10)], "SENT", 1),
        # the pipeline's own later attempt, or a replayed resend, does not reopen
        ([queued(), attempted(1), failed(1, final=True), attempted(2, s=9)], "FAILED", 2),
        ([queued(), cancelled(), attempted(1, s=9), sent(1, s=10)], "CANCELLED", 1),
        (
            [
                queued(),
                attempted(1),
                failed(1, True),
                resend(2, 9),
                failed(2, True, 10),
                resend(2, 9),
            ],
            "FAILED",
            2,
        ),
    ],
    ids=[
        "resend-sent",
        "resend-in-flight",
        "cancelled-resent",
        "own-attempt",
        "cancelled-own-attempt",
        "replayed-resend",
    ],
)
def test_a_resend_reopens_a_terminal_row(events: list[Record], status: str, attempts: int) -> None:
    row = fold(*events)
    assert (row.status, row.attempt_count) == (status, attempts)


def test_a_row_held_for_quiet_hours_says_until_when_and_why_and_is_sent_later() -> None:
    held = replace(queued(), held_until=at(3600), held_reason="quiet hours 22:00-07:00 UTC")
    row = fold(held)
    assert (row.status, row.held_until, row.held_reason) == (
        "QUEUED",
        at(3600),
        "quiet hours 22:00-07:00 UTC",
    )
    later = fold(held, attempted(s=3600), sent(s=3601))
    assert later.status == "SENT" and later.held_until == at(3600)
    assert fold(queued()).held_until is None and fold(queued()).held_reason is None


@pytest.mark.parametrize(
    ("row", "changes"),
    [
        (LogRow("n1", "i1", "u1", "SMS"), {"status": "SENT", "attempt_count": 2}),
        (LogRow("n1", "i1", "u1", "SMS", provider="twilio"), {}),
        (AttemptRow("n1", 1, "SMS", "PENDING"), {"outcome": "SENT", "latency_ms": 40}),
    ],
)
def test_the_rows_replace_is_dataclasses_replace(row: Any, changes: dict[str, Any]) -> None:
    """The folding's own replace (faster) makes what dataclasses.replace makes, and leaves
    the row it was given as it was."""
    before = replace(row)
    made = status.replace(row, **changes)
    assert made == replace(row, **changes) and type(made) is type(row)
    assert made is not row and row == before
    with pytest.raises(FrozenInstanceError):
        made.status = "FAILED"


def test_the_rows_replace_refuses_a_field_the_row_lacks() -> None:
    with pytest.raises(TypeError, match="statsu"):
        status.replace(LogRow("n1", "i1", "u1", "SMS"), statsu="SENT")
