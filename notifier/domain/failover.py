"""Provider failover within a channel: which provider an attempt goes to, and what follows a
failed attempt. Pure decisions; the channel sender carries them out.

A channel's providers are tried in their configured order. An attempt uses the provider its
command names, else the first provider whose circuit is not open. After a failure the
providers later in the order are the ones still untried for the notification: while one is
left, a failure that another provider may not share (the circuit refused the send, a
transient failure, a configuration error) is not final and the next attempt goes to the next
provider. Once the last one failed, the backoff schedule decides as it does for a channel
with one provider: a transient failure with attempts left starts over at the first provider
after the schedule's step; anything else is final. A permanent failure (a bad recipient) is
final at once: another provider would refuse the same address.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import Enum

from notifier.contracts.records import FailureCategory


class Wait(Enum):
    """When the next attempt is made."""

    NONE = "none"  # there is none: the failure is final
    NOW = "now"  # at once
    BACKOFF = "backoff"  # after the backoff schedule's step for the failed attempt


@dataclass(frozen=True)
class AfterFailure:
    """What follows a failed attempt."""

    final: bool
    wait: Wait = Wait.NONE
    provider: str | None = None  # of the next attempt; None: the first whose circuit is closed
    failover: bool = False  # the next attempt goes to another provider of the list


FINAL = AfterFailure(final=True)


def choose(providers: Sequence[str], requested: str | None, open_circuits: Collection[str]) -> str:
    """The provider an attempt uses: the requested one if the channel has it, else the first
    whose circuit is not open (the first of all when every circuit is open: it refuses, and
    the refusal fails over like any other)."""
    if requested is not None and requested in providers:
        return requested
    return next((p for p in providers if p not in open_circuits), providers[0])


def after_failure(
    providers: Sequence[str],
    used: str,
    category: FailureCategory,
    circuit_open: bool,
    attempts_left: bool,
) -> AfterFailure:
    """What follows a failed attempt through `used`, one of the channel's `providers`.

    `circuit_open`: the send was refused by the provider's open circuit, not made.
    `attempts_left`: the backoff schedule has a step for the failed attempt.
    """
    if category is FailureCategory.PERMANENT:
        return FINAL
    at = providers.index(used) if used in providers else -1
    later = providers[at + 1 :]
    if later:
        # a refused send cost nothing and a configuration error will not heal by waiting:
        # the next provider at once; a transient failure waits its step if there is one
        now = circuit_open or category is FailureCategory.CONFIGURATION or not attempts_left
        return AfterFailure(
            final=False, wait=Wait.NOW if now else Wait.BACKOFF, provider=later[0], failover=True
        )
    if category is FailureCategory.TRANSIENT and attempts_left:
        return AfterFailure(final=False, wait=Wait.BACKOFF, provider=None)
    return FINAL
