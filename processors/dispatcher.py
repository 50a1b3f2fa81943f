"""The dispatcher: incident events in, notifications out (NotificationQueued + SendCommand)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.records import (
    EscalateTier,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    Record,
)
from notifier.domain.dispatch import (
    Dispatch,
    IncidentMemory,
    dispatch_alert,
    dispatch_escalation,
    dispatch_notice,
    remember,
)
from notifier.topics import channel_topic
from processors.directory import UserDirectory

log = logging.getLogger("notifier.dispatcher")

Outgoing = list[tuple[str, str, Record]]


def plan(
    record: Record, memory: IncidentMemory, directory: UserDirectory, now: datetime
) -> tuple[Dispatch, IncidentMemory]:
    """What to emit for one incident event, and the incident memory after it."""
    if isinstance(record, IncidentOpened | IncidentEscalated):
        users = {u: directory.get(u) for u in record.user_ids}
        dispatched = dispatch_alert(record, users, now)
    elif isinstance(record, IncidentAcknowledged | IncidentResolved):
        if memory.status == "resolved" or (
            isinstance(record, IncidentAcknowledged) and memory.status == "acknowledged"
        ):
            dispatched = Dispatch()  # a repeated acknowledgement tells nobody twice
        else:
            users = {u: directory.get(u) for u in memory.notified_users()}
            dispatched = dispatch_notice(record, memory, users, now)
    elif isinstance(record, EscalateTier):
        dispatched = dispatch_escalation(record, memory, directory.get(record.user_id), now)
        key = f"{record.user_id}|{record.escalation_level}|{record.tier.value}"
        if dispatched.commands and key not in memory.escalations:
            memory.escalations.append(key)
        return dispatched, memory
    else:
        raise TypeError(f"{type(record).__name__} is not an incident event or command")
    return dispatched, remember(memory, record, dispatched)


def outgoing(dispatched: Dispatch) -> Outgoing:
    """Events first, then commands: a NotificationQueued precedes its first attempt."""
    items: Outgoing = [
        ("delivery.events", e.incident_id, e)  # type: ignore[attr-defined]
        for e in dispatched.events
    ]
    items += [(channel_topic(c.channel), c.incident_id, c) for c in dispatched.commands]
    return items


def log_dispatch(record: Any, dispatched: Dispatch) -> None:
    """One line per incident event with what it caused."""
    log.info(
        "dispatched %s: %d notifications",
        type(record).__name__,
        len(dispatched.commands),
        extra={"incident_id": getattr(record, "incident_id", None)},
    )


def utcnow() -> datetime:
    """The dispatcher's clock."""
    return datetime.now(UTC)
