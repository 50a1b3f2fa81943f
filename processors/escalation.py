"""The escalation agent: follows delivery events per (incident, user, level) and, when a
tier has failed, asks the dispatcher for the next one; pages the operations team when email
and SMS both failed."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.records import (
    CallbackStatus,
    CriticalDeliveryFailure,
    DeliveryFailed,
    EscalateTier,
    IncidentOpened,
    NotificationKind,
    NotificationQueued,
    Priority,
    ProviderCallback,
    ReceiptDue,
    Record,
    TierEscalated,
)
from notifier.domain import ids
from notifier.domain.escalation import (
    SELF_ALERT_PREFIX,
    Critical,
    Escalate,
    TierState,
    decide,
    observe,
    record,
)
from notifier.settings import Settings

log = logging.getLogger("notifier.escalation")
Outgoing = list[tuple[str, str, Record]]


def ops_incident_id(incident_id: str, user_id: str, level: int) -> str:
    """Deterministic id of the self-alert about one user of one incident level."""
    return SELF_ALERT_PREFIX + ids.event_id(incident_id, user_id, level, "critical")


DECIDING_RECORDS = frozenset(
    cls.AVRO_NAME for cls in (NotificationQueued, DeliveryFailed, ProviderCallback, ReceiptDue)
)


def may_change_decisions(record_name: str) -> bool:
    """Whether a record of this name can change a decision (`changes_decisions` then looks
    at its fields); the rest are passed by undecoded."""
    return record_name in DECIDING_RECORDS


def changes_decisions(event: Record) -> bool:
    """Only alerts being queued, final failures, receipts and their deadlines can change a
    decision: everything else (attempts, sends, notices) passes without touching the table."""
    if isinstance(event, NotificationQueued):
        return event.kind is NotificationKind.ALERT
    if isinstance(event, DeliveryFailed):
        return event.final
    if isinstance(event, ProviderCallback):
        # a callback names its user only when the provider echoed our ids
        return event.user_id is not None and event.status in (
            CallbackStatus.DELIVERED,
            CallbackStatus.FAILED,
        )
    return isinstance(event, ReceiptDue)


def escalate(
    event: Record,
    table: MutableMapping[str, Any],
    incident_status: Callable[[str], str],
    settings: Settings,
) -> Outgoing:
    """Fold `event` into the tier state kept in `table`; what to emit because of it."""
    if not changes_decisions(event):
        return []
    fact: Any = event  # one of the record types changes_decisions lets through
    key = f"{fact.incident_id}|{fact.user_id}"
    entry = dict(table.get(key) or {})
    levels: dict[str, Any] = dict(entry.get("levels", {}))
    by_notification: dict[str, str] = dict(entry.get("notifications", {}))
    if isinstance(event, NotificationQueued):
        level = str(event.escalation_level)
        by_notification[event.notification_id] = level
    else:
        found = by_notification.get(fact.notification_id)
        if found is None:
            return []
        level = found
    state = observe(TierState.from_json(levels.get(level)), event)
    decisions = (
        decide(state, fact.incident_id) if incident_status(fact.incident_id) == "open" else []
    )
    state = record(state, decisions)
    levels[level] = state.to_json()
    table[key] = {"levels": levels, "notifications": by_notification}
    return _emit(event, int(level), decisions, settings)


def _emit(
    event: Any, level: int, decisions: list[Escalate | Critical], settings: Settings
) -> Outgoing:
    now = datetime.now(UTC)
    out: Outgoing = []
    for decision in decisions:
        if isinstance(decision, Escalate):
            command_id = ids.event_id(
                event.incident_id, event.user_id, level, decision.to_tier.value
            )
            out.append(
                (
                    "delivery.events",
                    event.incident_id,
                    TierEscalated(
                        event_id=command_id,
                        occurred_at=now,
                        incident_id=event.incident_id,
                        user_id=event.user_id,
                        escalation_level=level,
                        from_tier=decision.from_tier,
                        to_tier=decision.to_tier,
                        reason=decision.reason,
                    ),
                )
            )
            out.append(
                (
                    "dispatch.commands",
                    event.incident_id,
                    EscalateTier(
                        command_id=command_id,
                        occurred_at=now,
                        incident_id=event.incident_id,
                        user_id=event.user_id,
                        escalation_level=level,
                        tier=decision.to_tier,
                        reason=decision.reason,
                    ),
                )
            )
            log.warning(
                "escalating to %s: %s",
                decision.to_tier.value,
                decision.reason,
                extra={"incident_id": event.incident_id},
            )
            continue
        ops_id = ops_incident_id(event.incident_id, event.user_id, level)
        out.append(
            (
                "delivery.events",
                event.incident_id,
                CriticalDeliveryFailure(
                    event_id=ids.event_id(ops_id, "critical"),
                    occurred_at=now,
                    incident_id=event.incident_id,
                    user_id=event.user_id,
                    escalation_level=level,
                    failed_channels=list(decision.failed_channels),
                    ops_incident_id=ops_id,
                ),
            )
        )
        log.error(
            "email and SMS both failed for user %s",
            event.user_id,
            extra={"incident_id": event.incident_id},
        )
        if settings.ops_user_ids:
            out.append(
                (
                    "incidents",
                    ops_id,
                    IncidentOpened(
                        event_id=ids.event_id(ops_id, "opened"),
                        occurred_at=now,
                        incident_id=ops_id,
                        title=f"Could not reach {event.user_id} about incident {event.incident_id}",
                        description="Email and SMS both failed finally. Someone may not know about "
                        f"incident {event.incident_id}: check the NotificationLog.",
                        priority=Priority.CRITICAL,
                        escalation_level=1,
                        user_ids=list(settings.ops_user_ids),
                        self_alert=True,
                        service="notifier",
                        triggered_at=now,
                    ),
                )
            )
    return out
