"""Quiet hours: a daily window, in the person's own time zone, when alerts below CRITICAL
do not wake them. During it a send is held until the window ends (the throttle agent holds
it and sends everything held as one bundle then) or, when the person chose a quiet-hours
channel, goes to that channel instead. CRITICAL always goes through.

Pure: `now` is always passed in. Wall times are read with zoneinfo (the tzdata package
carries the zone database where the system has none), so a window that crosses midnight
or a daylight-saving change ends at the right instant.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.contracts.records import Channel, Priority, QuietHours, UserProfile

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class QuietHoursError(ValueError):
    """A profile's quiet hours that cannot be read (bad time, unknown time zone)."""


class Action(enum.Enum):
    SEND = "SEND"  # now, as planned
    REDIRECT = "REDIRECT"  # now, on the person's quiet-hours channel instead
    HOLD = "HOLD"  # at `until`, bundled with whatever else was held


@dataclass(frozen=True)
class QuietDecision:
    """What quiet hours do to one send: `until` is the end of the window (UTC) when the
    person is in one; `reason` says why it is held or redirected, or why the quiet hours
    were ignored."""

    action: Action
    until: datetime | None = None
    channel: Channel | None = None
    reason: str | None = None


SEND = QuietDecision(Action.SEND)


def parse_clock(text: str) -> time:
    """A local time of day from 'HH:MM' (24-hour, 00:00-23:59); QuietHoursError if not."""
    found = _CLOCK.match(text.strip())
    if found is None:
        raise QuietHoursError(f"{text!r} is not a time of day HH:MM (00:00-23:59)")
    return time(int(found.group(1)), int(found.group(2)))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; QuietHoursError if there is none by that name."""
    try:
        return ZoneInfo(name)
    # OSError: a name that is a folder of the zone database ("Europe") raises
    # IsADirectoryError on Python 3.11, not ZoneInfoNotFoundError
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise QuietHoursError(f"{name!r} is not an IANA time zone") from None


def check(profile: UserProfile) -> str | None:
    """What is wrong with the profile's quiet hours (None: nothing, or none set)."""
    if profile.quiet_hours is None:
        return None
    try:
        _read(profile.quiet_hours, profile.time_zone)
    except QuietHoursError as exc:
        return str(exc)
    return None


def _read(quiet: QuietHours, time_zone: str) -> tuple[time, time, ZoneInfo]:
    start, end = parse_clock(quiet.start), parse_clock(quiet.end)
    if start == end:
        raise QuietHoursError(f"quiet hours start and end at the same time ({quiet.start})")
    return start, end, zone(time_zone)


def _instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The first instant the clocks in `tz` show `wall` on `day`, or pass it (a time the
    spring-forward gap skips: the instant of the change)."""
    local = datetime.combine(day, wall, tzinfo=tz)  # fold=0: the first of a repeated time
    at = local.astimezone(UTC)
    if at.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return at
    # in the gap: the change lies between the wall time read with the offset after it and
    # the one before it; find it to the second
    low = local.replace(fold=1).astimezone(UTC)
    high = at
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= local.replace(tzinfo=None):
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def window_end(start: time, end: time, tz: ZoneInfo, now: datetime) -> datetime | None:
    """When the quiet window `now` falls in ends (UTC), or None when `now` is outside it.
    An `end` earlier than `start` ends on the next day."""
    today = now.astimezone(tz).date()
    for day in (today - timedelta(days=1), today):
        begins = _instant(day, start, tz)
        ends = _instant(day + timedelta(days=1) if end < start else day, end, tz)
        if begins <= now < ends:
            return ends
    return None


def quiet_hours(profile: UserProfile | None, priority: Priority, now: datetime) -> QuietDecision:
    """Whether a send of `priority` to the person goes now, goes to their quiet-hours
    channel instead, or is held until their quiet hours end. CRITICAL always goes now;
    quiet hours that cannot be read are ignored (sent now, `reason` says why)."""
    if profile is None or profile.quiet_hours is None or priority is Priority.CRITICAL:
        return SEND
    quiet = profile.quiet_hours
    try:
        start, end, tz = _read(quiet, profile.time_zone)
    except QuietHoursError as exc:
        return QuietDecision(Action.SEND, reason=f"quiet hours ignored: {exc}")
    until = window_end(start, end, tz, now)
    if until is None:
        return SEND
    reason = f"quiet hours {quiet.start}-{quiet.end} {profile.time_zone}"
    if quiet.channel is not None:
        return QuietDecision(Action.REDIRECT, until, quiet.channel, reason)
    return QuietDecision(Action.HOLD, until, reason=reason)


def held(decision: QuietDecision) -> QuietDecision:
    """The same window, held rather than redirected (the quiet-hours channel cannot be
    used for this send)."""
    return QuietDecision(Action.HOLD, decision.until, reason=decision.reason)
