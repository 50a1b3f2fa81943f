"""Tier policy: which channels a user can be reached on, in which tier."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    NotificationKind,
    SlackConnection,
    TeamsConnection,
    Tier,
    UserProfile,
    WebhookAuth,
    WebhookEndpoint,
)
from notifier.domain.ids import notification_id
from notifier.domain.tiers import reachability

ALL = [ChannelPreference(c, True, i) for i, c in enumerate(Channel)]


def profile(**overrides: object) -> UserProfile:
    base: dict[str, object] = {
        "user_id": "u1",
        "name": "U",
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        "email": "u1@example.com",
        "phone": "+14155550101",
        "push_tokens": ["tok-1"],
        "slack": SlackConnection("U01", True),
        "teams": TeamsConnection("https://t/hook", True),
        "webhook": WebhookEndpoint("https://hooks.example.com/u1", WebhookAuth.NONE),
        "preferences": ALL,
    }
    base.update(overrides)
    return UserProfile(**base)  # type: ignore[arg-type]


E, S, P, SL, T, W, V = (
    Channel.EMAIL,
    Channel.SMS,
    Channel.PUSH,
    Channel.SLACK,
    Channel.TEAMS,
    Channel.WEBHOOK,
    Channel.VOICE,
)


@pytest.mark.parametrize(
    ("overrides", "primary", "secondary", "fallback", "skipped"),
    [
        ({}, {E, P, SL, T, W}, {S}, {V}, set()),
        ({"preferences": [ChannelPreference(E, False, 1), *ALL[1:]]}, {P, SL, T, W}, {S}, {V}, {E}),
        ({"phone": None}, {E, P, SL, T, W}, set(), set(), {S, V}),
        ({"phone": "4155550101"}, {E, P, SL, T, W}, set(), set(), {S, V}),
        ({"slack": SlackConnection("U01", False)}, {E, P, T, W}, {S}, {V}, {SL}),
        ({"push_tokens": []}, {E, SL, T, W}, {S}, {V}, {P}),
        ({"teams": None, "webhook": None}, {E, P, SL}, {S}, {V}, {T, W}),
        (
            {"email": None, "slack": None, "push_tokens": [], "teams": None, "webhook": None},
            set(),
            {S},
            {V},
            {E, SL, P, T, W},
        ),
        ({"preferences": [ChannelPreference(S, True, 1)]}, set(), {S}, set(), {E, P, SL, T, W, V}),
    ],
    ids=[
        "all",
        "email-disabled",
        "no-phone",
        "phone-not-e164",
        "slack-inactive",
        "no-push",
        "no-teams-webhook",
        "only-phone",
        "only-sms-preferred",
    ],
)
def test_reachability_table(
    overrides: dict[str, object],
    primary: set[Channel],
    secondary: set[Channel],
    fallback: set[Channel],
    skipped: set[Channel],
) -> None:
    reach = reachability(profile(**overrides))
    assert {p.channel for p in reach.tier(Tier.PRIMARY)} == primary
    assert {p.channel for p in reach.tier(Tier.SECONDARY)} == secondary
    assert {p.channel for p in reach.tier(Tier.FALLBACK)} == fallback
    assert set(reach.skipped) == skipped


def test_override_restricts_channels_and_first_tier_moves_down() -> None:
    reach = reachability(profile(), only=[S, V])
    assert reach.first_tier() is Tier.SECONDARY
    assert reach.next_tier(Tier.SECONDARY) is Tier.FALLBACK
    assert reach.skipped[E] == "not in the incident's channel override"


def test_no_profile_is_unreachable() -> None:
    reach = reachability(None)
    assert reach.points == () and reach.first_tier() is None


def test_notification_ids_are_deterministic_and_distinct() -> None:
    a = notification_id("inc", 1, "u1", E)
    assert a == notification_id("inc", 1, "u1", E)
    assert uuid.UUID(a).version == 5
    others = {
        notification_id("inc", 2, "u1", E),
        notification_id("inc", 1, "u2", E),
        notification_id("inc", 1, "u1", S),
        notification_id("inc", 1, "u1", E, repeat=1),
        notification_id("inc", 1, "u1", E, kind=NotificationKind.RESOLVED_NOTICE),
    }
    assert a not in others and len(others) == 5
