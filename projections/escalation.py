"""Tier escalation in the projection: folds the delivery events of each (incident, user,
level) into its tier state and, when a tier has failed, asks the dispatcher for the next one;
pages the operations team when email and SMS both failed. The state lives in `tier_state` and
what a decision emits in `escalation_outbox`, both written in the projection's transaction,
so a decision is taken once and emitted at least once (its ids are deterministic)."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from notifier.contracts.codec import AvroCodec
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
    now: datetime,
) -> Outgoing:
    """Fold `event` into the tier state kept in `table` (by "incident|user"); what to emit
    because of it, stamped `now`."""
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
    return _emit(event, int(level), decisions, settings, now)


def _emit(
    event: Any,
    level: int,
    decisions: list[Escalate | Critical],
    settings: Settings,
    now: datetime,
) -> Outgoing:
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


@dataclass
class Escalations:
    """What the projection needs to take escalation decisions: the settings (the operations
    team) and the codec that encodes what a decision emits. `queued` counts the records put
    in the outbox since the last publish (a transaction rolled back may have put none)."""

    settings: Settings
    codec: AvroCodec
    queued: int = 0


SELECT_STATES = "SELECT key, state FROM tier_state WHERE key = ANY(%s) ORDER BY key FOR UPDATE"
UPSERT_STATES = (
    "INSERT INTO tier_state (key, state) SELECT * FROM unnest(%s::text[], %s::jsonb[]) "
    "ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state"
)
INSERT_OUTBOX = "INSERT INTO escalation_outbox (topic, key, value) VALUES (%s, %s, %s)"


async def fold_escalations(
    conn: AsyncConnection[Any],
    records: Sequence[Record],
    escalations: Escalations,
    now: datetime,
    *,
    bulk: bool = False,
) -> int:
    """Fold the batch's deciding events into `tier_state` and put what the decisions emit in
    `escalation_outbox`, in the caller's transaction (after the batch's incidents were
    folded: a decision needs its incident open). Returns the records put in the outbox.
    `bulk` (a rebuild's many events): new states go in with COPY."""
    deciding = [r for r in records if changes_decisions(r)]
    if not deciding:
        return 0
    facts: list[Any] = deciding  # each has incident_id and user_id (changes_decisions)
    keys = sorted({f"{r.incident_id}|{r.user_id}" for r in facts})
    cursor = await conn.execute(SELECT_STATES, (keys,))
    table: dict[str, Any] = dict(await cursor.fetchall())
    before = dict(table)
    cursor = await conn.execute(
        "SELECT incident_id, status FROM incident WHERE incident_id = ANY(%s)",
        (sorted({r.incident_id for r in facts}),),
    )
    statuses: dict[str, str] = dict(await cursor.fetchall())
    out: Outgoing = []
    for event in deciding:
        out += escalate(event, table, lambda i: statuses.get(i, "open"), escalations.settings, now)
    changed = [k for k, v in table.items() if before.get(k) is not v]
    if bulk:
        fresh = [k for k in changed if k not in before]
        changed = [k for k in changed if k in before]
        async with (
            conn.cursor() as cur,
            cur.copy("COPY tier_state (key, state) FROM STDIN") as copy,
        ):
            for key in fresh:
                await copy.write_row((key, Jsonb(table[key])))
    if changed:
        await conn.execute(UPSERT_STATES, (changed, [Jsonb(table[k]) for k in changed]))
    if out:
        async with conn.cursor() as cur:
            await cur.executemany(
                INSERT_OUTBOX,
                [(t, k.encode(), escalations.codec.encode(r)) for t, k, r in out],
            )
    escalations.queued += len(out)
    return len(out)
