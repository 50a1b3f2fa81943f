"""Closed incidents as read from the incident table's changelog."""

from __future__ import annotations

import pytest

from notifier.settings import Settings
from processors.closed_incidents import ClosedIncidents, status_in_changelog


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (b'{"title": "db", "status": "acknowledged", "levels": {}}', "acknowledged"),
        (b'{"title": "db", "status": "resolved"}', "resolved"),
        (b'{"title": "db", "status": "open"}', "open"),
        (b'{"title": "db"}', "open"),  # no status stored: open
        (None, "open"),  # tombstone
        (b"not json", "open"),
        (b'"a string"', "open"),
    ],
)
def test_the_status_a_changelog_value_records(value: bytes | None, status: str) -> None:
    assert status_in_changelog(value) == status


def test_closed_incidents_follow_closes_reopens_and_tombstones() -> None:
    closed = ClosedIncidents(Settings(), "changelog")
    closed.apply(b"inc-1", b'{"status": "acknowledged"}')
    closed.apply(b'"inc-2"', b'{"status": "resolved"}')  # a JSON-serialized key
    assert (closed.status("inc-1"), closed.status("inc-2")) == ("acknowledged", "resolved")
    closed.apply(b"inc-2", b'{"status": "open"}')  # opened again
    closed.apply(b"inc-1", None)  # deleted
    assert (closed.status("inc-1"), closed.status("inc-2"), len(closed)) == ("open", "open", 0)
