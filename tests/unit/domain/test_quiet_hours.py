"""Quiet hours: the window in the person's zone (midnight, DST), CRITICAL, bad settings;
and times as the person reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.contracts.records import Channel, Priority, QuietHours, UserProfile
from notifier.domain.local_time import format_local
from notifier.domain.quiet_hours import (
    Action,
    QuietHoursError,
    check,
    parse_clock,
    quiet_hours,
)

BERLIN, NEW_YORK, KOLKATA = "Europe/Berlin", "America/New_York", "Asia/Kolkata"
NY, IN = NEW_YORK, KOLKATA
H, C, L = Priority.HIGH, Priority.CRITICAL, Priority.LOW
HOLD, SEND = Action.HOLD, Action.SEND


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def person(
    start: str | None, end: str = "07:00", tz: str = BERLIN, channel: Channel | None = None
) -> UserProfile:
    quiet = QuietHours(start, end, channel) if start is not None else None
    return UserProfile(
        user_id="u1", name="u1", updated_at=utc("2026-01-01T00:00"), time_zone=tz, quiet_hours=quiet
    )


# (case, profile, priority, now (UTC), action, until (UTC) or None)
CASES = [
    ("no quiet hours", person(None), H, "2026-01-10T23:00", SEND, None),
    ("no profile", None, H, "2026-01-10T23:00", SEND, None),
    # 22:00-07:00 Berlin in winter (UTC+1): 21:00-06:00 UTC
    ("before the window", person("22:00"), H, "2026-01-10T20:59", SEND, None),
    ("at its start", person("22:00"), H, "2026-01-10T21:00", HOLD, "2026-01-11T06:00"),
    ("before midnight", person("22:00"), H, "2026-01-10T22:30", HOLD, "2026-01-11T06:00"),
    ("after midnight", person("22:00"), L, "2026-01-11T01:00", HOLD, "2026-01-11T06:00"),
    ("a minute before end", person("22:00"), H, "2026-01-11T05:59", HOLD, "2026-01-11T06:00"),
    ("at its end", person("22:00"), H, "2026-01-11T06:00", SEND, None),
    ("midday", person("22:00"), H, "2026-01-11T12:00", SEND, None),
    ("CRITICAL always goes", person("22:00"), C, "2026-01-10T23:00", SEND, None),
    # the same window in summer (UTC+2): 20:00-05:00 UTC
    ("summer", person("22:00"), H, "2026-07-10T20:30", HOLD, "2026-07-11T05:00"),
    ("summer, after", person("22:00"), H, "2026-07-11T05:00", SEND, None),
    # a window within one day
    ("lunch", person("12:00", "13:30"), H, "2026-01-10T11:15", HOLD, "2026-01-10T12:30"),
    ("after lunch", person("12:00", "13:30"), H, "2026-01-10T12:30", SEND, None),
    # Berlin springs forward on 29 March 2026 at 01:00 UTC (02:00 -> 03:00): a night that
    # starts at UTC+1 ends at UTC+2, an hour earlier in UTC
    ("spring night", person("22:00"), H, "2026-03-28T22:00", HOLD, "2026-03-29T05:00"),
    # ... and falls back on 25 October 2026 at 01:00 UTC (03:00 -> 02:00): an hour later
    ("autumn night", person("22:00"), H, "2026-10-24T21:00", HOLD, "2026-10-25T06:00"),
    ("autumn, before", person("22:00"), H, "2026-10-24T19:59", SEND, None),
    # an end inside the skipped hour ends when the clocks jump past it
    ("end in gap", person("22:00", "02:30"), H, "2026-03-28T23:00", HOLD, "2026-03-29T01:00"),
    # an end in the repeated hour ends the first time the clocks show it
    ("end twice", person("22:00", "02:30"), H, "2026-10-24T23:00", HOLD, "2026-10-25T00:30"),
    # other zones: New York (UTC-5 in January), Kolkata (UTC+5:30, no DST)
    ("New York", person("21:00", "06:30", NY), H, "2026-01-11T03:00", HOLD, "2026-01-11T11:30"),
    ("Kolkata", person("23:00", "06:00", IN), H, "2026-01-10T18:00", HOLD, "2026-01-11T00:30"),
    ("Kolkata, day", person("23:00", "06:00", IN), H, "2026-01-10T17:29", SEND, None),
    # quiet hours that cannot be read are ignored: the alert goes out
    ("unknown zone", person("22:00", tz="Mars/Olympus"), H, "2026-01-10T23:00", SEND, None),
    ("bad time", person("25:00"), H, "2026-01-10T23:00", SEND, None),
    ("same start and end", person("07:00"), H, "2026-01-10T23:00", SEND, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "priority", "now", "action", "until"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_rule(
    profile: UserProfile | None, priority: Priority, now: str, action: Action, until: str | None
) -> None:
    decision = quiet_hours(profile, priority, utc(now))
    assert decision.action is action
    assert decision.until == (utc(until) if until else None)


def test_a_held_send_says_why() -> None:
    decision = quiet_hours(person("22:00"), H, utc("2026-01-10T23:00"))
    assert decision.reason == "quiet hours 22:00-07:00 Europe/Berlin"


def test_the_quiet_hours_channel_takes_the_send_instead() -> None:
    decision = quiet_hours(person("22:00", channel=Channel.SMS), H, utc("2026-01-10T23:00"))
    assert decision.action is Action.REDIRECT and decision.channel is Channel.SMS
    assert decision.until == utc("2026-01-11T06:00")


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        (person("22:00", tz="Mars/Olympus"), "'Mars/Olympus' is not an IANA time zone"),
        (person("22:00", tz="../etc/passwd"), "is not an IANA time zone"),
        (person("22:00", tz="Europe"), "'Europe' is not an IANA time zone"),  # a folder
        (person("7:00"), "'7:00' is not a time of day HH:MM"),
        (person("22:00", "24:00"), "'24:00' is not a time of day HH:MM"),
        (person("22:00", "07:60"), "'07:60' is not a time of day HH:MM"),
        (person("07:00"), "start and end at the same time"),
    ],
)
def test_unreadable_quiet_hours_are_named(profile: UserProfile, problem: str) -> None:
    found = check(profile)
    assert found is not None and problem in found
    decision = quiet_hours(profile, H, utc("2026-01-10T23:00"))
    assert decision.action is Action.SEND
    assert decision.reason is not None and problem in decision.reason


def test_good_quiet_hours_have_nothing_to_say() -> None:
    assert check(person("22:00")) is None
    assert check(person(None)) is None


@pytest.mark.parametrize("text", ["", "ab:cd", "1200", "12:0", "-1:00", "12:00:00"])
def test_only_hh_mm_is_a_time(text: str) -> None:
    with pytest.raises(QuietHoursError):
        parse_clock(text)


@pytest.mark.parametrize(
    ("instant", "zone", "shown"),
    [
        ("2026-01-10T23:00", BERLIN, "2026-01-11 00:00 CET"),
        ("2026-07-10T23:00", BERLIN, "2026-07-11 01:00 CEST"),
        ("2026-03-29T01:00", BERLIN, "2026-03-29 03:00 CEST"),
        ("2026-01-11T03:00", NEW_YORK, "2026-01-10 22:00 EST"),
        ("2026-01-10T18:00", KOLKATA, "2026-01-10 23:30 IST"),
        ("2026-01-10T18:00", "UTC", "2026-01-10 18:00 UTC"),
        ("2026-01-10T18:00", "Mars/Olympus", "2026-01-10 18:00 UTC"),
        ("2026-01-10T18:00", "America", "2026-01-10 18:00 UTC"),  # a folder of the database
    ],
)
def test_times_read_in_the_persons_zone(instant: str, zone: str, shown: str) -> None:
    assert format_local(utc(instant), zone) == shown
