"""Tier policy: which of a user's channels can be used, and in which tier each goes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import phonenumbers

from notifier.contracts.records import Channel, Tier, UserProfile, WebhookAuth

DEFAULT_TIERS: Mapping[Channel, Tier] = {
    Channel.EMAIL: Tier.PRIMARY,
    Channel.SLACK: Tier.PRIMARY,
    Channel.PUSH: Tier.PRIMARY,
    Channel.TEAMS: Tier.PRIMARY,
    Channel.WEBHOOK: Tier.PRIMARY,
    Channel.SMS: Tier.SECONDARY,
    Channel.VOICE: Tier.FALLBACK,
}
TIER_ORDER = (Tier.PRIMARY, Tier.SECONDARY, Tier.FALLBACK)


@dataclass(frozen=True)
class ContactPoint:
    """One channel of one user that can be sent to, with the address to use."""

    channel: Channel
    tier: Tier
    address: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reachability:
    """A user's usable channels in preference order, and why the others are not usable."""

    points: tuple[ContactPoint, ...]
    skipped: Mapping[Channel, str]

    def tier(self, tier: Tier) -> tuple[ContactPoint, ...]:
        """The usable channels of one tier."""
        return tuple(p for p in self.points if p.tier is tier)

    def first_tier(self) -> Tier | None:
        """The first tier that has a usable channel."""
        return next((t for t in TIER_ORDER if self.tier(t)), None)

    def next_tier(self, after: Tier) -> Tier | None:
        """The first tier after `after` that has a usable channel."""
        later = TIER_ORDER[TIER_ORDER.index(after) + 1 :]
        return next((t for t in later if self.tier(t)), None)


def is_e164(phone: str) -> bool:
    """True for a valid phone number written in E.164 (+ and digits)."""
    if not phone.startswith("+"):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return False


def _contact(profile: UserProfile, channel: Channel) -> tuple[str, dict[str, str]] | str:
    """(address, params) for `channel`, or the reason it cannot be used."""
    if channel is Channel.EMAIL:
        return (profile.email, {}) if profile.email else "no email address"
    if channel in (Channel.SMS, Channel.VOICE):
        if not profile.phone:
            return "no phone number"
        return (profile.phone, {}) if is_e164(profile.phone) else "phone is not valid E.164"
    if channel is Channel.PUSH:
        if not profile.push_tokens:
            return "no push token"
        return profile.push_tokens[0], {"tokens": ",".join(profile.push_tokens)}
    if channel is Channel.SLACK:
        if profile.slack is None:
            return "no Slack connection"
        if not profile.slack.active:
            return "Slack connection inactive"
        return profile.slack.slack_user_id, {"team_id": profile.slack.team_id or ""}
    if channel is Channel.TEAMS:
        if profile.teams is None:
            return "no Teams connection"
        if not profile.teams.active:
            return "Teams connection inactive"
        return profile.teams.webhook_url, {}
    hook = profile.webhook
    if hook is None:
        return "no webhook endpoint"
    params = {"method": hook.method, "auth": hook.auth.value}
    if hook.auth is not WebhookAuth.NONE and hook.secret_ref:
        params["secret_ref"] = hook.secret_ref
    if hook.api_key_header:
        params["api_key_header"] = hook.api_key_header
    if hook.signing_secret_ref:
        params["signing_secret_ref"] = hook.signing_secret_ref
    return hook.url, params


# iterating an Enum class is slow (a list built per call): reachability runs per user
ALL_CHANNELS = tuple(Channel)


def reachability(
    profile: UserProfile | None,
    *,
    tiers: Mapping[Channel, Tier] = DEFAULT_TIERS,
    only: Iterable[Channel] | None = None,
) -> Reachability:
    """Which channels of `profile` can be used: enabled, with the contact they need, and in
    the override list when there is one; in the user's preference order."""
    if profile is None:
        return Reachability((), {c: "no user profile" for c in Channel})
    allowed = set(only) if only is not None else ALL_CHANNELS
    points: list[ContactPoint] = []
    skipped: dict[Channel, str] = {}
    prefs = sorted(profile.preferences, key=lambda p: p.order)
    listed = {p.channel for p in prefs}
    for pref in prefs:
        if pref.channel not in allowed:
            skipped[pref.channel] = "not in the incident's channel override"
        elif not pref.enabled:
            skipped[pref.channel] = "disabled by the user"
        elif pref.channel not in tiers:
            skipped[pref.channel] = "in no tier"
        else:
            contact = _contact(profile, pref.channel)
            if isinstance(contact, str):
                skipped[pref.channel] = contact
            else:
                points.append(ContactPoint(pref.channel, tiers[pref.channel], *contact))
    for channel in ALL_CHANNELS:
        if channel not in listed:
            skipped.setdefault(channel, "not in the user's preferences")
    return Reachability(tuple(points), skipped)


def unreachable_reason(reach: Reachability) -> str:
    """Why a user with no usable channel cannot be reached, in one line."""
    return "; ".join(
        f"{c.value.lower()}: {why}"
        for c, why in sorted(reach.skipped.items(), key=lambda kv: kv[0].value)
    )
