"""Status transition rules of the NotificationLog: one pure function folds each delivery
event into a notification's row, another each provider callback. Monotonic: a late SENT never
overwrites DELIVERED, FAILED and CANCELLED are terminal (until an operator's resend: a later
attempt reopens the row), and applying the same event twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from notifier.contracts.records import (
    CallbackStatus,
    DeliveryAttempted,
    DeliveryCancelled,
    DeliveryDelivered,
    DeliveryFailed,
    DeliverySent,
    FailureCategory,
    NotificationQueued,
    ProviderCallback,
    Record,
)

QUEUED, SENDING, SENT, DELIVERED, FAILED, CANCELLED = (
    "QUEUED",
    "SENDING",
    "SENT",
    "DELIVERED",
    "FAILED",
    "CANCELLED",
)
TERMINAL = frozenset({FAILED, CANCELLED})
RANK = {QUEUED: 0, SENDING: 1, SENT: 2, DELIVERED: 3}

ROW_EVENTS = (
    NotificationQueued,
    DeliveryAttempted,
    DeliverySent,
    DeliveryDelivered,
    DeliveryFailed,
    DeliveryCancelled,
)


@dataclass(frozen=True)
class LogRow:
    """One notification_log row, as the projection holds it."""

    notification_id: str
    incident_id: str
    user_id: str
    channel: str
    status: str = QUEUED
    tier: str | None = None
    escalation_level: int | None = None
    priority: str | None = None
    kind: str | None = None
    repeat: int = 0
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    error_category: str | None = None
    attempt_count: int = 0
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_attempt_at: datetime | None = None
    held_until: datetime | None = None  # quiet hours: held until then
    held_reason: str | None = None  # why held (or sent on the quiet-hours channel)


_Row = TypeVar("_Row", LogRow, "AttemptRow")


def replace(row: _Row, **changes: Any) -> _Row:
    """`row` with `changes`, as dataclasses.replace, for the two row types here.

    Each event folded makes a new row; dataclasses.replace walks the fields and the frozen
    __init__ sets each through object.__setattr__: a third of the projection's folding time
    (py-spy, tests/perf/projection_load.py). A copy of the instance dict does the same."""
    if not changes.keys() <= _FIELDS[type(row)]:
        raise TypeError(f"{type(row).__name__} has no field {set(changes) - _FIELDS[type(row)]}")
    new = object.__new__(type(row))
    vars(new).update(vars(row), **changes)
    return new


def _later(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new > current else current


def _earlier(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new < current else current


def _advance(status: str, to: str) -> str:
    """`to` if it moves the row forward, else `status` (terminal states never move)."""
    if status in TERMINAL:
        return status
    if to in TERMINAL:
        return status if status == DELIVERED else to
    return to if RANK[to] > RANK[status] else status


def apply(row: LogRow | None, event: Record) -> LogRow:
    """The row after `event` (a NotificationQueued or Delivery* event)."""
    if not isinstance(event, ROW_EVENTS):
        raise TypeError(f"{type(event).__name__} does not change a notification row")
    if row is None:
        row = LogRow(event.notification_id, event.incident_id, event.user_id, event.channel.value)
    at = event.occurred_at
    if isinstance(event, NotificationQueued):
        return replace(
            row,
            tier=event.tier.value,
            escalation_level=event.escalation_level,
            priority=event.priority.value,
            kind=event.kind.value,
            repeat=event.repeat,
            queued_at=_earlier(row.queued_at, at),
            held_until=event.held_until,
            held_reason=event.held_reason,
        )
    if isinstance(event, DeliveryAttempted):
        if row.status in TERMINAL and event.requested_by and event.attempt > row.attempt_count:
            # an attempt after the one that ended the row: an operator's resend reopens it
            row = replace(row, status=SENDING)
        return replace(
            row,
            status=_advance(row.status, SENDING),
            provider=event.provider,
            attempt_count=max(row.attempt_count, event.attempt),
            last_attempt_at=_later(row.last_attempt_at, at),
        )
    if isinstance(event, DeliverySent):
        return replace(
            row,
            status=_advance(row.status, SENT),
            provider=event.provider,
            provider_message_id=row.provider_message_id or event.provider_message_id,
            attempt_count=max(row.attempt_count, event.attempt),
            sent_at=_earlier(row.sent_at, at),
        )
    if isinstance(event, DeliveryDelivered):
        return replace(
            row,
            status=_advance(row.status, DELIVERED),
            provider_message_id=row.provider_message_id or event.provider_message_id,
            delivered_at=_earlier(row.delivered_at, at),
        )
    if isinstance(event, DeliveryFailed):
        attempts = max(row.attempt_count, event.attempt)
        if row.status in TERMINAL:  # why it ended stands (a bounce may have been folded first)
            return replace(row, attempt_count=attempts)
        moved = _advance(row.status, FAILED if event.final else SENDING)
        return replace(
            row,
            status=moved,
            error=event.error,
            error_category=event.category.value,
            attempt_count=attempts,
            failed_at=_earlier(row.failed_at, at) if moved == FAILED else row.failed_at,
        )
    moved = _advance(row.status, CANCELLED) if row.status in (QUEUED, SENDING) else row.status
    return replace(
        row,
        status=moved,
        error=event.reason if moved == CANCELLED else row.error,
        cancelled_at=_earlier(row.cancelled_at, at) if moved == CANCELLED else row.cancelled_at,
    )


def apply_callback(row: LogRow, callback: ProviderCallback) -> LogRow:
    """The row after a provider's status callback (folded only once the row exists).

    DELIVERED and FAILED (a bounce) move the row as the matching delivery events would, at the
    provider's time; SENT moves QUEUED/SENDING to SENT; DEFERRED changes nothing (its error
    stays in provider_callback: noted on the row, it would replace or be replaced by a failed
    attempt's depending on which is folded first). The same callback twice changes nothing.
    """
    at = callback.occurred_at
    # the message id is the one our send recorded, not the callback's: which of the two is
    # folded first depends on batching, and a rebuild must give the same row as live
    row = replace(row, provider=row.provider or callback.provider)
    if callback.status is CallbackStatus.DELIVERED:
        return replace(
            row, status=_advance(row.status, DELIVERED), delivered_at=_earlier(row.delivered_at, at)
        )
    if callback.status is CallbackStatus.SENT:
        # earliest wins, as for DeliverySent: the same sent_at whichever is folded first
        return replace(row, status=_advance(row.status, SENT), sent_at=_earlier(row.sent_at, at))
    if callback.status is CallbackStatus.FAILED:
        if row.status in TERMINAL:
            return row  # already over; the reason it ended stands
        moved = _advance(row.status, FAILED)
        if moved != FAILED:
            return row  # DELIVERED: the message arrived, a later bounce does not undo that
        return replace(
            row,
            status=FAILED,
            error=callback.error or callback.raw_status,
            error_category=FailureCategory.PERMANENT.value,
            failed_at=_earlier(row.failed_at, at),
        )
    return row  # DEFERRED: the provider is still trying


@dataclass(frozen=True)
class AttemptRow:
    """One notification_attempt row."""

    notification_id: str
    attempt: int
    channel: str
    outcome: str  # PENDING | SENT | FAILED
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    error_category: str | None = None
    status_code: int | None = None
    latency_ms: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # DeliveryAttempted events: more than 1 when the attempt was repeated, 0 when the
    # notification rode in another's request (a bundle's carried notifications)
    requests: int = 0
    last_requested_at: datetime | None = None


_FIELDS: dict[type, frozenset[str]] = {
    t: frozenset(f.name for f in fields(t)) for t in (LogRow, AttemptRow)
}


def apply_attempt(row: AttemptRow | None, event: Record) -> AttemptRow | None:
    """The attempt row after `event`, or None when the event is not about an attempt."""
    if not isinstance(event, DeliveryAttempted | DeliverySent | DeliveryFailed):
        return row
    if row is None:
        row = AttemptRow(event.notification_id, event.attempt, event.channel.value, "PENDING")
    if isinstance(event, DeliveryAttempted):
        newer = row.last_requested_at is None or event.occurred_at > row.last_requested_at
        return replace(
            row,
            provider=row.provider or event.provider,
            started_at=_earlier(row.started_at, event.occurred_at),
            # a copy is made later than what was folded; the same event read again is not
            requests=row.requests + 1 if newer else row.requests,
            last_requested_at=event.occurred_at if newer else row.last_requested_at,
        )
    if row.outcome != "PENDING":
        return row  # the first outcome of an attempt stands
    if isinstance(event, DeliverySent):
        return replace(
            row,
            outcome="SENT",
            provider=event.provider,
            provider_message_id=event.provider_message_id,
            latency_ms=event.latency_ms,
            finished_at=event.occurred_at,
        )
    return replace(
        row,
        outcome="FAILED",
        provider=event.provider or row.provider,
        error=event.error,
        error_category=event.category.value,
        status_code=event.status_code,
        latency_ms=event.latency_ms,
        finished_at=event.occurred_at,
    )
