"""Deterministic ids: replaying an incident event yields the same notification ids."""

from __future__ import annotations

import uuid

from notifier.contracts.records import Channel, NotificationKind

NAMESPACE = uuid.UUID("6f1c3e0a-8a4e-5d0b-9a57-0b6c1f0d1e2a")


def notification_id(
    incident_id: str,
    level: int,
    user_id: str,
    channel: Channel,
    repeat: int = 0,
    kind: NotificationKind = NotificationKind.ALERT,
) -> str:
    """UUIDv5 of (incident, level, user, channel[, repeat][, kind]); alerts of repeat 0 use
    exactly the four parts DESIGN.md names."""
    parts = [incident_id, str(level), user_id, channel.value]
    if repeat:
        parts.append(f"repeat={repeat}")
    if kind is not NotificationKind.ALERT:
        parts.append(kind.value)
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def command_id(notification: str, attempt: int) -> str:
    """Id of the send command of one attempt."""
    return str(uuid.uuid5(NAMESPACE, f"{notification}|attempt={attempt}"))


def event_id(*parts: object) -> str:
    """Deterministic event id of what a processor derived from its input."""
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))
