"""The escalation agent passes record types by undecoded: never one that could change a
decision."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from notifier.contracts.records import (
    TOP_LEVEL_RECORDS,
    CallbackStatus,
    NotificationKind,
    Record,
)
from processors.escalation import changes_decisions, may_change_decisions
from tests.samples import sample


def variants(cls: type[Record]) -> list[Any]:
    """A sample of `cls` with each field that `changes_decisions` looks at turned every way."""
    base: Any = sample(cls)
    found = [base]
    names = {f.name for f in dataclasses.fields(base)}
    if "kind" in names:
        found += [dataclasses.replace(base, kind=k) for k in NotificationKind]
    if "final" in names:
        found += [dataclasses.replace(base, final=f) for f in (True, False)]
    if "status" in names and "user_id" in names:
        found += [dataclasses.replace(base, status=s, user_id="u") for s in CallbackStatus]
    return found


@pytest.mark.parametrize("cls", TOP_LEVEL_RECORDS, ids=lambda c: c.__name__)
def test_a_type_passed_by_undecoded_never_changes_a_decision(cls: type[Record]) -> None:
    decides = any(changes_decisions(v) for v in variants(cls))
    if decides:
        assert may_change_decisions(cls.AVRO_NAME)
    else:
        assert not may_change_decisions(cls.AVRO_NAME), f"{cls.__name__} is decoded for nothing"


def test_the_self_alert_names_the_notifier_as_its_service() -> None:
    from notifier.contracts.records import Channel, DeliveryFailed, IncidentOpened
    from notifier.domain.escalation import Critical
    from notifier.settings import Settings
    from processors.escalation import _emit

    failed = sample(DeliveryFailed, incident_id="inc-9", user_id="carol")
    out = _emit(
        failed, 1, [Critical((Channel.EMAIL, Channel.SMS))], Settings(ops_user_ids=("ops",))
    )
    [opened] = [record for topic, _, record in out if topic == "incidents"]
    assert isinstance(opened, IncidentOpened)
    assert opened.service == "notifier" and opened.triggered_at == opened.occurred_at
