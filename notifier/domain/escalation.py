"""Tier escalation and the critical self-alert: pure decisions over the delivery events of
one (incident, user, level).

Primary tier failed: two or more primary channels finally failed, or all of the user's
primary channels when they have fewer than two (the seeds never escalated a user with one
primary channel). Secondary tier failed: all its channels finally failed. A channel also
fails when its provider reports it undelivered (a bounce), or, for alerts that need a
delivery receipt, when no receipt came before the deadline. Email and SMS both finally
failed: nobody may have been told, so the operations team is paged, except about the
notifier's own alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from notifier.contracts.records import (
    CallbackStatus,
    Channel,
    DeliveryCancelled,
    DeliveryDelivered,
    DeliveryFailed,
    DeliverySent,
    NotificationKind,
    NotificationQueued,
    ProviderCallback,
    ReceiptDue,
    Record,
    Tier,
)

SELF_ALERT_PREFIX = "selfalert-"
NEXT_TIER = {Tier.PRIMARY: Tier.SECONDARY, Tier.SECONDARY: Tier.FALLBACK}
PENDING, SENT, DELIVERED, FAILED, CANCELLED = (
    "pending",
    "sent",
    "delivered",
    "failed",
    "cancelled",
)
UNSETTLED = (PENDING, SENT)  # outcomes a failure or a receipt can still change


@dataclass
class TierState:
    """Each alerted channel's tier and outcome, and what was already decided."""

    channels: dict[str, dict[str, str]] = field(default_factory=dict)  # tier -> ch -> outcome
    escalated_to: list[str] = field(default_factory=list)
    critical: bool = False
    notification_tiers: dict[str, str] = field(default_factory=dict)  # notification -> tier

    def to_json(self) -> dict[str, Any]:
        """JSON-able, for the Faust table."""
        return {
            "channels": self.channels,
            "escalated_to": self.escalated_to,
            "critical": self.critical,
            "notification_tiers": self.notification_tiers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TierState:
        """Back from the table; a missing entry is an empty state."""
        if not data:
            return cls()
        return cls(
            channels={t: dict(c) for t, c in data.get("channels", {}).items()},
            escalated_to=list(data.get("escalated_to", [])),
            critical=bool(data.get("critical", False)),
            notification_tiers=dict(data.get("notification_tiers", {})),
        )


@dataclass(frozen=True)
class Escalate:
    """Send the user's next tier."""

    from_tier: Tier
    to_tier: Tier
    reason: str


@dataclass(frozen=True)
class Critical:
    """Email and SMS both finally failed for the user."""

    failed_channels: tuple[Channel, ...]


def observe(state: TierState, event: Record) -> TierState:
    """Fold one delivery event of an alert into the state (notices are ignored)."""
    if isinstance(event, NotificationQueued):
        if event.kind is NotificationKind.ALERT:
            state.channels.setdefault(event.tier.value, {}).setdefault(event.channel.value, PENDING)
            state.notification_tiers[event.notification_id] = event.tier.value
        return state
    tier = state.notification_tiers.get(getattr(event, "notification_id", ""))
    if tier is None:
        return state
    channel = event.channel.value  # type: ignore[attr-defined]
    if channel not in state.channels.get(tier, {}):
        return state  # not a channel this tier alerted on: a mistaken or forged report
    current = state.channels[tier][channel]
    delivered = isinstance(event, DeliveryDelivered) or (
        isinstance(event, ProviderCallback) and event.status is CallbackStatus.DELIVERED
    )
    failed = (
        (isinstance(event, DeliveryFailed) and event.final)
        or (isinstance(event, ProviderCallback) and event.status is CallbackStatus.FAILED)
        or isinstance(event, ReceiptDue)  # due and not delivered: overdue
    )
    if delivered and current in UNSETTLED:
        state.channels[tier][channel] = DELIVERED
    elif failed and current in UNSETTLED:
        state.channels[tier][channel] = FAILED
    elif isinstance(event, DeliverySent) and current == PENDING:
        state.channels[tier][channel] = SENT
    elif isinstance(event, DeliveryCancelled) and current == PENDING:
        state.channels[tier][channel] = CANCELLED
    return state


def _tier_failed(tier: Tier, outcomes: dict[str, str]) -> bool:
    failed = sum(1 for o in outcomes.values() if o == FAILED)
    if tier is Tier.PRIMARY:
        return failed >= 2 or (0 < len(outcomes) < 2 and failed == len(outcomes))
    return bool(outcomes) and failed == len(outcomes)


def decide(state: TierState, incident_id: str) -> list[Escalate | Critical]:
    """What to do now; each decision is taken once (the caller records it in the state)."""
    out: list[Escalate | Critical] = []
    for tier, to_tier in NEXT_TIER.items():
        outcomes = state.channels.get(tier.value, {})
        if to_tier.value not in state.escalated_to and _tier_failed(tier, outcomes):
            failed = sorted(c.lower() for c, o in outcomes.items() if o == FAILED)
            out.append(
                Escalate(tier, to_tier, f"{tier.value.lower()} tier failed: {', '.join(failed)}")
            )
    failed_everywhere = {
        c for outcomes in state.channels.values() for c, o in outcomes.items() if o == FAILED
    }
    if (
        not state.critical
        and {Channel.EMAIL.value, Channel.SMS.value} <= failed_everywhere
        and not incident_id.startswith(SELF_ALERT_PREFIX)
    ):
        out.append(Critical((Channel.EMAIL, Channel.SMS)))
    return out


def record(state: TierState, decisions: list[Escalate | Critical]) -> TierState:
    """The state after acting on `decisions`."""
    for decision in decisions:
        if isinstance(decision, Escalate):
            state.escalated_to.append(decision.to_tier.value)
        else:
            state.critical = True
    return state
