"""What the dispatcher decides for incident events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    EscalateTier,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    NotificationKind,
    NotificationQueued,
    Priority,
    QuietHours,
    SendCommand,
    Tier,
    UserProfile,
    UserUnreachable,
)
from notifier.domain.dispatch import (
    PRIORITY_RANK,
    IncidentMemory,
    dispatch_alert,
    dispatch_escalation,
    dispatch_notice,
    remember,
    with_remembered_details,
)

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def user(user_id: str, *channels: Channel, phone: str | None = "+14155550101") -> UserProfile:
    return UserProfile(
        user_id=user_id,
        name=user_id,
        updated_at=NOW,
        email=f"{user_id}@example.com",
        phone=phone,
        push_tokens=["t"],
        preferences=[ChannelPreference(c, True, i) for i, c in enumerate(channels)],
    )


def opened(*users: str, **kw: object) -> IncidentOpened:
    base: dict[str, object] = {
        "event_id": "e1",
        "occurred_at": NOW,
        "incident_id": "inc-1",
        "title": "db down",
        "priority": Priority.CRITICAL,
        "escalation_level": 1,
        "user_ids": list(users),
    }
    base.update(kw)
    return IncidentOpened(**base)  # type: ignore[arg-type]


E, S, P, V = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.VOICE


def test_primary_channels_all_at_once_and_queued_events() -> None:
    profiles = {"a": user("a", E, P, S, V)}
    out = dispatch_alert(opened("a"), profiles, NOW)
    assert {c.channel for c in out.commands} == {E, P}
    assert all(c.tier is Tier.PRIMARY and c.attempt == 1 for c in out.commands)
    queued = [e for e in out.events if isinstance(e, NotificationQueued)]
    assert [q.notification_id for q in queued] == [c.notification_id for c in out.commands]


def test_user_without_primary_starts_at_secondary_and_unreachable_is_said() -> None:
    profiles = {"a": user("a", S, V), "b": user("b", S, phone=None)}
    out = dispatch_alert(opened("a", "b", "ghost"), profiles, NOW)
    assert [(c.user_id, c.channel) for c in out.commands] == [("a", S)]
    unreachable = {e.user_id: e.reason for e in out.events if isinstance(e, UserUnreachable)}
    assert set(unreachable) == {"b", "ghost"}
    assert "sms: no phone number" in unreachable["b"]
    assert "no user profile" in unreachable["ghost"]


def test_skip_tiers_and_channel_override() -> None:
    profiles = {"a": user("a", E, P, S, V)}
    every = dispatch_alert(opened("a", skip_tiers=True), profiles, NOW)
    assert {c.channel for c in every.commands} == {E, P, S, V}
    only_voice = dispatch_alert(opened("a", channels=[V]), profiles, NOW)
    assert [c.channel for c in only_voice.commands] == [V]


def test_same_event_twice_gives_the_same_ids() -> None:
    profiles = {"a": user("a", E, P)}
    first = dispatch_alert(opened("a"), profiles, NOW)
    again = dispatch_alert(opened("a"), profiles, NOW)
    assert [c.notification_id for c in first.commands] == [
        c.notification_id for c in again.commands
    ]
    assert first.events == again.events


def test_tier_escalation_sends_only_that_tier() -> None:
    profiles = {"a": user("a", E, P, S, V)}
    out = dispatch_alert(opened("a"), profiles, NOW, tier=Tier.SECONDARY, user_ids=["a"])
    assert [c.channel for c in out.commands] == [S]


def test_notices_go_to_notified_users_on_primary_channels_only() -> None:
    profiles = {"a": user("a", E, S), "b": user("b", E)}
    memory = IncidentMemory()
    alert = dispatch_alert(opened("a"), profiles, NOW)
    memory = remember(memory, opened("a"), alert)
    ack = IncidentAcknowledged(event_id="e2", occurred_at=NOW, incident_id="inc-1", by_user_id="a")
    notice = dispatch_notice(ack, memory, profiles, NOW)
    assert [(c.user_id, c.channel, c.kind) for c in notice.commands] == [
        ("a", E, NotificationKind.ACKNOWLEDGED_NOTICE)
    ]
    assert notice.commands[0].notification_id != alert.commands[0].notification_id
    assert "acknowledged by a" in notice.commands[0].body
    memory = remember(memory, ack, notice)
    assert memory.status == "acknowledged"
    resolved = IncidentResolved(event_id="e3", occurred_at=NOW, incident_id="inc-1")
    assert remember(memory, resolved, notice).status == "resolved"


def test_commands_carry_priority_and_text() -> None:
    out = dispatch_alert(opened("a", url="https://i/1"), {"a": user("a", S)}, NOW)
    command: SendCommand = out.commands[0]
    assert command.priority is Priority.CRITICAL
    assert command.body.startswith("[CRITICAL] db down") and len(command.body) <= 160
    assert IncidentMemory.from_json(
        IncidentMemory(title="t", levels={"1": ["a"]}).to_json()
    ).notified_users() == ["a"]


def test_escalation_sends_the_next_usable_tier_once_and_never_after_an_ack() -> None:
    from notifier.contracts.records import EscalateTier
    from notifier.domain.dispatch import dispatch_escalation

    profile = user("a", E, V)  # no SMS preference: the secondary tier is empty
    memory = remember(
        IncidentMemory(), opened("a"), dispatch_alert(opened("a"), {"a": profile}, NOW)
    )
    command = EscalateTier(
        command_id="c1",
        occurred_at=NOW,
        incident_id="inc-1",
        user_id="a",
        escalation_level=1,
        tier=Tier.SECONDARY,
        reason="primary failed",
    )
    out = dispatch_escalation(command, memory, profile, NOW)
    assert [(c.channel, c.tier) for c in out.commands] == [(V, Tier.FALLBACK)]
    memory.escalations.append("a|1|SECONDARY")
    assert dispatch_escalation(command, memory, profile, NOW).commands == []  # replayed
    memory.escalations.clear()
    memory.status = "acknowledged"
    assert dispatch_escalation(command, memory, profile, NOW).commands == []


@pytest.mark.parametrize(
    "memory",
    [
        IncidentMemory(),
        IncidentMemory(status="acknowledged", levels={"1": ["alice"]}),
        IncidentMemory(status="resolved", escalations=["alice|1|SECONDARY"]),
    ],
)
def test_the_status_read_alone_is_the_status_of_the_whole_memory(memory: IncidentMemory) -> None:
    stored = memory.to_json()
    assert IncidentMemory.status_of(stored) == IncidentMemory.from_json(stored).status
    assert IncidentMemory.status_of(None) == IncidentMemory.from_json(None).status == "open"


TRIGGERED = datetime(2026, 11, 25, 2, 55, tzinfo=UTC)
DETAILS: dict[str, object] = {
    "service": "checkout-api",
    "team_name": "Payments",
    "alert_count": 3,
    "triggered_at": TRIGGERED,
    "dashboard_url": "https://grafana.example.com/d/checkout",
}


def _details(command: SendCommand) -> dict[str, object]:
    return {name: getattr(command, name) for name in DETAILS}


def test_the_incident_details_ride_on_every_command_and_in_its_text() -> None:
    out = dispatch_alert(opened("a", **DETAILS), {"a": user("a", E, P)}, NOW)
    assert out.commands
    for command in out.commands:
        assert _details(command) == DETAILS
        assert "Team: Payments" in command.body and "2026-11-25 02:55 UTC" in command.body


def test_escalations_repeats_resends_and_notices_show_the_remembered_details() -> None:
    profiles = {"a": user("a", E, S)}
    first = dispatch_alert(opened("a", **DETAILS), profiles, NOW)
    memory = remember(IncidentMemory(), opened("a", **DETAILS), first)
    memory = IncidentMemory.from_json(memory.to_json())  # as stored in the incident table
    bare = IncidentEscalated(
        event_id="e2",
        occurred_at=NOW,
        incident_id="inc-1",
        title="db down",
        priority=Priority.CRITICAL,
        escalation_level=2,
        user_ids=["a"],
        alert_count=5,  # a detail the escalation does tell replaces the remembered one
    )
    level2 = dispatch_alert(with_remembered_details(bare, memory), profiles, NOW)
    assert [_details(c) for c in level2.commands] == [{**DETAILS, "alert_count": 5}]
    memory = remember(memory, bare, level2)
    assert memory.alert_count == 5 and memory.team_name == "Payments"
    tier = dispatch_escalation(
        EscalateTier("c1", NOW, "inc-1", "a", 2, Tier.SECONDARY, "primary failed"),
        memory,
        profiles["a"],
        NOW,
    )
    assert [_details(c) for c in tier.commands] == [{**DETAILS, "alert_count": 5}]
    assert "2026-11-25 02:55 UTC" in tier.commands[0].body
    notice = dispatch_notice(
        IncidentResolved("e3", NOW, "inc-1", by_user_id="a"), memory, profiles, NOW
    )
    assert notice.commands[0].dashboard_url == DETAILS["dashboard_url"]


def test_a_memory_stored_before_the_details_reads_without_them() -> None:
    memory = IncidentMemory.from_json({"title": "db down", "priority": "LOW", "status": "open"})
    assert (memory.service, memory.alert_count, memory.triggered_at) == (None, None, None)


def test_info_ranks_below_low() -> None:
    ranked = sorted(Priority, key=lambda p: PRIORITY_RANK[p])
    assert ranked == [
        Priority.CRITICAL,
        Priority.HIGH,
        Priority.MEDIUM,
        Priority.LOW,
        Priority.INFO,
    ]


# --- quiet hours ----------------------------------------------------------------------------

# 22:00-07:00 in Berlin; NOW (03:00 UTC) is 04:00 there, the window ends at 06:00 UTC
QUIET_END = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def quiet_user(user_id: str, *channels: Channel, channel: Channel | None = None) -> UserProfile:
    return replace(
        user(user_id, *channels),
        time_zone="Europe/Berlin",
        quiet_hours=QuietHours("22:00", "07:00", channel),
    )


def test_quiet_hours_hold_alerts_below_critical_until_they_end() -> None:
    profiles = {"a": quiet_user("a", E, P, S), "b": user("b", E, P)}
    out = dispatch_alert(opened("a", "b", priority=Priority.HIGH), profiles, NOW)
    held = {c.channel: c.not_before for c in out.commands if c.user_id == "a"}
    assert held == {E: QUIET_END, P: QUIET_END}
    assert all(c.not_before is None for c in out.commands if c.user_id == "b")
    queued = {q.user_id: q for q in out.events if isinstance(q, NotificationQueued)}
    assert queued["a"].held_until == QUIET_END
    assert queued["a"].held_reason == "quiet hours 22:00-07:00 Europe/Berlin"
    assert queued["b"].held_until is None and queued["b"].held_reason is None


def test_critical_goes_through_quiet_hours() -> None:
    out = dispatch_alert(opened("a"), {"a": quiet_user("a", E, P)}, NOW)
    assert {c.channel for c in out.commands} == {E, P}
    assert all(c.not_before is None for c in out.commands)


def test_the_quiet_hours_channel_alone_alerts_at_once() -> None:
    profiles = {"a": quiet_user("a", E, P, S, channel=S)}
    out = dispatch_alert(opened("a", priority=Priority.HIGH), profiles, NOW)
    assert [(c.channel, c.tier, c.not_before) for c in out.commands] == [(S, Tier.SECONDARY, None)]
    (queued,) = [q for q in out.events if isinstance(q, NotificationQueued)]
    assert queued.held_until is None
    assert queued.held_reason == "quiet hours 22:00-07:00 Europe/Berlin: sent on SMS instead"


@pytest.mark.parametrize(
    ("profile", "incident_channels"),
    [
        (quiet_user("a", E, P, S, channel=V), None),  # voice not in the preferences
        (replace(quiet_user("a", E, P, S, channel=S), phone=None), None),  # no phone
        (quiet_user("a", E, P, S, channel=S), [E, P]),  # not allowed by the incident
    ],
)
def test_a_quiet_hours_channel_that_cannot_be_used_holds_instead(
    profile: UserProfile, incident_channels: list[Channel] | None
) -> None:
    event = opened("a", priority=Priority.HIGH, channels=incident_channels)
    out = dispatch_alert(event, {"a": profile}, NOW)
    assert {c.channel for c in out.commands} == {E, P}
    assert all(c.not_before == QUIET_END for c in out.commands)


def test_notices_wait_for_quiet_hours_too() -> None:
    memory = IncidentMemory(title="db down", priority="MEDIUM", levels={"1": ["a"]})
    ack = IncidentAcknowledged(event_id="e2", occurred_at=NOW, incident_id="inc-1", by_user_id="b")
    out = dispatch_notice(ack, memory, {"a": quiet_user("a", E, P)}, NOW)
    assert {c.channel for c in out.commands} == {E, P}
    assert all(c.not_before == QUIET_END for c in out.commands)
    redirected = dispatch_notice(ack, memory, {"a": quiet_user("a", E, P, S, channel=S)}, NOW)
    assert [(c.channel, c.not_before) for c in redirected.commands] == [(S, None)]


def test_outside_quiet_hours_nothing_changes() -> None:
    profiles = {"a": quiet_user("a", E, P)}
    midday = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    out = dispatch_alert(opened("a", priority=Priority.LOW), profiles, midday)
    assert dispatch_alert(opened("a", priority=Priority.LOW), {"a": user("a", E, P)}, midday) == (
        out
    )


def test_each_person_reads_the_trigger_time_in_their_own_zone() -> None:
    berlin = replace(user("b", E), time_zone="Europe/Berlin")
    out = dispatch_alert(opened("a", "b", **DETAILS), {"a": user("a", E), "b": berlin}, NOW)
    bodies = {c.user_id: c.body for c in out.commands}
    assert "2026-11-25 02:55 UTC" in bodies["a"]
    assert "2026-11-25 03:55 CET" in bodies["b"]
