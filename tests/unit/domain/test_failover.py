"""The failover decisions, as the table in docs/FAILOVER.md gives them."""

from __future__ import annotations

import pytest

from notifier.contracts.records import FailureCategory
from notifier.domain.failover import AfterFailure, Wait, after_failure, choose

T, P, C = FailureCategory.TRANSIENT, FailureCategory.PERMANENT, FailureCategory.CONFIGURATION
TWO = ("smtp", "sendgrid")
THREE = ("a", "b", "c")
FINAL = AfterFailure(final=True)


def over(provider: str, wait: Wait) -> AfterFailure:
    return AfterFailure(final=False, wait=wait, provider=provider, failover=True)


AGAIN = AfterFailure(final=False, wait=Wait.BACKOFF, provider=None)

# providers, used, category, circuit open, attempts left -> what follows
TABLE = [
    # a bad recipient is final on any provider
    (TWO, "smtp", P, False, True, FINAL),
    (TWO, "sendgrid", P, False, True, FINAL),
    # another provider is left: fail over
    (TWO, "smtp", T, True, True, over("sendgrid", Wait.NOW)),  # refused by the circuit
    (TWO, "smtp", C, False, True, over("sendgrid", Wait.NOW)),  # credentials, not waiting
    (TWO, "smtp", T, False, True, over("sendgrid", Wait.BACKOFF)),  # transient: its step
    (TWO, "smtp", T, False, False, over("sendgrid", Wait.NOW)),  # schedule spent: at once
    (TWO, "smtp", C, False, False, over("sendgrid", Wait.NOW)),
    (TWO, "smtp", T, True, False, over("sendgrid", Wait.NOW)),
    (THREE, "b", T, False, True, over("c", Wait.BACKOFF)),  # the next one after the used one
    (THREE, "a", C, False, True, over("b", Wait.NOW)),
    # every provider failed: the backoff schedule decides
    (TWO, "sendgrid", T, False, True, AGAIN),  # the first provider again after the step
    (TWO, "sendgrid", T, True, True, AGAIN),
    (TWO, "sendgrid", T, False, False, FINAL),
    (TWO, "sendgrid", C, False, True, FINAL),
    (THREE, "c", T, False, True, AGAIN),
    # one provider: what the schedule alone always decided
    (("fcm",), "fcm", T, False, True, AGAIN),
    (("fcm",), "fcm", T, True, True, AGAIN),
    (("fcm",), "fcm", T, False, False, FINAL),
    (("fcm",), "fcm", C, False, True, FINAL),
    (("fcm",), "fcm", P, False, True, FINAL),
]


@pytest.mark.parametrize(
    ("providers", "used", "category", "circuit_open", "attempts_left", "expected"), TABLE
)
def test_after_failure(
    providers: tuple[str, ...],
    used: str,
    category: FailureCategory,
    circuit_open: bool,
    attempts_left: bool,
    expected: AfterFailure,
) -> None:
    assert after_failure(providers, used, category, circuit_open, attempts_left) == expected


@pytest.mark.parametrize(
    ("providers", "requested", "open_circuits", "expected"),
    [
        (TWO, None, set(), "smtp"),  # the first
        (TWO, None, {"smtp"}, "sendgrid"),  # the first whose circuit is not open
        (TWO, None, {"smtp", "sendgrid"}, "smtp"),  # all open: the first refuses
        (TWO, "sendgrid", set(), "sendgrid"),  # the command names it
        (TWO, "sendgrid", {"sendgrid"}, "sendgrid"),  # named: used even when open
        (TWO, "mailgun", {"smtp"}, "sendgrid"),  # a name the channel lacks is ignored
        (("fcm",), None, {"fcm"}, "fcm"),
    ],
)
def test_choose(
    providers: tuple[str, ...], requested: str | None, open_circuits: set[str], expected: str
) -> None:
    assert choose(providers, requested, open_circuits) == expected


def test_a_notification_tries_each_provider_then_starts_over_until_the_schedule_ends() -> None:
    """Two providers, a transient outage of both: the default schedule has 4 steps (5
    attempts); the fifth, on the first provider, still fails over to the second."""
    delays = 4
    used, attempt, path = choose(TWO, None, ()), 1, []
    while True:
        path.append(used)
        after = after_failure(TWO, used, T, False, attempt <= delays)
        if after.final:
            break
        used, attempt = choose(TWO, after.provider, ()), attempt + 1
    assert path == ["smtp", "sendgrid", "smtp", "sendgrid", "smtp", "sendgrid"]
    assert attempt == delays + 2
