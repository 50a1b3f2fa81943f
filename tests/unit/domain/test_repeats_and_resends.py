"""Repeat-until-acknowledged and operator resends: pure decisions of the dispatcher."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from notifier.contracts.records import (
    Channel,
    NotificationKind,
    Priority,
    RepeatDue,
    ResendRequested,
    SendCommand,
    Tier,
    UserUnreachable,
)
from notifier.domain import ids
from notifier.domain.dispatch import (
    IncidentMemory,
    ResendRefusedError,
    dispatch_alert,
    dispatch_repeat,
    dispatch_resend,
    last_tier,
    remember,
    repeat_key,
    schedule_repeats,
)
from tests.unit.domain.test_dispatch import NOW, opened, user

S, V, E = Channel.SMS, Channel.VOICE, Channel.EMAIL
PAGER = user("pager", S, V)


def voice_command(priority: Priority = Priority.CRITICAL, repeat: int = 0) -> SendCommand:
    event = opened("pager", priority=priority)
    command = dispatch_alert(event, {"pager": PAGER}, NOW, tier=Tier.FALLBACK, repeat=repeat)
    return command.commands[0]


@pytest.mark.parametrize(
    ("command", "last", "expected"),
    [
        (voice_command(), Tier.FALLBACK, [1]),  # reached the last tier: first repeat
        (voice_command(repeat=1), Tier.FALLBACK, [2]),
        (voice_command(repeat=3), Tier.FALLBACK, []),  # most repeats reached
        (voice_command(Priority.HIGH), Tier.FALLBACK, []),  # not a repeating priority
        (voice_command(Priority.INFO), Tier.FALLBACK, []),  # INFO never repeats by default
        (voice_command(), None, []),  # not the user's last tier
        (replace(voice_command(), kind=NotificationKind.ACKNOWLEDGED_NOTICE), Tier.FALLBACK, []),
    ],
    ids=["first", "next", "most", "priority", "info", "not-last-tier", "notice"],
)
def test_when_a_repeat_is_scheduled(
    command: SendCommand, last: Tier | None, expected: list[int]
) -> None:
    due = schedule_repeats([command], {"pager": last}, NOW, ("CRITICAL",), 300, 3)
    assert [d.repeat for d in due] == expected
    for d in due:
        assert d.due_at == NOW + timedelta(seconds=300) and d.tier is Tier.FALLBACK


def test_the_last_tier_is_the_users_last_usable_one() -> None:
    assert last_tier(PAGER) is Tier.FALLBACK
    assert last_tier(user("mailer", E)) is Tier.PRIMARY
    assert last_tier(PAGER, channels=["SMS"]) is Tier.SECONDARY  # the incident's override


def due(repeat: int) -> RepeatDue:
    return RepeatDue(
        event_id=f"r{repeat}",
        occurred_at=NOW,
        due_at=NOW,
        incident_id="inc-1",
        user_id="pager",
        escalation_level=1,
        tier=Tier.FALLBACK,
        repeat=repeat,
    )


def test_a_repeat_is_a_new_notification_and_never_sent_twice_or_after_an_ack() -> None:
    memory = remember(IncidentMemory(), opened("pager"), dispatch_alert(opened("pager"), {}, NOW))
    first = dispatch_repeat(due(1), memory, PAGER, NOW)
    assert [(c.channel, c.repeat) for c in first.commands] == [(V, 1)]
    assert first.commands[0].notification_id == ids.notification_id("inc-1", 1, "pager", V, 1)
    assert first.commands[0].notification_id != ids.notification_id("inc-1", 1, "pager", V)
    memory.escalations.append(repeat_key(due(1)))
    assert dispatch_repeat(due(1), memory, PAGER, NOW).commands == []  # a replayed timer
    memory.status = "acknowledged"
    assert dispatch_repeat(due(2), memory, PAGER, NOW).commands == []


def request(**kw: object) -> ResendRequested:
    base: dict[str, object] = {
        "event_id": "rs",
        "occurred_at": NOW,
        "incident_id": "inc-1",
        "notification_id": ids.notification_id("inc-1", 1, "pager", S),
        "user_id": "pager",
        "channel": S,
        "escalation_level": 1,
        "kind": NotificationKind.ALERT,
        "attempt": 4,
        "requested_by": "ops",
    }
    base.update(kw)
    return ResendRequested(**base)  # type: ignore[arg-type]


def test_a_resend_is_the_next_attempt_of_the_same_notification() -> None:
    memory = IncidentMemory(title="db down", priority="CRITICAL", status="resolved")
    out = dispatch_resend(request(), memory, PAGER, NOW)
    [command] = out.commands
    assert command.notification_id == request().notification_id
    assert (command.attempt, command.requested_by, command.channel) == (4, "ops", S)
    assert command.command_id == ids.command_id(command.notification_id, 4)
    assert out.events == []  # the row exists: nothing queued again


def test_a_resend_refuses_a_foreign_id_and_says_when_the_channel_is_gone() -> None:
    memory = IncidentMemory(title="db down")
    with pytest.raises(ResendRefusedError):
        dispatch_resend(request(notification_id="not-ours"), memory, PAGER, NOW)
    gone = dispatch_resend(request(), memory, user("pager", E), NOW)
    assert gone.commands == [] and isinstance(gone.events[0], UserUnreachable)
