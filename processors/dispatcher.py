"""The dispatcher: incident events in, notifications out (NotificationQueued + SendCommand)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.records import (
    Channel,
    EscalateTier,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    Record,
    RepeatDue,
    ResendRequested,
)
from notifier.domain.dispatch import (
    Dispatch,
    IncidentMemory,
    dispatch_alert,
    dispatch_escalation,
    dispatch_notice,
    dispatch_repeat,
    dispatch_resend,
    last_tier,
    remember,
    repeat_key,
    schedule_repeats,
    with_remembered_details,
)
from notifier.settings import Settings
from notifier.topics import channel_topic
from processors.directory import UserDirectory
from processors.metrics import notifications_queued

log = logging.getLogger("notifier.dispatcher")

Outgoing = list[tuple[str, str, Record]]


def plan(
    record: Record,
    memory: IncidentMemory,
    directory: UserDirectory,
    now: datetime,
    settings: Settings | None = None,
) -> tuple[Dispatch, IncidentMemory]:
    """What to emit for one incident event, and the incident memory after it."""
    settings = settings or Settings()
    if isinstance(record, IncidentOpened | IncidentEscalated):
        users = {u: directory.get(u) for u in record.user_ids}
        dispatched = dispatch_alert(with_remembered_details(record, memory), users, now)
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
        return _with_repeats(dispatched, memory, directory, now, settings), memory
    elif isinstance(record, RepeatDue):
        dispatched = dispatch_repeat(record, memory, directory.get(record.user_id), now)
        if dispatched.commands:
            memory.escalations.append(repeat_key(record))
        return _with_repeats(dispatched, memory, directory, now, settings), memory
    elif isinstance(record, ResendRequested):
        return dispatch_resend(record, memory, directory.get(record.user_id), now), memory
    else:
        raise TypeError(f"{type(record).__name__} is not an incident event or command")
    memory = remember(memory, record, dispatched)
    return _with_repeats(dispatched, memory, directory, now, settings), memory


def _with_repeats(
    dispatched: Dispatch,
    memory: IncidentMemory,
    directory: UserDirectory,
    now: datetime,
    settings: Settings,
) -> Dispatch:
    """`dispatched` with the repeat timers of alerts that reached a user's last tier."""
    if not dispatched.commands or not settings.repeat_max:
        return dispatched
    users = {c.user_id for c in dispatched.commands}
    last = {u: last_tier(directory.get(u), memory.channels) for u in users}
    repeats = schedule_repeats(
        dispatched.commands,
        last,
        now,
        settings.repeat_priorities,
        settings.repeat_interval_s,
        settings.repeat_max,
    )
    return replace(dispatched, repeats=repeats) if repeats else dispatched


THROTTLED = frozenset({Channel.SMS, Channel.VOICE})  # the channels of the default windows


def outgoing(dispatched: Dispatch, throttled: Collection[Channel] = THROTTLED) -> Outgoing:
    """Events first, then commands: a NotificationQueued precedes its first attempt.
    Commands of the `throttled` channels (those with throttle windows), and commands held
    for the person's quiet hours (not_before set), go to the person's throttle, keyed by
    user, which sends them on to their channel (the held ones bundled, when due)."""
    items: Outgoing = [
        ("delivery.events", e.incident_id, e)  # type: ignore[attr-defined]
        for e in dispatched.events
    ]
    items += [
        ("notify.throttle", c.user_id, c)
        if c.channel in throttled or c.not_before is not None
        else (channel_topic(c.channel), c.incident_id, c)
        for c in dispatched.commands
    ]
    items += [("notify.repeats", r.incident_id, r) for r in dispatched.repeats]
    return items


def log_dispatch(record: Any, dispatched: Dispatch) -> None:
    """One line per incident event with what it caused (and the queued ones counted)."""
    notifications_queued(dispatched.events)
    log.info(
        "dispatched %s: %d notifications",
        type(record).__name__,
        len(dispatched.commands),
        extra={"incident_id": getattr(record, "incident_id", None)},
    )


def utcnow() -> datetime:
    """The dispatcher's clock."""
    return datetime.now(UTC)
