"""The read model's rows of incidents and people, folded from their topics. Pure, and the
same for a live batch and a rebuild (both read each partition in order)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from notifier.contracts.records import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    UserProfile,
)

IncidentEvent = IncidentOpened | IncidentEscalated | IncidentAcknowledged | IncidentResolved
INCIDENT_EVENTS = (IncidentOpened, IncidentEscalated, IncidentAcknowledged, IncidentResolved)


@dataclass(frozen=True)
class IncidentRow:
    """One incident: what it is, how urgent, and where it stands."""

    incident_id: str
    title: str
    status: str  # open | acknowledged | resolved
    last_event_at: datetime
    priority: str | None = None
    service: str | None = None
    url: str | None = None
    escalation_level: int = 1
    opened_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    team_name: str | None = None
    alert_count: int | None = None
    triggered_at: datetime | None = None
    dashboard_url: str | None = None


@dataclass(frozen=True)
class PersonRow:
    """One person who can be paged, as their latest profile says."""

    user_id: str
    name: str
    updated_at: datetime
    email: str | None = None
    phone: str | None = None
    time_zone: str = "UTC"


def _earlier(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new < current else current


def next_status(status: str, event: IncidentEvent) -> str:
    """The dispatcher's rule, in the topic's order: an acknowledgement holds an open
    incident; a resolution closes it; it is opened again only once resolved."""
    if isinstance(event, IncidentOpened | IncidentEscalated):
        return "open" if status == "resolved" else status
    if isinstance(event, IncidentAcknowledged):
        return "acknowledged" if status == "open" else status
    return "resolved"


def apply_incident(row: IncidentRow | None, event: IncidentEvent) -> IncidentRow:
    """`row` after `event`, folded in the topic's order (one incident, one partition)."""
    at = event.occurred_at
    if row is None:
        row = IncidentRow(event.incident_id, event.incident_id, "open", at)
    status = next_status(row.status, event)
    row = replace(row, status=status, last_event_at=max(row.last_event_at, at))
    if isinstance(event, IncidentOpened | IncidentEscalated):
        return replace(
            row,
            title=event.title,
            priority=event.priority.value,
            service=event.service or row.service,
            url=event.url or row.url,
            escalation_level=max(row.escalation_level, event.escalation_level),
            opened_at=_earlier(row.opened_at, at),
            # a detail an event leaves out keeps what an earlier one said; the alert count
            # is the latest told, the trigger time the earliest
            team_name=event.team_name or row.team_name,
            alert_count=row.alert_count if event.alert_count is None else event.alert_count,
            triggered_at=row.triggered_at
            if event.triggered_at is None
            else _earlier(row.triggered_at, event.triggered_at),
            dashboard_url=event.dashboard_url or row.dashboard_url,
        )
    if isinstance(event, IncidentAcknowledged):
        if row.acknowledged_at is not None:
            return row  # the first acknowledgement is the one that stopped the pages
        return replace(row, acknowledged_at=at, acknowledged_by=event.by_user_id)
    return replace(row, resolved_at=at, resolved_by=event.by_user_id)


@dataclass(frozen=True)
class ProfileDeleted:
    """A tombstone on the compacted users topic: the person is gone, and so are their
    contact details."""

    user_id: str


def apply_profile(row: PersonRow | None, profile: UserProfile | ProfileDeleted) -> PersonRow | None:
    """`row` after `profile`: the newer profile wins (a replayed older one changes nothing);
    a deletion leaves no row."""
    if isinstance(profile, ProfileDeleted):
        return None
    if row is not None and profile.updated_at < row.updated_at:
        return row
    return PersonRow(
        profile.user_id,
        profile.name,
        profile.updated_at,
        profile.email,
        profile.phone,
        profile.time_zone,
    )
