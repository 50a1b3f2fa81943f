"""Deterministic ids: the fast UUIDv5 is the standard one, and ids are stable."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notifier.contracts.records import Channel, NotificationKind
from notifier.domain import ids


@pytest.mark.parametrize(
    "name",
    ["", "a", "inc-1|1|alice|EMAIL", "ünïcødé|2|böb|SMS", "x" * 500, "n|attempt=3"],
)
def test_uuid5_str_is_the_standard_uuid5(name: str) -> None:
    assert ids.uuid5_str(name) == str(uuid.uuid5(ids.NAMESPACE, name))


@pytest.mark.parametrize(
    ("args", "expected_name"),
    [
        (("inc-1", 1, "alice", Channel.EMAIL), "inc-1|1|alice|EMAIL"),
        (("inc-1", 2, "bob", Channel.SMS, 3), "inc-1|2|bob|SMS|repeat=3"),
        (
            ("inc-1", 1, "bob", Channel.SLACK, 0, NotificationKind.RESOLVED_NOTICE),
            "inc-1|1|bob|SLACK|RESOLVED_NOTICE",
        ),
    ],
)
def test_notification_ids_are_uuid5_of_their_parts(
    args: tuple[Any, ...], expected_name: str
) -> None:
    assert ids.notification_id(*args) == str(uuid.uuid5(ids.NAMESPACE, expected_name))


def test_command_and_event_ids() -> None:
    nid = ids.notification_id("inc-1", 1, "alice", Channel.EMAIL)
    assert ids.command_id(nid, 2) == str(uuid.uuid5(ids.NAMESPACE, f"{nid}|attempt=2"))
    assert ids.event_id("c", "sent", 1) == str(uuid.uuid5(ids.NAMESPACE, "c|sent|1"))
