"""Incident and person rows of the read model: the dispatcher's status rule, first and
latest times, the newer profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.contracts.records import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    Priority,
    UserProfile,
)
from notifier.domain.incident_status import (
    IncidentEvent,
    ProfileDeleted,
    apply_incident,
    apply_profile,
)

T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def at(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


def opened(s: int = 0, **kw: Any) -> IncidentOpened:
    fields = {"title": "db down", "priority": Priority.CRITICAL, "escalation_level": 1}
    return IncidentOpened(
        event_id=f"o{s}", occurred_at=at(s), incident_id="i", user_ids=["a"], **{**fields, **kw}
    )


def escalated(s: int) -> IncidentEscalated:
    return IncidentEscalated(
        event_id=f"e{s}",
        occurred_at=at(s),
        incident_id="i",
        title="db down",
        priority=Priority.CRITICAL,
        escalation_level=2,
        user_ids=["b"],
    )


def acked(s: int, by: str = "alice") -> IncidentAcknowledged:
    return IncidentAcknowledged(event_id=f"a{s}", occurred_at=at(s), incident_id="i", by_user_id=by)


def resolved(s: int, by: str = "bob") -> IncidentResolved:
    return IncidentResolved(event_id=f"r{s}", occurred_at=at(s), incident_id="i", by_user_id=by)


def fold(*events: IncidentEvent) -> Any:
    row = None
    for event in events:
        row = apply_incident(row, event)
    return row


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([opened()], "open"),
        ([opened(), acked(5)], "acknowledged"),
        ([opened(), acked(5), escalated(9)], "acknowledged"),  # escalating does not reopen
        ([opened(), acked(5), resolved(9)], "resolved"),
        ([opened(), resolved(9), acked(12)], "resolved"),  # a late ack changes nothing
        ([opened(), resolved(9), opened(20)], "open"),  # opened again
        ([acked(5)], "acknowledged"),  # the ack came first: a row all the same
    ],
)
def test_status_follows_the_dispatchers_rule(events: list[IncidentEvent], status: str) -> None:
    assert fold(*events).status == status


def test_times_and_who() -> None:
    row = fold(opened(), acked(5, "alice"), acked(7, "carol"), escalated(8), resolved(9, "bob"))
    assert (row.opened_at, row.acknowledged_at, row.acknowledged_by) == (at(0), at(5), "alice")
    assert (row.resolved_at, row.resolved_by, row.last_event_at) == (at(9), "bob", at(9))
    assert (row.escalation_level, row.priority, row.title) == (2, "CRITICAL", "db down")
    again = fold(opened(), resolved(9), opened(20), resolved(30, "dan"))
    assert (again.resolved_at, again.resolved_by) == (at(30), "dan")  # the latest resolution


def profile(s: int, name: str) -> UserProfile:
    return UserProfile(user_id="u1", name=name, updated_at=at(s), email="u1@example.com")


def test_the_newer_profile_wins_and_a_deletion_leaves_nothing() -> None:
    newer = apply_profile(None, profile(10, "Ann"))
    assert newer is not None
    assert newer.email == "u1@example.com" and newer.time_zone == "UTC"
    older = apply_profile(newer, profile(5, "Old"))  # replayed older one
    renamed = apply_profile(newer, profile(20, "Ann B."))
    assert older is not None and older.name == "Ann"
    assert renamed is not None and renamed.name == "Ann B."
    assert apply_profile(newer, ProfileDeleted("u1")) is None


def test_details_keep_what_an_earlier_event_said() -> None:
    first = opened(
        team_name="Payments",
        alert_count=2,
        triggered_at=at(-60),
        dashboard_url="https://grafana.example.com/d/1",
        priority=Priority.INFO,
    )
    row = fold(first, escalated(8))  # the escalation names none of them
    assert (row.team_name, row.alert_count, row.triggered_at) == ("Payments", 2, at(-60))
    assert (row.dashboard_url, row.priority) == ("https://grafana.example.com/d/1", "CRITICAL")
    later = fold(first, opened(9, alert_count=0, triggered_at=at(-30), team_name="DBA"))
    assert (later.team_name, later.alert_count, later.triggered_at) == ("DBA", 0, at(-60))
